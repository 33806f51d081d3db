//! A change's whole target list as CSV, with what happens to each target
//! (`effects::target_effects`, the rules the executor applies).

use super::effects::{target_effects, TargetRef};
use crate::db::models::Change;
use crate::db::{changes as repo, DbConn};
use crate::domain::execution::AttrChange;
use crate::domain::Schema;
use crate::error::{AppError, AppResult};
use crate::service::views::{csv_field, number};

/// Targets described per CSV batch: the effects of this many are computed at once.
const CSV_BATCH: usize = 2000;

/// Every target of change `id` as CSV, one snapshot: kind, id, scope path, name, what
/// happens to it (`effect`, `outcome`, `what_happens`, `cascaded_from`), and for a
/// `set_attributes` change the value of each attribute now and after (what will run).
pub fn targets_csv(
    conn: &mut DbConn,
    schema: &Schema,
    id: i64,
    search: Option<&str>,
    status: Option<crate::domain::execution::ItemStatus>,
    offset: i64,
) -> AppResult<(Change, String)> {
    crate::db::snapshot(conn, |conn| {
        let c = repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        let cell = csv_field;
        // A set_attributes change adds "<key> now" and "<key> after" for each attribute it
        // sets (the same keys for every target): its parameters, or for a rollback the
        // keys the original set.
        let mut keys: Vec<String> = Vec::new();
        let (_, rows) = repo::targets_page(conn, id, search, status, offset, i64::MAX)?;
        let mut lines: Vec<(String, Vec<AttrChange>)> = Vec::with_capacity(rows.len());
        for batch in rows.chunks(CSV_BATCH) {
            let refs: Vec<TargetRef<'_>> = batch.iter().map(TargetRef::from).collect();
            let effects = target_effects(conn, schema, &c, &refs)?;
            for t in batch {
                let e = effects.get(&t.entity_id);
                let attrs = e.and_then(|e| e.attributes()).unwrap_or_default();
                for a in attrs {
                    if !keys.contains(&a.key) {
                        keys.push(a.key.clone());
                    }
                }
                let head = format!(
                    "{},{},{},{},{},{},{},{}",
                    cell(&t.kind),
                    cell(&t.entity_id),
                    cell(&t.scope_path),
                    cell(&t.name),
                    cell(e.map(|e| e.detail.effect().as_str()).unwrap_or_default()),
                    cell(e.map(|e| e.outcome.as_str()).unwrap_or_default()),
                    cell(e.map(|e| e.text.as_str()).unwrap_or_default()),
                    cell(
                        &e.and_then(|e| e.cascaded_from.as_ref())
                            .map(|p| format!("{} {}", p.kind, p.id))
                            .unwrap_or_default()
                    ),
                );
                lines.push((head, attrs.to_vec()));
            }
        }
        keys.sort();
        let mut out = String::with_capacity(lines.len() * 160 + 96);
        // One format for the page's and the API's CSV (the API's column order).
        out.push_str("kind,id,scope_path,name,effect,outcome,what_happens,cascaded_from");
        for k in &keys {
            out.push_str(&format!(
                ",{},{}",
                cell(&format!("{k} now")),
                cell(&format!("{k} after"))
            ));
        }
        out.push('\n');
        for (head, changes) in &lines {
            out.push_str(head);
            for k in &keys {
                let a = changes.iter().find(|a| &a.key == k);
                let now = a.and_then(|a| a.now.as_deref()).unwrap_or("");
                let after = a.and_then(|a| a.after.as_deref()).unwrap_or("");
                out.push_str(&format!(",{},{}", cell(now), cell(after)));
            }
            out.push('\n');
        }
        Ok((c, out))
    })
}

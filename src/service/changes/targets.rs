//! A change's whole target list as CSV, with what happens to each target
//! (`effects::target_effects`, the rules the executor applies).

use std::io::{BufRead, BufReader, BufWriter, Seek, Write};

use super::effects::{target_effects, TargetRef};
use crate::db::models::Change;
use crate::db::{changes as repo, DbConn};
use crate::domain::execution::ItemStatus;
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
    status: Option<ItemStatus>,
    offset: i64,
) -> AppResult<(Change, String)> {
    crate::db::snapshot(conn, |conn| {
        let c = repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        let mut out = Vec::new();
        write_targets_csv(conn, schema, &c, search, status, offset, &mut out)?;
        let out = String::from_utf8(out)
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("targets CSV: {e}")))?;
        Ok((c, out))
    })
}

fn io(e: std::io::Error) -> AppError {
    AppError::Unexpected(anyhow::anyhow!("writing the targets CSV: {e}"))
}

/// [`targets_csv`] written to `out` batch by batch (call it inside a snapshot). The
/// attribute columns are only known once every target is described, so each row goes to
/// an unnamed temporary file first and is copied to `out` under the header: memory holds
/// one batch, never the list. Returns the number of targets written.
pub fn write_targets_csv(
    conn: &mut DbConn,
    schema: &Schema,
    c: &Change,
    search: Option<&str>,
    status: Option<ItemStatus>,
    offset: i64,
    out: &mut dyn Write,
) -> AppResult<u64> {
    let cell = csv_field;
    // A set_attributes change adds "<key> now" and "<key> after" for each attribute it
    // sets (the same keys for every target): its parameters, or for a rollback the keys
    // the original set.
    let mut keys: Vec<String> = Vec::new();
    let mut spool = BufWriter::new(tempfile::tempfile().map_err(io)?);
    let mut count = 0u64;
    let mut at = offset;
    loop {
        let (_, batch) = repo::targets_page(conn, c.id, search, status, at, CSV_BATCH as i64)?;
        let refs: Vec<TargetRef<'_>> = batch.iter().map(TargetRef::from).collect();
        let effects = target_effects(conn, schema, c, &refs)?;
        for t in &batch {
            let e = effects.get(&t.entity_id);
            let attrs: Vec<(&str, Option<&str>, Option<&str>)> = e
                .and_then(|e| e.attributes())
                .unwrap_or_default()
                .iter()
                .map(|a| (a.key.as_str(), a.now.as_deref(), a.after.as_deref()))
                .collect();
            for (k, _, _) in &attrs {
                if !keys.iter().any(|have| have == k) {
                    keys.push(k.to_string());
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
            // One JSON line per target: the head cells and its attribute changes.
            serde_json::to_writer(&mut spool, &(head, attrs))
                .map_err(|e| io(std::io::Error::other(e)))?;
            spool.write_all(b"\n").map_err(io)?;
            count += 1;
        }
        if batch.len() < CSV_BATCH {
            break;
        }
        at += CSV_BATCH as i64;
    }
    keys.sort();
    // One format for the page's and the API's CSV (the API's column order).
    let mut header =
        String::from("kind,id,scope_path,name,effect,outcome,what_happens,cascaded_from");
    for k in &keys {
        header.push_str(&format!(
            ",{},{}",
            cell(&format!("{k} now")),
            cell(&format!("{k} after"))
        ));
    }
    header.push('\n');
    out.write_all(header.as_bytes()).map_err(io)?;
    let mut file = spool.into_inner().map_err(|e| io(e.into_error()))?;
    file.rewind().map_err(io)?;
    let mut line = String::new();
    let mut reader = BufReader::new(file);
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            break;
        }
        type Row = (String, Vec<(String, Option<String>, Option<String>)>);
        let (head, changes): Row =
            serde_json::from_str(&line).map_err(|e| io(std::io::Error::other(e)))?;
        let mut row = head;
        for k in &keys {
            let a = changes.iter().find(|a| &a.0 == k);
            let now = a.and_then(|a| a.1.as_deref()).unwrap_or("");
            let after = a.and_then(|a| a.2.as_deref()).unwrap_or("");
            row.push_str(&format!(",{},{}", cell(now), cell(after)));
        }
        row.push('\n');
        out.write_all(row.as_bytes()).map_err(io)?;
    }
    Ok(count)
}

//! A change's targets as its readers see them: what a `set_attributes` change does to
//! each (stored, or planned on the new-change form) and the whole list as CSV.

use std::collections::HashMap;

use serde_json::Value;

use super::shared::effect_for;
use crate::db::models::Change;
use crate::db::{changes as repo, DbConn};
use crate::domain::execution::{attribute_changes as diff, attributes_after, AttrChange, Attrs};
use crate::domain::schema::{Effect, Operation};
use crate::domain::Schema;
use crate::error::{AppError, AppResult};
use crate::service::views::{csv_field, number};

/// For each entity of `ids` that `after` gives attributes to (from its current ones):
/// what changes, key by key over `keys`.
fn diff_each(
    conn: &mut DbConn,
    ids: &[&str],
    keys: &[String],
    mut after: impl FnMut(&str, &Attrs) -> Option<Attrs>,
) -> AppResult<HashMap<String, Vec<AttrChange>>> {
    let mut out = HashMap::new();
    for e in crate::db::inventory::fetch_lite(conn, ids)? {
        let current: Attrs = serde_json::from_str(&e.attrs).unwrap_or_default();
        let Some(after) = after(&e.id, &current) else {
            continue;
        };
        out.insert(e.id.clone(), diff(&current, &after, keys));
    }
    Ok(out)
}

/// For a `set_attributes` change (or its rollback): what each of `ids` gets, computed by
/// the same function the executor applies. Empty for other effects.
pub fn attribute_changes(
    conn: &mut DbConn,
    schema: &Schema,
    c: &Change,
    ids: &[&str],
) -> AppResult<HashMap<String, Vec<AttrChange>>> {
    let Some(op) = schema.operation(&c.operation) else {
        return Ok(HashMap::new());
    };
    if effect_for(op, c) != Some(Effect::SetAttributes) || ids.is_empty() {
        return Ok(HashMap::new());
    }
    let attrs = |s: &str| -> Attrs { serde_json::from_str(s).unwrap_or_default() };
    let params = attrs(&c.params);
    let (keys, prior) = match c.rollback_of {
        Some(orig) => {
            let o = repo::get(conn, orig)?;
            let keys: Vec<String> = o
                .map(|o| attrs(&o.params).into_keys().collect())
                .unwrap_or_default();
            (
                keys,
                Some(crate::db::exec::versions_by_change(conn, orig, ids)?),
            )
        }
        None => (params.keys().cloned().collect(), None),
    };
    diff_each(conn, ids, &keys, |id, current| match &prior {
        Some(p) => p
            .get(id)
            .map(|v| attributes_after(current, &params, Some((&attrs(&v.before_attrs), &keys)))),
        None => Some(attributes_after(current, &params, None)),
    })
}

/// What a new `set_attributes` change with `params` would do to `ids` (the form's preview).
pub fn planned_attribute_changes(
    conn: &mut DbConn,
    op: &Operation,
    params: &Value,
    ids: &[&str],
) -> AppResult<HashMap<String, Vec<AttrChange>>> {
    if op.effect != Effect::SetAttributes {
        return Ok(HashMap::new());
    }
    let params: Attrs = serde_json::from_value(params.clone()).unwrap_or_default();
    let keys: Vec<String> = params.keys().cloned().collect();
    diff_each(conn, ids, &keys, |_, current| {
        Some(attributes_after(current, &params, None))
    })
}

/// Every target of change `id` as CSV, one snapshot: kind, id, scope path, name, and for a
/// `set_attributes` change the value of each attribute now and after (what will run).
pub fn targets_csv(
    conn: &mut DbConn,
    schema: &Schema,
    id: i64,
    search: Option<&str>,
    offset: i64,
) -> AppResult<(Change, String)> {
    crate::db::snapshot(conn, |conn| {
        let c = repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        let (_, rows) = repo::targets_page(conn, id, search, offset, i64::MAX)?;
        let sets = {
            let ids: Vec<&str> = rows.iter().map(|t| t.entity_id.as_str()).collect();
            attribute_changes(conn, schema, &c, &ids)?
        };
        let cell = csv_field;
        // One row per target; a set_attributes change adds "<key> now" and "<key> after"
        // for each attribute it sets (the same keys for every target).
        let mut keys: Vec<String> = Vec::new();
        for changes in sets.values() {
            for a in changes {
                if !keys.contains(&a.key) {
                    keys.push(a.key.clone());
                }
            }
        }
        keys.sort();
        let mut out = String::with_capacity(rows.len() * 96 + 64);
        // One format for the page's and the API's CSV (the API's column order).
        out.push_str("kind,id,scope_path,name");
        for k in &keys {
            out.push_str(&format!(
                ",{},{}",
                cell(&format!("{k} now")),
                cell(&format!("{k} after"))
            ));
        }
        out.push('\n');
        for t in rows {
            out.push_str(&format!(
                "{},{},{},{}",
                cell(&t.kind),
                cell(&t.entity_id),
                cell(&t.scope_path),
                cell(&t.name)
            ));
            let changes = sets.get(&t.entity_id);
            for k in &keys {
                let a = changes.and_then(|c| c.iter().find(|a| &a.key == k));
                let now = a.and_then(|a| a.now.as_deref()).unwrap_or("");
                let after = a.and_then(|a| a.after.as_deref()).unwrap_or("");
                out.push_str(&format!(",{},{}", cell(now), cell(after)));
            }
            out.push('\n');
        }
        Ok((c, out))
    })
}

//! Inventory use cases.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::db::imports;
use crate::db::inventory::{self, ImportFailure, ImportReport};
use crate::db::models::{Entity, EntityVersion, Import};
use crate::db::DbConn;
use crate::domain::{EntityState, Schema};
use crate::error::{AppError, AppResult, ErrorCode};

use super::CurrentUser;

impl From<ImportFailure> for AppError {
    fn from(e: ImportFailure) -> Self {
        match e {
            ImportFailure::Read(msg) => AppError::new(
                ErrorCode::UnreadableBody,
                format!("the import body could not be read: {msg}"),
            ),
            ImportFailure::Db(e) => AppError::Db(e),
        }
    }
}

#[tracing::instrument(name = "inventory::import", skip_all, fields(user = user.id))]
pub fn import<I, L>(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    lines: I,
    partial: bool,
) -> AppResult<ImportReport>
where
    I: Iterator<Item = Result<L, String>>,
    L: Into<crate::domain::lines::Line>,
{
    user.require_inventory_writer(schema, "inventory")?;
    Ok(inventory::import(
        conn,
        schema,
        lines,
        partial,
        &user.actor(),
    )?)
}

#[derive(Debug, Serialize)]
pub struct EntityView {
    pub id: String,
    pub kind: String,
    pub kind_label: String,
    pub parent: Option<String>,
    pub name: String,
    pub attrs: serde_json::Value,
    pub state: EntityState,
    pub version: i64,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<chrono::NaiveDateTime>,
    /// The change that deleted it (`CHG-n`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<chrono::NaiveDateTime>,
}

impl EntityView {
    pub fn new(schema: &Schema, e: Entity) -> Self {
        EntityView {
            kind_label: schema
                .kind(&e.kind)
                .map(|k| k.label.clone())
                .unwrap_or_default(),
            attrs: serde_json::from_str(&e.attrs).unwrap_or_default(),
            id: e.id,
            kind: e.kind,
            parent: e.parent_id,
            name: e.name,
            state: e.state,
            version: e.version,
            created_at: e.created_at,
            updated_at: e.updated_at,
            deleted_at: e.deleted_at,
            deleted_by: e.deleted_by.map(crate::service::views::number),
            purge_after: e.purge_after,
        }
    }
}

/// One field a version changed: `name`, `parent`, `state` or `attrs.<key>`, with its
/// value before and after (`null` when absent).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

impl FieldChange {
    /// `before → after`, for pages.
    pub fn text(&self) -> String {
        let show = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "—".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        format!("{} → {}", show(&self.before), show(&self.after))
    }
}

fn attrs_value(s: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(s).unwrap_or_default()
}

/// What a version row changed, field by field (attributes key by key). The parent is
/// compared only when the row records it (rows written before imports had a trail do
/// not).
pub fn fields_changed(v: &EntityVersion) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: String, before: serde_json::Value, after: serde_json::Value| {
        if before != after {
            out.push(FieldChange {
                field,
                before,
                after,
            });
        }
    };
    push("state".into(), json!(v.before_state), json!(v.after_state));
    push("name".into(), json!(v.before_name), json!(v.after_name));
    push(
        "parent".into(),
        json!(v.before_parent),
        json!(v.after_parent),
    );
    let before: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&v.before_attrs).unwrap_or_default();
    let after: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&v.after_attrs).unwrap_or_default();
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for k in keys {
        let b = before.get(k).cloned().unwrap_or_default();
        let a = after.get(k).cloned().unwrap_or_default();
        push(format!("attrs.{k}"), b, a);
    }
    out
}

/// One recorded mutation of an entity: by a change (executed by `by`) or by an inventory
/// import (run by `by`).
#[derive(Debug, Serialize)]
pub struct VersionView {
    pub version: i64,
    pub change: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<i64>,
    /// The importer, or the person who started the change's execution.
    pub by: Option<String>,
    pub at: chrono::NaiveDateTime,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    pub fields: Vec<FieldChange>,
}

impl VersionView {
    pub fn new(v: EntityVersion, by: Option<String>) -> Self {
        VersionView {
            fields: fields_changed(&v),
            version: v.version,
            change: v.change_id.map(crate::service::views::number),
            import: v.import_id,
            by,
            at: v.at,
            before: json!({"state": v.before_state, "name": v.before_name, "parent": v.before_parent, "attrs": attrs_value(&v.before_attrs)}),
            after: json!({"state": v.after_state, "name": v.after_name, "parent": v.after_parent, "attrs": attrs_value(&v.after_attrs)}),
        }
    }
}

/// The newest `limit` versions of an entity, with who made each.
pub fn versions(conn: &mut DbConn, id: &str, limit: i64) -> AppResult<Vec<VersionView>> {
    let rows = crate::db::exec::versions_of(conn, id, limit)?;
    let mut changes: Vec<i64> = rows.iter().filter_map(|v| v.change_id).collect();
    let mut runs: Vec<i64> = rows.iter().filter_map(|v| v.import_id).collect();
    changes.sort_unstable();
    changes.dedup();
    runs.sort_unstable();
    runs.dedup();
    let executors = crate::db::exec::executors(conn, &changes)?;
    let importers = imports::importers(conn, &runs)?;
    Ok(rows
        .into_iter()
        .map(|v| {
            let by = match (v.import_id, v.change_id) {
                (Some(i), _) => importers.get(&i).cloned(),
                (None, Some(c)) => executors.get(&c).cloned(),
                (None, None) => None,
            };
            VersionView::new(v, by)
        })
        .collect())
}

#[derive(Debug, Serialize)]
pub struct ChildCount {
    pub kind: String,
    pub state: EntityState,
    pub count: i64,
}

#[derive(Debug, Serialize)]
pub struct EntityDetail {
    #[serde(flatten)]
    pub entity: EntityView,
    /// Root first.
    pub ancestry: Vec<EntityView>,
    pub children: Vec<ChildCount>,
    /// Newest first (the last 50).
    pub versions: Vec<VersionView>,
}

pub fn detail(conn: &mut DbConn, schema: &Schema, id: &str) -> AppResult<EntityDetail> {
    let e = inventory::get(conn, id)?.ok_or_else(|| AppError::not_found("entity", id))?;
    let mut ancestry: Vec<EntityView> = inventory::ancestry(conn, &e)?
        .into_iter()
        .map(|a| EntityView::new(schema, a))
        .collect();
    ancestry.reverse();
    let children = inventory::children_counts(conn, id)?
        .into_iter()
        .map(|(kind, state, count)| ChildCount { kind, state, count })
        .collect();
    let versions = versions(conn, id, 50)?;
    Ok(EntityDetail {
        entity: EntityView::new(schema, e),
        ancestry,
        children,
        versions,
    })
}

pub fn list(
    conn: &mut DbConn,
    schema: &Schema,
    f: &inventory::ListFilter,
) -> AppResult<Vec<EntityView>> {
    if let Some(k) = &f.kind {
        if schema.kind(k).is_none() {
            return Err(AppError::new(
                ErrorCode::UnknownKind,
                format!(
                    "unknown kind `{k}` (the schema has: {})",
                    schema.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if let Some(s) = &f.state {
        if EntityState::parse(s).is_none() {
            return Err(AppError::new(
                ErrorCode::InvalidState,
                format!("state must be `active`, `deleted` or `purged`, not `{s}`"),
            ));
        }
    }
    Ok(inventory::list(conn, f)?
        .into_iter()
        .map(|e| EntityView::new(schema, e))
        .collect())
}

// ---- the import trail ------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DiffPage {
    #[serde(default)]
    pub offset: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
}

/// One entity an import changed.
#[derive(Debug, Serialize)]
pub struct DiffEntry {
    pub entity: String,
    pub kind: Option<String>,
    pub version: i64,
    pub fields: Vec<FieldChange>,
}

#[derive(Debug, Serialize)]
pub struct DiffView {
    /// Version rows in all (an entity changed twice in one file has two).
    pub total: i64,
    pub offset: i64,
    pub limit: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<i64>,
    pub entries: Vec<DiffEntry>,
}

#[derive(Debug, Serialize)]
pub struct ImportView {
    pub id: i64,
    pub importer: String,
    pub started_at: chrono::NaiveDateTime,
    pub finished_at: Option<chrono::NaiveDateTime>,
    pub lines: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub rejected: i64,
    pub partial: bool,
    /// Distinct entities changed, and SHA-256 (hex) over their IDs in ascending order,
    /// each followed by a newline.
    pub changed: i64,
    pub changed_ids_digest: String,
    pub audit_event: Option<i64>,
    pub diff: DiffView,
}

/// `GET /api/v1/imports/{id}`: an import and one page of its diff. Only those who may
/// import inventory (admins and implementing teams) may read it: an import's diff is a
/// bulk view of what the systems of record said, while anyone signed in reads entities
/// one at a time (with their versions) on their pages.
pub fn import_view(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    raw_id: &str,
    page: DiffPage,
) -> AppResult<ImportView> {
    user.require_import_reader(schema)?;
    let id: i64 = raw_id
        .trim()
        .parse()
        .map_err(|_| AppError::not_found("import", raw_id))?;
    let offset = page.offset.unwrap_or(0).max(0);
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    crate::db::snapshot(conn, |conn| {
        let imp: Import =
            imports::get(conn, id)?.ok_or_else(|| AppError::not_found("import", id))?;
        let (total, rows) = imports::diff(conn, id, offset, limit)?;
        let entries: Vec<DiffEntry> = rows
            .into_iter()
            .map(|(v, kind)| DiffEntry {
                fields: fields_changed(&v),
                entity: v.entity_id,
                kind,
                version: v.version,
            })
            .collect();
        let next = offset + entries.len() as i64;
        Ok(ImportView {
            id: imp.id,
            importer: imp.importer,
            started_at: imp.started_at,
            finished_at: imp.finished_at,
            lines: imp.lines,
            inserted: imp.inserted,
            updated: imp.updated,
            unchanged: imp.unchanged,
            rejected: imp.rejected,
            partial: imp.partial,
            changed: imp.changed,
            changed_ids_digest: imp.changed_digest,
            audit_event: imp.audit_event_id,
            diff: DiffView {
                total,
                offset,
                limit,
                next_offset: (next < total).then_some(next),
                entries,
            },
        })
    })
}

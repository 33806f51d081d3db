//! Inventory use cases.

use serde::Serialize;

use crate::db::inventory::{self, ImportFailure, ImportReport};
use crate::db::models::Entity;
use crate::db::DbConn;
use crate::domain::Schema;
use crate::error::{AppError, AppResult};

use super::CurrentUser;

impl From<ImportFailure> for AppError {
    fn from(e: ImportFailure) -> Self {
        match e {
            ImportFailure::Read(msg) => AppError::bad_request(
                "unreadable_body",
                format!("the import body could not be read: {msg}"),
            ),
            ImportFailure::Db(e) => AppError::Db(e),
        }
    }
}

pub fn import<I>(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    lines: I,
    partial: bool,
) -> AppResult<ImportReport>
where
    I: Iterator<Item = Result<String, String>>,
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
    pub state: String,
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

/// One recorded mutation of an entity.
#[derive(Debug, Serialize)]
pub struct VersionView {
    pub version: i64,
    pub change: Option<String>,
    pub at: chrono::NaiveDateTime,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

impl From<crate::db::models::EntityVersion> for VersionView {
    fn from(v: crate::db::models::EntityVersion) -> Self {
        let attrs = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_default();
        VersionView {
            version: v.version,
            change: v.change_id.map(crate::service::views::number),
            at: v.at,
            before: serde_json::json!({"state": v.before_state, "name": v.before_name, "attrs": attrs(&v.before_attrs)}),
            after: serde_json::json!({"state": v.after_state, "name": v.after_name, "attrs": attrs(&v.after_attrs)}),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ChildCount {
    pub kind: String,
    pub state: String,
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
    let versions = crate::db::exec::versions_of(conn, id, 50)?
        .into_iter()
        .map(VersionView::from)
        .collect();
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
            return Err(AppError::unprocessable(
                "unknown_kind",
                format!(
                    "unknown kind `{k}` (the schema has: {})",
                    schema.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if let Some(s) = &f.state {
        if s != "active" && s != "deleted" && s != "purged" {
            return Err(AppError::unprocessable(
                "invalid_state",
                format!("state must be `active`, `deleted` or `purged`, not `{s}`"),
            ));
        }
    }
    Ok(inventory::list(conn, f)?
        .into_iter()
        .map(|e| EntityView::new(schema, e))
        .collect())
}

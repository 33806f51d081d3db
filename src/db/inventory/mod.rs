//! The inventory: entities of the schema's kinds. Bulk import streams NDJSON in batches
//! inside one write transaction, so a file with errors writes nothing (unless the
//! caller asked for `partial`), and memory stays bounded whatever the file's size. Every
//! committed import has an `imports` row, and every entity it changed a version row
//! (before and after, the import's id), written in the same transaction.
//!
//! By use case: `lookup` (entities by ID and by parent, for resolution), `matching`
//! (`where` filters in SQL), `browse` (an entity's ancestry and children, the listing),
//! `lines` (one import line parsed and checked) and `import` (the bulk import).

use diesel::prelude::*;

use super::models::Entity;
use super::schema::entities;
use super::DbConn;
use crate::domain::EntityState;

mod browse;
mod import;
mod lines;
mod lookup;
mod matching;

pub use browse::{ancestry, children_counts, list, ListFilter};
pub use import::{import, ImportFailure, ImportReport, LineError, MAX_REPORTED_ERRORS};
pub use lines::{check_attrs, check_identity, parse_line, ImportLine, LineProblem};
pub use lookup::{active_children_counts, active_children_lite, fetch_lite, fetch_refs};
pub use matching::{children, matching_of_kind, Matching};

/// The columns resolution needs.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = entities)]
pub struct EntityLite {
    pub id: String,
    pub kind: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub attrs: String,
    pub state: EntityState,
}

pub fn get(conn: &mut DbConn, id: &str) -> QueryResult<Option<Entity>> {
    entities::table
        .find(id)
        .select(Entity::as_select())
        .first(conn)
        .optional()
}

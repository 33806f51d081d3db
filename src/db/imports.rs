//! The inventory import trail: one `imports` row per committed import, and the version
//! rows (`entity_versions.import_id`) of the entities it changed. The importer in
//! [`super::inventory`] writes both inside its one transaction, so an import that is rolled
//! back leaves neither behind.

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::models::{EntityVersion, Import};
use super::schema::{entities, entity_versions, imports};
use super::DbConn;

/// How many changed IDs an import's audit event lists; beyond that it carries only the
/// digest (and the import id, whose diff lists them all).
pub const MAX_LISTED_IDS: usize = 1000;

/// Start an import: its row, so version rows can name it. Finished by [`finish`].
pub fn create(
    conn: &mut DbConn,
    importer: &str,
    partial: bool,
    started_at: chrono::NaiveDateTime,
) -> QueryResult<i64> {
    diesel::insert_into(imports::table)
        .values((
            imports::importer.eq(importer),
            imports::started_at.eq(started_at),
            imports::partial.eq(partial),
        ))
        .returning(imports::id)
        .get_result(conn)
}

/// The counts an import ends with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub lines: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub rejected: i64,
}

pub fn finish(
    conn: &mut DbConn,
    id: i64,
    counts: Counts,
    changed: &ChangedIds,
    audit_event_id: i64,
) -> QueryResult<()> {
    diesel::update(imports::table.find(id))
        .set((
            imports::finished_at.eq(Some(super::now())),
            imports::lines.eq(counts.lines),
            imports::inserted.eq(counts.inserted),
            imports::updated.eq(counts.updated),
            imports::unchanged.eq(counts.unchanged),
            imports::rejected.eq(counts.rejected),
            imports::changed.eq(changed.count),
            imports::changed_digest.eq(&changed.digest),
            imports::audit_event_id.eq(Some(audit_event_id)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The distinct entities an import changed: how many, SHA-256 (hex) over their IDs in
/// ascending order each followed by `\n` (recomputable from the diff), and the first
/// [`MAX_LISTED_IDS`] of them.
#[derive(Debug, Clone)]
pub struct ChangedIds {
    pub count: i64,
    pub digest: String,
    pub listed: Vec<String>,
}

impl ChangedIds {
    pub fn complete(&self) -> bool {
        self.listed.len() as i64 == self.count
    }
}

/// Read the changed IDs of import `id` back in pages (index-only on
/// `entity_versions_import`), so memory stays bounded however many entities changed.
pub fn changed_ids(conn: &mut DbConn, id: i64) -> QueryResult<ChangedIds> {
    let mut h = Sha256::new();
    let mut count = 0i64;
    let mut listed = Vec::new();
    let mut after = String::new();
    loop {
        let page: Vec<String> = entity_versions::table
            .filter(entity_versions::import_id.eq(id))
            .filter(entity_versions::entity_id.gt(&after))
            .select(entity_versions::entity_id)
            .distinct()
            .order(entity_versions::entity_id.asc())
            .limit(10_000)
            .load(conn)?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        for e in page {
            h.update(e.as_bytes());
            h.update(b"\n");
            count += 1;
            if listed.len() < MAX_LISTED_IDS {
                listed.push(e);
            }
        }
        after = last;
    }
    Ok(ChangedIds {
        count,
        digest: hex::encode(h.finalize()),
        listed,
    })
}

/// The digest of an import that changed nothing.
pub fn empty_digest() -> ChangedIds {
    ChangedIds {
        count: 0,
        digest: hex::encode(Sha256::digest(b"")),
        listed: Vec::new(),
    }
}

pub fn get(conn: &mut DbConn, id: i64) -> QueryResult<Option<Import>> {
    imports::table
        .find(id)
        .select(Import::as_select())
        .first(conn)
        .optional()
}

/// A version row of an import and its entity's kind.
pub type DiffRow = (EntityVersion, Option<String>);

/// One page of an import's version rows with each entity's kind, by entity id; and the
/// number of rows in all.
pub fn diff(
    conn: &mut DbConn,
    id: i64,
    offset: i64,
    limit: i64,
) -> QueryResult<(i64, Vec<DiffRow>)> {
    let total: i64 = entity_versions::table
        .filter(entity_versions::import_id.eq(id))
        .count()
        .get_result(conn)?;
    let rows = entity_versions::table
        .left_join(entities::table.on(entities::id.eq(entity_versions::entity_id)))
        .filter(entity_versions::import_id.eq(id))
        .order((
            entity_versions::entity_id.asc(),
            entity_versions::version.asc(),
        ))
        .offset(offset)
        .limit(limit)
        .select((EntityVersion::as_select(), entities::kind.nullable()))
        .load(conn)?;
    Ok((total, rows))
}

/// Who ran each of the given imports.
pub fn importers(
    conn: &mut DbConn,
    ids: &[i64],
) -> QueryResult<std::collections::HashMap<i64, String>> {
    Ok(imports::table
        .filter(imports::id.eq_any(ids))
        .select((imports::id, imports::importer))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect())
}

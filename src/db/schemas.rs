//! Recorded schema versions, by hash: what a change was resolved under. Layers that do not
//! carry the running schema (mail rendering at dispatch) read it from here, so they name an
//! operation exactly as the screens do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use diesel::prelude::*;

use super::schema::schema_versions;
use super::DbConn;
use crate::domain::Schema;

/// Parsed schemas by hash; `None` remembers a recorded source that no longer parses, so it
/// is not fetched and parsed again for every event.
type Cache = Mutex<HashMap<String, Option<Arc<Schema>>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The schema recorded under `hash` (parsed once per process), if it was recorded and
/// still parses.
pub fn by_hash(conn: &mut DbConn, hash: &str) -> QueryResult<Option<Arc<Schema>>> {
    if let Some(s) = cache().lock().expect("schema cache").get(hash) {
        return Ok(s.clone());
    }
    let source: Option<String> = schema_versions::table
        .find(hash)
        .select(schema_versions::source)
        .first(conn)
        .optional()?;
    let Some(source) = source else {
        // Not recorded (yet): ask again next time.
        return Ok(None);
    };
    Ok(parsed(hash, &source))
}

/// The schema `source` (recorded under `hash`) parsed, once per process; `None` when it
/// no longer parses (a version recorded by an older build).
pub fn parsed(hash: &str, source: &str) -> Option<Arc<Schema>> {
    if let Some(s) = cache().lock().expect("schema cache").get(hash) {
        return s.clone();
    }
    let schema = Schema::from_toml(source).ok().map(Arc::new);
    cache()
        .lock()
        .expect("schema cache")
        .insert(hash.to_string(), schema.clone());
    schema
}

/// One recorded schema version: its hash, source and when it was first loaded.
#[derive(Debug, Clone, Queryable)]
pub struct Version {
    pub hash: String,
    pub source: String,
    pub loaded_at: chrono::NaiveDateTime,
}

/// Every recorded version, the first loaded first.
pub fn versions(conn: &mut DbConn) -> QueryResult<Vec<Version>> {
    schema_versions::table
        .order((
            schema_versions::loaded_at.asc(),
            schema_versions::hash.asc(),
        ))
        .select((
            schema_versions::hash,
            schema_versions::source,
            schema_versions::loaded_at,
        ))
        .load(conn)
}

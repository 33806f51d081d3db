//! Recorded schema versions, by hash: what a change was resolved under. Layers that do not
//! carry the running schema (mail rendering at dispatch) read it from here, so they name an
//! operation exactly as the screens do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use diesel::prelude::*;

use super::schema::schema_versions;
use super::DbConn;
use crate::domain::Schema;

fn cache() -> &'static Mutex<HashMap<String, Arc<Schema>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Schema>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The schema recorded under `hash` (parsed once per process), if it was recorded and
/// still parses.
pub fn by_hash(conn: &mut DbConn, hash: &str) -> QueryResult<Option<Arc<Schema>>> {
    if let Some(s) = cache().lock().expect("schema cache").get(hash) {
        return Ok(Some(s.clone()));
    }
    let source: Option<String> = schema_versions::table
        .find(hash)
        .select(schema_versions::source)
        .first(conn)
        .optional()?;
    let Some(schema) = source.and_then(|src| Schema::from_toml(&src).ok()) else {
        return Ok(None);
    };
    let schema = Arc::new(schema);
    cache()
        .lock()
        .expect("schema cache")
        .insert(hash.to_string(), schema.clone());
    Ok(Some(schema))
}

//! The schema's version history, for admins: every version recorded in `schema_versions`
//! (one per content hash, with when it was first loaded), the one in use marked, and how
//! each differs from the one loaded before it (`domain::schema::history`).

use chrono::NaiveDateTime;

use super::CurrentUser;
use crate::db::schemas::{self, Version};
use crate::db::DbConn;
use crate::domain::schema::history::{self, DiffLine, SchemaDifference};
use crate::domain::Schema;
use crate::error::{AppError, AppResult, ErrorCode};

fn admin(user: &CurrentUser) -> AppResult<()> {
    if user.is_admin {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::Forbidden,
            "only admins read the schema's version history",
        ))
    }
}

/// One version as the history lists it.
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub hash: String,
    pub loaded_at: NaiveDateTime,
    /// The running server's schema.
    pub in_use: bool,
    /// Kinds and operations; `None` when the source no longer parses (an older build's).
    pub counts: Option<(usize, usize)>,
    /// Against the version loaded before it (`None` for the first, or when either no
    /// longer parses).
    pub difference: Option<SchemaDifference>,
    /// The hash of the version loaded before it.
    pub previous: Option<String>,
}

/// One version with its source and the line difference against the one before.
#[derive(Debug, Clone)]
pub struct VersionView {
    pub row: VersionRow,
    pub source: String,
    /// Hunks of the source's difference against the previous version's.
    pub lines: Vec<Vec<DiffLine>>,
}

fn rows(versions: &[Version], running: &Schema) -> Vec<VersionRow> {
    let parsed: Vec<_> = versions
        .iter()
        .map(|v| schemas::parsed(&v.hash, &v.source))
        .collect();
    versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let before = i.checked_sub(1);
            VersionRow {
                hash: v.hash.clone(),
                loaded_at: v.loaded_at,
                in_use: v.hash == running.hash,
                counts: parsed[i]
                    .as_ref()
                    .map(|s| (s.kinds.len(), s.operations.len())),
                difference: before.and_then(|b| match (&parsed[b], &parsed[i]) {
                    (Some(a), Some(c)) => Some(history::compare(a, c)),
                    _ => None,
                }),
                previous: before.map(|b| versions[b].hash.clone()),
            }
        })
        .collect()
}

/// Every recorded version, the newest first.
pub fn history(
    conn: &mut DbConn,
    user: &CurrentUser,
    running: &Schema,
) -> AppResult<Vec<VersionRow>> {
    admin(user)?;
    let versions = schemas::versions(conn)?;
    let mut out = rows(&versions, running);
    out.reverse();
    Ok(out)
}

/// Lines of unchanged source shown around each changed line.
pub const CONTEXT_LINES: usize = 3;

/// The version recorded under `hash` (404 for none), its source and its difference against
/// the version loaded before it.
pub fn version(
    conn: &mut DbConn,
    user: &CurrentUser,
    running: &Schema,
    hash: &str,
) -> AppResult<VersionView> {
    admin(user)?;
    let versions = schemas::versions(conn)?;
    let not_found = || {
        AppError::new(
            ErrorCode::NotFound,
            format!(
                "no schema version has the hash `{}`",
                hash.chars().take(80).collect::<String>()
            ),
        )
    };
    let i = versions
        .iter()
        .position(|v| v.hash == hash)
        .ok_or_else(not_found)?;
    let row = rows(&versions, running)
        .into_iter()
        .nth(i)
        .ok_or_else(not_found)?;
    let before = i.checked_sub(1).map(|b| versions[b].source.as_str());
    let source = versions[i].source.clone();
    Ok(VersionView {
        lines: before
            .map(|b| history::line_diff(b, &source, CONTEXT_LINES))
            .unwrap_or_default(),
        row,
        source,
    })
}

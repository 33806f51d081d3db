//! The difference a re-resolution made to a signed list, as signers re-sign from it: the
//! change view's summary, the full list (`GET /api/v1/changes/{id}/difference`), and the
//! check of a sign-off given from it (`replaces`), which records what it was given.

use std::collections::BTreeMap;

use serde_json::json;

use crate::db::models::Change;
use crate::db::{differences, DbConn};
use crate::domain::budget::root_of;
use crate::domain::difference::{Difference, DifferenceCounts};
use crate::domain::resolution::short_fingerprint;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::views::{number, DifferenceView};

/// Targets listed by the change view's summary of a difference (the rest page from the
/// difference endpoint).
pub const SAMPLE: usize = 20;
/// Most targets one page of the difference endpoint lists.
pub const MAX_PAGE: usize = 1000;

/// `c`'s difference against the list its signers last saw, when its current list is
/// another one; `None` otherwise.
pub fn of(conn: &mut DbConn, c: &Change) -> AppResult<Option<(DifferenceView, Difference)>> {
    let Some((base, to, d)) = differences::get(conn, c.id)? else {
        return Ok(None);
    };
    if c.fingerprint.as_deref() != Some(to.as_str()) {
        return Ok(None);
    }
    let mut per_root: BTreeMap<String, u64> = BTreeMap::new();
    for t in differences::stored_targets(conn, c.id)? {
        *per_root
            .entry(root_of(&t.id, &t.scope_path).to_string())
            .or_default() += 1;
    }
    let (roots_added, roots_removed) = d.roots(&per_root);
    let counts = DifferenceCounts {
        previous_fingerprint: base.clone(),
        added: d.added.len() as u64,
        removed: d.removed.len() as u64,
        roots_added: roots_added.len() as u64,
        roots_removed: roots_removed.len() as u64,
    };
    let view = DifferenceView {
        text: format!(
            "since {} was signed: {}",
            short_fingerprint(&base),
            counts.text()
        ),
        previous_fingerprint_short: short_fingerprint(&base),
        previous_fingerprint: base,
        fingerprint: to,
        counts,
        roots_added_ids: roots_added,
        roots_removed_ids: roots_removed,
        added_sample: d.added.values().take(SAMPLE).cloned().collect(),
        removed_sample: d.removed.values().take(SAMPLE).cloned().collect(),
    };
    Ok(Some((view, d)))
}

/// The summary for the change view.
pub fn summary(conn: &mut DbConn, c: &Change) -> AppResult<Option<DifferenceView>> {
    Ok(of(conn, c)?.map(|(v, _)| v))
}

/// One page of the whole difference: the added targets, then the removed ones.
pub fn page(
    conn: &mut DbConn,
    c: &Change,
    offset: usize,
    limit: usize,
) -> AppResult<serde_json::Value> {
    let Some((v, d)) = of(conn, c)? else {
        return Err(AppError::new(
            ErrorCode::NotFound,
            format!(
                "{}'s list has not changed since it was signed: there is no difference to show",
                number(c.id)
            ),
        ));
    };
    let limit = limit.clamp(1, MAX_PAGE);
    let all: Vec<serde_json::Value> = d
        .added
        .values()
        .map(|t| ("added", t))
        .chain(d.removed.values().map(|t| ("removed", t)))
        .skip(offset)
        .take(limit)
        .map(|(dir, t)| {
            json!({"change": dir, "kind": t.kind, "id": t.id, "scope_path": t.scope_path, "name": t.name})
        })
        .collect();
    let total = (d.added.len() + d.removed.len()) as u64;
    let next = offset as u64 + all.len() as u64;
    Ok(json!({
        "previous_fingerprint": v.previous_fingerprint,
        "fingerprint": v.fingerprint,
        "added": v.counts.added,
        "removed": v.counts.removed,
        "roots_added": v.roots_added_ids,
        "roots_removed": v.roots_removed_ids,
        "text": v.text,
        "targets": all,
        "total": total,
        "next_offset": if next < total { Some(next) } else { None },
    }))
}

/// A sign-off given from the difference view (`replaces`: the fingerprint the signer was
/// shown the difference against) must be given against the change's current difference:
/// returns what it was given, to record on the sign-off. A stale view is refused.
pub fn check_replaces(
    conn: &mut DbConn,
    c: &Change,
    replaces: &str,
) -> AppResult<DifferenceCounts> {
    let current = of(conn, c)?;
    match current {
        Some((v, _)) if v.previous_fingerprint == replaces.trim() => Ok(v.counts),
        Some((v, _)) => Err(AppError::new(
            ErrorCode::StaleDifference,
            format!(
                "the difference you saw was against {}, but {}'s list is now compared with {}: review the difference again",
                short_fingerprint(replaces.trim()),
                number(c.id),
                v.previous_fingerprint_short
            ),
        )
        .with_details(json!({"previous_fingerprint": v.previous_fingerprint}))),
        None => Err(AppError::new(
            ErrorCode::StaleDifference,
            format!(
                "{}'s list has no difference against {} any more: sign the list as it is",
                number(c.id),
                short_fingerprint(replaces.trim())
            ),
        )),
    }
}

/// The whole difference as CSV (`change,kind,id,scope_path,name`), for the page's link.
pub fn csv(conn: &mut DbConn, id: i64) -> AppResult<String> {
    crate::db::snapshot(conn, |conn| {
        let c = crate::db::changes::get(conn, id)?
            .ok_or_else(|| AppError::not_found("change", number(id)))?;
        let Some((_, d)) = of(conn, &c)? else {
            return Err(AppError::new(
                ErrorCode::NotFound,
                format!("{}'s list has not changed since it was signed", number(id)),
            ));
        };
        let cell = crate::service::views::csv_field;
        let mut out = String::from("change,kind,id,scope_path,name\n");
        for (dir, t) in d
            .added
            .values()
            .map(|t| ("added", t))
            .chain(d.removed.values().map(|t| ("removed", t)))
        {
            out.push_str(&format!(
                "{dir},{},{},{},{}\n",
                cell(&t.kind),
                cell(&t.id),
                cell(&t.scope_path),
                cell(&t.name)
            ));
        }
        Ok(out)
    })
}

//! The stored difference of a change's list against its base (the last list that had
//! sign-offs): one row per change, one item row per target added or removed. The rules
//! (composition, roots) are in `domain::difference`.

use diesel::prelude::*;

use super::schema::{change_targets, signoffs, target_difference_items, target_differences};
use super::DbConn;
use crate::domain::difference::{Difference, DifferenceCounts};
use crate::domain::resolution::ResolvedTarget;
use crate::with_concrete;

/// `(base fingerprint, fingerprint it leads to, difference)` of `change`, if one is stored.
pub fn get(conn: &mut DbConn, change: i64) -> QueryResult<Option<(String, String, Difference)>> {
    let Some((base, to)) = target_differences::table
        .find(change)
        .select((
            target_differences::base_fingerprint,
            target_differences::fingerprint,
        ))
        .first::<(String, String)>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let rows: Vec<(String, String, String, String, String)> = target_difference_items::table
        .filter(target_difference_items::change_id.eq(change))
        .order(target_difference_items::entity_id.asc())
        .select((
            target_difference_items::direction,
            target_difference_items::entity_id,
            target_difference_items::kind,
            target_difference_items::scope_path,
            target_difference_items::name,
        ))
        .load(conn)?;
    let mut d = Difference::default();
    for (dir, id, kind, scope_path, name) in rows {
        let t = ResolvedTarget {
            kind,
            id: id.clone(),
            scope_path,
            name,
        };
        if dir == "added" {
            d.added.insert(id, t);
        } else {
            d.removed.insert(id, t);
        }
    }
    Ok(Some((base, to, d)))
}

/// Forget `change`'s difference.
pub fn clear(conn: &mut DbConn, change: i64) -> QueryResult<()> {
    diesel::delete(
        target_difference_items::table.filter(target_difference_items::change_id.eq(change)),
    )
    .execute(conn)?;
    diesel::delete(target_differences::table.find(change)).execute(conn)?;
    Ok(())
}

/// Store `d` as `change`'s difference from `base` to `to` (replacing any before).
pub fn put(
    conn: &mut DbConn,
    change: i64,
    base: &str,
    to: &str,
    d: &Difference,
) -> QueryResult<()> {
    clear(conn, change)?;
    diesel::insert_into(target_differences::table)
        .values((
            target_differences::change_id.eq(change),
            target_differences::base_fingerprint.eq(base),
            target_differences::fingerprint.eq(to),
        ))
        .execute(conn)?;
    let items: Vec<(&str, &ResolvedTarget)> = d
        .added
        .values()
        .map(|t| ("added", t))
        .chain(d.removed.values().map(|t| ("removed", t)))
        .collect();
    // 6 values a row: 1,000 rows stay below both backends' bind limits.
    for chunk in items.chunks(1000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(dir, t)| {
                (
                    target_difference_items::change_id.eq(change),
                    target_difference_items::direction.eq(*dir),
                    target_difference_items::entity_id.eq(t.id.as_str()),
                    target_difference_items::kind.eq(t.kind.as_str()),
                    target_difference_items::scope_path.eq(t.scope_path.as_str()),
                    target_difference_items::name.eq(t.name.as_str()),
                )
            })
            .collect();
        with_concrete!(&mut *conn, |c| diesel::insert_into(
            target_difference_items::table
        )
        .values(rows)
        .execute(c))?;
    }
    Ok(())
}

/// Every stored target of `change`, in order (the list a difference is taken from).
pub fn stored_targets(conn: &mut DbConn, change: i64) -> QueryResult<Vec<ResolvedTarget>> {
    Ok(change_targets::table
        .filter(change_targets::change_id.eq(change))
        .order(change_targets::position.asc())
        .select((
            change_targets::kind,
            change_targets::entity_id,
            change_targets::scope_path,
            change_targets::name,
        ))
        .load::<(String, String, String, String)>(conn)?
        .into_iter()
        .map(|(kind, id, scope_path, name)| ResolvedTarget {
            kind,
            id,
            scope_path,
            name,
        })
        .collect())
}

/// Does `change` have a sign-off (stale or not) given for `fingerprint`?
pub fn signed_for(conn: &mut DbConn, change: i64, fingerprint: &str) -> QueryResult<bool> {
    Ok(signoffs::table
        .filter(signoffs::change_id.eq(change))
        .filter(signoffs::fingerprint.eq(fingerprint))
        .select(signoffs::id)
        .first::<i64>(conn)
        .optional()?
        .is_some())
}

/// Record on sign-off `id` the difference its signer re-signed from.
pub fn record_on_signoff(conn: &mut DbConn, id: i64, d: &DifferenceCounts) -> QueryResult<()> {
    diesel::update(signoffs::table.find(id))
        .set((
            signoffs::replaces_fingerprint.eq(&d.previous_fingerprint),
            signoffs::difference.eq(serde_json::to_string(d).expect("counts serialise")),
        ))
        .execute(conn)?;
    Ok(())
}

/// `(sign-off id, the difference it was given)` of every sign-off of `change` given from a
/// difference view.
pub fn signoff_differences(
    conn: &mut DbConn,
    change: i64,
) -> QueryResult<Vec<(i64, DifferenceCounts)>> {
    let rows: Vec<(i64, Option<String>)> = signoffs::table
        .filter(signoffs::change_id.eq(change))
        .filter(signoffs::difference.is_not_null())
        .select((signoffs::id, signoffs::difference))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, d)| Some((id, serde_json::from_str(&d?).ok()?)))
        .collect())
}

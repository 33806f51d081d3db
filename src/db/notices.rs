//! Customer notices (drafted, sent, discarded) and the question contact visibility asks:
//! does a change of one of these teams affect this customer?

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{CustomerNotice, NewCustomerNotice};
use super::schema::{change_targets, changes, customer_notices, entities};
use super::DbConn;
use crate::domain::notice::change_allows_notices;
use crate::domain::{ChangeState, NoticeState};

pub fn insert(conn: &mut DbConn, n: &NewCustomerNotice) -> QueryResult<i64> {
    diesel::insert_into(customer_notices::table)
        .values(n)
        .returning(customer_notices::id)
        .get_result(conn)
}

/// Notice `nid` of change `change_id`.
pub fn get(conn: &mut DbConn, change_id: i64, nid: i64) -> QueryResult<Option<CustomerNotice>> {
    customer_notices::table
        .filter(customer_notices::id.eq(nid))
        .filter(customer_notices::change_id.eq(change_id))
        .select(CustomerNotice::as_select())
        .first(conn)
        .optional()
}

/// The notices of a change, newest first.
pub fn for_change(conn: &mut DbConn, change_id: i64) -> QueryResult<Vec<CustomerNotice>> {
    customer_notices::table
        .filter(customer_notices::change_id.eq(change_id))
        .order(customer_notices::id.desc())
        .select(CustomerNotice::as_select())
        .load(conn)
}

/// When a notice was last sent from the change.
pub fn last_sent_at(conn: &mut DbConn, change_id: i64) -> QueryResult<Option<NaiveDateTime>> {
    customer_notices::table
        .filter(customer_notices::change_id.eq(change_id))
        .filter(customer_notices::state.eq(NoticeState::Sent))
        .select(diesel::dsl::max(customer_notices::sent_at))
        .first(conn)
}

/// Draft → sent. `false` when the notice is no longer a draft.
pub fn mark_sent(conn: &mut DbConn, nid: i64, by: i64, at: NaiveDateTime) -> QueryResult<bool> {
    let n = diesel::update(
        customer_notices::table
            .filter(customer_notices::id.eq(nid))
            .filter(customer_notices::state.eq(NoticeState::Draft)),
    )
    .set((
        customer_notices::state.eq(NoticeState::Sent),
        customer_notices::approved_by.eq(by),
        customer_notices::sent_at.eq(at),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Draft → discarded. `false` when the notice is no longer a draft.
pub fn mark_discarded(
    conn: &mut DbConn,
    nid: i64,
    by: i64,
    at: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(
        customer_notices::table
            .filter(customer_notices::id.eq(nid))
            .filter(customer_notices::state.eq(NoticeState::Draft)),
    )
    .set((
        customer_notices::state.eq(NoticeState::Discarded),
        customer_notices::discarded_by.eq(by),
        customer_notices::discarded_at.eq(at),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// The root of an entity's scope (the entity itself when it has no parent); `None` when
/// the entity does not exist.
pub fn root_of(conn: &mut DbConn, id: &str) -> QueryResult<Option<String>> {
    let mut at = id.to_string();
    // Bounded: scopes are a few levels deep; a cycle cannot loop for ever.
    for _ in 0..64 {
        let parent: Option<Option<String>> = entities::table
            .find(&at)
            .select(entities::parent_id)
            .first(conn)
            .optional()?;
        match parent {
            None => return Ok(None),
            Some(None) => return Ok(Some(at)),
            Some(Some(p)) => at = p,
        }
    }
    Ok(Some(at))
}

/// `s` as a LIKE pattern that matches only itself (escape character `\`).
fn like_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// States of a change whose teams may see its customers' contacts: both teams signed it
/// (the states in which customers may also be told about it).
pub fn contact_states() -> Vec<ChangeState> {
    ChangeState::VALUES
        .iter()
        .copied()
        .filter(|&s| change_allows_notices(s))
        .collect()
}

/// Does a change of one of `teams` (as requesting or implementing team), approved or later,
/// have a target at or below `root`? Targets store their scope path from the root
/// down (`root/site`), empty for a root itself.
pub fn team_change_affects_root(
    conn: &mut DbConn,
    teams: &[String],
    root: &str,
) -> QueryResult<bool> {
    if teams.is_empty() {
        return Ok(false);
    }
    let theirs = changes::table
        .filter(
            changes::requesting_team
                .eq_any(teams)
                .or(changes::implementing_team.eq_any(teams)),
        )
        // Both teams signed it (approved or later): a change one person can submit, or one
        // that was cancelled or rejected, opens no contacts.
        .filter(changes::state.eq_any(contact_states()))
        .select(changes::id);
    let below = format!("{}/%", like_literal(root));
    let hit: Option<i64> = change_targets::table
        .filter(change_targets::change_id.eq_any(theirs))
        .filter(
            change_targets::scope_path
                .eq(root)
                .or(change_targets::scope_path.like(below).escape('\\'))
                .or(change_targets::scope_path
                    .eq("")
                    .and(change_targets::entity_id.eq(root))),
        )
        .select(change_targets::change_id)
        .first(conn)
        .optional()?;
    Ok(hit.is_some())
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_literal_escapes_wildcards() {
        assert_eq!(super::like_literal("org_1%\\x"), "org\\_1\\%\\\\x");
    }
}

//! Sign-offs that expire (`signoffs_expire_after`): which open changes have one to remind
//! its signer about or to record as expired, and the once-only marks on the sign-off rows.
//! Whether a sign-off counts is never read from these marks: `domain::signoff::expiry`
//! decides from its time; the marks only say what was done about it.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{changes, signoffs};
use super::DbConn;
use crate::domain::ChangeState;

/// The states in which an expiring sign-off matters (before execution).
const OPEN: [ChangeState; 2] = [ChangeState::AwaitingSignoff, ChangeState::Approved];

/// The open changes of `operation` with a sign-off that is not stale, was given at or
/// before `signed_by` and whose expiry is not recorded yet.
pub fn changes_with_expired(
    conn: &mut DbConn,
    operation: &str,
    signed_by: NaiveDateTime,
) -> QueryResult<Vec<i64>> {
    signoffs::table
        .inner_join(changes::table)
        .filter(changes::operation.eq(operation))
        .filter(changes::state.eq_any(OPEN))
        .filter(signoffs::stale.eq(false))
        .filter(signoffs::expiry_recorded_at.is_null())
        .filter(signoffs::created_at.le(signed_by))
        .select(changes::id)
        .distinct()
        .order(changes::id.asc())
        .load(conn)
}

/// The sign-offs (id, change) of open changes of `operation`, not stale and not reminded
/// yet, given at or before `signed_by` and after `expired_before` (not expired yet).
pub fn reminders_due(
    conn: &mut DbConn,
    operation: &str,
    signed_by: NaiveDateTime,
    expired_before: NaiveDateTime,
) -> QueryResult<Vec<(i64, i64)>> {
    signoffs::table
        .inner_join(changes::table)
        .filter(changes::operation.eq(operation))
        .filter(changes::state.eq_any(OPEN))
        .filter(signoffs::stale.eq(false))
        .filter(signoffs::reminded_at.is_null())
        .filter(signoffs::created_at.le(signed_by))
        .filter(signoffs::created_at.gt(expired_before))
        .select((signoffs::id, signoffs::change_id))
        .order(signoffs::id.asc())
        .load(conn)
}

/// Mark sign-off `id` as reminded, unless it already was: `true` when this call marked it
/// (the caller then writes the reminder, in the same transaction).
pub fn mark_reminded(conn: &mut DbConn, id: i64, at: NaiveDateTime) -> QueryResult<bool> {
    diesel::update(
        signoffs::table
            .find(id)
            .filter(signoffs::reminded_at.is_null()),
    )
    .set(signoffs::reminded_at.eq(at))
    .execute(conn)
    .map(|n| n == 1)
}

/// Mark sign-off `id`'s expiry as recorded, unless it already was: `true` when this call
/// marked it (the caller then records the event, in the same transaction).
pub fn mark_expiry_recorded(conn: &mut DbConn, id: i64, at: NaiveDateTime) -> QueryResult<bool> {
    diesel::update(
        signoffs::table
            .find(id)
            .filter(signoffs::expiry_recorded_at.is_null()),
    )
    .set(signoffs::expiry_recorded_at.eq(at))
    .execute(conn)
    .map(|n| n == 1)
}

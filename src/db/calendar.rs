//! The change calendar's storage: freezes, lockdowns, the two-person proposals, the
//! executions a lockdown paused, soft freezes' exceptions and calendar feed tokens.
//! The tables are declared here (not in `schema.rs`): nothing joins them with the rest.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use rand::RngCore;

use super::{now, DbConn};
use crate::domain::calendar::{ProposalAction, ProposalState, Severity};

pub mod tables {
    diesel::table! {
        freezes (id) {
            id -> BigInt,
            name -> Text,
            severity -> Text,
            starts_at -> Timestamp,
            ends_at -> Nullable<Timestamp>,
            recurrence -> Nullable<Text>,
            operations -> Text,
            reason -> Text,
            proposed_by -> BigInt,
            confirmed_by -> BigInt,
            created_at -> Timestamp,
            updated_at -> Timestamp,
            lifted_at -> Nullable<Timestamp>,
        }
    }

    diesel::table! {
        lockdowns (id) {
            id -> BigInt,
            reason -> Text,
            proposed_by -> BigInt,
            confirmed_by -> BigInt,
            declared_at -> Timestamp,
            lifted_at -> Nullable<Timestamp>,
            lift_reason -> Nullable<Text>,
            lift_proposed_by -> Nullable<BigInt>,
            lift_confirmed_by -> Nullable<BigInt>,
        }
    }

    diesel::table! {
        calendar_proposals (id) {
            id -> BigInt,
            action -> Text,
            freeze_id -> Nullable<BigInt>,
            lockdown_id -> Nullable<BigInt>,
            spec -> Text,
            reason -> Text,
            state -> Text,
            proposed_by -> BigInt,
            proposed_at -> Timestamp,
            decided_by -> Nullable<BigInt>,
            decided_at -> Nullable<Timestamp>,
            decision_reason -> Nullable<Text>,
        }
    }

    diesel::table! {
        lockdown_pauses (lockdown_id, execution_id) {
            lockdown_id -> BigInt,
            execution_id -> BigInt,
            paused_at -> Timestamp,
            resumed_at -> Nullable<Timestamp>,
        }
    }

    diesel::table! {
        freeze_exceptions (change_id, freeze_id, user_id) {
            change_id -> BigInt,
            freeze_id -> BigInt,
            user_id -> BigInt,
            fingerprint -> Text,
            comment -> Text,
            created_at -> Timestamp,
        }
    }

    diesel::table! {
        calendar_feed_tokens (user_id) {
            user_id -> BigInt,
            token_hash -> Text,
            created_at -> Timestamp,
        }
    }
}

use tables::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = freezes)]
pub struct FreezeRow {
    pub id: i64,
    pub name: String,
    pub severity: Severity,
    pub starts_at: NaiveDateTime,
    pub ends_at: Option<NaiveDateTime>,
    pub recurrence: Option<String>,
    /// JSON array of operation names.
    pub operations: String,
    pub reason: String,
    pub proposed_by: i64,
    pub confirmed_by: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub lifted_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = lockdowns)]
pub struct LockdownRow {
    pub id: i64,
    pub reason: String,
    pub proposed_by: i64,
    pub confirmed_by: i64,
    pub declared_at: NaiveDateTime,
    pub lifted_at: Option<NaiveDateTime>,
    pub lift_reason: Option<String>,
    pub lift_proposed_by: Option<i64>,
    pub lift_confirmed_by: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = calendar_proposals)]
pub struct ProposalRow {
    pub id: i64,
    pub action: ProposalAction,
    pub freeze_id: Option<i64>,
    pub lockdown_id: Option<i64>,
    /// The proposed freeze (create, edit) as JSON; `{}` otherwise.
    pub spec: String,
    pub reason: String,
    pub state: ProposalState,
    pub proposed_by: i64,
    pub proposed_at: NaiveDateTime,
    pub decided_by: Option<i64>,
    pub decided_at: Option<NaiveDateTime>,
    pub decision_reason: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = freeze_exceptions)]
pub struct ExceptionRow {
    pub change_id: i64,
    pub freeze_id: i64,
    pub user_id: i64,
    pub fingerprint: String,
    pub comment: String,
    pub created_at: NaiveDateTime,
}

/// A freeze's stored fields (insert and edit).
pub struct FreezeFields<'a> {
    pub name: &'a str,
    pub severity: Severity,
    pub starts_at: NaiveDateTime,
    pub ends_at: Option<NaiveDateTime>,
    pub recurrence: Option<&'a str>,
    pub operations: String,
    pub reason: &'a str,
}

// ---- freezes ----

/// Every freeze not lifted, oldest first.
pub fn active_freezes(conn: &mut DbConn) -> QueryResult<Vec<FreezeRow>> {
    freezes::table
        .filter(freezes::lifted_at.is_null())
        .order(freezes::id.asc())
        .select(FreezeRow::as_select())
        .load(conn)
}

pub fn freeze(conn: &mut DbConn, id: i64) -> QueryResult<Option<FreezeRow>> {
    freezes::table
        .find(id)
        .select(FreezeRow::as_select())
        .first(conn)
        .optional()
}

pub fn insert_freeze(
    conn: &mut DbConn,
    f: &FreezeFields<'_>,
    proposed_by: i64,
    confirmed_by: i64,
) -> QueryResult<i64> {
    let t = now();
    diesel::insert_into(freezes::table)
        .values((
            freezes::name.eq(f.name),
            freezes::severity.eq(f.severity.as_str()),
            freezes::starts_at.eq(f.starts_at),
            freezes::ends_at.eq(f.ends_at),
            freezes::recurrence.eq(f.recurrence),
            freezes::operations.eq(&f.operations),
            freezes::reason.eq(f.reason),
            freezes::proposed_by.eq(proposed_by),
            freezes::confirmed_by.eq(confirmed_by),
            freezes::created_at.eq(t),
            freezes::updated_at.eq(t),
        ))
        .returning(freezes::id)
        .get_result(conn)
}

/// Rewrite a freeze that is not lifted; `false` when it is (or does not exist).
pub fn update_freeze(
    conn: &mut DbConn,
    id: i64,
    f: &FreezeFields<'_>,
    confirmed_by: i64,
) -> QueryResult<bool> {
    let n = diesel::update(freezes::table.find(id).filter(freezes::lifted_at.is_null()))
        .set((
            freezes::name.eq(f.name),
            freezes::severity.eq(f.severity.as_str()),
            freezes::starts_at.eq(f.starts_at),
            freezes::ends_at.eq(f.ends_at),
            freezes::recurrence.eq(f.recurrence),
            freezes::operations.eq(&f.operations),
            freezes::reason.eq(f.reason),
            freezes::confirmed_by.eq(confirmed_by),
            freezes::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Lift a freeze; `false` when it was lifted already.
pub fn lift_freeze(conn: &mut DbConn, id: i64) -> QueryResult<bool> {
    let t = now();
    let n = diesel::update(freezes::table.find(id).filter(freezes::lifted_at.is_null()))
        .set((freezes::lifted_at.eq(Some(t)), freezes::updated_at.eq(t)))
        .execute(conn)?;
    Ok(n == 1)
}

// ---- lockdowns ----

/// The lockdown in force, if any.
pub fn active_lockdown(conn: &mut DbConn) -> QueryResult<Option<LockdownRow>> {
    lockdowns::table
        .filter(lockdowns::lifted_at.is_null())
        .order(lockdowns::id.asc())
        .select(LockdownRow::as_select())
        .first(conn)
        .optional()
}

pub fn lockdown(conn: &mut DbConn, id: i64) -> QueryResult<Option<LockdownRow>> {
    lockdowns::table
        .find(id)
        .select(LockdownRow::as_select())
        .first(conn)
        .optional()
}

/// The latest lockdowns, newest first.
pub fn recent_lockdowns(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<LockdownRow>> {
    lockdowns::table
        .order(lockdowns::id.desc())
        .limit(limit)
        .select(LockdownRow::as_select())
        .load(conn)
}

pub fn insert_lockdown(
    conn: &mut DbConn,
    reason: &str,
    proposed_by: i64,
    confirmed_by: i64,
) -> QueryResult<LockdownRow> {
    diesel::insert_into(lockdowns::table)
        .values((
            lockdowns::reason.eq(reason),
            lockdowns::proposed_by.eq(proposed_by),
            lockdowns::confirmed_by.eq(confirmed_by),
            lockdowns::declared_at.eq(now()),
        ))
        .returning(lockdowns::all_columns)
        .get_result(conn)
}

/// Lift the lockdown; `false` when it was lifted already.
pub fn lift_lockdown(
    conn: &mut DbConn,
    id: i64,
    reason: &str,
    proposed_by: i64,
    confirmed_by: i64,
) -> QueryResult<bool> {
    let n = diesel::update(
        lockdowns::table
            .find(id)
            .filter(lockdowns::lifted_at.is_null()),
    )
    .set((
        lockdowns::lifted_at.eq(Some(now())),
        lockdowns::lift_reason.eq(Some(reason)),
        lockdowns::lift_proposed_by.eq(Some(proposed_by)),
        lockdowns::lift_confirmed_by.eq(Some(confirmed_by)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Record that `lockdown` paused `execution` (once).
pub fn record_pause(conn: &mut DbConn, lockdown: i64, execution: i64) -> QueryResult<()> {
    let exists = lockdown_pauses::table
        .find((lockdown, execution))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if !exists {
        diesel::insert_into(lockdown_pauses::table)
            .values((
                lockdown_pauses::lockdown_id.eq(lockdown),
                lockdown_pauses::execution_id.eq(execution),
                lockdown_pauses::paused_at.eq(now()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// The executions `lockdown` paused that its lift has not resumed yet.
pub fn paused_by(conn: &mut DbConn, lockdown: i64) -> QueryResult<Vec<i64>> {
    lockdown_pauses::table
        .filter(lockdown_pauses::lockdown_id.eq(lockdown))
        .filter(lockdown_pauses::resumed_at.is_null())
        .order(lockdown_pauses::execution_id.asc())
        .select(lockdown_pauses::execution_id)
        .load(conn)
}

pub fn mark_resumed(conn: &mut DbConn, lockdown: i64, execution: i64) -> QueryResult<()> {
    diesel::update(lockdown_pauses::table.find((lockdown, execution)))
        .set(lockdown_pauses::resumed_at.eq(Some(now())))
        .execute(conn)?;
    Ok(())
}

// ---- proposals ----

pub struct NewProposal<'a> {
    pub action: ProposalAction,
    pub freeze_id: Option<i64>,
    pub lockdown_id: Option<i64>,
    pub spec: String,
    pub reason: &'a str,
    pub proposed_by: i64,
}

pub fn insert_proposal(conn: &mut DbConn, p: &NewProposal<'_>) -> QueryResult<ProposalRow> {
    diesel::insert_into(calendar_proposals::table)
        .values((
            calendar_proposals::action.eq(p.action.as_str()),
            calendar_proposals::freeze_id.eq(p.freeze_id),
            calendar_proposals::lockdown_id.eq(p.lockdown_id),
            calendar_proposals::spec.eq(&p.spec),
            calendar_proposals::reason.eq(p.reason),
            calendar_proposals::state.eq(ProposalState::Pending.as_str()),
            calendar_proposals::proposed_by.eq(p.proposed_by),
            calendar_proposals::proposed_at.eq(now()),
        ))
        .returning(calendar_proposals::all_columns)
        .get_result(conn)
}

pub fn proposal(conn: &mut DbConn, id: i64) -> QueryResult<Option<ProposalRow>> {
    calendar_proposals::table
        .find(id)
        .select(ProposalRow::as_select())
        .first(conn)
        .optional()
}

/// Take the proposal's row lock (PostgreSQL; SQLite's `BEGIN IMMEDIATE` serialises
/// writers already) and read it: the confirming transaction decides on this row.
pub fn lock_proposal(conn: &mut DbConn, id: i64) -> QueryResult<Option<ProposalRow>> {
    let n = diesel::update(calendar_proposals::table.find(id))
        .set(calendar_proposals::state.eq(calendar_proposals::state))
        .execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    proposal(conn, id)
}

/// Decide a pending proposal; `false` when it is not pending any more.
pub fn decide_proposal(
    conn: &mut DbConn,
    id: i64,
    state: ProposalState,
    by: i64,
    reason: Option<&str>,
) -> QueryResult<bool> {
    let n = diesel::update(
        calendar_proposals::table
            .find(id)
            .filter(calendar_proposals::state.eq(ProposalState::Pending.as_str())),
    )
    .set((
        calendar_proposals::state.eq(state.as_str()),
        calendar_proposals::decided_by.eq(Some(by)),
        calendar_proposals::decided_at.eq(Some(now())),
        calendar_proposals::decision_reason.eq(reason),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Pending proposals (oldest first) and the latest decided ones (newest first).
pub fn proposals(conn: &mut DbConn, pending: bool, limit: i64) -> QueryResult<Vec<ProposalRow>> {
    let q = calendar_proposals::table.select(ProposalRow::as_select());
    if pending {
        q.filter(calendar_proposals::state.eq(ProposalState::Pending.as_str()))
            .order(calendar_proposals::id.asc())
            .limit(limit)
            .load(conn)
    } else {
        q.filter(calendar_proposals::state.ne(ProposalState::Pending.as_str()))
            .order(calendar_proposals::id.desc())
            .limit(limit)
            .load(conn)
    }
}

/// Pending proposals of `action` (on `freeze`, if given).
pub fn pending_count(
    conn: &mut DbConn,
    action: ProposalAction,
    freeze: Option<i64>,
) -> QueryResult<i64> {
    let mut q = calendar_proposals::table
        .filter(calendar_proposals::state.eq(ProposalState::Pending.as_str()))
        .filter(calendar_proposals::action.eq(action.as_str()))
        .into_boxed();
    if let Some(f) = freeze {
        q = q.filter(calendar_proposals::freeze_id.eq(f));
    }
    q.count().get_result(conn)
}

// ---- freeze exceptions ----

pub fn exceptions_of(conn: &mut DbConn, change: i64) -> QueryResult<Vec<ExceptionRow>> {
    freeze_exceptions::table
        .filter(freeze_exceptions::change_id.eq(change))
        .order(freeze_exceptions::created_at.asc())
        .select(ExceptionRow::as_select())
        .load(conn)
}

/// Record an exception; a second one by the same person for the same freeze replaces
/// the first (a new fingerprint, a new comment).
pub fn put_exception(
    conn: &mut DbConn,
    change: i64,
    freeze: i64,
    user: i64,
    fingerprint: &str,
    comment: &str,
) -> QueryResult<()> {
    diesel::delete(freeze_exceptions::table.find((change, freeze, user))).execute(conn)?;
    diesel::insert_into(freeze_exceptions::table)
        .values((
            freeze_exceptions::change_id.eq(change),
            freeze_exceptions::freeze_id.eq(freeze),
            freeze_exceptions::user_id.eq(user),
            freeze_exceptions::fingerprint.eq(fingerprint),
            freeze_exceptions::comment.eq(comment),
            freeze_exceptions::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

// ---- feed tokens ----

/// A new feed token for `user` (replacing any earlier one); the plaintext is returned
/// once, only its SHA-256 is stored (256 random bits, like API tokens).
pub fn new_feed_token(conn: &mut DbConn, user: i64) -> QueryResult<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("csf_{}", hex::encode(bytes));
    diesel::delete(calendar_feed_tokens::table.find(user)).execute(conn)?;
    diesel::insert_into(calendar_feed_tokens::table)
        .values((
            calendar_feed_tokens::user_id.eq(user),
            calendar_feed_tokens::token_hash.eq(super::users::hash_token(&token)),
            calendar_feed_tokens::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(token)
}

/// Whose feed token this is.
pub fn feed_token_user(conn: &mut DbConn, token: &str) -> QueryResult<Option<i64>> {
    calendar_feed_tokens::table
        .filter(calendar_feed_tokens::token_hash.eq(super::users::hash_token(token)))
        .select(calendar_feed_tokens::user_id)
        .first(conn)
        .optional()
}

pub fn revoke_feed_token(conn: &mut DbConn, user: i64) -> QueryResult<bool> {
    Ok(diesel::delete(calendar_feed_tokens::table.find(user)).execute(conn)? > 0)
}

/// Changes with a window that overlaps `[from, to)` (`not_before`/`not_after`), open or
/// executed, at most `limit`, by window start.
pub fn changes_in_range(
    conn: &mut DbConn,
    from: NaiveDateTime,
    to: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<crate::db::models::Change>> {
    use crate::db::models::Change;
    use crate::db::schema::changes;
    use crate::domain::ChangeState as S;
    changes::table
        .filter(
            changes::not_before
                .is_not_null()
                .or(changes::not_after.is_not_null()),
        )
        .filter(changes::not_before.is_null().or(changes::not_before.lt(to)))
        .filter(changes::not_after.is_null().or(changes::not_after.gt(from)))
        .filter(changes::state.ne_all([S::Cancelled, S::Rejected]))
        // Windows with an opening first, on both backends (NULLs sort differently).
        .order((
            changes::not_before.is_null().asc(),
            changes::not_before.asc(),
            changes::id.asc(),
        ))
        .limit(limit)
        .select(Change::as_select())
        .load(conn)
}

/// The changes in `states`, by id, at most `limit`: whom a lockdown is told to.
pub fn changes_in_states(
    conn: &mut DbConn,
    states: &[crate::domain::ChangeState],
    limit: i64,
) -> QueryResult<Vec<i64>> {
    use crate::db::schema::changes;
    changes::table
        .filter(changes::state.eq_any(states.to_vec()))
        .order(changes::id.asc())
        .limit(limit)
        .select(changes::id)
        .load(conn)
}

/// Take the lockdown's row lock if it is still in force (`false`: lifted meanwhile). The
/// runner's pause and the lift's confirmation serialise on it: a pause either commits
/// before the lift reads what the lockdown paused, or sees the lockdown lifted.
pub fn lock_lockdown(conn: &mut DbConn, id: i64) -> QueryResult<bool> {
    let n = diesel::update(
        lockdowns::table
            .find(id)
            .filter(lockdowns::lifted_at.is_null()),
    )
    .set(lockdowns::id.eq(lockdowns::id))
    .execute(conn)?;
    Ok(n == 1)
}

/// Resume an execution that is still paused with a reason starting with `prefix`: back to
/// `baking` when it was paused during a bake, else `running`. `None` when it is not paused
/// so any more (aborted, continued, halted meanwhile): one conditional statement each, so
/// a concurrent writer of the execution is never overwritten.
pub fn resume_paused(
    conn: &mut DbConn,
    execution: i64,
    prefix: &str,
) -> QueryResult<Option<crate::domain::ExecState>> {
    use crate::db::schema::executions;
    use crate::domain::ExecState;
    let like = format!("{}%", prefix.replace(['%', '_'], ""));
    for (baking, to) in [(true, ExecState::Baking), (false, ExecState::Running)] {
        let base = executions::table
            .find(execution)
            .filter(executions::state.eq(ExecState::Paused))
            .filter(executions::pause_reason.like(like.clone()));
        let n = if baking {
            diesel::update(base.filter(executions::bake_until.is_not_null()))
                .set((
                    executions::state.eq(to),
                    executions::pause_reason.eq(None::<String>),
                    executions::updated_at.eq(now()),
                ))
                .execute(conn)?
        } else {
            diesel::update(base.filter(executions::bake_until.is_null()))
                .set((
                    executions::state.eq(to),
                    executions::pause_reason.eq(None::<String>),
                    executions::updated_at.eq(now()),
                ))
                .execute(conn)?
        };
        if n == 1 {
            return Ok(Some(to));
        }
    }
    Ok(None)
}

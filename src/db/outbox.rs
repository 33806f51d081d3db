//! The transactional outbox: mails are rows written in the transaction of the event that
//! causes them; the mailer leases due rows, sends them, and records the outcome.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::{NewOutbox, OutboxRow};
use super::schema::{notification_prefs, outbox, team_members, teams, users};
use super::{now, DbConn};
use crate::domain::hook::OutboxChannel;
use crate::domain::{NotificationMode, OutboxState};
use crate::with_concrete;

/// Insert mails; a (event, recipient) pair already present is left alone, so nobody is
/// mailed twice for one event. Returns how many rows were new.
pub fn enqueue(conn: &mut DbConn, rows: &[NewOutbox]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    // One statement per recipient: an event has a handful, and SQLite cannot combine a
    // multi-row insert with ON CONFLICT in diesel.
    let mut n = 0;
    for row in rows {
        n += with_concrete!(&mut *conn, |c| diesel::insert_into(outbox::table)
            .values(row)
            .on_conflict((outbox::event_key, outbox::recipient))
            .do_nothing()
            .execute(c))?;
    }
    Ok(n)
}

/// (id, email, name) of the members of `team` who are not deactivated (the people mail
/// goes to: a deactivated person is told nothing).
pub fn team_people(conn: &mut DbConn, team: &str) -> QueryResult<Vec<(i64, String, String)>> {
    team_members::table
        .inner_join(teams::table)
        .inner_join(users::table)
        .filter(teams::name.eq(team))
        .filter(users::deactivated_at.is_null())
        .select((users::id, users::email, users::name))
        .order(users::id.asc())
        .load(conn)
}

/// (id, email, name) of change `change_id`'s author (`author_id`), everyone who signed it
/// (any fingerprint) and everyone who commented on it, who are not deactivated.
pub fn participants(
    conn: &mut DbConn,
    change_id: i64,
    author_id: i64,
) -> QueryResult<Vec<(i64, String, String)>> {
    use super::schema::{comments, signoffs};
    let signed = signoffs::table
        .filter(signoffs::change_id.eq(change_id))
        .select(signoffs::user_id);
    let commented = comments::table
        .filter(comments::change_id.eq(change_id))
        .select(comments::user_id);
    users::table
        .filter(
            users::id
                .eq(author_id)
                .or(users::id.eq_any(signed))
                .or(users::id.eq_any(commented)),
        )
        .filter(users::deactivated_at.is_null())
        .select((users::id, users::email, users::name))
        .order(users::id.asc())
        .load(conn)
}

/// [`people`] who are not deactivated (the people mail goes to).
pub fn active_people(conn: &mut DbConn, ids: &[i64]) -> QueryResult<Vec<(i64, String, String)>> {
    users::table
        .filter(users::id.eq_any(ids.to_vec()))
        .filter(users::deactivated_at.is_null())
        .select((users::id, users::email, users::name))
        .order(users::id.asc())
        .load(conn)
}

pub fn people(conn: &mut DbConn, ids: &[i64]) -> QueryResult<Vec<(i64, String, String)>> {
    users::table
        .filter(users::id.eq_any(ids.to_vec()))
        .select((users::id, users::email, users::name))
        .order(users::id.asc())
        .load(conn)
}

/// Everyone's stored preferences for `kind`: user id → mode.
pub fn prefs_for(
    conn: &mut DbConn,
    ids: &[i64],
    kind: &str,
) -> QueryResult<HashMap<i64, NotificationMode>> {
    Ok(notification_prefs::table
        .filter(notification_prefs::user_id.eq_any(ids.to_vec()))
        .filter(notification_prefs::event_kind.eq(kind))
        .select((notification_prefs::user_id, notification_prefs::mode))
        .load::<(i64, NotificationMode)>(conn)?
        .into_iter()
        .collect())
}

pub fn prefs_of(conn: &mut DbConn, user: i64) -> QueryResult<HashMap<String, NotificationMode>> {
    Ok(notification_prefs::table
        .filter(notification_prefs::user_id.eq(user))
        .select((notification_prefs::event_kind, notification_prefs::mode))
        .load::<(String, NotificationMode)>(conn)?
        .into_iter()
        .collect())
}

pub fn set_pref(
    conn: &mut DbConn,
    user: i64,
    kind: &str,
    mode: NotificationMode,
) -> QueryResult<()> {
    diesel::delete(
        notification_prefs::table
            .filter(notification_prefs::user_id.eq(user))
            .filter(notification_prefs::event_kind.eq(kind)),
    )
    .execute(conn)?;
    diesel::insert_into(notification_prefs::table)
        .values((
            notification_prefs::user_id.eq(user),
            notification_prefs::event_kind.eq(kind),
            notification_prefs::mode.eq(mode),
        ))
        .execute(conn)?;
    Ok(())
}

/// Lease up to `limit` due messages of `channel` (mails or hook deliveries) for `owner`.
pub fn claim(
    conn: &mut DbConn,
    owner: &str,
    ttl: chrono::Duration,
    limit: i64,
    channel: OutboxChannel,
) -> QueryResult<Vec<OutboxRow>> {
    let t = now();
    let due = outbox::channel
        .eq(channel)
        .and(outbox::state.eq(OutboxState::Pending))
        .and(outbox::next_attempt_at.le(t))
        .and(
            outbox::lease_owner
                .is_null()
                .or(outbox::lease_expires_at.lt(t)),
        );
    let ids: Vec<i64> = match conn {
        DbConn::Pg(c) => outbox::table
            .filter(due)
            .order(outbox::id.asc())
            .limit(limit)
            .select(outbox::id)
            .for_update()
            .skip_locked()
            .load(c)?,
        DbConn::Sqlite(c) => outbox::table
            .filter(due)
            .order(outbox::id.asc())
            .limit(limit)
            .select(outbox::id)
            .load(c)?,
    };
    if ids.is_empty() {
        return Ok(vec![]);
    }
    diesel::update(outbox::table.filter(outbox::id.eq_any(&ids)).filter(due))
        .set((
            outbox::lease_owner.eq(owner),
            outbox::lease_expires_at.eq(t + ttl),
        ))
        .execute(conn)?;
    outbox::table
        .filter(outbox::id.eq_any(&ids))
        .filter(outbox::lease_owner.eq(owner))
        .order(outbox::id.asc())
        .select(OutboxRow::as_select())
        .load(conn)
}

/// Extend this mailer's lease on one row right before sending it; `false` when the lease
/// was lost (another mailer may own the row now) or the row is no longer pending.
pub fn renew(conn: &mut DbConn, id: i64, owner: &str, ttl: chrono::Duration) -> QueryResult<bool> {
    let n = diesel::update(
        outbox::table
            .find(id)
            .filter(outbox::lease_owner.eq(owner))
            .filter(outbox::state.eq(OutboxState::Pending)),
    )
    .set(outbox::lease_expires_at.eq(Some(now() + ttl)))
    .execute(conn)?;
    Ok(n == 1)
}

/// Record a delivery; `false` when this mailer no longer held the lease.
pub fn mark_sent(conn: &mut DbConn, id: i64, owner: &str) -> QueryResult<bool> {
    let t = now();
    let n = diesel::update(
        outbox::table
            .find(id)
            .filter(outbox::lease_owner.eq(owner))
            .filter(outbox::state.eq(OutboxState::Pending)),
    )
    .set((
        outbox::state.eq(OutboxState::Sent),
        outbox::attempts.eq(outbox::attempts + 1),
        outbox::sent_at.eq(Some(t)),
        outbox::last_error.eq(None::<String>),
        outbox::lease_owner.eq(None::<String>),
        outbox::lease_expires_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Record a failed attempt: retry at `retry_at`, or `dead` when `retry_at` is `None`.
pub fn mark_failed(
    conn: &mut DbConn,
    id: i64,
    owner: &str,
    error: &str,
    retry_at: Option<NaiveDateTime>,
) -> QueryResult<bool> {
    let n = diesel::update(
        outbox::table
            .find(id)
            .filter(outbox::lease_owner.eq(owner))
            .filter(outbox::state.eq(OutboxState::Pending)),
    )
    .set((
        outbox::state.eq(if retry_at.is_some() {
            OutboxState::Pending
        } else {
            OutboxState::Dead
        }),
        outbox::attempts.eq(outbox::attempts + 1),
        outbox::next_attempt_at.eq(retry_at.unwrap_or_else(now)),
        outbox::last_error.eq(Some(error)),
        outbox::lease_owner.eq(None::<String>),
        outbox::lease_expires_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// A dead mail back to pending (admins).
pub fn retry(conn: &mut DbConn, id: i64) -> QueryResult<bool> {
    let n = diesel::update(
        outbox::table
            .find(id)
            .filter(outbox::state.eq(OutboxState::Dead)),
    )
    .set((
        outbox::state.eq(OutboxState::Pending),
        outbox::attempts.eq(0),
        outbox::next_attempt_at.eq(now()),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn get(conn: &mut DbConn, id: i64) -> QueryResult<Option<OutboxRow>> {
    outbox::table
        .find(id)
        .select(OutboxRow::as_select())
        .first(conn)
        .optional()
}

pub fn list(
    conn: &mut DbConn,
    state_filter: Option<&str>,
    change: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<OutboxRow>> {
    let mut q = outbox::table.into_boxed();
    if let Some(s) = state_filter {
        // An unknown state matches nothing, as it always has.
        let states: Vec<OutboxState> = OutboxState::parse(s).into_iter().collect();
        q = q.filter(outbox::state.eq_any(states));
    }
    if let Some(c) = change {
        q = q.filter(outbox::change_id.eq(c));
    }
    q.order(outbox::id.desc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)
}

/// Users with mails waiting for a digest whose oldest is at least as old as `before`.
pub fn digest_due(conn: &mut DbConn, before: NaiveDateTime) -> QueryResult<Vec<i64>> {
    let ids: Vec<Option<i64>> = outbox::table
        .filter(outbox::state.eq(OutboxState::Digest))
        .filter(outbox::created_at.le(before))
        .select(outbox::user_id)
        .distinct()
        .load(conn)?;
    Ok(ids.into_iter().flatten().collect())
}

/// The notifications waiting for `user`'s digest, locked for this transaction on
/// PostgreSQL (SQLite's write transaction already excludes other writers).
pub fn waiting_for_digest(conn: &mut DbConn, user: i64) -> QueryResult<Vec<OutboxRow>> {
    let ids = || {
        outbox::table
            .filter(outbox::state.eq(OutboxState::Digest))
            .filter(outbox::user_id.eq(user))
            .order(outbox::id.asc())
            .select(outbox::id)
    };
    let ids: Vec<i64> = match conn {
        DbConn::Pg(c) => ids().for_update().load(c)?,
        DbConn::Sqlite(c) => ids().load(c)?,
    };
    outbox::table
        .filter(outbox::id.eq_any(ids))
        .filter(outbox::state.eq(OutboxState::Digest))
        .order(outbox::id.asc())
        .select(OutboxRow::as_select())
        .load(conn)
}

pub fn mark_digested(conn: &mut DbConn, ids: &[i64], digest: i64) -> QueryResult<usize> {
    diesel::update(
        outbox::table
            .filter(outbox::id.eq_any(ids.to_vec()))
            .filter(outbox::state.eq(OutboxState::Digest)),
    )
    .set((
        outbox::state.eq(OutboxState::Digested),
        outbox::digest_id.eq(Some(digest)),
    ))
    .execute(conn)
}

pub fn find_by_key(
    conn: &mut DbConn,
    key: &str,
    recipient: &str,
) -> QueryResult<Option<OutboxRow>> {
    outbox::table
        .filter(outbox::event_key.eq(key))
        .filter(outbox::recipient.eq(recipient))
        .select(OutboxRow::as_select())
        .first(conn)
        .optional()
}

/// The mails of change `change_id` with ids above `after`, oldest first, `limit` at most
/// (an evidence bundle pages through them).
pub fn for_change_after(
    conn: &mut DbConn,
    change_id: i64,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<OutboxRow>> {
    outbox::table
        .filter(outbox::change_id.eq(change_id))
        .filter(outbox::id.gt(after))
        .order(outbox::id.asc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)
}

//! Approvals that expire (issue #12, `signoffs_expire_after`). Whether a sign-off still
//! counts is decided in one place, `domain::signoff::expiry` applied by
//! `changes::records`, so screens, the queue and the execute gate agree the moment it
//! expires. This module does what follows from it, each thing once:
//!
//! - the **sweep** ([`sweep`]) records each expired sign-off of an open change (an
//!   audit event `signoffs_expired`, mailed to the change's participants) and moves an
//!   approved change whose approval no longer holds back to `awaiting_signoff`;
//! - the **reminder**: a signer is mailed (`signoff_expiring`) a day before their sign-off
//!   expires, or at half of its lifetime when that is shorter than 2 days;
//! - the execute gate refuses an expired approval itself, and records it the same way
//!   ([`expired_on_current`], [`record_expired`]), whether or not the sweep ran.
//!
//! Once only, even with two processes: each is a write transaction that locks the change
//! row and then marks the sign-off row (`reminded_at`, `expiry_recorded_at`) only if it is
//! not marked yet; the event and its outbox rows are written only by the transaction whose
//! mark took.

use std::time::{Duration as StdDuration, Instant};

use serde::Serialize;

use super::changes::{locked, move_state, policy_for, records};
use crate::db::audit::Actor;
use crate::db::models::{Change, Signoff};
use crate::db::{changes as repo, expiry as marks, now, write_tx, DbConn, Pool, WriteTx};
use crate::domain::event::{Event, SignoffExpiry};
use crate::domain::schema::Lifetime;
use crate::domain::signoff::{self, SignoffRecord};
use crate::domain::{ChangeState, Schema};
use crate::error::AppResult;
use crate::service::events::record;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Sign-offs whose signers were reminded.
    pub reminded: usize,
    /// Sign-offs whose expiry was recorded.
    pub expired: usize,
    /// Changes sent back from `approved` to `awaiting_signoff`.
    pub unapproved: Vec<i64>,
}

/// "72 hours" for a change's operation, when its sign-offs expire.
fn lifetime_of(schema: &Schema, c: &Change) -> Option<Lifetime> {
    schema
        .operation(&c.operation)
        .and_then(|o| o.signoffs_expire_after)
}

fn expiry_of(
    (s, email, _): &(Signoff, String, String),
    rec: &SignoffRecord,
    lifetime: Option<Lifetime>,
) -> Option<SignoffExpiry> {
    Some(SignoffExpiry {
        signoff: s.id,
        email: email.clone(),
        side: s.side,
        signed_at: rec.signed_at,
        expires_at: rec.expires_at?,
        lifetime: lifetime?.to_string(),
    })
}

/// The sign-offs that would count for the current fingerprint but for their age.
pub(crate) fn expired_on_current(
    schema: &Schema,
    c: &Change,
    rows: &[(Signoff, String, String)],
    recs: &[SignoffRecord],
) -> Vec<SignoffExpiry> {
    let fp = c.fingerprint.as_deref().unwrap_or_default();
    let lifetime = lifetime_of(schema, c);
    recs.iter()
        .filter(|r| r.expired_on(fp))
        .filter_map(|r| {
            let row = rows.iter().find(|(s, _, _)| s.id == r.id)?;
            expiry_of(row, r, lifetime)
        })
        .collect()
}

/// "ben@example.com (requester side) signed at 2026-12-01 12:00 UTC, expired at
/// 2026-12-04 12:00 UTC (72 hours after it was given)".
pub fn describe(e: &SignoffExpiry) -> String {
    format!(
        "{} ({} side) signed at {} UTC, expired at {} UTC ({} after it was given)",
        e.email,
        e.side,
        e.signed_at.format("%Y-%m-%d %H:%M"),
        e.expires_at.format("%Y-%m-%d %H:%M"),
        e.lifetime
    )
}

/// Record the expiry of `expired` (from [`expired_on_current`]) once: mark each row and,
/// for those this transaction marked, append `signoffs_expired` (mailed to the
/// participants). `unapproved`: the caller moved the change back for sign-off. Returns
/// the sign-offs recorded now.
pub(crate) fn record_expired(
    conn: &mut WriteTx<'_>,
    actor: &Actor,
    c: &Change,
    expired: Vec<SignoffExpiry>,
    unapproved: bool,
) -> AppResult<Vec<SignoffExpiry>> {
    let t = now();
    let mut fresh = Vec::new();
    for e in expired {
        if marks::mark_expiry_recorded(conn, e.signoff, t)? {
            fresh.push(e);
        }
    }
    if !fresh.is_empty() {
        record(
            conn,
            actor,
            Some(c.id),
            Event::SignoffsExpired {
                signoffs: fresh.clone(),
                unapproved,
            },
        )?;
    }
    Ok(fresh)
}

/// Remind signers and record expiries, for every operation whose sign-offs expire. Safe
/// to run any number of times, from any number of processes.
pub fn sweep(conn: &mut DbConn, schema: &Schema) -> AppResult<Swept> {
    let mut out = Swept::default();
    for op in schema.operations.values() {
        let Some(life) = op.signoffs_expire_after else {
            continue;
        };
        let t = now();
        for (signoff_id, change_id) in marks::reminders_due(
            conn,
            &op.name,
            t - life.reminder_after(),
            t - life.duration(),
        )? {
            if remind(conn, schema, change_id, signoff_id)? {
                out.reminded += 1;
            }
        }
        for id in marks::changes_with_expired(conn, &op.name, now() - life.duration())? {
            let (n, unapproved) = expire(conn, schema, id)?;
            out.expired += n;
            if unapproved {
                out.unapproved.push(id);
            }
        }
    }
    Ok(out)
}

/// Record the expired sign-offs of change `id`, sending it back for sign-off when it was
/// approved and no longer is. Returns (sign-offs recorded, sent back).
fn expire(conn: &mut DbConn, schema: &Schema, id: i64) -> AppResult<(usize, bool)> {
    write_tx(conn, |conn| {
        let c = locked(conn, id)?;
        let Some(op) = schema.operation(&c.operation) else {
            return Ok((0, false));
        };
        if !matches!(
            c.state,
            ChangeState::AwaitingSignoff | ChangeState::Approved
        ) {
            return Ok((0, false));
        }
        let rows = repo::signoffs(conn, id)?;
        let recs = records(conn, schema, &c, &rows)?;
        let expired = expired_on_current(schema, &c, &rows, &recs);
        let fp = c.fingerprint.clone().unwrap_or_default();
        let unapproved = c.state == ChangeState::Approved
            && !expired.is_empty()
            && !signoff::is_approved(&recs, policy_for(op, &c), &fp);
        if unapproved {
            let names: Vec<String> = expired.iter().map(describe).collect();
            move_state(
                conn,
                &Actor::system(),
                id,
                (ChangeState::Approved, ChangeState::AwaitingSignoff),
                format!("sign-offs expired: {}", names.join("; ")),
            )?;
        }
        let recorded = record_expired(conn, &Actor::system(), &c, expired, unapproved)?;
        Ok((recorded.len(), unapproved))
    })
}

/// Remind the signer of sign-off `signoff_id` on change `change_id` that it is about to
/// expire, if it still counts and nobody reminded them yet. `true` when this call did.
fn remind(conn: &mut DbConn, schema: &Schema, change_id: i64, signoff_id: i64) -> AppResult<bool> {
    write_tx(conn, |conn| {
        let c = locked(conn, change_id)?;
        if !matches!(
            c.state,
            ChangeState::AwaitingSignoff | ChangeState::Approved
        ) {
            return Ok(false);
        }
        let lifetime = lifetime_of(schema, &c);
        let rows = repo::signoffs(conn, change_id)?;
        let recs = records(conn, schema, &c, &rows)?;
        let fp = c.fingerprint.as_deref().unwrap_or_default();
        let (Some(rec), Some(row)) = (
            recs.iter().find(|r| r.id == signoff_id),
            rows.iter().find(|(s, _, _)| s.id == signoff_id),
        ) else {
            return Ok(false);
        };
        if !rec.counts_for(fp) || !signoff::reminder_due(rec.signed_at, lifetime, now()) {
            return Ok(false);
        }
        let Some(expiry) = expiry_of(row, rec, lifetime) else {
            return Ok(false);
        };
        if !marks::mark_reminded(conn, signoff_id, now())? {
            return Ok(false);
        }
        record(
            conn,
            &Actor::system(),
            Some(change_id),
            Event::SignoffExpiring(expiry),
        )?;
        Ok(true)
    })
}

/// How often the worker sweeps. A sign-off lives an hour at least, and the execute gate
/// and every screen decide from the clock, not from the sweep: a minute late only delays
/// the `approved` label, the mails and the queue count.
pub const SWEEP_EVERY: StdDuration = StdDuration::from_secs(60);

/// The sweep as the execution worker runs it (`exec::run`), at most every [`SWEEP_EVERY`].
///
/// Why the worker and not the mailer: the sweep changes a change's state, which needs the
/// running schema (each operation's `signoffs_expire_after`, the sign-off policy), as the
/// execute gate does; the worker has it, the mailer (`countersign mailer`) runs without
/// one and only delivers what the outbox holds. The sweep's mails go through that outbox.
/// While the worker is busy with one long execution the sweep waits; the gate and the
/// screens do not depend on it.
#[derive(Debug, Default)]
pub struct Sweeper {
    last: Option<Instant>,
}

impl Sweeper {
    pub fn tick(&mut self, pool: &Pool, schema: &Schema) {
        if self.last.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        if !schema
            .operations
            .values()
            .any(|o| o.signoffs_expire_after.is_some())
        {
            return;
        }
        let swept = pool
            .get()
            .map_err(crate::error::AppError::from)
            .and_then(|mut conn| sweep(&mut conn, schema));
        match swept {
            Ok(s) if s == Swept::default() => {}
            Ok(s) => tracing::info!(
                reminded = s.reminded,
                expired = s.expired,
                unapproved = ?s.unapproved,
                "swept expiring sign-offs"
            ),
            Err(e) => tracing::warn!(error = %e, "could not sweep expiring sign-offs"),
        }
    }
}

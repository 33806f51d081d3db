//! The approval queue: the changes waiting for a sign-off the caller may give, and the
//! count every page shows in its navigation.
//!
//! The count is the queue's length, decided by the same [`access::decide`] as the queue
//! and the change page, never by a second rule in SQL. What makes it cheap is that the
//! queue is a function of audited state: every state change, sign-off and membership
//! change appends an audit event in its own transaction (DESIGN.md), and that bumps
//! `audit_head.last_id`. [`Badges`] remembers, per person, the head the count was
//! computed at; a page whose head is unchanged costs one primary-key read.

use std::collections::HashMap;
use std::sync::Mutex;

use super::changes::{facts_with, policy_for, records_with};
use super::views::ChangeSummaryView;
use super::CurrentUser;
use crate::db::{audit, changes as repo, users, DbConn};
use crate::domain::access::{self, ChangeAction};
use crate::domain::{signoff, Schema, Side};
use crate::error::AppResult;

#[derive(Debug, serde::Serialize)]
pub struct QueueItem {
    #[serde(flatten)]
    pub change: ChangeSummaryView,
    /// The sides the caller's teams still need to sign.
    pub needs: Vec<String>,
    pub missing_requester: u32,
    pub missing_implementer: u32,
    /// Sign-offs the third side (a tier's `also` team) still owes; 0 when none is named.
    pub missing_reviewer: u32,
    pub destructive: bool,
    /// The earliest expiry of a counting sign-off, when it comes within a day.
    pub expires_soon: Option<chrono::NaiveDateTime>,
    /// The freezes its execution window overlaps ("Year end (hard)"; without a window, those
    /// holding now).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub freezes: Vec<String>,
    /// The budget its execution will draw from, its state and whether the change fits
    /// (`None`: it draws from none).
    pub budget: Option<super::budget::BudgetView>,
}

/// Changes waiting for a sign-off from a team the caller is in, oldest first.
pub fn queue(conn: &mut DbConn, schema: &Schema, user: &CurrentUser) -> AppResult<Vec<QueueItem>> {
    if user.teams.is_empty() {
        return Ok(vec![]);
    }
    crate::db::snapshot(conn, |conn| queue_in(conn, schema, user, true))
}

/// The queue; `with_budgets`: also each change's budget (the count needs none).
fn queue_in(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    with_budgets: bool,
) -> AppResult<Vec<QueueItem>> {
    let teams_now = users::user_teams(conn, user.id)?;
    // Operations whose tiers name one of the person's teams as a third side: their
    // changes may wait for that team too (the decision below says whether this one does).
    let reviewed: Vec<String> = schema
        .operations
        .values()
        .filter(|o| {
            o.third_side_teams()
                .any(|t| teams_now.iter().any(|m| m == t))
        })
        .map(|o| o.name.clone())
        .collect();
    let list = repo::awaiting_for_teams(conn, &teams_now, &reviewed)?;
    // A fixed number of queries however long the queue: every sign-off and every
    // signer's teams at once, then the one decision per change.
    let ids: Vec<i64> = list.iter().map(|c| c.id).collect();
    let mut all_rows = repo::signoffs_of(conn, &ids)?;
    let signers: Vec<i64> = {
        let mut v: Vec<i64> = all_rows
            .values()
            .flatten()
            .map(|(s, _, _)| s.user_id)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let teams = users::counting_teams_of_users(conn, &signers)?;
    let freezes = if with_budgets {
        crate::service::calendar::freezes(conn)?
    } else {
        vec![]
    };
    let mut out = Vec::new();
    for c in list {
        let Some(op) = schema.operation(&c.operation) else {
            continue;
        };
        let rows = all_rows.remove(&c.id).unwrap_or_default();
        let recs = records_with(schema, &c, &rows, &teams);
        let fp = c.fingerprint.clone().unwrap_or_default();
        let missing = signoff::missing(&recs, policy_for(op, &c), &fp);
        // The sides this person may sign now and that still need someone.
        let f = facts_with(conn, schema, user, &teams_now, &c, &recs)?;
        let needs: Vec<String> = [
            (Side::Requester, ChangeAction::SignRequester),
            (Side::Implementer, ChangeAction::SignImplementer),
            (Side::Reviewer, ChangeAction::SignReviewer),
        ]
        .into_iter()
        .filter(|(side, action)| missing.of(*side) > 0 && access::decide(&f, *action).is_ok())
        .map(|(side, _)| side.to_string())
        .collect();
        if needs.is_empty() {
            continue;
        }
        let change = ChangeSummaryView::new(schema, &c);
        let budget = if with_budgets {
            super::budget::for_change(conn, schema, &c)?
        } else {
            None
        };
        out.push(QueueItem {
            freezes: crate::service::calendar::marks(&freezes, &c),
            budget,
            destructive: change.destructive,
            change,
            needs,
            missing_requester: missing.requester,
            missing_implementer: missing.implementer,
            missing_reviewer: missing.reviewer,
            expires_soon: signoff::expiring_within(
                &recs,
                &fp,
                crate::db::now(),
                chrono::Duration::days(1),
            ),
        });
    }
    Ok(out)
}

/// The most people whose counts are remembered; past it the table starts over (a count
/// is recomputed, never wrong).
const MAX_REMEMBERED: usize = 10_000;

/// Per-person queue counts, each with the audit head it was computed at.
#[derive(Default)]
pub struct Badges {
    seen: Mutex<HashMap<i64, (i64, usize)>>,
}

impl Badges {
    /// How many changes wait for `user`'s sign-off: `queue(..).len()`, read in one
    /// snapshot with the audit head it belongs to, recomputed only when the head moved.
    pub fn count(
        &self,
        conn: &mut DbConn,
        schema: &Schema,
        user: &CurrentUser,
    ) -> AppResult<usize> {
        if user.teams.is_empty() {
            return Ok(0);
        }
        crate::db::snapshot(conn, |conn| {
            let head = audit::head_id(conn)?;
            if let Some(&(at, n)) = self.lock().get(&user.id) {
                if at == head {
                    return Ok(n);
                }
            }
            let n = queue_in(conn, schema, user, false)?.len();
            self.remember(user.id, head, n);
            Ok(n)
        })
    }

    /// Remember `n` as the count at `head`.
    fn remember(&self, user_id: i64, head: i64, n: usize) {
        let mut seen = self.lock();
        if seen.len() >= MAX_REMEMBERED && !seen.contains_key(&user_id) {
            seen.clear();
        }
        // Never replace a newer count with an older one (two requests racing).
        match seen.get(&user_id) {
            Some(&(at, _)) if at > head => {}
            _ => {
                seen.insert(user_id, (head, n));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (i64, usize)>> {
        // A panic while holding the lock leaves a plain map: still usable.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

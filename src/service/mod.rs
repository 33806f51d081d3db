//! Services: one function per use case, shared by the JSON API, the command line (and
//! later the browser). Each runs its writes in one transaction and enforces the rules
//! of DESIGN.md there, not in handlers.

pub mod accounts;
pub mod admin;
pub mod budget;
pub mod calendar;
pub mod changes;
pub mod contacts;
pub mod events;
pub mod evidence;
pub mod execution;
pub mod expiry;
pub mod hooks;
pub mod inventory;
pub mod notifications;
pub mod people;
pub mod queue;
pub mod restore;
pub mod schemas;
pub mod sso;
pub mod views;

use diesel::prelude::*;

use crate::db::audit::Actor;
use crate::db::models::User;
use crate::db::schema::schema_versions;
use crate::db::{now, users, write_tx, DbConn, WriteTx};
use crate::domain::event::Event;
use crate::domain::Schema;
use crate::error::{AppError, AppResult, ErrorCode};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub is_admin: bool,
    pub teams: Vec<String>,
}

impl CurrentUser {
    pub fn load(conn: &mut DbConn, user: User) -> QueryResult<Self> {
        let teams = users::user_teams(conn, user.id)?;
        Ok(CurrentUser {
            id: user.id,
            email: user.email,
            name: user.name,
            is_admin: user.is_admin,
            teams,
        })
    }

    pub fn actor(&self) -> Actor {
        Actor(self.email.clone())
    }

    pub fn in_team(&self, team: &str) -> bool {
        self.teams.iter().any(|t| t == team)
    }

    /// May this person load inventory? Admins and the teams that implement operations
    /// (the platform teams that own the systems of record).
    pub fn can_write_inventory(&self, schema: &Schema) -> bool {
        self.is_admin || schema.teams().iter().any(|t| self.in_team(t))
    }

    /// Refuse unless the person may read an inventory import's diff: the people who may
    /// import inventory (the stricter of "may import" and "may read entities").
    pub fn require_import_reader(&self, schema: &Schema) -> AppResult<()> {
        if self.can_write_inventory(schema) {
            Ok(())
        } else {
            Err(AppError::new(ErrorCode::Forbidden,
                "only admins and members of an implementing team (those who may import inventory) can read an import",
            ))
        }
    }

    /// Refuse unless the person may import `what` (inventory, contacts).
    pub fn require_inventory_writer(&self, schema: &Schema, what: &str) -> AppResult<()> {
        if self.can_write_inventory(schema) {
            Ok(())
        } else {
            Err(AppError::new(
                ErrorCode::Forbidden,
                format!("only admins and members of an implementing team can import {what}"),
            ))
        }
    }
}

/// Take `email` out of `team`. Every approved change whose approval rested on their
/// sign-off goes back to `awaiting_signoff` in the same transaction, with the reason, so no
/// screen offers to execute or notify on an approval that no longer holds. Returns the
/// changes sent back, or `None` when the person was not a member.
pub fn remove_member(
    conn: &mut DbConn,
    schema: &Schema,
    team: &str,
    email: &str,
    actor: &Actor,
) -> AppResult<Option<Vec<i64>>> {
    write_tx(conn, |tx| {
        let t = users::find_team(tx, team)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::UnknownTeam,
                format!("team `{team}` does not exist"),
            )
        })?;
        let u = users::find_user_by_email(tx, email)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::UnknownUser,
                format!("nobody has the address `{email}`"),
            )
        })?;
        remove_member_in(tx, schema, &t, &u, actor)
    })
}

/// [`remove_member`] inside a write transaction already open (single sign-on takes people
/// out of teams while it signs them in): the one place a membership ends. Call it before
/// the transaction appends anything to the audit trail (the lock order is change row →
/// `audit_head`).
pub fn remove_member_in(
    tx: &mut WriteTx<'_>,
    schema: &Schema,
    t: &crate::db::models::Team,
    u: &crate::db::models::User,
    actor: &Actor,
) -> AppResult<Option<Vec<i64>>> {
    let (team, email) = (t.name.as_str(), u.email.as_str());
    if !users::remove_member(tx, t.id, u.id)? {
        return Ok(None);
    }
    let signed = lock_approved_signed_by(tx, u.id)?;
    events::record(
        tx,
        actor,
        None,
        Event::TeamMemberRemoved {
            team: team.to_string(),
            email: email.to_string(),
        },
    )?;
    let reason = format!("sign-offs no longer count: {email} is no longer a member of `{team}`");
    Ok(Some(send_back_unapproved(
        tx, schema, actor, &signed, &reason,
    )?))
}

/// The approved changes person `user_id` signed (a sign-off not stale), each locked, in id
/// order. Taken before the transaction appends to the audit trail: the lock order is
/// change row → `audit_head`.
pub(crate) fn lock_approved_signed_by(
    conn: &mut WriteTx<'_>,
    user_id: i64,
) -> AppResult<Vec<crate::db::models::Change>> {
    let mut ids = crate::db::changes::approved_signed_by(conn, user_id)?;
    ids.sort_unstable();
    ids.into_iter()
        .map(|id| changes::locked(conn, id))
        .collect()
}

/// Of the changes `locked` (approved when locked), those whose approval no longer holds —
/// a signer left the side's team or was deactivated, so their sign-off is not earned any
/// more (`changes::records`) — go back to `awaiting_signoff` with `reason`. The ones sent
/// back. The one rule for a signer who stops counting, whatever the cause.
pub(crate) fn send_back_unapproved(
    conn: &mut WriteTx<'_>,
    schema: &Schema,
    actor: &Actor,
    locked: &[crate::db::models::Change],
    reason: &str,
) -> AppResult<Vec<i64>> {
    use crate::domain::{signoff, ChangeState};
    let mut back = Vec::new();
    for c in locked {
        let Some(op) = schema.operation(&c.operation) else {
            continue;
        };
        let rows = crate::db::changes::signoffs(conn, c.id)?;
        let recs = changes::records(conn, schema, c, &rows)?;
        let fp = c.fingerprint.clone().unwrap_or_default();
        if c.state == ChangeState::Approved
            && !signoff::is_approved(&recs, changes::policy_for(op, c), &fp)
        {
            changes::move_state(
                conn,
                actor,
                c.id,
                (ChangeState::Approved, ChangeState::AwaitingSignoff),
                reason.to_string(),
            )?;
            back.push(c.id);
        }
    }
    Ok(back)
}

/// Record a schema version (once per hash) with an audit event.
pub fn record_schema(
    conn: &mut DbConn,
    schema: &Schema,
    source: &str,
    actor: &Actor,
) -> AppResult<bool> {
    write_tx(conn, |conn| {
        let known: i64 = schema_versions::table
            .filter(schema_versions::hash.eq(&schema.hash))
            .count()
            .get_result(conn.conn())?;
        if known > 0 {
            return Ok(false);
        }
        diesel::insert_into(schema_versions::table)
            .values((
                schema_versions::hash.eq(&schema.hash),
                schema_versions::source.eq(source),
                schema_versions::loaded_at.eq(now()),
            ))
            .execute(conn.conn())?;
        events::record(
            conn,
            actor,
            None,
            Event::SchemaLoaded {
                hash: schema.hash.clone(),
                kinds: schema.kinds.keys().cloned().collect(),
                operations: schema.operations.keys().cloned().collect(),
            },
        )?;
        Ok(true)
    })
}

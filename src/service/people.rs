//! What an admin (or the command line) does to a person beyond their teams and password:
//! deactivate and reactivate them, and manage their API tokens. The admin pages and
//! `countersign user|token` call these same functions; each act is audited.
//!
//! A deactivated person keeps their row, teams and history. What stops, at once:
//! signing in (`web/pages/login.rs` says so only to the right password), every session
//! and API token (`db::users` loads no deactivated person for a session or a token; the
//! sessions are also deleted), mail to them (`notify::recipients`), and their sign-offs:
//! they count for no team (`db::users::counting_teams_of_users`), the rule that already
//! stops the sign-offs of a signer who left the team, and an approval that rested on them
//! goes back to awaiting sign-off in the same transaction ([`super::send_back_unapproved`]).

use chrono::NaiveDateTime;
use serde::Serialize;

use super::admin::email_of;
use super::{accounts, events::record, CurrentUser};
use crate::db::audit::Actor;
use crate::db::models::User;
use crate::db::users::{self, TokenRow};
use crate::db::{now, write_tx, DbConn, WriteTx};
use crate::domain::event::Event;
use crate::domain::Schema;
use crate::error::{AppError, AppResult, ErrorCode};

/// Who acts: a signed-in person, who must be an admin, or the command line (the server's
/// operator, audited as `cli`).
#[derive(Clone, Copy)]
pub enum Acting<'a> {
    Admin(&'a CurrentUser),
    CommandLine,
}

impl Acting<'_> {
    fn check(&self) -> AppResult<()> {
        match self {
            Acting::Admin(u) if !u.is_admin => Err(AppError::new(
                ErrorCode::Forbidden,
                "only admins manage people and their tokens",
            )),
            _ => Ok(()),
        }
    }

    fn actor(&self) -> Actor {
        match self {
            Acting::Admin(u) => u.actor(),
            Acting::CommandLine => Actor::cli(),
        }
    }

    fn id(&self) -> Option<i64> {
        match self {
            Acting::Admin(u) => Some(u.id),
            Acting::CommandLine => None,
        }
    }
}

fn person(tx: &mut DbConn, email: &str) -> AppResult<User> {
    users::find_user_by_email(tx, email)?.ok_or_else(|| {
        AppError::new(
            ErrorCode::UnknownUser,
            format!("nobody has the address `{email}`"),
        )
    })
}

/// What a deactivation ended.
#[derive(Debug, Clone, Serialize)]
pub struct Deactivated {
    pub sessions_ended: usize,
    /// API tokens that were usable: refused while the person is deactivated.
    pub tokens_suspended: usize,
    /// Approved changes whose approval rested on their sign-off, back to awaiting sign-off.
    pub sent_back: Vec<i64>,
}

fn usable(t: &TokenRow, at: NaiveDateTime) -> bool {
    t.revoked_at.is_none() && t.expires_at.map_or(true, |e| e > at)
}

/// Deactivate the person with address `email`; `None` when they were deactivated already.
/// Refused (409 `cannot_deactivate`) for an admin's own account and for the last active
/// admin: the admin rows are locked first, so two deactivations at once cannot each leave
/// the other as the last.
pub fn deactivate(
    conn: &mut DbConn,
    schema: &Schema,
    by: Acting<'_>,
    email: &str,
) -> AppResult<Option<Deactivated>> {
    by.check()?;
    let email = email_of(email)?;
    write_tx(conn, |tx| {
        let u = person(tx, &email)?;
        if u.deactivated_at.is_some() {
            return Ok(None);
        }
        if by.id() == Some(u.id) {
            return Err(AppError::new(
                ErrorCode::CannotDeactivate,
                "you cannot deactivate your own account: ask another admin",
            ));
        }
        if u.is_admin && users::lock_active_admins(tx)? <= 1 {
            return Err(AppError::new(
                ErrorCode::CannotDeactivate,
                format!("{email} is the last active admin: make someone else an admin first"),
            ));
        }
        let signed = super::lock_approved_signed_by(tx, u.id)?;
        if !users::deactivate(tx, u.id, by.id())? {
            return Ok(None);
        }
        let at = now();
        let tokens_suspended = users::tokens_of(tx, u.id)?
            .iter()
            .filter(|t| usable(t, at))
            .count();
        let sessions_ended = users::end_sessions_except(tx, u.id, None)?;
        record(
            tx,
            &by.actor(),
            None,
            Event::PersonDeactivated {
                email: email.clone(),
                sessions_ended: sessions_ended as u64,
                tokens_suspended: tokens_suspended as u64,
            },
        )?;
        let reason = format!("sign-offs no longer count: {email} is deactivated");
        let sent_back = super::send_back_unapproved(tx, schema, &by.actor(), &signed, &reason)?;
        Ok(Some(Deactivated {
            sessions_ended,
            tokens_suspended,
            sent_back,
        }))
    })
}

/// Reactivate the person with address `email`: they sign in again, their API tokens not
/// revoked or expired work again and their sign-offs count again where they still apply
/// (an approval that went back needs a sign-off to be given again). `false` when they
/// were not deactivated.
pub fn reactivate(conn: &mut DbConn, by: Acting<'_>, email: &str) -> AppResult<bool> {
    by.check()?;
    let email = email_of(email)?;
    write_tx(conn, |tx| {
        let u = person(tx, &email)?;
        if !users::reactivate(tx, u.id)? {
            return Ok(false);
        }
        record(tx, &by.actor(), None, Event::PersonReactivated { email })?;
        Ok(true)
    })
}

/// A person and their API tokens, the newest first.
#[derive(Debug, Clone)]
pub struct PersonTokens {
    pub email: String,
    pub name: String,
    pub deactivated: bool,
    pub tokens: Vec<TokenRow>,
}

/// The API tokens of the person with address `email` (revoked and expired ones too).
pub fn tokens(conn: &mut DbConn, by: Acting<'_>, email: &str) -> AppResult<PersonTokens> {
    by.check()?;
    let email = email_of(email)?;
    crate::db::snapshot(conn, |conn| {
        let u = person(conn, &email)?;
        Ok(PersonTokens {
            tokens: users::tokens_of(conn, u.id)?,
            deactivated: u.deactivated_at.is_some(),
            email: u.email,
            name: u.name,
        })
    })
}

/// Longest token label.
pub const MAX_LABEL_CHARS: usize = 80;

/// A new API token for the person with address `email` (`accounts::create_token`, audited
/// as `token_created` naming them), expiring `days` from now (`None`: never). The token,
/// to be shown once; only its hash is stored. An empty label is `admin` (`cli` from the
/// command line).
pub fn create_token(
    conn: &mut DbConn,
    by: Acting<'_>,
    email: &str,
    label: &str,
    days: Option<u32>,
) -> AppResult<(String, Option<NaiveDateTime>)> {
    by.check()?;
    let email = email_of(email)?;
    let label = match label.trim() {
        "" if matches!(by, Acting::CommandLine) => "cli",
        "" => "admin",
        l => l,
    };
    if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(AppError::new(
            ErrorCode::InvalidForm,
            format!("a token's label is one line of at most {MAX_LABEL_CHARS} characters"),
        ));
    }
    let expires_at = crate::domain::account::token_expiry(now(), days);
    let token = write_tx(conn, |tx: &mut WriteTx<'_>| {
        let u = person(tx, &email)?;
        accounts::create_token(tx, &by.actor(), &u, label, expires_at)
    })?;
    Ok((token, expires_at))
}

/// Revoke API token `id` of the person with address `email` (404 if it is not theirs or
/// is revoked already); audited as `token_revoked` naming them.
pub fn revoke_token(conn: &mut DbConn, by: Acting<'_>, email: &str, id: i64) -> AppResult<()> {
    by.check()?;
    let email = email_of(email)?;
    write_tx(conn, |tx| {
        let u = person(tx, &email)?;
        accounts::revoke_token(tx, &by.actor(), u.id, id, Some(&email))
    })
}

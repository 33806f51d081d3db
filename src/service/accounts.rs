//! Accounts: a person's own password and browser sessions, and what the command line
//! does to accounts (teams, people, passwords, API tokens). Every change here is an
//! audit event; none records a secret.
//!
//! Password hashing (argon2) is slow on purpose, so the web handlers check and hash
//! passwords before they take a pooled connection and hand the hashes in.

use chrono::{Duration, NaiveDateTime};

use super::events::record;
use crate::db::audit::Actor;
use crate::db::models::User;
use crate::db::{users, write_tx, DbConn, WriteTx};
use crate::domain::event::Event;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::CurrentUser;

/// A fresh browser session for the person who just changed their password.
pub struct NewSession {
    pub token: String,
    pub csrf: String,
    /// How many of their other sessions were signed out.
    pub others_ended: usize,
}

/// Change one's own password: `old_hash` is the stored hash the current password was
/// checked against (outside this transaction), `new_hash` the new one. Every session of
/// the person ends, the current one included, and a new one is issued for the browser
/// that made the change. Clears `must_change_password`.
#[tracing::instrument(name = "accounts::change_password", skip_all, fields(user = user.id))]
pub fn change_password(
    conn: &mut DbConn,
    user: &CurrentUser,
    old_hash: &str,
    new_hash: &str,
    session_ttl: Duration,
) -> AppResult<NewSession> {
    write_tx(conn, |tx| {
        if !users::replace_password_hash(tx, user.id, old_hash, new_hash)? {
            return Err(AppError::new(ErrorCode::PasswordChangedMeanwhile,
                "Your password was changed in the meantime (in another session or by an admin). Nothing was saved; try again with the password that is now current.",
            ));
        }
        // All of them, the current one too: it is re-issued below with a new token.
        let ended = users::end_sessions_except(tx, user.id, None)?;
        let (token, csrf) = users::create_session(tx, user.id, session_ttl)?;
        let others_ended = ended.saturating_sub(1);
        record(
            tx,
            &user.actor(),
            None,
            Event::PasswordChanged {
                other_sessions_ended: others_ended as u64,
            },
        )?;
        Ok(NewSession {
            token,
            csrf,
            others_ended,
        })
    })
}

/// Sign out one of one's own sessions by its public id (404 for anybody else's).
/// Returns whether it was the session of `current` (the caller then clears the cookie).
#[tracing::instrument(name = "accounts::revoke_session", skip_all, fields(user = user.id))]
pub fn revoke_session(
    conn: &mut DbConn,
    user: &CurrentUser,
    public_id: &str,
    current: &str,
) -> AppResult<bool> {
    write_tx(conn, |tx| {
        let Some(was_current) = users::revoke_session(tx, user.id, public_id, current)? else {
            return Err(AppError::new(
                ErrorCode::NotFound,
                "You have no such session (it may have ended already).",
            ));
        };
        record(
            tx,
            &user.actor(),
            None,
            Event::SessionRevoked {
                session: public_id.to_string(),
                current: was_current,
            },
        )?;
        Ok(was_current)
    })
}

/// Sign out all of one's sessions but the current one; how many ended.
#[tracing::instrument(name = "accounts::revoke_other_sessions", skip_all, fields(user = user.id))]
pub fn revoke_other_sessions(
    conn: &mut DbConn,
    user: &CurrentUser,
    current: &str,
) -> AppResult<usize> {
    write_tx(conn, |tx| {
        let n = users::end_sessions_except(tx, user.id, Some(current))?;
        record(
            tx,
            &user.actor(),
            None,
            Event::OtherSessionsRevoked { sessions: n as u64 },
        )?;
        Ok(n)
    })
}

/// Set a person's password from the command line (a reset, or `user add` with a given
/// password): all their sessions end; `must_change` makes them choose their own at the
/// next sign-in. Audited as `password_reset` (who, whether it must be changed, how many
/// sessions ended; never the password).
#[tracing::instrument(name = "accounts::reset_password", skip_all)]
pub fn reset_password(
    tx: &mut WriteTx<'_>,
    actor: &Actor,
    user: &User,
    password: &str,
    must_change: bool,
) -> AppResult<usize> {
    let ended = users::reset_password(tx, user.id, password, must_change)?;
    record(
        tx,
        actor,
        None,
        Event::PasswordReset {
            email: user.email.clone(),
            must_change_password: must_change,
            sessions_ended: ended as u64,
        },
    )?;
    Ok(ended)
}

/// Create team `name` (from the command line): `false` when it already exists.
pub fn create_team(tx: &mut WriteTx<'_>, actor: &Actor, name: &str) -> AppResult<bool> {
    if users::find_team(tx, name)?.is_some() {
        return Ok(false);
    }
    users::create_team(tx, name)?;
    record(
        tx,
        actor,
        None,
        Event::TeamCreated {
            team: name.to_string(),
        },
    )?;
    Ok(true)
}

/// A person as `countersign user add` describes them.
pub struct SaveUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    /// Teams to join (they must exist); teams the person is already in stay.
    pub teams: &'a [String],
    /// Make them an admin (an admin stays one).
    pub admin: bool,
}

/// Create the person `u` describes, or update their name (and admin flag), and add them
/// to its teams: the person as they were found (or created), and whether they are new.
pub fn save_user(tx: &mut WriteTx<'_>, actor: &Actor, u: &SaveUser) -> AppResult<(User, bool)> {
    let mut team_ids = Vec::new();
    for t in u.teams {
        match users::find_team(tx, t)? {
            Some(team) => team_ids.push(team.id),
            None => {
                return Err(AppError::new(
                    ErrorCode::UnknownTeam,
                    format!("team `{t}` does not exist (countersign team add {t})"),
                ))
            }
        }
    }
    let (user, created) = match users::find_user_by_email(tx, u.email)? {
        Some(found) => {
            users::update_user(tx, found.id, u.name, u.admin || found.is_admin)?;
            (found, false)
        }
        None => (users::create_user(tx, u.email, u.name, u.admin)?, true),
    };
    for id in team_ids {
        users::add_member(tx, id, user.id)?;
    }
    record(
        tx,
        actor,
        None,
        Event::UserSaved {
            email: u.email.to_string(),
            name: Some(u.name.to_string()),
            teams: u.teams.to_vec(),
            admin: u.admin,
        },
    )?;
    Ok((user, created))
}

/// Create an API token for `user` on someone's behalf (the event names `user`): the
/// token, shown once; only its hash is stored.
pub fn create_token(
    tx: &mut WriteTx<'_>,
    actor: &Actor,
    user: &User,
    label: &str,
    expires_at: Option<NaiveDateTime>,
) -> AppResult<String> {
    let t = users::create_token_expiring(tx, user.id, label, expires_at)?;
    record(
        tx,
        actor,
        None,
        Event::TokenCreated {
            email: Some(user.email.clone()),
            label: label.to_string(),
            expires_at,
        },
    )?;
    Ok(t)
}

/// Revoke API token `id` of person `user_id` (404 when it is not theirs or was revoked
/// already). `email`: the person's, when someone else revokes it (the event names them).
pub fn revoke_token(
    tx: &mut WriteTx<'_>,
    actor: &Actor,
    user_id: i64,
    id: i64,
    email: Option<&str>,
) -> AppResult<()> {
    if !users::revoke_token(tx, user_id, id)? {
        return Err(AppError::new(
            ErrorCode::NotFound,
            match email {
                None => "no such token of yours (it may be revoked already)".to_string(),
                Some(e) => format!("{e} has no such token (it may be revoked already)"),
            },
        ));
    }
    record(
        tx,
        actor,
        None,
        Event::TokenRevoked {
            token: id,
            email: email.map(str::to_string),
        },
    )?;
    Ok(())
}

//! What admins do to people and teams from the web app: the same services as the command
//! line (`service::accounts`, `service::remove_member`), each act audited, each refused
//! for anyone who is not an admin. Initial and reset passwords are random, shown once to
//! the admin, and must be replaced at the person's next sign-in.

use chrono::NaiveDateTime;
use serde::Serialize;

use super::accounts::{self, SaveUser};
use super::events::record;
use super::CurrentUser;
use crate::db::models::User;
use crate::db::schema::users as users_t;
use crate::db::{users, write_tx, DbConn};
use crate::domain::event::Event;
use crate::domain::schema::team_name_ok;
use crate::domain::Schema;
use crate::error::{AppError, AppResult, ErrorCode};

fn admin(user: &CurrentUser) -> AppResult<()> {
    if user.is_admin {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::Forbidden,
            "only admins manage people and teams",
        ))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PersonRow {
    pub email: String,
    pub name: String,
    pub is_admin: bool,
    pub teams: Vec<String>,
    /// Signs in with a password an admin (or the command line) set, not their own yet.
    pub must_change_password: bool,
    pub has_password: bool,
    /// When they were deactivated (`service::people::deactivate`), and by whom (an admin's
    /// address, or `the command line`).
    pub deactivated: Option<(NaiveDateTime, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TeamRow {
    pub name: String,
    /// (email, name), by email.
    pub members: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Directory {
    pub teams: Vec<TeamRow>,
    pub people: Vec<PersonRow>,
}

/// Every team with its members and every person with their teams (one snapshot).
pub fn directory(conn: &mut DbConn, user: &CurrentUser) -> AppResult<Directory> {
    use diesel::prelude::*;
    admin(user)?;
    crate::db::snapshot(conn, |conn| {
        let teams = users::list_teams(conn)?
            .into_iter()
            .map(|t| {
                Ok(TeamRow {
                    members: users::team_member_emails(conn, &t.name)?,
                    name: t.name,
                })
            })
            .collect::<AppResult<Vec<_>>>()?;
        let people: Vec<User> = users_t::table
            .order(users_t::email.asc())
            .select(User::as_select())
            .load(conn)?;
        let ids: Vec<i64> = people.iter().map(|p| p.id).collect();
        let mut of = users::teams_of_users(conn, &ids)?;
        let email_by_id: std::collections::HashMap<i64, String> =
            people.iter().map(|p| (p.id, p.email.clone())).collect();
        let people = people
            .into_iter()
            .map(|p| PersonRow {
                deactivated: p.deactivated_at.map(|at| {
                    let by = match p.deactivated_by {
                        Some(id) => email_by_id.get(&id).cloned().unwrap_or_default(),
                        None => "the command line".to_string(),
                    };
                    (at, by)
                }),
                teams: {
                    let mut t: Vec<String> =
                        of.remove(&p.id).unwrap_or_default().into_iter().collect();
                    t.sort();
                    t
                },
                has_password: p.password_hash.is_some(),
                must_change_password: p.must_change_password,
                is_admin: p.is_admin,
                email: p.email,
                name: p.name,
            })
            .collect();
        Ok(Directory { teams, people })
    })
}

/// A new team; refused when the name is not a team name or is taken.
pub fn create_team(conn: &mut DbConn, user: &CurrentUser, name: &str) -> AppResult<()> {
    admin(user)?;
    let name = name.trim();
    if !team_name_ok(name) {
        return Err(AppError::new(
            ErrorCode::InvalidTeamName,
            format!("`{}` is not a team name: lowercase letters, digits, `-`, `_`, `.`, at most 64, starting with a letter or digit", name.chars().take(80).collect::<String>()),
        ));
    }
    write_tx(conn, |tx| {
        if !accounts::create_team(tx, &user.actor(), name)? {
            return Err(AppError::new(
                ErrorCode::InvalidTeamName,
                format!("team {name} exists already"),
            ));
        }
        Ok(())
    })
}

/// An email address as typed, trimmed and lowercased; refused when it cannot be one.
pub(super) fn email_of(raw: &str) -> AppResult<String> {
    let email = raw.trim().to_lowercase();
    if !email.contains('@') || email.len() > 254 || email.contains(char::is_whitespace) {
        return Err(AppError::new(
            ErrorCode::InvalidPerson,
            format!(
                "`{}` is not an email address",
                email.chars().take(80).collect::<String>()
            ),
        ));
    }
    Ok(email)
}

/// Add the person with address `email` to `team`.
pub fn add_member(conn: &mut DbConn, user: &CurrentUser, team: &str, email: &str) -> AppResult<()> {
    admin(user)?;
    let email = email_of(email)?;
    write_tx(conn, |tx| {
        let t = users::find_team(tx, team)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::UnknownTeam,
                format!("team `{team}` does not exist"),
            )
        })?;
        let u = users::find_user_by_email(tx, &email)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::UnknownUser,
                format!("nobody has the address `{email}`"),
            )
        })?;
        users::add_member(tx, t.id, u.id)?;
        record(
            tx,
            &user.actor(),
            None,
            Event::TeamMemberAdded {
                team: t.name,
                email,
            },
        )?;
        Ok(())
    })
}

/// Take the person out of `team`: changes whose approval rested on their sign-off go back
/// for sign-off (`service::remove_member`, as from the command line). The changes sent
/// back; `None` when they were not a member.
pub fn remove_member(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    team: &str,
    email: &str,
) -> AppResult<Option<Vec<i64>>> {
    admin(user)?;
    let email = email_of(email)?;
    super::remove_member(conn, schema, team, &email, &user.actor())
}

/// A new person in `teams` (admin or not) with a random initial password, returned to be
/// shown once; they replace it at their first sign-in. Refused for an address in use.
pub fn create_person(
    conn: &mut DbConn,
    user: &CurrentUser,
    email: &str,
    name: &str,
    teams: &[String],
    is_admin: bool,
) -> AppResult<String> {
    admin(user)?;
    let email = email_of(email)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 120 || name.chars().any(char::is_control) {
        return Err(AppError::new(
            ErrorCode::InvalidPerson,
            "name: one line of 1 to 120 characters",
        ));
    }
    let password = crate::domain::account::random_password();
    write_tx(conn, |tx| {
        if users::find_user_by_email(tx, &email)?.is_some() {
            return Err(AppError::new(
                ErrorCode::InvalidPerson,
                format!("{email} has an account already (reset their password instead)"),
            ));
        }
        let saved = SaveUser {
            email: &email,
            name,
            teams,
            admin: is_admin,
        };
        let (u, _) = accounts::save_user(tx, &user.actor(), &saved)?;
        accounts::reset_password(tx, &user.actor(), &u, &password, true)?;
        Ok(())
    })?;
    Ok(password)
}

/// A new random password for `email`, returned to be shown once: all their sessions end
/// and they replace it at their next sign-in (API tokens stay valid).
pub fn reset_password(conn: &mut DbConn, user: &CurrentUser, email: &str) -> AppResult<String> {
    admin(user)?;
    let email = email_of(email)?;
    let password = crate::domain::account::random_password();
    write_tx(conn, |tx| -> AppResult<()> {
        let u = users::find_user_by_email(tx, &email)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::UnknownUser,
                format!("nobody has the address `{email}`"),
            )
        })?;
        accounts::reset_password(tx, &user.actor(), &u, &password, true)?;
        Ok(())
    })?;
    Ok(password)
}

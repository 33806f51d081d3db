//! Accounts from a terminal: `team add|list|remove`, `user add|reset-password|deactivate|
//! reactivate` (`person` is the same command), `token create|list|revoke`. The account
//! operations themselves are `service::accounts` and `service::people`.

use clap::Subcommand;

use super::{app_err, open};
use crate::config::Config;
use crate::db::audit::Actor;
use crate::db::{users, write_tx};
use crate::domain::schema::team_name_ok;
use crate::error::AppError;
use crate::service::accounts::{self as svc, SaveUser};
use crate::service::people::{self, Acting};

#[derive(Debug, Subcommand)]
pub enum TeamCmd {
    /// Create a team.
    Add { name: String },
    /// List teams.
    List,
    /// Take a person out of a team. Their sign-offs for that team's side stop counting at
    /// once: an approved change they signed goes back for sign-off at its execute gate.
    Remove { team: String, email: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a person (or update their name and add teams).
    Add {
        email: String,
        #[arg(long)]
        name: String,
        /// Team(s) to join; repeat or separate with commas.
        #[arg(long = "team", value_delimiter = ',')]
        teams: Vec<String>,
        /// May verify the audit trail and import inventory.
        #[arg(long)]
        admin: bool,
        /// Read the password for the web app from standard input (otherwise a new person
        /// gets a random initial password, printed once, which they must replace at their
        /// first sign-in). Setting it for an existing person ends their sessions.
        #[arg(long)]
        password_stdin: bool,
        /// With --password-stdin: the person must replace it at the next sign-in.
        #[arg(long, requires = "password_stdin")]
        must_change: bool,
    },
    /// Give a person a new random password, printed once, that they must replace at the
    /// next sign-in; all their sessions end (their API tokens stay valid).
    ResetPassword {
        email: String,
        /// Read the new password from standard input instead (the person's own: it need not
        /// be changed, unless --must-change).
        #[arg(long)]
        password_stdin: bool,
        /// With --password-stdin: the person must replace it at the next sign-in.
        #[arg(long, requires = "password_stdin")]
        must_change: bool,
    },
    /// Deactivate a person: they can no longer sign in, their sessions end, their API tokens
    /// are refused and their sign-offs stop counting (an approved change that rested on one
    /// goes back for sign-off). Refused for the last active admin.
    Deactivate { email: String },
    /// Reactivate a deactivated person: they sign in again and their tokens work again.
    Reactivate { email: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create an API token; it is printed once, only its hash is stored.
    Create {
        email: String,
        #[arg(long, default_value = "cli")]
        label: String,
        /// The token stops working this many days from now (default: it never expires).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::domain::account::MAX_TOKEN_DAYS)))]
        expires_in_days: Option<u32>,
    },
    /// List a person's API tokens (id, label, created, last used, expires, revoked).
    List { email: String },
    /// Revoke one of a person's API tokens by its id (see `token list`).
    Revoke { email: String, id: i64 },
}

/// A password from the first line of standard input, checked by the same rules as the
/// password page.
fn read_password(email: &str) -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    let p = s.trim_end_matches(['\r', '\n']).to_string();
    let problems = crate::domain::account::new_password_problems(&p, &p, email, "");
    if let Some(first) = problems.first() {
        anyhow::bail!(
            "{}",
            first
                .to_string()
                .replace("The new password", "the password")
        );
    }
    Ok(p)
}

/// The password given on standard input, when `password_stdin`.
fn given_password(email: &str, password_stdin: bool) -> anyhow::Result<Option<String>> {
    password_stdin.then(|| read_password(email)).transpose()
}

/// `countersign team add NAME`.
pub(super) fn team_add(name: &str) -> anyhow::Result<i32> {
    if !team_name_ok(name) {
        anyhow::bail!("`{name}` is not a valid team name: lowercase letters, digits, `-`, `_`, `.` (at most 64)");
    }
    let config = Config::from_env()?;
    let (mut conn, _) = open(&config)?;
    let created = write_tx(&mut conn, |conn| {
        svc::create_team(conn, &Actor::cli(), name)
    })
    .map_err(app_err)?;
    println!(
        "{} team {name}",
        if created { "created" } else { "already had" }
    );
    Ok(0)
}

/// `countersign team remove TEAM EMAIL`: the changes whose approval rested on the
/// person's sign-off go back for sign-off.
pub(super) fn team_remove(team: &str, email: &str) -> anyhow::Result<i32> {
    let email = email.trim().to_lowercase();
    let config = Config::from_env()?;
    let (schema, _) = config.load_schema()?;
    let (mut conn, _) = open(&config)?;
    match crate::service::remove_member(&mut conn, &schema, team, &email, &Actor::cli())
        .map_err(app_err)?
    {
        None => println!("{email} was not a member of {team}"),
        Some(back) => {
            println!("removed {email} from {team}");
            for id in back {
                println!(
                    "{} is back to awaiting_signoff: its approval rested on {email}'s sign-off",
                    crate::service::views::number(id)
                );
            }
        }
    }
    Ok(0)
}

/// `countersign team list`.
pub(super) fn team_list() -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let (mut conn, _) = open(&config)?;
    for t in users::list_teams(&mut conn)? {
        let members = users::team_member_emails(&mut conn, &t.name)?;
        println!(
            "{} ({} members): {}",
            t.name,
            members.len(),
            members
                .iter()
                .map(|m| m.0.clone())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(0)
}

/// `countersign user add EMAIL`: a new person without a given password gets a random
/// one, printed once, to be replaced at their first sign-in.
pub(super) fn user_add(
    email: &str,
    name: &str,
    teams: &[String],
    admin: bool,
    password_stdin: bool,
    must_change: bool,
) -> anyhow::Result<i32> {
    let email = email.trim().to_lowercase();
    let given = given_password(&email, password_stdin)?;
    if !email.contains('@') || email.len() > 254 || email.contains(char::is_whitespace) {
        anyhow::bail!("`{email}` is not an email address");
    }
    let config = Config::from_env()?;
    let (mut conn, _) = open(&config)?;
    let msg = write_tx(&mut conn, |conn| -> Result<String, AppError> {
        let saved = SaveUser {
            email: &email,
            name,
            teams,
            admin,
        };
        let (user, created) = svc::save_user(conn, &Actor::cli(), &saved)?;
        let initial = match (&given, created) {
            (Some(p), _) => {
                svc::reset_password(conn, &Actor::cli(), &user, p, must_change)?;
                None
            }
            (None, true) => {
                // Printed, so seen by whoever ran this: the person replaces it.
                let p = crate::web::pages::random_password();
                svc::reset_password(conn, &Actor::cli(), &user, &p, true)?;
                Some(p)
            }
            (None, false) => None,
        };
        Ok(format!(
            "{} {email} ({name}) in {}{}",
            if created { "created" } else { "updated" },
            if teams.is_empty() {
                "no new team".into()
            } else {
                teams.join(", ")
            },
            initial
                .map(|p| format!("\ninitial password (shown once): {p}\n(it must be replaced at the first sign-in)"))
                .unwrap_or_default()
        ))
    })
    .map_err(app_err)?;
    println!("{msg}");
    Ok(0)
}

/// `countersign user reset-password EMAIL`: all the person's sessions end.
pub(super) fn reset_password(
    email: &str,
    password_stdin: bool,
    must_change: bool,
) -> anyhow::Result<i32> {
    let email = email.trim().to_lowercase();
    let given = given_password(&email, password_stdin)?;
    let config = Config::from_env()?;
    let (mut conn, _) = open(&config)?;
    let (printed, ended) = write_tx(&mut conn, |conn| -> Result<_, AppError> {
        let u = users::find_user_by_email(conn, &email)?
            .ok_or_else(|| AppError::not_found("user", &email))?;
        let (p, must) = match &given {
            Some(p) => (p.clone(), must_change),
            None => (crate::web::pages::random_password(), true),
        };
        let ended = svc::reset_password(conn, &Actor::cli(), &u, &p, must)?;
        Ok((given.is_none().then_some(p), ended))
    })
    .map_err(app_err)?;
    eprintln!("password of {email} reset; {ended} session(s) signed out");
    if let Some(p) = printed {
        println!("new password (shown once; to be replaced at the next sign-in): {p}");
    }
    Ok(0)
}

/// `countersign token create EMAIL`: the token on standard output, shown once.
pub(super) fn token_create(
    email: &str,
    label: &str,
    expires_in_days: Option<u32>,
) -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let (mut conn, _) = open(&config)?;
    let (token, expires_at) = people::create_token(
        &mut conn,
        Acting::CommandLine,
        email,
        label,
        expires_in_days,
    )
    .map_err(app_err)?;
    match expires_at {
        Some(at) => eprintln!(
            "API token for {email}, valid until {} UTC (shown once; only its hash is stored):",
            at.format("%Y-%m-%d %H:%M")
        ),
        None => {
            eprintln!("API token for {email}, never expires (shown once; only its hash is stored):")
        }
    }
    println!("{token}");
    Ok(0)
}

/// `countersign token list EMAIL`: one line per token, the newest first.
pub(super) fn token_list(email: &str) -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let (mut conn, _) = open(&config)?;
    let p = people::tokens(&mut conn, Acting::CommandLine, email).map_err(app_err)?;
    let at = |t: Option<chrono::NaiveDateTime>, none: &str| {
        t.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| none.to_string())
    };
    if p.tokens.is_empty() {
        eprintln!("{} has no API token", p.email);
    }
    for t in &p.tokens {
        println!(
            "{}\t{}\tcreated {}\tlast used {}\texpires {}\t{}",
            t.id,
            t.label,
            at(Some(t.created_at), ""),
            at(t.last_used_at, "never"),
            at(t.expires_at, "never"),
            t.revoked_at
                .map(|r| format!("revoked {}", r.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_else(|| "active".into()),
        );
    }
    Ok(0)
}

/// `countersign token revoke EMAIL ID`.
pub(super) fn token_revoke(email: &str, id: i64) -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let (mut conn, _) = open(&config)?;
    people::revoke_token(&mut conn, Acting::CommandLine, email, id).map_err(app_err)?;
    println!("revoked API token {id} of {email}");
    Ok(0)
}

/// `countersign user deactivate EMAIL`.
pub(super) fn deactivate(email: &str) -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let (mut conn, schema) = open(&config)?;
    match people::deactivate(&mut conn, &schema, Acting::CommandLine, email).map_err(app_err)? {
        None => println!("{email} was deactivated already"),
        Some(d) => {
            println!(
                "deactivated {email}: {} session(s) signed out, {} API token(s) refused",
                d.sessions_ended, d.tokens_suspended
            );
            for id in d.sent_back {
                println!(
                    "{} is back to awaiting_signoff: its approval rested on {email}'s sign-off",
                    crate::service::views::number(id)
                );
            }
        }
    }
    Ok(0)
}

/// `countersign user reactivate EMAIL`.
pub(super) fn reactivate(email: &str) -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let (mut conn, _) = open(&config)?;
    if people::reactivate(&mut conn, Acting::CommandLine, email).map_err(app_err)? {
        println!("reactivated {email}: they can sign in again, their API tokens work again");
    } else {
        println!("{email} was not deactivated");
    }
    Ok(0)
}

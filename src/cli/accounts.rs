//! Accounts from a terminal: `team add|list|remove`, `user add|reset-password`,
//! `token create`. The account operations themselves are `service::accounts`.

use clap::Subcommand;

use super::{app_err, open};
use crate::config::Config;
use crate::db::audit::Actor;
use crate::db::{self, users, write_tx};
use crate::domain::schema::team_name_ok;
use crate::error::AppError;
use crate::service::accounts::{self as svc, SaveUser};

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
    let expires_at = crate::domain::account::token_expiry(db::now(), expires_in_days);
    let token = write_tx(&mut conn, |conn| -> Result<String, AppError> {
        let u = users::find_user_by_email(conn, email)?
            .ok_or_else(|| AppError::not_found("user", email))?;
        svc::create_token(conn, &Actor::cli(), &u, label, expires_at)
    })
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

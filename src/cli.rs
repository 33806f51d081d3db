//! The command line (clap). `main.rs` only calls [`run`].

use std::io::BufRead;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::config::Config;
use crate::db::audit::{self, Actor};
use crate::db::{self, users, write_tx, DatabaseUrl};
use crate::domain::event::Event;
use crate::domain::schema::{team_name_ok, Schema};
use crate::domain::ExecState;
use crate::error::{AppError, ErrorCode};
use crate::service::accounts;
use crate::service::events::record;
use crate::web::Application;

#[derive(Debug, Parser)]
#[command(name = "countersign", version, about = "A change-request workflow engine: typed targets, fingerprinted resolutions, dual sign-off.", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the web app and JSON API (migrates the database first).
    Serve(BindArgs),
    /// Create (if absent) countersign-demo.db with demo data, print logins and serve it.
    Demo(DemoArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Schema files.
    #[command(subcommand)]
    Schema(SchemaCmd),
    /// The inventory of entities.
    #[command(subcommand)]
    Inventory(InventoryCmd),
    /// Teams.
    #[command(subcommand)]
    Team(TeamCmd),
    /// People.
    #[command(subcommand)]
    User(UserCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The hash-chained audit trail.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Run only the execution worker (no HTTP), until SIGTERM or Ctrl-C.
    Worker,
    /// Run only the mailer (delivers the outbox), until SIGTERM or Ctrl-C.
    Mailer,
    /// Customer contacts.
    #[command(subcommand)]
    Contacts(ContactsCmd),
    /// Operate on changes from a terminal: show, execute, watch, resume, abort, roll back.
    #[command(subcommand)]
    Change(ChangeCmd),
    /// Run the benchmarks (import, 100k-target change, execution and rollback) on a scratch SQLite file.
    Bench(crate::bench::BenchArgs),
    /// Write a consistent copy of the SQLite database to FILE while the server runs
    /// (VACUUM INTO, checked, then renamed into place). PostgreSQL: use pg_dump (README).
    Backup {
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Replace the configured SQLite database with the backup FILE, after checking it.
    /// Stop the server (and workers, mailers) first. PostgreSQL: use pg_restore (README).
    Restore {
        file: PathBuf,
        /// Replace a database that is already there.
        #[arg(long)]
        force: bool,
    },
}

/// What `backup` and `restore` say on PostgreSQL, where pg_dump and pg_restore do the job.
const PG_BACKUP_HINT: &str = "countersign backup and restore work on the SQLite database; on PostgreSQL use its own tools, which take a consistent snapshot while the server runs:
  pg_dump --format=custom --file FILE \"$DATABASE_URL\"
and, into a new empty database (the server stopped, DATABASE_URL pointing at it):
  pg_restore --no-owner --exit-on-error --dbname \"$DATABASE_URL\" FILE
  countersign audit verify
(README, Backups)";

#[derive(Debug, Subcommand)]
pub enum ContactsCmd {
    /// Import contacts from NDJSON (`-` for stdin): {"entity": ID, "name", "email", "role"}.
    Import {
        file: PathBuf,
        /// Write the good lines even if some are bad.
        #[arg(long)]
        partial: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChangeCmd {
    /// State, blast radius, fingerprint, sign-offs and execution progress of a change.
    Show {
        /// CHG-<n> or <n>.
        change: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Execute an approved change (as a member of its implementing team).
    Execute {
        change: String,
        /// Email of the person executing it.
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        /// The signed fingerprint (`countersign change show` prints it).
        #[arg(long)]
        fingerprint: String,
        /// Run the waves in this process and follow them to the end.
        #[arg(long)]
        wait: bool,
    },
    /// Follow an execution to its end, printing progress (runs a worker in this process).
    Watch { change: String },
    /// Continue a halted execution.
    Resume {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        wait: bool,
    },
    /// Stop an execution for good: pending targets are skipped.
    Abort {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Create the rollback of an executed change (it still needs its sign-offs).
    Rollback {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        rationale: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct BindArgs {
    /// Address to listen on.
    #[arg(long, env = "COUNTERSIGN_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, env = "COUNTERSIGN_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// The demo database file.
    #[arg(long, default_value = "countersign-demo.db")]
    pub db: PathBuf,
    /// Put the demo in this database instead (`postgres://…` or `sqlite://…`), e.g. for
    /// scripts/load on PostgreSQL.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Set up the demo data and exit without serving.
    #[arg(long)]
    pub no_serve: bool,
}

#[derive(Debug, Subcommand)]
pub enum SchemaCmd {
    /// Validate a schema file and print its kinds, operations and hash.
    Check { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum InventoryCmd {
    /// Import entities from an NDJSON file (`-` for standard input). Nothing is written
    /// if any line is bad, unless --partial.
    Import {
        file: PathBuf,
        /// Import the valid lines even if some are bad.
        #[arg(long)]
        partial: bool,
    },
}

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

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain and name the first broken event.
    Verify,
}

fn open(config: &Config) -> anyhow::Result<(db::PooledConn, Schema)> {
    let (schema, source) = config.load_schema()?;
    let pool = db::build_pool(&config.database, 2)?;
    crate::web::prepare_database(&pool, &schema, &source)?;
    let conn = pool.get()?;
    Ok((conn, schema))
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

fn app_err(e: AppError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => {
            let mut config = Config::from_env()?;
            config.bind = args.bind;
            serve(config).await?;
            Ok(0)
        }
        Command::Demo(args) => {
            let mut config = Config::from_env()?;
            config.database = match &args.database_url {
                Some(u) => DatabaseUrl::parse(u)?,
                None => DatabaseUrl::Sqlite(args.db.clone()),
            };
            config.bind = args.bind;
            crate::demo::setup(&config)?;
            if !args.no_serve {
                serve(config).await?;
            }
            Ok(0)
        }
        Command::Migrate => {
            let config = Config::from_env()?;
            let pool = db::build_pool(&config.database, 1)?;
            let applied = db::run_migrations(&mut *pool.get()?)?;
            println!(
                "{} migration(s) applied on {}",
                applied.len(),
                config.database.redacted()
            );
            Ok(0)
        }
        Command::Schema(SchemaCmd::Check { file }) => {
            let source = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            match Schema::from_toml(&source) {
                Ok(s) => {
                    println!("{}: valid", file.display());
                    println!("version {}", s.hash);
                    for k in s.kinds.values() {
                        println!(
                            "  kind {:<14} {}{}",
                            k.name,
                            k.label,
                            k.parent
                                .as_deref()
                                .map(|p| format!(" (inside {p})"))
                                .unwrap_or_default()
                        );
                    }
                    for o in s.operations.values() {
                        println!(
                            "  operation {:<20} {} → {} [{}], implemented by {}, sign-offs {}+{}",
                            o.name,
                            o.label,
                            o.target,
                            o.effect.as_str(),
                            o.implemented_by,
                            o.signoffs.requester,
                            o.signoffs.implementer
                        );
                    }
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    Ok(1)
                }
            }
        }
        Command::Inventory(InventoryCmd::Import { file, partial }) => {
            let config = Config::from_env()?;
            let (mut conn, schema) = open(&config)?;
            let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                Box::new(std::io::BufReader::with_capacity(
                    1 << 20,
                    std::fs::File::open(&file)
                        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?,
                ))
            };
            let lines =
                crate::domain::lines::Lines::new(reader).map(|l| l.map_err(|e| e.to_string()));
            let started = std::time::Instant::now();
            let report = db::inventory::import(&mut conn, &schema, lines, partial, &Actor::cli())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for e in &report.errors {
                eprintln!(
                    "line {}: {}{}",
                    e.line,
                    e.id.as_deref()
                        .map(|i| format!("{i}: "))
                        .unwrap_or_default(),
                    e.message
                );
            }
            if report.rejected as usize > report.errors.len() {
                eprintln!(
                    "… and {} more bad lines",
                    report.rejected as usize - report.errors.len()
                );
            }
            let secs = started.elapsed().as_secs_f64();
            if report.committed {
                println!(
                    "imported {} lines in {secs:.2}s as import {}: {} new, {} updated, {} unchanged, {} rejected",
                    report.lines,
                    report.import.unwrap_or_default(),
                    report.inserted,
                    report.updated,
                    report.unchanged,
                    report.rejected
                );
                Ok(if report.rejected > 0 { 2 } else { 0 })
            } else {
                eprintln!(
                    "{} of {} lines are invalid; nothing was written (fix them or use --partial)",
                    report.rejected, report.lines
                );
                Ok(1)
            }
        }
        Command::Team(TeamCmd::Add { name }) => {
            if !team_name_ok(&name) {
                anyhow::bail!("`{name}` is not a valid team name: lowercase letters, digits, `-`, `_`, `.` (at most 64)");
            }
            let config = Config::from_env()?;
            let (mut conn, _) = open(&config)?;
            let created = write_tx(&mut conn, |conn| -> Result<bool, AppError> {
                if users::find_team(conn, &name)?.is_some() {
                    return Ok(false);
                }
                users::create_team(conn, &name)?;
                record(
                    conn,
                    &Actor::cli(),
                    None,
                    Event::TeamCreated { team: name.clone() },
                )?;
                Ok(true)
            })
            .map_err(app_err)?;
            println!(
                "{} team {name}",
                if created { "created" } else { "already had" }
            );
            Ok(0)
        }
        Command::Team(TeamCmd::Remove { team, email }) => {
            let email = email.trim().to_lowercase();
            let config = Config::from_env()?;
            let (schema, _) = config.load_schema()?;
            let (mut conn, _) = open(&config)?;
            match crate::service::remove_member(&mut conn, &schema, &team, &email, &Actor::cli())
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
        Command::Team(TeamCmd::List) => {
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
        Command::User(UserCmd::Add {
            email,
            name,
            teams,
            admin,
            password_stdin,
            must_change,
        }) => {
            let email = email.trim().to_lowercase();
            let given = if password_stdin {
                Some(read_password(&email)?)
            } else {
                None
            };
            if !email.contains('@') || email.len() > 254 || email.contains(char::is_whitespace) {
                anyhow::bail!("`{email}` is not an email address");
            }
            let config = Config::from_env()?;
            let (mut conn, _) = open(&config)?;
            let msg = write_tx(&mut conn, |conn| -> Result<String, AppError> {
                let mut team_ids = Vec::new();
                for t in &teams {
                    match users::find_team(conn, t)? {
                        Some(team) => team_ids.push(team.id),
                        None => {
                            return Err(AppError::new(ErrorCode::UnknownTeam,
                                format!("team `{t}` does not exist (countersign team add {t})"),
                            ))
                        }
                    }
                }
                let (user, verb) = match users::find_user_by_email(conn, &email)? {
                    Some(u) => {
                        users::update_user(conn, u.id, &name, admin || u.is_admin)?;
                        (u, "updated")
                    }
                    None => (users::create_user(conn, &email, &name, admin)?, "created"),
                };
                for id in team_ids {
                    users::add_member(conn, id, user.id)?;
                }
                record(
                    conn,
                    &Actor::cli(),
                    None,
                    Event::UserSaved {
                        email: email.clone(),
                        name: Some(name.clone()),
                        teams: teams.clone(),
                        admin,
                    },
                )?;
                let initial = match (&given, verb) {
                    (Some(p), _) => {
                        accounts::reset_password(conn, &Actor::cli(), &user, p, must_change)?;
                        None
                    }
                    (None, "created") => {
                        // Printed, so seen by whoever ran this: the person replaces it.
                        let p = crate::web::pages::random_password();
                        accounts::reset_password(conn, &Actor::cli(), &user, &p, true)?;
                        Some(p)
                    }
                    _ => None,
                };
                Ok(format!(
                    "{verb} {email} ({name}) in {}{}",
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
        Command::User(UserCmd::ResetPassword {
            email,
            password_stdin,
            must_change,
        }) => {
            let email = email.trim().to_lowercase();
            let given = if password_stdin {
                Some(read_password(&email)?)
            } else {
                None
            };
            let config = Config::from_env()?;
            let (mut conn, _) = open(&config)?;
            let (printed, ended) = write_tx(&mut conn, |conn| -> Result<_, AppError> {
                let u = users::find_user_by_email(conn, &email)?
                    .ok_or_else(|| AppError::not_found("user", &email))?;
                let (p, must) = match &given {
                    Some(p) => (p.clone(), must_change),
                    None => (crate::web::pages::random_password(), true),
                };
                let ended = accounts::reset_password(conn, &Actor::cli(), &u, &p, must)?;
                Ok((given.is_none().then_some(p), ended))
            })
            .map_err(app_err)?;
            eprintln!("password of {email} reset; {ended} session(s) signed out");
            if let Some(p) = printed {
                println!("new password (shown once; to be replaced at the next sign-in): {p}");
            }
            Ok(0)
        }
        Command::Token(TokenCmd::Create {
            email,
            label,
            expires_in_days,
        }) => {
            let config = Config::from_env()?;
            let (mut conn, _) = open(&config)?;
            let expires_at = crate::domain::account::token_expiry(db::now(), expires_in_days);
            let token = write_tx(&mut conn, |conn| -> Result<String, AppError> {
                let u = users::find_user_by_email(conn, &email)?
                    .ok_or_else(|| AppError::not_found("user", &email))?;
                let t = users::create_token_expiring(conn, u.id, &label, expires_at)?;
                record(
                    conn,
                    &Actor::cli(),
                    None,
                    Event::TokenCreated {
                        email: Some(u.email.clone()),
                        label: label.clone(),
                        expires_at,
                    },
                )?;
                Ok(t)
            })
            .map_err(app_err)?;
            match expires_at {
                Some(at) => eprintln!(
                    "API token for {email}, valid until {} UTC (shown once; only its hash is stored):",
                    at.format("%Y-%m-%d %H:%M")
                ),
                None => eprintln!(
                    "API token for {email}, never expires (shown once; only its hash is stored):"
                ),
            }
            println!("{token}");
            Ok(0)
        }
        Command::Audit(AuditCmd::Verify) => {
            let config = Config::from_env()?;
            let pool = db::build_pool(&config.database, 1)?;
            let mut conn = pool.get()?;
            db::run_migrations(&mut conn)?;
            match audit::verify(&mut conn)? {
                audit::Verdict::Intact { events } => {
                    println!("audit trail intact: {events} events");
                    Ok(0)
                }
                audit::Verdict::Broken { id, reason } => {
                    eprintln!("audit trail BROKEN at event {id}: {reason}");
                    Ok(1)
                }
            }
        }
        Command::Bench(args) => {
            crate::bench::run(args)?;
            Ok(0)
        }
        Command::Backup { file, force } => {
            let config = Config::from_env()?;
            let DatabaseUrl::Sqlite(db) = &config.database else {
                eprintln!("{PG_BACKUP_HINT}");
                return Ok(2);
            };
            let summary = db::backup::backup(db, &file, force)?;
            println!(
                "backup of {} written (a consistent copy as of its last commit before the backup began)",
                db.display()
            );
            print!("{summary}");
            Ok(0)
        }
        Command::Restore { file, force } => {
            let config = Config::from_env()?;
            let DatabaseUrl::Sqlite(db) = &config.database else {
                eprintln!("{PG_BACKUP_HINT}");
                return Ok(2);
            };
            let summary = db::backup::restore(&file, db, force)?;
            println!("restored {} from {}", db.display(), file.display());
            print!("{summary}");
            println!("start the server on it (it applies any migrations newer than the backup)");
            Ok(0)
        }
        Command::Worker => worker().await,
        Command::Mailer => mailer().await,
        Command::Contacts(ContactsCmd::Import { file, partial }) => {
            let config = Config::from_env()?;
            let (mut conn, _schema) = open(&config)?;
            let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?,
                ))
            };
            let lines = crate::domain::lines::Lines::new(reader);
            let report = crate::service::contacts::import(&mut conn, &Actor::cli(), lines, partial)
                .map_err(app_err)?;
            for e in &report.errors {
                eprintln!("line {}: {}", e.line, e.message);
            }
            println!(
                "{} contacts: {} new, {} updated, {} rejected{}",
                report.lines,
                report.inserted,
                report.updated,
                report.rejected,
                if report.committed {
                    ""
                } else {
                    " — nothing written"
                }
            );
            Ok(if report.rejected > 0 && !partial {
                1
            } else {
                0
            })
        }
        Command::Change(cmd) => change_cmd(cmd).await,
    }
}

/// The execution worker alone: leases executions from the shared database, like the one
/// inside `serve`; any number may run against one database.
async fn worker() -> anyhow::Result<i32> {
    let mut config = Config::from_env()?;
    config.worker = true;
    let (schema, source) = config.load_schema()?;
    let pool = db::build_pool(&config.database, 4)?;
    crate::web::prepare_database(&pool, &schema, &source)?;
    tracing::info!(database = %config.database.redacted(), poll_ms = config.poll_ms, "worker started");
    let w = crate::exec::Worker::spawn(
        pool,
        std::sync::Arc::new(schema),
        config,
        std::sync::Arc::new(crate::exec::Wake::default()),
    );
    shutdown_signal().await;
    tracing::info!("stopping: finishing the current batch");
    tokio::task::spawn_blocking(move || w.stop()).await?;
    tracing::info!("worker stopped");
    Ok(0)
}

/// The mailer alone: delivers the outbox shared through the database.
async fn mailer() -> anyhow::Result<i32> {
    let mut config = Config::from_env()?;
    config.mail.mailer = true;
    let (schema, source) = config.load_schema()?;
    let pool = db::build_pool(&config.database, 2)?;
    crate::web::prepare_database(&pool, &schema, &source)?;
    if let crate::config::MailTransport::Dir(d) = &config.mail.transport {
        println!(
            "no COUNTERSIGN_SMTP_HOST: mails are written to {}",
            d.display()
        );
    }
    let m = crate::notify::mailer::Mailer::spawn(pool, config.mail.clone());
    shutdown_signal().await;
    tokio::task::spawn_blocking(move || m.stop()).await?;
    Ok(0)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn cli_user(conn: &mut db::DbConn, email: &str) -> anyhow::Result<crate::service::CurrentUser> {
    let u = users::find_user_by_email(conn, email)?
        .ok_or_else(|| anyhow::anyhow!("no user with email {email} (countersign user add)"))?;
    Ok(crate::service::CurrentUser::load(conn, u)?)
}

fn print_progress(v: &crate::service::execution::ExecutionView) {
    let waves = v
        .waves
        .iter()
        .map(|w| format!("{}/{}", w.done + w.failed + w.skipped, w.size))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "{} execution {}: {} done, {} failed, {} skipped, {} pending of {} (waves {waves})",
        v.change, v.state, v.done, v.failed, v.skipped, v.pending, v.total
    );
    if let Some(r) = &v.halt_reason {
        println!("  halted: {r}");
    }
    for f in v.failures.iter().take(10) {
        println!(
            "  failed: {} {} — {}",
            f.kind,
            f.id,
            f.error.as_deref().unwrap_or("")
        );
    }
}

/// Run a worker in this process and print progress until the execution stops running.
async fn follow(config: Config, pool: db::Pool, schema: Schema, id: i64) -> anyhow::Result<i32> {
    let w = crate::exec::Worker::spawn(
        pool.clone(),
        std::sync::Arc::new(schema),
        config,
        std::sync::Arc::new(crate::exec::Wake::default()),
    );
    let mut last = String::new();
    let v = loop {
        let p = pool.clone();
        let v = tokio::task::spawn_blocking(move || {
            crate::service::execution::progress(&mut *p.get()?, id).map_err(app_err)
        })
        .await??;
        let line = format!("{} {} {} {}", v.state, v.done, v.failed, v.skipped);
        if line != last {
            print_progress(&v);
            last = line;
        }
        if v.state != ExecState::Running {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    tokio::task::spawn_blocking(move || w.stop()).await?;
    Ok(if v.state == ExecState::Completed {
        0
    } else {
        2
    })
}

async fn change_cmd(cmd: ChangeCmd) -> anyhow::Result<i32> {
    use crate::service::{changes as chg, execution as exe};
    let mut config = Config::from_env()?;
    config.poll_ms = config.poll_ms.min(200);
    let (schema, source) = config.load_schema()?;
    let pool = db::build_pool(&config.database, 3)?;
    crate::web::prepare_database(&pool, &schema, &source)?;
    let mut conn = pool.get()?;
    let conn = &mut *conn;
    match cmd {
        ChangeCmd::Show { change, json } => {
            let id = chg::change_id(&change).map_err(app_err)?;
            let v = chg::view(conn, &schema, id).map_err(app_err)?;
            let x = exe::progress(conn, id).ok();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"change": v, "execution": x}))?
                );
                return Ok(0);
            }
            println!("{} {} [{}]", v.number, v.title, v.state);
            println!(
                "  {} ({}) requested by {}, implemented by {}",
                v.operation.label,
                v.operation.effect.map_or("unknown", |e| e.as_str()),
                v.requesting_team,
                v.implementing_team
            );
            println!("  {}", v.summary.text);
            for w in &v.summary.warnings {
                println!("  warning: {w}");
            }
            println!(
                "  fingerprint {}",
                v.fingerprint.as_deref().unwrap_or("(unresolved)")
            );
            for e in v.errors.iter().take(20) {
                println!(
                    "  error{}: {}",
                    e.line.map(|l| format!(" line {l}")).unwrap_or_default(),
                    e.message
                );
            }
            if let Some(x) = x {
                print_progress(&x);
            }
            Ok(0)
        }
        ChangeCmd::Execute {
            change,
            as_user,
            fingerprint,
            wait,
        } => {
            let id = chg::change_id(&change).map_err(app_err)?;
            let user = cli_user(conn, &as_user)?;
            let v = exe::execute(
                conn,
                &schema,
                &user,
                id,
                &exe::ExecuteRequest { fingerprint },
            )
            .map_err(app_err)?;
            println!(
                "{} executing {} targets in {} waves",
                v.change,
                v.total,
                v.waves.len()
            );
            if wait {
                follow(config, pool.clone(), schema, id).await
            } else {
                println!("a worker (serve or `countersign worker`) runs it; follow it with `countersign change watch {}`", v.change);
                Ok(0)
            }
        }
        ChangeCmd::Watch { change } => {
            let id = chg::change_id(&change).map_err(app_err)?;
            exe::progress(conn, id).map_err(app_err)?;
            follow(config, pool.clone(), schema, id).await
        }
        ChangeCmd::Resume {
            change,
            as_user,
            wait,
        } => {
            let id = chg::change_id(&change).map_err(app_err)?;
            let user = cli_user(conn, &as_user)?;
            let v = exe::resume(conn, &schema, &user, id).map_err(app_err)?;
            print_progress(&v);
            if wait {
                follow(config, pool.clone(), schema, id).await
            } else {
                Ok(0)
            }
        }
        ChangeCmd::Abort {
            change,
            as_user,
            reason,
        } => {
            let id = chg::change_id(&change).map_err(app_err)?;
            let user = cli_user(conn, &as_user)?;
            let v = exe::abort(conn, &schema, &user, id, reason.as_deref()).map_err(app_err)?;
            print_progress(&v);
            Ok(0)
        }
        ChangeCmd::Rollback {
            change,
            as_user,
            title,
            rationale,
        } => {
            let id = chg::change_id(&change).map_err(app_err)?;
            let user = cli_user(conn, &as_user)?;
            let rb = exe::rollback(
                conn,
                &schema,
                &user,
                id,
                &exe::RollbackRequest { title, rationale },
            )
            .map_err(app_err)?;
            let v = chg::view(conn, &schema, rb).map_err(app_err)?;
            println!("{} created: {} [{}]", v.number, v.title, v.state);
            println!("  {}", v.summary.text);
            println!(
                "  fingerprint {}",
                v.fingerprint.as_deref().unwrap_or_default()
            );
            Ok(0)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let (schema, source) = config.load_schema()?;
    tracing::info!(database = %config.database.redacted(), schema = %schema.hash, "starting countersign");
    let app = Application::build(config.clone(), schema, &source)?;
    tracing::info!(address = %format!("http://{}", display_addr(&config.bind, app.port())), "listening");
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

fn display_addr(bind: &str, port: u16) -> String {
    match bind.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("{bind}:{port}"),
    }
}

//! The command line (clap). `main.rs` only calls [`run`], which hands each subcommand to
//! its own function, one file per area: `serve` (serve, demo, worker, mailer), `schema`
//! (schema check, migrate, config), `inventory` (inventory and contacts imports),
//! `accounts` (teams, people, tokens), `audit` (verify, backup, restore), `change`,
//! `calendar` (freeze, lockdown, calendar proposals).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::db;
use crate::domain::schema::Schema;
use crate::error::AppError;

mod accounts;
mod audit;
mod calendar;
mod change;
mod inventory;
mod schema;
mod serve;

pub use accounts::{TeamCmd, TokenCmd, UserCmd};
pub use audit::AuditCmd;
pub use calendar::{CalendarCmd, FreezeCmd, LockdownCmd};
pub use change::ChangeCmd;
pub use inventory::{ContactsCmd, InventoryCmd};
pub use schema::{ConfigArgs, SchemaCmd};
pub use serve::{BindArgs, DemoArgs};

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
    /// The environment variables countersign reads (declared in src/config/settings.rs): the
    /// README's table or an `.env.example`.
    Config(ConfigArgs),
    /// Schema files.
    #[command(subcommand)]
    Schema(SchemaCmd),
    /// The inventory of entities.
    #[command(subcommand)]
    Inventory(InventoryCmd),
    /// Teams.
    #[command(subcommand)]
    Team(TeamCmd),
    /// People (`person` is the same command).
    #[command(subcommand, alias = "person")]
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
    /// Freeze windows: list, propose, edit, lift (each confirmed by a second admin).
    #[command(subcommand)]
    Freeze(FreezeCmd),
    /// Lockdown: status, declare, lift (each confirmed by a second admin).
    #[command(subcommand)]
    Lockdown(LockdownCmd),
    /// Calendar proposals: pending, confirm, decline.
    #[command(subcommand)]
    Calendar(CalendarCmd),
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

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => serve::serve_cmd(args).await,
        Command::Demo(args) => serve::demo(args).await,
        Command::Migrate => schema::migrate(),
        Command::Config(args) => schema::print_config(&args),
        Command::Schema(SchemaCmd::Check { file }) => schema::check(&file),
        Command::Inventory(InventoryCmd::Import { file, partial }) => {
            inventory::import_inventory(&file, partial)
        }
        Command::Contacts(ContactsCmd::Import { file, partial }) => {
            inventory::import_contacts(&file, partial)
        }
        Command::Team(TeamCmd::Add { name }) => accounts::team_add(&name),
        Command::Team(TeamCmd::Remove { team, email }) => accounts::team_remove(&team, &email),
        Command::Team(TeamCmd::List) => accounts::team_list(),
        Command::User(UserCmd::Add {
            email,
            name,
            teams,
            admin,
            password_stdin,
            must_change,
        }) => accounts::user_add(&email, &name, &teams, admin, password_stdin, must_change),
        Command::User(UserCmd::ResetPassword {
            email,
            password_stdin,
            must_change,
        }) => accounts::reset_password(&email, password_stdin, must_change),
        Command::Token(TokenCmd::Create {
            email,
            label,
            expires_in_days,
        }) => accounts::token_create(&email, &label, expires_in_days),
        Command::Token(TokenCmd::List { email }) => accounts::token_list(&email),
        Command::Token(TokenCmd::Revoke { email, id }) => accounts::token_revoke(&email, id),
        Command::User(UserCmd::Deactivate { email }) => accounts::deactivate(&email),
        Command::User(UserCmd::Reactivate { email }) => accounts::reactivate(&email),
        Command::Audit(AuditCmd::Verify { bundle: None }) => audit::verify(),
        Command::Audit(AuditCmd::Verify { bundle: Some(file) }) => Ok(audit::verify_bundle(&file)),
        Command::Backup { file, force } => audit::backup(&file, force),
        Command::Restore { file, force } => audit::restore(&file, force),
        Command::Bench(args) => {
            crate::bench::run(args)?;
            Ok(0)
        }
        Command::Worker => serve::worker().await,
        Command::Mailer => serve::mailer().await,
        Command::Change(cmd) => change::run(cmd).await,
        Command::Freeze(cmd) => calendar::freeze(cmd),
        Command::Lockdown(cmd) => calendar::lockdown(cmd),
        Command::Calendar(cmd) => calendar::calendar(cmd),
    }
}

/// A pooled connection to the configured database, migrated, and the running schema.
fn open(config: &Config) -> anyhow::Result<(db::PooledConn, Schema)> {
    let (schema, source) = config.load_schema()?;
    let pool = db::build_pool(&config.database, 2)?;
    crate::web::prepare_database(&pool, &schema, &source)?;
    let conn = pool.get()?;
    Ok((conn, schema))
}

/// `file` to read lines from (`-`: standard input), buffered by `capacity` bytes;
/// `verb` says what failed ("cannot open …").
fn input(file: &Path, verb: &str, capacity: usize) -> anyhow::Result<Box<dyn BufRead>> {
    Ok(if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::with_capacity(
            capacity,
            std::fs::File::open(file)
                .map_err(|e| anyhow::anyhow!("cannot {verb} {}: {e}", file.display()))?,
        ))
    })
}

fn app_err(e: AppError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

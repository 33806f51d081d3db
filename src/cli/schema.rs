//! Setting up: `schema check`, `migrate`, and `config` (the environment variables
//! countersign reads).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::config::{self, Config};
use crate::db;
use crate::domain::schema::Schema;

#[derive(Debug, Subcommand)]
pub enum SchemaCmd {
    /// Validate a schema file and print its kinds, operations and hash.
    Check { file: PathBuf },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ConfigArgs {
    /// Print the README's configuration table (Markdown).
    #[arg(long)]
    pub markdown: bool,
    /// Print an `.env.example`: every variable commented out at its default.
    #[arg(long)]
    pub env_example: bool,
}

/// `countersign migrate`.
pub(super) fn migrate() -> anyhow::Result<i32> {
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

/// `countersign config --markdown | --env-example`.
pub(super) fn print_config(args: &ConfigArgs) -> anyhow::Result<i32> {
    if args.markdown {
        print!("{}", config::markdown_table());
    } else {
        print!("{}", config::env_example());
    }
    Ok(0)
}

/// `countersign schema check FILE`: 1 when the file is not a valid schema.
pub(super) fn check(file: &Path) -> anyhow::Result<i32> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    match Schema::from_toml(&source) {
        Ok(s) => {
            print_schema(file, &s);
            Ok(0)
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            Ok(1)
        }
    }
}

fn print_schema(file: &Path, s: &Schema) {
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
}

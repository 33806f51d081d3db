//! Imports: `inventory import` (entities) and `contacts import`, each from NDJSON.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{app_err, input, open};
use crate::config::Config;
use crate::db::audit::Actor;
use crate::db::inventory::ImportReport;

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
pub enum ContactsCmd {
    /// Import contacts from NDJSON (`-` for stdin): {"entity": ID, "name", "email", "role"}.
    Import {
        file: PathBuf,
        /// Write the good lines even if some are bad.
        #[arg(long)]
        partial: bool,
    },
}

/// `countersign inventory import`: 0 when every line was imported, 2 when some were
/// rejected (--partial), 1 when nothing was written.
pub(super) fn import_inventory(file: &Path, partial: bool) -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let (mut conn, schema) = open(&config)?;
    let reader = input(file, "open", 1 << 20)?;
    let lines = crate::domain::lines::Lines::new(reader).map(|l| l.map_err(|e| e.to_string()));
    let started = std::time::Instant::now();
    let report = crate::db::inventory::import(&mut conn, &schema, lines, partial, &Actor::cli())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    print_rejected(&report);
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

/// The bad lines of an inventory import, on standard error.
fn print_rejected(report: &ImportReport) {
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
}

/// `countersign contacts import`: 1 when a line is bad and not --partial.
pub(super) fn import_contacts(file: &Path, partial: bool) -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let (mut conn, _schema) = open(&config)?;
    let reader = input(file, "read", 8 * 1024)?;
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

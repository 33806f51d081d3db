//! Online backups of the SQLite database and their restores (PostgreSQL: `pg_dump` and
//! `pg_restore`, see the README).
//!
//! A backup is `VACUUM INTO` a temporary file beside the destination: one read transaction,
//! so the copy is the database at one moment while the server keeps writing (WAL readers do
//! not block writers). The copy is synced, checked (`PRAGMA integrity_check`, a countersign
//! database, the audit chain) and only then renamed to its final name, so a crash never
//! leaves a half-written file under that name. A restore copies a checked backup the same
//! way over the configured database, after making sure no process has it open, and removes
//! the old database's `-wal`/`-shm`/`-journal` files, which SQLite would otherwise replay
//! onto the restored one.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};

use super::audit::{self, Verdict};
use super::schema::audit_head;
use super::{DbConn, SQLITE_MIGRATIONS};

/// What a backup (or the backup a restore installed) holds.
#[derive(Debug)]
pub struct Summary {
    pub path: PathBuf,
    pub bytes: u64,
    /// Every table with its row count, by name.
    pub tables: Vec<(String, i64)>,
    /// Applied migration versions, oldest first.
    pub migrations: Vec<String>,
    /// The audit chain's head: the last event's id and hash.
    pub audit_head: (i64, String),
    pub audit: Verdict,
}

impl Summary {
    pub fn rows(&self, table: &str) -> Option<i64> {
        self.tables
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, n)| *n)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} bytes ({:.1} MiB)",
            self.path.display(),
            self.bytes,
            self.bytes as f64 / (1024.0 * 1024.0)
        )?;
        writeln!(f, "integrity_check: ok")?;
        writeln!(
            f,
            "migrations: {} (latest {})",
            self.migrations.len(),
            self.migrations.last().map(String::as_str).unwrap_or("none")
        )?;
        match &self.audit {
            Verdict::Intact { events } => writeln!(
                f,
                "audit trail: intact, {events} events; head event {} hash {}",
                self.audit_head.0, self.audit_head.1
            )?,
            Verdict::Broken { id, reason } => writeln!(
                f,
                "audit trail: BROKEN at event {id}: {reason}; head event {} hash {}",
                self.audit_head.0, self.audit_head.1
            )?,
        }
        let total: i64 = self.tables.iter().map(|(_, n)| n).sum();
        writeln!(f, "{} tables, {total} rows:", self.tables.len())?;
        for (t, n) in &self.tables {
            writeln!(f, "  {t:<28} {n:>12}")?;
        }
        Ok(())
    }
}

/// A file that is removed when dropped, unless [`Partial::keep`] was called: the temporary
/// copy of a backup or a restore that failed half-way.
struct Partial(Option<PathBuf>);

impl Partial {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("partial file")
    }
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// `.NAME.partial-<pid>-<random>` in the directory of `dest` (a rename within one file
/// system is atomic).
fn partial_beside(dest: &Path) -> anyhow::Result<Partial> {
    use rand::RngCore;
    let name = dest
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{} is not a file name", dest.display()))?;
    let mut r = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut r);
    let tmp = dest.with_file_name(format!(
        ".{}.partial-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        hex::encode(r)
    ));
    Ok(Partial(Some(tmp)))
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Make a rename durable: sync the directory that holds the new name.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot sync directory {}: {e}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn sync_file(p: &Path) -> anyhow::Result<()> {
    File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot sync {}: {e}", p.display()))
}

fn open_plain(p: &Path) -> anyhow::Result<SqliteConnection> {
    SqliteConnection::establish(&p.to_string_lossy())
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", p.display()))
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    v: String,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn texts(conn: &mut SqliteConnection, sql: &str) -> QueryResult<Vec<String>> {
    Ok(diesel::sql_query(sql)
        .load::<TextRow>(conn)?
        .into_iter()
        .map(|r| r.v)
        .collect())
}

/// Check a SQLite file and describe it: `PRAGMA integrity_check` must say `ok`, it must be
/// a countersign database (diesel's migrations table with migrations this binary knows,
/// the audit head); the audit chain is verified (the verdict is in the summary).
pub fn inspect(path: &Path) -> anyhow::Result<Summary> {
    check(path, path)
}

/// [`inspect`] the file at `path`, naming it `shown` in messages (a temporary copy is
/// named after the file it copies).
fn check(path: &Path, shown: &Path) -> anyhow::Result<Summary> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", shown.display()))?
        .len();
    let mut conn = open_plain(path)?;
    let problems = texts(
        &mut conn,
        "SELECT integrity_check AS v FROM pragma_integrity_check LIMIT 20",
    )
    .map_err(|e| anyhow::anyhow!("{} is not a readable SQLite database: {e}", shown.display()))?;
    if problems != ["ok"] {
        anyhow::bail!(
            "{} fails PRAGMA integrity_check:\n  {}",
            shown.display(),
            problems.join("\n  ")
        );
    }
    let tables = texts(
        &mut conn,
        "SELECT name AS v FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    for needed in ["__diesel_schema_migrations", "audit_events", "audit_head"] {
        if !tables.iter().any(|t| t == needed) {
            anyhow::bail!(
                "{} is not a countersign database (it has no `{needed}` table)",
                shown.display()
            );
        }
    }
    let migrations = texts(
        &mut conn,
        "SELECT version AS v FROM __diesel_schema_migrations ORDER BY version",
    )?;
    let known: BTreeSet<String> = MigrationSource::<Sqlite>::migrations(&SQLITE_MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("embedded migrations: {e}"))?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let unknown: Vec<&String> = migrations.iter().filter(|m| !known.contains(*m)).collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "{} was written by a newer countersign (migrations this binary does not know: {})",
            shown.display(),
            unknown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut counts = Vec::new();
    for t in tables {
        let n = diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM \"{}\"",
            t.replace('"', "\"\"")
        ))
        .get_result::<CountRow>(&mut conn)?
        .n;
        counts.push((t, n));
    }
    let mut conn = DbConn::Sqlite(conn);
    let head: (i64, String) = audit_head::table
        .select((audit_head::last_id, audit_head::last_hash))
        .first(&mut conn)
        .optional()?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} is not a countersign database (no audit head)",
                shown.display()
            )
        })?;
    let verdict = audit::verify(&mut conn)?;
    Ok(Summary {
        path: path.to_path_buf(),
        bytes,
        tables: counts,
        migrations,
        audit_head: head,
        audit: verdict,
    })
}

/// Write a consistent copy of the SQLite database `source` to `dest` while other processes
/// keep using it. Refuses an existing `dest` unless `force`.
pub fn backup(source: &Path, dest: &Path, force: bool) -> anyhow::Result<Summary> {
    if !source.is_file() {
        anyhow::bail!("there is no database at {}", source.display());
    }
    if dest.exists() && !force {
        anyhow::bail!(
            "{} already exists: choose another name, or --force to replace it",
            dest.display()
        );
    }
    if dest.is_dir() {
        anyhow::bail!("{} is a directory", dest.display());
    }
    if let (Ok(a), Ok(b)) = (source.canonicalize(), dest.canonicalize()) {
        if a == b {
            anyhow::bail!("the backup cannot replace the database itself");
        }
    }
    let tmp = partial_beside(dest)?;
    {
        // The server's own connection settings (WAL, busy timeout): VACUUM INTO reads in
        // one transaction, a snapshot of the last commit before it started.
        let mut conn = super::establish(&super::DatabaseUrl::Sqlite(source.to_path_buf()))
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", source.display()))?;
        let DbConn::Sqlite(c) = &mut conn else {
            unreachable!("a SQLite URL opens a SQLite connection")
        };
        diesel::sql_query("VACUUM INTO ?")
            .bind::<Text, _>(tmp.path().to_string_lossy().to_string())
            .execute(c)
            .map_err(|e| anyhow::anyhow!("VACUUM INTO {} failed: {e}", tmp.path().display()))?;
    }
    sync_file(tmp.path())?;
    let mut summary = check(tmp.path(), dest)?;
    std::fs::rename(tmp.path(), dest).map_err(|e| {
        anyhow::anyhow!(
            "cannot rename {} to {}: {e}",
            tmp.path().display(),
            dest.display()
        )
    })?;
    tmp.keep();
    sync_dir(&parent_dir(dest))?;
    summary.path = dest.to_path_buf();
    Ok(summary)
}

/// Is the database at `path` open in another process (a server, a worker, a CLI command)?
/// An exclusive lock in exclusive locking mode cannot be had while any other connection
/// has the file open in WAL mode, even an idle one.
fn in_use(path: &Path) -> anyhow::Result<bool> {
    let mut c = open_plain(path)?;
    let r = c.batch_execute(
        "PRAGMA busy_timeout = 0; PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; ROLLBACK;",
    );
    drop(c);
    match r {
        Ok(()) => Ok(false),
        Err(e) => {
            let m = e.to_string();
            // Anything else (not a database at all, say) is for the caller to replace.
            Ok(m.contains("locked") || m.contains("busy"))
        }
    }
}

/// Replace the SQLite database `target` with the backup `from`, after checking the backup
/// (integrity, a countersign database this binary can run, an intact audit chain). Refuses
/// a non-empty `target` unless `force`, and always while another process has it open.
pub fn restore(from: &Path, target: &Path, force: bool) -> anyhow::Result<Summary> {
    if !from.is_file() {
        anyhow::bail!("there is no backup at {}", from.display());
    }
    if let (Ok(a), Ok(b)) = (from.canonicalize(), target.canonicalize()) {
        if a == b {
            anyhow::bail!("{} is the configured database itself", from.display());
        }
    }
    let exists = target.exists();
    if exists && std::fs::metadata(target)?.len() > 0 && !force {
        anyhow::bail!(
            "{} already holds a database: stop the server, keep a copy of it (countersign backup FILE), then restore with --force to replace it",
            target.display()
        );
    }
    let dir = parent_dir(target);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let tmp = partial_beside(target)?;
    std::fs::copy(from, tmp.path()).map_err(|e| {
        anyhow::anyhow!(
            "cannot copy {} to {}: {e}",
            from.display(),
            tmp.path().display()
        )
    })?;
    sync_file(tmp.path())?;
    // The checks run on the very bytes that will be installed.
    let mut summary = check(tmp.path(), from).map_err(|e| anyhow::anyhow!("not restored: {e}"))?;
    if let Verdict::Broken { id, reason } = &summary.audit {
        anyhow::bail!("not restored: the backup's audit trail is broken at event {id}: {reason}");
    }
    if exists && in_use(target)? {
        anyhow::bail!(
            "{} is open in another process (a running server, worker or mailer?): stop it first",
            target.display()
        );
    }
    // A stale WAL or journal of the old database would be replayed onto the new one.
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = PathBuf::from(format!("{}{suffix}", target.display()));
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot remove {}: {e}", side.display()),
        }
    }
    std::fs::rename(tmp.path(), target).map_err(|e| {
        anyhow::anyhow!(
            "cannot rename {} to {}: {e}",
            tmp.path().display(),
            target.display()
        )
    })?;
    tmp.keep();
    sync_dir(&dir)?;
    summary.path = target.to_path_buf();
    Ok(summary)
}

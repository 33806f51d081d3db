//! Storage: one diesel [`DbConn`] over SQLite (embedded default) and PostgreSQL, chosen
//! strictly by URL scheme. This module is the only place that builds SQL.

pub mod audit;
pub mod backup;
pub mod budgets;
pub mod calendar;
pub mod changes;
pub mod differences;
pub mod exec;
pub mod expiry;
pub mod hooks;
pub mod imports;
pub mod inventory;
pub mod models;
pub mod notices;
pub mod outbox;
pub mod resolve;
pub mod schema;
pub mod schemas;
pub mod sso;
pub mod text_enum;
pub mod users;

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend. Repository code is written once against this type.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

/// Run the same diesel DSL on the concrete connection, for the few statements the shared
/// backend cannot express (multi-row inserts, `ON CONFLICT`).
#[macro_export]
macro_rules! with_concrete {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $crate::db::AsDbConn::db($conn) {
            $crate::db::DbConn::Sqlite($c) => $body,
            $crate::db::DbConn::Pg($c) => $body,
        }
    };
}

/// Where the data lives, parsed strictly from `DATABASE_URL`. `Debug` shows it without
/// the password (see [`DatabaseUrl::redacted`]).
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let variant = match self {
            DatabaseUrl::Sqlite(_) => "Sqlite",
            DatabaseUrl::Postgres(_) => "Postgres",
        };
        f.debug_tuple(variant).field(&self.redacted()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbConfigError {
    #[error("DATABASE_URL {0:?} has an unknown scheme {1:?}: use postgres://…, postgresql://…, sqlite://PATH or a plain file path")]
    UnknownScheme(String, String),
    #[error("DATABASE_URL is empty: leave it unset for the default sqlite://countersign.db")]
    Empty,
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, DbConfigError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(DbConfigError::Empty);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DbConfigError::Empty);
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some(path) = url.strip_prefix("sqlite:") {
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(DbConfigError::UnknownScheme(
                url.to_string(),
                scheme.to_string(),
            ));
        }
        // A PostgreSQL keyword string ("host=… dbname=…") must never become a file name.
        if url.contains('=') && url.contains(' ') {
            return Err(DbConfigError::UnknownScheme(
                url.to_string(),
                "keyword/value".into(),
            ));
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(url)))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }

    /// A description safe to log (no password).
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}://***@{}", &u[..s], &u[at + 1..]),
                _ => u.clone(),
            },
        }
    }
}

/// An r2d2 manager that picks the backend by URL scheme and reports connection errors
/// (diesel's derived `establish` tries each backend in turn and drops the errors).
#[derive(Debug, Clone)]
pub struct ConnManager {
    url: DatabaseUrl,
}

impl ConnManager {
    pub fn new(url: DatabaseUrl) -> Self {
        Self { url }
    }
}

/// How long a SQLite statement waits for the write lock before failing with "busy".
pub const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// Run a bookkeeping write (a token's or session's last use) that is not worth making a
/// request wait for: on SQLite it gives up after 100 ms instead of waiting up to
/// [`SQLITE_BUSY_TIMEOUT_MS`] behind a long write (an import), and the caller treats a
/// failure as "record it next time". PostgreSQL only waits for the same row.
pub fn best_effort<T>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> diesel::QueryResult<T>,
) -> diesel::QueryResult<T> {
    if let DbConn::Sqlite(c) = conn {
        c.batch_execute("PRAGMA busy_timeout = 100")?;
    }
    let out = f(conn);
    if let DbConn::Sqlite(c) = conn {
        c.batch_execute(&format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))?;
    }
    out
}

/// Bring the planner's statistics up to date after the inventory changed in bulk (an
/// import) and at start-up: `PRAGMA optimize` on SQLite (which re-analyses only tables whose
/// size changed a lot, within an analysis limit), `ANALYZE entities` on PostgreSQL (whose
/// autovacuum would get there later). Plans do not depend on it (the indexes make the
/// scoped queries right without statistics, `tests/api/plans.rs`), so a failure, such as a
/// busy SQLite database, is logged and ignored.
pub fn refresh_statistics(conn: &mut DbConn) {
    let r = match conn {
        DbConn::Sqlite(_) => best_effort(conn, |c| c.batch_execute("PRAGMA optimize=0x10002")),
        DbConn::Pg(c) => c.batch_execute("ANALYZE entities"),
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not refresh the planner's statistics");
    }
}

pub fn establish(url: &DatabaseUrl) -> Result<DbConn, diesel::ConnectionError> {
    match url {
        DatabaseUrl::Sqlite(path) => {
            let mut c = SqliteConnection::establish(&path.to_string_lossy())?;
            c.batch_execute(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; \
                 PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; \
                 PRAGMA mmap_size = 1073741824;",
            ))
            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(DbConn::Sqlite(c))
        }
        DatabaseUrl::Postgres(u) => Ok(DbConn::Pg(PgConnection::establish(u)?)),
    }
}

impl ManageConnection for ConnManager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        establish(&self.url).map_err(r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        <DbConn as Connection>::TransactionManager::is_broken_transaction_manager(conn)
    }
}

pub type Pool = r2d2::Pool<ConnManager>;
pub type PooledConn = PooledConnection<ConnManager>;

pub fn build_pool(url: &DatabaseUrl, max_size: u32) -> anyhow::Result<Pool> {
    // No idle minimum: r2d2 would refill it from background threads, and a short-lived
    // process (a CLI command) could exit while one of them is in the middle of a
    // PostgreSQL handshake (seen as "could not calculate client proof: OpenSSL failure"
    // and a failed exit). Connections are opened on demand and then reused.
    // A pooled SQLite connection is a file handle in this process and cannot go stale, so
    // it is not tested with `SELECT 1` on every check-out (a parse and a step each time:
    // several per request); a PostgreSQL connection can (a server restart), so it is.
    let pool = r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .test_on_check_out(matches!(url, DatabaseUrl::Postgres(_)))
        .connection_timeout(Duration::from_secs(15))
        .build(ConnManager::new(url.clone()))
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", url.redacted()))?;
    Ok(pool)
}

/// Apply pending embedded migrations for the connection's backend.
pub fn run_migrations(conn: &mut DbConn) -> anyhow::Result<Vec<String>> {
    let migrations = match conn {
        DbConn::Sqlite(_) => SQLITE_MIGRATIONS,
        DbConn::Pg(_) => POSTGRES_MIGRATIONS,
    };
    let applied = conn
        .run_pending_migrations(migrations)
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    Ok(applied.iter().map(|v| v.to_string()).collect())
}

/// The connection behind a `DbConn` or a [`WriteTx`] (for [`with_concrete!`]).
pub trait AsDbConn {
    fn db(&mut self) -> &mut DbConn;
}

impl AsDbConn for DbConn {
    fn db(&mut self) -> &mut DbConn {
        self
    }
}

impl AsDbConn for WriteTx<'_> {
    fn db(&mut self) -> &mut DbConn {
        self.conn
    }
}

/// Proof of being inside a write transaction opened by [`write_tx`]. Writes that must
/// commit together with the rest of a use case (above all [`audit::append`], whose chain
/// forks if two appends run outside one serialised transaction) take `&mut WriteTx`, so
/// they cannot be called with a bare pooled connection: only `write_tx` makes one.
///
/// It dereferences to the connection, so repository functions that take `&mut DbConn`
/// accept it as it is; diesel's own `execute`/`load` take [`WriteTx::conn`].
pub struct WriteTx<'c> {
    conn: &'c mut DbConn,
}

impl WriteTx<'_> {
    pub fn conn(&mut self) -> &mut DbConn {
        self.conn
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = DbConn;
    fn deref(&self) -> &DbConn {
        self.conn
    }
}

impl std::ops::DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut DbConn {
        self.conn
    }
}

/// Run `f` in a write transaction. On SQLite it opens with `BEGIN IMMEDIATE` so the write
/// lock is taken up front (a deferred transaction that later upgrades fails under load);
/// on PostgreSQL it is a plain READ COMMITTED transaction and callers take row locks.
/// It must be the outermost transaction (a nested `BEGIN` is refused by both backends).
pub fn write_tx<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut WriteTx<'_>) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    begin(conn, "BEGIN IMMEDIATE", "BEGIN")?;
    let out = f(&mut WriteTx { conn: &mut *conn });
    finish(conn, out)
}

/// Run `f` reading one consistent snapshot of the database: the only way to read several
/// statements that must agree (a change and its execution, a page and its counts). On
/// PostgreSQL the transaction is REPEATABLE READ, READ ONLY (a write inside it fails);
/// SQLite's WAL read transactions are snapshots already. Inside a transaction that is
/// already open (a write transaction, which has its own consistency) it just runs `f`.
pub fn snapshot<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    let depth = <DbConn as Connection>::TransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()?;
    if depth.is_some() {
        return f(conn);
    }
    begin(
        conn,
        "BEGIN DEFERRED",
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    )?;
    let out = f(conn);
    finish(conn, out)
}

fn begin(conn: &mut DbConn, sqlite: &str, pg: &str) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, sqlite),
        DbConn::Pg(c) => AnsiTransactionManager::begin_transaction_sql(c, pg),
    }
}

fn finish<T, E>(conn: &mut DbConn, out: Result<T, E>) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    match out {
        Ok(v) => {
            if let Err(e) = <DbConn as Connection>::TransactionManager::commit_transaction(conn) {
                let _ = <DbConn as Connection>::TransactionManager::rollback_transaction(conn);
                return Err(e.into());
            }
            Ok(v)
        }
        Err(e) => {
            <DbConn as Connection>::TransactionManager::rollback_transaction(conn)?;
            Err(e)
        }
    }
}

/// Current time, truncated to microseconds so both backends store the same value.
pub fn now() -> chrono::NaiveDateTime {
    let t = chrono::Utc::now().naive_utc();
    let micros = t.and_utc().timestamp_micros();
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|d| d.naive_utc())
        .unwrap_or(t)
}

/// Chunk size for `IN (…)` lists and multi-row inserts; stays below SQLite's
/// 32766-variable limit for our widest rows.
pub const CHUNK: usize = 2000;

/// The rows `load` gives for each [`CHUNK`] of `items` (chunked `IN` lists), together.
pub(crate) fn per_chunk<I, T>(
    items: &[I],
    mut load: impl FnMut(&[I]) -> diesel::QueryResult<Vec<T>>,
) -> diesel::QueryResult<Vec<T>> {
    let mut out = Vec::new();
    for chunk in items.chunks(CHUNK) {
        out.extend(load(chunk)?);
    }
    Ok(out)
}

/// The rows `run` changes for each [`CHUNK`] of `items` (a chunked update), summed.
pub(crate) fn count_per_chunk<I>(
    items: &[I],
    mut run: impl FnMut(&[I]) -> diesel::QueryResult<usize>,
) -> diesel::QueryResult<usize> {
    let mut n = 0;
    for chunk in items.chunks(CHUNK) {
        n += run(chunk)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_schemes_are_strict() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://countersign.db").unwrap(),
            DatabaseUrl::Sqlite("countersign.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("/tmp/x.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/x.db".into())
        );
        assert!(matches!(
            DatabaseUrl::parse("postgresql://u:p@localhost/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        let err = DatabaseUrl::parse("mysql://localhost/db").unwrap_err();
        assert!(
            err.to_string().contains("unknown scheme \"mysql\""),
            "{err}"
        );
        assert!(DatabaseUrl::parse("host=localhost dbname=x").is_err());
        assert!(DatabaseUrl::parse("").is_err());
    }

    #[test]
    fn redacts_passwords() {
        let u = DatabaseUrl::parse("postgres://me:secret@db:5432/cs").unwrap();
        assert_eq!(u.redacted(), "postgres://***@db:5432/cs");
    }
}

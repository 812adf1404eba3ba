//! Where window summaries live: PostgreSQL when a DSN is configured, else a SQLite file.
//!
//! One table, `window_summaries`, keyed by `(camera, start_ms)`. Every flush rewrites the
//! windows that changed with their absolute values (`INSERT … ON CONFLICT DO UPDATE`) in
//! one transaction, so writing a window twice is harmless and a failed flush can simply be
//! retried. An update never replaces a row with one that counts fewer frames: after a
//! restart the sink may rebuild a window it already wrote from only part of its frames,
//! and that partial view must not overwrite the complete one.
//!
//! The schema is created by migrations embedded in the binary (`migrations/sqlite`,
//! `migrations/postgres`), run at start; running them again is a no-op.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgPool, SqlitePool};
use thiserror::Error;

use crate::window::Summary;

/// How long a ping may take before the database counts as unavailable.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one flush transaction may take before it is abandoned (and rolled back).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an operation waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres` (also the `backend` metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A storage operation that failed, naming the backend and what was being done.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("{backend}: cannot connect to {target}: {source}")]
    Connect {
        /// Backend.
        backend: Backend,
        /// The SQLite path or the PostgreSQL DSN with its password redacted.
        target: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The embedded schema migrations could not be applied.
    #[error("{backend}: schema migration failed: {source}")]
    Migrate {
        /// Backend.
        backend: Backend,
        /// The migrator's error.
        source: sqlx::migrate::MigrateError,
    },
    /// A statement failed.
    #[error("{backend}: {op} failed{context}: {source}")]
    Query {
        /// Backend.
        backend: Backend,
        /// What was being done (`ping`, `upsert windows`, …).
        op: &'static str,
        /// Which row, when known (` for camera X window Y`), else empty.
        context: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// An operation did not finish in time.
    #[error("{backend}: {op} timed out after {} ms", .after.as_millis())]
    Timeout {
        /// Backend.
        backend: Backend,
        /// What was being done.
        op: &'static str,
        /// The limit.
        after: Duration,
    },
}

impl StoreError {
    /// Whether retrying later can help (a server that is down or restarting), as
    /// opposed to a setting or schema that has to be fixed first.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Connect { backend, .. } => *backend == Backend::Postgres,
            StoreError::Migrate { .. } => false,
            StoreError::Query { .. } | StoreError::Timeout { .. } => true,
        }
    }
}

/// A stored window and when it was last written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWindow {
    /// The summary as stored.
    pub summary: Summary,
    /// Wall clock of the write, ms since the Unix epoch.
    pub updated_ms: i64,
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Upserted {
    /// Rows inserted or replaced.
    pub written: u64,
    /// Indexes (into the written slice) of rows left alone because the stored row
    /// already counts more frames.
    pub kept: Vec<usize>,
}

/// The summaries database: a connection pool on one of the two backends.
#[derive(Debug, Clone)]
pub enum Store {
    /// Embedded SQLite file (WAL mode).
    Sqlite(SqlitePool),
    /// PostgreSQL server.
    Postgres(PgPool),
}

type Row = (
    String,
    i64,
    i64,
    i64,
    f64,
    i64,
    f64,
    f64,
    f64,
    i64,
    i64,
    i64,
    i64,
);

const UPSERT_SQLITE: &str = "\
INSERT INTO window_summaries (camera, start_ms, end_ms, frames, fps, keyframes, y_avg_mean, y_avg_min, \
y_avg_max, gaps, latency_p50_ms, latency_p99_ms, updated_ms) \
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
ON CONFLICT (camera, start_ms) DO UPDATE SET end_ms = excluded.end_ms, frames = excluded.frames, \
fps = excluded.fps, keyframes = excluded.keyframes, y_avg_mean = excluded.y_avg_mean, \
y_avg_min = excluded.y_avg_min, y_avg_max = excluded.y_avg_max, gaps = excluded.gaps, \
latency_p50_ms = excluded.latency_p50_ms, latency_p99_ms = excluded.latency_p99_ms, \
updated_ms = excluded.updated_ms \
WHERE excluded.frames >= window_summaries.frames";

const UPSERT_POSTGRES: &str = "\
INSERT INTO window_summaries (camera, start_ms, end_ms, frames, fps, keyframes, y_avg_mean, y_avg_min, \
y_avg_max, gaps, latency_p50_ms, latency_p99_ms, updated_ms) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
ON CONFLICT (camera, start_ms) DO UPDATE SET end_ms = excluded.end_ms, frames = excluded.frames, \
fps = excluded.fps, keyframes = excluded.keyframes, y_avg_mean = excluded.y_avg_mean, \
y_avg_min = excluded.y_avg_min, y_avg_max = excluded.y_avg_max, gaps = excluded.gaps, \
latency_p50_ms = excluded.latency_p50_ms, latency_p99_ms = excluded.latency_p99_ms, \
updated_ms = excluded.updated_ms \
WHERE excluded.frames >= window_summaries.frames";

const SELECT_SQLITE: &str = "\
SELECT camera, start_ms, end_ms, frames, fps, keyframes, y_avg_mean, y_avg_min, y_avg_max, gaps, \
latency_p50_ms, latency_p99_ms, updated_ms FROM window_summaries \
WHERE camera = ?1 AND start_ms >= ?2 AND start_ms < ?3 ORDER BY start_ms";

const SELECT_POSTGRES: &str = "\
SELECT camera, start_ms, end_ms, frames, fps, keyframes, y_avg_mean, y_avg_min, y_avg_max, gaps, \
latency_p50_ms, latency_p99_ms, updated_ms FROM window_summaries \
WHERE camera = $1 AND start_ms >= $2 AND start_ms < $3 ORDER BY start_ms";

/// Binds one summary's 13 columns, in table order, to a query.
macro_rules! bind_summary {
    ($query:expr, $s:expr, $updated_ms:expr) => {
        $query
            .bind($s.camera.as_str())
            .bind($s.start_ms)
            .bind($s.end_ms)
            .bind($s.frames)
            .bind($s.fps)
            .bind($s.keyframes)
            .bind($s.y_avg_mean)
            .bind($s.y_avg_min)
            .bind($s.y_avg_max)
            .bind($s.gaps)
            .bind($s.latency_p50_ms)
            .bind($s.latency_p99_ms)
            .bind($updated_ms)
    };
}

impl Store {
    /// PostgreSQL when `database_url` is set, else the SQLite file at `sqlite_path`.
    pub async fn connect(
        database_url: Option<&str>,
        sqlite_path: &str,
    ) -> Result<Self, StoreError> {
        match database_url {
            Some(dsn) => Self::connect_postgres(dsn).await,
            None => Self::connect_sqlite(Path::new(sqlite_path)).await,
        }
    }

    /// Opens (creating it when missing) a SQLite database file in WAL mode.
    pub async fn connect_sqlite(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                backend: Backend::Sqlite,
                target: path.display().to_string(),
                source,
            })?;
        Ok(Store::Sqlite(pool))
    }

    /// Connects to PostgreSQL (one connection is opened now, to fail early and clearly).
    pub async fn connect_postgres(dsn: &str) -> Result<Self, StoreError> {
        let connect_err = |source| StoreError::Connect {
            backend: Backend::Postgres,
            target: framewire_kit::redact::redact_url(dsn),
            source,
        };
        let options = PgConnectOptions::from_str(dsn).map_err(connect_err)?;
        // One direct connection first: a pool only reports "timed out", this says why
        // (refused, authentication failed, unknown database, …).
        let probe = tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
            .map_err(connect_err)?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Store::Postgres(pool))
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match self {
            Store::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Store::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        };
        result.map_err(|source| StoreError::Migrate {
            backend: self.backend(),
            source,
        })
    }

    /// Checks that the database answers a trivial query within [`PING_TIMEOUT`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        let run = async {
            match self {
                Store::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
                Store::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            }
        };
        match tokio::time::timeout(PING_TIMEOUT, run).await {
            Ok(result) => result.map_err(|source| self.query_error("ping", String::new(), source)),
            Err(_) => Err(StoreError::Timeout {
                backend: self.backend(),
                op: "ping",
                after: PING_TIMEOUT,
            }),
        }
    }

    /// Writes `windows` (absolute values, stamped `updated_ms`) in one transaction: all
    /// or nothing, within [`WRITE_TIMEOUT`]. A stored row that counts more frames than
    /// the new one is kept.
    pub async fn upsert(
        &self,
        windows: &[Summary],
        updated_ms: i64,
    ) -> Result<Upserted, StoreError> {
        if windows.is_empty() {
            return Ok(Upserted::default());
        }
        match tokio::time::timeout(WRITE_TIMEOUT, self.upsert_now(windows, updated_ms)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout {
                backend: self.backend(),
                op: "upsert windows",
                after: WRITE_TIMEOUT,
            }),
        }
    }

    async fn upsert_now(
        &self,
        windows: &[Summary],
        updated_ms: i64,
    ) -> Result<Upserted, StoreError> {
        // The same transaction for either backend; only the pool type and the SQL differ.
        macro_rules! upsert_in {
            ($pool:expr, $sql:expr) => {{
                let mut out = Upserted::default();
                let mut tx = $pool
                    .begin()
                    .await
                    .map_err(|e| self.query_error("begin", String::new(), e))?;
                for (i, s) in windows.iter().enumerate() {
                    let done = bind_summary!(sqlx::query($sql), s, updated_ms)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.query_error("upsert window", row_context(s), e))?;
                    out.count(i, done.rows_affected());
                }
                tx.commit()
                    .await
                    .map_err(|e| self.query_error("commit", String::new(), e))?;
                out
            }};
        }
        let out = match self {
            Store::Sqlite(pool) => upsert_in!(pool, UPSERT_SQLITE),
            Store::Postgres(pool) => upsert_in!(pool, UPSERT_POSTGRES),
        };
        Ok(out)
    }

    /// A camera's stored windows whose start is in `[from_ms, to_ms)`, oldest first.
    pub async fn windows(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        let rows: Vec<Row> = match self {
            Store::Sqlite(pool) => {
                sqlx::query_as(SELECT_SQLITE)
                    .bind(camera)
                    .bind(from_ms)
                    .bind(to_ms)
                    .fetch_all(pool)
                    .await
            }
            Store::Postgres(pool) => {
                sqlx::query_as(SELECT_POSTGRES)
                    .bind(camera)
                    .bind(from_ms)
                    .bind(to_ms)
                    .fetch_all(pool)
                    .await
            }
        }
        .map_err(|e| self.query_error("read windows", format!(" for camera {camera}"), e))?;
        Ok(rows.into_iter().map(stored).collect())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool) => pool.close().await,
            Store::Postgres(pool) => pool.close().await,
        }
    }

    fn query_error(&self, op: &'static str, context: String, source: sqlx::Error) -> StoreError {
        StoreError::Query {
            backend: self.backend(),
            op,
            context,
            source,
        }
    }
}

impl Upserted {
    fn count(&mut self, index: usize, rows_affected: u64) {
        if rows_affected > 0 {
            self.written += 1;
        } else {
            self.kept.push(index);
        }
    }
}

fn row_context(s: &Summary) -> String {
    format!(" for camera {} window {}", s.camera, s.start_ms)
}

fn stored(r: Row) -> StoredWindow {
    let (
        camera,
        start_ms,
        end_ms,
        frames,
        fps,
        keyframes,
        y_avg_mean,
        y_avg_min,
        y_avg_max,
        gaps,
        p50,
        p99,
        updated_ms,
    ) = r;
    StoredWindow {
        summary: Summary {
            camera,
            start_ms,
            end_ms,
            frames,
            fps,
            keyframes,
            y_avg_mean,
            y_avg_min,
            y_avg_max,
            gaps,
            latency_p50_ms: p50,
            latency_p99_ms: p99,
        },
        updated_ms,
    }
}

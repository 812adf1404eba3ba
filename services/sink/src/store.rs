//! Where summaries, cameras and incidents live: PostgreSQL when a DSN is configured, else
//! a SQLite file.
//!
//! Tables (migrations in `migrations/{sqlite,postgres}`, embedded and run at start):
//! `window_summaries` keyed by `(camera, start_ms)` with each window's mergeable state
//! beside its summary columns; `window_objects` keyed by `(camera, start_ms, label)`, the
//! detector's counts per class of those windows; `cameras` keyed by id; `events` keyed by
//! `(camera, kind, label, start_ms)`; `latest_pictures` keyed by camera, its newest
//! analysed picture.
//!
//! A flush is one transaction, in batches of [`CHUNK_ROWS`] rows per statement:
//! 1. insert a placeholder row for every window that has none yet (`ON CONFLICT DO
//!    NOTHING`), so that 2. can lock it;
//! 2. read the windows' stored states, locked (`FOR UPDATE` on PostgreSQL; SQLite has
//!    one writer), so two sinks can never merge into the same window at once;
//! 3. merge the waiting frames into them — a frame whose `(session, seq)` the state
//!    already counted is a duplicate and changes nothing — and upsert the results, with
//!    their per-class rows (absolute values from the state, so rewriting is harmless);
//! 4. upsert the cameras, incidents and newest pictures that changed.
//!
//! All or nothing: a failed flush changes nothing and is simply retried with the same
//! frames, and the Kafka offsets behind them are stored only after the commit.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgPool, QueryBuilder, SqlitePool};
use thiserror::Error;

use framewire_wire::DetectedObject;
use prometheus::Histogram;

use crate::cameras::{CameraRow, LatestPicture};
use crate::frame::FrameKind;
use crate::incidents::{Incident, Kind, Tracker};
use crate::state::{Added, ClassCounts, Summary, WindowState};
use crate::window::Batch;

/// How long a ping may take before the database counts as unavailable.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one flush transaction may take before it is abandoned (and rolled back).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a read for the API may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows per statement in a flush (21 parameters each: well inside both databases' limits).
pub const CHUNK_ROWS: usize = 500;

/// How long an operation waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Connections of the writer's pool (flushes, retention, the readiness ping, start-up
/// reads). The API reads through a pool of its own ([`Store::connect_reader`]).
pub const WRITER_CONNECTIONS: u32 = 4;

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
        /// Which rows, when known (` for camera X`), else empty.
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

/// What a flush writes: frames per window, and the cameras and incidents that changed.
#[derive(Debug, Clone, Copy)]
pub struct FlushInput<'a> {
    /// Waiting frames per window.
    pub windows: &'a [Batch],
    /// Cameras that changed.
    pub cameras: &'a [CameraRow],
    /// Incidents opened, extended or closed.
    pub incidents: &'a [Incident],
    /// Each camera's newest analysed picture, where one came since the last flush.
    pub pictures: &'a [LatestPicture],
    /// Window width, for the summaries' end and fps.
    pub window_ms: i64,
    /// Wall clock stamped on the rows.
    pub now_ms: i64,
}

/// What a flush did to one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The window's summary after the merge.
    pub summary: Summary,
    /// Frames newly counted.
    pub counted: u64,
    /// Frames the window had already counted.
    pub duplicates: u64,
    /// Analysed pictures newly counted.
    pub pictures_counted: u64,
    /// Analysed pictures the window had already counted.
    pub picture_duplicates: u64,
    /// Objects newly counted, per class label.
    pub objects_counted: BTreeMap<String, u64>,
    /// The stored state was unreadable and the window started again from empty.
    pub state_reset: bool,
}

/// The summaries database: a connection pool on one of the two backends. The sink has
/// two: the writer's ([`Store::connect`]: flushes, retention, the readiness ping) and the
/// API's ([`Store::connect_reader`]: read-only connections of their own), so that API
/// reads, however many, never take a connection a flush needs.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// Where the time reads wait for a pooled connection goes (the API's pool), if measured.
    read_wait: Option<Histogram>,
}

/// A connection pool on one of the two backends.
#[derive(Debug, Clone)]
pub enum Pool {
    /// Embedded SQLite file (WAL mode).
    Sqlite(SqlitePool),
    /// PostgreSQL server.
    Postgres(PgPool),
}

const SUMMARY_COLUMNS: &str = "camera, start_ms, end_ms, frames, fps, keyframes, y_avg_mean, \
y_avg_min, y_avg_max, y_dif_mean, sharpness_mean, black_frames, frozen_frames, scene_cuts, \
decode_errors, gaps, latency_p50_ms, latency_p99_ms, pictures_analysed";

/// `INSERT INTO window_summaries (<summary columns>, state, updated_ms) `.
fn window_insert() -> String {
    format!("INSERT INTO window_summaries ({SUMMARY_COLUMNS}, state, updated_ms) ")
}

const WINDOW_UPDATE: &str = " ON CONFLICT (camera, start_ms) DO UPDATE SET end_ms = excluded.end_ms, \
frames = excluded.frames, fps = excluded.fps, keyframes = excluded.keyframes, \
y_avg_mean = excluded.y_avg_mean, y_avg_min = excluded.y_avg_min, y_avg_max = excluded.y_avg_max, \
y_dif_mean = excluded.y_dif_mean, sharpness_mean = excluded.sharpness_mean, \
black_frames = excluded.black_frames, frozen_frames = excluded.frozen_frames, \
scene_cuts = excluded.scene_cuts, decode_errors = excluded.decode_errors, gaps = excluded.gaps, \
latency_p50_ms = excluded.latency_p50_ms, latency_p99_ms = excluded.latency_p99_ms, \
pictures_analysed = excluded.pictures_analysed, state = excluded.state, updated_ms = excluded.updated_ms";

const OBJECTS_UPSERT_HEAD: &str = "INSERT INTO window_objects (camera, start_ms, end_ms, label, \
objects, max_per_picture, pictures, updated_ms) ";

const OBJECTS_UPSERT_TAIL: &str = " ON CONFLICT (camera, start_ms, label) DO UPDATE SET \
end_ms = excluded.end_ms, objects = excluded.objects, max_per_picture = excluded.max_per_picture, \
pictures = excluded.pictures, updated_ms = excluded.updated_ms";

const PICTURE_UPSERT_HEAD: &str = "INSERT INTO latest_pictures (camera, session, seq, capture_ms, \
detected_ms, width, height, model, objects, updated_ms) ";

// Another replica (or a failed flush retried after a newer one) may hold a newer picture.
const PICTURE_UPSERT_TAIL: &str = " ON CONFLICT (camera) DO UPDATE SET session = excluded.session, \
seq = excluded.seq, capture_ms = excluded.capture_ms, detected_ms = excluded.detected_ms, \
width = excluded.width, height = excluded.height, model = excluded.model, \
objects = excluded.objects, updated_ms = excluded.updated_ms \
WHERE latest_pictures.capture_ms <= excluded.capture_ms";

const PICTURE_COLUMNS: &str =
    "camera, session, seq, capture_ms, detected_ms, width, height, model, objects";

/// camera, start_ms, label, objects, max_per_picture, pictures.
type ObjectTuple = (String, i64, String, i64, i64, i64);

type PictureTuple = (String, String, i64, i64, i64, i64, i64, String, String);

const CAMERA_UPSERT_HEAD: &str = "INSERT INTO cameras (id, first_seen_ms, last_seen_ms, \
last_capture_ms, width, height, session, tracker, updated_ms) ";

// Another replica may have written the camera meanwhile: keep the earliest first sighting,
// the latest sighting and clock, and the size/session of the newest frame.
const CAMERA_UPSERT_TAIL: &str = " ON CONFLICT (id) DO UPDATE SET \
first_seen_ms = CASE WHEN cameras.first_seen_ms < excluded.first_seen_ms THEN cameras.first_seen_ms ELSE excluded.first_seen_ms END, \
last_seen_ms = CASE WHEN cameras.last_seen_ms > excluded.last_seen_ms THEN cameras.last_seen_ms ELSE excluded.last_seen_ms END, \
width = CASE WHEN cameras.last_capture_ms > excluded.last_capture_ms THEN cameras.width ELSE excluded.width END, \
height = CASE WHEN cameras.last_capture_ms > excluded.last_capture_ms THEN cameras.height ELSE excluded.height END, \
session = CASE WHEN cameras.last_capture_ms > excluded.last_capture_ms THEN cameras.session ELSE excluded.session END, \
last_capture_ms = CASE WHEN cameras.last_capture_ms > excluded.last_capture_ms THEN cameras.last_capture_ms ELSE excluded.last_capture_ms END, \
tracker = excluded.tracker, updated_ms = excluded.updated_ms";

const EVENT_UPSERT_HEAD: &str = "INSERT INTO events (camera, kind, label, start_ms, end_ms, \
duration_ms, frames, session, updated_ms) ";

// A closed incident stays closed (a replay may report it open again).
const EVENT_UPSERT_TAIL: &str = " ON CONFLICT (camera, kind, label, start_ms) DO UPDATE SET \
end_ms = COALESCE(events.end_ms, excluded.end_ms), \
duration_ms = CASE WHEN events.end_ms IS NULL THEN excluded.duration_ms ELSE events.duration_ms END, \
frames = CASE WHEN events.end_ms IS NULL THEN excluded.frames ELSE events.frames END, \
updated_ms = excluded.updated_ms";

const CAMERA_COLUMNS: &str =
    "id, first_seen_ms, last_seen_ms, last_capture_ms, width, height, session, tracker";

const EVENT_COLUMNS: &str = "camera, kind, start_ms, end_ms, duration_ms, frames, session, label";

type CameraTuple = (String, i64, i64, i64, i64, i64, String, String);
type EventTuple = (String, String, i64, Option<i64>, i64, i64, String, String);

/// Runs the same code on either pool: `$pool` is bound to the backend's pool.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// Binds a window's summary columns, its state and `updated_ms`, in table order.
macro_rules! bind_window {
    ($b:expr, $s:expr, $state:expr, $updated_ms:expr) => {{
        let s: &Summary = $s;
        $b.push_bind(s.camera.clone())
            .push_bind(s.start_ms)
            .push_bind(s.end_ms)
            .push_bind(s.frames)
            .push_bind(s.fps)
            .push_bind(s.keyframes)
            .push_bind(s.y_avg_mean)
            .push_bind(s.y_avg_min)
            .push_bind(s.y_avg_max)
            .push_bind(s.y_dif_mean)
            .push_bind(s.sharpness_mean)
            .push_bind(s.black_frames)
            .push_bind(s.frozen_frames)
            .push_bind(s.scene_cuts)
            .push_bind(s.decode_errors)
            .push_bind(s.gaps)
            .push_bind(s.latency_p50_ms)
            .push_bind(s.latency_p99_ms)
            .push_bind(s.pictures_analysed)
            .push_bind($state)
            .push_bind($updated_ms);
    }};
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

    /// A pool of `connections` read-only connections to the same database as
    /// [`Store::connect`], for the API: its reads wait for these and never for the
    /// writer's. SQLite: connections opened read-only on the file, which WAL lets read
    /// while the writer writes (the writer's store must be open and migrated first);
    /// PostgreSQL: a pool of its own whose sessions are read-only, cancel any statement
    /// after [`READ_TIMEOUT`] on the server and show as `framewire-sink-api` in
    /// `pg_stat_activity`. The time each read waits for a connection goes to `wait`.
    pub async fn connect_reader(
        database_url: Option<String>,
        sqlite_path: String,
        connections: u32,
        wait: Histogram,
    ) -> Result<Self, StoreError> {
        let store = match database_url.as_deref() {
            Some(dsn) => {
                let options = pg_options(dsn)?
                    .application_name("framewire-sink-api")
                    .options([
                        ("default_transaction_read_only", "on".to_owned()),
                        ("statement_timeout", format!("{}", READ_TIMEOUT.as_millis())),
                    ]);
                Pool::Postgres(pg_pool(options, connections))
            }
            None => {
                let path = Path::new(&sqlite_path);
                let options = SqliteConnectOptions::new().filename(path).read_only(true);
                Pool::Sqlite(sqlite_pool(path, options, connections).await?)
            }
        };
        Ok(Store {
            pool: store,
            read_wait: Some(wait),
        })
    }

    /// Opens (creating it when missing) a SQLite database file in WAL mode.
    pub async fn connect_sqlite(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = sqlite_pool(path, options, WRITER_CONNECTIONS).await?;
        Ok(Store::from(Pool::Sqlite(pool)))
    }

    /// Connects to PostgreSQL (one connection is opened now, to fail early and clearly).
    pub async fn connect_postgres(dsn: &str) -> Result<Self, StoreError> {
        let options = pg_options(dsn)?;
        // One direct connection first: a pool only reports "timed out", this says why
        // (refused, authentication failed, unknown database, …).
        let probe = tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
            .map_err(|source| pg_connect_error(dsn, source))?;
        let _ = probe.close().await;
        Ok(Store::from(Pool::Postgres(pg_pool(
            options,
            WRITER_CONNECTIONS,
        ))))
    }

    /// The connection pool (for tests and tools that look at the database directly).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.pool {
            Pool::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Pool::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        };
        result.map_err(|source| StoreError::Migrate {
            backend: self.backend(),
            source,
        })
    }

    /// Checks that the database answers a trivial query within [`PING_TIMEOUT`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        let run = async {
            on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))
                .map_err(|source| self.query_error("ping", String::new(), source))
        };
        self.within(PING_TIMEOUT, "ping", run).await
    }

    /// Writes a flush in one transaction (see the module doc), within [`WRITE_TIMEOUT`]:
    /// all or nothing. Returns each window's merge result.
    pub async fn flush(&self, input: FlushInput<'_>) -> Result<Vec<Merged>, StoreError> {
        if input.windows.is_empty()
            && input.cameras.is_empty()
            && input.incidents.is_empty()
            && input.pictures.is_empty()
        {
            return Ok(Vec::new());
        }
        self.within(WRITE_TIMEOUT, "flush", self.flush_now(input))
            .await
    }

    async fn flush_now(&self, input: FlushInput<'_>) -> Result<Vec<Merged>, StoreError> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let err = |op: &'static str| move |e| self.query_error(op, String::new(), e);
        let mut merged = Vec::with_capacity(input.windows.len());
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(err("begin"))?;
            for chunk in input.windows.chunks(CHUNK_ROWS) {
                // 1. Placeholders, so that every window has a row to lock.
                let empty = WindowState::new();
                let mut q = QueryBuilder::new(window_insert());
                q.push_values(chunk, |mut b, w| {
                    let s = empty.summary(&w.camera, w.start_ms, input.window_ms);
                    bind_window!(b, &s, String::new(), input.now_ms);
                });
                q.push(" ON CONFLICT (camera, start_ms) DO NOTHING");
                q.build().execute(&mut *tx).await.map_err(err("insert windows"))?;

                // 2. The stored states, locked.
                let mut q = QueryBuilder::new(
                    "SELECT camera, start_ms, state FROM window_summaries WHERE (camera, start_ms) IN (",
                );
                q.push_values(chunk, |mut b, w| {
                    b.push_bind(w.camera.clone()).push_bind(w.start_ms);
                });
                q.push(")").push(lock);
                let rows: Vec<(String, i64, String)> = q
                    .build_query_as()
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err("read window states"))?;
                let mut stored: HashMap<(String, i64), String> =
                    rows.into_iter().map(|(c, s, st)| ((c, s), st)).collect();

                // 3. Merge and write back.
                let results: Vec<(Merged, String)> = chunk
                    .iter()
                    .map(|w| merge(w, stored.remove(&(w.camera.clone(), w.start_ms)), input.window_ms))
                    .collect();
                let mut q = QueryBuilder::new(window_insert());
                q.push_values(&results, |mut b, (m, state)| {
                    bind_window!(b, &m.summary, state.clone(), input.now_ms);
                });
                q.push(WINDOW_UPDATE);
                q.build().execute(&mut *tx).await.map_err(err("upsert windows"))?;
                let classes: Vec<(&Summary, &str, &ClassCounts)> = results
                    .iter()
                    .filter(|(m, _)| m.pictures_counted > 0)
                    .flat_map(|(m, _)| m.summary.classes.iter().map(move |(l, c)| (&m.summary, l.as_str(), c)))
                    .collect();
                for rows in classes.chunks(CHUNK_ROWS) {
                    let mut q = QueryBuilder::new(OBJECTS_UPSERT_HEAD);
                    q.push_values(rows, |mut b, (s, label, c)| {
                        b.push_bind(s.camera.clone())
                            .push_bind(s.start_ms)
                            .push_bind(s.end_ms)
                            .push_bind((*label).to_owned())
                            .push_bind(to_i64(c.objects))
                            .push_bind(to_i64(c.max_per_picture))
                            .push_bind(to_i64(c.pictures))
                            .push_bind(input.now_ms);
                    });
                    q.push(OBJECTS_UPSERT_TAIL);
                    q.build().execute(&mut *tx).await.map_err(err("upsert window objects"))?;
                }
                merged.extend(results.into_iter().map(|(m, _)| m));
            }
            // 4. Cameras and incidents.
            for chunk in input.cameras.chunks(CHUNK_ROWS) {
                let mut q = QueryBuilder::new(CAMERA_UPSERT_HEAD);
                q.push_values(chunk, |mut b, c| {
                    b.push_bind(c.id.clone())
                        .push_bind(c.first_seen_ms)
                        .push_bind(c.last_seen_ms)
                        .push_bind(c.last_capture_ms)
                        .push_bind(c.width)
                        .push_bind(c.height)
                        .push_bind(c.session.clone())
                        .push_bind(c.tracker.to_json())
                        .push_bind(input.now_ms);
                });
                q.push(CAMERA_UPSERT_TAIL);
                q.build().execute(&mut *tx).await.map_err(err("upsert cameras"))?;
            }
            for chunk in input.incidents.chunks(CHUNK_ROWS) {
                let mut q = QueryBuilder::new(EVENT_UPSERT_HEAD);
                q.push_values(chunk, |mut b, i| {
                    b.push_bind(i.camera.clone())
                        .push_bind(i.kind.as_str())
                        .push_bind(i.label.clone())
                        .push_bind(i.start_ms)
                        .push_bind(i.end_ms)
                        .push_bind(i.duration_ms)
                        .push_bind(i.frames)
                        .push_bind(i.session.clone())
                        .push_bind(input.now_ms);
                });
                q.push(EVENT_UPSERT_TAIL);
                q.build().execute(&mut *tx).await.map_err(err("upsert events"))?;
            }
            for chunk in input.pictures.chunks(CHUNK_ROWS) {
                let mut q = QueryBuilder::new(PICTURE_UPSERT_HEAD);
                q.push_values(chunk, |mut b, p| {
                    b.push_bind(p.camera.clone())
                        .push_bind(p.session.clone())
                        .push_bind(to_i64(p.seq))
                        .push_bind(p.capture_ms)
                        .push_bind(p.detected_ms)
                        .push_bind(i64::from(p.width))
                        .push_bind(i64::from(p.height))
                        .push_bind(p.model.clone())
                        .push_bind(serde_json::to_string(&p.objects).unwrap_or_else(|_| "[]".to_owned()))
                        .push_bind(input.now_ms);
                });
                q.push(PICTURE_UPSERT_TAIL);
                q.build().execute(&mut *tx).await.map_err(err("upsert pictures"))?;
            }
            tx.commit().await.map_err(err("commit"))?;
        });
        Ok(merged)
    }

    /// Every stored camera, by id, with its incident tracker (an unreadable tracker
    /// starts afresh, with a warning).
    pub async fn cameras(&self) -> Result<Vec<CameraRow>, StoreError> {
        let sql = format!("SELECT {CAMERA_COLUMNS} FROM cameras ORDER BY id");
        let rows: Vec<CameraTuple> = self.read("read cameras", String::new(), &sql, &[]).await?;
        Ok(rows.into_iter().map(camera_row).collect())
    }

    /// One stored camera.
    pub async fn camera(&self, id: &str) -> Result<Option<CameraRow>, StoreError> {
        let sql = format!("SELECT {CAMERA_COLUMNS} FROM cameras WHERE id = $1");
        let rows: Vec<CameraTuple> = self
            .read(
                "read camera",
                format!(" for camera {id}"),
                &sql,
                &[Param::Text(id)],
            )
            .await?;
        Ok(rows.into_iter().next().map(camera_row))
    }

    /// The newest `per_camera` windows of every camera that start at or after `since_ms`,
    /// by camera, oldest first.
    pub async fn latest_windows(
        &self,
        since_ms: i64,
        per_camera: i64,
    ) -> Result<Vec<Summary>, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM (SELECT {SUMMARY_COLUMNS}, ROW_NUMBER() OVER \
             (PARTITION BY camera ORDER BY start_ms DESC) AS rn FROM window_summaries \
             WHERE start_ms >= $1) t WHERE rn <= $2 ORDER BY camera, start_ms"
        );
        self.read(
            "read latest windows",
            String::new(),
            &sql,
            &[Param::Int(since_ms), Param::Int(per_camera)],
        )
        .await
    }

    /// The newest window with analysed pictures of every camera, starting at or after
    /// `since_ms`, by camera.
    pub async fn latest_analysed_windows(&self, since_ms: i64) -> Result<Vec<Summary>, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM (SELECT {SUMMARY_COLUMNS}, ROW_NUMBER() OVER \
             (PARTITION BY camera ORDER BY start_ms DESC) AS rn FROM window_summaries \
             WHERE start_ms >= $1 AND pictures_analysed > 0) t WHERE rn = 1 ORDER BY camera"
        );
        self.read(
            "read latest analysed windows",
            String::new(),
            &sql,
            &[Param::Int(since_ms)],
        )
        .await
    }

    /// Fills in the per-class counts of `windows` (from `window_objects`).
    pub async fn attach_classes(&self, windows: &mut [Summary]) -> Result<(), StoreError> {
        let analysed: Vec<(String, i64)> = windows
            .iter()
            .filter(|w| w.pictures_analysed > 0)
            .map(|w| (w.camera.clone(), w.start_ms))
            .collect();
        let mut found: HashMap<(String, i64), BTreeMap<String, ClassCounts>> = HashMap::new();
        for chunk in analysed.chunks(CHUNK_ROWS) {
            let run = async {
                let rows: Result<Vec<ObjectTuple>, sqlx::Error> = on_pool!(self, pool => {
                    let mut q = QueryBuilder::new(
                        "SELECT camera, start_ms, label, objects, max_per_picture, pictures \
                         FROM window_objects WHERE (camera, start_ms) IN (",
                    );
                    q.push_values(chunk, |mut b, (camera, start)| {
                        b.push_bind(camera.clone()).push_bind(*start);
                    });
                    q.push(")");
                    match self.acquire_read(pool.acquire()).await {
                        Ok(mut conn) => q.build_query_as().fetch_all(&mut *conn).await,
                        Err(e) => Err(e),
                    }
                });
                rows.map_err(|e| self.query_error("read window objects", String::new(), e))
            };
            for (camera, start, label, objects, max, pictures) in self
                .within(READ_TIMEOUT, "read window objects", run)
                .await?
            {
                let counts = ClassCounts {
                    objects: to_u64(objects),
                    max_per_picture: to_u64(max),
                    pictures: to_u64(pictures),
                };
                found
                    .entry((camera, start))
                    .or_default()
                    .insert(label, counts);
            }
        }
        for w in windows {
            if let Some(classes) = found.remove(&(w.camera.clone(), w.start_ms)) {
                w.classes = classes;
            }
        }
        Ok(())
    }

    /// A camera's newest analysed picture.
    pub async fn latest_picture(&self, camera: &str) -> Result<Option<LatestPicture>, StoreError> {
        let sql = format!("SELECT {PICTURE_COLUMNS} FROM latest_pictures WHERE camera = $1");
        let rows: Vec<PictureTuple> = self
            .read(
                "read latest picture",
                format!(" for camera {camera}"),
                &sql,
                &[Param::Text(camera)],
            )
            .await?;
        Ok(rows.into_iter().next().map(latest_picture))
    }

    /// Capture time of every camera's newest analysed picture.
    pub async fn latest_picture_times(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = self
            .read(
                "read latest picture times",
                String::new(),
                "SELECT camera, capture_ms FROM latest_pictures",
                &[],
            )
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// A camera's windows whose start is in `[from_ms, to_ms)`, oldest first, at most `limit`.
    pub async fn windows(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<Summary>, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM window_summaries \
             WHERE camera = $1 AND start_ms >= $2 AND start_ms < $3 ORDER BY start_ms LIMIT $4"
        );
        let params = [
            Param::Text(camera),
            Param::Int(from_ms),
            Param::Int(to_ms),
            Param::Int(limit),
        ];
        self.read(
            "read windows",
            format!(" for camera {camera}"),
            &sql,
            &params,
        )
        .await
    }

    /// A camera's incidents overlapping `[from_ms, to_ms)` (open ones included), oldest
    /// first, at most `limit`.
    pub async fn events(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<Incident>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE camera = $1 AND start_ms < $3 \
             AND (end_ms IS NULL OR end_ms > $2 OR start_ms >= $2) \
             ORDER BY start_ms, kind, label LIMIT $4"
        );
        let params = [
            Param::Text(camera),
            Param::Int(from_ms),
            Param::Int(to_ms),
            Param::Int(limit),
        ];
        let rows: Vec<EventTuple> = self
            .read(
                "read events",
                format!(" for camera {camera}"),
                &sql,
                &params,
            )
            .await?;
        Ok(rows.into_iter().filter_map(incident).collect())
    }

    /// Every incident still going on, by camera.
    pub async fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE end_ms IS NULL ORDER BY camera, start_ms"
        );
        let rows: Vec<EventTuple> = self
            .read("read open events", String::new(), &sql, &[])
            .await?;
        Ok(rows.into_iter().filter_map(incident).collect())
    }

    /// Deletes windows (and their per-class rows) that ended, incidents that ended, and
    /// cameras last seen before `cutoff_ms` (with their open incidents and newest picture):
    /// rows deleted per table.
    pub async fn delete_older_than(&self, cutoff_ms: i64) -> Result<Deleted, StoreError> {
        let run = async {
            let err = |op: &'static str| move |e| self.query_error(op, String::new(), e);
            on_pool!(self, pool => {
                let mut tx = pool.begin().await.map_err(err("begin"))?;
                let mut deleted = Deleted::default();
                for (sql, op, count) in [
                    ("DELETE FROM window_summaries WHERE end_ms < $1", "delete old windows", &mut deleted.windows),
                    ("DELETE FROM window_objects WHERE end_ms < $1", "delete old window objects", &mut deleted.window_objects),
                    (
                        "DELETE FROM events WHERE end_ms < $1 OR (end_ms IS NULL AND camera IN \
                         (SELECT id FROM cameras WHERE last_seen_ms < $1))",
                        "delete old events",
                        &mut deleted.events,
                    ),
                    (
                        "DELETE FROM latest_pictures WHERE capture_ms < $1 AND camera IN \
                         (SELECT id FROM cameras WHERE last_seen_ms < $1)",
                        "delete old pictures",
                        &mut deleted.pictures,
                    ),
                    ("DELETE FROM cameras WHERE last_seen_ms < $1", "delete old cameras", &mut deleted.cameras),
                ] {
                    *count = sqlx::query(self.sql(sql))
                        .bind(cutoff_ms)
                        .execute(&mut *tx)
                        .await
                        .map_err(err(op))?
                        .rows_affected();
                }
                tx.commit().await.map_err(err("commit"))?;
                Ok(deleted)
            })
        };
        self.within(WRITE_TIMEOUT, "retention", run).await
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    /// `sql` written with `$1`-style parameters, in the backend's dialect (SQLite: `?1`).
    /// Only ever called with SQL built from this module's constants, never from input.
    fn sql(&self, sql: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(match self.backend() {
            Backend::Postgres => sql.to_owned(),
            Backend::Sqlite => sql.replace('$', "?"),
        })
    }

    /// Runs a read returning rows of `T` within [`READ_TIMEOUT`].
    async fn read<T>(
        &self,
        op: &'static str,
        context: String,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send + Unpin,
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let run = async {
            let rows = on_pool!(self, pool => {
                let mut q = sqlx::query_as::<_, T>(self.sql(sql));
                for p in params {
                    q = match *p {
                        Param::Text(t) => q.bind(t.to_owned()),
                        Param::Int(i) => q.bind(i),
                    };
                }
                match self.acquire_read(pool.acquire()).await {
                    Ok(mut conn) => q.fetch_all(&mut *conn).await,
                    Err(e) => Err(e),
                }
            });
            rows.map_err(|e| self.query_error(op, context, e))
        };
        self.within(READ_TIMEOUT, op, run).await
    }

    /// Waits for a pooled connection for a read, measuring the wait when asked to.
    async fn acquire_read<C>(
        &self,
        acquire: impl Future<Output = Result<C, sqlx::Error>>,
    ) -> Result<C, sqlx::Error> {
        let started = std::time::Instant::now();
        let conn = acquire.await;
        if let Some(wait) = &self.read_wait {
            wait.observe(started.elapsed().as_secs_f64());
        }
        conn
    }

    async fn within<T>(
        &self,
        limit: Duration,
        op: &'static str,
        run: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(limit, run).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout {
                backend: self.backend(),
                op,
                after: limit,
            }),
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

/// Rows retention deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// `window_summaries` rows.
    pub windows: u64,
    /// `window_objects` rows.
    pub window_objects: u64,
    /// `events` rows.
    pub events: u64,
    /// `latest_pictures` rows.
    pub pictures: u64,
    /// `cameras` rows.
    pub cameras: u64,
}

impl Deleted {
    /// (table, rows) for each table.
    pub fn tables(&self) -> [(&'static str, u64); 5] {
        [
            ("window_summaries", self.windows),
            ("window_objects", self.window_objects),
            ("events", self.events),
            ("latest_pictures", self.pictures),
            ("cameras", self.cameras),
        ]
    }

    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.tables().iter().map(|(_, n)| n).sum()
    }
}

impl From<Pool> for Store {
    fn from(pool: Pool) -> Self {
        Store {
            pool,
            read_wait: None,
        }
    }
}

/// A pool of `connections` to the SQLite file at `path` (one opened now).
async fn sqlite_pool(
    path: &Path,
    options: SqliteConnectOptions,
    connections: u32,
) -> Result<SqlitePool, StoreError> {
    SqlitePoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.busy_timeout(Duration::from_secs(5)))
        .await
        .map_err(|source| StoreError::Connect {
            backend: Backend::Sqlite,
            target: path.display().to_string(),
            source,
        })
}

/// A pool of `connections` to PostgreSQL, opened as they are needed.
fn pg_pool(options: PgConnectOptions, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(options)
}

/// The connect options of `dsn`, or the error naming it with its password redacted.
fn pg_options(dsn: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(dsn).map_err(|source| pg_connect_error(dsn, source))
}

fn pg_connect_error(dsn: &str, source: sqlx::Error) -> StoreError {
    StoreError::Connect {
        backend: Backend::Postgres,
        target: framewire_kit::redact::redact_text(dsn),
        source,
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A read's parameter.
#[derive(Debug, Clone, Copy)]
enum Param<'a> {
    Text(&'a str),
    Int(i64),
}

/// Merges one window's frames into its stored state (`None` or `''`: none yet).
fn merge(batch: &Batch, stored: Option<String>, window_ms: i64) -> (Merged, String) {
    let mut state_reset = false;
    let mut state = match stored.as_deref() {
        None | Some("") => WindowState::new(),
        Some(text) => WindowState::from_json(text).unwrap_or_else(|reason| {
            tracing::error!(camera = %batch.camera, start_ms = batch.start_ms, %reason, "stored window state unreadable; counting this window again from empty");
            state_reset = true;
            WindowState::new()
        }),
    };
    let (mut counted, mut duplicates) = (0, 0);
    let (mut pictures_counted, mut picture_duplicates) = (0, 0);
    let mut objects_counted: BTreeMap<String, u64> = BTreeMap::new();
    for f in &batch.frames {
        match (state.add(f), &f.kind) {
            (Added::Counted, FrameKind::Detections(d)) => {
                pictures_counted += 1;
                for (label, n) in d.per_label() {
                    *objects_counted.entry(label.to_owned()).or_default() += n;
                }
            }
            (Added::Duplicate, FrameKind::Detections(_)) => picture_duplicates += 1,
            (Added::Counted, _) => counted += 1,
            (Added::Duplicate, _) => duplicates += 1,
        }
    }
    let summary = state.summary(&batch.camera, batch.start_ms, window_ms);
    (
        Merged {
            summary,
            counted,
            duplicates,
            pictures_counted,
            picture_duplicates,
            objects_counted,
            state_reset,
        },
        state.to_json(),
    )
}

fn camera_row(t: CameraTuple) -> CameraRow {
    let (id, first_seen_ms, last_seen_ms, last_capture_ms, width, height, session, tracker) = t;
    let tracker = Tracker::from_json(&tracker).unwrap_or_else(|reason| {
        tracing::warn!(camera = %id, %reason, "stored incident state unreadable; starting afresh");
        Tracker::default()
    });
    CameraRow {
        id,
        first_seen_ms,
        last_seen_ms,
        last_capture_ms,
        width,
        height,
        session,
        tracker,
    }
}

fn incident(t: EventTuple) -> Option<Incident> {
    let (camera, kind, start_ms, end_ms, duration_ms, frames, session, label) = t;
    Some(Incident {
        kind: Kind::parse(&kind)?,
        camera,
        start_ms,
        end_ms,
        duration_ms,
        frames,
        session,
        label,
    })
}

fn latest_picture(t: PictureTuple) -> LatestPicture {
    let (camera, session, seq, capture_ms, detected_ms, width, height, model, objects) = t;
    let objects: Vec<DetectedObject> = serde_json::from_str(&objects).unwrap_or_else(|e| {
        tracing::warn!(%camera, error = %e, "stored picture objects unreadable; serving none");
        Vec::new()
    });
    LatestPicture {
        camera,
        session,
        seq: to_u64(seq),
        capture_ms,
        detected_ms,
        width: u32::try_from(width).unwrap_or(0),
        height: u32::try_from(height).unwrap_or(0),
        model,
        objects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::tests::stats;

    #[test]
    fn merging_counts_new_frames_and_drops_repeats() {
        let batch = Batch {
            camera: "cam".into(),
            start_ms: 0,
            frames: vec![
                stats("cam", "s", 1, 0),
                stats("cam", "s", 2, 0),
                stats("cam", "s", 1, 0),
            ],
        };
        let (first, state) = merge(&batch, None, 10_000);
        assert_eq!(
            (first.counted, first.duplicates, first.summary.frames),
            (2, 1, 2)
        );
        let (again, _) = merge(&batch, Some(state), 10_000);
        assert_eq!(
            (again.counted, again.duplicates, again.summary.frames),
            (0, 3, 2)
        );
        let (reset, _) = merge(&batch, Some("{broken".into()), 10_000);
        assert!(reset.state_reset);
        assert_eq!(reset.summary.frames, 2);
        let (legacy, _) = merge(&batch, Some(String::new()), 10_000);
        assert!(!legacy.state_reset);
    }
}

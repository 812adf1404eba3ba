//! The summaries store against real databases: SQLite always (a temporary file), and
//! PostgreSQL when `FRAMEWIRE_TEST_PG_DSN` is set (e.g.
//! `postgres://framewire:framewire@127.0.0.1:55432/framewire` from `make stack-up`).
//! With the variable set, an unreachable PostgreSQL fails the test; it is never skipped.

// Shared helpers below are not `#[test]` functions, but this whole file is test code.
#![allow(clippy::unwrap_used)]

use framewire_sink::store::{Backend, Store, StoredWindow};
use framewire_sink::window::Summary;

const T0: i64 = 1_700_000_000_000;
const W: i64 = 10_000;

fn summary(camera: &str, start_ms: i64, frames: i64, y: f64) -> Summary {
    Summary {
        camera: camera.to_owned(),
        start_ms,
        end_ms: start_ms + W,
        frames,
        fps: frames as f64 / 10.0,
        keyframes: frames / 30,
        y_avg_mean: y,
        y_avg_min: y - 1.5,
        y_avg_max: y + 2.25,
        gaps: 1,
        latency_p50_ms: 40,
        latency_p99_ms: 120,
    }
}

/// A camera-id prefix unique to this run, so runs against a shared database never meet.
fn run_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{tag}-{}-{nanos}", std::process::id())
}

async fn read(store: &Store, camera: &str) -> Vec<StoredWindow> {
    store.windows(camera, i64::MIN, i64::MAX).await.unwrap()
}

/// The behaviour both backends must share.
async fn exercise(store: &Store, prefix: &str) {
    // Migrations are idempotent.
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();

    let cam = format!("{prefix}-a");
    let other = format!("{prefix}-b");

    // One batch, several cameras and windows, one transaction.
    let first = vec![
        summary(&cam, T0, 250, 100.0),
        summary(&cam, T0 + W, 10, 90.0),
        summary(&other, T0, 5, 50.0),
    ];
    let done = store.upsert(&first, 1_000).await.unwrap();
    assert_eq!((done.written, done.kept.len()), (3, 0));
    let rows = read(store, &cam).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        StoredWindow {
            summary: first[0].clone(),
            updated_ms: 1_000
        },
        "values round-trip exactly"
    );
    assert_eq!(rows[1].summary, first[1]);
    assert_eq!(read(store, &other).await.len(), 1);

    // The same window again, with newer values: still one row, holding the latest values.
    let newer = summary(&cam, T0, 300, 101.5);
    let done = store
        .upsert(std::slice::from_ref(&newer), 2_000)
        .await
        .unwrap();
    assert_eq!((done.written, done.kept.len()), (1, 0));
    let rows = store.windows(&cam, T0, T0 + 1).await.unwrap();
    assert_eq!(
        rows,
        [StoredWindow {
            summary: newer.clone(),
            updated_ms: 2_000
        }]
    );

    // Writing the very same values twice is harmless.
    store
        .upsert(std::slice::from_ref(&newer), 3_000)
        .await
        .unwrap();
    let rows = store.windows(&cam, T0, T0 + 1).await.unwrap();
    assert_eq!(
        rows,
        [StoredWindow {
            summary: newer.clone(),
            updated_ms: 3_000
        }]
    );

    // A partial rebuild (fewer frames, e.g. after a restart) never replaces a fuller row.
    let partial = summary(&cam, T0, 12, 80.0);
    let done = store
        .upsert(&[partial, summary(&cam, T0 + 2 * W, 7, 70.0)], 4_000)
        .await
        .unwrap();
    assert_eq!((done.written, done.kept.clone()), (1, vec![0]));
    let rows = read(store, &cam).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        StoredWindow {
            summary: newer,
            updated_ms: 3_000
        }
    );
    assert_eq!(rows[2].summary.frames, 7);

    // Range reads: [from, to) on the window start, oldest first.
    let starts: Vec<i64> = store
        .windows(&cam, T0 + W, T0 + 3 * W)
        .await
        .unwrap()
        .iter()
        .map(|r| r.summary.start_ms)
        .collect();
    assert_eq!(starts, [T0 + W, T0 + 2 * W]);
    assert!(
        store
            .windows("no-such-camera", i64::MIN, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );

    // An empty flush is a no-op.
    assert_eq!(store.upsert(&[], 5_000).await.unwrap().written, 0);
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summaries.sqlite");
    assert!(!path.exists());
    let path_str = path.to_str().unwrap();
    let store = Store::connect(None, path_str).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    assert!(path.exists(), "the file is created when missing");
    if let Store::Sqlite(pool) = &store {
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
    exercise(&store, &run_prefix("sqlite")).await;
    store.close().await;

    // Reopening an existing file and migrating again keeps the data.
    let store = Store::connect(None, path_str).await.unwrap();
    store.migrate().await.unwrap();
    let prefix_rows = match &store {
        Store::Sqlite(pool) => {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM window_summaries")
                .fetch_one(pool)
                .await
                .unwrap();
            n
        }
        Store::Postgres(_) => unreachable!(),
    };
    assert_eq!(prefix_rows, 4);
    store.close().await;
}

#[tokio::test]
async fn sqlite_errors_name_the_backend_and_path() {
    let e = Store::connect(None, "/nonexistent-dir/framewire/summaries.sqlite")
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("sqlite: cannot connect to /nonexistent-dir/framewire/summaries.sqlite"),
        "{text}"
    );
    assert!(!e.is_retryable(), "a bad path needs a fix, not a retry");
}

#[tokio::test]
async fn postgres_errors_redact_the_password() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let e = Store::connect(
        Some("postgres://fw:hunter2@127.0.0.1:1/framewire"),
        "unused",
    )
    .await
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(
            "postgres: cannot connect to postgres://fw:[redacted]@127.0.0.1:1/framewire"
        ),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("timed out"), "the cause is shown: {text}");
    assert!(e.is_retryable(), "a server that is down may come back");
}

#[tokio::test]
async fn postgres_store() {
    let Ok(dsn) = std::env::var("FRAMEWIRE_TEST_PG_DSN") else {
        eprintln!("FRAMEWIRE_TEST_PG_DSN is not set: PostgreSQL part not run");
        return;
    };
    let store = Store::connect(Some(&dsn), "unused")
        .await
        .unwrap_or_else(|e| panic!("FRAMEWIRE_TEST_PG_DSN is set but PostgreSQL is unusable: {e}"));
    assert_eq!(store.backend(), Backend::Postgres);
    let prefix = run_prefix("pg");
    exercise(&store, &prefix).await;

    // A batch is all or nothing: a row PostgreSQL rejects (NUL in text) rolls back the rest.
    let good = summary(&format!("{prefix}-tx"), T0, 1, 1.0);
    let bad = summary(&format!("{prefix}-bad\0"), T0, 1, 1.0);
    let e = store.upsert(&[good.clone(), bad], 1).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("postgres: upsert window failed for camera"),
        "{e}"
    );
    assert!(
        store
            .windows(&good.camera, i64::MIN, i64::MAX)
            .await
            .unwrap()
            .is_empty(),
        "rolled back"
    );

    // Clean up this run's rows (the database is shared with the local stack).
    if let Store::Postgres(pool) = &store {
        sqlx::query("DELETE FROM window_summaries WHERE camera LIKE $1")
            .bind(format!("{prefix}%"))
            .execute(pool)
            .await
            .unwrap();
    }
    store.close().await;
}

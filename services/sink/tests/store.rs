//! The summaries store against real databases: SQLite always (a temporary file), and
//! PostgreSQL when `FRAMEWIRE_TEST_PG_DSN` is set (e.g.
//! `postgres://framewire:framewire@127.0.0.1:55432/framewire` from `make stack-up`).
//! With the variable set, an unreachable PostgreSQL fails the test; it is never skipped.

// Shared helpers below are not `#[test]` functions, but this whole file is test code.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use framewire_sink::cameras::{CameraRow, LatestPicture};
use framewire_sink::frame::{Detections, Frame, FrameKind, FrameStats};
use framewire_sink::incidents::{Incident, Kind, Tracker};
use framewire_sink::state::ClassCounts;
use framewire_sink::state::Summary;
use framewire_sink::store::{Backend, FlushInput, Merged, Pool, Store};
use framewire_sink::window::Batch;
use framewire_wire::{BoundingBox, DetectedObject};

const T0: i64 = 1_700_000_000_000;
const W: i64 = 10_000;

fn frame(camera: &str, session: &str, seq: u64, y: f64) -> Frame {
    Frame {
        camera: camera.into(),
        session: session.into(),
        seq,
        capture_ms: T0 + seq as i64 * 40,
        kind: FrameKind::Stats(FrameStats {
            keyframe: seq.is_multiple_of(25),
            y_avg: y,
            y_dif: 2.0,
            sharpness: 100.0,
            black: false,
            frozen: false,
            scene_cut: false,
            latency_ms: 50,
            width: 640,
            height: 360,
        }),
    }
}

fn batch(camera: &str, start_ms: i64, seqs: impl IntoIterator<Item = u64>) -> Batch {
    Batch {
        camera: camera.into(),
        start_ms,
        frames: seqs
            .into_iter()
            .map(|s| frame(camera, "s", s, 100.0))
            .collect(),
    }
}

fn camera(id: &str, last_capture_ms: i64) -> CameraRow {
    CameraRow {
        id: id.into(),
        first_seen_ms: 1_000,
        last_seen_ms: 2_000,
        last_capture_ms,
        width: 640,
        height: 360,
        session: "s".into(),
        tracker: Tracker::default(),
    }
}

fn incident(camera: &str, start_ms: i64, end_ms: Option<i64>) -> Incident {
    Incident {
        camera: camera.into(),
        kind: Kind::Black,
        start_ms,
        end_ms,
        duration_ms: end_ms.map_or(2_500, |e| e - start_ms),
        frames: 60,
        session: "s".into(),
        label: String::new(),
    }
}

fn object(label: &str) -> DetectedObject {
    DetectedObject {
        label: label.into(),
        class: 0,
        score: 0.9,
        bbox: BoundingBox {
            x0: 0.25,
            y0: 0.5,
            x1: 0.75,
            y1: 1.0,
        },
    }
}

/// An analysed picture of frame `seq` with objects of `labels`.
fn picture(camera: &str, seq: u64, labels: &[&str]) -> Frame {
    Frame {
        camera: camera.into(),
        session: "s".into(),
        seq,
        capture_ms: T0 + seq as i64 * 40,
        kind: FrameKind::Detections(Detections {
            width: 640,
            height: 360,
            model: "test-model".into(),
            detected_ms: T0 + seq as i64 * 40 + 90,
            objects: labels.iter().map(|l| object(l)).collect(),
        }),
    }
}

fn newest_of(f: &Frame) -> LatestPicture {
    LatestPicture::of(f).unwrap()
}

fn object_incident(camera: &str, kind: Kind, label: &str, start_ms: i64) -> Incident {
    Incident {
        camera: camera.into(),
        kind,
        start_ms,
        end_ms: (kind == Kind::Left).then_some(start_ms),
        duration_ms: 0,
        frames: 1,
        session: "s".into(),
        label: label.into(),
    }
}

async fn flush(
    store: &Store,
    windows: &[Batch],
    cameras: &[CameraRow],
    incidents: &[Incident],
) -> Vec<Merged> {
    store
        .flush(FlushInput {
            windows,
            cameras,
            incidents,
            pictures: &[],
            window_ms: W,
            now_ms: 5_000,
        })
        .await
        .unwrap()
}

/// A camera-id prefix unique to this run, so runs against a shared database never meet.
fn run_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{tag}-{}-{nanos}", std::process::id())
}

async fn all(store: &Store, camera: &str) -> Vec<Summary> {
    store.windows(camera, 0, i64::MAX, 1_000).await.unwrap()
}

/// The behaviour both backends must share.
async fn exercise(store: &Store, prefix: &str) {
    // Migrations are idempotent.
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();

    let cam = format!("{prefix}-a");
    let other = format!("{prefix}-b");

    // One flush, several cameras and windows, a duplicate inside the batch.
    let first = vec![
        batch(&cam, T0, (0..100).chain([5])),
        batch(&cam, T0 + W, 250..260),
        batch(&other, T0, 0..5),
    ];
    let merged = flush(store, &first, &[camera(&cam, T0 + 10_360)], &[]).await;
    let counts: Vec<(i64, u64, u64)> = merged
        .iter()
        .map(|m| (m.summary.frames, m.counted, m.duplicates))
        .collect();
    assert_eq!(counts, [(100, 100, 1), (10, 10, 0), (5, 5, 0)]);
    let rows = all(store, &cam).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], merged[0].summary, "values round-trip exactly");
    assert_eq!((rows[0].keyframes, rows[0].gaps), (4, 0));
    assert_eq!((rows[0].latency_p50_ms, rows[0].y_dif_mean), (50, 2.0));
    assert_eq!(rows[1].gaps, 0);

    // The same frames again (a re-delivery after the window was written) plus new ones:
    // only the new ones count, against the stored state.
    let again = vec![batch(&cam, T0, 50..150)];
    let merged = flush(store, &again, &[], &[]).await;
    assert_eq!((merged[0].counted, merged[0].duplicates), (50, 50));
    let rows = all(store, &cam).await;
    assert_eq!(rows[0].frames, 150);
    assert!((rows[0].fps - 15.0).abs() < 1e-9);

    // A gap and a decode error: 150 decoded, 151 missing, 152 failed, 153 decoded.
    let mut b = batch(&cam, T0, [150, 153]);
    let mut failed = frame(&cam, "s", 152, 0.0);
    failed.kind = FrameKind::DecodeError;
    b.frames.push(failed.clone());
    b.frames.push(failed);
    let merged = flush(store, &[b], &[], &[]).await;
    assert_eq!((merged[0].counted, merged[0].duplicates), (3, 1));
    let w = &all(store, &cam).await[0];
    assert_eq!((w.frames, w.decode_errors, w.gaps), (152, 1, 1));

    // Range reads: [from, to) on the window start, oldest first, limited.
    let starts: Vec<i64> = store
        .windows(&cam, T0 + 1, T0 + 2 * W, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.start_ms)
        .collect();
    assert_eq!(starts, [T0 + W]);
    assert_eq!(store.windows(&cam, 0, i64::MAX, 1).await.unwrap().len(), 1);
    assert!(
        store
            .windows("no-such-camera", 0, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let latest = store.latest_windows(T0, 1).await.unwrap();
    let mine: Vec<(&str, i64)> = latest
        .iter()
        .filter(|s| s.camera.starts_with(prefix))
        .map(|s| (s.camera.as_str(), s.start_ms))
        .collect();
    assert_eq!(mine, [(cam.as_str(), T0 + W), (other.as_str(), T0)]);

    // Cameras: the newest clock wins, the earliest first sighting stays.
    let mut older = camera(&cam, T0);
    older.first_seen_ms = 500;
    older.width = 1;
    flush(store, &[], &[older], &[]).await;
    let c = store.camera(&cam).await.unwrap().unwrap();
    assert_eq!(
        (c.first_seen_ms, c.last_capture_ms, c.width),
        (500, T0 + 10_360, 640)
    );
    assert!(store.camera("no-such-camera").await.unwrap().is_none());
    assert!(store.cameras().await.unwrap().iter().any(|c| c.id == cam));

    // Incidents: open, then closed; a replayed "open" report does not reopen it.
    flush(store, &[], &[], &[incident(&cam, T0 + 100, None)]).await;
    let open = store.open_incidents().await.unwrap();
    assert!(open.iter().any(|i| i.camera == cam && i.end_ms.is_none()));
    flush(
        store,
        &[],
        &[],
        &[incident(&cam, T0 + 100, Some(T0 + 3_100))],
    )
    .await;
    flush(store, &[], &[], &[incident(&cam, T0 + 100, None)]).await;
    let ev = store.events(&cam, T0, T0 + W, 10).await.unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].end_ms, ev[0].duration_ms), (Some(T0 + 3_100), 3_000));
    assert!(
        store
            .events(&cam, T0 + 3_100, T0 + W, 10)
            .await
            .unwrap()
            .is_empty(),
        "ended before from"
    );
    assert!(
        !store
            .open_incidents()
            .await
            .unwrap()
            .iter()
            .any(|i| i.camera == cam)
    );

    // Nothing to write is a no-op.
    assert!(flush(store, &[], &[], &[]).await.is_empty());

    // Detections merge into the windows beside the frames; per class rows; a picture
    // re-delivered after its window was written counts once.
    let det = format!("{prefix}-det");
    let mut first = batch(&det, T0, 0..10);
    first.frames.extend([
        picture(&det, 0, &["person"]),
        picture(&det, 2, &["person", "person"]),
        picture(&det, 4, &["car"]),
        picture(&det, 2, &["person", "person"]),
    ]);
    let m = flush(store, &[first], &[], &[]).await;
    assert_eq!(
        (m[0].counted, m[0].pictures_counted, m[0].picture_duplicates),
        (10, 3, 1)
    );
    let mut second = batch(&det, T0, [10]);
    second.frames.extend([
        picture(&det, 2, &["person", "person"]),
        picture(&det, 4, &["car"]),
        picture(&det, 6, &["person"]),
    ]);
    let m = flush(store, &[second], &[], &[]).await;
    assert_eq!(
        (
            m[0].counted,
            m[0].duplicates,
            m[0].pictures_counted,
            m[0].picture_duplicates
        ),
        (1, 0, 1, 2)
    );
    assert_eq!(
        m[0].objects_counted,
        BTreeMap::from([("person".to_owned(), 1)])
    );
    let mut rows = all(store, &det).await;
    assert!(rows[0].classes.is_empty(), "attached on request only");
    store.attach_classes(&mut rows).await.unwrap();
    assert_eq!((rows[0].frames, rows[0].pictures_analysed), (11, 4));
    let counts = |objects, max_per_picture, pictures| ClassCounts {
        objects,
        max_per_picture,
        pictures,
    };
    assert_eq!(
        rows[0].classes,
        BTreeMap::from([
            ("car".to_owned(), counts(1, 1, 1)),
            ("person".to_owned(), counts(4, 2, 3)),
        ])
    );
    assert_eq!(rows[0], m[0].summary, "values round-trip exactly");
    let analysed = store.latest_analysed_windows(T0).await.unwrap();
    assert!(analysed.iter().any(|w| w.camera == det && w.start_ms == T0));
    assert!(
        !analysed.iter().any(|w| w.camera == cam),
        "no pictures there"
    );

    // The newest analysed picture wins, whatever order flushes bring them in.
    let newest = picture(&det, 6, &["person"]);
    store
        .flush(FlushInput {
            windows: &[],
            cameras: &[],
            incidents: &[],
            pictures: &[newest_of(&newest)],
            window_ms: W,
            now_ms: 5_000,
        })
        .await
        .unwrap();
    store
        .flush(FlushInput {
            windows: &[],
            cameras: &[],
            incidents: &[],
            pictures: &[newest_of(&picture(&det, 4, &["car"]))],
            window_ms: W,
            now_ms: 5_001,
        })
        .await
        .unwrap();
    let got = store.latest_picture(&det).await.unwrap().unwrap();
    assert_eq!(got, newest_of(&newest));
    assert_eq!(
        store.latest_picture_times().await.unwrap().get(&det),
        Some(&(T0 + 240))
    );
    assert!(store.latest_picture(&cam).await.unwrap().is_none());

    // Two classes appearing in the same picture are two incidents; a `left` is a point.
    flush(
        store,
        &[],
        &[],
        &[
            object_incident(&det, Kind::Appeared, "person", T0),
            object_incident(&det, Kind::Appeared, "car", T0),
            object_incident(&det, Kind::Left, "car", T0 + 500),
        ],
    )
    .await;
    let ev = store.events(&det, T0, T0 + W, 10).await.unwrap();
    let brief: Vec<(Kind, &str, i64)> = ev
        .iter()
        .map(|i| (i.kind, i.label.as_str(), i.start_ms))
        .collect();
    assert_eq!(
        brief,
        [
            (Kind::Appeared, "car", T0),
            (Kind::Appeared, "person", T0),
            (Kind::Left, "car", T0 + 500)
        ]
    );
    let at = store.events(&det, T0 + 500, T0 + W, 10).await.unwrap();
    assert_eq!(at.len(), 3, "open ones and the point at `from`: {at:?}");

    // Retention removes what ended before the cutoff (this run's rows are from 2023).
    let deleted = store.delete_older_than(T0 + W + 1).await.unwrap();
    assert!(
        deleted.windows >= 3 && deleted.events >= 2 && deleted.window_objects >= 2,
        "{deleted:?}"
    );
    assert_eq!(
        all(store, &cam).await.len(),
        1,
        "the second window ends at T0 + 2W"
    );
}

/// The API's read pool sees what `writer` wrote, measures its waits, and refuses writes.
async fn reader_reads_and_cannot_write(
    writer: &Store,
    dsn: Option<&str>,
    sqlite_path: &str,
    camera: &str,
) {
    let wait = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("w", "w")).unwrap();
    let reader = Store::connect_reader(
        dsn.map(str::to_owned),
        sqlite_path.to_owned(),
        2,
        wait.clone(),
    )
    .await
    .unwrap();
    assert_eq!(reader.backend(), writer.backend());
    let written = writer.windows(camera, 0, i64::MAX, 100).await.unwrap();
    assert!(!written.is_empty(), "{camera} has windows");
    assert_eq!(
        reader.windows(camera, 0, i64::MAX, 100).await.unwrap(),
        written
    );
    assert!(
        wait.get_sample_count() >= 1,
        "the wait for a connection is measured"
    );
    let refused = match reader.pool() {
        Pool::Sqlite(pool) => sqlx::query("DELETE FROM cameras")
            .execute(pool)
            .await
            .map(drop),
        Pool::Postgres(pool) => sqlx::query("DELETE FROM cameras")
            .execute(pool)
            .await
            .map(drop),
    };
    let e = refused.expect_err("the read pool is read-only").to_string();
    assert!(e.contains("read-only") || e.contains("readonly"), "{e}");
    reader.close().await;
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
    if let Pool::Sqlite(pool) = store.pool() {
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
    let prefix = run_prefix("sqlite");
    exercise(&store, &prefix).await;
    let cam = format!("{prefix}-c");
    flush(&store, &[batch(&cam, T0, 0..5)], &[], &[]).await;
    reader_reads_and_cannot_write(&store, None, path_str, &cam).await;
    store.close().await;

    // Reopening: the state continues exactly where it was.
    let store = Store::connect(None, path_str).await.unwrap();
    store.migrate().await.unwrap();
    let merged = flush(&store, &[batch(&cam, T0, 3..8)], &[], &[]).await;
    assert_eq!(
        (
            merged[0].counted,
            merged[0].duplicates,
            merged[0].summary.frames
        ),
        (3, 2, 8)
    );
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

#[tokio::test(flavor = "multi_thread")]
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
    reader_reads_and_cannot_write(&store, Some(&dsn), "unused", &format!("{prefix}-a")).await;

    // Two replicas merging overlapping frames into the same new window at the same time:
    // the row lock makes them take turns, and the union is counted exactly once.
    let cam = format!("{prefix}-race");
    let second = Store::connect(Some(&dsn), "unused").await.unwrap();
    for round in 0..5u64 {
        let start = T0 + round as i64 * W;
        let (a, b) = ([batch(&cam, start, 0..200)], [batch(&cam, start, 100..300)]);
        let input = |windows| FlushInput {
            windows,
            cameras: &[],
            incidents: &[],
            pictures: &[],
            window_ms: W,
            now_ms: 1,
        };
        let (ra, rb) = tokio::join!(store.flush(input(&a)), second.flush(input(&b)));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra[0].counted + rb[0].counted, 300, "round {round}");
        assert_eq!(ra[0].duplicates + rb[0].duplicates, 100, "round {round}");
        let rows = store.windows(&cam, start, start + 1, 10).await.unwrap();
        assert_eq!(rows[0].frames, 300, "round {round}");
    }
    second.close().await;

    // A flush is all or nothing: a row PostgreSQL rejects (NUL in text) rolls back the rest.
    let good = batch(&format!("{prefix}-tx"), T0, 0..3);
    let bad = batch(&format!("{prefix}-bad\0"), T0, 0..3);
    let e = store
        .flush(FlushInput {
            windows: &[good.clone(), bad],
            cameras: &[],
            incidents: &[],
            pictures: &[],
            window_ms: W,
            now_ms: 1,
        })
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("postgres: "), "{e}");
    assert!(all(&store, &good.camera).await.is_empty(), "rolled back");

    // Clean up this run's rows (the database is shared with the local stack).
    if let Pool::Postgres(pool) = store.pool() {
        for table in [
            "window_summaries",
            "window_objects",
            "events",
            "latest_pictures",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE camera LIKE $1"
            )))
            .bind(format!("{prefix}%"))
            .execute(pool)
            .await
            .unwrap();
        }
        sqlx::query("DELETE FROM cameras WHERE id LIKE $1")
            .bind(format!("{prefix}%"))
            .execute(pool)
            .await
            .unwrap();
    }
    store.close().await;
}

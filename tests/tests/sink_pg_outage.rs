//! The sink through a PostgreSQL outage, against the real stack: while stats records keep
//! arriving, the local PostgreSQL is stopped for 20 s and started again.
//!
//! Checked: `/readyz` turns 503 naming the database and back to 200; failed writes are
//! counted; frames wait in memory (or in Kafka) meanwhile; once PostgreSQL is back every
//! frame is in the database exactly once — nothing lost, nothing doubled.
//!
//! This test stops the shared PostgreSQL: it lives in its own file (test binaries run one
//! after another) and a guard starts PostgreSQL again even when an assertion fails.

use std::process::Command;
use std::time::{Duration, Instant};

use framewire_e2e::{
    Record, Service, SinkDb, Topics, eventually, metric, now_ms, pg_dsn, produce_records,
    require_stack, sink_section, sink_totals, stats_record, unique,
};

const OUTAGE: Duration = Duration::from_secs(20);
/// 25 fps per camera, produced in real time.
const FPS: u64 = 25;
const CAMERAS: usize = 2;

fn postgres(action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack/postgres.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(action)
        .status()
        .expect("postgres.sh runs");
    assert!(status.success(), "postgres.sh {action} failed");
}

/// Starts PostgreSQL again even if the test fails half-way.
struct RestorePostgres;

impl Drop for RestorePostgres {
    fn drop(&mut self) {
        // Never panic here: this may run while a failed assertion unwinds.
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack/postgres.sh");
        let ok = Command::new("bash")
            .arg(script)
            .arg("up")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("could not start PostgreSQL again: run `make stack-up`");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_outage_loses_nothing() {
    require_stack();
    let topics = Topics::unique("sink-pg-outage");
    let db = SinkDb::Postgres(pg_dsn());
    let cams: Vec<String> = (0..CAMERAS)
        .map(|i| unique(&format!("outage-{i}")))
        .collect();
    let (section, _http) = sink_section(
        &unique("sink"),
        &db,
        "window_ms = 2000\nflush_interval_ms = 250\nretry_max_ms = 2000\npreview = false\n",
    );
    let mut sink = Service::start(
        "framewire-sink",
        &format!("{}\n{section}", topics.toml()),
        &[],
    );
    sink.wait_ready(Duration::from_secs(60)).await;

    // A producer in real time: 25 frames per camera per second, in 200 ms bursts.
    let producer = {
        let (topic, cams) = (topics.stats.clone(), cams.clone());
        tokio::spawn(async move {
            let start = now_ms();
            let mut seq = 0u64;
            let mut sent = 0usize;
            let seconds = 5 + OUTAGE.as_secs() + 4;
            while seq < seconds * FPS {
                let burst: Vec<Record> = (seq..seq + FPS / 5)
                    .flat_map(|s| cams.iter().map(move |c| (c, s)))
                    .map(|(c, s)| stats_record(c, "s", s, start + s as i64 * 40))
                    .collect();
                produce_records(&topic, &burst).await;
                sent += burst.len();
                seq += FPS / 5;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (seq, sent)
        })
    };

    tokio::time::sleep(Duration::from_secs(5)).await;
    let restore = RestorePostgres;
    let stopped = Instant::now();
    postgres("down");
    println!("PostgreSQL stopped");

    let reason = eventually(
        "/readyz 503 naming the database",
        Duration::from_secs(15),
        || async {
            let (code, body) = sink.get("/readyz").await;
            if code == 503 && body.contains("\"database\":{\"ready\":false") {
                Ok(body)
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;
    println!("after {:.1} s: {reason}", stopped.elapsed().as_secs_f64());

    let remaining = OUTAGE.saturating_sub(stopped.elapsed());
    tokio::time::sleep(remaining).await;
    let (_, text) = sink.get("/metrics").await;
    let errors = metric(
        &text,
        "framewire_sink_db_errors_total{backend=\"postgres\",op=\"flush\"}",
    )
    .unwrap_or(0.0);
    let pending = metric(&text, "framewire_sink_pending_frames").unwrap_or(0.0);
    assert!(
        errors >= 2.0,
        "failed writes counted: {errors}\n{}",
        sink.log()
    );
    // Frames wait in memory (`pending`) or in Kafka (consumption pauses while a write is
    // retried): either is fine, what matters is that none is lost (checked below).
    println!("frames waiting in memory during the outage: {pending}");
    assert_eq!(
        sink.get("/healthz").await.0,
        200,
        "alive throughout: no restart for an outage"
    );
    postgres("up");
    drop(restore);
    println!(
        "PostgreSQL back after {:.1} s; {errors} failed writes, {pending} frames waiting",
        stopped.elapsed().as_secs_f64()
    );

    let back = Instant::now();
    sink.wait_ready(Duration::from_secs(60)).await;
    println!(
        "/readyz 200 again {:.1} s after PostgreSQL started",
        back.elapsed().as_secs_f64()
    );

    let (per_camera, sent) = producer.await.expect("producer");
    let expected = per_camera as i64;
    let totals = eventually(
        "every frame in PostgreSQL exactly once",
        Duration::from_secs(60),
        || async {
            let t = sink_totals(&db, &cams).await?;
            if cams.iter().all(|c| t.get(c) == Some(&(expected, 0, 0))) {
                Ok(t)
            } else {
                Err(format!("{t:?}, expected {expected} frames per camera"))
            }
        },
    )
    .await;
    println!("sent {sent} records; in PostgreSQL: {totals:?}");

    let status = sink.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", sink.log());
}

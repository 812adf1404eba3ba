//! The sink counts every frame exactly once, on SQLite and on PostgreSQL, against the real
//! Kafka: stats records are produced straight into the stats topic, with
//! - duplicates inside their window (the same seq twice in a row, as a worker that
//!   re-processes a GOP sends them),
//! - a SIGKILL of the sink in the middle of the stream and a restart (offsets were
//!   committed behind the durable state, so the new sink re-reads records it already
//!   merged),
//! - duplicates after their window was written (the first 200 frames of a camera again),
//! - dead letters of the worker (decode errors, one of them twice) and a frame older
//!   than the allowed lateness (a retried delivery, a long backlog): its window is closed,
//!   and it is still counted, merged into the window's stored state.
//!
//! Checked: frames, decode errors and gaps per camera in the database equal the distinct
//! frames produced; the API's summaries add up to the same; the restarted sink counted
//! the injected duplicates and the late frame.

use std::time::{Duration, Instant};

use framewire_e2e::{
    Record, Service, SinkDb, Topics, dead_letter, eventually, http_get, metric, now_ms, pg_dsn,
    produce_records, require_stack, sink_section, sink_totals, stats_record, unique,
};

/// Frames per camera (25 fps, so 60 s of capture time in 2 s windows).
const FRAMES: u64 = 1_500;
/// Every this many frames a frame is sent twice in a row.
const DUP_EVERY: u64 = 50;
/// Records per burst while streaming, and the pause between bursts.
const BURST: usize = 120;
const PAUSE: Duration = Duration::from_millis(250);

async fn exact_under_redelivery(db: SinkDb) {
    require_stack();
    let topics = Topics::unique(&format!("sink-exact-{}", db.name()));
    let cams = [unique("exact-a"), unique("exact-b")];
    let group = unique("sink");
    let (section, http) = sink_section(
        &group,
        &db,
        "window_ms = 2000\nflush_interval_ms = 200\nallowed_lateness_ms = 120000\npreview = false\n",
    );
    // A killed member leaves the group only when its session times out: 6 s (the broker's
    // minimum) instead of 45 s, so the restarted sink gets the partitions quickly. Offsets
    // are auto-committed only every 60 s: the killed sink dies without having committed
    // any, so the restarted one re-reads everything the first one made durable.
    let config = format!(
        "{}\n{section}\n[kafka.options]\n\"session.timeout.ms\" = \"6000\"\n\"auto.commit.interval.ms\" = \"60000\"\n",
        topics.toml()
    );
    let mut first = Service::start("framewire-sink", &config, &[]);
    first.wait_ready(Duration::from_secs(60)).await;

    // Capture clock: 70 s ago onwards, 40 ms apart.
    let base = now_ms() - 70_000;
    let capture = |seq: u64| base + seq as i64 * 40;
    let mut stream: Vec<Record> = Vec::new();
    let mut injected_in_window = 0;
    for seq in 0..FRAMES {
        for cam in &cams {
            stream.push(stats_record(cam, "s1", seq, capture(seq)));
            if seq % DUP_EVERY == 7 {
                stream.push(stats_record(cam, "s1", seq, capture(seq)));
                injected_in_window += 1;
            }
        }
    }

    // Stream in bursts; SIGKILL the sink a third of the way, restart it a second later.
    let started = Instant::now();
    let kill_at = stream.len() / 3;
    let mut sent = 0;
    let mut second = None;
    let mut durable_at_kill = 0;
    for chunk in stream.chunks(BURST) {
        produce_records(&topics.stats, chunk).await;
        sent += chunk.len();
        if second.is_none() && sent >= kill_at {
            // Let it write a few times first, so that it dies with durable windows.
            eventually(
                "windows written before the kill",
                Duration::from_secs(30),
                || async {
                    match sink_totals(&db, &cams).await {
                        Ok(t) if t.values().map(|v| v.0).sum::<i64>() > 0 => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
            first.kill();
            // A commit PostgreSQL was already processing lands within this second.
            tokio::time::sleep(Duration::from_secs(1)).await;
            durable_at_kill = sink_totals(&db, &cams)
                .await
                .expect("read totals")
                .values()
                .map(|v| v.0)
                .sum::<i64>();
            let s = Service::start("framewire-sink", &config, &[]);
            s.wait_healthy(Duration::from_secs(30)).await;
            second = Some(s);
        }
        tokio::time::sleep(PAUSE).await;
    }
    let second = second.expect("the sink was restarted");
    println!(
        "{}: streamed {} records ({} in-window duplicates) in {:.1} s, SIGKILL after {kill_at}",
        db.name(),
        stream.len(),
        injected_in_window,
        started.elapsed().as_secs_f64()
    );

    // After the windows were written: the first 200 frames of camera a again, dead
    // letters for frames 1500..1505 of camera a (1502 twice), and a frame from before the
    // allowed lateness.
    eventually("every frame written", Duration::from_secs(60), || async {
        let t = sink_totals(&db, &cams).await?;
        let done = cams
            .iter()
            .all(|c| t.get(c).is_some_and(|v| v.0 == FRAMES as i64));
        if done { Ok(()) } else { Err(format!("{t:?}")) }
    })
    .await;
    let again: Vec<Record> = (0..200)
        .map(|seq| stats_record(&cams[0], "s1", seq, capture(seq)))
        .collect();
    produce_records(&topics.stats, &again).await;
    let dead: Vec<Record> = [1500u64, 1501, 1502, 1502, 1503, 1504]
        .iter()
        .map(|&seq| dead_letter(&cams[0], "s1", seq, capture(seq)))
        .collect();
    produce_records(&topics.dlq, &dead).await;
    let late = [stats_record(&cams[1], "s0", 9, base - 300_000)];
    produce_records(&topics.stats, &late).await;

    let expected: Vec<(String, (i64, i64, i64))> = vec![
        (cams[0].clone(), (FRAMES as i64, 5, 0)),
        // The late frame (another session, 5 minutes before the stream) counts too.
        (cams[1].clone(), (FRAMES as i64 + 1, 0, 0)),
    ];
    // The restarted sink reads every record from the start: all of them are duplicates
    // except the frames it counts itself (those the killed sink had not made durable,
    // and the 5 decode errors) and the late frame.
    let read = stream.len() + again.len() + dead.len() + late.len();
    let counted_by_second = 2 * FRAMES as i64 - durable_at_kill + 5;
    let expected_dups = (read as i64 - 1 - counted_by_second) as f64;
    let metrics = eventually(
        "exactly the expected duplicates, dead letters and the late frame",
        Duration::from_secs(60),
        || async {
            let (_, text) = second.get("/metrics").await;
            let dups: f64 = cams
                .iter()
                .filter_map(|c| {
                    metric(
                        &text,
                        &format!("framewire_sink_duplicates_total{{camera=\"{c}\"}}"),
                    )
                })
                .sum();
            let late = metric(
                &text,
                &format!(
                    "framewire_sink_late_records_total{{camera=\"{}\"}}",
                    cams[1]
                ),
            );
            let dead = metric(
                &text,
                &format!(
                    "framewire_sink_dead_letters_total{{camera=\"{}\"}}",
                    cams[0]
                ),
            );
            let t = sink_totals(&db, &cams).await?;
            let got: Vec<_> = t.into_iter().collect();
            if dups == expected_dups && late == Some(1.0) && dead == Some(6.0) && got == expected {
                Ok(dups)
            } else {
                Err(format!(
                    "duplicates {dups} (expected {expected_dups}), late {late:?}, dead letters {dead:?}, totals {got:?}"
                ))
            }
        },
    )
    .await;
    println!(
        "{}: exact: {} frames per camera, 5 decode errors, 0 gaps; {durable_at_kill} frames durable at the SIGKILL; the restarted sink re-read them and dropped {metrics} duplicates = {durable_at_kill} re-read + {injected_in_window} in-window + 200 after-window + 1 dead letter",
        db.name(),
        FRAMES,
    );

    // The API agrees.
    let (code, body) = http_get(&format!(
        "{http}/api/cameras/{}/summaries?from={}&to={}",
        cams[0],
        base - 10_000,
        now_ms()
    ))
    .await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("summaries JSON");
    let windows = v["windows"].as_array().expect("windows");
    let frames: i64 = windows.iter().filter_map(|w| w["frames"].as_i64()).sum();
    let errors: i64 = windows
        .iter()
        .filter_map(|w| w["decode_errors"].as_i64())
        .sum();
    assert_eq!((frames, errors), (FRAMES as i64, 5), "API summaries");
    let starts: std::collections::BTreeSet<i64> = (0..1505)
        .map(|seq| capture(seq).div_euclid(2_000))
        .collect();
    assert_eq!(
        windows.len(),
        starts.len(),
        "one row per 2 s window with frames"
    );

    let mut second = second;
    let status = second.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", second.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_counts_exactly_under_redelivery_and_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    exact_under_redelivery(SinkDb::Sqlite(dir.path().join("sink.sqlite"))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_counts_exactly_under_redelivery_and_sigkill() {
    exact_under_redelivery(SinkDb::Postgres(pg_dsn())).await;
}

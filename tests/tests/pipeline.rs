//! End to end over the real stack: three synthetic cameras → ingest → Kafka → worker →
//! Kafka → two sinks (SQLite and PostgreSQL).
//!
//! Checks the frame rate on the frames topic (within 2% of 25 fps over 20 s), that every
//! keyframe record starts with SPS and PPS, that sessions are numbered without gaps, that
//! every frame got statistics (black camera dark, moving camera bright, frozen camera
//! constant), that trace context links a frame to its stats, and that both databases hold
//! summaries that count every frame once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use framewire_e2e::{
    RTSP, Service, Topics, camera_toml, headers_of, pg_dsn, read_topic, require_stack,
    start_worker, trace_id, unique,
};
use framewire_wire::{StatsRecord, annexb};
use rdkafka::message::Message;

const RUN: Duration = Duration::from_secs(27);
const FPS: f64 = 25.0;
const MEASURE_MS: i64 = 20_000;

async fn frames_per_camera_in_db(url: &str, cameras: &[String]) -> BTreeMap<String, i64> {
    let sql = "SELECT camera, CAST(SUM(frames) AS BIGINT) FROM window_summaries GROUP BY camera";
    let rows: Vec<(String, i64)> = if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query_as(sql)
            .fetch_all(&pool)
            .await
            .expect("query PostgreSQL")
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.expect("open SQLite");
        sqlx::query_as(sql)
            .fetch_all(&pool)
            .await
            .expect("query SQLite")
    };
    rows.into_iter()
        .filter(|(c, _)| cameras.contains(c))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cameras_to_summaries() {
    require_stack();
    let topics = Topics::unique("pipeline");
    // `h265`: an H.265 camera, decoded by the worker's ffmpeg backend (`make test` builds
    // the worker with it).
    let mounts = ["moving", "black", "frozen", "h265"];
    let ids: Vec<String> = mounts.iter().map(|m| unique(m)).collect();
    let camera_of =
        |mount: &str| ids[mounts.iter().position(|m| *m == mount).expect("mount")].clone();

    let worker = start_worker(&topics, &[]);
    let db_dir = tempfile::tempdir().expect("temp dir");
    let sqlite_path = db_dir.path().join("summaries.sqlite");
    let sink_sqlite = Service::start(
        "framewire-sink",
        &format!(
            "{}\n[sink]\ngroup_id = \"{}\"\nsqlite_path = \"{}\"\n",
            topics.toml(),
            unique("s"),
            sqlite_path.display()
        ),
        &[],
    );
    let sink_pg = Service::start(
        "framewire-sink",
        &format!(
            "{}\n[sink]\ngroup_id = \"{}\"\ndatabase_url = \"{}\"\n",
            topics.toml(),
            unique("s"),
            pg_dsn()
        ),
        &[],
    );
    for s in [&worker, &sink_sqlite, &sink_pg] {
        s.wait_ready(Duration::from_secs(60)).await;
    }
    let cameras: String = mounts
        .iter()
        .map(|m| camera_toml(&camera_of(m), &format!("{RTSP}/{m}"), ""))
        .collect();
    let mut ingest = Service::start(
        "framewire-ingest",
        &format!("{}\n{cameras}", topics.toml()),
        &[],
    );
    ingest.wait_ready(Duration::from_secs(60)).await;
    tokio::time::sleep(RUN).await;
    let status = ingest.terminate(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(0),
        "ingest exit on SIGTERM\n{}",
        ingest.log()
    );

    // --- the frames topic ---
    let frames = tokio::task::spawn_blocking({
        let t = topics.frames.clone();
        move || read_topic(&t, Duration::from_secs(3))
    })
    .await
    .expect("read frames");
    let mut per_camera: HashMap<String, Vec<HashMap<String, String>>> = HashMap::new();
    for m in &frames {
        let h = headers_of(m);
        let payload = m.payload().unwrap_or_default();
        if h.get("fw-keyframe").map(String::as_str) == Some("1") {
            let self_contained = match h.get("fw-codec").map(String::as_str) {
                Some("h265") => annexb::h265::starts_with_parameter_sets(payload),
                _ => annexb::starts_with_parameter_sets(payload),
            };
            assert!(
                self_contained,
                "keyframe without its parameter sets first: {h:?}"
            );
            assert!(
                h.contains_key("fw-width") && h.contains_key("fw-height"),
                "{h:?}"
            );
        }
        assert_eq!(
            m.key(),
            h.get("fw-camera").map(|c| c.as_bytes()),
            "key = camera"
        );
        assert!(
            h.contains_key("traceparent"),
            "frame without traceparent: {h:?}"
        );
        per_camera
            .entry(h["fw-camera"].clone())
            .or_default()
            .push(h);
    }
    let mut frame_keys: HashSet<(String, String, u64)> = HashSet::new();
    let mut frame_traces: HashMap<(String, String, u64), String> = HashMap::new();
    for mount in mounts {
        let id = camera_of(mount);
        let recs = per_camera
            .get(&id)
            .unwrap_or_else(|| panic!("no frames for camera {id}\n{}", ingest.log()));
        let first = &recs[0];
        assert_eq!(first["fw-seq"], "0", "{id}: first record is seq 0");
        assert_eq!(
            first["fw-keyframe"], "1",
            "{id}: first record of a session is a keyframe"
        );
        let session = first["fw-session"].clone();
        for (i, h) in recs.iter().enumerate() {
            assert_eq!(h["fw-session"], session, "{id}: one session expected");
            assert_eq!(h["fw-seq"], i.to_string(), "{id}: seq without gaps");
            let key = (id.clone(), session.clone(), i as u64);
            frame_traces.insert(
                key.clone(),
                trace_id(&h["traceparent"]).unwrap_or_default().to_owned(),
            );
            frame_keys.insert(key);
        }
        let t0: i64 = first["fw-capture-ms"].parse().expect("capture ms");
        let (from, to) = (t0 + 2_000, t0 + 2_000 + MEASURE_MS);
        let in_window = recs
            .iter()
            .filter(|h| (from..to).contains(&h["fw-capture-ms"].parse::<i64>().unwrap_or(0)))
            .count() as f64;
        let expected = FPS * MEASURE_MS as f64 / 1000.0;
        println!(
            "{id}: {} records, {in_window} in {MEASURE_MS} ms (expected {expected})",
            recs.len()
        );
        assert!(
            (in_window - expected).abs() <= expected * 0.02,
            "{id}: {in_window} frames in 20 s, expected {expected} ± 2%"
        );
    }

    // --- the stats topic: wait until every frame has its statistics ---
    let deadline = Instant::now() + Duration::from_secs(90);
    let stats: Vec<(StatsRecord, HashMap<String, String>)> = loop {
        let t = topics.stats.clone();
        let msgs = tokio::task::spawn_blocking(move || read_topic(&t, Duration::from_secs(2)))
            .await
            .expect("read stats");
        let parsed: Vec<_> = msgs
            .iter()
            .map(|m| {
                (
                    serde_json::from_slice::<StatsRecord>(m.payload().unwrap_or_default())
                        .expect("stats JSON"),
                    headers_of(m),
                )
            })
            .collect();
        let seen: HashSet<_> = parsed
            .iter()
            .map(|(s, _)| (s.camera.clone(), s.session.clone(), s.seq))
            .collect();
        if frame_keys.is_subset(&seen) {
            break parsed;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} frames have no stats\n--- worker log ---\n{}",
            frame_keys.difference(&seen).count(),
            frame_keys.len(),
            worker.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut y_avg: HashMap<String, Vec<f64>> = HashMap::new();
    let mut linked = 0;
    for (s, h) in &stats {
        y_avg.entry(s.camera.clone()).or_default().push(s.y_avg);
        assert_eq!((s.width, s.height), (640, 360), "{s:?}");
        assert!(s.decoded_ms >= s.capture_ms, "{s:?}");
        let key = (s.camera.clone(), s.session.clone(), s.seq);
        let tp = h
            .get("traceparent")
            .and_then(|t| trace_id(t))
            .unwrap_or_default();
        if frame_traces.get(&key).is_some_and(|t| t == tp) {
            linked += 1;
        }
    }
    assert_eq!(
        linked,
        stats.len(),
        "every stats record continues its frame's trace"
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let black = &y_avg[&camera_of("black")];
    let moving = &y_avg[&camera_of("moving")];
    let frozen = &y_avg[&camera_of("frozen")];
    println!(
        "y_avg means: black {:.2} moving {:.2} frozen {:.2} h265 {:.2}",
        mean(black),
        mean(moving),
        mean(frozen),
        mean(&y_avg[&camera_of("h265")])
    );
    assert!(
        black.iter().all(|&v| v < 20.0),
        "black camera y_avg must stay < 20"
    );
    assert!(mean(moving) > 40.0, "moving camera y_avg must be > 40");
    let hevc = &y_avg[&camera_of("h265")];
    assert!(
        mean(hevc) > 40.0,
        "the H.265 camera (SMPTE bars) y_avg must be > 40"
    );
    let (lo, hi) = frozen
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(hi - lo < 1.0, "frozen camera y_avg varies: {lo}..{hi}");

    // --- the summaries: each sink counts every frame exactly once ---
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for (c, _, _) in &frame_keys {
        *expected.entry(c.clone()).or_default() += 1;
    }
    let sqlite_url = format!("sqlite://{}?mode=ro", sqlite_path.display());
    for (sink, url) in [(&sink_sqlite, sqlite_url), (&sink_pg, pg_dsn())] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = frames_per_camera_in_db(&url, &ids).await;
            if got == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "summaries in {url}: {got:?}, expected {expected:?}\n--- sink log ---\n{}",
                sink.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for mut s in [worker, sink_sqlite, sink_pg] {
        let status = s.terminate(Duration::from_secs(30));
        assert_eq!(
            status.code(),
            Some(0),
            "{} exit on SIGTERM\n{}",
            s.name,
            s.log()
        );
    }
}

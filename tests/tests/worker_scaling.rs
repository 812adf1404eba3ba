//! Workers join and leave a running group (on 4 partitions, 4 cameras: one worker, a 2nd
//! and a 3rd joining, one leaving with SIGTERM, one killed with SIGKILL): a worker that
//! takes a partition over seeks to the resume offset in the commit's metadata (every
//! camera's GOP start), replays up to the committed offset without publishing, and so never
//! decodes garbage, never sends a frame to the DLQ for a missing reference, and every frame
//! gets statistics; what a killed worker had done but not committed is re-processed
//! (counted, and absorbed by the sink's idempotency).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use framewire_e2e::frames::camera_on_partition;
use framewire_e2e::{
    RTSP, Service, Topics, camera_toml, headers_of, read_topic, require_stack, unique,
};
use framewire_wire::StatsRecord;
use rdkafka::message::Message;

fn sum(metrics: &str, prefix: &str, must_contain: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(must_contain))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_takes_over_starts_at_keyframes() {
    require_stack();
    let topics = Topics::unique("scaling");
    let group = unique("workers");
    let mounts = ["moving", "black", "frozen", "moving"];
    let cams: String = mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            camera_toml(
                &camera_on_partition("scale", i as u32, 4),
                &format!("{RTSP}/{m}"),
                "",
            )
        })
        .collect();
    let worker_config = format!(
        "{}\n[worker]\ngroup_id = \"{group}\"\ndecode_threads = 1\n",
        topics.toml()
    );
    let mut a = Service::start("framewire-worker", &worker_config, &[]);
    a.wait_ready(Duration::from_secs(60)).await;
    let mut ingest = Service::start(
        "framewire-ingest",
        &format!("{}\n{cams}", topics.toml()),
        &[],
    );
    ingest.wait_ready(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut b = Service::start("framewire-worker", &worker_config, &[]);
    b.wait_ready(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let c = Service::start("framewire-worker", &worker_config, &[]);
    c.wait_ready(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let owned =
        |m: &str| framewire_e2e::metric(m, "framewire_worker_assigned_partitions").unwrap_or(0.0);
    let (_, b_metrics) = b.get("/metrics").await;
    let (_, c_metrics) = c.get("/metrics").await;
    let (_, a_now) = a.get("/metrics").await;
    let spread = [owned(&a_now), owned(&b_metrics), owned(&c_metrics)];
    println!("partitions owned by A, B, C: {spread:?}");
    assert_eq!(
        spread.iter().sum::<f64>(),
        4.0,
        "4 partitions shared by 3 workers"
    );
    assert!(
        spread.iter().all(|&n| n >= 1.0),
        "every worker got a partition"
    );
    assert_eq!(
        b.terminate(Duration::from_secs(30)).code(),
        Some(0),
        "worker B leaves cleanly"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, c_metrics) = c.get("/metrics").await;
    drop(c); // SIGKILL: no drain, no final commit.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(ingest.terminate(Duration::from_secs(20)).code(), Some(0));

    let frames = tokio::task::spawn_blocking({
        let t = topics.frames.clone();
        move || read_topic(&t, Duration::from_secs(2))
    })
    .await
    .expect("read frames");
    let produced: HashSet<(String, String, u64)> = frames
        .iter()
        .map(headers_of)
        .map(|h| {
            (
                h["fw-camera"].clone(),
                h["fw-session"].clone(),
                h["fw-seq"].parse().unwrap_or(0),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (seen, records) = loop {
        let t = topics.stats.clone();
        let stats = tokio::task::spawn_blocking(move || read_topic(&t, Duration::from_secs(2)))
            .await
            .expect("read stats");
        let records: Vec<StatsRecord> = stats
            .iter()
            .filter_map(|m| serde_json::from_slice(m.payload().unwrap_or_default()).ok())
            .collect();
        let seen: HashSet<(String, String, u64)> = records
            .iter()
            .map(|r| (r.camera.clone(), r.session.clone(), r.seq))
            .collect();
        if produced.is_subset(&seen) || Instant::now() > deadline {
            break (seen, records.len());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let (_, a_metrics) = a.get("/metrics").await;
    assert_eq!(
        a.terminate(Duration::from_secs(30)).code(),
        Some(0),
        "worker A leaves cleanly"
    );
    let missing = produced.difference(&seen).count();
    let twice = records - seen.len();
    println!(
        "scaling: {} frames produced, {records} stats records, {missing} missing, {twice} re-processed (appear twice)",
        produced.len()
    );
    for (name, m) in [("A", &a_metrics), ("B", &b_metrics), ("C", &c_metrics)] {
        let skipped = sum(m, "framewire_worker_frames_skipped_total{", "replay");
        let replayed = sum(m, "framewire_worker_records_replayed_total", "");
        let resumed = sum(m, "framewire_worker_resumes_total{", "resume_offset");
        let errors = sum(m, "framewire_worker_decode_errors_total{", "");
        let decoded = sum(m, "framewire_worker_frames_decoded_total{", "");
        println!(
            "worker {name}: decoded {decoded}, replayed {replayed} (+{skipped} GOP tails) on {resumed} resumed partitions, decode errors {errors}"
        );
        assert_eq!(errors, 0.0, "worker {name} hit decode errors");
        assert!(decoded > 0.0, "worker {name} decoded frames");
    }
    assert_eq!(missing, 0, "every frame has statistics");
    let per_camera: HashMap<&str, usize> = seen.iter().fold(HashMap::new(), |mut m, (c, _, _)| {
        *m.entry(c.as_str()).or_default() += 1;
        m
    });
    assert_eq!(per_camera.len(), mounts.len());
}

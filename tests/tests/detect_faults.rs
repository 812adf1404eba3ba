//! Object detection under load and faults, on real Kafka: a backlog larger than inference can
//! take pauses the partitions feeding it (decoding goes on, memory stays bounded), and a
//! worker killed in the middle loses no picture — its successor re-runs what was not
//! delivered, and a picture detected twice gets the same objects both times. A camera without
//! detection on the same decoder thread is not held up by the others' inference backlog.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use framewire_e2e::frames::{Clip, FrameProducer, camera_on_partition, encode_clip, meta};
use framewire_e2e::{Service, Topics, eventually, metric, read_topic, require_stack, unique};
use framewire_wire::{DetectionsRecord, StatsRecord};
use rdkafka::message::Message;

/// 4 s of a moving pattern, 320x240, 25 fps, GOP 25: 100 access units.
fn clip() -> &'static Clip {
    static CLIP: OnceLock<Clip> = OnceLock::new();
    CLIP.get_or_init(|| encode_clip("testsrc2=size=320x240:rate=25:duration=4", 25, &[]))
}

fn model() -> PathBuf {
    let dir = std::env::var_os("FRAMEWIRE_MODEL_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/framewire/models"))
        })
        .expect("FRAMEWIRE_MODEL_DIR or HOME");
    let model = dir.join("nanodet-g-416.onnx");
    assert!(
        model.is_file(),
        "no {}: run scripts/model.sh",
        model.display()
    );
    model
}

async fn records<T: serde::de::DeserializeOwned + Send + 'static>(topic: &str) -> Vec<T> {
    let t = topic.to_owned();
    tokio::task::spawn_blocking(move || read_topic(&t, Duration::from_secs(2)))
        .await
        .expect("read a topic")
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap_or_default()).expect("a JSON record"))
        .collect()
}

/// Pictures the worker analysed for `cameras`, from its metrics text.
fn pictures_detected(metrics: &str, cameras: &[String]) -> f64 {
    cameras
        .iter()
        .filter_map(|c| {
            metric(
                metrics,
                &format!("framewire_worker_detect_pictures_total{{camera=\"{c}\"}}"),
            )
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_detection_backlog_pauses_its_partitions_and_a_killed_worker_loses_no_picture() {
    require_stack();
    let topics = Topics::unique("detect-faults");
    let cameras = [
        camera_on_partition("det-a", 0, 4),
        camera_on_partition("det-b", 1, 4),
    ];
    let c = clip();
    let frames = c.access_units.len() as u64;
    let config = format!(
        "{}\n[worker]\ngroup_id = \"{}\"\ndecode_threads = 1\nqueue_frames = 8\ncommit_interval_ms = 200\n\n[detect]\nmodel = \"{}\"\nrate = \"every\"\nqueue = 1\nqueue_max_bytes = 4000000\n",
        topics.toml(),
        unique("detect-faults"),
        model().display()
    );
    let mut first = Service::start("framewire-worker", &config, &[]);
    first.wait_ready(Duration::from_secs(60)).await;
    let producer = FrameProducer::new(&topics.frames);
    // The whole backlog at once (the worker made the topics): decoding outruns inference
    // (~100 ms a picture) at once.
    // Capture times of now: records older than the topics' retention would be deleted under
    // the test by the broker's next retention check.
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for camera in &cameras {
        for (i, au) in c.access_units.iter().enumerate() {
            let m = meta(
                camera,
                "s1",
                i as u64,
                c.keyframes[i],
                start_ms + i as i64 * 40,
            );
            producer.send(&m, au).await;
        }
    }
    // Behind that backlog, on the same decoder thread, a camera whose spec turns detection
    // off (`fw-detect: off`): its frames must not wait for the others' inferences.
    let plain = camera_on_partition("det-plain", 2, 4);
    for (i, au) in c.access_units.iter().enumerate() {
        let m = meta(
            &plain,
            "s1",
            i as u64,
            c.keyframes[i],
            start_ms + i as i64 * 40,
        );
        let mut headers = m.to_headers();
        headers.push(("fw-detect", "off".to_owned()));
        producer
            .send_raw(&plain, &headers, au, Some(m.capture_ms))
            .await;
    }
    // Watched on the worker's own counters: the stats topic keeps getting the backlog's
    // records, so a topic reader would not go quiet before the backlog is done.
    let plain_done = Instant::now();
    let plain_stats = loop {
        let (_, text) = first.get("/metrics").await;
        let n = metric(
            &text,
            &format!("framewire_worker_frames_decoded_total{{camera=\"{plain}\"}}"),
        )
        .unwrap_or(0.0) as u64;
        if n >= frames {
            break n;
        }
        assert!(
            plain_done.elapsed() < Duration::from_secs(60),
            "{n} of {frames} frames of the camera without detection measured\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, text) = first.get("/metrics").await;
    let detected_by_then = pictures_detected(&text, &cameras);
    assert!(
        detected_by_then < (2 * frames) as f64,
        "the camera without detection finished while the others' inference backlog was still \
         being worked off ({detected_by_then} of {} pictures detected)",
        2 * frames
    );
    eprintln!(
        "detect faults: {plain_stats} frames of a camera without detection measured in {:.1} s, \
         behind a backlog of which {detected_by_then} of {} pictures were detected by then",
        plain_done.elapsed().as_secs_f64(),
        2 * frames
    );

    // Backpressure: pictures wait for the inference queue, their partitions pause.
    let cams = &cameras;
    eventually(
        "the first worker paused a partition for inference",
        Duration::from_secs(60),
        || {
            let first = &first;
            async move {
                let (_, text) = first.get("/metrics").await;
                let pauses =
                    metric(&text, "framewire_worker_partition_pauses_total").unwrap_or(0.0);
                let detected = pictures_detected(&text, cams);
                if pauses > 0.0 && detected >= 30.0 {
                    Ok(())
                } else {
                    Err(format!("{pauses} pauses, {detected} pictures detected"))
                }
            }
        },
    )
    .await;
    let (_, text) = first.get("/metrics").await;
    let parked = metric(&text, "framewire_worker_detect_parked_pictures").unwrap_or(0.0);
    eprintln!("detect faults: {parked} pictures parked while the partitions are paused");
    // Parked: up to queue_max_bytes (2 tensors) when the partitions pause, plus the pictures
    // of the records the decoder had taken already: its queue (queue_frames = 8), and once
    // more that many, since the decoder runs on its own thread and the loop may have refilled
    // its queue before handling the outcome that crossed the limit (seen on a loaded machine:
    // 18; 2 on an idle one); per camera the access unit being decoded and the picture openh264
    // holds back for display order. Without the undecoded parking of paused partitions this
    // was 164 (every record fetched before the pause).
    assert!(
        parked <= 2.0 + 2.0 * 8.0 + 2.0 * 2.0,
        "pictures waiting for inference stay bounded: {parked}"
    );
    first.kill();

    let second = Service::start("framewire-worker", &config, &[]);
    second.wait_ready(Duration::from_secs(60)).await;
    let started = Instant::now();
    let expected: BTreeSet<(String, u64)> = cameras
        .iter()
        .flat_map(|c| (0..frames).map(move |s| (c.clone(), s)))
        .collect();
    let detections = loop {
        let got: Vec<DetectionsRecord> = records(&topics.detections).await;
        let seen: BTreeSet<(String, u64)> = got.iter().map(|r| (r.camera.clone(), r.seq)).collect();
        if seen.is_superset(&expected) {
            break got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{} of {} pictures detected after the takeover\nsecond worker:\n{}",
            seen.len(),
            expected.len(),
            second.log()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    // Every frame has its statistics (read until they are all there: a reader under load
    // can go quiet before its first fetch of a partition returns).
    let mut stats_seen: BTreeSet<(String, u64)> = BTreeSet::new();
    while !stats_seen.is_superset(&expected) {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "every frame has its statistics; missing: {:?}\nsecond worker:\n{}",
            expected.difference(&stats_seen).collect::<Vec<_>>(),
            second.log()
        );
        let stats: Vec<StatsRecord> = records(&topics.stats).await;
        stats_seen.extend(stats.iter().map(|r| (r.camera.clone(), r.seq)));
    }

    // A picture detected by both workers: the same objects (the same decoding, the same model).
    let mut by_picture: BTreeMap<(String, u64), Vec<&DetectionsRecord>> = BTreeMap::new();
    for r in &detections {
        by_picture
            .entry((r.camera.clone(), r.seq))
            .or_default()
            .push(r);
    }
    let mut repeated = 0;
    for ((camera, seq), rs) in &by_picture {
        if rs.len() > 1 {
            repeated += 1;
            for r in &rs[1..] {
                assert_eq!(
                    r.objects, rs[0].objects,
                    "{camera} picture {seq} detected twice differently"
                );
            }
        }
    }
    assert!(
        detections.len() - expected.len()
            == by_picture.values().map(|v| v.len() - 1).sum::<usize>(),
        "no records beyond the expected pictures"
    );
    eprintln!(
        "detect faults: {} pictures, {} detections records, {repeated} pictures re-detected after the kill",
        expected.len(),
        detections.len()
    );
}

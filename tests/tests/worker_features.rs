//! The worker on real Kafka, fed records made like ingest's: poison goes to the DLQ and
//! the camera recovers, `keyframes` mode decodes one picture per GOP, the `realtime` lag
//! policy skips an old backlog, the debug views show the assignment and pictures, and a
//! full decoder queue pauses only its partitions while every frame is measured once, in order.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use framewire_e2e::frames::{Clip, FrameProducer, camera_on_partition, encode_clip, meta};
use framewire_e2e::{
    Service, Topics, eventually, headers_of, metric, read_topic, require_stack, unique,
    validated_stats,
};
use framewire_wire::{StatsRecord, annexb};
use rdkafka::message::{Message, OwnedMessage};

/// 4 s of a moving pattern, 320x240, 25 fps, GOP 25: 100 access units.
fn clip() -> &'static Clip {
    static CLIP: OnceLock<Clip> = OnceLock::new();
    CLIP.get_or_init(|| encode_clip("testsrc2=size=320x240:rate=25:duration=4", 25, &[]))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The worker's admin token in the live-view test.
const LIVE_TOKEN: &str = "live-view-token-0123456789";

fn worker_config(topics: &Topics, extra: &str) -> String {
    format!(
        "{}\n[worker]\ngroup_id = \"{}\"\ndecode_threads = 1\n{extra}\n",
        topics.toml(),
        unique("features")
    )
}

/// Produces access units `range` of the clip as frames `first_seq…` of `camera`.
async fn send_gops(
    p: &FrameProducer,
    camera: &str,
    range: std::ops::Range<usize>,
    first_seq: u64,
    capture_ms: i64,
) {
    let c = clip();
    for (n, i) in range.enumerate() {
        let m = meta(
            camera,
            "s1",
            first_seq + n as u64,
            c.keyframes[i],
            capture_ms + n as i64 * 40,
        );
        p.send(&m, &c.access_units[i]).await;
    }
}

async fn read(topic: &str) -> Vec<OwnedMessage> {
    let t = topic.to_owned();
    tokio::task::spawn_blocking(move || read_topic(&t, Duration::from_secs(2)))
        .await
        .expect("read topic")
}

/// The stats records of `topic`, each checked against `docs/stats.schema.json`.
async fn stats_of(topic: &str) -> Vec<StatsRecord> {
    validated_stats(&read(topic).await)
}

/// Waits until the worker's metrics show `decoded` pictures for `camera`.
async fn wait_decoded(worker: &Service, camera: &str, decoded: f64) {
    let series = format!("framewire_worker_frames_decoded_total{{camera=\"{camera}\"}}");
    eventually("pictures decoded", Duration::from_secs(60), || async {
        let (_, m) = worker.get("/metrics").await;
        let got = metric(&m, &series);
        if got >= Some(decoded) {
            Ok(())
        } else {
            Err(format!("{series} = {got:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_goes_to_the_dlq_and_the_camera_recovers_at_its_next_keyframe() {
    require_stack();
    let topics = Topics::unique("poison");
    let camera = unique("poisoned");
    let mut worker = Service::start("framewire-worker", &worker_config(&topics, ""), &[]);
    worker.wait_ready(Duration::from_secs(60)).await;
    let p = FrameProducer::new(&topics.frames);
    let c = clip();
    let t0 = now_ms();
    // GOP 1 (seq 0-24), four poison records (seq 25-27 and one without headers), GOP 2 (seq 28-52).
    send_gops(&p, &camera, 0..25, 0, t0).await;
    p.send_raw(&camera, &[], &c.access_units[25], None).await;
    // A codec no decoder backend knows (h265 is known: the ffmpeg backend decodes it and
    // openh264 refuses it as `unsupported_codec`, see the worker's oracle tests).
    let mut unknown_codec = meta(&camera, "s1", 25, false, t0 + 1_000);
    unknown_codec.codec = "vp8".into();
    p.send(&unknown_codec, &c.access_units[26]).await;
    let truncated = &c.access_units[27][..6];
    p.send(&meta(&camera, "s1", 26, false, t0 + 1_040), truncated)
        .await;
    let idr_without_parameter_sets: Vec<u8> = annexb::nal_units(&c.access_units[25])
        .filter(|u| annexb::nal_type(u) == Some(annexb::nal::IDR))
        .flat_map(|u| [&[0u8, 0, 0, 1][..], u].concat())
        .collect();
    p.send(
        &meta(&camera, "s1", 27, true, t0 + 1_080),
        &idr_without_parameter_sets,
    )
    .await;
    send_gops(&p, &camera, 50..75, 28, t0 + 2_000).await;

    wait_decoded(&worker, &camera, 50.0).await;
    let (health, _) = worker.get("/healthz").await;
    assert_eq!(health, 200, "the worker keeps running");
    let (_, metrics) = worker.get("/metrics").await;
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));

    let stats = stats_of(&topics.stats).await;
    let mut seqs: Vec<u64> = stats.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let expected: Vec<u64> = (0..25).chain(28..53).collect();
    assert_eq!(seqs, expected, "both GOPs measured, no poison measured");

    let dlq = read(&topics.dlq).await;
    let reasons: HashMap<String, Vec<u8>> = dlq
        .iter()
        .map(|m| {
            let h = headers_of(m);
            assert_eq!(h["fw-dlq-source"], "worker");
            assert_eq!(m.key(), Some(camera.as_bytes()), "DLQ records keep the key");
            (
                h["fw-dlq-reason"].clone(),
                m.payload().unwrap_or_default().to_vec(),
            )
        })
        .collect();
    println!("DLQ: {} records, reasons {:?}", dlq.len(), reasons.keys());
    assert_eq!(dlq.len(), 4, "one DLQ record per poison record");
    assert_eq!(reasons["bad_headers"], c.access_units[25]);
    assert_eq!(reasons["codec"], c.access_units[26]);
    assert_eq!(reasons["truncated"], truncated);
    assert_eq!(reasons["parameter_sets"], idr_without_parameter_sets);
    let with_headers = dlq
        .iter()
        .filter(|m| headers_of(m).contains_key("fw-seq"))
        .count();
    assert_eq!(
        with_headers, 3,
        "DLQ records carry the original fw-* headers"
    );
    for reason in ["bad_headers", "codec", "truncated", "parameter_sets"] {
        // The record without headers is labelled with its key: the camera.
        let series = format!(
            "framewire_worker_dlq_records_total{{camera=\"{camera}\",reason=\"{reason}\"}}"
        );
        assert_eq!(metric(&metrics, &series), Some(1.0), "{series}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keyframes_mode_decodes_one_picture_per_gop() {
    require_stack();
    let topics = Topics::unique("keyframes");
    let camera = unique("gops");
    let mut worker = Service::start(
        "framewire-worker",
        &worker_config(&topics, "decode_mode = \"keyframes\""),
        &[],
    );
    worker.wait_ready(Duration::from_secs(60)).await;
    let p = FrameProducer::new(&topics.frames);
    send_gops(&p, &camera, 0..100, 0, now_ms()).await;
    wait_decoded(&worker, &camera, 4.0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, metrics) = worker.get("/metrics").await;
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
    let records_series = format!("framewire_worker_records_total{{camera=\"{camera}\"}}");
    assert_eq!(metric(&metrics, &records_series), Some(100.0));
    let stats = stats_of(&topics.stats).await;
    let mut seqs: Vec<u64> = stats.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [0, 25, 50, 75], "one picture per GOP");
    assert!(stats.iter().all(|r| r.keyframe && r.width == 320));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_realtime_policy_skips_an_old_backlog_to_a_fresh_keyframe() {
    require_stack();
    let topics = Topics::unique("realtime");
    let camera = unique("late");
    let mut worker = Service::start(
        "framewire-worker",
        &worker_config(
            &topics,
            "lag_policy = \"realtime\"\nrealtime_max_ms = 20000",
        ),
        &[],
    );
    worker.wait_ready(Duration::from_secs(60)).await;
    let p = FrameProducer::new(&topics.frames);
    let now = now_ms();
    // A backlog captured a minute ago (seq 0-49), then two fresh GOPs (seq 50-99).
    send_gops(&p, &camera, 0..50, 0, now - 60_000).await;
    send_gops(&p, &camera, 50..100, 50, now).await;
    wait_decoded(&worker, &camera, 50.0).await;
    let (_, metrics) = worker.get("/metrics").await;
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
    let skipped =
        format!("framewire_worker_frames_skipped_total{{camera=\"{camera}\",reason=\"realtime\"}}");
    assert_eq!(
        metric(&metrics, &skipped),
        Some(50.0),
        "the backlog is skipped"
    );
    let mut seqs: Vec<u64> = stats_of(&topics.stats)
        .await
        .iter()
        .map(|r| r.seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (50..100).collect::<Vec<_>>(), "fresh frames measured");
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_views_show_the_assignment_and_live_pictures() {
    require_stack();
    let topics = Topics::unique("debug");
    let camera = unique("watched");
    let config = worker_config(&topics, "live_view_max_viewers = 1");
    let mut worker = Service::start(
        "framewire-worker",
        &config,
        &[("FRAMEWIRE_ADMIN__TOKEN", LIVE_TOKEN)],
    );
    worker.wait_ready(Duration::from_secs(60)).await;
    // A live camera: the clip in a loop at 25 fps until the test ends.
    let live = {
        let (topic, camera) = (topics.frames.clone(), camera.clone());
        tokio::spawn(async move {
            let p = FrameProducer::new(&topic);
            let c = clip();
            for seq in 0u64.. {
                let i = seq as usize % c.access_units.len();
                let m = meta(&camera, "live", seq, c.keyframes[i], now_ms());
                p.send(&m, &c.access_units[i]).await;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    wait_decoded(&worker, &camera, 10.0).await;

    let view: serde_json::Value = eventually(
        "the camera in /debug/assignment",
        Duration::from_secs(20),
        || async {
            let (code, body) = worker.get("/debug/assignment").await;
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let listed = v["cameras"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["camera"] == camera.as_str()));
            if code == 200 && listed {
                Ok(v)
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;
    assert_eq!(
        view["partitions"].as_array().map(Vec::len),
        Some(4),
        "one worker owns all 4 partitions"
    );
    let cam = view["cameras"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["camera"] == camera.as_str()))
        .expect("camera listed");
    // Ten pictures decoded means seq 0-9 were consumed at least.
    assert!(
        cam["last_seq"].as_u64() >= Some(9) && cam["records"].as_u64() >= Some(10),
        "camera view {cam}"
    );
    assert!(
        cam["lag_ms"].as_i64() < Some(5_000),
        "live camera lag {cam}"
    );

    // Live pictures need the admin token: 401 without (with a challenge a browser answers
    // with its login prompt), 403 with a wrong one; Bearer or Basic with it as password.
    let client = reqwest::Client::new();
    let snapshot_url = format!("{}/debug/cameras/{camera}/snapshot.jpg", worker.admin);
    let mjpeg_url = format!("{}/debug/cameras/{camera}/mjpeg", worker.admin);
    for url in [&snapshot_url, &mjpeg_url] {
        let r = client.get(url).send().await.expect("request");
        assert_eq!(r.status(), 401, "{url} without a token");
        let challenges: Vec<_> = r.headers().get_all("www-authenticate").iter().collect();
        assert!(
            challenges
                .iter()
                .any(|c| c.to_str().unwrap_or("").starts_with("Basic")),
            "{challenges:?}"
        );
        let r = client
            .get(url)
            .bearer_auth("not-the-token-0123456789")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 403, "{url} with a wrong token");
    }
    let snap = client
        .get(&snapshot_url)
        .basic_auth("me", Some(LIVE_TOKEN))
        .send()
        .await
        .expect("snapshot");
    assert_eq!(snap.status(), 200);
    assert_eq!(snap.headers()["content-type"], "image/jpeg");
    let jpeg = snap.bytes().await.expect("body");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
    assert_eq!(jpeg_size(&jpeg), Some((320, 240)), "full-size picture");

    let authed = |url: String| client.get(url).bearer_auth(LIVE_TOKEN).send();
    let r = authed(format!(
        "{}/debug/cameras/nobody-here/snapshot.jpg",
        worker.admin
    ))
    .await
    .expect("request");
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap_or_default().contains("nobody-here"));
    let r = authed(format!("{}/debug/cameras/bad%20id/mjpeg", worker.admin))
        .await
        .expect("request");
    assert_eq!(r.status(), 400);

    let mut live_view = authed(mjpeg_url.clone()).await.expect("mjpeg");
    assert_eq!(live_view.status(), 200);
    assert!(
        live_view.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("multipart/x-mixed-replace")
    );
    let mut received = Vec::new();
    let started = std::time::Instant::now();
    while count(&received, b"Content-Type: image/jpeg") < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "three parts within 20 s"
        );
        match live_view.chunk().await.expect("mjpeg chunk") {
            Some(chunk) => received.extend_from_slice(&chunk),
            None => panic!("the live view ended"),
        }
    }
    let rate = 3.0 / started.elapsed().as_secs_f64();
    println!("mjpeg: 3 parts at {rate:.1} fps ({} bytes)", received.len());
    assert!(rate < 4.0, "at most mjpeg_max_fps (2) plus slack: {rate}");
    // One viewer at a time (live_view_max_viewers = 1): a second view waits its turn.
    let second = authed(mjpeg_url.clone()).await.expect("second view");
    assert_eq!(second.status(), 429, "a second viewer beyond the cap");
    assert!(second.headers().contains_key("retry-after"));
    drop(live_view);
    // The first viewer left: its slot is free again. Until the worker notices the closed
    // connection a snapshot is refused too, and each such refusal is counted.
    let refused_while_leaving = std::sync::atomic::AtomicU32::new(0);
    eventually("the viewer slot freed", Duration::from_secs(10), || async {
        let r = authed(snapshot_url.clone())
            .await
            .map_err(|e| e.to_string())?;
        if r.status() == 429 {
            refused_while_leaving.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if r.status() == 200 {
            Ok(())
        } else {
            Err(format!("snapshot {}", r.status()))
        }
    })
    .await;
    let refused_views =
        1.0 + f64::from(refused_while_leaving.load(std::sync::atomic::Ordering::Relaxed));

    let (_, metrics) = eventually("the lag gauge", Duration::from_secs(20), || async {
        let (code, m) = worker.get("/metrics").await;
        if m.contains("framewire_worker_consumer_lag{partition=") {
            Ok((code, m))
        } else {
            Err("no framewire_worker_consumer_lag yet".to_owned())
        }
    })
    .await;
    assert!(
        metric(
            &metrics,
            "framewire_worker_rebalances_total{kind=\"assign\"}"
        ) >= Some(1.0)
    );
    for (series, n) in [
        ("framewire_admin_refused_total{reason=\"missing\"}", 2.0),
        ("framewire_admin_refused_total{reason=\"wrong\"}", 2.0),
        ("framewire_worker_live_views_refused_total", refused_views),
    ] {
        assert_eq!(metric(&metrics, series), Some(n), "{series}");
    }
    assert_eq!(
        metric(&metrics, "framewire_worker_assigned_partitions"),
        Some(4.0)
    );
    live.abort();
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Width and height from a baseline JPEG's SOF0 marker.
fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
    let at = jpeg.windows(2).position(|w| w == [0xFF, 0xC0])?;
    let b = jpeg.get(at + 5..at + 9)?;
    Some((
        u16::from_be_bytes([b[2], b[3]]),
        u16::from_be_bytes([b[0], b[1]]),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn full_decoder_queues_pause_their_partitions_and_every_frame_is_measured_once_in_order() {
    require_stack();
    let topics = Topics::unique("backpressure");
    // Two decoder threads with room for two access units each and 64 KiB parked at most,
    // over a backlog of 4 cameras (one per partition) x 100 frames: queues fill all the time
    // and partitions pause and resume.
    let config = worker_config(&topics, "queue_frames = 2\nqueue_max_bytes = 65536")
        .replace("decode_threads = 1", "decode_threads = 2");
    // A first worker creates the topics with 4 partitions; the backlog is produced while no
    // worker runs, so the second one starts with all of it waiting.
    let mut first = Service::start("framewire-worker", &config, &[]);
    first.wait_ready(Duration::from_secs(60)).await;
    assert_eq!(first.terminate(Duration::from_secs(30)).code(), Some(0));
    let cameras: Vec<String> = (0..4).map(|p| camera_on_partition("bp", p, 4)).collect();
    let p = FrameProducer::new(&topics.frames);
    let t0 = now_ms();
    for camera in &cameras {
        send_gops(&p, camera, 0..100, 0, t0).await;
    }
    let mut worker = Service::start("framewire-worker", &config, &[]);
    worker.wait_ready(Duration::from_secs(60)).await;
    for camera in &cameras {
        wait_decoded(&worker, camera, 100.0).await;
    }
    let (_, metrics) = worker.get("/metrics").await;
    assert_eq!(worker.terminate(Duration::from_secs(30)).code(), Some(0));

    let pauses = metric(&metrics, "framewire_worker_partition_pauses_total");
    assert!(
        pauses >= Some(1.0),
        "64 KiB never exceeded? pauses {pauses:?}"
    );
    assert_eq!(
        metric(&metrics, "framewire_worker_paused_partitions"),
        Some(0.0),
        "every partition resumed"
    );
    assert_eq!(
        metric(&metrics, "framewire_worker_parked_records"),
        Some(0.0),
        "nothing left parked"
    );
    assert!(
        !metrics.contains("framewire_worker_decode_errors_total{"),
        "no decode errors"
    );
    // The skip counters exist per camera from its first frame on; all must be zero.
    let skipped: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("framewire_worker_frames_skipped_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(skipped.is_empty(), "nothing skipped: {skipped:?}");
    let stats = stats_of(&topics.stats).await;
    let mut by_camera: HashMap<&str, Vec<u64>> = HashMap::new();
    for r in &stats {
        by_camera.entry(r.camera.as_str()).or_default().push(r.seq);
    }
    for camera in &cameras {
        // Stats are keyed by camera: topic order is the order the worker produced them.
        assert_eq!(
            by_camera.get(camera.as_str()),
            Some(&(0..100).collect::<Vec<u64>>()),
            "camera {camera}: each frame once, in order"
        );
    }
    assert_eq!(stats.len(), 400);
}

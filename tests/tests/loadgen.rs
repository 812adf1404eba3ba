//! `framewire-loadgen` against the real Kafka, read back by an independent consumer:
//! - a paced H.264 fleet of 200 cameras: every record has the headers ingest writes; each
//!   camera's frames are numbered 0, 1, 2, … from a keyframe, one frame period apart, and
//!   are the clip's access units byte for byte (split here at the clip's delimiters, not
//!   by loadgen's splitter); cameras start staggered so that no frame period holds more
//!   than its share of keyframes; the record count is what the schedule asks for;
//! - an H.265 fleet at full speed: IRAP keyframes with VPS/SPS/PPS in front and the size;
//! - a real worker measures every frame of every camera of a fleet;
//! - stats mode: records valid against `docs/stats.schema.json`, which a real sink counts.

use std::collections::BTreeMap;
use std::time::Duration;

use framewire_e2e::frames::encode_clip_file;
use framewire_e2e::{
    Service, SinkDb, Topics, eventually, headers_of, loadgen, read_topic, require_stack,
    sink_section, sink_totals, start_worker, unique, validated_stats,
};
use framewire_wire::{Codec, FrameMeta, annexb, header};
use rdkafka::message::{Message, OwnedMessage};
use serde_json::Value;

/// 4 s of a moving pattern, 320x240, 25 fps: 100 access units.
const LAVFI: &str = "testsrc2=size=320x240:rate=25:duration=4";

/// One camera's records in the order they were read (one partition per camera, so the
/// order they were written), with their parsed headers.
fn by_camera(messages: &[OwnedMessage]) -> BTreeMap<String, Vec<(FrameMeta, &OwnedMessage)>> {
    let mut cameras: BTreeMap<String, Vec<(FrameMeta, &OwnedMessage)>> = BTreeMap::new();
    for m in messages {
        let h = headers_of(m);
        let meta = FrameMeta::from_headers(|name| h.get(name).map(|v| v.as_bytes()))
            .unwrap_or_else(|e| panic!("a record against the header contract: {e}"));
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        assert_eq!(
            key.as_deref(),
            Some(meta.camera.as_str()),
            "key = camera id"
        );
        assert_eq!(
            m.timestamp().to_millis(),
            Some(meta.capture_ms),
            "timestamp = capture"
        );
        let traceparent = h.get(header::TRACEPARENT).expect("a traceparent");
        assert_eq!(traceparent.len(), 55, "{traceparent}");
        cameras
            .entry(meta.camera.clone())
            .or_default()
            .push((meta, m));
    }
    cameras
}

fn read(topic: &str) -> Vec<OwnedMessage> {
    read_topic(topic, Duration::from_secs(2))
}

/// Runs loadgen with `args` into `topic` (4 partitions when it creates it), cameras named
/// `prefix-00000`, …: its summary.
fn fleet(topic: &str, prefix: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend([
        "--topic",
        topic,
        "--partitions",
        "4",
        "--camera-prefix",
        prefix,
    ]);
    loadgen(&all)
}

fn u64_of(summary: &Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("summary field {field}: {summary}"))
}

#[test]
fn a_paced_h264_fleet_reads_back_as_ingest_would_have_written_it() {
    require_stack();
    let (_dir, clip) = encode_clip_file(LAVFI, Codec::H264, 25, &[]);
    let stream = std::fs::read(&clip).expect("clip");
    let units: Vec<&[u8]> = annexb::split_at_delimiters(&stream)
        .into_iter()
        .map(|(_, au)| au)
        .collect();
    assert_eq!(units.len(), 100);
    let clip_keyframes: Vec<usize> = (0..100).filter(|&i| annexb::is_idr(units[i])).collect();
    assert_eq!(clip_keyframes, [0, 25, 50, 75]);

    let topics = Topics::unique("loadgen-h264");
    let prefix = unique("lg");
    let clip = clip.display().to_string();
    let summary = fleet(
        &topics.frames,
        &prefix,
        &["--clip", &clip, "--cameras", "200", "--duration", "4s"],
    );

    // Camera c starts c × 25 frames × 40 ms / 200 = 5c ms in; it sends the frames due
    // within the 4 s: ⌈(4000 − 5c) / 40⌉.
    let cameras = 200u64;
    let expected: Vec<u64> = (0..cameras).map(|c| (4000 - 5 * c).div_ceil(40)).collect();
    let total: u64 = expected.iter().sum();
    assert_eq!(u64_of(&summary, "records"), total, "{summary}");
    assert_eq!(u64_of(&summary, "delivered"), total, "{summary}");
    assert_eq!(u64_of(&summary, "delivery_errors"), 0, "{summary}");
    assert_eq!(summary["codec"], "h264");
    assert_eq!(summary["target_records_per_s"], 5000.0);
    // Pacing: half the records go out within a frame period of their moment even on a
    // busy machine; every second of the run has its entry.
    assert!(u64_of(&summary["lag_ms"], "p50") < 40, "{summary}");
    assert!(
        summary["per_second"]
            .as_array()
            .is_some_and(|s| s.len() >= 4),
        "{summary}"
    );

    let messages = read(&topics.frames);
    assert_eq!(messages.len() as u64, total);
    let fleet = by_camera(&messages);
    assert_eq!(fleet.len() as u64, cameras);
    let first_capture = |c: u64| fleet[&format!("{prefix}-{c:05}")][0].0.capture_ms;
    let t0 = first_capture(0);
    let mut keyframes_per_slot: BTreeMap<i64, usize> = BTreeMap::new();
    let mut keyframes = 0;
    for c in 0..cameras {
        let frames = &fleet[&format!("{prefix}-{c:05}")];
        assert_eq!(frames.len() as u64, expected[c as usize], "camera {c}");
        assert_eq!(
            first_capture(c) - t0,
            5 * c as i64,
            "camera {c} starts 5c ms in"
        );
        let session = &frames[0].0.session;
        assert_eq!(session.len(), 16);
        for (n, (meta, m)) in frames.iter().enumerate() {
            let n = n as u64;
            assert_eq!(meta.seq, n, "camera {c}: numbered without gaps");
            assert_eq!(&meta.session, session);
            assert_eq!(meta.codec, "h264");
            assert_eq!(meta.pts_90k, n as i64 * 3600);
            assert_eq!(meta.capture_ms, first_capture(c) + n as i64 * 40);
            // Camera c plays the clip from its keyframe c mod 4, looping.
            let unit = units[(clip_keyframes[c as usize % 4] + n as usize) % units.len()];
            assert_eq!(m.payload(), Some(unit), "camera {c} frame {n}");
            assert_eq!(meta.keyframe, annexb::is_idr(unit), "camera {c} frame {n}");
            if meta.keyframe {
                keyframes += 1;
                assert!(annexb::starts_with_parameter_sets(unit));
                assert_eq!(meta.dimensions, Some((320, 240)));
                *keyframes_per_slot
                    .entry((meta.capture_ms - t0) / 40)
                    .or_default() += 1;
            } else {
                assert_eq!(meta.dimensions, None);
            }
        }
        assert!(frames[0].0.keyframe, "camera {c} starts at a keyframe");
    }
    assert_eq!(u64_of(&summary, "keyframes"), keyframes);
    // 200 cameras over a GOP of 25 frame periods: 8 keyframes per period, never more.
    let most = keyframes_per_slot.values().copied().max().unwrap_or(0);
    assert_eq!(most, 8, "{keyframes_per_slot:?}");
    assert!(
        keyframes_per_slot.len() >= 90,
        "keyframes in most of the 100 periods"
    );
}

#[test]
fn an_h265_fleet_at_full_speed_carries_self_contained_irap_keyframes() {
    require_stack();
    let (_dir, clip) = encode_clip_file(LAVFI, Codec::H265, 25, &[]);
    let topics = Topics::unique("loadgen-h265");
    let prefix = unique("lg5");
    let clip = clip.display().to_string();
    let args = [
        "--clip",
        &clip,
        "--cameras",
        "50",
        "--rate",
        "max",
        "--frames",
        "30",
    ];
    let summary = fleet(&topics.frames, &prefix, &args);
    assert_eq!(summary["codec"], "h265");
    assert_eq!(u64_of(&summary, "delivered"), 1500, "{summary}");
    assert!(summary["lag_ms"].is_null() && summary["keeping_up"].is_null());
    let messages = read(&topics.frames);
    let fleet = by_camera(&messages);
    assert_eq!(fleet.len(), 50);
    let mut keyframes = 0;
    for (camera, frames) in &fleet {
        assert_eq!(frames.len(), 30, "{camera}");
        for (n, (meta, m)) in frames.iter().enumerate() {
            let data = m.payload().unwrap_or_default();
            assert_eq!(meta.seq, n as u64);
            assert_eq!(meta.codec, "h265");
            assert_eq!(meta.keyframe, annexb::h265::is_irap(data), "{camera} {n}");
            if meta.keyframe {
                keyframes += 1;
                assert!(
                    annexb::h265::starts_with_parameter_sets(data),
                    "{camera} {n}"
                );
                assert_eq!(meta.dimensions, Some((320, 240)));
            }
        }
        // From a keyframe, GOP 25: keyframes at frames 0 and 25.
        assert!(frames[0].0.keyframe && frames[25].0.keyframe, "{camera}");
    }
    assert_eq!(keyframes, 100);
    assert_eq!(u64_of(&summary, "keyframes"), 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_measures_every_frame_of_every_camera_of_a_fleet() {
    require_stack();
    let (_dir, clip) = encode_clip_file(LAVFI, Codec::H264, 25, &[]);
    let topics = Topics::unique("loadgen-worker");
    let worker = start_worker(&topics, &[]);
    worker.wait_ready(Duration::from_secs(60)).await;
    let prefix = unique("lgw");
    let (cameras, frames) = (40usize, 30u64);
    let summary = {
        let (clip, topic, prefix) = (clip.clone(), topics.frames.clone(), prefix.clone());
        tokio::task::spawn_blocking(move || {
            let (clip, cameras, frames) = (
                clip.display().to_string(),
                cameras.to_string(),
                frames.to_string(),
            );
            let args = [
                "--clip",
                &clip,
                "--cameras",
                &cameras,
                "--rate",
                "max",
                "--frames",
                &frames,
            ];
            fleet(&topic, &prefix, &args)
        })
        .await
        .expect("loadgen")
    };
    assert_eq!(u64_of(&summary, "delivered"), cameras as u64 * frames);
    let expected = cameras * frames as usize;
    let stats = eventually("a stats record per frame", Duration::from_secs(120), || {
        let topic = topics.stats.clone();
        async move {
            let messages = tokio::task::spawn_blocking(move || read(&topic))
                .await
                .map_err(|e| e.to_string())?;
            if messages.len() >= expected {
                Ok(messages)
            } else {
                Err(format!("{} of {expected} stats records", messages.len()))
            }
        }
    })
    .await;
    let stats = validated_stats(&stats);
    let sessions: BTreeMap<String, String> = by_camera(&read(&topics.frames))
        .into_iter()
        .map(|(camera, frames)| (camera, frames[0].0.session.clone()))
        .collect();
    let mut seqs: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for s in &stats {
        assert_eq!(Some(&s.session), sessions.get(&s.camera), "{}", s.camera);
        assert_eq!((s.width, s.height), (320, 240));
        seqs.entry(s.camera.as_str()).or_default().push(s.seq);
    }
    assert_eq!(seqs.len(), cameras, "stats for every camera");
    for (camera, mut got) in seqs {
        got.sort_unstable();
        assert_eq!(got, (0..frames).collect::<Vec<_>>(), "{camera}");
    }
    assert!(read(&topics.dlq).is_empty(), "no dead letters");
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_mode_writes_valid_records_that_a_sink_counts() {
    require_stack();
    let topics = Topics::unique("loadgen-stats");
    let prefix = unique("lgs");
    let (cameras, frames) = (30usize, 200u64);
    let summary = {
        let (topic, prefix) = (topics.stats.clone(), prefix.clone());
        tokio::task::spawn_blocking(move || {
            let (cameras, frames) = (cameras.to_string(), frames.to_string());
            let args = ["--mode", "stats", "--cameras", &cameras, "--rate", "max"];
            let args = [&args[..], &["--frames", &frames, "--gop", "25"]].concat();
            fleet(&topic, &prefix, &args)
        })
        .await
        .expect("loadgen")
    };
    assert_eq!(summary["mode"], "stats");
    assert_eq!(u64_of(&summary, "delivered"), cameras as u64 * frames);
    let messages = {
        let topic = topics.stats.clone();
        tokio::task::spawn_blocking(move || read(&topic))
            .await
            .expect("read")
    };
    let records = validated_stats(&messages);
    let mut per_camera: BTreeMap<&str, Vec<&framewire_wire::StatsRecord>> = BTreeMap::new();
    for (r, m) in records.iter().zip(&messages) {
        assert_eq!(m.key(), Some(r.camera.as_bytes()));
        per_camera.entry(r.camera.as_str()).or_default().push(r);
    }
    assert_eq!(per_camera.len(), cameras);
    for (camera, rs) in &per_camera {
        assert_eq!(rs.len() as u64, frames, "{camera}");
        for (n, r) in rs.iter().enumerate() {
            assert_eq!(r.seq, n as u64, "{camera}");
            assert_eq!(r.keyframe, n % 25 == 0);
            assert_eq!(r.capture_ms, rs[0].capture_ms + n as i64 * 40);
            assert_eq!(r.session, rs[0].session);
        }
    }

    // A sink reading the topic counts every record once.
    let dir = tempfile::tempdir().expect("temp dir");
    let db = SinkDb::Sqlite(dir.path().join("sink.db"));
    let (section, _) = sink_section(
        &unique("lgs-sink"),
        &db,
        "window_ms = 2000\nflush_interval_ms = 200\npreview = false\n",
    );
    let sink = Service::start(
        "framewire-sink",
        &format!("{}\n{section}", topics.toml()),
        &[],
    );
    sink.wait_ready(Duration::from_secs(60)).await;
    let ids: Vec<String> = per_camera.keys().map(|c| (*c).to_owned()).collect();
    eventually(
        "the sink counted every frame",
        Duration::from_secs(60),
        || {
            let (db, ids) = (db.clone(), ids.clone());
            async move {
                let totals = sink_totals(&db, &ids).await?;
                let counted: Vec<i64> = totals.values().map(|t| t.0).collect();
                if totals.len() == cameras && counted.iter().all(|&f| f == frames as i64) {
                    Ok(())
                } else {
                    Err(format!("frames per camera: {counted:?}"))
                }
            }
        },
    )
    .await;
}

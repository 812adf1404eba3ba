//! Ingest against the real RTSP server and Kafka: bad cameras get their own error state,
//! the registry changes at run time, replicas split the cameras, frames match ffprobe,
//! records are self-contained, large keyframes travel, sampling keeps GOPs whole.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use framewire_e2e::{
    RTSP, Service, Topics, camera_toml, eventually, headers_of, metric, produce, read_topic,
    require_stack, stack_log_tail, unique,
};
use rdkafka::message::{Message, OwnedMessage};
use serde_json::Value;

const TOKEN: &str = "test-admin-token-0123456789";

async fn cameras(s: &Service) -> Result<Vec<Value>, String> {
    let (code, body) = s.get("/cameras").await;
    if code != 200 {
        return Err(format!("{code} {body}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(v["cameras"].as_array().cloned().unwrap_or_default())
}

async fn camera(s: &Service, id: &str) -> Option<Value> {
    cameras(s).await.ok()?.into_iter().find(|c| c["id"] == id)
}

/// Waits until camera `id` reports `state` (and, when given, the error `kind`).
async fn wait_state(s: &Service, id: &str, state: &str, kind: Option<&str>) -> Value {
    eventually(
        &format!("camera {id} in state {state} ({kind:?})"),
        Duration::from_secs(30),
        || async {
            let c = camera(s, id)
                .await
                .ok_or_else(|| format!("camera {id} not listed"))?;
            let kind_ok = kind.is_none_or(|k| c["last_error"]["kind"] == k);
            if c["state"] == state && kind_ok {
                Ok(c)
            } else if c["last_error"]["kind"] == "rtsp" && kind != Some("rtsp") {
                // The camera's side of the story, for a failure message.
                Err(format!(
                    "{c}\nRTSP server log:\n{}",
                    stack_log_tail("rtsp", 15)
                ))
            } else {
                Err(c.to_string())
            }
        },
    )
    .await
}

fn per_camera(frames: &[OwnedMessage], id: &str) -> Vec<(HashMap<String, String>, Vec<u8>)> {
    frames
        .iter()
        .map(|m| (headers_of(m), m.payload().unwrap_or_default().to_vec()))
        .filter(|(h, _)| h.get("fw-camera").is_some_and(|c| c == id))
        .collect()
}

async fn read(topic: &str) -> Vec<OwnedMessage> {
    let t = topic.to_owned();
    tokio::task::spawn_blocking(move || read_topic(&t, Duration::from_secs(2)))
        .await
        .expect("read topic")
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_cameras_get_their_own_error_state() {
    require_stack();
    let topics = Topics::unique("ingest-bad");
    let ids: HashMap<&str, String> = [
        "good", "secure", "wrongpw", "h265", "mjpeg", "audio", "refused",
    ]
    .into_iter()
    .map(|k| (k, unique(k)))
    .collect();
    let config = format!(
        "{}\n[ingest]\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n\n{}{}{}{}{}{}{}",
        topics.toml(),
        camera_toml(&ids["good"], &format!("{RTSP}/moving"), ""),
        camera_toml(
            &ids["secure"],
            &format!("{RTSP}/secure"),
            "credentials = { username = \"framewire\", password_env = \"SECURE_CAM_PW\" }"
        ),
        camera_toml(
            &ids["wrongpw"],
            "rtsp://framewire:not-the-pw-9876@127.0.0.1:8554/secure",
            ""
        ),
        camera_toml(&ids["h265"], &format!("{RTSP}/h265"), ""),
        camera_toml(&ids["mjpeg"], &format!("{RTSP}/mjpeg"), ""),
        camera_toml(&ids["audio"], &format!("{RTSP}/audio"), ""),
        camera_toml(&ids["refused"], "rtsp://127.0.0.1:1/nothing-listens", ""),
    );
    let mut ingest = Service::start(
        "framewire-ingest",
        &config,
        &[("SECURE_CAM_PW", "s3cret-cam")],
    );
    ingest.wait_ready(Duration::from_secs(60)).await;

    wait_state(&ingest, &ids["good"], "streaming", None).await;
    wait_state(&ingest, &ids["secure"], "streaming", None).await;
    let c = wait_state(&ingest, &ids["wrongpw"], "failed", Some("auth")).await;
    assert!(
        c["last_error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("401"),
        "{c}"
    );
    wait_state(&ingest, &ids["h265"], "failed", Some("codec")).await;
    wait_state(&ingest, &ids["mjpeg"], "failed", Some("codec")).await;
    wait_state(&ingest, &ids["audio"], "failed", Some("no_video")).await;
    wait_state(&ingest, &ids["refused"], "backing_off", Some("connect")).await;

    // Every error is also a metric, and the good cameras keep streaming.
    let (_, metrics) = ingest.get("/metrics").await;
    for (key, kind) in [
        ("wrongpw", "auth"),
        ("h265", "codec"),
        ("mjpeg", "codec"),
        ("audio", "no_video"),
        ("refused", "connect"),
    ] {
        let series = format!(
            "framewire_ingest_session_errors_total{{camera=\"{}\",kind=\"{kind}\"}}",
            ids[key]
        );
        assert!(
            metric(&metrics, &series).is_some_and(|v| v >= 1.0),
            "{series} missing"
        );
    }
    // More than a second of frames each (a camera joining a running stream waits for a
    // keyframe), and still streaming.
    for key in ["good", "secure"] {
        eventually(
            &format!("camera {key} streaming 25+ frames"),
            Duration::from_secs(15),
            || async {
                let c = camera(&ingest, &ids[key])
                    .await
                    .ok_or_else(|| "not listed".to_owned())?;
                if c["state"] == "streaming" && c["frames"].as_u64().unwrap_or(0) > 25 {
                    Ok(())
                } else {
                    Err(c.to_string())
                }
            },
        )
        .await;
    }

    // Credentials never leave the process.
    let (_, config_json) = ingest.get("/config").await;
    let (_, listing) = ingest.get("/cameras").await;
    let (_, metrics) = ingest.get("/metrics").await;
    let status = ingest.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    for (what, text) in [
        ("/config", &config_json),
        ("/cameras", &listing),
        ("/metrics", &metrics),
        ("log", &ingest.log()),
    ] {
        for secret in ["not-the-pw-9876", "s3cret-cam"] {
            assert!(!text.contains(secret), "{what} leaks a password");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_changes_at_run_time() {
    require_stack();
    let topics = Topics::unique("ingest-registry");
    let config = format!("{}\n[ingest]\nadmin_token = \"{TOKEN}\"\n", topics.toml());
    let ingest = Service::start("framewire-ingest", &config, &[]);
    ingest.wait_ready(Duration::from_secs(60)).await;
    let client = reqwest::Client::new();
    let url = |id: &str| format!("{}/cameras/{id}", ingest.admin);
    let (a, b) = (unique("api-cam"), unique("topic-cam"));

    // The API refuses writes without the token, bad specs and passwords in URLs.
    let spec = serde_json::json!({"url": format!("{RTSP}/moving")});
    let r = client.put(url(&a)).json(&spec).send().await.expect("put");
    assert_eq!(r.status(), 401);
    let auth = format!("Bearer {TOKEN}");
    for (bad, why) in [
        (serde_json::json!({"url": "http://127.0.0.1/x"}), "rtsp://"),
        (
            serde_json::json!({"url": "rtsp://u:pw@127.0.0.1/x"}),
            "password",
        ),
        (
            serde_json::json!({"url": format!("{RTSP}/moving"), "trasnport": "udp"}),
            "trasnport",
        ),
    ] {
        let r = client
            .put(url(&a))
            .header("authorization", &auth)
            .json(&bad)
            .send()
            .await
            .expect("put");
        assert_eq!(r.status(), 400);
        let body = r.text().await.unwrap_or_default();
        assert!(body.contains(why), "{body}");
    }
    let r = client
        .put(url("bad id"))
        .header("authorization", &auth)
        .json(&spec)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);

    // Add through the API and through the topic directly.
    let r = client
        .put(url(&a))
        .header("authorization", &auth)
        .json(&spec)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    let b_spec = serde_json::json!({"id": b, "url": format!("{RTSP}/black"), "transport": "udp"})
        .to_string();
    produce(&topics.control, &b, Some(b_spec.as_bytes())).await;
    let c = wait_state(&ingest, &a, "streaming", None).await;
    assert_eq!(c["source"], "control");
    wait_state(&ingest, &b, "streaming", None).await;

    // A garbage record is counted and ignored; the cameras keep running.
    produce(&topics.control, &b, Some(b"{not json")).await;
    eventually("bad_spec counted", Duration::from_secs(10), || async {
        let (_, m) = ingest.get("/metrics").await;
        metric(
            &m,
            "framewire_ingest_control_records_total{outcome=\"bad_spec\"}",
        )
        .ok_or(m)
    })
    .await;
    assert_eq!(
        camera(&ingest, &b).await.expect("still listed")["state"],
        "streaming"
    );

    // Remove through the API and by tombstone; their metric series go with them.
    let r = client
        .delete(url(&a))
        .header("authorization", &auth)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    produce(&topics.control, &b, None).await;
    eventually("both cameras removed", Duration::from_secs(20), || async {
        let list = cameras(&ingest).await?;
        if list.is_empty() {
            Ok(())
        } else {
            Err(format!("{list:?}"))
        }
    })
    .await;
    let (_, m) = ingest.get("/metrics").await;
    assert!(
        !m.contains(&a) && !m.contains(&b),
        "removed cameras' series are deleted"
    );
    assert_eq!(client.get(url(&a)).send().await.expect("get").status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_split_the_cameras() {
    require_stack();
    let topics = Topics::unique("ingest-shards");
    let ids: Vec<String> = (0..8).map(|i| unique(&format!("shard{i}"))).collect();
    let cams: String = ids
        .iter()
        .map(|id| camera_toml(id, &format!("{RTSP}/black"), "enabled = false"))
        .collect();
    let base = format!("{}\n{cams}", topics.toml());
    let replicas: Vec<Service> = (0..2)
        .map(|i| {
            Service::start(
                "framewire-ingest",
                &base,
                &[
                    ("FRAMEWIRE_INGEST__SHARDS", "2"),
                    ("FRAMEWIRE_INGEST__SHARD", &i.to_string()),
                ],
            )
        })
        .collect();
    let mut owned: Vec<BTreeSet<String>> = Vec::new();
    for r in &replicas {
        r.wait_ready(Duration::from_secs(60)).await;
        let list = cameras(r).await.expect("/cameras");
        owned.push(
            list.iter()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect(),
        );
    }
    println!(
        "shard 0 owns {}, shard 1 owns {}",
        owned[0].len(),
        owned[1].len()
    );
    assert!(owned[0].is_disjoint(&owned[1]), "overlap: {owned:?}");
    let union: BTreeSet<String> = owned[0].union(&owned[1]).cloned().collect();
    assert_eq!(union, ids.iter().cloned().collect::<BTreeSet<_>>(), "gap");
    assert!(
        !owned[0].is_empty() && !owned[1].is_empty(),
        "both replicas get cameras: {owned:?}"
    );
}

/// Packets ffprobe sees on a mount for `secs`: (pts, keyframe), and the wall clock (ms) at start.
fn ffprobe_packets(url: &str, secs: u32) -> (Vec<(i64, bool)>, i64) {
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts,flags",
        ])
        .args([
            "-of",
            "csv=p=0",
            "-read_intervals",
            &format!("%+{secs}"),
            url,
        ])
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let packets = text
        .lines()
        .filter_map(|l| {
            let (pts, flags) = l.split_once(',')?;
            Some((pts.parse().ok()?, flags.starts_with('K')))
        })
        .collect();
    (packets, start)
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_match_ffprobe_over_tcp_and_udp_and_records_decode_alone() {
    require_stack();
    let topics = Topics::unique("ingest-ffprobe");
    let (tcp, udp) = (unique("tcp"), unique("udp"));
    let config = format!(
        "{}\n{}{}",
        topics.toml(),
        camera_toml(&tcp, &format!("{RTSP}/moving"), ""),
        camera_toml(&udp, &format!("{RTSP}/moving"), "transport = \"udp\"")
    );
    let mut ingest = Service::start("framewire-ingest", &config, &[]);
    ingest.wait_ready(Duration::from_secs(60)).await;
    wait_state(&ingest, &tcp, "streaming", None).await;
    wait_state(&ingest, &udp, "streaming", None).await;
    let (probe, probe_start) =
        tokio::task::spawn_blocking(|| ffprobe_packets(&format!("{RTSP}/moving"), 8))
            .await
            .expect("ffprobe");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ingest.terminate(Duration::from_secs(20)).code(), Some(0));
    assert!(probe.len() > 150, "ffprobe saw {} packets", probe.len());

    let frames = read(&topics.frames).await;
    for id in [&tcp, &udp] {
        let recs = per_camera(&frames, id);
        let mine: BTreeSet<(i64, bool)> = recs
            .iter()
            .map(|(h, _)| {
                (
                    h["fw-pts-90k"].parse().unwrap_or(0),
                    h["fw-keyframe"] == "1",
                )
            })
            .collect();
        let capture: HashMap<i64, i64> = recs
            .iter()
            .map(|(h, _)| {
                (
                    h["fw-pts-90k"].parse().unwrap_or(0),
                    h["fw-capture-ms"].parse().unwrap_or(0),
                )
            })
            .collect();
        // ffprobe's pts start near 0, ours are absolute RTP time: align on a keyframe whose
        // wall-clock time agrees (keyframes are 2 s apart, the clocks within a second).
        let (first_key, _) = probe
            .iter()
            .find(|(_, k)| *k)
            .copied()
            .expect("ffprobe saw a keyframe");
        let probe_wall = probe_start + first_key / 90;
        let offset = mine
            .iter()
            .filter(|(_, k)| *k)
            .map(|(p, _)| p - first_key)
            .min_by_key(|off| (capture[&(first_key + off)] - probe_wall).abs())
            .expect("ingest published keyframes");
        let (lo, hi) = (
            mine.first().map_or(0, |f| f.0),
            mine.last().map_or(0, |f| f.0),
        );
        let overlap: Vec<(i64, bool)> = probe
            .iter()
            .map(|&(p, k)| (p + offset, k))
            .filter(|(p, _)| (lo..=hi).contains(p))
            .collect();
        let missing: Vec<_> = overlap.iter().filter(|f| !mine.contains(f)).collect();
        let extra: Vec<_> = mine
            .iter()
            .filter(|(p, _)| {
                (overlap.first().map_or(0, |f| f.0)..=overlap.last().map_or(0, |f| f.0)).contains(p)
            })
            .filter(|f| !overlap.contains(f))
            .collect();
        println!(
            "{id}: ffprobe {} frames in the overlap, ingest {} records; {} missing, {} extra",
            overlap.len(),
            mine.len(),
            missing.len(),
            extra.len()
        );
        assert!(
            overlap.len() > 150,
            "{id}: overlap of only {} frames",
            overlap.len()
        );
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{id}: missing {missing:?} extra {extra:?}"
        );
    }

    // A standard decoder reads one camera's records from an arbitrary keyframe on.
    let recs = per_camera(&frames, &tcp);
    let start = recs
        .iter()
        .enumerate()
        .filter(|(_, (h, _))| h["fw-keyframe"] == "1")
        .nth(2)
        .map(|(i, _)| i)
        .expect("three keyframes");
    let dir = tempfile::tempdir().expect("tmp");
    let dump = dir.path().join("dump.h264");
    let bytes: Vec<u8> = recs[start..].iter().flat_map(|(_, p)| p.clone()).collect();
    std::fs::write(&dump, bytes).expect("write dump");
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&dump)
        .output()
        .expect("ffprobe runs");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    println!(
        "ffprobe on a dump from the 3rd keyframe: {stdout} ({} records)",
        recs.len() - start
    );
    assert!(
        out.status.success() && stderr.is_empty(),
        "ffprobe errors: {stderr}"
    );
    assert_eq!(stdout, format!("h264,640,360,{}", recs.len() - start));
}

#[tokio::test(flavor = "multi_thread")]
async fn large_keyframes_travel_and_oversize_ones_are_counted() {
    require_stack();
    let topics = Topics::unique("ingest-big");
    let (big, small) = (unique("big"), unique("big-capped"));
    let mut ingest = Service::start(
        "framewire-ingest",
        &format!(
            "{}\n{}",
            topics.toml(),
            camera_toml(&big, &format!("{RTSP}/big"), "")
        ),
        &[],
    );
    ingest.wait_ready(Duration::from_secs(60)).await;
    let capped_topics = Topics::unique("ingest-capped");
    let capped = Service::start(
        "framewire-ingest",
        &format!(
            "{}max_message_bytes = 1048576\n\n{}",
            capped_topics.toml(),
            camera_toml(&small, &format!("{RTSP}/big"), "")
        ),
        &[],
    );
    capped.wait_ready(Duration::from_secs(60)).await;
    let c = eventually(
        "three large keyframes published",
        Duration::from_secs(40),
        || async {
            let c = camera(&ingest, &big).await.ok_or("not listed")?;
            if c["keyframes"].as_u64().unwrap_or(0) >= 3 {
                Ok(c)
            } else {
                Err(c.to_string())
            }
        },
    )
    .await;
    println!("big camera: {c}");
    assert_eq!(ingest.terminate(Duration::from_secs(20)).code(), Some(0));
    let frames = read(&topics.frames).await;
    let largest = per_camera(&frames, &big)
        .iter()
        .map(|(_, p)| p.len())
        .max()
        .unwrap_or(0);
    println!("largest record: {largest} bytes");
    assert!(
        largest > 1_048_576,
        "a keyframe over 1 MiB travelled ({largest} bytes)"
    );

    let c = eventually(
        "oversize keyframes counted",
        Duration::from_secs(40),
        || async {
            let c = camera(&capped, &small).await.ok_or("not listed")?;
            if c["oversize_records"].as_u64().unwrap_or(0) >= 2 {
                Ok(c)
            } else {
                Err(c.to_string())
            }
        },
    )
    .await;
    assert!(
        capped.log().contains(&small)
            && capped
                .log()
                .contains("larger than topics.max_message_bytes"),
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_publishes_whole_gops() {
    require_stack();
    let topics = Topics::unique("ingest-sampling");
    let (keys, half) = (unique("keys"), unique("half"));
    let config = format!(
        "{}\n{}{}",
        topics.toml(),
        camera_toml(&keys, &format!("{RTSP}/moving"), "sampling = \"keyframes\""),
        camera_toml(&half, &format!("{RTSP}/moving"), "every_nth_gop = 2"),
    );
    let mut ingest = Service::start("framewire-ingest", &config, &[]);
    ingest.wait_ready(Duration::from_secs(60)).await;
    let started = Instant::now();
    wait_state(&ingest, &half, "streaming", None).await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(ingest.terminate(Duration::from_secs(20)).code(), Some(0));
    let frames = read(&topics.frames).await;

    let k = per_camera(&frames, &keys);
    assert!(
        k.len() >= 3 && k.iter().all(|(h, _)| h["fw-keyframe"] == "1"),
        "keyframes only: {} records",
        k.len()
    );

    let h = per_camera(&frames, &half);
    let seqs: Vec<(u64, bool)> = h
        .iter()
        .map(|(h, _)| (h["fw-seq"].parse().unwrap_or(0), h["fw-keyframe"] == "1"))
        .collect();
    let mut runs = 0;
    for (i, (seq, key)) in seqs.iter().enumerate() {
        if i == 0 || seqs[i - 1].0 + 1 != *seq {
            assert!(key, "a run of records starts at a keyframe (seq {seq})");
            runs += 1;
        }
    }
    let received = started.elapsed().as_secs_f64() * 25.0;
    println!(
        "every 2nd GOP: {} records in {runs} whole GOPs of ~{received:.0} frames received",
        h.len()
    );
    assert!(
        runs >= 2 && (h.len() as f64) < received * 0.7,
        "about half the frames"
    );
}

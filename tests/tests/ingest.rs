//! Ingest against the real RTSP server and Kafka: bad cameras get their own error state,
//! the registry changes at run time (a bad control record shows, it does not hide the
//! camera), replicas share the cameras through Kafka leases without ever running one camera
//! twice, frames match ffprobe, records are self-contained, large keyframes travel,
//! sampling keeps GOPs whole.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use framewire_e2e::{
    RTSP, Service, Topics, camera_toml, eventually, headers_of, metric, produce, read_topic,
    require_stack, stack_log_tail, unique,
};
use rdkafka::message::{Message, OwnedMessage};
use serde_json::Value;

const TOKEN: &str = "test-admin-token-0123456789";

/// Starts ingest in a lease group of its own (tests run side by side: a shared group would
/// split one test's cameras with another's replicas).
fn start_ingest(config: &str, env: &[(&str, &str)]) -> Service {
    start_in_group(config, &unique("e2e-ingest"), env)
}

/// Starts ingest in lease group `group`.
fn start_in_group(config: &str, group: &str, env: &[(&str, &str)]) -> Service {
    let mut env = env.to_vec();
    env.push(("FRAMEWIRE_INGEST__GROUP_ID", group));
    Service::start("framewire-ingest", config, &env)
}

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
            "credentials = { username = \"framewire\", password_env = \"FRAMEWIRE_CAMERA_SECURE_PW\" }"
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
    let mut ingest = start_ingest(&config, &[("FRAMEWIRE_CAMERA_SECURE_PW", "s3cret-cam")]);
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
    // H.265 streams like H.264 (`fw-codec: h265`); MJPEG is refused.
    wait_state(&ingest, &ids["h265"], "streaming", None).await;
    wait_state(&ingest, &ids["mjpeg"], "failed", Some("codec")).await;
    wait_state(&ingest, &ids["audio"], "failed", Some("no_video")).await;
    wait_state(&ingest, &ids["refused"], "backing_off", Some("connect")).await;

    // Every error is also a metric, and the good cameras keep streaming.
    let (_, metrics) = ingest.get("/metrics").await;
    for (key, kind) in [
        ("wrongpw", "auth"),
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
    for key in ["good", "secure", "h265"] {
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
    let ingest = start_ingest(&topics.toml(), &[("FRAMEWIRE_ADMIN__TOKEN", TOKEN)]);
    ingest.wait_ready(Duration::from_secs(60)).await;
    let client = reqwest::Client::new();
    let url = |id: &str| format!("{}/cameras/{id}", ingest.admin);
    let (a, b) = (unique("api-cam"), unique("topic-cam"));

    // The API refuses writes without the token, bad specs and passwords in URLs.
    let spec = serde_json::json!({"url": format!("{RTSP}/moving")});
    let r = client.put(url(&a)).json(&spec).send().await.expect("put");
    assert_eq!(r.status(), 401);
    let r = client
        .delete(url(&a))
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 403);
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
        // Another setting's secret, by variable or by file: outside the allowlist.
        (
            serde_json::json!({"url": format!("{RTSP}/secure"), "credentials":
                {"username": "framewire", "password_env": "FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD"}}),
            "ingest.credentials_env_prefix",
        ),
        (
            serde_json::json!({"url": format!("{RTSP}/secure"), "credentials":
                {"username": "framewire", "password_file": "/etc/framewire/camera-credentials/../secrets/db"}}),
            "ingest.credentials_dir",
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

    // A garbage record is counted; the camera keeps running its good spec and shows why
    // the record was refused, where it is.
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
    let shown = eventually(
        "b shows its spec error",
        Duration::from_secs(10),
        || async {
            let c = camera(&ingest, &b).await.ok_or("b not listed")?;
            if c["spec_error"]["message"].is_string() {
                Ok(c)
            } else {
                Err(c.to_string())
            }
        },
    )
    .await;
    assert_eq!(shown["state"], "streaming", "{shown}");
    assert!(
        shown["spec_error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("camera {b}")),
        "{shown}"
    );
    assert!(shown["spec_error"]["offset"].as_i64().is_some(), "{shown}");

    // A camera whose only record is bad (what compaction leaves of it) is listed as
    // invalid, not running, and counted; a good record brings it up.
    let c = unique("invalid-cam");
    produce(
        &topics.control,
        &c,
        Some(format!(r#"{{"id":"{c}","url":"http://127.0.0.1/x"}}"#).as_bytes()),
    )
    .await;
    let invalid = wait_state(&ingest, &c, "invalid", None).await;
    assert!(
        invalid["spec_error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("rtsp://"),
        "{invalid}"
    );
    // A control record naming another setting's secret never runs: the camera is invalid,
    // with the rule in its spec error, and the password variable is never read.
    let thief = unique("thief-cam");
    let stolen = serde_json::json!({"id": thief, "url": format!("{RTSP}/secure"),
        "credentials": {"username": "framewire", "password_env": "FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD"}});
    produce(&topics.control, &thief, Some(stolen.to_string().as_bytes())).await;
    let refused = wait_state(&ingest, &thief, "invalid", None).await;
    let why = refused["spec_error"]["message"].as_str().unwrap_or("");
    assert!(
        why.starts_with(&format!("camera {thief}: credentials.password_env"))
            && why.contains("ingest.credentials_env_prefix")
            && !why.contains('\n'),
        "{refused}"
    );
    produce(&topics.control, &thief, None).await;
    let (_, m) = ingest.get("/metrics").await;
    eventually("invalid counted", Duration::from_secs(10), || async {
        let (_, m) = ingest.get("/metrics").await;
        match metric(&m, "framewire_ingest_cameras{state=\"invalid\"}") {
            Some(v) if v >= 1.0 => Ok(()),
            _ => Err(m),
        }
    })
    .await;
    drop(m);
    let c_spec = serde_json::json!({"id": c, "url": format!("{RTSP}/black")}).to_string();
    produce(&topics.control, &c, Some(c_spec.as_bytes())).await;
    let fixed = wait_state(&ingest, &c, "streaming", None).await;
    assert!(fixed["spec_error"].is_null(), "{fixed}");
    produce(&topics.control, &c, None).await;

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

/// The lease slot of a camera among `slots` (FNV-1a 64 of the id, as ingest computes it).
fn slot_of(id: &str, slots: u64) -> u64 {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    h % slots
}

/// The ids of the cameras a replica runs, with their states.
async fn running(s: &Service) -> BTreeMap<String, String> {
    cameras(s)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            Some((
                c["id"].as_str()?.to_owned(),
                c["state"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The cameras `s` runs, when they are exactly `want` cameras, all streaming.
async fn streaming_on(s: &Service, want: usize) -> Result<BTreeSet<String>, String> {
    let r = running(s).await;
    let streaming = r.values().filter(|st| *st == "streaming").count();
    if r.len() == want && streaming == want {
        Ok(r.keys().cloned().collect())
    } else {
        Err(format!("{r:?}"))
    }
}

/// Per camera, each session's capture-time range (first, last `fw-capture-ms`), by start.
fn sessions_of(frames: &[OwnedMessage], ids: &[String]) -> BTreeMap<String, Vec<(i64, i64)>> {
    let mut ranges: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for m in frames {
        let h = headers_of(m);
        let (Some(cam), Some(session)) = (h.get("fw-camera"), h.get("fw-session")) else {
            continue;
        };
        if !ids.contains(cam) {
            continue;
        }
        let t: i64 = h["fw-capture-ms"].parse().unwrap_or(0);
        let r = ranges
            .entry((cam.clone(), session.clone()))
            .or_insert((t, t));
        r.0 = r.0.min(t);
        r.1 = r.1.max(t);
    }
    let mut out: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for ((cam, _), r) in ranges {
        out.entry(cam).or_default().push(r);
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_move_cameras_between_replicas_without_overlap() {
    require_stack();
    const LEASE_TIMEOUT_MS: u64 = 6_000;
    let topics = Topics::unique("ingest-leases");
    let group = unique("e2e-leases");
    let lease_topic = format!("{}.leases", topics.control.trim_end_matches(".control"));
    // Two slots, two cameras in each: two replicas get one slot each, so each runs two.
    let mut ids: Vec<String> = Vec::new();
    let mut per_slot = [0; 2];
    while ids.len() < 4 {
        let id = unique("lease");
        let slot = slot_of(&id, 2) as usize;
        if per_slot[slot] < 2 {
            per_slot[slot] += 1;
            ids.push(id);
        }
    }
    let cams: String = ids
        .iter()
        .map(|id| camera_toml(id, &format!("{RTSP}/moving"), ""))
        .collect();
    let config = format!(
        "{}
[ingest]
lease_slots = 2
lease_timeout_ms = {LEASE_TIMEOUT_MS}
backoff_initial_ms = 200
backoff_max_ms = 1000
shutdown_grace_ms = 5000

{cams}",
        topics.toml()
    );
    let env = [("FRAMEWIRE_TOPICS__LEASES", lease_topic.as_str())];
    let all: BTreeSet<String> = ids.iter().cloned().collect();

    // One replica: it owns both slots and runs every camera.
    let mut a = start_in_group(&config, &group, &env);
    a.wait_ready(Duration::from_secs(60)).await;
    eventually("replica a streams all 4", Duration::from_secs(30), || {
        streaming_on(&a, 4)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Scale 1 -> 2 while the cameras stream: a lets one slot go, b takes it.
    let scaled = Instant::now();
    let mut b = start_in_group(&config, &group, &env);
    b.wait_ready(Duration::from_secs(60)).await;
    let (on_a, on_b) = eventually(
        "two cameras on each replica",
        Duration::from_secs(40),
        || async {
            let on_a = streaming_on(&a, 2).await?;
            let on_b = streaming_on(&b, 2).await?;
            Ok((on_a, on_b))
        },
    )
    .await;
    println!(
        "scale 1 -> 2: split {on_a:?} / {on_b:?} after {:?}",
        scaled.elapsed()
    );
    assert!(on_a.is_disjoint(&on_b), "a camera on both replicas");
    assert_eq!(
        on_a.union(&on_b).cloned().collect::<BTreeSet<_>>(),
        all,
        "a camera on neither replica"
    );
    for (name, s) in [("a", &a), ("b", &b)] {
        let (code, body) = s.get("/leases").await;
        assert_eq!(code, 200, "{body}");
        let l: Value = serde_json::from_str(&body).expect("/leases JSON");
        assert_eq!(l["group"], group.as_str(), "{name}: {l}");
        assert_eq!(l["slots"].as_array().map(Vec::len), Some(1), "{name}: {l}");
        assert_eq!(l["slot_count"], 2, "{name}: {l}");
        assert_eq!(l["state"], "assigned", "{name}: {l}");
        let (_, m) = s.get("/metrics").await;
        assert_eq!(
            metric(&m, "framewire_ingest_lease_slots"),
            Some(1.0),
            "{name}"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // SIGKILL b: its cameras come back on a once b's lease times out.
    b.kill();
    let killed = Instant::now();
    eventually(
        "b's cameras streaming on a",
        Duration::from_millis(LEASE_TIMEOUT_MS + 20_000),
        || streaming_on(&a, 4),
    )
    .await;
    let back = killed.elapsed();
    println!("killed replica's cameras streaming on the other after {back:?}");
    assert!(
        back < Duration::from_millis(LEASE_TIMEOUT_MS + 10_000),
        "took {back:?}: more than lease_timeout_ms plus a reconnect"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, m) = a.get("/metrics").await;
    assert!(
        metric(
            &m,
            "framewire_ingest_lease_rebalances_total{kind=\"revoke\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "a revoked a slot when b joined"
    );
    assert_eq!(a.terminate(Duration::from_secs(30)).code(), Some(0));

    // Never two sessions of one camera at once: per camera, each session's capture times
    // end before the next one's begin.
    let frames = read(&topics.frames).await;
    let sessions = sessions_of(&frames, &ids);
    for id in &ids {
        let s = sessions.get(id).cloned().unwrap_or_default();
        println!("{id}: sessions {s:?}");
        assert!(!s.is_empty(), "{id}: no frames");
        for w in s.windows(2) {
            assert!(
                w[0].1 < w[1].0,
                "{id}: sessions overlap in capture time: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
    }
    let moved = ids.iter().filter(|id| sessions[*id].len() >= 2).count();
    assert!(moved >= 2, "cameras moved between replicas: {sessions:?}");
}

/// Packets ffprobe saw on a mount, (pts, keyframe) each, and the wall clock (ms) at start.
type Probe = (Vec<(i64, bool)>, i64);

/// Packets ffprobe sees on a mount for `secs`.
fn ffprobe_packets(url: &str, secs: u32) -> Probe {
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

/// What ffprobe reads from a file of one camera's records concatenated from an arbitrary
/// keyframe on: `codec,width,height,frames`.
fn ffprobe_dump(recs: &[(HashMap<String, String>, Vec<u8>)], from: usize, ext: &str) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    let dump = dir.path().join(format!("dump.{ext}"));
    let bytes: Vec<u8> = recs[from..].iter().flat_map(|(_, p)| p.clone()).collect();
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
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert!(
        out.status.success() && stderr.is_empty(),
        "ffprobe errors on the {ext} dump: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_match_ffprobe_over_tcp_and_udp_and_records_decode_alone() {
    require_stack();
    let topics = Topics::unique("ingest-ffprobe");
    let (tcp, udp, hevc) = (unique("tcp"), unique("udp"), unique("hevc"));
    let config = format!(
        "{}\n{}{}{}",
        topics.toml(),
        camera_toml(&tcp, &format!("{RTSP}/moving"), ""),
        camera_toml(&udp, &format!("{RTSP}/moving"), "transport = \"udp\""),
        camera_toml(&hevc, &format!("{RTSP}/h265"), "")
    );
    let mut ingest = start_ingest(&config, &[]);
    ingest.wait_ready(Duration::from_secs(60)).await;
    for id in [&tcp, &udp, &hevc] {
        wait_state(&ingest, id, "streaming", None).await;
    }
    let probe_h264 = tokio::task::spawn_blocking(|| ffprobe_packets(&format!("{RTSP}/moving"), 8));
    let probe_h265 = tokio::task::spawn_blocking(|| ffprobe_packets(&format!("{RTSP}/h265"), 8));
    let probes: HashMap<&str, Probe> = [
        ("moving", probe_h264.await.expect("ffprobe")),
        ("h265", probe_h265.await.expect("ffprobe")),
    ]
    .into_iter()
    .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ingest.terminate(Duration::from_secs(20)).code(), Some(0));
    for (mount, (probe, _)) in &probes {
        assert!(
            probe.len() > 150,
            "ffprobe saw {} packets on /{mount}",
            probe.len()
        );
    }

    let frames = read(&topics.frames).await;
    for (id, mount, codec) in [
        (&tcp, "moving", "h264"),
        (&udp, "moving", "h264"),
        (&hevc, "h265", "h265"),
    ] {
        let (probe, probe_start) = &probes[mount];
        let recs = per_camera(&frames, id);
        // Every record names its codec; keyframes carry the picture size.
        for (h, _) in &recs {
            assert_eq!(h["fw-codec"], codec, "{id}: fw-codec");
            if h["fw-keyframe"] == "1" {
                assert_eq!(
                    (h["fw-width"].as_str(), h["fw-height"].as_str()),
                    ("640", "360"),
                    "{id}: keyframe size"
                );
            }
        }
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
            "{id} ({codec}): ffprobe {} frames in the overlap, ingest {} records; {} missing, {} extra",
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

    // A standard decoder reads one camera's records from an arbitrary keyframe on: every
    // keyframe carries its parameter sets (H.264: SPS, PPS; H.265: VPS, SPS, PPS).
    for (id, ext, name) in [(&tcp, "h264", "h264"), (&hevc, "hevc", "hevc")] {
        let recs = per_camera(&frames, id);
        let start = recs
            .iter()
            .enumerate()
            .filter(|(_, (h, _))| h["fw-keyframe"] == "1")
            .nth(2)
            .map(|(i, _)| i)
            .expect("three keyframes");
        let probed = ffprobe_dump(&recs, start, ext);
        println!(
            "ffprobe on a {ext} dump from the 3rd keyframe: {probed} ({} records)",
            recs.len() - start
        );
        assert_eq!(probed, format!("{name},640,360,{}", recs.len() - start));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn large_keyframes_travel_and_oversize_ones_are_counted() {
    require_stack();
    let topics = Topics::unique("ingest-big");
    let (big, small) = (unique("big"), unique("big-capped"));
    let mut ingest = start_ingest(
        &format!(
            "{}\n{}",
            topics.toml(),
            camera_toml(&big, &format!("{RTSP}/big"), "")
        ),
        &[],
    );
    ingest.wait_ready(Duration::from_secs(60)).await;
    let capped_topics = Topics::unique("ingest-capped");
    let capped = start_ingest(
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
    let mut ingest = start_ingest(&config, &[]);
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

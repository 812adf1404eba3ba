//! Ingest under faults, against the real stack: a camera that sends RTCP but no video, the
//! RTSP server restarts, Kafka goes away for a while (longer than the lease timeout). One
//! test per fault, run one after the other (some stop shared servers).

use std::process::Command;
use std::time::Duration;

use framewire_e2e::{
    RTSP, Service, Topics, camera_toml, eventually, headers_of, metric, read_topic, require_stack,
    unique,
};
use rdkafka::message::Message;
use serde_json::Value;

fn stack(component: &str, action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack/");
    let status = Command::new("bash")
        .arg(format!("{script}{component}.sh"))
        .arg(action)
        .status()
        .expect("stack script runs");
    assert!(status.success(), "{component}.sh {action} failed");
}

/// Starts a stack component again even if the test fails half-way.
struct Restore(&'static str);

impl Drop for Restore {
    fn drop(&mut self) {
        // Never panic here: this may run while a failed assertion unwinds.
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack/");
        let ok = Command::new("bash")
            .arg(format!("{script}{}.sh", self.0))
            .arg("up")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("could not start {} again: run `make stack-up`", self.0);
        }
    }
}

/// Starts ingest in a lease group of its own.
fn start_ingest(config: &str) -> Service {
    let group = unique("e2e-faults");
    Service::start(
        "framewire-ingest",
        config,
        &[("FRAMEWIRE_INGEST__GROUP_ID", group.as_str())],
    )
}

/// Waits (30 s at most) until camera `id` streams and has published more than `frames`
/// frames; returns its `/cameras` entry.
async fn streaming(ingest: &Service, id: &str, frames: u64) -> Value {
    eventually("camera streaming", Duration::from_secs(30), || async {
        let c = camera(ingest, id).await?;
        if c["state"] == "streaming" && c["frames"].as_u64().unwrap_or(0) > frames {
            Ok(c)
        } else {
            Err(c.to_string())
        }
    })
    .await
}

async fn camera(s: &Service, id: &str) -> Result<Value, String> {
    let (code, body) = s.get(&format!("/cameras/{id}")).await;
    if code != 200 {
        return Err(format!("{code} {body}"));
    }
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn faults() {
    require_stack();
    rtcp_without_video_stalls().await;
    rtsp_server_restart().await;
    kafka_outage().await;
}

/// The `rtcponly` mount sends video for 6 s, then only RTCP sender reports (every ~5 s,
/// randomised 0.5-1.5x): the session must be declared stalled `stall_timeout_ms` after the
/// last video frame and reconnect. The timeout is above the longest RTCP interval, so a
/// stall timer that any packet resets would never fire.
async fn rtcp_without_video_stalls() {
    let topics = Topics::unique("fault-rtcp");
    let id = unique("rtcponly");
    let config = format!(
        "{}\n[ingest]\nstall_timeout_ms = 9000\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n\n{}",
        topics.toml(),
        camera_toml(&id, &format!("{RTSP}/rtcponly"), "")
    );
    let mut ingest = start_ingest(&config);
    ingest.wait_ready(Duration::from_secs(60)).await;
    let first = streaming(&ingest, &id, 10).await;
    let series = format!("framewire_ingest_session_errors_total{{camera=\"{id}\",kind=\"stall\"}}");
    // 6 s of video, then the stall timeout (9 s); with margin for a slow start.
    let stalled = eventually(
        "the session declared stalled",
        Duration::from_secs(30),
        || async {
            let (_, m) = ingest.get("/metrics").await;
            match metric(&m, &series) {
                Some(v) if v >= 1.0 => Ok(()),
                _ => Err(camera(&ingest, &id)
                    .await
                    .map_or_else(|e| e, |c| c.to_string())),
            }
        },
    );
    stalled.await;
    let again = eventually(
        "streaming again in a new session",
        Duration::from_secs(20),
        || async {
            let c = camera(&ingest, &id).await?;
            if c["state"] == "streaming" && c["session"] != first["session"] {
                Ok(c)
            } else {
                Err(c.to_string())
            }
        },
    )
    .await;
    println!(
        "rtcponly: stalled and reconnected: last error {}",
        again["last_error"]
    );
    assert_eq!(again["last_error"]["kind"], "stall", "{again}");
    assert_eq!(ingest.terminate(Duration::from_secs(20)).code(), Some(0));
}

async fn rtsp_server_restart() {
    let topics = Topics::unique("fault-rtsp");
    let id = unique("restart");
    let config = format!(
        "{}\n[ingest]\nbackoff_initial_ms = 200\nbackoff_max_ms = 2000\n\n{}",
        topics.toml(),
        camera_toml(&id, &format!("{RTSP}/moving"), "")
    );
    let mut ingest = start_ingest(&config);
    ingest.wait_ready(Duration::from_secs(60)).await;
    let first = streaming(&ingest, &id, 25).await;
    {
        let _restore = Restore("rtsp");
        stack("rtsp", "down");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let second = eventually(
        "camera streaming in a new session",
        Duration::from_secs(30),
        || async {
            let c = camera(&ingest, &id).await?;
            if c["state"] == "streaming" && c["session"] != first["session"] {
                Ok(c)
            } else {
                Err(c.to_string())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ingest.terminate(Duration::from_secs(20)).code(), Some(0));
    let frames =
        tokio::task::spawn_blocking(move || read_topic(&topics.frames, Duration::from_secs(2)))
            .await
            .expect("read");
    let new_session = second["session"].as_str().expect("session id").to_owned();
    let resumed: Vec<_> = frames
        .iter()
        .map(headers_of)
        .filter(|h| h["fw-session"] == new_session)
        .collect();
    println!(
        "after the restart: session {new_session}, {} frames",
        resumed.len()
    );
    assert!(resumed.len() > 25, "frames resume after the restart");
    assert_eq!(
        (
            resumed[0]["fw-seq"].as_str(),
            resumed[0]["fw-keyframe"].as_str()
        ),
        ("0", "1"),
        "new session starts at seq 0 on a keyframe"
    );
}

async fn kafka_outage() {
    let topics = Topics::unique("fault-kafka");
    let id = unique("outage");
    // A 1 MiB queue holds ~10 s of this camera: a 25 s outage must drop GOPs.
    let config = format!(
        "{}\n[ingest]\nqueue_max_bytes = 1048576\n\n{}",
        topics.toml(),
        camera_toml(&id, &format!("{RTSP}/moving"), "")
    );
    let mut ingest = start_ingest(&config);
    ingest.wait_ready(Duration::from_secs(60)).await;
    eventually("camera streaming", Duration::from_secs(30), || async {
        let c = camera(&ingest, &id).await?;
        if c["frames"].as_u64().unwrap_or(0) > 50 {
            Ok(())
        } else {
            Err(c.to_string())
        }
    })
    .await;
    {
        let _restore = Restore("kafka");
        stack("kafka", "down");
        eventually(
            "/readyz 503 while Kafka is down",
            Duration::from_secs(20),
            || async {
                let (code, body) = ingest.get("/readyz").await;
                if code == 503 {
                    Ok(())
                } else {
                    Err(format!("{code} {body}"))
                }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(18)).await;
        let c = camera(&ingest, &id).await.expect("camera");
        println!("during the outage: {c}");
        assert!(
            c["dropped_gops"].as_u64().unwrap_or(0) > 0,
            "GOPs dropped once the queue is full"
        );
        assert!(
            c["queue_bytes"].as_i64().unwrap_or(0) <= 1_048_576,
            "queue stays bounded"
        );
        assert_eq!(c["state"], "streaming", "the camera itself keeps streaming");
    }
    ingest.wait_ready(Duration::from_secs(60)).await;
    let before = camera(&ingest, &id).await.expect("camera")["frames"]
        .as_u64()
        .unwrap_or(0);
    eventually("frames flow again", Duration::from_secs(60), || async {
        let c = camera(&ingest, &id).await?;
        if c["frames"].as_u64().unwrap_or(0) > before + 50 {
            Ok(())
        } else {
            Err(c.to_string())
        }
    })
    .await;
    let (_, metrics) = ingest.get("/metrics").await;
    let dropped = metric(
        &metrics,
        &format!("framewire_ingest_dropped_gops_total{{camera=\"{id}\"}}"),
    )
    .unwrap_or(0.0);
    assert_eq!(ingest.terminate(Duration::from_secs(30)).code(), Some(0));

    // What reached Kafka stays decodable: after every hole, the next record is a keyframe.
    let frames =
        tokio::task::spawn_blocking(move || read_topic(&topics.frames, Duration::from_secs(3)))
            .await
            .expect("read");
    let recs: Vec<(u64, bool)> = frames
        .iter()
        .filter(|m| m.key() == Some(id.as_bytes()))
        .map(headers_of)
        .map(|h| (h["fw-seq"].parse().unwrap_or(0), h["fw-keyframe"] == "1"))
        .collect();
    let holes: Vec<_> = recs.windows(2).filter(|w| w[1].0 != w[0].0 + 1).collect();
    println!(
        "outage: {dropped} GOPs dropped, {} records, {} holes",
        recs.len(),
        holes.len()
    );
    assert!(!holes.is_empty(), "the outage left a hole");
    for w in holes {
        assert!(
            w[1].1,
            "record after a hole (seq {} → {}) is a keyframe",
            w[0].0, w[1].0
        );
    }
}

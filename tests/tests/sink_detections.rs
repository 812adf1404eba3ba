//! The sink counts object detections exactly once, on SQLite and on PostgreSQL, against the
//! real Kafka: stats records and detections records (`framewire.detections`) of two
//! cameras are produced straight into their topics, with
//! - the first half of the detections published *before* their frames' statistics and the
//!   second half after them (the two topics are read independently),
//! - every 7th picture sent twice in a row (a worker re-processing a GOP),
//! - a SIGKILL of the sink in the middle of the stream and a restart (offsets were
//!   committed behind the durable state, so the new sink re-reads what it had merged),
//! - the first 40 pictures of a camera again after their windows were written,
//! - objects below `sink.detections.min_score` (never counted) and records that break the
//!   schema (counted by reason, skipped).
//!
//! Checked against what was produced, computed here independently: per 2 s window the
//! analysed pictures and per class the objects, the most in one picture and the pictures
//! with one; the `appeared`/`left` incidents with their exact times; the newest analysed
//! picture; the bad-record metric.

use std::collections::BTreeMap;
use std::time::Duration;

use framewire_e2e::{
    Record, Service, SinkDb, Topics, detections_record, eventually, http_get, metric, now_ms,
    pg_dsn, produce, produce_records, require_stack, sink_section, sink_totals, stats_record,
    unique,
};
use serde_json::{Value, json};

/// Frames per camera (25 fps: 24 s of capture time).
const FRAMES: u64 = 600;
/// Every this many frames one is analysed.
const EVERY: u64 = 5;
/// Window width and the time a class must be absent to have left.
const WINDOW_MS: i64 = 2_000;
const LEFT_AFTER_MS: i64 = 2_000;

const BOX_A: [f32; 4] = [0.1, 0.2, 0.3, 0.6];
const BOX_B: [f32; 4] = [0.5, 0.25, 0.7, 0.9];

/// The objects in picture `seq` of camera `a`: cars on 0..50 and 400.., people on
/// 100..300 (two on every 10th frame); a bird below the minimum score everywhere.
fn objects_a(seq: u64) -> Objects {
    let mut o = Vec::new();
    if !(50..400).contains(&seq) {
        o.push(("car", 2, 0.8, BOX_B));
    }
    if (100..300).contains(&seq) {
        o.push(("person", 0, 0.9, BOX_A));
        if seq.is_multiple_of(10) {
            o.push(("person", 0, 0.55, BOX_B));
        }
    }
    o.push(("bird", 14, 0.3, BOX_A));
    o
}

/// Camera `b`: a dog below the minimum score on 200..260, else nothing.
fn objects_b(seq: u64) -> Objects {
    if (200..260).contains(&seq) {
        vec![("dog", 16, 0.45, BOX_A)]
    } else {
        Vec::new()
    }
}

/// One picture's objects: (label, class, score, box).
type Objects = Vec<(&'static str, u16, f32, [f32; 4])>;

/// What one window should hold: pictures analysed and per class (objects, max, pictures).
type Expected = BTreeMap<i64, (i64, BTreeMap<String, (i64, i64, i64)>)>;

fn expected(objects: fn(u64) -> Objects, capture: impl Fn(u64) -> i64) -> Expected {
    let mut out: Expected = BTreeMap::new();
    for seq in (0..FRAMES).step_by(EVERY as usize) {
        let start = capture(seq).div_euclid(WINDOW_MS) * WINDOW_MS;
        let w = out.entry(start).or_default();
        w.0 += 1;
        let mut per: BTreeMap<&str, i64> = BTreeMap::new();
        for (label, _, score, _) in objects(seq) {
            if score >= 0.5 {
                *per.entry(label).or_default() += 1;
            }
        }
        for (label, n) in per {
            let c = w.1.entry(label.to_owned()).or_default();
            c.0 += n;
            c.1 = c.1.max(n);
            c.2 += 1;
        }
    }
    out
}

/// The camera's windows from the API as [`Expected`] (windows without pictures left out).
async fn api_windows(http: &str, camera: &str, from: i64) -> Result<Expected, String> {
    let (code, body) = http_get(&format!(
        "{http}/api/cameras/{camera}/summaries?from={from}&to={}",
        now_ms()
    ))
    .await;
    if code != 200 {
        return Err(format!("{code} {body}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let mut out: Expected = BTreeMap::new();
    for w in v["windows"].as_array().into_iter().flatten() {
        let pictures = w["pictures_analysed"].as_i64().unwrap_or(-1);
        if pictures == 0 {
            continue;
        }
        let classes = w["classes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(label, c)| {
                let n = |k: &str| c[k].as_i64().unwrap_or(-1);
                (
                    label.clone(),
                    (n("objects"), n("max_per_picture"), n("pictures")),
                )
            })
            .collect();
        out.insert(w["start_ms"].as_i64().unwrap_or(-1), (pictures, classes));
    }
    Ok(out)
}

async fn detections_exact(db: SinkDb) {
    require_stack();
    let topics = Topics::unique(&format!("sink-det-{}", db.name()));
    let det_topic = topics.detections.clone();
    let cams = [unique("det-a"), unique("det-b")];
    let group = unique("sink");
    let (section, http) = sink_section(
        &group,
        &db,
        "window_ms = 2000\nflush_interval_ms = 200\nallowed_lateness_ms = 120000\npreview = false\n",
    );
    // As in sink_exact: a short session timeout, and offsets auto-committed only every
    // 60 s, so the SIGKILLed sink dies without having committed and the next one re-reads.
    let config = format!(
        "{}\n{section}\n[sink.detections]\nmin_score = 0.5\nleft_after_ms = {LEFT_AFTER_MS}\n\n[kafka.options]\n\"session.timeout.ms\" = \"6000\"\n\"auto.commit.interval.ms\" = \"60000\"\n",
        topics.toml()
    );
    let mut first = Service::start("framewire-sink", &config, &[]);
    first.wait_ready(Duration::from_secs(60)).await;

    let base = now_ms() - 60_000;
    let capture = |seq: u64| base + seq as i64 * 40;
    let picture = |cam: usize, seq: u64| {
        let objects = if cam == 0 {
            objects_a(seq)
        } else {
            objects_b(seq)
        };
        detections_record(&cams[cam], "s1", seq, capture(seq), &objects)
    };
    let mut stats: Vec<Record> = Vec::new();
    let mut pictures: Vec<Record> = Vec::new();
    for seq in 0..FRAMES {
        for (cam, id) in cams.iter().enumerate() {
            stats.push(stats_record(id, "s1", seq, capture(seq)));
            if seq % EVERY == 0 {
                pictures.push(picture(cam, seq));
                if (seq / EVERY) % 7 == 3 {
                    pictures.push(picture(cam, seq));
                }
            }
        }
    }
    // The first half of the pictures ahead of every frame's statistics.
    let half = pictures.len() / 2;
    produce_records(&det_topic, &pictures[..half]).await;
    let mut killed = false;
    let mut second = None;
    let stats_chunks: Vec<&[Record]> = stats.chunks(100).collect();
    let per_chunk = (pictures.len() - half).div_ceil(stats_chunks.len());
    for (i, chunk) in stats_chunks.iter().enumerate() {
        produce_records(&topics.stats, chunk).await;
        let from = half + i * per_chunk;
        if from < pictures.len() {
            let to = (from + per_chunk).min(pictures.len());
            produce_records(&det_topic, &pictures[from..to]).await;
        }
        if !killed && i == stats_chunks.len() / 2 {
            eventually(
                "windows written before the kill",
                Duration::from_secs(30),
                || async {
                    match api_windows(&http, &cams[0], base - WINDOW_MS).await {
                        Ok(w) if !w.is_empty() => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
            first.kill();
            killed = true;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = Service::start("framewire-sink", &config, &[]);
            s.wait_healthy(Duration::from_secs(30)).await;
            second = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let second = second.expect("the sink was restarted");

    let want_a = expected(objects_a, capture);
    let want_b = expected(objects_b, capture);
    eventually("every picture counted", Duration::from_secs(90), || async {
        let a = api_windows(&http, &cams[0], base - WINDOW_MS).await?;
        let b = api_windows(&http, &cams[1], base - WINDOW_MS).await?;
        if a == want_a && b == want_b {
            Ok(())
        } else {
            Err(format!(
                "a {a:?}\nwant {want_a:?}\nb {b:?}\nwant {want_b:?}"
            ))
        }
    })
    .await;

    // After the windows were written: the first 40 pictures of camera a again, and records
    // that break the schema (a score of 1.5, not JSON, an empty label).
    let again: Vec<Record> = (0..40)
        .step_by(EVERY as usize)
        .map(|seq| picture(0, seq))
        .collect();
    produce_records(&det_topic, &again).await;
    let mut bad = detections_record(&cams[0], "s1", 1, capture(1), &[("car", 2, 1.5, BOX_A)]);
    produce_records(&det_topic, &[bad.clone()]).await;
    bad = detections_record(&cams[0], "s1", 2, capture(2), &[("", 2, 0.9, BOX_A)]);
    produce_records(&det_topic, &[bad]).await;
    produce(&det_topic, &cams[1], Some(b"{not json")).await;

    eventually(
        "re-deliveries dropped, bad records counted by reason",
        Duration::from_secs(60),
        || async {
            let (_, text) = second.get("/metrics").await;
            let bad = |reason: &str| {
                metric(
                    &text,
                    &format!("framewire_sink_bad_detections_total{{reason=\"{reason}\"}}"),
                )
            };
            let dups = metric(
                &text,
                &format!(
                    "framewire_sink_picture_duplicates_total{{camera=\"{}\"}}",
                    cams[0]
                ),
            )
            .unwrap_or(0.0);
            let a = api_windows(&http, &cams[0], base - WINDOW_MS).await?;
            let (score, label, json) = (bad("score"), bad("label"), bad("json"));
            if score == Some(1.0) && label == Some(1.0) && json == Some(1.0) && dups >= 8.0 && a == want_a {
                Ok(())
            } else {
                Err(format!(
                    "bad score {score:?} label {label:?} json {json:?}, duplicates {dups}, windows equal: {}",
                    a == want_a
                ))
            }
        },
    )
    .await;

    // Frames are unaffected: exactly FRAMES per camera.
    let totals = sink_totals(&db, &cams).await.expect("totals");
    for c in &cams {
        assert_eq!(
            totals.get(c).map(|t| t.0),
            Some(FRAMES as i64),
            "{c}: {totals:?}"
        );
    }

    // Incidents: cars 0..50 (left at 50, noticed 2 s after 45), people 100..300, cars
    // again from 400, still there. Camera b: the dog was below the minimum score.
    let (code, body) = http_get(&format!(
        "{http}/api/cameras/{}/events?from={}",
        cams[0],
        base - 1
    ))
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("events JSON");
    let got: Vec<(String, String, i64, Value, i64)> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_owned(),
                e["label"].as_str().unwrap_or_default().to_owned(),
                e["start_ms"].as_i64().unwrap_or(-1),
                e["end_ms"].clone(),
                e["frames"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let ev = |kind: &str, label: &str, start: i64, end: Value, frames: i64| {
        (kind.to_owned(), label.to_owned(), start, end, frames)
    };
    assert_eq!(
        got,
        [
            ev("appeared", "car", capture(0), json!(capture(50)), 10),
            ev("left", "car", capture(50), json!(capture(50)), 0),
            ev("appeared", "person", capture(100), json!(capture(300)), 40),
            ev("left", "person", capture(300), json!(capture(300)), 0),
            ev("appeared", "car", capture(400), Value::Null, 40),
        ],
        "{v}"
    );
    let (_, body) = http_get(&format!(
        "{http}/api/cameras/{}/events?from={}",
        cams[1],
        base - 1
    ))
    .await;
    let v: Value = serde_json::from_str(&body).expect("events JSON");
    assert_eq!(v["events"], json!([]), "camera b: nothing at or above 0.5");

    // The newest analysed picture, with only the objects at or above the minimum score.
    let (code, body) = http_get(&format!("{http}/api/cameras/{}/detections/latest", cams[0])).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("latest JSON");
    assert_eq!(
        (v["seq"].as_u64(), v["capture_ms"].as_i64()),
        (Some(595), Some(capture(595)))
    );
    assert_eq!(
        v["objects"],
        json!([{"label": "car", "class": 2, "score": 0.8, "box": {"x0": 0.5, "y0": 0.25, "x1": 0.7, "y1": 0.9}}])
    );
    let (_, body) = http_get(&format!("{http}/api/cameras")).await;
    let v: Value = serde_json::from_str(&body).expect("cameras JSON");
    let a = v["cameras"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["id"] == cams[0].as_str())
        .expect("camera a listed");
    // The stream was captured a minute ago: the camera is offline, so nothing is "present"
    // (its car is still an open `appeared` incident, above).
    assert_eq!(
        (&a["status"], &a["objects_present"]),
        (&json!("offline"), &json!([])),
        "{a}"
    );
    let (last_start, (_, last_classes)) = want_a.iter().next_back().expect("windows");
    assert_eq!(a["detections_window"]["start_ms"], *last_start, "{a}");
    assert_eq!(
        a["detections_window"]["classes"]["car"]["objects"], last_classes["car"].0,
        "{a}"
    );
    println!(
        "{}: {} pictures per camera in {} windows counted exactly through a SIGKILL, re-deliveries and bad records; incidents exact",
        db.name(),
        FRAMES / EVERY,
        want_a.len()
    );

    let mut second = second;
    let status = second.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", second.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_counts_detections_exactly_under_redelivery_and_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    detections_exact(SinkDb::Sqlite(dir.path().join("sink.sqlite"))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_counts_detections_exactly_under_redelivery_and_sigkill() {
    detections_exact(SinkDb::Postgres(pg_dsn())).await;
}

//! The sink's API and web page over a real run: three synthetic cameras (moving, black,
//! frozen) → ingest → worker → sink (SQLite, preview on), then
//! - the JSON API: status codes and bodies of every endpoint, on real data (25 fps,
//!   the black camera dark with an open black incident, the frozen one frozen, a JPEG
//!   thumbnail per camera), 400 with a message for bad parameters, 404 for unknown cameras;
//! - detections: records of the detector (`framewire.detections`) for the three cameras'
//!   real sessions, each sent twice, are counted once per window and class, and served as
//!   the newest analysed picture;
//! - the web page in headless Chromium (Debian `chromium`): the rendered DOM has one tile
//!   per camera with a loaded thumbnail, its fps, the current incidents, the boxes of the
//!   newest detections (label and score) over the thumbnail and the per-class counts; a
//!   screenshot is kept as `<target>/artifacts/sink-web.png`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use framewire_e2e::{
    RTSP, Service, SinkDb, Topics, artifacts_dir, camera_toml, detections_record, eventually,
    http_get, now_ms, produce_records, require_stack, sink_section, start_worker, unique,
};
use serde_json::Value;

async fn json(url: &str) -> (u16, Value) {
    let (code, body) = http_get(url).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (code, v)
}

/// Runs headless Chromium on `url` with `args` (e.g. `--dump-dom`), 90 s at most: stdout.
fn chromium(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--window-size=1400,1000",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium runs (Debian package `chromium`; `make prereqs` installs it)");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "chromium {args:?} failed: {status}");
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap_or_default()
}

/// The rendered tile of `camera`: from its `data-camera` attribute to its `</article>`.
fn tile<'a>(dom: &'a str, camera: &str) -> &'a str {
    let at = dom
        .find(&format!("data-camera=\"{camera}\""))
        .unwrap_or_else(|| panic!("no tile for {camera} in the page:\n{dom}"));
    let rest = &dom[at..];
    &rest[..rest.find("</article>").unwrap_or(rest.len())]
}

/// The text of the element with `class="{class}"` inside `html`.
fn text_of<'a>(html: &'a str, class: &str) -> &'a str {
    let marker = format!("class=\"{class}\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no .{class} in {html}"))
        + marker.len();
    let rest = &html[at..];
    &rest[..rest.find('<').unwrap_or(rest.len())]
}

/// What the API and the page may report as fps for the 25 fps test cameras.
const FPS: std::ops::RangeInclusive<f64> = 15.0..=35.0;

#[tokio::test(flavor = "multi_thread")]
async fn api_and_web_page_on_a_real_run() {
    require_stack();
    let topics = Topics::unique("sink-web");
    let mounts = ["moving", "black", "frozen"];
    let ids: HashMap<&str, String> = mounts
        .iter()
        .map(|m| (*m, unique(&format!("web-{m}"))))
        .collect();

    let worker = start_worker(&topics, &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = SinkDb::Sqlite(dir.path().join("web.sqlite"));
    let (section, http) = sink_section(
        &unique("sink"),
        &db,
        "window_ms = 2000\nflush_interval_ms = 250\npreview_interval_ms = 1000\n",
    );
    let sink = Service::start(
        "framewire-sink",
        &format!("{}\n{section}", topics.toml()),
        &[],
    );
    worker.wait_ready(Duration::from_secs(60)).await;
    sink.wait_ready(Duration::from_secs(60)).await;
    let cameras: String = mounts
        .iter()
        .map(|m| camera_toml(&ids[m], &format!("{RTSP}/{m}"), ""))
        .collect();
    let mut ingest = Service::start(
        "framewire-ingest",
        &format!("{}\n{cameras}", topics.toml()),
        &[],
    );
    ingest.wait_ready(Duration::from_secs(60)).await;

    // Every camera listed with a thumbnail, fps and a finished window; the black and the
    // frozen camera with their incident (≥ 2 s after they started).
    let listed = eventually(
        "three cameras with thumbnails, fps and incidents",
        Duration::from_secs(90),
        || async {
            let (code, v) = json(&format!("{http}/api/cameras")).await;
            let mine: HashMap<String, Value> = v["cameras"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| ids.values().any(|id| c["id"] == id.as_str()))
                .map(|c| (c["id"].as_str().unwrap_or_default().to_owned(), c.clone()))
                .collect();
            let has_incident = |m: &str, kind: &str| {
                mine.get(&ids[m]).is_some_and(|c| {
                    c["incidents"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|i| i["kind"] == kind)
                })
            };
            let complete = mine.len() == 3
                && mine.values().all(|c| {
                    c["thumbnail"].is_string()
                        && c["fps"].is_number()
                        && c["last_window"].is_object()
                })
                && has_incident("black", "black")
                && has_incident("frozen", "frozen");
            if code == 200 && complete {
                Ok(mine)
            } else {
                Err(format!("{code} {mine:?}"))
            }
        },
    )
    .await;

    // --- the API on real data ---
    for m in mounts {
        let c = &listed[&ids[m]];
        assert_eq!(c["status"], "online", "{m}: {c}");
        let fps = c["fps"].as_f64().unwrap_or_default();
        // 25 fps cameras; windows are on capture time (ingest's receipt), so a stall of the
        // loaded machine followed by a burst puts more than 2 s of stream into a 2 s window
        // (30.5 seen in CI). Wrong units or double counting (50) still fail.
        assert!(FPS.contains(&fps), "{m}: fps {fps}");
        assert_eq!(
            (c["width"].as_i64(), c["height"].as_i64()),
            (Some(640), Some(360)),
            "{m}"
        );
        assert!(c["last_seen_ms"].as_i64().unwrap_or_default() > 0);
    }
    assert!(
        listed[&ids["moving"]]["incidents"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "the moving camera has no incident: {}",
        listed[&ids["moving"]]
    );
    let (code, v) = json(&format!("{http}/api/cameras/{}/summaries", ids["black"])).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["camera"], ids["black"].as_str());
    let windows = v["windows"].as_array().expect("windows");
    assert!(!windows.is_empty());
    for w in windows {
        assert!(
            w["y_avg_mean"].as_f64().unwrap_or(255.0) < 20.0,
            "black is dark: {w}"
        );
        assert_eq!(w["black_frames"], w["frames"], "every frame black: {w}");
        assert!(w["end_ms"].as_i64() > w["start_ms"].as_i64());
    }
    let (_, v) = json(&format!("{http}/api/cameras/{}/summaries", ids["moving"])).await;
    let moving = v["windows"].as_array().expect("windows");
    assert!(
        moving
            .iter()
            .all(|w| w["y_avg_mean"].as_f64().unwrap_or(0.0) > 40.0)
    );
    assert!(
        moving
            .iter()
            .any(|w| w["y_dif_mean"].as_f64().unwrap_or(0.0) > 0.5),
        "motion: {v}"
    );
    let (code, v) = json(&format!(
        "{http}/api/cameras/{}/events?kind=black",
        ids["black"]
    ))
    .await;
    assert_eq!(code, 200, "{v}");
    let events = v["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{v}");
    assert_eq!(
        (&events[0]["ongoing"], &events[0]["end_ms"]),
        (&Value::Bool(true), &Value::Null)
    );
    assert!(
        events[0]["duration_ms"].as_i64().unwrap_or(0) >= 2_000,
        "{v}"
    );
    for m in mounts {
        let url = format!("{http}/api/cameras/{}/thumbnail.jpg", ids[m]);
        let res = reqwest::get(&url).await.expect("thumbnail");
        assert_eq!(res.status(), 200, "{url}");
        assert_eq!(res.headers()["content-type"], "image/jpeg");
        let bytes = res.bytes().await.expect("body");
        assert!(
            bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0xFF, 0xD9]),
            "{url}: a JPEG"
        );
        assert!(bytes.len() > 500, "{url}: {} bytes", bytes.len());
    }
    for (path, code, message) in [
        (
            "/api/cameras/no-such-camera/summaries",
            404,
            "unknown camera \"no-such-camera\"",
        ),
        (
            "/api/cameras/no-such-camera/events",
            404,
            "unknown camera \"no-such-camera\"",
        ),
        (
            "/api/cameras/no-such-camera/thumbnail.jpg",
            404,
            "unknown camera \"no-such-camera\"",
        ),
        (
            "/api/cameras/x/summaries?from=yesterday",
            400,
            "from: \"yesterday\" is not a time in ms since the Unix epoch (0 to 253402300799999)",
        ),
        (
            "/api/cameras/x/summaries?from=20&to=10",
            400,
            "from (20) must not be after to (10)",
        ),
        (
            "/api/cameras/x/events?kind=purple",
            400,
            "kind: \"purple\" is not one of black, frozen, gap, appeared, left",
        ),
        (
            "/api/nope",
            404,
            "no such API path /api/nope; see /api/openapi.json",
        ),
    ] {
        let (got, v) = json(&format!("{http}{path}")).await;
        assert_eq!((got, v["error"].as_str()), (code, Some(message)), "{path}");
    }
    let (code, spec) = json(&format!("{http}/api/openapi.json")).await;
    assert_eq!(code, 200);
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(spec["paths"]["/api/cameras/{id}/summaries"]["get"].is_object());

    // --- detections: three analysed pictures per camera, each delivered twice ---
    // moving: two people and a car (and a bird below sink.detections.min_score), black:
    // nothing found, frozen: a cat.
    let objects = |m: &str| -> Vec<(&'static str, u16, f32, [f32; 4])> {
        match m {
            "moving" => vec![
                ("person", 0, 0.91, [0.05, 0.1, 0.3, 0.95]),
                ("person", 0, 0.62, [0.55, 0.2, 0.75, 0.9]),
                ("car", 2, 0.77, [0.35, 0.5, 0.95, 0.98]),
                ("bird", 14, 0.2, [0.4, 0.0, 0.5, 0.1]),
            ],
            "frozen" => vec![("cat", 15, 0.95, [0.25, 0.25, 0.75, 0.75])],
            _ => Vec::new(),
        }
    };
    // Three pictures in one 2 s window (the sink's window_ms here).
    let window = (now_ms() - 500).div_euclid(2_000) * 2_000;
    let at = window + 100;
    let mut records = Vec::new();
    for m in mounts {
        let session = listed[&ids[m]]["session"]
            .as_str()
            .unwrap_or("s")
            .to_owned();
        for seq in 1..=3u64 {
            let r = detections_record(&ids[m], &session, seq, at + seq as i64 * 40, &objects(m));
            records.push(r.clone());
            records.push(r);
        }
    }
    produce_records(&topics.detections, &records).await;
    let analysed = eventually(
        "three analysed pictures per camera, counted once",
        Duration::from_secs(60),
        || async {
            let mut out = HashMap::new();
            for m in mounts {
                let (_, v) = json(&format!(
                    "{http}/api/cameras/{}/summaries?from={window}&to={}",
                    ids[m],
                    window + 1
                ))
                .await;
                let w = v["windows"].as_array().and_then(|w| w.first()).cloned();
                match w {
                    Some(w) if w["pictures_analysed"] == 3 => {
                        out.insert(m, w["classes"].clone());
                    }
                    other => return Err(format!("{m}: {other:?}")),
                }
            }
            Ok(out)
        },
    )
    .await;
    assert_eq!(
        analysed["moving"],
        serde_json::json!({
            "person": {"objects": 6, "max_per_picture": 2, "pictures": 3},
            "car": {"objects": 3, "max_per_picture": 1, "pictures": 3},
        })
    );
    assert_eq!(analysed["black"], serde_json::json!({}));
    assert_eq!(
        analysed["frozen"],
        serde_json::json!({"cat": {"objects": 3, "max_per_picture": 1, "pictures": 3}})
    );
    let (code, v) = json(&format!(
        "{http}/api/cameras/{}/detections/latest",
        ids["moving"]
    ))
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["seq"].as_u64(), v["width"].as_u64()),
        (Some(3), Some(640))
    );
    let labels: Vec<&str> = v["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["label"].as_str())
        .collect();
    assert_eq!(labels, ["person", "person", "car"], "the bird is below 0.5");

    // --- the web page in headless Chromium ---
    let dom = tokio::task::spawn_blocking({
        let url = format!("{http}/");
        move || chromium(&url, &["--dump-dom"])
    })
    .await
    .expect("chromium");
    assert!(
        dom.contains("3 cameras · 3 online") || dom.matches("class=\"tile").count() >= 3,
        "{dom}"
    );
    for m in mounts {
        let t = tile(&dom, &ids[m]);
        assert!(t.contains("data-status=\"online\""), "{m}: {t}");
        assert!(
            t.contains("data-loaded=\"1\""),
            "{m}: thumbnail loaded: {t}"
        );
        let fps: f64 = text_of(t, "fps")
            .parse()
            .unwrap_or_else(|_| panic!("{m}: fps in {t}"));
        assert!(FPS.contains(&fps), "{m}: fps {fps}");
        let brightness: f64 = text_of(t, "brightness")
            .parse()
            .unwrap_or_else(|_| panic!("{m}: brightness in {t}"));
        assert!(brightness >= 0.0);
        assert!(t.contains("data-points=\""), "{m}: sparklines drawn: {t}");
    }
    assert!(
        tile(&dom, &ids["black"]).contains("data-kind=\"black\""),
        "black incident shown"
    );
    assert!(
        tile(&dom, &ids["frozen"]).contains("data-kind=\"frozen\""),
        "frozen incident shown"
    );
    assert!(
        !tile(&dom, &ids["moving"]).contains("data-kind="),
        "no incident on the moving camera"
    );
    // Boxes with label and score over each thumbnail, and the per-class counts.
    let moving = tile(&dom, &ids["moving"]);
    assert!(moving.contains("data-boxes=\"3\""), "{moving}");
    assert!(moving.contains("viewBox=\"0 0 640 360\""), "{moving}");
    assert_eq!(moving.matches("class=\"box\"").count(), 3, "{moving}");
    for needle in [
        "data-label=\"person\" data-score=\"0.91\"",
        "data-label=\"person\" data-score=\"0.62\"",
        "data-label=\"car\" data-score=\"0.77\"",
        ">person 0.91</text>",
        ">car 0.77</text>",
        "data-label=\"person\" data-objects=\"6\" data-max=\"2\" data-pictures=\"3\"",
        "data-label=\"car\" data-objects=\"3\" data-max=\"1\" data-pictures=\"3\"",
        ">person ×2</li>",
    ] {
        assert!(moving.contains(needle), "{needle} in {moving}");
    }
    assert!(
        !moving.contains("bird"),
        "below the minimum score: {moving}"
    );
    let frozen = tile(&dom, &ids["frozen"]);
    assert!(
        frozen.contains("data-boxes=\"1\"") && frozen.contains(">cat 0.95</text>"),
        "{frozen}"
    );
    let black = tile(&dom, &ids["black"]);
    assert!(
        black.contains("data-boxes=\"0\"") && black.contains("nothing in 3 pictures"),
        "{black}"
    );

    let shot = artifacts_dir().join("sink-web.png");
    tokio::task::spawn_blocking({
        let (url, arg) = (
            format!("{http}/"),
            format!("--screenshot={}", shot.display()),
        );
        move || chromium(&url, &[&arg])
    })
    .await
    .expect("chromium");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot of the web page: {}", shot.display());
    assert!(Path::new(&shot).is_file());

    let status = ingest.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", ingest.log());
    for mut s in [worker, sink] {
        let status = s.terminate(Duration::from_secs(30));
        assert_eq!(status.code(), Some(0), "{} {}", s.name, s.log());
    }
}

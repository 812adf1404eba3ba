//! Object detection end to end, checked against the model's own runtime.
//!
//! A clip of seven photographs that scikit-image ships (a person, a cat, a cup, a
//! motorbike, a rocket, a cameraman, grass; `scripts/model/oracle.py`) streams from the RTSP
//! test server through ingest and a worker running NanoDet-g-416 on every picture (the
//! camera's spec sets `detect = "every"`, the worker's default is `off`: the rate travels in
//! the `fw-detect` header). Every detections record must match `docs/detections.schema.json`,
//! and for every picture the worker's objects must agree with onnxruntime running the same
//! model on the same picture decoded by ffmpeg: the same classes, boxes with IoU ≥ 0.9,
//! scores within 0.02. And the obvious: a person where the photo shows one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use framewire_e2e::{
    Service, Topics, artifacts_dir, camera_toml, read_topic, require_stack, unique,
};
use framewire_wire::DetectionsRecord;
use rdkafka::message::Message;

/// Port of this test's own RTSP server instance.
const PORT: &str = "8854";
/// Pictures in the clip (7 photographs × 10).
const FRAMES: u64 = 70;

/// Where `scripts/model.sh` put the model (`FRAMEWIRE_MODEL_DIR`, else its default).
fn model_dir() -> PathBuf {
    let dir = std::env::var_os("FRAMEWIRE_MODEL_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/framewire/models")))
        .expect("FRAMEWIRE_MODEL_DIR or HOME");
    assert!(
        dir.join("nanodet-g-416.onnx").is_file(),
        "no model in {}: run scripts/model.sh",
        dir.display()
    );
    dir
}

/// The Python of the venv `scripts/model.sh` made (it has onnxruntime and scikit-image).
fn venv_python(models: &Path) -> PathBuf {
    let venvs = models.parent().expect("the cache folder").join("venv");
    std::fs::read_dir(&venvs)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/model.sh", venvs.display()))
        .filter_map(Result::ok)
        // Other tools keep venvs beside it (schemathesis, confluent-kafka): only model-*.
        .filter(|e| e.file_name().to_string_lossy().starts_with("model-"))
        .map(|e| e.path().join("bin/python"))
        .find(|p| p.is_file() && p.parent().is_some_and(|b| b.join("../.ok").exists()))
        .expect("a finished model venv: run scripts/model.sh")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a helper");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rtsp(action: &str, clip: &Path) -> Command {
    let mut c = Command::new("bash");
    c.arg(script("stack/rtsp.sh"))
        .arg(action)
        .env("RTSP_INSTANCE", "detect")
        .env("RTSP_PORT", PORT)
        .env("RTSP_ONLY", "people")
        .env(
            "RTSP_SERVER_ARGS",
            format!("--mount people:kind=file,location={}", clip.display()),
        );
    c
}

/// Stops the test's RTSP server however the test ends.
struct RtspServer(PathBuf);

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = rtsp("down", &self.0).output();
    }
}

/// A reference detection.
#[derive(Debug, serde::Deserialize)]
struct Expected {
    class: u16,
    label: String,
    score: f32,
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
}

#[derive(Debug, serde::Deserialize)]
struct Frame {
    index: u64,
    photo: String,
    detections: Vec<Expected>,
}

#[derive(Debug, serde::Deserialize)]
struct Reference {
    frames: Vec<Frame>,
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let inter = w * h;
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Differences between the worker's objects and the reference's in one picture, as lines.
/// Objects within 0.03 of the score threshold may be missing on one side (a score that
/// agrees within 0.02 can fall either side of it).
/// Also returns the (IoU, score difference) of every matched pair.
fn compare(
    seq: u64,
    got: &DetectionsRecord,
    want: &Frame,
    threshold: f32,
) -> (Vec<String>, Vec<(f32, f32)>) {
    let mut problems = Vec::new();
    let mut pairs = Vec::new();
    let mut unmatched: Vec<usize> = (0..got.objects.len()).collect();
    for w in &want.detections {
        let wb = [w.x0, w.y0, w.x1, w.y1];
        let best = unmatched
            .iter()
            .enumerate()
            .filter(|(_, i)| got.objects[**i].class == w.class)
            .map(|(k, i)| {
                let b = got.objects[*i].bbox;
                (k, iou([b.x0, b.y0, b.x1, b.y1], wb))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((k, overlap)) if overlap >= 0.9 => {
                let o = &got.objects[unmatched.remove(k)];
                pairs.push((overlap, (o.score - w.score).abs()));
                if (o.score - w.score).abs() > 0.02 {
                    problems.push(format!(
                        "picture {seq} ({}): {} score {:.4} vs onnxruntime {:.4}",
                        want.photo, w.label, o.score, w.score
                    ));
                }
            }
            _ if w.score < threshold + 0.03 => {}
            other => problems.push(format!(
                "picture {seq} ({}): onnxruntime's {} {:.3} at {wb:.3?} not found (best IoU {:?})",
                want.photo,
                w.label,
                w.score,
                other.map(|(_, o)| o)
            )),
        }
    }
    for i in unmatched {
        let o = &got.objects[i];
        if o.score >= threshold + 0.03 {
            problems.push(format!(
                "picture {seq} ({}): {} {:.3} is not in onnxruntime's answer",
                want.photo, o.label, o.score
            ));
        }
    }
    (problems, pairs)
}

#[tokio::test(flavor = "multi_thread")]
async fn detections_agree_with_onnxruntime_on_the_same_pictures() {
    require_stack();
    let models = model_dir();
    let python = venv_python(&models);
    let dir = artifacts_dir().join("detect-oracle");
    std::fs::create_dir_all(&dir).expect("artifacts folder");
    let (clip, reference) = (dir.join("people.mp4"), dir.join("reference.json"));
    let oracle = script("model/oracle.py");
    run(Command::new(&python).arg(&oracle).arg("clip").arg(&clip));
    run(Command::new(&python)
        .arg(&oracle)
        .arg("reference")
        .arg(models.join("nanodet-g-416.onnx"))
        .arg(models.join("coco80.txt"))
        .arg(&clip)
        .arg(&reference));
    let reference: Reference =
        serde_json::from_slice(&std::fs::read(&reference).expect("reference.json"))
            .expect("reference JSON");
    assert_eq!(
        reference.frames.len() as u64,
        FRAMES,
        "pictures in the clip"
    );

    run(&mut rtsp("up", &clip));
    let _server = RtspServer(clip.clone());

    let topics = Topics::unique("detect");
    let threshold = 0.35;
    let worker = Service::start(
        "framewire-worker",
        &format!(
            "{}\n[worker]\ngroup_id = \"{}\"\ndecode_threads = 1\n\n[detect]\nmodel = \"{}\"\nrate = \"off\"\nscore_threshold = {threshold}\nqueue = 8\n",
            topics.toml(),
            unique("detect"),
            models.join("nanodet-g-416.onnx").display()
        ),
        &[],
    );
    worker.wait_ready(Duration::from_secs(60)).await;
    let ingest = Service::start(
        "framewire-ingest",
        &format!(
            "{}\n{}",
            topics.toml(),
            camera_toml(
                "people",
                &format!("rtsp://127.0.0.1:{PORT}/people"),
                "detect = \"every\""
            )
        ),
        &[],
    );

    // The first session's pictures, each once (a replay could repeat one).
    let started = Instant::now();
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/detections.schema.json"))
            .expect("docs/detections.schema.json is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut got: BTreeMap<u64, DetectionsRecord> = BTreeMap::new();
    let mut session = None;
    while (got.len() as u64) < FRAMES {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "only {} of {FRAMES} pictures detected in 180 s\nworker log:\n{}\ningest log:\n{}",
            got.len(),
            worker.log(),
            ingest.log()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let t = topics.detections.clone();
        let records = tokio::task::spawn_blocking(move || read_topic(&t, Duration::from_secs(2)))
            .await
            .expect("read the detections topic");
        for m in records {
            let json: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("detections JSON");
            if let Err(e) = validator.validate(&json) {
                panic!("record does not match docs/detections.schema.json: {e}\n{json}");
            }
            let r: DetectionsRecord = serde_json::from_value(json).expect("a DetectionsRecord");
            assert_eq!(r.camera, "people");
            assert_eq!(
                (r.width, r.height, r.model.as_str()),
                (640, 360, "nanodet-g-416")
            );
            let first = session.get_or_insert_with(|| r.session.clone());
            if *first == r.session && r.seq < FRAMES {
                got.insert(r.seq, r);
            }
        }
    }
    drop(ingest);

    let mut problems = Vec::new();
    let mut pairs = Vec::new();
    for (seq, record) in &got {
        let want = &reference.frames[*seq as usize];
        assert_eq!(want.index, *seq);
        let (p, matched) = compare(*seq, record, want, threshold);
        problems.extend(p);
        pairs.extend(matched);
    }
    assert!(
        problems.is_empty(),
        "{} disagreements with onnxruntime:\n{}",
        problems.len(),
        problems.join("\n")
    );
    let persons = got
        .iter()
        .filter(|(seq, _)| reference.frames[**seq as usize].photo == "astronaut")
        .filter(|(_, r)| {
            r.objects
                .iter()
                .any(|o| o.label == "person" && o.score > 0.5)
        })
        .count();
    assert_eq!(
        persons, 10,
        "a person in each of the astronaut's 10 pictures"
    );
    let cats = got
        .iter()
        .filter(|(seq, _)| reference.frames[**seq as usize].photo == "chelsea")
        .filter(|(_, r)| r.objects.iter().any(|o| o.label == "cat"))
        .count();
    assert_eq!(cats, 10, "a cat in each of chelsea's 10 pictures");
    let grass = got
        .iter()
        .filter(|(seq, _)| reference.frames[**seq as usize].photo == "grass")
        .map(|(_, r)| r.objects.len())
        .sum::<usize>();
    assert_eq!(grass, 0, "nothing on grass");
    let min_iou = pairs.iter().map(|p| p.0).fold(1.0f32, f32::min);
    let max_diff = pairs.iter().map(|p| p.1).fold(0.0f32, f32::max);
    let mean_iou = pairs.iter().map(|p| p.0).sum::<f32>() / pairs.len().max(1) as f32;
    eprintln!(
        "detect oracle: {FRAMES} pictures, {} objects matched onnxruntime's: IoU min {min_iou:.4} mean {mean_iou:.4}, score difference max {max_diff:.4}",
        pairs.len()
    );
    let (_, metrics) = worker.get("/metrics").await;
    assert!(
        metrics.contains("framewire_worker_detect_pictures_total{camera=\"people\"}"),
        "detection metrics exported"
    );
}

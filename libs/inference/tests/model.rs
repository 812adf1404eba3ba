//! The whole Rust detection path on the real model against the independent onnxruntime
//! reference that `scripts/model.sh` writes (scripts/model/reference.py): the YUV fixture
//! through `framewire_detect::preprocess`, `Detector::run` and `framewire_detect::decode`.
//!
//! Needs the model: `$FRAMEWIRE_MODEL_DIR` (as `scripts/test.sh` exports it), else
//! `${FRAMEWIRE_CACHE:-~/.cache/framewire}/models`. Without it the tests fail, saying to run
//! `scripts/model.sh`; they never skip. The onnxruntime backend's test (cargo feature
//! `onnxruntime`) opens `ORT_DYLIB_PATH`, else the library named in the model directory's
//! `onnxruntime.path`.

use std::path::{Path, PathBuf};

use framewire_detect::{Config, Detection, Yuv420, decode, iou, preprocess};
use framewire_inference::{BackendKind, Detector, Options, RawOutputs};
use serde_json::Value;

/// Inference outputs on the same input tensor: scores are probabilities, box outputs logits
/// of magnitude ~10; runtimes differ by summation order only (measured ≤ 1.3e-5).
const SAME_INPUT_TOLERANCE: f32 = 1e-3;

fn model_dir() -> PathBuf {
    let dir = match std::env::var_os("FRAMEWIRE_MODEL_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let cache = std::env::var_os("FRAMEWIRE_CACHE")
                .filter(|c| !c.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/framewire")))
                .expect("neither FRAMEWIRE_MODEL_DIR, FRAMEWIRE_CACHE nor HOME is set: run scripts/model.sh");
            cache.join("models")
        }
    };
    for file in ["nanodet-g-416.onnx", "astronaut.reference.json"] {
        assert!(
            dir.join(file).is_file(),
            "{} not found: run scripts/model.sh (and export FRAMEWIRE_MODEL_DIR=\"$(scripts/model.sh)\")",
            dir.join(file).display()
        );
    }
    dir
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}: run scripts/model.sh", path.display()))
}

fn read_f32(path: &Path) -> Vec<f32> {
    read(path)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

struct Reference {
    dir: PathBuf,
    json: Value,
}

impl Reference {
    fn load() -> Reference {
        let dir = model_dir();
        let json = serde_json::from_slice(&read(&dir.join("astronaut.reference.json")))
            .expect("astronaut.reference.json is JSON");
        Reference { dir, json }
    }

    fn file(&self, pointer: &str) -> PathBuf {
        let name = self.json.pointer(pointer).and_then(Value::as_str);
        self.dir
            .join(name.unwrap_or_else(|| panic!("reference has no {pointer}")))
    }

    /// The reference's input tensor (its own preprocessing of the YUV file).
    fn input(&self) -> Vec<f32> {
        read_f32(&self.file("/input/file"))
    }

    /// The six onnxruntime outputs on that tensor, in the reference's order
    /// (`Identity:0` … `Identity_5:0`: scores of the three levels, then boxes).
    fn outputs(&self) -> RawOutputs {
        let expected = framewire_detect::SCORE_OUTPUTS
            .iter()
            .chain(framewire_detect::BOX_OUTPUTS.iter());
        let mut raw = RawOutputs::default();
        let slots = raw.scores.iter_mut().chain(raw.boxes.iter_mut());
        for (i, (slot, name)) in slots.zip(expected).enumerate() {
            let pointer = format!("/outputs/{i}");
            assert_eq!(
                self.json
                    .pointer(&format!("{pointer}/name"))
                    .and_then(Value::as_str),
                Some(*name)
            );
            *slot = read_f32(&self.file(&format!("{pointer}/file")));
        }
        raw
    }

    fn detections(&self) -> Vec<Detection> {
        let list = self.json["detections"]
            .as_array()
            .expect("detections array");
        list.iter()
            .map(|d| {
                let f = |k: &str| d[k].as_f64().unwrap_or_else(|| panic!("detection {k}")) as f32;
                let class = d["class"].as_u64().expect("class") as u16;
                Detection {
                    class,
                    label: framewire_detect::label(class).unwrap_or("?"),
                    score: f("score"),
                    x0: f("x0"),
                    y0: f("y0"),
                    x1: f("x1"),
                    y1: f("y1"),
                }
            })
            .collect()
    }

    /// The fixture picture, preprocessed by `framewire_detect`.
    fn preprocessed(&self, config: &Config) -> (Vec<f32>, framewire_detect::Letterbox) {
        let width = self.json["picture"]["width"].as_u64().expect("width") as u32;
        let height = self.json["picture"]["height"].as_u64().expect("height") as u32;
        let yuv = read(&self.file("/picture/file"));
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        assert_eq!(yuv.len(), w * h + 2 * cw * ch, "YUV fixture size");
        let (y, chroma) = yuv.split_at(w * h);
        let (u, v) = chroma.split_at(cw * ch);
        let picture = Yuv420 {
            y,
            y_stride: w,
            u,
            u_stride: cw,
            v,
            v_stride: cw,
            width,
            height,
        };
        let mut tensor = vec![0f32; config.input_len()];
        let letterbox = preprocess(&picture, config, &mut tensor).expect("preprocess");
        (tensor, letterbox)
    }
}

/// Largest absolute difference, and the mean one.
fn differences(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let mean = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .sum::<f64>()
        / a.len() as f64;
    (max, mean as f32)
}

fn assert_same_detections(got: &[Detection], want: &[Detection], what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {got:?} vs reference {want:?}"
    );
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.class, w.class, "{what}: {g:?} vs {w:?}");
        assert!(
            iou(g, w) >= 0.9,
            "{what}: IoU {} of {g:?} and {w:?}",
            iou(g, w)
        );
        assert!(
            (g.score - w.score).abs() <= 0.02,
            "{what}: score {g:?} vs {w:?}"
        );
    }
}

fn check_backend(options: &Options) {
    let reference = Reference::load();
    let config = Config::default();
    let mut detector = Detector::load(&reference.dir.join("nanodet-g-416.onnx"), options)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(detector.backend(), options.backend);
    assert_eq!(detector.input_size(), config.input_size);
    assert_eq!(detector.max_batch(), 1);
    let backend = options.backend;

    // 1. Preprocessing alone: framewire_detect against the reference's own (skimage) path.
    let (tensor, letterbox) = reference.preprocessed(&config);
    let reference_input = reference.input();
    // The two differ by design where colour is saturated: framewire_detect resamples YUV and
    // then converts and clamps, the reference converts, clamps, then resamples. Measured: mean
    // 0.0019, 0.27 % of values off by more than 0.05 (3 levels of 255), at most 0.30.
    let (max, mean) = differences(&tensor, &reference_input);
    let off = tensor
        .iter()
        .zip(&reference_input)
        .filter(|(a, b)| (*a - *b).abs() > 0.05)
        .count();
    let off_share = off as f64 / tensor.len() as f64;
    assert!(
        mean < 0.004 && off_share < 0.005 && max < 0.5,
        "input tensor differs from the reference: mean {mean}, {off} values off by > 0.05, max {max}"
    );

    // 2. Inference alone: the reference's input tensor, the reference's outputs. Two
    // inputs in one call: one output each, in order, and a run does not leak into the next.
    let want = reference.outputs();
    let blank = vec![0f32; config.input_len()];
    let got = detector
        .run(&[&reference_input, &blank])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), 2);
    for (level, (g, w)) in got[0]
        .scores
        .iter()
        .chain(&got[0].boxes)
        .zip(want.scores.iter().chain(&want.boxes))
        .enumerate()
    {
        let (max, _) = differences(g, w);
        assert!(
            max <= SAME_INPUT_TOLERANCE,
            "{backend}: output {level} differs by up to {max}"
        );
    }
    assert_ne!(
        got[0], got[1],
        "{backend}: a blank picture gave the astronaut's outputs"
    );

    // 3. The whole Rust path: its own tensor, decoded, against the reference detections.
    let ours = detector.run(&[&tensor]).unwrap_or_else(|e| panic!("{e}"));
    let mut detections = Vec::new();
    decode(&ours[0].outputs(), &letterbox, &config, &mut detections).expect("decode");
    let reference_detections = reference.detections();
    assert_same_detections(
        &detections,
        &reference_detections,
        &format!("{backend}, whole Rust path"),
    );
    assert!(
        detections
            .iter()
            .any(|d| d.label == "person" && d.score > 0.5),
        "{backend}: no person in the astronaut picture: {detections:?}"
    );

    // The reference's outputs decode the same in Rust too (decode checked on its own).
    decode(&want.outputs(), &letterbox, &config, &mut detections).expect("decode");
    assert_same_detections(
        &detections,
        &reference_detections,
        "reference outputs, Rust decode",
    );
}

#[test]
fn tract_matches_the_onnxruntime_reference() {
    check_backend(&Options::default());
}

#[test]
fn tract_with_two_threads_gives_the_same_outputs() {
    let reference = Reference::load();
    let model = reference.dir.join("nanodet-g-416.onnx");
    let input = reference.input();
    let one = Detector::load(&model, &Options::default()).and_then(|mut d| d.run(&[&input]));
    let options = Options {
        threads: 2,
        ..Options::default()
    };
    let two = Detector::load(&model, &options).and_then(|mut d| d.run(&[&input]));
    let (one, two) = (
        one.unwrap_or_else(|e| panic!("{e}")),
        two.unwrap_or_else(|e| panic!("{e}")),
    );
    let (max, _) = differences(&one[0].scores[0], &two[0].scores[0]);
    assert!(
        max <= SAME_INPUT_TOLERANCE,
        "1 vs 2 threads differ by {max}"
    );
}

#[test]
fn wrong_input_length_is_an_error_not_a_panic() {
    let reference = Reference::load();
    let mut detector = Detector::load(
        &reference.dir.join("nanodet-g-416.onnx"),
        &Options::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let short = vec![0f32; 10];
    let err = detector.run(&[&short]).expect_err("10 floats");
    assert!(err.to_string().contains("has 10 floats"), "{err}");
    assert!(detector.run(&[]).map(|o| o.is_empty()).unwrap_or(false));
}

#[cfg(feature = "onnxruntime")]
#[test]
fn onnxruntime_matches_the_onnxruntime_reference() {
    let dir = model_dir();
    let library = match std::env::var_os("ORT_DYLIB_PATH") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => {
            let file = dir.join("onnxruntime.path");
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}: run scripts/model.sh", file.display()));
            PathBuf::from(text.trim())
        }
    };
    check_backend(&Options {
        backend: BackendKind::OnnxRuntime,
        onnxruntime_library: Some(library),
        ..Options::default()
    });
}

#[cfg(not(feature = "onnxruntime"))]
#[test]
fn onnxruntime_is_not_built_in_by_default() {
    let options = Options {
        backend: BackendKind::OnnxRuntime,
        ..Options::default()
    };
    let err = Detector::load(&model_dir().join("nanodet-g-416.onnx"), &options)
        .expect_err("not built in");
    assert!(
        err.to_string().contains("cargo feature onnxruntime"),
        "{err}"
    );
}

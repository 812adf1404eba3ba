//! Detection benchmark, one backend per run (`scripts/bench/run.sh`, `BENCH_ONLY=detect`,
//! runs it for tract and for onnxruntime next to `scripts/bench/detect_ort.py`):
//!
//! - inference: NanoDet-g-416 on the model directory's `astronaut.input.f32` (the same tensor
//!   the Python onnxruntime run uses), median wall ms per picture and CPU ms per picture
//!   (every thread of the process, from `/proc/self/task/*/schedstat`);
//! - preprocess: `framewire_detect::preprocess` of a 1280x720 YUV 4:2:0 picture, before the
//!   model is loaded and again after the inferences;
//! - decode: `framewire_detect::decode` (scores, boxes, NMS) of the astronaut's outputs;
//! - with `--batch N` (tract only): the model with its input fixed to `[N, 3, 416, 416]`
//!   against `[1, 3, 416, 416]`, per picture (is batching cameras worth it?).
//!
//! Prints one Markdown row and appends a JSON line to `--json FILE` for
//! `scripts/bench/summary.py`. Run it pinned (`taskset -c N`).
//!
//! ```text
//! cargo run --release -p framewire-inference --example bench-detect [--features onnxruntime] -- \
//!   [--model-dir DIR] [--backend tract|onnxruntime] [--onnxruntime-library PATH] \
//!   [--threads 1] [--runs 30] [--batch N] [--json OUT]
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use framewire_detect::{Config, Yuv420, decode, preprocess};
use framewire_inference::{BackendKind, Detector, Options};
use serde_json::json;
use tract_onnx::prelude::*;

struct Args {
    model_dir: PathBuf,
    backend: BackendKind,
    library: Option<PathBuf>,
    threads: usize,
    runs: usize,
    batch: Option<usize>,
    json: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let default_dir = std::env::var_os("FRAMEWIRE_MODEL_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/framewire/models")))
        .context("set FRAMEWIRE_MODEL_DIR=\"$(scripts/model.sh)\"")?;
    let mut a = Args {
        model_dir: default_dir,
        backend: BackendKind::Tract,
        library: None,
        threads: 1,
        runs: 30,
        batch: None,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--model-dir" => a.model_dir = value()?.into(),
            "--backend" => a.backend = value()?.parse()?,
            "--onnxruntime-library" => a.library = Some(value()?.into()),
            "--threads" => a.threads = value()?.parse().context("--threads")?,
            "--runs" => a.runs = value()?.parse().context("--runs")?,
            "--batch" => a.batch = Some(value()?.parse().context("--batch")?),
            "--json" => a.json = Some(value()?.into()),
            other => bail!(
                "unknown argument {other}; usage: bench-detect [--model-dir DIR] [--backend tract|onnxruntime] \
                 [--onnxruntime-library PATH] [--threads N] [--runs N] [--batch N] [--json OUT]"
            ),
        }
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(a)
}

fn read_f32(path: &Path) -> anyhow::Result<Vec<f32>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("{}: run scripts/model.sh", path.display()))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// CPU time of every thread of this process so far (scheduler statistics, nanoseconds).
fn process_cpu() -> Duration {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Median wall ms of `runs` calls, and CPU ms per call over all of them.
fn measure(runs: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    let mut walls = Vec::with_capacity(runs);
    let cpu = process_cpu();
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        walls.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cpu_ms = (process_cpu() - cpu).as_secs_f64() * 1e3 / runs as f64;
    Ok((median(walls), cpu_ms))
}

/// tract on the model with its input fixed to `[batch, 3, 416, 416]`: median ms per picture.
/// The graph's reshapes name batch 1, so the outputs of a batch > 1 are not per-picture
/// tensors; the work (convolutions on `batch` pictures) is what is measured.
fn tract_batch_ms(model: &Path, batch: usize, input: &[f32], runs: usize) -> anyhow::Result<f64> {
    let plan = tract_onnx::onnx()
        .model_for_path(model)?
        .with_input_fact(0, f32::fact([batch, 3, 416, 416]).into())?
        .into_optimized()?
        .into_runnable()?;
    let mut data = Vec::with_capacity(batch * input.len());
    for _ in 0..batch {
        data.extend_from_slice(input);
    }
    let tensor = Tensor::from_shape(&[batch, 3, 416, 416], &data)?;
    let mut state = plan.spawn()?;
    state.run(tvec!(tensor.clone().into_tvalue()))?;
    let (ms, _) = measure(runs, || {
        state.run(tvec!(tensor.clone().into_tvalue()))?;
        Ok(())
    })?;
    Ok(ms / batch as f64)
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let model = a.model_dir.join("nanodet-g-416.onnx");
    let input = read_f32(&a.model_dir.join("astronaut.input.f32"))?;
    let config = Config::default();
    let options = Options {
        backend: a.backend,
        threads: a.threads,
        max_batch: 1,
        onnxruntime_library: a.library.clone(),
    };

    // Preprocess: a 1280x720 picture with openh264's strides (the cost does not depend on
    // the content: every output pixel reads the same number of samples).
    let (w, h) = (1280usize, 720usize);
    let y: Vec<u8> = (0..w * h)
        .map(|i| (16 + (i % w * 7 + i / w * 3) % 220) as u8)
        .collect();
    let u: Vec<u8> = (0..w * h / 4).map(|i| (16 + (i * 5) % 224) as u8).collect();
    let v: Vec<u8> = (0..w * h / 4)
        .map(|i| (16 + (i * 11) % 224) as u8)
        .collect();
    let picture = Yuv420 {
        y: &y,
        y_stride: w,
        u: &u,
        u_stride: w / 2,
        v: &v,
        v_stride: w / 2,
        width: 1280,
        height: 720,
    };
    let mut tensor = vec![0f32; config.input_len()];
    let mut letterbox = preprocess(&picture, &config, &mut tensor)?;
    let (preprocess_ms, _) = measure(a.runs.max(20), || {
        letterbox = preprocess(&picture, &config, &mut tensor)?;
        Ok(())
    })?;

    let started = Instant::now();
    let mut detector = Detector::load(&model, &options)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut outputs = Vec::new();
    for _ in 0..3 {
        outputs = detector.run(&[&input])?;
    }
    let (infer_ms, infer_cpu_ms) = measure(a.runs, || {
        detector.run(&[&input])?;
        Ok(())
    })?;

    // The same preprocessing again, now that the runtime has run (its kernels and memory
    // use can slow the code after them).
    let (preprocess_after_ms, _) = measure(a.runs.max(20), || {
        letterbox = preprocess(&picture, &config, &mut tensor)?;
        Ok(())
    })?;

    // Decode: the astronaut's outputs (one person), 200 times.
    let raw = outputs.first().context("no outputs")?;
    let mut detections = Vec::new();
    let (decode_ms, _) = measure(200, || {
        decode(&raw.outputs(), &letterbox, &config, &mut detections)?;
        Ok(())
    })?;

    let batch = match a.batch {
        Some(n) if n > 1 => {
            let runs = a.runs.div_ceil(n).max(5);
            let one = tract_batch_ms(&model, 1, &input, a.runs)?;
            let many = tract_batch_ms(&model, n, &input, runs)?;
            Some((n, one, many))
        }
        _ => None,
    };

    let per_core = 1000.0 / infer_cpu_ms;
    let label = format!(
        "{} ({} thread{})",
        a.backend,
        a.threads,
        if a.threads == 1 { "" } else { "s" }
    );
    println!(
        "| {label} | {infer_ms:.1} | {infer_cpu_ms:.1} | {per_core:.1} | {preprocess_ms:.2} (after inference {preprocess_after_ms:.2}) | {decode_ms:.3} | load {load_ms:.0} ms |"
    );
    if let Some((n, one, many)) = batch {
        println!(
            "| tract batch {n} vs 1, ms per picture | {many:.1} vs {one:.1} ({:.2}×) |",
            many / one
        );
    }
    if let Some(path) = &a.json {
        let line = json!({
            "label": label, "backend": a.backend, "threads": a.threads, "runs": a.runs,
            "load_ms": load_ms, "infer_ms": infer_ms, "infer_cpu_ms": infer_cpu_ms,
            "pictures_per_s_per_core": per_core,
            "preprocess_720p_ms": preprocess_ms, "preprocess_720p_after_inference_ms": preprocess_after_ms,
            "decode_outputs_ms": decode_ms,
            "batch": batch.map(|(n, one, many)| json!({"n": n, "single_ms": one, "batch_ms_per_picture": many})),
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}", path.display()))?;
        writeln!(file, "{line}")?;
    }
    Ok(())
}

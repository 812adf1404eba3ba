//! Sizing validation: what a fleet of workers really uses for a given load, to set beside
//! what docs/sizing.md predicts from the per-core rates `make bench` measures.
//!
//! `framewire-loadgen` replays a clip as N cameras in real time (each at the clip's frame
//! rate) into a fresh frames topic of 12 partitions, read by W release workers of one
//! consumer group (not pinned: the machine's cores are shared with the broker, as in a
//! cluster node). After a warm-up, the workers' CPU time and the stats records written are
//! sampled over a window: the cores the workers use for the load, the frames per second
//! they keep up with, their memory. Loadgen's summary gives the Kafka bytes per second.
//!
//! Prints one Markdown table row and appends the numbers as one JSON line to `--json FILE`
//! for `scripts/bench/summary.py`, which computes the prediction from the same run's
//! single-camera worker rates.
//!
//! ```text
//! bench-sizing --clip FILE.h264|FILE.h265 --cameras N [--workers 1] [--decoder auto]
//!              [--mode all|keyframes] [--seconds 60] [--warmup 15] [--label TEXT] [--json FILE]
//! ```

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use framewire_e2e::{KAFKA, Service, Topics, bin, high_watermarks, process_usage, unique};
use serde_json::json;

struct Args {
    clip: PathBuf,
    cameras: usize,
    workers: usize,
    decoder: String,
    mode: String,
    seconds: u64,
    warmup: u64,
    label: String,
    json: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        clip: PathBuf::new(),
        cameras: 0,
        workers: 1,
        decoder: "auto".into(),
        mode: "all".into(),
        seconds: 60,
        warmup: 15,
        label: String::new(),
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--clip" => a.clip = value()?.into(),
            "--cameras" => a.cameras = value()?.parse().context("--cameras")?,
            "--workers" => a.workers = value()?.parse().context("--workers")?,
            "--decoder" => a.decoder = value()?,
            "--mode" => a.mode = value()?,
            "--seconds" => a.seconds = value()?.parse().context("--seconds")?,
            "--warmup" => a.warmup = value()?.parse().context("--warmup")?,
            "--label" => a.label = value()?,
            "--json" => a.json = Some(value()?.into()),
            other => bail!("unknown argument {other} (see the module doc for usage)"),
        }
    }
    if a.clip.as_os_str().is_empty() || a.cameras == 0 || a.workers == 0 {
        bail!("--clip and --cameras are required; --workers must be at least 1");
    }
    if a.seconds < a.warmup + 10 {
        bail!("--seconds must be at least --warmup + 10");
    }
    Ok(a)
}

/// The workers' summed (CPU seconds, resident bytes).
fn usage(workers: &[Service]) -> (f64, u64) {
    workers
        .iter()
        .filter_map(Service::pid)
        .map(process_usage)
        .fold((0.0, 0), |(c, r), (cpu, rss)| (c + cpu, r + rss))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(args.clip.with_extension("json")).context("the clip's .json facts")?,
    )?;
    let fps = meta["fps"].as_f64().unwrap_or(25.0);
    let topics = Topics::unique("bench-sizing");
    framewire_e2e::create_big_topics(&topics, 12).await?;
    let group = unique("bench-sizing");
    let config = format!(
        "{}\n[worker]\ngroup_id = \"{group}\"\nauto_offset_reset = \"earliest\"\ndecoder = \"{}\"\ndecode_mode = \"{}\"\n",
        topics.toml().replace("partitions = 4", "partitions = 12"),
        args.decoder,
        args.mode,
    );
    let workers: Vec<Service> = (0..args.workers)
        .map(|_| Service::start("framewire-worker", &config, &[]))
        .collect();
    for w in &workers {
        w.wait_ready(Duration::from_secs(60)).await;
    }
    eprintln!(
        "bench-sizing: {} workers ready; framewire-loadgen: {} cameras in real time for {} s",
        args.workers, args.cameras, args.seconds
    );
    let loadgen = Command::new(bin("framewire-loadgen"))
        .args(["--brokers", KAFKA, "--quiet", "--rate", "realtime"])
        .args(["--cameras", &args.cameras.to_string()])
        .args(["--duration", &format!("{}s", args.seconds)])
        .args(["--topic", &topics.frames, "--partitions", "12"])
        .args(["--camera-prefix", &unique("bsz")])
        .arg("--clip")
        .arg(&args.clip)
        .env("FRAMEWIRE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start framewire-loadgen")?;
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let (cpu0, stats0, t0) = (
        usage(&workers).0,
        high_watermarks(&topics.stats)?,
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.seconds - args.warmup - 5)).await;
    let ((cpu1, rss), stats1, window) = (
        usage(&workers),
        high_watermarks(&topics.stats)?,
        t0.elapsed().as_secs_f64(),
    );
    let out = tokio::task::spawn_blocking(move || loadgen.wait_with_output()).await??;
    let logs: String = workers.iter().map(Service::log).collect();
    drop(workers);
    topics.delete().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .with_context(|| {
            format!(
                "framewire-loadgen printed no summary: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let cores = (cpu1 - cpu0) / window;
    let stats_per_s = (stats1 - stats0) as f64 / window;
    let offered = args.cameras as f64 * fps;
    let keyframes_only = args.mode == "keyframes";
    let expected = if keyframes_only {
        offered / meta["gop"].as_f64().unwrap_or(30.0)
    } else {
        offered
    };
    if stats_per_s < 0.9 * expected {
        bail!(
            "the workers kept up with {stats_per_s:.0} of {expected:.0} pictures/s: over capacity, not a sizing point\n--- logs ---\n{logs}"
        );
    }
    println!(
        "| {} | {} | {} workers | {} | {} cameras × {fps} fps = {offered:.0} frames/s | {stats_per_s:.0} stats/s | worker cores {cores:.2} | RSS {:.0} MiB | Kafka in {:.1} MB/s |",
        args.label,
        meta["height"],
        args.workers,
        args.decoder,
        args.cameras,
        rss as f64 / 1048576.0,
        summary["mb_per_s"].as_f64().unwrap_or(0.0),
    );
    if let Some(path) = &args.json {
        let line = json!({
            "label": args.label, "clip": args.clip, "width": meta["width"], "height": meta["height"],
            "codec": meta["codec"], "gop": meta["gop"], "fps": fps, "bitrate_kbps": meta["bitrate_kbps"],
            "cameras": args.cameras, "workers": args.workers, "decoder": args.decoder, "mode": args.mode,
            "offered_fps": offered, "stats_per_s": stats_per_s, "worker_cores": cores,
            "worker_rss_bytes": rss, "window_s": window, "loadgen": summary,
        });
        framewire_e2e::append_json_line(path, &line)
            .with_context(|| format!("failed to append to {}", path.display()))?;
    }
    Ok(())
}

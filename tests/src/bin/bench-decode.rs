//! Decode benchmark on one core: for each clip (Annex B `.h264` from
//! `scripts/bench/make-clip.sh`, with its `.json` facts beside it), side by side in one run:
//! `ffmpeg -threads 1` decoding the same file, bare openh264 decode, openh264 decode plus
//! every statistic the worker computes (framestats + detectors + the previous-luma copy),
//! and keyframes-only decoding (only IDR access units, each flushed at once, as the worker's
//! `keyframes` mode does). Also the statistics' own cost per picture, measured in place on
//! the decoded pictures, as a share of the decode time and against a memcpy of the same
//! planes. Run it under `taskset -c N` (`scripts/bench/run.sh` does): ffmpeg inherits the pin.
//!
//! Prints a Markdown table and writes the numbers as JSON (`--json FILE`) for
//! `scripts/bench/summary.py`.

#[path = "bench-common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use framewire_framestats::{DetectorConfig, Detectors, Picture, Plane, active_isa, frame_stats};
use openh264::OpenH264API;
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use serde_json::{Value, json};

struct Args {
    clips: Vec<PathBuf>,
    runs: usize,
    json: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        clips: Vec::new(),
        runs: 3,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--clip" => a.clips.push(value()?.into()),
            "--runs" => a.runs = value()?.parse().context("--runs")?,
            "--json" => a.json = Some(value()?.into()),
            other => bail!(
                "unknown argument {other}; usage: bench-decode --clip FILE.h264... [--runs N] [--json OUT]"
            ),
        }
    }
    if a.clips.is_empty() {
        bail!("give at least one --clip FILE.h264");
    }
    Ok(a)
}

fn is_idr(au: &[u8]) -> bool {
    framewire_wire::annexb::is_idr(au)
}

fn decoder() -> anyhow::Result<Decoder> {
    Ok(Decoder::with_api_config(
        OpenH264API::from_source(),
        DecoderConfig::new().flush_after_decode(Flush::NoFlush),
    )?)
}

/// What the worker keeps per camera and computes per picture.
struct Measurer {
    detectors: Detectors,
    prev: Vec<u8>,
    prev_dims: (usize, usize),
    copy: Vec<u8>,
    /// Time in the statistics, and in a memcpy of the same planes.
    stats: Duration,
    memcpy: Duration,
    pictures: u64,
}

impl Measurer {
    fn new() -> Self {
        Measurer {
            detectors: Detectors::new(DetectorConfig::default()),
            prev: Vec::new(),
            prev_dims: (0, 0),
            copy: Vec::new(),
            stats: Duration::ZERO,
            memcpy: Duration::ZERO,
            pictures: 0,
        }
    }

    /// The worker's `measure`: statistics, detectors, then the luma kept for `y_dif`.
    fn measure(&mut self, yuv: &DecodedYUV<'_>) -> anyhow::Result<f64> {
        let (w, h) = yuv.dimensions();
        let (ys, us, vs) = yuv.strides();
        let (cw, ch) = yuv.dimensions_uv();
        let pic = Picture {
            y: Plane::new(yuv.y(), w, h, ys)?,
            u: Plane::new(yuv.u(), cw, ch, us)?,
            v: Plane::new(yuv.v(), cw, ch, vs)?,
        };
        let started = Instant::now();
        let prev = (self.prev_dims == (w, h))
            .then(|| Plane::new(&self.prev, w, h, w).ok())
            .flatten();
        let s = frame_stats(&pic, prev.as_ref());
        let flags = self.detectors.update(&pic, &s, prev.is_some());
        self.prev.clear();
        pic.y.rows().for_each(|r| self.prev.extend_from_slice(r));
        self.prev_dims = (w, h);
        let after_stats = Instant::now();
        // The unit of comparison: copying the picture's visible samples once.
        self.copy.clear();
        for p in [&pic.y, &pic.u, &pic.v] {
            p.rows().for_each(|r| self.copy.extend_from_slice(r));
        }
        std::hint::black_box(&self.copy);
        self.memcpy += after_stats.elapsed();
        self.stats += after_stats - started;
        self.pictures += 1;
        Ok(s.y_avg + flags.scene_score)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Decode only.
    Bare,
    /// Decode and measure every picture.
    Stats,
    /// Only IDR access units, each flushed at once, measured.
    Keyframes,
}

/// One pass over the clip: (wall time excluding the memcpy probe, pictures, measurer).
fn pass(units: &[&[u8]], mode: Mode) -> anyhow::Result<(Duration, u64, Measurer)> {
    let mut dec = decoder()?;
    let mut m = Measurer::new();
    let mut pictures = 0u64;
    let mut checksum = 0.0;
    let started = Instant::now();
    for au in units {
        if mode == Mode::Keyframes && !is_idr(au) {
            continue;
        }
        if let Some(yuv) = dec.decode(au)? {
            pictures += 1;
            if mode != Mode::Bare {
                checksum += m.measure(&yuv)?;
            }
        }
        if mode == Mode::Keyframes {
            for yuv in dec.flush_remaining()? {
                pictures += 1;
                checksum += m.measure(&yuv)?;
            }
        }
    }
    for yuv in dec.flush_remaining()? {
        pictures += 1;
        if mode != Mode::Bare {
            checksum += m.measure(&yuv)?;
        }
    }
    std::hint::black_box(checksum);
    let elapsed = started.elapsed().saturating_sub(m.memcpy);
    Ok((elapsed, pictures, m))
}

/// Best (shortest) of `runs` passes.
fn best(units: &[&[u8]], mode: Mode, runs: usize) -> anyhow::Result<(Duration, u64, Measurer)> {
    let mut best: Option<(Duration, u64, Measurer)> = None;
    for _ in 0..runs {
        let r = pass(units, mode)?;
        if best.as_ref().is_none_or(|b| r.0 < b.0) {
            best = Some(r);
        }
    }
    best.context("no run")
}

/// `ffmpeg -threads 1` decoding the file to nowhere: best wall time of `runs`.
fn ffmpeg(clip: &Path, runs: usize) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let started = Instant::now();
        let out = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "error",
                "-threads",
                "1",
            ])
            .args(["-f", "h264", "-i"])
            .arg(clip)
            .args(["-an", "-f", "null", "-"])
            .output()
            .context("failed to run ffmpeg")?;
        let elapsed = started.elapsed();
        if !out.status.success() {
            bail!(
                "ffmpeg failed on {}: {}",
                clip.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        best = best.min(elapsed);
    }
    Ok(best)
}

fn fps(frames: u64, d: Duration) -> f64 {
    frames as f64 / d.as_secs_f64()
}

fn clip_label(meta: &Value) -> String {
    format!(
        "{}x{} {} GOP {} {:.1} Mbps",
        meta["width"],
        meta["height"],
        meta["profile"].as_str().unwrap_or("?"),
        meta["gop"],
        meta["bitrate_kbps"].as_f64().unwrap_or(0.0) / 1000.0
    )
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let mut results = Vec::new();
    println!(
        "\n## Decode on one core (best of {} runs; statistics kernels: {:?})\n",
        args.runs,
        active_isa()
    );
    println!(
        "| clip | ffmpeg -threads 1 fps | openh264 fps | × ffmpeg | openh264 + stats fps | × bare | stats ms/frame | stats % of decode | stats / memcpy | keyframes-only: IDR/s | frames covered/s | × full decode |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for clip in &args.clips {
        let meta_path = clip.with_extension("json");
        let meta: Value = serde_json::from_slice(
            &std::fs::read(&meta_path)
                .with_context(|| format!("failed to read {}", meta_path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", meta_path.display()))?;
        let stream =
            std::fs::read(clip).with_context(|| format!("failed to read {}", clip.display()))?;
        let units = common::access_units(&stream);
        let frames = units.len() as u64;
        let idr = units.iter().filter(|u| is_idr(u)).count() as u64;

        let ff = ffmpeg(clip, args.runs)?;
        let (bare, bare_pics, _) = best(&units, Mode::Bare, args.runs)?;
        let (with_stats, stats_pics, m) = best(&units, Mode::Stats, args.runs)?;
        let (key, key_pics, _) = best(&units, Mode::Keyframes, args.runs)?;
        if bare_pics != frames || stats_pics != frames || key_pics != idr {
            bail!(
                "{}: {frames} access units ({idr} IDR) but {bare_pics} / {stats_pics} / {key_pics} pictures",
                clip.display()
            );
        }
        let (ff_fps, bare_fps, stats_fps) =
            (fps(frames, ff), fps(frames, bare), fps(frames, with_stats));
        let decode_ms = bare.as_secs_f64() * 1e3 / frames as f64;
        let stats_ms = m.stats.as_secs_f64() * 1e3 / m.pictures as f64;
        let memcpy_ms = m.memcpy.as_secs_f64() * 1e3 / m.pictures as f64;
        let idr_per_s = fps(idr, key);
        let covered = fps(frames, key);
        println!(
            "| {} | {ff_fps:.0} | {bare_fps:.0} | {:.2} | {stats_fps:.0} | {:.2} | {stats_ms:.3} | {:.1} % | {:.1} | {idr_per_s:.0} | {covered:.0} | {:.1} |",
            clip_label(&meta),
            bare_fps / ff_fps,
            stats_fps / bare_fps,
            100.0 * stats_ms / decode_ms,
            stats_ms / memcpy_ms,
            covered / bare_fps,
        );
        results.push(json!({
            "clip": clip,
            "label": clip_label(&meta),
            "width": meta["width"], "height": meta["height"], "profile": meta["profile"],
            "gop": meta["gop"], "bitrate_kbps": meta["bitrate_kbps"],
            "frames": frames, "idr": idr,
            "ffmpeg_fps": ff_fps, "openh264_fps": bare_fps, "stats_fps": stats_fps,
            "decode_ms": decode_ms, "stats_ms": stats_ms, "memcpy_ms": memcpy_ms,
            "keyframes_idr_per_s": idr_per_s, "keyframes_covered_fps": covered,
            "isa": format!("{:?}", active_isa()),
        }));
    }
    println!(
        "\nstats = frame_stats + detectors + the previous-luma copy per picture, timed in place; memcpy = one copy of the same picture's Y, U and V samples."
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&results)?)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

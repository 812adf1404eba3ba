//! Decode benchmark on one core: for each clip (Annex B `.h264` from
//! `scripts/bench/make-clip.sh`, with its `.json` facts beside it), side by side in one run:
//! `ffmpeg -threads 1` decoding the same file, bare openh264 decode, openh264 decode plus
//! every statistic the worker computes (framestats + detectors + the previous-luma copy),
//! and keyframes-only decoding (only IDR access units, each flushed at once, as the worker's
//! `keyframes` mode does). Also the statistics' own cost per picture, measured in place on
//! the decoded pictures, as a share of the decode time and against a memcpy of the same
//! planes, both as the worker computes them today (frame_stats, Detectors::update, a copy
//! of the luma) and with `framestats::Analyzer` (the same results in one pass). And each
//! `decode` call of the bare pass, IDR access units apart from the others: an IDR's cost
//! against the average frame's bounds what keyframes-only decoding can gain. Run it under `taskset -c N` (`scripts/bench/run.sh` does): ffmpeg inherits the pin.
//!
//! Prints a Markdown table and writes the numbers as JSON (`--json FILE`) for
//! `scripts/bench/summary.py`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use framewire_framestats::{
    Analyzer, DetectorConfig, Detectors, Picture, Plane, active_isa, frame_stats,
};
use framewire_wire::Codec;
use framewire_wire::stream::publishable_access_units;
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

/// Per-picture samples of one kind of work.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Median in ms: robust to the odd preemption by other processes on a shared machine.
    fn median_ms(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_unstable();
        v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }

    fn total(&self) -> Duration {
        self.0.iter().sum()
    }
}

/// What the worker keeps per camera and computes per picture.
struct Measurer {
    /// `Some`: measure with [`Analyzer`] (one pass) instead of the worker's three calls.
    analyzer: Option<Analyzer>,
    detectors: Detectors,
    prev: Vec<u8>,
    prev_dims: (usize, usize),
    copy: Vec<u8>,
    /// Each `decode` call and the bytes decoded, IDR access units apart from the others.
    decode_idr: Samples,
    decode_other: Samples,
    idr_bytes: u64,
    other_bytes: u64,
    /// All statistics of a picture; its parts (frame_stats, detectors, the previous-luma
    /// copy); a memcpy of the same planes.
    stats: Samples,
    parts: [Samples; 3],
    memcpy: Samples,
}

impl Measurer {
    fn new(one_pass: bool) -> Self {
        Measurer {
            analyzer: one_pass.then(|| Analyzer::new(DetectorConfig::default())),
            detectors: Detectors::new(DetectorConfig::default()),
            prev: Vec::new(),
            prev_dims: (0, 0),
            copy: Vec::new(),
            decode_idr: Samples::default(),
            decode_other: Samples::default(),
            idr_bytes: 0,
            other_bytes: 0,
            stats: Samples::default(),
            parts: Default::default(),
            memcpy: Samples::default(),
        }
    }

    /// Records one `decode` call of `len` bytes.
    fn decoded(&mut self, idr: bool, len: usize, took: Duration) {
        if idr {
            self.decode_idr.push(took);
            self.idr_bytes += len as u64;
        } else {
            self.decode_other.push(took);
            self.other_bytes += len as u64;
        }
    }

    /// The worker's `measure`: statistics, detectors, then the luma kept for `y_dif`
    /// (or all of it through [`Analyzer`]); then, timed apart, a memcpy of the picture.
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
        let checksum = if let Some(a) = self.analyzer.as_mut() {
            let (s, flags) = a.measure(&pic);
            s.y_avg + flags.scene_score
        } else {
            let prev = (self.prev_dims == (w, h))
                .then(|| Plane::new(&self.prev, w, h, w).ok())
                .flatten();
            let s = frame_stats(&pic, prev.as_ref());
            let t1 = Instant::now();
            let flags = self.detectors.update(&pic, &s, prev.is_some());
            let t2 = Instant::now();
            self.prev.clear();
            pic.y.rows().for_each(|r| self.prev.extend_from_slice(r));
            self.prev_dims = (w, h);
            self.parts[0].push(t1 - started);
            self.parts[1].push(t2 - t1);
            self.parts[2].push(t2.elapsed());
            s.y_avg + flags.scene_score
        };
        let after_stats = Instant::now();
        self.stats.push(after_stats - started);
        // The unit of comparison: copying the picture's visible samples once.
        self.copy.clear();
        for p in [&pic.y, &pic.u, &pic.v] {
            p.rows().for_each(|r| self.copy.extend_from_slice(r));
        }
        std::hint::black_box(&self.copy);
        self.memcpy.push(after_stats.elapsed());
        Ok(checksum)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Decode only.
    Bare,
    /// Decode and measure every picture as the worker does today.
    Stats,
    /// Decode and measure every picture with [`Analyzer`].
    OnePass,
    /// Only IDR access units, each flushed at once, measured.
    Keyframes,
}

/// CPU time (user + system) this process has used, from `/proc/self/stat` (10 ms ticks).
/// Passes are timed in CPU time, not wall time: on a machine shared with other work, a
/// pinned process that waits for its core does not count the wait.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
    Duration::from_millis(ticks * 10)
}

/// One pass over the clip: (CPU time excluding the memcpy probe, pictures, measurer).
fn pass(units: &[&[u8]], mode: Mode) -> anyhow::Result<(Duration, u64, Measurer)> {
    let mut dec = decoder()?;
    let mut m = Measurer::new(mode == Mode::OnePass);
    let mut pictures = 0u64;
    let mut checksum = 0.0;
    let started = cpu_time();
    for au in units {
        let idr = is_idr(au);
        if mode == Mode::Keyframes && !idr {
            continue;
        }
        let started = Instant::now();
        let decoded = dec.decode(au)?;
        m.decoded(idr, au.len(), started.elapsed());
        if let Some(yuv) = decoded {
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
    let used = cpu_time().saturating_sub(started);
    Ok((used.saturating_sub(m.memcpy.total()), pictures, m))
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

/// `ffmpeg -threads 1` decoding the file to nowhere: the best CPU time (`-benchmark`'s
/// utime + stime) of `runs`.
fn ffmpeg(clip: &Path, runs: usize) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-benchmark", "-threads", "1"])
            .args(["-f", "h264", "-i"])
            .arg(clip)
            .args(["-an", "-f", "null", "-"])
            .output()
            .context("failed to run ffmpeg")?;
        let text = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("ffmpeg failed on {}: {text}", clip.display());
        }
        // "bench: utime=1.234s stime=0.012s rtime=1.300s"
        let field = |name: &str| -> Option<f64> {
            let line = text.lines().find(|l| l.starts_with("bench: utime="))?;
            let v = line.split_whitespace().find_map(|w| w.strip_prefix(name))?;
            v.trim_end_matches('s').parse().ok()
        };
        let (Some(user), Some(system)) = (field("utime="), field("stime=")) else {
            bail!("no -benchmark line in ffmpeg's output: {text}");
        };
        best = best.min(Duration::from_secs_f64(user + system));
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
    let mut parts = Vec::new();
    let mut idr_rows = Vec::new();
    println!(
        "\n## Decode on one core (CPU time, best of {} runs; statistics kernels: {:?})\n",
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
        // The access units as ingest publishes them (SPS/PPS first on keyframes), which is
        // also what bench-worker produces.
        let owned: Vec<Vec<u8>> = publishable_access_units(&stream, Codec::H264)
            .with_context(|| format!("{}", clip.display()))?
            .into_iter()
            .map(|au| au.data)
            .collect();
        let units: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let frames = units.len() as u64;
        let idr = units.iter().filter(|u| is_idr(u)).count() as u64;

        let ff = ffmpeg(clip, args.runs)?;
        let (bare, bare_pics, b) = best(&units, Mode::Bare, args.runs)?;
        let (with_stats, stats_pics, m) = best(&units, Mode::Stats, args.runs)?;
        let (with_one_pass, _, one) = best(&units, Mode::OnePass, args.runs)?;
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
        let stats_ms = m.stats.median_ms();
        let memcpy_ms = m.memcpy.median_ms();
        let [fs_ms, det_ms, copy_ms] =
            [&m.parts[0], &m.parts[1], &m.parts[2]].map(Samples::median_ms);
        let one_ms = one.stats.median_ms();
        let one_fps = fps(frames, with_one_pass);
        // What statistics really add per picture: the pass with them minus the pass without
        // (this also counts the decoder's data they push out of the caches).
        let added_ms = (with_stats.as_secs_f64() - bare.as_secs_f64()) * 1e3 / frames as f64;
        let added_one_ms = (with_one_pass.as_secs_f64() - bare.as_secs_f64()) * 1e3 / frames as f64;
        parts.push(format!(
            "| {} | {decode_ms:.3} | {fs_ms:.3} | {det_ms:.3} | {copy_ms:.3} | {stats_ms:.3} ({:.1} %) | {one_ms:.3} ({:.1} %, {:.1}× memcpy) | {one_fps:.0} ({:.2}× bare) | {added_ms:.3} ({:.1} %) | {added_one_ms:.3} ({:.1} %) | {memcpy_ms:.3} |",
            clip_label(&meta),
            100.0 * stats_ms / decode_ms,
            100.0 * one_ms / decode_ms,
            one_ms / memcpy_ms,
            one_fps / bare_fps,
            100.0 * added_ms / decode_ms,
            100.0 * added_one_ms / decode_ms,
        ));
        // What bounds keyframes-only decoding: an IDR's decode against the other frames'.
        // A GOP of g frames costs one IDR and g - 1 others; keyframes-only decodes the IDR.
        let (idr_ms, other_ms) = (b.decode_idr.median_ms(), b.decode_other.median_ms());
        let ceiling = |gop: f64| ((gop - 1.0) * other_ms + idr_ms) / idr_ms;
        let kb = |bytes: u64, n: usize| bytes as f64 / 1000.0 / n.max(1) as f64;
        let (idr_kb, other_kb) = (
            kb(b.idr_bytes, b.decode_idr.0.len()),
            kb(b.other_bytes, b.decode_other.0.len()),
        );
        let ceiling_gop30 = ceiling(30.0);
        idr_rows.push(format!(
            "| {} | {idr_ms:.2} | {idr_kb:.0} | {other_ms:.2} | {other_kb:.1} | {:.1} | {:.1}× | {ceiling_gop30:.1}× |",
            clip_label(&meta),
            idr_ms / other_ms,
            ceiling(meta["gop"].as_f64().unwrap_or(30.0)),
        ));
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
            "frame_stats_ms": fs_ms, "detectors_ms": det_ms, "prev_copy_ms": copy_ms,
            "analyzer_ms": one_ms, "analyzer_fps": one_fps,
            "added_ms": added_ms, "analyzer_added_ms": added_one_ms,
            "keyframes_idr_per_s": idr_per_s, "keyframes_covered_fps": covered,
            "idr_decode_ms": idr_ms, "other_decode_ms": other_ms, "idr_kb": idr_kb,
            "other_kb": other_kb, "keyframes_ceiling_gop30": ceiling_gop30,
            "isa": format!("{:?}", active_isa()),
        }));
    }
    println!(
        "\n| clip | decode ms/frame | frame_stats ms | detectors ms | previous-luma copy ms | worker's three calls ms | Analyzer (one pass) ms | decode + Analyzer fps | added per picture, worker's calls | added, Analyzer | memcpy of the picture ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in parts {
        println!("{row}");
    }
    println!(
        "\nfps = frames / CPU seconds of the pass (best of the runs); per-picture times are medians; \"added\" = CPU per picture of the pass with statistics minus the pass without (includes the decoder data they evict from the caches). stats = frame_stats + detectors + the previous-luma copy per picture, timed in place; memcpy = one copy of the same picture's Y, U and V samples."
    );
    println!(
        "\n| clip | IDR decode ms | IDR KB | other frames ms | other KB | IDR ÷ other | keyframes-only ceiling at the clip's GOP | at GOP 30 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in idr_rows {
        println!("{row}");
    }
    println!(
        "\nEach `decode` call of the bare pass timed (medians). Keyframes-only decoding covers a GOP of g frames per IDR decoded, so it can reach at most ((g - 1) × other + IDR) ÷ IDR times the frames per second of full decoding: 15× at GOP 30 needs an IDR no dearer than ~2.1 other frames."
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&results)?)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

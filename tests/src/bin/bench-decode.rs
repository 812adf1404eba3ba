//! Decode benchmark on one core, per decoder backend and codec. For each clip (Annex B
//! `.h264` / `.h265` from `scripts/bench/make-clip.sh`, with its `.json` facts beside it),
//! side by side in one run:
//!
//! - `ffmpeg -threads 1` decoding the same file (what a user compares a decoder with), and
//!   `ffmpeg -threads 1 … -vf signalstats,blackdetect,freezedetect,scdet` (the tool a user
//!   would otherwise script to get the same statistics);
//! - for each backend built in that decodes the clip's codec (openh264: H.264; ffmpeg, i.e.
//!   libavcodec in process: H.264 and H.265), on the worker's decoder (`framewire-decode`,
//!   one frame thread): bare decode; decode plus every statistic the worker computes
//!   ([`Analyzer`], one pass per picture); keyframes only (each keyframe decoded and flushed
//!   on its own, as the worker's `keyframes` mode does), bare and with the statistics;
//! - each `decode` call of the bare pass timed, keyframes apart from the other frames: a
//!   keyframe's cost I against the other frames' P bounds what keyframes-only decoding can
//!   gain, ((g − 1)·P + I) / I at a GOP of g frames (the *ceiling*).
//!
//! Passes are timed in CPU time. Run it under `taskset -c N` (`scripts/bench/run.sh` does):
//! ffmpeg inherits the pin. Prints Markdown tables and writes the numbers as JSON
//! (`--json FILE`) for `scripts/bench/summary.py`.
//!
//! ```text
//! bench-decode --clip FILE.h264|FILE.h265... [--backend openh264|ffmpeg]... [--runs N] [--json OUT]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use framewire_decode::{Backend, Codec as DecodeCodec, Options, Picture as Decoded};
use framewire_framestats::{Analyzer, DetectorConfig, Picture, Plane, active_isa};
use framewire_wire::Codec;
use framewire_wire::stream::publishable_access_units;
use serde_json::{Value, json};

/// The statistics filters that compute what the worker computes, as ffmpeg spells them.
const FFMPEG_FILTERS: &str = "signalstats,blackdetect,freezedetect,scdet";

struct Args {
    clips: Vec<PathBuf>,
    backends: Vec<Backend>,
    runs: usize,
    json: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        clips: Vec::new(),
        backends: Vec::new(),
        runs: 3,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--clip" => a.clips.push(value()?.into()),
            "--backend" => {
                let v = value()?;
                let backend = Backend::ALL
                    .into_iter()
                    .find(|b| b.as_str() == v)
                    .with_context(|| format!("--backend {v}: not openh264 or ffmpeg"))?;
                a.backends.push(backend);
            }
            "--runs" => a.runs = value()?.parse().context("--runs")?,
            "--json" => a.json = Some(value()?.into()),
            other => bail!(
                "unknown argument {other}; usage: bench-decode --clip FILE... [--backend NAME]... [--runs N] [--json OUT]"
            ),
        }
    }
    if a.clips.is_empty() {
        bail!("give at least one --clip FILE.h264 or FILE.h265");
    }
    if a.backends.is_empty() {
        a.backends = Backend::ALL.into_iter().filter(|b| b.is_built()).collect();
    }
    if let Some(b) = a.backends.iter().find(|b| !b.is_built()) {
        bail!("--backend {b}: not built into this binary");
    }
    Ok(a)
}

/// Per-call samples of one kind of work.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
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

/// What the worker keeps per camera and computes per picture, and the timings of a pass.
struct Measurer {
    /// `None`: decode only.
    analyzer: Option<Analyzer>,
    copy: Vec<u8>,
    checksum: f64,
    pictures: u64,
    /// Each `decode` call, keyframes apart from the others.
    decode_key: Samples,
    decode_other: Samples,
    /// The statistics of each picture, and a memcpy of the same planes (timed apart, not
    /// counted in the pass).
    stats: Samples,
    memcpy: Samples,
}

impl Measurer {
    fn new(stats: bool) -> Self {
        Measurer {
            analyzer: stats.then(|| Analyzer::new(DetectorConfig::default())),
            copy: Vec::new(),
            checksum: 0.0,
            pictures: 0,
            decode_key: Samples::default(),
            decode_other: Samples::default(),
            stats: Samples::default(),
            memcpy: Samples::default(),
        }
    }

    /// The worker's measuring of a picture; then, timed apart, a memcpy of it.
    fn picture(&mut self, d: &Decoded<'_>) {
        self.pictures += 1;
        let Some(analyzer) = self.analyzer.as_mut() else {
            return;
        };
        let (cw, ch) = d.chroma_dimensions();
        let planes = (
            Plane::new(d.y, d.width, d.height, d.y_stride),
            Plane::new(d.u, cw, ch, d.u_stride),
            Plane::new(d.v, cw, ch, d.v_stride),
        );
        let (Ok(y), Ok(u), Ok(v)) = planes else {
            return;
        };
        let pic = Picture { y, u, v };
        let started = Instant::now();
        let (s, flags) = analyzer.measure(&pic);
        self.checksum += s.y_avg + flags.scene_score;
        let after_stats = Instant::now();
        self.stats.0.push(after_stats - started);
        // The unit of comparison: copying the picture's visible samples once.
        self.copy.clear();
        for p in [&pic.y, &pic.u, &pic.v] {
            p.rows().for_each(|r| self.copy.extend_from_slice(r));
        }
        std::hint::black_box(&self.copy);
        self.memcpy.0.push(after_stats.elapsed());
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Decode only.
    Bare,
    /// Decode and measure every picture as the worker does.
    Stats,
    /// Only keyframes, each flushed at once, not measured.
    KeyframesBare,
    /// Only keyframes, each flushed at once, measured (the worker's `keyframes` mode).
    Keyframes,
}

impl Mode {
    fn keyframes_only(self) -> bool {
        matches!(self, Mode::KeyframesBare | Mode::Keyframes)
    }

    fn measures(self) -> bool {
        matches!(self, Mode::Stats | Mode::Keyframes)
    }
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

/// A clip's access units as ingest publishes them (parameter sets first on keyframes).
struct Clip {
    codec: DecodeCodec,
    units: Vec<(Vec<u8>, bool)>,
    /// The options the worker opens its decoder with for this stream.
    options: Options,
}

impl Clip {
    fn keyframes(&self) -> u64 {
        self.units.iter().filter(|(_, key)| *key).count() as u64
    }

    /// Times a keyframes-only pass goes over the clip's keyframes: as many as frames per
    /// keyframe, so that it decodes about as long as a full pass (a few keyframes alone
    /// would take a few CPU-clock ticks of 10 ms).
    fn keyframe_rounds(&self) -> usize {
        (self.units.len() as u64 / self.keyframes().max(1)).max(1) as usize
    }
}

/// One pass over the clip (keyframes only: [`Clip::keyframe_rounds`] passes over its
/// keyframes): (CPU time excluding the memcpy probe, measurer).
fn pass(clip: &Clip, backend: Backend, mode: Mode) -> anyhow::Result<(Duration, Measurer)> {
    let mut dec = framewire_decode::open(backend, clip.codec, &clip.options)?;
    let mut m = Measurer::new(mode.measures());
    let rounds = if mode.keyframes_only() {
        clip.keyframe_rounds()
    } else {
        1
    };
    let started = cpu_time();
    for (au, key) in std::iter::repeat_n(&clip.units, rounds).flatten() {
        if mode.keyframes_only() && !key {
            continue;
        }
        let t = Instant::now();
        let mut stats = Duration::ZERO;
        dec.decode(au, &mut |p| {
            let s = Instant::now();
            m.picture(p);
            stats += s.elapsed();
        })?;
        let took = t.elapsed().saturating_sub(stats);
        if *key {
            m.decode_key.0.push(took);
        } else {
            m.decode_other.0.push(took);
        }
        if mode.keyframes_only() {
            dec.flush(&mut |p| m.picture(p))?;
        }
    }
    dec.flush(&mut |p| m.picture(p))?;
    std::hint::black_box(m.checksum);
    let used = cpu_time().saturating_sub(started);
    Ok((used.saturating_sub(m.memcpy.total()), m))
}

/// Best (shortest) of `runs` passes.
fn best(
    clip: &Clip,
    backend: Backend,
    mode: Mode,
    runs: usize,
) -> anyhow::Result<(Duration, Measurer)> {
    let mut best: Option<(Duration, Measurer)> = None;
    for _ in 0..runs {
        let r = pass(clip, backend, mode)?;
        if best.as_ref().is_none_or(|b| r.0 < b.0) {
            best = Some(r);
        }
    }
    best.context("no run")
}

/// `ffmpeg -threads 1` on the file to nowhere, with `filters` (if any): the best CPU time
/// (`-benchmark`'s utime + stime) of `runs`.
fn ffmpeg(
    clip: &Path,
    codec: Codec,
    filters: Option<&str>,
    runs: usize,
) -> anyhow::Result<Duration> {
    let format = match codec {
        Codec::H264 => "h264",
        Codec::H265 => "hevc",
    };
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-nostdin", "-benchmark", "-threads", "1"])
            .args(["-f", format, "-i"])
            .arg(clip);
        if let Some(f) = filters {
            cmd.args(["-vf", f]);
        }
        let out = cmd
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
    frames as f64 / d.as_secs_f64().max(1e-9)
}

fn clip_label(meta: &Value, codec: Codec) -> String {
    format!(
        "{}x{} {} {} GOP {} {:.1} Mbps",
        meta["width"],
        meta["height"],
        match codec {
            Codec::H264 => "H.264",
            Codec::H265 => "H.265",
        },
        meta["profile"].as_str().unwrap_or("?"),
        meta["gop"],
        meta["bitrate_kbps"].as_f64().unwrap_or(0.0) / 1000.0
    )
}

fn load(path: &Path) -> anyhow::Result<(Value, Codec, Clip)> {
    let meta_path = path.with_extension("json");
    let meta: Value = serde_json::from_slice(
        &std::fs::read(&meta_path)
            .with_context(|| format!("failed to read {}", meta_path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", meta_path.display()))?;
    let stream =
        std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    let codec = Codec::sniff(&stream)
        .with_context(|| format!("{}: neither H.264 nor H.265", path.display()))?;
    let units: Vec<(Vec<u8>, bool)> = publishable_access_units(&stream, codec)
        .with_context(|| format!("{}", path.display()))?
        .into_iter()
        .map(|au| (au.data, au.keyframe))
        .collect();
    let first = units.first().map(|(au, _)| au.as_slice()).unwrap_or(&[]);
    // As the worker opens it: one frame thread; pictures handed out at once when the
    // stream's SPS says it cannot reorder (H.264).
    let options = Options {
        low_delay: codec == Codec::H264
            && framewire_wire::annexb::may_reorder(first) == Some(false),
        ..Options::default()
    };
    let decode_codec = DecodeCodec::from_header(codec.name()).context("codec")?;
    Ok((
        meta,
        codec,
        Clip {
            codec: decode_codec,
            units,
            options,
        },
    ))
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let mut results = Vec::new();
    let (mut speed, mut cost, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    for path in &args.clips {
        let (meta, codec, clip) = load(path)?;
        let label = clip_label(&meta, codec);
        let frames = clip.units.len() as u64;
        let keyframes = clip.keyframes();
        // Keyframes-only passes go over the keyframes this many times.
        let rounds = clip.keyframe_rounds() as u64;
        let gop = meta["gop"].as_f64().unwrap_or(30.0);
        let ff = fps(frames, ffmpeg(path, codec, None, args.runs)?);
        let ff_filters = fps(
            frames,
            ffmpeg(path, codec, Some(FFMPEG_FILTERS), args.runs)?,
        );
        let mut per_backend = Vec::new();
        for &backend in &args.backends {
            if !backend.decodes(clip.codec) {
                continue;
            }
            let (bare, b) = best(&clip, backend, Mode::Bare, args.runs)?;
            let (stats, s) = best(&clip, backend, Mode::Stats, args.runs)?;
            let (key_bare, kb) = best(&clip, backend, Mode::KeyframesBare, args.runs)?;
            let (key, k) = best(&clip, backend, Mode::Keyframes, args.runs)?;
            if b.pictures != frames
                || s.pictures != frames
                || kb.pictures != keyframes * rounds
                || k.pictures != keyframes * rounds
            {
                bail!(
                    "{} on {backend}: {frames} access units ({keyframes} keyframes) but {} / {} / {} / {} pictures",
                    path.display(),
                    b.pictures,
                    s.pictures,
                    kb.pictures,
                    k.pictures
                );
            }
            let (bare_fps, stats_fps) = (fps(frames, bare), fps(frames, stats));
            // Keyframes only: every keyframe stands for its GOP.
            let covered_frames = frames * rounds;
            let (covered_bare, covered) = (fps(covered_frames, key_bare), fps(covered_frames, key));
            let decode_ms = bare.as_secs_f64() * 1e3 / frames as f64;
            let (stats_ms, memcpy_ms) = (s.stats.median_ms(), s.memcpy.median_ms());
            let added_ms = (stats.as_secs_f64() - bare.as_secs_f64()) * 1e3 / frames as f64;
            let (key_ms, other_ms) = (b.decode_key.median_ms(), b.decode_other.median_ms());
            let ceiling = ((gop - 1.0) * other_ms + key_ms) / key_ms.max(1e-9);
            let key_ratio = covered_bare / bare_fps;
            speed.push(format!(
                "| {label} | {backend} | {ff:.0} | {ff_filters:.0} | {bare_fps:.0} ({:.2}×) | {stats_fps:.0} ({:.2}× ffmpeg, {:.2}× ffmpeg + filters) |",
                bare_fps / ff,
                stats_fps / ff,
                stats_fps / ff_filters,
            ));
            cost.push(format!(
                "| {label} | {backend} | {decode_ms:.3} | {stats_ms:.3} ({:.1} %) | {:.1}× | {added_ms:.3} ({:.1} %) | {memcpy_ms:.3} |",
                100.0 * stats_ms / decode_ms,
                stats_ms / memcpy_ms.max(1e-9),
                100.0 * added_ms / decode_ms,
            ));
            keys.push(format!(
                "| {label} | {backend} | {key_ms:.2} | {other_ms:.2} | {ceiling:.1}× | {covered_bare:.0} ({key_ratio:.1}×, {:.2} of the ceiling) | {covered:.0} ({:.1}× decode + statistics) |",
                key_ratio / ceiling,
                covered / stats_fps,
            ));
            per_backend.push(json!({
                "backend": backend.as_str(),
                "bare_fps": bare_fps, "stats_fps": stats_fps, "decode_ms": decode_ms,
                "stats_ms": stats_ms, "memcpy_ms": memcpy_ms, "added_ms": added_ms,
                "keyframe_decode_ms": key_ms, "other_decode_ms": other_ms,
                "keyframes_ceiling": ceiling,
                "keyframes_covered_fps": covered_bare, "keyframes_stats_covered_fps": covered,
                "keyframes_per_s": fps(keyframes * rounds, key),
            }));
        }
        // The decode cost per picture other reports use (kernels, detection): openh264's
        // for H.264 (the default build), else the first backend's.
        let reference = per_backend
            .iter()
            .find(|b| b["backend"] == "openh264")
            .or(per_backend.first())
            .map_or(Value::Null, |b| b["decode_ms"].clone());
        results.push(json!({
            "clip": path, "label": label, "codec": codec.name(),
            "width": meta["width"], "height": meta["height"], "profile": meta["profile"],
            "gop": meta["gop"], "bitrate_kbps": meta["bitrate_kbps"],
            "frames": frames, "keyframes": keyframes,
            "ffmpeg_fps": ff, "ffmpeg_filters_fps": ff_filters, "ffmpeg_filters": FFMPEG_FILTERS,
            "decode_ms": reference,
            "backends": per_backend,
            "isa": format!("{:?}", active_isa()),
        }));
    }
    println!(
        "\n## Decode on one core, per backend (frames per CPU-second, best of {} runs; statistics kernels: {:?})\n",
        args.runs,
        active_isa()
    );
    println!(
        "| clip | backend | ffmpeg -threads 1 | ffmpeg -threads 1 -vf {FFMPEG_FILTERS} | bare decode (× ffmpeg) | decode + statistics (the worker's Analyzer) |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    speed.iter().for_each(|r| println!("{r}"));
    println!(
        "\n| clip | backend | decode ms/frame | statistics ms/frame (% of decode) | statistics ÷ memcpy of the picture | added to the pass (% of decode) | memcpy ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    cost.iter().for_each(|r| println!("{r}"));
    println!(
        "\n| clip | backend | keyframe decode ms (I) | other frames ms (P) | ceiling ((g − 1)·P + I) ÷ I | keyframes only, bare: frames covered/s (× full decode, share of the ceiling) | keyframes only + statistics: covered/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    keys.iter().for_each(|r| println!("{r}"));
    println!(
        "\nfps = frames / CPU seconds of the pass; per-call times are medians of each `decode` call of the bare pass; \"added\" = CPU per picture of the pass with statistics minus the pass without (includes the decoder data they evict from the caches)."
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&results)?)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

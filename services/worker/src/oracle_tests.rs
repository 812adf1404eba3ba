//! Oracle test: the worker's decode path (decoder + framestats) against ffmpeg's
//! `signalstats`, `blackdetect`, `freezedetect` and `scdet` on the same clips, frame by
//! frame, for every decoder backend built in and every codec it decodes: openh264 with
//! H.264; libavcodec (feature `ffmpeg`) with H.264 and H.265. Needs `ffmpeg` with libx264
//! and libx265 (Debian), which `scripts/install-prereqs.sh` installs.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use framewire_decode::{Backend, Codec};
use framewire_wire::{FrameMeta, StatsRecord, annexb};
use tokio::sync::mpsc;

use crate::config::DecodeMode;
use crate::decode::{DecodePool, Job, Outcome, PoolConfig};
use crate::metrics::Metrics;
use crate::poison::Reason;

/// A decoder backend and a codec it decodes: what one run of an oracle case covers.
#[derive(Debug, Clone, Copy)]
struct Case {
    backend: Backend,
    codec: Codec,
}

impl Case {
    /// Every backend built into this test binary with every codec it decodes.
    fn all() -> Vec<Case> {
        let mut cases = Vec::new();
        for backend in Backend::ALL.into_iter().filter(|b| b.is_built()) {
            for codec in Codec::ALL.into_iter().filter(|&c| backend.decodes(c)) {
                cases.push(Case { backend, codec });
            }
        }
        cases
    }

    fn name(&self, clip: &str) -> String {
        format!("{}/{}/{clip}", self.backend, self.codec)
    }
}

/// Encodes a lavfi source (no B-frames, GOP 25, an AUD before every access unit).
fn make_clip(dir: &Path, name: &str, lavfi: &str, codec: Codec) -> std::path::PathBuf {
    make_clip_with(dir, name, lavfi, 0, codec)
}

/// Encodes a lavfi source with x264 or x265 and `bframes` B-frames between references:
/// closed GOPs of 25 that start with an IDR, an AUD before every access unit.
fn make_clip_with(
    dir: &Path,
    name: &str,
    lavfi: &str,
    bframes: u32,
    codec: Codec,
) -> std::path::PathBuf {
    let out = dir.join(format!("{name}.{codec}"));
    let bf = bframes.to_string();
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg.args(["-v", "error", "-y", "-f", "lavfi", "-i", lavfi]);
    match codec {
        Codec::H264 => ffmpeg
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-bf", &bf, "-g", "25",
            ])
            .args(["-pix_fmt", "yuv420p", "-x264-params", "aud=1", "-f", "h264"]),
        Codec::H265 => ffmpeg
            .args([
                "-c:v", "libx265", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            ])
            .arg("-x265-params")
            .arg(format!(
                "log-level=error:aud=1:bframes={bf}:keyint=25:min-keyint=25:open-gop=0"
            ))
            .args(["-f", "hevc"]),
    };
    let status = ffmpeg
        .arg(&out)
        .status()
        .expect("ffmpeg runs (scripts/install-prereqs.sh installs it)");
    assert!(status.success(), "ffmpeg could not make {name}");
    out
}

/// ffmpeg's signalstats per frame, as key → value maps.
fn oracle(clip: &Path) -> Vec<HashMap<String, f64>> {
    let meta = clip.with_extension("signalstats.txt");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(clip)
        .arg("-vf")
        .arg(format!(
            "signalstats,metadata=mode=print:file={}",
            meta.display()
        ))
        .args(["-f", "null", "-"])
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let text = std::fs::read_to_string(&meta).expect("signalstats output");
    let mut frames: Vec<HashMap<String, f64>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("frame:") {
            frames.push(HashMap::new());
        } else if let (Some(f), Some((k, v))) = (
            frames.last_mut(),
            line.strip_prefix("lavfi.signalstats.")
                .and_then(|l| l.split_once('=')),
        ) && let Ok(v) = v.parse()
        {
            f.insert(k.to_owned(), v);
        }
    }
    frames
}

/// Display position of every access unit (decode order in, display index out), from
/// the byte position ffprobe reports for each frame it outputs in display order.
fn display_order(clip: &Path, starts: &[usize]) -> Vec<i64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "frame=pkt_pos",
            "-of",
            "csv=p=0",
        ])
        .arg(clip)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success());
    let mut order = vec![-1; starts.len()];
    let text = String::from_utf8_lossy(&out.stdout);
    // One line per frame; side-data sections add empty lines and trailing commas.
    let positions = text
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .filter(|l| !l.is_empty());
    for (display, pos) in positions.enumerate() {
        let pos: usize = pos.parse().expect("pkt_pos");
        let au = starts.partition_point(|&s| s <= pos) - 1;
        order[au] = display as i64;
    }
    assert!(order.iter().all(|&d| d >= 0), "every access unit is shown");
    order
}

/// Splits an Annex B stream of `codec` into access units: (byte offset, bytes) of each.
fn access_units(stream: &[u8], codec: Codec) -> Vec<(usize, Vec<u8>)> {
    let split = match codec {
        Codec::H264 => annexb::split_at_delimiters(stream),
        Codec::H265 => annexb::h265::split_at_delimiters(stream),
    };
    split
        .into_iter()
        .map(|(at, au)| (at, au.to_vec()))
        .collect()
}

/// Whether an access unit of `codec` is a keyframe (what ingest puts in `fw-keyframe`).
fn is_keyframe(au: &[u8], codec: Codec) -> bool {
    match codec {
        Codec::H264 => annexb::is_idr(au),
        Codec::H265 => annexb::h265::is_irap(au),
    }
}

/// Decodes a clip through the worker's pool: the stats of every picture, in display order.
async fn worker_path(clip: &Path, case: Case) -> Vec<StatsRecord> {
    worker_path_in(clip, DecodeMode::All, case, 1).await
}

/// A one-thread pool on `backend` whose outcomes go to the returned receiver.
fn pool(
    backend: Backend,
    mode: DecodeMode,
    outcomes: usize,
) -> (DecodePool, mpsc::Receiver<Outcome>, Metrics) {
    pool_with(backend, mode, outcomes, 1)
}

/// [`pool`] with `ffmpeg_threads` frame threads per libavcodec decoder.
fn pool_with(
    backend: Backend,
    mode: DecodeMode,
    outcomes: usize,
    ffmpeg_threads: usize,
) -> (DecodePool, mpsc::Receiver<Outcome>, Metrics) {
    let (tx, rx) = mpsc::channel(outcomes + 8);
    let metrics = Metrics::new(&prometheus::Registry::new());
    let config = PoolConfig {
        threads: 1,
        queue: 64,
        idle_flush: Duration::from_millis(100),
        evict_after: Duration::from_secs(60),
        detectors: Default::default(),
        mode,
        watchers: Default::default(),
        detect: None,
        backend,
        ffmpeg_threads,
        hwaccel: framewire_decode::HwAccel::None,
        hwaccel_device: None,
    };
    let pool = DecodePool::start(config, tx, metrics.clone()).expect("pool");
    (pool, rx, metrics)
}

/// The job of access unit `seq` of the oracle camera.
fn job(seq: usize, au: &[u8], keyframe: bool, pts_90k: i64, codec: Codec) -> Job {
    Job::live(
        FrameMeta {
            camera: "oracle".into(),
            session: "s".into(),
            seq: seq as u64,
            pts_90k,
            capture_ms: 0,
            keyframe,
            codec: codec.as_str().into(),
            dimensions: None,
        },
        au.to_vec(),
        seq as i64,
    )
}

/// Decodes a clip through the worker's pool in `mode`, fed as the pipeline feeds it
/// (keyframes mode: keyframes only). Access units carry their display position as
/// `fw-pts-90k`, as RTP timestamps do.
async fn worker_path_in(
    clip: &Path,
    mode: DecodeMode,
    case: Case,
    ffmpeg_threads: usize,
) -> Vec<StatsRecord> {
    let aus = access_units(&std::fs::read(clip).expect("clip"), case.codec);
    assert!(!aus.is_empty(), "{clip:?} has access unit delimiters");
    let starts: Vec<usize> = aus.iter().map(|(start, _)| *start).collect();
    let display = display_order(clip, &starts);
    let (pool, mut rx, _) = pool_with(case.backend, mode, aus.len(), ffmpeg_threads);
    let mut expected = 0;
    for (seq, (_, au)) in aus.iter().enumerate() {
        let keyframe = is_keyframe(au, case.codec);
        if mode == DecodeMode::Keyframes && !keyframe {
            continue;
        }
        expected += 1;
        let job = job(seq, au, keyframe, display[seq] * 3600, case.codec);
        assert!(pool.submit(job).await.is_ok());
    }
    let mut out = Vec::new();
    while out.len() < expected {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Outcome::Stats { record, .. })) => out.push(*record),
            Ok(Some(Outcome::Done { offset, .. } | Outcome::Poison { offset, .. })) => {
                panic!("{case:?}: access unit {offset} gave no picture")
            }
            _ => panic!(
                "the pool stopped after {} of {} pictures",
                out.len(),
                aus.len()
            ),
        }
    }
    pool.finish();
    out.sort_by_key(|r| r.pts_90k);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn statistics_agree_with_ffmpeg_signalstats() {
    let dir = tempfile::tempdir().expect("tmp");
    let clips = [
        ("moving", "testsrc2=size=640x360:rate=25:duration=2"),
        ("black", "color=c=black:size=640x360:rate=25:duration=1"),
        (
            "freeze",
            "testsrc2=size=640x360:rate=25:duration=1,tpad=stop_mode=clone:stop_duration=1",
        ),
        (
            "cuts",
            "testsrc2=size=640x360:rate=25:duration=3,hue=h=t*200:enable='gte(t,1)',negate=enable='gte(t,2)'",
        ),
        ("odd-size", "testsrc2=size=630x354:rate=25:duration=1"),
    ];
    for case in Case::all() {
        for (name, lavfi) in clips {
            let clip = make_clip(dir.path(), name, lavfi, case.codec);
            let expected = oracle(&clip);
            let ours = worker_path(&clip, case).await;
            compare(
                &case.name(name),
                &ours,
                &expected.iter().collect::<Vec<_>>(),
                true,
            );
        }
    }
}

/// Compares our records with ffmpeg's signalstats frame by frame, within the issue's
/// tolerances; prints the largest difference per statistic.
fn compare(name: &str, ours: &[StatsRecord], expected: &[&HashMap<String, f64>], ydif: bool) {
    assert_eq!(ours.len(), expected.len(), "{name}: pictures decoded");
    let mut worst: HashMap<&str, f64> = HashMap::new();
    for (i, (s, e)) in ours.iter().zip(expected).enumerate() {
        let mut pairs = vec![
            ("YAVG", s.y_avg, 0.5),
            ("YMIN", f64::from(s.y_min), 1.0),
            ("YMAX", f64::from(s.y_max), 1.0),
            ("YLOW", f64::from(s.y_low), 1.0),
            ("YHIGH", f64::from(s.y_high), 1.0),
            ("UAVG", s.u_avg, 0.5),
            ("VAVG", s.v_avg, 0.5),
            ("SATAVG", s.sat_avg, 1.0),
        ];
        if ydif {
            pairs.push(("YDIF", s.y_dif, 0.5));
        }
        for (key, ours, tolerance) in pairs {
            let theirs = e[key];
            let d = (ours - theirs).abs();
            let w = worst.entry(key).or_insert(0.0);
            *w = w.max(d);
            assert!(
                d <= tolerance,
                "{name} frame {i}: {key} ours {ours} ffmpeg {theirs}"
            );
        }
    }
    let mut w: Vec<_> = worst.into_iter().collect();
    w.sort_by(|a, b| a.0.cmp(b.0));
    println!("{name}: {} frames, largest differences {w:?}", ours.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn b_frames_are_paired_with_their_access_units_in_display_order() {
    let dir = tempfile::tempdir().expect("tmp");
    // Luma steps by 8 every frame: a picture paired with the wrong access unit is 8+ off.
    let lavfi = "color=c=black:s=320x240:r=25:d=2,geq=lum='mod(N*8+X/8,256)':cb=128:cr=128";
    for case in Case::all() {
        let clip = make_clip_with(dir.path(), "bframes", lavfi, 2, case.codec);
        let expected = oracle(&clip);
        let ours = worker_path(&clip, case).await;
        for (i, r) in ours.iter().enumerate() {
            assert_eq!(r.pts_90k, i as i64 * 3600, "{case:?}: display order");
        }
        let reordered = ours
            .iter()
            .enumerate()
            .filter(|(i, r)| r.seq != *i as u64)
            .count();
        assert!(
            reordered > 10,
            "{case:?}: the clip has B-frames ({reordered} reordered)"
        );
        compare(
            &case.name("bframes"),
            &ours,
            &expected.iter().collect::<Vec<_>>(),
            true,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keyframes_mode_measures_each_idr_like_ffmpeg() {
    let dir = tempfile::tempdir().expect("tmp");
    for case in Case::all() {
        let lavfi = "testsrc2=size=640x360:rate=25:duration=4";
        let clip = make_clip(dir.path(), "gops", lavfi, case.codec);
        let expected = oracle(&clip);
        let ours = worker_path_in(&clip, DecodeMode::Keyframes, case, 1).await;
        // GOP 25 over 100 frames: frames 0, 25, 50, 75 (YDIF there is against the previous
        // keyframe, not the previous frame, so it is not compared).
        let shown: Vec<usize> = ours.iter().map(|r| (r.pts_90k / 3600) as usize).collect();
        assert_eq!(shown, [0, 25, 50, 75], "{case:?}");
        let theirs: Vec<_> = shown.iter().map(|&i| &expected[i]).collect();
        compare(&case.name("keyframes"), &ours, &theirs, false);
    }
}

/// Every `key=value` of `metadata=print` per frame, for all keys.
fn frame_metadata(clip: &Path, filters: &str) -> Vec<HashMap<String, String>> {
    let meta = clip.with_extension("detectors.txt");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(clip)
        .arg("-vf")
        .arg(format!(
            "{filters},metadata=mode=print:file={}",
            meta.display()
        ))
        .args(["-f", "null", "-"])
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let mut frames: Vec<HashMap<String, String>> = Vec::new();
    for line in std::fs::read_to_string(&meta).expect("metadata").lines() {
        if line.starts_with("frame:") {
            frames.push(HashMap::new());
        } else if let (Some(f), Some((k, v))) = (frames.last_mut(), line.split_once('=')) {
            f.insert(k.to_owned(), v.to_owned());
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread")]
async fn detectors_agree_with_ffmpeg_blackdetect_freezedetect_scdet() {
    for case in Case::all() {
        detectors_agree(case).await;
    }
}

/// The detectors of the worker path on `case` against ffmpeg's on the same clip.
async fn detectors_agree(case: Case) {
    let dir = tempfile::tempdir().expect("tmp");
    // 1 s black, 1 s moving, 1 s moving then 3 s frozen, 1 s colour bars (a hard cut).
    let graph = "color=c=black:s=320x240:r=25:d=1[a];testsrc2=s=320x240:r=25:d=1[b];\
                 testsrc2=s=320x240:r=25:d=1,tpad=stop_mode=clone:stop_duration=3[c];\
                 smptebars=s=320x240:r=25:d=1[d];[a][b][c][d]concat=n=4[out0]";
    let clip = make_clip(dir.path(), "detectors", graph, case.codec);
    let ours = worker_path(&clip, case).await;
    let theirs = frame_metadata(&clip, "blackdetect=d=0,freezedetect,scdet");
    assert_eq!(ours.len(), theirs.len());
    let fps = 25.0;

    // blackdetect (d=0): black from a black_start frame until the next black_end frame.
    let mut black = false;
    let mut black_frames = 0;
    for (i, (s, m)) in ours.iter().zip(&theirs).enumerate() {
        if m.contains_key("lavfi.black_start") {
            black = true;
        }
        if m.contains_key("lavfi.black_end") {
            black = false;
        }
        assert_eq!(s.black, black, "frame {i}: black");
        black_frames += usize::from(black);
    }

    // scdet: the same score (printed with 3 decimals) and the same decision.
    let mut cuts = Vec::new();
    for (i, (s, m)) in ours.iter().zip(&theirs).enumerate() {
        let score: f64 = m["lavfi.scd.score"].parse().expect("scd score");
        assert!(
            (s.scene_score - score).abs() <= 0.0015,
            "frame {i}: scene score ours {} ffmpeg {score}",
            s.scene_score
        );
        if (score - 10.0).abs() > 0.01 {
            assert_eq!(
                s.scene_cut,
                m.contains_key("lavfi.scd.time"),
                "frame {i}: scene cut"
            );
        }
        if s.scene_cut {
            cuts.push(i);
        }
    }

    // freezedetect (d = 2 s): frames after freeze_start's reference frame up to freeze_end are frozen.
    let start = theirs
        .iter()
        .find_map(|m| m.get("lavfi.freezedetect.freeze_start"))
        .expect("ffmpeg saw the freeze");
    let start_frame = (start.parse::<f64>().expect("time") * fps).round() as usize;
    let end_frame = theirs
        .iter()
        .position(|m| m.contains_key("lavfi.freezedetect.freeze_end"))
        .unwrap_or(ours.len());
    // Per frame, static stretches shorter than d (the black second, the bars) are frozen
    // too; ffmpeg reports only runs of at least d = 2 s = 50 frames after the reference.
    let mut runs: Vec<Vec<usize>> = Vec::new();
    for (i, s) in ours.iter().enumerate() {
        if s.frozen {
            match runs.last_mut() {
                Some(r) if r.last() == Some(&(i - 1)) => r.push(i),
                _ => runs.push(vec![i]),
            }
        }
    }
    let frozen: Vec<usize> = runs
        .into_iter()
        .filter(|r| r.len() >= 50)
        .flatten()
        .collect();
    let expected: Vec<usize> = (start_frame + 1..end_frame).collect();
    println!(
        "{}: {black_frames} black frames, cuts at {cuts:?}, frozen {}..={} ({} frames; ffmpeg: {start_frame}+1..{end_frame})",
        case.name("detectors"),
        frozen.first().unwrap_or(&0),
        frozen.last().unwrap_or(&0),
        frozen.len()
    );
    assert_eq!(frozen, expected, "frozen frames");
    assert_eq!(black_frames, 25, "the first second is black");
    assert!(!cuts.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_codec_the_backend_cannot_decode_goes_to_the_dlq_and_the_camera_goes_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let lavfi = "testsrc2=size=320x240:rate=25:duration=1";
    let h265 = access_units(
        &std::fs::read(make_clip(dir.path(), "h265", lavfi, Codec::H265)).expect("clip"),
        Codec::H265,
    );
    let h264 = access_units(
        &std::fs::read(make_clip(dir.path(), "h264", lavfi, Codec::H264)).expect("clip"),
        Codec::H264,
    );
    for backend in Backend::ALL.into_iter().filter(|b| b.is_built()) {
        let (pool, mut rx, metrics) = pool(backend, DecodeMode::All, 64);
        // Two H.265 frames, an unknown codec, then H.264 from its keyframe on the same
        // camera: refused frames are dead letters and never hold the camera back.
        let mut sent = Vec::new();
        for (seq, (_, au)) in h265.iter().take(2).enumerate() {
            sent.push(job(seq, au, seq == 0, seq as i64 * 3600, Codec::H265));
        }
        let mut vp8 = job(2, &h264[1].1, false, 2 * 3600, Codec::H264);
        vp8.meta.codec = "vp8".into();
        sent.push(vp8);
        for (i, (_, au)) in h264.iter().take(3).enumerate() {
            let seq = 3 + i;
            sent.push(job(seq, au, i == 0, seq as i64 * 3600, Codec::H264));
        }
        for j in sent {
            assert!(pool.submit(j).await.is_ok());
        }
        let mut outcomes = Vec::new();
        while outcomes.len() < 6 {
            let o = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("an outcome within 10 s")
                .expect("pool alive");
            outcomes.push(match o {
                Outcome::Stats { offset, .. } => (offset, "stats"),
                Outcome::Poison { offset, reason, .. } => (offset, reason.as_str()),
                Outcome::Done { offset, .. } => (offset, "done"),
            });
        }
        outcomes.sort();
        let h265_outcome = if backend.decodes(Codec::H265) {
            "stats"
        } else {
            Reason::UnsupportedCodec.as_str()
        };
        assert_eq!(
            outcomes,
            [
                (0, h265_outcome),
                (1, h265_outcome),
                (2, "codec"),
                (3, "stats"),
                (4, "stats"),
                (5, "stats")
            ],
            "{backend}"
        );
        let refused = metrics
            .decode_errors
            .with_label_values(&["oracle", Reason::UnsupportedCodec.as_str()])
            .get();
        assert_eq!(refused, u64::from(!backend.decodes(Codec::H265)) * 2);
        pool.finish();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h265_camera_starting_at_a_cra_keyframe_skips_its_rasl_pictures_only() {
    if !Backend::Ffmpeg.is_built() {
        return; // H.265 needs the ffmpeg backend (the test of unsupported codecs covers openh264)
    }
    let dir = tempfile::tempdir().expect("tmp");
    // x265's default open GOPs: CRA keyframes every 27 frames, which leaves the last
    // B-frames before each keyframe to be coded after it, as RASL pictures.
    let clip = dir.path().join("open-gop.h265");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("color=c=black:s=320x240:r=25:d=3,geq=lum='mod(N*8+X/8,256)':cb=128:cr=128")
        .args([
            "-c:v", "libx265", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .args([
            "-x265-params",
            "log-level=error:aud=1:bframes=3:keyint=27:min-keyint=27:scenecut=0:open-gop=1",
        ])
        .args(["-f", "hevc"])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let expected = oracle(&clip);
    let aus = access_units(&std::fs::read(&clip).expect("clip"), Codec::H265);
    let starts: Vec<usize> = aus.iter().map(|(start, _)| *start).collect();
    let display = display_order(&clip, &starts);
    // The camera (re)starts at the second keyframe: a CRA.
    let first = aus
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, (_, au))| is_keyframe(au, Codec::H265))
        .map(|(i, _)| i)
        .expect("a second keyframe");
    assert_eq!(
        annexb::h265::irap_kind(&aus[first].1),
        Some(annexb::h265::IrapKind::Cra),
        "x265 writes open GOPs"
    );
    let (pool, mut rx, _) = pool(Backend::Ffmpeg, DecodeMode::All, aus.len());
    let mut rasl = Vec::new();
    for (seq, (_, au)) in aus.iter().enumerate().skip(first) {
        let keyframe = is_keyframe(au, Codec::H265);
        if annexb::h265::is_rasl(au) && !keyframe {
            rasl.push(seq as i64);
        }
        let job = job(seq, au, keyframe, display[seq] * 3600, Codec::H265);
        assert!(pool.submit(job).await.is_ok());
    }
    let (mut stats, mut missing) = (Vec::new(), Vec::new());
    while stats.len() + missing.len() < aus.len() - first {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Outcome::Stats { record, .. })) => stats.push(*record),
            Ok(Some(Outcome::Poison {
                offset,
                reason: Reason::MissingReference,
                ..
            })) => missing.push(offset),
            _ => panic!("every access unit ends as statistics or missing_reference"),
        }
    }
    pool.finish();
    missing.sort_unstable();
    // The starting CRA's RASL pictures come before the next keyframe in decode order; those
    // of later CRAs decode (their references were decoded).
    let next_keyframe = (first + 1..aus.len())
        .find(|&i| is_keyframe(&aus[i].1, Codec::H265))
        .unwrap_or(aus.len()) as i64;
    let leading: Vec<i64> = rasl
        .iter()
        .copied()
        .filter(|&seq| seq < next_keyframe)
        .collect();
    assert!(!leading.is_empty(), "the CRA has RASL pictures");
    assert!(
        rasl.len() > leading.len(),
        "later CRAs have RASL pictures too"
    );
    assert_eq!(
        missing, leading,
        "only the RASL pictures of the starting CRA"
    );
    stats.sort_by_key(|r| r.pts_90k);
    let theirs: Vec<_> = stats
        .iter()
        .map(|r| &expected[(r.pts_90k / 3600) as usize])
        .collect();
    // YDIF compares with the previous picture measured, which skips the RASL pictures.
    compare("ffmpeg/h265/open-gop", &stats, &theirs, false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_does_not_cost_a_camera_with_b_frames_its_gop() {
    let dir = tempfile::tempdir().expect("tmp");
    let lavfi = "testsrc2=size=320x240:rate=25:duration=1";
    let clip = make_clip_with(dir.path(), "paused", lavfi, 2, Codec::H264);
    let aus = access_units(&std::fs::read(&clip).expect("clip"), Codec::H264);
    let starts: Vec<usize> = aus.iter().map(|(start, _)| *start).collect();
    let display = display_order(&clip, &starts);
    for backend in Backend::ALL.into_iter().filter(|b| b.is_built()) {
        // idle_flush is 100 ms: the camera pauses for 5 of them mid-GOP.
        let (pool, mut rx, _) = pool(backend, DecodeMode::All, aus.len());
        let send = |range: std::ops::Range<usize>| {
            range.map(|seq| {
                let au = &aus[seq].1;
                job(
                    seq,
                    au,
                    annexb::is_idr(au),
                    display[seq] * 3600,
                    Codec::H264,
                )
            })
        };
        for j in send(0..10) {
            assert!(pool.submit(j).await.is_ok());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for j in send(10..aus.len()) {
            assert!(pool.submit(j).await.is_ok());
        }
        let mut stats = 0;
        while stats < aus.len() {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(Outcome::Stats { .. })) => stats += 1,
                Ok(Some(Outcome::Poison { offset, reason, .. })) => {
                    panic!("{backend}: access unit {offset} went to the DLQ: {reason:?}")
                }
                _ => panic!("{backend}: {stats} of {} pictures", aus.len()),
            }
        }
        pool.finish();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn frame_threads_give_the_same_statistics() {
    let dir = tempfile::tempdir().expect("tmp");
    let lavfi = "testsrc2=size=640x360:rate=25:duration=2";
    for case in Case::all()
        .into_iter()
        .filter(|c| c.backend == Backend::Ffmpeg)
    {
        for bframes in [0, 2] {
            let name = format!("threads-bf{bframes}");
            let clip = make_clip_with(dir.path(), &name, lavfi, bframes, case.codec);
            let expected = oracle(&clip);
            let ours = worker_path_in(&clip, DecodeMode::All, case, 3).await;
            compare(
                &format!("{}, 3 frame threads", case.name(&name)),
                &ours,
                &expected.iter().collect::<Vec<_>>(),
                true,
            );
        }
    }
}

//! Oracle test: the worker's decode path (openh264 + framestats) against ffmpeg's
//! `signalstats` on the same clips, frame by frame. Needs `ffmpeg` (Debian), which
//! `scripts/install-prereqs.sh` installs.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use framewire_wire::{FrameMeta, StatsRecord, annexb};
use tokio::sync::mpsc;

use crate::decode::{DecodePool, Job, Outcome, PoolConfig};
use crate::metrics::Metrics;

/// Encodes a lavfi source with x264 (no B-frames, an AUD before every access unit).
fn make_clip(dir: &Path, name: &str, lavfi: &str) -> std::path::PathBuf {
    let out = dir.join(format!("{name}.h264"));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", lavfi])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-g", "25", "-pix_fmt", "yuv420p",
        ])
        .args(["-x264-params", "aud=1", "-f", "h264"])
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

/// Splits an Annex B stream into access units at its access unit delimiters.
fn access_units(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut units = Vec::new();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 4 < stream.len() {
        if stream[i..i + 3] == [0, 0, 1] && stream[i + 3] & 0x1f == annexb::nal::AUD {
            starts.push(if i > 0 && stream[i - 1] == 0 {
                i - 1
            } else {
                i
            });
            i += 3;
        }
        i += 1;
    }
    starts.push(stream.len());
    for w in starts.windows(2) {
        units.push(stream[w[0]..w[1]].to_vec());
    }
    units
}

/// Decodes a clip through the worker's pool: the stats of every picture, in order.
async fn worker_path(clip: &Path) -> Vec<StatsRecord> {
    let aus = access_units(&std::fs::read(clip).expect("clip"));
    let (tx, mut rx) = mpsc::channel(aus.len() + 8);
    let metrics = Metrics::new(&prometheus::Registry::new());
    let config = PoolConfig {
        threads: 1,
        queue: 64,
        idle_flush: Duration::from_millis(100),
        detectors: Default::default(),
    };
    let pool = DecodePool::start(config, tx, metrics).expect("pool");
    for (seq, au) in aus.iter().enumerate() {
        let meta = FrameMeta {
            camera: "oracle".into(),
            session: "s".into(),
            seq: seq as u64,
            pts_90k: seq as i64 * 3600,
            capture_ms: 0,
            keyframe: annexb::is_idr(au),
            codec: "h264".into(),
            dimensions: None,
        };
        let job = Job {
            meta,
            data: au.clone(),
            partition: 0,
            offset: seq as i64,
            span: tracing::Span::none(),
        };
        assert!(pool.submit(job).await.is_ok());
    }
    let mut out = Vec::new();
    while out.len() < aus.len() {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Outcome::Stats { record, .. })) => out.push(*record),
            Ok(Some(Outcome::Done { offset, .. })) => {
                panic!("access unit {offset} gave no picture")
            }
            _ => panic!(
                "the pool stopped after {} of {} pictures",
                out.len(),
                aus.len()
            ),
        }
    }
    pool.finish();
    out.sort_by_key(|r| r.seq);
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
    for (name, lavfi) in clips {
        let clip = make_clip(dir.path(), name, lavfi);
        let expected = oracle(&clip);
        let ours = worker_path(&clip).await;
        assert_eq!(ours.len(), expected.len(), "{name}: pictures decoded");
        let mut worst: HashMap<&str, f64> = HashMap::new();
        for (i, (s, e)) in ours.iter().zip(&expected).enumerate() {
            let pairs = [
                ("YAVG", s.y_avg, 0.5),
                ("YMIN", f64::from(s.y_min), 1.0),
                ("YMAX", f64::from(s.y_max), 1.0),
                ("YLOW", f64::from(s.y_low), 1.0),
                ("YHIGH", f64::from(s.y_high), 1.0),
                ("UAVG", s.u_avg, 0.5),
                ("VAVG", s.v_avg, 0.5),
                ("SATAVG", s.sat_avg, 1.0),
                ("YDIF", s.y_dif, 0.5),
            ];
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
    let dir = tempfile::tempdir().expect("tmp");
    // 1 s black, 1 s moving, 1 s moving then 3 s frozen, 1 s colour bars (a hard cut).
    let graph = "color=c=black:s=320x240:r=25:d=1[a];testsrc2=s=320x240:r=25:d=1[b];\
                 testsrc2=s=320x240:r=25:d=1,tpad=stop_mode=clone:stop_duration=3[c];\
                 smptebars=s=320x240:r=25:d=1[d];[a][b][c][d]concat=n=4[out0]";
    let clip = make_clip(dir.path(), "detectors", graph);
    let ours = worker_path(&clip).await;
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
        "detectors: {black_frames} black frames, cuts at {cuts:?}, frozen {}..={} ({} frames; ffmpeg: {start_frame}+1..{end_frame})",
        frozen.first().unwrap_or(&0),
        frozen.last().unwrap_or(&0),
        frozen.len()
    );
    assert_eq!(frozen, expected, "frozen frames");
    assert_eq!(black_frames, 25, "the first second is black");
    assert!(!cuts.is_empty());
}

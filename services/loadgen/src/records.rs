//! What each simulated camera sends: its identity, and record `n` of it — a clip's access
//! unit with the frame metadata ingest would give it, or a statistics record as a worker
//! would write it for that frame.

use framewire_wire::stream::AccessUnit;
use framewire_wire::{AnalysisRate, FrameMeta, StatsRecord};
use rand::RngExt;

use crate::clip::Clip;
use crate::schedule::Due;

/// One simulated camera.
#[derive(Debug, Clone)]
pub struct Camera {
    /// Camera id (`fw-camera`, the record key).
    pub id: String,
    /// Its session for the whole run (`fw-session`: 16 hex digits, as ingest makes them).
    pub session: String,
}

impl Camera {
    /// A camera with a fresh random session.
    pub fn new(id: String) -> Self {
        Camera {
            id,
            session: format!("{:016x}", rand::rng().random::<u64>()),
        }
    }
}

/// `pts_90k` of record `n` at `fps` frames per second.
fn pts_90k(n: u64, fps: f64) -> i64 {
    (n as f64 * 90_000.0 / fps).round() as i64
}

/// The frames of a fleet replaying one clip.
pub struct Frames {
    /// The clip.
    pub clip: Clip,
    /// The cameras, by index.
    pub cameras: Vec<Camera>,
    /// Frames per second (for `fw-pts-90k`).
    pub fps: f64,
    /// `fw-detect` on every frame, when set.
    pub detect: Option<AnalysisRate>,
}

impl Frames {
    /// Record `due.n` of camera `due.camera`: the access unit, and its metadata with
    /// `capture_ms` = `start_ms` + the due time. Camera `c` plays the clip from its
    /// keyframe number `c` (modulo the keyframes), so neighbours show different pictures.
    pub fn frame(&self, due: Due, start_ms: i64) -> (FrameMeta, &AccessUnit) {
        let camera = &self.cameras[due.camera];
        let au = self.clip.access_unit(due.camera, due.n);
        let meta = FrameMeta {
            camera: camera.id.clone(),
            session: camera.session.clone(),
            seq: due.n,
            pts_90k: pts_90k(due.n, self.fps),
            capture_ms: start_ms + due.at.as_millis() as i64,
            keyframe: au.keyframe,
            codec: self.clip.codec.name().to_owned(),
            dimensions: au.dimensions,
        };
        (meta, au)
    }
}

/// Synthetic statistics records of a fleet.
pub struct Stats {
    /// The cameras, by index.
    pub cameras: Vec<Camera>,
    /// Frames per second (for `pts_90k`).
    pub fps: f64,
    /// A keyframe every `gop` records.
    pub gop: u32,
    /// Picture size.
    pub size: (u32, u32),
}

impl Stats {
    /// The statistics of record `due.n` of camera `due.camera`. Values are plausible and
    /// vary by camera and frame (brightness drifts, motion wobbles, a scene cut every 20 s
    /// at 25 fps); one camera in 97 is black and one in 89 frozen throughout, so the sink
    /// also keeps incidents open. Decoded 30-49 ms after capture.
    pub fn record(&self, due: Due, start_ms: i64) -> StatsRecord {
        let camera = &self.cameras[due.camera];
        let (c, n) = (due.camera as u64, due.n);
        let capture_ms = start_ms + due.at.as_millis() as i64;
        let black = c % 97 == 3;
        let frozen = !black && c % 89 == 5;
        let wobble = ((n % 50) as f64 / 50.0 * std::f64::consts::TAU).sin();
        let y_avg = if black {
            17.0
        } else {
            (50.0 + (c * 37 % 140) as f64 + 8.0 * wobble).clamp(20.0, 235.0)
        };
        let y_dif = if frozen {
            0.0
        } else {
            2.0 + 1.5 * wobble.abs()
        };
        let scene_cut = !black && !frozen && n % 500 == 250;
        let pixels = u64::from(self.size.0) * u64::from(self.size.1);
        let y_min = if black { 16 } else { 16 + (c % 8) as u8 };
        let y_max = if black { 20 } else { 235 - (c % 16) as u8 };
        let y_low = ((y_avg * 0.6) as u8).clamp(y_min, y_max);
        let y_high = ((y_avg * 1.4) as u8).clamp(y_low, y_max);
        StatsRecord {
            camera: camera.id.clone(),
            session: camera.session.clone(),
            seq: n,
            pts_90k: pts_90k(n, self.fps),
            capture_ms,
            decoded_ms: capture_ms + 30 + (n % 20) as i64,
            width: self.size.0,
            height: self.size.1,
            keyframe: n.is_multiple_of(u64::from(self.gop)),
            y_avg,
            y_min,
            y_max,
            y_low,
            y_high,
            y_std: if black { 0.8 } else { 42.0 + 3.0 * wobble },
            y_dif,
            u_avg: 128.0 + 4.0 * wobble,
            v_avg: 127.0 - 3.0 * wobble,
            sat_avg: if black { 0.0 } else { 9.5 },
            y_hist: histogram(y_avg, pixels),
            sharpness: if black { 0.5 } else { 310.0 + 40.0 * wobble },
            black,
            frozen,
            scene_score: if scene_cut { 42.0 } else { y_dif / 4.0 },
            scene_cut,
        }
    }
}

/// A luma histogram of `pixels` pixels around `y_avg`: half in its bin, a quarter in each
/// neighbour (folded back at the ends), summing to `pixels` as the schema requires.
fn histogram(y_avg: f64, pixels: u64) -> [u32; 16] {
    let mut bins = [0u64; 16];
    let k = (y_avg as usize / 16).min(15);
    let quarter = pixels / 4;
    bins[k.saturating_sub(1)] += quarter;
    bins[(k + 1).min(15)] += quarter;
    bins[k] += pixels - 2 * quarter;
    bins.map(|b| u32::try_from(b).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::tests::h264_stream;
    use framewire_wire::Codec;
    use std::time::Duration;

    fn cameras(n: usize) -> Vec<Camera> {
        (0..n).map(|i| Camera::new(format!("cam-{i}"))).collect()
    }

    #[test]
    fn frames_carry_the_metadata_ingest_would_give_them() {
        let clip = Clip::from_stream(&h264_stream(2, 4), Codec::H264).expect("clip");
        let frames = Frames {
            clip,
            cameras: cameras(3),
            fps: 25.0,
            detect: None,
        };
        let due = |camera, n| Due {
            camera,
            n,
            at: Duration::from_millis(500 + n * 40),
        };
        let (meta, au) = frames.frame(due(1, 0), 1_000_000);
        assert_eq!(meta.camera, "cam-1");
        assert_eq!(meta.session.len(), 16);
        assert_eq!((meta.seq, meta.pts_90k, meta.capture_ms), (0, 0, 1_000_500));
        assert!(meta.keyframe && au.keyframe);
        assert_eq!(meta.codec, "h264");
        assert_eq!(meta.dimensions, Some((630, 354)));
        let (meta, _) = frames.frame(due(1, 3), 1_000_000);
        assert_eq!(
            (meta.seq, meta.pts_90k, meta.capture_ms),
            (3, 10_800, 1_000_620)
        );
        assert!(!meta.keyframe && meta.dimensions.is_none());
        // 8 units, camera 1 starts at unit 4: its record 4 is unit 0, a keyframe again.
        assert!(frames.frame(due(1, 4), 0).0.keyframe);
        // Headers round-trip through the contract's parser.
        let headers = meta.to_headers();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        };
        assert_eq!(FrameMeta::from_headers(get), Ok(meta));
    }

    #[test]
    fn stats_records_are_plausible_and_sum_their_histogram() {
        let stats = Stats {
            cameras: cameras(200),
            fps: 25.0,
            gop: 50,
            size: (1280, 720),
        };
        for c in 0..200 {
            for n in [0, 1, 49, 50, 250] {
                let r = stats.record(
                    Due {
                        camera: c,
                        n,
                        at: Duration::from_millis(n * 40),
                    },
                    1_700_000_000_000,
                );
                assert_eq!(
                    r.y_hist.iter().map(|&b| u64::from(b)).sum::<u64>(),
                    1280 * 720
                );
                assert_eq!(r.keyframe, n % 50 == 0);
                assert!(
                    r.y_min <= r.y_low && r.y_low <= r.y_high && r.y_high <= r.y_max,
                    "{r:?}"
                );
                assert!((0.0..=255.0).contains(&r.y_avg));
                assert!(r.decoded_ms >= r.capture_ms + 30 && r.decoded_ms < r.capture_ms + 50);
            }
        }
        let black = stats.record(
            Due {
                camera: 3,
                n: 7,
                at: Duration::ZERO,
            },
            0,
        );
        assert!(black.black && !black.frozen);
    }
}

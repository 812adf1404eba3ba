//! The `realtime` lag policy: skip a camera that fell too far behind to its newest keyframe.
//!
//! Cameras share partitions, so a worker cannot seek one camera forward; it can only read
//! past its records without decoding them, which costs next to nothing. A camera is
//! *behind* when its record is older than `max_age` (capture → consumed), or more than
//! `max_frames` frames old at the camera's own frame rate (from `fw-pts-90k` steps). From
//! the first record that is behind, the camera's records are skipped until a keyframe
//! that is not behind: decoding restarts there, on a fresh decoder.

use std::collections::HashMap;
use std::time::Duration;

use framewire_wire::FrameMeta;

/// What to do with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Decode it.
    Decode,
    /// Decode it, on a fresh decoder: the camera skipped records just before it.
    Resume,
    /// Skip it (counted as skipped for lag).
    Skip,
}

/// Per-camera lag state of one worker.
#[derive(Debug)]
pub struct LagGate {
    max_age_ms: i64,
    max_frames: u64,
    cameras: HashMap<String, CameraLag>,
}

#[derive(Debug, Default)]
struct CameraLag {
    skipping: bool,
    last_pts: Option<i64>,
    /// Frame duration in 90 kHz ticks, smoothed.
    frame_ticks: Option<f64>,
}

impl LagGate {
    /// A gate with the `realtime` bounds (`max_frames` 0 = age only).
    pub fn new(max_age: Duration, max_frames: u64) -> Self {
        LagGate {
            max_age_ms: i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX),
            max_frames,
            cameras: HashMap::new(),
        }
    }

    /// Decides for the record `meta`, consumed at wall-clock `now_ms`.
    pub fn check(&mut self, meta: &FrameMeta, now_ms: i64) -> Verdict {
        let cam = self.cameras.entry(meta.camera.clone()).or_default();
        if let Some(last) = cam.last_pts {
            let step = meta.pts_90k - last;
            // Ignore jumps (session changes, dropped frames): 1 ms … 2 s per frame.
            if (90..=180_000).contains(&step) {
                let step = step as f64;
                cam.frame_ticks = Some(cam.frame_ticks.map_or(step, |t| t * 0.9 + step * 0.1));
            }
        }
        cam.last_pts = Some(meta.pts_90k);
        let age_ms = (now_ms - meta.capture_ms).max(0);
        let frames_behind = cam
            .frame_ticks
            .map_or(0.0, |ticks| age_ms as f64 * 90.0 / ticks);
        let behind = age_ms > self.max_age_ms
            || (self.max_frames > 0 && frames_behind > self.max_frames as f64);
        match (cam.skipping, behind) {
            (false, false) => Verdict::Decode,
            (true, false) if meta.keyframe => {
                cam.skipping = false;
                Verdict::Resume
            }
            (true, false) => Verdict::Skip,
            (_, true) => {
                cam.skipping = true;
                Verdict::Skip
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64, keyframe: bool, capture_ms: i64) -> FrameMeta {
        FrameMeta {
            camera: "cam".into(),
            session: "s".into(),
            seq,
            pts_90k: seq as i64 * 3_600, // 25 fps
            capture_ms,
            keyframe,
            codec: "h264".into(),
            dimensions: None,
        }
    }

    #[test]
    fn a_camera_behind_is_skipped_to_its_first_keyframe_in_bounds() {
        let mut gate = LagGate::new(Duration::from_secs(5), 0);
        // Fresh records decode.
        assert_eq!(gate.check(&meta(0, true, 10_000), 10_100), Verdict::Decode);
        assert_eq!(gate.check(&meta(1, false, 10_040), 10_100), Verdict::Decode);
        // A backlog 20 s old: skipped, keyframes included, while it is behind.
        let now = 40_000;
        assert_eq!(gate.check(&meta(2, false, 20_000), now), Verdict::Skip);
        assert_eq!(gate.check(&meta(3, true, 21_000), now), Verdict::Skip);
        // Back within 5 s, but mid-GOP: still skipped until a keyframe.
        assert_eq!(gate.check(&meta(4, false, 36_000), now), Verdict::Skip);
        assert_eq!(gate.check(&meta(5, true, 36_500), now), Verdict::Resume);
        assert_eq!(gate.check(&meta(6, false, 36_540), now), Verdict::Decode);
    }

    #[test]
    fn the_frame_bound_uses_the_cameras_own_rate() {
        // 25 fps: 100 frames = 4 s; the age bound (60 s) never triggers.
        let mut gate = LagGate::new(Duration::from_secs(60), 100);
        for seq in 0..10 {
            assert_eq!(
                gate.check(&meta(seq, seq == 0, 1_000), 1_000 + 3_000),
                Verdict::Decode,
                "75 frames behind is within 100"
            );
        }
        assert_eq!(
            gate.check(&meta(10, false, 1_000), 1_000 + 5_000),
            Verdict::Skip
        );
    }
}

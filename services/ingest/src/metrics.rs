//! Ingest metrics. Label `camera` is the camera id (never its URL).

use framewire_kit::metrics::Builder;
use prometheus::{IntCounterVec, IntGaugeVec, Registry};

/// Every metric ingest exports.
#[derive(Clone)]
pub struct Metrics {
    /// `framewire_ingest_camera_up`: 1 while a session is streaming.
    pub up: IntGaugeVec,
    /// `framewire_ingest_frames_total`: access units published (enqueued to Kafka).
    pub frames: IntCounterVec,
    /// `framewire_ingest_keyframes_total`: IDR access units published.
    pub keyframes: IntCounterVec,
    /// `framewire_ingest_bytes_total`: access unit bytes published.
    pub bytes: IntCounterVec,
    /// `framewire_ingest_skipped_before_keyframe_total`: frames dropped at session start
    /// because no keyframe had arrived yet (not decodable).
    pub skipped: IntCounterVec,
    /// `framewire_ingest_reconnects_total`: sessions (re)started.
    pub reconnects: IntCounterVec,
    /// `framewire_ingest_session_errors_total`: sessions ended by an error, by kind.
    pub session_errors: IntCounterVec,
    /// `framewire_ingest_delivery_errors_total`: records Kafka did not accept.
    pub delivery_errors: IntCounterVec,
    /// `framewire_ingest_last_frame_timestamp_seconds`: wall clock of the last frame.
    pub last_frame: IntGaugeVec,
}

impl Metrics {
    /// Creates a camera's series at zero, so that dashboards and `rate()` see the camera
    /// before its first frame or error.
    pub fn init_camera(&self, camera: &str) {
        for c in [
            &self.frames,
            &self.keyframes,
            &self.bytes,
            &self.skipped,
            &self.reconnects,
            &self.delivery_errors,
        ] {
            c.with_label_values(&[camera]);
        }
        self.up.with_label_values(&[camera]).set(0);
    }

    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> Self {
        let b = Builder(registry);
        let camera = &["camera"];
        Metrics {
            up: b.gauge_vec(
                "framewire_ingest_camera_up",
                "1 while the camera's RTSP session is streaming",
                camera,
            ),
            frames: b.counter_vec(
                "framewire_ingest_frames_total",
                "Access units published",
                camera,
            ),
            keyframes: b.counter_vec(
                "framewire_ingest_keyframes_total",
                "IDR access units published",
                camera,
            ),
            bytes: b.counter_vec(
                "framewire_ingest_bytes_total",
                "Access unit bytes published",
                camera,
            ),
            skipped: b.counter_vec(
                "framewire_ingest_skipped_before_keyframe_total",
                "Frames dropped at session start before the first keyframe",
                camera,
            ),
            reconnects: b.counter_vec(
                "framewire_ingest_reconnects_total",
                "RTSP sessions started",
                camera,
            ),
            session_errors: b.counter_vec(
                "framewire_ingest_session_errors_total",
                "RTSP sessions ended by an error",
                &["camera", "kind"],
            ),
            delivery_errors: b.counter_vec(
                "framewire_ingest_delivery_errors_total",
                "Records Kafka did not accept",
                camera,
            ),
            last_frame: b.gauge_vec(
                "framewire_ingest_last_frame_timestamp_seconds",
                "Unix time of the camera's last published frame",
                camera,
            ),
        }
    }
}

//! Ingest metrics. Label `camera` is the camera id (never its URL); a removed camera's
//! series are deleted, so cardinality follows the registry.

use framewire_kit::metrics::Builder;
use prometheus::core::{AtomicF64, AtomicI64, AtomicU64, GenericCounter, GenericGauge};
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::queue::DropReason;
use crate::status::State;

/// Every metric ingest exports.
#[derive(Clone)]
pub struct Metrics {
    /// `framewire_ingest_camera_up`: 1 while a session is streaming.
    pub up: IntGaugeVec,
    /// `framewire_ingest_camera_state`: 1 for the camera's current state.
    pub state: IntGaugeVec,
    /// `framewire_ingest_frames_total`: access units published (accepted by Kafka).
    pub frames: IntCounterVec,
    /// `framewire_ingest_keyframes_total`: IDR access units published.
    pub keyframes: IntCounterVec,
    /// `framewire_ingest_bytes_total`: access unit bytes published.
    pub bytes: IntCounterVec,
    /// `framewire_ingest_fps`: access units received per second (last second).
    pub fps: prometheus::GaugeVec,
    /// `framewire_ingest_bitrate_bits_per_second`: received bitrate (last second).
    pub bitrate: prometheus::GaugeVec,
    /// `framewire_ingest_skipped_frames_total`: received but not published, by reason
    /// (`before_keyframe`, `sampling`, `no_parameters`).
    pub skipped: IntCounterVec,
    /// `framewire_ingest_reconnects_total`: sessions started.
    pub reconnects: IntCounterVec,
    /// `framewire_ingest_session_errors_total`: sessions ended by an error, by kind.
    pub session_errors: IntCounterVec,
    /// `framewire_ingest_rtp_packets_lost_total`: RTP sequence gaps (packets lost).
    pub rtp_lost: IntCounterVec,
    /// `framewire_ingest_timestamp_jumps_total`: RTP timestamp jumps over 10 s.
    pub timestamp_jumps: IntCounterVec,
    /// `framewire_ingest_last_frame_timestamp_seconds`: wall clock of the last frame
    /// (age = `time() - framewire_ingest_last_frame_timestamp_seconds`).
    pub last_frame: IntGaugeVec,
    /// `framewire_ingest_queue_bytes`: bytes waiting for Kafka.
    pub queue_bytes: IntGaugeVec,
    /// `framewire_ingest_queue_frames`: access units waiting for Kafka.
    pub queue_frames: IntGaugeVec,
    /// `framewire_ingest_dropped_gops_total`: GOPs dropped because the queue was full.
    pub dropped_gops: IntCounterVec,
    /// `framewire_ingest_dropped_frames_total{camera,reason}`: access units received and
    /// never published, by [`DropReason`] (`queue_full`, `reference_lost`, `lease_lost`,
    /// `stopped`).
    pub dropped_frames: IntCounterVec,
    /// `framewire_ingest_delivery_errors_total`: records Kafka did not accept.
    pub delivery_errors: IntCounterVec,
    /// `framewire_ingest_oversize_records_total`: access units over `topics.max_message_bytes`.
    pub oversize: IntCounterVec,
    /// `framewire_ingest_control_records_total`: control-topic records applied, by outcome.
    pub control: IntCounterVec,
    /// `framewire_ingest_cameras`: cameras this replica owns, by state.
    pub cameras: IntGaugeVec,
    /// `framewire_ingest_lease_slots`: lease slots this replica owns.
    pub lease_slots: IntGauge,
    /// `framewire_ingest_lease_rebalances_total{kind}`: rebalance callbacks, by kind
    /// (`assign`, `revoke`, `lost`).
    pub lease_rebalances: IntCounterVec,
}

/// One camera's series, resolved once (no label lookups per frame).
#[derive(Clone)]
pub struct CameraMetrics {
    /// See [`Metrics::up`].
    pub up: GenericGauge<AtomicI64>,
    /// See [`Metrics::frames`].
    pub frames: GenericCounter<AtomicU64>,
    /// See [`Metrics::keyframes`].
    pub keyframes: GenericCounter<AtomicU64>,
    /// See [`Metrics::bytes`].
    pub bytes: GenericCounter<AtomicU64>,
    /// See [`Metrics::fps`].
    pub fps: GenericGauge<AtomicF64>,
    /// See [`Metrics::bitrate`].
    pub bitrate: GenericGauge<AtomicF64>,
    /// See [`Metrics::rtp_lost`].
    pub rtp_lost: GenericCounter<AtomicU64>,
    /// See [`Metrics::timestamp_jumps`].
    pub timestamp_jumps: GenericCounter<AtomicU64>,
    /// See [`Metrics::last_frame`].
    pub last_frame: GenericGauge<AtomicI64>,
    /// See [`Metrics::queue_bytes`].
    pub queue_bytes: GenericGauge<AtomicI64>,
    /// See [`Metrics::queue_frames`].
    pub queue_frames: GenericGauge<AtomicI64>,
    /// See [`Metrics::dropped_gops`].
    pub dropped_gops: GenericCounter<AtomicU64>,
    /// See [`Metrics::delivery_errors`].
    pub delivery_errors: GenericCounter<AtomicU64>,
    /// See [`Metrics::oversize`].
    pub oversize: GenericCounter<AtomicU64>,
    /// See [`Metrics::reconnects`].
    pub reconnects: GenericCounter<AtomicU64>,
    camera: String,
    all: Metrics,
}

impl CameraMetrics {
    /// Counts a received frame that was not published.
    pub fn skipped(&self, reason: &str) {
        self.all
            .skipped
            .with_label_values(&[&self.camera, reason])
            .inc();
    }

    /// Counts access units received and never published.
    pub fn dropped(&self, reason: DropReason, frames: u64) {
        if frames > 0 {
            self.all
                .dropped_frames
                .with_label_values(&[&self.camera, reason.as_str()])
                .inc_by(frames);
        }
    }

    /// Access units dropped for `reason` so far.
    #[cfg(test)]
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.all
            .dropped_frames
            .with_label_values(&[&self.camera, reason.as_str()])
            .get()
    }

    /// Counts a failed session.
    pub fn session_error(&self, kind: &str) {
        self.all
            .session_errors
            .with_label_values(&[&self.camera, kind])
            .inc();
    }

    /// Sets the state gauge: 1 for `state`, 0 for the others.
    pub fn set_state(&self, state: State) {
        for s in State::ALL {
            self.all
                .state
                .with_label_values(&[&self.camera, s.as_str()])
                .set(i64::from(s == state));
        }
    }
}

const CAMERA: &[&str] = &["camera"];

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> Self {
        let b = Builder(registry);
        Metrics {
            up: b.gauge_vec(
                "framewire_ingest_camera_up",
                "1 while the camera's RTSP session is streaming",
                CAMERA,
            ),
            state: b.gauge_vec(
                "framewire_ingest_camera_state",
                "1 for the camera's current state",
                &["camera", "state"],
            ),
            frames: b.counter_vec(
                "framewire_ingest_frames_total",
                "Access units published",
                CAMERA,
            ),
            keyframes: b.counter_vec(
                "framewire_ingest_keyframes_total",
                "IDR access units published",
                CAMERA,
            ),
            bytes: b.counter_vec(
                "framewire_ingest_bytes_total",
                "Access unit bytes published",
                CAMERA,
            ),
            fps: b.float_gauge_vec(
                "framewire_ingest_fps",
                "Access units received per second",
                CAMERA,
            ),
            bitrate: b.float_gauge_vec(
                "framewire_ingest_bitrate_bits_per_second",
                "Received video bitrate",
                CAMERA,
            ),
            skipped: b.counter_vec(
                "framewire_ingest_skipped_frames_total",
                "Access units received but not published",
                &["camera", "reason"],
            ),
            reconnects: b.counter_vec(
                "framewire_ingest_reconnects_total",
                "RTSP sessions started",
                CAMERA,
            ),
            session_errors: b.counter_vec(
                "framewire_ingest_session_errors_total",
                "RTSP sessions ended by an error",
                &["camera", "kind"],
            ),
            rtp_lost: b.counter_vec(
                "framewire_ingest_rtp_packets_lost_total",
                "RTP packets lost (sequence gaps)",
                CAMERA,
            ),
            timestamp_jumps: b.counter_vec(
                "framewire_ingest_timestamp_jumps_total",
                "RTP timestamp jumps of more than 10 s",
                CAMERA,
            ),
            last_frame: b.gauge_vec(
                "framewire_ingest_last_frame_timestamp_seconds",
                "Unix time of the camera's last received frame",
                CAMERA,
            ),
            queue_bytes: b.gauge_vec(
                "framewire_ingest_queue_bytes",
                "Bytes waiting for Kafka",
                CAMERA,
            ),
            queue_frames: b.gauge_vec(
                "framewire_ingest_queue_frames",
                "Access units waiting for Kafka",
                CAMERA,
            ),
            dropped_gops: b.counter_vec(
                "framewire_ingest_dropped_gops_total",
                "GOPs dropped because the camera's queue was full",
                CAMERA,
            ),
            dropped_frames: b.counter_vec(
                "framewire_ingest_dropped_frames_total",
                "Access units received and never published, by reason",
                &["camera", "reason"],
            ),
            delivery_errors: b.counter_vec(
                "framewire_ingest_delivery_errors_total",
                "Records Kafka did not accept",
                CAMERA,
            ),
            oversize: b.counter_vec(
                "framewire_ingest_oversize_records_total",
                "Access units larger than topics.max_message_bytes, not published",
                CAMERA,
            ),
            control: b.counter_vec(
                "framewire_ingest_control_records_total",
                "Control-topic records, by outcome",
                &["outcome"],
            ),
            cameras: b.gauge_vec(
                "framewire_ingest_cameras",
                "Cameras owned by this replica, by state",
                &["state"],
            ),
            lease_slots: b.gauge(
                "framewire_ingest_lease_slots",
                "Lease slots (partitions of the lease topic) this replica owns",
            ),
            lease_rebalances: b.counter_vec(
                "framewire_ingest_lease_rebalances_total",
                "Lease rebalance callbacks, by kind (assign, revoke, lost)",
                &["kind"],
            ),
        }
    }

    /// A camera's series, created at zero so dashboards see the camera at once.
    pub fn camera(&self, camera: &str) -> CameraMetrics {
        let c = &[camera];
        let m = CameraMetrics {
            up: self.up.with_label_values(c),
            frames: self.frames.with_label_values(c),
            keyframes: self.keyframes.with_label_values(c),
            bytes: self.bytes.with_label_values(c),
            fps: self.fps.with_label_values(c),
            bitrate: self.bitrate.with_label_values(c),
            rtp_lost: self.rtp_lost.with_label_values(c),
            timestamp_jumps: self.timestamp_jumps.with_label_values(c),
            last_frame: self.last_frame.with_label_values(c),
            queue_bytes: self.queue_bytes.with_label_values(c),
            queue_frames: self.queue_frames.with_label_values(c),
            dropped_gops: self.dropped_gops.with_label_values(c),
            delivery_errors: self.delivery_errors.with_label_values(c),
            oversize: self.oversize.with_label_values(c),
            reconnects: self.reconnects.with_label_values(c),
            camera: camera.to_owned(),
            all: self.clone(),
        };
        for reason in ["before_keyframe", "sampling", "no_parameters"] {
            self.skipped.with_label_values(&[camera, reason]);
        }
        for reason in DropReason::ALL {
            self.dropped_frames
                .with_label_values(&[camera, reason.as_str()]);
        }
        m
    }

    /// Deletes a removed camera's series.
    pub fn remove_camera(&self, camera: &str) {
        let c = &[camera];
        for v in [
            &self.frames,
            &self.keyframes,
            &self.bytes,
            &self.reconnects,
            &self.rtp_lost,
            &self.timestamp_jumps,
            &self.dropped_gops,
            &self.delivery_errors,
            &self.oversize,
        ] {
            let _ = v.remove_label_values(c);
        }
        for v in [
            &self.up,
            &self.last_frame,
            &self.queue_bytes,
            &self.queue_frames,
        ] {
            let _ = v.remove_label_values(c);
        }
        for v in [&self.fps, &self.bitrate] {
            let _ = v.remove_label_values(c);
        }
        for s in State::ALL {
            let _ = self.state.remove_label_values(&[camera, s.as_str()]);
        }
        for reason in ["before_keyframe", "sampling", "no_parameters"] {
            let _ = self.skipped.remove_label_values(&[camera, reason]);
        }
        for reason in DropReason::ALL {
            let _ = self
                .dropped_frames
                .remove_label_values(&[camera, reason.as_str()]);
        }
        // session_errors has a second label; drop every kind this camera had.
        for kind in crate::camera::ERROR_KINDS {
            let _ = self.session_errors.remove_label_values(&[camera, kind]);
        }
    }
}

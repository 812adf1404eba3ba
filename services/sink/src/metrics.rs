//! Sink metrics, in one place so dashboards and alerts have one list to read.
//!
//! Label `camera` is the camera id (validated, so bounded by the fleet's cameras);
//! `backend` is `sqlite` or `postgres`; `op` names a database or Kafka operation; `kind`
//! an incident kind; `table` a table; `reason` one of a fixed list; `label` an object
//! class, at most [`MAX_OBJECT_LABELS`] distinct ones per process (a model's label list:
//! COCO has 80), any further class counted as `other`. Records are counted per record,
//! which is per frame, not per pixel: cheap enough for the hot loop.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use framewire_kit::metrics::Builder;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::api::Rejection;
use crate::frame::BadDetections;

/// Distinct object classes with series of their own; more are counted as `other`.
pub const MAX_OBJECT_LABELS: usize = 100;

/// The `label` of classes beyond [`MAX_OBJECT_LABELS`].
pub const OTHER_LABEL: &str = "other";

/// Every metric the sink exports.
#[derive(Clone)]
pub struct Metrics {
    /// `framewire_sink_records_total`: stats records consumed (valid ones).
    pub records: IntCounterVec,
    /// `framewire_sink_dead_letters_total`: worker dead letters consumed (decode errors).
    pub dead_letters: IntCounterVec,
    /// `framewire_sink_duplicates_total`: frames a window had already counted (same
    /// camera, session, seq), dropped at the merge.
    pub duplicates: IntCounterVec,
    /// `framewire_sink_late_records_total`: frames whose window was already closed by its
    /// camera's watermark; merged into the window's stored state all the same.
    pub late: IntCounterVec,
    /// `framewire_sink_bad_records_total`: records that are neither a valid stats record
    /// nor a readable dead letter; logged with partition/offset and skipped.
    pub bad_records: IntCounter,
    /// `framewire_sink_rows_written_total`: window rows inserted or replaced.
    pub rows_written: IntCounterVec,
    /// `framewire_sink_events_written_total`: incident rows inserted or updated.
    pub events_written: IntCounterVec,
    /// `framewire_sink_write_seconds`: duration of one flush transaction.
    pub write_seconds: Histogram,
    /// `framewire_sink_db_errors_total`: failed database operations.
    pub db_errors: IntCounterVec,
    /// `framewire_sink_state_resets_total`: stored window states that could not be read
    /// (the window was counted again from empty).
    pub state_resets: IntCounter,
    /// `framewire_sink_windows_open`: windows accepting frames.
    pub windows_open: IntGauge,
    /// `framewire_sink_pending_frames`: frames waiting for the next successful write.
    pub pending_frames: IntGauge,
    /// `framewire_sink_consumption_paused`: 1 while consumption is paused because too
    /// many frames wait for the database.
    pub paused: IntGauge,
    /// `framewire_sink_kafka_errors_total`: consumer and offset-store errors.
    pub kafka_errors: IntCounterVec,
    /// `framewire_sink_retention_deleted_total`: rows deleted by retention.
    pub retention_deleted: IntCounterVec,
    /// `framewire_sink_thumbnails_total`: keyframes turned into a thumbnail.
    pub thumbnails: IntCounterVec,
    /// `framewire_sink_preview_skipped_total`: keyframes not decoded (`throttled`: a
    /// thumbnail is recent enough; `busy`: the decoder is behind; `bad_headers`; `codec`:
    /// not H.264).
    pub preview_skipped: IntCounterVec,
    /// `framewire_sink_preview_errors_total`: keyframes that did not decode or encode.
    pub preview_errors: IntCounterVec,
    /// `framewire_sink_http_requests_total`: API and web requests by route and status.
    pub http_requests: IntCounterVec,
    /// `framewire_sink_api_rejected_total`: API requests turned down, by `reason`
    /// ([`Rejection`]: `bad_parameter`, `range_too_long`, `limit_too_large`,
    /// `rate_limited`, `unavailable`).
    pub api_rejected: IntCounterVec,
    /// `framewire_sink_api_read_wait_seconds`: how long API reads waited for a connection
    /// of the API's read pool (`sink.api.read_connections`).
    pub api_read_wait: Histogram,
    /// `framewire_sink_detections_total`: valid detections records consumed (one per
    /// analysed picture, re-deliveries included).
    pub detections: IntCounterVec,
    /// `framewire_sink_bad_detections_total`: detections records refused, by `reason`.
    pub bad_detections: IntCounterVec,
    /// `framewire_sink_pictures_analysed_total`: distinct analysed pictures counted.
    pub pictures: IntCounterVec,
    /// `framewire_sink_picture_duplicates_total`: analysed pictures a window had already
    /// counted; dropped.
    pub picture_duplicates: IntCounterVec,
    /// `framewire_sink_objects_total`: objects counted, by camera and class `label`
    /// (each analysed picture once). Use [`Metrics::count_objects`].
    pub objects: IntCounterVec,
    /// The classes with series of their own so far.
    object_labels: Arc<Mutex<BTreeSet<String>>>,
}

impl Metrics {
    /// Removes every series of `camera` (retention forgot it).
    pub fn forget_camera(&self, camera: &str) {
        let c = [camera];
        for vec in [
            &self.records,
            &self.dead_letters,
            &self.duplicates,
            &self.late,
            &self.rows_written,
            &self.thumbnails,
            &self.preview_errors,
        ] {
            let _ = vec.remove_label_values(&c);
        }
        for vec in [&self.detections, &self.pictures, &self.picture_duplicates] {
            let _ = vec.remove_label_values(&c);
        }
        for label in self
            .labels()
            .iter()
            .map(String::as_str)
            .chain([OTHER_LABEL])
        {
            let _ = self.objects.remove_label_values(&[camera, label]);
        }
    }

    /// Counts `n` objects of class `label` for `camera`, under the class's own label while
    /// fewer than [`MAX_OBJECT_LABELS`] classes have one, else under `other`.
    pub fn count_objects(&self, camera: &str, label: &str, n: u64) {
        let shown = {
            let mut labels = match self.object_labels.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if labels.contains(label) {
                label
            } else if labels.len() < MAX_OBJECT_LABELS && label != OTHER_LABEL {
                labels.insert(label.to_owned());
                label
            } else {
                OTHER_LABEL
            }
        };
        self.objects.with_label_values(&[camera, shown]).inc_by(n);
    }

    fn labels(&self) -> Vec<String> {
        match self.object_labels.lock() {
            Ok(g) => g.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }

    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> Self {
        let b = Builder(registry);
        let camera = &["camera"];
        Metrics {
            records: b.counter_vec(
                "framewire_sink_records_total",
                "Stats records consumed",
                camera,
            ),
            dead_letters: b.counter_vec(
                "framewire_sink_dead_letters_total",
                "Worker dead letters (decode errors) consumed",
                camera,
            ),
            duplicates: b.counter_vec(
                "framewire_sink_duplicates_total",
                "Frames a window had already counted (same camera, session and seq); dropped",
                camera,
            ),
            late: b.counter_vec(
                "framewire_sink_late_records_total",
                "Frames for a window already closed by the camera's watermark (still counted)",
                camera,
            ),
            bad_records: b.counter(
                "framewire_sink_bad_records_total",
                "Records that are not valid stats records or dead letters; skipped",
            ),
            rows_written: b.counter_vec(
                "framewire_sink_rows_written_total",
                "Window rows inserted or replaced",
                camera,
            ),
            events_written: b.counter_vec(
                "framewire_sink_events_written_total",
                "Incident rows inserted or updated",
                &["kind"],
            ),
            write_seconds: b.histogram(
                "framewire_sink_write_seconds",
                "Duration of one flush transaction",
                &[
                    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
                    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            db_errors: b.counter_vec(
                "framewire_sink_db_errors_total",
                "Failed database operations",
                &["backend", "op"],
            ),
            state_resets: b.counter(
                "framewire_sink_state_resets_total",
                "Stored window states that could not be read; counted again from empty",
            ),
            windows_open: b.gauge("framewire_sink_windows_open", "Windows accepting frames"),
            pending_frames: b.gauge(
                "framewire_sink_pending_frames",
                "Frames waiting for the next successful write",
            ),
            paused: b.gauge(
                "framewire_sink_consumption_paused",
                "1 while consumption is paused because too many frames wait for the database",
            ),
            kafka_errors: b.counter_vec(
                "framewire_sink_kafka_errors_total",
                "Kafka consumer and offset store errors",
                &["op"],
            ),
            retention_deleted: b.counter_vec(
                "framewire_sink_retention_deleted_total",
                "Rows deleted by retention",
                &["table"],
            ),
            thumbnails: b.counter_vec(
                "framewire_sink_thumbnails_total",
                "Keyframes turned into a thumbnail",
                camera,
            ),
            preview_skipped: b.counter_vec(
                "framewire_sink_preview_skipped_total",
                "Keyframes not decoded for a thumbnail",
                &["reason"],
            ),
            preview_errors: b.counter_vec(
                "framewire_sink_preview_errors_total",
                "Keyframes that could not be decoded or encoded",
                camera,
            ),
            http_requests: b.counter_vec(
                "framewire_sink_http_requests_total",
                "API and web page requests",
                &["route", "status"],
            ),
            api_rejected: by_reason(
                b.counter_vec(
                    "framewire_sink_api_rejected_total",
                    "API requests turned down, by reason",
                    &["reason"],
                ),
                Rejection::ALL.map(Rejection::as_str),
            ),
            api_read_wait: b.histogram(
                "framewire_sink_api_read_wait_seconds",
                "Time API reads waited for a connection of the API's read pool",
                &[
                    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    3.0,
                ],
            ),
            detections: b.counter_vec(
                "framewire_sink_detections_total",
                "Valid detections records consumed (one per analysed picture, re-deliveries included)",
                camera,
            ),
            bad_detections: by_reason(
                b.counter_vec(
                    "framewire_sink_bad_detections_total",
                    "Detections records refused by the schema check; skipped",
                    &["reason"],
                ),
                BadDetections::ALL.map(BadDetections::as_str),
            ),
            pictures: b.counter_vec(
                "framewire_sink_pictures_analysed_total",
                "Distinct analysed pictures counted into windows",
                camera,
            ),
            picture_duplicates: b.counter_vec(
                "framewire_sink_picture_duplicates_total",
                "Analysed pictures a window had already counted (same camera, session and seq); dropped",
                camera,
            ),
            objects: b.counter_vec(
                "framewire_sink_objects_total",
                "Objects counted per camera and class (each analysed picture once; classes beyond the first 100 as other)",
                &["camera", "label"],
            ),
            object_labels: Arc::default(),
        }
    }
}

/// `counter` with a series for each of `reasons` from 0, so that a reason never seen yet
/// still shows (and alerts on its rate work from the start).
fn by_reason<const N: usize>(counter: IntCounterVec, reasons: [&str; N]) -> IntCounterVec {
    for r in reasons {
        counter.with_label_values(&[r]);
    }
    counter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exported() {
        let registry = framewire_kit::metrics::registry();
        let m = Metrics::new(&registry);
        m.records.with_label_values(&["cam"]).inc();
        m.dead_letters.with_label_values(&["cam"]).inc();
        m.duplicates.with_label_values(&["cam"]).inc();
        m.late.with_label_values(&["cam"]).inc();
        m.rows_written.with_label_values(&["cam"]).inc();
        m.events_written.with_label_values(&["black"]).inc();
        m.db_errors.with_label_values(&["sqlite", "flush"]).inc();
        m.kafka_errors.with_label_values(&["recv"]).inc();
        m.retention_deleted.with_label_values(&["events"]).inc();
        m.thumbnails.with_label_values(&["cam"]).inc();
        m.preview_skipped.with_label_values(&["busy"]).inc();
        m.preview_errors.with_label_values(&["cam"]).inc();
        m.http_requests
            .with_label_values(&["/api/cameras", "200"])
            .inc();
        m.bad_records.inc();
        m.state_resets.inc();
        m.write_seconds.observe(0.01);
        m.windows_open.set(3);
        m.pending_frames.set(7);
        m.paused.set(1);
        m.detections.with_label_values(&["cam"]).inc();
        m.pictures.with_label_values(&["cam"]).inc();
        m.picture_duplicates.with_label_values(&["cam"]).inc();
        m.count_objects("cam", "person", 3);
        let text = framewire_kit::metrics::render(&registry);
        for name in [
            "framewire_sink_detections_total{camera=\"cam\"} 1",
            "framewire_sink_bad_detections_total{reason=\"box\"} 0",
            "framewire_sink_pictures_analysed_total{camera=\"cam\"} 1",
            "framewire_sink_picture_duplicates_total{camera=\"cam\"} 1",
            "framewire_sink_objects_total{camera=\"cam\",label=\"person\"} 3",
            "framewire_sink_records_total{camera=\"cam\"} 1",
            "framewire_sink_dead_letters_total{camera=\"cam\"} 1",
            "framewire_sink_duplicates_total{camera=\"cam\"} 1",
            "framewire_sink_late_records_total{camera=\"cam\"} 1",
            "framewire_sink_bad_records_total 1",
            "framewire_sink_rows_written_total{camera=\"cam\"} 1",
            "framewire_sink_events_written_total{kind=\"black\"} 1",
            "framewire_sink_write_seconds_count 1",
            "framewire_sink_db_errors_total{backend=\"sqlite\",op=\"flush\"} 1",
            "framewire_sink_state_resets_total 1",
            "framewire_sink_windows_open 3",
            "framewire_sink_pending_frames 7",
            "framewire_sink_consumption_paused 1",
            "framewire_sink_kafka_errors_total{op=\"recv\"} 1",
            "framewire_sink_retention_deleted_total{table=\"events\"} 1",
            "framewire_sink_thumbnails_total{camera=\"cam\"} 1",
            "framewire_sink_preview_skipped_total{reason=\"busy\"} 1",
            "framewire_sink_preview_errors_total{camera=\"cam\"} 1",
            "framewire_sink_http_requests_total{route=\"/api/cameras\",status=\"200\"} 1",
            "framewire_sink_api_rejected_total{reason=\"rate_limited\"} 0",
            "framewire_sink_api_rejected_total{reason=\"range_too_long\"} 0",
            "framewire_sink_api_read_wait_seconds_count 0",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }

    #[test]
    fn object_labels_are_capped_and_forgotten_with_their_camera() {
        let registry = framewire_kit::metrics::registry();
        let m = Metrics::new(&registry);
        for i in 0..MAX_OBJECT_LABELS + 5 {
            m.count_objects("cam", &format!("class-{i}"), 1);
        }
        m.count_objects("cam", "class-0", 1);
        m.count_objects("cam", OTHER_LABEL, 1);
        let text = framewire_kit::metrics::render(&registry);
        let series = text
            .lines()
            .filter(|l| l.starts_with("framewire_sink_objects_total{"))
            .count();
        assert_eq!(series, MAX_OBJECT_LABELS + 1, "100 classes + other");
        assert!(text.contains("framewire_sink_objects_total{camera=\"cam\",label=\"class-0\"} 2"));
        assert!(text.contains("framewire_sink_objects_total{camera=\"cam\",label=\"other\"} 6"));
        m.forget_camera("cam");
        let text = framewire_kit::metrics::render(&registry);
        assert!(!text.contains("framewire_sink_objects_total{"), "{text}");
    }
}

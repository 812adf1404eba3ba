//! Worker metrics. Label `camera` is a validated camera id (`invalid` for a record whose
//! key is not one); a camera's series are removed when its decoder is dropped (its
//! partition moved away, or it sent nothing for the eviction time), so the label set
//! follows the cameras this replica works on.

use framewire_kit::metrics::Builder;
use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

/// Every metric the worker exports.
#[derive(Clone)]
pub struct Metrics {
    /// `framewire_worker_records_total`: frames records consumed.
    pub records: IntCounterVec,
    /// `framewire_worker_frames_decoded_total`: pictures decoded and measured.
    pub decoded: IntCounterVec,
    /// `framewire_worker_decode_errors_total`: access units that failed, by reason.
    pub decode_errors: IntCounterVec,
    /// `framewire_worker_consume_errors_total{kind}`: errors the frames consumer reported:
    /// `access` (credentials or an ACL: the worker is unready until records come again),
    /// `other` (transient; librdkafka retries).
    pub consume_errors: IntCounterVec,
    /// `framewire_worker_frames_skipped_total`: access units not decoded, by reason
    /// (e.g. waiting for a keyframe after a session change or an error).
    pub skipped: IntCounterVec,
    /// `framewire_worker_stats_delivery_errors_total`: stats records Kafka did not accept.
    pub delivery_errors: IntCounterVec,
    /// `framewire_worker_decode_seconds{backend,codec}`: decoder time per access unit.
    pub decode_seconds: HistogramVec,
    /// `framewire_worker_stats_seconds`: statistics and detectors time per picture.
    pub stats_seconds: Histogram,
    /// `framewire_worker_dlq_records_total`: poison records copied to the DLQ, by reason.
    pub dlq_records: IntCounterVec,
    /// `framewire_worker_dlq_delivery_errors_total`: poison records the DLQ did not take
    /// (their offsets stay uncommitted).
    pub dlq_delivery_errors: IntCounterVec,
    /// `framewire_worker_consumer_lag`: records behind the partition's end, from
    /// librdkafka's statistics — what KEDA scales on.
    pub consumer_lag: IntGaugeVec,
    /// `framewire_worker_rebalances_total`: rebalance callbacks by kind
    /// (`assign`, `revoke`, `error`).
    pub rebalances: IntCounterVec,
    /// `framewire_worker_latency_seconds`: capture (ingest receipt) to stats produced.
    pub latency_seconds: HistogramVec,
    /// `framewire_worker_assigned_partitions`: partitions this replica owns.
    pub assigned_partitions: IntGauge,
    /// `framewire_worker_parked_records`: records waiting for room in their decoder
    /// thread's queue.
    pub parked_records: IntGauge,
    /// `framewire_worker_paused_partitions`: partitions paused because a decoder thread
    /// they feed has more than `queue_max_bytes` parked.
    pub paused_partitions: IntGauge,
    /// `framewire_worker_open_decoders`: decoders open now (one per camera in `all`
    /// mode; in `keyframes` mode one per thread and kind of stream): what most of the
    /// worker's memory is.
    pub open_decoders: IntGauge,
    /// `framewire_worker_partition_pauses_total`: times a partition was paused for that.
    pub partition_pauses: IntCounter,
    /// `framewire_worker_records_replayed_total`: records decoded only to rebuild decoder
    /// state after a takeover (between the resume and the committed offset).
    pub replayed: IntCounter,
    /// `framewire_worker_resumes_total{from}`: partitions assigned, by where reading
    /// started (`resume_offset`: before the committed offset, to replay GOP starts;
    /// `committed`; `reset`: no commit, `auto.offset.reset`; `unknown`: the committed
    /// offsets could not be fetched).
    pub resumes: IntCounterVec,
    /// `framewire_worker_commits_total{result}`: offset commits (`ok`, `error`).
    pub commits: IntCounterVec,
    /// `framewire_worker_undeliverable_total{topic}`: records Kafka can never accept
    /// (too large or invalid); their frames are counted here and not retried.
    pub undeliverable: IntCounterVec,
    /// `framewire_worker_detect_pictures_total`: pictures the object detector analysed.
    pub detect_pictures: IntCounterVec,
    /// `framewire_worker_detect_skipped_total{camera,reason}`: decoded pictures the
    /// detector did not analyse: `rate` (the camera's rate left them out), `off` (detection
    /// is not configured on this worker but the camera asked for it).
    pub detect_skipped: IntCounterVec,
    /// `framewire_worker_detect_objects_total{label}`: objects reported, by class.
    pub detect_objects: IntCounterVec,
    /// `framewire_worker_detect_errors_total{camera}`: pictures whose inference failed
    /// (their statistics are still published).
    pub detect_errors: IntCounterVec,
    /// `framewire_worker_inference_seconds`: one inference (a batch), by backend.
    pub inference_seconds: HistogramVec,
    /// `framewire_worker_detect_batch_size`: pictures per inference.
    pub detect_batch: Histogram,
    /// `framewire_worker_detect_preprocess_seconds`: picture to input tensor, per picture.
    pub detect_preprocess_seconds: Histogram,
    /// `framewire_worker_detect_queue_depth`: pictures queued for inference.
    pub detect_queue: IntGauge,
    /// `framewire_worker_detect_parked_pictures`: pictures waiting for room in the
    /// inference queue.
    pub detect_parked: IntGauge,
    /// `framewire_worker_detect_wait_seconds`: time from decode to inference start.
    pub detect_wait_seconds: Histogram,
}

/// `detect_skipped` reasons.
pub const DETECT_SKIP_REASONS: [&str; 2] = ["rate", "off"];

/// `skipped` reasons.
pub const SKIP_REASONS: [&str; 2] = ["realtime", "replay"];

impl Metrics {
    /// Creates a camera's main series at zero (its decoder was created), so that
    /// dashboards and `rate()` see it before anything happens.
    pub fn touch_camera(&self, camera: &str) {
        let c = [camera];
        self.records.with_label_values(&c);
        self.decoded.with_label_values(&c);
        for reason in SKIP_REASONS {
            self.skipped.with_label_values(&[camera, reason]);
        }
        self.detect_pictures.with_label_values(&c);
        for reason in DETECT_SKIP_REASONS {
            self.detect_skipped.with_label_values(&[camera, reason]);
        }
    }

    /// Removes every series of `camera` (its decoder was dropped).
    pub fn forget_camera(&self, camera: &str) {
        let c = [camera];
        let _ = self.records.remove_label_values(&c);
        let _ = self.decoded.remove_label_values(&c);
        let _ = self.delivery_errors.remove_label_values(&c);
        let _ = self.dlq_delivery_errors.remove_label_values(&c);
        let _ = self.latency_seconds.remove_label_values(&c);
        for reason in crate::poison::Reason::ALL {
            let _ = self
                .decode_errors
                .remove_label_values(&[camera, reason.as_str()]);
            let _ = self
                .dlq_records
                .remove_label_values(&[camera, reason.as_str()]);
        }
        for reason in SKIP_REASONS {
            let _ = self.skipped.remove_label_values(&[camera, reason]);
        }
        let _ = self.detect_pictures.remove_label_values(&c);
        let _ = self.detect_errors.remove_label_values(&c);
        for reason in DETECT_SKIP_REASONS {
            let _ = self.detect_skipped.remove_label_values(&[camera, reason]);
        }
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> Self {
        let b = Builder(registry);
        let camera = &["camera"];
        Metrics {
            records: b.counter_vec(
                "framewire_worker_records_total",
                "Frames records consumed",
                camera,
            ),
            decoded: b.counter_vec(
                "framewire_worker_frames_decoded_total",
                "Pictures decoded and measured",
                camera,
            ),
            decode_errors: b.counter_vec(
                "framewire_worker_decode_errors_total",
                "Access units that could not be decoded",
                &["camera", "reason"],
            ),
            consume_errors: {
                let c = b.counter_vec(
                    "framewire_worker_consume_errors_total",
                    "Errors of the frames consumer: access (credentials or ACLs), other (transient)",
                    &["kind"],
                );
                c.with_label_values(&["access"]);
                c.with_label_values(&["other"]);
                c
            },
            skipped: b.counter_vec(
                "framewire_worker_frames_skipped_total",
                "Access units not decoded",
                &["camera", "reason"],
            ),
            delivery_errors: b.counter_vec(
                "framewire_worker_stats_delivery_errors_total",
                "Stats records Kafka did not accept",
                camera,
            ),
            decode_seconds: b.histogram_vec(
                "framewire_worker_decode_seconds",
                "Decoder time per access unit, by decoder backend and codec",
                &["backend", "codec"],
                &[
                    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128,
                ],
            ),
            stats_seconds: b.histogram(
                "framewire_worker_stats_seconds",
                "Statistics and detectors time per picture",
                &[0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016],
            ),
            dlq_records: b.counter_vec(
                "framewire_worker_dlq_records_total",
                "Poison records copied to the DLQ topic",
                &["camera", "reason"],
            ),
            dlq_delivery_errors: b.counter_vec(
                "framewire_worker_dlq_delivery_errors_total",
                "Poison records the DLQ topic did not accept",
                camera,
            ),
            consumer_lag: b.gauge_vec(
                "framewire_worker_consumer_lag",
                "Records between the committed offset and the end of each assigned partition",
                &["partition"],
            ),
            rebalances: b.counter_vec(
                "framewire_worker_rebalances_total",
                "Consumer group rebalance callbacks",
                &["kind"],
            ),
            latency_seconds: b.histogram_vec(
                "framewire_worker_latency_seconds",
                "Capture to stats record produced",
                camera,
                &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            ),
            assigned_partitions: b.gauge(
                "framewire_worker_assigned_partitions",
                "Partitions assigned to this replica",
            ),
            parked_records: b.gauge(
                "framewire_worker_parked_records",
                "Records waiting for room in their decoder thread's queue",
            ),
            paused_partitions: b.gauge(
                "framewire_worker_paused_partitions",
                "Partitions paused because a decoder thread they feed has too much parked",
            ),
            open_decoders: b.gauge(
                "framewire_worker_open_decoders",
                "Decoders open now (their memory is most of the worker's)",
            ),
            partition_pauses: b.counter(
                "framewire_worker_partition_pauses_total",
                "Partitions paused because a decoder thread they feed had too much parked",
            ),
            replayed: b.counter(
                "framewire_worker_records_replayed_total",
                "Records decoded only to rebuild decoder state after a takeover",
            ),
            resumes: b.counter_vec(
                "framewire_worker_resumes_total",
                "Partitions assigned, by where reading started",
                &["from"],
            ),
            commits: b.counter_vec(
                "framewire_worker_commits_total",
                "Offset commits by result",
                &["result"],
            ),
            undeliverable: b.counter_vec(
                "framewire_worker_undeliverable_total",
                "Records Kafka can never accept (too large or invalid)",
                &["topic"],
            ),
            detect_pictures: b.counter_vec(
                "framewire_worker_detect_pictures_total",
                "Pictures the object detector analysed",
                camera,
            ),
            detect_skipped: b.counter_vec(
                "framewire_worker_detect_skipped_total",
                "Decoded pictures the object detector did not analyse, by reason",
                &["camera", "reason"],
            ),
            detect_objects: b.counter_vec(
                "framewire_worker_detect_objects_total",
                "Objects reported by the detector, by class",
                &["label"],
            ),
            detect_errors: b.counter_vec(
                "framewire_worker_detect_errors_total",
                "Pictures whose inference failed",
                camera,
            ),
            inference_seconds: b.histogram_vec(
                "framewire_worker_inference_seconds",
                "Time of one inference (one batch of pictures)",
                &["backend"],
                &[0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.4, 0.8, 1.6],
            ),
            detect_batch: b.histogram(
                "framewire_worker_detect_batch_size",
                "Pictures per inference",
                &[1.0, 2.0, 4.0, 8.0, 16.0],
            ),
            detect_preprocess_seconds: b.histogram(
                "framewire_worker_detect_preprocess_seconds",
                "Decoded picture to input tensor",
                &[0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032],
            ),
            detect_queue: b.gauge(
                "framewire_worker_detect_queue_depth",
                "Pictures queued for inference",
            ),
            detect_parked: b.gauge(
                "framewire_worker_detect_parked_pictures",
                "Pictures waiting for room in the inference queue",
            ),
            detect_wait_seconds: b.histogram(
                "framewire_worker_detect_wait_seconds",
                "Decoded to inference started",
                &[0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            ),
        }
    }
}

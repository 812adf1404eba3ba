//! Sink metrics, in one place so dashboards and alerts have one list to read.
//!
//! Label `camera` is the camera id (validated, so bounded by the fleet's cameras);
//! `backend` is `sqlite` or `postgres`; `op` names a database operation. Records are
//! counted per record, which is per frame, not per pixel: cheap enough for the hot loop.

use framewire_kit::metrics::Builder;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

/// Every metric the sink exports.
#[derive(Clone)]
pub struct Metrics {
    /// `framewire_sink_records_total`: stats records counted in a window.
    pub records: IntCounterVec,
    /// `framewire_sink_duplicates_total`: re-delivered frames (same camera, session, seq
    /// in the same window) ignored.
    pub duplicates: IntCounterVec,
    /// `framewire_sink_late_records_total`: frames whose window was already written and
    /// evicted from memory; ignored.
    pub late: IntCounterVec,
    /// `framewire_sink_bad_records_total`: records that are not a valid stats record
    /// (bad JSON, wrong fields, bad camera id); logged with partition/offset and skipped.
    pub bad_records: IntCounter,
    /// `framewire_sink_rows_written_total`: summary rows inserted or replaced.
    pub rows_written: IntCounterVec,
    /// `framewire_sink_write_seconds`: duration of one flush transaction.
    pub write_seconds: Histogram,
    /// `framewire_sink_db_errors_total`: failed database operations.
    pub db_errors: IntCounterVec,
    /// `framewire_sink_windows_open`: camera windows held in memory.
    pub windows_open: IntGauge,
    /// `framewire_sink_kafka_errors_total`: consumer and offset-store errors.
    pub kafka_errors: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> Self {
        let b = Builder(registry);
        let camera = &["camera"];
        Metrics {
            records: b.counter_vec(
                "framewire_sink_records_total",
                "Stats records counted in a window",
                camera,
            ),
            duplicates: b.counter_vec(
                "framewire_sink_duplicates_total",
                "Re-delivered frames (same camera, session and seq in a window) ignored",
                camera,
            ),
            late: b.counter_vec(
                "framewire_sink_late_records_total",
                "Frames whose window was already written and evicted; ignored",
                camera,
            ),
            bad_records: b.counter(
                "framewire_sink_bad_records_total",
                "Records that are not valid stats records; skipped",
            ),
            rows_written: b.counter_vec(
                "framewire_sink_rows_written_total",
                "Summary rows inserted or replaced",
                camera,
            ),
            write_seconds: b.histogram(
                "framewire_sink_write_seconds",
                "Duration of one flush transaction",
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            db_errors: b.counter_vec(
                "framewire_sink_db_errors_total",
                "Failed database operations",
                &["backend", "op"],
            ),
            windows_open: b.gauge(
                "framewire_sink_windows_open",
                "Camera windows held in memory",
            ),
            kafka_errors: b.counter_vec(
                "framewire_sink_kafka_errors_total",
                "Kafka consumer and offset store errors",
                &["op"],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exported() {
        let registry = framewire_kit::metrics::registry();
        let m = Metrics::new(&registry);
        m.records.with_label_values(&["cam"]).inc();
        m.duplicates.with_label_values(&["cam"]).inc();
        m.late.with_label_values(&["cam"]).inc();
        m.rows_written.with_label_values(&["cam"]).inc();
        m.db_errors.with_label_values(&["sqlite", "upsert"]).inc();
        m.kafka_errors.with_label_values(&["recv"]).inc();
        m.bad_records.inc();
        m.write_seconds.observe(0.01);
        m.windows_open.set(3);
        let text = framewire_kit::metrics::render(&registry);
        for name in [
            "framewire_sink_records_total{camera=\"cam\"} 1",
            "framewire_sink_duplicates_total{camera=\"cam\"} 1",
            "framewire_sink_late_records_total{camera=\"cam\"} 1",
            "framewire_sink_bad_records_total 1",
            "framewire_sink_rows_written_total{camera=\"cam\"} 1",
            "framewire_sink_write_seconds_count 1",
            "framewire_sink_db_errors_total{backend=\"sqlite\",op=\"upsert\"} 1",
            "framewire_sink_windows_open 3",
            "framewire_sink_kafka_errors_total{op=\"recv\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}

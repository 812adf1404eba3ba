//! The sink's pipeline: stats records from Kafka into windows, windows into the database,
//! and Kafka offsets stored only once what they cover is safely written.
//!
//! Delivery is at-least-once with exactly-once counting:
//! - `enable.auto.offset.store=false`: an offset is stored (and then auto-committed) only
//!   after the flush that includes its record succeeded. A failed write stores nothing,
//!   keeps the windows dirty and is retried on the next tick.
//! - The stored offset never passes the first record of a window still in memory
//!   ([`Windows::offset_floors`]), so after a restart or rebalance every open window is
//!   replayed from its first frame and rewritten whole; re-delivered frames are counted
//!   once by `(camera, session, seq)`.
//! - Records that are not valid stats records are counted, logged with their partition
//!   and offset, and skipped: the sink never stops on input.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framewire_kit::admin::Readiness;
use framewire_kit::kafka::{KafkaConfig, KafkaSetupError, header};
use framewire_kit::shutdown::Shutdown;
use framewire_kit::telemetry;
use framewire_wire::{StatsRecord, validate_camera_id};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::window::{Observed, Source, Windows};

/// Creates the sink's consumer in `group_id`, subscribed to the stats `topic`.
pub fn consumer(
    kafka: &KafkaConfig,
    group_id: &str,
    topic: &str,
) -> Result<StreamConsumer, KafkaSetupError> {
    let consumer: StreamConsumer = kafka
        .client_config(
            "framewire-sink",
            &[
                ("group.id", group_id),
                ("enable.auto.commit", "true"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
            ],
        )
        .create()
        .map_err(|source| KafkaSetupError::Client {
            what: "consumer",
            source,
        })?;
    consumer
        .subscribe(&[topic])
        .map_err(|source| KafkaSetupError::Client {
            what: "consumer subscription",
            source,
        })?;
    Ok(consumer)
}

/// Per partition, how far the sink has read and what it last stored.
///
/// Offsets here are always the *next* offset to read, the Kafka committed-offset
/// convention, and are stored with `store_offsets` (which takes them as given).
/// `Consumer::store_offset(topic, partition, offset)` wraps the legacy
/// `rd_kafka_offset_store`, which adds 1 itself: passing a next offset there would skip a
/// record on every commit (rust-rdkafka #851).
#[derive(Debug, Default)]
pub struct Offsets {
    /// Highest offset read, per partition.
    highest: BTreeMap<i32, i64>,
    /// Last offset stored, per partition (next to read).
    stored: BTreeMap<i32, i64>,
}

impl Offsets {
    /// Records that the record at `offset` of `partition` was read.
    pub fn consumed(&mut self, partition: i32, offset: i64) {
        self.highest
            .entry(partition)
            .and_modify(|h| *h = (*h).max(offset))
            .or_insert(offset);
    }

    /// The offsets to store now that everything read is written, except what windows
    /// still in memory need (`floors`): per partition `min(floor, highest + 1)`, only
    /// where that differs from what was stored last.
    pub fn to_store(&self, floors: &BTreeMap<i32, i64>) -> Vec<(i32, i64)> {
        self.highest
            .iter()
            .map(|(&p, &h)| {
                let next = h.saturating_add(1);
                (p, floors.get(&p).map_or(next, |&f| f.min(next)))
            })
            .filter(|(p, o)| self.stored.get(p) != Some(o))
            .collect()
    }

    /// Records a successful store.
    pub fn stored(&mut self, partition: i32, offset: i64) {
        self.stored.insert(partition, offset);
    }

    /// Forgets a partition this consumer no longer owns.
    pub fn forget(&mut self, partition: i32) {
        self.highest.remove(&partition);
        self.stored.remove(&partition);
    }
}

/// The last database write error, shared with the `database` readiness probe so that a
/// database that answers pings but rejects writes still reads as not ready.
#[derive(Debug, Clone, Default)]
pub struct WriteHealth(Arc<Mutex<Option<String>>>);

impl WriteHealth {
    fn set(&self, error: Option<String>) {
        let mut g = match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = error;
    }

    /// The last write's error, if it failed.
    pub fn last_error(&self) -> Option<String> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Reads stats records, keeps windows, writes them and stores offsets.
pub struct Pipeline {
    consumer: Arc<StreamConsumer>,
    topic: String,
    windows: Windows,
    offsets: Offsets,
    store: Store,
    metrics: Metrics,
    readiness: Readiness,
    health: WriteHealth,
    flush_interval: Duration,
    /// Consecutive failed flushes, and when the last one was logged as a warning.
    failures: u64,
    last_warning: Option<Instant>,
}

/// While writes keep failing, a warning is logged at most this often (every failure is
/// counted in `framewire_sink_db_errors_total`).
const FAILURE_WARN_EVERY: Duration = Duration::from_secs(60);

impl Pipeline {
    /// A pipeline on `consumer` (already subscribed to `topic`) writing to `store`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        consumer: Arc<StreamConsumer>,
        topic: &str,
        window_ms: i64,
        flush_interval: Duration,
        store: Store,
        metrics: Metrics,
        readiness: Readiness,
        health: WriteHealth,
    ) -> Self {
        Pipeline {
            consumer,
            topic: topic.to_owned(),
            windows: Windows::new(window_ms),
            offsets: Offsets::default(),
            store,
            metrics,
            readiness,
            health,
            flush_interval,
            failures: 0,
            last_warning: None,
        }
    }

    /// Consumes and flushes until shutdown. Call [`Pipeline::finish`] afterwards.
    pub async fn run(&mut self, shutdown: &Shutdown) {
        let consumer = self.consumer.clone();
        let mut ticker = tokio::time::interval(self.flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {
                    self.flush().await;
                }
                msg = consumer.recv() => match msg {
                    Ok(m) => self.handle(&m),
                    Err(e) => {
                        self.metrics.kafka_errors.with_label_values(&["recv"]).inc();
                        tracing::warn!(error = %e, topic = %self.topic, "Kafka consumer error");
                    }
                },
            }
        }
    }

    /// The last flush on shutdown: write what is dirty, store offsets, and commit them
    /// synchronously. Bound it with the grace period.
    pub async fn finish(&mut self) {
        let flushed = self.flush().await;
        let consumer = self.consumer.clone();
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync))
                .await;
        match committed {
            Ok(Ok(())) => tracing::info!(flushed, "final offsets committed"),
            Ok(Err(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {
                tracing::info!(flushed, "no offsets to commit");
            }
            Ok(Err(e)) => {
                self.metrics
                    .kafka_errors
                    .with_label_values(&["commit"])
                    .inc();
                tracing::warn!(error = %e, topic = %self.topic, "final offset commit failed; records since the last commit will be re-read");
            }
            Err(e) => tracing::warn!(error = %e, "final offset commit panicked"),
        }
        self.store.close().await;
    }

    /// One record: decode, attach its trace, count it in its window.
    fn handle(&mut self, msg: &BorrowedMessage<'_>) {
        let (partition, offset) = (msg.partition(), msg.offset());
        self.offsets.consumed(partition, offset);
        let rec = match decode(msg.payload()) {
            Ok(r) => r,
            Err(reason) => {
                self.metrics.bad_records.inc();
                tracing::warn!(topic = %self.topic, partition, offset, %reason, "skipping a record that is not a stats record");
                return;
            }
        };
        let span = tracing::info_span!("sink.record", camera = %rec.camera, session = %rec.session, seq = rec.seq, partition, offset);
        telemetry::set_parent_from(&span, |name| header(msg.headers(), name));
        let _entered = span.enter();
        let camera = [rec.camera.as_str()];
        match self
            .windows
            .observe(&rec, Source { partition, offset }, now_ms())
        {
            Observed::Counted => self.metrics.records.with_label_values(&camera).inc(),
            Observed::Duplicate => self.metrics.duplicates.with_label_values(&camera).inc(),
            Observed::Late => {
                self.metrics.late.with_label_values(&camera).inc();
                tracing::debug!(camera = %rec.camera, capture_ms = rec.capture_ms, "frame for a window already written; ignored");
            }
        }
    }

    /// Writes dirty windows in one transaction; on success evicts old windows and stores
    /// offsets. On failure nothing is stored and the windows stay dirty. Returns whether
    /// everything dirty is now written.
    async fn flush(&mut self) -> bool {
        let batch = self.windows.take_dirty();
        if !batch.is_empty() {
            let span = tracing::info_span!("sink.flush", windows = batch.len(), backend = %self.store.backend());
            let timer = self.metrics.write_seconds.start_timer();
            let result = self
                .store
                .upsert(&batch, now_ms())
                .instrument(span.clone())
                .await;
            let _entered = span.enter(); // no await below
            match result {
                Ok(done) => {
                    timer.observe_duration();
                    for (i, s) in batch.iter().enumerate() {
                        if !done.kept.contains(&i) {
                            self.metrics
                                .rows_written
                                .with_label_values(&[s.camera.as_str()])
                                .inc();
                        }
                    }
                    if !done.kept.is_empty() {
                        tracing::debug!(
                            kept = done.kept.len(),
                            "stored rows with more frames were kept"
                        );
                    }
                    if self.failures > 0 {
                        tracing::info!(
                            failed_flushes = self.failures,
                            "writing summaries works again"
                        );
                        self.failures = 0;
                        self.last_warning = None;
                    }
                    self.health.set(None);
                    self.readiness.set_ready("database");
                }
                Err(e) => {
                    timer.stop_and_discard();
                    self.windows.restore_dirty(&batch);
                    self.metrics
                        .db_errors
                        .with_label_values(&[self.store.backend().as_str(), "upsert"])
                        .inc();
                    self.failures += 1;
                    if self
                        .last_warning
                        .is_none_or(|t| t.elapsed() >= FAILURE_WARN_EVERY)
                    {
                        self.last_warning = Some(Instant::now());
                        tracing::warn!(error = %e, windows = batch.len(), failed_flushes = self.failures, "writing summaries failed; retrying every flush, offsets not stored");
                    } else {
                        tracing::debug!(error = %e, failed_flushes = self.failures, "writing summaries failed again");
                    }
                    let reason = format!("writing summaries failed: {e}");
                    self.health.set(Some(reason.clone()));
                    self.readiness.set_not_ready("database", reason);
                    return false;
                }
            }
        }
        self.windows.evict(now_ms());
        self.metrics
            .windows_open
            .set(i64::try_from(self.windows.open()).unwrap_or(i64::MAX));
        self.store_offsets();
        true
    }

    /// Stores, per partition, the offset everything before which is written.
    fn store_offsets(&mut self) {
        for (partition, offset) in self.offsets.to_store(&self.windows.offset_floors()) {
            let mut tpl = TopicPartitionList::new();
            if let Err(e) = tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
            {
                tracing::warn!(error = %e, partition, offset, "cannot build the offset list");
                continue;
            }
            match self.consumer.store_offsets(&tpl) {
                Ok(()) => self.offsets.stored(partition, offset),
                Err(KafkaError::StoreOffset(
                    RDKafkaErrorCode::State | RDKafkaErrorCode::UnknownPartition,
                )) => {
                    tracing::debug!(
                        partition,
                        "partition no longer assigned; its offset is the new owner's"
                    );
                    self.offsets.forget(partition);
                }
                Err(e) => {
                    self.metrics
                        .kafka_errors
                        .with_label_values(&["store_offset"])
                        .inc();
                    tracing::warn!(error = %e, topic = %self.topic, partition, offset, "cannot store offset; retrying next flush");
                }
            }
        }
    }
}

/// Parses a stats record value; the error says what is wrong, for the log.
pub fn decode(payload: Option<&[u8]>) -> Result<StatsRecord, String> {
    let bytes = payload.ok_or_else(|| "empty value".to_owned())?;
    let rec: StatsRecord =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid stats JSON: {e}"))?;
    validate_camera_id(&rec.camera)?;
    Ok(rec)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_store_the_next_offset_but_never_past_an_open_window() {
        let mut o = Offsets::default();
        for off in [10, 11, 12] {
            o.consumed(0, off);
        }
        o.consumed(1, 5);
        let none = BTreeMap::new();
        assert_eq!(o.to_store(&none), [(0, 13), (1, 6)], "next offset to read");

        let floors = BTreeMap::from([(0, 11)]);
        assert_eq!(
            o.to_store(&floors),
            [(0, 11), (1, 6)],
            "window still open from offset 11"
        );
        o.stored(0, 11);
        o.stored(1, 6);
        assert!(o.to_store(&floors).is_empty(), "nothing new");
        assert_eq!(o.to_store(&none), [(0, 13)], "window evicted: move on");

        o.forget(1);
        o.consumed(1, 3); // re-read after the partition came back
        assert_eq!(o.to_store(&none), [(0, 13), (1, 4)]);
    }

    #[test]
    fn bad_records_say_why() {
        assert_eq!(decode(None).unwrap_err(), "empty value");
        assert!(
            decode(Some(b"{not json"))
                .unwrap_err()
                .starts_with("invalid stats JSON")
        );
        assert!(
            decode(Some(br#"{"camera":"a"}"#))
                .unwrap_err()
                .contains("missing field")
        );
        let good = serde_json::json!({
            "camera": "cam-1", "session": "s", "seq": 1, "pts_90k": 0, "capture_ms": 1, "decoded_ms": 2,
            "width": 2, "height": 2, "keyframe": true, "y_avg": 1.0, "y_min": 0, "y_max": 2, "extra": 1
        });
        let rec = decode(Some(good.to_string().as_bytes())).unwrap();
        assert_eq!(rec.camera, "cam-1");
        let mut bad_id = good;
        bad_id["camera"] = "a b".into();
        assert!(
            decode(Some(bad_id.to_string().as_bytes()))
                .unwrap_err()
                .contains("camera id")
        );
    }
}

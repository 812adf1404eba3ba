//! The sink's pipeline: stats records, dead letters and detections records from Kafka into
//! windows, windows into the database, and Kafka offsets stored only once what they cover
//! is durable. All three topics are read by one consumer in one group, so detections get
//! exactly the machinery of statistics: merged into the same window states, idempotent on
//! `(camera, session, seq)`, offsets stored only after the flush.
//!
//! Delivery is at-least-once with exactly-once counting:
//! - `enable.auto.offset.store=false`: offsets are stored (and then auto-committed) only
//!   after the flush that merged every record read so far into the database committed.
//!   A failed flush stores nothing; its frames go back to their windows and the flush is
//!   retried with exponential backoff (`flush_interval_ms` doubling up to
//!   `retry_max_ms`), `/readyz` answers 503, and when more than `max_pending_frames`
//!   wait, consumption pauses so the rest waits in Kafka.
//! - Every record re-read after a restart or rebalance, and every frame a worker
//!   re-processed, meets the durable window state at the merge and is dropped there as a
//!   duplicate ([`crate::store`]), so it is counted once.
//! - Records that are neither stats records nor readable dead letters are counted,
//!   logged with their partition and offset, and skipped: the sink never stops on input.
//!   Detections records that break their schema are counted by reason
//!   (`framewire_sink_bad_detections_total`) and logged once per camera and reason.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framewire_kit::admin::Readiness;
use framewire_kit::kafka::{KafkaConfig, KafkaSetupError, header};
use framewire_kit::shutdown::Shutdown;
use framewire_kit::telemetry;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tracing::Instrument;

use crate::cameras::{CameraRow, Cameras, LatestPicture};
use crate::frame::{self, BadDetections, Frame, Position, Refused};
use crate::incidents::Incident;
use crate::metrics::Metrics;
use crate::store::{FlushInput, Store, StoreError};
use crate::window::{Batch, Observed, Windows};

/// Creates the sink's consumer in `group_id`, subscribed to `topics`.
pub fn consumer(
    kafka: &KafkaConfig,
    group_id: &str,
    topics: &[&str],
) -> Result<StreamConsumer, KafkaSetupError> {
    let consumer: StreamConsumer = kafka
        .client_config(
            "framewire-sink",
            &[
                ("group.id", group_id),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "1000"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                // A sink that died hands its partitions over after this long.
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "3000"),
            ],
        )
        .create()
        .map_err(|source| KafkaSetupError::Client {
            what: "consumer",
            source,
        })?;
    consumer
        .subscribe(topics)
        .map_err(|source| KafkaSetupError::Client {
            what: "consumer subscription",
            source,
        })?;
    Ok(consumer)
}

/// Per topic and partition, how far the sink has read and what it last stored.
///
/// Offsets here are always the *next* offset to read, the Kafka committed-offset
/// convention, and are stored with `store_offsets` (which takes them as given).
/// `Consumer::store_offset(topic, partition, offset)` wraps the legacy
/// `rd_kafka_offset_store`, which adds 1 itself: passing a next offset there would skip a
/// record on every commit (rust-rdkafka #851).
#[derive(Debug, Default)]
pub struct Offsets {
    /// Highest offset read.
    highest: BTreeMap<(String, i32), i64>,
    /// Last offset stored (next to read).
    stored: BTreeMap<(String, i32), i64>,
}

impl Offsets {
    /// Records that the record at `offset` was read.
    pub fn consumed(&mut self, topic: &str, partition: i32, offset: i64) {
        let key = (topic.to_owned(), partition);
        self.highest
            .entry(key)
            .and_modify(|h| *h = (*h).max(offset))
            .or_insert(offset);
    }

    /// The offsets to store now that everything read is durable: one past the highest
    /// read, where that differs from what was stored last.
    pub fn to_store(&self) -> Vec<(String, i32, i64)> {
        self.highest
            .iter()
            .map(|((t, p), &h)| (t.clone(), *p, h.saturating_add(1)))
            .filter(|(t, p, o)| self.stored.get(&(t.clone(), *p)) != Some(o))
            .collect()
    }

    /// Records a successful store.
    pub fn stored(&mut self, topic: &str, partition: i32, offset: i64) {
        self.stored.insert((topic.to_owned(), partition), offset);
    }

    /// Forgets a partition this consumer no longer owns.
    pub fn forget(&mut self, topic: &str, partition: i32) {
        let key = (topic.to_owned(), partition);
        self.highest.remove(&key);
        self.stored.remove(&key);
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

/// How the pipeline behaves; from `[sink]` and `[topics]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Stats topic.
    pub stats_topic: String,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Detections topic, when detections are consumed.
    pub detections_topic: Option<String>,
    /// Objects scoring below this are dropped on reading.
    pub min_score: f32,
    /// Time between flushes while writes succeed.
    pub flush_interval: Duration,
    /// Longest wait between attempts while writes fail.
    pub retry_max: Duration,
    /// Frames waiting beyond which consumption pauses.
    pub max_pending_frames: usize,
    /// Cameras not seen for this long are forgotten (None: never).
    pub retention: Option<Duration>,
}

/// The delay before write attempt `failures + 1`: `interval × 2^failures`, at most `max`.
pub fn backoff(interval: Duration, failures: u32, max: Duration) -> Duration {
    interval
        .saturating_mul(2u32.saturating_pow(failures.min(20)))
        .min(max)
        .max(interval.min(max))
}

/// Reads records, keeps windows and cameras, writes them and stores offsets.
pub struct Pipeline {
    consumer: Arc<StreamConsumer>,
    settings: Settings,
    windows: Windows,
    cameras: Cameras,
    offsets: Offsets,
    store: Store,
    metrics: Metrics,
    readiness: Readiness,
    health: WriteHealth,
    /// Consecutive failed flushes, and when the last one was logged as a warning.
    failures: u32,
    last_warning: Option<Instant>,
    paused: bool,
    /// (camera or key, reason) of bad detections records already logged as warnings.
    warned: HashSet<(String, BadDetections)>,
}

/// Bad detections records are logged as a warning once per camera and reason, for at most
/// this many pairs (then at debug level only).
const MAX_WARNED: usize = 10_000;

/// While writes keep failing, a warning is logged at most this often (every failure is
/// counted in `framewire_sink_db_errors_total`).
const FAILURE_WARN_EVERY: Duration = Duration::from_secs(60);

/// Windows per flush transaction: after a long outage the backlog is written in several
/// transactions of bounded size, each well inside the write timeout.
pub const MAX_WINDOWS_PER_TRANSACTION: usize = 2_000;

impl Pipeline {
    /// A pipeline on `consumer` (already subscribed) writing to `store`, continuing the
    /// stored `cameras` (whose clocks `windows` already carries).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        consumer: Arc<StreamConsumer>,
        settings: Settings,
        windows: Windows,
        cameras: Cameras,
        store: Store,
        metrics: Metrics,
        readiness: Readiness,
        health: WriteHealth,
    ) -> Self {
        Pipeline {
            consumer,
            settings,
            windows,
            cameras,
            offsets: Offsets::default(),
            store,
            metrics,
            readiness,
            health,
            failures: 0,
            last_warning: None,
            paused: false,
            warned: HashSet::new(),
        }
    }

    /// Consumes and flushes until shutdown. Call [`Pipeline::finish`] afterwards.
    pub async fn run(&mut self, shutdown: &Shutdown) {
        let consumer = self.consumer.clone();
        let mut next_flush = tokio::time::Instant::now() + self.settings.flush_interval;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next_flush) => {
                    let wait = if self.flush().await {
                        self.settings.flush_interval
                    } else {
                        backoff(self.settings.flush_interval, self.failures.saturating_sub(1), self.settings.retry_max)
                    };
                    next_flush = tokio::time::Instant::now() + wait;
                }
                msg = consumer.recv() => match msg {
                    Ok(m) => {
                        self.handle(&m);
                        self.pause_if_full();
                    }
                    Err(e) => {
                        self.metrics.kafka_errors.with_label_values(&["recv"]).inc();
                        tracing::warn!(error = %e, "Kafka consumer error");
                    }
                },
            }
        }
    }

    /// The last flush on shutdown: write what waits, store offsets, and commit them
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
                tracing::warn!(error = %e, "final offset commit failed; records since the last commit will be re-read");
            }
            Err(e) => tracing::warn!(error = %e, "final offset commit panicked"),
        }
        self.store.close().await;
    }

    /// One record: read it as a frame, attach its trace, note it for its camera and its
    /// window (or count it late).
    fn handle(&mut self, msg: &BorrowedMessage<'_>) {
        let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
        self.offsets.consumed(topic, partition, offset);
        if self.settings.detections_topic.as_deref() == Some(topic) {
            match frame::from_detections(msg.payload(), self.settings.min_score) {
                Ok(f) => {
                    let span = tracing::info_span!("sink.detections", camera = %f.camera, session = %f.session, seq = f.seq, partition, offset);
                    telemetry::set_parent_from(&span, |name| header(msg.headers(), name));
                    let _entered = span.enter();
                    self.metrics
                        .detections
                        .with_label_values(&[f.camera.as_str()])
                        .inc();
                    self.observe(f);
                }
                Err(refused) => {
                    let key = msg.key().and_then(|k| std::str::from_utf8(k).ok());
                    self.refused(&refused, key, partition, offset);
                }
            }
            return;
        }
        let dead_letter = topic == self.settings.dlq_topic;
        let parsed = if dead_letter {
            let at = Position {
                partition,
                offset,
                timestamp_ms: msg.timestamp().to_millis(),
            };
            frame::from_dead_letter(|name| header(msg.headers(), name), msg.key(), at)
        } else {
            frame::from_stats(msg.payload()).map(Some)
        };
        let frame = match parsed {
            Ok(Some(f)) => f,
            Ok(None) => return, // a dead letter that is not a decode error
            Err(reason) => {
                self.metrics.bad_records.inc();
                tracing::warn!(topic, partition, offset, %reason, "skipping a record that is not a stats record or dead letter");
                return;
            }
        };
        let span = tracing::info_span!("sink.record", camera = %frame.camera, session = %frame.session, seq = frame.seq, partition, offset);
        telemetry::set_parent_from(&span, |name| header(msg.headers(), name));
        let _entered = span.enter();
        let counter = if dead_letter {
            &self.metrics.dead_letters
        } else {
            &self.metrics.records
        };
        counter.with_label_values(&[frame.camera.as_str()]).inc();
        self.observe(frame);
    }

    /// A detections record that breaks the schema: counted by reason, logged as a warning
    /// the first time per camera (its id, else the record key) and reason.
    fn refused(&mut self, r: &Refused, key: Option<&str>, partition: i32, offset: i64) {
        self.metrics
            .bad_detections
            .with_label_values(&[r.reason.as_str()])
            .inc();
        let whose = r
            .camera
            .as_deref()
            .or(key.filter(|k| framewire_wire::validate_camera_id(k).is_ok()))
            .unwrap_or("-");
        let first =
            self.warned.len() < MAX_WARNED && self.warned.insert((whose.to_owned(), r.reason));
        if first {
            tracing::warn!(camera = whose, reason = r.reason.as_str(), partition, offset, error = %r.message, "skipping a detections record that breaks its schema (logged once per camera and reason; counted in framewire_sink_bad_detections_total)");
        } else {
            tracing::debug!(camera = whose, reason = r.reason.as_str(), partition, offset, error = %r.message, "skipping a bad detections record");
        }
    }

    fn observe(&mut self, frame: Frame) {
        let now = now_ms();
        self.cameras.observe(&frame, now);
        let (camera, capture_ms) = (frame.camera.clone(), frame.capture_ms);
        if self.windows.observe(frame, now) == Observed::Late {
            self.metrics
                .late
                .with_label_values(&[camera.as_str()])
                .inc();
            tracing::debug!(%camera, capture_ms, "frame for a closed window; merged into its stored state at the next flush");
        }
    }

    /// Pauses consumption while too many frames wait for the database.
    fn pause_if_full(&mut self) {
        if self.windows.pending() < self.settings.max_pending_frames {
            return;
        }
        match self.consumer.assignment() {
            Ok(tpl) => match self.consumer.pause(&tpl) {
                Ok(()) => {
                    if !self.paused {
                        tracing::warn!(
                            pending = self.windows.pending(),
                            "too many frames wait for the database; consumption paused"
                        );
                    }
                    self.paused = true;
                    self.metrics.paused.set(1);
                }
                Err(e) => tracing::warn!(error = %e, "cannot pause consumption"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot read the assignment to pause it"),
        }
    }

    fn resume(&mut self) {
        if !self.paused {
            return;
        }
        let resumed = self
            .consumer
            .assignment()
            .and_then(|tpl| self.consumer.resume(&tpl));
        match resumed {
            Ok(()) => {
                self.paused = false;
                self.metrics.paused.set(0);
                tracing::info!("consumption resumed");
            }
            Err(e) => tracing::warn!(error = %e, "cannot resume consumption; retrying"),
        }
    }

    /// Merges every waiting frame, camera and incident into the database, in
    /// transactions of at most [`MAX_WINDOWS_PER_TRANSACTION`] windows (cameras and
    /// incidents go with the last, so a stored clock never runs ahead of stored
    /// windows); then stores offsets. On failure what is not written is put back and no
    /// offset is stored. Returns whether everything was written (or there was nothing).
    pub async fn flush(&mut self) -> bool {
        let mut batches = self.windows.take_pending();
        let (cameras, incidents) = self.cameras.take_dirty();
        let mut last = (cameras, incidents, self.cameras.take_pictures());
        loop {
            let rest = batches.split_off(batches.len().min(MAX_WINDOWS_PER_TRANSACTION));
            let (cameras, incidents, pictures) = if rest.is_empty() {
                std::mem::take(&mut last)
            } else {
                (Vec::new(), Vec::new(), Vec::new())
            };
            if let Err(e) = self.write(&batches, &cameras, &incidents, &pictures).await {
                self.windows.restore(batches);
                self.windows.restore(rest);
                self.cameras.restore(&cameras, incidents);
                self.cameras.restore(&last.0, std::mem::take(&mut last.1));
                self.cameras.restore_pictures(pictures);
                self.cameras.restore_pictures(std::mem::take(&mut last.2));
                self.failed(&e);
                return false;
            }
            if rest.is_empty() {
                break;
            }
            batches = rest;
        }
        if self.failures > 0 {
            tracing::info!(
                failed_flushes = self.failures,
                "writing to the database works again"
            );
            self.failures = 0;
            self.last_warning = None;
        }
        self.health.set(None);
        self.readiness.set_ready("database");
        let now = now_ms();
        self.windows.close(now);
        if let Some(keep) = self.settings.retention {
            let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            for camera in self.cameras.forget_older_than(now.saturating_sub(keep_ms)) {
                self.metrics.forget_camera(&camera);
            }
        }
        self.metrics
            .windows_open
            .set(i64::try_from(self.windows.open()).unwrap_or(i64::MAX));
        self.metrics
            .pending_frames
            .set(i64::try_from(self.windows.pending()).unwrap_or(i64::MAX));
        self.store_offsets();
        self.resume();
        true
    }

    /// One flush transaction, with its metrics.
    async fn write(
        &self,
        batches: &[Batch],
        cameras: &[CameraRow],
        incidents: &[Incident],
        pictures: &[LatestPicture],
    ) -> Result<(), StoreError> {
        let span = tracing::info_span!("sink.flush", windows = batches.len(), cameras = cameras.len(), incidents = incidents.len(), pictures = pictures.len(), backend = %self.store.backend());
        let timer = self.metrics.write_seconds.start_timer();
        let input = FlushInput {
            windows: batches,
            cameras,
            incidents,
            pictures,
            window_ms: self.windows.window_ms(),
            now_ms: now_ms(),
        };
        let merged = match self.store.flush(input).instrument(span).await {
            Ok(m) => m,
            Err(e) => {
                timer.stop_and_discard();
                return Err(e);
            }
        };
        timer.observe_duration();
        for m in &merged {
            let camera = [m.summary.camera.as_str()];
            self.metrics.rows_written.with_label_values(&camera).inc();
            if m.duplicates > 0 {
                self.metrics
                    .duplicates
                    .with_label_values(&camera)
                    .inc_by(m.duplicates);
            }
            if m.state_reset {
                self.metrics.state_resets.inc();
            }
            if m.pictures_counted > 0 {
                self.metrics
                    .pictures
                    .with_label_values(&camera)
                    .inc_by(m.pictures_counted);
            }
            if m.picture_duplicates > 0 {
                self.metrics
                    .picture_duplicates
                    .with_label_values(&camera)
                    .inc_by(m.picture_duplicates);
            }
            for (label, &n) in &m.objects_counted {
                self.metrics.count_objects(camera[0], label, n);
            }
        }
        for i in incidents {
            self.metrics
                .events_written
                .with_label_values(&[i.kind.as_str()])
                .inc();
        }
        Ok(())
    }

    /// Bookkeeping of a failed flush: metrics, a rate-limited warning, readiness.
    fn failed(&mut self, e: &StoreError) {
        self.metrics
            .db_errors
            .with_label_values(&[self.store.backend().as_str(), "flush"])
            .inc();
        self.failures = self.failures.saturating_add(1);
        self.metrics
            .pending_frames
            .set(i64::try_from(self.windows.pending()).unwrap_or(i64::MAX));
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= FAILURE_WARN_EVERY)
        {
            self.last_warning = Some(Instant::now());
            tracing::warn!(error = %e, pending = self.windows.pending(), failed_flushes = self.failures, "writing to the database failed; retrying with backoff, offsets not stored");
        } else {
            tracing::debug!(error = %e, failed_flushes = self.failures, "writing to the database failed again");
        }
        let reason = format!("writing summaries failed: {e}");
        self.health.set(Some(reason.clone()));
        self.readiness.set_not_ready("database", reason);
    }

    /// Stores, per partition, the offset everything before which is durable.
    fn store_offsets(&mut self) {
        for (topic, partition, offset) in self.offsets.to_store() {
            let mut tpl = TopicPartitionList::new();
            if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset)) {
                tracing::warn!(error = %e, topic, partition, offset, "cannot build the offset list");
                continue;
            }
            match self.consumer.store_offsets(&tpl) {
                Ok(()) => self.offsets.stored(&topic, partition, offset),
                Err(KafkaError::StoreOffset(
                    RDKafkaErrorCode::State | RDKafkaErrorCode::UnknownPartition,
                )) => {
                    tracing::debug!(
                        topic,
                        partition,
                        "partition no longer assigned; its offset is the new owner's"
                    );
                    self.offsets.forget(&topic, partition);
                }
                Err(e) => {
                    self.metrics
                        .kafka_errors
                        .with_label_values(&["store_offset"])
                        .inc();
                    tracing::warn!(error = %e, topic, partition, offset, "cannot store offset; retrying next flush");
                }
            }
        }
    }
}

/// Wall clock, ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_store_the_next_offset_per_topic_and_partition() {
        let mut o = Offsets::default();
        for off in [10, 12, 11] {
            o.consumed("stats", 0, off);
        }
        o.consumed("stats", 1, 5);
        o.consumed("dlq", 0, 3);
        let want = |v: &[(&str, i32, i64)]| -> Vec<(String, i32, i64)> {
            v.iter().map(|(t, p, o)| (t.to_string(), *p, *o)).collect()
        };
        assert_eq!(
            o.to_store(),
            want(&[("dlq", 0, 4), ("stats", 0, 13), ("stats", 1, 6)])
        );
        o.stored("stats", 0, 13);
        o.stored("stats", 1, 6);
        o.stored("dlq", 0, 4);
        assert!(o.to_store().is_empty(), "nothing new");
        o.consumed("stats", 1, 6);
        assert_eq!(o.to_store(), want(&[("stats", 1, 7)]));

        o.forget("stats", 1);
        o.consumed("stats", 1, 3); // re-read after the partition came back
        assert_eq!(o.to_store(), want(&[("stats", 1, 4)]));
    }

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let s = Duration::from_secs(1);
        let max = Duration::from_secs(30);
        let waits: Vec<u64> = (0..8).map(|f| backoff(s, f, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(s, u32::MAX, max), max);
    }
}

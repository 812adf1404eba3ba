//! The worker's pipeline: consume frames → decode on the pool → publish stats → commit.
//!
//! Offsets are stored only after the stats of a record are delivered (or the record is
//! known to produce none, or it was copied to the DLQ), through an [`OffsetTracker`], so
//! a crash re-processes but never loses frames; the sink is idempotent on
//! (camera, session, seq).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framewire_kit::admin::Readiness;
use framewire_kit::kafka::{self, KafkaSetupError, header, headers};
use framewire_kit::shutdown::{Shutdown, drain_within};
use framewire_kit::telemetry;
use framewire_wire::{FrameMeta, header as h};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::assignment::{Assignment, Seen};
use crate::config::{Config, DecodeMode, LagPolicy};
use crate::decode::{DecodePool, Job, Outcome, PoolConfig, Refused};
use crate::lag::{LagGate, Verdict};
use crate::metrics::Metrics;
use crate::offsets::OffsetTracker;
use crate::parking::Parking;
use crate::poison::Reason;
use crate::snapshot::Watchers;

/// How often librdkafka reports partition offsets (the lag gauge's resolution).
const STATISTICS_INTERVAL_MS: &str = "5000";

/// Consumer callbacks: keeps the partition gauges and the debug view current, and
/// forgets the offset state of revoked partitions.
pub struct WorkerContext {
    metrics: Metrics,
    tracker: Arc<Mutex<OffsetTracker>>,
    assignment: Arc<Assignment>,
    topic: String,
    /// What revocations took away, for the consumer loop to drop.
    revoked: Arc<Mutex<Revoked>>,
}

/// Partitions revoked since the consumer loop last looked, and their cameras.
#[derive(Debug, Default)]
struct Revoked {
    /// Partitions whose parked records are dropped (and which are resumed if paused).
    partitions: Vec<i32>,
    /// Cameras whose decoders are flushed and dropped.
    cameras: Vec<String>,
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for p in topic.partitions.values() {
            // The committed offset is what KEDA compares with the end of the partition.
            if let Some(lag) = self
                .assignment
                .offsets(p.partition, p.hi_offset, p.committed_offset)
            {
                self.metrics
                    .consumer_lag
                    .with_label_values(&[&p.partition.to_string()])
                    .set(lag);
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn post_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Ok(assignment) = base.assignment() {
            self.metrics
                .assigned_partitions
                .set(assignment.count() as i64);
        }
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                self.assignment
                    .assign(tpl.elements().iter().map(|e| e.partition()));
                tracing::info!(partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                self.metrics.rebalances.with_label_values(&["revoke"]).inc();
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
                for &p in &revoked {
                    tracker.forget(p);
                    let _ = self
                        .metrics
                        .consumer_lag
                        .remove_label_values(&[&p.to_string()]);
                }
                let cameras = self.assignment.revoke(&revoked);
                let mut gone = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
                gone.cameras.extend(cameras);
                gone.partitions.extend(revoked);
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(e) => {
                self.metrics.rebalances.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "rebalance error")
            }
        }
    }
}

/// What the pipeline shares with the admin server's debug routes.
#[derive(Clone, Default)]
pub struct Shared {
    /// Partitions and cameras of this replica.
    pub assignment: Arc<Assignment>,
    /// Waiters for decoded pictures.
    pub watchers: Arc<Watchers>,
}

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

type WorkerConsumer = StreamConsumer<WorkerContext>;

/// Tracks in-flight offsets and stores commit points on the consumer.
struct Committer {
    consumer: Arc<WorkerConsumer>,
    tracker: Arc<Mutex<OffsetTracker>>,
    topic: String,
}

impl Committer {
    fn tracker(&self) -> std::sync::MutexGuard<'_, OffsetTracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, partition: i32, offset: i64, camera: &str, keyframe: bool) {
        self.tracker()
            .start(partition, offset, camera, keyframe, Instant::now());
    }

    fn finish(&self, partition: i32, offset: i64) {
        let moved = self.tracker().finish(partition, offset, Instant::now());
        if let Some(next) = moved {
            self.store(partition, next);
        }
    }

    /// Releases cameras that went silent, so they never hold a partition's commit back.
    fn release_idle(&self) {
        let moved = self.tracker().release_idle(Instant::now());
        for (partition, next) in moved {
            self.store(partition, next);
        }
    }

    fn store(&self, partition: i32, next: i64) {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&self.topic, partition, Offset::Offset(next))
            .is_ok()
            && let Err(e) = self.consumer.store_offsets(&tpl)
        {
            // Expected for a partition revoked meanwhile: its new owner re-reads from the last commit.
            tracing::debug!(partition, next, error = %e, "offset not stored");
        }
    }
}

/// Builds the clients and runs the pipeline until shutdown, then drains.
pub async fn run(
    config: &Config,
    readiness: &Readiness,
    metrics: Metrics,
    shared: Shared,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    const CLIENT: &str = "framewire-worker";
    let w = &config.worker;
    let tracker = Arc::new(Mutex::new(OffsetTracker::new(Duration::from_millis(
        w.idle_release_ms,
    ))));
    let revoked: Arc<Mutex<Revoked>> = Arc::default();
    let max_bytes = config.topics.max_message_bytes.to_string();
    let consumer: WorkerConsumer = config
        .kafka
        .client_config(
            CLIENT,
            &[
                ("group.id", &w.group_id),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "1000"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", &w.auto_offset_reset),
                ("partition.assignment.strategy", "cooperative-sticky"),
                ("max.partition.fetch.bytes", &max_bytes),
                ("fetch.wait.max.ms", "20"),
                ("statistics.interval.ms", STATISTICS_INTERVAL_MS),
            ],
        )
        .create_with_context(WorkerContext {
            metrics: metrics.clone(),
            tracker: tracker.clone(),
            assignment: shared.assignment.clone(),
            topic: config.topics.frames.clone(),
            revoked: revoked.clone(),
        })
        .map_err(|source| KafkaSetupError::Client {
            what: "consumer",
            source,
        })?;
    let consumer = Arc::new(consumer);
    let producer =
        config
            .kafka
            .producer(CLIENT, w.linger_ms, config.topics.max_message_bytes, 30_000)?;
    consumer.subscribe(&[config.topics.frames.as_str()])?;
    {
        let consumer = consumer.clone();
        let topic = config.topics.frames.clone();
        readiness.spawn_probe(
            "kafka",
            Duration::from_secs(5),
            shutdown.clone(),
            move || kafka::metadata_check(consumer.client(), &topic),
        );
    }

    let committer = Arc::new(Committer {
        consumer: consumer.clone(),
        tracker: tracker.clone(),
        topic: config.topics.frames.clone(),
    });
    let (out_tx, out_rx) = mpsc::channel(1024);
    let pool_config = PoolConfig {
        threads: w.threads(),
        queue: w.queue_frames,
        idle_flush: Duration::from_millis(w.idle_flush_ms),
        evict_after: w.decoder_evict_after(),
        detectors: w.detectors,
        mode: w.decode_mode,
        watchers: shared.watchers.clone(),
    };
    let pool = DecodePool::start(pool_config, out_tx, metrics.clone())?;
    tracing::info!(threads = w.threads(), group = %w.group_id, mode = ?w.decode_mode, lag_policy = ?w.lag_policy, "decoding");
    let dead_letters = DeadLetters {
        producer: producer.clone(),
        topic: config.topics.dlq.clone(),
        committer: committer.clone(),
        metrics: metrics.clone(),
    };
    let publisher = tokio::spawn(publish_loop(
        out_rx,
        producer.clone(),
        config.topics.stats.clone(),
        committer.clone(),
        dead_letters.clone(),
        metrics.clone(),
    ));
    let mut lag_gate = (w.lag_policy == LagPolicy::Realtime).then(|| {
        LagGate::new(
            Duration::from_millis(w.realtime_max_ms),
            w.realtime_max_frames,
        )
    });

    let mut release = tokio::time::interval(Duration::from_secs(1));
    let mut parking: Parking<Job> = Parking::new(pool.threads(), w.queue_max_bytes);
    let pauser = Pauser {
        consumer: &consumer,
        topic: &config.topics.frames,
        metrics: &metrics,
    };
    loop {
        let waiting = parking.waiting_threads();
        let msg = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = release.tick() => {
                committer.release_idle();
                continue;
            }
            room = pool.room(&waiting), if !waiting.is_empty() => {
                let Some(thread) = room else {
                    anyhow::bail!("a decoder thread is gone");
                };
                feed_parked(&pool, &mut parking, thread)?;
                let resume = parking.resumable(thread);
                pauser.resume(&resume, &parking);
                continue;
            }
            m = consumer.recv() => m,
        };
        // Rebalance callbacks run inside recv(): drop revoked partitions' parked records
        // and decoders.
        let gone = std::mem::take(&mut *revoked.lock().unwrap_or_else(|p| p.into_inner()));
        if !gone.partitions.is_empty() {
            pauser.resume(&parking.revoke(&gone.partitions), &parking);
        }
        for camera in gone.cameras {
            pool.forget(&camera).await;
        }
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "consume error");
                continue;
            }
        };
        let (partition, offset) = (msg.partition(), msg.offset());
        let hdrs = msg.headers();
        let meta = FrameMeta::from_headers(|name| header(hdrs, name));
        match &meta {
            Ok(m) => committer.start(partition, offset, &m.camera, m.keyframe),
            Err(_) => committer.start(partition, offset, "", false),
        }
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                let key = msg
                    .key()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .into_owned();
                metrics
                    .decode_errors
                    .with_label_values(&[&key, Reason::BadHeaders.as_str()])
                    .inc();
                tracing::warn!(camera = %key, partition, offset, error = %e, "frames record without valid fw-* headers; copied to the DLQ");
                let mut copied = OwnedHeaders::new();
                if let Some(hdrs) = hdrs {
                    for hd in hdrs.iter() {
                        copied = copied.insert(hd);
                    }
                }
                dead_letters.send(
                    &key,
                    Reason::BadHeaders,
                    msg.payload().unwrap_or_default(),
                    copied,
                    partition,
                    offset,
                );
                continue;
            }
        };
        metrics.records.with_label_values(&[&meta.camera]).inc();
        let now = now_ms();
        let verdict = match lag_gate.as_mut() {
            Some(gate) => gate.check(&meta, now),
            None => Verdict::Decode,
        };
        shared.assignment.seen(Seen {
            camera: &meta.camera,
            session: &meta.session,
            seq: meta.seq,
            partition,
            offset,
            capture_ms: meta.capture_ms,
            now_ms: now,
            skipping: verdict == Verdict::Skip,
        });
        if verdict == Verdict::Skip {
            metrics
                .skipped
                .with_label_values(&[&meta.camera, "realtime"])
                .inc();
            committer.finish(partition, offset);
            continue;
        }
        if w.decode_mode == DecodeMode::Keyframes && !meta.keyframe {
            // Keyframes mode: nothing to decode; read past it at the cost of a header parse.
            committer.finish(partition, offset);
            continue;
        }
        let span = tracing::info_span!("worker_frame", camera = %meta.camera, seq = meta.seq);
        telemetry::set_parent_from(&span, |name| header(hdrs, name));
        let job = Job {
            meta,
            data: msg.payload().unwrap_or_default().to_vec(),
            partition,
            offset,
            span,
            resync: verdict == Verdict::Resume,
        };
        drop(msg);
        // A job whose thread queue is full is parked and consumption goes on for the other
        // threads; partitions pause only when a thread has too much parked (see
        // `crate::parking`). On shutdown parked jobs are dropped unfinished: their offsets
        // are not committed, and whoever owns the partition next decodes them.
        let thread = pool.thread_index(&job.meta.camera);
        let job = if parking.must_wait(thread, partition) {
            job
        } else {
            match pool.try_submit(job) {
                Ok(()) => continue,
                Err(Refused::Full(job)) => job,
                Err(Refused::Gone(job)) => {
                    anyhow::bail!("decoder thread for camera {} is gone", job.meta.camera)
                }
            }
        };
        let bytes = job.data.len();
        if let Some(p) = parking.park(thread, partition, bytes, job) {
            pauser.pause(p, &parking);
        }
        metrics.parked_records.set(parking.parked() as i64);
    }

    tracing::info!("draining: finishing queued frames, delivering stats, committing");
    readiness.set_not_ready("shutdown", "draining");
    let grace = Duration::from_millis(w.shutdown_grace_ms);
    drain_within(grace, async {
        let _ = tokio::task::spawn_blocking(move || pool.finish()).await;
        let _ = publisher.await;
    })
    .await;
    let p = producer.clone();
    let _ = tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(5))).await;
    let c = consumer.clone();
    let committed =
        tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync)).await;
    if let Ok(Err(e)) = committed {
        tracing::warn!(error = %e, "final commit failed");
    }
    let unfinished = committer.tracker().in_flight();
    if unfinished > 0 {
        tracing::warn!(
            unfinished,
            "frames left unfinished; the partition's next owner re-processes them"
        );
    }
    consumer.unsubscribe();
    Ok(())
}

/// Hands `thread` its parked jobs, oldest first, while its queue has room.
fn feed_parked(pool: &DecodePool, parking: &mut Parking<Job>, thread: usize) -> anyhow::Result<()> {
    while let Some(job) = parking.take(thread) {
        let (partition, bytes) = (job.partition, job.data.len());
        match pool.try_submit(job) {
            Ok(()) => {}
            Err(Refused::Full(job)) => {
                parking.put_back(thread, partition, bytes, job);
                break;
            }
            Err(Refused::Gone(job)) => {
                anyhow::bail!("decoder thread for camera {} is gone", job.meta.camera)
            }
        }
    }
    Ok(())
}

/// Pauses and resumes partitions of the frames topic for [`Parking`].
struct Pauser<'a> {
    consumer: &'a WorkerConsumer,
    topic: &'a str,
    metrics: &'a Metrics,
}

impl Pauser<'_> {
    fn pause(&self, partition: i32, parking: &Parking<Job>) {
        self.metrics.partition_pauses.inc();
        self.apply(&[partition], true);
        self.metrics.paused_partitions.set(parking.paused() as i64);
    }

    fn resume(&self, partitions: &[i32], parking: &Parking<Job>) {
        self.apply(partitions, false);
        self.metrics.paused_partitions.set(parking.paused() as i64);
        self.metrics.parked_records.set(parking.parked() as i64);
    }

    fn apply(&self, partitions: &[i32], pause: bool) {
        if partitions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(self.topic, p);
        }
        let done = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = done {
            tracing::warn!(?partitions, pause, error = %e, "cannot pause or resume partitions");
        } else {
            tracing::debug!(?partitions, pause, "decoder queue backpressure");
        }
    }
}

/// Copies poison records to the DLQ topic; their offsets finish once the DLQ has them.
#[derive(Clone)]
struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    committer: Arc<Committer>,
    metrics: Metrics,
}

impl DeadLetters {
    /// Sends the record's bytes with its headers plus `fw-dlq-reason` / `fw-dlq-source`.
    fn send(
        &self,
        camera: &str,
        reason: Reason,
        payload: &[u8],
        headers: OwnedHeaders,
        partition: i32,
        offset: i64,
    ) {
        let headers = headers
            .insert(rdkafka::message::Header {
                key: h::DLQ_REASON,
                value: Some(reason.as_str()),
            })
            .insert(rdkafka::message::Header {
                key: h::DLQ_SOURCE,
                value: Some("worker"),
            });
        let rec = FutureRecord::to(&self.topic)
            .key(camera)
            .payload(payload)
            .headers(headers);
        let this = self.clone();
        let camera = camera.to_owned();
        match self.producer.send_result(rec) {
            Ok(delivery) => {
                tokio::spawn(async move {
                    match delivery.await {
                        Ok(Ok(_)) => {
                            this.metrics
                                .dlq_records
                                .with_label_values(&[&camera, reason.as_str()])
                                .inc();
                            this.committer.finish(partition, offset);
                        }
                        _ => this.not_delivered(&camera, partition, offset),
                    }
                });
            }
            Err(_) => this.not_delivered(&camera, partition, offset),
        }
    }

    fn not_delivered(&self, camera: &str, partition: i32, offset: i64) {
        // Not finished: the offset is not committed past this record, nothing is lost.
        self.metrics
            .dlq_delivery_errors
            .with_label_values(&[camera])
            .inc();
        tracing::warn!(%camera, partition, offset, topic = %self.topic, "poison record not copied to the DLQ");
    }
}

/// Publishes outcomes as stats records (poison to the DLQ); marks offsets finished after
/// delivery.
async fn publish_loop(
    mut outcomes: mpsc::Receiver<Outcome>,
    producer: FutureProducer,
    topic: String,
    committer: Arc<Committer>,
    dead_letters: DeadLetters,
    metrics: Metrics,
) {
    let mut deliveries = JoinSet::new();
    while let Some(outcome) = outcomes.recv().await {
        while deliveries.try_join_next().is_some() {}
        let (record, partition, offset, span) = match outcome {
            Outcome::Done { partition, offset } => {
                committer.finish(partition, offset);
                continue;
            }
            Outcome::Poison {
                meta,
                data,
                reason,
                partition,
                offset,
            } => {
                dead_letters.send(
                    &meta.camera,
                    reason,
                    &data,
                    headers(meta.to_headers()),
                    partition,
                    offset,
                );
                continue;
            }
            Outcome::Stats {
                record,
                partition,
                offset,
                span,
            } => (record, partition, offset, span),
        };
        let latency = (record.decoded_ms - record.capture_ms).max(0) as f64 / 1000.0;
        metrics
            .latency_seconds
            .with_label_values(&[&record.camera])
            .observe(latency);
        let payload = match serde_json::to_vec(&record) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(camera = %record.camera, error = %e, "cannot serialize stats");
                committer.finish(partition, offset);
                continue;
            }
        };
        let mut pairs = telemetry::inject(&span);
        pairs.push((h::CAMERA.to_owned(), record.camera.clone()));
        let rec = FutureRecord::to(&topic)
            .key(&record.camera)
            .payload(&payload)
            .headers(headers(pairs))
            .timestamp(record.capture_ms);
        match producer.send_result(rec) {
            Ok(delivery) => {
                let committer = committer.clone();
                let metrics = metrics.clone();
                let camera = record.camera.clone();
                deliveries.spawn(async move {
                    match delivery.await {
                        Ok(Ok(_)) => committer.finish(partition, offset),
                        other => {
                            let error = match other {
                                Ok(Err((e, _))) => e.to_string(),
                                _ => "producer dropped the record".to_owned(),
                            };
                            // Not finished: the offset is not committed past this frame.
                            metrics.delivery_errors.with_label_values(&[&camera]).inc();
                            tracing::warn!(%camera, partition, offset, %error, "stats not delivered");
                        }
                    }
                });
            }
            Err((e, _)) => {
                metrics
                    .delivery_errors
                    .with_label_values(&[&record.camera])
                    .inc();
                tracing::warn!(camera = %record.camera, error = %e, "stats not enqueued");
            }
        }
    }
    while deliveries.join_next().await.is_some() {}
}

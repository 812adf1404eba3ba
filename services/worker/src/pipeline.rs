//! The worker's pipeline: consume frames → decode on the pool → publish stats → commit.
//!
//! Offsets are stored only after the stats of a record are delivered (or the record is
//! known to produce none), through an [`OffsetTracker`], so a crash re-processes but
//! never loses frames; the sink is idempotent on (camera, session, seq).

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
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::decode::{DecodePool, Job, Outcome, PoolConfig};
use crate::metrics::Metrics;
use crate::offsets::OffsetTracker;

/// Consumer callbacks: keeps the assigned-partitions gauge current and forgets the offset
/// state of revoked partitions.
pub struct WorkerContext {
    metrics: Metrics,
    tracker: Arc<Mutex<OffsetTracker>>,
}

impl ClientContext for WorkerContext {}

impl ConsumerContext for WorkerContext {
    fn post_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Ok(assignment) = base.assignment() {
            self.metrics
                .assigned_partitions
                .set(assignment.count() as i64);
        }
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
                for e in tpl.elements() {
                    tracker.forget(e.partition());
                }
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
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
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    const CLIENT: &str = "framewire-worker";
    let w = &config.worker;
    let tracker = Arc::new(Mutex::new(OffsetTracker::new(Duration::from_millis(
        w.idle_release_ms,
    ))));
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
            ],
        )
        .create_with_context(WorkerContext {
            metrics: metrics.clone(),
            tracker: tracker.clone(),
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
        detectors: w.detectors,
    };
    let pool = DecodePool::start(pool_config, out_tx, metrics.clone())?;
    tracing::info!(threads = w.threads(), group = %w.group_id, "decoding");
    let publisher = tokio::spawn(publish_loop(
        out_rx,
        producer.clone(),
        config.topics.stats.clone(),
        committer.clone(),
        metrics.clone(),
    ));

    let mut release = tokio::time::interval(Duration::from_secs(1));
    loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = release.tick() => {
                committer.release_idle();
                continue;
            }
            m = consumer.recv() => m,
        };
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
                    .with_label_values(&[&key, "bad_headers"])
                    .inc();
                tracing::warn!(camera = %key, partition, offset, error = %e, "frames record without valid fw-* headers");
                committer.finish(partition, offset);
                continue;
            }
        };
        metrics.records.with_label_values(&[&meta.camera]).inc();
        let span = tracing::info_span!("worker_frame", camera = %meta.camera, seq = meta.seq);
        telemetry::set_parent_from(&span, |name| header(hdrs, name));
        let job = Job {
            meta,
            data: msg.payload().unwrap_or_default().to_vec(),
            partition,
            offset,
            span,
        };
        drop(msg);
        // On shutdown the job is dropped unfinished: its offset is not committed, and
        // whoever owns the partition next decodes it.
        let submitted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = pool.submit(job) => r,
        };
        if let Err(job) = submitted {
            anyhow::bail!("decoder thread for camera {} is gone", job.meta.camera);
        }
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

/// Publishes outcomes as stats records; marks offsets finished after delivery.
async fn publish_loop(
    mut outcomes: mpsc::Receiver<Outcome>,
    producer: FutureProducer,
    topic: String,
    committer: Arc<Committer>,
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

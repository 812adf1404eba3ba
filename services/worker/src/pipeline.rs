//! The worker's consume loop: frames records in, decoded on the pool, statistics and dead
//! letters out, progress committed.
//!
//! One [`Worker`] owns the loop and handles one event per method:
//! - [`Worker::on_record`]: a frames record — parse its headers, note it as in flight,
//!   then decode it (or park it while its decoder thread is busy, see [`crate::parking`]);
//! - [`Worker::on_outcome`]: a decoder thread's result — enqueue its statistics or dead
//!   letter ([`crate::output`]), or mark it done; a picture picked for object detection
//!   goes to the inference queue ([`crate::detection`]);
//! - [`Worker::on_detected`]: an inference result — enqueue its detections record;
//! - [`Worker::on_finished`]: an output was delivered — its record is done;
//! - [`Worker::on_room`]: a decoder thread has room for parked records;
//! - [`Worker::on_revoked`]: partitions moved away (the callbacks in
//!   [`crate::rebalance`] committed them) — drop their parked records and decoders;
//! - [`Worker::on_tick`]: commit progress ([`crate::commit`]) and forget silent cameras.
//!
//! A record is done only once its output is delivered (or it is known to produce none;
//! statistics *and* detections when the picture was analysed),
//! so a crash re-processes but never loses frames; the sink is idempotent on
//! (camera, session, seq).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use framewire_kit::admin::Readiness;
use framewire_kit::delivery::{Delivery, DeliveryMetrics};
use framewire_kit::kafka::{self, KafkaSetupError, header, headers};
use framewire_kit::shutdown::{Shutdown, drain_within};
use framewire_kit::telemetry;
use framewire_wire::{AnalysisRate, FrameMeta, header as h, validate_camera_id};
use futures::FutureExt;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedHeaders};
use rdkafka::producer::Producer;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::assignment::{Assignment, Seen};
use crate::commit::CommitTracker;
use crate::config::{Config, DecodeMode, HwAccel, LagPolicy, WorkerConfig};
use crate::decode::{DecodePool, Job, Outcome, PoolConfig, Refused};
use crate::detection::{DetectInput, DetectOutcome, DetectPool};
use crate::lag::{LagGate, Verdict};
use crate::metrics::Metrics;
use crate::output::{Finished, Output};
use crate::parking::Parking;
use crate::poison::Reason;
use crate::rebalance::{self, Revoked, WorkerContext};
use crate::snapshot::Watchers;

/// How often librdkafka reports partition offsets (the lag gauge's resolution).
const STATISTICS_INTERVAL_MS: &str = "5000";

/// How often cameras that went silent are looked for.
const IDLE_SWEEP: Duration = Duration::from_secs(1);

/// A commit started on a blocking thread: its partitions and, once done, its result.
type Commit = tokio::task::JoinHandle<(Vec<i32>, KafkaResult<()>)>;

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

/// The camera label of a record whose headers could not be read: its key when that is a
/// valid camera id, else `invalid` (labels stay bounded).
fn label_of_key(key: Option<&[u8]>) -> String {
    key.and_then(|k| std::str::from_utf8(k).ok())
        .filter(|k| validate_camera_id(k).is_ok())
        .unwrap_or("invalid")
        .to_owned()
}

/// The decoder pool, until the drain takes it.
/// The hardware decoding to use: `asked` when its device opens here, else software, said
/// in one log line (a missing device must not stop a worker that can decode without it).
fn hardware(asked: HwAccel, device: Option<&str>) -> HwAccel {
    if asked == HwAccel::None {
        return HwAccel::None;
    }
    match framewire_decode::probe_hardware(asked, device) {
        Ok(()) => asked,
        Err(e) => {
            tracing::warn!(hwaccel = %asked, error = %e, "hardware decoding unavailable; decoding in software");
            HwAccel::None
        }
    }
}

fn running(pool: &Option<DecodePool>) -> anyhow::Result<&DecodePool> {
    pool.as_ref()
        .ok_or_else(|| anyhow::anyhow!("the decoder pool is gone"))
}

/// The detection rate a frames record asks for in its `fw-detect` header; a value that
/// does not parse is logged and the worker's default applies.
fn detect_rate(camera: &str, value: Option<&[u8]>) -> Option<AnalysisRate> {
    let raw = value?;
    match std::str::from_utf8(raw)
        .ok()
        .map(str::parse::<AnalysisRate>)
    {
        Some(Ok(rate)) => Some(rate),
        _ => {
            tracing::warn!(%camera, value = %String::from_utf8_lossy(&raw[..raw.len().min(40)]), "fw-detect header is not a rate; using detect.rate");
            None
        }
    }
}

/// One event of the consume loop.
enum Event<'m> {
    Shutdown,
    Finished(Finished),
    Outcome(Outcome),
    Detected(DetectOutcome),
    Delivered,
    Tick,
    Room(Option<usize>),
    Record(KafkaResult<BorrowedMessage<'m>>),
}

/// The consume loop's state.
pub struct Worker {
    config: WorkerConfig,
    topic: String,
    consumer: Arc<WorkerConsumer>,
    callbacks: rebalance::Shared,
    pool: Option<DecodePool>,
    parking: Parking<Job>,
    lag_gate: Option<LagGate>,
    output: Output,
    outcomes: mpsc::Receiver<Outcome>,
    /// The inference threads (`None`: detection off, or shut down).
    detect: Option<DetectPool>,
    /// Pictures waiting for room in the inference queue (one "thread": the queue).
    detect_parking: Parking<DetectInput>,
    detect_outcomes: mpsc::Receiver<DetectOutcome>,
    /// Frames whose offset waits for more than one output (statistics and detections):
    /// how many are still to be delivered.
    awaiting: HashMap<(i32, i64), u8>,
    finished: mpsc::UnboundedReceiver<Finished>,
    deliveries: JoinSet<()>,
    metrics: Metrics,
    shared: Shared,
    last_sweep: Instant,
    committing: Option<Commit>,
    readiness: Readiness,
    /// Why the broker refuses this worker (credentials, ACLs), while it does.
    refused: Option<String>,
}

/// The readiness component of broker refusals (credentials, ACLs).
const ACCESS: &str = "kafka_access";

/// Builds the clients and runs the pipeline until shutdown, then drains.
pub async fn run(
    config: &Config,
    readiness: &Readiness,
    metrics: Metrics,
    delivery_metrics: DeliveryMetrics,
    shared: Shared,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut worker = Worker::start(
        config,
        readiness,
        metrics,
        delivery_metrics,
        shared,
        &shutdown,
    )?;
    let result = worker.run(&shutdown).await;
    tracing::info!("draining: finishing queued frames, delivering their output, committing");
    readiness.set_not_ready("shutdown", "draining");
    worker.drain().await;
    result
}

impl Worker {
    /// Creates the consumer, the producer and the decoder pool.
    fn start(
        config: &Config,
        readiness: &Readiness,
        metrics: Metrics,
        delivery_metrics: DeliveryMetrics,
        shared: Shared,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Self> {
        const CLIENT: &str = "framewire-worker";
        let w = &config.worker;
        let callbacks = rebalance::Shared {
            commits: Arc::new(std::sync::Mutex::new(CommitTracker::new(
                Duration::from_millis(w.idle_release_ms),
            ))),
            revoked: Arc::default(),
            assignment: shared.assignment.clone(),
        };
        let max_bytes = config.topics.max_message_bytes.to_string();
        let consumer: WorkerConsumer = config
            .kafka
            .client_config(
                CLIENT,
                &[
                    ("group.id", &w.group_id),
                    // Progress is committed by the worker itself, with the resume offset
                    // as metadata (see crate::commit).
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                    ("auto.offset.reset", &w.auto_offset_reset),
                    ("partition.assignment.strategy", "cooperative-sticky"),
                    // A worker that died hands its partitions over after this long.
                    ("session.timeout.ms", "10000"),
                    ("heartbeat.interval.ms", "3000"),
                    ("max.partition.fetch.bytes", &max_bytes),
                    ("fetch.wait.max.ms", "20"),
                    ("statistics.interval.ms", STATISTICS_INTERVAL_MS),
                ],
            )
            .create_with_context(WorkerContext {
                shared: callbacks.clone(),
                metrics: metrics.clone(),
                topic: config.topics.frames.clone(),
            })
            .map_err(|source| KafkaSetupError::Client {
                what: "consumer",
                source,
            })?;
        let consumer = Arc::new(consumer);
        let producer = config.kafka.producer(
            CLIENT,
            w.linger_ms,
            config.topics.max_message_bytes,
            w.delivery_timeout_ms,
        )?;
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
        let (finished_tx, finished) = mpsc::unbounded_channel();
        let output = Output::new(
            Delivery::new(producer, delivery_metrics),
            &config.topics.stats,
            &config.topics.detections,
            &config.topics.dlq,
            Duration::from_millis(w.retry_max_ms),
            finished_tx,
            metrics.clone(),
        );
        let (out_tx, outcomes) = mpsc::channel(1024);
        let (detect_tx, detect_outcomes) = mpsc::channel(256);
        let detect = if config.detect.enabled() {
            Some(DetectPool::start(
                &config.detect,
                detect_tx,
                metrics.clone(),
            )?)
        } else {
            None
        };
        let backend = w.decoder.resolve()?;
        let hwaccel_device = Some(w.hwaccel_device.trim().to_owned()).filter(|d| !d.is_empty());
        let hwaccel = hardware(w.hwaccel, hwaccel_device.as_deref());
        let pool_config = PoolConfig {
            threads: w.threads(),
            queue: w.queue_frames,
            idle_flush: Duration::from_millis(w.idle_flush_ms),
            evict_after: w.decoder_evict_after(),
            detectors: w.detectors,
            mode: w.decode_mode,
            watchers: shared.watchers.clone(),
            detect: detect.as_ref().map(DetectPool::pick_settings),
            backend,
            ffmpeg_threads: w.ffmpeg_threads,
            hwaccel,
            hwaccel_device,
        };
        let pool = DecodePool::start(pool_config, out_tx, metrics.clone())?;
        tracing::info!(threads = w.threads(), decoder = %backend, %hwaccel, group = %w.group_id, mode = ?w.decode_mode, lag_policy = ?w.lag_policy, "decoding");
        let lag_gate = (w.lag_policy == LagPolicy::Realtime).then(|| {
            LagGate::new(
                Duration::from_millis(w.realtime_max_ms),
                w.realtime_max_frames,
            )
        });
        Ok(Worker {
            readiness: readiness.clone(),
            refused: None,
            config: w.clone(),
            topic: config.topics.frames.clone(),
            consumer,
            callbacks,
            parking: Parking::new(pool.threads(), w.queue_max_bytes),
            pool: Some(pool),
            lag_gate,
            output,
            outcomes,
            detect,
            detect_parking: Parking::new(1, config.detect.queue_max_bytes),
            detect_outcomes,
            awaiting: HashMap::new(),
            finished,
            deliveries: JoinSet::new(),
            metrics,
            shared,
            last_sweep: Instant::now(),
            committing: None,
        })
    }

    /// Runs the loop until shutdown (or a decoder thread dies).
    async fn run(&mut self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let consumer = self.consumer.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.commit_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.on_revoked().await?;
            let waiting = self.decodable_threads();
            let pool = running(&self.pool)?;
            let event = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Event::Shutdown,
                // Commits first: a busy pipeline must not hold the lag KEDA reads back.
                _ = tick.tick() => Event::Tick,
                // Then what frees memory and finishes records, before new records come in.
                Some(f) = self.finished.recv() => Event::Finished(f),
                Some(d) = self.detect_outcomes.recv() => Event::Detected(d),
                Some(o) = self.outcomes.recv() => Event::Outcome(o),
                Some(_) = self.deliveries.join_next(), if !self.deliveries.is_empty() => Event::Delivered,
                room = pool.room(&waiting), if !waiting.is_empty() => Event::Room(room),
                m = consumer.recv() => Event::Record(m),
            };
            match event {
                Event::Shutdown => return Ok(()),
                Event::Finished(f) => self.on_finished(f),
                Event::Outcome(o) => self.on_outcome(o).await,
                Event::Detected(d) => self.on_detected(d).await,
                Event::Delivered => {}
                Event::Tick => self.on_tick(),
                Event::Room(room) => self.on_room(room)?,
                Event::Record(m) => {
                    // Rebalance callbacks run inside recv().
                    self.on_revoked().await?;
                    match m {
                        Ok(msg) => {
                            self.on_allowed();
                            self.on_record(&msg).await?
                        }
                        Err(e) => self.on_consume_error(&e),
                    }
                }
            }
        }
    }

    /// The consumer reported an error: a refusal (credentials, a missing ACL) makes the
    /// worker unready with the reason until records come again; others are transient.
    fn on_consume_error(&mut self, e: &rdkafka::error::KafkaError) {
        match framewire_kit::kafka::access_problem(e) {
            Some(problem) => {
                self.metrics
                    .consume_errors
                    .with_label_values(&["access"])
                    .inc();
                if self.refused.as_deref() != Some(problem.as_str()) {
                    tracing::error!(error = %problem, "the broker refuses this worker");
                    self.readiness.set_not_ready(ACCESS, problem.clone());
                    self.refused = Some(problem);
                }
            }
            None => {
                self.metrics
                    .consume_errors
                    .with_label_values(&["other"])
                    .inc();
                tracing::warn!(error = %e, "consume error");
            }
        }
    }

    /// Records arrive: whatever the broker refused before is allowed now.
    fn on_allowed(&mut self) {
        if self.refused.take().is_some() {
            tracing::info!("the broker serves this worker again");
            self.readiness.set_ready(ACCESS);
        }
    }

    /// A frames record: note it in flight, then decode, park or finish it.
    async fn on_record(&mut self, msg: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let (partition, offset) = (msg.partition(), msg.offset());
        let hdrs = msg.headers();
        let meta = FrameMeta::from_headers(|name| header(hdrs, name));
        let replay = {
            let mut commits = self.callbacks.commits();
            match &meta {
                Ok(m) => commits.start(
                    partition,
                    offset,
                    Some(&m.camera),
                    m.keyframe,
                    Instant::now(),
                ),
                Err(_) => commits.start(partition, offset, None, false, Instant::now()),
            }
            commits.is_replay(partition, offset)
        };
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                if replay {
                    // Its earlier owner sent it to the DLQ already.
                    self.finish(partition, offset);
                    return Ok(());
                }
                let camera = label_of_key(msg.key());
                self.metrics
                    .decode_errors
                    .with_label_values(&[&camera, Reason::BadHeaders.as_str()])
                    .inc();
                tracing::warn!(%camera, partition, offset, error = %e, "frames record without valid fw-* headers; copied to the DLQ");
                let mut copied = OwnedHeaders::new();
                if let Some(hdrs) = hdrs {
                    for hd in hdrs.iter() {
                        copied = copied.insert(hd);
                    }
                }
                let payload = msg.payload().unwrap_or_default().to_vec();
                let delivery = self
                    .output
                    .dead_letter(
                        &camera,
                        Reason::BadHeaders,
                        payload,
                        copied,
                        partition,
                        offset,
                    )
                    .await;
                self.deliveries.spawn(delivery);
                return Ok(());
            }
        };
        self.metrics
            .records
            .with_label_values(&[&meta.camera])
            .inc();
        let now = now_ms();
        let verdict = match self.lag_gate.as_mut() {
            Some(gate) => gate.check(&meta, now),
            None => Verdict::Decode,
        };
        self.shared.assignment.seen(Seen {
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
            self.metrics
                .skipped
                .with_label_values(&[&meta.camera, "realtime"])
                .inc();
            self.finish(partition, offset);
            return Ok(());
        }
        if self.config.decode_mode == DecodeMode::Keyframes && !meta.keyframe {
            // Keyframes mode: nothing to decode; read past it at the cost of a header parse.
            self.finish(partition, offset);
            return Ok(());
        }
        let detect = detect_rate(&meta.camera, header(hdrs, h::DETECT));
        let span = tracing::info_span!("worker_frame", camera = %meta.camera, seq = meta.seq);
        telemetry::set_parent_from(&span, |name| header(hdrs, name));
        let job = Job {
            meta,
            data: msg.payload().unwrap_or_default().to_vec(),
            partition,
            offset,
            span,
            resync: verdict == Verdict::Resume,
            replay,
            detect,
        };
        self.submit(job)
    }

    /// Hands a job to its decoder thread, or parks it behind what waits there. Partitions
    /// pause only when a thread has too much parked (see `crate::parking`). A job of a
    /// partition paused for the inference queue is parked undecoded: a picture's tensor is
    /// hundreds of times the size of its access unit, and librdkafka may still hand over
    /// what it fetched before the pause. On shutdown parked jobs are dropped unfinished:
    /// their offsets are not committed, and whoever owns the partition next decodes them.
    fn submit(&mut self, job: Job) -> anyhow::Result<()> {
        let pool = running(&self.pool)?;
        let (thread, partition) = (pool.thread_index(&job.meta.camera), job.partition);
        let job =
            if self.parking.must_wait(thread, partition) || self.detect_parking.holds(partition) {
                job
            } else {
                match pool.try_submit(job) {
                    Ok(()) => return Ok(()),
                    Err(Refused::Full(job)) => job,
                    Err(Refused::Gone(job)) => {
                        anyhow::bail!("decoder thread for camera {} is gone", job.meta.camera)
                    }
                }
            };
        let bytes = job.data.len();
        if let Some(p) = self.parking.park(thread, partition, bytes, job) {
            self.metrics.partition_pauses.inc();
            self.pause(&[p], true);
        }
        self.count_parking();
        Ok(())
    }

    /// Decoder threads with parked jobs to hand over when they have room: jobs of partitions
    /// paused for the inference queue do not count (they are decoded once it has room).
    fn decodable_threads(&self) -> Vec<usize> {
        self.parking
            .waiting_threads()
            .into_iter()
            .filter(|&t| self.parking.has_ready(t, |p| !self.detect_parking.holds(p)))
            .collect()
    }

    /// A decoder thread's result.
    async fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Done { partition, offset } => self.finish(partition, offset),
            Outcome::Poison {
                meta,
                data,
                reason,
                partition,
                offset,
            } => {
                let delivery = self
                    .output
                    .dead_letter(
                        &meta.camera,
                        reason,
                        data,
                        headers(meta.to_headers()),
                        partition,
                        offset,
                    )
                    .await;
                self.deliveries.spawn(delivery);
            }
            Outcome::Stats {
                record,
                partition,
                offset,
                span,
                detect,
            } => {
                if let Some(input) = detect {
                    // Done once both the statistics and the detections are delivered.
                    self.awaiting.insert((partition, offset), 2);
                    self.submit_detection(*input);
                }
                let latency = (record.decoded_ms - record.capture_ms).max(0) as f64 / 1000.0;
                self.metrics
                    .latency_seconds
                    .with_label_values(&[&record.camera])
                    .observe(latency);
                match self.output.stats(&record, &span, partition, offset).await {
                    Some(delivery) => {
                        self.deliveries.spawn(delivery);
                    }
                    None => self.finish(partition, offset),
                }
            }
        }
    }

    /// An inference result: publish the detections (the frame's second output), then hand
    /// the inference queue what waits for it.
    async fn on_detected(&mut self, outcome: DetectOutcome) {
        match outcome {
            DetectOutcome::Detected {
                record,
                partition,
                offset,
                span,
            } => match self
                .output
                .detections(&record, &span, partition, offset)
                .await
            {
                Some(delivery) => {
                    self.deliveries.spawn(delivery);
                }
                None => self.finish(partition, offset),
            },
            DetectOutcome::Failed { partition, offset } => self.finish(partition, offset),
        }
        self.on_detect_room();
    }

    /// Queues a picture for inference, or parks it behind those waiting; pauses its
    /// partition when too much is parked (see `crate::parking`).
    fn submit_detection(&mut self, input: DetectInput) {
        let Some(pool) = &self.detect else {
            return self.finish(input.partition, input.offset);
        };
        let partition = input.partition;
        let input = if self.detect_parking.must_wait(0, partition) {
            input
        } else {
            match pool.try_submit(input) {
                Ok(()) => return self.count_parking(),
                Err(input) => input,
            }
        };
        let bytes = input.bytes();
        if let Some(p) = self.detect_parking.park(0, partition, bytes, input) {
            self.metrics.partition_pauses.inc();
            self.pause(&[p], true);
        }
        self.count_parking();
    }

    /// The inference queue may have room: hand it parked pictures, oldest first; resume
    /// the partitions that no longer wait.
    fn on_detect_room(&mut self) {
        let Some(pool) = &self.detect else {
            return;
        };
        while let Some(input) = self.detect_parking.take(0) {
            let (partition, bytes) = (input.partition, input.bytes());
            if let Err(input) = pool.try_submit(input) {
                self.detect_parking.put_back(0, partition, bytes, input);
                break;
            }
        }
        let resume = self.detect_parking.resumable(0);
        self.pause(&resume, false);
        self.count_parking();
    }

    /// An output was delivered.
    fn on_finished(&mut self, f: Finished) {
        self.finish(f.partition, f.offset);
    }

    /// One output of a frames record is delivered (or will never be): the record is done
    /// when it was the last one it waited for.
    fn finish(&mut self, partition: i32, offset: i64) {
        if let Some(left) = self.awaiting.get_mut(&(partition, offset)) {
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.awaiting.remove(&(partition, offset));
        }
        self.callbacks.commits().finish(partition, offset);
    }

    /// A decoder thread has room: hand it its parked jobs, oldest first; resume the
    /// partitions that no longer wait.
    fn on_room(&mut self, room: Option<usize>) -> anyhow::Result<()> {
        let Some(thread) = room else {
            anyhow::bail!("a decoder thread is gone");
        };
        let pool = running(&self.pool)?;
        // Jobs of partitions paused for the inference queue are passed over (in order, by
        // partition): the thread's other cameras go on decoding.
        let detect_parking = &self.detect_parking;
        while let Some(job) = self
            .parking
            .take_ready(thread, |p| !detect_parking.holds(p))
        {
            let (partition, bytes) = (job.partition, job.data.len());
            match pool.try_submit(job) {
                Ok(()) => {}
                Err(Refused::Full(job)) => {
                    self.parking.put_back(thread, partition, bytes, job);
                    break;
                }
                Err(Refused::Gone(job)) => {
                    anyhow::bail!("decoder thread for camera {} is gone", job.meta.camera)
                }
            }
        }
        let resume = self.parking.resumable(thread);
        self.pause(&resume, false);
        self.count_parking();
        Ok(())
    }

    /// Partitions revoked by the callbacks: drop their parked records, stop their
    /// delivery retries, flush and drop their cameras' decoders.
    async fn on_revoked(&mut self) -> anyhow::Result<()> {
        let Revoked {
            partitions,
            cameras,
        } = self.callbacks.take_revoked();
        if partitions.is_empty() && cameras.is_empty() {
            return Ok(());
        }
        let mut resume = self.parking.revoke(&partitions);
        resume.extend(self.detect_parking.revoke(&partitions));
        resume.sort_unstable();
        resume.dedup();
        self.awaiting.retain(|(p, _), _| !partitions.contains(p));
        self.pause(&resume, false);
        self.count_parking();
        self.output.stop_partitions(&partitions);
        for camera in &cameras {
            // A decoder thread with a full queue takes the message only after it handed its
            // outcomes over: keep taking them meanwhile (they are handled right after), or
            // the thread and this loop would wait for each other.
            let mut held = Vec::new();
            {
                let forget = running(&self.pool)?.forget(camera);
                tokio::pin!(forget);
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut forget => break,
                        Some(o) = self.outcomes.recv() => held.push(o),
                    }
                }
            }
            for o in held {
                self.on_outcome(o).await;
            }
        }
        Ok(())
    }

    /// Every commit interval: commits the progress that moved, and (about once a second)
    /// forgets cameras that went silent.
    fn on_tick(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_sweep) >= IDLE_SWEEP {
            self.last_sweep = now;
            self.callbacks.commits().release_idle(now);
        }
        self.commit();
    }

    /// Commits every partition whose position changed, one commit at a time, synchronously
    /// on a blocking thread: librdkafka reports the result of an asynchronous commit only
    /// through a commit callback rust-rdkafka does not install, and a failed commit must
    /// be known (counted, and retried at the next interval).
    fn commit(&mut self) {
        if self.committing.as_ref().is_some_and(|c| !c.is_finished()) {
            return;
        }
        if let Some(Ok((partitions, result))) =
            self.committing.take().and_then(|c| c.now_or_never())
        {
            self.committed(&partitions, &result);
        }
        let due = self.callbacks.commits().take_due();
        if due.is_empty() {
            return;
        }
        for &(partition, pos) in &due {
            self.shared.assignment.progress(partition, pos);
        }
        let tpl = rebalance::commit_list(&self.topic, &due);
        let partitions: Vec<i32> = due.iter().map(|(p, _)| *p).collect();
        let consumer = self.consumer.clone();
        self.committing = Some(tokio::task::spawn_blocking(move || {
            let result = consumer.commit(&tpl, CommitMode::Sync);
            (partitions, result)
        }));
    }

    /// Counts a commit; a failed one is handed out again at the next interval.
    fn committed(&self, partitions: &[i32], result: &KafkaResult<()>) {
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics.commits.with_label_values(&[label]).inc();
        if let Err(e) = result {
            let mut commits = self.callbacks.commits();
            for &p in partitions {
                commits.commit_failed(p);
            }
            tracing::info!(error = %e, ?partitions, "offset commit failed; retrying at the next interval");
        }
    }

    /// Pauses or resumes partitions; a partition that the decoder or the inference
    /// parking still holds back stays paused.
    fn pause(&self, partitions: &[i32], pause: bool) {
        let held = |p: &i32| self.parking.holds(*p) || self.detect_parking.holds(*p);
        let partitions: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| pause || !held(p))
            .collect();
        if partitions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition(&self.topic, p);
        }
        let done = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        match done {
            Ok(()) => tracing::debug!(?partitions, pause, "decoder queue backpressure"),
            Err(e) => {
                tracing::warn!(?partitions, pause, error = %e, "cannot pause or resume partitions")
            }
        }
    }

    fn count_parking(&self) {
        self.metrics
            .paused_partitions
            .set((self.parking.paused() + self.detect_parking.paused()) as i64);
        self.metrics
            .parked_records
            .set(self.parking.parked() as i64);
        self.metrics
            .detect_parked
            .set(self.detect_parking.parked() as i64);
        if let Some(pool) = &self.detect {
            self.metrics.detect_queue.set(pool.queued() as i64);
        }
    }

    /// After the loop: the decoders finish what they hold, outputs are delivered (within
    /// the grace period), progress is committed synchronously and the group is left.
    async fn drain(&mut self) {
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        let pool = self.pool.take();
        let finishing = tokio::task::spawn_blocking(move || {
            if let Some(pool) = pool {
                pool.finish();
            }
        });
        let mut detect_finishing = None;
        drain_within(grace, async {
            let mut outcomes_open = true;
            let mut detect_open = true;
            while outcomes_open || detect_open || !self.deliveries.is_empty() {
                if !outcomes_open && detect_finishing.is_none() {
                    // The decoders are done: no new pictures. Parked ones stay unfinished
                    // (the partition's next owner redoes them); queued ones are run.
                    let pool = self.detect.take();
                    detect_finishing = Some(tokio::task::spawn_blocking(move || {
                        if let Some(pool) = pool {
                            pool.finish();
                        }
                    }));
                }
                tokio::select! {
                    biased;
                    Some(f) = self.finished.recv() => self.on_finished(f),
                    d = self.detect_outcomes.recv(), if detect_open => match d {
                        Some(d) => self.on_detected(d).await,
                        None => detect_open = false,
                    },
                    o = self.outcomes.recv(), if outcomes_open => match o {
                        Some(o) => self.on_outcome(o).await,
                        None => outcomes_open = false,
                    },
                    Some(_) = self.deliveries.join_next(), if !self.deliveries.is_empty() => {}
                }
            }
            // Deliveries report on `finished` before their task ends.
            while let Ok(f) = self.finished.try_recv() {
                self.on_finished(f);
            }
        })
        .await;
        let _ = finishing.await;
        if let Some(f) = detect_finishing {
            let _ = f.await;
        }
        self.output.stop_all();
        let producer = self.output.producer().clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
        // The last commit: after the one in flight, everything done so far.
        if let Some(Ok((partitions, result))) = match self.committing.take() {
            Some(c) => Some(c.await),
            None => None,
        } {
            self.committed(&partitions, &result);
        }
        self.commit();
        if let Some(Ok((partitions, result))) = match self.committing.take() {
            Some(c) => Some(c.await),
            None => None,
        } {
            if let Err(e) = &result {
                tracing::warn!(error = %e, "final commit failed; the next owner re-processes from the previous commit");
            }
            self.committed(&partitions, &result);
        }
        let unfinished = self.callbacks.commits().in_flight();
        if unfinished > 0 {
            tracing::warn!(
                unfinished,
                "frames left unfinished; the partition's next owner processes them"
            );
        }
        self.consumer.unsubscribe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hardware_device_that_does_not_open_means_software() {
        assert_eq!(hardware(HwAccel::None, None), HwAccel::None);
        assert_eq!(
            hardware(HwAccel::Vaapi, Some("/nonexistent/renderD999")),
            HwAccel::None
        );
        assert_eq!(hardware(HwAccel::Cuda, Some("99")), HwAccel::None);
    }
}

//! Sending the records: one producer configured as ingest's (`KafkaConfig::producer_config`:
//! idempotent, `acks=all`, lz4, the same size limit), key = camera id and the default
//! partitioner, so records land on the partitions ingest would put them on. It is a
//! threaded producer whose delivery callback only counts, so the sending loop never waits
//! on acknowledgements — only on room in librdkafka's queue, which shows as pacing lag.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use framewire_kit::kafka::headers;
use framewire_wire::header;
use rand::RngExt;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;

use crate::config::Config;
use crate::records::{Frames, Stats};
use crate::report::{Tally, progress_line};
use crate::schedule::{Due, Output};

/// Delivery outcomes, counted by the producer's callback.
#[derive(Debug, Default)]
pub struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Deliveries {
    /// Records acknowledged.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Records failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The first failure.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }

    fn fail(&self, error: &KafkaError) {
        if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(%error, "a record was not delivered (more are counted, not logged)");
        }
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| error.to_string());
        }
    }
}

/// The producer's context: counts each delivery report.
pub struct Counting(pub Arc<Deliveries>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => self.0.fail(error),
        }
    }
}

/// What the fleet sends.
pub enum Fleet {
    /// A clip's access units.
    Frames(Frames),
    /// Synthetic statistics records.
    Stats(Stats),
}

/// The sending loop's output: builds each record, hands it to the producer, tallies.
pub struct KafkaOutput {
    producer: ThreadedProducer<Counting>,
    deliveries: Arc<Deliveries>,
    topic: String,
    fleet: Fleet,
    start_ms: i64,
    /// The run so far.
    pub tally: Tally,
    progress: bool,
    printed: u64,
    json: Vec<u8>,
    last_keyframe: bool,
}

/// How long to wait for room when librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);

impl KafkaOutput {
    /// A producer to the topic of the configured mode, configured as ingest's producer
    /// is; `start_ms` is the wall clock of the schedule's start.
    pub fn new(config: &Config, fleet: Fleet, start_ms: i64) -> Result<Self, KafkaError> {
        let l = &config.loadgen;
        let deliveries = Arc::new(Deliveries::default());
        let producer = config
            .kafka
            .producer_config(
                "framewire-loadgen",
                l.linger_ms,
                config.topics.max_message_bytes,
                l.delivery_timeout_ms,
            )
            .create_with_context(Counting(deliveries.clone()))?;
        Ok(KafkaOutput {
            producer,
            deliveries,
            topic: l.topic(&config.topics).to_owned(),
            fleet,
            start_ms,
            tally: Tally::default(),
            progress: l.progress,
            printed: 0,
            json: Vec::with_capacity(1024),
            last_keyframe: false,
        })
    }

    /// The delivery counts.
    pub fn deliveries(&self) -> &Deliveries {
        &self.deliveries
    }

    /// Waits up to `timeout` for every record to be acknowledged or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }

    /// Records not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Hands one record over, waiting while the queue is full.
    fn produce(
        &self,
        key: &str,
        payload: &[u8],
        pairs: Vec<(&str, String)>,
        timestamp_ms: i64,
    ) -> Result<(), KafkaError> {
        let mut record = BaseRecord::to(&self.topic)
            .key(key)
            .payload(payload)
            .headers(headers(pairs))
            .timestamp(timestamp_ms);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(QUEUE_FULL_WAIT);
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

/// A W3C `traceparent` for a new root span (as each of ingest's frames starts a trace).
fn traceparent() -> String {
    let mut rng = rand::rng();
    let trace: u128 = rng.random::<u128>().max(1);
    let span: u64 = rng.random::<u64>().max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}

impl Output for KafkaOutput {
    type Error = std::convert::Infallible;

    fn send(&mut self, due: Due) -> Result<usize, Self::Error> {
        let result = match &self.fleet {
            Fleet::Frames(frames) => {
                let (meta, au) = frames.frame(due, self.start_ms);
                let mut pairs = meta.to_headers();
                if let Some(rate) = frames.detect {
                    pairs.push((header::DETECT, rate.to_string()));
                }
                pairs.push((header::TRACEPARENT, traceparent()));
                self.last_keyframe = au.keyframe;
                self.produce(&meta.camera, &au.data, pairs, meta.capture_ms)
                    .map(|()| au.data.len())
            }
            Fleet::Stats(stats) => {
                let record = stats.record(due, self.start_ms);
                self.json.clear();
                serde_json::to_writer(&mut self.json, &record).unwrap_or_default();
                self.last_keyframe = record.keyframe;
                let pairs = vec![(header::TRACEPARENT, traceparent())];
                self.produce(&record.camera, &self.json, pairs, record.decoded_ms)
                    .map(|()| self.json.len())
            }
        };
        Ok(match result {
            Ok(bytes) => bytes,
            Err(e) => {
                // Refused before it was sent (e.g. larger than the record limit): a
                // delivery error like any other.
                self.deliveries.fail(&e);
                0
            }
        })
    }

    fn sent(&mut self, now: Duration, bytes: usize, lag: Duration) {
        self.tally.sent(now, bytes, self.last_keyframe, lag);
    }

    fn tick(&mut self, now: Duration) {
        self.tally.advance(now);
        if !self.progress {
            return;
        }
        let (delivered, failed, in_flight) = (
            self.deliveries.delivered(),
            self.deliveries.failed(),
            self.in_flight(),
        );
        for second in self.tally.completed(now).skip(self.printed as usize) {
            eprintln!("{}", progress_line(second, delivered, failed, in_flight));
            self.printed += 1;
        }
    }
}

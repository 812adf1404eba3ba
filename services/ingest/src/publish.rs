//! Publishing a camera's queued access units: one Kafka record each, key = camera id.
//!
//! A camera's sender keeps at most `max_in_flight` records unacknowledged. When Kafka
//! is slow or down, acknowledgements stop, the sender stops taking from the queue, and
//! the queue (see [`crate::queue`]) drops whole GOPs. A record larger than the configured
//! maximum is counted and logged with the camera id; when it is a keyframe, the rest of
//! its GOP is dropped too (it would not decode).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use framewire_kit::kafka::{KafkaConfig, KafkaSetupError, headers};
use framewire_kit::shutdown::Shutdown;
use framewire_kit::telemetry;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::metrics::CameraMetrics;
use crate::queue::{GopQueue, QueuedFrame};

/// Room left in a record for headers and batch overhead.
const RECORD_OVERHEAD: usize = 1024;

/// The frames-topic producer, shared by all cameras.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic: Arc<str>,
    max_payload: usize,
}

/// Why a frame was not handed to the producer.
enum SendError {
    /// Larger than the record limit.
    Oversize(usize),
    /// librdkafka's own queue is full: try again shortly.
    Busy,
    /// Anything else.
    Failed(String),
}

impl Publisher {
    /// The idempotent producer (acks=all, lz4) sized for `max_message_bytes` records.
    pub fn new(
        kafka: &KafkaConfig,
        topic: &str,
        max_message_bytes: i32,
        linger_ms: u32,
        delivery_timeout_ms: u64,
    ) -> Result<Self, KafkaSetupError> {
        let producer = kafka.producer(
            "framewire-ingest",
            linger_ms,
            max_message_bytes,
            delivery_timeout_ms,
        )?;
        let max_payload = usize::try_from(max_message_bytes)
            .unwrap_or(0)
            .saturating_sub(RECORD_OVERHEAD);
        Ok(Publisher {
            producer,
            topic: topic.into(),
            max_payload,
        })
    }

    /// The producer, for metadata probes and the control topic.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    fn send(&self, frame: &QueuedFrame) -> Result<DeliveryFuture, SendError> {
        if frame.data.len() > self.max_payload {
            return Err(SendError::Oversize(frame.data.len()));
        }
        let mut pairs: Vec<(String, String)> = frame
            .meta
            .to_headers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        pairs.extend(telemetry::inject(&frame.span));
        let record = FutureRecord::to(&self.topic)
            .key(frame.meta.camera.as_str())
            .payload(&frame.data)
            .headers(headers(pairs))
            .timestamp(frame.meta.capture_ms);
        self.producer.send_result(record).map_err(|(e, _)| match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => SendError::Busy,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge) => {
                SendError::Oversize(frame.data.len())
            }
            other => SendError::Failed(other.to_string()),
        })
    }

    /// Waits until every enqueued record is delivered (or the timeout passes).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(Timeout::After(timeout)) {
            tracing::warn!(error = %e, "producer flush incomplete");
        }
    }
}

/// Sends a camera's queue to Kafka until `stop`, then sends what is left (bounded by the
/// service's shutdown grace) and waits for the acknowledgements.
pub async fn send_loop(
    camera: String,
    queue: Arc<Mutex<GopQueue>>,
    wake: Arc<Notify>,
    publisher: Publisher,
    metrics: CameraMetrics,
    max_in_flight: usize,
    stop: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut deliveries = JoinSet::new();
    let lock = || queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        while deliveries.try_join_next().is_some() {}
        let next = {
            let mut q = lock();
            let f = q.pop();
            metrics.queue_bytes.set(q.bytes() as i64);
            metrics.queue_frames.set(q.len() as i64);
            f
        };
        let Some(frame) = next else {
            if stop.is_triggered() {
                break;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = stop.cancelled() => {}
            }
            continue;
        };
        // Wait for room in flight; after stop, at most 5 s more (Kafka may be gone).
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.ok(),
            _ = async {
                stop.cancelled().await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            } => None,
        };
        let Some(permit) = permit else {
            let left = lock().len() as u64;
            metrics.dropped_frames.inc_by(left + 1);
            tracing::warn!(%camera, frames = left + 1, "stopping with frames Kafka did not take");
            break;
        };
        let mut delivery = publisher.send(&frame);
        while matches!(delivery, Err(SendError::Busy)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            delivery = publisher.send(&frame);
        }
        match delivery {
            Ok(d) => {
                let m = metrics.clone();
                let cam = camera.clone();
                let (seq, key, size) =
                    (frame.meta.seq, frame.meta.keyframe, frame.data.len() as u64);
                deliveries.spawn(async move {
                    let failure = match d.await {
                        Ok(Ok(_)) => None,
                        Ok(Err((e, _))) => Some(e.to_string()),
                        Err(_) => Some("producer dropped the record".to_owned()),
                    };
                    drop(permit);
                    match failure {
                        None => {
                            m.frames.inc();
                            m.bytes.inc_by(size);
                            if key {
                                m.keyframes.inc();
                            }
                        }
                        Some(error) => {
                            m.delivery_errors.inc();
                            tracing::warn!(camera = %cam, seq, %error, "frame not delivered to Kafka");
                        }
                    }
                });
            }
            Err(SendError::Oversize(size)) => {
                metrics.oversize.inc();
                tracing::error!(
                    %camera,
                    seq = frame.meta.seq,
                    size,
                    limit = publisher.max_payload,
                    "access unit larger than topics.max_message_bytes allows; not published (raise topics.max_message_bytes and the topic's max.message.bytes)"
                );
                drop_dependents(&frame, &lock, &metrics);
            }
            Err(SendError::Failed(error)) => {
                metrics.delivery_errors.inc();
                tracing::warn!(%camera, seq = frame.meta.seq, %error, "frame not enqueued to Kafka");
                drop_dependents(&frame, &lock, &metrics);
            }
            Err(SendError::Busy) => {}
        }
    }
    while deliveries.join_next().await.is_some() {}
}

/// After a keyframe could not be published, its GOP's other frames are dropped.
fn drop_dependents<'a>(
    frame: &QueuedFrame,
    lock: &impl Fn() -> std::sync::MutexGuard<'a, GopQueue>,
    metrics: &CameraMetrics,
) {
    if frame.meta.keyframe {
        let dropped = lock().skip_rest_of_gop();
        metrics.dropped_gops.inc();
        metrics.dropped_frames.inc_by(dropped + 1);
    }
}

//! Producing a record and tracking its delivery, in one place for every producer.
//!
//! Every record Framewire writes (ingest's frames, the worker's stats and dead letters)
//! goes through a [`Delivery`]: it enqueues the record on the producer (waiting while
//! librdkafka's own queue is full), awaits the broker's acknowledgement, counts the
//! outcome per topic in `framewire_kafka_*` metrics and, when asked, retries a failed
//! delivery with exponential backoff until it is acknowledged or the caller stops it.
//!
//! Enqueueing and awaiting are separate steps ([`Delivery::enqueue`] returns a
//! [`Pending`]) so that a caller can keep many records of one key in flight, in order,
//! and await their acknowledgements elsewhere.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, Registry};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use thiserror::Error;

use crate::metrics::Builder;
use crate::shutdown::Shutdown;

/// A record to produce, owned so that it can be sent again.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Topic.
    pub topic: Arc<str>,
    /// Key (the camera id).
    pub key: String,
    /// Value.
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: OwnedHeaders,
    /// Record timestamp, ms since the epoch (`None`: the producer's clock).
    pub timestamp_ms: Option<i64>,
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Why a record was not delivered.
#[derive(Debug, Error)]
pub enum DeliveryError {
    /// librdkafka's queue is full (only from [`Delivery::try_enqueue`]).
    #[error("the producer's queue is full")]
    QueueFull,
    /// The producer refused the record before sending it.
    #[error("not enqueued: {0}")]
    Refused(KafkaError),
    /// The broker did not acknowledge it in time, or rejected it.
    #[error("not delivered: {0}")]
    Failed(KafkaError),
    /// The producer went away before reporting.
    #[error("the producer was dropped before it reported the delivery")]
    Dropped,
    /// The caller stopped the retries.
    #[error("stopped before the record was delivered")]
    Stopped,
}

impl DeliveryError {
    /// The librdkafka error code, when there is one.
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            DeliveryError::Refused(e) | DeliveryError::Failed(e) => e.rdkafka_error_code(),
            DeliveryError::QueueFull => Some(RDKafkaErrorCode::QueueFull),
            _ => None,
        }
    }

    /// True when sending the same record again cannot succeed (it is too large or
    /// invalid); false for what time can fix (timeouts, brokers down, authorization
    /// being fixed).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.code(),
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidMessageSize
                    | RDKafkaErrorCode::InvalidMessage
                    | RDKafkaErrorCode::InvalidRecord
                    | RDKafkaErrorCode::BadMessage
                    | RDKafkaErrorCode::MessageBatchTooLarge
            )
        )
    }

    /// A short, bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self.code() {
            Some(RDKafkaErrorCode::MessageTimedOut) => "timeout",
            Some(RDKafkaErrorCode::QueueFull) => "queue_full",
            Some(
                RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Authentication,
            ) => "auth",
            Some(
                RDKafkaErrorCode::NotEnoughReplicas
                | RDKafkaErrorCode::NotEnoughReplicasAfterAppend,
            ) => "not_enough_replicas",
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                "unknown_topic"
            }
            _ if self.is_permanent() => "invalid_record",
            _ => match self {
                DeliveryError::Dropped => "dropped",
                DeliveryError::Stopped => "stopped",
                _ => "other",
            },
        }
    }
}

/// How a failed delivery is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Report the failure (the producer already retried for its `message.timeout.ms`).
    Never,
    /// Send the record again after `initial`, doubling up to `max`, until it is
    /// acknowledged, the error is permanent, or the caller stops.
    Backoff {
        /// First wait.
        initial: Duration,
        /// Longest wait.
        max: Duration,
    },
}

/// The wait before retry number `attempt` (1-based): `initial × 2^(attempt-1)`, at most `max`.
pub fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    initial
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)))
        .min(max)
}

/// `framewire_kafka_*`: what every producer of a service delivered, per topic.
#[derive(Clone)]
pub struct DeliveryMetrics {
    /// `framewire_kafka_records_delivered_total{topic}`.
    pub delivered: IntCounterVec,
    /// `framewire_kafka_delivery_failures_total{topic, error}`: failed attempts.
    pub failures: IntCounterVec,
    /// `framewire_kafka_delivery_retries_total{topic}`: records sent again.
    pub retries: IntCounterVec,
}

impl DeliveryMetrics {
    /// Registers the metrics.
    pub fn new(registry: &Registry) -> Self {
        let b = Builder(registry);
        DeliveryMetrics {
            delivered: b.counter_vec(
                "framewire_kafka_records_delivered_total",
                "Records the brokers acknowledged",
                &["topic"],
            ),
            failures: b.counter_vec(
                "framewire_kafka_delivery_failures_total",
                "Delivery attempts that failed, by error",
                &["topic", "error"],
            ),
            retries: b.counter_vec(
                "framewire_kafka_delivery_retries_total",
                "Records sent again after a failed delivery",
                &["topic"],
            ),
        }
    }
}

impl DeliveryMetrics {
    /// Creates the series of `topic` at zero (delivered, retries, and failures by
    /// timeout), so that dashboards and `rate()` see the topic before anything happens.
    pub fn touch(&self, topic: &str) {
        self.delivered.with_label_values(&[topic]);
        self.retries.with_label_values(&[topic]);
        self.failures.with_label_values(&[topic, "timeout"]);
    }
}

/// A producer with delivery tracking; cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    producer: FutureProducer,
    metrics: DeliveryMetrics,
}

/// A record handed to the producer, not yet acknowledged.
#[must_use = "a pending delivery reports nothing unless awaited"]
pub struct Pending {
    future: DeliveryFuture,
    topic: Arc<str>,
    metrics: DeliveryMetrics,
}

/// How long an enqueue waits between tries while librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(10);

impl Delivery {
    /// Tracks deliveries of `producer`.
    pub fn new(producer: FutureProducer, metrics: DeliveryMetrics) -> Self {
        Delivery { producer, metrics }
    }

    /// The producer (to flush it, or for metadata probes).
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Its metrics.
    pub fn metrics(&self) -> &DeliveryMetrics {
        &self.metrics
    }

    /// Hands the record to the producer without waiting; [`DeliveryError::QueueFull`]
    /// when librdkafka's queue has no room.
    pub fn try_enqueue(&self, record: &Outgoing) -> Result<Pending, DeliveryError> {
        let mut r = FutureRecord::to(&record.topic)
            .key(record.key.as_str())
            .payload(record.payload.as_slice())
            .headers(record.headers.clone());
        if let Some(ts) = record.timestamp_ms {
            r = r.timestamp(ts);
        }
        match self.producer.send_result(r) {
            Ok(future) => Ok(Pending {
                future,
                topic: record.topic.clone(),
                metrics: self.metrics.clone(),
            }),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(DeliveryError::QueueFull)
            }
            Err((e, _)) => {
                let error = DeliveryError::Refused(e);
                self.count_failure(&record.topic, &error);
                Err(error)
            }
        }
    }

    /// Hands the record to the producer, waiting while librdkafka's queue is full.
    pub async fn enqueue(&self, record: &Outgoing) -> Result<Pending, DeliveryError> {
        loop {
            match self.try_enqueue(record) {
                Err(DeliveryError::QueueFull) => tokio::time::sleep(QUEUE_FULL_WAIT).await,
                other => return other,
            }
        }
    }

    /// Enqueues and awaits one delivery; with [`Retry::Backoff`], sends the record again
    /// after each failure that is not permanent, until it is acknowledged or `stop`
    /// triggers. Every failed attempt is counted and logged (a warning at the first and
    /// then every tenth, debug otherwise) with `what` (e.g. `camera gate-1 seq 12`).
    pub async fn deliver(
        &self,
        record: &Outgoing,
        retry: Retry,
        stop: &Shutdown,
        what: &(dyn std::fmt::Display + Sync),
    ) -> Result<Delivered, DeliveryError> {
        let first = self.enqueue(record).await;
        self.complete(first, record, retry, stop, what).await
    }

    /// [`Delivery::deliver`] for a record already enqueued (`first`, the result of
    /// [`Delivery::enqueue`]): the caller enqueues records in order and completes each
    /// one elsewhere (a retried record may then land after later ones).
    pub async fn complete(
        &self,
        first: Result<Pending, DeliveryError>,
        record: &Outgoing,
        retry: Retry,
        stop: &Shutdown,
        what: &(dyn std::fmt::Display + Sync),
    ) -> Result<Delivered, DeliveryError> {
        let mut attempt = 0u32;
        let mut next = Some(first);
        loop {
            attempt += 1;
            let enqueued = match next.take() {
                Some(first) => first,
                None => self.enqueue(record).await,
            };
            let result = match enqueued {
                Ok(pending) => tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Err(DeliveryError::Stopped),
                    r = pending.delivered() => r,
                },
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(d) => return Ok(d),
                Err(e) => e,
            };
            let Retry::Backoff { initial, max } = retry else {
                tracing::warn!(topic = %record.topic, error = %error, "{what}: record not delivered");
                return Err(error);
            };
            if error.is_permanent() {
                tracing::warn!(topic = %record.topic, error = %error, "{what}: record cannot be delivered (permanent error)");
                return Err(error);
            }
            let wait = backoff(initial, max, attempt);
            if attempt == 1 || attempt.is_multiple_of(10) {
                tracing::warn!(topic = %record.topic, error = %error, attempt, retry_in_ms = wait.as_millis() as u64, "{what}: record not delivered; retrying");
            } else {
                tracing::debug!(topic = %record.topic, error = %error, attempt, "{what}: record not delivered; retrying");
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Err(DeliveryError::Stopped),
                _ = tokio::time::sleep(wait) => {}
            }
            self.metrics
                .retries
                .with_label_values(&[&*record.topic])
                .inc();
        }
    }

    fn count_failure(&self, topic: &str, error: &DeliveryError) {
        self.metrics
            .failures
            .with_label_values(&[topic, error.label()])
            .inc();
    }
}

impl Pending {
    /// Waits for the broker's acknowledgement (or the failure), and counts it.
    pub async fn delivered(self) -> Result<Delivered, DeliveryError> {
        let result = match self.future.await {
            Ok(Ok(d)) => Ok(Delivered {
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((e, _))) => Err(DeliveryError::Failed(e)),
            Err(_) => Err(DeliveryError::Dropped),
        };
        match &result {
            Ok(_) => self
                .metrics
                .delivered
                .with_label_values(&[&*self.topic])
                .inc(),
            Err(e) => self
                .metrics
                .failures
                .with_label_values(&[&*self.topic, e.label()])
                .inc(),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let waits: Vec<u64> = (1..=8)
            .map(|a| {
                backoff(Duration::from_millis(100), Duration::from_secs(5), a).as_millis() as u64
            })
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(
            backoff(Duration::from_millis(100), Duration::from_secs(5), u32::MAX),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn permanent_errors_are_the_ones_a_resend_cannot_fix() {
        let failed = |code| DeliveryError::Failed(KafkaError::MessageProduction(code));
        assert!(failed(RDKafkaErrorCode::MessageSizeTooLarge).is_permanent());
        assert_eq!(
            failed(RDKafkaErrorCode::MessageSizeTooLarge).label(),
            "invalid_record"
        );
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::AllBrokersDown,
        ] {
            assert!(!failed(code).is_permanent(), "{code:?}");
        }
        assert_eq!(failed(RDKafkaErrorCode::MessageTimedOut).label(), "timeout");
        assert_eq!(
            failed(RDKafkaErrorCode::NotEnoughReplicas).label(),
            "not_enough_replicas"
        );
        assert_eq!(DeliveryError::Dropped.label(), "dropped");
    }
}

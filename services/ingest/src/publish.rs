//! Publishing access units: one Kafka record per access unit, key = camera id.

use std::sync::Arc;

use framewire_kit::kafka::{KafkaConfig, KafkaSetupError, headers};
use framewire_kit::telemetry;
use framewire_wire::FrameMeta;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::metrics::Metrics;

/// Sends access units to the frames topic and counts the outcome per camera.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic: Arc<str>,
    metrics: Metrics,
}

impl Publisher {
    /// An idempotent producer (acks=all) with a short linger, sized for large keyframes.
    pub fn new(
        kafka: &KafkaConfig,
        topic: &str,
        max_message_bytes: i32,
        linger_ms: u32,
        metrics: Metrics,
    ) -> Result<Self, KafkaSetupError> {
        let producer = kafka.producer("framewire-ingest", linger_ms, max_message_bytes)?;
        Ok(Publisher {
            producer,
            topic: topic.into(),
            metrics,
        })
    }

    /// The producer, for metadata probes.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Enqueues one access unit. Delivery is awaited in the background; failures are
    /// counted and logged with the camera id.
    pub fn publish(&self, meta: &FrameMeta, data: &[u8], span: &tracing::Span) {
        let camera = meta.camera.as_str();
        let mut pairs: Vec<(String, String)> = meta
            .to_headers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        pairs.extend(telemetry::inject(span));
        let record = FutureRecord::to(&self.topic)
            .key(camera)
            .payload(data)
            .headers(headers(pairs))
            .timestamp(meta.capture_ms);
        match self.producer.send_result(record) {
            Ok(delivery) => {
                self.metrics.frames.with_label_values(&[camera]).inc();
                self.metrics
                    .bytes
                    .with_label_values(&[camera])
                    .inc_by(data.len() as u64);
                if meta.keyframe {
                    self.metrics.keyframes.with_label_values(&[camera]).inc();
                }
                let metrics = self.metrics.clone();
                let camera = meta.camera.clone();
                let seq = meta.seq;
                tokio::spawn(async move {
                    let failure = match delivery.await {
                        Ok(Ok(_)) => None,
                        Ok(Err((e, _))) => Some(e.to_string()),
                        Err(_) => Some("producer dropped the record".to_owned()),
                    };
                    if let Some(error) = failure {
                        metrics.delivery_errors.with_label_values(&[&camera]).inc();
                        tracing::warn!(%camera, seq, %error, "frame not delivered to Kafka");
                    }
                });
            }
            Err((e, _)) => {
                self.metrics
                    .delivery_errors
                    .with_label_values(&[camera])
                    .inc();
                tracing::warn!(camera, seq = meta.seq, error = %e, "frame not enqueued to Kafka");
            }
        }
    }

    /// Waits until every enqueued record is delivered (or the timeout passes).
    pub fn flush(&self, timeout: std::time::Duration) {
        if let Err(e) = self.producer.flush(Timeout::After(timeout)) {
            tracing::warn!(error = %e, "producer flush incomplete");
        }
    }
}

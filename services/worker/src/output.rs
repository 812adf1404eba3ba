//! What the worker writes: a statistics record per measured picture, a detections record
//! per analysed picture and a dead letter per poison record, each delivered before its
//! frames record counts as done.
//!
//! Records are enqueued in the order they are produced (one camera's records stay in
//! order) and their acknowledgements awaited in tasks. A delivery that fails is sent again
//! with exponential backoff until Kafka takes it: a broker outage or a leader election
//! delays progress, it never loses a frame or pins a partition once Kafka is back. The
//! retries of a partition stop when it is revoked (its next owner redoes the work) and at
//! the end of the shutdown grace. Only records Kafka can never accept end otherwise: a
//! dead letter too large for the topic is sent again without its payload (the reason and
//! the frame's identity are what count); a statistics record, which is small, is counted
//! as undeliverable.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use framewire_kit::delivery::{Delivery, DeliveryError, Outgoing, Retry};
use framewire_kit::kafka::headers;
use framewire_kit::shutdown::Shutdown;
use framewire_kit::telemetry;
use framewire_wire::{DetectionsRecord, StatsRecord, header as h};
use rdkafka::message::{Header, OwnedHeaders};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::poison::Reason;

/// A frames record whose output was delivered: its offset is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// Header on a dead letter sent without its payload: the payload's size in bytes.
pub const DLQ_PAYLOAD_DROPPED: &str = "fw-dlq-payload-dropped";

/// The stats and dead-letter producer with delivery tracking.
#[derive(Clone)]
pub struct Output {
    delivery: Delivery,
    stats_topic: Arc<str>,
    detections_topic: Arc<str>,
    dlq_topic: Arc<str>,
    retry: Retry,
    finished: mpsc::UnboundedSender<Finished>,
    /// Per partition, what stops its retries (revocation, end of the grace period).
    stops: Arc<Mutex<HashMap<i32, Shutdown>>>,
    metrics: Metrics,
}

/// What a record carries for its frame.
enum Kind {
    Stats,
    Detections,
    DeadLetter(Reason),
}

impl Output {
    /// An output on `delivery`; finished offsets are reported on `finished`.
    pub fn new(
        delivery: Delivery,
        stats_topic: &str,
        detections_topic: &str,
        dlq_topic: &str,
        retry_max: Duration,
        finished: mpsc::UnboundedSender<Finished>,
        metrics: Metrics,
    ) -> Self {
        for topic in [stats_topic, detections_topic, dlq_topic] {
            delivery.metrics().touch(topic);
        }
        Output {
            delivery,
            stats_topic: stats_topic.into(),
            detections_topic: detections_topic.into(),
            dlq_topic: dlq_topic.into(),
            retry: Retry::Backoff {
                initial: Duration::from_millis(100),
                max: retry_max,
            },
            finished,
            stops: Arc::default(),
            metrics,
        }
    }

    /// The producer, to flush it.
    pub fn producer(&self) -> &rdkafka::producer::FutureProducer {
        self.delivery.producer()
    }

    /// Stops the retries of `partitions` (revoked: their next owner redoes the work).
    pub fn stop_partitions(&self, partitions: &[i32]) {
        let mut stops = self.stops.lock().unwrap_or_else(|p| p.into_inner());
        for p in partitions {
            if let Some(s) = stops.remove(p) {
                s.trigger();
            }
        }
    }

    /// Stops every retry (end of the shutdown grace).
    pub fn stop_all(&self) {
        let mut stops = self.stops.lock().unwrap_or_else(|p| p.into_inner());
        for (_, s) in stops.drain() {
            s.trigger();
        }
    }

    fn stop_of(&self, partition: i32) -> Shutdown {
        let mut stops = self.stops.lock().unwrap_or_else(|p| p.into_inner());
        stops.entry(partition).or_default().clone()
    }

    /// Enqueues a statistics record; the returned future completes its delivery.
    pub async fn stats(
        &self,
        record: &StatsRecord,
        span: &tracing::Span,
        partition: i32,
        offset: i64,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let out = self.json(
            &self.stats_topic,
            &record.camera,
            record,
            record.capture_ms,
            span,
        )?;
        Some(self.send(out, Kind::Stats, partition, offset).await)
    }

    /// Enqueues a detections record; the returned future completes its delivery.
    pub async fn detections(
        &self,
        record: &DetectionsRecord,
        span: &tracing::Span,
        partition: i32,
        offset: i64,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let out = self.json(
            &self.detections_topic,
            &record.camera,
            record,
            record.capture_ms,
            span,
        )?;
        Some(self.send(out, Kind::Detections, partition, offset).await)
    }

    /// A JSON record of `camera` for `topic`, with the span's trace context and the
    /// capture time as its timestamp (`None`, logged, if it does not serialise).
    fn json(
        &self,
        topic: &Arc<str>,
        camera: &str,
        value: &impl serde::Serialize,
        capture_ms: i64,
        span: &tracing::Span,
    ) -> Option<Outgoing> {
        let payload = match serde_json::to_vec(value) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%camera, %topic, error = %e, "cannot serialize a record");
                return None;
            }
        };
        let mut pairs = telemetry::inject(span);
        pairs.push((h::CAMERA.to_owned(), camera.to_owned()));
        Some(Outgoing {
            topic: topic.clone(),
            key: camera.to_owned(),
            payload,
            headers: headers(pairs),
            timestamp_ms: Some(capture_ms),
        })
    }

    /// Enqueues a dead letter: the record's bytes with its headers plus `fw-dlq-reason`
    /// and `fw-dlq-source: worker`; the returned future completes its delivery.
    pub async fn dead_letter(
        &self,
        camera: &str,
        reason: Reason,
        payload: Vec<u8>,
        original: OwnedHeaders,
        partition: i32,
        offset: i64,
    ) -> impl Future<Output = ()> + Send + 'static {
        let headers = original
            .insert(Header {
                key: h::DLQ_REASON,
                value: Some(reason.as_str()),
            })
            .insert(Header {
                key: h::DLQ_SOURCE,
                value: Some("worker"),
            });
        let out = Outgoing {
            topic: self.dlq_topic.clone(),
            key: camera.to_owned(),
            payload,
            headers,
            timestamp_ms: None,
        };
        self.send(out, Kind::DeadLetter(reason), partition, offset)
            .await
    }

    async fn send(
        &self,
        out: Outgoing,
        kind: Kind,
        partition: i32,
        offset: i64,
    ) -> impl Future<Output = ()> + Send + 'static {
        let first = self.delivery.enqueue(&out).await;
        let this = self.clone();
        let stop = self.stop_of(partition);
        async move {
            let what = format!("camera {} partition {partition} offset {offset}", out.key);
            let mut result = this
                .delivery
                .complete(first, &out, this.retry, &stop, &what)
                .await;
            if let (Err(e), Kind::DeadLetter(_)) = (&result, &kind)
                && e.is_permanent()
                && !out.payload.is_empty()
            {
                let size = out.payload.len().to_string();
                let bare = Outgoing {
                    payload: Vec::new(),
                    headers: out.headers.clone().insert(Header {
                        key: DLQ_PAYLOAD_DROPPED,
                        value: Some(&size),
                    }),
                    ..out.clone()
                };
                result = this.delivery.deliver(&bare, this.retry, &stop, &what).await;
            }
            let camera = [out.key.as_str()];
            match result {
                Ok(_) => {
                    if let Kind::DeadLetter(reason) = kind {
                        this.metrics
                            .dlq_records
                            .with_label_values(&[&out.key, reason.as_str()])
                            .inc();
                    }
                    let _ = this.finished.send(Finished { partition, offset });
                }
                Err(DeliveryError::Stopped) => {
                    // Revoked or shutting down: not done, its next owner redoes it.
                }
                Err(e) => {
                    let counter = match kind {
                        Kind::Stats | Kind::Detections => &this.metrics.delivery_errors,
                        Kind::DeadLetter(_) => &this.metrics.dlq_delivery_errors,
                    };
                    counter.with_label_values(&camera).inc();
                    this.metrics
                        .undeliverable
                        .with_label_values(&[&*out.topic])
                        .inc();
                    tracing::error!(camera = %out.key, partition, offset, topic = %out.topic, error = %e, "record can never be delivered; its frame is counted in framewire_worker_undeliverable_total");
                    let _ = this.finished.send(Finished { partition, offset });
                }
            }
        }
    }
}

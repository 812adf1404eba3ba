//! Publishing a camera's queued access units: one Kafka record each, key = camera id.
//!
//! A camera's [`Sender`] hands its frames to the producer in order, through
//! [`framewire_kit::delivery::Delivery`] (which counts every acknowledgement per topic),
//! and keeps at most `max_in_flight` of them unacknowledged. When Kafka is slow or down,
//! acknowledgements stop, the sender stops taking from the queue, and the queue (see
//! [`crate::queue`]) drops whole GOPs.
//!
//! A keyframe that is not published — larger than the record limit, refused by the
//! producer, or not acknowledged within `delivery_timeout_ms` — takes its GOP with it: the
//! frames of that GOP still queued, or still arriving, are dropped and counted
//! (`reason="reference_lost"`), and the sender goes on from the next keyframe. Frames of
//! that GOP already handed to the producer cannot be recalled.
//!
//! While the camera's lease is in doubt ([`Mode::Hold`]) the sender hands nothing to the
//! producer; frames keep queueing (and the queue keeps its bound) until the lease is
//! confirmed ([`Mode::Publish`]) or lost for good ([`Mode::Abandon`]).

use std::future::Future;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use framewire_kit::delivery::{Delivery, DeliveryError, DeliveryMetrics, Outgoing};
use framewire_kit::kafka::{KafkaConfig, KafkaSetupError, headers};
use framewire_kit::shutdown::Shutdown;
use framewire_kit::telemetry;
use framewire_wire::header;
use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::util::Timeout;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::metrics::CameraMetrics;
use crate::queue::{DropReason, GopId, GopQueue, Outbox, QueuedFrame};

/// Room left in a record for headers and batch overhead.
const RECORD_OVERHEAD: usize = 1024;

/// After a stop, how long the sender still waits for room in flight (Kafka may be gone).
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Why a frame was not handed to the producer.
#[derive(Debug)]
pub enum EnqueueError {
    /// Larger than the record limit.
    Oversize {
        /// The access unit's size.
        size: usize,
        /// The limit (`topics.max_message_bytes` less room for headers).
        limit: usize,
    },
    /// The producer refused it.
    Refused(String),
}

/// Where a sender hands its frames: the Kafka [`Publisher`], or a fake in tests.
pub trait FrameSink: Send + Sync + 'static {
    /// Hands `frame` to the producer (waiting while the producer's own queue is full);
    /// the future it returns resolves with the broker's acknowledgement or the failure.
    fn enqueue(
        &self,
        frame: QueuedFrame,
    ) -> impl Future<Output = Result<BoxFuture<'static, Result<(), String>>, EnqueueError>> + Send;
}

/// The frames-topic producer, shared by all cameras.
#[derive(Clone)]
pub struct Publisher {
    delivery: Delivery,
    topic: Arc<str>,
    max_payload: usize,
}

impl Publisher {
    /// The idempotent producer (acks=all, lz4) sized for `max_message_bytes` records,
    /// counting its deliveries in `metrics`.
    pub fn new(
        kafka: &KafkaConfig,
        topic: &str,
        max_message_bytes: i32,
        linger_ms: u32,
        delivery_timeout_ms: u64,
        metrics: DeliveryMetrics,
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
        metrics.touch(topic);
        Ok(Publisher {
            delivery: Delivery::new(producer, metrics),
            topic: topic.into(),
            max_payload,
        })
    }

    /// The producer, for metadata probes and the control topic.
    pub fn producer(&self) -> &FutureProducer {
        self.delivery.producer()
    }

    /// Waits until every enqueued record is delivered (or the timeout passes).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer().flush(Timeout::After(timeout)) {
            tracing::warn!(error = %e, "producer flush incomplete");
        }
    }
}

impl FrameSink for Publisher {
    async fn enqueue(
        &self,
        frame: QueuedFrame,
    ) -> Result<BoxFuture<'static, Result<(), String>>, EnqueueError> {
        let size = frame.data.len();
        if size > self.max_payload {
            return Err(EnqueueError::Oversize {
                size,
                limit: self.max_payload,
            });
        }
        let mut pairs: Vec<(String, String)> = frame
            .meta
            .to_headers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        if let Some(rate) = frame.detect {
            pairs.push((header::DETECT.to_owned(), rate.to_string()));
        }
        pairs.extend(telemetry::inject(&frame.span));
        let record = Outgoing {
            topic: self.topic.clone(),
            key: frame.meta.camera,
            payload: frame.data,
            headers: headers(pairs),
            timestamp_ms: Some(frame.meta.capture_ms),
        };
        match self.delivery.enqueue(&record).await {
            Ok(pending) => Ok(pending
                .delivered()
                .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
                .boxed()),
            Err(e) if e.code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
                Err(EnqueueError::Oversize {
                    size,
                    limit: self.max_payload,
                })
            }
            Err(DeliveryError::Refused(e)) => Err(EnqueueError::Refused(e.to_string())),
            Err(e) => Err(EnqueueError::Refused(e.to_string())),
        }
    }
}

/// Whether a camera's frames may go to Kafka (set by the registry from the camera's lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The lease is held: publish.
    Publish,
    /// The lease is in doubt (lost, not yet reassigned): queue, hand nothing over.
    Hold,
    /// Drop everything queued and stop at once, counting it with this reason.
    Abandon(DropReason),
}

/// One camera's sender: takes frames from the queue in order and publishes them.
pub struct Sender<S> {
    camera: String,
    outbox: Outbox,
    sink: Arc<S>,
    metrics: CameraMetrics,
    permits: Arc<Semaphore>,
    deliveries: JoinSet<()>,
    mode: watch::Receiver<Mode>,
    stop: Shutdown,
}

/// What the sender waits for when it cannot go on.
enum Wait {
    /// Look again.
    Again,
    /// Room in flight for one more record.
    Permit(OwnedSemaphorePermit),
    /// Stopped with frames Kafka did not take.
    GiveUp,
}

impl<S: FrameSink> Sender<S> {
    /// A sender for `camera`'s outbox.
    pub fn new(
        camera: String,
        outbox: Outbox,
        sink: Arc<S>,
        metrics: CameraMetrics,
        max_in_flight: usize,
        mode: watch::Receiver<Mode>,
        stop: Shutdown,
    ) -> Self {
        Sender {
            camera,
            outbox,
            sink,
            metrics,
            permits: Arc::new(Semaphore::new(max_in_flight)),
            deliveries: JoinSet::new(),
            mode,
            stop,
        }
    }

    fn lock(&self) -> MutexGuard<'_, GopQueue> {
        self.outbox.lock()
    }

    /// Sends the queue until `stop`, then what is left (at most [`STOP_WAIT`] more while
    /// Kafka takes nothing), and waits for the acknowledgements; [`Mode::Abandon`] ends it
    /// at once.
    pub async fn run(mut self) {
        loop {
            while self.deliveries.try_join_next().is_some() {}
            // Nobody left to set the mode: the camera is gone.
            let mode = if self.mode.has_changed().is_err() {
                Mode::Abandon(DropReason::Stopped)
            } else {
                *self.mode.borrow_and_update()
            };
            match mode {
                Mode::Abandon(reason) => return self.abandon(reason),
                Mode::Hold if self.stop.is_triggered() => {
                    return self.abandon(DropReason::LeaseLost);
                }
                Mode::Hold => {
                    self.on_hold().await;
                    continue;
                }
                Mode::Publish => {}
            }
            let permit = match self.room().await {
                Wait::Permit(p) => p,
                Wait::Again => continue,
                Wait::GiveUp => return self.abandon(DropReason::Stopped),
            };
            let next = {
                let mut q = self.lock();
                let f = q.pop();
                self.metrics.queue_bytes.set(q.bytes() as i64);
                self.metrics.queue_frames.set(q.len() as i64);
                f.map(|f| (q.depends_on_failed(&f), f))
            };
            match next {
                None if self.stop.is_triggered() => break,
                None => self.on_empty().await,
                Some((true, _)) => self.metrics.dropped(DropReason::ReferenceLost, 1),
                Some((false, frame)) => self.send(frame, permit).await,
            }
        }
        self.await_acks().await;
    }

    /// Waits while the lease is in doubt.
    async fn on_hold(&mut self) {
        tokio::select! {
            _ = self.mode.changed() => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// Waits for room in flight, a mode change, or the end of the wait after a stop.
    async fn room(&mut self) -> Wait {
        let permits = self.permits.clone();
        let stop = self.stop.clone();
        tokio::select! {
            p = permits.acquire_owned() => match p {
                Ok(p) => Wait::Permit(p),
                Err(_) => Wait::GiveUp,
            },
            _ = self.mode.changed() => Wait::Again,
            _ = async {
                stop.cancelled().await;
                tokio::time::sleep(STOP_WAIT).await;
            } => Wait::GiveUp,
        }
    }

    /// Waits for the next push, a mode change or the stop.
    async fn on_empty(&mut self) {
        tokio::select! {
            _ = self.outbox.wake.notified() => {}
            _ = self.mode.changed() => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// Hands one frame to the producer; its acknowledgement is awaited in a task.
    async fn send(&mut self, frame: QueuedFrame, permit: OwnedSemaphorePermit) {
        let (seq, keyframe, size) = (frame.meta.seq, frame.meta.keyframe, frame.data.len());
        let gop = frame.gop();
        match self.sink.enqueue(frame).await {
            Ok(ack) => {
                let (m, outbox, camera) = (
                    self.metrics.clone(),
                    self.outbox.clone(),
                    self.camera.clone(),
                );
                self.deliveries.spawn(async move {
                    // The permit goes last: the sender must not take the next frame
                    // before a failed keyframe's GOP is out of the queue.
                    let _permit = permit;
                    match ack.await {
                        Ok(()) => {
                            m.frames.inc();
                            m.bytes.inc_by(size as u64);
                            if keyframe {
                                m.keyframes.inc();
                            }
                        }
                        Err(error) => {
                            m.delivery_errors.inc();
                            tracing::warn!(%camera, seq, keyframe, %error, "frame not delivered to Kafka");
                            if keyframe {
                                let dropped = outbox.lock().fail_gop(&gop);
                                m.dropped_gops.inc();
                                m.dropped(DropReason::ReferenceLost, dropped);
                            }
                        }
                    }
                });
            }
            Err(EnqueueError::Oversize { size, limit }) => {
                self.metrics.oversize.inc();
                tracing::error!(
                    camera = %self.camera,
                    seq,
                    size,
                    limit,
                    "access unit larger than topics.max_message_bytes allows; not published (raise topics.max_message_bytes and the topic's max.message.bytes)"
                );
                self.drop_dependents(keyframe, &gop);
            }
            Err(EnqueueError::Refused(error)) => {
                self.metrics.delivery_errors.inc();
                tracing::warn!(camera = %self.camera, seq, %error, "frame not enqueued to Kafka");
                self.drop_dependents(keyframe, &gop);
            }
        }
    }

    /// After a keyframe could not be published, its GOP's other frames are dropped.
    fn drop_dependents(&self, keyframe: bool, gop: &GopId) {
        if keyframe {
            let dropped = self.lock().fail_gop(gop);
            self.metrics.dropped_gops.inc();
            self.metrics.dropped(DropReason::ReferenceLost, dropped);
        }
    }

    /// Drops what is queued and leaves: the records in flight are acknowledged (and
    /// counted) in the background.
    fn abandon(mut self, reason: DropReason) {
        let left = {
            let mut q = self.lock();
            let n = q.clear();
            self.metrics.queue_bytes.set(0);
            self.metrics.queue_frames.set(0);
            n
        };
        if left > 0 {
            self.metrics.dropped(reason, left);
            tracing::warn!(camera = %self.camera, frames = left, reason = reason.as_str(), "frames dropped unpublished");
        }
        self.deliveries.detach_all();
    }

    /// Waits for every acknowledgement, unless told to abandon meanwhile.
    async fn await_acks(mut self) {
        loop {
            tokio::select! {
                r = self.deliveries.join_next() => if r.is_none() { return },
                changed = self.mode.changed() => {
                    let mode = match changed {
                        Ok(()) => *self.mode.borrow_and_update(),
                        Err(_) => Mode::Abandon(DropReason::Stopped),
                    };
                    if let Mode::Abandon(reason) = mode {
                        return self.abandon(reason);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use framewire_wire::FrameMeta;
    use tokio::sync::oneshot;

    type Ack = oneshot::Sender<Result<(), String>>;

    /// A producer that records what it was handed; every acknowledgement is held until
    /// the test releases it.
    #[derive(Default)]
    struct FakeSink {
        sent: Mutex<Vec<u64>>,
        acks: Mutex<Vec<(u64, Ack)>>,
    }

    impl FrameSink for FakeSink {
        async fn enqueue(
            &self,
            frame: QueuedFrame,
        ) -> Result<BoxFuture<'static, Result<(), String>>, EnqueueError> {
            self.sent.lock().unwrap().push(frame.meta.seq);
            let (tx, rx) = oneshot::channel();
            self.acks.lock().unwrap().push((frame.meta.seq, tx));
            Ok(rx.map(|r| r.unwrap_or(Err("gone".into()))).boxed())
        }
    }

    impl FakeSink {
        fn ack(&self, seq: u64, result: Result<(), String>) {
            let mut acks = self.acks.lock().unwrap();
            let i = acks.iter().position(|(s, _)| *s == seq).unwrap();
            let (_, tx) = acks.remove(i);
            let _ = tx.send(result);
        }
        fn fail(&self, seq: u64) {
            self.ack(seq, Err("Message timed out".into()));
        }
        fn ok(&self, seqs: &[u64]) {
            for &s in seqs {
                self.ack(s, Ok(()));
            }
        }
        fn sent(&self) -> Vec<u64> {
            self.sent.lock().unwrap().clone()
        }
    }

    fn frame(seq: u64, gop: u64) -> QueuedFrame {
        QueuedFrame {
            detect: None,
            meta: FrameMeta {
                camera: "c".into(),
                session: "s".into(),
                seq,
                pts_90k: 0,
                capture_ms: 0,
                keyframe: seq.is_multiple_of(gop),
                codec: "h264".into(),
                dimensions: None,
            },
            gop_seq: seq - seq % gop,
            data: vec![0; 10],
            span: tracing::Span::none(),
        }
    }

    struct Harness {
        outbox: Outbox,
        sink: Arc<FakeSink>,
        mode: watch::Sender<Mode>,
        stop: Shutdown,
        metrics: CameraMetrics,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(max_in_flight: usize) -> Harness {
        let metrics = crate::metrics::Metrics::new(&prometheus::Registry::new()).camera("c");
        let outbox = Outbox::new(1 << 20);
        let sink = Arc::new(FakeSink::default());
        let (mode, rx) = watch::channel(Mode::Publish);
        let stop = Shutdown::new();
        let sender = Sender::new(
            "c".into(),
            outbox.clone(),
            sink.clone(),
            metrics.clone(),
            max_in_flight,
            rx,
            stop.clone(),
        );
        let task = tokio::spawn(sender.run());
        Harness {
            outbox,
            sink,
            mode,
            stop,
            metrics,
            task,
        }
    }

    impl Harness {
        fn push(&self, seqs: std::ops::Range<u64>, gop: u64) {
            for seq in seqs {
                let pushed = self.outbox.lock().push(frame(seq, gop));
                if let Some(reason) = pushed.skipped {
                    self.metrics.dropped(reason, 1);
                }
                self.outbox.wake.notify_one();
            }
        }
        fn dropped(&self, reason: DropReason) -> u64 {
            self.metrics.dropped_count(reason)
        }
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn a_keyframe_whose_delivery_fails_takes_its_queued_gop_with_it() {
        // Room for 3 records in flight: keyframe 0 and P-frames 1-2 are handed over, 3-9
        // wait in the queue while the keyframe's acknowledgement is pending.
        let h = start(3);
        h.push(0..10, 10);
        settle().await;
        assert_eq!(h.sink.sent(), [0, 1, 2]);
        // The keyframe times out: 3-9 of its GOP are never sent; the next GOP is.
        h.sink.fail(0);
        h.sink.ok(&[1, 2]);
        settle().await;
        h.push(10..15, 10);
        settle().await;
        assert_eq!(h.sink.sent(), [0, 1, 2, 10, 11, 12]);
        assert_eq!(h.dropped(DropReason::ReferenceLost), 7);
        assert_eq!(h.metrics.delivery_errors.get(), 1);
        h.stop.trigger();
        h.sink.ok(&[10, 11, 12]);
        settle().await;
        h.sink.ok(&[13, 14]);
        let _ = h.task.await;
        assert_eq!(h.metrics.frames.get(), 7, "1, 2 and 10-14 acknowledged");
    }

    #[tokio::test]
    async fn frames_of_the_failed_gop_still_arriving_are_dropped() {
        let h = start(100);
        h.push(0..4, 10);
        settle().await;
        h.sink.fail(0);
        settle().await;
        h.push(4..12, 10);
        settle().await;
        assert_eq!(h.sink.sent(), [0, 1, 2, 3, 10, 11]);
        h.sink.ok(&[1, 2, 3, 11]);
        assert_eq!(h.dropped(DropReason::ReferenceLost), 6);
        h.stop.trigger();
        h.sink.ok(&[10]);
        let _ = h.task.await;
    }

    #[tokio::test]
    async fn held_frames_wait_and_go_out_in_order_or_are_dropped() {
        let h = start(100);
        h.mode.send_replace(Mode::Hold);
        h.push(0..5, 10);
        settle().await;
        assert!(h.sink.sent().is_empty(), "nothing leaves while held");
        h.mode.send_replace(Mode::Publish);
        settle().await;
        assert_eq!(h.sink.sent(), [0, 1, 2, 3, 4]);
        h.mode.send_replace(Mode::Hold);
        h.push(5..9, 10);
        settle().await;
        h.mode.send_replace(Mode::Abandon(DropReason::LeaseLost));
        let _ = h.task.await;
        assert_eq!(h.sink.sent().len(), 5);
        assert_eq!(h.metrics.dropped_count(DropReason::LeaseLost), 4);
    }
}

//! A camera's bounded queue of access units waiting for Kafka, organised in GOPs.
//!
//! When Kafka is slow or down, the queue fills up to its byte bound and then drops whole
//! GOPs, oldest first, so what reaches Kafka stays decodable: a GOP is either published
//! from its keyframe on or (when its tail is dropped) cut short, never started in the
//! middle. If the GOP still being received has to go, the rest of it is dropped as it
//! arrives, until the next keyframe. The same holds when a keyframe could not be
//! delivered ([`GopQueue::fail_gop`]): the frames of its GOP still queued, and those still
//! to arrive, are dropped, because nothing could decode them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// A camera's queue and the notification its sender waits on; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    /// The queue.
    pub queue: Arc<Mutex<GopQueue>>,
    /// Notified on every push.
    pub wake: Arc<Notify>,
}

impl Outbox {
    /// An empty outbox holding at most `max_bytes` of access units.
    pub fn new(max_bytes: usize) -> Self {
        Outbox {
            queue: Arc::new(Mutex::new(GopQueue::new(max_bytes))),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The queue, locked (a panic elsewhere does not poison it for good).
    pub fn lock(&self) -> MutexGuard<'_, GopQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One access unit and what travels with it.
pub struct QueuedFrame {
    /// Header metadata.
    pub meta: framewire_wire::FrameMeta,
    /// `fw-seq` of the keyframe that starts this frame's GOP (the frame's own for a
    /// keyframe): with the session it names the GOP the frame depends on.
    pub gop_seq: u64,
    /// Annex B bytes.
    pub data: Vec<u8>,
    /// The frame's span, for `traceparent`.
    pub span: tracing::Span,
    /// The camera's detection rate, when its spec sets one (the `fw-detect` header).
    pub detect: Option<framewire_wire::AnalysisRate>,
}

impl QueuedFrame {
    /// The GOP this frame belongs to.
    pub fn gop(&self) -> GopId {
        GopId {
            session: self.meta.session.clone(),
            seq: self.gop_seq,
        }
    }

    fn in_gop(&self, gop: &GopId) -> bool {
        self.gop_seq == gop.seq && self.meta.session == gop.session
    }
}

/// A GOP: the session and the `fw-seq` of its keyframe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GopId {
    /// `fw-session`.
    pub session: String,
    /// `fw-seq` of the keyframe.
    pub seq: u64,
}

/// Why access units were dropped (the `reason` label of
/// `framewire_ingest_dropped_frames_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The outage queue was full: whole GOPs went, oldest first.
    QueueFull,
    /// Their keyframe was not delivered (oversize, refused or failed): they would not decode.
    ReferenceLost,
    /// The camera's lease was lost and went to another replica before they were published.
    LeaseLost,
    /// The camera stopped before Kafka took them (shutdown grace or Kafka gone).
    Stopped,
}

impl DropReason {
    /// Every reason, for the metric's series.
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::ReferenceLost,
        DropReason::LeaseLost,
        DropReason::Stopped,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::ReferenceLost => "reference_lost",
            DropReason::LeaseLost => "lease_lost",
            DropReason::Stopped => "stopped",
        }
    }
}

struct Gop {
    frames: VecDeque<QueuedFrame>,
    bytes: usize,
}

/// What a push did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Whole or partial GOPs dropped to make room.
    pub dropped_gops: u64,
    /// Access units of those GOPs (reason `queue_full`).
    pub dropped_frames: u64,
    /// The pushed access unit itself was dropped, because the start of its GOP was
    /// dropped earlier (for this reason).
    pub skipped: Option<DropReason>,
}

/// The queue. Not thread-safe by itself; the camera wraps it in a mutex.
pub struct GopQueue {
    gops: VecDeque<Gop>,
    bytes: usize,
    frames: usize,
    max_bytes: usize,
    /// The current GOP was dropped (and why): drop what follows until the next keyframe.
    skip_to_keyframe: Option<DropReason>,
    /// The GOP of the last frame pushed (the one still being received).
    receiving: Option<GopId>,
    /// The last GOP whose keyframe was not delivered.
    failed: Option<GopId>,
}

impl GopQueue {
    /// An empty queue holding at most `max_bytes` of access units.
    pub fn new(max_bytes: usize) -> Self {
        GopQueue {
            gops: VecDeque::new(),
            bytes: 0,
            frames: 0,
            max_bytes,
            skip_to_keyframe: None,
            receiving: None,
            failed: None,
        }
    }

    /// Queued bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queued access units.
    pub fn len(&self) -> usize {
        self.frames
    }

    /// Appends an access unit, dropping the oldest GOPs while over the bound.
    pub fn push(&mut self, frame: QueuedFrame) -> Pushed {
        let mut out = Pushed::default();
        let key = frame.meta.keyframe;
        self.receiving = Some(frame.gop());
        if key {
            self.skip_to_keyframe = None;
        } else if let Some(reason) = self.skip_to_keyframe {
            out.skipped = Some(reason);
            return out;
        }
        let size = frame.data.len();
        // A keyframe opens a GOP; a later frame joins the current one (or a continuation
        // of it, when everything before it was already sent).
        if key || self.gops.is_empty() {
            self.gops.push_back(Gop {
                frames: VecDeque::new(),
                bytes: 0,
            });
        }
        if let Some(gop) = self.gops.back_mut() {
            gop.frames.push_back(frame);
            gop.bytes += size;
        }
        self.bytes += size;
        self.frames += 1;
        while self.bytes > self.max_bytes {
            let Some(gop) = self.gops.pop_front() else {
                break;
            };
            self.bytes -= gop.bytes;
            self.frames -= gop.frames.len();
            out.dropped_gops += 1;
            out.dropped_frames += gop.frames.len() as u64;
            if self.gops.is_empty() {
                // The GOP being received is gone: its remaining frames would not decode.
                self.skip_to_keyframe = Some(DropReason::QueueFull);
            }
        }
        out
    }

    /// Takes the oldest access unit.
    pub fn pop(&mut self) -> Option<QueuedFrame> {
        // A GOP sent to its end stays while it is the current one; skip it once a newer one exists.
        while self.gops.len() > 1 && self.gops.front().is_some_and(|g| g.frames.is_empty()) {
            self.gops.pop_front();
        }
        let gop = self.gops.front_mut()?;
        let frame = gop.frames.pop_front()?;
        gop.bytes -= frame.data.len();
        self.bytes -= frame.data.len();
        self.frames -= 1;
        // Keep the last (current) GOP even when empty: later frames continue it.
        if gop.frames.is_empty() && self.gops.len() > 1 {
            self.gops.pop_front();
        }
        Some(frame)
    }

    /// The keyframe of `gop` was not delivered: drops the frames of that GOP still
    /// queued, and those still to arrive (until the next keyframe). Returns how many were
    /// dropped now; [`GopQueue::depends_on_failed`] tells the sender about a frame it
    /// already took.
    pub fn fail_gop(&mut self, gop: &GopId) -> u64 {
        let mut dropped = 0;
        for g in &mut self.gops {
            let before = g.frames.len();
            let mut freed = 0;
            g.frames.retain(|f| {
                let drop = !f.meta.keyframe && f.in_gop(gop);
                if drop {
                    freed += f.data.len();
                }
                !drop
            });
            let n = before - g.frames.len();
            dropped += n as u64;
            g.bytes -= freed;
            self.bytes -= freed;
            self.frames -= n;
        }
        // Empty GOPs go, except the last one (later frames of the current GOP continue it).
        let last = self.gops.len().saturating_sub(1);
        let mut i = 0;
        self.gops.retain(|g| {
            let keep = !g.frames.is_empty() || i == last;
            i += 1;
            keep
        });
        if self.receiving.as_ref() == Some(gop) {
            self.skip_to_keyframe = Some(DropReason::ReferenceLost);
        }
        self.failed = Some(gop.clone());
        dropped
    }

    /// Whether `frame` (taken from the queue, not yet sent) depends on a keyframe that
    /// was not delivered.
    pub fn depends_on_failed(&self, frame: &QueuedFrame) -> bool {
        !frame.meta.keyframe && self.failed.as_ref().is_some_and(|g| frame.in_gop(g))
    }

    /// Drops everything queued (a lost lease, a stop without Kafka); returns the access
    /// units dropped. Frames still arriving start again at a keyframe.
    pub fn clear(&mut self) -> u64 {
        let dropped = self.frames as u64;
        self.gops.clear();
        self.bytes = 0;
        self.frames = 0;
        if dropped > 0 || self.receiving.is_some() {
            self.skip_to_keyframe = Some(DropReason::Stopped);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use framewire_wire::FrameMeta;

    fn frame_in(session: &str, seq: u64, gop_seq: u64, size: usize) -> QueuedFrame {
        QueuedFrame {
            detect: None,
            meta: FrameMeta {
                camera: "c".into(),
                session: session.into(),
                seq,
                pts_90k: 0,
                capture_ms: 0,
                keyframe: seq == gop_seq,
                codec: "h264".into(),
                dimensions: None,
            },
            gop_seq,
            data: vec![0; size],
            span: tracing::Span::none(),
        }
    }

    /// Frame `seq` of session "s" with GOPs of `gop` frames.
    fn frame(seq: u64, gop: u64, size: usize) -> QueuedFrame {
        frame_in("s", seq, seq - seq % gop, size)
    }

    /// Pushes a camera's frames (GOP of `gop`, keyframes 10x bigger) and pops `send`
    /// frames after each push; returns the published seqs and the drop count.
    fn run(frames: u64, gop: u64, max_bytes: usize, send_every: u64) -> (Vec<(u64, bool)>, u64) {
        let mut q = GopQueue::new(max_bytes);
        let mut published = Vec::new();
        let mut dropped = 0;
        for seq in 0..frames {
            let key = seq % gop == 0;
            dropped += q
                .push(frame(seq, gop, if key { 100 } else { 10 }))
                .dropped_gops;
            assert!(q.bytes() <= max_bytes);
            if send_every > 0 && seq % send_every == 0 {
                while let Some(f) = q.pop() {
                    published.push((f.meta.seq, f.meta.keyframe));
                }
            }
        }
        while let Some(f) = q.pop() {
            published.push((f.meta.seq, f.meta.keyframe));
        }
        (published, dropped)
    }

    /// Every published run of frames starts at a keyframe and has no holes inside a GOP.
    fn assert_decodable(published: &[(u64, bool)], gop: u64) {
        let mut expect_next: Option<u64> = None;
        for &(seq, key) in published {
            if key {
                assert_eq!(seq % gop, 0);
            } else {
                assert_eq!(
                    Some(seq),
                    expect_next,
                    "frame {seq} published without its predecessor"
                );
            }
            expect_next = Some(seq + 1);
        }
    }

    #[test]
    fn nothing_is_dropped_under_the_bound() {
        let (published, dropped) = run(100, 10, 10_000, 1);
        assert_eq!(dropped, 0);
        assert_eq!(published.len(), 100);
        assert_decodable(&published, 10);
    }

    #[test]
    fn an_outage_drops_whole_old_gops_and_stays_decodable() {
        // Nothing is sent for 100 frames (Kafka down), bound = about 2 GOPs.
        let (published, dropped) = run(100, 10, 400, 0);
        assert!(dropped >= 7, "dropped {dropped} GOPs");
        assert!(published.len() <= 20 && !published.is_empty());
        assert!(published[0].1, "first published frame is a keyframe");
        assert_decodable(&published, 10);
    }

    #[test]
    fn a_gop_bigger_than_the_bound_is_skipped_to_the_next_keyframe() {
        let (published, dropped) = run(40, 20, 150, 0);
        assert!(dropped >= 1);
        assert_decodable(&published, 20);
    }

    #[test]
    fn a_failed_keyframe_drops_its_queued_and_arriving_frames() {
        let mut q = GopQueue::new(10_000);
        for seq in 0..7 {
            q.push(frame(seq, 10, 10));
        }
        let key = q.pop().unwrap();
        assert!(key.meta.keyframe);
        let p1 = q.pop().unwrap();
        // The keyframe's delivery fails while frames 2-6 wait and 7-9 are still to come.
        assert_eq!(
            q.fail_gop(&key.gop()),
            5,
            "frames 2-6 depend on the lost keyframe"
        );
        assert!(
            q.depends_on_failed(&p1),
            "the frame the sender holds goes too"
        );
        assert_eq!(q.len(), 0);
        for seq in 7..10 {
            assert_eq!(
                q.push(frame(seq, 10, 10)).skipped,
                Some(DropReason::ReferenceLost),
                "seq {seq}"
            );
        }
        // The next GOP is untouched.
        for seq in 10..13 {
            assert_eq!(q.push(frame(seq, 10, 10)), Pushed::default());
        }
        let next = q.pop().unwrap();
        assert_eq!((next.meta.seq, next.meta.keyframe), (10, true));
        assert!(!q.depends_on_failed(&next));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_failed_keyframe_leaves_later_gops_and_sessions_alone() {
        let mut q = GopQueue::new(10_000);
        for seq in 0..25 {
            q.push(frame(seq, 10, 10));
        }
        let key = q.pop().unwrap();
        // Frames 1-9 go; GOPs 10 and 20 stay, and frames of GOP 20 still arrive.
        assert_eq!(q.fail_gop(&key.gop()), 9);
        assert_eq!(q.push(frame(25, 10, 10)), Pushed::default());
        let seqs: Vec<u64> = std::iter::from_fn(|| q.pop()).map(|f| f.meta.seq).collect();
        assert_eq!(seqs, (10..26).collect::<Vec<_>>());
        // A new session's GOP with the same seq is another GOP.
        q.push(frame_in("t", 0, 0, 10));
        q.push(frame_in("t", 1, 0, 10));
        assert_eq!(q.fail_gop(&frame_in("s", 0, 0, 1).gop()), 0);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn clear_drops_everything_and_restarts_at_a_keyframe() {
        let mut q = GopQueue::new(10_000);
        for seq in 0..5 {
            q.push(frame(seq, 10, 10));
        }
        assert_eq!(q.clear(), 5);
        assert_eq!((q.len(), q.bytes()), (0, 0));
        assert_eq!(q.push(frame(5, 10, 10)).skipped, Some(DropReason::Stopped));
        assert_eq!(q.push(frame(10, 10, 10)), Pushed::default());
        assert_eq!(q.len(), 1);
    }
}

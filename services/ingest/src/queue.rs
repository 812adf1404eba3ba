//! A camera's bounded queue of access units waiting for Kafka, organised in GOPs.
//!
//! When Kafka is slow or down, the queue fills up to its byte bound and then drops whole
//! GOPs, oldest first, so what reaches Kafka stays decodable: a GOP is either published
//! from its keyframe on or (when its tail is dropped) cut short, never started in the
//! middle. If the GOP still being received has to go, the rest of it is dropped as it
//! arrives, until the next keyframe.

use std::collections::VecDeque;

/// One access unit and what travels with it.
pub struct QueuedFrame {
    /// Header metadata.
    pub meta: framewire_wire::FrameMeta,
    /// Annex B bytes.
    pub data: Vec<u8>,
    /// The frame's span, for `traceparent`.
    pub span: tracing::Span,
}

struct Gop {
    frames: VecDeque<QueuedFrame>,
    bytes: usize,
}

/// What a push did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Whole or partial GOPs dropped to make room (or because their start was dropped).
    pub dropped_gops: u64,
    /// Access units dropped, including the pushed one if it was.
    pub dropped_frames: u64,
}

/// The queue. Not thread-safe by itself; the camera wraps it in a mutex.
pub struct GopQueue {
    gops: VecDeque<Gop>,
    bytes: usize,
    frames: usize,
    max_bytes: usize,
    /// The current GOP was dropped: drop what follows until the next keyframe.
    skip_to_keyframe: bool,
}

impl GopQueue {
    /// An empty queue holding at most `max_bytes` of access units.
    pub fn new(max_bytes: usize) -> Self {
        GopQueue {
            gops: VecDeque::new(),
            bytes: 0,
            frames: 0,
            max_bytes,
            skip_to_keyframe: false,
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
        if key {
            self.skip_to_keyframe = false;
        } else if self.skip_to_keyframe {
            out.dropped_frames = 1;
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
                self.skip_to_keyframe = true;
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

    /// Drops everything up to the next keyframe (used when a keyframe could not be sent,
    /// so its P-frames would not decode). Returns the access units dropped.
    pub fn skip_rest_of_gop(&mut self) -> u64 {
        let mut dropped = 0;
        if let Some(gop) = self.gops.front_mut()
            && gop.frames.front().is_none_or(|f| !f.meta.keyframe)
        {
            dropped = gop.frames.len() as u64;
            self.bytes -= gop.bytes;
            self.frames -= gop.frames.len();
            gop.frames.clear();
            gop.bytes = 0;
            if self.gops.len() > 1 {
                self.gops.pop_front();
            } else {
                self.skip_to_keyframe = true;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use framewire_wire::FrameMeta;

    fn frame(seq: u64, key: bool, size: usize) -> QueuedFrame {
        QueuedFrame {
            meta: FrameMeta {
                camera: "c".into(),
                session: "s".into(),
                seq,
                pts_90k: 0,
                capture_ms: 0,
                keyframe: key,
                codec: "h264".into(),
                dimensions: None,
            },
            data: vec![0; size],
            span: tracing::Span::none(),
        }
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
                .push(frame(seq, key, if key { 100 } else { 10 }))
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
    fn skip_rest_of_gop_after_a_lost_keyframe() {
        let mut q = GopQueue::new(10_000);
        for seq in 0..15 {
            q.push(frame(seq, seq % 10 == 0, 10));
        }
        let key = q.pop().unwrap();
        assert!(key.meta.keyframe);
        assert_eq!(
            q.skip_rest_of_gop(),
            9,
            "frames 1-9 depend on the lost keyframe"
        );
        assert_eq!(q.pop().map(|f| f.meta.seq), Some(10));
        assert_eq!(q.len(), 4);
    }
}

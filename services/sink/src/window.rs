//! Which window a frame belongs to, whether it is too late for it, and the frames
//! waiting to be merged into their windows' stored state.
//!
//! - A frame belongs to the window `[start, start + window_ms)` with
//!   `start = floor(capture_ms / window_ms) * window_ms`, on the capture (ingest) clock.
//! - Each camera has a watermark: its newest plausible capture time (of a decoded frame:
//!   dead letters travel on their own topic and may be read ahead of a backlog of
//!   statistics, so they never move it) minus the allowed lateness. A window whose end is
//!   at or before the watermark is *closed*: it is no longer kept in memory. A frame for a
//!   closed window is *late* (counted in `framewire_sink_late_records_total`) and still
//!   counted: the next flush merges it into the window's stored state like any other, so
//!   a frame that arrives after a retry, a backlog or a restart is never lost. The
//!   watermark is per camera, so a camera whose frames arrive late as a whole (a worker
//!   backlog) is not late; only frames out of order by more than the lateness are.
//! - Accepted frames wait here until the next flush merges them into the windows' stored
//!   states ([`crate::state`]); deduplication happens there, against the durable state,
//!   so it holds after a window was written, after a restart and across replicas.
//! - The watermark survives restarts: it is stored with the camera
//!   ([`crate::cameras`]) and handed back with [`Windows::advance`].

use std::collections::{BTreeMap, HashMap};

use crate::frame::Frame;

/// A frame moves its camera's clock only when its capture time is at most this far
/// ahead of the sink's wall clock: one record with a bogus future timestamp must not
/// make every later frame of the camera look late.
pub const MAX_CAPTURE_AHEAD_MS: i64 = 60_000;

/// What [`Windows::observe`] did with a frame: it always waits for the next flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Its window is open.
    Accepted,
    /// Its window was closed already (the flush merges it into the stored state).
    Late,
}

/// The frames of one camera's window waiting for a flush.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Camera id.
    pub camera: String,
    /// Window start, ms since the epoch.
    pub start_ms: i64,
    /// Frames in arrival order (duplicates included; the merge drops them).
    pub frames: Vec<Frame>,
}

#[derive(Debug)]
struct Open {
    pending: Vec<Frame>,
    touched_ms: i64,
}

#[derive(Debug, Default)]
struct Clock {
    newest_capture_ms: Option<i64>,
    open: BTreeMap<i64, Open>,
}

/// Every camera's clock and open windows.
#[derive(Debug)]
pub struct Windows {
    window_ms: i64,
    lateness_ms: i64,
    cameras: HashMap<String, Clock>,
    /// Frames waiting in all windows, kept as they come and go: the consumer asks after
    /// every record, and counting them would walk every camera's windows each time.
    pending: usize,
}

impl Windows {
    /// Windows `window_ms` wide (at least 1) accepting frames up to `lateness_ms` behind
    /// their camera's newest frame.
    pub fn new(window_ms: i64, lateness_ms: i64) -> Self {
        Windows {
            window_ms: window_ms.max(1),
            lateness_ms: lateness_ms.max(0),
            cameras: HashMap::new(),
            pending: 0,
        }
    }

    /// Window width in ms.
    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// Start of the window that `capture_ms` falls into.
    pub fn window_start(&self, capture_ms: i64) -> i64 {
        capture_ms.div_euclid(self.window_ms) * self.window_ms
    }

    /// A camera's watermark: windows ending at or before it are closed.
    pub fn watermark(&self, camera: &str) -> Option<i64> {
        let newest = self.cameras.get(camera)?.newest_capture_ms?;
        Some(newest.saturating_sub(self.lateness_ms))
    }

    /// Moves a camera's clock to at least `capture_ms` (the stored clock after a restart).
    pub fn advance(&mut self, camera: &str, capture_ms: i64) {
        let clock = self.cameras.entry(camera.to_owned()).or_default();
        clock.newest_capture_ms = Some(
            clock
                .newest_capture_ms
                .map_or(capture_ms, |n| n.max(capture_ms)),
        );
    }

    /// Takes a frame at wall clock `now_ms`; it waits for the next flush. Only decoded
    /// frames move the camera's clock.
    pub fn observe(&mut self, frame: Frame, now_ms: i64) -> Observed {
        let start = self.window_start(frame.capture_ms);
        let end = start.saturating_add(self.window_ms);
        let observed = if self.watermark(&frame.camera).is_some_and(|w| end <= w) {
            Observed::Late
        } else {
            Observed::Accepted
        };
        if frame.stats().is_some()
            && frame.capture_ms <= now_ms.saturating_add(MAX_CAPTURE_AHEAD_MS)
        {
            self.advance(&frame.camera, frame.capture_ms);
        }
        let clock = match self.cameras.get_mut(frame.camera.as_str()) {
            Some(c) => c,
            None => self.cameras.entry(frame.camera.clone()).or_default(),
        };
        let open = clock.open.entry(start).or_insert_with(|| Open {
            pending: Vec::new(),
            touched_ms: now_ms,
        });
        open.touched_ms = now_ms;
        open.pending.push(frame);
        self.pending += 1;
        observed
    }

    /// Every window's waiting frames, handed to a flush. If the flush fails, give them
    /// back with [`Windows::restore`].
    pub fn take_pending(&mut self) -> Vec<Batch> {
        let mut out = Vec::new();
        for (camera, clock) in &mut self.cameras {
            for (&start_ms, open) in &mut clock.open {
                if !open.pending.is_empty() {
                    out.push(Batch {
                        camera: camera.clone(),
                        start_ms,
                        frames: std::mem::take(&mut open.pending),
                    });
                }
            }
        }
        self.pending = 0;
        out
    }

    /// Puts frames of a failed flush back, before any that arrived since.
    pub fn restore(&mut self, batches: Vec<Batch>) {
        for b in batches {
            self.pending += b.frames.len();
            let clock = self.cameras.entry(b.camera).or_default();
            let open = clock.open.entry(b.start_ms).or_insert_with(|| Open {
                pending: Vec::new(),
                touched_ms: 0,
            });
            let newer = std::mem::replace(&mut open.pending, b.frames);
            open.pending.extend(newer);
        }
    }

    /// Forgets windows with nothing waiting that are closed, or that no frame touched for
    /// `window_ms + lateness` of wall clock (a camera that stopped): their state is in
    /// the database. Returns how many were forgotten.
    pub fn close(&mut self, now_ms: i64) -> usize {
        let (window_ms, lateness_ms) = (self.window_ms, self.lateness_ms);
        let idle_ms = window_ms.saturating_add(lateness_ms);
        let mut closed = 0;
        for clock in self.cameras.values_mut() {
            let watermark = clock
                .newest_capture_ms
                .map(|n| n.saturating_sub(lateness_ms));
            let before = clock.open.len();
            clock.open.retain(|&start, open| {
                let ended = watermark.is_some_and(|w| start.saturating_add(window_ms) <= w);
                let idle = now_ms.saturating_sub(open.touched_ms) > idle_ms;
                !open.pending.is_empty() || !(ended || idle)
            });
            closed += before - clock.open.len();
        }
        closed
    }

    /// Windows accepting frames (seen recently and not closed).
    pub fn open(&self) -> usize {
        self.cameras.values().map(|c| c.open.len()).sum()
    }

    /// Frames waiting for a flush.
    pub fn pending(&self) -> usize {
        self.pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::frame::tests::stats;

    const W: i64 = 10_000;
    const L: i64 = 5_000;
    const T0: i64 = 1_700_000_000_000; // a multiple of W
    const NOW: i64 = T0 + 1_000_000;

    fn seqs(b: &Batch) -> Vec<u64> {
        b.frames.iter().map(|f| f.seq).collect()
    }

    #[test]
    fn window_boundaries_floor_the_capture_time() {
        let w = Windows::new(W, L);
        assert_eq!(w.window_start(T0), T0);
        assert_eq!(w.window_start(T0 + W - 1), T0);
        assert_eq!(w.window_start(T0 + W), T0 + W);
        assert_eq!(w.window_start(-1), -W, "floor, not truncation");
    }

    #[test]
    fn frames_wait_per_window_until_taken() {
        let mut w = Windows::new(W, L);
        for (seq, t) in [(0, T0), (1, T0 + W - 1), (2, T0 + W), (1, T0 + W - 1)] {
            assert_eq!(
                w.observe(stats("cam", "s", seq, t), NOW),
                Observed::Accepted
            );
        }
        w.observe(stats("other", "s", 0, T0), NOW);
        assert_eq!((w.open(), w.pending()), (3, 5));
        let mut batches = w.take_pending();
        batches.sort_by(|a, b| (&a.camera, a.start_ms).cmp(&(&b.camera, b.start_ms)));
        assert_eq!(batches.len(), 3);
        assert_eq!(
            (batches[0].start_ms, seqs(&batches[0])),
            (T0, vec![0, 1, 1])
        );
        assert_eq!((batches[1].start_ms, seqs(&batches[1])), (T0 + W, vec![2]));
        assert_eq!(batches[2].camera, "other");
        assert_eq!(w.pending(), 0);
        assert!(w.take_pending().is_empty());
    }

    #[test]
    fn late_means_the_window_ended_before_the_watermark() {
        let mut w = Windows::new(W, L);
        w.observe(stats("cam", "s", 0, T0), NOW);
        // Newest frame at T0 + W + L: window 0 ends exactly at the watermark → closed.
        w.observe(stats("cam", "s", 300, T0 + W + L - 1), NOW);
        assert_eq!(w.watermark("cam"), Some(T0 + W - 1));
        assert_eq!(
            w.observe(stats("cam", "s", 1, T0 + 5), NOW),
            Observed::Accepted
        );
        w.observe(stats("cam", "s", 301, T0 + W + L), NOW);
        assert_eq!(w.watermark("cam"), Some(T0 + W));
        assert_eq!(w.observe(stats("cam", "s", 2, T0 + 5), NOW), Observed::Late);
        let waiting: Vec<u64> = w
            .take_pending()
            .iter()
            .filter(|b| b.start_ms == T0)
            .flat_map(seqs)
            .collect();
        assert_eq!(waiting, [0, 1, 2], "a late frame still waits for the flush");
        // Other cameras have their own clocks.
        assert_eq!(
            w.observe(stats("other", "s", 2, T0), NOW),
            Observed::Accepted
        );
    }

    #[test]
    fn a_stored_clock_closes_windows_after_a_restart() {
        let mut w = Windows::new(W, L);
        w.advance("cam", T0 + 3 * W);
        w.advance("cam", T0); // never backwards
        assert_eq!(w.watermark("cam"), Some(T0 + 3 * W - L));
        assert_eq!(w.observe(stats("cam", "s", 0, T0), NOW), Observed::Late);
        assert_eq!(w.pending(), 1, "late, still counted at the next flush");
        assert_eq!(
            w.observe(stats("cam", "s", 0, T0 + 2 * W + 1), NOW),
            Observed::Accepted,
            "window 2 ends after the watermark"
        );
    }

    #[test]
    fn dead_letters_do_not_move_the_clock() {
        use crate::frame::tests::error;
        let mut w = Windows::new(W, L);
        // A dead letter read ahead of a backlog of statistics (it has its own topic).
        w.observe(error("cam", "s", 900, T0 + 10 * W), NOW);
        assert_eq!(w.watermark("cam"), None);
        assert_eq!(w.observe(stats("cam", "s", 0, T0), NOW), Observed::Accepted);
    }

    #[test]
    fn a_bogus_future_capture_time_does_not_move_the_clock() {
        let mut w = Windows::new(W, L);
        let future = NOW + MAX_CAPTURE_AHEAD_MS + 1;
        assert_eq!(
            w.observe(stats("cam", "s", 0, future), NOW),
            Observed::Accepted
        );
        assert_eq!(w.watermark("cam"), None);
        assert_eq!(w.observe(stats("cam", "s", 1, T0), NOW), Observed::Accepted);
    }

    #[test]
    fn restored_frames_go_before_newer_ones() {
        let mut w = Windows::new(W, L);
        w.observe(stats("cam", "s", 0, T0), NOW);
        let failed = w.take_pending();
        w.observe(stats("cam", "s", 1, T0 + 1), NOW);
        w.restore(failed);
        assert_eq!(w.pending(), 2);
        let b = w.take_pending();
        assert_eq!(seqs(&b[0]), vec![0, 1]);
        assert_eq!(w.pending(), 0);
    }

    /// The kept count of waiting frames, against a recount, through every operation.
    #[test]
    fn the_pending_count_follows_every_change() {
        fn recount(w: &Windows) -> usize {
            let windows = w.cameras.values().flat_map(|c| c.open.values());
            windows.map(|o| o.pending.len()).sum()
        }
        let mut w = Windows::new(W, L);
        let mut failed = Vec::new();
        for step in 0..200u64 {
            let cam = ["a", "b", "c"][(step % 3) as usize];
            w.observe(
                stats(cam, "s", step, T0 + (step as i64 * 7_919) % (4 * W)),
                NOW,
            );
            if step % 17 == 0 {
                failed = w.take_pending();
            }
            if step % 23 == 0 {
                w.restore(std::mem::take(&mut failed));
            }
            if step % 31 == 0 {
                w.close(NOW + step as i64 * 1_000);
            }
            assert_eq!(w.pending(), recount(&w), "after step {step}");
        }
    }

    #[test]
    fn closed_and_idle_windows_are_forgotten_once_flushed() {
        let mut w = Windows::new(W, L);
        w.observe(stats("cam", "s", 0, T0), NOW);
        w.observe(stats("cam", "s", 1, T0 + W + L), NOW);
        assert_eq!(w.close(NOW), 0, "frames still waiting");
        w.take_pending();
        assert_eq!(w.close(NOW), 1, "window 0 is closed");
        assert_eq!(w.open(), 1);
        assert_eq!(w.close(NOW + W + L), 0, "not idle long enough");
        assert_eq!(w.close(NOW + W + L + 1), 1, "idle");
        assert_eq!(w.open(), 0);
    }
}

//! Per-camera tumbling windows over the stats stream: pure bookkeeping, no I/O.
//!
//! The sink turns one JSON record per decoded frame into one row per camera and window.
//! This module is that arithmetic, kept apart from Kafka and SQL so it can be tested
//! exhaustively:
//!
//! - A frame belongs to the window `[start, start + window_ms)` with
//!   `start = floor(capture_ms / window_ms) * window_ms`, on the capture (ingest) clock.
//! - Re-delivered frames (a worker re-processes after a rebalance, the sink replays
//!   after a restart) are recognised by `(session, seq)` within the window and counted
//!   once, so summaries count every frame exactly once.
//! - Gaps are sequence numbers missing inside the window, per RTSP session.
//! - Each window remembers the lowest Kafka offset, per partition, that fed it. The
//!   consumer never commits past the lowest offset of a window still in memory, so a
//!   restart replays every open window from its first frame and rewrites it whole
//!   (summaries are absolute values, not increments).
//! - Windows become dirty on every change; the flusher takes the dirty ones, writes them,
//!   and only then may clean old windows be evicted.

use std::collections::{BTreeMap, HashMap, HashSet};

use framewire_wire::StatsRecord;

/// A window is evicted (once flushed) when its end is more than this many windows older
/// than the newest frame of its camera.
pub const EVICT_AFTER_WINDOWS: i64 = 2;

/// A camera's frames move its clock forward only when their capture time is at most this
/// far ahead of their decode time: one record with a bogus future timestamp must not
/// make every later frame of the camera look late.
pub const MAX_CAPTURE_AHEAD_MS: i64 = 60_000;

/// Where a record came from in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Partition of the stats topic.
    pub partition: i32,
    /// Offset of the record in its partition.
    pub offset: i64,
}

/// What [`Windows::observe`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Counted in its window.
    Counted,
    /// Its `(session, seq)` was already counted in this window; ignored.
    Duplicate,
    /// Its window was already written and evicted; ignored (the stored row stays).
    Late,
}

/// The summary of one camera's window, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Camera id.
    pub camera: String,
    /// Window start, ms since the Unix epoch (inclusive).
    pub start_ms: i64,
    /// Window end, ms since the Unix epoch (exclusive).
    pub end_ms: i64,
    /// Distinct frames counted.
    pub frames: i64,
    /// Frames per second over the whole window.
    pub fps: f64,
    /// IDR frames among them.
    pub keyframes: i64,
    /// Mean of the frames' mean luma.
    pub y_avg_mean: f64,
    /// Lowest mean luma of a frame.
    pub y_avg_min: f64,
    /// Highest mean luma of a frame.
    pub y_avg_max: f64,
    /// Sequence numbers missing inside the window, summed over sessions.
    pub gaps: i64,
    /// Median capture → stats latency (nearest rank), ms.
    pub latency_p50_ms: i64,
    /// 99th percentile capture → stats latency (nearest rank), ms.
    pub latency_p99_ms: i64,
}

/// The sequence numbers of one RTSP session seen in a window.
#[derive(Debug)]
struct SessionSeqs {
    seen: HashSet<u64>,
    min: u64,
    max: u64,
}

impl SessionSeqs {
    fn missing(&self) -> u64 {
        (self.max - self.min + 1).saturating_sub(self.seen.len() as u64)
    }
}

/// One camera's window being accumulated.
#[derive(Debug)]
struct Window {
    frames: u64,
    keyframes: u64,
    y_sum: f64,
    y_min: f64,
    y_max: f64,
    sessions: HashMap<String, SessionSeqs>,
    latencies: Vec<i64>,
    dirty: bool,
    /// Lowest offset per partition that contributed (duplicates included).
    first_offsets: BTreeMap<i32, i64>,
    /// Wall clock of the last record that touched the window.
    touched_ms: i64,
}

impl Window {
    fn new(now_ms: i64) -> Self {
        Window {
            frames: 0,
            keyframes: 0,
            y_sum: 0.0,
            y_min: f64::INFINITY,
            y_max: f64::NEG_INFINITY,
            sessions: HashMap::new(),
            latencies: Vec::new(),
            dirty: false,
            first_offsets: BTreeMap::new(),
            touched_ms: now_ms,
        }
    }

    fn summary(&self, camera: &str, start_ms: i64, window_ms: i64) -> Summary {
        let mut lat = self.latencies.clone();
        lat.sort_unstable();
        let frames = self.frames as f64;
        Summary {
            camera: camera.to_owned(),
            start_ms,
            end_ms: start_ms + window_ms,
            frames: saturating_i64(self.frames),
            fps: frames / (window_ms as f64 / 1000.0),
            keyframes: saturating_i64(self.keyframes),
            y_avg_mean: if self.frames == 0 {
                0.0
            } else {
                self.y_sum / frames
            },
            y_avg_min: if self.frames == 0 { 0.0 } else { self.y_min },
            y_avg_max: if self.frames == 0 { 0.0 } else { self.y_max },
            gaps: saturating_i64(self.sessions.values().map(SessionSeqs::missing).sum()),
            latency_p50_ms: nearest_rank(&lat, 50.0).unwrap_or(0),
            latency_p99_ms: nearest_rank(&lat, 99.0).unwrap_or(0),
        }
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The `p`th percentile (0 < p ≤ 100) of sorted samples by the nearest-rank method:
/// the smallest sample such that at least p% of the samples are at or below it.
pub fn nearest_rank(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// One camera's open windows.
#[derive(Debug, Default)]
struct Camera {
    /// Newest plausible capture time seen; drives eviction and lateness.
    newest_capture_ms: Option<i64>,
    /// Open windows by start.
    windows: BTreeMap<i64, Window>,
}

/// Every camera's open windows.
#[derive(Debug)]
pub struct Windows {
    window_ms: i64,
    idle_ms: i64,
    cameras: HashMap<String, Camera>,
}

impl Windows {
    /// Windows `window_ms` wide (must be positive). A flushed window that no record has
    /// touched for `2 * window_ms` of wall-clock time is evicted too, so a camera that
    /// stops does not keep its last window (and the partition's offsets) forever.
    pub fn new(window_ms: i64) -> Self {
        let window_ms = window_ms.max(1);
        Windows {
            window_ms,
            idle_ms: window_ms.saturating_mul(EVICT_AFTER_WINDOWS),
            cameras: HashMap::new(),
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

    /// Windows held in memory.
    pub fn open(&self) -> usize {
        self.cameras.values().map(|c| c.windows.len()).sum()
    }

    /// Adds one frame's statistics, read from Kafka at `source`, at wall clock `now_ms`.
    pub fn observe(&mut self, rec: &StatsRecord, source: Source, now_ms: i64) -> Observed {
        let start = self.window_start(rec.capture_ms);
        let horizon_windows = EVICT_AFTER_WINDOWS;
        let window_ms = self.window_ms;
        let cam = self.cameras.entry(rec.camera.clone()).or_default();
        if !cam.windows.contains_key(&start)
            && let Some(newest) = cam.newest_capture_ms
            && is_expired(start, window_ms, newest, horizon_windows)
        {
            return Observed::Late;
        }
        if rec.capture_ms <= rec.decoded_ms.saturating_add(MAX_CAPTURE_AHEAD_MS) {
            cam.newest_capture_ms = Some(
                cam.newest_capture_ms
                    .map_or(rec.capture_ms, |n| n.max(rec.capture_ms)),
            );
        }
        let w = cam
            .windows
            .entry(start)
            .or_insert_with(|| Window::new(now_ms));
        w.touched_ms = now_ms;
        w.first_offsets
            .entry(source.partition)
            .and_modify(|o| *o = (*o).min(source.offset))
            .or_insert(source.offset);

        let seqs = match w.sessions.get_mut(rec.session.as_str()) {
            Some(s) => s,
            None => w
                .sessions
                .entry(rec.session.clone())
                .or_insert_with(|| SessionSeqs {
                    seen: HashSet::new(),
                    min: rec.seq,
                    max: rec.seq,
                }),
        };
        if !seqs.seen.insert(rec.seq) {
            return Observed::Duplicate;
        }
        seqs.min = seqs.min.min(rec.seq);
        seqs.max = seqs.max.max(rec.seq);

        w.frames += 1;
        if rec.keyframe {
            w.keyframes += 1;
        }
        w.y_sum += rec.y_avg;
        w.y_min = w.y_min.min(rec.y_avg);
        w.y_max = w.y_max.max(rec.y_avg);
        w.latencies
            .push(rec.decoded_ms.saturating_sub(rec.capture_ms));
        w.dirty = true;
        Observed::Counted
    }

    /// Summaries of every window that changed since the last call, marked clean. Write
    /// them; if the write fails, hand them back with [`Windows::restore_dirty`].
    pub fn take_dirty(&mut self) -> Vec<Summary> {
        let window_ms = self.window_ms;
        let mut out = Vec::new();
        for (id, cam) in &mut self.cameras {
            for (&start, w) in cam.windows.iter_mut().filter(|(_, w)| w.dirty) {
                w.dirty = false;
                out.push(w.summary(id, start, window_ms));
            }
        }
        out
    }

    /// Marks windows dirty again after their write failed, so the next flush retries them.
    pub fn restore_dirty(&mut self, summaries: &[Summary]) {
        for s in summaries {
            if let Some(w) = self
                .cameras
                .get_mut(&s.camera)
                .and_then(|c| c.windows.get_mut(&s.start_ms))
            {
                w.dirty = true;
            }
        }
    }

    /// Drops clean windows that can no longer change: those ending more than
    /// [`EVICT_AFTER_WINDOWS`] windows before their camera's newest frame, and those no
    /// record touched for `2 * window_ms` of wall clock. Call after a successful write.
    /// Returns how many were evicted.
    pub fn evict(&mut self, now_ms: i64) -> usize {
        let (window_ms, idle_ms) = (self.window_ms, self.idle_ms);
        let mut evicted = 0;
        for cam in self.cameras.values_mut() {
            let newest = cam.newest_capture_ms;
            let before = cam.windows.len();
            cam.windows.retain(|&start, w| {
                let expired =
                    newest.is_some_and(|n| is_expired(start, window_ms, n, EVICT_AFTER_WINDOWS));
                let idle = now_ms.saturating_sub(w.touched_ms) > idle_ms;
                w.dirty || !(expired || idle)
            });
            evicted += before - cam.windows.len();
        }
        evicted
    }

    /// Per partition, the lowest offset that fed a window still in memory: the highest
    /// offset that may be committed, so that a restart replays those windows whole.
    pub fn offset_floors(&self) -> BTreeMap<i32, i64> {
        let mut floors = BTreeMap::new();
        for w in self.cameras.values().flat_map(|c| c.windows.values()) {
            for (&p, &o) in &w.first_offsets {
                floors
                    .entry(p)
                    .and_modify(|f: &mut i64| *f = (*f).min(o))
                    .or_insert(o);
            }
        }
        floors
    }
}

/// Whether the window starting at `start` ends more than `windows` windows before `newest`.
fn is_expired(start: i64, window_ms: i64, newest: i64, windows: i64) -> bool {
    start.saturating_add(window_ms) < newest.saturating_sub(windows.saturating_mul(window_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 10_000;
    const T0: i64 = 1_700_000_000_000; // a multiple of W

    fn rec(camera: &str, session: &str, seq: u64, capture_ms: i64) -> StatsRecord {
        StatsRecord {
            camera: camera.into(),
            session: session.into(),
            seq,
            pts_90k: seq as i64 * 3_000,
            capture_ms,
            decoded_ms: capture_ms + 40,
            width: 640,
            height: 360,
            keyframe: seq.is_multiple_of(10),
            y_avg: 100.0,
            y_min: 16,
            y_max: 235,
            y_low: 20,
            y_high: 200,
            y_std: 40.0,
            y_dif: 1.5,
            u_avg: 128.0,
            v_avg: 128.0,
            sat_avg: 0.0,
            y_hist: [0; 16],
            sharpness: 250.0,
            black: false,
            frozen: false,
            scene_score: 0.0,
            scene_cut: false,
        }
    }

    fn at(offset: i64) -> Source {
        Source {
            partition: 0,
            offset,
        }
    }

    fn only(mut v: Vec<Summary>) -> Summary {
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    #[test]
    fn counts_keyframes_luma_and_fps() {
        let mut w = Windows::new(W);
        for seq in 0..20u64 {
            let mut r = rec("cam", "s1", seq, T0 + seq as i64 * 100);
            r.y_avg = seq as f64;
            assert_eq!(w.observe(&r, at(seq as i64), 0), Observed::Counted);
        }
        let s = only(w.take_dirty());
        assert_eq!(
            (s.camera.as_str(), s.start_ms, s.end_ms),
            ("cam", T0, T0 + W)
        );
        assert_eq!((s.frames, s.keyframes, s.gaps), (20, 2, 0));
        assert!((s.fps - 2.0).abs() < 1e-9, "{}", s.fps);
        assert!((s.y_avg_mean - 9.5).abs() < 1e-9);
        assert_eq!((s.y_avg_min, s.y_avg_max), (0.0, 19.0));
        assert_eq!((s.latency_p50_ms, s.latency_p99_ms), (40, 40));
        assert!(w.take_dirty().is_empty(), "clean after take");
    }

    #[test]
    fn duplicate_is_counted_once() {
        let mut w = Windows::new(W);
        let r = rec("cam", "s1", 5, T0 + 1);
        assert_eq!(w.observe(&r, at(1), 0), Observed::Counted);
        assert_eq!(w.observe(&r, at(2), 0), Observed::Duplicate);
        // Same seq in another session is another frame.
        assert_eq!(
            w.observe(&rec("cam", "s2", 5, T0 + 2), at(3), 0),
            Observed::Counted
        );
        // Same seq and session on another camera too.
        assert_eq!(
            w.observe(&rec("other", "s1", 5, T0 + 2), at(4), 0),
            Observed::Counted
        );
        let mut all = w.take_dirty();
        all.sort_by(|a, b| a.camera.cmp(&b.camera));
        assert_eq!(all[0].frames, 2);
        assert_eq!(all[1].frames, 1);
        // A re-delivery after the flush changes nothing and does not dirty the window.
        assert_eq!(w.observe(&r, at(5), 0), Observed::Duplicate);
        assert!(w.take_dirty().is_empty());
    }

    #[test]
    fn gaps_are_missing_seqs_per_session() {
        let mut w = Windows::new(W);
        // Session a: 0..=9 without 3 and 7 → 2 gaps; arrives out of order.
        for seq in [9u64, 0, 1, 2, 4, 5, 6, 8] {
            w.observe(&rec("cam", "a", seq, T0 + 10), at(seq as i64), 0);
        }
        // Session b (a reconnect): 100, 101, 105 → 3 gaps.
        for seq in [100u64, 101, 105, 101] {
            w.observe(&rec("cam", "b", seq, T0 + 20), at(0), 0);
        }
        let s = only(w.take_dirty());
        assert_eq!((s.frames, s.gaps), (11, 5));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 50.0), Some(50));
        assert_eq!(nearest_rank(&v, 99.0), Some(99));
        assert_eq!(nearest_rank(&v, 100.0), Some(100));
        assert_eq!(nearest_rank(&[7], 99.0), Some(7));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50.0), Some(2));
        assert_eq!(nearest_rank(&[1, 2, 3, 4, 5], 50.0), Some(3));
        assert_eq!(nearest_rank(&[], 50.0), None);

        let mut w = Windows::new(W);
        for seq in 0..10u64 {
            let mut r = rec("cam", "s", seq, T0 + seq as i64);
            r.decoded_ms = r.capture_ms + (seq as i64 + 1) * 10; // 10..=100 ms
            w.observe(&r, at(0), 0);
        }
        let s = only(w.take_dirty());
        assert_eq!((s.latency_p50_ms, s.latency_p99_ms), (50, 100));
    }

    #[test]
    fn window_boundaries() {
        let w = Windows::new(W);
        assert_eq!(w.window_start(T0), T0);
        assert_eq!(w.window_start(T0 + W - 1), T0);
        assert_eq!(w.window_start(T0 + W), T0 + W);
        assert_eq!(w.window_start(-1), -W, "floor, not truncation");

        let mut w = Windows::new(W);
        w.observe(&rec("cam", "s", 0, T0 + W - 1), at(0), 0);
        w.observe(&rec("cam", "s", 1, T0 + W), at(1), 0);
        let mut all = w.take_dirty();
        all.sort_by_key(|s| s.start_ms);
        assert_eq!(
            all.iter()
                .map(|s| (s.start_ms, s.frames))
                .collect::<Vec<_>>(),
            [(T0, 1), (T0 + W, 1)]
        );
        // seq 0 and 1 are in different windows: no gap in either.
        assert!(all.iter().all(|s| s.gaps == 0));
    }

    #[test]
    fn eviction_waits_for_flush_and_two_windows() {
        let mut w = Windows::new(W);
        w.observe(&rec("cam", "s", 0, T0), at(10), 0);
        w.observe(&rec("cam", "s", 1, T0 + W), at(11), 0);
        w.observe(&rec("cam", "s", 2, T0 + 2 * W), at(12), 0);
        // Newest frame in window 3: window 0 ends 2 windows before T0 + 3W, not more.
        w.observe(&rec("cam", "s", 3, T0 + 3 * W), at(13), 0);
        assert_eq!(w.evict(0), 0, "dirty windows are never evicted");
        let flushed = w.take_dirty();
        assert_eq!(flushed.len(), 4);
        assert_eq!(
            w.evict(0),
            0,
            "window 0 ends exactly 2 windows before the newest frame"
        );

        // One ms later window 0 is more than two windows old.
        w.observe(&rec("cam", "s", 4, T0 + 3 * W + 1), at(14), 0);
        assert_eq!(
            w.evict(0),
            1,
            "window 0 is written and now more than two windows old"
        );
        assert_eq!(
            w.open(),
            3,
            "window 3 is dirty again but stays; 1 and 2 are recent"
        );
        assert_eq!(
            w.offset_floors().get(&0),
            Some(&11),
            "window 0 no longer holds the offset back"
        );

        // A frame for the evicted window is late and not counted anywhere.
        assert_eq!(
            w.observe(&rec("cam", "s", 99, T0 + 5), at(15), 0),
            Observed::Late
        );
        assert_eq!(w.take_dirty().len(), 1, "only window 3 changed");
    }

    #[test]
    fn failed_write_keeps_windows_dirty_and_in_memory() {
        let mut w = Windows::new(W);
        w.observe(&rec("cam", "s", 0, T0), at(1), 0);
        let batch = w.take_dirty();
        w.restore_dirty(&batch);
        w.observe(&rec("cam", "s", 9, T0 + 5 * W), at(2), 0);
        assert_eq!(w.evict(0), 0, "window 0 is old but unwritten");
        assert_eq!(w.take_dirty().len(), 2);
        assert_eq!(w.evict(0), 1);
    }

    #[test]
    fn idle_windows_are_evicted_so_a_silent_camera_frees_its_offsets() {
        let mut w = Windows::new(W);
        w.observe(
            &rec("quiet", "s", 0, T0),
            Source {
                partition: 3,
                offset: 7,
            },
            1_000,
        );
        w.take_dirty();
        assert_eq!(w.evict(1_000 + 2 * W), 0, "not idle long enough");
        assert_eq!(w.offset_floors().get(&3), Some(&7));
        assert_eq!(w.evict(1_000 + 2 * W + 1), 1);
        assert!(w.offset_floors().is_empty());
    }

    #[test]
    fn floors_track_the_lowest_offset_per_partition() {
        let mut w = Windows::new(W);
        w.observe(
            &rec("a", "s", 0, T0),
            Source {
                partition: 1,
                offset: 50,
            },
            0,
        );
        w.observe(
            &rec("a", "s", 0, T0),
            Source {
                partition: 1,
                offset: 20,
            },
            0,
        ); // replayed duplicate
        w.observe(
            &rec("b", "s", 0, T0),
            Source {
                partition: 2,
                offset: 5,
            },
            0,
        );
        w.observe(
            &rec("b", "s", 1, T0 + W),
            Source {
                partition: 2,
                offset: 6,
            },
            0,
        );
        let floors = w.offset_floors();
        assert_eq!(floors.get(&1), Some(&20));
        assert_eq!(floors.get(&2), Some(&5));
    }

    #[test]
    fn a_bogus_future_capture_time_does_not_make_the_camera_late() {
        let mut w = Windows::new(W);
        let mut bogus = rec("cam", "s", 0, T0 + 1_000 * W);
        bogus.decoded_ms = T0;
        assert_eq!(w.observe(&bogus, at(0), 0), Observed::Counted);
        assert_eq!(
            w.observe(&rec("cam", "s", 1, T0), at(1), 0),
            Observed::Counted
        );
    }
}

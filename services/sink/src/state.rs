//! The durable state of one camera's window, from which its summary is computed.
//!
//! A summary (frames, means, percentiles, …) cannot be merged with new frames exactly:
//! whether a re-delivered frame was already counted is unknown once only totals are
//! kept. So the sink stores, beside each summary row, the window's *state*: which
//! `(session, seq)` it has counted (as ranges: a camera's frames are consecutive, so a
//! window is a handful of numbers), the sums behind every mean, the extremes, the
//! flag counts and a latency histogram. Adding a frame to a state is idempotent, and a
//! state read back from the database continues exactly where it was — after the window
//! was written, after a restart, after another sink replica wrote it.
//!
//! Detections count the same way: the `(session, seq)` of every analysed picture, and per
//! class the objects seen, the most in one picture and the pictures with at least one.
//! A picture's detections may arrive before or after its statistics, in another flush:
//! both meet in the same stored state, each counted once.
//!
//! Latency percentiles come from a fixed-bucket histogram: exact to the millisecond
//! below 1024 ms, within 1.6% above, and independent of the order frames arrive in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::frame::{self, Frame, FrameKind};

/// Version of the serialized state; bumped when the format changes incompatibly.
pub const STATE_VERSION: u32 = 1;

/// The summary of one camera's window, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Summary {
    /// Camera id (not serialized: the API says it once, beside the windows).
    #[serde(skip_serializing)]
    pub camera: String,
    /// Window start, ms since the Unix epoch (inclusive).
    pub start_ms: i64,
    /// Window end, ms since the Unix epoch (exclusive).
    pub end_ms: i64,
    /// Distinct frames with statistics.
    pub frames: i64,
    /// Frames per second over the whole window.
    pub fps: f64,
    /// IDR frames among them.
    pub keyframes: i64,
    /// Mean of the frames' mean luma (brightness).
    pub y_avg_mean: f64,
    /// Lowest mean luma of a frame.
    pub y_avg_min: f64,
    /// Highest mean luma of a frame.
    pub y_avg_max: f64,
    /// Mean of the frames' `y_dif` (motion).
    pub y_dif_mean: f64,
    /// Mean of the frames' Laplacian variance (focus).
    pub sharpness_mean: f64,
    /// Frames flagged black.
    pub black_frames: i64,
    /// Frames flagged frozen.
    pub frozen_frames: i64,
    /// Frames flagged as scene cuts.
    pub scene_cuts: i64,
    /// Distinct frames the worker could not decode (dead-letter records).
    pub decode_errors: i64,
    /// Sequence numbers missing inside the window (neither statistics nor a decode
    /// error), summed over sessions.
    pub gaps: i64,
    /// Median capture → statistics latency (nearest rank), ms.
    pub latency_p50_ms: i64,
    /// 99th percentile capture → statistics latency (nearest rank), ms.
    pub latency_p99_ms: i64,
    /// Distinct pictures the object detector analysed (with or without objects).
    pub pictures_analysed: i64,
    /// Per class label, what the detector found in those pictures (stored in
    /// `window_objects`, attached on read).
    #[sqlx(skip)]
    pub classes: BTreeMap<String, ClassCounts>,
}

/// What a window's analysed pictures held of one class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    /// Objects seen, summed over the analysed pictures.
    pub objects: u64,
    /// The most objects of the class in any one picture.
    pub max_per_picture: u64,
    /// Pictures with at least one.
    pub pictures: u64,
}

/// What adding a frame to a state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The frame was new and is counted.
    Counted,
    /// The window already counted this `(session, seq)`; nothing changed.
    Duplicate,
}

/// A set of `u64`, stored as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeqSet(Vec<(u64, u64)>);

impl SeqSet {
    /// Inserts `v`; `false` when it was already there.
    pub fn insert(&mut self, v: u64) -> bool {
        // Index of the first range that ends at or after v.
        let i = self.0.partition_point(|&(_, hi)| hi < v);
        if let Some(&(lo, _)) = self.0.get(i)
            && lo <= v
        {
            return false;
        }
        let joins_prev = i > 0 && self.0[i - 1].1.checked_add(1) == Some(v);
        let joins_next = self
            .0
            .get(i)
            .is_some_and(|&(lo, _)| v.checked_add(1) == Some(lo));
        match (joins_prev, joins_next) {
            (true, true) => {
                self.0[i - 1].1 = self.0[i].1;
                self.0.remove(i);
            }
            (true, false) => self.0[i - 1].1 = v,
            (false, true) => self.0[i].0 = v,
            (false, false) => self.0.insert(i, (v, v)),
        }
        true
    }

    /// Whether `v` is in the set.
    pub fn contains(&self, v: u64) -> bool {
        let i = self.0.partition_point(|&(_, hi)| hi < v);
        self.0.get(i).is_some_and(|&(lo, _)| lo <= v)
    }

    /// How many values the set holds.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|&(lo, hi)| hi - lo + 1).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Smallest and largest value.
    pub fn bounds(&self) -> Option<(u64, u64)> {
        Some((self.0.first()?.0, self.0.last()?.1))
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }
}

/// Latency samples in fixed buckets: bucket = ms below 1024, then 64 buckets per power
/// of two. Stored sparse (bucket → count).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LatencyHistogram(BTreeMap<u32, u64>);

const EXACT_BELOW: u64 = 1024;
const SUB_BUCKETS_LOG2: u32 = 6;

impl LatencyHistogram {
    /// Adds one latency (negative values count as 0: clocks of two hosts disagree).
    pub fn record(&mut self, ms: i64) {
        *self.0.entry(bucket_of(ms)).or_insert(0) += 1;
    }

    /// The `p`th percentile (0 < p ≤ 100) by nearest rank, as the lower bound of its
    /// bucket; `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<i64> {
        let n: u64 = self.0.values().sum();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as u64;
        let mut seen = 0;
        for (&b, &c) in &self.0 {
            seen += c;
            if seen >= rank {
                return Some(lower_bound(b));
            }
        }
        self.0.keys().next_back().map(|&b| lower_bound(b))
    }
}

fn bucket_of(ms: i64) -> u32 {
    let v = u64::try_from(ms).unwrap_or(0);
    if v < EXACT_BELOW {
        return v as u32;
    }
    let exp = 63 - v.leading_zeros(); // ≥ 10
    let sub = (v >> (exp - SUB_BUCKETS_LOG2)) & ((1 << SUB_BUCKETS_LOG2) - 1);
    EXACT_BELOW as u32 + (exp - 10) * (1 << SUB_BUCKETS_LOG2) + sub as u32
}

fn lower_bound(bucket: u32) -> i64 {
    let b = u64::from(bucket);
    if b < EXACT_BELOW {
        return b as i64;
    }
    let i = b - EXACT_BELOW;
    let exp = 10 + i / (1 << SUB_BUCKETS_LOG2);
    let sub = i % (1 << SUB_BUCKETS_LOG2);
    let v = (1u64 << exp) + (sub << (exp - u64::from(SUB_BUCKETS_LOG2)));
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Everything needed to continue a window exactly: what it counted and the sums.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// Format version ([`STATE_VERSION`]).
    pub v: u32,
    /// Sequence numbers with statistics, per session.
    pub seen: BTreeMap<String, SeqSet>,
    /// Sequence numbers that went to the dead-letter topic, per session.
    pub failed: BTreeMap<String, SeqSet>,
    /// Frames with statistics.
    pub frames: u64,
    /// Keyframes among them.
    pub keyframes: u64,
    /// Sum of `y_avg`.
    pub y_sum: f64,
    /// Lowest `y_avg`.
    pub y_min: Option<f64>,
    /// Highest `y_avg`.
    pub y_max: Option<f64>,
    /// Sum of `y_dif`.
    pub y_dif_sum: f64,
    /// Sum of `sharpness`.
    pub sharpness_sum: f64,
    /// Black frames.
    pub black: u64,
    /// Frozen frames.
    pub frozen: u64,
    /// Scene cuts.
    pub scene_cuts: u64,
    /// Distinct undecodable frames.
    pub decode_errors: u64,
    /// Capture → statistics latency.
    pub latency: LatencyHistogram,
    /// Sequence numbers the object detector analysed, per session (absent in states
    /// written before detections existed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub analysed: BTreeMap<String, SeqSet>,
    /// Distinct analysed pictures.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pictures: u64,
    /// Per class label, what the analysed pictures held.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, ClassCounts>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl WindowState {
    /// An empty state.
    pub fn new() -> Self {
        WindowState {
            v: STATE_VERSION,
            ..WindowState::default()
        }
    }

    /// Adds a frame unless its `(session, seq)` is already counted (statistics, decode
    /// errors and detections are counted apart: a frame first dead-lettered and later
    /// decoded counts in both; a frame's detections count beside its statistics).
    pub fn add(&mut self, frame: &Frame) -> Added {
        let set = match frame.kind {
            FrameKind::Stats(_) => &mut self.seen,
            FrameKind::DecodeError => &mut self.failed,
            FrameKind::Detections(_) => &mut self.analysed,
        };
        let fresh = match set.get_mut(frame.session.as_str()) {
            Some(s) => s.insert(frame.seq),
            None => set
                .entry(frame.session.clone())
                .or_default()
                .insert(frame.seq),
        };
        if !fresh {
            return Added::Duplicate;
        }
        match &frame.kind {
            FrameKind::DecodeError => self.decode_errors += 1,
            FrameKind::Detections(d) => {
                self.pictures += 1;
                for (label, n) in d.per_label() {
                    let c = match self.classes.get_mut(label) {
                        Some(c) => c,
                        None => self.classes.entry(label.to_owned()).or_default(),
                    };
                    c.objects += n;
                    c.max_per_picture = c.max_per_picture.max(n);
                    c.pictures += 1;
                }
            }
            FrameKind::Stats(s) => {
                self.frames += 1;
                self.keyframes += u64::from(s.keyframe);
                self.y_sum += s.y_avg;
                self.y_min = Some(self.y_min.map_or(s.y_avg, |m| m.min(s.y_avg)));
                self.y_max = Some(self.y_max.map_or(s.y_avg, |m| m.max(s.y_avg)));
                self.y_dif_sum += s.y_dif;
                self.sharpness_sum += s.sharpness;
                self.black += u64::from(s.black);
                self.frozen += u64::from(s.frozen);
                self.scene_cuts += u64::from(s.scene_cut);
                self.latency.record(s.latency_ms);
            }
        }
        Added::Counted
    }

    /// Sequence numbers missing inside the window: per session, the span from the
    /// lowest to the highest seq seen (statistics or error) minus the seqs seen.
    /// Dead letters without a frame identity (see [`frame::has_seq`]) have none.
    pub fn gaps(&self) -> u64 {
        let mut total = 0;
        let sessions = self.seen.keys().chain(self.failed.keys());
        let mut done: Vec<&str> = Vec::new();
        for session in sessions {
            if done.contains(&session.as_str()) || !frame::has_seq(session) {
                continue;
            }
            done.push(session);
            let mut union = self.seen.get(session).cloned().unwrap_or_default();
            if let Some(f) = self.failed.get(session) {
                for &(lo, hi) in f.ranges() {
                    for v in lo..=hi {
                        union.insert(v);
                    }
                }
            }
            if let Some((lo, hi)) = union.bounds() {
                total += (hi - lo + 1) - union.len();
            }
        }
        total
    }

    /// The summary row of this state for `camera`'s window `[start_ms, start_ms + window_ms)`.
    pub fn summary(&self, camera: &str, start_ms: i64, window_ms: i64) -> Summary {
        let n = self.frames as f64;
        let mean = |sum: f64| if self.frames == 0 { 0.0 } else { sum / n };
        Summary {
            camera: camera.to_owned(),
            start_ms,
            end_ms: start_ms.saturating_add(window_ms),
            frames: saturating_i64(self.frames),
            fps: n / (window_ms.max(1) as f64 / 1000.0),
            keyframes: saturating_i64(self.keyframes),
            y_avg_mean: mean(self.y_sum),
            y_avg_min: self.y_min.unwrap_or(0.0),
            y_avg_max: self.y_max.unwrap_or(0.0),
            y_dif_mean: mean(self.y_dif_sum),
            sharpness_mean: mean(self.sharpness_sum),
            black_frames: saturating_i64(self.black),
            frozen_frames: saturating_i64(self.frozen),
            scene_cuts: saturating_i64(self.scene_cuts),
            decode_errors: saturating_i64(self.decode_errors),
            gaps: saturating_i64(self.gaps()),
            latency_p50_ms: self.latency.percentile(50.0).unwrap_or(0),
            latency_p99_ms: self.latency.percentile(99.0).unwrap_or(0),
            pictures_analysed: saturating_i64(self.pictures),
            classes: self.classes.clone(),
        }
    }

    /// The state as stored (compact JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// A stored state; the error says what is wrong with it.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let state: WindowState =
            serde_json::from_str(text).map_err(|e| format!("unreadable window state: {e}"))?;
        if state.v != STATE_VERSION {
            return Err(format!(
                "window state version {} is not {STATE_VERSION}",
                state.v
            ));
        }
        Ok(state)
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::frame::tests::{error, stats};

    #[test]
    fn seq_sets_merge_ranges_and_refuse_repeats() {
        let mut s = SeqSet::default();
        for v in [5, 7, 6, 1, 2, 9, 3] {
            assert!(s.insert(v), "{v}");
        }
        assert_eq!(s.ranges(), &[(1, 3), (5, 7), (9, 9)]);
        for v in [1, 2, 3, 5, 6, 7, 9] {
            assert!(!s.insert(v), "{v} again");
            assert!(s.contains(v));
        }
        assert!(!s.contains(4) && !s.contains(8) && !s.contains(0) && !s.contains(10));
        assert!(s.insert(4) && s.insert(8));
        assert_eq!(s.ranges(), &[(1, 9)]);
        assert_eq!((s.len(), s.bounds()), (9, Some((1, 9))));
        assert!(s.insert(u64::MAX) && s.insert(0));
        assert_eq!(s.ranges(), &[(0, 9), (u64::MAX, u64::MAX)]);
    }

    #[test]
    fn histogram_is_exact_below_a_second_and_close_above() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=100 {
            h.record(ms);
        }
        assert_eq!(h.percentile(50.0), Some(50));
        assert_eq!(h.percentile(99.0), Some(99));
        assert_eq!(h.percentile(100.0), Some(100));
        let mut h = LatencyHistogram::default();
        h.record(-5);
        assert_eq!(h.percentile(50.0), Some(0), "negative latency counts as 0");
        for v in [1024i64, 1500, 4096, 100_000, 3_600_000] {
            let mut h = LatencyHistogram::default();
            h.record(v);
            let p = h.percentile(50.0).unwrap();
            assert!(p <= v && (v - p) as f64 <= v as f64 * 0.016, "{v} → {p}");
        }
        assert_eq!(LatencyHistogram::default().percentile(50.0), None);
    }

    #[test]
    fn a_state_counts_each_frame_once_and_sums_everything() {
        let mut st = WindowState::new();
        for seq in 0..10u64 {
            let mut f = stats("cam", "s1", seq, 1_000 + seq as i64 * 40);
            if let FrameKind::Stats(s) = &mut f.kind {
                s.y_avg = seq as f64;
                s.y_dif = 2.0;
                s.sharpness = 100.0;
                s.black = seq < 3;
                s.frozen = seq == 9;
                s.scene_cut = seq == 5;
                s.latency_ms = (seq as i64 + 1) * 10;
            }
            assert_eq!(st.add(&f), Added::Counted);
            assert_eq!(st.add(&f), Added::Duplicate, "same seq again");
        }
        assert_eq!(st.add(&error("cam", "s1", 12, 1_500)), Added::Counted);
        assert_eq!(st.add(&error("cam", "s1", 12, 1_500)), Added::Duplicate);
        let s = st.summary("cam", 0, 10_000);
        assert_eq!((s.frames, s.keyframes), (10, 1));
        assert_eq!(
            (
                s.black_frames,
                s.frozen_frames,
                s.scene_cuts,
                s.decode_errors
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(
            s.gaps, 2,
            "10 and 11 missing; 12 is a decode error, not a gap"
        );
        assert!((s.fps - 1.0).abs() < 1e-9);
        assert!((s.y_avg_mean - 4.5).abs() < 1e-9);
        assert_eq!((s.y_avg_min, s.y_avg_max), (0.0, 9.0));
        assert!((s.y_dif_mean - 2.0).abs() < 1e-9 && (s.sharpness_mean - 100.0).abs() < 1e-9);
        assert_eq!((s.latency_p50_ms, s.latency_p99_ms), (50, 100));
    }

    #[test]
    fn a_stored_state_continues_exactly() {
        let mut whole = WindowState::new();
        let mut first = WindowState::new();
        for seq in 0..20u64 {
            whole.add(&stats("cam", "s", seq, 0));
            if seq < 12 {
                first.add(&stats("cam", "s", seq, 0));
            }
        }
        // Written, read back, then the rest arrives with a re-delivery of 8..12.
        let mut resumed = WindowState::from_json(&first.to_json()).unwrap();
        let mut dups = 0;
        for seq in 8..20u64 {
            if resumed.add(&stats("cam", "s", seq, 0)) == Added::Duplicate {
                dups += 1;
            }
        }
        assert_eq!(dups, 4);
        assert_eq!(resumed, whole);
        assert_eq!(
            resumed.summary("cam", 0, 10_000),
            whole.summary("cam", 0, 10_000)
        );
    }

    #[test]
    fn gaps_are_per_session_and_sessions_are_separate_frames() {
        let mut st = WindowState::new();
        for seq in [0u64, 1, 2, 4, 5, 6, 8, 9] {
            st.add(&stats("cam", "a", seq, 0));
        }
        for seq in [100u64, 101, 105] {
            st.add(&stats("cam", "b", seq, 0));
        }
        assert_eq!(
            st.add(&stats("cam", "b", 5, 0)),
            Added::Counted,
            "another session"
        );
        let s = st.summary("cam", 0, 10_000);
        // a: 3 and 7 missing; b: 5..=105 minus 4 seen.
        assert_eq!((s.frames, s.gaps), (12, 2 + (101 - 4)));
    }

    mod props {
        use super::*;
        use crate::frame::{Frame, FrameKind, FrameStats};
        use proptest::prelude::*;

        fn frame() -> impl Strategy<Value = Frame> {
            (
                0usize..3,
                0u64..200,
                proptest::bool::weighted(0.1),
                (0.0f64..=255.0, 0.0f64..=255.0, 0.0f64..=1e9),
                any::<[bool; 4]>(),
                -5_000i64..5_000_000,
            )
                .prop_map(|(session, seq, error, (y, dif, sharp), flags, latency)| {
                    Frame {
                        camera: "cam".into(),
                        session: ["a", "b", "#dlq-0"][session].into(),
                        seq,
                        capture_ms: 1_000,
                        kind: if error {
                            FrameKind::DecodeError
                        } else {
                            FrameKind::Stats(FrameStats {
                                keyframe: flags[0],
                                y_avg: y,
                                y_dif: dif,
                                sharpness: sharp,
                                black: flags[1],
                                frozen: flags[2],
                                scene_cut: flags[3],
                                latency_ms: latency,
                                width: 640,
                                height: 360,
                            })
                        },
                    }
                })
        }

        proptest! {
            /// A window written, read back and continued — at any point, with any
            /// re-deliveries — holds exactly what one uninterrupted state holds: each
            /// (session, seq) counted once, sums and extremes exact, nothing reset.
            #[test]
            fn a_state_survives_storage_and_redelivery_exactly(
                frames in proptest::collection::vec(frame(), 0..300),
                cuts in proptest::collection::vec(0usize..300, 0..5),
            ) {
                let mut whole = WindowState::new();
                for f in &frames {
                    whole.add(f);
                }
                let mut stored = WindowState::new().to_json();
                let mut cuts = cuts;
                cuts.sort_unstable();
                let mut from = 0;
                for cut in cuts.into_iter().chain([frames.len()]) {
                    let cut = cut.min(frames.len());
                    let mut st = WindowState::from_json(&stored).expect("readable");
                    // Re-deliver what the previous write counted, then the new frames.
                    for f in frames[..from].iter().chain(&frames[from..cut.max(from)]) {
                        st.add(f);
                    }
                    stored = st.to_json();
                    from = cut.max(from);
                }
                let resumed = WindowState::from_json(&stored).expect("readable");
                prop_assert_eq!(&resumed, &whole);
                prop_assert_eq!(resumed.summary("cam", 0, 10_000), whole.summary("cam", 0, 10_000));
                let distinct: std::collections::BTreeSet<(String, u64, bool)> = frames
                    .iter()
                    .map(|f| (f.session.clone(), f.seq, f.stats().is_some()))
                    .collect();
                prop_assert_eq!(
                    whole.frames + whole.decode_errors,
                    distinct.len() as u64
                );
            }
        }
    }

    #[test]
    fn detections_count_pictures_and_classes_once_beside_the_statistics() {
        use crate::frame::tests::analysed;
        let mut st = WindowState::new();
        assert_eq!(st.add(&stats("cam", "s", 1, 0)), Added::Counted);
        let pictures = [
            analysed(
                "cam",
                "s",
                1,
                0,
                &[("person", 0.9), ("person", 0.8), ("car", 0.7)],
            ),
            analysed("cam", "s", 2, 40, &[]),
            analysed("cam", "s", 3, 80, &[("person", 0.9)]),
        ];
        for p in &pictures {
            assert_eq!(
                st.add(p),
                Added::Counted,
                "detections beside the stats of seq 1"
            );
        }
        for p in &pictures {
            assert_eq!(st.add(p), Added::Duplicate);
        }
        let s = st.summary("cam", 0, 10_000);
        assert_eq!((s.frames, s.pictures_analysed, s.gaps), (1, 3, 0));
        let want = |objects, max_per_picture, pictures| ClassCounts {
            objects,
            max_per_picture,
            pictures,
        };
        assert_eq!(
            s.classes,
            BTreeMap::from([
                ("car".to_owned(), want(1, 1, 1)),
                ("person".to_owned(), want(3, 2, 2)),
            ])
        );
        // A state written before detections existed reads as none analysed.
        let old = r#"{"v":1,"seen":{},"failed":{},"frames":0,"keyframes":0,"y_sum":0.0,"y_min":null,"y_max":null,"y_dif_sum":0.0,"sharpness_sum":0.0,"black":0,"frozen":0,"scene_cuts":0,"decode_errors":0,"latency":{}}"#;
        let st = WindowState::from_json(old).unwrap();
        assert_eq!((st.pictures, st.classes.len()), (0, 0));
        assert_eq!(WindowState::from_json(&st.to_json()).unwrap(), st);
    }

    mod detection_props {
        use super::*;
        use crate::frame::tests::analysed;
        use proptest::prelude::*;

        const LABELS: [&str; 3] = ["person", "car", "dog"];

        /// The objects of picture (session, seq): always the same for the same picture, as
        /// a re-delivery carries them.
        fn objects_of(session: usize, seq: u64) -> Vec<(&'static str, f32)> {
            let n = (seq.wrapping_mul(7) + session as u64 * 3) % 5;
            (0..n)
                .map(|i| (LABELS[((seq + i) % 3) as usize], 0.9))
                .collect()
        }

        fn picture(session: usize, seq: u64) -> Frame {
            let s = ["a", "b"][session];
            analysed("cam", s, seq, 1_000, &objects_of(session, seq))
        }

        proptest! {
            /// Pictures delivered any number of times, in any order, written and read back
            /// at any points, count exactly what the distinct pictures hold.
            #[test]
            fn redelivered_pictures_in_any_order_count_once(
                ids in proptest::collection::vec((0usize..2, 0u64..60), 0..200),
                order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..200),
                cuts in proptest::collection::vec(0usize..200, 0..4),
            ) {
                // Every picture at least once, plus re-deliveries in a shuffled order.
                let mut deliveries: Vec<Frame> = ids.iter().map(|&(s, q)| picture(s, q)).collect();
                for ix in &order {
                    if !ids.is_empty() {
                        let (s, q) = ids[ix.index(ids.len())];
                        let at = ix.index(deliveries.len() + 1);
                        deliveries.insert(at, picture(s, q));
                    }
                }
                let mut stored = WindowState::new().to_json();
                let mut cuts = cuts;
                cuts.sort_unstable();
                let mut from = 0;
                for cut in cuts.into_iter().chain([deliveries.len()]) {
                    let cut = cut.clamp(from, deliveries.len());
                    let mut st = WindowState::from_json(&stored).expect("readable");
                    for f in &deliveries[from..cut] {
                        st.add(f);
                    }
                    stored = st.to_json();
                    from = cut;
                }
                let got = WindowState::from_json(&stored).expect("readable").summary("cam", 0, 10_000);

                // The reference: each distinct picture once.
                let distinct: std::collections::BTreeSet<(usize, u64)> = ids.iter().copied().collect();
                let mut want: BTreeMap<String, ClassCounts> = BTreeMap::new();
                for &(s, q) in &distinct {
                    let mut per: BTreeMap<&str, u64> = BTreeMap::new();
                    for (label, _) in objects_of(s, q) {
                        *per.entry(label).or_default() += 1;
                    }
                    for (label, n) in per {
                        let c = want.entry(label.to_owned()).or_default();
                        c.objects += n;
                        c.max_per_picture = c.max_per_picture.max(n);
                        c.pictures += 1;
                    }
                }
                prop_assert_eq!(got.pictures_analysed, distinct.len() as i64);
                prop_assert_eq!(got.classes, want);
                prop_assert_eq!(got.frames, 0);
            }
        }
    }

    #[test]
    fn bad_stored_states_are_refused_with_a_reason() {
        assert!(
            WindowState::from_json("")
                .unwrap_err()
                .starts_with("unreadable")
        );
        let mut st = WindowState::new();
        st.v = 99;
        assert_eq!(
            WindowState::from_json(&st.to_json()).unwrap_err(),
            "window state version 99 is not 1"
        );
    }
}

//! Incidents: black, frozen and camera-gap intervals, from per-frame flags to rows; and
//! objects appearing and leaving, from the detector's analysed pictures.
//!
//! The worker flags single frames (`black`, `frozen`); an operator wants intervals
//! "black for at least 2 s". This module applies the interval rules of ffmpeg's filters
//! to one camera's frames in stream order:
//!
//! - **black** (blackdetect): starts at the first black frame, ends at the first frame
//!   that is not black; reported when `end - start ≥ black_min_duration_ms`.
//! - **frozen** (freezedetect): starts at the reference picture — the last frame that was
//!   not frozen, which the frozen ones equal — and ends at the next frame that is not
//!   frozen; reported when `end - start ≥ freeze_min_duration_ms`.
//! - **gap**: no frame for at least `gap_min_ms` — from the last frame before to the
//!   first frame after, also across a reconnect (new session).
//!
//! A black or frozen interval still going on is reported as soon as it reaches its
//! minimum, with no end (`end_ms = None`), and reported again, closed, when it ends. When
//! the stream is interrupted (new session, gap) an open interval ends one frame interval
//! after its last frame, as ffmpeg ends one at the end of a stream.
//!
//! Objects, per camera and class label, over the analysed pictures in stream order
//! ([`Presence`]):
//!
//! - **appeared**: the class is in a picture and was not present: starts at that
//!   picture's capture time; open (`end_ms = None`) while the class is present, closed
//!   when it leaves, at the first analysed picture without it (or, when no picture came
//!   between, at the last one with it).
//! - **left**: the class was in no analysed picture for `left_after_ms` of capture time
//!   (noticed at the first picture that much later); a point event at the time the
//!   `appeared` interval ends.
//!
//! Frames already seen (a re-delivery, a replay after restart) are ignored: the tracker
//! keeps the last session and seq it processed, and is stored with its camera, so the
//! same interval always gets the same start — incidents are keyed by
//! `(camera, kind, start_ms)` and rewriting one is harmless.

use serde::{Deserialize, Serialize};

use crate::frame::Frame;

use std::collections::BTreeMap;

use crate::frame::Detections;

/// The interval rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// blackdetect `d`, ms.
    pub black_min_ms: i64,
    /// freezedetect `d`, ms.
    pub freeze_min_ms: i64,
    /// Shortest silence that is a camera gap, ms.
    pub gap_min_ms: i64,
    /// A class absent from the analysed pictures this long has left, ms.
    pub object_left_ms: i64,
}

/// What an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Black picture.
    Black,
    /// Frozen picture.
    Frozen,
    /// No frames.
    Gap,
    /// A class of object came into the analysed pictures (open while it stays).
    Appeared,
    /// A class of object was in no analysed picture for `left_after_ms`.
    Left,
}

impl Kind {
    /// Every kind, in the order they are listed.
    pub const ALL: [Kind; 5] = [
        Kind::Black,
        Kind::Frozen,
        Kind::Gap,
        Kind::Appeared,
        Kind::Left,
    ];

    /// `black`, `frozen`, `gap`, `appeared` or `left` (stored and served).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Black => "black",
            Kind::Frozen => "frozen",
            Kind::Gap => "gap",
            Kind::Appeared => "appeared",
            Kind::Left => "left",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether incidents of this kind are about a class of object (and carry its label).
    pub fn is_object(self) -> bool {
        matches!(self, Kind::Appeared | Kind::Left)
    }
}

/// One incident as stored: closed (`end_ms` set) or still going on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// Camera id.
    pub camera: String,
    /// What happened.
    pub kind: Kind,
    /// Start, capture clock, ms since the epoch.
    pub start_ms: i64,
    /// End (exclusive); `None` while it goes on.
    pub end_ms: Option<i64>,
    /// Length so far (`end - start` once closed).
    pub duration_ms: i64,
    /// Frames flagged in it (0 for gaps); for `appeared`, analysed pictures with the
    /// class; 0 for `left`.
    pub frames: i64,
    /// Session the interval started in.
    pub session: String,
    /// The object class of `appeared` and `left`; empty for the other kinds.
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Run {
    start_ms: i64,
    last_ms: i64,
    frames: i64,
}

/// One camera's incident state; serialized with the camera.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracker {
    session: Option<String>,
    last_seq: u64,
    last_capture_ms: Option<i64>,
    /// Capture interval between the last two frames of the session.
    interval_ms: i64,
    black: Option<Run>,
    frozen: Option<Run>,
    /// Capture time of the last frame that was not frozen (freezedetect's reference).
    reference_ms: Option<i64>,
    /// Session the current runs started in.
    run_session: String,
    /// Which classes of object are present (absent in trackers stored before detections).
    #[serde(default, skip_serializing_if = "Presence::is_empty")]
    objects: Presence,
}

impl Tracker {
    /// Feeds one frame; returns the incidents it opened, extended or closed. Decode
    /// errors and frames at or before the last one processed change nothing.
    pub fn observe(&mut self, f: &Frame, rules: &Rules) -> Vec<Incident> {
        if let Some(d) = f.detections() {
            return self.objects.observe(f, d, rules.object_left_ms);
        }
        let Some(s) = f.stats() else {
            return Vec::new();
        };
        let same_session = self.session.as_deref() == Some(f.session.as_str());
        if let Some(last) = self.last_capture_ms {
            let stale = if same_session {
                f.seq <= self.last_seq
            } else {
                f.capture_ms <= last
            };
            if stale {
                return Vec::new();
            }
        }
        let mut out = Vec::new();
        if let Some(last) = self.last_capture_ms {
            let silence = f.capture_ms.saturating_sub(last);
            if silence >= rules.gap_min_ms {
                out.push(self.incident(&f.camera, Kind::Gap, last, Some(f.capture_ms), 0));
            }
            if !same_session || silence >= rules.gap_min_ms {
                let end = last.saturating_add(self.interval_ms);
                self.end_runs(&f.camera, end, rules, &mut out);
                self.reference_ms = None;
                self.interval_ms = 0;
            } else if silence > 0 {
                self.interval_ms = silence;
            }
        }
        if self.black.is_none() && self.frozen.is_none() {
            self.run_session = f.session.clone();
        }

        if s.black {
            let run = self.black.get_or_insert(Run {
                start_ms: f.capture_ms,
                last_ms: f.capture_ms,
                frames: 0,
            });
            run.last_ms = f.capture_ms;
            run.frames += 1;
            let (start, frames) = (run.start_ms, run.frames);
            let so_far = f.capture_ms.saturating_add(self.interval_ms) - start;
            if so_far >= rules.black_min_ms {
                let mut i = self.incident(&f.camera, Kind::Black, start, None, frames);
                i.duration_ms = so_far;
                out.push(i);
            }
        } else if let Some(run) = self.black.take() {
            self.push_closed(
                &f.camera,
                Kind::Black,
                run,
                f.capture_ms,
                rules.black_min_ms,
                &mut out,
            );
        }

        if s.frozen {
            let start = self.reference_ms.unwrap_or(f.capture_ms);
            let run = self.frozen.get_or_insert(Run {
                start_ms: start,
                last_ms: f.capture_ms,
                frames: 0,
            });
            run.last_ms = f.capture_ms;
            run.frames += 1;
            let (start, frames) = (run.start_ms, run.frames);
            let so_far = f.capture_ms - start;
            if so_far >= rules.freeze_min_ms {
                let mut i = self.incident(&f.camera, Kind::Frozen, start, None, frames);
                i.duration_ms = so_far;
                out.push(i);
            }
        } else {
            if let Some(run) = self.frozen.take() {
                self.push_closed(
                    &f.camera,
                    Kind::Frozen,
                    run,
                    f.capture_ms,
                    rules.freeze_min_ms,
                    &mut out,
                );
            }
            self.reference_ms = Some(f.capture_ms);
        }

        self.session = Some(f.session.clone());
        self.last_seq = f.seq;
        self.last_capture_ms = Some(f.capture_ms);
        out
    }

    /// Whether a black or frozen interval is going on.
    pub fn in_incident(&self) -> bool {
        self.black.is_some() || self.frozen.is_some()
    }

    /// The tracker as stored (JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// A stored tracker; an unreadable one starts afresh (the caller logs the error).
    pub fn from_json(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Tracker::default());
        }
        serde_json::from_str(text).map_err(|e| format!("unreadable incident state: {e}"))
    }

    fn end_runs(&mut self, camera: &str, end_ms: i64, rules: &Rules, out: &mut Vec<Incident>) {
        if let Some(run) = self.black.take() {
            self.push_closed(camera, Kind::Black, run, end_ms, rules.black_min_ms, out);
        }
        if let Some(run) = self.frozen.take() {
            self.push_closed(camera, Kind::Frozen, run, end_ms, rules.freeze_min_ms, out);
        }
    }

    fn push_closed(
        &self,
        camera: &str,
        kind: Kind,
        run: Run,
        end_ms: i64,
        min_ms: i64,
        out: &mut Vec<Incident>,
    ) {
        let end_ms = end_ms.max(run.last_ms);
        if end_ms - run.start_ms >= min_ms {
            out.push(self.incident(camera, kind, run.start_ms, Some(end_ms), run.frames));
        }
    }

    fn incident(
        &self,
        camera: &str,
        kind: Kind,
        start_ms: i64,
        end_ms: Option<i64>,
        frames: i64,
    ) -> Incident {
        let session = match kind {
            Kind::Gap => self.session.clone().unwrap_or_default(),
            Kind::Black | Kind::Frozen | Kind::Appeared | Kind::Left => self.run_session.clone(),
        };
        Incident {
            camera: camera.to_owned(),
            kind,
            start_ms,
            end_ms,
            duration_ms: end_ms.map_or(0, |e| e - start_ms),
            frames,
            session,
            label: String::new(),
        }
    }
}

/// One class of object while it is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Sighting {
    /// Capture time of the picture it appeared in.
    since_ms: i64,
    /// Capture time of the newest picture with it.
    last_seen_ms: i64,
    /// Capture time of the first analysed picture without it since then.
    absent_since_ms: Option<i64>,
    /// Analysed pictures with it.
    pictures: i64,
    /// Session it appeared in.
    session: String,
}

/// One camera's classes of object present in its analysed pictures; stored in its
/// [`Tracker`]. Pictures at or before the last one processed (a re-delivery, a replay
/// after a restart) change nothing, so an incident always gets the same start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    session: Option<String>,
    last_seq: u64,
    last_capture_ms: Option<i64>,
    classes: BTreeMap<String, Sighting>,
}

impl Presence {
    /// Whether nothing was ever processed.
    pub fn is_empty(&self) -> bool {
        self.session.is_none() && self.classes.is_empty()
    }

    /// The classes present now, with the time each appeared.
    pub fn present(&self) -> impl Iterator<Item = (&str, i64)> {
        self.classes.iter().map(|(l, s)| (l.as_str(), s.since_ms))
    }

    /// Feeds one analysed picture `f` with its detections `d`; returns the incidents it
    /// opened, extended or closed.
    pub fn observe(&mut self, f: &Frame, d: &Detections, left_after_ms: i64) -> Vec<Incident> {
        let same_session = self.session.as_deref() == Some(f.session.as_str());
        if let Some(last) = self.last_capture_ms {
            let stale = if same_session {
                f.seq <= self.last_seq
            } else {
                f.capture_ms <= last
            };
            if stale {
                return Vec::new();
            }
        }
        let t = f.capture_ms;
        let here = d.per_label();
        let mut out = Vec::new();
        let gone: Vec<String> = self
            .classes
            .iter()
            .filter(|(_, s)| t.saturating_sub(s.last_seen_ms) >= left_after_ms)
            .map(|(l, _)| l.clone())
            .collect();
        for label in gone {
            if let Some(s) = self.classes.remove(&label) {
                let end = s.absent_since_ms.unwrap_or(s.last_seen_ms);
                out.push(object_incident(
                    &f.camera,
                    Kind::Appeared,
                    &label,
                    &s,
                    Some(end),
                ));
                let mut left = object_incident(&f.camera, Kind::Left, &label, &s, Some(end));
                left.start_ms = end;
                left.duration_ms = 0;
                left.frames = 0;
                out.push(left);
            }
        }
        for label in here.keys() {
            let s = match self.classes.get_mut(*label) {
                Some(s) => {
                    s.last_seen_ms = t;
                    s.absent_since_ms = None;
                    s.pictures += 1;
                    s
                }
                None => self.classes.entry((*label).to_owned()).or_insert(Sighting {
                    since_ms: t,
                    last_seen_ms: t,
                    absent_since_ms: None,
                    pictures: 1,
                    session: f.session.clone(),
                }),
            };
            let mut open = object_incident(&f.camera, Kind::Appeared, label, s, None);
            open.duration_ms = t - s.since_ms;
            out.push(open);
        }
        for (label, s) in &mut self.classes {
            if !here.contains_key(label.as_str()) && s.absent_since_ms.is_none() {
                s.absent_since_ms = Some(t);
            }
        }
        if !same_session {
            self.session = Some(f.session.clone());
        }
        self.last_seq = f.seq;
        self.last_capture_ms = Some(t);
        out
    }
}

fn object_incident(
    camera: &str,
    kind: Kind,
    label: &str,
    s: &Sighting,
    end_ms: Option<i64>,
) -> Incident {
    Incident {
        camera: camera.to_owned(),
        kind,
        start_ms: s.since_ms,
        end_ms,
        duration_ms: end_ms.map_or(0, |e| e - s.since_ms),
        frames: s.pictures,
        session: s.session.clone(),
        label: label.to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::frame::FrameKind;
    use crate::frame::tests::{error, stats};

    /// ffmpeg's 2 s for black and frozen, 5 s for gaps.
    pub(crate) const RULES: Rules = Rules {
        black_min_ms: 2_000,
        freeze_min_ms: 2_000,
        gap_min_ms: 5_000,
        object_left_ms: 5_000,
    };

    /// A frame at 25 fps: seq n captured at n × 40 ms.
    fn frame(session: &str, seq: u64, black: bool, frozen: bool) -> Frame {
        let mut f = stats("cam", session, seq, seq as i64 * 40);
        if let FrameKind::Stats(s) = &mut f.kind {
            s.black = black;
            s.frozen = frozen;
        }
        f
    }

    /// Feeds frames; returns the last report per (kind, start).
    fn feed(t: &mut Tracker, frames: impl IntoIterator<Item = Frame>) -> Vec<Incident> {
        let mut latest: Vec<Incident> = Vec::new();
        for f in frames {
            for i in t.observe(&f, &RULES) {
                latest.retain(|o| (o.kind, o.start_ms) != (i.kind, i.start_ms));
                latest.push(i);
            }
        }
        latest.sort_by_key(|i| (i.kind, i.start_ms));
        latest
    }

    #[test]
    fn black_for_at_least_d_is_an_incident_with_blackdetect_bounds() {
        let mut t = Tracker::default();
        // Frames 10..70 black (60 frames = 2.4 s), then normal.
        let got = feed(
            &mut t,
            (0..100).map(|n| frame("s", n, (10..70).contains(&n), false)),
        );
        assert_eq!(got.len(), 1, "{got:?}");
        let i = &got[0];
        assert_eq!(
            (i.kind, i.start_ms, i.end_ms),
            (Kind::Black, 400, Some(2_800))
        );
        assert_eq!(
            (i.duration_ms, i.frames, i.session.as_str()),
            (2_400, 60, "s")
        );

        // 1.96 s of black is not an incident.
        let mut t = Tracker::default();
        assert!(
            feed(
                &mut t,
                (0..100).map(|n| frame("s", n, (10..59).contains(&n), false))
            )
            .is_empty()
        );
    }

    #[test]
    fn an_ongoing_interval_is_reported_open_once_it_reaches_d() {
        let mut t = Tracker::default();
        let early = feed(&mut t, (0..49).map(|n| frame("s", n, true, false)));
        assert!(early.is_empty(), "49 frames × 40 ms = 1.96 s: {early:?}");
        let open = feed(&mut t, (49..60).map(|n| frame("s", n, true, false)));
        assert_eq!(open.len(), 1);
        assert_eq!(
            (open[0].start_ms, open[0].end_ms, open[0].duration_ms),
            (0, None, 2_400)
        );
        assert!(t.in_incident());
        let closed = feed(&mut t, [frame("s", 60, false, false)]);
        assert_eq!((closed[0].start_ms, closed[0].end_ms), (0, Some(2_400)));
        assert!(!t.in_incident());
    }

    #[test]
    fn a_freeze_starts_at_its_reference_picture() {
        let mut t = Tracker::default();
        // Frame 19 is the reference; 20..80 equal it (2.4 s after the reference).
        let got = feed(
            &mut t,
            (0..100).map(|n| frame("s", n, false, (20..80).contains(&n))),
        );
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].kind, got[0].start_ms, got[0].end_ms),
            (Kind::Frozen, 760, Some(3_200))
        );
        assert_eq!(got[0].frames, 60);
    }

    #[test]
    fn silence_is_a_gap_and_ends_open_intervals() {
        let mut t = Tracker::default();
        let mut frames: Vec<Frame> = (0..100).map(|n| frame("s", n, true, false)).collect();
        // Reconnect 6 s later with a new session (seq from 0 again).
        frames.extend((0..10).map(|n| {
            let mut f = frame("t", n, false, false);
            f.capture_ms += 3_960 + 6_000;
            f
        }));
        let got = feed(&mut t, frames);
        assert_eq!(got.len(), 2, "{got:?}");
        let (black, gap) = (&got[0], &got[1]);
        assert_eq!(
            (black.kind, black.start_ms, black.end_ms),
            (Kind::Black, 0, Some(4_000))
        );
        assert_eq!(
            (gap.kind, gap.start_ms, gap.end_ms),
            (Kind::Gap, 3_960, Some(9_960))
        );
        assert_eq!(gap.duration_ms, 6_000);

        // A quick reconnect is no gap, but still ends the interval.
        let mut t = Tracker::default();
        let mut frames: Vec<Frame> = (0..60).map(|n| frame("s", n, true, false)).collect();
        frames.push({
            let mut f = frame("t", 0, true, false);
            f.capture_ms = 2_500;
            f
        });
        let got = feed(&mut t, frames);
        assert_eq!(got.iter().filter(|i| i.kind == Kind::Gap).count(), 0);
        assert!(
            got.iter()
                .any(|i| i.end_ms == Some(2_400) && i.session == "s")
        );
    }

    #[test]
    fn replays_and_errors_change_nothing_and_state_survives_storage() {
        let mut t = Tracker::default();
        let first = feed(&mut t, (0..40).map(|n| frame("s", n, true, false)));
        assert!(first.is_empty());
        let mut restored = Tracker::from_json(&t.to_json()).unwrap();
        assert_eq!(restored, t);
        // A replay of 0..40, a decode error, an old session: nothing.
        assert!(feed(&mut restored, (0..40).map(|n| frame("s", n, true, false))).is_empty());
        assert!(
            restored
                .observe(&error("cam", "s", 40, 1_600), &RULES)
                .is_empty()
        );
        let mut old = frame("r", 500, false, false);
        old.capture_ms = 100;
        assert!(restored.observe(&old, &RULES).is_empty());
        assert_eq!(restored, t);
        // Continuing gives the same start as an uninterrupted run.
        let got = feed(
            &mut restored,
            (40..80).map(|n| frame("s", n, n < 60, false)),
        );
        assert_eq!((got[0].start_ms, got[0].end_ms), (0, Some(2_400)));
        assert_eq!(Tracker::from_json("").unwrap(), Tracker::default());
        assert!(Tracker::from_json("[").is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("blue"), None);
        assert!(Kind::Appeared.is_object() && Kind::Left.is_object() && !Kind::Gap.is_object());
    }

    /// An analysed picture every 200 ms: seq n captured at n × 200 ms.
    fn picture(session: &str, seq: u64, labels: &[&str]) -> Frame {
        let objects: Vec<(&str, f32)> = labels.iter().map(|l| (*l, 0.9)).collect();
        crate::frame::tests::analysed("cam", session, seq, seq as i64 * 200, &objects)
    }

    /// Feeds pictures; returns the last report per (kind, label, start).
    fn feed_pictures(t: &mut Tracker, pictures: impl IntoIterator<Item = Frame>) -> Vec<Incident> {
        let mut latest: Vec<Incident> = Vec::new();
        for f in pictures {
            for i in t.observe(&f, &RULES) {
                latest.retain(|o| (o.kind, &o.label, o.start_ms) != (i.kind, &i.label, i.start_ms));
                latest.push(i);
            }
        }
        latest.sort_by(|a, b| (a.start_ms, a.kind, &a.label).cmp(&(b.start_ms, b.kind, &b.label)));
        latest
    }

    fn brief(i: &Incident) -> (Kind, &str, i64, Option<i64>, i64) {
        (i.kind, i.label.as_str(), i.start_ms, i.end_ms, i.frames)
    }

    #[test]
    fn objects_appear_and_leave_after_left_after_ms_of_absence() {
        let mut t = Tracker::default();
        // A person in pictures 5..20 (1 s to 3.8 s), a car from 10 on; the person back at
        // 50 (10 s) and once more at 74 (4.8 s later: < 5 s, so still present), then gone.
        let labels = |n: u64| -> Vec<&str> {
            let mut l = Vec::new();
            if (5..20).contains(&n) || n == 50 || n == 74 {
                l.push("person");
            }
            if n >= 10 {
                l.push("car");
            }
            l
        };
        let got = feed_pictures(&mut t, (0..100).map(|n| picture("s", n, &labels(n))));
        let got: Vec<_> = got.iter().map(brief).collect();
        assert_eq!(
            got,
            [
                (Kind::Appeared, "person", 1_000, Some(4_000), 15),
                (Kind::Appeared, "car", 2_000, None, 90),
                (Kind::Left, "person", 4_000, Some(4_000), 0),
                (Kind::Appeared, "person", 10_000, Some(15_000), 2),
                (Kind::Left, "person", 15_000, Some(15_000), 0),
            ],
            "absent from picture 20, confirmed at 44 (5 s after 19); \
             back at 50, seen at 74, absent from 75, confirmed at 99"
        );
        // The pictures after 99 keep the car; the person stays gone.
        assert_eq!(t.objects.present().collect::<Vec<_>>(), [("car", 2_000)]);
    }

    #[test]
    fn a_silence_ends_a_presence_at_its_last_sighting() {
        let mut t = Tracker::default();
        let mut pictures: Vec<Frame> = (0..5).map(|n| picture("s", n, &["dog"])).collect();
        // Reconnect 10 s later: the dog again (it left, unobserved, and came back).
        pictures.push(picture("t", 60, &["dog"]));
        let got = feed_pictures(&mut t, pictures);
        assert_eq!(
            got.iter().map(brief).collect::<Vec<_>>(),
            [
                (Kind::Appeared, "dog", 0, Some(800), 5),
                (Kind::Left, "dog", 800, Some(800), 0),
                (Kind::Appeared, "dog", 12_000, None, 1),
            ]
        );
    }

    #[test]
    fn replayed_pictures_change_nothing_and_presence_survives_storage() {
        let seq = |n: u64| picture("s", n, if n < 10 { &["person"] } else { &[] });
        let mut whole = Tracker::default();
        let want = feed_pictures(&mut whole, (0..60).map(seq));
        let mut t = Tracker::default();
        let mut got = feed_pictures(&mut t, (0..30).map(seq));
        let mut restored = Tracker::from_json(&t.to_json()).unwrap();
        assert_eq!(restored, t);
        // Replays of 0..30 and a frame's statistics do not disturb the objects.
        assert!(feed_pictures(&mut restored, (0..30).map(seq)).is_empty());
        restored.observe(&stats("cam", "s", 31, 6_200), &RULES);
        for i in feed_pictures(&mut restored, (30..60).map(seq)) {
            got.retain(|o| (o.kind, o.start_ms) != (i.kind, i.start_ms));
            got.push(i);
        }
        got.sort_by_key(|i| (i.start_ms, i.kind));
        assert_eq!(got, want);
        assert_eq!(
            want.iter().map(brief).collect::<Vec<_>>(),
            [
                (Kind::Appeared, "person", 0, Some(2_000), 10),
                (Kind::Left, "person", 2_000, Some(2_000), 0)
            ]
        );
        // Stats never report object incidents, pictures never black ones.
        let mut t = Tracker::default();
        assert!(t.observe(&picture("s", 0, &[]), &RULES).is_empty());
        assert!(t.objects.present().next().is_none());
        assert!(!t.in_incident());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// A camera's pictures with any re-deliveries of earlier ones mixed in (a
            /// worker replay), and the tracker stored and read back at any point, give the
            /// same incidents as the pictures once in order.
            #[test]
            fn replays_and_restarts_give_the_same_incidents(
                present in proptest::collection::vec((any::<bool>(), any::<bool>()), 1..120),
                replays in proptest::collection::vec((0usize..120, 0usize..20), 0..6),
                restarts in proptest::collection::vec(0usize..120, 0..3),
            ) {
                let pic = |n: usize| {
                    let (p, c) = present[n];
                    let mut l = Vec::new();
                    if p { l.push("person"); }
                    if c { l.push("car"); }
                    picture("s", n as u64, &l)
                };
                let mut whole = Tracker::default();
                let want = feed_pictures(&mut whole, (0..present.len()).map(pic));
                let mut stream: Vec<Frame> = (0..present.len()).map(pic).collect();
                for &(at, back) in replays.iter().rev() {
                    let at = at.min(stream.len());
                    let seq = stream.get(at.saturating_sub(1)).map_or(0, |f| f.seq as usize);
                    let from = seq.saturating_sub(back);
                    let again: Vec<Frame> = (from..=seq.min(present.len() - 1)).map(pic).collect();
                    stream.splice(at..at, again);
                }
                let mut t = Tracker::default();
                let mut got: Vec<Incident> = Vec::new();
                for (i, f) in stream.iter().enumerate() {
                    if restarts.contains(&i) {
                        t = Tracker::from_json(&t.to_json()).expect("readable");
                    }
                    for inc in t.observe(f, &RULES) {
                        got.retain(|o| (o.kind, &o.label, o.start_ms) != (inc.kind, &inc.label, inc.start_ms));
                        got.push(inc);
                    }
                }
                got.sort_by(|a, b| (a.start_ms, a.kind, &a.label).cmp(&(b.start_ms, b.kind, &b.label)));
                prop_assert_eq!(got, want);
                prop_assert_eq!(t, whole);
            }
        }
    }
}

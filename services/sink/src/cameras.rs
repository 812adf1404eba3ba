//! What the sink knows about each camera between flushes: when it was last seen, its
//! newest capture time (its clock), picture size and session, its incident tracker, the
//! incidents waiting to be written, and its newest analysed picture (for the page's
//! boxes).
//!
//! Everything here is written in the same transaction as the window states it goes with,
//! and read back at start, so a restarted sink continues each camera's clock and
//! incident intervals where they were.

use std::collections::{BTreeMap, HashMap, HashSet};

use framewire_wire::DetectedObject;
use serde::Serialize;

use crate::frame::Frame;
use crate::incidents::{Incident, Kind, Rules, Tracker};

/// A camera's newest analysed picture and the objects in it (those at or above
/// `sink.detections.min_score`), as stored in `latest_pictures` and served.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatestPicture {
    /// Camera id.
    pub camera: String,
    /// Session of the picture.
    pub session: String,
    /// Its sequence number.
    pub seq: u64,
    /// Its capture time, ms since the epoch.
    pub capture_ms: i64,
    /// When the detector finished, ms since the epoch.
    pub detected_ms: i64,
    /// Picture width (boxes are fractions of it).
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// The model that ran.
    pub model: String,
    /// The objects, best first.
    pub objects: Vec<DetectedObject>,
}

impl LatestPicture {
    /// The picture of an analysed frame; `None` for other frames.
    pub fn of(f: &Frame) -> Option<Self> {
        let d = f.detections()?;
        Some(LatestPicture {
            camera: f.camera.clone(),
            session: f.session.clone(),
            seq: f.seq,
            capture_ms: f.capture_ms,
            detected_ms: d.detected_ms,
            width: d.width,
            height: d.height,
            model: d.model.clone(),
            objects: d.objects.clone(),
        })
    }
}

/// One camera as stored in the `cameras` table.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraRow {
    /// Camera id.
    pub id: String,
    /// Wall clock when the sink first saw it, ms since the epoch.
    pub first_seen_ms: i64,
    /// Wall clock of the newest record about it.
    pub last_seen_ms: i64,
    /// Newest capture time of its frames (its clock).
    pub last_capture_ms: i64,
    /// Picture width of the newest decoded frame (0 = none yet).
    pub width: i64,
    /// Picture height of the newest decoded frame.
    pub height: i64,
    /// Session of the newest frame.
    pub session: String,
    /// Incident state.
    pub tracker: Tracker,
}

/// Every camera, with what changed since the last flush.
#[derive(Debug)]
pub struct Cameras {
    rules: Rules,
    rows: HashMap<String, CameraRow>,
    dirty: HashSet<String>,
    incidents: BTreeMap<(String, Kind, String, i64), Incident>,
    pictures: HashMap<String, LatestPicture>,
}

impl Cameras {
    /// No cameras yet; incidents follow `rules`.
    pub fn new(rules: Rules) -> Self {
        Cameras {
            rules,
            rows: HashMap::new(),
            dirty: HashSet::new(),
            incidents: BTreeMap::new(),
            pictures: HashMap::new(),
        }
    }

    /// Takes the cameras stored in the database (at start).
    pub fn load(&mut self, rows: Vec<CameraRow>) {
        for r in rows {
            self.rows.insert(r.id.clone(), r);
        }
    }

    /// Every camera known.
    pub fn rows(&self) -> impl Iterator<Item = &CameraRow> {
        self.rows.values()
    }

    /// Notes a frame received at wall clock `now_ms` (late ones too: the camera is alive).
    pub fn observe(&mut self, f: &Frame, now_ms: i64) {
        let row = match self.rows.get_mut(f.camera.as_str()) {
            Some(r) => r,
            None => self
                .rows
                .entry(f.camera.clone())
                .or_insert_with(|| CameraRow {
                    id: f.camera.clone(),
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                    last_capture_ms: f.capture_ms,
                    width: 0,
                    height: 0,
                    session: f.session.clone(),
                    tracker: Tracker::default(),
                }),
        };
        row.last_seen_ms = row.last_seen_ms.max(now_ms);
        // Only decoded frames move the clock (dead letters come on their own topic, maybe
        // ahead of a backlog of statistics).
        if f.stats().is_some() && f.capture_ms >= row.last_capture_ms {
            row.last_capture_ms = f.capture_ms;
            row.session.clone_from(&f.session);
            if let Some(s) = f.stats() {
                row.width = i64::from(s.width);
                row.height = i64::from(s.height);
            }
        }
        for i in row.tracker.observe(f, &self.rules) {
            self.incidents
                .insert((i.camera.clone(), i.kind, i.label.clone(), i.start_ms), i);
        }
        if let Some(p) = LatestPicture::of(f) {
            self.keep_picture(p);
        }
        if !self.dirty.contains(f.camera.as_str()) {
            self.dirty.insert(f.camera.clone());
        }
    }

    /// Cameras and incidents changed since the last call, for a flush. If the flush
    /// fails, give them back with [`Cameras::restore`].
    pub fn take_dirty(&mut self) -> (Vec<CameraRow>, Vec<Incident>) {
        let rows = self
            .dirty
            .drain()
            .filter_map(|id| self.rows.get(&id).cloned())
            .collect();
        let incidents = std::mem::take(&mut self.incidents).into_values().collect();
        (rows, incidents)
    }

    /// Marks the cameras of a failed flush changed again and queues its incidents again
    /// (unless a newer report of the same incident came since).
    pub fn restore(&mut self, rows: &[CameraRow], incidents: Vec<Incident>) {
        for r in rows {
            self.dirty.insert(r.id.clone());
        }
        for i in incidents {
            self.incidents
                .entry((i.camera.clone(), i.kind, i.label.clone(), i.start_ms))
                .or_insert(i);
        }
    }

    /// The newest analysed picture of every camera that had one since the last call, for
    /// a flush. If the flush fails, give them back with [`Cameras::restore_pictures`].
    pub fn take_pictures(&mut self) -> Vec<LatestPicture> {
        self.pictures.drain().map(|(_, p)| p).collect()
    }

    /// Queues the pictures of a failed flush again (unless a newer one came since).
    pub fn restore_pictures(&mut self, pictures: Vec<LatestPicture>) {
        for p in pictures {
            self.keep_picture(p);
        }
    }

    fn keep_picture(&mut self, p: LatestPicture) {
        match self.pictures.get_mut(p.camera.as_str()) {
            Some(old) if old.capture_ms > p.capture_ms => {}
            Some(old) => *old = p,
            None => {
                self.pictures.insert(p.camera.clone(), p);
            }
        }
    }

    /// Incidents waiting to be written.
    pub fn pending_incidents(&self) -> usize {
        self.incidents.len()
    }

    /// Forgets cameras not seen since `before_ms` (retention removed them from the
    /// database too) and not waiting for a write; returns their ids.
    pub fn forget_older_than(&mut self, before_ms: i64) -> Vec<String> {
        let mut gone = Vec::new();
        self.rows.retain(|id, r| {
            let keep = r.last_seen_ms >= before_ms || self.dirty.contains(id);
            if !keep {
                gone.push(id.clone());
            }
            keep
        });
        gone
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::frame::FrameKind;
    use crate::frame::tests::{error, stats};
    use crate::incidents::tests::RULES;

    #[test]
    fn rows_follow_the_newest_frame_and_incidents_queue_once_per_key() {
        let mut c = Cameras::new(RULES);
        for n in 0..60u64 {
            let mut f = stats("cam", "s", n, 10_000 + n as i64 * 40);
            if let FrameKind::Stats(s) = &mut f.kind {
                s.black = true;
            }
            c.observe(&f, 50_000 + n as i64);
        }
        c.observe(&stats("cam", "s", 5, 10_200), 60_000); // old frame: clock stays
        // A dead letter says the camera is alive, but does not move its clock.
        c.observe(&error("cam", "s", 61, 12_440), 60_001);
        let (rows, incidents) = c.take_dirty();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.first_seen_ms, r.last_seen_ms), (50_000, 60_001));
        assert_eq!((r.last_capture_ms, r.width, r.height), (12_360, 640, 360));
        assert_eq!(incidents.len(), 1, "one open black interval, reported once");
        assert_eq!((incidents[0].start_ms, incidents[0].end_ms), (10_000, None));
        assert!(c.take_dirty().0.is_empty());

        // A failed flush gives them back; a newer report of the same incident wins.
        c.restore(&rows, incidents.clone());
        let (rows2, again) = c.take_dirty();
        assert_eq!((rows2.len(), again), (1, incidents));
    }

    #[test]
    fn the_newest_analysed_picture_waits_per_camera_and_objects_make_incidents() {
        use crate::frame::tests::analysed;
        let mut c = Cameras::new(RULES);
        c.observe(&analysed("cam", "s", 3, 1_200, &[("person", 0.9)]), 5_000);
        c.observe(&analysed("cam", "s", 1, 1_000, &[]), 5_001); // older, arriving late
        c.observe(&analysed("other", "s", 0, 900, &[]), 5_002);
        c.observe(&stats("cam", "s", 4, 1_240), 5_003);
        let mut pics = c.take_pictures();
        pics.sort_by(|a, b| a.camera.cmp(&b.camera));
        assert_eq!(
            pics.iter()
                .map(|p| (p.camera.as_str(), p.seq, p.objects.len()))
                .collect::<Vec<_>>(),
            [("cam", 3, 1), ("other", 0, 0)]
        );
        assert!(c.take_pictures().is_empty());
        c.observe(&analysed("cam", "s", 5, 1_300, &[]), 5_004);
        c.restore_pictures(pics);
        let again = c.take_pictures();
        let cam = again.iter().find(|p| p.camera == "cam").unwrap();
        assert_eq!(
            cam.seq, 5,
            "a failed flush's picture does not replace a newer one"
        );

        let (rows, incidents) = c.take_dirty();
        let cam_row = rows.iter().find(|r| r.id == "cam").unwrap();
        assert_eq!(
            cam_row.last_capture_ms, 1_240,
            "pictures do not move the clock"
        );
        assert_eq!(incidents.len(), 1);
        assert_eq!(
            (
                incidents[0].kind,
                incidents[0].label.as_str(),
                incidents[0].start_ms
            ),
            (Kind::Appeared, "person", 1_200)
        );
    }

    #[test]
    fn stored_cameras_continue_and_old_ones_are_forgotten() {
        let mut c = Cameras::new(RULES);
        c.load(vec![CameraRow {
            id: "old".into(),
            first_seen_ms: 1,
            last_seen_ms: 100,
            last_capture_ms: 90,
            width: 1,
            height: 1,
            session: "s".into(),
            tracker: Tracker::default(),
        }]);
        c.observe(&stats("new", "s", 0, 1_000), 2_000);
        c.forget_older_than(1_000);
        let ids: Vec<_> = c.rows().map(|r| r.id.clone()).collect();
        assert_eq!(ids, ["new"]);
    }
}

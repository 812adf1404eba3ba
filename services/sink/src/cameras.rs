//! What the sink knows about each camera between flushes: when it was last seen, its
//! newest capture time (its clock), picture size and session, its incident tracker, and
//! the incidents waiting to be written.
//!
//! Everything here is written in the same transaction as the window states it goes with,
//! and read back at start, so a restarted sink continues each camera's clock and
//! incident intervals where they were.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::frame::Frame;
use crate::incidents::{Incident, Kind, Rules, Tracker};

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
    incidents: BTreeMap<(String, Kind, i64), Incident>,
}

impl Cameras {
    /// No cameras yet; incidents follow `rules`.
    pub fn new(rules: Rules) -> Self {
        Cameras {
            rules,
            rows: HashMap::new(),
            dirty: HashSet::new(),
            incidents: BTreeMap::new(),
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
                .insert((i.camera.clone(), i.kind, i.start_ms), i);
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
                .entry((i.camera.clone(), i.kind, i.start_ms))
                .or_insert(i);
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

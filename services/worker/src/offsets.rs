//! Which offset of each partition may be committed: never one inside a camera's GOP.
//!
//! Records of one partition finish out of order (cameras decode on different threads),
//! and a consumer that takes the partition over must start every camera at a keyframe.
//! So a partition's commit point is the smallest of:
//! - the lowest offset still in flight (at-least-once: unfinished work is re-read),
//! - one past the highest finished offset,
//! - for every camera on the partition, the offset of its current GOP's keyframe.
//!
//! A camera that sends nothing for `idle_release` (removed, disconnected, session ended)
//! is released, so it never holds the commit — and the lag KEDA scales on — back. If it
//! comes back mid-GOP, its next keyframe makes it count again. Commit points only move
//! forward.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// In-flight offsets and GOP starts per partition.
#[derive(Debug)]
pub struct OffsetTracker {
    partitions: HashMap<i32, Partition>,
    idle_release: Duration,
}

#[derive(Debug, Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    next_after_done: Option<i64>,
    /// Camera → (offset of its current GOP's keyframe, when it last sent a record).
    gops: HashMap<String, (i64, Instant)>,
    /// Last commit point handed out.
    stored: Option<i64>,
}

impl OffsetTracker {
    /// A tracker that releases cameras silent for `idle_release`.
    pub fn new(idle_release: Duration) -> Self {
        OffsetTracker {
            partitions: HashMap::new(),
            idle_release,
        }
    }

    /// Records that a record of `camera` at `offset` was handed to processing.
    pub fn start(
        &mut self,
        partition: i32,
        offset: i64,
        camera: &str,
        keyframe: bool,
        now: Instant,
    ) {
        let p = self.partitions.entry(partition).or_default();
        p.in_flight.insert(offset);
        if keyframe {
            p.gops.insert(camera.to_owned(), (offset, now));
        } else if let Some(g) = p.gops.get_mut(camera) {
            g.1 = now;
        }
    }

    /// Records that `offset` is finished; returns the partition's new commit point (the
    /// next offset to read) if it moved forward.
    pub fn finish(&mut self, partition: i32, offset: i64, now: Instant) -> Option<i64> {
        let idle = self.idle_release;
        let p = self.partitions.get_mut(&partition)?;
        if !p.in_flight.remove(&offset) {
            return None;
        }
        p.next_after_done = Some(p.next_after_done.map_or(offset + 1, |n| n.max(offset + 1)));
        p.advance(now, idle)
    }

    /// Releases idle cameras; returns the partitions whose commit point moved.
    pub fn release_idle(&mut self, now: Instant) -> Vec<(i32, i64)> {
        let idle = self.idle_release;
        self.partitions
            .iter_mut()
            .filter_map(|(&id, p)| p.advance(now, idle).map(|o| (id, o)))
            .collect()
    }

    /// Forgets a partition (after it was revoked).
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Offsets still in flight, all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }
}

impl Partition {
    fn advance(&mut self, now: Instant, idle: Duration) -> Option<i64> {
        self.gops
            .retain(|_, (_, seen)| now.duration_since(*seen) < idle);
        let mut point = self.next_after_done?;
        if let Some(&lowest) = self.in_flight.first() {
            point = point.min(lowest);
        }
        if let Some(gop) = self.gops.values().map(|&(start, _)| start).min() {
            point = point.min(gop);
        }
        if self.stored.is_some_and(|s| point <= s) {
            return None;
        }
        self.stored = Some(point);
        Some(point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(10);

    #[test]
    fn the_commit_point_stays_at_the_start_of_each_cameras_gop() {
        let t0 = Instant::now();
        let mut t = OffsetTracker::new(IDLE);
        // Camera a: keyframe at 10, then 12; camera b: keyframe at 11, then 13.
        t.start(0, 10, "a", true, t0);
        t.start(0, 11, "b", true, t0);
        t.start(0, 12, "a", false, t0);
        t.start(0, 13, "b", false, t0);
        assert_eq!(t.finish(0, 11, t0), Some(10), "10 is in flight");
        assert_eq!(t.finish(0, 10, t0), None, "a's GOP starts at 10");
        assert_eq!(t.finish(0, 12, t0), None);
        assert_eq!(t.finish(0, 13, t0), None, "still inside a's GOP");
        // a's next keyframe at 14 moves the point to b's GOP start, 11.
        t.start(0, 14, "a", true, t0);
        assert_eq!(t.finish(0, 14, t0), Some(11));
        // b's next keyframe at 15: everything before 14 (a's GOP) is safe.
        t.start(0, 15, "b", true, t0);
        assert_eq!(t.finish(0, 15, t0), Some(14));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_silent_camera_is_released() {
        let t0 = Instant::now();
        let mut t = OffsetTracker::new(IDLE);
        t.start(0, 1, "gone", true, t0);
        t.start(0, 2, "live", true, t0);
        assert_eq!(t.finish(0, 1, t0), Some(1));
        assert_eq!(t.finish(0, 2, t0), None);
        let later = t0 + Duration::from_secs(5);
        for o in 3..8 {
            t.start(0, o, "live", o % 4 == 0, later);
            t.finish(0, o, later);
        }
        assert!(t.release_idle(later).is_empty(), "'gone' is not idle yet");
        let much_later = t0 + Duration::from_secs(11);
        assert_eq!(
            t.release_idle(much_later),
            vec![(0, 4)],
            "'gone' released; 'live' GOP starts at 4"
        );
        // 'gone' comes back mid-GOP: it does not pull the commit point back.
        t.start(0, 8, "gone", false, much_later);
        assert_eq!(t.finish(0, 8, much_later), None);
    }

    #[test]
    fn partitions_are_independent() {
        let t0 = Instant::now();
        let mut t = OffsetTracker::new(IDLE);
        t.start(0, 5, "a", true, t0);
        t.start(1, 7, "b", true, t0);
        assert_eq!(t.finish(1, 7, t0), Some(7));
        assert_eq!(t.finish(0, 4, t0), None, "unknown offset");
        t.forget(0);
        assert_eq!(t.finish(0, 5, t0), None);
    }
}

//! Which offset of each partition may be committed.
//!
//! Records of one partition finish out of order (cameras decode on different threads),
//! so a partition's commit point is the lowest offset still in flight, or one past the
//! highest finished offset when nothing is in flight. Committing that never skips
//! unfinished work: at-least-once.

use std::collections::{BTreeSet, HashMap};

/// In-flight offsets per partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    next_after_done: Option<i64>,
}

impl OffsetTracker {
    /// Records that `offset` of `partition` was handed to processing.
    pub fn start(&mut self, partition: i32, offset: i64) {
        self.partitions
            .entry(partition)
            .or_default()
            .in_flight
            .insert(offset);
    }

    /// Records that `offset` is finished; returns the partition's new commit point
    /// (the next offset to read) if it moved.
    pub fn finish(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        let before = p.commit_point();
        if !p.in_flight.remove(&offset) {
            return None;
        }
        p.next_after_done = Some(p.next_after_done.map_or(offset + 1, |n| n.max(offset + 1)));
        let after = p.commit_point();
        (after != before).then_some(after).flatten()
    }

    /// Offsets still in flight, all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }
}

impl Partition {
    fn commit_point(&self) -> Option<i64> {
        match self.in_flight.first() {
            Some(&lowest) => self.next_after_done.map(|n| n.min(lowest)),
            None => self.next_after_done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_point_waits_for_the_lowest_in_flight() {
        let mut t = OffsetTracker::default();
        for o in 10..14 {
            t.start(0, o);
        }
        assert_eq!(t.finish(0, 11), Some(10), "10 still in flight");
        assert_eq!(t.finish(0, 12), None, "commit point unchanged");
        assert_eq!(t.finish(0, 10), Some(13));
        assert_eq!(t.finish(0, 13), Some(14));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::default();
        t.start(0, 5);
        t.start(1, 7);
        assert_eq!(t.finish(1, 7), Some(8));
        assert_eq!(t.finish(0, 4), None, "unknown offset");
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.finish(0, 5), Some(6));
    }
}

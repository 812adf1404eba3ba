//! Backpressure per partition instead of for the whole consumer.
//!
//! Each decoder thread has a bounded queue. When a record's thread queue is full, waiting
//! for room would stop consumption for every other thread too (head-of-line blocking:
//! on a backlog, Kafka hands over long runs of one partition, so one busy thread would
//! leave the others idle). Instead the record is parked here and its partition paused;
//! the consumer keeps feeding the other threads, and the partition resumes once all its
//! parked records have reached their threads. librdkafka drops what it had prefetched
//! for a paused partition and fetches again from the last record it delivered, so
//! nothing is lost or read twice, and one camera's records (one partition) stay in order.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// Records waiting for room in their decoder thread's queue, per thread.
#[derive(Debug)]
pub struct Parking<J> {
    /// Per thread, in arrival order: (partition, record).
    waiting: Vec<VecDeque<(i32, J)>>,
    /// Parked records per partition.
    per_partition: HashMap<i32, usize>,
    /// Partitions paused because of parked records.
    paused: BTreeSet<i32>,
}

impl<J> Parking<J> {
    /// Empty parking for `threads` decoder threads.
    pub fn new(threads: usize) -> Self {
        Parking {
            waiting: (0..threads).map(|_| VecDeque::new()).collect(),
            per_partition: HashMap::new(),
            paused: BTreeSet::new(),
        }
    }

    /// True when a record of `partition` for `thread` must wait behind parked ones: its
    /// partition is paused (records of a camera keep their order) or its thread already
    /// has records waiting (those go first).
    pub fn must_wait(&self, thread: usize, partition: i32) -> bool {
        self.paused.contains(&partition) || !self.waiting[thread].is_empty()
    }

    /// Parks a record for `thread`. Returns the partition when it must be paused now.
    pub fn park(&mut self, thread: usize, partition: i32, job: J) -> Option<i32> {
        self.waiting[thread].push_back((partition, job));
        *self.per_partition.entry(partition).or_default() += 1;
        self.paused.insert(partition).then_some(partition)
    }

    /// Threads with parked records.
    pub fn threads_waiting(&self) -> Vec<usize> {
        (0..self.waiting.len())
            .filter(|&t| !self.waiting[t].is_empty())
            .collect()
    }

    /// Takes `thread`'s oldest parked record.
    pub fn take(&mut self, thread: usize) -> Option<J> {
        let (partition, job) = self.waiting[thread].pop_front()?;
        if let Some(n) = self.per_partition.get_mut(&partition) {
            *n -= 1;
            if *n == 0 {
                self.per_partition.remove(&partition);
            }
        }
        Some(job)
    }

    /// Puts back a record [`take`](Self::take) returned (its thread had no room after all).
    pub fn put_back(&mut self, thread: usize, partition: i32, job: J) {
        self.waiting[thread].push_front((partition, job));
        *self.per_partition.entry(partition).or_default() += 1;
    }

    /// Paused partitions with no parked record left: resume them.
    pub fn resumable(&mut self) -> Vec<i32> {
        let done: Vec<i32> = self
            .paused
            .iter()
            .copied()
            .filter(|p| !self.per_partition.contains_key(p))
            .collect();
        for p in &done {
            self.paused.remove(p);
        }
        done
    }

    /// Partitions taken away: their parked records are dropped (the next owner reads them
    /// from the committed offset). Returns the revoked partitions that were paused.
    pub fn revoke(&mut self, partitions: &[i32]) -> Vec<i32> {
        for queue in &mut self.waiting {
            queue.retain(|(p, _)| !partitions.contains(p));
        }
        let mut was_paused = Vec::new();
        for p in partitions {
            self.per_partition.remove(p);
            if self.paused.remove(p) {
                was_paused.push(*p);
            }
        }
        was_paused
    }

    /// Partitions paused now.
    pub fn paused(&self) -> usize {
        self.paused.len()
    }

    /// Records parked now.
    #[cfg(test)]
    pub fn parked(&self) -> usize {
        self.waiting.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_thread_pauses_only_the_partitions_that_feed_it() {
        let mut p: Parking<&str> = Parking::new(2);
        assert!(!p.must_wait(0, 1));
        assert_eq!(p.park(0, 1, "a1"), Some(1), "first park pauses");
        assert_eq!(p.park(0, 1, "a2"), None, "already paused");
        // Thread 1 is free: partition 2 feeding it goes on.
        assert!(!p.must_wait(1, 2));
        // Another partition for the busy thread waits behind what is parked there.
        assert!(p.must_wait(0, 3));
        assert_eq!(p.park(0, 3, "c1"), Some(3));
        assert_eq!((p.paused(), p.parked()), (2, 3));
        assert_eq!(p.threads_waiting(), [0]);

        assert_eq!(p.take(0), Some("a1"));
        assert!(p.resumable().is_empty(), "a2 still parked");
        assert_eq!(p.take(0), Some("a2"));
        assert_eq!(p.resumable(), [1]);
        assert!(p.must_wait(0, 1), "thread 0 still has c1 first");
        assert_eq!(p.take(0), Some("c1"));
        assert_eq!(p.resumable(), [3]);
        assert!(!p.must_wait(0, 1) && !p.must_wait(0, 3));
        assert!(p.threads_waiting().is_empty());
        assert_eq!(p.take(0), None);
    }

    #[test]
    fn a_record_put_back_keeps_its_place_and_its_partition_paused() {
        let mut p: Parking<u32> = Parking::new(1);
        p.park(0, 5, 1);
        p.park(0, 5, 2);
        let first = p.take(0).expect("parked");
        p.put_back(0, 5, first);
        assert!(p.resumable().is_empty());
        assert_eq!((p.take(0), p.take(0)), (Some(1), Some(2)));
        assert_eq!(p.resumable(), [5]);
    }

    #[test]
    fn revoked_partitions_lose_their_parked_records() {
        let mut p: Parking<u32> = Parking::new(2);
        p.park(0, 1, 10);
        p.park(0, 2, 20);
        p.park(1, 1, 11);
        assert_eq!(p.revoke(&[1, 7]), [1], "only partition 1 was paused");
        assert_eq!(p.parked(), 1);
        assert_eq!(p.take(1), None);
        assert_eq!(p.take(0), Some(20));
        assert_eq!(p.resumable(), [2]);
        assert_eq!(p.paused(), 0);
    }
}

//! Backpressure per decoder thread instead of for the whole consumer.
//!
//! Each decoder thread has a short bounded queue. When a record's thread queue is full,
//! waiting for room would stop consumption for every other thread too (head-of-line
//! blocking: on a backlog librdkafka hands over long runs of one partition, so one busy
//! thread would leave the others idle). Instead the record is parked here, in order, and
//! the consumer goes on feeding the other threads. Parked bytes are bounded per thread:
//! above the limit the partitions feeding that thread are paused, and they resume once
//! the thread's parked bytes are down to half the limit. The limit is set to hold well
//! over a second of decoding, because librdkafka looks at paused partitions again only
//! about once a second (measured: a resumed partition's next fetch starts up to 1 s
//! later). On a pause librdkafka drops what it had prefetched for the partition and, on
//! resume, fetches again from the next record it had not delivered, so nothing is lost
//! or read twice, and one camera's records (one partition) stay in order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Records waiting for room in their decoder thread's queue, per thread.
#[derive(Debug)]
pub struct Parking<J> {
    /// Per thread, in arrival order: (partition, bytes, record).
    waiting: Vec<VecDeque<(i32, usize, J)>>,
    /// Parked bytes per thread.
    bytes: Vec<usize>,
    /// Parked bytes per thread above which the partitions feeding it pause.
    limit: usize,
    /// Paused partitions, each with the threads it waits for.
    paused: BTreeMap<i32, BTreeSet<usize>>,
}

impl<J> Parking<J> {
    /// Empty parking for `threads` decoder threads, pausing above `limit` bytes per thread.
    pub fn new(threads: usize, limit: usize) -> Self {
        Parking {
            waiting: (0..threads).map(|_| VecDeque::new()).collect(),
            bytes: vec![0; threads],
            limit,
            paused: BTreeMap::new(),
        }
    }

    /// True when a record of `partition` for `thread` must wait behind parked ones: its
    /// partition is paused (records of a camera keep their order) or its thread already
    /// has records waiting (those go first).
    pub fn must_wait(&self, thread: usize, partition: i32) -> bool {
        self.paused.contains_key(&partition) || !self.waiting[thread].is_empty()
    }

    /// Parks a record of `bytes` for `thread`. Returns the partition when it must be
    /// paused now: the thread is over its limit and the partition was not paused yet (a
    /// record of an already paused partition only adds this thread to what it waits for).
    pub fn park(&mut self, thread: usize, partition: i32, bytes: usize, job: J) -> Option<i32> {
        self.waiting[thread].push_back((partition, bytes, job));
        self.bytes[thread] += bytes;
        let over = self.bytes[thread] > self.limit;
        match self.paused.get_mut(&partition) {
            Some(threads) => {
                // Delivered before the pause took effect: it waits for this thread too.
                threads.insert(thread);
                None
            }
            None if over => {
                self.paused.insert(partition, BTreeSet::from([thread]));
                Some(partition)
            }
            None => None,
        }
    }

    /// Threads with parked records (to wait for a free slot on).
    pub fn waiting_threads(&self) -> Vec<usize> {
        (0..self.waiting.len())
            .filter(|&t| !self.waiting[t].is_empty())
            .collect()
    }

    /// Whether `thread` has a parked record of a partition `ready` accepts.
    pub fn has_ready(&self, thread: usize, ready: impl Fn(i32) -> bool) -> bool {
        self.waiting[thread].iter().any(|(p, _, _)| ready(*p))
    }

    /// Takes `thread`'s oldest parked record of a partition `ready` accepts, passing over
    /// the records of partitions held back for another reason (each partition's records
    /// still come out in order: all of a partition's are passed over, or none).
    pub fn take_ready(&mut self, thread: usize, ready: impl Fn(i32) -> bool) -> Option<J> {
        let i = self.waiting[thread]
            .iter()
            .position(|(p, _, _)| ready(*p))?;
        let (_, bytes, job) = self.waiting[thread].remove(i)?;
        self.bytes[thread] -= bytes;
        Some(job)
    }

    /// Takes `thread`'s oldest parked record.
    pub fn take(&mut self, thread: usize) -> Option<J> {
        let (_, bytes, job) = self.waiting[thread].pop_front()?;
        self.bytes[thread] -= bytes;
        Some(job)
    }

    /// Puts back a record [`take`](Self::take) or [`take_ready`](Self::take_ready) returned
    /// (its thread had no room after all), ahead of the rest.
    pub fn put_back(&mut self, thread: usize, partition: i32, bytes: usize, job: J) {
        self.waiting[thread].push_front((partition, bytes, job));
        self.bytes[thread] += bytes;
    }

    /// Partitions that may resume now that `thread` handed records over: once its parked
    /// bytes are down to half the limit it no longer holds any partition back, and a
    /// partition resumes when no thread does.
    pub fn resumable(&mut self, thread: usize) -> Vec<i32> {
        if self.bytes[thread] > self.limit / 2 {
            return Vec::new();
        }
        let mut resume = Vec::new();
        self.paused.retain(|&p, threads| {
            threads.remove(&thread);
            let done = threads.is_empty();
            if done {
                resume.push(p);
            }
            !done
        });
        resume
    }

    /// Partitions taken away: their parked records are dropped (the next owner reads them
    /// from the committed offset). Returns the partitions to resume: the revoked ones that
    /// were paused, and those that waited only for threads the dropped records relieved
    /// (a thread left with nothing parked is never woken again to release them).
    pub fn revoke(&mut self, partitions: &[i32]) -> Vec<i32> {
        for (queue, bytes) in self.waiting.iter_mut().zip(&mut self.bytes) {
            queue.retain(|(p, b, _)| {
                let keep = !partitions.contains(p);
                if !keep {
                    *bytes -= b;
                }
                keep
            });
        }
        let mut resume = Vec::new();
        for p in partitions {
            if self.paused.remove(p).is_some() {
                resume.push(*p);
            }
        }
        for thread in 0..self.waiting.len() {
            resume.extend(self.resumable(thread));
        }
        resume
    }

    /// Whether `partition` is paused for records parked here.
    pub fn holds(&self, partition: i32) -> bool {
        self.paused.contains_key(&partition)
    }

    /// Partitions paused now.
    pub fn paused(&self) -> usize {
        self.paused.len()
    }

    /// Records parked now.
    pub fn parked(&self) -> usize {
        self.waiting.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_wait_behind_their_thread_and_only_an_overfull_thread_pauses() {
        let mut p: Parking<&str> = Parking::new(2, 100);
        assert!(!p.must_wait(0, 1));
        assert_eq!(
            p.park(0, 1, 40, "a1"),
            None,
            "under the limit: parked, not paused"
        );
        // Thread 1 is free: partition 2 feeding it goes on.
        assert!(!p.must_wait(1, 2));
        // Another partition for the busy thread waits behind what is parked there.
        assert!(p.must_wait(0, 3));
        assert_eq!(p.park(0, 3, 40, "c1"), None);
        assert_eq!(p.park(0, 1, 40, "a2"), Some(1), "over 100 bytes: pause");
        assert_eq!(p.park(0, 3, 40, "c2"), Some(3));
        assert_eq!((p.paused(), p.parked()), (2, 4));
        assert_eq!(p.waiting_threads(), [0]);

        assert_eq!(p.take(0), Some("a1"));
        assert!(
            p.resumable(0).is_empty(),
            "120 bytes parked, above half the limit"
        );
        assert_eq!(p.take(0), Some("c1"));
        assert!(p.resumable(0).is_empty(), "80 bytes, still above half");
        assert_eq!(p.take(0), Some("a2"));
        assert_eq!(p.resumable(0), [1, 3], "40 bytes: both resume");
        assert!(p.must_wait(0, 1), "still behind thread 0's parked record");
        assert_eq!((p.take(0), p.take(0)), (Some("c2"), None));
        assert!(!p.must_wait(0, 1) && !p.must_wait(1, 3));
        assert!(p.waiting_threads().is_empty());
    }

    #[test]
    fn a_partition_paused_for_one_thread_waits_for_every_thread_it_parked_on() {
        let mut p: Parking<u32> = Parking::new(2, 10);
        assert_eq!(p.park(0, 4, 20, 1), Some(4));
        // A record of the paused partition that was delivered before the pause took effect.
        assert!(p.must_wait(1, 4));
        assert_eq!(p.park(1, 4, 3, 2), None, "already paused");
        assert_eq!(p.take(0), Some(1));
        assert!(
            p.resumable(0).is_empty(),
            "thread 1 still holds one of its records"
        );
        assert_eq!(p.take(1), Some(2));
        assert_eq!(p.resumable(1), [4]);
        assert_eq!(p.paused(), 0);
    }

    #[test]
    fn a_record_put_back_keeps_its_place_and_its_partition_paused() {
        let mut p: Parking<u32> = Parking::new(1, 10);
        p.park(0, 5, 8, 1);
        assert_eq!(p.park(0, 5, 8, 2), Some(5));
        let first = p.take(0).expect("parked");
        p.put_back(0, 5, 8, first);
        assert!(p.resumable(0).is_empty());
        assert_eq!((p.take(0), p.take(0)), (Some(1), Some(2)));
        assert_eq!(p.resumable(0), [5]);
    }

    #[test]
    fn records_of_a_held_partition_are_passed_over_in_order() {
        let mut p = Parking::new(1, 1000);
        for (partition, job) in [(1, "a1"), (2, "b1"), (1, "a2"), (2, "b2")] {
            p.park(0, partition, 10, job);
        }
        let not_1 = |partition: i32| partition != 1;
        assert!(p.has_ready(0, not_1));
        assert_eq!(p.take_ready(0, not_1), Some("b1"));
        assert_eq!(p.take_ready(0, not_1), Some("b2"));
        assert!(!p.has_ready(0, not_1));
        assert_eq!(p.take_ready(0, not_1), None);
        assert_eq!(p.take(0), Some("a1"));
        assert_eq!(p.take(0), Some("a2"));
        assert_eq!(p.parked(), 0);
    }

    #[test]
    fn revoked_partitions_lose_their_parked_records() {
        let mut p: Parking<u32> = Parking::new(2, 10);
        p.park(0, 1, 6, 10);
        assert_eq!(p.park(0, 2, 6, 20), Some(2));
        p.park(1, 1, 6, 11);
        assert_eq!(p.revoke(&[1, 2, 7]), [2], "only partition 2 was paused");
        assert_eq!(p.parked(), 0);
        assert!(p.waiting_threads().is_empty());
        assert!(!p.must_wait(0, 2), "its bytes are gone with it");
        assert_eq!(p.park(0, 3, 10, 30), None, "10 bytes are within the limit");
    }

    #[test]
    fn a_partition_held_back_by_revoked_records_resumes_with_the_revocation() {
        let mut p: Parking<u32> = Parking::new(1, 10);
        assert_eq!(p.park(0, 1, 8, 10), None);
        assert_eq!(p.park(0, 1, 8, 11), Some(1), "16 bytes: pause 1");
        assert_eq!(p.park(0, 2, 8, 20), Some(2), "24 bytes: pause 2");
        assert_eq!((p.take(0), p.take(0)), (Some(10), Some(11)));
        // Partition 1's records are all handed over, but partition 2's 8 bytes keep the
        // thread above half the limit, so 1 stays paused…
        assert!(p.resumable(0).is_empty());
        // …until 2 is revoked: nothing is parked any more, so no slot wake-up would come.
        assert_eq!(p.revoke(&[2]), [2, 1]);
        assert_eq!(p.paused(), 0);
        assert!(!p.must_wait(0, 1));
    }
}

//! What the worker commits for each partition of the frames topic: where processing
//! really is, and where a new owner must resume.
//!
//! Two offsets, because they answer two questions:
//! - **The committed offset** is the partition's *progress*: every record before it is
//!   done (its statistics delivered, its dead letter written, or known to produce
//!   nothing). Records finish out of order (cameras decode on different threads), so it
//!   is the lowest offset still in flight, or one past the last record read when nothing
//!   is. This is what KEDA, `kafka-consumer-groups.sh` and every lag exporter compare with
//!   the end of the partition: while workers keep up, the committed lag is about one
//!   commit interval of records.
//! - **The resume offset**, carried in the commit's metadata (`fw:resume=<offset>`), is
//!   where a new owner must start reading so that every camera on the partition starts at
//!   a keyframe: the start of the GOP of each camera's oldest unfinished frame, or of its
//!   current GOP when nothing of it is in flight (its next frames depend on that GOP's
//!   keyframe). A new owner seeks there and *replays* the records before the committed
//!   offset: it decodes them to rebuild each camera's decoder state and publishes nothing
//!   for them (an earlier owner did). It never skips a frame and never decodes one without
//!   its reference.
//!
//! A camera that sends nothing for `idle_release` and has nothing in flight is forgotten,
//! so a camera that went away never holds the resume offset back (its session ended:
//! ingest starts the next one at a keyframe). Commits never go below the offset the
//! partition was assigned at.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Prefix of the resume offset in a commit's metadata.
const RESUME_PREFIX: &str = "fw:resume=";

/// A partition's commit: progress, and where a new owner resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The offset to commit: every record before it is done.
    pub offset: i64,
    /// Where a new owner starts reading (≤ `offset`); records in between are replayed.
    pub resume: i64,
}

impl Position {
    /// The commit metadata: the resume offset when it is before the committed offset,
    /// else empty.
    pub fn metadata(&self) -> String {
        if self.resume < self.offset {
            format!("{RESUME_PREFIX}{}", self.resume)
        } else {
            String::new()
        }
    }
}

/// The resume offset in a commit's metadata, when it holds one that is before `committed`
/// and not negative.
pub fn resume_from_metadata(metadata: &str, committed: i64) -> Option<i64> {
    let resume: i64 = metadata.strip_prefix(RESUME_PREFIX)?.parse().ok()?;
    (0..committed).contains(&resume).then_some(resume)
}

/// Progress of every partition this worker owns.
#[derive(Debug)]
pub struct CommitTracker {
    partitions: HashMap<i32, Progress>,
    idle_release: Duration,
}

#[derive(Debug, Default)]
struct Progress {
    /// The committed offset when the partition was assigned: never commit below it.
    floor: Option<i64>,
    /// Records below this were done by an earlier owner: replay them.
    replay_until: Option<i64>,
    /// Records read and not finished, with their camera (`None`: no readable camera).
    in_flight: BTreeMap<i64, Option<String>>,
    /// One past the last record read (or the offset reading starts at).
    next: Option<i64>,
    /// Open GOPs per camera.
    cameras: HashMap<String, Gops>,
    /// The last position handed out to be committed.
    committed: Option<Position>,
}

/// One camera's GOPs on a partition that still matter: those with unfinished frames,
/// and always the current (last) one.
#[derive(Debug)]
struct Gops {
    gops: VecDeque<Gop>,
    last_seen: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Gop {
    /// Offset of its keyframe (or of the camera's first record, when that was no keyframe).
    start: i64,
    /// Its records in flight.
    open: u32,
}

impl Gops {
    /// Drops finished GOPs at the front; the current GOP always stays.
    fn trim(&mut self) {
        while self.gops.len() > 1 && self.gops.front().is_some_and(|g| g.open == 0) {
            self.gops.pop_front();
        }
    }

    fn open(&self) -> bool {
        self.gops.iter().any(|g| g.open > 0)
    }
}

impl Progress {
    fn position(&self) -> Option<Position> {
        let done = self.in_flight.keys().next().copied().or(self.next);
        let Some(done) = done else {
            return self.floor.map(|c| Position {
                offset: c,
                resume: c,
            });
        };
        let offset = self.floor.map_or(done, |f| f.max(done));
        let gop_start = self
            .cameras
            .values()
            .filter_map(|c| c.gops.front().map(|g| g.start))
            .min();
        let resume = gop_start.map_or(done, |g| g.min(done)).min(offset);
        Some(Position { offset, resume })
    }
}

impl CommitTracker {
    /// A tracker that forgets cameras silent for `idle_release`.
    pub fn new(idle_release: Duration) -> Self {
        CommitTracker {
            partitions: HashMap::new(),
            idle_release,
        }
    }

    /// A partition was assigned. `committed` is the group's committed offset (if any);
    /// `start` the offset reading starts at (the resume offset when replaying, else the
    /// committed offset; `None` when librdkafka decides by `auto.offset.reset`).
    pub fn assign(&mut self, partition: i32, committed: Option<i64>, start: Option<i64>) {
        let replay_until = committed.zip(start).and_then(|(c, s)| (s < c).then_some(c));
        self.partitions.insert(
            partition,
            Progress {
                floor: committed,
                replay_until,
                next: start.or(committed),
                ..Progress::default()
            },
        );
    }

    /// Whether the record at `offset` was done by an earlier owner (decode it to rebuild
    /// the camera's state, publish nothing).
    pub fn is_replay(&self, partition: i32, offset: i64) -> bool {
        self.partitions
            .get(&partition)
            .and_then(|p| p.replay_until)
            .is_some_and(|until| offset < until)
    }

    /// A record was read and handed to processing. `camera` is `None` when the record
    /// has no readable camera id.
    pub fn start(
        &mut self,
        partition: i32,
        offset: i64,
        camera: Option<&str>,
        keyframe: bool,
        now: Instant,
    ) {
        let p = self.partitions.entry(partition).or_default();
        p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
        p.in_flight.insert(offset, camera.map(str::to_owned));
        let Some(camera) = camera else { return };
        let gops = match p.cameras.get_mut(camera) {
            Some(g) => g,
            None => p.cameras.entry(camera.to_owned()).or_insert(Gops {
                gops: VecDeque::new(),
                last_seen: now,
            }),
        };
        gops.last_seen = now;
        if keyframe || gops.gops.is_empty() {
            gops.gops.push_back(Gop {
                start: offset,
                open: 0,
            });
        }
        if let Some(current) = gops.gops.back_mut() {
            current.open += 1;
        }
        gops.trim();
    }

    /// The record at `offset` is done. Unknown offsets (a revoked partition's, or one
    /// finished twice) are ignored.
    pub fn finish(&mut self, partition: i32, offset: i64) {
        let Some(p) = self.partitions.get_mut(&partition) else {
            return;
        };
        let Some(camera) = p.in_flight.remove(&offset) else {
            return;
        };
        let Some(gops) = camera.and_then(|c| p.cameras.get_mut(&c)) else {
            return;
        };
        // The GOP a record belongs to is the last one that started at or before it.
        if let Some(gop) = gops.gops.iter_mut().rev().find(|g| g.start <= offset) {
            gop.open = gop.open.saturating_sub(1);
        }
        gops.trim();
    }

    /// Forgets cameras silent for `idle_release` with nothing in flight.
    pub fn release_idle(&mut self, now: Instant) {
        let idle = self.idle_release;
        for p in self.partitions.values_mut() {
            p.cameras
                .retain(|_, g| g.open() || now.duration_since(g.last_seen) < idle);
        }
    }

    /// A partition's position now.
    #[cfg(test)]
    pub fn position(&self, partition: i32) -> Option<Position> {
        self.partitions.get(&partition)?.position()
    }

    /// The partitions whose position changed since it was last handed out, with the new
    /// position (now marked as handed out).
    pub fn take_due(&mut self) -> Vec<(i32, Position)> {
        let mut out = Vec::new();
        for (&id, p) in &mut self.partitions {
            if let Some(pos) = p.position()
                && p.committed != Some(pos)
            {
                p.committed = Some(pos);
                out.push((id, pos));
            }
        }
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// A commit of `partition` failed: hand its position out again next time.
    pub fn commit_failed(&mut self, partition: i32) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.committed = None;
        }
    }

    /// Forgets a partition (revoked); returns its final position.
    pub fn forget(&mut self, partition: i32) -> Option<Position> {
        self.partitions.remove(&partition)?.position()
    }

    /// Records in flight, all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(15);

    fn pos(offset: i64, resume: i64) -> Option<Position> {
        Some(Position { offset, resume })
    }

    #[test]
    fn progress_is_committed_and_the_gop_start_travels_as_metadata() {
        let t0 = Instant::now();
        let mut t = CommitTracker::new(IDLE);
        t.assign(0, Some(10), Some(10));
        // Camera a: keyframe at 10, then 12; camera b: keyframe at 11, then 13.
        t.start(0, 10, Some("a"), true, t0);
        t.start(0, 11, Some("b"), true, t0);
        t.start(0, 12, Some("a"), false, t0);
        t.start(0, 13, Some("b"), false, t0);
        t.finish(0, 11);
        assert_eq!(t.position(0), pos(10, 10), "10 is in flight");
        for o in [10, 12, 13] {
            t.finish(0, o);
        }
        // Everything is done: the committed offset is the end, the resume offset the
        // oldest current GOP.
        assert_eq!(t.position(0), pos(14, 10));
        assert_eq!(
            t.position(0).map(|p| p.metadata()),
            Some("fw:resume=10".into())
        );
        t.start(0, 14, Some("a"), true, t0);
        t.finish(0, 14);
        assert_eq!(
            t.position(0),
            pos(15, 11),
            "a's GOP now starts at 14, b's at 11"
        );
        t.start(0, 15, Some("b"), true, t0);
        t.finish(0, 15);
        assert_eq!(t.position(0), pos(16, 14));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_new_keyframe_read_does_not_release_the_unfinished_gop_before_it() {
        // The takeover bug: start(10, a, key), start(11, a), start(12, a, key), finish(10)
        // must resume at 10 (11, inside a's first GOP, is not done), not at 11.
        let t0 = Instant::now();
        let mut t = CommitTracker::new(IDLE);
        t.assign(0, None, Some(10));
        t.start(0, 10, Some("a"), true, t0);
        t.start(0, 11, Some("a"), false, t0);
        t.start(0, 12, Some("a"), true, t0);
        t.finish(0, 10);
        assert_eq!(t.position(0), pos(11, 10));
        t.finish(0, 12);
        assert_eq!(t.position(0), pos(11, 10), "12 is done but 11 is not");
        t.finish(0, 11);
        assert_eq!(t.position(0), pos(13, 12));
    }

    #[test]
    fn a_silent_camera_is_released_once_nothing_of_it_is_in_flight() {
        let t0 = Instant::now();
        let mut t = CommitTracker::new(IDLE);
        t.assign(0, None, Some(1));
        t.start(0, 1, Some("gone"), true, t0);
        t.finish(0, 1);
        let later = t0 + Duration::from_secs(10);
        for o in 2..8 {
            t.start(0, o, Some("live"), o % 4 == 0, later);
            t.finish(0, o);
        }
        t.release_idle(later);
        assert_eq!(t.position(0), pos(8, 1), "'gone' is not idle yet");
        let much_later = t0 + Duration::from_secs(16);
        t.release_idle(much_later);
        assert_eq!(
            t.position(0),
            pos(8, 4),
            "'gone' released; 'live' GOP starts at 4"
        );
    }

    #[test]
    fn a_replaying_owner_never_commits_below_its_assignment() {
        let t0 = Instant::now();
        let mut t = CommitTracker::new(IDLE);
        // Committed 20 with resume 15: the new owner seeks to 15 and replays 15..20.
        t.assign(3, Some(20), Some(15));
        assert_eq!(t.position(3), pos(20, 15));
        assert!(t.is_replay(3, 19) && !t.is_replay(3, 20) && !t.is_replay(2, 1));
        t.start(3, 15, Some("a"), true, t0);
        assert_eq!(t.position(3), pos(20, 15));
        t.finish(3, 15);
        t.start(3, 16, Some("a"), false, t0);
        assert_eq!(t.position(3), pos(20, 15));
        assert_eq!(
            t.take_due(),
            vec![(
                3,
                Position {
                    offset: 20,
                    resume: 15
                }
            )]
        );
        assert!(t.take_due().is_empty(), "nothing changed");
        t.finish(3, 16);
        for o in 17..25 {
            t.start(3, o, Some("a"), false, t0);
            t.finish(3, o);
        }
        assert_eq!(
            t.take_due(),
            vec![(
                3,
                Position {
                    offset: 25,
                    resume: 15
                }
            )]
        );
        t.commit_failed(3);
        assert_eq!(t.take_due().len(), 1, "a failed commit is handed out again");
        assert_eq!(t.forget(3), pos(25, 15));
        t.finish(3, 30);
        assert_eq!(t.position(3), None);
    }

    #[test]
    fn records_without_a_camera_hold_progress_until_done() {
        let t0 = Instant::now();
        let mut t = CommitTracker::new(IDLE);
        t.assign(1, None, None);
        assert_eq!(t.position(1), None, "nothing known yet");
        t.start(1, 40, None, false, t0);
        t.start(1, 41, Some("a"), true, t0);
        t.finish(1, 41);
        assert_eq!(t.position(1), pos(40, 40));
        t.finish(1, 40);
        assert_eq!(t.position(1), pos(42, 41));
    }

    #[test]
    fn metadata_round_trips_and_junk_is_ignored() {
        let p = Position {
            offset: 100,
            resume: 42,
        };
        assert_eq!(resume_from_metadata(&p.metadata(), 100), Some(42));
        let same = Position {
            offset: 7,
            resume: 7,
        };
        assert_eq!(same.metadata(), "");
        for junk in ["", "fw:resume=", "fw:resume=x", "resume=3", "fw:resume=-1"] {
            assert_eq!(resume_from_metadata(junk, 100), None, "{junk:?}");
        }
        assert_eq!(
            resume_from_metadata("fw:resume=100", 100),
            None,
            "not before"
        );
    }
}

/// A model of the commit logic checked against random schedules: cameras sending GOPs
/// on one partition, records finishing in any order, and a takeover at a random moment.
#[cfg(test)]
mod model {
    use super::*;
    use proptest::prelude::*;

    /// One record of the partition: its camera and whether it is a keyframe.
    #[derive(Debug, Clone)]
    struct Record {
        camera: usize,
        keyframe: bool,
    }

    fn schedule() -> impl Strategy<Value = (Vec<Record>, Vec<usize>, usize)> {
        // Up to 4 cameras; each camera's first record is a keyframe.
        (1usize..=4, 1usize..60)
            .prop_flat_map(|(cameras, len)| {
                (
                    proptest::collection::vec((0..cameras, proptest::bool::weighted(0.2)), len),
                    Just(len),
                )
            })
            .prop_flat_map(|(raw, len)| {
                let mut seen = [false; 4];
                let records: Vec<Record> = raw
                    .into_iter()
                    .map(|(camera, key)| {
                        let keyframe = key || !seen[camera];
                        seen[camera] = true;
                        Record { camera, keyframe }
                    })
                    .collect();
                // Read up to `read` records, finish a random subset in a random order.
                (Just(records), Just(len))
            })
            .prop_flat_map(|(records, len)| {
                (
                    Just(records),
                    Just((0..len).collect::<Vec<_>>()).prop_shuffle(),
                    0..=len,
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// After any prefix of reads and any subset of finishes: the committed offset
        /// has only finished records before it, and a new owner resuming at the resume
        /// offset meets, for every record it must process (unfinished, or not read yet),
        /// that record's GOP keyframe first — it never skips a frame and never decodes
        /// one without its reference.
        #[test]
        fn a_takeover_at_any_moment_loses_nothing_and_decodes_everything(
            (records, finish_order, read) in schedule(),
            finished_count in 0usize..60,
        ) {
            let t0 = Instant::now();
            let mut t = CommitTracker::new(Duration::from_secs(3600));
            t.assign(0, None, Some(0));
            for (o, r) in records.iter().enumerate().take(read) {
                let cam = format!("c{}", r.camera);
                t.start(0, o as i64, Some(&cam), r.keyframe, t0);
            }
            let mut finished = vec![false; records.len()];
            for &o in finish_order.iter().filter(|&&o| o < read).take(finished_count) {
                t.finish(0, o as i64);
                finished[o] = true;
            }
            let Some(pos) = t.position(0) else {
                prop_assert_eq!(read, 0);
                return Ok(());
            };
            prop_assert!(pos.resume <= pos.offset);
            // Progress: everything before the committed offset is finished.
            for (o, &done) in finished.iter().enumerate().take(pos.offset as usize) {
                prop_assert!(done, "offset {} committed past unfinished {}", pos.offset, o);
            }
            prop_assert!(pos.offset as usize <= read);
            // Keyframe safety: every record the new owner must process (unfinished or
            // unread) has its GOP's keyframe at or after the resume offset.
            let gop_start = |o: usize| -> usize {
                (0..=o).rev().find(|&i| records[i].camera == records[o].camera && records[i].keyframe)
                    .expect("a camera's first record is a keyframe")
            };
            for (o, &done) in finished.iter().enumerate() {
                let must_process = o >= read || !done;
                if must_process {
                    prop_assert!(gop_start(o) as i64 >= pos.resume,
                        "record {} (GOP at {}) needs resume <= its keyframe, resume is {}", o, gop_start(o), pos.resume);
                }
            }
        }

        /// Commits only move forward while a partition is owned.
        #[test]
        fn committed_offsets_never_go_back(
            (records, finish_order, _read) in schedule(),
        ) {
            let t0 = Instant::now();
            let mut t = CommitTracker::new(Duration::from_secs(3600));
            t.assign(0, Some(0), Some(0));
            let mut last = 0;
            for (o, r) in records.iter().enumerate() {
                t.start(0, o as i64, Some(&format!("c{}", r.camera)), r.keyframe, t0);
            }
            for &o in &finish_order {
                t.finish(0, o as i64);
                let p = t.position(0).expect("position");
                prop_assert!(p.offset >= last);
                last = p.offset;
            }
            prop_assert_eq!(last, records.len() as i64);
        }
    }
}

//! The consumer's callbacks: where a partition's reading starts, and what happens to it
//! when it moves away.
//!
//! - **Assigned**: the group's committed offset and its metadata are fetched; when the
//!   metadata holds a resume offset before the committed one (see [`crate::commit`]),
//!   reading starts there and the records up to the committed offset are replayed, so
//!   every camera restarts at a keyframe.
//! - **Revoked**: the partition's final position is committed synchronously, before the
//!   partition is handed to its next owner (unless the assignment was *lost*: another
//!   member may own it already, and an old commit must not overwrite its progress). The
//!   consumer loop then drops the partition's parked records and decoders.
//!
//! librdkafka's statistics feed the lag gauge and the debug view.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::assignment::Assignment;
use crate::commit::{CommitTracker, Position, resume_from_metadata};
use crate::metrics::Metrics;

/// How long the assignment callback keeps trying to fetch the committed offsets of newly
/// assigned partitions (a group coordinator that moved after a broker failure answers
/// again within seconds).
const FETCH_FOR: Duration = Duration::from_secs(30);
/// Timeout of one attempt.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts.
const FETCH_PAUSE: Duration = Duration::from_millis(500);

/// What the callbacks took away since the consumer loop last looked.
#[derive(Debug, Default)]
pub struct Revoked {
    /// Partitions revoked (their parked records are dropped, pauses lifted).
    pub partitions: Vec<i32>,
    /// Their cameras (decoders flushed and dropped).
    pub cameras: Vec<String>,
}

/// State shared by the callbacks and the consumer loop.
#[derive(Clone)]
pub struct Shared {
    /// Progress per partition.
    pub commits: Arc<Mutex<CommitTracker>>,
    /// What was revoked, for the loop.
    pub revoked: Arc<Mutex<Revoked>>,
    /// Partitions and cameras, for `/debug/assignment`.
    pub assignment: Arc<Assignment>,
}

impl Shared {
    /// The commit tracker (a poisoned lock is taken over: the tracker stays consistent).
    pub fn commits(&self) -> MutexGuard<'_, CommitTracker> {
        self.commits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes what was revoked since the last call.
    pub fn take_revoked(&self) -> Revoked {
        std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The frames consumer's context.
pub struct WorkerContext {
    /// Shared with the loop.
    pub shared: Shared,
    /// Metrics.
    pub metrics: Metrics,
    /// The frames topic.
    pub topic: String,
}

/// A commit list for `positions`, each with its resume offset as metadata.
pub fn commit_list(topic: &str, positions: &[(i32, Position)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for &(partition, pos) in positions {
        let mut elem = tpl.add_partition(topic, partition);
        if elem.set_offset(Offset::Offset(pos.offset)).is_ok() {
            elem.set_metadata(pos.metadata());
        }
    }
    tpl
}

impl WorkerContext {
    fn assign(&self, base: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let committed = self.committed(base, tpl);
        let mut plan = Vec::new();
        for elem in tpl.elements() {
            let partition = elem.partition();
            let found = committed.as_ref().and_then(|c| {
                c.find_partition(&self.topic, partition)
                    .map(|e| match e.offset() {
                        Offset::Offset(o) => Some((o, resume_from_metadata(e.metadata(), o))),
                        _ => None,
                    })
            });
            plan.push((partition, found));
        }
        {
            let mut commits = self.shared.commits();
            for &(partition, found) in &plan {
                let from = match found {
                    None => {
                        commits.assign(partition, None, None);
                        "unknown"
                    }
                    Some(None) => {
                        commits.assign(partition, None, None);
                        "reset"
                    }
                    Some(Some((c, None))) => {
                        commits.assign(partition, Some(c), Some(c));
                        "committed"
                    }
                    Some(Some((c, Some(r)))) => {
                        commits.assign(partition, Some(c), Some(r));
                        let _ = tpl.set_partition_offset(&self.topic, partition, Offset::Offset(r));
                        tracing::info!(
                            partition,
                            committed = c,
                            resume = r,
                            "resuming before the committed offset to start every camera at a keyframe"
                        );
                        "resume_offset"
                    }
                };
                self.metrics.resumes.with_label_values(&[from]).inc();
            }
        }
        let assigned = match base.rebalance_protocol() {
            RebalanceProtocol::Cooperative => base.incremental_assign(tpl),
            _ => base.assign(tpl),
        };
        if let Err(e) = assigned {
            tracing::error!(error = %e, "cannot take the assigned partitions");
        }
        self.metrics.rebalances.with_label_values(&["assign"]).inc();
        self.shared.assignment.assign(plan.iter().map(|(p, _)| *p));
        self.count_assigned(base);
        tracing::info!(partitions = tpl.count(), "partitions assigned");
    }

    /// The group's committed offsets (with metadata) for `tpl`, tried for [`FETCH_FOR`]
    /// (a new owner that starts at the committed offset without replaying from the resume
    /// offset meets cameras mid-GOP); `None` when they cannot be read (librdkafka then
    /// starts at the committed offset itself, without the replay).
    fn committed(
        &self,
        base: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> Option<TopicPartitionList> {
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match base.committed_offsets(tpl.clone(), FETCH_TIMEOUT) {
                Ok(c) => {
                    if attempt > 1 {
                        tracing::info!(attempt, "committed offsets fetched");
                    }
                    return Some(c);
                }
                Err(e) if started.elapsed() < FETCH_FOR => {
                    tracing::warn!(attempt, error = %e, "cannot fetch the committed offsets of assigned partitions yet; retrying");
                    std::thread::sleep(FETCH_PAUSE);
                }
                Err(e) => {
                    tracing::error!(attempt, error = %e, "starting assigned partitions without their resume offsets: cameras mid-GOP there go to the DLQ as missing_reference until their next keyframe");
                    return None;
                }
            }
        }
    }

    fn revoke(&self, base: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let lost = base.assignment_lost();
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let finals: Vec<(i32, Position)> = {
            let mut commits = self.shared.commits();
            partitions
                .iter()
                .filter_map(|&p| commits.forget(p).map(|pos| (p, pos)))
                .collect()
        };
        if lost {
            tracing::warn!(partitions = ?partitions, "partitions lost (the group moved on without this worker): nothing committed for them");
        } else if !finals.is_empty() {
            let result = base.commit(&commit_list(&self.topic, &finals), CommitMode::Sync);
            self.count_commit(&result);
            if let Err(e) = result {
                tracing::warn!(error = %e, "final commit of revoked partitions failed; their next owner re-processes from the previous commit");
            }
        }
        let unassigned = match base.rebalance_protocol() {
            RebalanceProtocol::Cooperative => base.incremental_unassign(tpl),
            _ => base.unassign(),
        };
        if let Err(e) = unassigned {
            tracing::error!(error = %e, "cannot give the revoked partitions up");
        }
        let kind = if lost { "lost" } else { "revoke" };
        self.metrics.rebalances.with_label_values(&[kind]).inc();
        for p in &partitions {
            let _ = self
                .metrics
                .consumer_lag
                .remove_label_values(&[&p.to_string()]);
        }
        let cameras = self.shared.assignment.revoke(&partitions);
        {
            let mut revoked = self
                .shared
                .revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            revoked.cameras.extend(cameras);
            revoked.partitions.extend(partitions);
        }
        self.count_assigned(base);
        tracing::info!(partitions = tpl.count(), lost, "partitions revoked");
    }

    fn count_assigned(&self, base: &BaseConsumer<Self>) {
        if let Ok(assignment) = base.assignment() {
            self.metrics
                .assigned_partitions
                .set(assignment.count() as i64);
        }
    }

    fn count_commit(&self, result: &KafkaResult<()>) {
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics.commits.with_label_values(&[label]).inc();
    }
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for p in topic.partitions.values() {
            // The committed offset is what KEDA compares with the end of the partition.
            if let Some(lag) =
                self.shared
                    .assignment
                    .offsets(p.partition, p.hi_offset, p.committed_offset)
            {
                self.metrics
                    .consumer_lag
                    .with_label_values(&[&p.partition.to_string()])
                    .set(lag);
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(base, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(base, tpl),
            other => {
                self.metrics.rebalances.with_label_values(&["error"]).inc();
                tracing::warn!(error = ?other, "rebalance error");
            }
        }
    }
}

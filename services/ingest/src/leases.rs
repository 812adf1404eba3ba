//! Which replica runs which camera: leases that Kafka's consumer-group protocol makes
//! exclusive.
//!
//! Static sharding (replica i of n) runs a camera on two pods at once while the replica
//! count changes, because each pod decides alone. Here the decision is the group
//! coordinator's: every replica joins consumer group `ingest.group_id` on the lease topic
//! (`topics.leases`, nothing is ever written to it), each partition is a slot, and camera
//! `id` belongs to slot `fnv1a64(id) % partitions`. A replica runs exactly the cameras of
//! the slots assigned to it.
//!
//! Kafka revokes a slot before it assigns it elsewhere (with cooperative-sticky the
//! revoking member must finish its incremental unassign first), and the revocation is
//! handled inside the rebalance callback: the slot's cameras are stopped — RTSP session
//! torn down, queue published and acknowledged, bounded by `ingest.shutdown_grace_ms` —
//! before the callback returns. So the next owner starts a camera only after the old
//! session has ended. A lost assignment (this replica's session timed out) does not tear
//! cameras down but holds their frames until the next assignment says whether the slots
//! are still ours ([`LeaseBook`]).
//!
//! The consumer is a `BaseConsumer` polled on a thread of its own, so the callbacks can
//! block on the registry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use framewire_kit::admin::Readiness;
use framewire_kit::kafka::{KafkaConfig, KafkaSetupError};
use framewire_kit::shutdown::Shutdown;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::topic_partition_list::TopicPartitionList;
use serde::Serialize;

use crate::config::IngestConfig;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// The readiness component that waits for the first assignment.
pub const READINESS: &str = "leases";

/// FNV-1a, 64 bits: stable across releases and platforms (a change would move cameras).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The slot (lease topic partition) of camera `id` among `slots`.
pub fn slot_of(id: &str, slots: i32) -> i32 {
    let n = u64::try_from(slots.max(1)).unwrap_or(1);
    // The remainder is below `slots`, so it fits.
    i32::try_from(fnv1a64(id.as_bytes()) % n).unwrap_or(0)
}

/// Where this replica's leases stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No assignment yet: nothing runs.
    #[default]
    Waiting,
    /// The group assigned slots (possibly none).
    Assigned,
    /// The assignment was lost (session timed out): cameras hold their frames until the
    /// next assignment.
    Lost,
}

/// What to do with the cameras of which slots after a lease event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Newly owned: start their cameras.
    pub start: BTreeSet<i32>,
    /// Revoked: stop their cameras, publishing what they queued first.
    pub stop: BTreeSet<i32>,
    /// Lost: keep their cameras running, hand nothing more to Kafka.
    pub hold: BTreeSet<i32>,
    /// Held and assigned back: publish again.
    pub resume: BTreeSet<i32>,
    /// Held and not assigned back: stop their cameras, dropping what they queued.
    pub discard: BTreeSet<i32>,
}

/// The lease state machine: which slots this replica owns, which are in doubt.
#[derive(Debug, Default)]
pub struct LeaseBook {
    owned: BTreeSet<i32>,
    held: BTreeSet<i32>,
    phase: Phase,
}

impl LeaseBook {
    /// The group assigned `slots` (incrementally: in addition to those owned).
    pub fn assign(&mut self, slots: &[i32]) -> Plan {
        let mut plan = Plan::default();
        for &s in slots {
            if self.held.remove(&s) {
                plan.resume.insert(s);
            } else if !self.owned.contains(&s) {
                plan.start.insert(s);
            }
            self.owned.insert(s);
        }
        // Lost slots that did not come back may be running elsewhere already.
        plan.discard = std::mem::take(&mut self.held);
        self.phase = Phase::Assigned;
        plan
    }

    /// The group revoked `slots`: they go to another replica once we let go.
    pub fn revoke(&mut self, slots: &[i32]) -> Plan {
        let mut plan = Plan::default();
        for s in slots {
            if self.owned.remove(s) {
                plan.stop.insert(*s);
            } else if self.held.remove(s) {
                plan.discard.insert(*s);
            }
        }
        plan
    }

    /// The assignment was lost: every owned slot is in doubt until the next assignment.
    pub fn lose(&mut self) -> Plan {
        let held = std::mem::take(&mut self.owned);
        self.held.extend(held.iter().copied());
        self.phase = Phase::Lost;
        Plan {
            hold: held,
            ..Plan::default()
        }
    }

    /// Whether this replica owns `slot` (and may publish its cameras).
    pub fn owns(&self, slot: i32) -> bool {
        self.owned.contains(&slot)
    }

    /// Whether `slot` is in doubt (lost, not yet reassigned).
    pub fn holds(&self, slot: i32) -> bool {
        self.held.contains(&slot)
    }

    /// The slots owned.
    pub fn owned(&self) -> &BTreeSet<i32> {
        &self.owned
    }

    /// The slots in doubt.
    pub fn held(&self) -> &BTreeSet<i32> {
        &self.held
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }
}

/// What `/leases` shows about the group membership (the registry adds slots and cameras).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Membership {
    /// `ingest.group_id`.
    pub group: String,
    /// `topics.leases`.
    pub topic: String,
    /// The lease topic's partition count (slots), once read.
    pub slot_count: Option<i32>,
    /// `ingest.instance_id` (static membership), if set.
    pub instance_id: Option<String>,
    /// This replica's `client.id` on the lease consumer.
    pub client_id: String,
    /// This replica's member id in the group, as the coordinator last described it.
    pub member_id: Option<String>,
    /// Members of the group, as last described.
    pub members: usize,
}

/// Shared view of the membership, updated by the lease thread.
pub type SharedMembership = Arc<Mutex<Membership>>;

/// The lease consumer's callbacks: they apply every rebalance to the registry before they
/// return.
struct LeaseContext {
    runtime: tokio::runtime::Handle,
    registry: Arc<Registry>,
    metrics: Metrics,
    readiness: Readiness,
    /// Set by a rebalance: the poll loop describes the group again.
    changed: Arc<std::sync::atomic::AtomicBool>,
}

fn slots(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for LeaseContext {}

impl ConsumerContext for LeaseContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let slots = slots(tpl);
            if consumer.assignment_lost() {
                self.metrics
                    .lease_rebalances
                    .with_label_values(&["lost"])
                    .inc();
                tracing::warn!(
                    slots = slots.len(),
                    "lease assignment lost (no contact with the group for ingest.lease_timeout_ms); holding frames until the next assignment"
                );
                self.readiness
                    .set_not_ready(READINESS, "lease assignment lost; waiting for the group");
                self.runtime.block_on(self.registry.lose());
            } else {
                self.metrics
                    .lease_rebalances
                    .with_label_values(&["revoke"])
                    .inc();
                tracing::info!(?slots, "lease slots revoked; stopping their cameras");
                self.runtime.block_on(self.registry.revoke(&slots));
            }
            self.changed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                // Nothing is ever read from the lease topic: no fetching.
                if tpl.count() > 0
                    && let Err(e) = consumer.pause(tpl)
                {
                    tracing::debug!(error = %e, "cannot pause the lease partitions");
                }
                let slots = slots(tpl);
                self.metrics
                    .lease_rebalances
                    .with_label_values(&["assign"])
                    .inc();
                tracing::info!(?slots, "lease slots assigned");
                self.runtime.block_on(self.registry.assign(&slots));
                self.readiness.set_ready(READINESS);
                self.changed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "lease rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// The lease consumer's thread; [`LeaseThread::leave`] ends it.
pub struct LeaseThread {
    leave: Shutdown,
    thread: JoinHandle<()>,
}

impl LeaseThread {
    /// Leaves the group (after the registry stopped every camera) and waits for the
    /// thread, at most `timeout`.
    pub async fn leave(self, timeout: Duration) {
        self.leave.trigger();
        let thread = self.thread;
        let joined = tokio::task::spawn_blocking(move || thread.join());
        if tokio::time::timeout(timeout, joined).await.is_err() {
            tracing::warn!("the lease consumer did not close in time");
        }
    }
}

/// Everything the lease thread needs.
pub struct LeaseSetup {
    /// `[kafka]`.
    pub kafka: KafkaConfig,
    /// `topics.leases`.
    pub topic: String,
    /// `[ingest]`.
    pub ingest: IngestConfig,
    /// The cameras.
    pub registry: Arc<Registry>,
    /// Metrics.
    pub metrics: Metrics,
    /// `/readyz`.
    pub readiness: Readiness,
    /// What `/leases` shows.
    pub membership: SharedMembership,
    /// Process shutdown (ends the wait for the topic's metadata).
    pub shutdown: Shutdown,
}

/// The client id of the lease consumer: unique per replica, so that its member can be
/// found in the group's description.
fn lease_client_id(kafka: &KafkaConfig, ingest: &IngestConfig) -> String {
    let base = kafka.client_id.as_deref().unwrap_or("framewire-ingest");
    match &ingest.instance_id {
        Some(id) => format!("{base}-leases-{id}"),
        None => format!("{base}-leases-{:08x}", rand::random::<u32>()),
    }
}

/// Creates the lease consumer, reads the slot count and joins the group on a thread of
/// its own.
pub fn start(setup: LeaseSetup) -> Result<LeaseThread, KafkaSetupError> {
    let i = &setup.ingest;
    let client_id = lease_client_id(&setup.kafka, i);
    let session = i.lease_timeout_ms.to_string();
    let heartbeat = (i.lease_timeout_ms / 3).clamp(500, 3_000).to_string();
    let mut config = setup.kafka.client_config(
        &client_id,
        &[
            ("group.id", &i.group_id),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "latest"),
            ("session.timeout.ms", &session),
            ("heartbeat.interval.ms", &heartbeat),
        ],
    );
    // Unique even when `kafka.client_id` is set: it identifies this member.
    config.set("client.id", &client_id);
    if let Some(id) = &i.instance_id {
        config.set("group.instance.id", id);
    }
    let changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let context = LeaseContext {
        runtime: tokio::runtime::Handle::current(),
        registry: setup.registry.clone(),
        metrics: setup.metrics.clone(),
        readiness: setup.readiness.clone(),
        changed: changed.clone(),
    };
    let consumer: BaseConsumer<LeaseContext> =
        config
            .create_with_context(context)
            .map_err(|source| KafkaSetupError::Client {
                what: "lease consumer",
                source,
            })?;
    {
        let mut m = setup.membership.lock().unwrap_or_else(|p| p.into_inner());
        m.group = i.group_id.clone();
        m.topic = setup.topic.clone();
        m.instance_id = i.instance_id.clone();
        m.client_id = client_id.clone();
    }
    let leave = Shutdown::new();
    let runtime = tokio::runtime::Handle::current();
    let thread = {
        let leave = leave.clone();
        std::thread::Builder::new()
            .name("ingest-leases".into())
            .spawn(move || run(consumer, setup, client_id, changed, leave, runtime))
            .map_err(|e| KafkaSetupError::Topic {
                topic: "lease consumer thread".into(),
                reason: e.to_string(),
            })?
    };
    Ok(LeaseThread { leave, thread })
}

/// The lease thread: slot count, subscribe, poll until told to leave.
fn run(
    consumer: BaseConsumer<LeaseContext>,
    setup: LeaseSetup,
    client_id: String,
    changed: Arc<std::sync::atomic::AtomicBool>,
    leave: Shutdown,
    runtime: tokio::runtime::Handle,
) {
    let topic = setup.topic.as_str();
    let slots = loop {
        if leave.is_triggered() || setup.shutdown.is_triggered() {
            return;
        }
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => {
                let n = md
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| t.partitions().len())
                    .sum::<usize>();
                if n > 0 {
                    break i32::try_from(n).unwrap_or(i32::MAX);
                }
                tracing::warn!(%topic, "the lease topic does not exist yet (create it, or set topics.create = true)");
                setup
                    .readiness
                    .set_not_ready(READINESS, format!("lease topic {topic} does not exist"));
            }
            Err(e) => {
                tracing::warn!(%topic, error = %e, "cannot read the lease topic's partitions yet");
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    setup
        .membership
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .slot_count = Some(slots);
    runtime.block_on(setup.registry.set_slot_count(slots));
    if let Err(e) = consumer.subscribe(&[topic]) {
        tracing::error!(%topic, error = %e, "cannot join the lease group; this replica runs no cameras");
        setup
            .readiness
            .set_not_ready(READINESS, format!("cannot join the lease group: {e}"));
        return;
    }
    tracing::info!(%topic, slots, group = %setup.ingest.group_id, "joined the lease group; waiting for an assignment");
    setup
        .readiness
        .set_not_ready(READINESS, "waiting for a lease assignment");
    while !leave.is_triggered() {
        match consumer.poll(Duration::from_millis(200)) {
            None | Some(Ok(_)) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "lease consumer error"),
        }
        if changed.swap(false, std::sync::atomic::Ordering::Relaxed) {
            describe(&consumer, &setup, &client_id);
        }
    }
    // Dropping the consumer closes it: a dynamic member leaves the group at once (its
    // slots move now); a static one keeps them until `lease_timeout_ms`, for its restart.
    tracing::info!("leaving the lease group");
    drop(consumer);
}

/// Looks this member up in the group's description (member id, group size), for `/leases`.
fn describe(consumer: &BaseConsumer<LeaseContext>, setup: &LeaseSetup, client_id: &str) {
    let group = &setup.ingest.group_id;
    match consumer.fetch_group_list(Some(group), Duration::from_secs(3)) {
        Ok(list) => {
            let Some(g) = list.groups().iter().find(|g| g.name() == group) else {
                return;
            };
            let me = g
                .members()
                .iter()
                .find(|m| m.client_id() == client_id)
                .map(|m| m.id().to_owned());
            let mut m = setup.membership.lock().unwrap_or_else(|p| p.into_inner());
            m.members = g.members().len();
            if me.is_some() {
                m.member_id = me;
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot describe the lease group"),
    }
}

/// How many cameras each owned slot has, for `/leases`.
pub fn per_slot(slots: &BTreeSet<i32>, cameras: &[(String, i32)]) -> BTreeMap<i32, usize> {
    let mut out: BTreeMap<i32, usize> = slots.iter().map(|&s| (s, 0)).collect();
    for (_, slot) in cameras {
        if let Some(n) = out.get_mut(slot) {
            *n += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_even() {
        // Pinned values: a change here moves cameras between replicas on upgrade.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let pinned: Vec<i32> = ["gate-1", "lobby", "cam-042", "x"]
            .iter()
            .map(|id| slot_of(id, 60))
            .collect();
        assert_eq!(pinned, PINNED);
        let mut per = [0usize; 60];
        for i in 0..60_000 {
            let s = slot_of(&format!("camera-{i}"), 60);
            assert!((0..60).contains(&s));
            per[s as usize] += 1;
        }
        for n in per {
            assert!((850..=1_150).contains(&n), "{per:?}");
        }
        assert_eq!(slot_of("anything", 1), 0);
        assert_eq!(slot_of("anything", 0), 0, "no slots read yet");
    }

    const PINNED: [i32; 4] = [52, 43, 43, 11];

    fn set(s: &[i32]) -> BTreeSet<i32> {
        s.iter().copied().collect()
    }

    #[test]
    fn assign_and_revoke() {
        let mut b = LeaseBook::default();
        assert_eq!(b.phase(), Phase::Waiting);
        let p = b.assign(&[]);
        assert_eq!(p, Plan::default(), "an empty assignment starts nothing");
        assert_eq!(b.phase(), Phase::Assigned);
        let p = b.assign(&[0, 1, 2]);
        assert_eq!(p.start, set(&[0, 1, 2]));
        assert!(b.owns(1));
        // Cooperative: the next assignment only adds.
        let p = b.assign(&[3]);
        assert_eq!(p.start, set(&[3]));
        let p = b.revoke(&[1, 3]);
        assert_eq!(p.stop, set(&[1, 3]));
        assert!(p.start.is_empty() && p.discard.is_empty());
        assert_eq!(b.owned(), &set(&[0, 2]));
        // Revoking what is not owned is a no-op.
        assert_eq!(b.revoke(&[7]), Plan::default());
    }

    #[test]
    fn lost_slots_hold_until_the_next_assignment_decides() {
        let mut b = LeaseBook::default();
        b.assign(&[0, 1, 2, 3]);
        let p = b.lose();
        assert_eq!(p.hold, set(&[0, 1, 2, 3]));
        assert!(
            p.stop.is_empty() && p.discard.is_empty(),
            "nothing torn down"
        );
        assert_eq!(b.phase(), Phase::Lost);
        assert!(!b.owns(0) && b.holds(0), "held slots are not published");
        // The group gives 1 and 3 back, and 5 new: 1 and 3 resume, 0 and 2 are discarded
        // (they may run elsewhere already), 5 starts.
        let p = b.assign(&[1, 3, 5]);
        assert_eq!(p.resume, set(&[1, 3]));
        assert_eq!(p.discard, set(&[0, 2]));
        assert_eq!(p.start, set(&[5]));
        assert_eq!(b.owned(), &set(&[1, 3, 5]));
        assert!(b.held().is_empty());
        assert_eq!(b.phase(), Phase::Assigned);
    }

    #[test]
    fn a_lost_assignment_followed_by_an_empty_one_discards_everything() {
        let mut b = LeaseBook::default();
        b.assign(&[4, 5]);
        b.lose();
        let p = b.assign(&[]);
        assert_eq!(p.discard, set(&[4, 5]));
        assert!(p.resume.is_empty() && p.start.is_empty());
        // A later round gives 4 back: a fresh start.
        assert_eq!(b.assign(&[4]).start, set(&[4]));
    }

    #[test]
    fn cameras_per_slot() {
        let cams = vec![
            ("a".to_owned(), 1),
            ("b".to_owned(), 1),
            ("c".to_owned(), 9),
        ];
        let per = per_slot(&set(&[1, 2]), &cams);
        assert_eq!(per, BTreeMap::from([(1, 2), (2, 0)]));
    }
}

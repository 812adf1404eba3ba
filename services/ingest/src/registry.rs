//! The cameras this replica knows, the ones it runs, and how both change at run time.
//!
//! Cameras come from the config file and from the compacted control topic (key = camera
//! id, value = the camera's JSON spec, tombstone = removal). A control record wins over a
//! config entry with the same id. Every replica keeps every known spec, so that a lease
//! slot assigned to it (see [`crate::leases`]) starts its cameras at once; it runs only the
//! cameras of the slots it owns.
//!
//! A control record that is not a valid spec never stops the process or touches the other
//! cameras. It is counted (`framewire_ingest_control_records_total{outcome}`) and, when its
//! key is a valid camera id, kept as that camera's `spec_error`: the topic is compacted, so
//! after compaction it is the only record left for the camera, and the camera must not
//! vanish silently. A camera running an earlier good spec keeps running it (and shows
//! `spec_error`); a camera without one is listed in state `invalid`. A later good record
//! or a tombstone clears the error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use framewire_kit::kafka::{KafkaConfig, KafkaSetupError};
use framewire_kit::shutdown::Shutdown;
use framewire_wire::{CameraSpec, validate_camera_id};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::camera::{CameraTask, Shared};
use crate::credentials::CredentialPolicy;
use crate::leases::{LeaseBook, Phase, Plan, per_slot, slot_of};
use crate::metrics::Metrics;
use crate::publish::Mode;
use crate::queue::DropReason;
use crate::status::{Snapshot, SpecError, State};

/// Where a camera's current spec came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The config file.
    Config,
    /// The control topic (admin API or any producer).
    Control,
}

/// A camera this replica knows of, run here or not.
struct Known {
    /// The last good spec, if any.
    spec: Option<CameraSpec>,
    source: Source,
    /// The latest control record for it is not a valid spec.
    error: Option<SpecError>,
}

/// A camera running here.
struct Entry {
    source: Source,
    task: CameraTask,
}

struct Inner {
    known: BTreeMap<String, Known>,
    running: BTreeMap<String, Entry>,
    book: LeaseBook,
    /// Partitions of the lease topic, once read: nothing runs before.
    slots: Option<i32>,
    /// Stopping for good: nothing starts any more.
    closed: bool,
}

impl Inner {
    fn slot(&self, id: &str) -> Option<i32> {
        self.slots.map(|n| slot_of(id, n))
    }

    fn owns(&self, id: &str) -> bool {
        self.slot(id).is_some_and(|s| self.book.owns(s))
    }

    fn ids_in(&self, slots: &BTreeSet<i32>) -> Vec<String> {
        self.known
            .keys()
            .chain(self.running.keys())
            .filter(|id| self.slot(id).is_some_and(|s| slots.contains(&s)))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    fn running_in(&self, slots: &BTreeSet<i32>) -> Vec<String> {
        self.running
            .keys()
            .filter(|id| self.slot(id).is_some_and(|s| slots.contains(&s)))
            .cloned()
            .collect()
    }

    /// Cameras listed here but not running: an invalid spec and no good one, in an owned slot.
    fn invalid(&self) -> impl Iterator<Item = (&String, &Known)> {
        self.known.iter().filter(|(id, k)| {
            k.spec.is_none()
                && k.error.is_some()
                && !self.running.contains_key(*id)
                && self.owns(id)
        })
    }
}

/// What a camera needs after a change.
enum Action {
    Nothing,
    Start(CameraSpec, Source),
    Restart(Entry, CameraSpec, Source),
    Stop(Entry),
    Abandon(Entry),
}

/// A camera as `/cameras` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CameraView {
    /// The spec (URL password redacted), or only the id when no valid spec is known.
    #[serde(flatten)]
    pub spec: SpecView,
    /// Where the spec came from.
    pub source: Source,
    /// The camera's lease slot.
    pub slot: Option<i32>,
    /// State, last error, session.
    #[serde(flatten)]
    pub status: Snapshot,
    /// The latest control record for the camera is not a valid spec: why, and where it is.
    pub spec_error: Option<SpecError>,
    /// Counters from the camera's metrics.
    #[serde(flatten)]
    pub counters: Counters,
}

/// The spec part of a [`CameraView`].
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum SpecView {
    /// The spec run.
    Spec(CameraSpec),
    /// No valid spec known.
    Id {
        /// The camera id.
        id: String,
    },
}

/// A camera's counters on `/cameras` (zero for a camera that does not run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Access units published.
    pub frames: u64,
    /// IDR access units published.
    pub keyframes: u64,
    /// Bytes published.
    pub bytes: u64,
    /// Sessions started.
    pub reconnects: u64,
    /// GOPs dropped by the outage queue or with an undelivered keyframe.
    pub dropped_gops: u64,
    /// Records over the size limit.
    pub oversize_records: u64,
    /// Records Kafka refused.
    pub delivery_errors: u64,
    /// Bytes waiting for Kafka.
    pub queue_bytes: i64,
    /// Unix time of the last frame received, seconds.
    pub last_frame_s: Option<i64>,
}

/// The leases part of `GET /leases`.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    /// `waiting`, `assigned` or `lost`.
    pub state: Phase,
    /// The slots owned.
    pub slots: Vec<i32>,
    /// Slots in doubt after a lost assignment (their cameras hold their frames).
    pub held: Vec<i32>,
    /// Cameras running here.
    pub cameras: usize,
    /// Known cameras per owned slot.
    pub cameras_per_slot: BTreeMap<i32, usize>,
}

/// The cameras of this replica.
pub struct Registry {
    inner: Mutex<Inner>,
    /// Serialises changes (control records, lease events, shutdown).
    ops: tokio::sync::Mutex<()>,
    shared: Arc<Shared>,
    metrics: Metrics,
    shutdown: Shutdown,
    grace: Duration,
}

impl Registry {
    /// An empty registry: nothing runs until the lease slot count is known and slots
    /// are assigned.
    pub fn new(shared: Arc<Shared>, metrics: Metrics, shutdown: Shutdown) -> Self {
        let grace = Duration::from_millis(shared.config.shutdown_grace_ms);
        Registry {
            inner: Mutex::new(Inner {
                known: BTreeMap::new(),
                running: BTreeMap::new(),
                book: LeaseBook::default(),
                slots: None,
                closed: false,
            }),
            ops: tokio::sync::Mutex::new(()),
            shared,
            metrics,
            shutdown,
            grace,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lease topic's partition count: camera `id` is in slot `fnv1a64(id) % slots`.
    pub async fn set_slot_count(&self, slots: i32) {
        let _op = self.ops.lock().await;
        self.lock().slots = Some(slots);
    }

    /// Adds or updates a camera; it runs (or restarts, when its spec changed) if its slot
    /// is owned here. Clears the camera's spec error.
    pub async fn apply(&self, spec: CameraSpec, source: Source) {
        let _op = self.ops.lock().await;
        let id = spec.id.clone();
        {
            let mut inner = self.lock();
            if inner.known.get(&id).is_some_and(|k| k.error.is_some()) {
                tracing::info!(camera = %id, "camera spec valid again");
            }
            inner.known.insert(
                id.clone(),
                Known {
                    spec: Some(spec),
                    source,
                    error: None,
                },
            );
        }
        self.reconcile(&[id]).await;
    }

    /// Forgets a camera (a tombstone) and stops it if it runs here.
    pub async fn remove(&self, id: &str) {
        let _op = self.ops.lock().await;
        self.lock().known.remove(id);
        self.reconcile(&[id.to_owned()]).await;
    }

    /// Records a control record for `id` that is not a valid spec: the camera keeps its
    /// last good spec (if any) and shows the error.
    pub async fn invalid(&self, id: &str, error: SpecError) {
        let _op = self.ops.lock().await;
        let mut inner = self.lock();
        let known = inner.known.entry(id.to_owned()).or_insert(Known {
            spec: None,
            source: Source::Control,
            error: None,
        });
        known.error = Some(error);
        if known.spec.is_none() {
            tracing::warn!(camera = %id, "camera has no valid spec; listed as invalid, not run");
        } else {
            tracing::warn!(camera = %id, "camera keeps running its last valid spec");
        }
    }

    /// The group assigned `slots`: their cameras start (or, held after a lost
    /// assignment, publish again); held slots not assigned back are discarded.
    pub async fn assign(&self, slots: &[i32]) {
        let _op = self.ops.lock().await;
        let (plan, discard, resume) = {
            let mut inner = self.lock();
            let plan = inner.book.assign(slots);
            let discard = take_running(&mut inner, &plan.discard);
            let resume = inner.ids_in(&plan.resume);
            for id in &resume {
                if let Some(e) = inner.running.get(id) {
                    e.task.set_mode(Mode::Publish);
                }
            }
            self.metrics
                .lease_slots
                .set(inner.book.owned().len() as i64);
            (plan, discard, resume)
        };
        if !resume.is_empty() {
            tracing::info!(
                cameras = resume.len(),
                "lease confirmed again; held cameras publish"
            );
        }
        self.finish(
            discard
                .into_iter()
                .map(|(id, e)| (id, Action::Abandon(e)))
                .collect(),
        )
        .await;
        let ids = {
            let inner = self.lock();
            let mut all: BTreeSet<i32> = plan.start.clone();
            all.extend(plan.resume.iter().copied());
            inner.ids_in(&all)
        };
        self.reconcile(&ids).await;
    }

    /// The group revokes `slots`: their cameras stop — session torn down, queue published
    /// and acknowledged within `ingest.shutdown_grace_ms` — before this returns.
    pub async fn revoke(&self, slots: &[i32]) {
        let _op = self.ops.lock().await;
        let actions = {
            let mut inner = self.lock();
            let plan = inner.book.revoke(slots);
            let mut actions: Vec<(String, Action)> = take_running(&mut inner, &plan.stop)
                .into_iter()
                .map(|(id, e)| (id, Action::Stop(e)))
                .collect();
            actions.extend(
                take_running(&mut inner, &plan.discard)
                    .into_iter()
                    .map(|(id, e)| (id, Action::Abandon(e))),
            );
            self.metrics
                .lease_slots
                .set(inner.book.owned().len() as i64);
            actions
        };
        self.finish(actions).await;
    }

    /// The assignment was lost: every camera keeps running but hands nothing more to
    /// Kafka until the next assignment.
    pub async fn lose(&self) {
        let _op = self.ops.lock().await;
        let mut inner = self.lock();
        let Plan { hold, .. } = inner.book.lose();
        for id in inner.running_in(&hold) {
            if let Some(e) = inner.running.get(&id) {
                e.task.set_mode(Mode::Hold);
            }
        }
        self.metrics.lease_slots.set(0);
    }

    /// Stops every camera for good (each flushes what it queued; held ones drop it).
    pub async fn stop_all(&self) {
        let _op = self.ops.lock().await;
        let actions: Vec<(String, Action)> = {
            let mut inner = self.lock();
            inner.closed = true;
            std::mem::take(&mut inner.running)
                .into_iter()
                .map(|(id, e)| {
                    let action = if e.task.mode() == Mode::Hold {
                        Action::Abandon(e)
                    } else {
                        Action::Stop(e)
                    };
                    (id, action)
                })
                .collect()
        };
        self.finish(actions).await;
    }

    /// Brings the cameras `ids` in line with their spec and their slot's lease.
    async fn reconcile(&self, ids: &[String]) {
        let actions: Vec<(String, Action)> = {
            let mut inner = self.lock();
            ids.iter()
                .map(|id| (id.clone(), decide(&mut inner, id)))
                .collect()
        };
        self.finish(actions).await;
    }

    /// Carries out what [`decide`] (or a lease event) asked: stops concurrently, then starts.
    async fn finish(&self, actions: Vec<(String, Action)>) {
        let mut stops = Vec::new();
        let mut starts = Vec::new();
        for (id, action) in actions {
            match action {
                Action::Nothing => {}
                Action::Start(spec, source) => {
                    tracing::info!(camera = %id, ?source, enabled = spec.enabled, "camera started here");
                    starts.push((id, spec, source));
                }
                Action::Restart(old, spec, source) => {
                    tracing::info!(camera = %id, "camera spec changed; restarting it");
                    stops.push(self.stop_entry(id.clone(), old, None, false));
                    starts.push((id, spec, source));
                }
                Action::Stop(old) => {
                    stops.push(self.stop_entry(id, old, None, true));
                }
                Action::Abandon(old) => {
                    stops.push(self.stop_entry(id, old, Some(DropReason::LeaseLost), true));
                }
            }
        }
        futures::future::join_all(stops).await;
        if starts.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for (id, spec, source) in starts {
            if inner.closed {
                break;
            }
            let task = CameraTask::spawn(
                spec,
                self.shared.clone(),
                self.metrics.camera(&id),
                &self.shutdown,
                Mode::Publish,
            );
            inner.running.insert(id, Entry { source, task });
        }
    }

    /// Stops one camera: gracefully (within the grace), or dropping what it queued.
    async fn stop_entry(&self, id: String, e: Entry, drop: Option<DropReason>, gone: bool) {
        match drop {
            None => e.task.stop(self.grace).await,
            Some(reason) => e.task.abandon(reason).await,
        }
        if gone {
            self.metrics.remove_camera(&id);
            tracing::info!(camera = %id, "camera stopped here");
        }
    }

    /// Every camera listed here (running, or invalid in an owned slot), with its state
    /// and counters.
    pub async fn list(&self) -> Vec<CameraView> {
        let inner = self.lock();
        let mut views: BTreeMap<&String, CameraView> = inner
            .running
            .iter()
            .map(|(id, e)| (id, self.view_running(&inner, id, e)))
            .collect();
        for (id, k) in inner.invalid() {
            views.insert(id, view_invalid(&inner, id, k));
        }
        views.into_values().collect()
    }

    /// One camera listed here.
    pub async fn get(&self, id: &str) -> Option<CameraView> {
        let inner = self.lock();
        if let Some(e) = inner.running.get(id) {
            return Some(self.view_running(&inner, id, e));
        }
        inner
            .invalid()
            .find(|(k, _)| *k == id)
            .map(|(id, k)| view_invalid(&inner, id, k))
    }

    fn view_running(&self, inner: &Inner, id: &str, e: &Entry) -> CameraView {
        let m = &self.metrics;
        let c = &[id];
        let mut spec = e.task.spec.clone();
        spec.url = framewire_kit::redact::redact_url(&spec.url);
        let last = m.last_frame.with_label_values(c).get();
        CameraView {
            spec: SpecView::Spec(spec),
            source: e.source,
            slot: inner.slot(id),
            status: e.task.status.snapshot(),
            spec_error: inner.known.get(id).and_then(|k| k.error.clone()),
            counters: Counters {
                frames: m.frames.with_label_values(c).get(),
                keyframes: m.keyframes.with_label_values(c).get(),
                bytes: m.bytes.with_label_values(c).get(),
                reconnects: m.reconnects.with_label_values(c).get(),
                dropped_gops: m.dropped_gops.with_label_values(c).get(),
                oversize_records: m.oversize.with_label_values(c).get(),
                delivery_errors: m.delivery_errors.with_label_values(c).get(),
                queue_bytes: m.queue_bytes.with_label_values(c).get(),
                last_frame_s: (last > 0).then_some(last),
            },
        }
    }

    /// The slots and cameras part of `GET /leases`.
    pub async fn leases(&self) -> LeaseView {
        let inner = self.lock();
        let cameras: Vec<(String, i32)> = inner
            .known
            .keys()
            .filter_map(|id| inner.slot(id).map(|s| (id.clone(), s)))
            .collect();
        LeaseView {
            state: inner.book.phase(),
            slots: inner.book.owned().iter().copied().collect(),
            held: inner.book.held().iter().copied().collect(),
            cameras: inner.running.len(),
            cameras_per_slot: per_slot(inner.book.owned(), &cameras),
        }
    }

    /// Updates `framewire_ingest_cameras{state}`.
    pub async fn count_states(&self) {
        let mut counts: BTreeMap<&str, i64> = State::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        {
            let inner = self.lock();
            for e in inner.running.values() {
                *counts
                    .entry(e.task.status.snapshot().state.as_str())
                    .or_default() += 1;
            }
            *counts.entry(State::Invalid.as_str()).or_default() += inner.invalid().count() as i64;
        }
        for (state, n) in counts {
            self.metrics.cameras.with_label_values(&[state]).set(n);
        }
    }
}

/// Takes the running cameras of `slots` out of the registry (the caller stops them).
fn take_running(inner: &mut Inner, slots: &BTreeSet<i32>) -> Vec<(String, Entry)> {
    inner
        .running_in(slots)
        .into_iter()
        .filter_map(|id| inner.running.remove(&id).map(|e| (id, e)))
        .collect()
}

/// What camera `id` needs: run its good spec while its slot is owned, nothing while its
/// slot is in doubt (unless it was removed), stop otherwise.
fn decide(inner: &mut Inner, id: &str) -> Action {
    let known = inner.known.get(id);
    let spec = known.and_then(|k| k.spec.clone());
    let source = known.map_or(Source::Config, |k| k.source);
    let held = inner.slot(id).is_some_and(|s| inner.book.holds(s));
    if held {
        // Not ours to change until the next assignment, except a removal.
        return match (spec, inner.running.remove(id)) {
            (None, Some(e)) => Action::Abandon(e),
            (Some(_), Some(e)) => {
                inner.running.insert(id.to_owned(), e);
                Action::Nothing
            }
            (_, None) => Action::Nothing,
        };
    }
    let desired = spec.filter(|_| inner.owns(id) && !inner.closed);
    match (inner.running.remove(id), desired) {
        (Some(mut e), Some(spec)) if e.task.spec == spec => {
            e.source = source;
            inner.running.insert(id.to_owned(), e);
            Action::Nothing
        }
        (Some(e), Some(spec)) => Action::Restart(e, spec, source),
        (Some(e), None) => Action::Stop(e),
        (None, Some(spec)) => Action::Start(spec, source),
        (None, None) => Action::Nothing,
    }
}

fn view_invalid(inner: &Inner, id: &str, k: &Known) -> CameraView {
    CameraView {
        spec: SpecView::Id { id: id.to_owned() },
        source: k.source,
        slot: inner.slot(id),
        status: Snapshot::idle(State::Invalid),
        spec_error: k.error.clone(),
        counters: Counters::default(),
    }
}

/// How one control record was handled (the `outcome` label).
#[derive(Debug, PartialEq, Eq)]
pub enum ControlChange {
    /// Add or update.
    Upsert(CameraSpec),
    /// Tombstone.
    Remove(String),
}

/// A control record that is not a valid change.
#[derive(Debug, PartialEq, Eq)]
pub struct ControlError {
    /// The `outcome` label: `no_key`, `bad_id`, `bad_spec`, `id_mismatch`, `password_in_url`,
    /// `credentials_not_allowed`.
    pub outcome: &'static str,
    /// One line naming the camera when there is one.
    pub message: String,
    /// The camera, when the key is a valid camera id (the error is then the camera's).
    pub camera: Option<String>,
}

/// Decodes a control record; its credentials must be inside `policy`'s allowlist.
pub fn decode_control(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    policy: &CredentialPolicy,
) -> Result<ControlChange, ControlError> {
    let fail = |outcome, message: String, camera: Option<&str>| ControlError {
        outcome,
        message,
        camera: camera.map(str::to_owned),
    };
    let key = key.ok_or_else(|| {
        fail(
            "no_key",
            "control record without a key (the camera id)".to_owned(),
            None,
        )
    })?;
    let id = std::str::from_utf8(key)
        .map_err(|_| fail("bad_id", "control record key is not UTF-8".to_owned(), None))?;
    validate_camera_id(id).map_err(|m| fail("bad_id", m, None))?;
    let Some(payload) = payload else {
        return Ok(ControlChange::Remove(id.to_owned()));
    };
    let spec: CameraSpec = serde_json::from_slice(payload).map_err(|e| {
        fail(
            "bad_spec",
            format!("camera {id}: spec does not parse: {e}"),
            Some(id),
        )
    })?;
    if spec.id != id {
        return Err(fail(
            "id_mismatch",
            format!("camera {id}: the spec's id is {:?}", spec.id),
            Some(id),
        ));
    }
    spec.validate().map_err(|m| fail("bad_spec", m, Some(id)))?;
    if spec.url_has_password() {
        return Err(fail(
            "password_in_url",
            format!(
                "camera {id}: the control topic must not carry passwords; use credentials.password_env or password_file"
            ),
            Some(id),
        ));
    }
    policy
        .check(&spec)
        .map_err(|m| fail("credentials_not_allowed", m, Some(id)))?;
    Ok(ControlChange::Upsert(spec))
}

/// Reads the control topic from its beginning and applies every change until shutdown.
pub async fn follow_control(
    kafka: &KafkaConfig,
    topic: &str,
    group_prefix: &str,
    registry: Arc<Registry>,
    metrics: Metrics,
    shutdown: Shutdown,
) -> Result<(), KafkaSetupError> {
    let policy = registry.shared.config.credential_policy();
    // A group of its own per replica (every replica reads the whole registry), under a
    // prefix the ACLs can name (`IngestConfig::control_group_prefix`).
    let group = format!("{group_prefix}{:016x}", rand::random::<u64>());
    let consumer: StreamConsumer = kafka
        .client_config(
            "framewire-ingest-control",
            &[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("auto.offset.reset", "earliest"),
            ],
        )
        .create()
        .map_err(|source| KafkaSetupError::Client {
            what: "control consumer",
            source,
        })?;
    let partitions = loop {
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => {
                let ids: Vec<i32> = md
                    .topics()
                    .iter()
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                if !ids.is_empty() {
                    break ids;
                }
            }
            Err(e) => {
                tracing::warn!(%topic, error = %e, "cannot read the control topic's partitions yet")
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|source| KafkaSetupError::Client {
                what: "control assignment",
                source,
            })?;
    }
    consumer
        .assign(&tpl)
        .map_err(|source| KafkaSetupError::Client {
            what: "control assignment",
            source,
        })?;
    tracing::info!(%topic, "following the camera registry on the control topic");
    loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "control topic read error");
                continue;
            }
        };
        let change = decode_control(msg.key(), msg.payload(), &policy);
        let (partition, offset) = (msg.partition(), msg.offset());
        drop(msg);
        match change {
            Ok(ControlChange::Upsert(spec)) => {
                metrics.control.with_label_values(&["applied"]).inc();
                registry.apply(spec, Source::Control).await;
            }
            Ok(ControlChange::Remove(id)) => {
                metrics.control.with_label_values(&["removed"]).inc();
                registry.remove(&id).await;
            }
            Err(ControlError {
                outcome,
                message,
                camera,
            }) => {
                metrics.control.with_label_values(&[outcome]).inc();
                tracing::warn!(
                    partition,
                    offset,
                    outcome,
                    "control record refused: {message}"
                );
                if let Some(id) = camera {
                    let error = SpecError {
                        message,
                        partition,
                        offset,
                    };
                    registry.invalid(&id, error).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_records() {
        let p = crate::config::IngestConfig::default().credential_policy();
        let spec = br#"{"id":"gate-1","url":"rtsp://10.0.0.5/s","credentials":{"username":"v","password_env":"FRAMEWIRE_CAMERA_GATE1"}}"#;
        match decode_control(Some(b"gate-1"), Some(spec), &p) {
            Ok(ControlChange::Upsert(s)) => assert_eq!(s.id, "gate-1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode_control(Some(b"gate-1"), None, &p),
            Ok(ControlChange::Remove("gate-1".into()))
        );
        let outcome =
            |k: Option<&[u8]>, v: Option<&[u8]>| decode_control(k, v, &p).unwrap_err().outcome;
        assert_eq!(outcome(None, Some(spec)), "no_key");
        assert_eq!(outcome(Some(b"gate 1"), None), "bad_id");
        assert_eq!(outcome(Some(b"gate-2"), Some(spec)), "id_mismatch");
        assert_eq!(outcome(Some(b"gate-1"), Some(b"{not json")), "bad_spec");
        assert_eq!(
            outcome(
                Some(b"gate-1"),
                Some(br#"{"id":"gate-1","url":"http://x/"}"#)
            ),
            "bad_spec"
        );
        assert_eq!(
            outcome(
                Some(b"gate-1"),
                Some(br#"{"id":"gate-1","url":"rtsp://u:pw@x/"}"#)
            ),
            "password_in_url"
        );
        // A spec naming another setting's secret is refused, with the camera and the rule.
        for refs in [
            r#""password_env":"FRAMEWIRE_KAFKA__OPTIONS__SASL_PASSWORD""#,
            r#""password_env":"HOME""#,
            r#""password_file":"/etc/framewire/secrets/kafka-sasl-password""#,
            r#""password_file":"../../secrets/sink-database-url""#,
        ] {
            let spec = format!(
                r#"{{"id":"gate-1","url":"rtsp://attacker/","credentials":{{"username":"v",{refs}}}}}"#
            );
            let e = decode_control(Some(b"gate-1"), Some(spec.as_bytes()), &p).unwrap_err();
            assert_eq!(e.outcome, "credentials_not_allowed", "{refs}");
            assert_eq!(e.camera.as_deref(), Some("gate-1"));
            assert!(e.message.contains("ingest.credentials_"), "{}", e.message);
        }
        // A bad spec under a valid id is that camera's error; a bad key is nobody's.
        let e = decode_control(Some(b"gate-1"), Some(b"{not json"), &p).unwrap_err();
        assert_eq!(e.camera.as_deref(), Some("gate-1"));
        assert!(e.message.starts_with("camera gate-1: "), "{}", e.message);
        assert_eq!(
            decode_control(Some(b"gate 1"), None, &p)
                .unwrap_err()
                .camera,
            None
        );
    }

    fn registry() -> Registry {
        let prom = prometheus::Registry::new();
        let publisher = crate::publish::Publisher::new(
            &KafkaConfig::default(),
            "unit.frames",
            1 << 20,
            5,
            1_000,
            framewire_kit::delivery::DeliveryMetrics::new(&prom),
        )
        .unwrap();
        let shared = Arc::new(Shared {
            config: crate::config::IngestConfig::default(),
            publisher: Arc::new(publisher),
            group: Arc::new(retina::client::SessionGroup::default()),
        });
        Registry::new(shared, Metrics::new(&prom), Shutdown::new())
    }

    /// A disabled camera: registered and listed, never connected.
    fn cam(id: &str) -> CameraSpec {
        serde_json::from_value(serde_json::json!({"id": id, "url": "rtsp://h/s", "enabled": false}))
            .unwrap()
    }

    fn bad(message: &str, offset: i64) -> SpecError {
        SpecError {
            message: message.into(),
            partition: 0,
            offset,
        }
    }

    async fn states(r: &Registry) -> BTreeMap<String, (State, Option<i64>)> {
        r.list()
            .await
            .into_iter()
            .map(|v| {
                let id = match &v.spec {
                    SpecView::Spec(s) => s.id.clone(),
                    SpecView::Id { id } => id.clone(),
                };
                (id, (v.status.state, v.spec_error.map(|e| e.offset)))
            })
            .collect()
    }

    fn mode(r: &Registry, id: &str) -> Option<Mode> {
        r.lock().running.get(id).map(|e| e.task.mode())
    }

    #[tokio::test]
    async fn a_bad_record_marks_the_camera_without_making_it_vanish() {
        let r = registry();
        r.set_slot_count(1).await;
        r.assign(&[0]).await;
        // Running from a good spec: keeps running it, shows the error.
        r.apply(cam("a"), Source::Control).await;
        r.invalid("a", bad("camera a: spec does not parse", 7))
            .await;
        // Only a bad record (as after compaction and a restart): listed as invalid.
        r.invalid("b", bad("camera b: spec does not parse", 8))
            .await;
        assert_eq!(
            states(&r).await,
            BTreeMap::from([
                ("a".into(), (State::Disabled, Some(7))),
                ("b".into(), (State::Invalid, Some(8))),
            ])
        );
        assert!(r.lock().running.contains_key("a") && !r.lock().running.contains_key("b"));
        r.count_states().await;
        assert_eq!(r.metrics.cameras.with_label_values(&["invalid"]).get(), 1);
        let b = r.get("b").await.unwrap();
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["id"], "b");
        assert_eq!(json["state"], "invalid");
        assert_eq!(json["spec_error"]["offset"], 8);
        // A good record clears the error; a tombstone removes the invalid camera.
        r.apply(cam("a"), Source::Control).await;
        r.remove("b").await;
        assert_eq!(
            states(&r).await,
            BTreeMap::from([("a".into(), (State::Disabled, None))])
        );
        r.count_states().await;
        assert_eq!(r.metrics.cameras.with_label_values(&["invalid"]).get(), 0);
    }

    #[tokio::test]
    async fn cameras_follow_their_slots() {
        let r = registry();
        let ids: Vec<String> = (0..12).map(|i| format!("cam-{i}")).collect();
        for id in &ids {
            r.apply(cam(id), Source::Config).await;
        }
        assert!(
            r.list().await.is_empty(),
            "nothing runs before the slot count"
        );
        r.set_slot_count(4).await;
        assert!(
            r.list().await.is_empty(),
            "nothing runs before an assignment"
        );
        let in_slots = |slots: &[i32]| -> BTreeSet<String> {
            ids.iter()
                .filter(|id| slots.contains(&slot_of(id, 4)))
                .cloned()
                .collect()
        };
        let listed =
            |r: &Registry| -> BTreeSet<String> { r.lock().running.keys().cloned().collect() };
        r.assign(&[0, 1]).await;
        assert_eq!(listed(&r), in_slots(&[0, 1]));
        assert!(!in_slots(&[0, 1]).is_empty() && !in_slots(&[2, 3]).is_empty());
        r.assign(&[2]).await;
        assert_eq!(listed(&r), in_slots(&[0, 1, 2]));
        // Revoked: stopped before revoke returns.
        r.revoke(&[1]).await;
        assert_eq!(listed(&r), in_slots(&[0, 2]));
        // Lost: everything keeps running, held.
        r.lose().await;
        assert_eq!(listed(&r), in_slots(&[0, 2]));
        for id in in_slots(&[0, 2]) {
            assert_eq!(mode(&r, &id), Some(Mode::Hold), "{id}");
        }
        r.assign(&[2, 3]).await;
        // Slot 2 came back: publishing again; slot 0 did not: stopped; 3 is new.
        assert_eq!(listed(&r), in_slots(&[2, 3]));
        for id in in_slots(&[2, 3]) {
            assert_eq!(mode(&r, &id), Some(Mode::Publish), "{id}");
        }
        let leases = r.leases().await;
        assert_eq!(leases.slots, vec![2, 3]);
        assert_eq!(leases.cameras, in_slots(&[2, 3]).len());
        assert_eq!(
            leases.cameras_per_slot.values().sum::<usize>(),
            in_slots(&[2, 3]).len()
        );
        // A control removal stops the camera; stop_all stops the rest and nothing starts
        // after it.
        let gone = in_slots(&[3]).into_iter().next().unwrap();
        r.remove(&gone).await;
        assert!(!listed(&r).contains(&gone));
        r.stop_all().await;
        assert!(listed(&r).is_empty());
        r.assign(&[0]).await;
        assert!(listed(&r).is_empty(), "nothing starts after stop_all");
    }
}

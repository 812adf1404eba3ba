//! The cameras this replica runs, and how that set changes at run time.
//!
//! Cameras come from the config file and from the compacted control topic (key = camera
//! id, value = the camera's JSON spec, tombstone = removal). A control record wins over a
//! config entry with the same id. Each replica reads the whole control topic and runs
//! only the cameras its [`Shard`] owns. An invalid record is counted
//! (`framewire_ingest_control_records_total{outcome}`) and logged with the camera id; it
//! never stops the process or touches the other cameras.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use framewire_kit::kafka::{KafkaConfig, KafkaSetupError};
use framewire_kit::shutdown::Shutdown;
use framewire_wire::{CameraSpec, validate_camera_id};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::RwLock;

use crate::camera::{CameraTask, Shared};
use crate::metrics::Metrics;
use crate::shard::Shard;
use crate::status::{Snapshot, State};

/// Where a camera's current spec came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The config file.
    Config,
    /// The control topic (admin API or any producer).
    Control,
}

struct Entry {
    source: Source,
    task: CameraTask,
}

/// A camera as `/cameras` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CameraView {
    /// The spec, URL password redacted.
    #[serde(flatten)]
    pub spec: CameraSpec,
    /// Where the spec came from.
    pub source: Source,
    /// State, last error, session.
    #[serde(flatten)]
    pub status: Snapshot,
    /// Counters from the camera's metrics.
    pub frames: u64,
    /// IDR access units published.
    pub keyframes: u64,
    /// Bytes published.
    pub bytes: u64,
    /// Sessions started.
    pub reconnects: u64,
    /// GOPs dropped by the outage queue.
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

/// The cameras of this replica.
pub struct Registry {
    cameras: RwLock<BTreeMap<String, Entry>>,
    shard: Shard,
    shared: Arc<Shared>,
    metrics: Metrics,
    shutdown: Shutdown,
}

impl Registry {
    /// An empty registry.
    pub fn new(shard: Shard, shared: Arc<Shared>, metrics: Metrics, shutdown: Shutdown) -> Self {
        Registry {
            cameras: RwLock::new(BTreeMap::new()),
            shard,
            shared,
            metrics,
            shutdown,
        }
    }

    /// This replica's shard.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// Adds or updates a camera (restarting it when its spec changed); a camera another
    /// replica owns is not run here.
    pub async fn apply(&self, spec: CameraSpec, source: Source) {
        let id = spec.id.clone();
        if !self.shard.owns(&id) {
            tracing::debug!(camera = %id, shard = self.shard.index, "camera belongs to another replica");
            return self.remove(&id).await;
        }
        let previous = {
            let mut map = self.cameras.write().await;
            match map.get_mut(&id) {
                Some(e) if e.task.spec == spec => {
                    e.source = source;
                    return;
                }
                _ => map.remove(&id),
            }
        };
        if let Some(old) = previous {
            tracing::info!(camera = %id, "camera spec changed; restarting it");
            old.task.stop().await;
        } else {
            tracing::info!(camera = %id, ?source, enabled = spec.enabled, "camera added");
        }
        let task = CameraTask::spawn(
            spec,
            self.shared.clone(),
            self.metrics.camera(&id),
            &self.shutdown,
        );
        self.cameras
            .write()
            .await
            .insert(id, Entry { source, task });
    }

    /// Stops and forgets a camera (and deletes its metric series).
    pub async fn remove(&self, id: &str) {
        let removed = self.cameras.write().await.remove(id);
        if let Some(e) = removed {
            e.task.stop().await;
            self.metrics.remove_camera(id);
            tracing::info!(camera = %id, "camera removed");
        }
    }

    /// Stops every camera (each flushes what it queued).
    pub async fn stop_all(&self) {
        let all = std::mem::take(&mut *self.cameras.write().await);
        futures::future::join_all(all.into_values().map(|e| e.task.stop())).await;
    }

    /// Every camera with its state and counters.
    pub async fn list(&self) -> Vec<CameraView> {
        let map = self.cameras.read().await;
        map.iter().map(|(id, e)| self.view(id, e)).collect()
    }

    /// One camera.
    pub async fn get(&self, id: &str) -> Option<CameraView> {
        let map = self.cameras.read().await;
        map.get(id).map(|e| self.view(id, e))
    }

    fn view(&self, id: &str, e: &Entry) -> CameraView {
        let m = &self.metrics;
        let c = &[id];
        let mut spec = e.task.spec.clone();
        spec.url = framewire_kit::redact::redact_url(&spec.url);
        let last = m.last_frame.with_label_values(c).get();
        CameraView {
            spec,
            source: e.source,
            status: e.task.status.snapshot(),
            frames: m.frames.with_label_values(c).get(),
            keyframes: m.keyframes.with_label_values(c).get(),
            bytes: m.bytes.with_label_values(c).get(),
            reconnects: m.reconnects.with_label_values(c).get(),
            dropped_gops: m.dropped_gops.with_label_values(c).get(),
            oversize_records: m.oversize.with_label_values(c).get(),
            delivery_errors: m.delivery_errors.with_label_values(c).get(),
            queue_bytes: m.queue_bytes.with_label_values(c).get(),
            last_frame_s: (last > 0).then_some(last),
        }
    }

    /// Updates `framewire_ingest_cameras{state}`.
    pub async fn count_states(&self) {
        let mut counts: BTreeMap<&str, i64> = State::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for e in self.cameras.read().await.values() {
            *counts
                .entry(e.task.status.snapshot().state.as_str())
                .or_default() += 1;
        }
        for (state, n) in counts {
            self.metrics.cameras.with_label_values(&[state]).set(n);
        }
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

/// Decodes a control record; the error is `(outcome label, message)`.
pub fn decode_control(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Result<ControlChange, (&'static str, String)> {
    let key = key.ok_or((
        "no_key",
        "control record without a key (the camera id)".to_owned(),
    ))?;
    let id = std::str::from_utf8(key)
        .map_err(|_| ("bad_id", "control record key is not UTF-8".to_owned()))?;
    validate_camera_id(id).map_err(|m| ("bad_id", m))?;
    let Some(payload) = payload else {
        return Ok(ControlChange::Remove(id.to_owned()));
    };
    let spec: CameraSpec = serde_json::from_slice(payload)
        .map_err(|e| ("bad_spec", format!("camera {id}: spec does not parse: {e}")))?;
    if spec.id != id {
        return Err((
            "id_mismatch",
            format!("camera {id}: the spec's id is {:?}", spec.id),
        ));
    }
    spec.validate().map_err(|m| ("bad_spec", m))?;
    if spec.url_has_password() {
        return Err((
            "password_in_url",
            format!(
                "camera {id}: the control topic must not carry passwords; use credentials.password_env or password_file"
            ),
        ));
    }
    Ok(ControlChange::Upsert(spec))
}

/// Reads the control topic from its beginning and applies every change until shutdown.
pub async fn follow_control(
    kafka: &KafkaConfig,
    topic: &str,
    registry: Arc<Registry>,
    metrics: Metrics,
    shutdown: Shutdown,
) -> Result<(), KafkaSetupError> {
    let group = format!("framewire-ingest-control-{:016x}", rand::random::<u64>());
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
        let change = decode_control(msg.key(), msg.payload());
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
            Err((outcome, message)) => {
                metrics.control.with_label_values(&[outcome]).inc();
                tracing::warn!(
                    partition,
                    offset,
                    outcome,
                    "control record ignored: {message}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_records() {
        let spec = br#"{"id":"gate-1","url":"rtsp://10.0.0.5/s","credentials":{"username":"v","password_env":"GATE1"}}"#;
        match decode_control(Some(b"gate-1"), Some(spec)) {
            Ok(ControlChange::Upsert(s)) => assert_eq!(s.id, "gate-1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode_control(Some(b"gate-1"), None),
            Ok(ControlChange::Remove("gate-1".into()))
        );
        let outcome = |k: Option<&[u8]>, v: Option<&[u8]>| decode_control(k, v).unwrap_err().0;
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
    }
}

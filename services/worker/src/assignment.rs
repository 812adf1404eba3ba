//! What this replica is working on, for `GET /debug/assignment`.
//!
//! During a rebalance or a lag incident the first question is "which worker has which
//! partition and camera, and how far behind is it": the consumer loop records every
//! record's camera here (one short lock per record), librdkafka's statistics feed the
//! partitions' offsets and lag, and the admin server renders it as JSON.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;

/// A partition this replica owns.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PartitionView {
    /// Partition number.
    pub partition: i32,
    /// The partition's end offset (high watermark), when known.
    pub high_watermark: Option<i64>,
    /// The group's committed offset, when known.
    pub committed: Option<i64>,
    /// Records between the committed offset and the end.
    pub lag: Option<i64>,
    /// This replica's progress: every record before it is done (what it commits next).
    pub progress: Option<i64>,
    /// Where a new owner would resume to start every camera at a keyframe.
    pub resume: Option<i64>,
}

/// A camera whose records this replica consumed.
#[derive(Debug, Clone, Serialize)]
pub struct CameraView {
    /// Camera id.
    pub camera: String,
    /// Partition its records come from.
    pub partition: i32,
    /// Current session (`fw-session`).
    pub session: String,
    /// Last `fw-seq` consumed.
    pub last_seq: u64,
    /// Offset of that record.
    pub last_offset: i64,
    /// Its capture time (ms since the epoch).
    pub last_capture_ms: i64,
    /// How far behind capture the consumer was for that record, in ms.
    pub lag_ms: i64,
    /// Records consumed since this replica saw the camera first.
    pub records: u64,
    /// True while the `realtime` lag policy skips the camera's backlog.
    pub skipping: bool,
}

/// The whole view.
#[derive(Debug, Default)]
pub struct Assignment {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    partitions: BTreeMap<i32, PartitionView>,
    cameras: HashMap<String, CameraView>,
}

/// One record, as the consumer loop saw it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// Camera id.
    pub camera: &'a str,
    /// Session id.
    pub session: &'a str,
    /// Frame number.
    pub seq: u64,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Capture time.
    pub capture_ms: i64,
    /// Wall clock when consumed.
    pub now_ms: i64,
    /// Whether the lag policy skips the camera.
    pub skipping: bool,
}

impl Assignment {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Partitions assigned to this replica (incremental: cooperative rebalancing).
    pub fn assign(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut inner = self.lock();
        for partition in partitions {
            inner.partitions.entry(partition).or_insert(PartitionView {
                partition,
                ..Default::default()
            });
        }
    }

    /// Partitions taken away: they and their cameras leave the view. Returns those cameras.
    pub fn revoke(&self, partitions: &[i32]) -> Vec<String> {
        let mut inner = self.lock();
        for p in partitions {
            inner.partitions.remove(p);
        }
        let mut gone = Vec::new();
        inner.cameras.retain(|id, c| {
            let keep = !partitions.contains(&c.partition);
            if !keep {
                gone.push(id.clone());
            }
            keep
        });
        gone
    }

    /// Records a consumed record.
    pub fn seen(&self, s: Seen<'_>) {
        let mut inner = self.lock();
        let lag_ms = (s.now_ms - s.capture_ms).max(0);
        match inner.cameras.get_mut(s.camera) {
            Some(c) => {
                if c.session != s.session {
                    c.session = s.session.to_owned();
                }
                c.partition = s.partition;
                c.last_seq = s.seq;
                c.last_offset = s.offset;
                c.last_capture_ms = s.capture_ms;
                c.lag_ms = lag_ms;
                c.records += 1;
                c.skipping = s.skipping;
            }
            None => {
                inner.cameras.insert(
                    s.camera.to_owned(),
                    CameraView {
                        camera: s.camera.to_owned(),
                        partition: s.partition,
                        session: s.session.to_owned(),
                        last_seq: s.seq,
                        last_offset: s.offset,
                        last_capture_ms: s.capture_ms,
                        lag_ms,
                        records: 1,
                        skipping: s.skipping,
                    },
                );
            }
        }
    }

    /// Updates a partition's offsets from librdkafka's statistics; `None` when the
    /// partition is not (or no longer) assigned here.
    pub fn offsets(&self, partition: i32, high: i64, committed: i64) -> Option<i64> {
        let mut inner = self.lock();
        let view = inner.partitions.get_mut(&partition)?;
        view.high_watermark = (high >= 0).then_some(high);
        view.committed = (committed >= 0).then_some(committed);
        view.lag = view
            .high_watermark
            .zip(view.committed)
            .map(|(h, c)| (h - c).max(0));
        view.lag
    }

    /// Records a partition's position as last handed to a commit.
    pub fn progress(&self, partition: i32, position: crate::commit::Position) {
        if let Some(view) = self.lock().partitions.get_mut(&partition) {
            view.progress = Some(position.offset);
            view.resume = Some(position.resume);
        }
    }

    /// True when this replica has consumed `camera` and still owns its partition.
    pub fn has_camera(&self, camera: &str) -> bool {
        self.lock().cameras.contains_key(camera)
    }

    /// The view as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let inner = self.lock();
        let mut cameras: Vec<&CameraView> = inner.cameras.values().collect();
        cameras.sort_by(|a, b| a.camera.cmp(&b.camera));
        serde_json::json!({
            "partitions": inner.partitions.values().collect::<Vec<_>>(),
            "cameras": cameras,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(camera: &str, partition: i32, seq: u64) -> Seen<'_> {
        Seen {
            camera,
            session: "s",
            seq,
            partition,
            offset: seq as i64,
            capture_ms: 1_000,
            now_ms: 1_250,
            skipping: false,
        }
    }

    #[test]
    fn cameras_and_partitions_follow_the_assignment() {
        let a = Assignment::default();
        a.assign([0, 1]);
        a.seen(seen("a", 0, 1));
        a.seen(seen("a", 0, 2));
        a.seen(seen("b", 1, 5));
        assert_eq!(a.offsets(0, 100, 90), Some(10));
        assert_eq!(a.offsets(7, 100, 90), None, "not assigned here");
        let json = a.to_json();
        assert_eq!(json["partitions"][0]["lag"], 10);
        assert_eq!(json["cameras"][0]["camera"], "a");
        assert_eq!(json["cameras"][0]["last_seq"], 2);
        assert_eq!(json["cameras"][0]["records"], 2);
        assert_eq!(json["cameras"][0]["lag_ms"], 250);
        assert_eq!(a.revoke(&[0]), ["a"]);
        assert!(!a.has_camera("a"));
        assert!(a.has_camera("b"));
        assert_eq!(a.to_json()["partitions"].as_array().unwrap().len(), 1);
    }
}

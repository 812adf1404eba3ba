//! Frames-topic records made the way ingest makes them, for tests and benchmarks that feed
//! the worker without cameras: clips encoded by ffmpeg (H.264 or H.265 files, for
//! `framewire-loadgen` too), split into access units, produced with the `fw-*` headers of
//! the contract.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use framewire_wire::{Codec, FrameMeta, annexb};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::KAFKA;

/// An H.264 clip as access units (decode order), each IDR with SPS/PPS inline.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Annex B access units.
    pub access_units: Vec<Vec<u8>>,
    /// Whether each access unit is an IDR.
    pub keyframes: Vec<bool>,
}

/// Encodes `lavfi` (an ffmpeg lavfi graph) with x264, GOP `gop`, no B-frames, an access
/// unit delimiter before every access unit; `extra` adds encoder arguments (e.g.
/// `["-profile:v", "high", "-b:v", "4M"]`).
pub fn encode_clip(lavfi: &str, gop: u32, extra: &[&str]) -> Clip {
    let (_dir, path) = encode_clip_file(lavfi, Codec::H264, gop, extra);
    let stream = std::fs::read(&path).expect("clip");
    let access_units: Vec<Vec<u8>> = annexb::split_at_delimiters(&stream)
        .into_iter()
        .map(|(_, au)| au.to_vec())
        .collect();
    let keyframes = access_units.iter().map(|au| annexb::is_idr(au)).collect();
    Clip {
        access_units,
        keyframes,
    }
}

/// Encodes `lavfi` into an Annex B file (`clip.h264` or `clip.h265`) in a fresh temporary
/// folder, which lives as long as the returned handle: x264 with an access unit delimiter
/// before every access unit, or x265; GOP `gop` (closed, no scene cuts), no B-frames;
/// `extra` adds encoder arguments.
pub fn encode_clip_file(
    lavfi: &str,
    codec: Codec,
    gop: u32,
    extra: &[&str],
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join(format!("clip.{codec}"));
    let gop = gop.to_string();
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg.args(["-v", "error", "-y", "-f", "lavfi", "-i", lavfi]);
    match codec {
        Codec::H264 => ffmpeg
            .args(["-c:v", "libx264", "-preset", "veryfast", "-bf", "0"])
            .args(["-g", &gop, "-keyint_min", &gop, "-sc_threshold", "0"])
            .args(["-pix_fmt", "yuv420p", "-x264-params", "aud=1"])
            .args(extra)
            .args(["-f", "h264"]),
        Codec::H265 => ffmpeg
            .args([
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .args([
                "-x265-params",
                &format!("keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:log-level=error"),
            ])
            .args(extra)
            .args(["-f", "hevc"]),
    };
    let status = ffmpeg
        .arg(&out)
        .status()
        .expect("ffmpeg runs (scripts/install-prereqs.sh installs it)");
    assert!(
        status.success(),
        "ffmpeg could not encode {lavfi} as {codec}"
    );
    (dir, out)
}

/// Metadata of frame `seq` of a 25 fps camera (`pts_90k` = seq × 3600).
pub fn meta(camera: &str, session: &str, seq: u64, keyframe: bool, capture_ms: i64) -> FrameMeta {
    FrameMeta {
        camera: camera.to_owned(),
        session: session.to_owned(),
        seq,
        pts_90k: seq as i64 * 3_600,
        capture_ms,
        keyframe,
        codec: "h264".to_owned(),
        dimensions: None,
    }
}

/// CRC-32 (IEEE), the hash of librdkafka's default `consistent_random` partitioner.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A fresh camera id (`prefix` + a unique suffix) whose records the default partitioner
/// puts on `partition` of `partitions`: lets a test give every partition its own camera.
pub fn camera_on_partition(prefix: &str, partition: u32, partitions: u32) -> String {
    loop {
        let id = crate::unique(&format!("{prefix}{partition}"));
        if crc32(id.as_bytes()) % partitions == partition {
            return id;
        }
    }
}

/// Produces frames records, key = camera.
pub struct FrameProducer {
    producer: FutureProducer,
    topic: String,
}

impl FrameProducer {
    /// A producer to `topic` on the local broker (8 MiB records allowed).
    pub fn new(topic: &str) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", KAFKA)
            .set("linger.ms", "5")
            .set("message.max.bytes", "8388608")
            .create()
            .expect("producer");
        FrameProducer {
            producer,
            topic: topic.to_owned(),
        }
    }

    /// Produces one access unit with the headers of `meta`; the record timestamp is the
    /// capture time, as ingest sets it.
    pub async fn send(&self, meta: &FrameMeta, data: &[u8]) {
        let pairs = meta.to_headers();
        self.send_raw(&meta.camera, &pairs, data, Some(meta.capture_ms))
            .await;
    }

    /// Produces a record with exactly these headers (for malformed records).
    pub async fn send_raw(
        &self,
        key: &str,
        headers: &[(&str, String)],
        data: &[u8],
        timestamp: Option<i64>,
    ) {
        let owned = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        });
        let mut record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(data)
            .headers(owned);
        if let Some(ts) = timestamp {
            record = record.timestamp(ts);
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produce a frames record");
    }
}

//! What the sink reads, reduced to what it keeps: one frame's identity, capture time and
//! statistics — from a `framewire.stats` record (a decoded frame) or a `framewire.dlq`
//! record (a frame the worker could not decode).
//!
//! Dead letters keep the original frame's `fw-*` headers plus `fw-dlq-reason` and
//! `fw-dlq-source`; only those from the worker are decode errors. A dead letter whose
//! headers lack a session or sequence number is still counted, identified by its own
//! Kafka partition and offset (so re-reading it does not count it twice).

use framewire_wire::{StatsRecord, header, validate_camera_id};

/// The value of `fw-dlq-source` on dead letters written by the worker.
pub const DLQ_SOURCE_WORKER: &str = "worker";

/// Prefix of the pseudo-session of dead letters without a frame identity.
const OFFSET_SESSION_PREFIX: char = '#';

/// Whether `session` numbers real frames (a dead letter without `fw-session`/`fw-seq`
/// is keyed by its Kafka offset instead, which says nothing about missing frames).
pub fn has_seq(session: &str) -> bool {
    !session.starts_with(OFFSET_SESSION_PREFIX)
}

/// One frame as the sink counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Camera id (validated).
    pub camera: String,
    /// RTSP session id.
    pub session: String,
    /// Frame number within the session.
    pub seq: u64,
    /// Capture wall clock (ingest), ms since the epoch: decides the window.
    pub capture_ms: i64,
    /// Statistics, or the fact that decoding failed.
    pub kind: FrameKind,
}

/// Whether a frame was measured or failed.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameKind {
    /// Decoded, with statistics.
    Stats(FrameStats),
    /// Sent to the dead-letter topic by the worker.
    DecodeError,
}

/// The statistics of one decoded frame that summaries and incidents use.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameStats {
    /// IDR access unit.
    pub keyframe: bool,
    /// Mean luma.
    pub y_avg: f64,
    /// Mean absolute luma difference to the previous frame (motion).
    pub y_dif: f64,
    /// Laplacian variance (focus).
    pub sharpness: f64,
    /// blackdetect flag.
    pub black: bool,
    /// freezedetect flag.
    pub frozen: bool,
    /// scdet flag.
    pub scene_cut: bool,
    /// Capture → statistics, ms.
    pub latency_ms: i64,
    /// Decoded width.
    pub width: u32,
    /// Decoded height.
    pub height: u32,
}

impl Frame {
    /// The statistics, for a decoded frame.
    pub fn stats(&self) -> Option<&FrameStats> {
        match &self.kind {
            FrameKind::Stats(s) => Some(s),
            FrameKind::DecodeError => None,
        }
    }
}

impl From<StatsRecord> for Frame {
    fn from(r: StatsRecord) -> Self {
        Frame {
            kind: FrameKind::Stats(FrameStats {
                keyframe: r.keyframe,
                y_avg: r.y_avg,
                y_dif: r.y_dif,
                sharpness: r.sharpness,
                black: r.black,
                frozen: r.frozen,
                scene_cut: r.scene_cut,
                latency_ms: r.decoded_ms.saturating_sub(r.capture_ms),
                width: r.width,
                height: r.height,
            }),
            camera: r.camera,
            session: r.session,
            seq: r.seq,
            capture_ms: r.capture_ms,
        }
    }
}

/// Largest `sharpness` accepted: the variance of a 3x3 Laplacian of 8-bit luma is at
/// most (8 × 255)² ≈ 4.2e6; anything far above is not a measurement.
const MAX_SHARPNESS: f64 = 1e9;

/// Parses a stats record value; the error says what is wrong, for the log.
pub fn from_stats(payload: Option<&[u8]>) -> Result<Frame, String> {
    let bytes = payload.ok_or_else(|| "empty value".to_owned())?;
    let rec: StatsRecord =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid stats JSON: {e}"))?;
    validate_camera_id(&rec.camera)?;
    check_values(&rec)?;
    Ok(rec.into())
}

/// The statistics the sink sums must be measurements of 8-bit pictures: a value outside
/// that range (or not finite) would turn a window's sums into infinity, which its stored
/// state cannot hold. Such a record is refused (counted as a bad record), never summed.
fn check_values(r: &StatsRecord) -> Result<(), String> {
    let checks = [
        ("y_avg", r.y_avg, 255.0),
        ("y_dif", r.y_dif, 255.0),
        ("sharpness", r.sharpness, MAX_SHARPNESS),
    ];
    for (name, v, max) in checks {
        if !(0.0..=max).contains(&v) {
            return Err(format!(
                "camera {} seq {}: {name} {v} is outside 0..={max}",
                r.camera, r.seq
            ));
        }
    }
    Ok(())
}

/// Where a dead letter was read, for identities and capture times its headers lack.
#[derive(Debug, Clone, Copy)]
pub struct Position {
    /// Partition of the dead-letter topic.
    pub partition: i32,
    /// Offset in it.
    pub offset: i64,
    /// The record's timestamp, ms since the epoch, if any.
    pub timestamp_ms: Option<i64>,
}

/// Reads a dead letter from its headers (`get` looks one up by name) and key:
/// `Ok(None)` for dead letters that are not the worker's decode errors, an error when
/// no camera can be told.
pub fn from_dead_letter<'a>(
    get: impl Fn(&str) -> Option<&'a [u8]>,
    key: Option<&[u8]>,
    at: Position,
) -> Result<Option<Frame>, String> {
    let text = |name: &str| get(name).and_then(|v| std::str::from_utf8(v).ok());
    if text(header::DLQ_SOURCE) != Some(DLQ_SOURCE_WORKER) {
        return Ok(None);
    }
    let camera = text(header::CAMERA)
        .or_else(|| key.and_then(|k| std::str::from_utf8(k).ok()))
        .ok_or_else(|| "dead letter without fw-camera header or key".to_owned())?;
    validate_camera_id(camera)?;
    let capture_ms = text(header::CAPTURE_MS)
        .and_then(|v| v.parse().ok())
        .or(at.timestamp_ms)
        .ok_or_else(|| format!("dead letter of camera {camera} without a capture time"))?;
    let identity = text(header::SESSION)
        .filter(|s| !s.is_empty() && has_seq(s))
        .zip(text(header::SEQ).and_then(|v| v.parse::<u64>().ok()));
    let (session, seq) = match identity {
        Some((session, seq)) => (session.to_owned(), seq),
        None => (
            format!("{OFFSET_SESSION_PREFIX}dlq-{}", at.partition),
            u64::try_from(at.offset).unwrap_or(0),
        ),
    };
    Ok(Some(Frame {
        camera: camera.to_owned(),
        session,
        seq,
        capture_ms,
        kind: FrameKind::DecodeError,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A decoded frame with plain statistics, 40 ms latency.
    pub(crate) fn stats(camera: &str, session: &str, seq: u64, capture_ms: i64) -> Frame {
        Frame {
            camera: camera.into(),
            session: session.into(),
            seq,
            capture_ms,
            kind: FrameKind::Stats(FrameStats {
                keyframe: seq.is_multiple_of(10),
                y_avg: 100.0,
                y_dif: 1.5,
                sharpness: 250.0,
                black: false,
                frozen: false,
                scene_cut: false,
                latency_ms: 40,
                width: 640,
                height: 360,
            }),
        }
    }

    /// A frame the worker could not decode.
    pub(crate) fn error(camera: &str, session: &str, seq: u64, capture_ms: i64) -> Frame {
        Frame {
            camera: camera.into(),
            session: session.into(),
            seq,
            capture_ms,
            kind: FrameKind::DecodeError,
        }
    }

    #[test]
    fn stats_records_parse_and_bad_ones_say_why() {
        assert_eq!(from_stats(None).unwrap_err(), "empty value");
        assert!(
            from_stats(Some(b"{not json"))
                .unwrap_err()
                .starts_with("invalid stats JSON")
        );
        assert!(
            from_stats(Some(br#"{"camera":"a"}"#))
                .unwrap_err()
                .contains("missing field")
        );
        let good = serde_json::json!({
            "camera": "cam-1", "session": "s", "seq": 7, "pts_90k": 0, "capture_ms": 1000,
            "decoded_ms": 1040, "width": 640, "height": 360, "keyframe": true, "y_avg": 1.5,
            "y_min": 0, "y_max": 2, "y_dif": 0.5, "black": true, "extra": 1
        });
        let f = from_stats(Some(good.to_string().as_bytes())).unwrap();
        assert_eq!((f.camera.as_str(), f.seq, f.capture_ms), ("cam-1", 7, 1000));
        let s = f.stats().unwrap();
        assert_eq!(
            (s.latency_ms, s.black, s.frozen, s.y_dif),
            (40, true, false, 0.5)
        );
        for (field, value) in [
            ("y_avg", serde_json::json!(256.0)),
            ("y_dif", serde_json::json!(-1.0)),
            ("sharpness", serde_json::json!(1e300)),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            let err = from_stats(Some(bad.to_string().as_bytes())).unwrap_err();
            assert!(err.contains(field), "{err}");
        }
        // JSON has no infinity: an overflowing literal does not parse.
        let text = good.to_string().replace("\"y_avg\":1.5", "\"y_avg\":1e999");
        assert!(text.contains("1e999"));
        assert!(from_stats(Some(text.as_bytes())).is_err());
        let mut bad_id = good;
        bad_id["camera"] = "a b".into();
        assert!(
            from_stats(Some(bad_id.to_string().as_bytes()))
                .unwrap_err()
                .contains("camera id")
        );
    }

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a [u8]> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_bytes())
        }
    }

    const AT: Position = Position {
        partition: 2,
        offset: 77,
        timestamp_ms: Some(5_000),
    };

    #[test]
    fn worker_dead_letters_are_decode_errors_of_their_frame() {
        let h = [
            ("fw-camera", "gate-1"),
            ("fw-session", "00ab"),
            ("fw-seq", "12"),
            ("fw-capture-ms", "4000"),
            ("fw-dlq-reason", "decode failed"),
            ("fw-dlq-source", "worker"),
        ];
        let f = from_dead_letter(lookup(&h), None, AT).unwrap().unwrap();
        assert_eq!(f, error("gate-1", "00ab", 12, 4_000));
        assert!(has_seq(&f.session));
    }

    #[test]
    fn dead_letters_without_identity_use_their_offset_and_timestamp() {
        let h = [("fw-dlq-source", "worker"), ("fw-dlq-reason", "x")];
        let f = from_dead_letter(lookup(&h), Some(b"cam-9"), AT)
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.camera.as_str(), f.seq, f.capture_ms),
            ("cam-9", 77, 5_000)
        );
        assert!(!has_seq(&f.session));
        // Another partition's offset 77 is another dead letter.
        let other = Position { partition: 3, ..AT };
        let g = from_dead_letter(lookup(&h), Some(b"cam-9"), other)
            .unwrap()
            .unwrap();
        assert_ne!(f.session, g.session);
    }

    #[test]
    fn other_dead_letters_are_ignored_and_bad_ones_refused() {
        let ingest = [("fw-camera", "c"), ("fw-dlq-source", "ingest")];
        assert_eq!(from_dead_letter(lookup(&ingest), None, AT).unwrap(), None);
        assert_eq!(from_dead_letter(lookup(&[]), None, AT).unwrap(), None);
        let no_camera = [("fw-dlq-source", "worker")];
        assert!(
            from_dead_letter(lookup(&no_camera), None, AT)
                .unwrap_err()
                .contains("fw-camera")
        );
        let bad = [("fw-dlq-source", "worker"), ("fw-camera", "a/b")];
        assert!(
            from_dead_letter(lookup(&bad), None, AT)
                .unwrap_err()
                .contains("camera id")
        );
        let no_time = Position {
            timestamp_ms: None,
            ..AT
        };
        let h = [("fw-dlq-source", "worker"), ("fw-camera", "c")];
        assert!(
            from_dead_letter(lookup(&h), None, no_time)
                .unwrap_err()
                .contains("capture time")
        );
    }
}

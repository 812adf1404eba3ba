//! What the sink reads, reduced to what it keeps: one frame's identity, capture time and
//! statistics — from a `framewire.stats` record (a decoded frame), a `framewire.dlq`
//! record (a frame the worker could not decode) or a `framewire.detections` record (the
//! objects the detector found in a frame it analysed).
//!
//! Detections records are schema-checked here (`docs/detections.schema.json`): a record
//! that breaks the schema is refused whole, with a [`BadDetections`] reason for the
//! metric and a message for the log. Objects scoring below `sink.detections.min_score`
//! are dropped here, so nothing downstream ever counts or draws them.
//!
//! Dead letters keep the original frame's `fw-*` headers plus `fw-dlq-reason` and
//! `fw-dlq-source`; only those from the worker are decode errors. A dead letter whose
//! headers lack a session or sequence number is still counted, identified by its own
//! Kafka partition and offset (so re-reading it does not count it twice).

use std::collections::BTreeMap;

use framewire_wire::{DetectedObject, DetectionsRecord, StatsRecord, header, validate_camera_id};

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
    /// Analysed by the object detector.
    Detections(Detections),
}

/// What the detector found in one picture, as the sink keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detections {
    /// Decoded picture width.
    pub width: u32,
    /// Decoded picture height.
    pub height: u32,
    /// The model that ran.
    pub model: String,
    /// When the worker finished the detection, ms since the epoch.
    pub detected_ms: i64,
    /// Objects scoring at least `sink.detections.min_score`, best first.
    pub objects: Vec<DetectedObject>,
}

impl Detections {
    /// Objects per label in this picture (labels with none are absent).
    pub fn per_label(&self) -> BTreeMap<&str, u64> {
        let mut out: BTreeMap<&str, u64> = BTreeMap::new();
        for o in &self.objects {
            *out.entry(o.label.as_str()).or_default() += 1;
        }
        out
    }
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
            FrameKind::DecodeError | FrameKind::Detections(_) => None,
        }
    }

    /// The detections, for an analysed picture.
    pub fn detections(&self) -> Option<&Detections> {
        match &self.kind {
            FrameKind::Detections(d) => Some(d),
            FrameKind::Stats(_) | FrameKind::DecodeError => None,
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

/// Most objects one detections record may hold (the worker sends at most
/// `detect.max_objects`, 100 by default): more is not a detector's output.
pub const MAX_OBJECTS: usize = 1_000;

/// Longest class label accepted, in bytes.
pub const MAX_LABEL_LEN: usize = 64;

/// Why a detections record was refused: the `reason` label of
/// `framewire_sink_bad_detections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BadDetections {
    /// No value.
    Empty,
    /// Not JSON, or a required field missing or of the wrong type.
    Json,
    /// A camera id that is not one.
    Camera,
    /// An empty or reserved session id.
    Session,
    /// Width or height 0, or an empty model name.
    Picture,
    /// More than [`MAX_OBJECTS`] objects.
    TooManyObjects,
    /// An empty, too long or unprintable label.
    Label,
    /// A score that is not a number in 0-1.
    Score,
    /// A box edge outside 0-1, or a right/bottom edge before the left/top one.
    Box,
}

impl BadDetections {
    /// Every reason, for metrics that start at zero.
    pub const ALL: [BadDetections; 9] = [
        BadDetections::Empty,
        BadDetections::Json,
        BadDetections::Camera,
        BadDetections::Session,
        BadDetections::Picture,
        BadDetections::TooManyObjects,
        BadDetections::Label,
        BadDetections::Score,
        BadDetections::Box,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            BadDetections::Empty => "empty",
            BadDetections::Json => "json",
            BadDetections::Camera => "camera",
            BadDetections::Session => "session",
            BadDetections::Picture => "picture",
            BadDetections::TooManyObjects => "too_many_objects",
            BadDetections::Label => "label",
            BadDetections::Score => "score",
            BadDetections::Box => "box",
        }
    }
}

/// A refused detections record: why (for the metric), whose when that can be told, and
/// what exactly (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The reason.
    pub reason: BadDetections,
    /// The record's camera id, when it is a valid one.
    pub camera: Option<String>,
    /// What is wrong, naming the field.
    pub message: String,
}

/// Parses and schema-checks a detections record value; keeps the objects scoring at least
/// `min_score`.
pub fn from_detections(payload: Option<&[u8]>, min_score: f32) -> Result<Frame, Refused> {
    let refuse = |reason, camera: Option<&str>, message: String| Refused {
        reason,
        camera: camera.map(str::to_owned),
        message,
    };
    let bytes =
        payload.ok_or_else(|| refuse(BadDetections::Empty, None, "empty value".to_owned()))?;
    let rec: DetectionsRecord = serde_json::from_slice(bytes).map_err(|e| {
        refuse(
            BadDetections::Json,
            None,
            format!("invalid detections JSON: {e}"),
        )
    })?;
    validate_camera_id(&rec.camera).map_err(|e| refuse(BadDetections::Camera, None, e))?;
    let camera = Some(rec.camera.as_str());
    let at = |what: String| format!("camera {} seq {}: {what}", rec.camera, rec.seq);
    if rec.session.is_empty() || !has_seq(&rec.session) {
        return Err(refuse(
            BadDetections::Session,
            camera,
            at(format!("session {:?} is empty or reserved", rec.session)),
        ));
    }
    if rec.width == 0 || rec.height == 0 || rec.model.is_empty() {
        return Err(refuse(
            BadDetections::Picture,
            camera,
            at(format!(
                "picture {}x{} of model {:?}: width, height and model must be set",
                rec.width, rec.height, rec.model
            )),
        ));
    }
    if rec.objects.len() > MAX_OBJECTS {
        return Err(refuse(
            BadDetections::TooManyObjects,
            camera,
            at(format!(
                "{} objects; at most {MAX_OBJECTS}",
                rec.objects.len()
            )),
        ));
    }
    for (i, o) in rec.objects.iter().enumerate() {
        check_object(o).map_err(|(reason, what)| {
            refuse(reason, camera, at(format!("objects[{i}]: {what}")))
        })?;
    }
    let DetectionsRecord {
        camera,
        session,
        seq,
        capture_ms,
        detected_ms,
        width,
        height,
        model,
        mut objects,
        ..
    } = rec;
    objects.retain(|o| o.score >= min_score);
    Ok(Frame {
        camera,
        session,
        seq,
        capture_ms,
        kind: FrameKind::Detections(Detections {
            width,
            height,
            model,
            detected_ms,
            objects,
        }),
    })
}

/// One object against the schema: a printable label, a score and box edges in 0-1.
fn check_object(o: &DetectedObject) -> Result<(), (BadDetections, String)> {
    let label_ok = !o.label.trim().is_empty()
        && o.label.len() <= MAX_LABEL_LEN
        && !o.label.chars().any(char::is_control);
    if !label_ok {
        return Err((
            BadDetections::Label,
            format!(
                "label {:?} must be 1-{MAX_LABEL_LEN} bytes of printable text",
                o.label
            ),
        ));
    }
    if !(0.0..=1.0).contains(&o.score) {
        return Err((
            BadDetections::Score,
            format!("score {} is outside 0..=1", o.score),
        ));
    }
    let b = o.bbox;
    let edges_ok = [b.x0, b.y0, b.x1, b.y1]
        .iter()
        .all(|v| (0.0..=1.0).contains(v));
    if !edges_ok || b.x1 < b.x0 || b.y1 < b.y0 {
        return Err((
            BadDetections::Box,
            format!(
                "box ({}, {}) - ({}, {}) is not inside 0..=1 with x0 <= x1 and y0 <= y1",
                b.x0, b.y0, b.x1, b.y1
            ),
        ));
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

    /// An analysed picture of `camera` with `objects` as (label, score).
    pub(crate) fn analysed(
        camera: &str,
        session: &str,
        seq: u64,
        capture_ms: i64,
        objects: &[(&str, f32)],
    ) -> Frame {
        Frame {
            camera: camera.into(),
            session: session.into(),
            seq,
            capture_ms,
            kind: FrameKind::Detections(Detections {
                width: 640,
                height: 360,
                model: "test".into(),
                detected_ms: capture_ms + 80,
                objects: objects
                    .iter()
                    .map(|&(label, score)| DetectedObject {
                        label: label.into(),
                        class: 0,
                        score,
                        bbox: framewire_wire::BoundingBox {
                            x0: 0.1,
                            y0: 0.2,
                            x1: 0.3,
                            y1: 0.4,
                        },
                    })
                    .collect(),
            }),
        }
    }

    fn detections_json() -> serde_json::Value {
        serde_json::json!({
            "camera": "gate-1", "session": "s", "seq": 7, "pts_90k": 0, "capture_ms": 1000,
            "detected_ms": 1090, "width": 640, "height": 360, "model": "nanodet-g-416",
            "objects": [
                {"label": "person", "class": 0, "score": 0.9, "box": {"x0": 0.1, "y0": 0.2, "x1": 0.3, "y1": 0.9}},
                {"label": "car", "class": 2, "score": 0.4, "box": {"x0": 0.5, "y0": 0.5, "x1": 0.6, "y1": 0.6}},
                {"label": "person", "class": 0, "score": 0.5, "box": {"x0": 0.0, "y0": 0.0, "x1": 1.0, "y1": 1.0}}
            ],
            "future_field": true
        })
    }

    fn refused(v: &serde_json::Value) -> Refused {
        from_detections(Some(v.to_string().as_bytes()), 0.5).unwrap_err()
    }

    #[test]
    fn detections_records_parse_and_keep_objects_at_the_minimum_score() {
        let f = from_detections(Some(detections_json().to_string().as_bytes()), 0.5).unwrap();
        assert_eq!(
            (f.camera.as_str(), f.session.as_str(), f.seq, f.capture_ms),
            ("gate-1", "s", 7, 1000)
        );
        assert!(f.stats().is_none());
        let d = f.detections().unwrap();
        assert_eq!(
            (d.width, d.height, d.model.as_str(), d.detected_ms),
            (640, 360, "nanodet-g-416", 1090)
        );
        assert_eq!(
            d.objects.len(),
            2,
            "the car at 0.4 is below 0.5; 0.5 itself counts"
        );
        assert_eq!(d.per_label(), BTreeMap::from([("person", 2)]));
        let all = from_detections(Some(detections_json().to_string().as_bytes()), 0.0).unwrap();
        assert_eq!(
            all.detections().unwrap().per_label(),
            BTreeMap::from([("car", 1), ("person", 2)])
        );
        let mut empty = detections_json();
        empty["objects"] = serde_json::json!([]);
        let f = from_detections(Some(empty.to_string().as_bytes()), 0.5).unwrap();
        assert!(
            f.detections().unwrap().objects.is_empty(),
            "analysed, nothing found"
        );
    }

    #[test]
    fn bad_detections_records_are_refused_with_a_reason_naming_the_field() {
        assert_eq!(
            from_detections(None, 0.5).unwrap_err().reason,
            BadDetections::Empty
        );
        let r = from_detections(Some(b"{nope"), 0.5).unwrap_err();
        assert_eq!((r.reason, r.camera), (BadDetections::Json, None));
        let mut missing = detections_json();
        missing.as_object_mut().unwrap().remove("objects");
        assert!(
            refused(&missing)
                .message
                .contains("missing field `objects`")
        );
        let cases: Vec<(&str, serde_json::Value, BadDetections, &str)> = vec![
            ("/camera", "a b".into(), BadDetections::Camera, "camera id"),
            ("/session", "".into(), BadDetections::Session, "session"),
            (
                "/session",
                "#dlq-0".into(),
                BadDetections::Session,
                "reserved",
            ),
            ("/width", 0.into(), BadDetections::Picture, "0x360"),
            ("/model", "".into(), BadDetections::Picture, "model"),
            (
                "/objects/0/label",
                "".into(),
                BadDetections::Label,
                "objects[0]: label",
            ),
            (
                "/objects/1/label",
                "a\nb".into(),
                BadDetections::Label,
                "objects[1]: label",
            ),
            (
                "/objects/1/label",
                "x".repeat(65).into(),
                BadDetections::Label,
                "label",
            ),
            (
                "/objects/0/score",
                1.5.into(),
                BadDetections::Score,
                "objects[0]: score 1.5",
            ),
            (
                "/objects/2/score",
                (-0.1).into(),
                BadDetections::Score,
                "score -0.1",
            ),
            (
                "/objects/0/box/x1",
                1.01.into(),
                BadDetections::Box,
                "objects[0]: box",
            ),
            (
                "/objects/0/box/x0",
                0.35.into(),
                BadDetections::Box,
                "x0 <= x1",
            ),
            (
                "/objects/2/box/y0",
                (-0.5).into(),
                BadDetections::Box,
                "box",
            ),
        ];
        for (pointer, value, reason, needle) in cases {
            let mut v = detections_json();
            *v.pointer_mut(pointer).unwrap() = value;
            let r = refused(&v);
            assert_eq!(r.reason, reason, "{pointer}: {}", r.message);
            assert!(r.message.contains(needle), "{pointer}: {}", r.message);
            if reason != BadDetections::Camera {
                assert_eq!(r.camera.as_deref(), Some("gate-1"), "{pointer}");
                assert!(
                    r.message.starts_with("camera gate-1 seq 7: "),
                    "{}",
                    r.message
                );
            }
        }
        let mut many = detections_json();
        let one = many["objects"][0].clone();
        many["objects"] = serde_json::Value::Array(vec![one; MAX_OBJECTS + 1]);
        assert_eq!(refused(&many).reason, BadDetections::TooManyObjects);
        let labels: std::collections::BTreeSet<&str> =
            BadDetections::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), BadDetections::ALL.len());
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

//! JSON records on the stats and control topics.

use serde::{Deserialize, Serialize};

use crate::AnalysisRate;

/// One decoded frame's statistics: the value of a `framewire.stats` record.
///
/// Field names are the public schema (see `docs/stats.md`); new fields may be added,
/// existing ones keep their meaning. Fields added after the first release default when
/// absent, so records from older workers still parse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRecord {
    /// Camera id.
    pub camera: String,
    /// RTSP session id the frame came from.
    pub session: String,
    /// Frame number within the session.
    pub seq: u64,
    /// Media timestamp at 90 kHz.
    pub pts_90k: i64,
    /// Wall clock at receipt by ingest, ms since the Unix epoch.
    pub capture_ms: i64,
    /// Wall clock when the worker finished the statistics, ms since the Unix epoch.
    pub decoded_ms: i64,
    /// Decoded picture width (after SPS cropping).
    pub width: u32,
    /// Decoded picture height (after SPS cropping).
    pub height: u32,
    /// Whether the access unit was an IDR frame.
    pub keyframe: bool,
    /// Mean luma (signalstats YAVG).
    pub y_avg: f64,
    /// Minimum luma (signalstats YMIN).
    pub y_min: u8,
    /// Maximum luma (signalstats YMAX).
    pub y_max: u8,
    /// 10th percentile of luma (signalstats YLOW).
    #[serde(default)]
    pub y_low: u8,
    /// 90th percentile of luma (signalstats YHIGH).
    #[serde(default)]
    pub y_high: u8,
    /// Standard deviation of luma.
    #[serde(default)]
    pub y_std: f64,
    /// Mean absolute luma difference to the camera's previous decoded frame (YDIF): motion.
    #[serde(default)]
    pub y_dif: f64,
    /// Mean Cb (signalstats UAVG).
    #[serde(default)]
    pub u_avg: f64,
    /// Mean Cr (signalstats VAVG).
    #[serde(default)]
    pub v_avg: f64,
    /// Mean saturation (signalstats SATAVG).
    #[serde(default)]
    pub sat_avg: f64,
    /// Luma histogram, 16 bins of 16 values each.
    #[serde(default)]
    pub y_hist: [u32; 16],
    /// Variance of the 3x3 Laplacian of luma: focus / blur.
    #[serde(default)]
    pub sharpness: f64,
    /// blackdetect: at least `pic_th` of the pixels are black.
    #[serde(default)]
    pub black: bool,
    /// freezedetect: equal (within the noise) to the last frame that was not frozen.
    #[serde(default)]
    pub frozen: bool,
    /// scdet score, 0-100.
    #[serde(default)]
    pub scene_score: f64,
    /// scdet: the score reached the threshold.
    #[serde(default)]
    pub scene_cut: bool,
}

/// The objects found in one picture: the value of a `framewire.detections` record.
///
/// One record per picture the detector analysed (the camera's detection rate picks which),
/// key = camera id; `(camera, session, seq)` names the picture, as in [`StatsRecord`]. A
/// picture in which nothing was found still gets a record, with no objects: "analysed,
/// empty" and "not analysed" differ. Schema: `docs/detections.schema.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionsRecord {
    /// Camera id.
    pub camera: String,
    /// RTSP session id the frame came from.
    pub session: String,
    /// Frame number within the session.
    pub seq: u64,
    /// Media timestamp at 90 kHz.
    pub pts_90k: i64,
    /// Wall clock at receipt by ingest, ms since the Unix epoch.
    pub capture_ms: i64,
    /// Wall clock when the worker finished the detection, ms since the Unix epoch.
    pub detected_ms: i64,
    /// Decoded picture width.
    pub width: u32,
    /// Decoded picture height.
    pub height: u32,
    /// The model that ran (`nanodet-g-416`).
    pub model: String,
    /// Objects above the score threshold, best first.
    pub objects: Vec<DetectedObject>,
}

/// One object in a picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectedObject {
    /// Class name (COCO: `person`, `car`, `bicycle`, ...).
    pub label: String,
    /// Class index in the model's label list (COCO-80: 0 = person).
    pub class: u16,
    /// Confidence, 0-1.
    pub score: f32,
    /// Where it is.
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
}

/// An axis-aligned box in fractions of the picture: 0,0 is the top-left corner, 1,1 the
/// bottom-right one, whatever the resolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    /// Left edge, 0-1.
    pub x0: f32,
    /// Top edge, 0-1.
    pub y0: f32,
    /// Right edge, `x0`-1.
    pub x1: f32,
    /// Bottom edge, `y0`-1.
    pub y1: f32,
}

/// RTP transport towards a camera.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// RTP interleaved on the RTSP TCP connection (robust through NAT and firewalls).
    #[default]
    Tcp,
    /// RTP over UDP (lower overhead on a clean LAN).
    Udp,
}

/// Which access units of a camera are published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    /// Every access unit.
    #[default]
    All,
    /// Only IDR access units (each decodable on its own).
    Keyframes,
}

/// Where a camera's password comes from; never the password itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRef {
    /// RTSP user name.
    pub username: String,
    /// Name of an environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Path of a file (e.g. a mounted Kubernetes Secret) that holds the password.
    #[serde(default)]
    pub password_file: Option<String>,
}

/// A camera as registered in config or on the control topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSpec {
    /// Camera id: 1-64 characters of `A-Z a-z 0-9 . _ -`; the Kafka key of its records.
    pub id: String,
    /// `rtsp://` URL of the camera's H.264 stream.
    pub url: String,
    /// RTP transport.
    #[serde(default)]
    pub transport: Transport,
    /// A disabled camera stays registered but is not connected.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Which access units are published.
    #[serde(default)]
    pub sampling: Sampling,
    /// Publish only every Nth GOP (1 = every GOP); each published GOP is whole, so the
    /// records stay decodable. Applies to both sampling modes.
    #[serde(default = "every_gop", skip_serializing_if = "is_every_gop")]
    pub every_nth_gop: u32,
    /// Credentials by reference (a password in the URL also works, and is redacted).
    #[serde(default)]
    pub credentials: Option<CredentialsRef>,
    /// How often the worker runs object detection on this camera's pictures; absent: the
    /// worker's default (`detect.rate`). Travels as the `fw-detect` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect: Option<AnalysisRate>,
}

fn enabled_by_default() -> bool {
    true
}

fn every_gop() -> u32 {
    1
}

fn is_every_gop(n: &u32) -> bool {
    *n == 1
}

/// Longest camera id accepted.
pub const MAX_CAMERA_ID_LEN: usize = 64;

impl CameraSpec {
    /// Checks the id's charset and length and that the URL is an `rtsp://` URL.
    pub fn validate(&self) -> Result<(), String> {
        validate_camera_id(&self.id)?;
        let scheme_ok = self
            .url
            .split_once("://")
            .is_some_and(|(s, rest)| (s == "rtsp" || s == "rtsps") && !rest.is_empty());
        if !scheme_ok {
            return Err(format!(
                "camera {}: url must start with rtsp:// (got {:?})",
                self.id,
                crate_redacted_scheme(&self.url)
            ));
        }
        if !(1..=10_000).contains(&self.every_nth_gop) {
            return Err(format!(
                "camera {}: every_nth_gop must be 1 to 10000 (got {})",
                self.id, self.every_nth_gop
            ));
        }
        if let Some(c) = &self.credentials
            && c.password_env.is_some()
            && c.password_file.is_some()
        {
            return Err(format!(
                "camera {}: credentials take password_env or password_file, not both",
                self.id
            ));
        }
        Ok(())
    }

    /// Whether the URL carries a password (fine in a config file, where it is redacted;
    /// refused on the control topic, which must never hold one).
    pub fn url_has_password(&self) -> bool {
        self.url
            .split_once("://")
            .map(|(_, rest)| &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())])
            .and_then(|authority| authority.rsplit_once('@'))
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    }
}

/// What to show of a bad URL in an error: only its scheme part, never credentials.
fn crate_redacted_scheme(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://…"),
        None => "a string without a scheme".to_owned(),
    }
}

/// Checks a camera id: 1-64 characters of `A-Z a-z 0-9 . _ -`.
pub fn validate_camera_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_CAMERA_ID_LEN {
        return Err(format!(
            "camera id {id:?} must be 1 to {MAX_CAMERA_ID_LEN} characters long"
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "camera id {id:?} has the character {bad:?}; allowed are A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_and_validation() {
        let spec: CameraSpec =
            serde_json::from_str(r#"{"id":"gate-1","url":"rtsp://10.0.0.5/stream"}"#).unwrap();
        assert_eq!(spec.transport, Transport::Tcp);
        assert!(spec.enabled);
        assert_eq!(spec.sampling, Sampling::All);
        assert_eq!(spec.every_nth_gop, 1);
        assert!(spec.validate().is_ok());
        assert!(!spec.url_has_password());
        let mut with_pw = spec.clone();
        with_pw.url = "rtsp://u:pw@cam/s?a=b@c".into();
        assert!(with_pw.url_has_password());
        with_pw.url = "rtsp://u@cam/s".into();
        assert!(!with_pw.url_has_password());
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("every_nth_gop"), "default omitted: {json}");
        let zero = CameraSpec {
            every_nth_gop: 0,
            ..spec.clone()
        };
        assert!(zero.validate().unwrap_err().contains("every_nth_gop"));

        let bad = CameraSpec {
            id: "gate 1".into(),
            ..spec.clone()
        };
        assert!(bad.validate().unwrap_err().contains("' '"));
        let http = CameraSpec {
            url: "http://u:secret@x/".into(),
            ..spec
        };
        let err = http.validate().unwrap_err();
        assert!(err.contains("rtsp://") && !err.contains("secret"), "{err}");
    }

    #[test]
    fn unknown_spec_fields_are_rejected() {
        let r: Result<CameraSpec, _> =
            serde_json::from_str(r#"{"id":"a","url":"rtsp://x/","trasnport":"udp"}"#);
        assert!(r.unwrap_err().to_string().contains("trasnport"));
    }

    #[test]
    fn floats_survive_json_exactly() {
        // Found by a property: without serde_json's float_roundtrip feature this value
        // came back one ULP off (…948e-229).
        let y_avg: f64 = 9.830_681_160_097_949e-229;
        let json = format!(
            r#"{{"camera":"c","session":"s","seq":0,"pts_90k":0,"capture_ms":0,"decoded_ms":0,"width":0,"height":0,"keyframe":false,"y_avg":{y_avg:?},"y_min":0,"y_max":0}}"#
        );
        let record: StatsRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(record.y_avg.to_bits(), y_avg.to_bits());
    }

    #[test]
    fn long_ids_are_rejected() {
        assert!(validate_camera_id(&"a".repeat(64)).is_ok());
        assert!(validate_camera_id(&"a".repeat(65)).is_err());
        assert!(validate_camera_id("").is_err());
    }
}

/// Properties of the JSON records: round trips, and no panic on hostile input.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Finite floats of every class (normal, subnormal, zero, either sign).
    fn finite() -> impl Strategy<Value = f64> {
        prop::num::f64::NORMAL
            | prop::num::f64::SUBNORMAL
            | prop::num::f64::ZERO
            | prop::num::f64::POSITIVE
            | prop::num::f64::NEGATIVE
    }

    fn stats_record() -> impl Strategy<Value = StatsRecord> {
        (
            (
                ".{0,20}",
                ".{0,20}",
                any::<u64>(),
                any::<i64>(),
                any::<i64>(),
                any::<i64>(),
                any::<u32>(),
                any::<u32>(),
                any::<bool>(),
            ),
            (
                finite(),
                any::<[u8; 4]>(),
                finite(),
                finite(),
                finite(),
                finite(),
                finite(),
            ),
            (any::<[u32; 16]>(), finite(), any::<[bool; 3]>(), finite()),
        )
            .prop_map(|(ids, luma, rest)| {
                let (camera, session, seq, pts_90k, capture_ms, decoded_ms, width, height, key) =
                    ids;
                let (y_avg, [y_min, y_max, y_low, y_high], y_std, y_dif, u_avg, v_avg, sat_avg) =
                    luma;
                let (y_hist, sharpness, [black, frozen, scene_cut], scene_score) = rest;
                StatsRecord {
                    camera,
                    session,
                    seq,
                    pts_90k,
                    capture_ms,
                    decoded_ms,
                    width,
                    height,
                    keyframe: key,
                    y_avg,
                    y_min,
                    y_max,
                    y_low,
                    y_high,
                    y_std,
                    y_dif,
                    u_avg,
                    v_avg,
                    sat_avg,
                    y_hist,
                    sharpness,
                    black,
                    frozen,
                    scene_score,
                    scene_cut,
                }
            })
    }

    /// Field names of both records, so that generated objects get past the first key.
    const FIELD_NAMES: [&str; 24] = [
        "camera",
        "session",
        "seq",
        "pts_90k",
        "capture_ms",
        "decoded_ms",
        "width",
        "height",
        "keyframe",
        "y_avg",
        "y_min",
        "y_hist",
        "sharpness",
        "scene_cut",
        "id",
        "url",
        "transport",
        "enabled",
        "sampling",
        "every_nth_gop",
        "credentials",
        "username",
        "password_env",
        "password_file",
    ];

    /// Arbitrary JSON, with object keys mostly taken from the records' field names.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec![
                "tcp",
                "udp",
                "all",
                "keyframes",
                "cam-1",
                "rtsp://h/s"
            ])
            .prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        let key = prop_oneof![
            4 => prop::sample::select(FIELD_NAMES.to_vec()).prop_map(str::to_owned),
            1 => "[a-z_]{0,8}",
        ];
        leaf.prop_recursive(3, 48, 16, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..16).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..16)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    fn credentials() -> impl Strategy<Value = CredentialsRef> {
        (
            ".{0,8}",
            prop::option::of("[A-Z_]{0,8}"),
            prop::option::of("/?[a-z/]{0,12}"),
        )
            .prop_map(|(username, password_env, password_file)| CredentialsRef {
                username,
                password_env,
                password_file,
            })
    }

    /// Specs with ids and URLs that are often, but not always, acceptable.
    fn camera_spec() -> impl Strategy<Value = CameraSpec> {
        let id = prop_oneof!["[A-Za-z0-9._-]{1,64}", "[A-Za-z0-9._ /-]{0,70}", ".{0,8}"];
        let scheme = prop::sample::select(vec!["rtsp://", "rtsps://", "http://", "rtsp:", ""]);
        let url = (scheme, "[a-z0-9:@./?#]{0,24}").prop_map(|(s, rest)| format!("{s}{rest}"));
        (
            (id, url),
            (
                prop_oneof![Just(Transport::Tcp), Just(Transport::Udp)],
                any::<bool>(),
                prop_oneof![Just(Sampling::All), Just(Sampling::Keyframes)],
                prop_oneof![0u32..=10_001, any::<u32>()],
                prop::option::of(credentials()),
                prop::option::of(prop_oneof![
                    Just(AnalysisRate::Off),
                    Just(AnalysisRate::Keyframes),
                    (2u32..100).prop_map(AnalysisRate::EveryNth),
                    (1u32..100_000).prop_map(AnalysisRate::PerSecondMilli),
                ]),
            ),
        )
            .prop_map(
                |(
                    (id, url),
                    (transport, enabled, sampling, every_nth_gop, credentials, detect),
                )| {
                    CameraSpec {
                        id,
                        url,
                        transport,
                        enabled,
                        sampling,
                        every_nth_gop,
                        credentials,
                        detect,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn stats_records_round_trip_through_json(record in stats_record()) {
            let json = serde_json::to_string(&record).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let parsed: StatsRecord =
                serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
            prop_assert_eq!(parsed, record);
        }

        #[test]
        fn detections_records_round_trip_through_json(
            seq in any::<u64>(), pts in any::<i64>(),
            objects in prop::collection::vec(
                (0u16..80, 0f32..=1.0, 0f32..0.5, 0f32..0.5, 0.5f32..=1.0, 0.5f32..=1.0), 0..5),
        ) {
            let record = DetectionsRecord {
                camera: "c".into(), session: "s".into(), seq, pts_90k: pts, capture_ms: 1,
                detected_ms: 2, width: 640, height: 360, model: "nanodet-g-416".into(),
                objects: objects.into_iter().map(|(class, score, x0, y0, x1, y1)| DetectedObject {
                    label: "person".into(), class, score, bbox: BoundingBox { x0, y0, x1, y1 },
                }).collect(),
            };
            let json = serde_json::to_string(&record).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let parsed: DetectionsRecord =
                serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
            prop_assert_eq!(parsed, record);
        }

        #[test]
        fn records_parse_or_fail_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = serde_json::from_slice::<StatsRecord>(&bytes);
            let _ = serde_json::from_slice::<CameraSpec>(&bytes);
        }

        #[test]
        fn records_parse_or_fail_on_any_json(value in json()) {
            let text = value.to_string();
            let _ = serde_json::from_str::<StatsRecord>(&text);
            if let Ok(spec) = serde_json::from_str::<CameraSpec>(&text) {
                let _ = spec.validate();
                let _ = spec.url_has_password();
            }
        }

        #[test]
        fn accepted_specs_have_a_valid_id_and_an_rtsp_url(spec in camera_spec()) {
            let json = serde_json::to_string(&spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let parsed: CameraSpec =
                serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
            prop_assert_eq!(&parsed, &spec);
            let _ = parsed.url_has_password();
            if parsed.validate().is_ok() {
                prop_assert!(validate_camera_id(&parsed.id).is_ok());
                let rest = parsed
                    .url
                    .strip_prefix("rtsp://")
                    .or_else(|| parsed.url.strip_prefix("rtsps://"));
                prop_assert!(rest.is_some_and(|r| !r.is_empty()), "{}", parsed.url);
                prop_assert!((1..=10_000).contains(&parsed.every_nth_gop));
            }
        }
    }
}

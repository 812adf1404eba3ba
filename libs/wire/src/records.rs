//! JSON records on the stats and control topics.

use serde::{Deserialize, Serialize};

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
    fn long_ids_are_rejected() {
        assert!(validate_camera_id(&"a".repeat(64)).is_ok());
        assert!(validate_camera_id(&"a".repeat(65)).is_err());
        assert!(validate_camera_id("").is_err());
    }
}

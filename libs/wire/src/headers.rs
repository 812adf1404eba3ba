//! Frame metadata carried in Kafka record headers.
//!
//! The value of a `framewire.frames` record is the access unit itself; everything a
//! consumer needs to know about it travels in `fw-*` headers, as UTF-8 text so that
//! any Kafka tool can show them.

use thiserror::Error;

/// Header names of the frames topic (and, for `traceparent`, of every topic).
pub mod header {
    /// Camera id (same as the record key).
    pub const CAMERA: &str = "fw-camera";
    /// Id of the RTSP session; changes on every (re)connect.
    pub const SESSION: &str = "fw-session";
    /// Frame number within the session, from 0.
    pub const SEQ: &str = "fw-seq";
    /// Media timestamp at 90 kHz (RTP clock, extended to 64 bits).
    pub const PTS_90K: &str = "fw-pts-90k";
    /// Wall clock at receipt, ms since the Unix epoch.
    pub const CAPTURE_MS: &str = "fw-capture-ms";
    /// `1` for an IDR access unit (which carries SPS and PPS inline), else `0`.
    pub const KEYFRAME: &str = "fw-keyframe";
    /// Codec of the access unit; `h264`.
    pub const CODEC: &str = "fw-codec";
    /// Picture width in pixels, on keyframes.
    pub const WIDTH: &str = "fw-width";
    /// Picture height in pixels, on keyframes.
    pub const HEIGHT: &str = "fw-height";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// Why a record was sent to the dead-letter topic.
    pub const DLQ_REASON: &str = "fw-dlq-reason";
    /// Topic a dead-letter record came from.
    pub const DLQ_SOURCE: &str = "fw-dlq-source";
}

/// The codec name Framewire publishes today.
pub const CODEC_H264: &str = "h264";

/// Metadata of one access unit on the frames topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameMeta {
    /// Camera id.
    pub camera: String,
    /// RTSP session id (new on every connect).
    pub session: String,
    /// Frame number within the session, from 0.
    pub seq: u64,
    /// Media timestamp at 90 kHz.
    pub pts_90k: i64,
    /// Wall clock at receipt, ms since the Unix epoch.
    pub capture_ms: i64,
    /// Whether this is an IDR access unit.
    pub keyframe: bool,
    /// Codec name (`h264`).
    pub codec: String,
    /// Picture size, present on keyframes.
    pub dimensions: Option<(u32, u32)>,
}

/// A frames-topic record whose headers do not follow the contract.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    /// A required header is absent.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// A header is present but its value does not parse.
    #[error("header {name} has an invalid value {value:?}")]
    Invalid {
        /// Header name.
        name: &'static str,
        /// The value as received (lossy UTF-8).
        value: String,
    },
}

impl FrameMeta {
    /// The headers for this frame, in contract order (without `traceparent`).
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (header::CAMERA, self.camera.clone()),
            (header::SESSION, self.session.clone()),
            (header::SEQ, self.seq.to_string()),
            (header::PTS_90K, self.pts_90k.to_string()),
            (header::CAPTURE_MS, self.capture_ms.to_string()),
            (
                header::KEYFRAME,
                if self.keyframe { "1" } else { "0" }.to_owned(),
            ),
            (header::CODEC, self.codec.clone()),
        ];
        if let Some((w, h)) = self.dimensions {
            out.push((header::WIDTH, w.to_string()));
            out.push((header::HEIGHT, h.to_string()));
        }
        out
    }

    /// Parses the metadata from a record's headers, given a lookup by header name.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Result<Self, HeaderError> {
        let text = |name: &'static str| -> Result<&'a str, HeaderError> {
            let raw = get(name).ok_or(HeaderError::Missing(name))?;
            std::str::from_utf8(raw).map_err(|_| HeaderError::Invalid {
                name,
                value: String::from_utf8_lossy(raw).into_owned(),
            })
        };
        fn num<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, HeaderError> {
            v.parse().map_err(|_| HeaderError::Invalid {
                name,
                value: v.to_owned(),
            })
        }
        let keyframe = match text(header::KEYFRAME)? {
            "1" => true,
            "0" => false,
            other => {
                return Err(HeaderError::Invalid {
                    name: header::KEYFRAME,
                    value: other.to_owned(),
                });
            }
        };
        let dimensions = match (get(header::WIDTH), get(header::HEIGHT)) {
            (Some(_), Some(_)) => Some((
                num(header::WIDTH, text(header::WIDTH)?)?,
                num(header::HEIGHT, text(header::HEIGHT)?)?,
            )),
            _ => None,
        };
        Ok(FrameMeta {
            camera: text(header::CAMERA)?.to_owned(),
            session: text(header::SESSION)?.to_owned(),
            seq: num(header::SEQ, text(header::SEQ)?)?,
            pts_90k: num(header::PTS_90K, text(header::PTS_90K)?)?,
            capture_ms: num(header::CAPTURE_MS, text(header::CAPTURE_MS)?)?,
            keyframe,
            codec: text(header::CODEC)?.to_owned(),
            dimensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FrameMeta {
        FrameMeta {
            camera: "cam-1".into(),
            session: "s1".into(),
            seq: 7,
            pts_90k: 123_456,
            capture_ms: 1_700_000_000_000,
            keyframe: true,
            codec: CODEC_H264.into(),
            dimensions: Some((640, 360)),
        }
    }

    fn lookup<'a>(h: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<&'a [u8]> {
        move |name| {
            h.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        }
    }

    #[test]
    fn headers_round_trip() {
        let meta = sample();
        let h = meta.to_headers();
        assert_eq!(FrameMeta::from_headers(lookup(&h)), Ok(meta));
    }

    #[test]
    fn non_keyframes_carry_no_dimensions() {
        let meta = FrameMeta {
            keyframe: false,
            dimensions: None,
            ..sample()
        };
        let h = meta.to_headers();
        assert!(!h.iter().any(|(n, _)| *n == header::WIDTH));
        assert_eq!(FrameMeta::from_headers(lookup(&h)), Ok(meta));
    }

    #[test]
    fn missing_and_invalid_headers_are_named() {
        let mut h = sample().to_headers();
        h.retain(|(n, _)| *n != header::SEQ);
        assert_eq!(
            FrameMeta::from_headers(lookup(&h)),
            Err(HeaderError::Missing(header::SEQ))
        );
        let mut h = sample().to_headers();
        h[5].1 = "yes".into();
        let err = FrameMeta::from_headers(lookup(&h)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "header fw-keyframe has an invalid value \"yes\""
        );
    }
}

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
    /// The camera's object-detection rate when its spec sets one (an
    /// [`AnalysisRate`](crate::AnalysisRate) in text form); absent: the worker's default.
    pub const DETECT: &str = "fw-detect";
    /// Id of the RTSP session; changes on every (re)connect.
    pub const SESSION: &str = "fw-session";
    /// Frame number within the session, from 0.
    pub const SEQ: &str = "fw-seq";
    /// Media timestamp at 90 kHz (RTP clock, extended to 64 bits).
    pub const PTS_90K: &str = "fw-pts-90k";
    /// Wall clock at receipt, ms since the Unix epoch.
    pub const CAPTURE_MS: &str = "fw-capture-ms";
    /// `1` for a keyframe — an H.264 IDR access unit (SPS and PPS inline) or an H.265 IRAP
    /// access unit (VPS, SPS and PPS inline) — else `0`.
    pub const KEYFRAME: &str = "fw-keyframe";
    /// Codec of the access unit: `h264` or `h265`.
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

/// `fw-codec` of H.264 access units.
pub const CODEC_H264: &str = "h264";
/// `fw-codec` of H.265 (HEVC) access units.
pub const CODEC_H265: &str = "h265";

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
    /// Whether this is a keyframe (H.264 IDR, H.265 IRAP).
    pub keyframe: bool,
    /// Codec name (`h264`, `h265`).
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
    /// A header is present but its value does not parse or is outside the contract.
    #[error("header {name} has an invalid value {value:?}")]
    Invalid {
        /// Header name.
        name: &'static str,
        /// The value as received (lossy UTF-8), cut to [`HeaderError::MAX_VALUE_CHARS`].
        value: String,
    },
}

impl HeaderError {
    /// Most characters of a bad value kept in [`HeaderError::Invalid`]: the value ends up
    /// in logs and dead-letter headers, and a crafted header must not blow those up.
    pub const MAX_VALUE_CHARS: usize = 80;

    /// An [`HeaderError::Invalid`] for `name` holding at most [`Self::MAX_VALUE_CHARS`]
    /// characters of `raw`; a cut value ends in `…`.
    fn invalid(name: &'static str, raw: &[u8]) -> Self {
        // Each character of the lossy text comes from at least one byte, so this many
        // bytes decide the first MAX_VALUE_CHARS + 1 characters whatever the encoding.
        let enough_bytes = (Self::MAX_VALUE_CHARS + 1) * 4;
        let text = String::from_utf8_lossy(&raw[..raw.len().min(enough_bytes)]);
        let value = if text.chars().count() > Self::MAX_VALUE_CHARS {
            let mut cut: String = text.chars().take(Self::MAX_VALUE_CHARS - 1).collect();
            cut.push('…');
            cut
        } else {
            text.into_owned()
        };
        HeaderError::Invalid { name, value }
    }
}

/// Longest `fw-session` value accepted (ingest writes 16 hex digits).
const MAX_SESSION_LEN: usize = 64;
/// Longest `fw-codec` value accepted.
const MAX_CODEC_LEN: usize = 16;

/// Whether `value` is 1 to `max_len` characters, each accepted by `allowed`.
fn is_token(value: &str, max_len: usize, allowed: impl Fn(char) -> bool) -> bool {
    (1..=max_len).contains(&value.len()) && value.chars().all(allowed)
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
    ///
    /// Headers are checked in contract order and the first bad one is reported. The
    /// camera id must pass [`validate_camera_id`](crate::validate_camera_id), the session
    /// be 1-64 characters of `A-Z a-z 0-9 . _ -` and the codec 1-16 characters of
    /// `a-z 0-9`: services put these in metric labels and log lines.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Result<Self, HeaderError> {
        fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, HeaderError> {
            value
                .parse()
                .map_err(|_| HeaderError::invalid(name, value.as_bytes()))
        }
        let text = |name: &'static str| -> Result<&'a str, HeaderError> {
            let raw = get(name).ok_or(HeaderError::Missing(name))?;
            std::str::from_utf8(raw).map_err(|_| HeaderError::invalid(name, raw))
        };
        let checked = |name: &'static str, valid: &dyn Fn(&str) -> bool| {
            let value = text(name)?;
            if valid(value) {
                Ok(value.to_owned())
            } else {
                Err(HeaderError::invalid(name, value.as_bytes()))
            }
        };
        let camera = checked(header::CAMERA, &|v| crate::validate_camera_id(v).is_ok())?;
        let session = checked(header::SESSION, &|v| {
            is_token(v, MAX_SESSION_LEN, |c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
            })
        })?;
        let seq = parse(header::SEQ, text(header::SEQ)?)?;
        let pts_90k = parse(header::PTS_90K, text(header::PTS_90K)?)?;
        let capture_ms = parse(header::CAPTURE_MS, text(header::CAPTURE_MS)?)?;
        let keyframe = match text(header::KEYFRAME)? {
            "1" => true,
            "0" => false,
            other => return Err(HeaderError::invalid(header::KEYFRAME, other.as_bytes())),
        };
        let codec = checked(header::CODEC, &|v| {
            is_token(v, MAX_CODEC_LEN, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit()
            })
        })?;
        let dimensions = match (get(header::WIDTH), get(header::HEIGHT)) {
            (Some(_), Some(_)) => Some((
                parse(header::WIDTH, text(header::WIDTH)?)?,
                parse(header::HEIGHT, text(header::HEIGHT)?)?,
            )),
            _ => None,
        };
        Ok(FrameMeta {
            camera,
            session,
            seq,
            pts_90k,
            capture_ms,
            keyframe,
            codec,
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

    /// `sample()`'s headers with `name` set to `value`.
    fn with(name: &'static str, value: &str) -> Vec<(&'static str, String)> {
        let mut h = sample().to_headers();
        for (n, v) in &mut h {
            if *n == name {
                *v = value.to_owned();
            }
        }
        h
    }

    #[test]
    fn missing_and_invalid_headers_are_named() {
        let mut h = sample().to_headers();
        h.retain(|(n, _)| *n != header::SEQ);
        assert_eq!(
            FrameMeta::from_headers(lookup(&h)),
            Err(HeaderError::Missing(header::SEQ))
        );
        let err = FrameMeta::from_headers(lookup(&with(header::KEYFRAME, "yes"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "header fw-keyframe has an invalid value \"yes\""
        );
        let err = FrameMeta::from_headers(lookup(&with(header::SEQ, "-1"))).unwrap_err();
        assert_eq!(err.to_string(), "header fw-seq has an invalid value \"-1\"");
    }

    #[test]
    fn camera_session_and_codec_are_bounded() {
        let bad = [
            (header::CAMERA, ""),
            (header::CAMERA, "gate 1"),
            (header::CAMERA, "cam\nFAKE log line"),
            (header::CAMERA, "cam\",x=\"1"),
            (header::CAMERA, "kaméra"),
            (header::SESSION, ""),
            (header::SESSION, "s 1"),
            (header::SESSION, "s/1"),
            (header::CODEC, ""),
            (header::CODEC, "H264"),
            (header::CODEC, "h.264"),
            (header::CODEC, "h264h264h264h2645"),
        ];
        for (name, value) in bad {
            assert_eq!(
                FrameMeta::from_headers(lookup(&with(name, value))),
                Err(HeaderError::Invalid {
                    name,
                    value: value.to_owned()
                }),
                "{name}: {value:?}"
            );
        }
        let long_camera = "c".repeat(crate::MAX_CAMERA_ID_LEN + 1);
        let long_session = "s".repeat(MAX_SESSION_LEN + 1);
        for (name, value) in [
            (header::CAMERA, long_camera),
            (header::SESSION, long_session),
        ] {
            let err = FrameMeta::from_headers(lookup(&with(name, &value))).unwrap_err();
            assert!(
                matches!(err, HeaderError::Invalid { name: n, .. } if n == name),
                "{err}"
            );
        }
        let good = [
            (header::CAMERA, "A-z_0.9"),
            (header::SESSION, "0123456789abcdef"),
            (header::SESSION, &"S.-_9".repeat(13)[..MAX_SESSION_LEN]),
            (header::CODEC, "h265"),
            (header::CODEC, "av1"),
        ];
        for (name, value) in good {
            assert!(
                FrameMeta::from_headers(lookup(&with(name, value))).is_ok(),
                "{name}: {value:?}"
            );
        }
    }

    #[test]
    fn bad_values_are_cut_for_logs() {
        let max = HeaderError::MAX_VALUE_CHARS;
        let exact = "x".repeat(max);
        assert_eq!(
            HeaderError::invalid(header::SEQ, exact.as_bytes()),
            HeaderError::Invalid {
                name: header::SEQ,
                value: exact.clone()
            }
        );
        // 1 MB of multi-byte characters: the stored value is `max` characters, the last `…`.
        let huge = "ж".repeat(500_000);
        let err = FrameMeta::from_headers(lookup(&with(header::CAMERA, &huge))).unwrap_err();
        let HeaderError::Invalid { name, value } = &err else {
            panic!("{err}");
        };
        assert_eq!(*name, header::CAMERA);
        assert_eq!(value.chars().count(), max);
        assert!(value.starts_with("жжж") && value.ends_with('…'), "{value}");
        assert!(err.to_string().len() < 4 * max + 50);
        // Invalid UTF-8 is kept lossily, still cut.
        let raw = [0xffu8; 1000];
        let err = HeaderError::invalid(header::SESSION, &raw);
        let HeaderError::Invalid { value, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(value.chars().count(), max);
        assert!(value.starts_with('\u{fffd}'));
        let bytes: &[(&str, &[u8])] = &[(header::SESSION, &[b's', 0xc3])];
        let get = |name: &str| bytes.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let mut h = sample().to_headers();
        h.retain(|(n, _)| *n != header::SESSION);
        let err = FrameMeta::from_headers(|name| lookup(&h)(name).or_else(|| get(name)));
        assert_eq!(
            err,
            Err(HeaderError::Invalid {
                name: header::SESSION,
                value: "s\u{fffd}".into()
            })
        );
    }
}

/// Properties of the header mapping over generated metadata and arbitrary header maps.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Every header `from_headers` reads.
    const READ: [&str; 9] = [
        header::CAMERA,
        header::SESSION,
        header::SEQ,
        header::PTS_90K,
        header::CAPTURE_MS,
        header::KEYFRAME,
        header::CODEC,
        header::WIDTH,
        header::HEIGHT,
    ];

    fn valid_meta() -> impl Strategy<Value = FrameMeta> {
        (
            "[A-Za-z0-9._-]{1,64}",
            "[A-Za-z0-9._-]{1,64}",
            any::<u64>(),
            any::<i64>(),
            any::<i64>(),
            "[a-z0-9]{1,16}",
            prop_oneof![
                Just((false, None)),
                Just((true, None)),
                any::<(u32, u32)>().prop_map(|d| (true, Some(d))),
            ],
        )
            .prop_map(
                |(camera, session, seq, pts_90k, capture_ms, codec, (keyframe, dimensions))| {
                    FrameMeta {
                        camera,
                        session,
                        seq,
                        pts_90k,
                        capture_ms,
                        keyframe,
                        codec,
                        dimensions,
                    }
                },
            )
    }

    /// Header names: the real ones (read or not by `from_headers`) and junk.
    fn header_name() -> impl Strategy<Value = String> {
        let mut known: Vec<String> = READ.iter().map(|n| (*n).to_owned()).collect();
        known.extend(
            [header::TRACEPARENT, header::DLQ_REASON, header::DLQ_SOURCE].map(str::to_owned),
        );
        prop_oneof![
            4 => prop::sample::select(known),
            1 => "[a-zA-Z-]{0,12}",
        ]
    }

    /// Header values: plausible text (numbers, flags, ids, codecs, near misses) and
    /// arbitrary bytes, including invalid UTF-8 and values far longer than any log line.
    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "-?[0-9]{1,22}".prop_map(String::into_bytes),
            prop::sample::select(vec!["0", "1", "h264", "yes", ""])
                .prop_map(|s| s.as_bytes().to_vec()),
            "[A-Za-z0-9._ \n\"-]{0,70}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..40),
            (any::<u8>(), 81usize..2000).prop_map(|(b, n)| vec![b; n]),
        ]
    }

    /// Random entries first (the lookup takes the first match, so they override), then
    /// the headers of a valid frame, or none.
    fn header_map() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
        (
            prop::collection::vec((header_name(), header_value()), 0..8),
            prop::option::of(valid_meta()),
        )
            .prop_map(|(mut entries, meta)| {
                if let Some(meta) = meta {
                    entries.extend(
                        meta.to_headers()
                            .into_iter()
                            .map(|(n, v)| (n.to_owned(), v.into_bytes())),
                    );
                }
                entries
            })
    }

    fn lookup<'a>(entries: &'a [(String, Vec<u8>)]) -> impl Fn(&str) -> Option<&'a [u8]> {
        move |name| entries.iter().find(|(n, _)| n == name).map(|(_, v)| &v[..])
    }

    proptest! {
        #[test]
        fn valid_metadata_round_trips(meta in valid_meta()) {
            let headers = meta.to_headers();
            let get = |name: &str| {
                headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_bytes())
            };
            prop_assert_eq!(FrameMeta::from_headers(get), Ok(meta));
        }

        #[test]
        fn any_header_map_parses_or_names_the_bad_header(entries in header_map()) {
            let get = lookup(&entries);
            match FrameMeta::from_headers(lookup(&entries)) {
                Ok(meta) => {
                    prop_assert!(crate::validate_camera_id(&meta.camera).is_ok());
                    prop_assert!((1..=MAX_SESSION_LEN).contains(&meta.session.len()));
                    prop_assert!((1..=MAX_CODEC_LEN).contains(&meta.codec.len()));
                    prop_assert_eq!(
                        meta.dimensions.is_some(),
                        get(header::WIDTH).is_some() && get(header::HEIGHT).is_some()
                    );
                }
                Err(HeaderError::Missing(name)) => {
                    prop_assert!(READ.contains(&name));
                    prop_assert!(get(name).is_none());
                }
                Err(HeaderError::Invalid { name, value }) => {
                    prop_assert!(READ.contains(&name));
                    prop_assert!(get(name).is_some());
                    prop_assert!(value.chars().count() <= HeaderError::MAX_VALUE_CHARS);
                }
            }
        }
    }
}

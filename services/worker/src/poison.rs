//! Poison input: records the worker cannot decode, and why.
//!
//! A record is checked before it reaches a decoder (cheap: a scan of NAL unit headers),
//! and a decoder error makes it poison too. Poison is counted per camera and reason,
//! copied to the DLQ topic with the reason in `fw-dlq-reason`, and the camera resyncs at
//! its next keyframe. The reasons are the `reason` label values of
//! `framewire_worker_dlq_records_total` and the `fw-dlq-reason` header values.

use framewire_wire::FrameMeta;
use framewire_wire::annexb::{self, nal};

/// Why a record is poison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Missing or unparsable `fw-*` headers.
    BadHeaders,
    /// `fw-codec` is not `h264`.
    Codec,
    /// No payload, no Annex B start code, or no coded slice: a cut-off access unit.
    Truncated,
    /// A keyframe without SPS and PPS inline (the contract requires them).
    ParameterSets,
    /// Marked as a keyframe but carries no IDR slice.
    NotIdr,
    /// The decoder rejected it.
    Decode,
    /// Decoded, but the picture could not be measured (impossible plane sizes).
    BadPicture,
    /// A frame whose reference is missing: its GOP's keyframe (or an earlier frame of
    /// the GOP) never arrived, was poison, or the session's frames have a gap before it.
    MissingReference,
    /// The decoder took the access unit but never produced its picture.
    NoPicture,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 9] = [
        Reason::BadHeaders,
        Reason::Codec,
        Reason::Truncated,
        Reason::ParameterSets,
        Reason::NotIdr,
        Reason::Decode,
        Reason::BadPicture,
        Reason::MissingReference,
        Reason::NoPicture,
    ];

    /// The label / header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadHeaders => "bad_headers",
            Reason::Codec => "codec",
            Reason::Truncated => "truncated",
            Reason::ParameterSets => "parameter_sets",
            Reason::NotIdr => "not_idr",
            Reason::Decode => "decode",
            Reason::BadPicture => "bad_picture",
            Reason::MissingReference => "missing_reference",
            Reason::NoPicture => "no_picture",
        }
    }
}

/// The codec the worker decodes.
pub const CODEC: &str = "h264";

/// Checks an access unit against its headers before decoding.
pub fn check(meta: &FrameMeta, data: &[u8]) -> Result<(), Reason> {
    if !meta.codec.eq_ignore_ascii_case(CODEC) {
        return Err(Reason::Codec);
    }
    let mut slices = 0;
    let mut idr = false;
    for unit in annexb::nal_units(data) {
        match annexb::nal_type(unit) {
            Some(nal::SLICE) => slices += 1,
            Some(nal::IDR) => {
                slices += 1;
                idr = true;
            }
            _ => {}
        }
        // A slice NAL unit is at least a header byte and a first_mb_in_slice.
        if unit.len() < 2 {
            return Err(Reason::Truncated);
        }
    }
    if slices == 0 {
        return Err(Reason::Truncated);
    }
    if meta.keyframe {
        if !idr {
            return Err(Reason::NotIdr);
        }
        if !annexb::starts_with_parameter_sets(data) {
            return Err(Reason::ParameterSets);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(keyframe: bool, codec: &str) -> FrameMeta {
        FrameMeta {
            camera: "cam".into(),
            session: "s".into(),
            seq: 0,
            pts_90k: 0,
            capture_ms: 0,
            keyframe,
            codec: codec.into(),
            dimensions: None,
        }
    }

    const SPS: &[u8] = &[0, 0, 0, 1, 0x67, 0x4d, 0x00, 0x1e];
    const PPS: &[u8] = &[0, 0, 0, 1, 0x68, 0xee, 0x3c, 0x80];
    const IDR: &[u8] = &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00];
    const P: &[u8] = &[0, 0, 0, 1, 0x41, 0x9a, 0x00, 0x13];

    #[test]
    fn well_formed_access_units_pass() {
        assert_eq!(
            check(&meta(true, "h264"), &[SPS, PPS, IDR].concat()),
            Ok(())
        );
        assert_eq!(check(&meta(false, "H264"), P), Ok(()));
    }

    #[test]
    fn each_kind_of_poison_has_its_reason() {
        assert_eq!(check(&meta(false, "h265"), P), Err(Reason::Codec));
        assert_eq!(check(&meta(false, "h264"), &[]), Err(Reason::Truncated));
        assert_eq!(
            check(&meta(false, "h264"), &[0x41, 0x9a, 0x00]),
            Err(Reason::Truncated),
            "no start code"
        );
        assert_eq!(
            check(&meta(false, "h264"), &[0, 0, 1, 0x41]),
            Err(Reason::Truncated),
            "a slice cut after its header"
        );
        assert_eq!(
            check(&meta(false, "h264"), &[SPS, PPS].concat()),
            Err(Reason::Truncated),
            "no slice"
        );
        assert_eq!(check(&meta(true, "h264"), IDR), Err(Reason::ParameterSets));
        assert_eq!(
            check(&meta(true, "h264"), &[SPS, PPS, P].concat()),
            Err(Reason::NotIdr)
        );
    }
}

//! Poison input: records the worker cannot decode, and why.
//!
//! A record is checked before it reaches a decoder (cheap: a scan of NAL unit headers),
//! and a decoder error makes it poison too. Poison is counted per camera and reason,
//! copied to the DLQ topic with the reason in `fw-dlq-reason`, and the camera resyncs at
//! its next keyframe. The reasons are the `reason` label values of
//! `framewire_worker_dlq_records_total` and the `fw-dlq-reason` header values.

use framewire_decode::{Backend, Codec};
use framewire_wire::FrameMeta;
use framewire_wire::annexb::{self, h265, nal};

/// Why a record is poison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Missing or unparsable `fw-*` headers.
    BadHeaders,
    /// `fw-codec` names no codec Framewire knows (not `h264` or `h265`).
    Codec,
    /// `fw-codec` names a codec this worker's decoder backend does not decode (`h265` on
    /// openh264).
    UnsupportedCodec,
    /// No payload, no Annex B start code, or no coded slice: a cut-off access unit.
    Truncated,
    /// A keyframe without its parameter sets inline (the contract requires them: SPS and
    /// PPS for H.264, VPS, SPS and PPS for H.265).
    ParameterSets,
    /// Marked as a keyframe but carries no IDR slice (H.265: no IRAP slice).
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
    pub const ALL: [Reason; 10] = [
        Reason::BadHeaders,
        Reason::Codec,
        Reason::UnsupportedCodec,
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
            Reason::UnsupportedCodec => "unsupported_codec",
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

/// Checks an access unit against its headers before decoding, for a worker whose decoders
/// are `backend`; returns its codec.
pub fn check(meta: &FrameMeta, data: &[u8], backend: Backend) -> Result<Codec, Reason> {
    let codec = Codec::from_header(&meta.codec).ok_or(Reason::Codec)?;
    if !backend.decodes(codec) {
        return Err(Reason::UnsupportedCodec);
    }
    // A slice NAL unit is at least its header (1 byte, H.265: 2) and the first bits of its
    // slice header.
    let (slices, keyframe_slices) = match codec {
        Codec::H264 => count_slices(data, 2, |u| match annexb::nal_type(u) {
            Some(nal::SLICE) => Some(false),
            Some(nal::IDR) => Some(true),
            _ => None,
        })?,
        Codec::H265 => count_slices(data, 3, |u| {
            let t = h265::nal_type(u)?;
            h265::is_slice(t).then(|| h265::is_irap_type(t))
        })?,
    };
    if slices == 0 {
        return Err(Reason::Truncated);
    }
    if meta.keyframe {
        if keyframe_slices == 0 {
            return Err(Reason::NotIdr);
        }
        let inline = match codec {
            Codec::H264 => annexb::starts_with_parameter_sets(data),
            Codec::H265 => h265::starts_with_parameter_sets(data),
        };
        if !inline {
            return Err(Reason::ParameterSets);
        }
    }
    Ok(codec)
}

/// Counts the slice NAL units of an access unit and those of them where decoding can start;
/// `slice_kind` is `Some(starts)` for a slice, `None` for another unit. A slice shorter than
/// `min_slice_len` bytes was cut off.
fn count_slices(
    data: &[u8],
    min_slice_len: usize,
    slice_kind: impl Fn(&[u8]) -> Option<bool>,
) -> Result<(usize, usize), Reason> {
    let (mut slices, mut keyframe_slices) = (0, 0);
    for unit in annexb::nal_units(data) {
        if let Some(starts) = slice_kind(unit) {
            if unit.len() < min_slice_len {
                return Err(Reason::Truncated);
            }
            slices += 1;
            keyframe_slices += usize::from(starts);
        }
    }
    Ok((slices, keyframe_slices))
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

    const VPS5: &[u8] = &[0, 0, 0, 1, 0x40, 0x01, 0x0c, 0x01];
    const SPS5: &[u8] = &[0, 0, 0, 1, 0x42, 0x01, 0x01, 0x01];
    const PPS5: &[u8] = &[0, 0, 0, 1, 0x44, 0x01, 0xc1, 0x72];
    const IDR5: &[u8] = &[0, 0, 0, 1, 0x26, 0x01, 0xaf, 0x06];
    const CRA5: &[u8] = &[0, 0, 0, 1, 0x2a, 0x01, 0xaf, 0x06];
    const TRAIL5: &[u8] = &[0, 0, 0, 1, 0x02, 0x01, 0xd0, 0x0a];

    const BOTH: Backend = Backend::Ffmpeg;

    #[test]
    fn well_formed_access_units_pass() {
        let h264 = Backend::OpenH264;
        assert_eq!(
            check(&meta(true, "h264"), &[SPS, PPS, IDR].concat(), h264),
            Ok(Codec::H264)
        );
        assert_eq!(check(&meta(false, "H264"), P, h264), Ok(Codec::H264));
        assert_eq!(
            check(
                &meta(true, "h265"),
                &[VPS5, SPS5, PPS5, IDR5].concat(),
                BOTH
            ),
            Ok(Codec::H265)
        );
        assert_eq!(
            check(
                &meta(true, "h265"),
                &[VPS5, SPS5, PPS5, CRA5].concat(),
                BOTH
            ),
            Ok(Codec::H265),
            "a CRA picture is a keyframe too"
        );
        assert_eq!(check(&meta(false, "h265"), TRAIL5, BOTH), Ok(Codec::H265));
    }

    #[test]
    fn each_kind_of_poison_has_its_reason() {
        let b = Backend::OpenH264;
        assert_eq!(check(&meta(false, "vp8"), P, b), Err(Reason::Codec));
        assert_eq!(check(&meta(false, "vp8"), P, BOTH), Err(Reason::Codec));
        assert_eq!(
            check(&meta(false, "h265"), TRAIL5, b),
            Err(Reason::UnsupportedCodec)
        );
        assert_eq!(check(&meta(false, "h264"), &[], b), Err(Reason::Truncated));
        assert_eq!(
            check(&meta(false, "h264"), &[0x41, 0x9a, 0x00], b),
            Err(Reason::Truncated),
            "no start code"
        );
        assert_eq!(
            check(&meta(false, "h264"), &[0, 0, 1, 0x41], b),
            Err(Reason::Truncated),
            "a slice cut after its header"
        );
        assert_eq!(
            check(&meta(false, "h264"), &[SPS, PPS].concat(), b),
            Err(Reason::Truncated),
            "no slice"
        );
        assert_eq!(
            check(&meta(true, "h264"), IDR, b),
            Err(Reason::ParameterSets)
        );
        assert_eq!(
            check(&meta(true, "h264"), &[SPS, PPS, P].concat(), b),
            Err(Reason::NotIdr)
        );
        assert_eq!(
            check(&meta(false, "h265"), &[0, 0, 1, 0x02, 0x01], BOTH),
            Err(Reason::Truncated),
            "an H.265 slice cut after its header"
        );
        assert_eq!(
            check(&meta(true, "h265"), &[SPS5, PPS5, IDR5].concat(), BOTH),
            Err(Reason::ParameterSets),
            "no VPS"
        );
        assert_eq!(
            check(
                &meta(true, "h265"),
                &[VPS5, SPS5, PPS5, TRAIL5].concat(),
                BOTH
            ),
            Err(Reason::NotIdr)
        );
        assert_eq!(
            check(&meta(true, "h265"), &[SPS, PPS, IDR].concat(), BOTH),
            Err(Reason::Truncated),
            "H.264 bytes read as H.265 hold no slice"
        );
    }
}

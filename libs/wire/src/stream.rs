//! A clip file — an Annex B elementary stream of H.264 or H.265 — as the records ingest
//! would publish from it: access units in decode order from the first keyframe, each
//! keyframe led by the parameter sets that make it decodable on its own, flagged and
//! sized as `fw-keyframe`, `fw-width` and `fw-height` say.
//!
//! Ingest gets its access units already framed by the RTSP depacketizer; the load
//! generator and the benchmarks replay encoded files, so they find the boundaries here
//! (H.264 §7.4.1.2.3, H.265 §7.4.2.4.4): a new access unit starts at a delimiter, a
//! parameter set or a prefix SEI that follows a picture's slices, or at the first slice
//! of the next picture. Encoders write parameter sets only on some keyframes (x265: on
//! every IRAP, x264: on every IDR, others once); the latest ones seen are put in front of
//! every keyframe that lacks them, as retina does for ingest.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::annexb::{self, h265, nal};
use crate::headers::{CODEC_H264, CODEC_H265};

/// A video codec Framewire carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

/// A codec name that is neither `h264` nor `h265`.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{0:?} is not a codec (h264, h265)")]
pub struct UnknownCodec(pub String);

impl Codec {
    /// Every codec, in the order of their names.
    pub const ALL: [Codec; 2] = [Codec::H264, Codec::H265];

    /// The `fw-codec` header value: `h264` or `h265`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => CODEC_H264,
            Codec::H265 => CODEC_H265,
        }
    }

    /// Tells the codec from the first NAL unit of an elementary stream: a delimiter, a
    /// parameter set or an SEI, whose headers differ between the two codecs. `None` when
    /// the stream starts with anything else (or is not Annex B).
    pub fn sniff(stream: &[u8]) -> Option<Codec> {
        match annexb::nal_units(stream).next()? {
            // H.265: VPS, SPS, PPS, AUD or prefix SEI of layer 0, temporal id 0.
            [0x40 | 0x42 | 0x44 | 0x46 | 0x4e, 0x01, ..] => Some(Codec::H265),
            // H.264: SEI or AUD (nal_ref_idc 0), SPS or PPS (nal_ref_idc not 0).
            [0x06 | 0x09, ..] => Some(Codec::H264),
            [b, ..] if matches!(b & 0x9f, 0x07 | 0x08) && b & 0x60 != 0 => Some(Codec::H264),
            _ => None,
        }
    }

    /// The `nal_unit_type` of a NAL unit of this codec.
    pub fn nal_type(self, unit: &[u8]) -> Option<u8> {
        match self {
            Codec::H264 => annexb::nal_type(unit),
            Codec::H265 => annexb::h265::nal_type(unit),
        }
    }

    /// Whether an access unit is a keyframe: an H.264 IDR, an H.265 IRAP picture.
    pub fn is_keyframe(self, au: &[u8]) -> bool {
        match self {
            Codec::H264 => annexb::is_idr(au),
            Codec::H265 => annexb::h265::is_irap(au),
        }
    }

    /// Whether a keyframe starts (after an optional delimiter) with every parameter set
    /// it needs: SPS, PPS (H.264); VPS, SPS, PPS (H.265).
    pub fn starts_with_parameter_sets(self, au: &[u8]) -> bool {
        match self {
            Codec::H264 => annexb::starts_with_parameter_sets(au),
            Codec::H265 => annexb::h265::starts_with_parameter_sets(au),
        }
    }

    /// The picture size after cropping, from the first SPS of an access unit.
    pub fn picture_size(self, au: &[u8]) -> Option<(u32, u32)> {
        let sps = annexb::nal_units(au).find(|u| self.parameter_set(u) == Some(Self::SPS))?;
        match self {
            Codec::H264 => crate::sps::h264(sps)?.size,
            Codec::H265 => crate::sps::h265_size(sps),
        }
    }

    /// Where a parameter set goes in front of a keyframe (H.264 has no VPS).
    const VPS: usize = 0;
    const SPS: usize = 1;
    const PPS: usize = 2;

    /// Which parameter set a NAL unit is ([`Self::VPS`], [`Self::SPS`], [`Self::PPS`]).
    fn parameter_set(self, unit: &[u8]) -> Option<usize> {
        match (self, self.nal_type(unit)?) {
            (Codec::H264, nal::SPS) | (Codec::H265, h265::nal::SPS) => Some(Self::SPS),
            (Codec::H264, nal::PPS) | (Codec::H265, h265::nal::PPS) => Some(Self::PPS),
            (Codec::H265, h265::nal::VPS) => Some(Self::VPS),
            _ => None,
        }
    }

    /// The parameter sets a keyframe needs, in order.
    fn needed(self) -> &'static [usize] {
        match self {
            Codec::H264 => &[Self::SPS, Self::PPS],
            Codec::H265 => &[Self::VPS, Self::SPS, Self::PPS],
        }
    }

    fn is_delimiter(self, unit: &[u8]) -> bool {
        match self {
            Codec::H264 => self.nal_type(unit) == Some(nal::AUD),
            Codec::H265 => self.nal_type(unit) == Some(h265::nal::AUD),
        }
    }

    /// Whether a NAL unit (header bytes first) is a slice of a picture.
    fn is_slice(self, unit: &[u8]) -> bool {
        match (self, self.nal_type(unit)) {
            (Codec::H264, Some(t)) => matches!(t, nal::SLICE | nal::IDR),
            (Codec::H265, Some(t)) => t <= 31,
            (_, None) => false,
        }
    }

    /// Whether a NAL unit that follows a picture's slices starts the next access unit: a
    /// delimiter, parameter set, prefix SEI or reserved type that comes first in an access
    /// unit, or the first slice of a picture (`first_mb_in_slice` = 0, or
    /// `first_slice_segment_in_pic_flag`: the first bit after the header).
    fn starts_access_unit(self, unit: &[u8]) -> bool {
        let Some(t) = self.nal_type(unit) else {
            return false;
        };
        let header = match self {
            Codec::H264 => 1,
            Codec::H265 => 2,
        };
        let first_slice = self.is_slice(unit) && unit.get(header).is_some_and(|b| b & 0x80 != 0);
        first_slice
            || match self {
                Codec::H264 => matches!(t, 6..=9 | 14..=18),
                Codec::H265 => matches!(t, 32..=35 | 39 | 41..=44 | 48..=55),
            }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Codec {
    type Err = UnknownCodec;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Codec::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownCodec(s.to_owned()))
    }
}

/// Splits an elementary stream into its access units (with their start codes), in
/// decode order. Bytes before the first start code belong to none.
pub fn split_access_units(stream: &[u8], codec: Codec) -> Vec<&[u8]> {
    let mut units = Vec::new();
    let (mut begin, mut has_picture) = (None::<usize>, false);
    let mut i = 0;
    while i + 3 < stream.len() {
        if stream[i..i + 3] != [0, 0, 1] {
            i += 1;
            continue;
        }
        let code = if i > 0 && stream[i - 1] == 0 {
            i - 1
        } else {
            i
        };
        // The NAL header and the first bits after it decide; 3 bytes cover both codecs.
        let head = &stream[i + 3..stream.len().min(i + 6)];
        if begin.is_none() || (has_picture && codec.starts_access_unit(head)) {
            if let Some(b) = begin {
                units.push(&stream[b..code]);
            }
            (begin, has_picture) = (Some(code), false);
        }
        has_picture |= codec.is_slice(head);
        i += 3;
    }
    if let Some(b) = begin {
        units.push(&stream[b..]);
    }
    units
}

/// One access unit as ingest would publish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// Annex B bytes; a keyframe starts with its parameter sets.
    pub data: Vec<u8>,
    /// `fw-keyframe`.
    pub keyframe: bool,
    /// `fw-width` and `fw-height`: on keyframes, from their SPS.
    pub dimensions: Option<(u32, u32)>,
}

/// Why a stream cannot be published as it is.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum StreamError {
    /// No access unit is a keyframe, so no record could start a session.
    #[error("no {0} keyframe in the stream")]
    NoKeyframe(Codec),
    /// A keyframe lacks a parameter set and none came before it.
    #[error("the {codec} keyframe at access unit {index} has no {missing} and none came before it")]
    MissingParameterSet {
        /// The codec.
        codec: Codec,
        /// Index of the access unit in the stream.
        index: usize,
        /// `VPS`, `SPS` or `PPS`.
        missing: &'static str,
    },
}

/// The access units of an elementary stream from its first keyframe on, each keyframe
/// led by its parameter sets (its own, else the latest before it) and sized from its SPS.
pub fn publishable_access_units(
    stream: &[u8],
    codec: Codec,
) -> Result<Vec<AccessUnit>, StreamError> {
    let mut latest: [Option<Vec<u8>>; 3] = Default::default();
    let mut out = Vec::new();
    for (index, au) in split_access_units(stream, codec).into_iter().enumerate() {
        for unit in annexb::nal_units(au) {
            if let Some(kind) = codec.parameter_set(unit) {
                latest[kind] = Some(unit.to_vec());
            }
        }
        if !codec.is_keyframe(au) {
            if !out.is_empty() {
                out.push(AccessUnit {
                    data: au.to_vec(),
                    keyframe: false,
                    dimensions: None,
                });
            }
            continue;
        }
        let data = if codec.starts_with_parameter_sets(au) {
            au.to_vec()
        } else {
            parameter_sets_first(au, codec, &latest, index)?
        };
        let dimensions = codec.picture_size(&data);
        out.push(AccessUnit {
            data,
            keyframe: true,
            dimensions,
        });
    }
    if out.is_empty() {
        return Err(StreamError::NoKeyframe(codec));
    }
    Ok(out)
}

/// A keyframe rebuilt as delimiter, parameter sets (its own, else `latest`), the rest in
/// order, with 4-byte start codes.
fn parameter_sets_first(
    au: &[u8],
    codec: Codec,
    latest: &[Option<Vec<u8>>; 3],
    index: usize,
) -> Result<Vec<u8>, StreamError> {
    let units: Vec<&[u8]> = annexb::nal_units(au).collect();
    let mut ordered: Vec<&[u8]> = units
        .iter()
        .copied()
        .filter(|u| codec.is_delimiter(u))
        .collect();
    for &kind in codec.needed() {
        let own: Vec<&[u8]> = units
            .iter()
            .copied()
            .filter(|u| codec.parameter_set(u) == Some(kind))
            .collect();
        if own.is_empty() {
            let Some(set) = latest[kind].as_deref() else {
                return Err(StreamError::MissingParameterSet {
                    codec,
                    index,
                    missing: ["VPS", "SPS", "PPS"][kind],
                });
            };
            ordered.push(set);
        } else {
            ordered.extend(own);
        }
    }
    ordered.extend(
        units
            .iter()
            .copied()
            .filter(|u| !codec.is_delimiter(u) && codec.parameter_set(u).is_none()),
    );
    let mut out = Vec::with_capacity(au.len() + ordered.iter().map(|u| u.len() + 4).sum::<usize>());
    for unit in ordered {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(unit);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annexb(units: &[&[u8]]) -> Vec<u8> {
        units
            .iter()
            .flat_map(|u| [&[0, 0, 0, 1][..], u].concat())
            .collect()
    }

    // H.264: SPS 630x354 (x264), PPS, SEI, IDR and P slices (first_mb_in_slice 0 has the
    // top bit set; a second slice of the same picture does not).
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xb4, 0x05, 0x01, 0x7f, 0x34, 0x46, 0x02, 0x20, 0x00, 0x00,
        0x03, 0x00, 0x20, 0x00, 0x00, 0x06, 0x41, 0xe2, 0xc5, 0xd4,
    ];
    const PPS: &[u8] = &[0x68, 0xee, 0x3c, 0x80];
    const SEI: &[u8] = &[0x06, 0x05, 0x01, 0x80];
    const AUD: &[u8] = &[0x09, 0xf0];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x21];
    const IDR_SECOND_SLICE: &[u8] = &[0x65, 0x0c, 0x84, 0x21];
    const P: &[u8] = &[0x41, 0x9a, 0x02];
    const P_SECOND_SLICE: &[u8] = &[0x41, 0x1a, 0x02];

    #[test]
    fn h264_access_units_split_at_first_slices_and_parameter_sets() {
        let stream = annexb(&[SPS, PPS, SEI, IDR, IDR_SECOND_SLICE, P, P_SECOND_SLICE, P]);
        let aus = split_access_units(&stream, Codec::H264);
        assert_eq!(
            aus,
            [
                &annexb(&[SPS, PPS, SEI, IDR, IDR_SECOND_SLICE])[..],
                &annexb(&[P, P_SECOND_SLICE])[..],
                &annexb(&[P])[..],
            ]
        );
        let with_delimiters = annexb(&[AUD, SPS, PPS, IDR, AUD, P, AUD, P]);
        assert_eq!(split_access_units(&with_delimiters, Codec::H264).len(), 3);
        assert!(split_access_units(b"no start code", Codec::H264).is_empty());
    }

    #[test]
    fn keyframes_get_their_parameter_sets_in_front() {
        // A keyframe led by its parameter sets stays as it is; one led by an SEI, or
        // without parameter sets, is rebuilt.
        let stream = annexb(&[P, SPS, PPS, SEI, IDR, P, SEI, IDR, P]);
        let aus = publishable_access_units(&stream, Codec::H264).expect("publishable");
        // The leading P-frame has no keyframe before it: dropped, as ingest does.
        assert_eq!(aus.len(), 4);
        assert_eq!(aus[0].data, annexb(&[SPS, PPS, SEI, IDR]));
        assert_eq!(aus[2].data, annexb(&[SPS, PPS, SEI, IDR]), "inserted");
        assert!(
            aus.iter()
                .map(|a| a.keyframe)
                .eq([true, false, true, false])
        );
        assert_eq!(aus[0].dimensions, Some((630, 354)));
        assert_eq!(aus[2].dimensions, Some((630, 354)));
        assert_eq!(aus[1].dimensions, None);
        let only_sei_first = annexb(&[AUD, SEI, SPS, PPS, IDR]);
        let aus = publishable_access_units(&only_sei_first, Codec::H264).expect("publishable");
        assert_eq!(aus[0].data, annexb(&[AUD, SPS, PPS, SEI, IDR]));
    }

    #[test]
    fn streams_that_cannot_start_a_session_are_named() {
        assert_eq!(
            publishable_access_units(&annexb(&[SPS, PPS, P, P]), Codec::H264),
            Err(StreamError::NoKeyframe(Codec::H264))
        );
        let err = publishable_access_units(&annexb(&[PPS, IDR]), Codec::H264).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the h264 keyframe at access unit 0 has no SPS and none came before it"
        );
    }

    // H.265: two-byte headers; VPS, SPS (x265, 630x354), PPS, prefix SEI, IDR_N_LP,
    // CRA, TRAIL_R slices, a suffix SEI (which stays with its picture).
    const VPS5: &[u8] = &[0x40, 0x01, 0x0c, 0x01];
    const SPS5: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3f, 0xa0, 0x05, 0x02, 0x01, 0x71, 0xcd, 0x11, 0x96, 0xe9, 0x29, 0x30, 0xbc,
        0x05, 0xa0, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0x21,
    ];
    const PPS5: &[u8] = &[0x44, 0x01, 0xc1, 0x72];
    const PREFIX_SEI5: &[u8] = &[0x4e, 0x01, 0x05, 0x10];
    const SUFFIX_SEI5: &[u8] = &[0x50, 0x01, 0x84, 0x10];
    const IDR5: &[u8] = &[0x28, 0x01, 0xaf, 0x1c];
    const CRA5: &[u8] = &[0x2a, 0x01, 0xac, 0x1c];
    const TRAIL5: &[u8] = &[0x02, 0x01, 0xd0, 0x2c];
    const TRAIL5_SECOND_SEGMENT: &[u8] = &[0x02, 0x01, 0x50, 0x2c];

    #[test]
    fn h265_streams_split_sniff_and_publish() {
        let stream = annexb(&[
            VPS5,
            SPS5,
            PPS5,
            PREFIX_SEI5,
            IDR5,
            SUFFIX_SEI5,
            TRAIL5,
            TRAIL5_SECOND_SEGMENT,
            PREFIX_SEI5,
            CRA5,
            TRAIL5,
        ]);
        assert_eq!(Codec::sniff(&stream), Some(Codec::H265));
        let aus = split_access_units(&stream, Codec::H265);
        assert_eq!(
            aus,
            [
                &annexb(&[VPS5, SPS5, PPS5, PREFIX_SEI5, IDR5, SUFFIX_SEI5])[..],
                &annexb(&[TRAIL5, TRAIL5_SECOND_SEGMENT])[..],
                &annexb(&[PREFIX_SEI5, CRA5])[..],
                &annexb(&[TRAIL5])[..],
            ]
        );
        let published = publishable_access_units(&stream, Codec::H265).expect("publishable");
        assert!(
            published
                .iter()
                .map(|a| a.keyframe)
                .eq([true, false, true, false])
        );
        // The CRA gets the VPS, SPS and PPS of the IDR before it, in that order.
        assert_eq!(
            published[2].data,
            annexb(&[VPS5, SPS5, PPS5, PREFIX_SEI5, CRA5])
        );
        assert!(Codec::H265.starts_with_parameter_sets(&published[2].data));
        assert_eq!(published[0].dimensions, Some((630, 354)));
        assert_eq!(published[2].dimensions, Some((630, 354)));
    }

    #[test]
    fn the_codec_is_told_by_the_first_unit_and_by_name() {
        assert_eq!(Codec::sniff(&annexb(&[SPS, PPS, IDR])), Some(Codec::H264));
        assert_eq!(Codec::sniff(&annexb(&[AUD, SPS])), Some(Codec::H264));
        assert_eq!(Codec::sniff(&annexb(&[SEI, SPS])), Some(Codec::H264));
        assert_eq!(
            Codec::sniff(&annexb(&[&[0x46, 0x01, 0x50]])),
            Some(Codec::H265)
        );
        assert_eq!(Codec::sniff(&annexb(&[P])), None, "a slice says nothing");
        assert_eq!(Codec::sniff(b"GIF89a"), None);
        assert_eq!("h265".parse(), Ok(Codec::H265));
        assert_eq!(Codec::H264.to_string(), "h264");
        assert_eq!(
            "hevc".parse::<Codec>().unwrap_err().to_string(),
            "\"hevc\" is not a codec (h264, h265)"
        );
    }
}

/// Properties of the splitter over generated streams of both codecs.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// A NAL unit of `codec` of type `t` with a body free of start codes; `first` sets
    /// the first-slice bit of slices.
    fn unit(codec: Codec, t: u8, first: bool, body: &[u8]) -> Vec<u8> {
        let mut u = match codec {
            Codec::H264 => vec![0x60 | t],
            Codec::H265 => vec![t << 1, 0x01],
        };
        u.push(if first { 0x80 } else { 0x40 } | 0x11);
        u.extend(body.iter().map(|b| b | 0x10));
        u
    }

    /// A picture: optional delimiter and parameter sets, a prefix SEI, 1-3 slices; for
    /// keyframes, the keyframe slice type.
    fn picture(codec: Codec) -> impl Strategy<Value = (bool, Vec<Vec<u8>>)> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            1usize..=3,
            prop::collection::vec(any::<u8>(), 0..6),
        )
            .prop_map(move |(key, aud, sets, sei, slices, body)| {
                let (aud_t, sets_t, sei_t, key_t, other_t): (u8, &[u8], u8, u8, u8) = match codec {
                    Codec::H264 => (9, &[7, 8], 6, 5, 1),
                    Codec::H265 => (35, &[32, 33, 34], 39, 19, 1),
                };
                let mut units = Vec::new();
                if aud {
                    units.push(unit(codec, aud_t, false, &body));
                }
                if sets {
                    for &t in sets_t {
                        units.push(unit(codec, t, false, &body));
                    }
                }
                if sei {
                    units.push(unit(codec, sei_t, false, &body));
                }
                let slice_t = if key { key_t } else { other_t };
                for s in 0..slices {
                    units.push(unit(codec, slice_t, s == 0, &body));
                }
                (key, units)
            })
    }

    fn stream(codec: Codec) -> impl Strategy<Value = Vec<(bool, Vec<Vec<u8>>)>> {
        prop::collection::vec(picture(codec), 0..12)
    }

    proptest! {
        #[test]
        fn generated_streams_split_into_their_pictures(
            (codec, pictures) in prop::sample::select(Codec::ALL.to_vec())
                .prop_flat_map(|codec| (Just(codec), stream(codec))),
        ) {
            let bytes: Vec<Vec<u8>> = pictures
                .iter()
                .map(|(_, units)| units.iter().flat_map(|u| [&[0, 0, 1][..], u].concat()).collect())
                .collect();
            let whole = bytes.concat();
            let split = split_access_units(&whole, codec);
            prop_assert_eq!(split, bytes.iter().map(Vec::as_slice).collect::<Vec<_>>());
            for (au, (key, _)) in bytes.iter().zip(&pictures) {
                prop_assert_eq!(codec.is_keyframe(au), *key);
            }
        }

        #[test]
        fn published_keyframes_are_self_contained(
            pictures in stream(Codec::H265),
        ) {
            let codec = Codec::H265;
            let whole: Vec<u8> = pictures
                .iter()
                .flat_map(|(_, units)| units.iter().flat_map(|u| [&[0, 0, 1][..], u].concat()))
                .collect();
            let first_key = pictures.iter().position(|(k, _)| *k);
            let sets_before_key = first_key.is_some_and(|k| {
                let sets: std::collections::HashSet<u8> = pictures[..=k]
                    .iter()
                    .flat_map(|(_, units)| units.iter().filter_map(|u| codec.nal_type(u)))
                    .collect();
                [32, 33, 34].iter().all(|t| sets.contains(t))
            });
            match publishable_access_units(&whole, codec) {
                Ok(aus) => {
                    let k = first_key.expect("published from a keyframe");
                    prop_assert_eq!(aus.len(), pictures.len() - k);
                    for (au, (key, _)) in aus.iter().zip(&pictures[k..]) {
                        prop_assert_eq!(au.keyframe, *key);
                        prop_assert_eq!(codec.is_keyframe(&au.data), *key);
                        if *key {
                            prop_assert!(codec.starts_with_parameter_sets(&au.data));
                        }
                    }
                }
                Err(StreamError::NoKeyframe(_)) => prop_assert!(first_key.is_none()),
                Err(StreamError::MissingParameterSet { .. }) => prop_assert!(!sets_before_key),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..400),
        ) {
            for codec in Codec::ALL {
                let aus = split_access_units(&bytes, codec);
                let joined: usize = aus.iter().map(|a| a.len()).sum();
                prop_assert!(joined <= bytes.len());
                let _ = publishable_access_units(&bytes, codec);
            }
            let _ = Codec::sniff(&bytes);
        }
    }
}

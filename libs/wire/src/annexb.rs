//! Annex B byte streams: splitting an access unit into NAL units and checking that
//! a keyframe is self-contained (SPS and PPS before the IDR slice; for H.265, in [`h265`],
//! VPS, SPS and PPS before the IRAP slice).

/// H.264 NAL unit types Framewire cares about (ITU-T H.264 table 7-1).
pub mod nal {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// Iterator over the NAL units (without start codes) of an Annex B buffer.
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    rest: &'a [u8],
}

/// Splits an Annex B buffer into NAL units. Bytes before the first start code are skipped.
pub fn nal_units(buf: &[u8]) -> NalUnits<'_> {
    let rest = match find_start_code(buf) {
        Some((_, end)) => &buf[end..],
        None => &[],
    };
    NalUnits { rest }
}

/// Finds the first `00 00 01` start code; returns (start of the code incl. a leading
/// zero byte of a 4-byte code, index just after it).
fn find_start_code(buf: &[u8]) -> Option<(usize, usize)> {
    let pos = buf.windows(3).position(|w| w == [0, 0, 1])?;
    let start = if pos > 0 && buf[pos - 1] == 0 {
        pos - 1
    } else {
        pos
    };
    Some((start, pos + 3))
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        // A loop, not recursion: a crafted buffer of back-to-back start codes holds
        // millions of empty units, and each skipped one must not cost a stack frame.
        while !self.rest.is_empty() {
            let (unit, rest) = match find_start_code(self.rest) {
                Some((start, end)) => (&self.rest[..start], &self.rest[end..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            // Trailing zero bytes belong to no NAL unit (trailing_zero_8bits).
            let len = unit.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            if len > 0 {
                return Some(&unit[..len]);
            }
        }
        None
    }
}

/// The `nal_unit_type` of a NAL unit (low five bits of its first byte).
pub fn nal_type(unit: &[u8]) -> Option<u8> {
    unit.first().map(|b| b & 0x1f)
}

/// True when the access unit contains an IDR slice.
pub fn is_idr(au: &[u8]) -> bool {
    nal_units(au).any(|u| nal_type(u) == Some(nal::IDR))
}

/// True when the access unit starts (after an optional access unit delimiter) with
/// an SPS and then a PPS: what makes a keyframe record decodable on its own.
pub fn starts_with_parameter_sets(au: &[u8]) -> bool {
    let mut types = nal_units(au)
        .filter_map(nal_type)
        .skip_while(|&t| t == nal::AUD);
    types.next() == Some(nal::SPS) && types.next() == Some(nal::PPS)
}

/// Splits an Annex B elementary stream (e.g. `ffmpeg -f h264 -x264-params aud=1`) into
/// access units at its access unit delimiters: (byte offset, bytes) of each. Bytes before
/// the first delimiter form no access unit; a stream without delimiters yields none.
pub fn split_at_delimiters(stream: &[u8]) -> Vec<(usize, &[u8])> {
    split_where(stream, |first_byte| first_byte & 0x1f == nal::AUD)
}

/// Splits `stream` before every start code whose NAL unit's first byte passes `is_aud`.
fn split_where(stream: &[u8], is_aud: impl Fn(u8) -> bool) -> Vec<(usize, &[u8])> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 < stream.len() {
        if stream[i..i + 3] == [0, 0, 1] && is_aud(stream[i + 3]) {
            starts.push(if i > 0 && stream[i - 1] == 0 {
                i - 1
            } else {
                i
            });
            i += 3;
        }
        i += 1;
    }
    starts.push(stream.len());
    starts
        .windows(2)
        .map(|w| (w[0], &stream[w[0]..w[1]]))
        .collect()
}

/// H.265 (HEVC) access units: the same Annex B framing, two-byte NAL unit headers.
pub mod h265 {
    use super::nal_units;

    /// H.265 NAL unit types Framewire cares about (ITU-T H.265 table 7-1).
    pub mod nal {
        /// Coded slices of pictures are types 0 to 31 (VCL); IRAP pictures 16 to 23.
        pub const VCL_MAX: u8 = 31;
        /// RASL_N: a random access skipped leading picture (also RASL_R, 9).
        pub const RASL_N: u8 = 8;
        /// RASL_R.
        pub const RASL_R: u8 = 9;
        /// Last BLA type (BLA_N_LP); BLA pictures are 16 to 18.
        pub const BLA_MAX: u8 = 18;
        /// First IRAP type (BLA_W_LP).
        pub const IRAP_MIN: u8 = 16;
        /// Last IRAP type (RSV_IRAP_VCL23).
        pub const IRAP_MAX: u8 = 23;
        /// IDR_W_RADL.
        pub const IDR_W_RADL: u8 = 19;
        /// CRA_NUT.
        pub const CRA: u8 = 21;
        /// Video parameter set.
        pub const VPS: u8 = 32;
        /// Sequence parameter set.
        pub const SPS: u8 = 33;
        /// Picture parameter set.
        pub const PPS: u8 = 34;
        /// Access unit delimiter.
        pub const AUD: u8 = 35;
    }

    /// The `nal_unit_type` of an H.265 NAL unit (bits 1-6 of its first byte).
    pub fn nal_type(unit: &[u8]) -> Option<u8> {
        unit.first().map(|b| (b >> 1) & 0x3f)
    }

    /// Whether a NAL unit type is a coded slice (VCL).
    pub fn is_slice(nal_type: u8) -> bool {
        nal_type <= nal::VCL_MAX
    }

    /// Whether a NAL unit type is a slice of an IRAP picture (BLA, IDR, CRA): where
    /// decoding can start.
    pub fn is_irap_type(nal_type: u8) -> bool {
        (nal::IRAP_MIN..=nal::IRAP_MAX).contains(&nal_type)
    }

    /// True when the access unit contains an IRAP slice.
    pub fn is_irap(au: &[u8]) -> bool {
        nal_units(au).any(|u| nal_type(u).is_some_and(is_irap_type))
    }

    /// The kind of the access unit's IRAP picture; `None` without an IRAP slice.
    pub fn irap_kind(au: &[u8]) -> Option<IrapKind> {
        let t = nal_units(au)
            .filter_map(nal_type)
            .find(|&t| is_irap_type(t))?;
        Some(if t <= nal::BLA_MAX {
            IrapKind::Bla
        } else if t < nal::CRA {
            IrapKind::Idr
        } else {
            IrapKind::Cra
        })
    }

    /// What an IRAP picture means for the RASL pictures that follow it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum IrapKind {
        /// IDR: no RASL pictures follow.
        Idr,
        /// CRA: its RASL pictures decode when decoding started before it.
        Cra,
        /// BLA: its RASL pictures never decode.
        Bla,
    }

    /// True when the access unit is a RASL picture (random access skipped leading): it
    /// references pictures before its IRAP in decode order.
    pub fn is_rasl(au: &[u8]) -> bool {
        nal_units(au).any(|u| matches!(nal_type(u), Some(nal::RASL_N | nal::RASL_R)))
    }

    /// True when the access unit starts (after an optional access unit delimiter) with a
    /// VPS, an SPS and a PPS: what makes a keyframe record decodable on its own.
    pub fn starts_with_parameter_sets(au: &[u8]) -> bool {
        let mut types = nal_units(au)
            .filter_map(nal_type)
            .skip_while(|&t| t == nal::AUD);
        types.next() == Some(nal::VPS)
            && types.next() == Some(nal::SPS)
            && types.next() == Some(nal::PPS)
    }

    /// Splits an H.265 Annex B elementary stream (e.g. `ffmpeg -f hevc -x265-params aud=1`)
    /// into access units at its access unit delimiters, like
    /// [`split_at_delimiters`](super::split_at_delimiters).
    pub fn split_at_delimiters(stream: &[u8]) -> Vec<(usize, &[u8])> {
        super::split_where(stream, |first_byte| (first_byte >> 1) & 0x3f == nal::AUD)
    }
}

/// Whether the stream that this keyframe starts may output pictures out of decode order
/// (B-frames), read from its SPS: `Some(false)` when `pic_order_cnt_type` is 2 (display
/// order is decode order by definition), `Some(true)` for the other types, `None` when the
/// access unit has no SPS or it cannot be read.
pub fn may_reorder(au: &[u8]) -> Option<bool> {
    let sps = nal_units(au).find(|u| nal_type(u) == Some(nal::SPS))?;
    Some(crate::sps::h264(sps)?.poc_type != 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x4d, 0x00, 0x1e];
    const PPS: &[u8] = &[0x68, 0xee, 0x3c, 0x80];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x21];
    const P: &[u8] = &[0x41, 0x9a, 0x00];

    fn annexb(units: &[&[u8]], four_byte: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for u in units {
            if four_byte {
                out.push(0);
            }
            out.extend_from_slice(&[0, 0, 1]);
            out.extend_from_slice(u);
        }
        out
    }

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        for four in [false, true] {
            let buf = annexb(&[SPS, PPS, IDR], four);
            let units: Vec<_> = nal_units(&buf).collect();
            assert_eq!(units, vec![SPS, PPS, IDR]);
        }
    }

    #[test]
    fn long_runs_of_empty_units_do_not_grow_the_stack() {
        const IDR_TAIL: &[u8] = &[0, 0, 1, 0x65, 0x88];
        // 3 MiB of back-to-back start codes, and 4 MiB of start codes with a zero byte
        // (an empty unit once trailing zeros are dropped) between them; each ends in one
        // real unit that the iterator has to reach.
        let back_to_back = [[0, 0, 1].repeat(1 << 20), IDR_TAIL.to_vec()].concat();
        let zero_filled = [[0, 0, 1, 0].repeat(1 << 20), IDR_TAIL.to_vec()].concat();
        let small_stack = std::thread::Builder::new().stack_size(64 * 1024);
        let handle = small_stack
            .spawn(move || {
                for buf in [back_to_back, zero_filled] {
                    let units: Vec<_> = nal_units(&buf).collect();
                    assert_eq!(units, [&IDR_TAIL[3..]]);
                    assert!(is_idr(&buf) && !starts_with_parameter_sets(&buf));
                    assert_eq!(may_reorder(&buf), None);
                }
            })
            .expect("spawn a thread");
        handle
            .join()
            .expect("the splitter must not overflow a 64 KiB stack");
    }

    #[test]
    fn keyframe_checks() {
        let key = annexb(&[SPS, PPS, IDR], true);
        assert!(is_idr(&key));
        assert!(starts_with_parameter_sets(&key));
        let aud_first = annexb(&[&[0x09, 0xf0], SPS, PPS, IDR], true);
        assert!(starts_with_parameter_sets(&aud_first));
        let bare_idr = annexb(&[IDR], true);
        assert!(is_idr(&bare_idr) && !starts_with_parameter_sets(&bare_idr));
        let p = annexb(&[P], false);
        assert!(!is_idr(&p) && !starts_with_parameter_sets(&p));
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn a_stream_splits_at_its_delimiters() {
        const AUD: &[u8] = &[0x09, 0xf0];
        let first = annexb(&[AUD, SPS, PPS, IDR], true);
        let second = annexb(&[AUD, P], false);
        let stream = [first.clone(), second.clone()].concat();
        let aus = split_at_delimiters(&stream);
        assert_eq!(aus, [(0, &first[..]), (first.len(), &second[..])]);
        assert!(split_at_delimiters(&annexb(&[SPS, IDR], true)).is_empty());
    }

    #[test]
    fn h265_keyframes_are_irap_with_vps_sps_pps_first() {
        const AUD: &[u8] = &[0x46, 0x01, 0x50];
        const VPS: &[u8] = &[0x40, 0x01, 0x0c];
        const SPS: &[u8] = &[0x42, 0x01, 0x01];
        const PPS: &[u8] = &[0x44, 0x01, 0xc1];
        const IDR: &[u8] = &[0x26, 0x01, 0xaf];
        const CRA: &[u8] = &[0x2a, 0x01, 0xaf];
        const TRAIL: &[u8] = &[0x02, 0x01, 0xd0];
        let key = annexb(&[AUD, VPS, SPS, PPS, IDR], true);
        assert!(h265::is_irap(&key) && h265::starts_with_parameter_sets(&key));
        let cra = annexb(&[VPS, SPS, PPS, CRA], false);
        assert!(h265::is_irap(&cra) && h265::starts_with_parameter_sets(&cra));
        assert_eq!(h265::irap_kind(&key), Some(h265::IrapKind::Idr));
        assert_eq!(h265::irap_kind(&cra), Some(h265::IrapKind::Cra));
        let bla = annexb(&[VPS, SPS, PPS, &[0x20, 0x01, 0xaf]], false);
        assert_eq!(h265::irap_kind(&bla), Some(h265::IrapKind::Bla));
        let rasl = annexb(&[AUD, &[0x10, 0x01, 0xd0]], true);
        assert!(h265::is_rasl(&rasl) && !h265::is_irap(&rasl));
        assert!(!h265::is_rasl(&cra) && h265::irap_kind(&rasl).is_none());
        assert!(!h265::starts_with_parameter_sets(&annexb(
            &[SPS, PPS, IDR],
            true
        )));
        let p = annexb(&[AUD, TRAIL], true);
        assert!(!h265::is_irap(&p) && !h265::starts_with_parameter_sets(&p));
        assert_eq!(h265::nal_type(TRAIL), Some(1));
        assert!(h265::is_slice(1) && !h265::is_slice(h265::nal::VPS));
        // The same bytes read as H.264 mean something else: the codec decides.
        assert!(!is_idr(&key));
        let stream = [key.clone(), p.clone()].concat();
        assert_eq!(
            h265::split_at_delimiters(&stream),
            [(0, &key[..]), (key.len(), &p[..])]
        );
        assert!(
            split_at_delimiters(&stream).is_empty(),
            "no H.264 delimiters"
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_sps_tells_whether_pictures_may_be_reordered() {
        // x264 SPSs (High without B-frames, High with 2 B-frames, Main without B-frames).
        let high = hex("6764000dacb40a0fd808800000030080000019078a1550");
        let high_b = hex("6764000dacd94141fb011000000300100000030320f1429960");
        let main = hex("674d400dd90141fb011000000300100000030320f142a480");
        let au = |sps: &[u8]| annexb(&[sps, PPS, IDR], true);
        assert_eq!(may_reorder(&au(&high)), Some(false));
        assert_eq!(may_reorder(&au(&high_b)), Some(true));
        assert_eq!(may_reorder(&au(&main)), Some(false));
        assert_eq!(may_reorder(&annexb(&[IDR], true)), None, "no SPS");
        assert_eq!(may_reorder(&annexb(&[&high[..3]], true)), None, "cut short");
    }
}

/// Properties of the splitter and the SPS reader over arbitrary and generated input.
#[cfg(test)]
mod props {
    use super::*;
    use crate::bits::writer::{BitWriter, escape};
    use proptest::prelude::*;

    /// Bytes with the values that matter to start codes and emulation prevention
    /// (0, 1, 3, the AUD / SPS / PPS / IDR header bytes) far more often than uniform
    /// bytes would have them: a uniform byte is mapped through a small table (cheaper
    /// than a union strategy per byte, and it still shrinks towards 0).
    fn biased(uniform: u8) -> u8 {
        match uniform % 16 {
            0..=5 => 0,
            6..=7 => 1,
            8 => 3,
            9 => [0x09, 0x67, 0x68, 0x65][usize::from(uniform / 16 % 4)],
            _ => uniform,
        }
    }

    fn annexb_bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max_len)
            .prop_map(|bytes| bytes.into_iter().map(biased).collect())
    }

    /// Offset of `part` in `whole`, when it is a subslice of it.
    fn offset_in(whole: &[u8], part: &[u8]) -> usize {
        let offset = part.as_ptr().addr().checked_sub(whole.as_ptr().addr());
        let offset = offset.expect("a subslice starts inside the buffer");
        assert!(
            offset + part.len() <= whole.len(),
            "a subslice ends inside the buffer"
        );
        offset
    }

    /// A non-empty NAL unit with no `00 00 0x` (x ≤ 3) inside and no trailing zero byte,
    /// built from biased bytes by bumping each forbidden third byte out of 0..=3.
    fn nal_unit() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 1..40).prop_map(|bytes| {
            let mut unit: Vec<u8> = Vec::with_capacity(bytes.len() + 1);
            for b in bytes.into_iter().map(biased) {
                let after_two_zeros = unit.len() >= 2 && unit[unit.len() - 2..] == [0, 0];
                unit.push(if after_two_zeros && b <= 3 { b + 4 } else { b });
            }
            if unit.last() == Some(&0) {
                unit.push(0x80);
            }
            unit
        })
    }

    /// The fields of an SPS up to `pic_order_cnt_type`, plus what follows it.
    #[derive(Debug, Clone)]
    struct Sps {
        profile_idc: u8,
        constraint_flags: u8,
        level_idc: u8,
        sps_id: u32,
        chroma_format_idc: u32,
        separate_colour_plane: bool,
        bit_depth_luma_minus8: u32,
        bit_depth_chroma_minus8: u32,
        qpprime_y_zero_transform_bypass: bool,
        log2_max_frame_num_minus4: u32,
        poc_type: u32,
        trailing_bits: Vec<bool>,
    }

    const HIGH_PROFILES: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

    /// Generated SPSs. Flags and level are often zero, and ids and `log2_max_frame_num`
    /// also go beyond their ranges in the spec (the reader does not check them): long runs
    /// of zero bits then make `00 00 0x` bytes that need emulation prevention.
    fn sps() -> impl Strategy<Value = Sps> {
        let mut profiles = HIGH_PROFILES.to_vec();
        profiles.extend([66, 77, 88]);
        let often_zero = || prop_oneof![Just(0u8), any::<u8>()];
        let ue_value = |spec_max: u32| prop_oneof![0..=spec_max, 0..=u32::from(u16::MAX)];
        (
            (
                prop::sample::select(profiles),
                often_zero(),
                often_zero(),
                ue_value(31),
            ),
            (0u32..=3, any::<bool>(), 0u32..=6, 0u32..=6, any::<bool>()),
            (
                ue_value(12),
                0u32..=2,
                prop::collection::vec(any::<bool>(), 0..200),
            ),
        )
            .prop_map(|((profile, flags, level, id), high, rest)| Sps {
                profile_idc: profile,
                constraint_flags: flags,
                level_idc: level,
                sps_id: id,
                chroma_format_idc: high.0,
                separate_colour_plane: high.1,
                bit_depth_luma_minus8: high.2,
                bit_depth_chroma_minus8: high.3,
                qpprime_y_zero_transform_bypass: high.4,
                log2_max_frame_num_minus4: rest.0,
                poc_type: rest.1,
                trailing_bits: rest.2,
            })
    }

    /// The SPS NAL unit (header byte and escaped payload).
    fn encode(sps: &Sps) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.bits(8, sps.profile_idc.into());
        w.bits(8, sps.constraint_flags.into());
        w.bits(8, sps.level_idc.into());
        w.ue(sps.sps_id);
        if HIGH_PROFILES.contains(&sps.profile_idc) {
            w.ue(sps.chroma_format_idc);
            if sps.chroma_format_idc == 3 {
                w.bit(sps.separate_colour_plane);
            }
            w.ue(sps.bit_depth_luma_minus8);
            w.ue(sps.bit_depth_chroma_minus8);
            w.bit(sps.qpprime_y_zero_transform_bypass);
            w.bit(false); // seq_scaling_matrix_present_flag
        }
        w.ue(sps.log2_max_frame_num_minus4);
        w.ue(sps.poc_type);
        for &bit in &sps.trailing_bits {
            w.bit(bit);
        }
        [vec![0x67], escape(&w.finish())].concat()
    }

    /// `units` joined with a 4-byte (`true`) or 3-byte start code before each.
    fn join(units: &[(Vec<u8>, bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (unit, four_byte) in units {
            if *four_byte {
                out.push(0);
            }
            out.extend_from_slice(&[0, 0, 1]);
            out.extend_from_slice(unit);
        }
        out
    }

    proptest! {
        #[test]
        fn split_units_are_trimmed_ordered_subslices(buf in annexb_bytes(1000)) {
            let mut end_of_previous = 0;
            for unit in nal_units(&buf) {
                prop_assert!(!unit.is_empty());
                prop_assert!(!unit.windows(3).any(|w| w == [0, 0, 1]), "{unit:02x?}");
                prop_assert_ne!(unit.last(), Some(&0));
                let offset = offset_in(&buf, unit);
                prop_assert!(offset >= end_of_previous + 3, "a start code before each unit");
                prop_assert_eq!(&buf[offset - 3..offset], &[0, 0, 1]);
                end_of_previous = offset + unit.len();
            }
        }

        #[test]
        fn joined_units_split_back(units in prop::collection::vec((nal_unit(), any::<bool>()), 0..12)) {
            let buf = join(&units);
            let split: Vec<&[u8]> = nal_units(&buf).collect();
            let expected: Vec<&[u8]> = units.iter().map(|(u, _)| &u[..]).collect();
            prop_assert_eq!(split, expected);
        }

        #[test]
        fn keyframe_checks_never_panic(buf in annexb_bytes(1000)) {
            let _ = is_idr(&buf);
            let _ = starts_with_parameter_sets(&buf);
        }

        #[test]
        fn access_units_cover_the_stream_from_the_first_delimiter(buf in annexb_bytes(1000)) {
            let aus = split_at_delimiters(&buf);
            let has_delimiter = buf
                .windows(4)
                .any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == nal::AUD);
            prop_assert_eq!(aus.is_empty(), !has_delimiter);
            if let Some(&(first, _)) = aus.first() {
                let joined: Vec<u8> = aus.iter().flat_map(|(_, au)| au.iter().copied()).collect();
                prop_assert_eq!(joined, &buf[first..]);
                for &(offset, au) in &aus {
                    prop_assert_eq!(&buf[offset..offset + au.len()], au);
                    let units: Vec<_> = nal_units(au).collect();
                    prop_assert_eq!(units.first().and_then(|u| nal_type(u)), Some(nal::AUD));
                }
            }
        }

        #[test]
        fn h265_checks_agree_with_the_units(units in prop::collection::vec((nal_unit(), any::<bool>()), 0..12)) {
            let buf = join(&units);
            let types: Vec<u8> = units.iter().map(|(u, _)| (u[0] >> 1) & 0x3f).collect();
            prop_assert_eq!(h265::is_irap(&buf), types.iter().any(|&t| (16..=23).contains(&t)));
            prop_assert_eq!(h265::is_rasl(&buf), types.iter().any(|&t| t == 8 || t == 9));
            let first_irap = types.iter().copied().find(|t| (16..=23).contains(t));
            let kind = first_irap.map(|t| match t {
                16..=18 => h265::IrapKind::Bla,
                19 | 20 => h265::IrapKind::Idr,
                _ => h265::IrapKind::Cra,
            });
            prop_assert_eq!(h265::irap_kind(&buf), kind);
            let after_aud: Vec<u8> = types.iter().copied().skip_while(|&t| t == h265::nal::AUD).collect();
            prop_assert_eq!(
                h265::starts_with_parameter_sets(&buf),
                after_aud.starts_with(&[h265::nal::VPS, h265::nal::SPS, h265::nal::PPS])
            );
            let aus = h265::split_at_delimiters(&buf);
            let delimiters = types.iter().filter(|&&t| t == h265::nal::AUD).count();
            prop_assert_eq!(aus.len(), delimiters);
        }

        #[test]
        fn sps_reader_never_panics_on_bytes(buf in annexb_bytes(300)) {
            let _ = may_reorder(&buf);
        }

        #[test]
        fn sps_reader_never_panics_on_sps_payloads(
            payload in prop::collection::vec(any::<u8>(), 0..64),
            four_byte in any::<bool>(),
        ) {
            let _ = may_reorder(&join(&[([vec![0x67], payload].concat(), four_byte)]));
        }

        #[test]
        fn sps_reader_reads_the_poc_type(sps in sps()) {
            let au = join(&[(encode(&sps), true), (PPS_UNIT.to_vec(), false), (IDR_UNIT.to_vec(), false)]);
            prop_assert_eq!(may_reorder(&au), Some(sps.poc_type != 2), "{:02x?}", au);
        }
    }

    const PPS_UNIT: &[u8] = &[0x68, 0xee, 0x3c, 0x80];
    const IDR_UNIT: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x21];
}

//! Annex B byte streams: splitting an access unit into NAL units and checking that
//! a keyframe is self-contained (SPS and PPS before the IDR slice).

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
        if self.rest.is_empty() {
            return None;
        }
        let (unit, rest) = match find_start_code(self.rest) {
            Some((start, end)) => (&self.rest[..start], &self.rest[end..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        // Trailing zero bytes belong to no NAL unit (trailing_zero_8bits).
        let len = unit.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if len == 0 {
            self.next()
        } else {
            Some(&unit[..len])
        }
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
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 < stream.len() {
        if stream[i..i + 3] == [0, 0, 1] && stream[i + 3] & 0x1f == nal::AUD {
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

/// Whether the stream that this keyframe starts may output pictures out of decode order
/// (B-frames), read from its SPS: `Some(false)` when `pic_order_cnt_type` is 2 (display
/// order is decode order by definition), `Some(true)` for the other types, `None` when the
/// access unit has no SPS or it cannot be read (e.g. it carries scaling matrices).
pub fn may_reorder(au: &[u8]) -> Option<bool> {
    let sps = nal_units(au).find(|u| nal_type(u) == Some(nal::SPS))?;
    let rbsp = unescape(sps.get(1..)?);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        if r.ue()? == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            return None; // scaling matrices: not worth parsing for one flag
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    Some(r.ue()? != 2)
}

/// A NAL unit payload without its emulation prevention bytes (`00 00 03` → `00 00`).
fn unescape(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &b in payload {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Reads bits and Exp-Golomb codes, most significant bit first.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some((acc << 1) | self.bit()?))
    }

    /// An unsigned Exp-Golomb code, `ue(v)`.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }
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
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3]), [0, 0, 1, 0, 0]);
    }
}

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
}

//! Bit-level reading of parameter sets: emulation prevention removed, then fixed-width
//! fields and Exp-Golomb codes read most significant bit first (H.264 and H.265 §7.2).
//! Every read returns `None` past the end, so a truncated or crafted parameter set is
//! never a panic.

/// A NAL unit payload without its emulation prevention bytes (`00 00 03` → `00 00`).
pub(crate) fn unescape(payload: &[u8]) -> Vec<u8> {
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
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `data` (an RBSP: see [`unescape`]).
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    /// `u(n)` for `n` ≤ 32.
    pub(crate) fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some((acc << 1) | self.bit()?))
    }

    /// One bit as a flag.
    pub(crate) fn flag(&mut self) -> Option<bool> {
        Some(self.bit()? == 1)
    }

    /// Passes over `n` bits (any number), `None` when fewer are left.
    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        if end > self.data.len() * 8 {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// An unsigned Exp-Golomb code, `ue(v)`.
    pub(crate) fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    /// A signed Exp-Golomb code, `se(v)`: 0, 1, −1, 2, −2, …
    pub(crate) fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Writing what [`BitReader`] reads, for tests that build parameter sets.
#[cfg(test)]
pub(crate) mod writer {
    /// Writes bits most significant first, and Exp-Golomb codes.
    #[derive(Default)]
    pub(crate) struct BitWriter {
        bytes: Vec<u8>,
        written_bits: usize,
    }

    impl BitWriter {
        pub(crate) fn bit(&mut self, bit: bool) {
            let used_in_last = self.written_bits % 8;
            if used_in_last == 0 {
                self.bytes.push(0);
            }
            if let Some(last) = self.bytes.last_mut() {
                *last |= u8::from(bit) << (7 - used_in_last);
            }
            self.written_bits += 1;
        }

        pub(crate) fn bits(&mut self, n: u32, value: u32) {
            for i in (0..n).rev() {
                self.bit((value >> i) & 1 == 1);
            }
        }

        pub(crate) fn ue(&mut self, value: u32) {
            let coded = u64::from(value) + 1;
            let len = 64 - coded.leading_zeros();
            for _ in 1..len {
                self.bit(false);
            }
            for i in (0..len).rev() {
                self.bit((coded >> i) & 1 == 1);
            }
        }

        pub(crate) fn se(&mut self, value: i32) {
            let k = if value > 0 {
                2 * value.unsigned_abs() - 1
            } else {
                2 * value.unsigned_abs()
            };
            self.ue(k);
        }

        /// rbsp_trailing_bits: a one bit, then zeros to the byte boundary.
        pub(crate) fn finish(mut self) -> Vec<u8> {
            self.bit(true);
            self.bytes
        }
    }

    /// An RBSP with emulation prevention bytes inserted (`00 00 0x` → `00 00 03 0x`).
    pub(crate) fn escape(rbsp: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 2);
        let mut zeros = 0;
        for &b in rbsp {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::writer::{BitWriter, escape};
    use super::*;

    #[test]
    fn the_test_bit_writer_matches_the_reader() {
        let mut w = BitWriter::default();
        for v in [0, 1, 2, 7, 255, 65_535] {
            w.ue(v);
        }
        for v in [0, 1, -1, 2, -2, 100, -100] {
            w.se(v);
        }
        w.bits(3, 0b101);
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        for v in [0, 1, 2, 7, 255, 65_535] {
            assert_eq!(r.ue(), Some(v));
        }
        for v in [0, 1, -1, 2, -2, 100, -100] {
            assert_eq!(r.se(), Some(v));
        }
        assert_eq!(r.bits(4), Some(0b1011));
        assert_eq!(r.skip(3), Some(()));
        assert_eq!(r.skip(8), None, "past the end");
        assert_eq!(
            unescape(&escape(&[0, 0, 0, 0, 1, 0, 0, 3, 0, 0])),
            [0, 0, 0, 0, 1, 0, 0, 3, 0, 0]
        );
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3]), [0, 0, 1, 0, 0]);
    }
}

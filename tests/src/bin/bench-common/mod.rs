//! What the benchmark binaries share (included with `#[path]`; this folder has no
//! `main.rs`, so cargo builds no binary from it).

/// Splits an Annex B stream into access units: a new one starts at an AUD, SPS, PPS or SEI
/// that follows a picture's slices, or at a slice whose `first_mb_in_slice` is 0 (the first
/// bit of its header is 1). The clips of `scripts/bench/make-clip.sh` have no delimiters.
pub fn access_units(stream: &[u8]) -> Vec<&[u8]> {
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
        let t = stream[i + 3] & 0x1f;
        let first_slice = matches!(t, 1 | 5) && stream.get(i + 4).is_some_and(|b| b & 0x80 != 0);
        if begin.is_none() || (has_picture && (first_slice || matches!(t, 6..=9))) {
            if let Some(b) = begin {
                units.push(&stream[b..code]);
            }
            (begin, has_picture) = (Some(code), false);
        }
        has_picture |= matches!(t, 1 | 5);
        i += 3;
    }
    if let Some(b) = begin {
        units.push(&stream[b..]);
    }
    units
}

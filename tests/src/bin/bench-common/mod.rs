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

/// An IDR access unit with its SPS and PPS moved to the front, as ingest publishes
/// keyframes (retina puts them there; x264's first access unit starts with an SEI, which the
/// worker's contract check rejects). Other access units are returned unchanged.
pub fn parameter_sets_first(au: &[u8]) -> Vec<u8> {
    use framewire_wire::annexb::{nal, nal_type, nal_units, starts_with_parameter_sets};
    if starts_with_parameter_sets(au) || !framewire_wire::annexb::is_idr(au) {
        return au.to_vec();
    }
    let units: Vec<&[u8]> = nal_units(au).collect();
    let rank = |u: &&[u8]| match nal_type(u) {
        Some(nal::AUD) => 0,
        Some(nal::SPS) => 1,
        Some(nal::PPS) => 2,
        _ => 3,
    };
    let mut sorted = units.clone();
    sorted.sort_by_key(rank); // stable: the rest keep their order
    let mut out = Vec::with_capacity(au.len() + 4 * units.len());
    for u in sorted {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(u);
    }
    out
}

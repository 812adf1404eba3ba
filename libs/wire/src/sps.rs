//! Reading sequence parameter sets: the picture size after cropping (what ingest puts in
//! `fw-width` / `fw-height`, here for clips that no RTSP session describes) and the H.264
//! picture order count type (whether pictures may come out of the decoder reordered).
//!
//! Only the fields before the size are walked (H.264 §7.3.2.1.1, H.265 §7.3.2.2.1), with
//! scaling lists and sub-layer profiles skipped bit-exactly; a truncated or inconsistent
//! parameter set reads as `None`, never as a wrong size or a panic.

use crate::bits::{BitReader, unescape};

/// What Framewire reads from an H.264 SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct H264Sps {
    /// `pic_order_cnt_type` (2: display order is decode order).
    pub(crate) poc_type: u32,
    /// Width and height after the frame cropping, when the SPS reads that far.
    pub(crate) size: Option<(u32, u32)>,
}

/// `profile_idc` values whose SPS carries the chroma format, bit depths and scaling lists.
const H264_HIGH_PROFILES: [u32; 13] =
    [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// Reads an H.264 SPS NAL unit (with its one-byte header); `None` when it does not read
/// as far as `pic_order_cnt_type`.
pub(crate) fn h264(unit: &[u8]) -> Option<H264Sps> {
    let rbsp = unescape(unit.get(1..)?);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if H264_HIGH_PROFILES.contains(&profile_idc) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.flag()?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_h264_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    let poc_type = r.ue()?;
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let size = h264_size(&mut r, poc_type, chroma_array_type);
    Some(H264Sps { poc_type, size })
}

/// Passes over a `scaling_list()` of `size` coefficients (§7.3.2.1.1.1).
fn skip_h264_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// The fields after `pic_order_cnt_type`, up to the frame cropping: the picture size.
fn h264_size(r: &mut BitReader<'_>, poc_type: u32, chroma_array_type: u32) -> Option<(u32, u32)> {
    match poc_type {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.flag()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            for _ in 0..cycle {
                r.se()?; // offset_for_ref_frame[i]; runs out of bits if `cycle` lies
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_in_mbs = u64::from(r.ue()?) + 1;
    let height_in_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.flag()?; // mb_adaptive_frame_field_flag
    }
    r.flag()?; // direct_8x8_inference_flag
    let crop = window(r)?;
    let fields = if frame_mbs_only { 1 } else { 2 };
    let (crop_x, crop_y) = match chroma_array_type {
        1 => (2, 2 * fields),
        2 => (2, fields),
        _ => (1, fields),
    };
    cropped(
        (width_in_mbs * 16, height_in_map_units * 16 * fields),
        crop,
        (crop_x, crop_y),
    )
}

/// Reads an H.265 SPS NAL unit (with its two-byte header): the picture size after the
/// conformance window.
pub(crate) fn h265_size(unit: &[u8]) -> Option<(u32, u32)> {
    let rbsp = unescape(unit.get(2..)?);
    let mut r = BitReader::new(&rbsp);
    r.bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    r.flag()?; // sps_temporal_id_nesting_flag
    // profile_tier_level(1, sps_max_sub_layers_minus1), §7.3.3: the general part is
    // 2 + 1 + 5 + 32 + 4 + 43 + 1 bits of profile and 8 of level.
    r.skip(96)?;
    let mut sub_layers = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        sub_layers.push((r.flag()?, r.flag()?)); // profile, level present
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - max_sub_layers_minus1 as usize))?; // reserved_zero_2bits
    }
    for (profile, level) in sub_layers {
        if profile {
            r.skip(88)?;
        }
        if level {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    let separate_colour_plane = chroma_format_idc == 3 && r.flag()?;
    let width = u64::from(r.ue()?);
    let height = u64::from(r.ue()?);
    let crop = window(&mut r)?;
    let units = match (separate_colour_plane, chroma_format_idc) {
        (false, 1) => (2, 2),
        (false, 2) => (2, 1),
        _ => (1, 1),
    };
    cropped((width, height), crop, units)
}

/// A cropping flag and, when set, the left, right, top and bottom offsets.
fn window(r: &mut BitReader<'_>) -> Option<[u64; 4]> {
    if !r.flag()? {
        return Some([0; 4]);
    }
    let mut w = [0u64; 4];
    for v in &mut w {
        *v = u64::from(r.ue()?);
    }
    Some(w)
}

/// `coded` less the window `[left, right, top, bottom]` in `units` (x, y) of samples;
/// `None` when nothing (or more than `u32`) would be left.
fn cropped(coded: (u64, u64), crop: [u64; 4], units: (u64, u64)) -> Option<(u32, u32)> {
    let width = coded.0.checked_sub(units.0 * (crop[0] + crop[1]))?;
    let height = coded.1.checked_sub(units.1 * (crop[2] + crop[3]))?;
    if width == 0 || height == 0 {
        return None;
    }
    Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn sizes_of_real_encoders_parameter_sets() {
        // libx264 and libx265 (ffmpeg 5.1) on testsrc2 at 630x354: both code a larger
        // picture (640x368 in macroblocks, 632x360 in 8x8 coding blocks) and crop it.
        let x264 = hex("6764001eacb405017f34460220000003002000000641e2c5d4");
        assert_eq!(
            h264(&x264),
            Some(H264Sps {
                poc_type: 2,
                size: Some((630, 354))
            })
        );
        let x265 = hex(
            "42010101600000030090000003000003003fa005020171cd1196e92930bc05a02000000300200000030321",
        );
        assert_eq!(h265_size(&x265), Some((630, 354)));
        // x264 High 1080p (1088 coded rows, 8 cropped) and Main 720p without cropping.
        let high_1080 = hex("67640028acd940780227e5c044000003000400000300c83c60c658");
        assert_eq!(h264(&high_1080).and_then(|s| s.size), Some((1920, 1080)));
        let main_720 = hex("674d401feca02802dd80880000030008000003019078c18cb0");
        assert_eq!(h264(&main_720).and_then(|s| s.size), Some((1280, 720)));
    }

    #[test]
    fn truncated_parameter_sets_have_no_size() {
        let x265 = hex(
            "42010101600000030090000003000003003fa005020171cd1196e92930bc05a02000000300200000030321",
        );
        assert_eq!(h265_size(&x265[..14]), None);
        assert_eq!(h265_size(&[0x42]), None);
        let x264 = hex("6764001eacb405017f34460220000003002000000641e2c5d4");
        // Cut after pic_order_cnt_type: the type reads, the size does not.
        let cut = h264(&x264[..6]).expect("reads up to the poc type");
        assert_eq!(cut.size, None);
        assert_eq!(h264(&x264[..3]), None);
    }
}

/// Generated parameter sets of every shape the readers handle, written bit by bit.
#[cfg(test)]
mod props {
    use super::*;
    use crate::bits::writer::{BitWriter, escape};
    use proptest::prelude::*;

    /// An H.264 SPS: the fields that move the size around or decide its units.
    #[derive(Debug, Clone)]
    struct H264Fields {
        high: Option<(u32, bool)>,
        scaling_lists: Vec<Option<Vec<i32>>>,
        poc_type: u32,
        poc_cycle: Vec<i32>,
        mbs: (u32, u32),
        frame_mbs_only: bool,
        crop: Option<[u32; 4]>,
    }

    fn h264_fields() -> impl Strategy<Value = H264Fields> {
        (
            prop::option::of((0u32..=3, any::<bool>())),
            prop::collection::vec(
                prop::option::of(prop::collection::vec(-128i32..=127, 64)),
                12,
            ),
            0u32..=2,
            prop::collection::vec(-1000i32..1000, 0..4),
            (0u32..300, 0u32..200),
            any::<bool>(),
            prop::option::of([0u32..8, 0u32..8, 0u32..8, 0u32..8]),
        )
            .prop_map(
                |(high, scaling_lists, poc_type, poc_cycle, mbs, frame_mbs_only, crop)| {
                    H264Fields {
                        high,
                        scaling_lists,
                        poc_type,
                        poc_cycle,
                        mbs,
                        frame_mbs_only,
                        crop,
                    }
                },
            )
    }

    /// Writes a `scaling_list()` whose delta_scale values are `deltas` (until next = 0).
    fn write_scaling_list(w: &mut BitWriter, deltas: &[i32], size: usize) {
        let (mut last, mut next) = (8i32, 8i32);
        for delta in deltas.iter().take(size) {
            if next != 0 {
                w.se(*delta);
                next = (last + delta).rem_euclid(256);
            }
            if next != 0 {
                last = next;
            }
        }
    }

    /// The SPS NAL unit and the size it describes (`None`: cropped to nothing).
    fn encode_h264(f: &H264Fields) -> (Vec<u8>, Option<(u32, u32)>) {
        let mut w = BitWriter::default();
        w.bits(8, if f.high.is_some() { 100 } else { 77 });
        w.bits(16, 0x001f);
        w.ue(0);
        let mut chroma_array_type = 1;
        if let Some((chroma, separate)) = f.high {
            w.ue(chroma);
            if chroma == 3 {
                w.bit(separate);
            }
            chroma_array_type = if chroma == 3 && separate { 0 } else { chroma };
            w.ue(0);
            w.ue(0);
            w.bit(false);
            let lists = if chroma == 3 { 12 } else { 8 };
            let any_list = f.scaling_lists.iter().take(lists).any(Option::is_some);
            w.bit(any_list);
            if any_list {
                for (i, list) in f.scaling_lists.iter().take(lists).enumerate() {
                    w.bit(list.is_some());
                    if let Some(deltas) = list {
                        write_scaling_list(&mut w, deltas, if i < 6 { 16 } else { 64 });
                    }
                }
            }
        }
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(f.poc_type);
        match f.poc_type {
            0 => w.ue(2),
            1 => {
                w.bit(false);
                w.se(-3);
                w.se(5);
                w.ue(f.poc_cycle.len() as u32);
                for v in &f.poc_cycle {
                    w.se(*v);
                }
            }
            _ => {}
        }
        w.ue(3); // max_num_ref_frames
        w.bit(false);
        w.ue(f.mbs.0);
        w.ue(f.mbs.1);
        w.bit(f.frame_mbs_only);
        if !f.frame_mbs_only {
            w.bit(true);
        }
        w.bit(true);
        w.bit(f.crop.is_some());
        for v in f.crop.unwrap_or_default() {
            w.ue(v);
        }
        w.bit(false); // vui_parameters_present_flag
        let fields = if f.frame_mbs_only { 1 } else { 2 };
        let (ux, uy) = match chroma_array_type {
            1 => (2, 2 * fields),
            2 => (2, fields),
            _ => (1, fields),
        };
        let c = f.crop.unwrap_or_default();
        let width = i64::from((f.mbs.0 + 1) * 16) - i64::from(ux * (c[0] + c[1]));
        let height = i64::from((f.mbs.1 + 1) * 16 * fields) - i64::from(uy * (c[2] + c[3]));
        let size = (width > 0 && height > 0).then_some((width as u32, height as u32));
        ([vec![0x67], escape(&w.finish())].concat(), size)
    }

    /// An H.265 SPS: sub-layers with their optional profile/level, chroma and size.
    #[derive(Debug, Clone)]
    struct H265Fields {
        sub_layers: Vec<(bool, bool)>,
        chroma: (u32, bool),
        size: (u32, u32),
        window: Option<[u32; 4]>,
    }

    fn h265_fields() -> impl Strategy<Value = H265Fields> {
        (
            prop::collection::vec((any::<bool>(), any::<bool>()), 0..=6),
            (0u32..=3, any::<bool>()),
            (1u32..5000, 1u32..5000),
            prop::option::of([0u32..16, 0u32..16, 0u32..16, 0u32..16]),
        )
            .prop_map(|(sub_layers, chroma, size, window)| H265Fields {
                sub_layers,
                chroma,
                size,
                window,
            })
    }

    fn encode_h265(f: &H265Fields) -> (Vec<u8>, Option<(u32, u32)>) {
        let mut w = BitWriter::default();
        w.bits(4, 0);
        w.bits(3, f.sub_layers.len() as u32);
        w.bit(true);
        // General profile, tier, level: mostly zeros, so emulation prevention kicks in.
        w.bits(8, 0x01);
        w.bits(32, 0x6000_0000);
        w.bits(4, 0b1001);
        for _ in 0..44 {
            w.bit(false);
        }
        w.bits(8, 93);
        for (profile, level) in &f.sub_layers {
            w.bit(*profile);
            w.bit(*level);
        }
        if !f.sub_layers.is_empty() {
            for _ in f.sub_layers.len()..8 {
                w.bits(2, 0);
            }
        }
        for (profile, level) in &f.sub_layers {
            if *profile {
                w.bits(8, 0x01);
                w.bits(32, 0);
                w.bits(32, 0);
                w.bits(16, 0);
            }
            if *level {
                w.bits(8, 90);
            }
        }
        w.ue(0);
        w.ue(f.chroma.0);
        if f.chroma.0 == 3 {
            w.bit(f.chroma.1);
        }
        w.ue(f.size.0);
        w.ue(f.size.1);
        w.bit(f.window.is_some());
        for v in f.window.unwrap_or_default() {
            w.ue(v);
        }
        w.ue(0); // bit_depth_luma_minus8: what follows is not read
        let (ux, uy) = match (f.chroma.0 == 3 && f.chroma.1, f.chroma.0) {
            (false, 1) => (2, 2),
            (false, 2) => (2, 1),
            _ => (1, 1),
        };
        let c = f.window.unwrap_or_default();
        let width = i64::from(f.size.0) - i64::from(ux * (c[0] + c[1]));
        let height = i64::from(f.size.1) - i64::from(uy * (c[2] + c[3]));
        let size = (width > 0 && height > 0).then_some((width as u32, height as u32));
        ([vec![0x42, 0x01], escape(&w.finish())].concat(), size)
    }

    proptest! {
        #[test]
        fn h264_sizes_read_back(f in h264_fields()) {
            let (unit, size) = encode_h264(&f);
            let sps = h264(&unit);
            prop_assert_eq!(sps, Some(H264Sps { poc_type: f.poc_type, size }), "{:02x?}", unit);
        }

        #[test]
        fn h265_sizes_read_back(f in h265_fields()) {
            let (unit, size) = encode_h265(&f);
            prop_assert_eq!(h265_size(&unit), size, "{:02x?}", unit);
        }

        #[test]
        fn readers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = h264(&bytes);
            let _ = h265_size(&bytes);
        }
    }
}

//! Per-frame detectors with the semantics and defaults of ffmpeg's `blackdetect`,
//! `freezedetect` and `scdet`. Interval rules ("black for at least 2 s") belong to whoever
//! turns flags into events; these say what each filter decides for one frame.

use crate::simd::{Kernel, dispatch};
use crate::stats::sad_row;
use crate::{FrameStats, Picture};

/// Detector thresholds; the defaults are ffmpeg's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// blackdetect `pix_th`: a pixel is black at or below this fraction of the luma range.
    pub black_pixel_th: f64,
    /// blackdetect `pic_th`: a picture is black when this fraction of its pixels is.
    pub black_picture_th: f64,
    /// Full-range (JPEG) luma, 0-255, instead of limited 16-235.
    pub full_range: bool,
    /// freezedetect `n`: frozen when the mean absolute difference to the reference frame,
    /// as a fraction of 256, is at most this.
    pub freeze_noise: f64,
    /// scdet `threshold` (0-100): a scene cut when the score reaches it.
    pub scene_threshold: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            black_pixel_th: 0.10,
            black_picture_th: 0.98,
            full_range: false,
            freeze_noise: 0.001,
            scene_threshold: 10.0,
        }
    }
}

/// What the detectors decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flags {
    /// Fraction of black pixels.
    pub black_ratio: f64,
    /// blackdetect: the picture is black.
    pub black: bool,
    /// freezedetect: the picture equals (within the noise) the last picture that was not frozen.
    pub frozen: bool,
    /// scdet score, 0-100.
    pub scene_score: f64,
    /// scdet: a scene cut.
    pub scene_cut: bool,
}

/// One camera's detector state (the reference frame of freezedetect, scdet's last MAFD).
#[derive(Debug, Default)]
pub struct Detectors {
    config: DetectorConfig,
    /// freezedetect's reference: the last picture that was not frozen.
    reference: Option<OwnedPicture>,
    /// The buffers the next picture is copied into while it is compared with the
    /// reference; swapped with the reference when the picture is not frozen.
    spare: OwnedPicture,
    prev_mafd: f64,
}

/// A picture's visible samples, rows packed (stride = width).
#[derive(Debug, Default)]
struct OwnedPicture {
    planes: [Vec<u8>; 3],
    dims: [(usize, usize); 3],
}

impl Detectors {
    /// Detectors with the given thresholds.
    pub fn new(config: DetectorConfig) -> Self {
        Detectors {
            config,
            ..Detectors::default()
        }
    }

    /// Decides the flags of `pic`, whose statistics (with `y_dif` against the previous
    /// picture, `had_previous`) are `stats`.
    pub fn update(&mut self, pic: &Picture<'_>, stats: &FrameStats, had_previous: bool) -> Flags {
        struct Call<'a, 'p>(&'a mut Detectors, &'a Picture<'p>, &'a FrameStats, bool);
        impl Kernel for Call<'_, '_> {
            type Output = Flags;
            #[inline(always)]
            fn run(self) -> Flags {
                self.0.update_kernel(self.1, self.2, self.3)
            }
        }
        dispatch(Call(self, pic, stats, had_previous))
    }

    #[inline(always)]
    pub(crate) fn update_kernel(
        &mut self,
        pic: &Picture<'_>,
        stats: &FrameStats,
        had_previous: bool,
    ) -> Flags {
        let (black_ratio, scene_score) =
            black_and_scene(&self.config, stats, had_previous, &mut self.prev_mafd);
        let c = &self.config;

        // freezedetect: all planes against the last frame that was not frozen. One pass per
        // plane both compares with the reference and copies the picture into the spare
        // buffers (rows still in L1), so a picture that becomes the reference costs no
        // second read.
        let planes = [&pic.y, &pic.u, &pic.v];
        let same_size = self.reference.as_ref().is_some_and(|r| {
            planes
                .iter()
                .zip(&r.dims)
                .all(|(p, d)| (p.width(), p.height()) == *d)
        });
        let (mut sad, mut count) = (0u64, 0u64);
        for (k, p) in planes.iter().enumerate() {
            let (w, h) = (p.width(), p.height());
            let spare = &mut self.spare.planes[k];
            spare.clear();
            spare.reserve(w * h);
            self.spare.dims[k] = (w, h);
            match self.reference.as_ref().filter(|_| same_size) {
                Some(r) => {
                    for (row, reference) in p.rows().zip(r.planes[k].chunks_exact(w.max(1))) {
                        sad += sad_row(row, reference);
                        spare.extend_from_slice(row);
                    }
                    count += (w * h) as u64;
                }
                None => p.rows().for_each(|row| spare.extend_from_slice(row)),
            }
        }
        let frozen = same_size && is_frozen(c, sad, count);
        if !frozen {
            let reference = self.reference.get_or_insert_with(OwnedPicture::default);
            std::mem::swap(reference, &mut self.spare);
        }
        flags(c, black_ratio, frozen, scene_score)
    }
}

/// blackdetect's ratio of black pixels and scdet's score (which updates `prev_mafd`).
#[inline(always)]
pub(crate) fn black_and_scene(
    c: &DetectorConfig,
    stats: &FrameStats,
    had_previous: bool,
    prev_mafd: &mut f64,
) -> (f64, f64) {
    // blackdetect: the threshold is truncated to an integer, as in ffmpeg.
    let th = if c.full_range {
        c.black_pixel_th * 255.0
    } else {
        16.0 + c.black_pixel_th * 219.0
    } as usize;
    let total: u64 = stats.luma_hist.iter().map(|&n| u64::from(n)).sum();
    let black_px: u64 = stats.luma_hist[..=th.min(255)]
        .iter()
        .map(|&n| u64::from(n))
        .sum();
    let black_ratio = black_px as f64 / total.max(1) as f64;

    // scdet: luma only, MAFD in percent of the sample range.
    let mut scene_score = 0.0;
    if had_previous {
        let mafd = stats.y_dif * 100.0 / 256.0;
        let diff = (mafd - *prev_mafd).abs();
        scene_score = mafd.min(diff).clamp(0.0, 100.0);
        *prev_mafd = mafd;
    }
    (black_ratio, scene_score)
}

/// freezedetect's decision from the SAD of all planes against the reference.
pub(crate) fn is_frozen(c: &DetectorConfig, sad: u64, count: u64) -> bool {
    sad as f64 / count.max(1) as f64 / 256.0 <= c.freeze_noise
}

/// The flags from the three detectors' results.
pub(crate) fn flags(c: &DetectorConfig, black_ratio: f64, frozen: bool, scene_score: f64) -> Flags {
    Flags {
        black_ratio,
        black: black_ratio >= c.black_picture_th,
        frozen,
        scene_score,
        scene_cut: scene_score >= c.scene_threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Plane, frame_stats};

    fn planes(y: u8, c: u8, w: usize, h: usize) -> (Vec<u8>, Vec<u8>) {
        (vec![y; w * h], vec![c; w * h / 4])
    }

    fn pic<'a>(y: &'a [u8], c: &'a [u8], w: usize, h: usize) -> Picture<'a> {
        Picture {
            y: Plane::new(y, w, h, w).unwrap(),
            u: Plane::new(c, w / 2, h / 2, w / 2).unwrap(),
            v: Plane::new(c, w / 2, h / 2, w / 2).unwrap(),
        }
    }

    #[test]
    fn black_threshold_is_37_in_limited_range() {
        let (w, h) = (10, 10);
        let mut d = Detectors::default();
        for (luma, black) in [(16u8, true), (37, true), (38, false)] {
            let (y, c) = planes(luma, 128, w, h);
            let p = pic(&y, &c, w, h);
            let f = d.update(&p, &frame_stats(&p, None), false);
            assert_eq!(f.black, black, "luma {luma}");
        }
    }

    #[test]
    fn frozen_compares_with_the_last_moving_frame_and_cuts_score_high() {
        let (w, h) = (16, 16);
        let mut d = Detectors::default();
        let frames = [
            (100u8, false, false),
            (100, true, false),
            (100, true, false),
            (20, false, true),
        ];
        let mut prev: Option<Vec<u8>> = None;
        for (luma, frozen, cut) in frames {
            let (y, c) = planes(luma, 128, w, h);
            let p = pic(&y, &c, w, h);
            let prev_plane = prev.as_ref().map(|v| Plane::new(v, w, h, w).unwrap());
            let stats = frame_stats(&p, prev_plane.as_ref());
            let f = d.update(&p, &stats, prev.is_some());
            assert_eq!((f.frozen, f.scene_cut), (frozen, cut), "luma {luma}: {f:?}");
            prev = Some(y);
        }
    }
}

//! Frame statistics kernels over decoded YUV 4:2:0 planes.
//!
//! Pure functions, no I/O, so that they can be unit-tested against known pictures,
//! compared with ffmpeg's `signalstats` and benchmarked against memcpy. Planes carry a
//! stride (decoders pad rows) and are read row by row over the visible width only.

mod analyzer;
mod detect;
mod plane;
#[doc(hidden)]
pub mod reference;
mod simd;
mod stats;

pub use analyzer::Analyzer;
pub use detect::{DetectorConfig, Detectors, Flags};
pub use plane::{Plane, PlaneError};
pub use simd::{Isa, active_isa, set_max_isa};
pub use stats::{
    FrameStats, Picture, chroma_stats, frame_stats, histogram, laplacian_variance, mean_abs_diff,
    sum_abs_diff,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Luma mean, min and max through [`frame_stats`] (chroma is irrelevant here).
    fn luma(y: &Plane<'_>) -> (f64, u8, u8) {
        let c = [128u8; 1];
        let chroma = Plane::new(&c, 1, 1, 1).unwrap();
        let s = frame_stats(
            &Picture {
                y: *y,
                u: chroma,
                v: chroma,
            },
            None,
        );
        (s.y_avg, s.y_min, s.y_max)
    }

    #[test]
    fn flat_picture() {
        let data = vec![16u8; 64 * 8];
        assert_eq!(luma(&Plane::new(&data, 64, 8, 64).unwrap()), (16.0, 16, 16));
    }

    #[test]
    fn padding_beyond_width_is_ignored() {
        // 3x2 picture in rows of stride 5; padding bytes are 255 and must not count.
        let data = [10, 20, 30, 255, 255, 40, 50, 60, 255, 255];
        let (avg, min, max) = luma(&Plane::new(&data, 3, 2, 5).unwrap());
        assert_eq!(min, 10);
        assert_eq!(max, 60);
        assert!((avg - 35.0).abs() < 1e-9);
    }

    #[test]
    fn matches_a_naive_pass_on_a_gradient() {
        let (w, h, stride) = (37, 11, 48);
        let data: Vec<u8> = (0..stride * h).map(|i| (i * 7 % 251) as u8).collect();
        let plane = Plane::new(&data, w, h, stride).unwrap();
        let visible: Vec<u8> = plane.rows().flatten().copied().collect();
        assert_eq!(visible.len(), w * h);
        let naive_avg = visible.iter().map(|&v| f64::from(v)).sum::<f64>() / visible.len() as f64;
        let (avg, min, max) = luma(&plane);
        assert!((avg - naive_avg).abs() < 1e-9);
        assert_eq!(min, *visible.iter().min().unwrap());
        assert_eq!(max, *visible.iter().max().unwrap());
    }
}

/// The tuned kernels, in every compiled copy (dispatched: AVX2 where the CPU has it; and
/// the baseline copy, called directly), against the original kernels in [`reference`]:
/// equal bit for bit, never just close.
#[cfg(test)]
mod exactness {
    use super::*;
    use crate::reference as r;
    use crate::stats::tests::noise;

    /// A padded plane (`stride - width` bytes of 0xff garbage per row) of one of several
    /// kinds of content.
    fn plane_data(kind: u64, seed: u64, w: usize, h: usize, stride: usize) -> Vec<u8> {
        let rnd = noise(seed.wrapping_mul(0x9e37_79b9), w * h);
        let mut data = vec![0xffu8; stride * h];
        for y in 0..h {
            for x in 0..w {
                let n = rnd[y * w + x];
                data[y * stride + x] = match kind % 6 {
                    0 => n,
                    1 => 16,
                    2 => ((x * 3 + y * 5) % 256) as u8,
                    3 => {
                        if (x + y) % 2 == 0 {
                            0
                        } else {
                            255
                        }
                    }
                    4 => (x * 200 / w.max(1)) as u8 + n % 8,
                    _ => {
                        if n < 8 {
                            255
                        } else {
                            20 + n % 3
                        }
                    }
                };
            }
        }
        data
    }

    struct Owned {
        planes: [(Vec<u8>, usize, usize, usize); 3],
    }

    impl Owned {
        fn new(kind: u64, seed: u64, w: usize, h: usize, pad: usize) -> Self {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let mk = |k, s, w, h| (plane_data(k, s, w, h, w + pad), w, h, w + pad);
            Owned {
                planes: [
                    mk(kind, seed, w, h),
                    mk(kind + 1, seed + 1, cw, ch),
                    mk(kind + 2, seed + 2, cw, ch),
                ],
            }
        }

        fn picture(&self) -> Picture<'_> {
            fn p(plane: &(Vec<u8>, usize, usize, usize)) -> Plane<'_> {
                let (d, w, h, s) = plane;
                Plane::new(d, *w, *h, *s).expect("fits")
            }
            Picture {
                y: p(&self.planes[0]),
                u: p(&self.planes[1]),
                v: p(&self.planes[2]),
            }
        }
    }

    const SIZES: [(usize, usize); 13] = [
        (1, 1),
        (2, 7),
        (3, 3),
        (7, 2),
        (16, 16),
        (33, 9),
        (64, 36),
        (130, 10),
        (257, 5),
        (630, 354),
        (4099, 3),
        (8200, 4),
        (262_150, 3),
    ];

    #[test]
    fn frame_stats_equal_the_reference_bit_for_bit() {
        let table = stats::sat_table();
        for (i, &(w, h)) in SIZES.iter().enumerate() {
            for kind in 0..6u64 {
                let seed = i as u64 * 100 + kind;
                let cur = Owned::new(kind, seed, w, h, (seed % 70) as usize);
                let prev = Owned::new(kind + 3, seed + 50, w, h, 64);
                let (pic, prev_y) = (cur.picture(), prev.picture().y);
                for prev in [None, Some(&prev_y)] {
                    let want = r::frame_stats(&pic, prev);
                    let what = format!("{w}x{h} kind {kind} prev {}", prev.is_some());
                    assert_eq!(frame_stats(&pic, prev), want, "dispatched: {what}");
                    assert_eq!(
                        stats::frame_stats_kernel(&pic, prev, table),
                        want,
                        "baseline: {what}"
                    );
                }
                assert_eq!(histogram(&pic.y), r::histogram(&pic.y));
                assert_eq!(
                    laplacian_variance(&pic.y).to_bits(),
                    r::laplacian_variance(&pic.y).to_bits()
                );
                assert_eq!(
                    sum_abs_diff(&pic.y, &prev_y),
                    r::sum_abs_diff(&pic.y, &prev_y)
                );
                assert_eq!(
                    mean_abs_diff(&pic.y, &prev_y).to_bits(),
                    r::mean_abs_diff(&pic.y, &prev_y).to_bits()
                );
            }
        }
    }

    #[test]
    fn detectors_and_analyzer_equal_the_reference_on_sequences() {
        // Moving, frozen for a while (and nearly frozen), moving again, a freeze across a
        // size change, odd sizes, black.
        let seq: Vec<(u64, u64, usize, usize)> = vec![
            (0, 1, 64, 36),
            (0, 2, 64, 36),
            (0, 2, 64, 36),
            (0, 2, 64, 36),
            (0, 2, 64, 36),
            (5, 2, 64, 36),
            (0, 2, 64, 36),
            (1, 3, 64, 36),
            (1, 3, 64, 36),
            (1, 3, 33, 17),
            (1, 3, 33, 17),
            (1, 3, 64, 36),
            (2, 4, 66, 38),
            (2, 4, 66, 38),
            (3, 5, 66, 38),
            (4, 6, 66, 38),
            (1, 7, 2, 2),
            (1, 7, 2, 2),
            (4, 6, 66, 38),
            (4, 6, 66, 38),
        ];
        let pictures: Vec<Owned> = seq
            .iter()
            .map(|&(kind, seed, w, h)| Owned::new(kind, seed, w, h, 8))
            .collect();
        let table = stats::sat_table();
        for config in [
            DetectorConfig::default(),
            DetectorConfig {
                freeze_noise: 0.2,
                full_range: true,
                scene_threshold: 3.0,
                black_pixel_th: 0.3,
                ..DetectorConfig::default()
            },
        ] {
            let mut want = r::Detectors::new(config);
            let (mut dispatched, mut baseline) = (Analyzer::new(config), Analyzer::new(config));
            let mut detectors = (Detectors::new(config), Detectors::new(config));
            // What the worker keeps: the previous luma, packed.
            let mut prev: Option<(Vec<u8>, usize, usize)> = None;
            for (i, owned) in pictures.iter().enumerate() {
                let pic = owned.picture();
                let (w, h) = (pic.y.width(), pic.y.height());
                let prev_plane = prev
                    .as_ref()
                    .filter(|p| (p.1, p.2) == (w, h))
                    .map(|p| Plane::new(&p.0, w, h, w).expect("packed"));
                let s = r::frame_stats(&pic, prev_plane.as_ref());
                let had = prev_plane.is_some();
                let f = want.update(&pic, &s, had);
                assert_eq!(
                    detectors.0.update(&pic, &s, had),
                    f,
                    "detectors, picture {i}"
                );
                assert_eq!(detectors.1.update_kernel(&pic, &s, had), f, "baseline, {i}");
                assert_eq!(
                    dispatched.measure(&pic),
                    (s.clone(), f),
                    "dispatched, picture {i}"
                );
                assert_eq!(
                    baseline.measure_kernel(&pic, table),
                    (s, f),
                    "baseline, picture {i}"
                );
                prev = Some((pic.y.rows().flatten().copied().collect(), w, h));
            }
        }
    }

    #[test]
    fn sixteen_bit_banks_never_overflow() {
        // A flat 1080p picture puts 2,073,600 samples in one bin; a single 300,000-sample
        // row is longer than a bank segment.
        for (w, h, v) in [(1920, 1080, 16u8), (300_000, 1, 200), (7, 40_000, 0)] {
            let data = vec![v; w * h];
            let plane = Plane::new(&data, w, h, w).expect("fits");
            let hist = histogram(&plane);
            assert_eq!(hist[usize::from(v)] as usize, w * h);
            assert_eq!(hist, r::histogram(&plane));
        }
    }

    #[test]
    fn the_avx2_copy_is_the_one_that_runs_where_the_cpu_has_it() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            active_isa() == Isa::Avx2,
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("bmi2")
        );
    }
}

//! Frame statistics kernels over decoded YUV 4:2:0 planes.
//!
//! Pure functions, no I/O, so that they can be unit-tested against known pictures,
//! compared with ffmpeg's `signalstats` and benchmarked against memcpy. Planes carry a
//! stride (decoders pad rows) and are read row by row over the visible width only.

mod detect;
mod plane;
mod stats;

pub use detect::{DetectorConfig, Detectors, Flags};
pub use plane::{Plane, PlaneError};
pub use stats::{
    FrameStats, Picture, frame_stats, laplacian_variance, mean_abs_diff, sum_abs_diff,
};

/// 256-bin histogram of the visible samples of a plane.
pub fn histogram(plane: &Plane<'_>) -> [u32; 256] {
    let mut banks = [[0u32; 256]; 4];
    for row in plane.rows() {
        let mut chunks = row.chunks_exact(4);
        for c in &mut chunks {
            banks[0][usize::from(c[0])] += 1;
            banks[1][usize::from(c[1])] += 1;
            banks[2][usize::from(c[2])] += 1;
            banks[3][usize::from(c[3])] += 1;
        }
        for &v in chunks.remainder() {
            banks[0][usize::from(v)] += 1;
        }
    }
    let mut hist = [0u32; 256];
    for (i, h) in hist.iter_mut().enumerate() {
        *h = banks[0][i] + banks[1][i] + banks[2][i] + banks[3][i];
    }
    hist
}

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

//! Whole-picture statistics with ffmpeg `signalstats` semantics, plus standard deviation,
//! a 16-bin histogram and sharpness.
//!
//! One pass per plane: the luma histogram gives min, max, percentiles, mean and variance;
//! chroma means and saturation come from one pass over the chroma planes (saturation via a
//! 64 KiB lookup table instead of a `hypot` per sample); the frame difference and the
//! Laplacian run over row slices the compiler vectorizes.

use std::sync::OnceLock;

use crate::{Plane, histogram};

/// The planes of one decoded YUV 4:2:0 picture.
#[derive(Debug, Clone, Copy)]
pub struct Picture<'a> {
    /// Luma.
    pub y: Plane<'a>,
    /// Cb, half width and height.
    pub u: Plane<'a>,
    /// Cr, half width and height.
    pub v: Plane<'a>,
}

/// Statistics of one picture. Names follow `signalstats` where it has them.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameStats {
    /// Mean luma (YAVG).
    pub y_avg: f64,
    /// Smallest luma (YMIN).
    pub y_min: u8,
    /// Largest luma (YMAX).
    pub y_max: u8,
    /// 10th percentile of luma (YLOW).
    pub y_low: u8,
    /// 90th percentile of luma (YHIGH).
    pub y_high: u8,
    /// Standard deviation of luma (population).
    pub y_std: f64,
    /// Mean absolute luma difference to the previous picture (YDIF); 0 without one.
    pub y_dif: f64,
    /// Mean Cb (UAVG).
    pub u_avg: f64,
    /// Mean Cr (VAVG).
    pub v_avg: f64,
    /// Mean saturation, `trunc(hypot(u - 128, v - 128))` per chroma sample (SATAVG).
    pub sat_avg: f64,
    /// Luma histogram in 16 bins of 16 values each (bin k counts values 16k..16k+15).
    pub y_hist: [u32; 16],
    /// Variance of the 4-neighbour 3x3 Laplacian of luma over interior pixels: higher is sharper.
    pub sharpness: f64,
    /// The full 256-bin luma histogram (for the detectors).
    pub luma_hist: [u32; 256],
}

/// Computes [`FrameStats`]; `prev_y` is the previous picture's luma (same size) for `y_dif`.
pub fn frame_stats(pic: &Picture<'_>, prev_y: Option<&Plane<'_>>) -> FrameStats {
    let hist = histogram(&pic.y);
    let count: u64 = hist.iter().map(|&n| u64::from(n)).sum();
    let (mut sum, mut sum_sq) = (0u64, 0u64);
    for (v, &n) in hist.iter().enumerate() {
        sum += v as u64 * u64::from(n);
        sum_sq += (v * v) as u64 * u64::from(n);
    }
    let n = count.max(1) as f64;
    let y_avg = sum as f64 / n;
    let y_std = (sum_sq as f64 / n - y_avg * y_avg).max(0.0).sqrt();
    let percentile = |pct: f64| -> u8 {
        // signalstats: the first value whose cumulative count reaches lrint(fs * pct / 100).
        let target = (count as f64 * pct / 100.0).round_ties_even() as u64;
        let mut acc = 0u64;
        for (v, &h) in hist.iter().enumerate() {
            acc += u64::from(h);
            if acc >= target {
                return v as u8;
            }
        }
        255
    };
    let mut y_hist = [0u32; 16];
    for (k, bin) in y_hist.iter_mut().enumerate() {
        *bin = hist[k * 16..k * 16 + 16].iter().sum();
    }
    let (u_avg, v_avg, sat_avg) = chroma(&pic.u, &pic.v);
    FrameStats {
        y_avg,
        y_min: hist.iter().position(|&h| h > 0).unwrap_or(0) as u8,
        y_max: hist.iter().rposition(|&h| h > 0).unwrap_or(0) as u8,
        y_low: percentile(10.0),
        y_high: percentile(90.0),
        y_std,
        y_dif: prev_y.map_or(0.0, |p| mean_abs_diff(&pic.y, p)),
        u_avg,
        v_avg,
        sat_avg,
        y_hist,
        sharpness: laplacian_variance(&pic.y),
        luma_hist: hist,
    }
}

/// Saturation of every (u, v) pair, as signalstats computes it.
fn sat_table() -> &'static [u8; 65536] {
    static TABLE: OnceLock<Box<[u8; 65536]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0u8; 65536]);
        for u in 0..256usize {
            for v in 0..256usize {
                let s = (u as f64 - 128.0).hypot(v as f64 - 128.0);
                t[u << 8 | v] = s as u8;
            }
        }
        t
    })
}

/// (mean U, mean V, mean saturation).
fn chroma(u: &Plane<'_>, v: &Plane<'_>) -> (f64, f64, f64) {
    let table = sat_table();
    let (mut su, mut sv, mut ss, mut n) = (0u64, 0u64, 0u64, 0u64);
    for (ru, rv) in u.rows().zip(v.rows()) {
        su += ru.iter().map(|&x| u64::from(x)).sum::<u64>();
        sv += rv.iter().map(|&x| u64::from(x)).sum::<u64>();
        ss += ru
            .iter()
            .zip(rv)
            .map(|(&a, &b)| u64::from(table[usize::from(a) << 8 | usize::from(b)]))
            .sum::<u64>();
        n += ru.len() as u64;
    }
    let n = n.max(1) as f64;
    (su as f64 / n, sv as f64 / n, ss as f64 / n)
}

/// Sum of absolute differences of two planes; `None` when their sizes differ.
pub fn sum_abs_diff(a: &Plane<'_>, b: &Plane<'_>) -> Option<u64> {
    if a.width() != b.width() || a.height() != b.height() {
        return None;
    }
    let mut total = 0u64;
    for (ra, rb) in a.rows().zip(b.rows()) {
        // Chunks keep the per-chunk sum in u32 (255 * 4096 fits) so the loop vectorizes.
        for (ca, cb) in ra.chunks(4096).zip(rb.chunks(4096)) {
            total += u64::from(
                ca.iter()
                    .zip(cb)
                    .map(|(&x, &y)| u32::from(x.abs_diff(y)))
                    .sum::<u32>(),
            );
        }
    }
    Some(total)
}

/// Mean absolute difference of two planes of the same size (0 when the sizes differ).
pub fn mean_abs_diff(a: &Plane<'_>, b: &Plane<'_>) -> f64 {
    sum_abs_diff(a, b).map_or(0.0, |sad| {
        sad as f64 / (a.width() * a.height()).max(1) as f64
    })
}

/// Variance of `up + down + left + right - 4 * centre` over the interior of the plane.
pub fn laplacian_variance(p: &Plane<'_>) -> f64 {
    let (w, h) = (p.width(), p.height());
    if w < 3 || h < 3 {
        return 0.0;
    }
    let rows: Vec<&[u8]> = p.rows().collect();
    let (mut sum, mut sum_sq) = (0i64, 0i64);
    for r in 1..h - 1 {
        let (up, mid, down) = (rows[r - 1], rows[r], rows[r + 1]);
        let (mut s, mut sq) = (0i64, 0i64);
        for x in 1..w - 1 {
            let l = i32::from(up[x])
                + i32::from(down[x])
                + i32::from(mid[x - 1])
                + i32::from(mid[x + 1])
                - 4 * i32::from(mid[x]);
            s += i64::from(l);
            sq += i64::from(l * l);
        }
        sum += s;
        sum_sq += sq;
    }
    let n = ((w - 2) * (h - 2)) as f64;
    let mean = sum as f64 / n;
    (sum_sq as f64 / n - mean * mean).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pic<'a>(y: &'a [u8], u: &'a [u8], v: &'a [u8], w: usize, h: usize) -> Picture<'a> {
        Picture {
            y: Plane::new(y, w, h, w).unwrap(),
            u: Plane::new(u, w / 2, h / 2, w / 2).unwrap(),
            v: Plane::new(v, w / 2, h / 2, w / 2).unwrap(),
        }
    }

    /// A slow, obviously-right version of every statistic.
    fn naive(y: &[u8], u: &[u8], v: &[u8], prev: Option<&[u8]>, w: usize, h: usize) -> FrameStats {
        let n = y.len() as f64;
        let avg = y.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = y.iter().map(|&x| (f64::from(x) - avg).powi(2)).sum::<f64>() / n;
        let mut sorted = y.to_vec();
        sorted.sort_unstable();
        let pct =
            |p: f64| sorted[((y.len() as f64 * p / 100.0).round_ties_even() as usize).max(1) - 1];
        let mut hist = [0u32; 16];
        y.iter().for_each(|&x| hist[usize::from(x / 16)] += 1);
        let cn = u.len() as f64;
        let sat = u
            .iter()
            .zip(v)
            .map(|(&a, &b)| ((f64::from(a) - 128.0).hypot(f64::from(b) - 128.0)) as u8 as f64)
            .sum::<f64>()
            / cn;
        let mut lap = Vec::new();
        for r in 1..h - 1 {
            for x in 1..w - 1 {
                let at = |rr: usize, xx: usize| i64::from(y[rr * w + xx]);
                lap.push(
                    (at(r - 1, x) + at(r + 1, x) + at(r, x - 1) + at(r, x + 1) - 4 * at(r, x))
                        as f64,
                );
            }
        }
        let lm = lap.iter().sum::<f64>() / lap.len() as f64;
        FrameStats {
            y_avg: avg,
            y_min: sorted[0],
            y_max: sorted[sorted.len() - 1],
            y_low: pct(10.0),
            y_high: pct(90.0),
            y_std: var.sqrt(),
            y_dif: prev.map_or(0.0, |p| {
                y.iter()
                    .zip(p)
                    .map(|(&a, &b)| f64::from(a.abs_diff(b)))
                    .sum::<f64>()
                    / n
            }),
            u_avg: u.iter().map(|&x| f64::from(x)).sum::<f64>() / cn,
            v_avg: v.iter().map(|&x| f64::from(x)).sum::<f64>() / cn,
            sat_avg: sat,
            y_hist: hist,
            sharpness: lap.iter().map(|l| (l - lm).powi(2)).sum::<f64>() / lap.len() as f64,
            luma_hist: {
                let mut h = [0u32; 256];
                y.iter().for_each(|&x| h[usize::from(x)] += 1);
                h
            },
        }
    }

    fn close(a: &FrameStats, b: &FrameStats) {
        let f = |x: f64, y: f64, what: &str| {
            assert!((x - y).abs() < 1e-6 * (1.0 + y.abs()), "{what}: {x} vs {y}")
        };
        f(a.y_avg, b.y_avg, "y_avg");
        f(a.y_std, b.y_std, "y_std");
        f(a.y_dif, b.y_dif, "y_dif");
        f(a.u_avg, b.u_avg, "u_avg");
        f(a.v_avg, b.v_avg, "v_avg");
        f(a.sat_avg, b.sat_avg, "sat_avg");
        f(a.sharpness, b.sharpness, "sharpness");
        assert_eq!(
            (a.y_min, a.y_max, a.y_low, a.y_high, a.y_hist),
            (b.y_min, b.y_max, b.y_low, b.y_high, b.y_hist)
        );
    }

    /// Deterministic pseudo-random bytes (xorshift), so the property test needs no crate.
    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn matches_the_naive_definitions_on_many_pictures() {
        for (i, (w, h)) in [(16, 16), (64, 36), (38, 22), (130, 10), (6, 4)]
            .into_iter()
            .enumerate()
        {
            for seed in 0..5u64 {
                let y = noise(seed * 31 + i as u64, w * h);
                let prev = noise(seed * 17 + 5, w * h);
                let u = noise(seed + 100, w * h / 4);
                let v = noise(seed + 200, w * h / 4);
                let p = pic(&y, &u, &v, w, h);
                let prev_plane = Plane::new(&prev, w, h, w).unwrap();
                close(
                    &frame_stats(&p, Some(&prev_plane)),
                    &naive(&y, &u, &v, Some(&prev), w, h),
                );
            }
        }
    }

    #[test]
    fn flat_and_padded_pictures() {
        let (w, h) = (8, 4);
        let y = vec![16u8; w * h];
        let c = vec![128u8; w * h / 4];
        let s = frame_stats(&pic(&y, &c, &c, w, h), None);
        assert_eq!((s.y_min, s.y_max, s.y_low, s.y_high), (16, 16, 16, 16));
        assert_eq!(
            (s.y_std, s.y_dif, s.sat_avg, s.sharpness),
            (0.0, 0.0, 0.0, 0.0)
        );
        assert_eq!(s.y_hist[1], 32);
        // Padding beyond the width (stride 12) must not count.
        let mut padded = vec![255u8; 12 * h];
        for r in 0..h {
            padded[r * 12..r * 12 + w].fill(16);
        }
        let p = Picture {
            y: Plane::new(&padded, w, h, 12).unwrap(),
            ..pic(&y, &c, &c, w, h)
        };
        assert_eq!(frame_stats(&p, None).y_max, 16);
    }

    #[test]
    fn sharpness_rises_with_detail() {
        let (w, h) = (32, 32);
        let flat = vec![100u8; w * h];
        let checker: Vec<u8> = (0..w * h)
            .map(|i| if (i % w + i / w) % 2 == 0 { 50 } else { 200 })
            .collect();
        let c = vec![128u8; w * h / 4];
        assert!(
            frame_stats(&pic(&checker, &c, &c, w, h), None).sharpness
                > frame_stats(&pic(&flat, &c, &c, w, h), None).sharpness + 1000.0
        );
    }
}

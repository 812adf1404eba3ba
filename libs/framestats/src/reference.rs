//! The kernels as they were before they were tuned for speed, kept verbatim: the oracle
//! the tuned kernels must equal bit for bit (tests), and the "before" column of the
//! criterion benchmarks. Not part of the API.
#![allow(missing_docs, dead_code)]

use std::sync::OnceLock;

use crate::{DetectorConfig, Flags, FrameStats, Picture, Plane};

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

/// One camera's detector state (the reference frame of freezedetect, scdet's last MAFD).
#[derive(Debug, Default)]
pub struct Detectors {
    config: DetectorConfig,
    reference: Option<OwnedPicture>,
    prev_mafd: f64,
}

#[derive(Debug)]
struct OwnedPicture {
    planes: [Vec<u8>; 3],
    dims: [(usize, usize); 3],
}

impl OwnedPicture {
    fn copy(pic: &Picture<'_>) -> Self {
        let planes = [&pic.y, &pic.u, &pic.v];
        OwnedPicture {
            planes: planes.map(|p| p.rows().flatten().copied().collect()),
            dims: planes.map(|p| (p.width(), p.height())),
        }
    }
}

impl Detectors {
    /// Detectors with the given thresholds.
    pub fn new(config: DetectorConfig) -> Self {
        Detectors {
            config,
            reference: None,
            prev_mafd: 0.0,
        }
    }

    /// Decides the flags of `pic`, whose statistics (with `y_dif` against the previous
    /// picture, `had_previous`) are `stats`.
    pub fn update(&mut self, pic: &Picture<'_>, stats: &FrameStats, had_previous: bool) -> Flags {
        let c = &self.config;
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
            let diff = (mafd - self.prev_mafd).abs();
            scene_score = mafd.min(diff).clamp(0.0, 100.0);
            self.prev_mafd = mafd;
        }

        // freezedetect: all planes against the last frame that was not frozen.
        let frozen = match &self.reference {
            Some(r) => {
                let planes = [&pic.y, &pic.u, &pic.v];
                let same_size = planes
                    .iter()
                    .zip(&r.dims)
                    .all(|(p, d)| (p.width(), p.height()) == *d);
                same_size && {
                    let (mut sad, mut count) = (0u64, 0u64);
                    for (p, (data, &(w, h))) in planes.iter().zip(r.planes.iter().zip(&r.dims)) {
                        if let Ok(rp) = Plane::new(data, w, h, w) {
                            sad += sum_abs_diff(p, &rp).unwrap_or(0);
                            count += (w * h) as u64;
                        }
                    }
                    sad as f64 / count.max(1) as f64 / 256.0 <= c.freeze_noise
                }
            }
            None => false,
        };
        if !frozen {
            self.reference = Some(OwnedPicture::copy(pic));
        }
        Flags {
            black_ratio,
            black: black_ratio >= c.black_picture_th,
            frozen,
            scene_score,
            scene_cut: scene_score >= c.scene_threshold,
        }
    }
}

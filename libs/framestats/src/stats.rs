//! Whole-picture statistics with ffmpeg `signalstats` semantics, plus standard deviation,
//! a 16-bin histogram and sharpness.
//!
//! One pass per plane. The luma pass reads each row once for the histogram (which gives min,
//! max, percentiles, mean and variance), the difference to the previous luma and the
//! Laplacian (whose three rows are still in L1); the chroma pass gives the means and the
//! saturation (a 64 KiB lookup table instead of a `hypot` per sample). The difference and
//! the Laplacian work in narrow integers with chunked partial sums, which the compiler
//! vectorizes. Every public function runs through [`dispatch`], so the AVX2 copy
//! of the loops runs where the CPU has it. Only integers are summed, so every copy gives
//! bit-identical results.

use std::sync::OnceLock;

use crate::Plane;
use crate::simd::{Kernel, dispatch};

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
    struct Call<'a, 'p, 'q>(&'a Picture<'p>, Option<&'a Plane<'q>>, &'static [u8; 65536]);
    impl Kernel for Call<'_, '_, '_> {
        type Output = FrameStats;
        #[inline(always)]
        fn run(self) -> FrameStats {
            frame_stats_kernel(self.0, self.1, self.2)
        }
    }
    dispatch(Call(pic, prev_y, sat_table()))
}

#[inline(always)]
pub(crate) fn frame_stats_kernel(
    pic: &Picture<'_>,
    prev_y: Option<&Plane<'_>>,
    table: &[u8; 65536],
) -> FrameStats {
    let luma = luma_kernel(&pic.y, prev_y);
    let chroma = chroma_kernel(&pic.u, &pic.v, table);
    finish(&pic.y, luma.hist, luma.sad, luma.sharpness, chroma)
}

/// [`FrameStats`] from the integer results of the passes: the luma histogram, the SAD
/// against the previous luma (if any), the sharpness and the chroma means.
#[inline(always)]
pub(crate) fn finish(
    y: &Plane<'_>,
    hist: [u32; 256],
    sad: Option<u64>,
    sharpness: f64,
    (u_avg, v_avg, sat_avg): (f64, f64, f64),
) -> FrameStats {
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
    FrameStats {
        y_avg,
        y_min: hist.iter().position(|&h| h > 0).unwrap_or(0) as u8,
        y_max: hist.iter().rposition(|&h| h > 0).unwrap_or(0) as u8,
        y_low: percentile(10.0),
        y_high: percentile(90.0),
        y_std,
        y_dif: sad.map_or(0.0, |sad| mean_of_sad(y, sad)),
        u_avg,
        v_avg,
        sat_avg,
        y_hist,
        sharpness,
        luma_hist: hist,
    }
}

/// 256-bin histogram of the visible samples of a plane.
pub fn histogram(plane: &Plane<'_>) -> [u32; 256] {
    struct Call<'a, 'p>(&'a Plane<'p>);
    impl Kernel for Call<'_, '_> {
        type Output = [u32; 256];
        #[inline(always)]
        fn run(self) -> [u32; 256] {
            histogram_kernel(self.0)
        }
    }
    dispatch(Call(plane))
}

/// What one pass over the luma plane gives.
struct Luma {
    hist: [u32; 256],
    /// SAD against the previous luma, when it has the same size.
    sad: Option<u64>,
    sharpness: f64,
}

/// Histogram, SAD against the previous luma and the Laplacian in ONE pass over the rows:
/// each row is read from memory once (the decoder's output is cold in cache by the time
/// it is measured) and its neighbours are still in L1 for the Laplacian.
#[inline(always)]
fn luma_kernel(y: &Plane<'_>, prev: Option<&Plane<'_>>) -> Luma {
    let (w, h) = (y.width(), y.height());
    let prev = prev.filter(|p| (p.width(), p.height()) == (w, h));
    let mut prev_rows = prev.map(|p| p.rows());
    let mut banks = Banks::new();
    let mut sums = RowSums::default();
    let (mut up, mut mid): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    for row in y.rows() {
        let prev_row = prev_rows.as_mut().and_then(Iterator::next);
        sums.add(luma_row(&mut banks, row, up.zip(mid), prev_row, None));
        (up, mid) = (mid, Some(row));
    }
    let (sad, lap_sum, lap_sq) = (sums.sad_a, sums.lap_sum, sums.lap_sq);
    Luma {
        hist: banks.total(),
        sad: prev.map(|_| sad),
        sharpness: laplacian_of_sums(w, h, lap_sum, lap_sq),
    }
}

/// Samples per bank segment: a bank gets at most 32,775 increments from one.
const SEGMENT: usize = 8 * 32_768;

/// Samples per block of [`luma_row`].
const BLOCK: usize = 64;

/// What [`luma_row`] adds up.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RowSums {
    /// SAD against the first other row.
    pub(crate) sad_a: u64,
    /// SAD against the second other row.
    pub(crate) sad_b: u64,
    /// Sum and sum of squares of the Laplacian.
    pub(crate) lap_sum: i64,
    pub(crate) lap_sq: u64,
}

impl RowSums {
    #[inline(always)]
    pub(crate) fn add(&mut self, o: RowSums) {
        self.sad_a += o.sad_a;
        self.sad_b += o.sad_b;
        self.lap_sum += o.lap_sum;
        self.lap_sq += o.lap_sq;
    }
}

/// One luma row through every luma kernel: its histogram, its SAD against `a` and `b`
/// (rows of other pictures, same width) and the Laplacian of the row above it, `mid` of
/// `lap = (up, mid)`. Done in blocks of [`BLOCK`] samples, each block through all the
/// kernels in turn, so that the out-of-order core runs the vector kernels while the scalar
/// histogram waits on its counters (~10 % faster than one kernel after the other per row).
#[inline(always)]
pub(crate) fn luma_row(
    banks: &mut Banks,
    row: &[u8],
    lap: Option<(&[u8], &[u8])>,
    a: Option<&[u8]>,
    b: Option<&[u8]>,
) -> RowSums {
    let w = row.len();
    let lap = lap.filter(|_| w >= 3);
    let mut s = RowSums::default();
    if w > SEGMENT {
        banks.add_row(row);
        s.sad_a = a.map_or(0, |a| sad_row(row, a));
        s.sad_b = b.map_or(0, |b| sad_row(row, b));
        if let Some((up, mid)) = lap {
            (s.lap_sum, s.lap_sq) = laplacian_row(up, mid, row);
        }
        return s;
    }
    banks.reserve(w);
    // Blocks stop where the Laplacian's right neighbour would leave the row.
    let covered = if lap.is_some() { w - 2 } else { w };
    let blocks = covered / BLOCK;
    for k in 0..blocks {
        let x = k * BLOCK;
        let block = &row[x..x + BLOCK];
        banks.add_unchecked(block);
        if let Some(a) = a {
            s.sad_a += u64::from(sad_block(block, &a[x..x + BLOCK]));
        }
        if let Some(b) = b {
            s.sad_b += u64::from(sad_block(block, &b[x..x + BLOCK]));
        }
        if let Some((up, mid)) = lap {
            // Laplacian at columns x + 1 ..= x + BLOCK.
            let (sum, sq) = laplacian_block(
                &up[x + 1..x + 1 + BLOCK],
                &mid[x..x + BLOCK],
                &mid[x + 1..x + 1 + BLOCK],
                &mid[x + 2..x + 2 + BLOCK],
                &row[x + 1..x + 1 + BLOCK],
            );
            s.lap_sum += i64::from(sum);
            s.lap_sq += u64::from(sq);
        }
    }
    let x = blocks * BLOCK;
    banks.add_unchecked(&row[x..]);
    if let Some(a) = a {
        s.sad_a += sad_row(&row[x..], &a[x..]);
    }
    if let Some(b) = b {
        s.sad_b += sad_row(&row[x..], &b[x..]);
    }
    if let Some((up, mid)) = lap {
        let (sum, sq) = laplacian_row(&up[x..], &mid[x..], &row[x..]);
        s.lap_sum += sum;
        s.lap_sq += sq;
    }
    s
}

/// SAD of two blocks of [`BLOCK`] samples.
#[inline(always)]
fn sad_block(a: &[u8], b: &[u8]) -> u32 {
    let (a, b) = (&a[..BLOCK], &b[..BLOCK]);
    let mut sum = 0u32;
    for i in 0..BLOCK {
        sum += u32::from(a[i].abs_diff(b[i]));
    }
    sum
}

/// (sum, sum of squares) of the Laplacian over a block: up, left, centre, right, down.
#[inline(always)]
fn laplacian_block(u: &[u8], l: &[u8], c: &[u8], r: &[u8], d: &[u8]) -> (i32, u32) {
    let (u, l, c, r, d) = (
        &u[..BLOCK],
        &l[..BLOCK],
        &c[..BLOCK],
        &r[..BLOCK],
        &d[..BLOCK],
    );
    let (mut sum, mut sq) = (0i32, 0u32);
    for i in 0..BLOCK {
        let lap = i16::from(u[i]) + i16::from(d[i]) + i16::from(l[i]) + i16::from(r[i])
            - 4 * i16::from(c[i]);
        sum += i32::from(lap);
        sq += (i32::from(lap) * i32::from(lap)) as u32;
    }
    (sum, sq)
}

/// A 256-bin histogram in eight banks of 16-bit counters, so that runs of equal samples
/// (flat areas, black pictures) do not wait on each other's increments, and the banks
/// stay small in L1; they are added into 32-bit totals before any can overflow. This scalar
/// loop (about one sample per cycle) is the floor of the statistics: every other kernel
/// is vectorized.
pub(crate) struct Banks {
    banks: [[u16; 256]; 8],
    totals: [u32; 256],
    /// The most increments any bank has had since the last flush.
    pending: usize,
}

impl Banks {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Banks {
            banks: [[0; 256]; 8],
            totals: [0; 256],
            pending: 0,
        }
    }

    /// Adds a row of samples.
    #[inline(always)]
    pub(crate) fn add_row(&mut self, row: &[u8]) {
        for segment in row.chunks(SEGMENT) {
            self.reserve(segment.len());
            self.add_unchecked(segment);
        }
    }

    /// Makes room for `n` (at most [`SEGMENT`]) more samples: a bank gets at most
    /// `n / 8 + 7` increments from them.
    #[inline(always)]
    fn reserve(&mut self, n: usize) {
        let most = n / 8 + 7;
        if self.pending + most > usize::from(u16::MAX) {
            self.flush();
        }
        self.pending += most;
    }

    /// Counts samples for which [`Banks::reserve`] made room.
    #[inline(always)]
    fn add_unchecked(&mut self, samples: &[u8]) {
        let b = &mut self.banks;
        let mut chunks = samples.chunks_exact(8);
        for c in &mut chunks {
            b[0][usize::from(c[0])] += 1;
            b[1][usize::from(c[1])] += 1;
            b[2][usize::from(c[2])] += 1;
            b[3][usize::from(c[3])] += 1;
            b[4][usize::from(c[4])] += 1;
            b[5][usize::from(c[5])] += 1;
            b[6][usize::from(c[6])] += 1;
            b[7][usize::from(c[7])] += 1;
        }
        for &v in chunks.remainder() {
            b[0][usize::from(v)] += 1;
        }
    }

    #[inline(always)]
    fn flush(&mut self) {
        for bank in &mut self.banks {
            for (t, n) in self.totals.iter_mut().zip(bank.iter_mut()) {
                *t += u32::from(*n);
                *n = 0;
            }
        }
        self.pending = 0;
    }

    #[inline(always)]
    pub(crate) fn total(mut self) -> [u32; 256] {
        self.flush();
        self.totals
    }
}

#[inline(always)]
pub(crate) fn histogram_kernel(plane: &Plane<'_>) -> [u32; 256] {
    let mut banks = Banks::new();
    plane.rows().for_each(|row| banks.add_row(row));
    banks.total()
}

/// Saturation of every (u, v) pair, as signalstats computes it.
pub(crate) fn sat_table() -> &'static [u8; 65536] {
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

/// (mean U, mean V, mean saturation) of a picture's chroma planes (UAVG, VAVG, SATAVG).
pub fn chroma_stats(u: &Plane<'_>, v: &Plane<'_>) -> (f64, f64, f64) {
    struct Call<'a, 'p>(&'a Plane<'p>, &'a Plane<'p>, &'static [u8; 65536]);
    impl Kernel for Call<'_, '_> {
        type Output = (f64, f64, f64);
        #[inline(always)]
        fn run(self) -> (f64, f64, f64) {
            chroma_kernel(self.0, self.1, self.2)
        }
    }
    dispatch(Call(u, v, sat_table()))
}

/// Row sums in `u32` (a row of at most [`CHUNK`] samples cannot overflow them), so the
/// sums vectorize; the saturation is one table load per sample.
#[inline(always)]
pub(crate) fn chroma_kernel(u: &Plane<'_>, v: &Plane<'_>, table: &[u8; 65536]) -> (f64, f64, f64) {
    let mut sums = ChromaSums::default();
    for (ru, rv) in u.rows().zip(v.rows()) {
        sums.add_rows(ru, rv, table);
    }
    sums.means()
}

/// Running sums of the chroma statistics.
#[derive(Default)]
pub(crate) struct ChromaSums {
    u: u64,
    v: u64,
    sat: u64,
    n: u64,
}

impl ChromaSums {
    /// Adds one row of U and the same row of V.
    #[inline(always)]
    pub(crate) fn add_rows(&mut self, ru: &[u8], rv: &[u8], table: &[u8; 65536]) {
        for cu in ru.chunks(CHUNK) {
            self.u += u64::from(cu.iter().map(|&x| u32::from(x)).sum::<u32>());
        }
        for cv in rv.chunks(CHUNK) {
            self.v += u64::from(cv.iter().map(|&x| u32::from(x)).sum::<u32>());
        }
        for (cu, cv) in ru.chunks(CHUNK).zip(rv.chunks(CHUNK)) {
            self.sat += u64::from(
                cu.iter()
                    .zip(cv)
                    .map(|(&a, &b)| u32::from(table[usize::from(a) << 8 | usize::from(b)]))
                    .sum::<u32>(),
            );
        }
        self.n += ru.len() as u64;
    }

    /// (mean U, mean V, mean saturation).
    pub(crate) fn means(&self) -> (f64, f64, f64) {
        let n = self.n.max(1) as f64;
        (self.u as f64 / n, self.v as f64 / n, self.sat as f64 / n)
    }
}

/// Samples per partial sum: 255 x 4096 and 1020² x 4096 both fit in a `u32`.
const CHUNK: usize = 4096;

/// Sum of absolute differences of two planes; `None` when their sizes differ.
pub fn sum_abs_diff(a: &Plane<'_>, b: &Plane<'_>) -> Option<u64> {
    if a.width() != b.width() || a.height() != b.height() {
        return None;
    }
    struct Call<'a, 'p, 'q>(&'a Plane<'p>, &'a Plane<'q>);
    impl Kernel for Call<'_, '_, '_> {
        type Output = u64;
        #[inline(always)]
        fn run(self) -> u64 {
            sad_kernel(self.0, self.1)
        }
    }
    Some(dispatch(Call(a, b)))
}

/// SAD of two planes of the same size: per-chunk sums in `u32` become `psadbw`.
#[inline(always)]
pub(crate) fn sad_kernel(a: &Plane<'_>, b: &Plane<'_>) -> u64 {
    let mut total = 0u64;
    for (ra, rb) in a.rows().zip(b.rows()) {
        total += sad_row(ra, rb);
    }
    total
}

/// SAD of two rows (up to the shorter one's length).
#[inline(always)]
pub(crate) fn sad_row(ra: &[u8], rb: &[u8]) -> u64 {
    let mut total = 0u64;
    for (ca, cb) in ra.chunks(CHUNK).zip(rb.chunks(CHUNK)) {
        total += u64::from(
            ca.iter()
                .zip(cb)
                .map(|(&x, &y)| u32::from(x.abs_diff(y)))
                .sum::<u32>(),
        );
    }
    total
}

pub(crate) fn mean_of_sad(a: &Plane<'_>, sad: u64) -> f64 {
    sad as f64 / (a.width() * a.height()).max(1) as f64
}

/// Mean absolute difference of two planes of the same size (0 when the sizes differ).
pub fn mean_abs_diff(a: &Plane<'_>, b: &Plane<'_>) -> f64 {
    sum_abs_diff(a, b).map_or(0.0, |sad| mean_of_sad(a, sad))
}

/// Variance of `up + down + left + right - 4 * centre` over the interior of the plane.
pub fn laplacian_variance(p: &Plane<'_>) -> f64 {
    struct Call<'a, 'p>(&'a Plane<'p>);
    impl Kernel for Call<'_, '_> {
        type Output = f64;
        #[inline(always)]
        fn run(self) -> f64 {
            laplacian_kernel(self.0)
        }
    }
    dispatch(Call(p))
}

#[inline(always)]
fn laplacian_kernel(p: &Plane<'_>) -> f64 {
    let (w, h) = (p.width(), p.height());
    if w < 3 || h < 3 {
        return 0.0;
    }
    let (mut sum, mut sum_sq) = (0i64, 0u64);
    let mut rows = p.rows();
    if let (Some(mut up), Some(mut mid)) = (rows.next(), rows.next()) {
        for down in rows {
            let (s, sq) = laplacian_row(up, mid, down);
            sum += s;
            sum_sq += sq;
            (up, mid) = (mid, down);
        }
    }
    laplacian_of_sums(w, h, sum, sum_sq)
}

/// The variance from the Laplacian's sums over the interior of a `w`x`h` plane.
pub(crate) fn laplacian_of_sums(w: usize, h: usize, sum: i64, sum_sq: u64) -> f64 {
    if w < 3 || h < 3 {
        return 0.0;
    }
    let n = ((w - 2) * (h - 2)) as f64;
    let mean = sum as f64 / n;
    (sum_sq as f64 / n - mean * mean).max(0.0)
}

/// (sum, sum of squares) of the Laplacian of the interior of row `mid`. In `i16` (the
/// Laplacian lies in -1020..=1020) with `i32`/`u32` partial sums per [`CHUNK`] samples, so
/// that the loop runs 16 (AVX2) or 8 (SSE2) pixels per instruction.
#[inline(always)]
pub(crate) fn laplacian_row(up: &[u8], mid: &[u8], down: &[u8]) -> (i64, u64) {
    let n = mid.len() - 2;
    let (u, d) = (&up[1..=n], &down[1..=n]);
    let (l, c, r) = (&mid[..n], &mid[1..=n], &mid[2..]);
    let (mut sum, mut sum_sq) = (0i64, 0u64);
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let (u, d, l, c, r) = (
            &u[start..end],
            &d[start..end],
            &l[start..end],
            &c[start..end],
            &r[start..end],
        );
        let (mut s, mut sq) = (0i32, 0u32);
        for i in 0..u.len() {
            let lap = i16::from(u[i]) + i16::from(d[i]) + i16::from(l[i]) + i16::from(r[i])
                - 4 * i16::from(c[i]);
            s += i32::from(lap);
            sq += (i32::from(lap) * i32::from(lap)) as u32;
        }
        sum += i64::from(s);
        sum_sq += u64::from(sq);
        start = end;
    }
    (sum, sum_sq)
}

#[cfg(test)]
pub(crate) mod tests {
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
    pub(crate) fn noise(seed: u64, n: usize) -> Vec<u8> {
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

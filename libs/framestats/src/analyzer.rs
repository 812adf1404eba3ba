//! One camera's statistics and detectors in one pass per plane.
//!
//! [`frame_stats`](crate::frame_stats), [`Detectors::update`](crate::Detectors::update)
//! and a copy of the luma for the next `y_dif` is what a worker does per picture; that reads
//! the luma plane four times, the previous luma and freezedetect's reference once each
//! (which are usually the same picture) and writes two copies. [`Analyzer`] keeps the
//! previous picture itself and uses it for both: each plane of the new picture is read
//! once, row by row, and every kernel (histogram, Laplacian, both differences, the chroma
//! sums, the copy kept for the next picture) works on the row while it is in L1. The
//! results are those of the separate calls, bit for bit.

use crate::detect::{black_and_scene, flags, is_frozen};
use crate::simd::{Kernel, dispatch};
use crate::stats::{
    Banks, ChromaSums, RowSums, finish, laplacian_of_sums, luma_row, sad_row, sat_table,
};
use crate::{DetectorConfig, Flags, FrameStats, Picture};

/// A picture's visible samples, rows packed (stride = width).
#[derive(Debug, Default)]
struct Owned {
    planes: [Vec<u8>; 3],
    dims: [(usize, usize); 3],
}

impl Owned {
    /// Rows of plane `k`.
    fn rows(&self, k: usize) -> std::slice::ChunksExact<'_, u8> {
        self.planes[k].chunks_exact(self.dims[k].0.max(1))
    }
}

/// Which picture freezedetect compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reference {
    /// None yet.
    None,
    /// The previous picture (it was not frozen): the common case.
    Last,
    /// An older picture, kept in `frozen_ref` while the pictures after it are frozen.
    Own,
}

/// One camera's state between pictures: the previous picture, freezedetect's reference and
/// scdet's last MAFD. Make a new one when the camera's session changes.
#[derive(Debug)]
pub struct Analyzer {
    config: DetectorConfig,
    last: Option<Owned>,
    frozen_ref: Option<Owned>,
    reference: Reference,
    /// Buffers the current picture is copied into.
    spare: Owned,
    prev_mafd: f64,
}

impl Analyzer {
    /// An analyzer with the given detector thresholds and no previous picture.
    pub fn new(config: DetectorConfig) -> Self {
        Analyzer {
            config,
            last: None,
            frozen_ref: None,
            reference: Reference::None,
            spare: Owned::default(),
            prev_mafd: 0.0,
        }
    }

    /// The statistics and flags of `pic`, exactly as
    /// `frame_stats(pic, previous luma of the same size)` followed by
    /// `Detectors::update(pic, &stats, previous luma of the same size existed)` would give
    /// them; `pic` then becomes the previous picture.
    pub fn measure(&mut self, pic: &Picture<'_>) -> (FrameStats, Flags) {
        struct Call<'a, 'p>(&'a mut Analyzer, &'a Picture<'p>, &'static [u8; 65536]);
        impl Kernel for Call<'_, '_> {
            type Output = (FrameStats, Flags);
            #[inline(always)]
            fn run(self) -> (FrameStats, Flags) {
                self.0.measure_kernel(self.1, self.2)
            }
        }
        dispatch(Call(self, pic, sat_table()))
    }

    #[inline(always)]
    pub(crate) fn measure_kernel(
        &mut self,
        pic: &Picture<'_>,
        table: &[u8; 65536],
    ) -> (FrameStats, Flags) {
        let planes = [&pic.y, &pic.u, &pic.v];
        let dims = planes.map(|p| (p.width(), p.height()));
        let last = self.last.as_ref().filter(|l| l.dims[0] == dims[0]);
        let reference = match self.reference {
            Reference::None => None,
            Reference::Last => self.last.as_ref(),
            Reference::Own => self.frozen_ref.as_ref(),
        }
        .filter(|r| r.dims == dims);
        // When the reference is the previous picture, its luma SAD is y_dif's.
        let own_ref = reference.filter(|_| self.reference == Reference::Own);
        for (k, buf) in self.spare.planes.iter_mut().enumerate() {
            buf.clear();
            buf.reserve(dims[k].0 * dims[k].1);
        }
        self.spare.dims = dims;
        let [spare_y, spare_u, spare_v] = &mut self.spare.planes;

        // Luma: histogram, Laplacian, SAD against the previous luma (and against an older
        // reference during a freeze), the copy for the next picture.
        let (w, h) = dims[0];
        let mut banks = Banks::new();
        let mut sums = RowSums::default();
        let mut last_rows = last.map(|l| l.rows(0));
        let mut ref_rows = own_ref.map(|r| r.rows(0));
        let (mut up, mut mid): (Option<&[u8]>, Option<&[u8]>) = (None, None);
        for row in pic.y.rows() {
            let l = last_rows.as_mut().and_then(Iterator::next);
            let r = ref_rows.as_mut().and_then(Iterator::next);
            sums.add(luma_row(&mut banks, row, up.zip(mid), l, r));
            spare_y.extend_from_slice(row);
            (up, mid) = (mid, Some(row));
        }
        let (sad_last, sad_ref) = (sums.sad_a, sums.sad_b);
        let (lap_sum, lap_sq) = (sums.lap_sum, sums.lap_sq);
        let mut freeze_sad = if own_ref.is_some() { sad_ref } else { sad_last };

        // Chroma: means and saturation over pairs of rows, SAD against the reference, copies.
        let mut chroma = ChromaSums::default();
        if dims[1] == dims[2] {
            let mut ref_rows = reference.map(|r| (r.rows(1), r.rows(2)));
            for (ru, rv) in pic.u.rows().zip(pic.v.rows()) {
                chroma.add_rows(ru, rv, table);
                if let Some((a, b)) = ref_rows.as_mut() {
                    freeze_sad += a.next().map_or(0, |r| sad_row(ru, r));
                    freeze_sad += b.next().map_or(0, |r| sad_row(rv, r));
                }
                spare_u.extend_from_slice(ru);
                spare_v.extend_from_slice(rv);
            }
        } else {
            // Planes of different sizes (never from a decoder): the plain way.
            for (ru, rv) in pic.u.rows().zip(pic.v.rows()) {
                chroma.add_rows(ru, rv, table);
            }
            for (k, (p, buf)) in [(&pic.u, spare_u), (&pic.v, spare_v)]
                .into_iter()
                .enumerate()
            {
                let mut ref_rows = reference.map(|r| r.rows(k + 1));
                for row in p.rows() {
                    if let Some(r) = ref_rows.as_mut().and_then(Iterator::next) {
                        freeze_sad += sad_row(row, r);
                    }
                    buf.extend_from_slice(row);
                }
            }
        }

        let stats = finish(
            &pic.y,
            banks.total(),
            last.map(|_| sad_last),
            laplacian_of_sums(w, h, lap_sum, lap_sq),
            chroma.means(),
        );
        let c = self.config;
        let (black_ratio, scene_score) =
            black_and_scene(&c, &stats, last.is_some(), &mut self.prev_mafd);
        let count = dims.iter().map(|&(w, h)| (w * h) as u64).sum();
        let frozen = reference.is_some() && is_frozen(&c, freeze_sad, count);

        // The copy becomes the previous picture; the reference moves only when not frozen.
        let current = std::mem::take(&mut self.spare);
        let old_last = self.last.replace(current);
        if frozen {
            if self.reference == Reference::Last {
                self.frozen_ref = old_last;
                self.reference = Reference::Own;
            } else if let Some(buffers) = old_last {
                self.spare = buffers;
            }
        } else {
            self.reference = Reference::Last;
            if let Some(buffers) = self.frozen_ref.take().or(old_last) {
                self.spare = buffers;
            }
        }
        (stats, flags(&c, black_ratio, frozen, scene_score))
    }
}

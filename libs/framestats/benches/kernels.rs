//! Criterion micro-benchmarks of the statistics kernels on 720p and 1080p planes, each side
//! by side with a memcpy of the same luma plane (the unit the ratios in
//! `docs/benchmarks.md` are expressed in; `scripts/bench/kernel_table.py` prints them),
//! in three variants: `tuned` (as shipped: AVX2 where the CPU has it), `baseline` (the
//! same code capped to the x86-64 baseline) and `before` (the original kernels).
//!
//! The planes are camera-like: smooth gradients, edges, flat areas and sensor noise, with
//! the decoder's row padding (stride = width + 64, as openh264 hands them out).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use framewire_framestats::{
    Analyzer, DetectorConfig, Detectors, Isa, Picture, Plane, chroma_stats, frame_stats, histogram,
    laplacian_variance, mean_abs_diff, reference, set_max_isa,
};

/// Deterministic xorshift noise.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }
}

/// A padded plane of `w`x`h` visible samples: gradients, a few flat boxes and edges, noise.
fn camera_plane(w: usize, h: usize, frame: u64) -> (Vec<u8>, usize) {
    let stride = w + 64;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ (frame + 1));
    let mut data = vec![0u8; stride * h];
    for y in 0..h {
        for x in 0..w {
            let base = (x * 160 / w + y * 60 / h) as i32 + 16;
            let boxed = if (x / (w / 8) + y / (h / 4)).is_multiple_of(3) {
                40
            } else {
                0
            };
            let moving = ((x + frame as usize * 3) / 24 % 2 * 20) as i32;
            let n = i32::from(noise.next() % 7) - 3;
            data[y * stride + x] = (base + boxed + moving + n).clamp(0, 255) as u8;
        }
    }
    (data, stride)
}

struct Frame {
    y: (Vec<u8>, usize),
    u: (Vec<u8>, usize),
    v: (Vec<u8>, usize),
    w: usize,
    h: usize,
}

impl Frame {
    fn new(w: usize, h: usize, frame: u64) -> Self {
        Frame {
            y: camera_plane(w, h, frame),
            u: camera_plane(w / 2, h / 2, frame + 100),
            v: camera_plane(w / 2, h / 2, frame + 200),
            w,
            h,
        }
    }

    fn picture(&self) -> Picture<'_> {
        fn plane((d, s): &(Vec<u8>, usize), w: usize, h: usize) -> Plane<'_> {
            Plane::new(d, w, h, *s).expect("the plane fits its buffer")
        }
        Picture {
            y: plane(&self.y, self.w, self.h),
            u: plane(&self.u, self.w / 2, self.h / 2),
            v: plane(&self.v, self.w / 2, self.h / 2),
        }
    }
}

/// How a kernel runs: `tuned` = as shipped (AVX2 where the CPU has it), `baseline` = the
/// tuned code capped to the build's own instruction set, `before` = the original kernels.
const VARIANTS: [&str; 3] = ["tuned", "baseline", "before"];

fn with_variant<R>(variant: &str, tuned: impl Fn() -> R, before: impl Fn() -> R) -> R {
    match variant {
        "before" => before(),
        _ => tuned(),
    }
}

fn kernels(c: &mut Criterion) {
    for (name, w, h) in [("720p", 1280, 720), ("1080p", 1920, 1080)] {
        let cur = Frame::new(w, h, 1);
        let prev = Frame::new(w, h, 0);
        let (pic, prev_pic) = (cur.picture(), prev.picture());
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes((w * h) as u64));

        let src: Vec<u8> = pic.y.rows().flatten().copied().collect();
        let mut dst = vec![0u8; src.len()];
        group.bench_function("memcpy_y", |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            })
        });
        for variant in VARIANTS {
            set_max_isa(if variant == "baseline" {
                Isa::Baseline
            } else {
                Isa::Avx2
            });
            let id = |kernel: &str| BenchmarkId::new(kernel, variant);
            group.bench_function(id("histogram"), |b| {
                b.iter(|| {
                    with_variant(
                        variant,
                        || histogram(black_box(&pic.y)),
                        || reference::histogram(black_box(&pic.y)),
                    )
                })
            });
            if variant != "before" {
                // The original chroma kernel is private to the original frame_stats.
                group.bench_function(id("chroma_sat"), |b| {
                    b.iter(|| chroma_stats(black_box(&pic.u), black_box(&pic.v)))
                });
            }
            group.bench_function(id("y_dif"), |b| {
                b.iter(|| {
                    with_variant(
                        variant,
                        || mean_abs_diff(black_box(&pic.y), black_box(&prev_pic.y)),
                        || reference::mean_abs_diff(black_box(&pic.y), black_box(&prev_pic.y)),
                    )
                })
            });
            group.bench_function(id("laplacian"), |b| {
                b.iter(|| {
                    with_variant(
                        variant,
                        || laplacian_variance(black_box(&pic.y)),
                        || reference::laplacian_variance(black_box(&pic.y)),
                    )
                })
            });
            group.bench_function(id("frame_stats"), |b| {
                b.iter(|| {
                    with_variant(
                        variant,
                        || frame_stats(black_box(&pic), Some(black_box(&prev_pic.y))),
                        || reference::frame_stats(black_box(&pic), Some(black_box(&prev_pic.y))),
                    )
                })
            });
            // Detectors on moving pictures (the reference frame is replaced every time:
            // the common and the expensive case), alternating two pictures.
            let s_cur = frame_stats(&pic, Some(&prev_pic.y));
            let s_prev = frame_stats(&prev_pic, Some(&pic.y));
            let (mut tuned, mut before) = (
                Detectors::new(DetectorConfig::default()),
                reference::Detectors::new(DetectorConfig::default()),
            );
            let mut flip = false;
            group.bench_function(id("detectors"), |b| {
                b.iter(|| {
                    flip = !flip;
                    let (p, s) = if flip {
                        (&pic, &s_cur)
                    } else {
                        (&prev_pic, &s_prev)
                    };
                    match variant {
                        "before" => before.update(black_box(p), black_box(s), true),
                        _ => tuned.update(black_box(p), black_box(s), true),
                    }
                })
            });
            // The same in one pass (the "before" column is the original frame_stats +
            // detectors + the worker's copy of the luma).
            if variant != "before" {
                let mut analyzer = Analyzer::new(DetectorConfig::default());
                let mut flip = false;
                group.bench_function(id("analyzer"), |b| {
                    b.iter(|| {
                        flip = !flip;
                        analyzer.measure(black_box(if flip { &pic } else { &prev_pic }))
                    })
                });
            }
            // Everything the worker computes per picture: statistics plus detectors.
            let mut flip = false;
            group.bench_function(id("all"), |b| {
                b.iter(|| {
                    flip = !flip;
                    let (p, q) = if flip {
                        (&pic, &prev_pic)
                    } else {
                        (&prev_pic, &pic)
                    };
                    match variant {
                        "before" => {
                            let s = reference::frame_stats(black_box(p), Some(&q.y));
                            before.update(p, &s, true)
                        }
                        _ => {
                            let s = frame_stats(black_box(p), Some(&q.y));
                            tuned.update(p, &s, true)
                        }
                    }
                })
            });
        }
        set_max_isa(Isa::Avx2);
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = kernels
}
criterion_main!(benches);

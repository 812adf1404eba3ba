//! Preprocessing: a decoded YUV 4:2:0 picture straight into NanoDet's input tensor.
//!
//! The decoder hands out limited-range BT.601 YUV 4:2:0 planes (with strides wider than the
//! picture); NanoDet wants a letterboxed `[1, 3, size, size]` tensor of BGR values
//! normalised with its training mean and standard deviation. Going through an RGB picture
//! of the camera's full size would convert millions of pixels only to throw most away, so
//! this does it in one pass over the *output* pixels:
//!
//! - **Resampling: bilinear**, half-pixel centres, edge samples repeated, no anti-aliasing
//!   prefilter — the `cv2.resize(INTER_LINEAR)` NanoDet was trained and validated with and
//!   the `skimage.transform.resize(order=1, anti_aliasing=False)` of the evaluation that
//!   chose the model, so the network sees the statistics it expects. Each output pixel
//!   reads 4 luma and 2 x 4 chroma samples whatever the camera's resolution (about 170k
//!   output pixels at 416x416 for any input), where an area filter would read every source
//!   pixel (2 M for 1080p). The price: downscaling by more than 2 (1080p → 416 is 4.6)
//!   skips source pixels, so very fine texture can alias — as it did in training.
//! - **Chroma** is sampled bilinearly at the output pixel's position in the half-resolution
//!   planes (chroma sample centres between luma pairs, as a 2x bilinear upsampling would
//!   place them).
//! - **Colour**: limited-range BT.601 (luma 16-235, chroma 16-240) to RGB 0-255 with
//!   ffmpeg's default coefficients (`yuv420p` → `rgb24`), in floating point after
//!   resampling, clamped to 0-255.
//! - **Padding** is black (RGB 0) before normalisation, like NanoDet's letterbox.

use crate::{Config, DetectError, Letterbox};

/// NanoDet's normalisation, per channel in tensor order (B, G, R): `(value - mean) / std`.
const MEAN_BGR: [f32; 3] = [103.53, 116.28, 123.675];
/// See [`MEAN_BGR`].
const STD_BGR: [f32; 3] = [57.375, 57.12, 58.395];

// BT.601 limited range: luma spans 219 codes, chroma 224.
const KR: f64 = 0.299;
const KB: f64 = 0.114;
const KG: f64 = 1.0 - KR - KB;
const LUMA_GAIN: f32 = (255.0 / 219.0) as f32;
const CHROMA_GAIN: f64 = 255.0 / 224.0;
const CR_TO_R: f32 = (2.0 * (1.0 - KR) * CHROMA_GAIN) as f32;
const CB_TO_G: f32 = (2.0 * (1.0 - KB) * KB / KG * CHROMA_GAIN) as f32;
const CR_TO_G: f32 = (2.0 * (1.0 - KR) * KR / KG * CHROMA_GAIN) as f32;
const CB_TO_B: f32 = (2.0 * (1.0 - KB) * CHROMA_GAIN) as f32;

/// A decoded YUV 4:2:0 picture as decoders hand it out: three planes with their strides.
///
/// `y` holds `height` rows of `width` samples, each row `y_stride` bytes after the
/// previous; `u` and `v` hold `ceil(height / 2)` rows of `ceil(width / 2)` samples. The last
/// row of a plane need not be padded to the full stride.
#[derive(Debug, Clone, Copy)]
pub struct Yuv420<'a> {
    /// Luma plane.
    pub y: &'a [u8],
    /// Bytes from one luma row to the next.
    pub y_stride: usize,
    /// Cb plane.
    pub u: &'a [u8],
    /// Bytes from one Cb row to the next.
    pub u_stride: usize,
    /// Cr plane.
    pub v: &'a [u8],
    /// Bytes from one Cr row to the next.
    pub v_stride: usize,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
}

/// Limited-range BT.601 `(y, u, v)` to RGB, each 0-255 (clamped).
pub fn yuv_to_rgb(y: f32, u: f32, v: f32) -> [f32; 3] {
    let luma = (y - 16.0) * LUMA_GAIN;
    let (cb, cr) = (u - 128.0, v - 128.0);
    [
        (luma + CR_TO_R * cr).clamp(0.0, 255.0),
        (luma - CB_TO_G * cb - CR_TO_G * cr).clamp(0.0, 255.0),
        (luma + CB_TO_B * cb).clamp(0.0, 255.0),
    ]
}

/// Writes the model input for `picture` into `tensor` (`config.input_len()` floats, NCHW,
/// BGR, normalised; see the module doc) and returns the letterbox, which
/// [`decode`](crate::decode) needs to map boxes back. Allocates nothing.
pub fn preprocess(
    picture: &Yuv420<'_>,
    config: &Config,
    tensor: &mut [f32],
) -> Result<Letterbox, DetectError> {
    config.check()?;
    let letterbox = Letterbox::new(picture.width, picture.height, config.input_size)?;
    let needed = config.input_len();
    if tensor.len() != needed {
        return Err(DetectError::TensorBuffer {
            len: tensor.len(),
            size: config.input_size,
            needed,
        });
    }
    let (w, h) = (picture.width as usize, picture.height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let luma = Plane::new("Y", picture.y, picture.y_stride, w, h)?;
    let cb = Plane::new("U", picture.u, picture.u_stride, cw, ch)?;
    let cr = Plane::new("V", picture.v, picture.v_stride, cw, ch)?;

    let size = config.input_size as usize;
    let area = size * size;
    let (blue, rest) = tensor.split_at_mut(area);
    let (green, red) = rest.split_at_mut(area);
    for (channel, plane) in [&mut *blue, &mut *green, &mut *red].into_iter().enumerate() {
        plane.fill(-MEAN_BGR[channel] / STD_BGR[channel]);
    }

    let (step_x, step_y) = letterbox.source_step();
    let (pad_x, pad_y) = (letterbox.pad_x as usize, letterbox.pad_y as usize);
    for oy in 0..letterbox.scaled_height as usize {
        let sy = source_coordinate(oy, step_y, h);
        let (ly, cy) = (Tap::new(sy, h), Tap::new(chroma_coordinate(sy), ch));
        let row = (pad_y + oy) * size + pad_x;
        for ox in 0..letterbox.scaled_width as usize {
            let sx = source_coordinate(ox, step_x, w);
            let (lx, cx) = (Tap::new(sx, w), Tap::new(chroma_coordinate(sx), cw));
            let [r, g, b] = yuv_to_rgb(
                luma.sample(&lx, &ly),
                cb.sample(&cx, &cy),
                cr.sample(&cx, &cy),
            );
            let i = row + ox;
            blue[i] = (b - MEAN_BGR[0]) / STD_BGR[0];
            green[i] = (g - MEAN_BGR[1]) / STD_BGR[1];
            red[i] = (r - MEAN_BGR[2]) / STD_BGR[2];
        }
    }
    Ok(letterbox)
}

/// Where output sample `o` reads in a source of `len` samples, `step` source samples per
/// output sample, with half-pixel centres; clamped to the first and last sample centres.
fn source_coordinate(o: usize, step: f64, len: usize) -> f64 {
    ((o as f64 + 0.5) * step - 0.5).clamp(0.0, (len - 1) as f64)
}

/// The chroma-plane coordinate of luma coordinate `s` (a chroma sample covers two luma
/// samples and sits between them).
fn chroma_coordinate(s: f64) -> f64 {
    (s + 0.5) / 2.0 - 0.5
}

/// The two samples around a coordinate and the weight of the second.
struct Tap {
    first: usize,
    second: usize,
    weight: f32,
}

impl Tap {
    /// The taps at `s` in a plane of `len` samples (`s` clamped inside it).
    fn new(s: f64, len: usize) -> Tap {
        let s = s.clamp(0.0, (len - 1) as f64);
        let first = s as usize; // s >= 0: truncation is floor
        Tap {
            first,
            second: (first + 1).min(len - 1),
            weight: (s - first as f64) as f32,
        }
    }
}

/// One plane, checked to hold `rows` rows of `row` bytes at `stride`.
struct Plane<'a> {
    data: &'a [u8],
    stride: usize,
}

impl<'a> Plane<'a> {
    fn new(
        plane: &'static str,
        data: &'a [u8],
        stride: usize,
        row: usize,
        rows: usize,
    ) -> Result<Self, DetectError> {
        if stride < row {
            return Err(DetectError::Stride { plane, stride, row });
        }
        let needed = stride * (rows - 1) + row;
        if data.len() < needed {
            return Err(DetectError::PlaneTooShort {
                plane,
                len: data.len(),
                rows,
                stride,
                needed,
            });
        }
        Ok(Plane { data, stride })
    }

    /// Bilinear sample at the taps (which lie inside the checked rows and columns).
    fn sample(&self, x: &Tap, y: &Tap) -> f32 {
        let at = |row: usize, col: usize| f32::from(self.data[row * self.stride + col]);
        let (r0, r1) = (y.first, y.second);
        let top = at(r0, x.first) + (at(r0, x.second) - at(r0, x.first)) * x.weight;
        let bottom = at(r1, x.first) + (at(r1, x.second) - at(r1, x.first)) * x.weight;
        top + (bottom - top) * y.weight
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn close(a: [f32; 3], b: [f32; 3], tolerance: f32) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tolerance)
    }

    #[test]
    fn known_colours_convert_like_ffmpeg() {
        // Black, white and mid grey.
        assert_eq!(yuv_to_rgb(16.0, 128.0, 128.0), [0.0, 0.0, 0.0]);
        assert!(close(yuv_to_rgb(235.0, 128.0, 128.0), [255.0; 3], 1e-3));
        // (126 - 16) * 255 / 219 = 128.08.
        assert!(close(yuv_to_rgb(126.0, 128.0, 128.0), [128.08; 3], 0.01));
        // Limited-range BT.601 red (81, 90, 240): R = 65 * 1.16438 + 112 * 1.59603 = 254.4,
        // G = 75.68 + 38 * 0.39176 - 112 * 0.81297 = -0.5 → 0, B = 75.68 - 38 * 2.01723 → 0.
        assert!(close(
            yuv_to_rgb(81.0, 90.0, 240.0),
            [254.44, 0.0, 0.0],
            0.05
        ));
        // Green (145, 54, 34): R = 150.21 - 94 * 1.59603 = 0.18, G = 150.21 + 74 * 0.39176
        // + 94 * 0.81297 = 255.6 → 255, B = 150.21 - 74 * 2.01723 = 0.93.
        assert!(close(
            yuv_to_rgb(145.0, 54.0, 34.0),
            [0.18, 255.0, 0.93],
            0.05
        ));
        // Blue (41, 240, 110): B = 29.11 + 112 * 2.01723 = 255.0 (clamped), R = 29.11 - 18
        // * 1.59603 = 0.38.
        assert!(close(
            yuv_to_rgb(41.0, 240.0, 110.0),
            [0.38, 0.0, 255.0],
            0.05
        ));
    }

    /// A picture with padded strides, filled by `f(x, y) -> (y, u, v)` per pixel (chroma
    /// taken at even positions).
    struct Picture {
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
        stride: usize,
        c_stride: usize,
        width: u32,
        height: u32,
    }

    impl Picture {
        fn new(width: u32, height: u32, mut f: impl FnMut(usize, usize) -> (u8, u8, u8)) -> Self {
            let (w, h) = (width as usize, height as usize);
            let (stride, c_stride) = (w + 16, w.div_ceil(2) + 8);
            let mut y = vec![0xEE; stride * h];
            let mut u = vec![0xEE; c_stride * h.div_ceil(2)];
            let mut v = u.clone();
            for r in 0..h {
                for c in 0..w {
                    let (ys, us, vs) = f(c, r);
                    y[r * stride + c] = ys;
                    if r % 2 == 0 && c % 2 == 0 {
                        u[r / 2 * c_stride + c / 2] = us;
                        v[r / 2 * c_stride + c / 2] = vs;
                    }
                }
            }
            Picture {
                y,
                u,
                v,
                stride,
                c_stride,
                width,
                height,
            }
        }

        fn yuv(&self) -> Yuv420<'_> {
            Yuv420 {
                y: &self.y,
                y_stride: self.stride,
                u: &self.u,
                u_stride: self.c_stride,
                v: &self.v,
                v_stride: self.c_stride,
                width: self.width,
                height: self.height,
            }
        }
    }

    /// The (R, G, B) 0-255 values at tensor pixel (x, y).
    fn rgb_at(tensor: &[f32], size: usize, x: usize, y: usize) -> [f32; 3] {
        let i = y * size + x;
        let channel = |c: usize| tensor[c * size * size + i] * STD_BGR[c] + MEAN_BGR[c];
        [channel(2), channel(1), channel(0)]
    }

    fn config(size: u32) -> Config {
        Config {
            input_size: size,
            ..Config::default()
        }
    }

    #[test]
    fn a_flat_red_picture_is_red_inside_and_black_in_the_padding() {
        let p = Picture::new(64, 32, |_, _| (81, 90, 240));
        let mut t = vec![0f32; config(32).input_len()];
        let l = preprocess(&p.yuv(), &config(32), &mut t).unwrap();
        assert_eq!((l.scaled_width, l.scaled_height, l.pad_y), (32, 16, 8));
        assert!(close(rgb_at(&t, 32, 0, 8), [254.44, 0.0, 0.0], 0.05));
        assert!(close(rgb_at(&t, 32, 31, 23), [254.44, 0.0, 0.0], 0.05));
        assert!(close(rgb_at(&t, 32, 5, 7), [0.0; 3], 1e-4), "padding above");
        assert!(
            close(rgb_at(&t, 32, 5, 24), [0.0; 3], 1e-4),
            "padding below"
        );
        // Channel 0 is blue: black padding normalises to -mean / std.
        assert!((t[0] - (-103.53 / 57.375)).abs() < 1e-6);
    }

    #[test]
    fn halving_averages_pixel_pairs_with_half_pixel_centres() {
        // 64 wide into 32: output x reads source 2x + 0.5, the mean of columns 2x and 2x + 1.
        // Luma ramp 16 + 2x: output x = 16 + 2 * (2x + 0.5) = 17 + 4x; grey chroma.
        let p = Picture::new(64, 64, |x, _| (16 + 2 * x as u8, 128, 128));
        let mut t = vec![0f32; config(32).input_len()];
        preprocess(&p.yuv(), &config(32), &mut t).unwrap();
        for x in [0usize, 7, 31] {
            let expected = (17.0 + 4.0 * x as f32 - 16.0) * 255.0 / 219.0;
            let got = rgb_at(&t, 32, x, 10);
            assert!(
                close(got, [expected; 3], 1e-3),
                "x {x}: {got:?} vs {expected}"
            );
        }
    }

    #[test]
    fn upscaling_repeats_the_edges() {
        // 16x16 into 32: output 0 reads -0.25 → clamped to sample 0; output 1 reads 0.25.
        let p = Picture::new(16, 16, |x, _| (16 + 8 * x as u8, 128, 128));
        let mut t = vec![0f32; config(32).input_len()];
        preprocess(&p.yuv(), &config(32), &mut t).unwrap();
        let grey = |luma: f32| [(luma - 16.0) * 255.0 / 219.0; 3];
        assert!(close(rgb_at(&t, 32, 0, 0), grey(16.0), 1e-3));
        assert!(close(rgb_at(&t, 32, 1, 0), grey(18.0), 1e-3));
        assert!(close(rgb_at(&t, 32, 31, 31), grey(136.0), 1e-3));
    }

    #[test]
    fn chroma_follows_its_half_resolution_plane() {
        // Left half blue, right half red, 64x16 → 32x8 (pad 12): the middle columns blend.
        let p = Picture::new(64, 16, |x, _| {
            if x < 32 {
                (41, 240, 110)
            } else {
                (81, 90, 240)
            }
        });
        let mut t = vec![0f32; config(32).input_len()];
        preprocess(&p.yuv(), &config(32), &mut t).unwrap();
        let [r, _, b] = rgb_at(&t, 32, 2, 14);
        assert!(b > 250.0 && r < 5.0, "left is blue: {r} {b}");
        let [r, _, b] = rgb_at(&t, 32, 29, 14);
        assert!(r > 250.0 && b < 5.0, "right is red: {r} {b}");
    }

    #[test]
    fn odd_sizes_and_unpadded_last_rows_work() {
        let (w, h) = (33u32, 17u32);
        let y = vec![126u8; 33 * 17];
        let c = vec![128u8; 17 * 9];
        let pic = Yuv420 {
            y: &y,
            y_stride: 33,
            u: &c,
            u_stride: 17,
            v: &c,
            v_stride: 17,
            width: w,
            height: h,
        };
        let mut t = vec![0f32; config(32).input_len()];
        let l = preprocess(&pic, &config(32), &mut t).unwrap();
        assert_eq!((l.scaled_width, l.scaled_height), (32, 16));
        assert!(close(
            rgb_at(&t, 32, 31, l.pad_y as usize + 15),
            [128.08; 3],
            0.01
        ));
    }

    #[test]
    fn bad_input_is_an_error_naming_what_is_wrong() {
        let p = Picture::new(64, 32, |_, _| (100, 128, 128));
        let mut t = vec![0f32; config(32).input_len()];
        let err = |pic: Yuv420<'_>, cfg: &Config, t: &mut [f32]| {
            preprocess(&pic, cfg, t).unwrap_err().to_string()
        };
        let good = p.yuv();
        assert_eq!(
            err(Yuv420 { width: 0, ..good }, &config(32), &mut t),
            "picture size 0x32 is empty"
        );
        assert_eq!(
            err(good, &config(33), &mut t),
            "model input size 33 is not a positive multiple of 32"
        );
        assert_eq!(
            err(good, &config(32), &mut t[1..]),
            "input tensor buffer has 3071 floats; a 32x32 input needs 3072"
        );
        assert_eq!(
            err(
                Yuv420 {
                    y_stride: 63,
                    ..good
                },
                &config(32),
                &mut t
            ),
            "Y plane stride 63 is smaller than its row width 64"
        );
        assert!(
            err(
                Yuv420 {
                    v: &p.v[..10],
                    ..good
                },
                &config(32),
                &mut t
            )
            .starts_with("V plane has 10 bytes")
        );
    }

    proptest! {
        #[test]
        fn any_picture_gives_finite_values_in_range(
            w in 1u32..80, h in 1u32..80, seed in any::<u64>(), k in 1u32..4,
        ) {
            let mut state = seed;
            let p = Picture::new(w, h, |_, _| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let b = state.to_le_bytes();
                (b[5], b[6], b[7])
            });
            let cfg = config(32 * k);
            let mut t = vec![f32::NAN; cfg.input_len()];
            preprocess(&p.yuv(), &cfg, &mut t).unwrap();
            let area = (32 * k * 32 * k) as usize;
            for (i, &x) in t.iter().enumerate() {
                let c = i / area;
                let (lo, hi) = (-MEAN_BGR[c] / STD_BGR[c], (255.0 - MEAN_BGR[c]) / STD_BGR[c]);
                prop_assert!(x.is_finite() && x >= lo - 1e-5 && x <= hi + 1e-5, "{x} at {i}");
            }
        }
    }
}

//! Thumbnails: a decoded YUV 4:2:0 picture in, a small JPEG out.
//!
//! The sink shows each camera's latest keyframe on its web page and the worker serves a
//! snapshot of a camera's current picture; both hold openh264's output (three planes
//! with strides wider than the picture) and both want a few-kilobyte JPEG a browser can
//! show. This crate is that one step, pure and without I/O:
//!
//! 1. downscale to at most `max_width` pixels wide, keeping the aspect ratio, by
//!    averaging each output pixel's source area (a box filter: no aliasing shimmer on
//!    fine detail, and cheap enough to run on every keyframe);
//! 2. convert the limited-range BT.601 samples H.264 cameras send (luma 16-235, chroma
//!    16-240) to the full-range YCbCr that JPEG (JFIF) expects, so black stays black and
//!    white stays white in the browser;
//! 3. encode with the pure-Rust `jpeg-encoder` (baseline, 4:2:0 chroma below quality 90).
//!
//! ```
//! let (w, h) = (64u32, 36u32);
//! let y = vec![235u8; 64 * 36];
//! let u = vec![128u8; 32 * 18];
//! let v = vec![128u8; 32 * 18];
//! let jpeg = framewire_thumbnail::jpeg_from_yuv420(&y, 64, &u, 32, &v, 32, w, h, 32, 80)?;
//! assert_eq!(&jpeg[..2], &[0xFF, 0xD8]); // a JPEG start-of-image marker
//! # Ok::<(), framewire_thumbnail::ThumbnailError>(())
//! ```

use jpeg_encoder::{ColorType, Encoder};
use thiserror::Error;

/// Why a thumbnail could not be made. Messages name the plane or argument at fault.
#[derive(Debug, Error)]
pub enum ThumbnailError {
    /// Width or height is zero.
    #[error("picture size {width}x{height} is empty")]
    EmptyPicture {
        /// Picture width.
        width: u32,
        /// Picture height.
        height: u32,
    },
    /// `max_width` is zero.
    #[error("max_width must be at least 1")]
    ZeroMaxWidth,
    /// `quality` is outside 1-100.
    #[error("JPEG quality {0} is out of range; expected 1 to 100")]
    Quality(u8),
    /// A plane's stride is narrower than its rows.
    #[error("{plane} plane stride {stride} is smaller than its row width {row}")]
    Stride {
        /// `Y`, `U` or `V`.
        plane: &'static str,
        /// The stride given.
        stride: usize,
        /// Bytes a row needs.
        row: usize,
    },
    /// A plane holds fewer bytes than its rows need.
    #[error("{plane} plane has {len} bytes; {rows} rows at stride {stride} need {needed}")]
    PlaneTooShort {
        /// `Y`, `U` or `V`.
        plane: &'static str,
        /// Bytes given.
        len: usize,
        /// Rows of the plane.
        rows: usize,
        /// Stride of the plane.
        stride: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// The encoder failed.
    #[error("JPEG encoding failed: {0}")]
    Encode(String),
}

/// Makes a JPEG of a YUV 4:2:0 picture, downscaled to at most `max_width` pixels wide
/// (never upscaled; the height follows the aspect ratio), at JPEG `quality` 1-100.
///
/// `y` holds `height` rows of `width` luma samples, each row starting `y_stride` bytes
/// after the previous one; `u` and `v` hold `ceil(height / 2)` rows of `ceil(width / 2)`
/// chroma samples at their strides — openh264's `DecodedYUV` planes and strides as they
/// are. Samples are taken as limited-range BT.601 (what H.264 cameras send).
#[allow(clippy::too_many_arguments)] // the three planes and their strides, as decoders hand them over
pub fn jpeg_from_yuv420(
    y: &[u8],
    y_stride: usize,
    u: &[u8],
    u_stride: usize,
    v: &[u8],
    v_stride: usize,
    width: u32,
    height: u32,
    max_width: u32,
    quality: u8,
) -> Result<Vec<u8>, ThumbnailError> {
    if width == 0 || height == 0 {
        return Err(ThumbnailError::EmptyPicture { width, height });
    }
    if max_width == 0 {
        return Err(ThumbnailError::ZeroMaxWidth);
    }
    if !(1..=100).contains(&quality) {
        return Err(ThumbnailError::Quality(quality));
    }
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let luma = Plane::new("Y", y, y_stride, w, h)?;
    let cb = Plane::new("U", u, u_stride, cw, ch)?;
    let cr = Plane::new("V", v, v_stride, cw, ch)?;

    let (out_w, out_h) = output_size(width, height, max_width);
    let mut ycbcr = Vec::with_capacity(out_w * out_h * 3);
    for oy in 0..out_h {
        let (y0, y1) = span(oy, out_h, h);
        let (cy0, cy1) = (y0 / 2, y1.div_ceil(2));
        for ox in 0..out_w {
            let (x0, x1) = span(ox, out_w, w);
            let (cx0, cx1) = (x0 / 2, x1.div_ceil(2));
            ycbcr.push(LUMA_FULL[usize::from(luma.mean(x0, x1, y0, y1))]);
            ycbcr.push(CHROMA_FULL[usize::from(cb.mean(cx0, cx1, cy0, cy1))]);
            ycbcr.push(CHROMA_FULL[usize::from(cr.mean(cx0, cx1, cy0, cy1))]);
        }
    }

    let mut jpeg = Vec::new();
    // Both fit u16: the output is at most `max_width` wide and no taller than the input
    // scaled down; pictures beyond 65535 pixels are clamped by `output_size`.
    let (ew, eh) = (
        u16::try_from(out_w).unwrap_or(u16::MAX),
        u16::try_from(out_h).unwrap_or(u16::MAX),
    );
    Encoder::new(&mut jpeg, quality)
        .encode(&ycbcr, ew, eh, ColorType::Ycbcr)
        .map_err(|e| ThumbnailError::Encode(e.to_string()))?;
    Ok(jpeg)
}

/// The thumbnail size for a `width` x `height` picture at most `max_width` wide: never
/// larger than the picture, aspect ratio kept (rounded), at least 1x1, at most 65535
/// (JPEG's limit) either way.
pub fn output_size(width: u32, height: u32, max_width: u32) -> (usize, usize) {
    let limit = u64::from(u16::MAX);
    let (w, h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    let mut out_w = w.min(u64::from(max_width.max(1))).min(limit);
    let mut out_h = (h * out_w + w / 2) / w;
    if out_h > limit {
        out_h = limit;
        out_w = ((w * out_h + h / 2) / h).max(1);
    }
    (out_w as usize, out_h.max(1) as usize)
}

/// The source range `[start, end)` that output index `i` of `out` covers in `src`
/// samples: never empty.
fn span(i: usize, out: usize, src: usize) -> (usize, usize) {
    let start = i * src / out;
    let end = ((i + 1) * src / out).max(start + 1).min(src);
    (start.min(src - 1), end)
}

/// One plane, checked to hold `rows` rows of `row` bytes at `stride`.
struct Plane<'a> {
    data: &'a [u8],
    stride: usize,
    row: usize,
    rows: usize,
}

impl<'a> Plane<'a> {
    fn new(
        plane: &'static str,
        data: &'a [u8],
        stride: usize,
        row: usize,
        rows: usize,
    ) -> Result<Self, ThumbnailError> {
        if stride < row {
            return Err(ThumbnailError::Stride { plane, stride, row });
        }
        // The last row need not be padded to the full stride.
        let needed = stride * (rows - 1) + row;
        if data.len() < needed {
            return Err(ThumbnailError::PlaneTooShort {
                plane,
                len: data.len(),
                rows,
                stride,
                needed,
            });
        }
        Ok(Plane {
            data,
            stride,
            row,
            rows,
        })
    }

    /// Rounded mean of the samples in columns `[x0, x1)` and rows `[y0, y1)`, clipped to
    /// the plane (odd picture sizes make the chroma ranges reach one past the edge).
    fn mean(&self, x0: usize, x1: usize, y0: usize, y1: usize) -> u8 {
        let (x0, x1) = (x0.min(self.row - 1), x1.clamp(x0 + 1, self.row));
        let (y0, y1) = (y0.min(self.rows - 1), y1.clamp(y0 + 1, self.rows));
        let mut sum = 0u64;
        for r in y0..y1 {
            let start = r * self.stride;
            sum += self.data[start + x0..start + x1]
                .iter()
                .map(|&s| u64::from(s))
                .sum::<u64>();
        }
        let n = ((x1 - x0) * (y1 - y0)) as u64;
        u8::try_from((sum + n / 2) / n).unwrap_or(u8::MAX)
    }
}

/// Limited-range luma (16-235) to full range (0-255), clamped.
static LUMA_FULL: [u8; 256] = expand_table(16, 219);
/// Limited-range chroma (16-240, 128 neutral) to full range (0-255), clamped.
static CHROMA_FULL: [u8; 256] = expand_table(16, 224);

/// `round((v - low) * 255 / span)`, clamped to 0-255, for every `v`.
const fn expand_table(low: i32, span: i32) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut v = 0;
    while v < 256 {
        let scaled = ((v as i32 - low) * 255 * 2 + span) / (2 * span);
        t[v] = if scaled < 0 {
            0
        } else if scaled > 255 {
            255
        } else {
            scaled as u8
        };
        v += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A picture with padded strides (like openh264's) and a luma ramp left to right.
    struct Picture {
        y: Vec<u8>,
        u: Vec<u8>,
        v: Vec<u8>,
        y_stride: usize,
        c_stride: usize,
        width: u32,
        height: u32,
    }

    impl Picture {
        fn new(width: u32, height: u32, luma: impl Fn(usize, usize) -> u8, u: u8, v: u8) -> Self {
            let (w, h) = (width as usize, height as usize);
            let y_stride = w + 64;
            let c_stride = w.div_ceil(2) + 32;
            let mut y = vec![0xAB; y_stride * h]; // padding is garbage on purpose
            for r in 0..h {
                for c in 0..w {
                    y[r * y_stride + c] = luma(c, r);
                }
            }
            let mut up = vec![0xCD; c_stride * h.div_ceil(2)];
            let mut vp = up.clone();
            for r in 0..h.div_ceil(2) {
                for c in 0..w.div_ceil(2) {
                    up[r * c_stride + c] = u;
                    vp[r * c_stride + c] = v;
                }
            }
            Picture {
                y,
                u: up,
                v: vp,
                y_stride,
                c_stride,
                width,
                height,
            }
        }

        fn jpeg(&self, max_width: u32, quality: u8) -> Result<Vec<u8>, ThumbnailError> {
            jpeg_from_yuv420(
                &self.y,
                self.y_stride,
                &self.u,
                self.c_stride,
                &self.v,
                self.c_stride,
                self.width,
                self.height,
                max_width,
                quality,
            )
        }
    }

    /// Decodes to RGB: (width, height, pixels).
    fn decode(jpeg: &[u8]) -> (u16, u16, Vec<u8>) {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let pixels = d.decode().unwrap();
        let info = d.info().unwrap();
        assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
        (info.width, info.height, pixels)
    }

    fn mean_rgb(pixels: &[u8]) -> [f64; 3] {
        let n = (pixels.len() / 3) as f64;
        let mut sum = [0f64; 3];
        for px in pixels.chunks_exact(3) {
            for (s, &c) in sum.iter_mut().zip(px) {
                *s += f64::from(c);
            }
        }
        sum.map(|s| s / n)
    }

    #[test]
    fn downscales_to_max_width_keeping_the_aspect_ratio() {
        let p = Picture::new(640, 360, |_, _| 128, 128, 128);
        let jpeg = p.jpeg(320, 75).unwrap();
        let (w, h, _) = decode(&jpeg);
        assert_eq!((w, h), (320, 180));
        assert!(jpeg.len() < 20_000, "{} bytes", jpeg.len());

        // Never upscaled.
        let (w, h, _) = decode(&p.jpeg(1920, 75).unwrap());
        assert_eq!((w, h), (640, 360));
    }

    #[test]
    fn limited_range_black_and_white_become_full_range() {
        for (luma, expected) in [(16u8, 0.0), (235, 255.0), (126, 128.0)] {
            let p = Picture::new(96, 54, |_, _| luma, 128, 128);
            let (_, _, px) = decode(&p.jpeg(48, 90).unwrap());
            for (channel, m) in mean_rgb(&px).iter().enumerate() {
                assert!(
                    (m - expected).abs() <= 2.0,
                    "luma {luma}: channel {channel} mean {m}, expected {expected}"
                );
            }
        }
    }

    #[test]
    fn a_ramp_stays_a_ramp_and_colour_survives() {
        // Luma ramp left (dark) to right (bright), strong red chroma.
        let p = Picture::new(320, 180, |c, _| (16 + c * 219 / 319) as u8, 90, 240);
        let (w, _, px) = decode(&p.jpeg(160, 85).unwrap());
        let w = usize::from(w);
        let luma_at = |x: usize| {
            let i = (45 * w + x) * 3;
            (u32::from(px[i]) + u32::from(px[i + 1]) + u32::from(px[i + 2])) / 3
        };
        assert!(
            luma_at(5) + 80 < luma_at(w - 5),
            "left {} right {}",
            luma_at(5),
            luma_at(w - 5)
        );
        let [r, g, b] = mean_rgb(&px);
        assert!(r > g + 60.0 && r > b + 30.0, "red expected: {r} {g} {b}");
    }

    #[test]
    fn odd_sizes_and_unpadded_last_rows_work() {
        let (w, h) = (101u32, 57u32);
        let y = vec![200u8; 101 * 57];
        let u = vec![128u8; 51 * 29];
        let v = vec![128u8; 51 * 29];
        let jpeg = jpeg_from_yuv420(&y, 101, &u, 51, &v, 51, w, h, 40, 80).unwrap();
        let (ow, oh, px) = decode(&jpeg);
        assert_eq!((ow, oh), (40, 23));
        let m = mean_rgb(&px)[1];
        assert!((m - 214.0).abs() <= 3.0, "{m}");
    }

    #[test]
    fn bad_input_is_an_error_naming_what_is_wrong() {
        let p = Picture::new(64, 32, |_, _| 100, 128, 128);
        let call = |y: &[u8], ys: usize, u: &[u8], w: u32, h: u32, max: u32, q: u8| {
            jpeg_from_yuv420(y, ys, u, p.c_stride, &p.v, p.c_stride, w, h, max, q)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            call(&p.y, p.y_stride, &p.u, 0, 32, 32, 80),
            "picture size 0x32 is empty"
        );
        assert_eq!(
            call(&p.y, p.y_stride, &p.u, 64, 32, 0, 80),
            "max_width must be at least 1"
        );
        assert_eq!(
            call(&p.y, p.y_stride, &p.u, 64, 32, 32, 0),
            "JPEG quality 0 is out of range; expected 1 to 100"
        );
        assert_eq!(
            call(&p.y, 63, &p.u, 64, 32, 32, 80),
            "Y plane stride 63 is smaller than its row width 64"
        );
        assert!(
            call(&p.y[..100], p.y_stride, &p.u, 64, 32, 32, 80)
                .starts_with("Y plane has 100 bytes; 32 rows at stride 128 need"),
        );
        assert!(call(&p.y, p.y_stride, &p.u[..10], 64, 32, 32, 80).starts_with("U plane has 10"));
    }

    #[test]
    fn output_size_rounds_and_clamps() {
        assert_eq!(output_size(1920, 1080, 320), (320, 180));
        assert_eq!(output_size(630, 354, 320), (320, 180));
        assert_eq!(output_size(100, 1, 10), (10, 1), "never 0 rows");
        assert_eq!(output_size(10, 10, 320), (10, 10));
        assert_eq!(output_size(1, 200_000, 320), (1, 65_535));
    }

    #[test]
    fn expansion_tables_hit_the_ends() {
        assert_eq!(
            (LUMA_FULL[0], LUMA_FULL[16], LUMA_FULL[235], LUMA_FULL[255]),
            (0, 0, 255, 255)
        );
        assert_eq!(
            (CHROMA_FULL[16], CHROMA_FULL[128], CHROMA_FULL[240]),
            (0, 128, 255)
        );
    }
}

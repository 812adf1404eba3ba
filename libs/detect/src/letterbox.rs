//! Letterbox geometry: where a picture sits in the model's square input.
//!
//! NanoDet was trained and evaluated on pictures scaled to fit the square input with their
//! aspect ratio kept, centred, and the rest filled with black. Stretching a 16:9 camera
//! picture instead would squash every object; this module computes the placement once
//! per picture size, for [`preprocess`](crate::preprocess) (forwards) and
//! [`decode`](crate::decode) (backwards).

use crate::DetectError;

/// Placement of a `width` x `height` picture in a `size` x `size` model input.
///
/// The scale is `r = min(size / width, size / height)`; the scaled picture is
/// `round(width * r)` x `round(height * r)` (ties to even, as Python's `round` in the
/// evaluation) and is placed at `((size - scaled_width) / 2, (size - scaled_height) / 2)`
/// rounded down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Letterbox {
    /// Side of the model input.
    pub size: u32,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Width of the scaled picture inside the input, 1..=size.
    pub scaled_width: u32,
    /// Height of the scaled picture inside the input, 1..=size.
    pub scaled_height: u32,
    /// Columns of padding left of the picture.
    pub pad_x: u32,
    /// Rows of padding above the picture.
    pub pad_y: u32,
}

impl Letterbox {
    /// The placement of a `width` x `height` picture in a `size` x `size` input.
    pub fn new(width: u32, height: u32, size: u32) -> Result<Self, DetectError> {
        if width == 0 || height == 0 {
            return Err(DetectError::EmptyPicture { width, height });
        }
        if size == 0 {
            return Err(DetectError::InputSize(size));
        }
        let s = f64::from(size);
        let r = (s / f64::from(height)).min(s / f64::from(width));
        let scaled = |side: u32| (f64::from(side) * r).round_ties_even().clamp(1.0, s) as u32;
        let (scaled_width, scaled_height) = (scaled(width), scaled(height));
        Ok(Letterbox {
            size,
            width,
            height,
            scaled_width,
            scaled_height,
            pad_x: (size - scaled_width) / 2,
            pad_y: (size - scaled_height) / 2,
        })
    }

    /// A point in model-input pixels as a fraction of the picture's width and height
    /// (0..1 inside the picture; outside it in the padding). Not clamped.
    pub fn to_picture(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.pad_x as f32) / self.scaled_width as f32,
            (y - self.pad_y as f32) / self.scaled_height as f32,
        )
    }

    /// Picture pixels per model-input pixel horizontally and vertically (the inverse of
    /// the resampling scale; each axis has its own because of rounding).
    pub fn source_step(&self) -> (f64, f64) {
        (
            f64::from(self.width) / f64::from(self.scaled_width),
            f64::from(self.height) / f64::from(self.scaled_height),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn landscape_1080p_is_padded_top_and_bottom() {
        // r = 416 / 1920 = 0.216667; 1080 * r = 234.0; pad (416 - 234) / 2 = 91.
        let l = Letterbox::new(1920, 1080, 416).unwrap();
        assert_eq!((l.scaled_width, l.scaled_height), (416, 234));
        assert_eq!((l.pad_x, l.pad_y), (0, 91));
        assert_eq!(l.to_picture(0.0, 91.0), (0.0, 0.0));
        assert_eq!(l.to_picture(416.0, 325.0), (1.0, 1.0));
        assert_eq!(l.to_picture(208.0, 208.0), (0.5, 0.5));
    }

    #[test]
    fn portrait_and_odd_sizes() {
        // r = min(416 / 383, 416 / 511) = 0.814090; 383 * r = 311.79 → 312;
        // pad (416 - 312) / 2 = 52.
        let l = Letterbox::new(511, 383, 416).unwrap();
        assert_eq!(
            (l.scaled_width, l.scaled_height, l.pad_x, l.pad_y),
            (416, 312, 0, 52)
        );
        // Portrait 480x640: r = 0.65; 480 * r = 312; pad x 52.
        let l = Letterbox::new(480, 640, 416).unwrap();
        assert_eq!(
            (l.scaled_width, l.scaled_height, l.pad_x, l.pad_y),
            (312, 416, 52, 0)
        );
        // Odd padding rounds down: 640x426 → r = 0.65, 426 * r = 276.9 → 277, pad 69.
        let l = Letterbox::new(640, 426, 416).unwrap();
        assert_eq!((l.scaled_height, l.pad_y), (277, 69));
    }

    #[test]
    fn ties_round_to_even_like_the_evaluation() {
        // 32 x 5 into 32: r = 1, no tie. 64 x 9 into 32: r = 0.5, 9 * r = 4.5 → 4 (even).
        let l = Letterbox::new(64, 9, 32).unwrap();
        assert_eq!((l.scaled_width, l.scaled_height, l.pad_y), (32, 4, 14));
        let l = Letterbox::new(64, 11, 32).unwrap(); // 5.5 → 6
        assert_eq!(l.scaled_height, 6);
    }

    #[test]
    fn small_pictures_are_scaled_up_and_slivers_keep_a_row() {
        let l = Letterbox::new(100, 50, 416).unwrap();
        assert_eq!((l.scaled_width, l.scaled_height, l.pad_y), (416, 208, 104));
        let l = Letterbox::new(10_000, 1, 416).unwrap();
        assert_eq!((l.scaled_width, l.scaled_height, l.pad_y), (416, 1, 207));
    }

    #[test]
    fn empty_pictures_are_errors() {
        assert_eq!(
            Letterbox::new(0, 5, 416).unwrap_err().to_string(),
            "picture size 0x5 is empty"
        );
    }

    proptest! {
        #[test]
        fn the_picture_fills_one_side_and_fits_centred(w in 1u32..20_000, h in 1u32..20_000, k in 1u32..20) {
            let size = 32 * k;
            let l = Letterbox::new(w, h, size).unwrap();
            prop_assert!(l.scaled_width >= 1 && l.scaled_height >= 1);
            prop_assert!(l.scaled_width <= size && l.scaled_height <= size);
            prop_assert!(l.scaled_width == size || l.scaled_height == size);
            prop_assert!(l.pad_x * 2 + l.scaled_width <= size && size - (l.pad_x * 2 + l.scaled_width) <= 1);
            prop_assert!(l.pad_y * 2 + l.scaled_height <= size && size - (l.pad_y * 2 + l.scaled_height) <= 1);
            let (x1, y1) = l.to_picture((l.pad_x + l.scaled_width) as f32, (l.pad_y + l.scaled_height) as f32);
            prop_assert!((x1 - 1.0).abs() < 1e-6 && (y1 - 1.0).abs() < 1e-6);
        }
    }
}

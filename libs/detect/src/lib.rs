//! Object detection around the model, without an ML runtime: pictures in, tensors out;
//! tensors in, detections out.
//!
//! The worker runs NanoDet-g-416 (COCO-80; `scripts/model.sh` makes the ONNX file) on
//! decoded pictures. Everything except the network itself lives here, pure and testable
//! without a model file:
//!
//! 1. [`Letterbox`]: where a picture goes in the model's square input (scaled to fit,
//!    aspect ratio kept, centred, the rest black) and how to map back;
//! 2. [`preprocess`]: openh264's YUV 4:2:0 planes straight into the model's NCHW, BGR,
//!    mean/std-normalised `f32` tensor, in a buffer the caller reuses;
//! 3. [`decode`]: the six NanoDet outputs into [`Detection`]s with boxes in 0..1 of the
//!    original picture, after a score threshold, per-class non-maximum suppression and a cap.
//!
//! The conventions (bilinear resampling with half-pixel centres, letterbox rounding, cell
//! centres at `(x + 0.5) * stride`) are those of the evaluation that chose the model
//! (NanoDet's own validation pipeline); `libs/inference`'s model test checks the whole path
//! against an independent onnxruntime reference.
//!
//! ```
//! use framewire_detect::{Config, Yuv420, preprocess};
//! let config = Config::default();
//! let (w, h) = (64u32, 36u32);
//! let (y, u, v) = (vec![128u8; 64 * 36], vec![128u8; 32 * 18], vec![128u8; 32 * 18]);
//! let picture = Yuv420 { y: &y, y_stride: 64, u: &u, u_stride: 32, v: &v, v_stride: 32, width: w, height: h };
//! let mut tensor = vec![0f32; config.input_len()];
//! let letterbox = preprocess(&picture, &config, &mut tensor)?;
//! assert_eq!((letterbox.scaled_width, letterbox.scaled_height), (416, 234));
//! # Ok::<(), framewire_detect::DetectError>(())
//! ```

mod decode;
mod labels;
mod letterbox;
mod preprocess;

pub use decode::{Detection, Outputs, decode, iou, nms};
pub use labels::{COCO80, label};
pub use letterbox::Letterbox;
pub use preprocess::{Yuv420, preprocess, yuv_to_rgb};

use thiserror::Error;

/// Name of the model's input tensor.
pub const INPUT_NAME: &str = "input_1:0";
/// Names of the class-score outputs (`[1, cells, 80]`, sigmoid applied), strides 8, 16, 32.
pub const SCORE_OUTPUTS: [&str; 3] = ["Identity:0", "Identity_1:0", "Identity_2:0"];
/// Names of the box-distribution outputs (`[1, cells, 44]`), strides 8, 16, 32.
pub const BOX_OUTPUTS: [&str; 3] = ["Identity_3:0", "Identity_4:0", "Identity_5:0"];
/// The strides of the three output levels, in input pixels per cell.
pub const STRIDES: [u32; 3] = [8, 16, 32];
/// Number of classes (COCO-80).
pub const CLASSES: usize = 80;
/// Bins of each side's distance distribution (NanoDet's `reg_max` + 1).
pub const BINS: usize = 11;

/// Detection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Side of the model's square input, a multiple of 32 (416 for NanoDet-g-416).
    pub input_size: u32,
    /// Detections scoring at or below this are dropped (0.35).
    pub score_threshold: f32,
    /// Of two same-class detections overlapping by more than this IoU, the lower-scoring
    /// one is dropped (0.5).
    pub iou_threshold: f32,
    /// At most this many detections per picture, best first (100).
    pub max_detections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            input_size: 416,
            score_threshold: 0.35,
            iou_threshold: 0.5,
            max_detections: 100,
        }
    }
}

impl Config {
    /// Number of `f32`s in the input tensor: `3 * input_size²`.
    pub fn input_len(&self) -> usize {
        let side = self.input_size as usize;
        3 * side * side
    }

    /// The input tensor's shape, `[1, 3, input_size, input_size]`.
    pub fn input_shape(&self) -> [usize; 4] {
        let side = self.input_size as usize;
        [1, 3, side, side]
    }

    /// Cells of the output level of `stride`: `(input_size / stride)²`.
    pub fn cells(&self, stride: u32) -> usize {
        let side = (self.input_size / stride) as usize;
        side * side
    }

    fn check(&self) -> Result<(), DetectError> {
        if self.input_size == 0 || !self.input_size.is_multiple_of(32) {
            return Err(DetectError::InputSize(self.input_size));
        }
        Ok(())
    }
}

/// Why a picture could not be preprocessed or outputs decoded. Messages name the plane,
/// buffer or output at fault.
#[derive(Debug, Error, PartialEq)]
pub enum DetectError {
    /// Width or height is zero.
    #[error("picture size {width}x{height} is empty")]
    EmptyPicture {
        /// Picture width.
        width: u32,
        /// Picture height.
        height: u32,
    },
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
    /// The model input size is not a positive multiple of 32.
    #[error("model input size {0} is not a positive multiple of 32")]
    InputSize(u32),
    /// The tensor buffer has the wrong length.
    #[error("input tensor buffer has {len} floats; a {size}x{size} input needs {needed}")]
    TensorBuffer {
        /// Floats given.
        len: usize,
        /// The model's input side.
        size: u32,
        /// Floats needed.
        needed: usize,
    },
    /// An output has the wrong number of values.
    #[error("output {output} has {len} values, expected {expected}")]
    OutputLength {
        /// The output's name.
        output: &'static str,
        /// Values given.
        len: usize,
        /// Values expected.
        expected: usize,
    },
}

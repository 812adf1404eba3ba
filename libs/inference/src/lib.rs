//! The detector's network: NanoDet-g-416 input tensors in, its six raw outputs out.
//!
//! `framewire-detect` does everything around the network without an ML runtime; this crate
//! is the one place that runs it, so that the worker does not depend on a runtime's API and
//! the runtime can be chosen per deployment:
//!
//! - [`BackendKind::Tract`] (default): `tract-onnx`, pure Rust, nothing to install;
//! - [`BackendKind::OnnxRuntime`]: ONNX Runtime 1.20 through the `ort` crate, built only with
//!   the cargo feature `onnxruntime` and opened at run time from
//!   [`Options::onnxruntime_library`] or `ORT_DYLIB_PATH` (the PyPI wheel's
//!   `libonnxruntime.so.1.20.1` works; `scripts/model.sh` writes its path into
//!   `onnxruntime.path` next to the model). Nothing is downloaded at build time.
//!
//! The model has a fixed batch of 1 (`[1, 3, 416, 416]`), and running several pictures as
//! one batch is slower per picture than one run each (measured on one core, batch of 4 vs 1:
//! tract 71.1 vs 42.2 ms per picture, 1.68×; onnxruntime 22.1 vs 21.0 ms, 1.05×; see
//! `docs/benchmarks.md`, "Object detection"), so [`Detector::max_batch`] is 1 and
//! [`Detector::run`] runs its inputs one by one.
//!
//! ```no_run
//! use framewire_inference::{Detector, Options};
//! let mut detector = Detector::load("nanodet-g-416.onnx".as_ref(), &Options::default())?;
//! let input = vec![0f32; 3 * 416 * 416];
//! let outputs = detector.run(&[&input])?;
//! let raw = outputs[0].outputs(); // for framewire_detect::decode
//! # let _ = raw;
//! # Ok::<(), framewire_inference::InferenceError>(())
//! ```

#[cfg(feature = "onnxruntime")]
mod onnxruntime;
mod tract;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Side of NanoDet-g-416's square input.
pub const INPUT_SIZE: u32 = 416;

/// Which runtime runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BackendKind {
    /// `tract-onnx`, pure Rust (`"tract"`).
    #[default]
    #[serde(rename = "tract")]
    Tract,
    /// ONNX Runtime via `ort`, cargo feature `onnxruntime` (`"onnxruntime"`).
    #[serde(rename = "onnxruntime")]
    OnnxRuntime,
}

impl BackendKind {
    /// The setting's spelling: `tract` or `onnxruntime`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Tract => "tract",
            BackendKind::OnnxRuntime => "onnxruntime",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = InferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tract" => Ok(BackendKind::Tract),
            "onnxruntime" => Ok(BackendKind::OnnxRuntime),
            other => Err(InferenceError::UnknownBackend(other.to_owned())),
        }
    }
}

/// How to load the detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The runtime (tract).
    pub backend: BackendKind,
    /// Threads one inference may use (intra-op), at least 1 (1).
    pub threads: usize,
    /// Most pictures the caller wants to hand over per inference, at least 1 (1); the backend
    /// may support fewer, see [`Detector::max_batch`].
    pub max_batch: usize,
    /// `libonnxruntime.so` for the onnxruntime backend; unset: `ORT_DYLIB_PATH`. One library
    /// per process: the first one loaded stays.
    pub onnxruntime_library: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: BackendKind::Tract,
            threads: 1,
            max_batch: 1,
            onnxruntime_library: None,
        }
    }
}

/// NanoDet's six outputs of one picture, owned: `scores[k]` is `[cells_k, 80]`, `boxes[k]` is
/// `[cells_k, 44]`, levels of strides 8, 16, 32 (see [`framewire_detect::Outputs`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawOutputs {
    /// Class probabilities per level.
    pub scores: [Vec<f32>; 3],
    /// Box side distributions per level.
    pub boxes: [Vec<f32>; 3],
}

impl RawOutputs {
    /// Borrowed view for [`framewire_detect::decode`].
    pub fn outputs(&self) -> framewire_detect::Outputs<'_> {
        framewire_detect::Outputs {
            scores: [&self.scores[0], &self.scores[1], &self.scores[2]],
            boxes: [&self.boxes[0], &self.boxes[1], &self.boxes[2]],
        }
    }
}

/// Why the detector could not be loaded or run. Messages name the file or setting at fault.
#[derive(Debug, Error)]
pub enum InferenceError {
    /// The backend setting is neither `tract` nor `onnxruntime`.
    #[error("unknown inference backend {0:?}: expected \"tract\" or \"onnxruntime\"")]
    UnknownBackend(String),
    /// The onnxruntime backend was asked for in a build without it.
    #[error("onnxruntime backend not built in (cargo feature onnxruntime)")]
    NotBuiltIn,
    /// `threads` or `max_batch` is 0.
    #[error("inference setting {setting} is 0; it must be at least 1")]
    Zero {
        /// `threads` or `max_batch`.
        setting: &'static str,
    },
    /// The model file does not exist.
    #[error("model file {} not found: run scripts/model.sh", .0.display())]
    ModelMissing(PathBuf),
    /// The runtime rejected the model file.
    #[error("{backend} could not load model {}: {message}", path.display())]
    Load {
        /// The backend.
        backend: BackendKind,
        /// The model file.
        path: PathBuf,
        /// The runtime's reason.
        message: String,
    },
    /// Neither the `onnxruntime_library` setting nor `ORT_DYLIB_PATH` names the library.
    #[error(
        "onnxruntime library not set: set onnxruntime_library or ORT_DYLIB_PATH (scripts/model.sh writes it to onnxruntime.path)"
    )]
    LibraryNotSet,
    /// The onnxruntime library file does not exist.
    #[error("onnxruntime library {} not found ({from})", path.display())]
    LibraryMissing {
        /// The path given.
        path: PathBuf,
        /// Where it came from: the setting or `ORT_DYLIB_PATH`.
        from: &'static str,
    },
    /// The onnxruntime library could not be opened or is not a usable version.
    #[error("onnxruntime library {} could not be loaded (ort 2.0.0-rc.9 needs ONNX Runtime 1.20): {message}", path.display())]
    LibraryLoad {
        /// The library.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A second, different onnxruntime library was asked for in the same process.
    #[error("onnxruntime library {} requested but {} is already loaded in this process", requested.display(), loaded.display())]
    LibraryConflict {
        /// The library in use.
        loaded: PathBuf,
        /// The one asked for.
        requested: PathBuf,
    },
    /// An input tensor has the wrong length.
    #[error(
        "input tensor {index} has {len} floats; the model needs {expected} (3×{INPUT_SIZE}×{INPUT_SIZE})"
    )]
    InputLength {
        /// Position in the batch.
        index: usize,
        /// Floats given.
        len: usize,
        /// Floats needed.
        expected: usize,
    },
    /// The runtime failed while running the model.
    #[error("{backend} inference failed: {message}")]
    Run {
        /// The backend.
        backend: BackendKind,
        /// The runtime's reason.
        message: String,
    },
    /// An output does not have the shape NanoDet-g-416 gives.
    #[error("model output {name} has {len} values, expected {expected}: not NanoDet-g-416?")]
    OutputShape {
        /// The output's name.
        name: &'static str,
        /// Values given.
        len: usize,
        /// Values expected.
        expected: usize,
    },
}

/// The loaded network, ready to run; one per thread that runs inferences (it is `Send`).
pub struct Detector {
    backend: Backend,
    max_batch: usize,
}

enum Backend {
    Tract(tract::Tract),
    #[cfg(feature = "onnxruntime")]
    OnnxRuntime(onnxruntime::OnnxRuntime),
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("backend", &self.backend())
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl Detector {
    /// Loads `model` (NanoDet-g-416 ONNX) on the backend of `options`.
    pub fn load(model: &Path, options: &Options) -> Result<Detector, InferenceError> {
        if options.threads == 0 {
            return Err(InferenceError::Zero { setting: "threads" });
        }
        if options.max_batch == 0 {
            return Err(InferenceError::Zero {
                setting: "max_batch",
            });
        }
        // Checked before the library: a missing model is the likelier mistake.
        if !model.is_file() {
            return Err(InferenceError::ModelMissing(model.to_owned()));
        }
        let backend = match options.backend {
            BackendKind::Tract => Backend::Tract(tract::Tract::load(model, options.threads, 1)?),
            #[cfg(feature = "onnxruntime")]
            BackendKind::OnnxRuntime => Backend::OnnxRuntime(onnxruntime::OnnxRuntime::load(
                model,
                options.threads,
                options.onnxruntime_library.as_deref(),
            )?),
            #[cfg(not(feature = "onnxruntime"))]
            BackendKind::OnnxRuntime => return Err(InferenceError::NotBuiltIn),
        };
        Ok(Detector {
            backend,
            max_batch: 1,
        })
    }

    /// Side of the model's square input (416).
    pub fn input_size(&self) -> u32 {
        INPUT_SIZE
    }

    /// Most inputs one inference runs together: 1 (the model's batch is fixed, and batching
    /// was measured no faster per picture; see the crate documentation). [`Detector::run`]
    /// takes any number of inputs and runs them in groups of this size.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The runtime in use.
    pub fn backend(&self) -> BackendKind {
        match self.backend {
            Backend::Tract(_) => BackendKind::Tract,
            #[cfg(feature = "onnxruntime")]
            Backend::OnnxRuntime(_) => BackendKind::OnnxRuntime,
        }
    }

    /// Runs the network on each input tensor (`3 × 416 × 416` floats, as
    /// [`framewire_detect::preprocess`] writes them): one [`RawOutputs`] per input, in order.
    pub fn run(&mut self, inputs: &[&[f32]]) -> Result<Vec<RawOutputs>, InferenceError> {
        let expected = input_len();
        if let Some((index, input)) = inputs.iter().enumerate().find(|(_, i)| i.len() != expected) {
            return Err(InferenceError::InputLength {
                index,
                len: input.len(),
                expected,
            });
        }
        inputs
            .iter()
            .map(|input| match &mut self.backend {
                Backend::Tract(t) => t.run_one(input),
                #[cfg(feature = "onnxruntime")]
                Backend::OnnxRuntime(o) => o.run_one(input),
            })
            .collect()
    }
}

/// Floats in one input tensor.
fn input_len() -> usize {
    let side = INPUT_SIZE as usize;
    3 * side * side
}

/// Values in output `name`'s tensor of one picture (`k`: level; `per_cell`: 80 or 44).
fn output_len(k: usize, per_cell: usize) -> usize {
    let side = (INPUT_SIZE / framewire_detect::STRIDES[k]) as usize;
    side * side * per_cell
}

/// Checks one output's length, naming it when wrong.
fn check_output(name: &'static str, values: &[f32], expected: usize) -> Result<(), InferenceError> {
    if values.len() == expected {
        Ok(())
    } else {
        Err(InferenceError::OutputShape {
            name,
            len: values.len(),
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_kind_round_trips_as_its_setting() {
        for kind in [BackendKind::Tract, BackendKind::OnnxRuntime] {
            assert_eq!(kind.to_string().parse::<BackendKind>().ok(), Some(kind));
            let json = serde_json::to_string(&kind).expect("serialises");
            assert_eq!(json, format!("\"{kind}\""));
            let back: BackendKind = serde_json::from_str(&json).expect("deserialises");
            assert_eq!(back, kind);
        }
        let err = "ort".parse::<BackendKind>().expect_err("not a backend");
        assert!(err.to_string().contains("\"ort\""), "{err}");
        assert!(serde_json::from_str::<BackendKind>("\"Tract\"").is_err());
    }

    #[test]
    fn missing_model_says_run_model_sh() {
        let path = Path::new("/nonexistent/nanodet-g-416.onnx");
        let err = Detector::load(path, &Options::default()).expect_err("no such file");
        assert!(matches!(err, InferenceError::ModelMissing(_)), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("/nonexistent/nanodet-g-416.onnx"),
            "{message}"
        );
        assert!(message.contains("run scripts/model.sh"), "{message}");
    }

    #[test]
    fn zero_settings_are_refused() {
        let path = Path::new("/nonexistent/model.onnx");
        for (options, setting) in [
            (
                Options {
                    threads: 0,
                    ..Options::default()
                },
                "threads",
            ),
            (
                Options {
                    max_batch: 0,
                    ..Options::default()
                },
                "max_batch",
            ),
        ] {
            let err = Detector::load(path, &options).expect_err("zero");
            assert!(err.to_string().contains(setting), "{err}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_model_is_a_load_error_naming_it() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("fw-inference-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("garbage.onnx");
        std::fs::write(&path, b"this is not protobuf")?;
        let err = Detector::load(&path, &Options::default()).expect_err("garbage");
        std::fs::remove_dir_all(&dir)?;
        assert!(
            matches!(
                err,
                InferenceError::Load {
                    backend: BackendKind::Tract,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("garbage.onnx"), "{err}");
        Ok(())
    }

    #[cfg(not(feature = "onnxruntime"))]
    #[test]
    fn onnxruntime_without_the_feature_says_so() -> std::io::Result<()> {
        // An existing file, so that the backend check is what fails.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let options = Options {
            backend: BackendKind::OnnxRuntime,
            ..Options::default()
        };
        let err = Detector::load(&path, &options).expect_err("not built in");
        assert_eq!(
            err.to_string(),
            "onnxruntime backend not built in (cargo feature onnxruntime)"
        );
        Ok(())
    }

    #[test]
    fn detector_is_send() {
        fn is_send<T: Send>() {}
        is_send::<Detector>();
    }

    #[test]
    fn raw_outputs_view_keeps_levels_in_order() {
        let raw = RawOutputs {
            scores: [vec![0.0; 1], vec![0.0; 2], vec![0.0; 3]],
            boxes: [vec![0.0; 4], vec![0.0; 5], vec![0.0; 6]],
        };
        let view = raw.outputs();
        let lens: Vec<usize> = view
            .scores
            .iter()
            .chain(view.boxes.iter())
            .map(|s| s.len())
            .collect();
        assert_eq!(lens, [1, 2, 3, 4, 5, 6]);
    }
}

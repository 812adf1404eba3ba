//! The ONNX Runtime backend (cargo feature `onnxruntime`): `ort` 2.0.0-rc.9 with
//! `load-dynamic`, opening ONNX Runtime 1.20 at run time.
//!
//! Why at run time: `ort`'s default build downloads ONNX Runtime binaries, which an offline
//! build cannot do and which need a newer glibc than Debian 12; the PyPI wheel's
//! `libonnxruntime.so.1.20.1` runs here. `ort` keeps one library per process and panics when
//! it cannot open it, so this module checks the path first, turns a panic while opening into
//! [`InferenceError::LibraryLoad`], and refuses a second, different library.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use framewire_detect::{BINS, BOX_OUTPUTS, CLASSES, INPUT_NAME, SCORE_OUTPUTS};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;

use crate::{BackendKind, InferenceError, RawOutputs, check_output, output_len};

/// The library this process opened (or tried to), and whether that worked.
static LIBRARY: Mutex<Option<(PathBuf, Result<(), String>)>> = Mutex::new(None);

/// An ONNX Runtime session of the model.
pub(crate) struct OnnxRuntime {
    session: Session,
}

impl OnnxRuntime {
    /// Opens the library (`library`, else `ORT_DYLIB_PATH`) once per process, then creates a
    /// session of `model` with all graph optimisations and `threads` intra-op threads,
    /// sequential execution.
    pub(crate) fn load(
        model: &Path,
        threads: usize,
        library: Option<&Path>,
    ) -> Result<OnnxRuntime, InferenceError> {
        let library = library_path(library)?;
        open_library(&library)?;
        let load = |message: String| InferenceError::Load {
            backend: BackendKind::OnnxRuntime,
            path: model.to_owned(),
            message,
        };
        let session = catch_unwind(AssertUnwindSafe(|| {
            Session::builder()?
                .with_optimization_level(GraphOptimizationLevel::Level3)?
                .with_intra_threads(threads)?
                .with_inter_threads(1)?
                .with_parallel_execution(false)?
                .commit_from_file(model)
        }))
        .map_err(|panic| load(panic_message(panic)))?
        .map_err(|e| load(e.to_string()))?;
        let inputs: Vec<&str> = session.inputs.iter().map(|i| i.name.as_str()).collect();
        if inputs != [INPUT_NAME] {
            return Err(load(format!(
                "inputs are {inputs:?}, expected [{INPUT_NAME:?}]"
            )));
        }
        for wanted in SCORE_OUTPUTS.iter().chain(BOX_OUTPUTS.iter()) {
            if !session.outputs.iter().any(|o| o.name == *wanted) {
                return Err(load(format!("no output {wanted:?}")));
            }
        }
        Ok(OnnxRuntime { session })
    }

    /// Runs one picture's input tensor (length checked by the caller).
    pub(crate) fn run_one(&mut self, input: &[f32]) -> Result<RawOutputs, InferenceError> {
        let run = |message: String| InferenceError::Run {
            backend: BackendKind::OnnxRuntime,
            message,
        };
        let side = crate::INPUT_SIZE as usize;
        let tensor = Tensor::from_array(([1, 3, side, side], input.to_vec()))
            .map_err(|e| run(e.to_string()))?;
        let inputs = ort::inputs![INPUT_NAME => tensor].map_err(|e| run(e.to_string()))?;
        let values = self.session.run(inputs).map_err(|e| run(e.to_string()))?;
        let mut raw = RawOutputs::default();
        let slots = raw.scores.iter_mut().chain(raw.boxes.iter_mut());
        let names = SCORE_OUTPUTS.iter().chain(BOX_OUTPUTS.iter());
        for (i, (slot, &name)) in slots.zip(names).enumerate() {
            let value = values
                .get(name)
                .ok_or_else(|| run(format!("output {name} missing")))?;
            let (_, data) = value
                .try_extract_raw_tensor::<f32>()
                .map_err(|e| run(format!("output {name}: {e}")))?;
            let per_cell = if i < 3 { CLASSES } else { 4 * BINS };
            check_output(name, data, output_len(i % 3, per_cell))?;
            *slot = data.to_vec();
        }
        Ok(raw)
    }
}

/// The library to open: the setting, else `ORT_DYLIB_PATH`; it must be a file.
fn library_path(setting: Option<&Path>) -> Result<PathBuf, InferenceError> {
    let (path, from) = match setting {
        Some(path) => (path.to_owned(), "setting onnxruntime_library"),
        None => match std::env::var_os("ORT_DYLIB_PATH") {
            Some(path) if !path.is_empty() => (PathBuf::from(path), "ORT_DYLIB_PATH"),
            _ => return Err(InferenceError::LibraryNotSet),
        },
    };
    if !path.is_file() {
        return Err(InferenceError::LibraryMissing { path, from });
    }
    Ok(path)
}

/// Opens `library` as this process's ONNX Runtime unless that was done (or tried) already.
fn open_library(library: &Path) -> Result<(), InferenceError> {
    // A poisoned lock only means another load panicked outside `catch_unwind`; the state
    // it guards is still what was recorded.
    let mut opened = LIBRARY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if opened.is_none() {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            ort::init_from(library.display().to_string())
                .with_name("framewire")
                .commit()
        }))
        .map_err(panic_message)
        .and_then(|committed| committed.map(|_| ()).map_err(|e| e.to_string()));
        *opened = Some((library.to_owned(), outcome));
    }
    match opened.as_ref() {
        Some((loaded, _)) if loaded != library => Err(InferenceError::LibraryConflict {
            loaded: loaded.clone(),
            requested: library.to_owned(),
        }),
        Some((_, Err(message))) => Err(InferenceError::LibraryLoad {
            path: library.to_owned(),
            message: message.clone(),
        }),
        _ => Ok(()),
    }
}

/// The text of a caught panic (ort panics with a `String`).
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(panic) => match panic.downcast::<&str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "panicked".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_names_the_path_and_the_setting() {
        let path = Path::new("/nonexistent/libonnxruntime.so");
        let err = library_path(Some(path)).expect_err("missing");
        let message = err.to_string();
        assert!(
            message.contains("/nonexistent/libonnxruntime.so"),
            "{message}"
        );
        assert!(message.contains("onnxruntime_library"), "{message}");
    }

    #[test]
    fn a_file_that_is_not_a_library_fails_to_load_and_stays_the_only_one() {
        // The process's one library attempt; no other unit test opens one.
        let not_a_library = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let err = open_library(&not_a_library).expect_err("not a shared object");
        assert!(matches!(err, InferenceError::LibraryLoad { .. }), "{err:?}");
        assert!(err.to_string().contains("Cargo.toml"), "{err}");
        let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
        let err = open_library(&other).expect_err("another library");
        assert!(
            matches!(err, InferenceError::LibraryConflict { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn panic_messages_are_kept() {
        let caught = catch_unwind(AssertUnwindSafe(|| -> () {
            std::panic::panic_any(String::from("boom"))
        }))
        .expect_err("panics");
        assert_eq!(panic_message(caught), "boom");
    }
}

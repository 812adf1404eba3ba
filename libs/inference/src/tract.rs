//! The default backend: `tract-onnx`, pure Rust.
//!
//! The model is loaded with its input fixed to `[batch, 3, 416, 416]`, optimised once
//! (`into_optimized`: constant folding, fused convolutions, the best matrix kernels of this
//! CPU) and kept with one reusable run state, so a run allocates only its outputs.

use std::path::Path;

use framewire_detect::{BOX_OUTPUTS, INPUT_NAME, SCORE_OUTPUTS};
use tract_onnx::prelude::*;

use crate::{BackendKind, InferenceError, RawOutputs, check_output, output_len};

/// tract's optimised plan of the model and a run state for it.
pub(crate) struct Tract {
    state: TypedSimpleState,
    /// Output positions of `SCORE_OUTPUTS` then `BOX_OUTPUTS`.
    outputs: [usize; 6],
}

/// The model's optimised plan with its input fixed to `[batch, 3, 416, 416]`, and the
/// positions of the six outputs (score outputs, then box outputs). With `threads > 1`
/// the plan runs its matrix products on a pool of that many threads.
pub(crate) fn plan(
    model: &Path,
    threads: usize,
    batch: usize,
) -> Result<(Arc<TypedRunnableModel>, [usize; 6]), InferenceError> {
    let load = |message: String| InferenceError::Load {
        backend: BackendKind::Tract,
        path: model.to_owned(),
        message,
    };
    let side = crate::INPUT_SIZE as usize;
    let mut graph = tract_onnx::onnx()
        .model_for_path(model)
        .map_err(|e| load(format!("{e:#}")))?;
    let input_names: Vec<&str> = graph
        .input_outlets()
        .map_err(|e| load(format!("{e:#}")))?
        .iter()
        .map(|o| graph.node(o.node).name.as_str())
        .collect();
    if input_names != [INPUT_NAME] {
        return Err(load(format!(
            "inputs are {input_names:?}, expected [{INPUT_NAME:?}]"
        )));
    }
    graph
        .set_input_fact(0, f32::fact([batch, 3, side, side]).into())
        .map_err(|e| load(format!("{e:#}")))?;
    // Output names are the ONNX tensor names (outlet labels) before optimisation renames
    // nodes; the outputs keep their order through it.
    let names: Vec<String> = graph
        .output_outlets()
        .map_err(|e| load(format!("{e:#}")))?
        .iter()
        .map(|&o| {
            graph
                .outlet_label(o)
                .unwrap_or(&graph.node(o.node).name)
                .to_owned()
        })
        .collect();
    let typed = graph.into_optimized().map_err(|e| load(format!("{e:#}")))?;
    let mut outputs = [0; 6];
    for (slot, wanted) in outputs
        .iter_mut()
        .zip(SCORE_OUTPUTS.iter().chain(BOX_OUTPUTS.iter()))
    {
        *slot = names
            .iter()
            .position(|n| n == wanted)
            .ok_or_else(|| load(format!("no output {wanted:?} among {names:?}")))?;
    }
    let options = RunOptions {
        executor: (threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads)),
        ..RunOptions::default()
    };
    let plan = typed
        .into_runnable_with_options(&options)
        .map_err(|e| load(format!("{e:#}")))?;
    Ok((plan, outputs))
}

impl Tract {
    /// Loads and optimises `model` for batches of `batch` on `threads` threads.
    pub(crate) fn load(
        model: &Path,
        threads: usize,
        batch: usize,
    ) -> Result<Tract, InferenceError> {
        let (plan, outputs) = plan(model, threads, batch)?;
        let state = plan.spawn().map_err(|e| InferenceError::Load {
            backend: BackendKind::Tract,
            path: model.to_owned(),
            message: format!("{e:#}"),
        })?;
        Ok(Tract { state, outputs })
    }

    /// Runs one picture's input tensor (length checked by the caller).
    pub(crate) fn run_one(&mut self, input: &[f32]) -> Result<RawOutputs, InferenceError> {
        let run = |message: String| InferenceError::Run {
            backend: BackendKind::Tract,
            message,
        };
        let side = crate::INPUT_SIZE as usize;
        let tensor =
            Tensor::from_shape(&[1, 3, side, side], input).map_err(|e| run(format!("{e:#}")))?;
        let values = self
            .state
            .run(tvec!(tensor.into_tvalue()))
            .map_err(|e| run(format!("{e:#}")))?;
        let mut raw = RawOutputs::default();
        let slots = raw.scores.iter_mut().chain(raw.boxes.iter_mut());
        let names = SCORE_OUTPUTS.iter().chain(BOX_OUTPUTS.iter());
        for (i, (slot, name)) in slots.zip(names).enumerate() {
            let value = values
                .get(self.outputs[i])
                .ok_or_else(|| run(format!("output {name} missing")))?;
            let data = value
                .try_as_plain_ram()
                .and_then(|plain| plain.as_slice::<f32>())
                .map_err(|e| run(format!("output {name}: {e:#}")))?;
            let per_cell = if i < 3 {
                framewire_detect::CLASSES
            } else {
                4 * framewire_detect::BINS
            };
            check_output(name, data, output_len(i % 3, per_cell))?;
            *slot = data.to_vec();
        }
        Ok(raw)
    }
}

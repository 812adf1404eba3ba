#!/usr/bin/env python3
"""The Python onnxruntime baseline of the detection benchmark (scripts/bench/run.sh,
BENCH_ONLY=detect): the model venv's onnxruntime (1.20.1 wheel) on the same model and the
same input tensor as libs/inference's bench-detect, one intra-op thread, one inter-op thread,
sequential execution, all graph optimisations (onnxruntime's defaults otherwise).

Median wall ms per picture, CPU ms per picture (time.process_time: every thread), and with
--batch N the same network with a batch of N (a copy of the model with its input and the
batch-1 reshapes made N, in memory; the shipped model has a fixed batch of 1) per picture.

    VENV/bin/python scripts/bench/detect_ort.py MODEL_DIR [--runs 30] [--batch N] [--json OUT]
"""
import argparse
import json
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

INPUT = "input_1:0"


def session(model_bytes):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def measure(run, runs):
    """Median wall ms of `runs` calls and CPU ms per call."""
    walls = []
    cpu = time.process_time()
    for _ in range(runs):
        t = time.perf_counter()
        run()
        walls.append((time.perf_counter() - t) * 1e3)
    return statistics.median(walls), (time.process_time() - cpu) * 1e3 / runs


def batched(path, n):
    """The model with a batch of n: input dim 0 and the [1, C, -1] reshape shapes set to n."""
    model = onnx.load(path)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = n
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Reshape" and node.input[1] in inits:
            shape = numpy_helper.to_array(inits[node.input[1]]).copy()
            if shape[0] == 1:
                shape[0] = n
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
    for output in model.graph.output:
        output.type.tensor_type.shape.dim[0].dim_value = n
    return model.SerializeToString()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--json")
    a = p.parse_args()
    path = f"{a.model_dir}/nanodet-g-416.onnx"
    x = np.fromfile(f"{a.model_dir}/astronaut.input.f32", dtype="<f4").reshape(1, 3, 416, 416)

    started = time.perf_counter()
    with open(path, "rb") as f:
        s = session(f.read())
    load_ms = (time.perf_counter() - started) * 1e3
    for _ in range(3):
        s.run(None, {INPUT: x})
    infer_ms, cpu_ms = measure(lambda: s.run(None, {INPUT: x}), a.runs)

    batch = None
    if a.batch > 1:
        n = a.batch
        sb = session(batched(path, n))
        xb = np.ascontiguousarray(np.repeat(x, n, axis=0))
        # The batched copy is only right if picture 0's outputs are the single run's.
        single = s.run(None, {INPUT: x})
        many = sb.run(None, {INPUT: xb})
        same = all(np.allclose(m[0], o[0], atol=1e-4) for m, o in zip(many, single))
        ms, _ = measure(lambda: sb.run(None, {INPUT: xb}), max(5, -(-a.runs // n)))
        batch = {"n": n, "single_ms": infer_ms, "batch_ms_per_picture": ms / n, "outputs_match": same}

    label = "python onnxruntime (1 thread)"
    print(f"| {label} | {infer_ms:.1f} | {cpu_ms:.1f} | {1000 / cpu_ms:.1f} | — | — | load {load_ms:.0f} ms |")
    if batch:
        print(f"| onnxruntime batch {batch['n']} vs 1, ms per picture | {batch['batch_ms_per_picture']:.1f} vs {infer_ms:.1f} "
              f"({batch['batch_ms_per_picture'] / infer_ms:.2f}×; outputs match: {batch['outputs_match']}) |")
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps({
                "label": label, "backend": "python-onnxruntime", "threads": 1, "runs": a.runs,
                "onnxruntime": ort.__version__, "load_ms": load_ms, "infer_ms": infer_ms,
                "infer_cpu_ms": cpu_ms, "pictures_per_s_per_core": 1000 / cpu_ms, "batch": batch,
            }) + "\n")


if __name__ == "__main__":
    main()

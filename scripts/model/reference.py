"""Make the detector's test fixture and its onnxruntime reference (run by scripts/model.sh).

Why this exists: libs/inference's model test must check the whole Rust path — YUV picture,
preprocessing (libs/detect), inference (tract), decoding (libs/detect) — against something
that shares none of its code. This script is that independent path, in numpy + scikit-image +
onnxruntime, from the same YUV file:

1. the fixture: scikit-image's astronaut photo cropped to 511x383 (odd sizes, and not square,
   so the letterbox pads top and bottom), converted to limited-range BT.601 YUV 4:2:0 (chroma
   averaged over 2x2 blocks) and written as planar I420 without padding;
2. preprocessing, written separately from the Rust one: chroma upsampled x2 (bilinear, edge
   samples repeated), BT.601 limited-range YUV to RGB in floating point, letterbox resize with
   `skimage.transform.resize(order=1, anti_aliasing=False)` (what the model evaluation used),
   BGR, mean/std normalisation, NCHW;
3. onnxruntime 1 thread on that tensor, NanoDet decoding and per-class NMS in numpy.

Written to OUT_DIR: the YUV file, the input tensor and the six raw outputs (little-endian
f32), and astronaut.reference.json describing them with the expected detections.

    python reference.py MODEL.onnx LABELS.txt OUT_DIR
"""

import json
import os
import sys

import numpy as np
import onnxruntime as ort
import skimage.data
import skimage.transform

SIZE = 416
STRIDES = (8, 16, 32)
BINS = 11
MEAN_BGR = np.array([103.53, 116.28, 123.675])
STD_BGR = np.array([57.375, 57.12, 58.395])
CLASS_OUTPUTS = ["Identity:0", "Identity_1:0", "Identity_2:0"]
BOX_OUTPUTS = ["Identity_3:0", "Identity_4:0", "Identity_5:0"]
SCORE_THRESHOLD = 0.35
IOU_THRESHOLD = 0.5
WIDTH, HEIGHT = 511, 383


def rgb_to_yuv420(rgb):
    """Limited-range BT.601 planes (Y, U, V) of an RGB uint8 image; chroma is the rounded
    mean of each 2x2 block (edge samples repeated for odd sizes)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape

    def subsample(p):
        p = np.pad(p, ((0, h % 2), (0, w % 2)), mode="edge")
        return (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) / 4

    to_u8 = lambda p: np.clip(np.round(p), 0, 255).astype(np.uint8)
    return to_u8(y), to_u8(subsample(u)), to_u8(subsample(v))


def yuv420_to_rgb(y, u, v):
    """Float RGB (0-255) of limited-range BT.601 planes; chroma upsampled x2 bilinearly
    (sample centres between luma pairs, edges repeated)."""
    h, w = y.shape
    up = lambda p: skimage.transform.resize(
        p.astype(np.float64), (2 * p.shape[0], 2 * p.shape[1]), order=1, mode="edge",
        anti_aliasing=False, preserve_range=True)[:h, :w] - 128
    luma = (y.astype(np.float64) - 16) * 255 / 219
    cb, cr = up(u), up(v)
    r = luma + 1.596027 * cr
    g = luma - 0.391762 * cb - 0.812968 * cr
    b = luma + 2.017232 * cb
    return np.clip(np.stack([r, g, b], -1), 0, 255)


def letterbox(rgb):
    """The model's input tensor and the placement (scale_x, scale_y, pad_x, pad_y)."""
    h, w = rgb.shape[:2]
    r = min(SIZE / h, SIZE / w)
    nh, nw = int(round(h * r)), int(round(w * r))
    resized = skimage.transform.resize(rgb, (nh, nw), order=1, mode="edge",
                                       anti_aliasing=False, preserve_range=True)
    canvas = np.zeros((SIZE, SIZE, 3))
    py, px = (SIZE - nh) // 2, (SIZE - nw) // 2
    canvas[py:py + nh, px:px + nw] = resized
    x = (canvas[..., ::-1] - MEAN_BGR) / STD_BGR
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32), (nw / w, nh / h, px, py)


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def decode(outputs, placement, w, h):
    """Detections (class, score, box normalised to the picture), best first."""
    sx, sy, px, py = placement
    candidates = []
    for k, stride in enumerate(STRIDES):
        scores = outputs[CLASS_OUTPUTS[k]][0]
        dist = outputs[BOX_OUTPUTS[k]][0].reshape(-1, 4, BINS).astype(np.float64)
        dist = np.exp(dist - dist.max(-1, keepdims=True))
        dist = (dist / dist.sum(-1, keepdims=True) * np.arange(BINS)).sum(-1) * stride
        cells = SIZE // stride
        for i in np.nonzero(scores.max(1) > SCORE_THRESHOLD)[0]:
            cy, cx = (i // cells + 0.5) * stride, (i % cells + 0.5) * stride
            l, t, r, b = dist[i]
            box = [((cx - l) - px) / sx / w, ((cy - t) - py) / sy / h,
                   ((cx + r) - px) / sx / w, ((cy + b) - py) / sy / h]
            box = [float(np.clip(c, 0, 1)) for c in box]
            candidates.append((int(scores[i].argmax()), float(scores[i].max()), box))
    candidates.sort(key=lambda d: -d[1])
    kept = []
    for c in candidates:
        if all(k[0] != c[0] or iou(k[2], c[2]) <= IOU_THRESHOLD for k in kept):
            kept.append(c)
    return kept


def main():
    model, labels_path, out_dir = sys.argv[1:4]
    with open(labels_path) as f:
        labels = [line.strip() for line in f if line.strip()]
    rgb = skimage.data.astronaut()[:HEIGHT, :WIDTH]
    y, u, v = rgb_to_yuv420(rgb)
    yuv_file = f"astronaut-{WIDTH}x{HEIGHT}.yuv"
    with open(os.path.join(out_dir, yuv_file), "wb") as f:
        for plane in (y, u, v):
            f.write(plane.tobytes())

    x, placement = letterbox(yuv420_to_rgb(y, u, v))
    x.astype("<f4").tofile(os.path.join(out_dir, "astronaut.input.f32"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"input_1:0": x})))
    files = []
    for i, name in enumerate(names):
        file = f"astronaut.output{i}.f32"
        outputs[name].astype("<f4").tofile(os.path.join(out_dir, file))
        files.append({"name": name, "shape": list(outputs[name].shape), "file": file})

    detections = [
        {"class": c, "label": labels[c], "score": s, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3]}
        for c, s, b in decode(outputs, placement, WIDTH, HEIGHT)
    ]
    reference = {
        "about": "made by scripts/model/reference.py; onnxruntime on an independent preprocessing",
        "onnxruntime": ort.__version__,
        "picture": {"file": yuv_file, "format": "yuv420p", "width": WIDTH, "height": HEIGHT},
        "input": {"name": "input_1:0", "shape": list(x.shape), "file": "astronaut.input.f32"},
        "outputs": files,
        "score_threshold": SCORE_THRESHOLD,
        "iou_threshold": IOU_THRESHOLD,
        "detections": detections,
    }
    with open(os.path.join(out_dir, "astronaut.reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
    for d in detections:
        print(f"  {d['label']} {d['score']:.3f} [{d['x0']:.3f} {d['y0']:.3f} {d['x1']:.3f} {d['y1']:.3f}]",
              file=sys.stderr)


if __name__ == "__main__":
    main()

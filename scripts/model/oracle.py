"""The detection oracle: a test clip of real photographs, and what onnxruntime finds in it.

Framewire's end-to-end detection test streams a clip through the RTSP test server, ingest
and the worker, and compares the worker's detections picture by picture with the model's
own runtime on the same decoded pictures. This script makes both sides of that comparison,
sharing no code with the Rust path:

    python oracle.py clip OUT.mp4
        Seven photographs that scikit-image ships (astronaut: a person; chelsea: a cat;
        coffee: a cup; motorcycle_left: a motorbike; rocket; camera: a person with a
        camera; grass: nothing), each pillarboxed into 640x360 and shown for 1 s at 10 fps
        with a slow pan (2 px per frame, so the P-frames carry real motion), encoded by
        ffmpeg's libx264 (main profile, no B-frames, a keyframe per photograph).

    python oracle.py reference MODEL.onnx LABELS.txt CLIP.mp4 OUT.json
        ffmpeg decodes the clip to yuv420p (H.264 decoding is bit-exact, so these are the
        pictures the worker's openh264 decodes), then per picture: reference.py's
        preprocessing (skimage resize), onnxruntime with one thread, NanoDet decoding and
        per-class NMS. OUT.json: {"frames": [{"index", "photo", "detections": [...]}]}.
"""

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import skimage.data
import skimage.transform

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402  (the independent preprocessing and decoding)

WIDTH, HEIGHT, FPS = 640, 360, 10
FRAMES_PER_PHOTO = 10
PAN_PX = 2
PHOTOS = ["astronaut", "chelsea", "coffee", "motorcycle_left", "rocket", "camera", "grass"]


def photo_rgb(name):
    if name == "motorcycle_left":
        img = skimage.data.stereo_motorcycle()[0]
    else:
        img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return img[..., :3]


def frame_of(img, shift):
    """The photo scaled to fit 360 rows (plus room to pan), pillarboxed black into 640x360."""
    h, w = img.shape[:2]
    scale = HEIGHT / h
    nw = min(WIDTH, int(round(w * scale)))
    resized = skimage.transform.resize(img, (HEIGHT, nw), order=1, anti_aliasing=True,
                                       preserve_range=True)
    canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    x = max(0, (WIDTH - nw) // 2 - (FRAMES_PER_PHOTO * PAN_PX) // 2 + shift)
    x = min(x, WIDTH - nw)
    canvas[:, x:x + nw] = np.clip(np.round(resized), 0, 255).astype(np.uint8)
    return canvas


def make_clip(out):
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS),
           "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main",
           "-bf", "0", "-g", str(FRAMES_PER_PHOTO), "-keyint_min", str(FRAMES_PER_PHOTO),
           "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-movflags", "+faststart", out]
    enc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for name in PHOTOS:
        img = photo_rgb(name)
        for i in range(FRAMES_PER_PHOTO):
            enc.stdin.write(frame_of(img, i * PAN_PX).tobytes())
    enc.stdin.close()
    if enc.wait() != 0:
        sys.exit(f"ffmpeg failed to encode {out}")


def make_reference(model, labels_path, clip, out):
    with open(labels_path) as f:
        labels = [line.strip() for line in f if line.strip()]
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", clip,
                          "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                         check=True, capture_output=True).stdout
    ysize, csize = WIDTH * HEIGHT, (WIDTH // 2) * (HEIGHT // 2)
    step = ysize + 2 * csize
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    frames = []
    for index in range(len(raw) // step):
        buf = np.frombuffer(raw, np.uint8, step, index * step)
        y = buf[:ysize].reshape(HEIGHT, WIDTH)
        u = buf[ysize:ysize + csize].reshape(HEIGHT // 2, WIDTH // 2)
        v = buf[ysize + csize:].reshape(HEIGHT // 2, WIDTH // 2)
        x, placement = reference.letterbox(reference.yuv420_to_rgb(y, u, v))
        outputs = dict(zip(names, session.run(None, {"input_1:0": x})))
        detections = [
            {"class": c, "label": labels[c], "score": s,
             "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3]}
            for c, s, b in reference.decode(outputs, placement, WIDTH, HEIGHT)
        ]
        frames.append({"index": index, "photo": PHOTOS[index // FRAMES_PER_PHOTO],
                       "detections": detections})
    with open(out, "w") as f:
        json.dump({"about": "scripts/model/oracle.py: onnxruntime on ffmpeg-decoded pictures",
                   "onnxruntime": ort.__version__, "width": WIDTH, "height": HEIGHT,
                   "fps": FPS, "frames": frames}, f, indent=1)
    found = {}
    for fr in frames:
        for d in fr["detections"]:
            found.setdefault(fr["photo"], set()).add(d["label"])
    for photo in PHOTOS:
        print(f"  {photo}: {', '.join(sorted(found.get(photo, []))) or '-'}", file=sys.stderr)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "clip":
        make_clip(sys.argv[2])
    elif len(sys.argv) == 6 and sys.argv[1] == "reference":
        make_reference(*sys.argv[2:6])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Prints the criterion results of libs/framestats/benches/kernels.rs as Markdown tables:
per picture size, each kernel's time in its three variants (tuned = as shipped, with runtime
AVX2 dispatch; baseline = the same code capped to the x86-64 baseline; before = the original
kernels) and as a ratio to a memcpy of the same luma plane.

    scripts/bench/kernel_table.py [CRITERION_DIR] [--decode-json bench-decode.json]

CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion (else target/criterion). Times are the
median of criterion's samples; "best" would hide noise from other processes, the median shows
it. With --decode-json (written by bench-decode), the `all` row also gets its share of the
openh264 decode time per picture of the same size, measured in the same `make bench` run.
"""
import json
import os
import sys

KERNELS = [
    ("histogram", "luma histogram (→ min, max, percentiles, mean, std, 16 bins)"),
    ("chroma_sat", "chroma means + saturation"),
    ("y_dif", "y_dif (SAD vs previous luma)"),
    ("laplacian", "sharpness (3x3 Laplacian variance)"),
    ("frame_stats", "frame_stats (all of the above)"),
    ("detectors", "detectors (black, freeze: SAD Y/U/V + reference copy, scdet)"),
    ("all", "**all: frame_stats + detectors**"),
    ("analyzer", "**Analyzer: the same in one pass (+ the copy kept for y_dif)**"),
]
VARIANTS = ["tuned", "baseline", "before"]


def median_ns(path):
    try:
        with open(os.path.join(path, "new", "estimates.json")) as f:
            return json.load(f)["median"]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return None


def main():
    args = sys.argv[1:]
    decode = {}
    if "--decode-json" in args:
        i = args.index("--decode-json")
        try:
            with open(args[i + 1]) as f:
                for clip in json.load(f):
                    # openh264 on the H.264 clips (the default build); the fastest-decoding
                    # clip of a height is the strictest reference.
                    if clip.get("codec", "h264") != "h264" or clip.get("decode_ms") is None:
                        continue
                    h = clip["height"]
                    decode[h] = min(decode.get(h, 1e9), clip["decode_ms"])
        except (OSError, ValueError, IndexError) as e:
            print(f"(no decode times: {e})")
        del args[i:i + 2]
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    root = args[0] if args else os.path.join(target, "criterion")
    for size, height in (("720p", 720), ("1080p", 1080)):
        base = os.path.join(root, size)
        memcpy = median_ns(os.path.join(base, "memcpy_y"))
        if memcpy is None:
            continue
        print(f"\n### Kernels on a {size} picture (criterion median; memcpy of the luma plane = {memcpy / 1000:.0f} µs)\n")
        print("| kernel | tuned µs | × memcpy | baseline µs | × memcpy | before µs | × memcpy | before / tuned |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for kernel, label in KERNELS:
            cells = []
            times = {}
            for v in VARIANTS:
                t = median_ns(os.path.join(base, kernel, v))
                times[v] = t
                cells += ["—", "—"] if t is None else [f"{t / 1000:.0f}", f"{t / memcpy:.1f}"]
            speedup = (
                f"{times['before'] / times['tuned']:.1f}×"
                if times.get("before") and times.get("tuned")
                else "—"
            )
            print(f"| {label} | " + " | ".join(cells) + f" | {speedup} |")
        for kernel in ("all", "analyzer"):
            t = median_ns(os.path.join(base, kernel, "tuned"))
            if height in decode and t:
                b = median_ns(os.path.join(base, kernel, "baseline"))
                print(
                    f"\n{kernel} (tuned) = {t / 1e6:.3f} ms = **{100 * t / 1e6 / decode[height]:.1f} %** of the"
                    f" {decode[height]:.2f} ms openh264 needs per {size} picture"
                    + (f" (capped to the baseline ISA: {100 * b / 1e6 / decode[height]:.1f} %)" if b else "")
                )


if __name__ == "__main__":
    main()

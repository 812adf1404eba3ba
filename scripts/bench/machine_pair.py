#!/usr/bin/env python3
"""What this machine's two cores give two independent decoders, with no Kafka in the way.

The worker's 2-core scaling run (`bench-worker --threads 2`) shares the cores with the broker
and the benchmark's reader; this is the ceiling it is compared with in the same `make bench`
run: `ffmpeg -threads 1` decoding a clip alone on one core, then two copies at once, one
pinned on each core, in interleaved rounds. A round's ratio is the pair's summed frames per
second over the lone copy's; 2.0x would mean the second core adds a whole core.

    scripts/bench/machine_pair.py --clip FILE.h264 (its .mp4 and .json beside it) [--rounds 3] [--alone-cpu 1] [--json OUT]

Prints a Markdown table; with --json appends one JSON line per round for summary.py (which
takes the median over every round in the file, so that `scripts/bench/run.sh` can interleave
single rounds with the worker's).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Enough loops of a 20 s clip that a decode takes seconds, not milliseconds.
LOOPS = 3


def start(clip: Path, cpu: int) -> tuple[subprocess.Popen, float]:
    cmd = ["taskset", "-c", str(cpu), "ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
           "-threads", "1", "-stream_loop", str(LOOPS - 1), "-i", str(clip),
           "-an", "-f", "null", "-"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), time.monotonic()


def finish(proc: subprocess.Popen, started: float, frames: int) -> float:
    """Frames per wall second of one decode (it has its core to itself)."""
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"machine_pair: ffmpeg failed: {err.decode(errors='replace').strip()}")
    return frames / (time.monotonic() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--alone-cpu", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("machine_pair: needs two cores")
    facts = json.loads(a.clip.with_suffix(".json").read_text())
    frames = int(facts["frames"]) * LOOPS
    # The MP4 beside the Annex B file: ffmpeg loops a container, not a raw stream.
    clip = a.clip.with_suffix(".mp4")

    print(f"| round | alone on CPU {a.alone_cpu} fps | pair: CPU 0 fps | CPU 1 fps | pair ÷ alone |")
    print("|---|---:|---:|---:|---:|")
    rounds = []
    for n in range(1, a.rounds + 1):
        alone = finish(*start(clip, a.alone_cpu), frames)
        pair = [start(clip, 0), start(clip, 1)]
        # Each copy's own end time: waited on side by side, not one after the other.
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda pt: finish(*pt, frames), pair))
        ratio = sum(both) / alone
        rounds.append({"alone_fps": alone, "pair_fps": both, "ratio": ratio})
        print(f"| {n} | {alone:.0f} | {both[0]:.0f} | {both[1]:.0f} | {ratio:.2f}× |")
    median = statistics.median(r["ratio"] for r in rounds)
    print(f"\nmedian: two independent decoders give {median:.2f}× one on this machine")
    if a.json:
        with a.json.open("a") as f:
            for r in rounds:
                f.write(json.dumps({"clip": str(a.clip), **r}) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The worker benchmarks of one `make bench` run side by side, as ratios, against the targets
of issue 4, object detection against those of issue 12, and the loadgen-driven fleet and
sink runs and the sizing model against those of issue 14. Reads what the bench binaries wrote into DIR
($CARGO_TARGET_DIR/bench): decode.json (bench-decode), worker.jsonl (bench-worker),
machine.jsonl (machine_pair.py), latency.json (bench-latency), detect.jsonl (bench-detect
and detect_ort.py) with decode-720p.json (bench-decode on one 720p clip, when the decode
part did not run), fleet.jsonl (bench-worker --loadgen), sizing.jsonl (bench-sizing), sink.jsonl (bench-sink).

    scripts/bench/summary.py DIR
"""
import json
import os
import sys


def load(path, lines=False):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()] if lines else json.load(f)
    except (OSError, ValueError):
        return None


def verdict(ok):
    return "**met**" if ok else "**missed**"


def clip_key(path):
    """A clip's name without directory and extension (.h264 / .h265): the worker runs' labels."""
    return os.path.splitext(os.path.basename(path))[0]


def decode_tables(decode, worker_run, targets):
    """bench-decode's clips and backends beside the worker's whole path on the same clip and
    backend, as ratios to `ffmpeg -threads 1` (bare, and with the statistics filters), with the
    targets of issue 14 and, for each, the ceiling the same run measured."""
    print("\n## Decode, statistics and the worker's whole path on one core, per backend (frames/s)\n")
    print("| clip | backend | ffmpeg -threads 1 | ffmpeg -threads 1 + filters | bare decode | decode + statistics, in process | "
          "worker whole path | worker ÷ ffmpeg | worker ÷ ffmpeg + filters | worker ÷ bare decode |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in decode:
        ff, fl = c["ffmpeg_fps"], c["ffmpeg_filters_fps"]
        for b in c["backends"]:
            name = b["backend"]
            w = worker_run(f"all {name}", c["clip"])
            wr = w["records_per_s"] if w else None
            cells = (f"{wr:.0f} | {wr / ff:.2f}× | {wr / fl:.2f}× | {wr / b['bare_fps']:.2f}×" if w else "— | — | — | —")
            print(f"| {c['label']} | {name} | {ff:.0f} | {fl:.0f} | {b['bare_fps']:.0f} ({b['bare_fps'] / ff:.2f}×) "
                  f"| {b['stats_fps']:.0f} ({b['stats_fps'] / ff:.2f}×) | {cells} |")
            if not w:
                continue
            # The ceiling of the whole path: decoding and measuring in one loop, no Kafka.
            ceil_ff, ceil_fl = b["stats_fps"] / ff, b["stats_fps"] / fl
            if name == "ffmpeg":
                targets.append((f"worker, ffmpeg backend ≥ 0.75× ffmpeg -threads 1 ({c['label']})",
                                f"{wr / ff:.2f}× (decode + statistics without Kafka: {ceil_ff:.2f}×)", wr / ff >= 0.75))
                targets.append((f"worker, ffmpeg backend ≥ 2.5× ffmpeg + filters ({c['label']})",
                                f"{wr / fl:.2f}× (without Kafka: {ceil_fl:.2f}×)", wr / fl >= 2.5))
            else:
                targets.append((f"worker, openh264 backend ≥ 1.5× ffmpeg + filters ({c['label']})",
                                f"{wr / fl:.2f}× (without Kafka: {ceil_fl:.2f}×)", wr / fl >= 1.5))
    print(f"\nffmpeg + filters = `ffmpeg -threads 1 -i CLIP -vf {decode[0].get('ffmpeg_filters', 'signalstats,blackdetect,freezedetect,scdet')} -f null -`, "
          "which computes the statistics the worker computes. Decode rates are frames per CPU-second (best of the runs); "
          "the worker's are records per second of its own clock, everything on one pinned core (best of the rounds).")

    print("\n## Statistics cost per picture (medians, measured in place on the decoded pictures)\n")
    print("| clip | backend | decode ms/frame | statistics ms | % of decode | ÷ memcpy of the picture | added to the pass, % of decode |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for c in decode:
        for b in c["backends"]:
            dm = b["decode_ms"]
            print(f"| {c['label']} | {b['backend']} | {dm:.2f} | {b['stats_ms']:.3f} | {100 * b['stats_ms'] / dm:.1f} % "
                  f"| {b['stats_ms'] / b['memcpy_ms']:.1f}× | {100 * b['added_ms'] / dm:.1f} % |")

    print("\n## Keyframes only (each keyframe decoded and flushed on its own), frames covered per second per core\n")
    print("| clip | backend | keyframe ms (I) | other frames ms (P) | ceiling ((g − 1)·P + I) ÷ I | keyframes only: covered/s | × full decode | share of the ceiling | + statistics: covered/s | worker keyframes mode: covered/s | × worker full |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in decode:
        for b in c["backends"]:
            ratio = b["keyframes_covered_fps"] / b["bare_fps"]
            share = ratio / b["keyframes_ceiling"]
            k, a = worker_run(f"keyframes {b['backend']}", c["clip"]), worker_run(f"all {b['backend']}", c["clip"])
            wk = f"{k['covered_fps']:.0f}" if k else "—"
            wr = f"{k['covered_fps'] / a['records_per_s']:.1f}×" if k and a else "—"
            print(f"| {c['label']} | {b['backend']} | {b['keyframe_decode_ms']:.2f} | {b['other_decode_ms']:.2f} | {b['keyframes_ceiling']:.1f}× "
                  f"| {b['keyframes_covered_fps']:.0f} | {ratio:.1f}× | {share:.2f} | {b['keyframes_stats_covered_fps']:.0f} | {wk} | {wr} |")
            targets.append((f"keyframes only ≥ 0.9× the ceiling ({c['label']}, {b['backend']})",
                            f"{ratio:.1f}× of {b['keyframes_ceiling']:.1f}× = {share:.2f}", share >= 0.9))


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "bench")
    decode = load(os.path.join(d, "decode.json")) or []
    worker = load(os.path.join(d, "worker.jsonl"), lines=True) or []
    latency = load(os.path.join(d, "latency.json"))
    # Runs repeated under one label (best of N, as bench-decode does): the fastest.
    runs = {}
    for w in worker:
        best = runs.get(w["label"])
        if best is None or w["records_per_s"] > best["records_per_s"]:
            runs[w["label"]] = w

    def worker_run(prefix, clip):
        return runs.get(f"{prefix} {clip_key(clip)}")

    targets = []
    if decode:
        decode_tables(decode, worker_run, targets)

    # Rounds of (1 thread, 2 threads), interleaved: the ratio of the medians.
    s1 = [w for w in worker if w["label"] == "scaling 1"]
    s2 = [w for w in worker if w["label"] == "scaling 2"]
    if s1 and s2:
        def median(xs):
            xs = sorted(xs)
            return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2

        def rates(runs):
            return ", ".join(f"{w['records_per_s']:.0f}" for w in runs)

        def busy(runs):
            return ", ".join(f"{w.get('decoder_busy_pct', 0):.0f} %" for w in runs)

        m1 = median([w["records_per_s"] for w in s1])
        m2 = median([w["records_per_s"] for w in s2])
        r = m2 / m1
        print("\n## Scaling: 4 cameras (720p Main), frames/s per round\n")
        print("| decoder threads | CPUs | rounds | median | decoder threads busy |\n|---|---|---|---:|---|")
        print(f"| 1 | {s1[0]['cpus']} | {rates(s1)} | {m1:.0f} | {busy(s1)} |")
        print(f"| 2 | {s2[0]['cpus']} | {rates(s2)} | {m2:.0f} ({r:.2f}×) | {busy(s2)} |")
        machine = load(os.path.join(d, "machine.jsonl"), lines=True) or []
        limit = ""
        if machine:
            mr = median([m["ratio"] for m in machine])
            rounds = ", ".join(f"{m['ratio']:.2f}×" for m in machine)
            print(f"| machine ceiling: ffmpeg -threads 1, two copies vs one, no Kafka | 0,1 | {rounds} | {mr:.2f}× | — |")
            limit = f", machine {mr:.2f}×"
        targets.append(("2 cores ≥ 1.8× one (4 cameras, medians)", f"{r:.2f}×{limit}", r >= 1.8))
    if latency:
        ok = latency["p99_ms"] <= 100
        print(f"\n## Latency capture → stats record: p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms, max {latency['max_ms']} ms ({latency['records']} records)")
        targets.append(("end-to-end latency p99 ≤ 100 ms (720p 25 fps)", f"p99 {latency['p99_ms']} ms (p50 {latency['p50_ms']} ms)", ok))
    detection(d, decode, targets)
    fleet(d, runs)
    sizing(d, runs, targets)
    sink(d, targets)
    if targets:
        print("\n## Targets\n\n| target | measured | |\n|---|---|---|")
        for name, value, ok in targets:
            print(f"| {name} | {value} | {verdict(ok)} |")


def detection(d, decode, targets):
    """Object detection, one thread on one core: each backend's best round side by side,
    as ratios to Python onnxruntime, and cameras per core at one detection per second."""
    runs = load(os.path.join(d, "detect.jsonl"), lines=True) or []
    if not runs:
        return
    best = {}
    for r in runs:
        if r["label"] not in best or r["infer_cpu_ms"] < best[r["label"]]["infer_cpu_ms"]:
            best[r["label"]] = r
    python = next((r for r in best.values() if r["backend"] == "python-onnxruntime"), None)
    rust = [r for r in best.values() if r["backend"] != "python-onnxruntime"]
    # The 720p decode cost: this run's decode part, else bench-decode on the 720p Main clip.
    clips = decode or load(os.path.join(d, "decode-720p.json")) or []
    c720 = sorted((c for c in clips if c["height"] == 720 and c.get("codec", "h264") == "h264"),
                  key=lambda c: c.get("profile", "").lower() != "main")
    decode_ms = c720[0]["decode_ms"] if c720 else None
    pre = min((r["preprocess_720p_ms"] for r in rust), default=None)
    # In the same thread right after tract's kernels the same preprocessing runs slower.
    pre_after = {r["label"]: r.get("preprocess_720p_after_inference_ms") for r in rust}
    post = min((r["decode_outputs_ms"] for r in rust), default=None)

    def cameras(r):
        if decode_ms is None or pre is None:
            return None
        return 1000 / (25 * decode_ms + pre + r["infer_cpu_ms"] + post)

    print("\n## Object detection: NanoDet-g-416, one thread on one core, same model and input tensor\n")
    print("| backend | inference ms/picture (median) | CPU ms/picture | pictures/s per core | × Python onnxruntime | cameras per core, 1 detection/s, 720p 25 fps |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in sorted(best.values(), key=lambda r: r["infer_cpu_ms"]):
        ratio = f"{r['pictures_per_s_per_core'] / python['pictures_per_s_per_core']:.2f}×" if python else "—"
        cam = cameras(r) if r in rust else None
        after = pre_after.get(r["label"])
        cam_after = f" ({1000 / (25 * decode_ms + after + r['infer_cpu_ms'] + post):.1f} with preprocess after inference)" if cam and after else ""
        print(f"| {r['label']} | {r['infer_ms']:.1f} | {r['infer_cpu_ms']:.1f} | {r['pictures_per_s_per_core']:.1f} | {ratio} | "
              + (f"{cam:.1f}{cam_after}" if cam else "—") + " |")
    if pre is not None:
        given = " (given by BENCH_DECODE_720P_MS, not measured in this run)" if c720 and c720[0].get("given") else ""
        d720 = (f"openh264 720p decode {decode_ms:.2f} ms/frame{given} × 25 = {25 * decode_ms:.1f} ms/s"
                if decode_ms else "no 720p decode cost")
        afters = ", ".join(f"{k} {v:.2f} ms" for k, v in pre_after.items() if v)
        afters = f" (in the same thread right after inference: {afters})" if afters else ""
        print(f"\nPer picture besides inference: preprocess 1280x720 → 416² tensor {pre:.2f} ms{afters}, decode + NMS {post:.3f} ms; "
              f"{d720}. Cameras per core = 1000 ms / (25 × decode + preprocess + inference CPU + decode/NMS).")
    batches = [(r["label"], r["batch"]) for r in runs if r.get("batch")]
    if batches:
        print("\n| batching | batch of | ms per picture, batch | ms per picture, one at a time | ratio |\n|---|---:|---:|---:|---:|")
        for label, b in batches:
            print(f"| {label} | {b['n']} | {b['batch_ms_per_picture']:.1f} | {b['single_ms']:.1f} | {b['batch_ms_per_picture'] / b['single_ms']:.2f}× |")
    if python and rust:
        fastest = min(rust, key=lambda r: r["infer_cpu_ms"])
        r = fastest["pictures_per_s_per_core"] / python["pictures_per_s_per_core"]
        targets.append((f"fastest backend ≥ 0.9× Python onnxruntime 1 thread ({fastest['label']})", f"{r:.2f}×", r >= 0.9))
        tract = next((x for x in rust if x["backend"] == "tract"), None)
        if tract:
            r = tract["pictures_per_s_per_core"] / python["pictures_per_s_per_core"]
            targets.append(("default backend (tract) ≥ 0.5× Python onnxruntime 1 thread", f"{r:.2f}×", r >= 0.5))


def fleet(d, single):
    """One worker core fed by framewire-loadgen's fleet (keyframes mode), beside the same
    clip's one-camera keyframes run of the worker part when this run has it."""
    runs = load(os.path.join(d, "fleet.jsonl"), lines=True) or []
    if not runs:
        return
    print("\n## Fleet: one worker core, keyframes mode, framewire-loadgen cameras\n")
    print("| clip | decoder | cameras | frames records | stats records (IDR decoded) | IDR/s per worker core | frames covered/s | worker CPU s | worker RSS | RSS per camera | vs 1 camera, same clip |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        clip = clip_key(r["clip"])
        one = single.get(f"keyframes {r.get('decoder', 'auto')} {clip}")
        vs = f"{r['records_per_s'] / one['records_per_s']:.2f}× ({one['records_per_s']:.0f} IDR/s)" if one else "—"
        frames = r["cameras"] * (r.get("loadgen_frames") or 0)
        rss = r.get("worker_rss_bytes", 0) / 2**20
        print(f"| {clip} | {r.get('decoder', 'auto')} | {r['cameras']} | {frames} | {r['records']} | {r['records_per_s']:.0f} | {r['covered_fps']:.0f} "
              f"| {r['worker_cpu_s']:.1f} | {rss:.0f} MiB | {rss / r['cameras']:.1f} MiB | {vs} |")


def sizing(d, runs, targets):
    """bench-sizing's real-time loads against docs/sizing.md's model: worker cores = frames/s ×
    the CPU per frame of the same clip and backend at full speed on one pinned core (the worker
    part of this run) × k, the real-time overhead, taken from the calibration point."""
    rows = load(os.path.join(d, "sizing.jsonl"), lines=True) or []
    if not rows:
        return

    def cost(r):
        w = runs.get(f"all {r['decoder']} {clip_key(r['clip'])}")
        return 1 / w["records_per_s"] if w else None

    cal = next((r for r in rows if r["label"] == "calibration" and cost(r)), None)
    if cal is None:
        print("\n## Sizing: no calibration point with a worker run of its clip and backend in this run")
        return
    k = cal["worker_cores"] / (cal["offered_fps"] * cost(cal))
    print("\n## Sizing: predicted vs measured, workers reading real-time loadgen cameras\n")
    print(f"Real-time overhead k = {k:.2f} (calibration point: measured cores ÷ (frames/s × full-speed CPU per frame)).\n")
    print("| point | clip | workers | decoder | cameras × fps | full-speed ms/frame, 1 pinned core | predicted worker cores | measured | error | Kafka in, predicted / measured MB/s | worker RSS |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c = cost(r)
        if c is None:
            continue
        predicted = r["offered_fps"] * c * k
        err = r["worker_cores"] / predicted - 1
        mbps = r["cameras"] * r["bitrate_kbps"] / 8000
        lg = r.get("loadgen", {}).get("mb_per_s", 0)
        label = "calibration" if r is cal else r["label"]
        print(f"| {label} | {r['height']}p {r['codec']} | {r['workers']} | {r['decoder']} | {r['cameras']} × {r['fps']:.0f} "
              f"| {1000 * c:.2f} | {predicted:.2f} | {r['worker_cores']:.2f} | {100 * err:+.0f} % | {mbps:.1f} / {lg:.1f} "
              f"| {r['worker_rss_bytes'] / 2**20:.0f} MiB |")
        if r is not cal:
            targets.append((f"sizing: predicted worker cores within 15 % ({r['workers']} workers, {r['cameras']} × {r['height']}p {r['codec']}, {r['decoder']})",
                            f"{predicted:.2f} predicted, {r['worker_cores']:.2f} measured ({100 * err:+.0f} %)", abs(err) <= 0.15))


def sink(d, targets):
    """The sink pinned to one core reading loadgen's stats records: each database's and
    fleet size's best round against the target of issue 14."""
    runs = load(os.path.join(d, "sink.jsonl"), lines=True) or []
    if not runs:
        return
    best = {}
    for r in runs:
        key = (r["db"], r["cameras"])
        if key not in best or r["records_per_s"] > best[key]["records_per_s"]:
            best[key] = r
    print("\n## Sink: stats records per core (framewire-loadgen --mode stats, read after it wrote them)\n")
    print("| database | cameras | records | rounds (records/s) | best records/s | per sink CPU-second | core busy | database server CPU per 1,000 records |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for (db, cameras), b in sorted(best.items()):
        rounds = ", ".join(f"{r['records_per_s']:.0f}" for r in runs if (r["db"], r["cameras"]) == (db, cameras))
        server = f"{1e6 * b['postgres_cpu_s'] / b['records']:.1f} ms" if db == "postgres" else "— (in process)"
        print(f"| {db} | {cameras} | {b['records']} | {rounds} | {b['records_per_s']:.0f} | {b['records_per_cpu_s']:.0f} "
              f"| {b['busy_pct']:.0f} % | {server} |")
        name = {"sqlite": "SQLite", "postgres": "PostgreSQL"}.get(db, db)
        targets.append((f"sink ≥ 20,000 stats records/s per core ({name}, {cameras} cameras)",
                        f"{b['records_per_s']:.0f}/s ({b['records_per_cpu_s']:.0f} per CPU-second)", b["records_per_s"] >= 20000))


if __name__ == "__main__":
    main()

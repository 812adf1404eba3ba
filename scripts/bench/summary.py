#!/usr/bin/env python3
"""The worker benchmarks of one `make bench` run side by side, as ratios, against the targets
of issue 4, object detection against those of issue 12, and the loadgen-driven fleet and
sink runs against those of issue 14. Reads what the bench binaries wrote into DIR
($CARGO_TARGET_DIR/bench): decode.json (bench-decode), worker.jsonl (bench-worker),
machine.jsonl (machine_pair.py), latency.json (bench-latency), detect.jsonl (bench-detect
and detect_ort.py) with decode-720p.json (bench-decode on one 720p clip, when the decode
part did not run), fleet.jsonl (bench-worker --loadgen), sink.jsonl (bench-sink).

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


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "bench")
    decode = load(os.path.join(d, "decode.json")) or []
    worker = load(os.path.join(d, "worker.jsonl"), lines=True) or []
    latency = load(os.path.join(d, "latency.json"))
    by_clip = {os.path.basename(c["clip"]): c for c in decode}
    # Runs repeated under one label (best of N, as bench-decode does): the fastest.
    runs = {}
    for w in worker:
        best = runs.get(w["label"])
        if best is None or w["records_per_s"] > best["records_per_s"]:
            runs[w["label"]] = w

    def worker_run(prefix, clip):
        return runs.get(f"{prefix} {os.path.basename(clip).removesuffix('.h264')}")

    targets = []
    if decode:
        print("\n## Decode and statistics on one core, side by side (frames/s; ratios in brackets)\n")
        print("| clip | ffmpeg -threads 1 | openh264 | + statistics as the worker calls them | + statistics via Analyzer | worker whole path, everything on one core | worker, 1 decoder thread, both cores |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for c in decode:
            ff, bare = c["ffmpeg_fps"], c["openh264_fps"]
            w = worker_run("all", c["clip"])
            wp = (f"{w['records_per_s']:.0f} ({w['records_per_s'] / bare:.2f}× openh264, {w['records_per_s'] / ff:.2f}× ffmpeg); "
                  f"per worker CPU-second {w['records'] / w['worker_cpu_s']:.0f} ({w['records'] / w['worker_cpu_s'] / bare:.2f}×)"
                  if w else "—")
            u = worker_run("unpinned", c["clip"])
            up = f"{u['records_per_s']:.0f} ({u['records_per_s'] / bare:.2f}×)" if u else "—"
            print(f"| {c['label']} | {ff:.0f} | {bare:.0f} ({bare / ff:.2f}×) | {c['stats_fps']:.0f} ({c['stats_fps'] / bare:.2f}×) "
                  f"| {c['analyzer_fps']:.0f} ({c['analyzer_fps'] / bare:.2f}×) | {wp} | {up} |")
            if c["height"] >= 1080 and w:
                r = w["records_per_s"] / bare
                targets.append((f"worker whole path ≥ 0.9× bare openh264 ({c['label']})", f"{r:.2f}× ({w['records_per_s'] / ff:.2f}× ffmpeg)", r >= 0.9))

        print("\n## Statistics cost per picture (medians, measured in place on the decoded pictures)\n")
        print("| clip | decode ms | worker's calls ms | % of decode | Analyzer ms | % of decode | Analyzer / memcpy of the picture | added to the pass, worker's calls | added, Analyzer |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in decode:
            dm = c["decode_ms"]
            print(f"| {c['label']} | {dm:.2f} | {c['stats_ms']:.3f} | {100 * c['stats_ms'] / dm:.1f} % "
                  f"| {c['analyzer_ms']:.3f} | {100 * c['analyzer_ms'] / dm:.1f} % | {c['analyzer_ms'] / c['memcpy_ms']:.1f}× "
                  f"| {100 * c['added_ms'] / dm:.1f} % | {100 * c['analyzer_added_ms'] / dm:.1f} % |")
            if c["height"] >= 1080:
                best = min(c["stats_ms"], c["analyzer_ms"])
                pct = 100 * best / c["decode_ms"]
                targets.append((f"all statistics ≤ 10 % of decode ({c['label']})", f"{pct:.1f} % (worker's calls {100 * c['stats_ms'] / c['decode_ms']:.1f} %)", pct <= 10))

        print("\n## Keyframes only (each IDR decoded and flushed on its own), frames covered per second per core\n")
        print("| clip | full decode fps | IDR/s | frames covered/s | × full | worker keyframes mode: covered/s | × worker full | ceiling: IDR ms ÷ other ms → most possible |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for c in decode:
            if c["gop"] != 30:
                continue
            ratio = c["keyframes_covered_fps"] / c["openh264_fps"]
            k, a = worker_run("keyframes", c["clip"]), worker_run("all", c["clip"])
            wk = f"{k['covered_fps']:.0f}" if k else "—"
            wr = f"{k['covered_fps'] / a['records_per_s']:.1f}×" if k and a else "—"
            # What an IDR costs against the other frames bounds the gain (bench-decode's third table).
            ceiling = "—"
            if "idr_decode_ms" in c:
                ceiling = f"{c['idr_decode_ms']:.1f} ÷ {c['other_decode_ms']:.1f} → {c['keyframes_ceiling_gop30']:.1f}×"
            print(f"| {c['label']} | {c['openh264_fps']:.0f} | {c['keyframes_idr_per_s']:.1f} | {c['keyframes_covered_fps']:.0f} | {ratio:.1f}× | {wk} | {wr} | {ceiling} |")
            limit = f", ceiling {c['keyframes_ceiling_gop30']:.1f}×" if "keyframes_ceiling_gop30" in c else ""
            targets.append((f"keyframes-only ≥ 15× full decode at GOP 30, openh264 ({c['label']})", f"{ratio:.1f}×{limit}", ratio >= 15))
            if k and a:
                r = k["covered_fps"] / a["records_per_s"]
                targets.append((f"keyframes-only ≥ 15× through the worker ({c['label']})", f"{r:.1f}×", r >= 15))

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
    c720 = sorted((c for c in clips if c["height"] == 720), key=lambda c: c.get("profile") != "main")
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
    print("| clip | cameras | frames records | stats records (IDR decoded) | IDR/s per worker core | frames covered/s | worker CPU s | worker RSS | RSS per camera | vs 1 camera, same clip |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        clip = os.path.basename(r["clip"]).removesuffix(".h264")
        one = single.get(f"keyframes {clip}")
        vs = f"{r['records_per_s'] / one['records_per_s']:.2f}× ({one['records_per_s']:.0f} IDR/s)" if one else "—"
        frames = r["cameras"] * (r.get("loadgen_frames") or 0)
        rss = r.get("worker_rss_bytes", 0) / 2**20
        print(f"| {clip} | {r['cameras']} | {frames} | {r['records']} | {r['records_per_s']:.0f} | {r['covered_fps']:.0f} "
              f"| {r['worker_cpu_s']:.1f} | {rss:.0f} MiB | {rss / r['cameras']:.1f} MiB | {vs} |")


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

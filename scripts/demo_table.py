#!/usr/bin/env python3
"""The demo's output: the live per-camera table, and what the object detector found.

    demo_table.py SQLITE [WEB_URL [SINCE_MS]]
        The live table, from the sink's SQLite summaries. Rates come from each camera's latest
        *complete* window (the current one is still filling); the frame count is the total
        over all windows. With WEB_URL, the objects each camera's detector currently sees
        (the sink API's `objects_present`, else its newest analysed window) are shown, and the
        web page's URL is repeated under the table.

    demo_table.py --detections WEB_URL SINCE_MS [WORKER_METRICS_URL [SINK_ADMIN_URL]]
        The detections since SINCE_MS, per camera and class, summed over the sink's windows
        (`GET /api/cameras/{id}/summaries`: objects, pictures with the class, most in one
        picture); with the worker's /metrics URL, the worker's own counters beside them
        (`framewire_worker_detect_*`), which do not go through Kafka or the sink, and with the
        sink's admin URL the two score floors (from each service's /config).
"""
import json
import sqlite3
import sys
import time
import urllib.request


def get_json(url):
    with urllib.request.urlopen(url, timeout=3) as r:
        return json.load(r)


def classes_text(classes, key="objects"):
    if not classes:
        return "-"
    items = sorted(classes.items(), key=lambda kv: (-kv[1][key], kv[0]))
    return " ".join(f"{label}×{c[key]}" for label, c in items)


def seen_now(web_url):
    """{camera: text} of what the detector sees now, from GET /api/cameras; {} if unavailable."""
    try:
        cams = get_json(web_url.rstrip("/") + "/api/cameras")["cameras"]
    except Exception:  # noqa: BLE001 (the sink may not answer yet; the table goes on)
        return {}
    out = {}
    for c in cams:
        present = c.get("objects_present") or []
        window = c.get("detections_window") or {}
        if present:
            out[c["id"]] = " ".join(sorted(p["label"] for p in present))
        elif window.get("pictures_analysed"):
            out[c["id"]] = "(none now; last window: " + classes_text(window.get("classes")) + ")"
    return out


def table(path, web_url, since_ms):
    now_ms = int(time.time() * 1000)
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        cameras = db.execute(
            "SELECT camera, SUM(frames) FROM window_summaries GROUP BY camera ORDER BY camera"
        ).fetchall()
        rows = []
        for camera, total in cameras:
            last = db.execute(
                """SELECT start_ms, fps, y_avg_mean FROM window_summaries
                   WHERE camera = ? ORDER BY (end_ms <= ?) DESC, start_ms DESC LIMIT 1""",
                (camera, now_ms - 2000),
            ).fetchone()
            rows.append((camera, *last, total))
    except sqlite3.Error as e:
        print(f"waiting for the first summaries ({e})")
        return
    seen = seen_now(web_url) if web_url else {}
    print(f"\n{time.strftime('%H:%M:%S')}  {'camera':<10} {'window':>8} {'fps':>6} {'y_avg':>7} {'frames':>8}  objects")
    for camera, start_ms, fps, y_avg, total in rows:
        window = time.strftime("%H:%M:%S", time.localtime(start_ms / 1000))
        print(f"{'':8}  {camera:<10} {window:>8} {fps:>6.1f} {y_avg:>7.1f} {total:>8}  {seen.get(camera, '')}")
    if not rows:
        print("          (no summaries yet)")
    if web_url:
        print(f"{'':8}  web page: {web_url}")


def config_value(url, *path):
    """A number from a service's /config (its effective configuration, JSON); None if absent."""
    try:
        v = get_json(url)
        for k in path:
            v = v[k]
        return float(v)
    except Exception:  # noqa: BLE001
        return None


def metric_samples(url, prefix):
    """[(name, {label: value}, value)] of the samples whose name starts with prefix."""
    out = []
    with urllib.request.urlopen(url, timeout=3) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("#") or not line.startswith(prefix):
                continue
            name_labels, _, value = line.rpartition(" ")
            name, _, labels = name_labels.partition("{")
            lab = {}
            for part in labels.rstrip("}").split(","):
                if "=" in part:
                    k, _, v = part.partition("=")
                    lab[k] = v.strip('"')
            out.append((name, lab, float(value)))
    return out


def detections(web_url, since_ms, metrics_url=None, sink_admin_url=None):
    base = web_url.rstrip("/")
    print(f"==> objects found since {time.strftime('%H:%M:%S', time.localtime(since_ms / 1000))}"
          " (sink API: windows' objects per class)")
    try:
        cams = get_json(base + "/api/cameras")["cameras"]
    except Exception as e:  # noqa: BLE001
        print(f"    the sink's API did not answer ({e})")
        cams = []
    any_analysed = False
    for c in sorted(cams, key=lambda c: c["id"]):
        try:
            ws = get_json(f"{base}/api/cameras/{c['id']}/summaries?from={since_ms}&limit=10000")["windows"]
        except Exception as e:  # noqa: BLE001
            print(f"    {c['id']}: summaries unavailable ({e})")
            continue
        pictures = sum(w.get("pictures_analysed", 0) for w in ws)
        if not pictures:
            continue
        any_analysed = True
        total = {}
        for w in ws:
            for label, cc in (w.get("classes") or {}).items():
                t = total.setdefault(label, {"objects": 0, "pictures": 0, "max_per_picture": 0})
                t["objects"] += cc["objects"]
                t["pictures"] += cc["pictures"]
                t["max_per_picture"] = max(t["max_per_picture"], cc["max_per_picture"])
        print(f"    camera {c['id']}: {pictures} pictures analysed, {sum(w['frames'] for w in ws)} frames")
        if not total:
            print("        (no objects)")
        for label, t in sorted(total.items(), key=lambda kv: (-kv[1]["pictures"], kv[0])):
            print(f"        {label:<14} in {t['pictures']:>4} pictures, {t['objects']:>4} objects, at most {t['max_per_picture']} in one")
    if cams and not any_analysed:
        print("    no camera has an analysed picture yet")
    if metrics_url:
        try:
            samples = metric_samples(metrics_url, "")
        except Exception as e:  # noqa: BLE001
            print(f"    worker metrics unavailable ({e})")
            return
        pics = {s[1].get("camera"): int(s[2]) for s in samples if s[0] == "framewire_worker_detect_pictures_total" and s[2]}
        objs = {s[1].get("label"): int(s[2]) for s in samples if s[0] == "framewire_worker_detect_objects_total" and s[2]}
        errs = int(sum(s[2] for s in samples if s[0] == "framewire_worker_detect_errors_total"))
        isum = sum(s[2] for s in samples if s[0] == "framewire_worker_inference_seconds_sum")
        icnt = sum(s[2] for s in samples if s[0] == "framewire_worker_inference_seconds_count")
        rss = sum(s[2] for s in samples if s[0] == "process_resident_memory_bytes")
        print("==> the worker's own counters (its /metrics, since it started)")
        print("    pictures analysed: " + (", ".join(f"{k} {v}" for k, v in sorted(pics.items())) or "none")
              + f"; errors {errs}" + (f"; inference {1000 * isum / icnt:.0f} ms on average ({int(icnt)} runs)" if icnt else ""))
        print("    objects by class:  " + (" ".join(f"{k}×{v}" for k, v in sorted(objs.items(), key=lambda kv: -kv[1])) or "none"))
        # The two counts differ by design: the worker reports objects above its
        # detect.score_threshold, the sink counts those above sink.detections.min_score.
        worker_th = config_value(metrics_url.rsplit("/", 1)[0] + "/config", "detect", "score_threshold")
        sink_th = config_value(sink_admin_url.rstrip("/") + "/config", "sink", "detections", "min_score") if sink_admin_url else None
        if worker_th is not None and sink_th is not None:
            print(f"    (the worker reports objects scoring above {worker_th:.2f}, its detect.score_threshold; "
                  f"the sink counts those from {sink_th:.2f} up, sink.detections.min_score)")
        if rss:
            print(f"    worker resident memory: {rss / 2**20:.0f} MiB")


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "--detections":
        detections(a[1], int(a[2]), a[3] if len(a) > 3 else None, a[4] if len(a) > 4 else None)
    else:
        table(a[0], a[1] if len(a) > 1 else None, int(a[2]) if len(a) > 2 else 0)

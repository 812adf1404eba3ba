#!/usr/bin/env python3
"""Prints the demo's live per-camera table from the sink's SQLite summaries.

Rates come from each camera's latest *complete* window (the current one is still
filling); the frame count is the total over all windows. The optional second argument is
the web page's URL, repeated under the table.
"""
import sqlite3
import sys
import time

path = sys.argv[1]
web_url = sys.argv[2] if len(sys.argv) > 2 else None
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
    sys.exit(0)

print(f"\n{time.strftime('%H:%M:%S')}  {'camera':<10} {'window':>8} {'fps':>6} {'y_avg':>7} {'frames':>8}")
for camera, start_ms, fps, y_avg, total in rows:
    window = time.strftime("%H:%M:%S", time.localtime(start_ms / 1000))
    print(f"{'':8}  {camera:<10} {window:>8} {fps:>6.1f} {y_avg:>7.1f} {total:>8}")
if not rows:
    print("          (no summaries yet)")
if web_url:
    print(f"{'':8}  web page: {web_url}")

#!/usr/bin/env python3
"""A light RTSP load generator and stream checker (plain Python 3, no dependencies).

    scripts/bench/rtsp_load.py -n 50 [--base rtsp://127.0.0.1:8654/cam] [--mounts M]
        [--ramp 2] [--warmup 3] [--duration 30] [--server-pid PID] [--json FILE]

Opens N RTSP sessions over TCP (RTP interleaved on the RTSP connection): client k plays
<base><k mod M> (M = --mounts, default N). It does DESCRIBE/SETUP/PLAY, then reads and discards
the RTP packets while it checks each stream, and sends GET_PARAMETER keep-alives. Connections are
spread over --ramp seconds. After --warmup seconds with all clients playing, it measures for
--duration seconds:
  * frames arriving per second (RTP marker bits) and the largest gap between two frames;
  * RTP timestamps: every frame-to-frame step should be 90000/fps (3600 at 25 fps), also when
    the server loops its clip: steps that differ (or go backwards) are counted;
  * RTP sequence gaps (lost packets; none expected over TCP);
  * the bitrate received;
  * the server's CPU (utime+stime of --server-pid, all threads, from /proc) and this client's.
Exit status 1 if a stream broke (error, stall, backwards timestamps, sequence gaps).
"""

import argparse
import asyncio
import json
import os
import re
import resource
import struct
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """Seconds of CPU (user+system, all threads) used by the process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def self_cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Stream:
    def __init__(self, k, url, expect_step):
        self.k, self.url, self.expect_step = k, url, expect_step
        self.state = "connecting"
        self.error = None
        self.reset()
        self.total_frames = 0
        self.last_ts = None
        self.last_seq = None

    def reset(self):
        """Start a measurement window."""
        self.frames = 0
        self.bytes = 0
        self.packets = 0
        self.seq_gaps = 0
        self.bad_steps = 0
        self.back_steps = 0
        self.min_step = None
        self.max_step = None
        self.max_gap = 0.0
        self.last_arrival = None
        self.t_start = time.monotonic()

    def rtp(self, pkt, now):
        if len(pkt) < 12:
            return
        b1, seq, ts = struct.unpack_from("!xBHI", pkt)
        self.packets += 1
        self.bytes += len(pkt)
        if self.last_seq is not None and seq != (self.last_seq + 1) & 0xFFFF:
            self.seq_gaps += 1
        self.last_seq = seq
        if b1 & 0x80:  # marker: the last packet of a frame
            self.frames += 1
            self.total_frames += 1
            if self.last_ts is not None:
                step = (ts - self.last_ts) & 0xFFFFFFFF
                if step >= 0x80000000:
                    self.back_steps += 1
                    step -= 0x100000000
                if step != self.expect_step:
                    self.bad_steps += 1
                if self.min_step is None or step < self.min_step:
                    self.min_step = step
                if self.max_step is None or step > self.max_step:
                    self.max_step = step
            self.last_ts = ts
            if self.last_arrival is not None:
                self.max_gap = max(self.max_gap, now - self.last_arrival)
            self.last_arrival = now


async def run_client(st, stop, keepalive):
    m = re.match(r"rtsp://([^/:]+)(?::(\d+))?(/.*)?$", st.url)
    host, port = m.group(1), int(m.group(2) or 554)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    except Exception as e:  # noqa: BLE001
        st.state, st.error = "failed", f"connect: {e}"
        return
    cseq = 0
    session = None
    buf = bytearray()

    async def read_more():
        data = await reader.read(262144)
        if not data:
            raise ConnectionError("connection closed by the server")
        buf.extend(data)

    def handle_interleaved(now):
        """Consume complete '$' frames at the front of buf; return False if a response is next."""
        while len(buf) >= 4:
            if buf[0] != 0x24:
                return False
            ch, ln = buf[1], (buf[2] << 8) | buf[3]
            if len(buf) < 4 + ln:
                return True
            if ch == 0:
                st.rtp(memoryview(buf)[4:4 + ln], now)
            del buf[:4 + ln]
        return True

    async def request(method, url, extra=""):
        nonlocal cseq
        cseq += 1
        sess = f"Session: {session}\r\n" if session else ""
        writer.write(f"{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n{sess}{extra}"
                     f"User-Agent: framewire-rtsp-load\r\n\r\n".encode())
        await writer.drain()

    async def response():
        while True:
            handle_interleaved(time.monotonic())
            if buf[:4] == b"RTSP":
                end = buf.find(b"\r\n\r\n")
                if end >= 0:
                    head = bytes(buf[:end]).decode("latin-1")
                    cl = re.search(r"(?im)^content-length:\s*(\d+)", head)
                    blen = int(cl.group(1)) if cl else 0
                    if len(buf) >= end + 4 + blen:
                        body = bytes(buf[end + 4:end + 4 + blen]).decode("latin-1")
                        del buf[:end + 4 + blen]
                        code = int(head.split()[1])
                        headers = {}
                        for line in head.split("\r\n")[1:]:
                            k, _, v = line.partition(":")
                            headers[k.strip().lower()] = v.strip()
                        return code, headers, body
            await read_more()

    try:
        await request("DESCRIBE", st.url, "Accept: application/sdp\r\n")
        code, h, sdp = await asyncio.wait_for(response(), 15)
        if code != 200:
            raise RuntimeError(f"DESCRIBE: {code}")
        base = h.get("content-base", st.url)
        if not base.endswith("/"):
            base += "/"
        video = sdp.split("m=video", 1)
        if len(video) < 2:
            raise RuntimeError("no video in the SDP")
        ctl = re.search(r"a=control:(\S+)", video[1])
        ctl = ctl.group(1) if ctl else ""
        setup_url = ctl if ctl.startswith("rtsp://") else base + ctl
        await request("SETUP", setup_url, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
        code, h, _ = await asyncio.wait_for(response(), 15)
        if code != 200:
            raise RuntimeError(f"SETUP: {code}")
        session = h.get("session", "").split(";")[0]
        await request("PLAY", base.rstrip("/"))
        code, h, _ = await asyncio.wait_for(response(), 15)
        if code != 200:
            raise RuntimeError(f"PLAY: {code}")
        st.state = "playing"
        next_ka = time.monotonic() + keepalive
        while not stop.is_set():
            if not handle_interleaved(time.monotonic()):
                # A keep-alive response (or anything else) in the stream: parse and drop it.
                end = buf.find(b"\r\n\r\n")
                if end >= 0:
                    head = bytes(buf[:end]).decode("latin-1")
                    cl = re.search(r"(?im)^content-length:\s*(\d+)", head)
                    blen = int(cl.group(1)) if cl else 0
                    if len(buf) >= end + 4 + blen:
                        del buf[:end + 4 + blen]
                        continue
            if time.monotonic() >= next_ka:
                next_ka += keepalive
                await request("GET_PARAMETER", base.rstrip("/"))
            try:
                await asyncio.wait_for(read_more(), 5)
            except asyncio.TimeoutError:
                raise RuntimeError("no data for 5 s") from None
        try:
            await request("TEARDOWN", base.rstrip("/"))
        except Exception:  # noqa: BLE001
            pass
        st.state = "done"
    except Exception as e:  # noqa: BLE001
        st.state, st.error = "failed", f"{type(e).__name__}: {e}"
    finally:
        writer.close()


async def main_async(args):
    n, mounts = args.clients, args.mounts or args.clients
    step = 90000 // args.fps
    streams = [Stream(k, f"{args.base}{k % mounts}", step) for k in range(n)]
    stop = asyncio.Event()
    tasks = []
    t0 = time.monotonic()
    for k, st in enumerate(streams):
        tasks.append(asyncio.create_task(run_client(st, stop, args.keepalive)))
        if args.ramp > 0 and k < n - 1:
            await asyncio.sleep(args.ramp / n)
    # Wait until every client plays (or failed).
    deadline = time.monotonic() + 30
    while any(s.state == "connecting" for s in streams) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    playing = sum(s.state == "playing" for s in streams)
    print(f"{playing}/{n} clients playing after {time.monotonic() - t0:.1f} s; warm-up {args.warmup} s, "
          f"measuring {args.duration} s ...", flush=True)
    await asyncio.sleep(args.warmup)
    for s in streams:
        s.reset()
    srv0 = proc_cpu(args.server_pid) if args.server_pid else None
    me0, w0 = self_cpu(), time.monotonic()
    await asyncio.sleep(args.duration)
    wall = time.monotonic() - w0
    srv = (proc_cpu(args.server_pid) - srv0) / wall if args.server_pid else None
    me = (self_cpu() - me0) / wall
    stop.set()
    await asyncio.wait(tasks, timeout=10)

    ok = [s for s in streams if s.state in ("playing", "done")]
    failed = [s for s in streams if s not in ok]
    fps = [s.frames / wall for s in ok]
    res = {
        "clients": n, "mounts": mounts, "seconds": round(wall, 2),
        "ok": len(ok), "failed": len(failed),
        "errors": sorted({s.error for s in failed if s.error})[:5],
        "fps_min": round(min(fps), 2) if fps else 0, "fps_mean": round(sum(fps) / len(fps), 2) if fps else 0,
        "fps_max": round(max(fps), 2) if fps else 0,
        "max_frame_gap_ms": round(1000 * max((s.max_gap for s in ok), default=0), 1),
        "rtp_ts_step_expected": step,
        "rtp_ts_step_min": min((s.min_step for s in ok if s.min_step is not None), default=None),
        "rtp_ts_step_max": max((s.max_step for s in ok if s.max_step is not None), default=None),
        "rtp_ts_bad_steps": sum(s.bad_steps for s in ok),
        "rtp_ts_backwards": sum(s.back_steps for s in ok),
        "rtp_seq_gaps": sum(s.seq_gaps for s in ok),
        "mbit_s_total": round(sum(s.bytes for s in ok) * 8 / wall / 1e6, 1),
        "kbit_s_per_stream": round(sum(s.bytes for s in ok) * 8 / wall / 1e3 / max(len(ok), 1), 0),
        "rtp_packets_s": round(sum(s.packets for s in ok) / wall),
        "server_cpu_pct": round(100 * srv, 1) if srv is not None else None,
        "server_cpu_pct_per_stream": round(100 * srv / max(len(ok), 1), 2) if srv is not None else None,
        "client_cpu_pct": round(100 * me, 1),
    }
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    broken = failed or res["rtp_ts_backwards"] or res["rtp_seq_gaps"] or (fps and min(fps) < 0.8 * args.fps)
    return 1 if broken else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--clients", type=int, default=10)
    ap.add_argument("--base", default="rtsp://127.0.0.1:8654/cam", help="URL prefix; the mount number is appended")
    ap.add_argument("--mounts", type=int, default=0, help="number of mounts (default: one per client)")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--ramp", type=float, default=2.0, help="spread the connects over this many seconds")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--keepalive", type=float, default=20.0, help="GET_PARAMETER every this many seconds")
    ap.add_argument("--server-pid", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

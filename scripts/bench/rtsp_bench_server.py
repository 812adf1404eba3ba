#!/usr/bin/python3
"""RTSP benchmark cameras: N live cameras that play one pre-encoded H.264 clip in a loop, forever.

Run with the SYSTEM python (/usr/bin/python3): it has python3-gi; a pyenv python has not.

    /usr/bin/python3 scripts/bench/rtsp_bench_server.py -n 50 [--port 8654] [--address 127.0.0.1]
        [--clip CLIP.h264|CLIP.mp4] [--prefix cam] [--udp-ports 40000-49999]
        [--batch 5] [--mounts-file FILE] [--pidfile FILE] [--stats SECONDS]

Mounts rtsp://127.0.0.1:8654/cam0 ... /cam{N-1}. Every mount is SHARED: one pipeline per mount
however many clients it has, created when its first client connects and stopped when the last
one leaves (an idle server costs nothing).

The clip (default: scripts/bench/make-clip.sh, 60 s 1280x720 25 fps H.264 Main ~2 Mbit/s, no
B-frames, IDR every 50 frames) is read ONCE and split into access units in memory; every camera
pushes those same memory blocks (no copies) through `appsrc is-live=true ! rtph264pay`:
  * live like a real camera: no preroll, no seeking, a client that joins gets the stream from
    "now" (from the next IDR on, a decoder can start), Range headers are ignored;
  * real time: PTS = (running time when the camera started) + i x 40 ms with i counting up for
    ever, so the RTP timestamps grow by exactly 3600 (90 kHz) per frame, also across the loop;
    the server's sinks pace the packets by those timestamps (25 frames/s arriving);
  * the loop: frame i is clip AU (start + i) mod frames. The clip is a whole number of closed
    GOPs, so the stream goes ... last P -> IDR (with SPS/PPS) -> ... without a broken reference;
  * camera k starts at GOP (7 k) mod gops, so cameras show different content; their IDR phase
    in time follows the moment each camera's first client connected (connect clients over ~2 s
    to spread IDRs across a GOP, as real cameras are).
SPS/PPS are in band before every IDR (and in the SDP's sprop-parameter-sets).
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(time.strftime("%Y-%m-%d %H:%M:%S"), msg, flush=True)


def split_access_units(data):
    """Annex B byte stream -> list of (bytes, is_idr). An access unit starts at an AUD/SPS/PPS/
    SEI that follows a picture, or at a slice whose first_mb_in_slice is 0."""
    # NAL start offsets (after the start code) and the start code positions.
    nals = []
    i, n = 0, len(data)
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        sc = j - 1 if j > 0 and data[j - 1] == 0 else j  # 4-byte start code
        nals.append((sc, j + 3))
        i = j + 3
    aus, cur_start, cur_has_vcl, cur_idr = [], None, False, False
    for sc, off in nals:
        if off >= n:
            break
        t = data[off] & 0x1F
        vcl = t in (1, 5)
        first_slice = vcl and off + 1 < n and (data[off + 1] & 0x80) != 0  # ue(v) first_mb == 0
        new_au = cur_start is None or (cur_has_vcl and (first_slice or t in (6, 7, 8, 9)))
        if new_au:
            if cur_start is not None:
                aus.append((cur_start, sc, cur_idr))
            cur_start, cur_has_vcl, cur_idr = sc, False, False
        if vcl:
            cur_has_vcl = True
            cur_idr = cur_idr or t == 5
    if cur_start is not None:
        aus.append((cur_start, n, cur_idr))
    return [(data[a:b], idr) for a, b, idr in aus]


def find_clip(path):
    if path is None:
        out = subprocess.run([os.path.join(HERE, "make-clip.sh"), "--quiet"], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()
        path = out[-1]
    if path.endswith(".mp4"):
        path = path[:-4] + ".h264"
    if not os.path.isfile(path):
        sys.exit(f"rtsp_bench_server: clip {path!r} not found (scripts/bench/make-clip.sh makes it)")
    meta = {}
    if os.path.isfile(path[:-5] + ".json"):
        with open(path[:-5] + ".json") as f:
            meta = json.load(f)
    return path, meta


class Clip:
    def __init__(self, path, fps, gop):
        with open(path, "rb") as f:
            data = f.read()
        aus = split_access_units(data)
        if not aus or not aus[0][1]:
            sys.exit(f"rtsp_bench_server: {path}: does not start with an IDR access unit")
        # One GstMemory per access unit, shared by every camera's buffers.
        self.mems = [Gst.Buffer.new_wrapped(au).peek_memory(0) for au, _ in aus]
        self.idr = [idr for _, idr in aus]
        self.sizes = [len(au) for au, _ in aus]
        self.frames = len(aus)
        self.gop_starts = [i for i, k in enumerate(self.idr) if k]
        self.fps = fps
        self.dur = Gst.SECOND // fps
        self.bytes = len(data)
        if self.frames % gop:
            log(f"WARNING: {self.frames} frames is not a multiple of GOP {gop}")


class Camera:
    """The state of one camera's pipeline (one per prepared media)."""

    __slots__ = ("clip", "start", "i", "t0", "name", "appsrc", "batch")

    def __init__(self, clip, name, start, batch):
        self.clip, self.name, self.start, self.batch = clip, name, start, batch
        self.i, self.t0, self.appsrc = 0, None, None

    def need_data(self, src, _length):
        clip = self.clip
        if self.t0 is None:
            clock, base = src.get_clock(), src.get_base_time()
            now = clock.get_time() - base if clock is not None else 0
            self.t0 = now + 20 * Gst.MSECOND
        # `batch` frames per call (fewer Python calls; the sinks still pace every frame).
        blist = Gst.BufferList.new_sized(self.batch)
        for _ in range(self.batch):
            k = (self.start + self.i) % clip.frames
            buf = Gst.Buffer.new()
            buf.append_memory(clip.mems[k])
            buf.pts = buf.dts = self.t0 + self.i * clip.dur
            buf.duration = clip.dur
            if not clip.idr[k]:
                buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
            self.i += 1
            blist.insert(-1, buf)
        src.emit("push-buffer-list", blist)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--cameras", type=int, default=int(os.environ.get("BENCH_CAMERAS", "10")))
    ap.add_argument("--address", default=os.environ.get("BENCH_RTSP_ADDRESS", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("BENCH_RTSP_PORT", "8654")))
    ap.add_argument("--clip", default=os.environ.get("BENCH_CLIP") or None,
                    help="Annex B .h264 (or the .mp4 next to it); default: make-clip.sh's clip")
    ap.add_argument("--prefix", default="cam")
    ap.add_argument("--fps", type=int, default=0, help="default: from the clip's .json, else 25")
    ap.add_argument("--udp-ports", default=os.environ.get("BENCH_UDP_PORTS", "40000-49999"))
    ap.add_argument("--batch", type=int, default=int(os.environ.get("BENCH_BATCH", "5")),
                    help="frames handed to appsrc per Python call (5 = 200 ms; 1 costs ~25%% more CPU)")
    ap.add_argument("--mounts-file")
    ap.add_argument("--pidfile")
    ap.add_argument("--stats", type=float, default=float(os.environ.get("BENCH_STATS", "0")),
                    help="log clients, pipelines and own CPU every this many seconds (0: never)")
    args = ap.parse_args()
    if args.cameras < 1 or args.batch < 1:
        sys.exit("rtsp_bench_server: -n and --batch must be >= 1")

    Gst.init(None)
    path, meta = find_clip(args.clip)
    fps = args.fps or int(meta.get("fps", 25))
    clip = Clip(path, fps, int(meta.get("gop", 50)))
    width, height = int(meta.get("width", 1280)), int(meta.get("height", 720))
    log(f"clip {path}: {clip.frames} access units ({len(clip.gop_starts)} IDR), {clip.bytes} B, "
        f"{clip.bytes * 8 / (clip.frames / fps) / 1000:.0f} kbit/s at {fps} fps, "
        f"mean AU {clip.bytes / clip.frames:.0f} B")

    caps = (f"video/x-h264,stream-format=byte-stream,alignment=au,width={width},height={height},"
            f"framerate={fps}/1,pixel-aspect-ratio=1/1")
    launch = (f"( appsrc name=src is-live=true format=time do-timestamp=false "
              f"caps=\"{caps}\" ! rtph264pay config-interval=-1 pt=96 mtu=1400 name=pay0 )")

    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    server.set_backlog(max(64, args.cameras * 2))
    lo, _, hi = args.udp_ports.partition("-")
    pool = GstRtspServer.RTSPAddressPool()
    if not pool.add_range(args.address, args.address, int(lo), int(hi or lo), 0):
        sys.exit(f"rtsp_bench_server: bad --udp-ports {args.udp_ports!r}")
    mpoints = server.get_mount_points()
    live = {"pipelines": 0}
    gops = len(clip.gop_starts)

    def on_configure(_factory, media, name, start):
        cam = Camera(clip, name, start, args.batch)
        src = media.get_element().get_by_name("src")
        cam.appsrc = src
        src.connect("need-data", cam.need_data)
        live["pipelines"] += 1
        log(f"/{name}: pipeline started (clip frame {start}); {live['pipelines']} running")

        def unprepared(_m):
            live["pipelines"] -= 1
            log(f"/{name}: pipeline stopped after {cam.i} frames; {live['pipelines']} running")

        media.connect("unprepared", unprepared)

    for k in range(args.cameras):
        name = f"{args.prefix}{k}"
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        factory.set_address_pool(pool)
        start = clip.gop_starts[(7 * k) % gops]
        factory.connect("media-configure", on_configure, name, start)
        mpoints.add_factory(f"/{name}", factory)

    clients = {"n": 0}

    def on_client(_server, client):
        clients["n"] += 1

        def closed(_c):
            clients["n"] -= 1

        client.connect("closed", closed)

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_bench_server: cannot listen on {args.address}:{args.port} (port in use?)")
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    if args.mounts_file:
        with open(args.mounts_file + ".tmp", "w") as f:
            f.write("".join(f"{args.prefix}{k}\n" for k in range(args.cameras)))
        os.replace(args.mounts_file + ".tmp", args.mounts_file)

    if args.stats > 0:
        last = {"t": time.monotonic(), "cpu": 0.0}

        def stats():
            ru = resource.getrusage(resource.RUSAGE_SELF)
            cpu, t = ru.ru_utime + ru.ru_stime, time.monotonic()
            pct = 100.0 * (cpu - last["cpu"]) / max(t - last["t"], 1e-6)
            last.update(t=t, cpu=cpu)
            log(f"stats: {clients['n']} clients, {live['pipelines']} pipelines, CPU {pct:.1f}% of one core")
            return GLib.SOURCE_CONTINUE

        GLib.timeout_add(int(args.stats * 1000), stats)

    loop = GLib.MainLoop()

    def stop(signame):
        log(f"{signame}: shutting down")
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, stop, "SIGTERM")
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, stop, "SIGINT")
    log(f"RTSP bench server listening on rtsp://{args.address}:{args.port}/{args.prefix}{{0..{args.cameras - 1}}} "
        f"({args.cameras} shared live looping cameras, {Gst.version_string()})")
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""RTSP test cameras for the local real stack (GStreamer's RTSP server, Debian packages).

Run with the SYSTEM python (/usr/bin/python3): it has python3-gi; a pyenv python has not.

    /usr/bin/python3 scripts/stack/rtsp_server.py [--port 8554] [--address 127.0.0.1]
        [--mount NAME:key=value,key=value ...] [--mounts-json FILE] [--no-default-mounts]
        [--only NAME,NAME] [--list]

Default mounts (rtsp://127.0.0.1:8554/<name>), all live, 640x360 @ 25 fps, H.264 Main,
no B-frames, IDR every 50 frames (2 s), ~1000 kbit/s, SPS/PPS before every IDR:
    moving   SMPTE bars scrolling horizontally (mean luma ~121, every frame differs)
    black    all black (mean luma 16, limited range)
    frozen   one still SMPTE picture for ever (mean luma ~121, bit-identical decoded frames)

Mount spec keys (a dict per mount; --mount NAME:k=v,... or --mounts-json {"name": {...}}):
    kind        "test" (videotestsrc, default) | "file" (pre-encoded MP4/MKV/TS, passthrough)
                | "launch" (a raw gst-rtsp launch line in "launch")
    pattern     videotestsrc pattern (smpte, black, ball, snow, ...)   [test]
    speed       videotestsrc horizontal-speed (0 = no scrolling)        [test]
    still       true: encode ONE generated picture for ever (imagefreeze): bit-identical frames.
                (pattern=smpte alone is not still: its bottom-right corner is animated noise)
    src_extra   extra videotestsrc properties, e.g. "foreground-color=0xffff0000"
    width, height, fps                                                   [test]
    codec       h264 (x264enc) | h265 (x265enc)                          [test]
    profile     H.264/H.265 profile forced via caps (main)               [test]
    preset      x264/x265 speed-preset (veryfast; ultrafast gives Baseline, not Main)
    bitrate     kbit/s (1000); gop: key-int-max in frames (50); threads: encoder threads (1 =
                one slice per picture)
    enc_extra   extra encoder element properties, e.g. "pass=quant quantizer=12"
    encoder_opts  x264/x265 option string ("scenecut=0": a fixed GOP, IDR exactly every `gop`)
    overlay     true: burn a running timestamp into the picture (needs the pango plugin)
    location    media file (plays once per client, in real time, then EOS)  [file]
    shared      share one pipeline between all clients (default true for test, false for file)
    user, password   require RTSP basic auth for this mount
"""

import argparse
import json
import os
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

DEFAULTS = {
    "kind": "test",
    "pattern": "smpte",
    "speed": 0,
    "still": False,
    "src_extra": "",
    "width": 640,
    "height": 360,
    "fps": 25,
    "codec": "h264",
    "profile": "main",
    "preset": "veryfast",
    "bitrate": 1000,
    "gop": 50,
    "threads": 1,
    "overlay": False,
    "encoder_opts": "scenecut=0",
    "enc_extra": "",
}

MOUNTS = {
    "moving": {"pattern": "smpte", "speed": 4},
    "black": {"pattern": "black"},
    # One SMPTE picture (its noise corner frozen too), constant QP so that P-frames are pure
    # skips: every decoded frame is bit-identical (YDIF 0), mean luma ~121.
    "frozen": {"pattern": "smpte", "still": True, "enc_extra": "pass=quant quantizer=10"},
}


def log(msg):
    print(time.strftime("%Y-%m-%d %H:%M:%S"), msg, flush=True)


def as_bool(v):
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() in ("1", "true", "yes", "on")


def encoder(spec):
    codec = spec["codec"].lower()
    gop, kbps, preset = int(spec["gop"]), int(spec["bitrate"]), spec["preset"]
    threads = int(spec["threads"])
    if codec in ("h264", "avc"):
        return (
            f"x264enc tune=zerolatency speed-preset={preset} bframes=0 b-adapt=false "
            f"key-int-max={gop} bitrate={kbps} threads={threads} "
            f"option-string=\"{spec['encoder_opts']}\" {spec['enc_extra']} "
            f"! video/x-h264,profile={spec['profile']},stream-format=byte-stream "
            f"! rtph264pay config-interval=-1 pt=96 name=pay0"
        )
    if codec in ("h265", "hevc"):
        return (
            f"x265enc tune=zerolatency speed-preset={preset} key-int-max={gop} bitrate={kbps} "
            f"option-string=\"bframes=0:pools={threads}:{spec['encoder_opts']}\" {spec['enc_extra']} "
            f"! video/x-h265,profile={spec['profile']},stream-format=byte-stream "
            f"! rtph265pay config-interval=-1 pt=96 name=pay0"
        )
    raise ValueError(f"unknown codec {codec!r} (h264 or h265)")


def launch_line(name, spec):
    kind = spec["kind"]
    if kind == "launch":
        return spec["launch"]
    if kind == "file":
        loc = spec["location"]
        if not os.path.isfile(loc):
            raise ValueError(f"mount {name}: file {loc!r} not found")
        codec = spec["codec"].lower()
        parse, pay = ("h265parse", "rtph265pay") if codec in ("h265", "hevc") else ("h264parse", "rtph264pay")
        demux = "matroskademux" if loc.endswith((".mkv", ".webm")) else (
            "tsdemux" if loc.endswith(".ts") else "qtdemux")
        return (f"( filesrc location=\"{loc}\" ! {demux} ! {parse} "
                f"! {pay} config-interval=-1 pt=96 name=pay0 )")
    if kind != "test":
        raise ValueError(f"mount {name}: unknown kind {kind!r}")
    size = f"format=I420,width={int(spec['width'])},height={int(spec['height'])},pixel-aspect-ratio=1/1"
    extra = (" " + spec["src_extra"]) if spec.get("src_extra") else ""
    if as_bool(spec["still"]):
        # One picture, repeated for ever: decoded frames are bit-identical (a frozen camera).
        src = (f"videotestsrc num-buffers=1 pattern={spec['pattern']}{extra} ! video/x-raw,{size} "
               f"! imagefreeze is-live=true")
    else:
        src = f"videotestsrc is-live=true pattern={spec['pattern']} horizontal-speed={int(spec['speed'])}{extra}"
    caps = f"video/x-raw,{size},framerate={int(spec['fps'])}/1"
    overlay = " ! timeoverlay halignment=left valignment=top font-desc=\"Sans 18\"" if as_bool(spec["overlay"]) else ""
    return f"( {src} ! {caps}{overlay} ! {encoder(spec)} )"


def parse_mount_arg(text):
    """NAME:key=value,key=value  ->  (name, dict)"""
    name, _, rest = text.partition(":")
    name = name.strip().strip("/")
    if not name:
        raise argparse.ArgumentTypeError(f"bad --mount {text!r}: expected NAME:key=value,...")
    spec = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        k, eq, v = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"bad --mount item {item!r}: expected key=value")
        spec[k.strip()] = v.strip()
    return name, spec


def build_mounts(args):
    mounts = {} if args.no_default_mounts else {k: dict(v) for k, v in MOUNTS.items()}
    if args.mounts_json:
        with open(args.mounts_json) as f:
            for k, v in json.load(f).items():
                mounts.setdefault(k.strip("/"), {}).update(v)
    for name, spec in args.mount or []:
        mounts.setdefault(name, {}).update(spec)
    if args.only:
        keep = {m.strip().strip("/") for m in args.only.split(",") if m.strip()}
        mounts = {k: v for k, v in mounts.items() if k in keep}
    out = {}
    for name, spec in mounts.items():
        full = dict(DEFAULTS)
        if spec.get("kind") == "file":
            full["shared"] = False
        full.update(spec)
        full.setdefault("shared", True)
        out[name] = full
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", default=os.environ.get("RTSP_ADDRESS", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("RTSP_PORT", "8554")))
    ap.add_argument("--mount", action="append", type=parse_mount_arg, metavar="NAME:k=v,...")
    ap.add_argument("--mounts-json", default=os.environ.get("RTSP_MOUNTS_JSON") or None)
    ap.add_argument("--no-default-mounts", action="store_true")
    ap.add_argument("--only", default=os.environ.get("RTSP_ONLY") or None,
                    help="comma-separated mount names to serve")
    ap.add_argument("--list", action="store_true", help="print the mounts and launch lines, then exit")
    ap.add_argument("--pidfile")
    ap.add_argument("--mounts-file", help="write the served mount names here (one a line) once listening")
    args = ap.parse_args()

    Gst.init(None)
    mounts = build_mounts(args)
    if not mounts:
        sys.exit("rtsp_server: no mounts configured")
    lines = {name: launch_line(name, spec) for name, spec in mounts.items()}
    if args.list:
        for name, line in lines.items():
            print(f"/{name}: {line}")
        return 0

    # Fail early, with the element name, if a plugin is missing.
    for name, line in lines.items():
        try:
            Gst.parse_launch(line.strip().strip("()"))
        except GLib.Error as e:
            sys.exit(f"rtsp_server: mount /{name}: cannot build pipeline: {e.message}\n  {line}")

    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    server.set_backlog(64)
    mpoints = server.get_mount_points()

    protected = {n: s for n, s in mounts.items() if s.get("user")}
    if protected:
        auth = GstRtspServer.RTSPAuth()
        anon = GstRtspServer.RTSPToken()
        anon.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "anonymous")
        auth.set_default_token(anon)
        for name, spec in protected.items():
            tok = GstRtspServer.RTSPToken()
            tok.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, f"user:{spec['user']}")
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(spec["user"], str(spec.get("password", ""))), tok)
        server.set_auth(auth)

    for name, spec in mounts.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(lines[name])
        factory.set_shared(as_bool(spec["shared"]))
        if protected:
            # role -> may construct (play). Anonymous clients get "access" without "construct" on
            # a protected mount, which makes the server answer 401 + WWW-Authenticate (not 404).
            if spec.get("user"):
                roles = {"anonymous": False, f"user:{spec['user']}": True}
            else:
                roles = {"anonymous": True, **{f"user:{s['user']}": True for s in protected.values()}}
            for r, construct in roles.items():
                factory.add_role_from_structure(Gst.Structure.new_from_string(
                    f'"{r}", media.factory.access=(boolean)true, '
                    f'media.factory.construct=(boolean){"true" if construct else "false"}'))
        mpoints.add_factory(f"/{name}", factory)
        extra = f", user {spec['user']}" if spec.get("user") else ""
        log(f"mount rtsp://{args.address}:{args.port}/{name} (shared={as_bool(spec['shared'])}{extra}): {lines[name]}")

    def on_client(_server, client):
        conn = client.get_connection()
        ip = conn.get_ip() if conn else "?"
        log(f"client connected from {ip}")
        client.connect("closed", lambda _c: log(f"client from {ip} closed"))

    server.connect("client-connected", on_client)

    if server.attach(None) == 0:
        sys.exit(f"rtsp_server: cannot listen on {args.address}:{args.port} (port in use?)")
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    if args.mounts_file:
        with open(args.mounts_file + ".tmp", "w") as f:
            f.write("".join(f"{name}\n" for name in mounts))
        os.replace(args.mounts_file + ".tmp", args.mounts_file)

    loop = GLib.MainLoop()

    def stop(signame):
        log(f"{signame}: shutting down")
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, stop, "SIGTERM")
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, stop, "SIGINT")
    log(f"RTSP server listening on {args.address}:{args.port} with {len(mounts)} mounts "
        f"({Gst.version_string()})")
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

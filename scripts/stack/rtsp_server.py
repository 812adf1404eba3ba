#!/usr/bin/python3
"""RTSP test cameras for the local real stack (GStreamer's RTSP server, Debian packages).

Run with the SYSTEM python (/usr/bin/python3): it has python3-gi; a pyenv python has not.

    /usr/bin/python3 scripts/stack/rtsp_server.py [--port 8554] [--address 127.0.0.1]
        [--mount NAME:key=value,key=value ...] [--mounts-json FILE] [--no-default-mounts]
        [--only NAME,NAME] [--udp-ports LO-HI] [--auth-methods basic,digest] [--list] [--check]

Default mounts (rtsp://127.0.0.1:8554/<name>), all live, 640x360 @ 25 fps, H.264 Main,
no B-frames, IDR every 50 frames (2 s), ~1000 kbit/s, SPS/PPS before every IDR:
    moving   SMPTE bars scrolling horizontally (mean luma ~121, every frame differs)
    black    all black (mean luma 16, limited range)
    frozen   one still SMPTE picture for ever (mean luma ~121, bit-identical decoded frames)

More default mounts for the ingest tests (same pipeline model: shared -- except rtcponly --,
nothing runs until a client connects, the pipeline stops when the last client leaves):
    secure   = moving, but needs RTSP auth: user "framewire", password "s3cret-cam"; the server
             offers Digest AND Basic (two WWW-Authenticate headers). No or wrong credentials: 401.
    h265     H.265 Main (x265enc) 640x360 25 fps, no B-frames, IDR every 50 frames, ~1000 kbit/s
    mjpeg    Motion JPEG (jpegenc quality=85 ! rtpjpegpay, payload type 26) 640x360 25 fps
    audio    NO video: one audio stream only, 440 Hz sine, PCMA/8000 mono (G.711 A-law, pt 8)
    big      H.264 1920x1080 @ 2 fps, Constrained Baseline (ultrafast: CAVLC), pattern=snow
             (random noise), constant QP 10, IDR every 2nd frame (one IDR a second, one P-frame
             between). Measured over RTSP: IDR access units 2.67 MiB (~2,794,000 B incl.
             SPS/PPS), P 2.41 MiB; ~42 Mbit/s; ~11% of one core while a client is connected.
             Use TCP: over UDP the ~2,000-packet bursts overflow a default client socket buffer
             and most frames lose packets.
    rtcponly = moving, but each client's video stops 6 s after its playback started
             (video_stops_after=6): the RTSP session stays up and RTCP keeps coming (see
             video_stops_after below). Not shared: every client gets its own pipeline and
             timeline (6 s of video, then RTCP only).

Like a live camera, and hardened against gst-rtsp-server 1.22 races that many clients of one
mount trigger (measured: 6 ffprobe loops joining and leaving /moving aborted or wedged the server
within ~250 sessions; with these, 480 sessions and no error):
    - medias are not seekable (publish clock mode clock+offset, SDP a=range:npt=now-): a PLAY
      with a Range header no longer seeks the shared pipeline, and a failed seek no longer puts
      it in ERROR, after which every client got 503 until all of its sessions were gone;
    - a PLAY on a shared media another client has just started waits (<= 2 s) until the first
      buffer's segment reached every stream (else: assertion in gst_rtsp_media_get_rates);
    - so a client joining a running shared stream starts at its next keyframe (<= 2 s), as
      with many cameras; the seek used to restart the encoder for every client on the mount.
      (Forcing a keyframe per joining client was tried: the GOPs of the other clients, which
      tests line up with ffprobe's, became irregular.)
    - a client arriving while the mount's shared media is in ERROR or UNPREPARING gets a fresh
      pipeline (CameraFactory.do_gen_key), and pipeline errors are logged.

UDP transport (client ports) works on every mount; the server's RTP/RTCP sockets are bound to
--address, ports from --udp-ports (default 30000-39999).

Mount spec keys (a dict per mount; --mount NAME:k=v,... or --mounts-json {"name": {...}}):
    kind        "test" (videotestsrc, default) | "file" (pre-encoded MP4/MKV/TS, passthrough)
                | "audio" (audiotestsrc only, no video) | "launch" (a raw gst-rtsp launch line
                in "launch")
    pattern     videotestsrc pattern (smpte, black, ball, snow, ...)   [test]
    speed       videotestsrc horizontal-speed (0 = no scrolling)        [test]
    still       true: encode ONE generated picture for ever (imagefreeze): bit-identical frames.
                (pattern=smpte alone is not still: its bottom-right corner is animated noise)
    src_extra   extra videotestsrc properties, e.g. "foreground-color=0xffff0000"
    width, height, fps                                                   [test]
    codec       h264 (x264enc) | h265 (x265enc) | mjpeg (jpegenc)        [test]
                pcma (default) | pcmu | opus                              [audio]
    quality     JPEG quality (85)                                         [test, mjpeg]
    wave, freq  audiotestsrc wave (sine) and frequency in Hz (440)        [audio]
    profile     H.264/H.265 profile forced via caps (main)               [test]
    preset      x264/x265 speed-preset (veryfast; ultrafast gives Baseline, not Main)
    bitrate     kbit/s (1000); gop: key-int-max in frames (50); threads: encoder threads (1 =
                one slice per picture)
    enc_extra   extra encoder element properties, e.g. "pass=quant quantizer=12"
    encoder_opts  x264/x265 option string ("scenecut=0": a fixed GOP, IDR exactly every `gop`)
    overlay     true: burn a running timestamp into the picture (needs the pango plugin)
    location    media file (plays once per client, in real time, then EOS)  [file]
    shared      share one pipeline between all clients (default true for test, false for file)
    video_stops_after   SECONDS: a camera that keeps sending RTCP but no more video. That many
                seconds after the client's first RTP packet, the RTP packets stop (every stream
                of the mount); the RTSP session stays up (keep-alives are answered) and RTCP
                sender reports keep coming every ~5 s (rtpbin's RTCP interval, randomised
                0.5-1.5x), over UDP and over TCP (interleaved channel 1, 3, ...). Implies
                shared=false (each client its own timeline).
                How: a pad probe on rtpbin's send_rtp_src_N pads drops the packets AFTER the RTP
                session has counted them, so the session stays a sender and its SRs go on (their
                RTP timestamp follows the clock, their packet/octet counts keep growing: as if
                the network lost every RTP packet). Dropping before the session (a valve or
                probe at the payloader) makes GStreamer demote the source to a receiver after
                max(2 RTCP intervals, 5 s) without RTP: RTCP then continues as receiver reports
                (RR + SDES), no SR. rtsp_server.py logs when a client's video stops.
    user, password   require RTSP auth (--auth-methods, default Digest and Basic) for this mount.
                A user name stands for one password across all mounts.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

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
    "quality": 85,
    "wave": "sine",
    "freq": 440,
}

# Defaults that depend on the kind (applied before the mount's own keys).
KIND_DEFAULTS = {
    "file": {"shared": False},
    "audio": {"codec": "pcma"},
}

MOUNTS = {
    "moving": {"pattern": "smpte", "speed": 4},
    "black": {"pattern": "black"},
    # One SMPTE picture (its noise corner frozen too), constant QP so that P-frames are pure
    # skips: every decoded frame is bit-identical (YDIF 0), mean luma ~121.
    "frozen": {"pattern": "smpte", "still": True, "enc_extra": "pass=quant quantizer=10"},
    # /moving behind RTSP auth (Digest and Basic offered; 401 without or with wrong credentials).
    "secure": {"pattern": "smpte", "speed": 4, "user": "framewire", "password": "s3cret-cam"},
    "h265": {"pattern": "smpte", "speed": 4, "codec": "h265"},
    "mjpeg": {"pattern": "smpte", "speed": 4, "codec": "mjpeg"},
    "audio": {"kind": "audio"},
    # Huge access units: random noise at 1080p, constant QP 10: IDR 2.67 MiB, P 2.41 MiB (QP 4:
    # 3.2 MiB, QP 16: 2.2 MiB). 2 fps + ultrafast keep it at ~11% of one core while playing.
    "big": {"pattern": "snow", "width": 1920, "height": 1080, "fps": 2, "gop": 2,
            "preset": "ultrafast", "enc_extra": "pass=quant quantizer=10"},
    # /moving whose RTP stops 6 s into each client's playback; RTCP SRs keep coming.
    "rtcponly": {"pattern": "smpte", "speed": 4, "video_stops_after": 6},
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
    if codec in ("mjpeg", "jpeg"):
        return (f"jpegenc quality={int(spec['quality'])} "
                f"! rtpjpegpay pt=26 name=pay0")
    raise ValueError(f"unknown codec {codec!r} (h264, h265 or mjpeg)")


def audio_line(name, spec):
    codec = spec["codec"].lower()
    src = (f"audiotestsrc is-live=true wave={spec['wave']} freq={float(spec['freq'])} volume=0.3 "
           f"samplesperbuffer={{spb}} ! audioconvert ! audioresample")
    if codec in ("pcma", "alaw"):
        enc = "audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay pt=8 name=pay0"
        spb = 160  # 20 ms packets
    elif codec in ("pcmu", "mulaw", "ulaw"):
        enc = "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay pt=0 name=pay0"
        spb = 160
    elif codec == "opus":
        enc = "audio/x-raw,rate=48000,channels=2 ! opusenc bitrate=64000 ! rtpopuspay pt=97 name=pay0"
        spb = 960
    else:
        raise ValueError(f"mount {name}: unknown audio codec {codec!r} (pcma, pcmu or opus)")
    return f"( {src.format(spb=spb)} ! {enc} )"


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
    if kind == "audio":
        return audio_line(name, spec)
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


def set_auth_methods(auth, methods):
    """GstRTSPAuth offers Basic only by default. The C API takes OR-ed GstRTSPAuthMethod flags,
    but GObject introspection sees a plain enum (DIGEST|BASIC = 3 is rejected): for both, call
    the C function through ctypes."""
    flags = 0
    if "digest" in methods:
        flags |= int(GstRtsp.RTSPAuthMethod.DIGEST)
    if "basic" in methods:
        flags |= int(GstRtsp.RTSPAuthMethod.BASIC)
    if methods == {"basic"} or methods == {"digest"}:
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod(flags))
        return
    import ctypes

    lib = ctypes.CDLL("libgstrtspserver-1.0.so.0")
    lib.gst_rtsp_auth_set_supported_methods.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.gst_rtsp_auth_set_supported_methods.restype = None
    get_ptr = ctypes.pythonapi.PyCapsule_GetPointer
    get_ptr.argtypes = [ctypes.py_object, ctypes.c_char_p]
    get_ptr.restype = ctypes.c_void_p
    lib.gst_rtsp_auth_set_supported_methods(get_ptr(auth.__gpointer__, None), flags)
    got = int(auth.get_supported_methods())
    if got != flags:
        sys.exit(f"rtsp_server: could not enable auth methods {sorted(methods)} (got {got})")


class CameraFactory(GstRtspServer.RTSPMediaFactory):
    """A mount's media factory that never hands a new client a dead shared pipeline.

    gst-rtsp-server (1.22) caches one shared media per key (the URL path). When that pipeline
    posts an error, or a client arrives while the last one's teardown is still unpreparing it,
    the cached media answers every later DESCRIBE with 503 until all of its sessions are gone
    (a CI run saw 30 s of 503s on /moving). This factory remembers the shared media it made
    last and, when a client arrives and that media is in ERROR or UNPREPARING, moves the mount
    to a new key: the client gets a fresh pipeline, the old one finishes on its own."""

    def __init__(self, name, video_stops_after=None):
        super().__init__()
        self.name = name
        self.video_stops_after = video_stops_after
        self.generation = 0
        self.current = None
        self.medias = set()
        self.lock = threading.Lock()
        self.connect("media-configure", self._on_media)

    def do_gen_key(self, url):
        # The default key: port, path and query (GstRTSPMediaFactory's gen_key).
        key = f"{url.port}{url.abspath}" + (f"?{url.query}" if url.query else "")
        if not self.is_shared():
            return key
        with self.lock:
            media = self.current
        # get_status() waits while the media is PREPARING, as the client's own prepare would.
        status = media.get_status() if media is not None else None
        with self.lock:
            if media is not None and media is self.current and status in (
                GstRtspServer.RTSPMediaStatus.ERROR,
                GstRtspServer.RTSPMediaStatus.UNPREPARING,
            ):
                self.generation += 1
                self.current = None
                log(f"mount /{self.name}: shared pipeline is {status.value_nick}; the next client "
                    f"gets a fresh one (generation {self.generation})")
            generation = self.generation
        return f"{key}#{generation}" if generation else key

    def _on_media(self, _factory, media):
        with self.lock:
            self.current = media
            # Holding the Python wrapper keeps its attribute (fw_playing) for later signals.
            self.medias.add(media)
        media.fw_playing = False
        media.connect("target-state", self._on_target_state)
        media.connect("unprepared", self._on_unprepared)
        if self.video_stops_after is not None:
            # rtpbin joins the pipeline while the media prepares: arm the stop once prepared.
            media.connect("prepared", self._arm_video_stop)
        pipeline = media.get_element().get_parent()
        if pipeline is not None:
            pipeline.get_bus().set_sync_handler(self._on_message)

    @staticmethod
    def _on_target_state(media, state):
        # PLAYING once a client plays it; PAUSED (not NULL) while it is only prepared.
        media.fw_playing = int(state) == int(Gst.State.PLAYING)

    def _arm_video_stop(self, media):
        """Drop every RTP packet leaving rtpbin (send_rtp_src_N) from `video_stops_after` seconds
        after the first one on: the RTP session has counted them, so it stays a sender and keeps
        sending SRs, but the client gets no more video (UDP or TCP)."""
        pipeline = media.get_element().get_parent()
        rtpbins = [] if pipeline is None else [
            e for e in iter_elements(pipeline)
            if e.get_factory() is not None and e.get_factory().get_name() == "rtpbin"]
        pads = [p for b in rtpbins for p in b.srcpads if p.get_name().startswith("send_rtp_src_")]
        if not pads:
            log(f"mount /{self.name}: no rtpbin send_rtp_src pad found: video_stops_after not applied")
            return
        limit = float(self.video_stops_after)
        state = {"first": None, "stopped": False}
        lock = threading.Lock()
        name = self.name

        def probe(_pad, _info):
            now = time.monotonic()
            with lock:
                if state["first"] is None:
                    state["first"] = now
                if now - state["first"] < limit:
                    return Gst.PadProbeReturn.OK
                if not state["stopped"]:
                    state["stopped"] = True
                    log(f"mount /{name}: video stopped {limit:g} s after the first RTP packet "
                        f"(RTSP session and RTCP go on)")
            return Gst.PadProbeReturn.DROP

        for pad in pads:
            pad.add_probe(Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST, probe)

    def _on_unprepared(self, media):
        with self.lock:
            self.medias.discard(media)

    def _on_message(self, _bus, message):
        if message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            log(f"mount /{self.name}: pipeline error from {message.src.get_name()}: {err.message} ({debug})")
        return Gst.BusSyncReply.PASS


def iter_elements(bin_):
    """Every element in bin_, recursively (Gst.Iterator as a Python list)."""
    out = []
    it = bin_.iterate_recurse()
    while True:
        res, elem = it.next()
        if res == Gst.IteratorResult.OK:
            out.append(elem)
        elif res == Gst.IteratorResult.RESYNC:
            out.clear()
            it.resync()
        else:
            return out


def hold_play_until_streams_flow(_client, ctx):
    """pre-play-request handler. gst-rtsp-server 1.22 aborts the whole server (assertion in
    gst_rtsp_media_get_rates) when a client PLAYs a shared media that another client has just
    started, before the first buffer's segment has reached every stream: two cameras opening
    the same idle mount at once did it. Such a PLAY waits (at most 2 s) for the segments."""
    media = ctx.media
    if media is None or not getattr(media, "fw_playing", False):
        return GstRtsp.RTSPStatusCode.OK
    started = time.monotonic()
    while time.monotonic() < started + 2.0:
        if all(stream_has_segment(media.get_stream(i)) for i in range(media.n_streams())):
            break
        time.sleep(0.005)
    waited = time.monotonic() - started
    if waited > 0.05:
        log(f"PLAY held {waited:.2f} s for the shared media's first segment")
    return GstRtsp.RTSPStatusCode.OK


def stream_has_segment(stream):
    if not (stream.is_complete() and stream.is_sender()):
        return True
    ok, _rate, _applied = stream.get_rates()
    return ok


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
        full.update(KIND_DEFAULTS.get(spec.get("kind", "test"), {}))
        full.update(spec)
        full.setdefault("shared", True)
        if full.get("video_stops_after") not in (None, ""):
            try:
                secs = float(full["video_stops_after"])
            except ValueError:
                sys.exit(f"rtsp_server: mount /{name}: bad video_stops_after {full['video_stops_after']!r}")
            if secs < 0:
                sys.exit(f"rtsp_server: mount /{name}: video_stops_after must be >= 0")
            full["video_stops_after"] = secs
            full["shared"] = False   # one timeline per client
        else:
            full["video_stops_after"] = None
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
    ap.add_argument("--udp-ports", default=os.environ.get("RTSP_UDP_PORTS", "30000-39999"),
                    help="LO-HI: server RTP/RTCP ports for UDP transport (bound to --address)")
    ap.add_argument("--auth-methods", default=os.environ.get("RTSP_AUTH_METHODS", "digest,basic"),
                    help="comma-separated: digest, basic (offered on mounts with a user)")
    ap.add_argument("--list", action="store_true", help="print the mounts and launch lines, then exit")
    ap.add_argument("--check", action="store_true",
                    help="build every mount's pipeline (all plugins present?), then exit")
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
    if args.check:
        log(f"{len(lines)} pipelines build: {', '.join(lines)}")
        return 0

    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    server.set_backlog(64)
    mpoints = server.get_mount_points()

    # UDP transport: bind the server's RTP/RTCP sockets to --address (not 0.0.0.0), ports from
    # this range (a pool with unicast addresses is used for unicast UDP).
    lo, _, hi = args.udp_ports.partition("-")
    udp_pool = GstRtspServer.RTSPAddressPool()
    if not udp_pool.add_range(args.address, args.address, int(lo), int(hi or lo), 0):
        sys.exit(f"rtsp_server: bad --udp-ports {args.udp_ports!r} for address {args.address}")

    protected = {n: s for n, s in mounts.items() if s.get("user")}
    if protected:
        methods = {m.strip().lower() for m in args.auth_methods.split(",") if m.strip()}
        if not methods or methods - {"basic", "digest"}:
            sys.exit(f"rtsp_server: bad --auth-methods {args.auth_methods!r} (basic, digest)")
        auth = GstRtspServer.RTSPAuth()
        auth.set_realm("Framewire test camera")
        set_auth_methods(auth, methods)
        anon = GstRtspServer.RTSPToken()
        anon.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "anonymous")
        auth.set_default_token(anon)
        for user, password in {s["user"]: str(s.get("password", "")) for s in protected.values()}.items():
            for method in sorted(methods):
                tok = GstRtspServer.RTSPToken()
                tok.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, f"user:{user}")
                if method == "basic":
                    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), tok)
                else:
                    auth.add_digest(user, password, tok)
        server.set_auth(auth)

    for name, spec in mounts.items():
        factory = CameraFactory(name, spec["video_stops_after"])
        factory.set_publish_clock_mode(GstRtspServer.RTSPPublishClockMode.CLOCK_AND_OFFSET)
        factory.set_launch(lines[name])
        factory.set_shared(as_bool(spec["shared"]))
        factory.set_address_pool(udp_pool)
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
        if spec["video_stops_after"] is not None:
            extra += f", video stops after {spec['video_stops_after']:g} s"
        log(f"mount rtsp://{args.address}:{args.port}/{name} (shared={as_bool(spec['shared'])}{extra}): {lines[name]}")

    def on_client(_server, client):
        conn = client.get_connection()
        ip = conn.get_ip() if conn else "?"
        log(f"client connected from {ip}")
        client.connect("closed", lambda _c: log(f"client from {ip} closed"))
        client.connect("pre-play-request", hold_play_until_streams_flow)

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

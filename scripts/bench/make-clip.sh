#!/usr/bin/env bash
# Generate a benchmark clip (idempotent, cached): a camera-like H.264 or H.265 clip.
#
#   scripts/bench/make-clip.sh [--force] [--quiet]
#
# Prints the path of the MP4 on stdout (logs go to stderr). Also writes, next to it:
#   <name>.h264   the same access units as an Annex B byte stream (SPS/PPS before every IDR),
#                 for looping servers (scripts/bench/rtsp_bench_server.py); <name>.h265 for
#                 CLIP_CODEC=h265 (VPS/SPS/PPS before every IDR)
#   <name>.json   the parameters and the measured facts (bitrate, frames, mean AU size, ...)
#
# Defaults: 60 s, 1280x720, 25 fps, libx264 Main, no B-frames, closed GOP of exactly 50 frames
# (scenecut=0: IDR at frame 0, 50, 100, ...), 2 Mbit/s (maxrate 2M, bufsize 4M), testsrc2 plus
# temporal noise (a camera's sensor noise) so that the bitrate is realistic. The frame count is a
# multiple of the GOP, so a looped clip goes IDR -> ... -> last P -> IDR without a broken GOP.
#
# Env: FW_STACK_DIR (cache in $FW_STACK_DIR/bench), CLIP_SECONDS (60), CLIP_SIZE (1280x720),
#      CLIP_FPS (25), CLIP_BITRATE (2M), CLIP_GOP (50), CLIP_NOISE (10, ffmpeg noise alls=),
#      CLIP_PRESET (fast), CLIP_PROFILE (main), CLIP_CODEC (h264, or h265: libx265 with the same
#      rate control, no B-frames, closed GOPs of IDR pictures).
set -euo pipefail
FW_COMPONENT=bench-clip
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../stack/lib.sh"

FORCE=0 QUIET=0
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    --quiet) QUIET=1 ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
  esac
done
log() { (( QUIET )) || fw_log "$@" >&2; }

SECONDS_="${CLIP_SECONDS:-60}"
SIZE="${CLIP_SIZE:-1280x720}"
FPS="${CLIP_FPS:-25}"
BITRATE="${CLIP_BITRATE:-2M}"
GOP="${CLIP_GOP:-50}"
NOISE="${CLIP_NOISE:-10}"
PRESET="${CLIP_PRESET:-fast}"
PROFILE="${CLIP_PROFILE:-main}"
CODEC="${CLIP_CODEC:-h264}"
case "$CODEC" in
  h264) encoder=(-c:v libx264 -profile:v "$PROFILE" -x264-params "scenecut=0:open-gop=0"); bsf=h264_mp4toannexb ;;
  h265) encoder=(-c:v libx265 -profile:v "$PROFILE" -x265-params "scenecut=0:open-gop=0:bframes=0:repeat-headers=1:log-level=error"); bsf=hevc_mp4toannexb ;;
  *) fw_die "CLIP_CODEC must be h264 or h265 (got $CODEC)" ;;
esac

[[ "$SIZE" =~ ^[0-9]+x[0-9]+$ ]] || fw_die "CLIP_SIZE must be WxH (got $SIZE)"
for v in SECONDS_ FPS GOP NOISE; do [[ "${!v}" =~ ^[0-9]+$ ]] || fw_die "$v must be an integer (got ${!v})"; done
FRAMES=$(( SECONDS_ * FPS ))
(( FRAMES % GOP == 0 )) || fw_warn "$FRAMES frames is not a multiple of GOP $GOP: the loop point is mid-GOP"

# bufsize = 2 x bitrate (number with an optional k/M suffix)
num="${BITRATE%[kKmM]}"; suf="${BITRATE#"$num"}"
[[ "$num" =~ ^[0-9]+$ ]] || fw_die "CLIP_BITRATE must be like 2M or 1500k (got $BITRATE)"
BUFSIZE="$(( num * 2 ))$suf"

DIR="$FW_STACK_DIR/bench"
NAME="clip-${SIZE}-${FPS}fps-${BITRATE}-${SECONDS_}s-g${GOP}-n${NOISE}-${PROFILE}-${PRESET}"
[[ "$CODEC" == h264 ]] || NAME="$NAME-$CODEC"
MP4="$DIR/$NAME.mp4" ES="$DIR/$NAME.$CODEC" META="$DIR/$NAME.json"
mkdir -p "$DIR"

if (( ! FORCE )) && [[ -s "$MP4" && -s "$ES" && -s "$META" ]]; then
  log "cached: $MP4"
  echo "$MP4"
  exit 0
fi

if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then fw_ensure_pkgs ffmpeg; fi
t0=$EPOCHREALTIME
log "encoding $NAME ($FRAMES frames) ..."
tmp="$DIR/.$NAME.$$"
trap 'rm -f "$tmp".*' EXIT
# -threads 2: the machine has 2 cores and other work runs on it.
ffmpeg -hide_banner -nostdin -loglevel error -y \
  -f lavfi -i "testsrc2=size=$SIZE:rate=$FPS,noise=alls=$NOISE:allf=t,format=yuv420p" \
  -frames:v "$FRAMES" -an \
  "${encoder[@]}" -preset "$PRESET" -pix_fmt yuv420p -threads 2 \
  -b:v "$BITRATE" -maxrate "$BITRATE" -bufsize "$BUFSIZE" -bf 0 -g "$GOP" -keyint_min "$GOP" \
  -movflags +faststart "$tmp.mp4"
# The same access units as Annex B (parameter sets in front of every IDR), for looping sources.
ffmpeg -hide_banner -nostdin -loglevel error -y -i "$tmp.mp4" -c:v copy -bsf:v "$bsf" \
  -f "${CODEC/h265/hevc}" "$tmp.es"

# Facts, measured with ffprobe.
ffprobe -v error -select_streams v:0 -show_entries packet=size,flags -of csv=p=0 "$tmp.mp4" >"$tmp.pk"
read -r n bytes nkey keybytes maxsize < <(awk -F, '
  { n++; s += $1; if ($1 > m) m = $1; if ($2 ~ /K/) { k++; ks += $1 } }
  END { printf "%d %d %d %d %d\n", n, s, k, ks, m }' "$tmp.pk")
codec="" profile="" width=0 height=0 rate="" bframes=0
while IFS='=' read -r k v; do
  case "$k" in
    codec_name) codec="$v" ;; profile) profile="$v" ;; width) width="$v" ;; height) height="$v" ;;
    r_frame_rate) rate="$v" ;; has_b_frames) bframes="$v" ;;
  esac
done < <(ffprobe -v error -select_streams v:0 \
  -show_entries stream=codec_name,profile,width,height,r_frame_rate,has_b_frames -of default=nw=1 "$tmp.mp4")
dur="$(awk -v n="$n" -v f="$FPS" 'BEGIN { printf "%.3f", n / f }')"
kbps="$(awk -v b="$bytes" -v d="$dur" 'BEGIN { printf "%.0f", b * 8 / d / 1000 }')"
mean_au="$(awk -v b="$bytes" -v n="$n" 'BEGIN { printf "%.0f", b / n }')"
mean_idr="$(awk -v b="$keybytes" -v n="$nkey" 'BEGIN { printf "%.0f", (n ? b / n : 0) }')"
cat >"$tmp.json" <<EOF
{
  "mp4": "$MP4",
  "annexb": "$ES",
  "codec": "$codec", "profile": "$profile", "width": $width, "height": $height,
  "fps": $FPS, "r_frame_rate": "$rate", "has_b_frames": $bframes,
  "gop": $GOP, "frames": $n, "idr_frames": $nkey, "duration_s": $dur,
  "target_bitrate": "$BITRATE", "bitrate_kbps": $kbps,
  "bytes": $bytes, "mean_au_bytes": $mean_au, "mean_idr_bytes": $mean_idr, "max_au_bytes": $maxsize,
  "noise": $NOISE, "preset": "$PRESET"
}
EOF
mv -f "$tmp.mp4" "$MP4"; mv -f "$tmp.es" "$ES"; mv -f "$tmp.json" "$META"
log "done in $(fw_since "$t0") s: $codec $profile ${width}x${height} $rate, $n frames ($nkey IDR), ${kbps} kbit/s, mean AU $mean_au B, mean IDR $mean_idr B, max AU $maxsize B"
echo "$MP4"

#!/usr/bin/env bash
# Verify the RTSP test cameras with ffprobe/ffmpeg (the statistics oracle), over TCP:
# codec/profile/size/rate, real arrival rate, GOP, B-frames, luma (signalstats YAVG / YDIF).
#
#   scripts/stack/verify-rtsp.sh [MOUNT...]      (default: moving black frozen)
#
# Env: RTSP_PORT (8554), VERIFY_SECONDS (10). Exits non-zero if a check fails.
# Expectations: every mount h264 Main 640x360 25/1, no B-frames, 23.5..26.5 frames/s arriving,
#   black: YAVG < 20;  moving: YAVG > 40 and frames differ (mean YDIF > 1);
#   frozen: YAVG > 40, constant (max-min < 0.5) and consecutive frames identical (max YDIF < 0.5).
set -euo pipefail
FW_COMPONENT=verify
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECS="${VERIFY_SECONDS:-10}"
MOUNTS=("$@")
(( ${#MOUNTS[@]} )) || MOUNTS=(moving black frozen)
if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then fw_ensure_pkgs ffmpeg; fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

fw_log "probing ${MOUNTS[*]} on rtsp://127.0.0.1:$RTSP_PORT for ${SECS}s each (in parallel) ..."
for m in "${MOUNTS[@]}"; do
  url="rtsp://127.0.0.1:$RTSP_PORT/$m"
  (
    timeout 20 ffprobe -v error -rtsp_transport tcp -select_streams v:0 \
      -show_entries stream=codec_name,profile,width,height,r_frame_rate,has_b_frames \
      -of default=nw=1 "$url" >"$TMP/$m.probe" 2>"$TMP/$m.probe.err" || true
    # Wall-clock timestamps: the frame times are arrival times, so the rate is the real one.
    timeout $((SECS + 20)) ffmpeg -hide_banner -nostats -loglevel info -use_wallclock_as_timestamps 1 \
      -rtsp_transport tcp -i "$url" -t "$SECS" -map 0:v:0 \
      -vf "showinfo,signalstats,metadata=print:file=$TMP/$m.meta" -f null - >"$TMP/$m.err" 2>&1 || true
  ) &
done
wait

fail=0
for m in "${MOUNTS[@]}"; do
  line="$(awk -v m="$m" -v secs="$SECS" '
    FILENAME ~ /\.probe$/ { split($0, kv, "="); p[kv[1]] = kv[2]; next }
    FILENAME ~ /\.err$/ && /Parsed_showinfo/ && / n: *[0-9]+/ {
      t = $0; sub(/.*pts_time:/, "", t); sub(/ .*/, "", t)
      if (n == 0) t0 = t; t1 = t; n++
      ty = $0; sub(/.* type:/, "", ty); ty = substr(ty, 1, 1); types[ty]++
      if (ty == "I" || $0 ~ /iskey:1/) { if (lastk != "") gops[n - 1 - lastk]++; lastk = n - 1 }
      next
    }
    FILENAME ~ /\.meta$/ && /YAVG=/ { v = $0; sub(/.*=/, "", v); v += 0; ys += v; yn++
      if (yn == 1 || v < ymin) ymin = v; if (yn == 1 || v > ymax) ymax = v; next }
    FILENAME ~ /\.meta$/ && /YDIF=/ { v = $0; sub(/.*=/, "", v); v += 0; dn++
      if (dn > 1) { ds += v; if (v > dmax) dmax = v } next }
    END {
      fps = (t1 > t0) ? (n - 1) / (t1 - t0) : 0
      g = ""; for (k in gops) g = g (g == "" ? "" : ",") k "x" gops[k]
      printf "%s|%s|%s|%sx%s|%s|%d|%.2f|%d|%d|%d|%s|%.2f|%.2f|%.2f|%.3f|%.3f\n", m, p["codec_name"], p["profile"],
        p["width"], p["height"], p["r_frame_rate"], n, fps, types["I"], types["P"], types["B"], g,
        ymin, (yn ? ys / yn : 0), ymax, (dn > 1 ? ds / (dn - 1) : 0), dmax
    }' "$TMP/$m.probe" "$TMP/$m.err" "$TMP/$m.meta" 2>/dev/null || true)"
  IFS='|' read -r _ codec prof size rate n fps ni np nb gops ymin yavg ymax dmean dmax <<<"$line"
  printf '%-8s %s %s %s %s | %s frames in %ss of arrival = %s fps | I=%s P=%s B=%s GOP=%s | YAVG min/mean/max %s/%s/%s | YDIF mean %s max %s\n' \
    "$m" "${codec:-?}" "${prof:-?}" "${size:-?}" "${rate:-?}" "${n:-0}" "$SECS" "${fps:-0}" "${ni:-0}" "${np:-0}" "${nb:-0}" \
    "${gops:--}" "${ymin:-?}" "${yavg:-?}" "${ymax:-?}" "${dmean:-?}" "${dmax:-?}"
  problems=()
  [[ "$codec" == h264 ]] || problems+=("codec ${codec:-none} (want h264; ffprobe: $(tr '\n' ' ' <"$TMP/$m.probe.err" | cut -c1-200))")
  [[ "$prof" == Main ]] || problems+=("profile $prof (want Main)")
  [[ "$size" == 640x360 ]] || problems+=("size $size")
  [[ "$rate" == 25/1 ]] || problems+=("r_frame_rate $rate")
  [[ "${nb:-0}" == 0 ]] || problems+=("$nb B-frames")
  awk -v f="${fps:-0}" 'BEGIN { exit !(f >= 23.5 && f <= 26.5) }' || problems+=("arrival rate $fps fps")
  case "$m" in
    black) awk -v a="$ymax" 'BEGIN { exit !(a < 20) }' || problems+=("black but YAVG max $ymax") ;;
    moving) awk -v a="$ymin" -v d="$dmean" 'BEGIN { exit !(a > 40 && d > 1) }' || problems+=("moving but YAVG min $ymin / YDIF mean $dmean") ;;
    frozen) awk -v a="$ymin" -v b="$ymax" -v d="$dmax" 'BEGIN { exit !(a > 40 && b - a < 0.5 && d < 0.5) }' \
              || problems+=("frozen but YAVG $ymin..$ymax / YDIF max $dmax") ;;
  esac
  if (( ${#problems[@]} )); then
    fail=1
    for p in "${problems[@]}"; do fw_warn "/$m: $p"; done
  fi
done
if (( fail )); then fw_die "RTSP verification failed"; fi
fw_log "all mounts OK"

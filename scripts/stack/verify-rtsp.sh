#!/usr/bin/env bash
# Verify the RTSP test cameras with ffprobe/ffmpeg (the statistics oracle), over TCP:
# codec/profile/size/rate, real arrival rate, GOP, B-frames, luma (signalstats YAVG / YDIF).
#
#   scripts/stack/verify-rtsp.sh [MOUNT...]
#       (default: the mounts the running server listed in $FW_STACK_DIR/rtsp.mounts, else
#        moving black frozen secure h265 mjpeg audio big)
#
# Env: RTSP_PORT (8554), VERIFY_SECONDS (10), RTSP_SECURE_USER / RTSP_SECURE_PASSWORD
#      (framewire / s3cret-cam). Exits non-zero if a check fails.
# Expectations (all 640x360 25/1, 23.5..26.5 frames/s arriving, no B-frames, unless said):
#   moving, black, frozen: h264 Main;  black: YAVG < 20;  moving: YAVG > 40 and frames differ
#     (mean YDIF > 1);  frozen: YAVG > 40, constant (max-min < 0.5), identical frames (max YDIF < 0.5)
#   secure: like moving, with credentials; without credentials and with a wrong password: 401
#   h265: hevc Main (+ moving's luma checks);  mjpeg: mjpeg (+ moving's luma checks)
#   audio: no video stream; one pcm_alaw 8000 Hz mono stream, ~50 packets/s arriving
#   big: h264 1920x1080 2/1, 1.6..2.4 frames/s, every IDR access unit > 1.5 MiB and < 7 MiB
#   other names: a video stream arrives (no other checks)
set -euo pipefail
FW_COMPONENT=verify
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECS="${VERIFY_SECONDS:-10}"
SEC_USER="${RTSP_SECURE_USER:-framewire}"
SEC_PASS="${RTSP_SECURE_PASSWORD:-s3cret-cam}"
MOUNTS=("$@")
if (( ${#MOUNTS[@]} == 0 )); then
  if [[ -s "$FW_STACK_DIR/rtsp.mounts" ]]; then mapfile -t MOUNTS <"$FW_STACK_DIR/rtsp.mounts"
  else MOUNTS=(moving black frozen secure h265 mjpeg audio big)
  fi
fi
if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then fw_ensure_pkgs ffmpeg; fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
BASE="rtsp://127.0.0.1:$RTSP_PORT"
MIB=1048576

# The URL a client uses for mount $1 (credentials in the URL for /secure).
url_of() {
  if [[ "$1" == secure ]]; then echo "rtsp://$SEC_USER:$SEC_PASS@127.0.0.1:$RTSP_PORT/$1"
  else echo "$BASE/$1"
  fi
}

fw_log "probing ${MOUNTS[*]} on $BASE for ${SECS}s each (in parallel) ..."
for m in "${MOUNTS[@]}"; do
  url="$(url_of "$m")"
  (
    timeout 20 ffprobe -v error -rtsp_transport tcp \
      -show_entries stream=codec_type,codec_name,profile,width,height,r_frame_rate,has_b_frames,sample_rate,channels \
      -of compact=p=0 "$url" >"$TMP/$m.streams" 2>"$TMP/$m.probe.err" || true
    grep -m1 '^codec_name=.*codec_type=video\|codec_type=video' "$TMP/$m.streams" | tr '|' '\n' >"$TMP/$m.probe" || true
    if [[ "$m" == audio ]]; then
      timeout $((SECS + 20)) ffprobe -v error -rtsp_transport tcp -read_intervals "%+$SECS" -select_streams a:0 \
        -show_entries packet=size -of csv=p=0 "$url" >"$TMP/$m.packets" 2>/dev/null || true
      exit 0
    fi
    if [[ "$m" == secure ]]; then
      for bad in "$BASE/$m" "rtsp://$SEC_USER:wrong-$SEC_PASS@127.0.0.1:$RTSP_PORT/$m"; do
        timeout 20 ffprobe -v error -rtsp_transport tcp "$bad" >/dev/null 2>>"$TMP/$m.denied" || true
      done
    fi
    if [[ "$m" == big ]]; then
      timeout $((SECS + 20)) ffprobe -v error -rtsp_transport tcp -read_intervals "%+$SECS" -select_streams v:0 \
        -show_entries packet=size,flags -of csv=p=0 "$url" >"$TMP/$m.packets" 2>/dev/null || true
    fi
    # Wall-clock timestamps: the frame times are arrival times, so the rate is the real one.
    timeout $((SECS + 20)) ffmpeg -hide_banner -nostats -loglevel info -use_wallclock_as_timestamps 1 \
      -rtsp_transport tcp -i "$url" -t "$SECS" -map 0:v:0 \
      -vf "showinfo,signalstats,metadata=print:file=$TMP/$m.meta" -f null - >"$TMP/$m.err" 2>&1 || true
  ) &
done
wait

fail=0
for m in "${MOUNTS[@]}"; do
  touch "$TMP/$m.probe" "$TMP/$m.err" "$TMP/$m.meta"
  problems=()
  if [[ "$m" == audio ]]; then
    nv="$(grep -c 'codec_type=video' "$TMP/$m.streams" || true)"
    a="$(grep -m1 'codec_type=audio' "$TMP/$m.streams" || true)"
    np="$(grep -c . "$TMP/$m.packets" 2>/dev/null || true)"
    printf '%-8s video streams: %s | audio: %s | %s audio packets in %ss\n' "$m" "$nv" "${a:-none}" "${np:-0}" "$SECS"
    (( nv == 0 )) || problems+=("$nv video streams (want none)")
    [[ "$a" == *codec_name=pcm_alaw* && "$a" == *sample_rate=8000* ]] || problems+=("audio stream '$a' (want pcm_alaw 8000 Hz)")
    (( ${np:-0} >= 40 * SECS )) || problems+=("only ${np:-0} audio packets in ${SECS}s")
  else
    line="$(awk -v m="$m" '
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
    if (( ${#gops} > 40 )); then gops="${gops:0:37}..."; fi
    printf '%-8s %s %s %s %s | %s frames in %ss of arrival = %s fps | I=%s P=%s B=%s GOP=%s | YAVG min/mean/max %s/%s/%s | YDIF mean %s max %s\n' \
      "$m" "${codec:-?}" "${prof:-?}" "${size:-?}" "${rate:-?}" "${n:-0}" "$SECS" "${fps:-0}" "${ni:-0}" "${np:-0}" "${nb:-0}" \
      "${gops:--}" "${ymin:-?}" "${yavg:-?}" "${ymax:-?}" "${dmean:-?}" "${dmax:-?}"

    # Expectations per mount: codec profile size rate min-fps max-fps luma-rule.
    case "$m" in
      moving|black|frozen|secure) exp=(h264 Main 640x360 25/1 23.5 26.5) ;;
      h265) exp=(hevc Main 640x360 25/1 23.5 26.5) ;;
      mjpeg) exp=(mjpeg - 640x360 25/1 23.5 26.5) ;;
      big) exp=(h264 - 1920x1080 2/1 1.6 2.4) ;;
      *) exp=(- - - - 0.01 1000) ;;
    esac
    cerr="$(tr '\n' ' ' <"$TMP/$m.probe.err" | cut -c1-200)"
    [[ -n "$codec" ]] || problems+=("no video stream (ffprobe: $cerr)")
    if [[ -n "$codec" ]]; then
      [[ "${exp[0]}" == - || "$codec" == "${exp[0]}" ]] || problems+=("codec $codec (want ${exp[0]})")
      [[ "${exp[1]}" == - || "$prof" == "${exp[1]}" ]] || problems+=("profile $prof (want ${exp[1]})")
      [[ "${exp[2]}" == - || "$size" == "${exp[2]}" ]] || problems+=("size $size (want ${exp[2]})")
      [[ "${exp[3]}" == - || "$rate" == "${exp[3]}" ]] || problems+=("r_frame_rate $rate (want ${exp[3]})")
    fi
    [[ "${nb:-0}" == 0 ]] || problems+=("$nb B-frames")
    awk -v f="${fps:-0}" -v lo="${exp[4]}" -v hi="${exp[5]}" 'BEGIN { exit !(f >= lo && f <= hi) }' \
      || problems+=("arrival rate $fps fps (want ${exp[4]}..${exp[5]})")
    case "$m" in
      black) awk -v a="$ymax" 'BEGIN { exit !(a < 20) }' || problems+=("black but YAVG max $ymax") ;;
      moving|secure|h265|mjpeg) awk -v a="$ymin" -v d="$dmean" 'BEGIN { exit !(a > 40 && d > 1) }' \
              || problems+=("moving but YAVG min $ymin / YDIF mean $dmean") ;;
      frozen) awk -v a="$ymin" -v b="$ymax" -v d="$dmax" 'BEGIN { exit !(a > 40 && b - a < 0.5 && d < 0.5) }' \
              || problems+=("frozen but YAVG $ymin..$ymax / YDIF max $dmax") ;;
    esac
    if [[ "$m" == secure ]]; then
      n401="$(grep -c '401 Unauthorized' "$TMP/$m.denied" 2>/dev/null || true)"
      printf '%-8s without credentials / with a wrong password: %s\n' "$m" \
        "$(grep -o 'Server returned [^(]*' "$TMP/$m.denied" | sort -u | paste -sd' ' | sed 's/ *$//')"
      (( ${n401:-0} >= 2 )) || problems+=("no 401 without / with wrong credentials ($(tr '\n' ' ' <"$TMP/$m.denied" | cut -c1-200))")
    fi
    if [[ "$m" == big ]]; then
      read -r nk kmin kmax kmean nall < <(awk -F, -v mib="$MIB" '$1 > 0 { a++ } $1 > 0 && $2 ~ /K/ { k++; s += $1
          if (!mn || $1 < mn) mn = $1; if ($1 > mx) mx = $1 }
        END { printf "%d %d %d %.0f %d\n", k, mn, mx, (k ? s / k : 0), a }' "$TMP/$m.packets" 2>/dev/null || echo "0 0 0 0 0")
      printf '%-8s %s access units, %s IDR: min %s B (%.2f MiB) mean %s B max %s B (%.2f MiB)\n' "$m" "$nall" "$nk" \
        "$kmin" "$(awk -v v="$kmin" -v m="$MIB" 'BEGIN { print v / m }')" "$kmean" "$kmax" "$(awk -v v="$kmax" -v m="$MIB" 'BEGIN { print v / m }')"
      (( nk >= 2 )) || problems+=("only $nk IDR access units seen")
      (( kmin > 3 * MIB / 2 )) || problems+=("smallest IDR $kmin B is not > 1.5 MiB")
      (( kmax < 7 * MIB )) || problems+=("largest IDR $kmax B is not < 7 MiB")
    fi
  fi
  if (( ${#problems[@]} )); then
    fail=1
    for p in "${problems[@]}"; do fw_warn "/$m: $p"; done
  fi
done
if (( fail )); then fw_die "RTSP verification failed"; fi
fw_log "all mounts OK"

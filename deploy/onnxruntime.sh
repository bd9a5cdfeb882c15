#!/usr/bin/env bash
# Installs ONNX Runtime for Python (with NumPy and Pillow, what a user's script loads images
# with) into a virtual environment in the cache, once, and prints its python. The ONNX export
# tests run `deploy/onnx_predict.py` with it. Idempotent: a complete install makes a rerun instant.
set -euo pipefail
cache=${EASEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/easel}
venv="$cache/onnxruntime-venv"
if ! "$venv/bin/python" -c 'import onnxruntime, numpy, PIL' 2>/dev/null; then
  printf 'onnxruntime: installing onnxruntime 1.30.0, numpy and pillow into %s (once)\n' "$venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q onnxruntime==1.30.0 numpy pillow >&2
fi
printf '%s\n' "$venv/bin/python"

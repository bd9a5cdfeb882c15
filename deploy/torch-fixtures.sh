#!/usr/bin/env bash
# Makes the legacy-format (pre-1.6 torch.save) VGG weights fixtures with PyTorch itself and prints
# their folder: <cache>/data/torch-fixtures, reached from the repository as
# .easel-data/torch-fixtures (the link deploy/sample-data.sh makes). See deploy/torch_fixtures.py.
# Needs the PyTorch install deploy/setup-libtorch.sh made (or PyTorch 2.11 importable by python3).
# Idempotent: a marker written after a complete build makes a rerun instant.
set -euo pipefail
repo_root=$(cd "$(dirname "$0")/.." && pwd)
cache=${EASEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/easel}
python=${PYTHON:-python3}
out="$cache/data/torch-fixtures"
marker="$cache/data/.torch-fixtures.complete"
marker_text="torch_fixtures.py $(cksum < "$repo_root/deploy/torch_fixtures.py")"

if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$marker_text" ] || [ ! -d "$out" ]; then
  site=""
  [ -e "$repo_root/.libtorch" ] && site=$(cd -P "$repo_root/.libtorch/.." && pwd)
  partial="$out.partial.$$"
  rm -rf "$partial"
  PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" "$python" -W ignore \
    "$repo_root/deploy/torch_fixtures.py" "$partial" >&2 || {
    printf 'torch-fixtures: needs PyTorch for Python (run deploy/setup-libtorch.sh first)\n' >&2
    exit 1
  }
  rm -rf "$out"
  mv "$partial" "$out"
  printf '%s\n' "$marker_text" > "$marker"
fi
printf '%s\n' "$out"

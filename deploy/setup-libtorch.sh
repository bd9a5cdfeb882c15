#!/usr/bin/env bash
# Makes libtorch 2.11.0 available to the build without anyone exporting anything.
#
# - If LIBTORCH is set, it is used as is.
# - Otherwise PyTorch 2.11.0 is installed from PyPI once into a cache outside the repository
#   (EASEL_CACHE, default ~/.cache/easel) and reused by every later clone and by CI.
#
# Either way `.libtorch` in the repository root points at it; `.cargo/config.toml` hands that
# path to tch's build, and the crates' build scripts bake its lib folder into the binaries (rpath).
# Works on Linux (CUDA wheel) and macOS (CPU/MPS wheel).
set -euo pipefail

TORCH_VERSION=2.11.0
repo_root=$(cd "$(dirname "$0")/.." && pwd)
cache=${EASEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/easel}
python=${PYTHON:-python3}

say() { printf 'setup-libtorch: %s\n' "$*" >&2; }

libtorch_dir() {
  if [ -n "${LIBTORCH:-}" ]; then
    [ -d "$LIBTORCH/lib" ] || { say "LIBTORCH=$LIBTORCH has no lib/ folder"; exit 1; }
    printf '%s\n' "$LIBTORCH"
    return
  fi
  local install="$cache/torch-$TORCH_VERSION"
  if [ ! -f "$install/.complete" ]; then
    command -v "$python" >/dev/null || { say "needs Python 3 ($python) to fetch PyTorch $TORCH_VERSION"; exit 1; }
    say "installing PyTorch $TORCH_VERSION into $install (once; several GB with its CUDA libraries on Linux)"
    mkdir -p "$cache"
    rm -rf "$install.partial"
    # A partial folder is renamed only when pip succeeded, so an interrupted install is redone.
    "$python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
      --target "$install.partial" "torch==$TORCH_VERSION"
    rm -rf "$install"
    mv "$install.partial" "$install"
    touch "$install/.complete"
  fi
  printf '%s\n' "$install/torch"
}

dir=$(libtorch_dir)
ln -sfn "$dir" "$repo_root/.libtorch"
version=$(sed -n 's/^__version__ = .\(.*\).$/\1/p' "$dir/version.py" 2>/dev/null || true)
say "libtorch ${version:-(unknown version)} at $dir"

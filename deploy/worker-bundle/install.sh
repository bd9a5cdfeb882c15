#!/usr/bin/env bash
# Installs this Easel worker bundle in place (see README). Idempotent: a rerun keeps what works.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
torch_version=2.11.0
python=python3
data_dir="$HOME/easel"
libtorch=""
config=""
systemd=no
while [ $# -gt 0 ]; do
  case $1 in
    --data-dir) data_dir=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --libtorch) libtorch=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --systemd) systemd=yes; shift ;;
    *) sed -n '3,20p' "$here/README" >&2; exit 2 ;;
  esac
done
say() { printf 'install: %s\n' "$*" >&2; }

# 1. libtorch: given, else the machine's PyTorch 2.11, else PyTorch 2.11 installed into ./python.
torch_lib_of() {
  local path=${PYTHONPATH:-}
  if [ -n "${1:-}" ]; then path="$1${path:+:$path}"; fi
  PYTHONPATH="$path" "$python" -c "
import os, torch
assert torch.__version__.split('+')[0] == '$torch_version', torch.__version__
print(os.path.join(os.path.dirname(torch.__file__), 'lib'))" 2>/dev/null
}
if [ -z "$libtorch" ]; then
  if libtorch=$(torch_lib_of "" ); then
    say "using the machine's PyTorch $torch_version ($libtorch)"
  elif libtorch=$(torch_lib_of "$here/python"); then
    say "using PyTorch $torch_version installed earlier in $here/python"
  else
    command -v "$python" >/dev/null || { say "needs $python (or --libtorch DIR)"; exit 1; }
    say "installing PyTorch $torch_version into $here/python (several GB with its CUDA libraries)"
    rm -rf "$here/python.partial"
    "$python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
      --target "$here/python.partial" "torch==$torch_version"
    rm -rf "$here/python"
    mv "$here/python.partial" "$here/python"
    libtorch=$(torch_lib_of "$here/python") || { say "PyTorch $torch_version did not install"; exit 1; }
  fi
fi
[ -f "$libtorch/libtorch_cpu.so" ] || { say "$libtorch holds no libtorch_cpu.so"; exit 1; }
printf '%s\n' "$libtorch" > "$here/libtorch.path"

# 2. The worker starts against it.
version_line=$("$here/easel-worker" --version) || { say "the worker does not start: see above"; exit 1; }
say "$version_line"

# 3. The systemd unit.
mkdir -p "$data_dir"
data_dir=$(cd "$data_dir" && pwd)
[ -n "$config" ] || config="$here/worker.toml"
sed -e "s|@INSTALL@|$here|g" -e "s|@DATA_DIR@|$data_dir|g" -e "s|@CONFIG@|$config|g" \
  "$here/easel-worker.service" > "$here/easel-worker.service.installed"
if [ "$systemd" = yes ]; then
  command -v systemctl >/dev/null || { say "--systemd: systemctl is not on this machine"; exit 1; }
  if [ "$(id -u)" = 0 ]; then
    cp "$here/easel-worker.service.installed" /etc/systemd/system/easel-worker.service
    systemctl daemon-reload && systemctl enable easel-worker.service >/dev/null
  else
    mkdir -p "$HOME/.config/systemd/user"
    cp "$here/easel-worker.service.installed" "$HOME/.config/systemd/user/easel-worker.service"
    systemctl --user daemon-reload && systemctl --user enable easel-worker.service >/dev/null
  fi
  say "systemd unit easel-worker.service installed and enabled"
fi
say "installed in $here (data in $data_dir)"

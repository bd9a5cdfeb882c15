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
# The unprivileged user a system service runs the worker as (made if absent).
service_user=easel
service_home=/var/lib/easel
while [ $# -gt 0 ]; do
  case $1 in
    --data-dir) data_dir=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --libtorch) libtorch=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --systemd) systemd=yes; shift ;;
    --service-user) service_user=$2; shift 2 ;;
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

# 3. The systemd unit: as root a system service running as $service_user, else a user service
# (which keeps only the hardening a user's service manager can apply).
mkdir -p "$data_dir"
data_dir=$(cd "$data_dir" && pwd)
[ -n "$config" ] || config="$here/worker.toml"

# ProtectHome hides /home, /root and /run/user unless the worker needs something there.
protect_home() {
  for path in "$data_dir" "$here" "$libtorch" "$config"; do
    case $path in /home | /home/* | /root | /root/* | /run/user/*) echo read-only; return ;; esac
  done
  echo yes
}

# The service user: made if absent (a system account, no login, its home root's so that it can
# never replace the install), given the data directory and the config to read; then it must be
# able to start the worker from here.
prepare_service_user() {
  if ! id -u "$service_user" >/dev/null 2>&1; then
    command -v useradd >/dev/null || { say "needs useradd to make the user $service_user"; exit 1; }
    mkdir -p "$service_home"
    useradd --system --user-group --home-dir "$service_home" --no-create-home \
      --shell "$(command -v nologin || echo /bin/false)" "$service_user"
    say "made the system user $service_user to run the worker"
  fi
  group=$(id -gn "$service_user")
  if [ "$(stat -c %U "$data_dir")" != "$service_user" ]; then
    chown -R "$service_user:$group" "$data_dir"
  fi
  if [ -f "$config" ]; then
    chgrp "$group" "$config" && chmod 0640 "$config"
  fi
  if command -v setpriv >/dev/null &&
    ! setpriv --reuid="$service_user" --regid="$group" --init-groups "$here/easel-worker" --version >/dev/null 2>&1; then
    say "the user $service_user cannot start the worker from $here (a folder above it, or libtorch in $libtorch, is closed to other users): install it under a folder other users can read, e.g. $service_home"
    exit 1
  fi
}

render_unit() {
  sed -e "s|@INSTALL@|$here|g" -e "s|@DATA_DIR@|$data_dir|g" -e "s|@CONFIG@|$config|g" \
    -e "s|@USER@|$service_user|g" -e "s|@PROTECT_HOME@|$(protect_home)|g" "$here/easel-worker.service"
}
if [ "$systemd" = yes ] && [ "$(id -u)" = 0 ]; then
  render_unit > "$here/easel-worker.service.installed"
else
  render_unit | sed '/^# system service only: begin/,/^# system service only: end/d' \
    > "$here/easel-worker.service.installed"
fi
if [ "$systemd" = yes ]; then
  command -v systemctl >/dev/null || { say "--systemd: systemctl is not on this machine"; exit 1; }
  if [ "$(id -u)" = 0 ]; then
    prepare_service_user
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

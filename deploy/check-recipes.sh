#!/usr/bin/env bash
# Checks the deploy recipes that cannot run on this machine (no container engine, no cluster):
# the Kubernetes manifest against Kubernetes' own schemas (kubernetes-validate, from PyPI, into
# a cache outside the clone), the cloud-init file as YAML with its #cloud-config header, and the
# worker's systemd unit, as install.sh renders it for a system and for a user service, with
# `systemd-analyze verify` (any complaint fails). The cloud-init set-up script itself runs for
# real in tests/tests/recipes.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${XDG_CACHE_HOME:-$HOME/.cache}/easel/recipe-check-python"
if ! PYTHONPATH="$cache" python3 -c 'import kubernetes_validate, yaml' 2>/dev/null; then
  rm -rf "$cache.partial"
  python3 -m pip install --quiet --disable-pip-version-check --target "$cache.partial" \
    "kubernetes-validate==1.37.0" "PyYAML==6.0.3" >&2
  rm -rf "$cache"
  mv "$cache.partial" "$cache"
fi
export PYTHONPATH="$cache"
python3 -m kubernetes_validate --strict --kubernetes-version 1.34 deploy/recipes/kubernetes.yaml
python3 - <<'PY'
import yaml
path = "deploy/recipes/cloud-init.yaml"
text = open(path).read()
assert text.startswith("#cloud-config\n"), f"{path}: the first line must be #cloud-config"
config = yaml.safe_load(text)
for key in ("packages", "write_files", "runcmd"):
    assert key in config, f"{path}: no {key}"
print(f"{path}: YAML with write_files and runcmd")
PY

# The systemd unit, both ways install.sh writes it, against stand-in paths.
if command -v systemd-analyze >/dev/null; then
  units=$(mktemp -d)
  trap 'rm -rf "$units"' EXIT
  mkdir -p "$units/install" "$units/data"
  printf '#!/bin/sh\n' >"$units/install/easel-worker"
  chmod +x "$units/install/easel-worker"
  render() {
    sed -e "s|@INSTALL@|$units/install|g" -e "s|@DATA_DIR@|$units/data|g" \
      -e "s|@CONFIG@|$units/worker.toml|g" -e "s|@USER@|easel|g" -e "s|@PROTECT_HOME@|yes|g" \
      deploy/worker-bundle/easel-worker.service
  }
  mkdir -p "$units/system" "$units/user"
  render >"$units/system/easel-worker.service"
  render | sed '/^# system service only: begin/,/^# system service only: end/d' \
    >"$units/user/easel-worker.service"
  grep -q '^User=easel$' "$units/system/easel-worker.service" || { echo "the system unit runs as no user" >&2; exit 1; }
  if grep -Eq '^(User|ProtectSystem|ReadWritePaths)=' "$units/user/easel-worker.service"; then
    echo "the user unit keeps system-only settings" >&2
    exit 1
  fi
  for kind in system user; do
    complaints=$(systemd-analyze verify --man=no "$units/$kind/easel-worker.service" 2>&1) || true
    if [ -n "$complaints" ]; then
      printf 'deploy/worker-bundle/easel-worker.service (%s service):\n%s\n' "$kind" "$complaints" >&2
      exit 1
    fi
  done
  echo "deploy/worker-bundle/easel-worker.service: systemd-analyze verify passes (system and user service)"
else
  echo "deploy/worker-bundle/easel-worker.service: not verified (no systemd-analyze here)"
fi

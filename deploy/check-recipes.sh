#!/usr/bin/env bash
# Checks the deploy recipes that cannot run on this machine (no container engine, no cluster):
# the Kubernetes manifest against Kubernetes' own schemas (kubernetes-validate, from PyPI, into
# a cache outside the clone) and the cloud-init file as YAML with its #cloud-config header. The
# cloud-init set-up script itself runs for real in tests/tests/recipes.rs.
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

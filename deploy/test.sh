#!/usr/bin/env bash
# The test command: sets up everything the tests need on a fresh machine (libtorch, the sample
# dataset, PyTorch-made weights fixtures, ONNX Runtime for Python, patchelf, OpenSSH's server,
# Chromium, a loopback S3 server), checks the deploy recipes, then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/setup-libtorch.sh
bash deploy/sample-data.sh >/dev/null
bash deploy/torch-fixtures.sh >/dev/null
# The ONNX export tests run the exported models in ONNX Runtime (a virtual environment in the cache).
bash deploy/onnxruntime.sh >/dev/null
# The worker-bundle test strips the build machine's library path from the binary with patchelf;
# the `client up` tests reach a real OpenSSH server on loopback; the Slurm executor's tests a
# one-node Slurm cluster (deploy/slurm.sh); the report page tests open the pages in headless Chromium.
missing=()
command -v patchelf >/dev/null || missing+=(patchelf)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v slurmctld >/dev/null || missing+=(slurmctld slurmd slurm-client munge)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
bash deploy/check-recipes.sh

s3_dir=$(mktemp -d "${TMPDIR:-/tmp}/easel-s3.XXXXXX")
slurm_dir=$(mktemp -d "${TMPDIR:-/tmp}/easel-slurm.XXXXXX")
cleanup() {
  bash deploy/seaweedfs.sh stop "$s3_dir" >/dev/null 2>&1 || true
  bash deploy/slurm.sh stop "$slurm_dir" >/dev/null 2>&1 || true
  # Tidying up never changes the tests' verdict.
  rm -rf "$s3_dir" "$slurm_dir" 2>/dev/null || true
}
trap cleanup EXIT
# Prints `export NAME=value` lines naming the endpoint, bucket and keys the S3 tests use.
s3_env=$(bash deploy/seaweedfs.sh start "$s3_dir")
eval "$s3_env"
# Prints `export SLURM_CONF=…` and `export EASEL_SLURM_DIR=…` for the Slurm executor's tests.
slurm_env=$(bash deploy/slurm.sh start "$slurm_dir")
eval "$slurm_env"

# The worker and client binaries the end-to-end tests start are built once, by this build of
# every test target (the same features, so nothing is compiled twice), not again by each test.
cargo test --workspace --no-run --quiet
EASEL_E2E_PREBUILT=1 cargo test --workspace --no-fail-fast "$@"

#!/usr/bin/env bash
# Packs the worker for a Linux x86_64 GPU machine: everything it needs besides its NVIDIA driver,
# as dist/easel-worker-<version>-linux-x86_64.tar.gz with a .sha256 file beside it.
#
#   bash deploy/bundle.sh [--binary PATH] [--out DIR]
#
# The archive holds one folder, easel-worker-<version>/:
#   bin/worker            the worker, stripped (release build unless --binary names another)
#   easel-worker          launcher: runs bin/worker against the libtorch install.sh found
#   easel-worker-supervise  keeps the worker running where there is no systemd
#   easel-machine.sh      the machine side of `client up`/`down` (probe, install, start, stop),
#                         also run by the cloud-init recipe
#   install.sh            on the GPU machine: reuses a PyTorch 2.11 already there or installs it
#                         into the folder, checks the worker starts, writes easel-worker.service
#   easel-worker.service  the systemd unit template install.sh fills in
#   worker.toml, VERSION, README
# The binary finds libtorch at run time through the launcher, not through a path of the machine
# it was built on.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=""
out=dist
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) sed -n '2,19p' "$0" >&2; exit 2 ;;
  esac
done
[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || { echo "bundle: builds on Linux x86_64 only" >&2; exit 1; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
name="easel-worker-$version"
if [ -z "$binary" ]; then
  bash deploy/setup-libtorch.sh
  cargo build --release -q -p easel-worker --bin worker
  binary=target/release/worker
fi
[ -x "$binary" ] || { echo "bundle: no worker binary at $binary" >&2; exit 1; }

mkdir -p "$out"
staging=$(mktemp -d "${TMPDIR:-/tmp}/easel-bundle.XXXXXX")
trap 'rm -rf "$staging"' EXIT
folder="$staging/$name"
mkdir -p "$folder/bin"
cp "$binary" "$folder/bin/worker"
strip "$folder/bin/worker" 2>/dev/null || true
# The build bakes its own libtorch folder into the binary (RUNPATH); the GPU machine has another.
command -v patchelf >/dev/null || { echo "bundle: needs patchelf (apt-get install patchelf)" >&2; exit 1; }
patchelf --remove-rpath "$folder/bin/worker"
cp deploy/worker-bundle/install.sh deploy/worker-bundle/easel-worker \
  deploy/worker-bundle/easel-worker-supervise \
  deploy/worker-bundle/easel-worker.service deploy/worker-bundle/README "$folder/"
cp deploy/worker-bundle/easel-machine.sh "$folder/"
cp configs/worker.toml "$folder/worker.toml"
printf '%s\n' "$version" > "$folder/VERSION"
chmod 755 "$folder/install.sh" "$folder/easel-worker" "$folder/easel-worker-supervise" \
  "$folder/bin/worker"

archive="$out/$name-linux-x86_64.tar.gz"
tar -czf "$archive.partial" -C "$staging" "$name"
mv "$archive.partial" "$archive"
(cd "$out" && sha256sum "$(basename "$archive")" > "$(basename "$archive").sha256")
printf '%s\n' "$archive"

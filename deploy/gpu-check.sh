#!/usr/bin/env bash
# The GPU check: Easel's training step, end-to-end run and seed-sized job measured beside
# PyTorch eager, torch.compile and torchvision's ImageFolder + DataLoader in the same run, plus
# the opt-in CUDA tests (deploy/gpu_check.py says what is measured).
#
#   bash deploy/gpu-check.sh cpu [OUT [--deadline S]]
#                                        here, from a fresh clone: builds, runs the same checks at
#                                        CPU sizes and prints the table (so the script can't rot)
#   bash deploy/gpu-check.sh pack        here: builds the bundle a GPU machine runs, dist/gpu-check
#                                        (stripped release binaries, CUDA test binary, image folders)
#                                        and proves it (check_bundle: CUDA link, RUNPATH, libraries
#                                        resolved, symbol versions, under 60 MiB)
#   bash deploy/gpu-check.sh run "$OUT" [--deadline S]
#                                        on the GPU machine, from the repository with
#                                        dist/gpu-check in it: needs only the NVIDIA driver and
#                                        PyTorch 2.11 (a phase needing torchvision, Pillow or a
#                                        compiler the machine lacks is skipped, saying so); writes
#                                        OUT/gpu-check.txt and .json, OUT/logs/ and OUT/runs/
#                                        within one deadline (540 s by default)
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=dist/gpu-check
cache=${EASEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/easel}
say() { printf 'gpu-check: %s\n' "$*" >&2; }

# Path of the executable cargo built for target NAME (reads cargo's JSON messages).
executable_of() {
  python3 -c '
import json, sys
name = sys.argv[1]
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == name and message.get("executable"):
        print(message["executable"])' "$1" | tail -1
}

build_binaries() {
  local with_cuda_tests=$1
  bash deploy/setup-libtorch.sh
  rm -rf "$bundle/bin"
  mkdir -p "$bundle/bin"
  say "building release binaries"
  cargo build --release -q -p easel-client --bin client
  cp target/release/client "$bundle/bin/client"
  local bench
  bench=$(cargo bench -q -p easel-engine --bench throughput --no-run --message-format=json | executable_of throughput)
  cp "$bench" "$bundle/bin/throughput"
  if [ "$with_cuda_tests" = yes ]; then
    local tests
    tests=$(cargo test --release -q -p easel-engine --features cuda-tests --test cuda --no-run \
      --message-format=json | executable_of cuda)
    cp "$tests" "$bundle/bin/cuda-tests"
  fi
  strip "$bundle"/bin/*
}

# Image folders as one archive each (thousands of small files travel badly).
pack_folder() {
  local source=$1 name=$2
  tar -czf "$bundle/data/$name.tar.gz" -C "$(dirname "$source")" --transform "s|^$(basename "$source")|$name|" "$(basename "$source")"
}

build_data() {
  local gpu=$1
  mkdir -p "$bundle/data"
  local sample
  sample=$(bash deploy/sample-data.sh)
  pack_folder "$sample" mnist-sample
  # 100 digits a class for the CPU-sized end-to-end run.
  local small="$cache/data/mnist-1k"
  if [ ! -d "$small" ]; then
    rm -rf "$small.partial"
    for class in "$sample"/*/; do
      mkdir -p "$small.partial/$(basename "$class")"
      # sed, not head: head closing the pipe early would fail it under pipefail.
      find "$class" -name '*.png' | sort | sed -n '1,100p' | xargs -I{} cp {} "$small.partial/$(basename "$class")/"
    done
    mv "$small.partial" "$small"
  fi
  pack_folder "$small" mnist-1k
  if [ "$gpu" = yes ]; then
    # The seed-sized folder: 9,000 Fashion-MNIST photos in 5 classes, from Debian's package.
    local fashion="$cache/data/fashion-9k"
    if [ ! -d "$fashion" ]; then
      mkdir -p "$cache/downloads"
      local deb
      deb=$(ls "$cache"/downloads/dataset-fashion-mnist_*.deb 2>/dev/null | head -1 || true)
      if [ -z "$deb" ]; then
        (cd "$cache/downloads" && apt-get download dataset-fashion-mnist >/dev/null)
        deb=$(ls "$cache"/downloads/dataset-fashion-mnist_*.deb | head -1)
      fi
      rm -rf "$fashion.partial"
      python3 deploy/fashion_data.py "$deb" "$fashion.partial"
      mv "$fashion.partial" "$fashion"
    fi
    pack_folder "$fashion" fashion-9k
  fi
}

# Proves what the pack packed, failing it otherwise: every binary needs libtorch_cuda.so (without
# it CUDA reads as unavailable and the check trains on the CPU), carries RUNPATH and no RPATH (so
# the LD_LIBRARY_PATH the run sets wins over this machine's path), resolves every library, each
# libtorch one under the torch lib folder given; and the bundle is under 60 MiB (what the device
# call carries). Prints the newest glibc and libstdc++ symbol versions each binary needs, which
# the GPU machine's must reach.
check_bundle() {
  local torch_lib=$1 failed=0 binary name bad dynamic resolved glibc cxx mib
  for binary in "$bundle"/bin/*; do
    name=$(basename "$binary")
    bad=0
    dynamic=$(readelf -d "$binary")
    if ! grep -q 'NEEDED.*\[libtorch_cuda\.so\]' <<<"$dynamic"; then
      say "$name: does not need libtorch_cuda.so: CUDA would read as unavailable"
      bad=1
    fi
    if grep -q '(RPATH)' <<<"$dynamic" || ! grep -q '(RUNPATH)' <<<"$dynamic"; then
      say "$name: no RUNPATH (or an RPATH, which LD_LIBRARY_PATH cannot override)"
      bad=1
    fi
    resolved=$(LD_LIBRARY_PATH="$torch_lib" ldd "$binary")
    if grep -q 'not found' <<<"$resolved"; then
      say "$name: unresolved libraries: $(grep 'not found' <<<"$resolved" | tr -s ' \t\n' ' ')"
      bad=1
    fi
    if grep -E '^\s*lib(torch|c10)' <<<"$resolved" | grep -v -q -F "$torch_lib/"; then
      say "$name: a libtorch library resolves outside $torch_lib"
      bad=1
    fi
    glibc=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
    cxx=$(objdump -T "$binary" | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1)
    [ "$bad" = 0 ] && say "$name: needs libtorch_cuda.so, RUNPATH, every library resolved"
    say "$name: newest symbol versions it needs: ${glibc:-none} ${cxx:-none}"
    [ "$bad" = 0 ] || failed=1
  done
  mib=$(du -sm "$bundle" | cut -f1)
  if [ "$mib" -ge 60 ]; then
    say "$bundle is $mib MiB: over the 60 MiB a device call carries"
    failed=1
  fi
  say "$bundle: $mib MiB"
  return "$failed"
}

# The cached PyTorch install, and nothing added to it: a phase that needs torchvision, Pillow or
# a compiler the machine lacks is reported skipped, as it would be on the GPU machine.
torch_python_path() {
  cd -P .libtorch/.. && pwd
}

case ${1:-} in
  cpu)
    # Its own folder, so a packed GPU bundle stays as it was packed.
    bundle=dist/gpu-check-cpu
    build_binaries no
    build_data no
    python_path=$(torch_python_path)
    export PYTHONPATH="$python_path${PYTHONPATH:+:$PYTHONPATH}"
    threads=$(nproc)
    OMP_NUM_THREADS=$threads python3 -W ignore deploy/gpu_check.py --cpu \
      --bundle "$bundle" --out "${2:-$bundle/results}" "${@:3}"
    ;;
  pack)
    build_binaries yes
    build_data yes
    check_bundle "$(cd -P .libtorch/lib && pwd)" || { say "the bundle failed its checks"; exit 1; }
    say "bundle ready: carry $bundle to the GPU machine and run 'bash deploy/gpu-check.sh run OUT'"
    ;;
  run)
    [ -x "$bundle/bin/client" ] || { say "no bundle at $bundle: run 'bash deploy/gpu-check.sh pack' first"; exit 1; }
    torch_lib=$(python3 -c "import torch,os;print(os.path.join(os.path.dirname(torch.__file__),'lib'))")
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    PYTHONUNBUFFERED=1 python3 -W ignore deploy/gpu_check.py --bundle "$bundle" --out "${2:-$bundle/results}" "${@:3}"
    ;;
  *)
    sed -n '2,14p' "$0" >&2
    exit 2
    ;;
esac

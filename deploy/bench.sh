#!/usr/bin/env bash
# The engine's throughput bench, then the same CPU training steps in PyTorch eager (the cached
# PyTorch 2.11.0 that libtorch comes from), with the engine's figures as ratios against it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup-libtorch.sh
bash deploy/sample-data.sh >/dev/null

engine=$(cargo bench -q -p easel-engine --bench throughput 2>/dev/null)
printf '%s\n' "$engine"

site=$(cd -P .libtorch/.. && pwd)
threads=$(printf '%s\n' "$engine" | sed -n 's/.*cpu threads \([0-9]*\).*/\1/p')
baseline=$(OMP_NUM_THREADS=${threads:-1} PYTHONPATH="$site" python3 -W ignore \
  crates/engine/benches/pytorch_baseline.py) || { echo "pytorch baseline: could not run" >&2; exit 0; }

printf '\nCPU training step vs PyTorch eager (same model, batch, optimizer, threads)\n'
printf '%s\n' "$baseline" | while read -r name pytorch; do
  ours=$(printf '%s\n' "$engine" | sed -n "s/^ *$name .*batch 8: *\([0-9.]*\) images\/s.*/\1/p")
  [ -n "$ours" ] || continue
  awk -v n="$name" -v a="$ours" -v b="$pytorch" \
    'BEGIN { printf "  %-10s engine %8.1f  pytorch %8.1f images/s  ratio %.2f\n", n, a, b, a / b }'
done

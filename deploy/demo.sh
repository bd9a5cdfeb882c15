#!/usr/bin/env bash
# The whole remote flow on one machine: a local worker in the background (temporary data dir,
# local object store), submit the CPU demo spec, watch it, fetch the weights and the report page,
# evaluate them on the run's held-out test images, print where they are, stop the worker.
#
#   bash deploy/demo.sh            # uses configs/demo-cpu.toml
#   bash deploy/demo.sh my.toml    # any spec
#   EASEL_DEMO_PROFILE=release bash deploy/demo.sh # optimised build (slower to build; the heavy
#                                                  # lifting is libtorch's either way)
set -euo pipefail
repo_root=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_root"
spec=${1:-configs/demo-cpu.toml}

say() { printf '\ndemo: %s\n' "$*" >&2; }

say "making sure libtorch and the sample dataset are there"
bash deploy/setup-libtorch.sh
dataset=$(bash deploy/sample-data.sh)

# The dependencies on the training path are optimised in the debug profile too (Cargo.toml), so
# debug is the quick default.
profile=${EASEL_DEMO_PROFILE:-debug}
say "building the worker and the client ($profile)"
if [ "$profile" = release ]; then
  cargo build --release -p easel-worker -p easel-client
else
  cargo build -p easel-worker -p easel-client
fi
bin="$repo_root/target/$profile"

work=$(mktemp -d "${TMPDIR:-/tmp}/easel-demo.XXXXXX")
worker_log="$work/worker.log"
worker_pid=""
stop_worker() {
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
}
trap stop_worker EXIT

say "starting a local worker (data in $work/worker-data, artifacts in $work/worker-data/artifacts)"
"$bin/worker" --listen 127.0.0.1:0 --data-dir "$work/worker-data" >"$worker_log" 2>&1 &
worker_pid=$!
address=""
for _ in $(seq 1 300); do
  address=$(sed -n 's/^worker: listening on //p' "$worker_log" | head -n1)
  [ -n "$address" ] && break
  kill -0 "$worker_pid" 2>/dev/null || { cat "$worker_log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$address" ] || { say "the worker did not start"; cat "$worker_log" >&2; exit 1; }
# The worker writes its token and TLS fingerprint right after it starts listening.
for _ in $(seq 1 300); do
  [ -s "$work/worker-data/tls/fingerprint" ] && [ -s "$work/worker-data/token" ] && break
  sleep 0.1
done
export EASEL_WORKER="https://$address"
EASEL_TOKEN=$(cat "$work/worker-data/token")
EASEL_FINGERPRINT=$(cat "$work/worker-data/tls/fingerprint")
export EASEL_TOKEN EASEL_FINGERPRINT
say "worker listening on $EASEL_WORKER over TLS (certificate $EASEL_FINGERPRINT)"

say "submitting $spec (local checks, upload, then live metrics)"
submit_out="$work/submit.out"
"$bin/client" submit "$spec" --detach | tee "$submit_out"
job=$(sed -n 's/^job \([^ ]*\) queued$/\1/p' "$submit_out" | head -n1)
[ -n "$job" ] || { say "no job id in the submit output"; exit 1; }

say "watching job $job"
"$bin/client" watch "$job"

say "fetching the results"
out="$work/results/$job"
"$bin/client" fetch "$job" --out "$out"

say "evaluating the fetched weights on the run's held-out test images (never trained on)"
"$bin/client" evaluate "$out" "$dataset" --split test

stop_worker
say "done. The trained weights are in $out/weights/best.safetensors; the report page is $out/report.html (\`client report $out --open\`)"
printf '%s\n' "$out/weights/best.safetensors"

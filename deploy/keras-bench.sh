#!/usr/bin/env bash
# Per-epoch time on this machine's CPU, Easel against Keras: the write-up's first model
# (conv32-pool-conv64-pool, dense 64/128, Adam) and its frozen VGG16 under the 32-64-128-64 head
# (SGD momentum 0.9, the feature cache off and on), 150 px, batch 32, 20 % validation, on the same
# folder of real images (5 classes x 272 digits of the sample, 1,360 PNGs). Easel runs
# `client train --local`; Keras 3 on TensorFlow 2.21's CPU build runs what a Keras user writes
# (deploy/keras_baseline.py), installed once into a virtual environment in the cache (~600 MB).
# An epoch is training plus validation on both sides; the first epoch (decoding, warm-up) is
# shown apart from the median of the later ones.
#
#   bash deploy/keras-bench.sh [EPOCHS [MODELS]]   (default 3 and "small_cnn vgg16_frozen";
#                                                  `just bench-keras`)
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-3}
models=${2:-small_cnn vgg16_frozen}
cache=${EASEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/easel}
say() { printf 'keras-bench: %s\n' "$*" >&2; }

bash deploy/setup-libtorch.sh >&2
sample=$(bash deploy/sample-data.sh)
data="$cache/data/digits-1360"
if [ ! -d "$data" ]; then
  rm -rf "$data.partial"
  for class in 0-zero 1-one 2-two 3-three 4-four; do
    mkdir -p "$data.partial/$class"
    find "$sample/$class" -name '*.png' | sort | sed -n '1,272p' | xargs -I{} cp {} "$data.partial/$class/"
  done
  mv "$data.partial" "$data"
fi

venv="$cache/keras-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import tensorflow' 2>/dev/null; then
  say "installing tensorflow-cpu 2.21.0 into $venv (once)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q tensorflow-cpu==2.21.0 >&2
fi

# The test build's profile: the image, hashing and libtorch-glue crates are optimised in it.
cargo build -q -p easel-client --bin client
client=target/debug/client
work=$(mktemp -d "${TMPDIR:-/tmp}/easel-keras-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
threads=$(nproc)

# Seconds of each epoch of an Easel run, from its metrics.jsonl.
easel_epochs() {
  python3 -c 'import json,sys; print(json.dumps([json.loads(l)["seconds"] for l in open(sys.argv[1])]))' "$1/metrics.jsonl"
}

# Prints "first later" seconds of a JSON list of epoch seconds (later: median of epochs 2..).
summary() {
  python3 -c '
import json, statistics, sys
seconds = json.loads(sys.argv[1])
later = seconds[1:] or seconds
print(f"{seconds[0]:.2f} {statistics.median(later):.2f}")' "$1"
}

spec_of() {
  local model=$1 cache_features=$2
  local architecture=small_cnn head="[64, 128]" optimizer=adam frozen=false
  if [ "$model" = vgg16_frozen ]; then
    architecture=vgg16 head="[32, 64, 128, 64]" optimizer=sgd frozen=true
    # A frozen backbone needs weights: VGG16's layout saved by PyTorch (random values; the time
    # does not depend on them, and nothing can be downloaded here).
    bash deploy/torch-fixtures.sh >/dev/null
  fi
  cat <<EOF
[data]
path = "$data"
validation_split = 0.2
seed = 7
image_size = 150
[model]
architecture = "$architecture"
head = $head
dropout = 0.2
freeze_backbone = $frozen
$([ "$frozen" = true ] && echo "pretrained = \"$PWD/.easel-data/torch-fixtures/vgg16_legacy.pth\"")
[train]
epochs = $epochs
batch_size = 32
optimizer = "$optimizer"
learning_rate = 0.001
momentum = 0.9
precision = "auto"
cache_frozen_features = $cache_features
[augment]
flip = false
EOF
}

printf 'per epoch, 1,360 images, 150 px, batch 32, %s threads (first epoch | median of the later ones)\n' "$threads"
for model in $models; do
  keras=$(OMP_NUM_THREADS=$threads "$venv/bin/python" -W ignore deploy/keras_baseline.py \
    --data "$data" --model "$model" --epochs "$epochs" --threads "$threads" 2>"$work/keras-$model.log" |
    tail -1 | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["epoch_seconds"]))') ||
    { say "keras failed on $model: see below"; cat "$work/keras-$model.log" >&2; exit 1; }
  read -r keras_first keras_later <<<"$(summary "$keras")"
  variants=(false)
  [ "$model" = vgg16_frozen ] && variants=(false true)
  for cache_features in "${variants[@]}"; do
    spec_of "$model" "$cache_features" >"$work/$model-$cache_features.toml"
    "$client" train --local "$work/$model-$cache_features.toml" --out "$work/run-$model-$cache_features" \
      >"$work/easel-$model-$cache_features.log" 2>&1 ||
      { say "easel failed on $model: see below"; cat "$work/easel-$model-$cache_features.log" >&2; exit 1; }
    read -r easel_first easel_later <<<"$(summary "$(easel_epochs "$work/run-$model-$cache_features")")"
    label=$model
    [ "$model" = vgg16_frozen ] && label="$model (feature cache $cache_features)"
    awk -v n="$label" -v ef="$easel_first" -v el="$easel_later" -v kf="$keras_first" -v kl="$keras_later" \
      'BEGIN { printf "  %-34s easel %7.2f | %7.2f s   keras %7.2f | %7.2f s   keras/easel %5.2fx | %5.2fx\n", n, ef, el, kf, kl, kf / ef, kl / el }'
  done
done

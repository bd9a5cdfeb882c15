# Easel developer recipes. Each one also works without `just`: the scripts under deploy/ do the work.

# Install libtorch (cached outside the repo) and build the sample dataset.
setup:
    bash deploy/setup-libtorch.sh
    bash deploy/sample-data.sh

# Build the client and worker (release).
build: setup
    cargo build --release -p easel-client -p easel-worker

# The README's test command: everything the tests need, then the whole test suite.
test *ARGS:
    bash deploy/test.sh {{ARGS}}

lint:
    python3 .ci/module-cycles.py
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

# The README's demo: a local worker, submit, watch, fetch.
demo:
    bash deploy/demo.sh

# Throughput figures of the input pipeline and training step, with PyTorch eager as baseline.
bench:
    bash deploy/bench.sh

# CPU training steps, Easel against PyTorch eager (NCHW and channels-last, fp32 and bf16), 150 px.
bench-cpu:
    cargo bench -p easel-engine --bench cpu_step

# Per-epoch time on this CPU, Easel's train --local against Keras 3 / TensorFlow 2.21 (installed
# into the cache once), the write-up's first model and its frozen VGG16.
bench-keras EPOCHS="3":
    bash deploy/keras-bench.sh {{EPOCHS}}

# Step time of a dataset streamed cold from its decoded cache file against one held in memory.
bench-streaming:
    cargo bench -p easel-engine --bench streaming

# The large-dataset flow at full size: 200,000 images submit, train one CPU epoch and fetch
# (CI runs the same test with 24,000).
large-dataset:
    EASEL_LARGE_DATASET_IMAGES=200000 cargo test -p easel-e2e --test large_dataset -- --nocapture

# The frozen-backbone feature cache: its first epoch and later ones against an epoch on images.
bench-feature-cache:
    cargo bench -p easel-engine --bench feature_cache

# A head search on a frozen VGG16 as one sweep against one of its trials alone; cancel latency.
bench-sweep:
    cargo bench -p easel-e2e --bench sweep_shared_work

# Dataset upload over loopback (100,000 small files, 2 GB of large ones) against tar over TCP.
bench-upload:
    cargo bench -p easel-e2e --bench upload_throughput

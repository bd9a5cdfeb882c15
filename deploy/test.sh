#!/usr/bin/env bash
# The test command: sets up everything the tests need on a fresh machine (libtorch, the sample
# dataset, a loopback S3 server), then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/setup-libtorch.sh
bash deploy/sample-data.sh >/dev/null
bash deploy/torch-fixtures.sh >/dev/null

s3_dir=$(mktemp -d "${TMPDIR:-/tmp}/easel-s3.XXXXXX")
cleanup() { bash deploy/seaweedfs.sh stop "$s3_dir" >/dev/null 2>&1 || true; rm -rf "$s3_dir"; }
trap cleanup EXIT
# Prints `export NAME=value` lines naming the endpoint, bucket and keys the S3 tests use.
s3_env=$(bash deploy/seaweedfs.sh start "$s3_dir")
eval "$s3_env"

cargo test --workspace --no-fail-fast "$@"

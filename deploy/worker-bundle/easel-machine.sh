# The worker machine's side of `client up`, `client down` and `client workers`: sent over SSH and
# run as `sh -s -- VERB EASEL_DIR ARGS...` by the user's login shell (POSIX sh: the machine may
# have only dash). Answers are `key=value` lines on stdout; progress and errors go to stderr.
#
#   probe   DIR VERSION            what the machine is and what it already has
#   install DIR VERSION SHA256     unpack DIR/.incoming/<bundle>, run its install.sh
#   start   DIR VERSION PORT MODE [HOST [slurm PARTITION ACCOUNT]]
#                                  start (or keep) the worker, listening on HOST (0.0.0.0, or
#                                  127.0.0.1 behind an SSH tunnel); MODE: auto | background;
#                                  `slurm` sets the Slurm executor in a new worker.toml
#   stop    DIR                    stop it, whichever way it was started
#   status  DIR                    is it running; the end of its log
#   trust   DIR                    the token and the TLS fingerprint, for the client to pin
set -eu
verb=$1
dir=$2
shift 2
# As root, `~` is the home of the user the worker's system service runs as (install.sh makes it):
# root's own home is closed to that user.
base=$HOME
if [ "$(id -u)" = 0 ]; then
  base=/var/lib/easel
fi
case $dir in
  "~") dir=$base ;;
  "~/"*) dir=$base/${dir#"~/"} ;;
esac
case $dir in
  /*) ;;
  *) dir=$base/$dir ;;
esac
data=$dir/data
state=$dir/running
fail() {
  printf '%s\n' "$*" >&2
  exit 1
}

probe() {
  version=$1
  echo "dir=$dir"
  echo "os=$(uname -s)"
  echo "arch=$(uname -m)"
  if [ -r /etc/os-release ]; then
    echo "distro=$(. /etc/os-release && printf '%s' "${PRETTY_NAME:-$ID}")"
  fi
  echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 0)"
  echo "memory_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo 2>/dev/null || echo 0)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    if gpus=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1); then
      printf '%s\n' "$gpus" | sed 's/^/gpu=/'
    else
      echo "gpu_error=nvidia-smi failed: $(printf '%s' "$gpus" | head -n 1)"
    fi
  else
    echo "gpu_error=nvidia-smi is not on this machine"
  fi
  existing=$dir
  while [ ! -d "$existing" ]; do existing=$(dirname "$existing"); done
  echo "disk_free_kb=$(df -Pk "$existing" | awk 'NR == 2 { print $4 }')"
  install=$dir/easel-worker-$version
  if [ -f "$install/.bundle-sha256" ]; then
    echo "installed_sha256=$(cat "$install/.bundle-sha256")"
  fi
  if torch=$(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null); then
    echo "pytorch=$torch"
  elif ! python3 -m pip --version >/dev/null 2>&1; then
    # install.sh then installs PyTorch with pip, unless an earlier install holds one.
    [ -d "$install/python" ] || echo "missing=python3-pip"
  fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    echo "systemd=yes"
  else
    echo "systemd=no"
  fi
  for tool in bash tar gzip sha256sum setsid; do
    command -v $tool >/dev/null 2>&1 || echo "missing=$tool"
  done
  if command -v sbatch >/dev/null 2>&1; then
    echo "slurm=$(sbatch --version 2>/dev/null | head -n 1)"
  fi
  running_line
}

install() {
  version=$1
  sha=$2
  name=easel-worker-$version
  incoming=$dir/.incoming
  archive=$incoming/$name-linux-x86_64.tar.gz
  actual=$(sha256sum "$archive" | cut -d ' ' -f 1)
  [ "$actual" = "$sha" ] ||
    fail "the copied bundle is damaged (sha256 $actual, expected $sha): run client up again"
  rm -rf "$incoming/unpacked"
  mkdir -p "$incoming/unpacked"
  tar -xzf "$archive" -C "$incoming/unpacked"
  unpacked=$incoming/unpacked/$name
  [ -x "$unpacked/install.sh" ] || fail "the bundle holds no $name/install.sh"
  install=$dir/$name
  # A PyTorch the bundle installed earlier (several GB) is kept across reinstalls.
  if [ -d "$install/python" ] && [ ! -e "$unpacked/python" ]; then
    mv "$install/python" "$unpacked/python"
  fi
  rm -rf "$install"
  mv "$unpacked" "$install"
  "$install/install.sh" --data-dir "$data" --config "$dir/worker.toml" >&2
  printf '%s\n' "$sha" >"$install/.bundle-sha256"
  rm -rf "$incoming"
  echo "installed=$install"
}

# `running=SERVICE INSTALL PORT` while a worker that `start` launched is alive.
running_line() {
  [ -f "$state" ] || return 0
  read -r seen_service seen_install seen_port <"$state" || return 0
  if alive "$seen_service"; then
    echo "running=$seen_service $seen_install $seen_port"
  fi
}

# The supervisor's pid, if the pid file names a live easel-worker-supervise: after a reboot the
# file survives and its number may belong to any other process.
supervisor_pid() {
  [ -f "$data/worker.pid" ] || return 1
  pid=$(cat "$data/worker.pid")
  case $pid in '' | *[!0-9]*) return 1 ;; esac
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "easel-worker-supervise" || return 1
  echo "$pid"
}

alive() {
  case $1 in
    systemd) systemctl is-active --quiet easel-worker.service ;;
    systemd-user) systemctl --user is-active --quiet easel-worker.service ;;
    background) supervisor_pid >/dev/null ;;
    *) return 1 ;;
  esac
}

# Lingering keeps the user's services running after the SSH session ends (and starts them at boot).
lingering() {
  loginctl show-user "$(id -un)" --property=Linger 2>/dev/null | grep -q '=yes$' ||
    loginctl enable-linger "$(id -un)" >/dev/null 2>&1
}

write_config() {
  install=$1
  listen=$2
  executor=${3:-}
  partition=${4:-}
  account=${5:-}
  config=$dir/worker.toml
  if [ ! -f "$config" ]; then
    sed -e "s|^listen = .*|listen = \"$listen\"|" -e "s|^data_dir = .*|data_dir = \"$data\"|" \
      "$install/worker.toml" >"$config.partial"
    if [ "$executor" = slurm ]; then
      sed -i -e 's|^kind = "local"|kind = "slurm"|' -e "s|^partition = \"\"|partition = \"$partition\"|" \
        -e "s|^account = \"\"|account = \"$account\"|" "$config.partial"
    fi
    mv "$config.partial" "$config"
  elif ! grep -q "^listen = \"$listen\"\$" "$config"; then
    sed "s|^listen = .*|listen = \"$listen\"|" "$config" >"$config.partial"
    mv "$config.partial" "$config"
  fi
}

start() {
  version=$1
  port=$2
  mode=$3
  host=${4:-0.0.0.0}
  install=$dir/easel-worker-$version
  [ -x "$install/easel-worker" ] || fail "easel-worker $version is not installed in $dir"
  mkdir -p "$data"
  write_config "$install" "$host:$port" "${5:-}" "${6:-}" "${7:-}"
  if [ -f "$state" ] && read -r service running_install running_port <"$state" && alive "$service"; then
    if [ "$running_install" = "$install" ] && [ "$running_port" = "$port" ]; then
      echo "service=$service"
      echo "started=no"
      return 0
    fi
    stop >/dev/null
  fi
  service=background
  if [ "$mode" = auto ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      service=systemd
    elif systemctl --user show-environment >/dev/null 2>&1 && lingering; then
      service=systemd-user
    else
      echo "start: systemd --user is not usable here (or lingering is not allowed); starting a supervised background process instead" >&2
    fi
  fi
  log=$data/worker.log
  # Only what this start writes counts: the log keeps earlier runs.
  offset=$(wc -c 2>/dev/null <"$log" || echo 0)
  case $service in
    systemd)
      "$install/install.sh" --data-dir "$data" --config "$dir/worker.toml" --systemd >&2
      systemctl restart easel-worker.service
      ;;
    systemd-user)
      "$install/install.sh" --data-dir "$data" --config "$dir/worker.toml" --systemd >&2
      systemctl --user restart easel-worker.service
      ;;
    background)
      setsid "$install/easel-worker-supervise" "$data/worker.pid" \
        --config "$dir/worker.toml" --data-dir "$data" >>"$log" 2>&1 </dev/null &
      ;;
  esac
  printf '%s %s %s\n' "$service" "$install" "$port" >"$state"
  waited=0
  until tail -c +$((offset + 1)) "$log" 2>/dev/null | grep -q "^worker: ready: serving"; do
    # The worker's own refusal (a port in use, a bad worker.toml) will not go away on a restart.
    if tail -c +$((offset + 1)) "$log" 2>/dev/null | grep -q "^error: "; then
      tail -c +$((offset + 1)) "$log" | grep "^error: " | head -n 3 >&2
      stop >/dev/null
      fail "the worker refused to start (its log: $log)"
    fi
    if [ $waited -ge 4 ] && ! alive "$service"; then
      tail -c +$((offset + 1)) "$log" 2>/dev/null | tail -n 20 >&2 || true
      rm -f "$state"
      fail "the worker stopped right after starting (its log: $log)"
    fi
    if [ $waited -ge 240 ]; then
      tail -c +$((offset + 1)) "$log" 2>/dev/null | tail -n 20 >&2 || true
      fail "the worker did not start serving within 2 minutes (its log: $log)"
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  echo "service=$service"
  echo "started=yes"
}

stop() {
  if [ ! -f "$state" ]; then
    echo "stopped=not-running"
    return 0
  fi
  read -r stopping_service stopping_install stopping_port <"$state" || true
  case $stopping_service in
    systemd)
      systemctl stop easel-worker.service
      systemctl disable easel-worker.service >/dev/null 2>&1 || true
      ;;
    systemd-user)
      systemctl --user stop easel-worker.service
      systemctl --user disable easel-worker.service >/dev/null 2>&1 || true
      ;;
    background)
      if pid=$(supervisor_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        # Running jobs stop at their next step and keep their checkpoint (up to 2 minutes).
        waited=0
        while kill -0 "$pid" 2>/dev/null; do
          if [ $waited -ge 240 ]; then
            # setsid made the supervisor its group's leader: the worker goes with it.
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            echo "stop: the worker did not stop within 2 minutes; killed it" >&2
            break
          fi
          sleep 0.5
          waited=$((waited + 1))
        done
      fi
      rm -f "$data/worker.pid"
      ;;
  esac
  rm -f "$state"
  echo "stopped=yes"
}

status() {
  running_line
  if [ -f "$data/worker.log" ]; then
    tail -n 20 "$data/worker.log" | sed 's/^/log=/'
  fi
}

trust() {
  [ -f "$data/token" ] || fail "no token in $data (has the worker started?)"
  echo "token=$(cat "$data/token")"
  if [ -f "$data/tls/fingerprint" ]; then
    echo "fingerprint=$(cat "$data/tls/fingerprint")"
  fi
}

case $verb in
  probe | install | start | stop | status | trust) "$verb" "$@" ;;
  *) fail "unknown verb $verb" ;;
esac

#!/usr/bin/env bash
# A one-node Slurm cluster on this machine for the tests: munge, slurmctld and slurmd from
# Debian's packages (installed when missing, as root), two fake GPUs (`Gres=gpu:2` over
# /dev/tty0 and /dev/tty1, so `--gres=gpu:1` jobs see CUDA_VISIBLE_DEVICES 0 and 1), one
# partition `gpu`, a job completion log, everything under DIR.
#
#   bash deploy/slurm.sh start DIR   prints `export SLURM_CONF=…` and `export EASEL_SLURM_DIR=…`
#   bash deploy/slurm.sh stop DIR
#
# Slurm's commands find this cluster through SLURM_CONF; nothing under /etc/slurm is touched.
set -euo pipefail
action=${1:?start or stop}
dir=${2:?a folder for the cluster}
say() { printf 'slurm: %s\n' "$*" >&2; }

install_packages() {
  local missing=()
  for command in slurmctld slurmd sbatch munged; do
    command -v "$command" >/dev/null || missing+=("$command")
  done
  [ ${#missing[@]} -eq 0 ] && return
  [ "$(id -u)" = 0 ] || { say "needs root to install slurmctld slurmd slurm-client munge"; exit 1; }
  say "installing slurmctld slurmd slurm-client munge"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
  if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || { mungekey --create --force >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
    chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge
    munged --force
  fi
}

# Two free TCP ports on loopback, so two clusters (two test runs) never share one.
free_ports() {
  python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))'
}

write_config() {
  local host memory ports
  host=$(hostname -s)
  read -r -a ports <<<"$(free_ports)"
  memory=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
  mkdir -p "$dir/state" "$dir/spool"
  cat >"$dir/slurm.conf" <<CONF
ClusterName=easel-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldPort=${ports[0]}
SlurmdPort=${ports[1]}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
JobRequeue=1
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
AccountingStorageType=accounting_storage/none
KillWait=30
MinJobAge=300
NodeName=$host CPUs=$(nproc) RealMemory=$memory Gres=gpu:2 State=UNKNOWN
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  cat >"$dir/gres.conf" <<CONF
Name=gpu File=/dev/tty[0-1]
CONF
}

case $action in
  start)
    install_packages
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    write_config
    start_munge
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 1 60); do
      if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        say "ready: partition gpu on $(hostname -s), 2 fake GPUs (config $SLURM_CONF)"
        echo "export SLURM_CONF=$SLURM_CONF"
        echo "export EASEL_SLURM_DIR=$dir"
        exit 0
      fi
      sleep 1
    done
    say "the node never came up; logs:"; tail -20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2
    exit 1
    ;;
  stop)
    # slurmctld writes its state as it shuts down, so the folder is only safe to remove once
    # both daemons have exited: wait for them (10 s each), then kill what is left.
    for pid_file in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
      [ -f "$pid_file" ] || continue
      pid=$(cat "$pid_file")
      kill "$pid" 2>/dev/null || continue
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
      rm -f "$pid_file"
    done
    ;;
  *) say "usage: slurm.sh start|stop DIR"; exit 2 ;;
esac

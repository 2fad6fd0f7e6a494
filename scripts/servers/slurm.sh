#!/usr/bin/env bash
# A SLURM cluster of several nodes on this one host, for testing
# deploy/slurm/chorus.sbatch for real: slurmctld, one slurmd per node name
# (all on this host), and a private munged for their authentication.
# Everything (config, munge key and socket, state, spool, logs, pids) lives
# under DIR.
#
#   scripts/servers/slurm.sh start DIR   # install if missing, start, wait
#   scripts/servers/slurm.sh stop DIR    # cancel jobs, stop what `start DIR` started
#
# `start` prints exactly these lines on stdout (everything else goes to
# stderr), ready for `export` or for tests/src/servers.rs:
#
#   SLURM_CONF=DIR/slurm.conf       (sbatch, srun, squeue, sinfo read it)
#   CHORUS_SLURM_NODES=chorus-n[1-2]
#   CHORUS_SLURM_PARTITION=chorus
#
# The nodes: chorus-n1, chorus-n2, ... with addresses 127.0.0.2, 127.0.0.3,
# ... (Linux routes all of 127/8 to loopback), named in /etc/hosts so that
# anything resolving a node name, such as `controller run --slurm`, reaches
# that node's address. Each slurmd runs with `-N <node>` on its own port.
#
# The configuration keeps SLURM to what works without a real cluster:
# SlurmUser=root (no slurm user needed), proctrack/linuxproc and task/none
# (no cgroups), select/linear (a job gets whole nodes), no accounting
# database, ReturnToService=2 (a node that was down comes back by itself).
#
# Environment:
#   CHORUS_SLURM_NODES         number of nodes (default 2, at most 200)
#   CHORUS_SLURM_START_TIMEOUT seconds to wait for the nodes (default 60)
set -euo pipefail

# Everything but the KEY=VALUE lines goes to stderr: fd 3 is the real stdout.
exec 3>&1 1>&2

NODE_PREFIX=chorus-n
PARTITION=chorus
# First loopback address of a node: node i (1-based) gets 127.0.0.(1+i),
# leaving 127.0.0.1 to the controller daemon.
ADDR_BASE=1
# Marks the lines this script adds to /etc/hosts, so they are added once.
HOSTS_MARK="# chorus slurm test node"

die() { echo "slurm.sh: $*" >&2; exit 1; }
# free_port, spawn, alive, our_pid, show_logs.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: $0 start|stop DIR"; }

[ $# -eq 2 ] || usage
CMD=$1
DIR=$2

NODES=${CHORUS_SLURM_NODES:-2}
[[ "$NODES" =~ ^[0-9]+$ ]] && [ "$NODES" -ge 1 ] && [ "$NODES" -le 200 ] ||
  die "CHORUS_SLURM_NODES must be 1 to 200"

# --- install -----------------------------------------------------------------

install_if_missing() {
  local missing=0 b
  for b in slurmctld slurmd sbatch srun sinfo scancel munged munge; do
    command -v "$b" >/dev/null || missing=1
  done
  [ $missing -eq 0 ] && return 0
  echo "slurm.sh: installing SLURM (slurm-wlm) and munge ..." >&2
  local SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  # Another start running in parallel may hold the dpkg lock: wait for it.
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q
    --no-install-recommends install slurm-wlm munge)
  if ! $SUDO "${apt[@]}"; then
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
    $SUDO "${apt[@]}"
  fi
}

# --- helpers -----------------------------------------------------------------


node_name() { echo "$NODE_PREFIX$1"; }
node_addr() { echo "127.0.0.$((ADDR_BASE + $1))"; }

# Node names in /etc/hosts, each once: the daemons, srun and the Chorus
# controller all resolve node names through the system resolver.
ensure_hosts() {
  local i name addr
  for i in $(seq 1 "$NODES"); do
    name=$(node_name "$i")
    addr=$(node_addr "$i")
    if ! grep -qE "^${addr//./\\.}[[:space:]]+${name}([[:space:]]|\$)" /etc/hosts; then
      grep -qwF "$name" /etc/hosts && die "/etc/hosts names $name with another address; fix it by hand"
      local SUDO=""
      [ "$(id -u)" = 0 ] || SUDO=sudo
      echo "$addr $name $HOSTS_MARK" | $SUDO tee -a /etc/hosts >/dev/null
    fi
  done
}





# --- stop --------------------------------------------------------------------

# Seconds to let jobs and daemons end before SIGKILL.
STOP_GRACE=10

stop() {
  [ -d "$DIR/pids" ] || return 0
  local pids=() f pid i
  # Jobs first, while slurmctld and the slurmds can still end them: a job's
  # processes (agents) are children of slurmstepd, not of the daemons, and
  # would outlive them.
  if our_pid "$DIR/pids/slurmctld.pid" >/dev/null && [ -f "$DIR/slurm.conf" ]; then
    SLURM_CONF="$DIR/slurm.conf" timeout 10 scancel --partition="$PARTITION" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_GRACE))
    while [ $SECONDS -lt $deadline ] &&
      [ -n "$(SLURM_CONF="$DIR/slurm.conf" timeout 5 squeue -h -o %i 2>/dev/null)" ]; do
      sleep 0.1
    done
  fi
  # munged also writes its own pid file: a second guard in case ours is stale.
  for f in "$DIR"/pids/slurmd-*.pid "$DIR/pids/slurmctld.pid" "$DIR/pids/munged.pid" "$DIR/munge/munged.pid"; do
    if pid=$(our_pid "$f"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for i in $(seq 1 $((STOP_GRACE * 10))); do
    local any=0
    for pid in "${pids[@]}"; do alive "$pid" && any=1; done
    [ $any -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$DIR"/pids/*.pid "$DIR/munge/munged.pid"
}

# --- start -------------------------------------------------------------------

start() {
  install_if_missing
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  # A second start on the same DIR replaces the first cluster.
  stop
  rm -rf "$DIR/munge" "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/pids" "$DIR/slurm.conf"
  mkdir -p "$DIR/munge" "$DIR/state" "$DIR/log" "$DIR/pids"
  ensure_hosts

  # munge: a key of our own and a socket under DIR, so a system munged (or
  # another cluster) is neither needed nor disturbed. munged refuses to run
  # as root without --force, and wants its directories closed to others.
  chmod 0700 "$DIR/munge"
  head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
  chmod 0400 "$DIR/munge/munge.key"
  local sock="$DIR/munge/munge.sock"
  spawn munged munged --foreground --force --socket="$sock" \
    --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
    --seed-file="$DIR/munge/munged.seed" --log-file="$DIR/log/munged.log"
  local deadline=$((SECONDS + 20))
  until [ -S "$sock" ] && munge -S "$sock" -n </dev/null >/dev/null 2>&1; do
    our_pid "$DIR/pids/munged.pid" >/dev/null || { show_logs; die "munged exited during start"; }
    [ $SECONDS -lt $deadline ] || { show_logs; stop; die "munged did not answer"; }
    sleep 0.1
  done

  local host ctld_port
  host=$(hostname -s)
  ctld_port=$(free_port)
  {
    cat <<EOF
# Written by scripts/servers/slurm.sh: $NODES nodes on this host.
ClusterName=chorus
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/state/slurmctld.pid
SlurmdPidFile=$DIR/state/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/linear
SchedulerType=sched/builtin
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=60
EOF
    local i cpus
    cpus=$(nproc)
    for i in $(seq 1 "$NODES"); do
      echo "NodeName=$(node_name "$i") NodeHostname=$host NodeAddr=$(node_addr "$i") Port=$(free_port) CPUs=$cpus State=UNKNOWN"
    done
    echo "PartitionName=$PARTITION Nodes=${NODE_PREFIX}[1-$NODES] Default=YES MaxTime=INFINITE State=UP"
  } >"$DIR/slurm.conf"
  export SLURM_CONF="$DIR/slurm.conf"

  spawn slurmctld slurmctld -D -c -f "$SLURM_CONF"
  local i
  for i in $(seq 1 "$NODES"); do
    mkdir -p "$DIR/spool/$(node_name "$i")"
    spawn "slurmd-$i" slurmd -D -N "$(node_name "$i")" -f "$SLURM_CONF"
  done

  # Up when every node is idle (registered and free).
  deadline=$((SECONDS + ${CHORUS_SLURM_START_TIMEOUT:-60}))
  local states
  while :; do
    states=$(timeout 5 sinfo -h -N -p "$PARTITION" -o '%N %T' 2>/dev/null || true)
    [ "$(grep -c ' idle$' <<<"$states" || true)" -eq "$NODES" ] && break
    for f in "$DIR"/pids/*.pid; do
      our_pid "$f" >/dev/null || { show_logs; stop; die "$(basename "$f" .pid) exited during start"; }
    done
    [ $SECONDS -lt $deadline ] || { echo "$states" >&2; show_logs; stop; die "nodes not idle within ${CHORUS_SLURM_START_TIMEOUT:-60}s"; }
    sleep 0.2
  done

  echo "slurm.sh: $NODES nodes up (dir $DIR)" >&2
  {
    echo "SLURM_CONF=$SLURM_CONF"
    echo "CHORUS_SLURM_NODES=${NODE_PREFIX}[1-$NODES]"
    echo "CHORUS_SLURM_PARTITION=$PARTITION"
  } >&3
}

case "$CMD" in
  start) start ;;
  stop)
    [ -d "$DIR" ] || exit 0
    DIR=$(cd "$DIR" && pwd)
    stop
    ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# A one-node Ceph cluster with a RADOS Gateway (S3) on 127.0.0.1, for tests
# and benchmarks. Everything (config, mon store, OSD, sockets, logs, pids)
# lives under DIR, so two clusters can run side by side.
#
#   scripts/servers/rgw.sh start DIR   # install if missing, start, wait
#   scripts/servers/rgw.sh stop DIR    # stop what `start DIR` started
#
# `start` prints exactly these lines on stdout (everything else goes to
# stderr), ready for `export` or for tests/src/servers.rs:
#
#   AWS_ENDPOINT_URL=http://127.0.0.1:PORT
#   AWS_ACCESS_KEY_ID=...
#   AWS_SECRET_ACCESS_KEY=...
#   AWS_REGION=us-east-1
#   CHORUS_RGW_ENDPOINTS=http://127.0.0.{1...3}:PORT   (the same RGW on three
#     loopback addresses, for multi-endpoint tests)
#
# The cluster: 1 mon, 1 OSD on memstore (objects in the OSD's memory: no
# disk file to size, and the fastest to start; set CHORUS_RGW_OBJECTSTORE=
# bluestore for a file-backed BlueStore instead), no cephx (auth none), pool
# size 1, and RGW's beast frontend with TCP_NODELAY. No mgr: RGW does not
# need one, and it would cost start time and memory.
#
# Environment:
#   CHORUS_RGW_OBJECTSTORE   memstore (default) or bluestore
#   CHORUS_RGW_START_TIMEOUT seconds to wait for RGW to answer (default 180)
set -euo pipefail

# Everything but the KEY=VALUE lines goes to stderr: fd 3 is the real stdout.
exec 3>&1 1>&2

# Memstore cap: the OSD refuses writes beyond it. Tests write tens of MB and
# the small-object benchmark a few hundred MB; 8 GiB leaves room without
# being reserved up front (memstore allocates as objects arrive).
MEMSTORE_BYTES=$((8 << 30))
# BlueStore file size (sparse, so it costs only what is written).
BLUESTORE_BYTES=$((20 << 30))
# PGs per pool: RGW makes ~7 pools, and one OSD allows 250 PGs by default;
# 8 each keeps well under that and peers quickly.
PG_NUM=8

die() { echo "rgw.sh: $*" >&2; exit 1; }
# free_port, spawn, alive, our_pid, show_logs.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: $0 start|stop DIR"; }

[ $# -eq 2 ] || usage
CMD=$1
DIR=$2

# --- install -----------------------------------------------------------------

install_if_missing() {
  local missing=0
  for b in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph curl; do
    command -v "$b" >/dev/null || missing=1
  done
  [ $missing -eq 0 ] && return 0
  echo "rgw.sh: installing Ceph (radosgw ceph-mon ceph-osd) ..." >&2
  local SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  local pkgs=(radosgw ceph-mon ceph-osd ceph-common curl)
  # Another start running in parallel may hold the dpkg lock: wait for it.
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q
    --no-install-recommends install "${pkgs[@]}")
  if ! $SUDO "${apt[@]}"; then
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
    $SUDO "${apt[@]}"
  fi
}

# --- helpers -----------------------------------------------------------------


# Random string of $1 characters from the class $2 (tr syntax).
rand_str() {
  tr -dc "$2" </dev/urandom | head -c "$1" || true
}





CEPH() { timeout 60 ceph -c "$DIR/ceph.conf" "$@"; }

# --- stop --------------------------------------------------------------------

# Seconds to let daemons exit on SIGTERM before SIGKILL.
STOP_GRACE=10

stop() {
  [ -d "$DIR/pids" ] || return 0
  local pids=() f pid i
  # RGW first, then the OSD, then the mon: each still has what it needs.
  for f in "$DIR/pids/rgw.pid" "$DIR/pids/osd.pid" "$DIR/pids/mon.pid"; do
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
  rm -f "$DIR"/pids/*.pid
  # The memstore contents go with the OSD; drop the big on-disk parts too.
  rm -rf "$DIR/osd" "$DIR/mon"
}

# --- start -------------------------------------------------------------------

start() {
  install_if_missing
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  # A second start on the same DIR replaces the first cluster.
  stop
  rm -rf "$DIR/run" "$DIR/log" "$DIR/pids" "$DIR/rgw" "$DIR/ceph.conf"
  mkdir -p "$DIR/run" "$DIR/log" "$DIR/pids" "$DIR/mon/a" "$DIR/osd/0" "$DIR/rgw"

  local fsid mon_port rgw_port store
  fsid=$(cat /proc/sys/kernel/random/uuid)
  mon_port=$(free_port)
  rgw_port=$(free_port)
  store=${CHORUS_RGW_OBJECTSTORE:-memstore}
  case "$store" in memstore | bluestore) ;; *) die "CHORUS_RGW_OBJECTSTORE must be memstore or bluestore" ;; esac

  cat >"$DIR/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
# Without cephx there are no session keys for "secure" mode: prefer crc.
ms mon client mode = crc secure
ms client mode = crc secure
ms service mode = crc secure
ms cluster mode = crc secure
ms mon service mode = crc secure
ms mon cluster mode = crc secure
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$cluster-\$name.asok
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log
pid file = $DIR/run/\$name.pid
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = $PG_NUM
osd pool default pgp num = $PG_NUM
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool delete = true
mon allow pool size one = true
mon warn on pool no redundancy = false
# A shared CI disk can be under 1% free; the mon refuses to start when
# free% <= crit, so -1 keeps a throwaway test cluster up regardless.
mon data avail warn = 0
mon data avail crit = -1
mon osd full ratio = .99
mon osd backfillfull ratio = .99
mon osd nearfull ratio = .99

[mon]
mon data = $DIR/mon/\$id

[osd]
osd data = $DIR/osd/\$id
osd objectstore = $store
memstore device bytes = $MEMSTORE_BYTES
bluestore block path = $DIR/osd/\$id/block.file
bluestore block create = true
bluestore block size = $BLUESTORE_BYTES
bluestore fsck on mount = false
osd max object name len = 460
osd max object namespace len = 64

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port endpoint=127.0.0.2:$rgw_port endpoint=127.0.0.3:$rgw_port tcp_nodelay=1
rgw data = $DIR/rgw
rgw enable usage log = false
EOF

  # Mon: a monmap with just us, then the store, then the daemon.
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$DIR/ceph.conf" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
  spawn mon ceph-mon -c "$DIR/ceph.conf" -i a -f
  CEPH mon stat >/dev/null || { show_logs; die "the mon did not come up"; }

  # OSD 0.
  local osd_uuid osd_id
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  osd_id=$(CEPH osd new "$osd_uuid")
  [ "$osd_id" = 0 ] || die "expected osd id 0, got '$osd_id'"
  ceph-osd -c "$DIR/ceph.conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/osd-mkfs.out" 2>&1 ||
    { cat "$DIR/log/osd-mkfs.out" >&2; die "osd mkfs failed"; }
  spawn osd ceph-osd -c "$DIR/ceph.conf" -i 0 -f

  # RGW creates its pools itself once the OSD is up.
  spawn rgw radosgw -c "$DIR/ceph.conf" -n client.rgw.a -f

  local deadline=$((SECONDS + ${CHORUS_RGW_START_TIMEOUT:-180}))
  until curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$rgw_port/"; do
    for d in mon osd rgw; do
      our_pid "$DIR/pids/$d.pid" >/dev/null || { show_logs; stop; die "$d exited during start"; }
    done
    [ $SECONDS -lt $deadline ] || { show_logs; stop; die "RGW did not answer within ${CHORUS_RGW_START_TIMEOUT:-180}s"; }
    sleep 0.5
  done

  # An S3 user with fresh random keys (20/40 characters, AWS's key shapes).
  local access secret
  access=$(rand_str 20 'A-Z0-9')
  secret=$(rand_str 40 'A-Za-z0-9')
  timeout 60 radosgw-admin -c "$DIR/ceph.conf" user create --uid=chorus --display-name=chorus \
    --access-key="$access" --secret-key="$secret" >"$DIR/log/user-create.out" 2>&1 ||
    { cat "$DIR/log/user-create.out" >&2; stop; die "radosgw-admin user create failed"; }

  echo "rgw.sh: RGW up at http://127.0.0.1:$rgw_port (dir $DIR)" >&2
  {
    echo "AWS_ENDPOINT_URL=http://127.0.0.1:$rgw_port"
    echo "AWS_ACCESS_KEY_ID=$access"
    echo "AWS_SECRET_ACCESS_KEY=$secret"
    echo "AWS_REGION=us-east-1"
    # The same gateway on three loopback addresses: three endpoints of one
    # cluster, for multi-endpoint tests.
    echo "CHORUS_RGW_ENDPOINTS=http://127.0.0.{1...3}:$rgw_port"
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

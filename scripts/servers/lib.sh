# Shared by the scripts in scripts/servers/ (sourced, not run): ports,
# daemons started detached with their pids recorded, and their logs.
# The sourcing script sets DIR (its data folder) before calling these, and
# defines die().

# Ports are drawn at random below the kernel's ephemeral range (32768 up by
# default): a daemon that binds its port seconds after it was chosen (RGW
# does, after its pools exist) must not lose it to another test's outgoing
# connection or bind-to-0 meanwhile. Also clear of Ceph's OSD ports
# (6800-7300).
PORT_LOW=20000
PORT_SPAN=$(( $(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768) - PORT_LOW ))
USED_PORTS=" "

# A TCP port nothing listens on (connect refused) on 127.0.0.1, never one
# this script already handed out.
free_port() {
  local p i
  for i in $(seq 1 100); do
    p=$((PORT_LOW + (RANDOM * 32768 + RANDOM) % PORT_SPAN))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    if ! (exec 9<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS="$USED_PORTS$p "
      echo "$p"
      return 0
    fi
  done
  die "no free port found"
}

# Runs a daemon in the foreground of a new session, detached from our
# stdout/stderr and from fd 3 (the caller waits for EOF on them: a daemon
# holding one open would hang it), and records its pid under DIR/pids so
# `stop` can find exactly what we started. Logs go to DIR/log/NAME.out.
spawn() {
  local name=$1
  shift
  mkdir -p "$DIR/log" "$DIR/pids"
  setsid "$@" </dev/null >"$DIR/log/$name.out" 2>&1 3>&- &
  echo $! >"$DIR/pids/$name.pid"
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# The pid recorded in file $1, if it is still the process we started: its
# command line contains $2 (default: "DIR/"), which guards against pid reuse.
our_pid() {
  local f=$1 mark=${2:-$DIR/} pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$mark" || return 1
  echo "$pid"
}

# The last lines of every log under DIR/log, on stderr.
show_logs() {
  local f
  for f in "$DIR"/log/*; do
    [ -f "$f" ] || continue
    echo "--- $f (tail)" >&2
    tail -n 30 "$f" >&2 || true
  done
}

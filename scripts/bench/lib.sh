# lib.sh: sourced by the bench scripts (not run on its own).

# release_bin ROOT NAME: the path of binary NAME as `cargo build --release`
# run in ROOT leaves it: under $CARGO_TARGET_DIR when that is set (absolute,
# or relative to ROOT, where cargo runs), else under ROOT/target.
release_bin() {
  local root=$1 name=$2
  case "${CARGO_TARGET_DIR:-}" in
    "") echo "$root/target/release/$name" ;;
    /*) echo "$CARGO_TARGET_DIR/release/$name" ;;
    *) echo "$root/$CARGO_TARGET_DIR/release/$name" ;;
  esac
}

# need_time: installs GNU time (/usr/bin/time) when missing: the benches
# read a run's CPU from it.
need_time() {
  [ -x /usr/bin/time ] && return 0
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >&2 ||
    { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q time; } >&2
}

# start_rgw ROOT LOG: starts a Ceph RGW (scripts/servers/rgw.sh) in a new
# folder, stopped and removed when the calling script exits; exports the
# AWS_* variables it prints and sets RGW_DIR. Its start-up output goes to
# LOG; returns 1 (LOG shown) if it did not start.
start_rgw() {
  local root=$1 log=$2
  RGW_DIR=$(mktemp -d /tmp/chorus-bench-rgw-XXXXXX)
  # shellcheck disable=SC2064 # the paths are fixed now, on purpose
  trap "'$root/scripts/servers/rgw.sh' stop '$RGW_DIR' || true; rm -rf '$RGW_DIR'" EXIT
  echo "starting RGW under $RGW_DIR ..."
  local k v
  while IFS='=' read -r k v; do
    case "$k" in AWS_*) export "$k=$v" ;; esac
  done < <("$root/scripts/servers/rgw.sh" start "$RGW_DIR" 2>"$log")
  [ -n "${AWS_ENDPOINT_URL:-}" ] || { cat "$log" >&2; return 1; }
  echo "RGW at $AWS_ENDPOINT_URL"
}

# release_controller ROOT: builds the release binaries (unless
# SKIP_BUILD=1) and prints the controller's path; fails if it is missing.
release_controller() {
  local root=$1 bin
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$root" && cargo build --release --bins) >&2
  fi
  bin=$(release_bin "$root" controller)
  [ -x "$bin" ] || { echo "no $bin; build with cargo build --release --bins" >&2; return 1; }
  echo "$bin"
}

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

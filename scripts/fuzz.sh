#!/usr/bin/env bash
# Fuzzes the parsers that read bytes Chorus did not write (plans, op-logs,
# spools, traces, the merge's inputs, gRPC messages) with AFL++ through
# `cargo afl`, on the stable toolchain. The targets are the functions of
# tests/fuzz/targets.rs; tests/tests/fuzz_corpora.rs replays the committed
# corpora through them in the normal test suite.
#
#   scripts/fuzz.sh                  # every target, FUZZ_SECONDS each
#   scripts/fuzz.sh plan spool       # some targets
#   scripts/fuzz.sh cmin TARGET      # minimize TARGET's corpus with what
#                                    # the last run found (replaces it)
#   scripts/fuzz.sh seeds DIR        # write the seed inputs to DIR/<target>/
#
# FUZZ_SECONDS  time per target (default 600)
# FUZZ_MEMORY   afl-fuzz -m, MiB of address space per execution (default
#               1024): an input that makes a parser allocate past it aborts
#               and is a crash
# FUZZ_TIMEOUT  afl-fuzz -t, ms per execution before it is a hang (2000)
# FUZZ_OUT      afl's output directory (tests/fuzz/target/afl-out)
#
# Prints, per target: the time it ran, executions, corpus entries, crashes
# and hangs. Exits 1 when any target found a crash or a hang; their inputs
# are in $FUZZ_OUT/<target>/default/{crashes,hangs}/. A crash, once fixed,
# is committed to tests/fuzz/regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzz=$root/tests/fuzz
TARGETS=(plan oplog spool trace merge proto)
seconds=${FUZZ_SECONDS:-600}
memory=${FUZZ_MEMORY:-1024}
timeout=${FUZZ_TIMEOUT:-2000}
out=${FUZZ_OUT:-$fuzz/target/afl-out}

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
# cargo-afl pinned to the `afl` crate the harness uses (tests/fuzz/Cargo.toml).
if ! cargo afl --version >/dev/null 2>&1; then
  cargo install cargo-afl --version '^0.18' --locked
fi
# AFL++ itself, built once per toolchain by cargo-afl (make and a C compiler).
if ! built=$(cargo afl config --build 2>&1); then
  # It refuses to build twice; anything else is a real failure.
  grep -q "already built" <<<"$built" || { echo "$built" >&2; exit 1; }
fi

build() {
  # Optimized less than cargo-afl's default 3: the harness pulls in the
  # whole chorus-common (S3, Azure, GCS clients), and opt-level 1 halves
  # its build while the parsers stay fast enough to fuzz.
  (cd "$fuzz" && AFL_OPT_LEVEL=${AFL_OPT_LEVEL:-1} cargo afl build --release --locked)
}

bin() { echo "$fuzz/target/release/$1"; }

case "${1:-}" in
  seeds)
    [ $# -eq 2 ] || { echo "usage: $0 seeds DIR" >&2; exit 2; }
    build
    exec "$(bin seeds)" "$root" "$2"
    ;;
  cmin)
    [ $# -eq 2 ] || { echo "usage: $0 cmin TARGET" >&2; exit 2; }
    t=$2
    queue=$out/$t/default/queue
    [ -d "$queue" ] || { echo "no queue at $queue: run $0 $t first" >&2; exit 2; }
    build
    # afl-cmin.bash, not `cargo afl cmin`: AFL++ 4.40's Python afl-cmin
    # finds no tuples in these persistent-mode targets and keeps nothing.
    ver=$(rustc -vV | awk '/^release:/ { r = $2 } /^commit-hash:/ { c = substr($2, 1, 7) }
                           END { print "rustc-" r "-" c }')
    afl_bin=$(ls -d "${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/"$ver"/afl.rs-*/afl/bin | tail -1)
    all=$(mktemp -d)
    min=$(mktemp -d)
    rmdir "$min"
    cp "$fuzz/corpus/$t"/* "$all"/
    # The queue's `orig:` entries are the corpus's own files, copied above.
    for f in "$queue"/id:*; do
      [[ $f == *orig:* ]] || cp "$f" "$all/q-$(basename "$f" | cut -c4-9)"
    done
    TMPDIR=${TMPDIR:-/dev/shm} AFL_PATH=$afl_bin PATH=$afl_bin:$PATH AFL_SKIP_CPUFREQ=1 \
      "$afl_bin/afl-cmin.bash" -m "$memory" -t "$timeout" -i "$all" -o "$min" \
      -- "$(bin "$t")" >"$out/$t.cmin.log" 2>&1 || { tail -5 "$out/$t.cmin.log" >&2; exit 1; }
    [ -n "$(ls "$min")" ] || { echo "afl-cmin kept nothing; $fuzz/corpus/$t left as it was" >&2; exit 1; }
    # Seeds keep their names; a found input is named by its content.
    rm -rf "${fuzz:?}/corpus/$t"
    mkdir -p "$fuzz/corpus/$t"
    for f in "$min"/*; do
      name=$(basename "$f")
      [[ $name == q-* ]] && name=found-$(sha1sum "$f" | cut -c1-12)
      cp "$f" "$fuzz/corpus/$t/$name"
    done
    rm -rf "$all" "$min"
    echo "$t: $(ls "$fuzz/corpus/$t" | wc -l) files, $(du -sh --apparent-size "$fuzz/corpus/$t" | cut -f1)B"
    exit 0
    ;;
esac

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}")
for t in "${targets[@]}"; do
  [[ " ${TARGETS[*]} " == *" $t "* ]] || { echo "unknown target $t (one of: ${TARGETS[*]})" >&2; exit 2; }
done
build

# The merge target writes its logs to files: on a tmpfs, fsync is free.
scratch=$(mktemp -d "${FUZZ_TMP:-/dev/shm}/chorus-fuzz.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT

failed=0
report=()
for t in "${targets[@]}"; do
  rm -rf "${out:?}/$t"
  mkdir -p "$out/$t"
  echo "== $t: ${seconds}s, -m ${memory} MiB, -t ${timeout} ms" >&2
  # -V: stop after the time; AFL_NO_UI: a log instead of the screen.
  # Crashes are caught by afl's fork server whatever core_pattern says.
  # MALLOC_ARENA_MAX: glibc reserves 64 MiB of address space per thread
  # arena, which -m counts; two keep the limit about what is allocated.
  TMPDIR=$scratch AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    AFL_NO_AFFINITY=1 MALLOC_ARENA_MAX=2 \
    nice -n 10 cargo afl fuzz -V "$seconds" -m "$memory" -t "$timeout" \
      -i "$fuzz/corpus/$t" -o "$out/$t" -- "$(bin "$t")" >"$out/$t.log" 2>&1 || {
        echo "afl-fuzz failed for $t; its log:" >&2
        tail -30 "$out/$t.log" >&2
        failed=1
        continue
      }
  stats=$out/$t/default/fuzzer_stats
  get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  crashes=$(get saved_crashes)
  hangs=$(get saved_hangs)
  line=$(printf '%-6s %6ss  execs %10s  (%s/s)  corpus %5s  edges %s  crashes %s  hangs %s' \
    "$t" "$(get run_time)" "$(get execs_done)" "$(get execs_per_sec)" "$(get corpus_count)" \
    "$(get edges_found)" "$crashes" "$hangs")
  report+=("$line")
  echo "$line" >&2
  if [ "${crashes:-0}" != 0 ] || [ "${hangs:-0}" != 0 ]; then
    failed=1
  fi
done

echo
echo "target   time    executions        rate     corpus  edges  crashes  hangs"
printf '%s\n' "${report[@]}"
if [ $failed -ne 0 ]; then
  echo "crashes or hangs (or afl-fuzz failed): inputs under $out/<target>/default/" >&2
  exit 1
fi

#!/bin/sh
# Waits until the agents answer, so `controller run` starts with all of
# them rather than failing on the first pod still being scheduled. Runs as
# the controller Job's init container (POSIX sh: the image is Debian slim).
#
#   wait-for-agents.sh agents [DISCOVERY FLAGS] SECURITY FLAGS
#
# The arguments are a `controller agents` command line; it exits 0 only
# when every agent it was given or found answered. By CHORUS_DISCOVERY:
#   static  the arguments name every agent (--agents): wait until all answer.
#   etcd    the arguments say --etcd: wait until all registered agents
#           answer and there are CHORUS_EXPECTED_AGENTS of them (0: at
#           least one, and the same addresses three checks in a row, i.e.
#           the DaemonSet has settled).
#   dns     (DaemonSet without etcd) resolve CHORUS_AGENTS_SERVICE, the
#           headless Service (ready pods only), to addresses on
#           CHORUS_AGENT_PORT; wait as for etcd, then write the list to
#           CHORUS_AGENTS_FILE, which the controller container appends.
# CHORUS_WAIT_SECONDS bounds the wait; then the Job fails with the reason.
# CHORUS_WAIT_INTERVAL is the pause between checks (default 5 s).
set -u

: "${CHORUS_DISCOVERY:?}" "${CHORUS_WAIT_SECONDS:?}"
expected=${CHORUS_EXPECTED_AGENTS:-0}
interval=${CHORUS_WAIT_INTERVAL:-5}
deadline=$(($(date +%s) + CHORUS_WAIT_SECONDS))

# The ready agents behind the Service, as host:port,host:port (IPv6
# addresses bracketed), sorted so that equal sets compare equal.
resolve() {
  getent ahosts "$CHORUS_AGENTS_SERVICE" |
    awk -v port="$CHORUS_AGENT_PORT" '{ a = $1; if (index(a, ":")) a = "[" a "]"; print a ":" port }' |
    sort -u | paste -sd, -
}

# The agent addresses in `controller agents --json` output, sorted, one per
# line (the JSON has one object per agent, each with an "address").
addresses() {
  grep -o '"address": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/' | sort
}

previous=""
same=0
reason=""
while :; do
  case "$CHORUS_DISCOVERY" in
    static)
      if out=$(controller "$@" 2>&1); then
        echo "wait-for-agents: every agent answers"
        exit 0
      fi
      reason=$out
      ;;
    etcd | dns)
      found=""
      if [ "$CHORUS_DISCOVERY" = dns ]; then
        list=$(resolve)
        if [ -z "$list" ]; then
          out="no ready agent behind $CHORUS_AGENTS_SERVICE yet"
        elif out=$(controller "$@" --agents "$list" --json 2>&1); then
          found=$(printf '%s\n' "$out" | addresses)
        fi
      elif out=$(controller "$@" --json 2>&1); then
        found=$(printf '%s\n' "$out" | addresses)
      fi
      # Every agent found answered (else `found` stays empty).
      n=$(printf '%s' "$found" | grep -c . || true)
      if [ "$n" -gt 0 ] && [ "$found" = "$previous" ]; then same=$((same + 1)); else same=0; fi
      previous=$found
      if [ "$n" -gt 0 ] && { { [ "$expected" -gt 0 ] && [ "$n" -ge "$expected" ]; } ||
        { [ "$expected" -eq 0 ] && [ "$same" -ge 2 ]; }; }; then
        if [ "$CHORUS_DISCOVERY" = dns ]; then
          printf '%s' "$list" >"$CHORUS_AGENTS_FILE"
        fi
        echo "wait-for-agents: $n agents answer: $(printf '%s' "$found" | paste -sd' ' -)"
        exit 0
      fi
      if [ "$n" -gt 0 ]; then
        if [ "$expected" -gt 0 ]; then
          reason="$n of $expected agents answer"
        else
          reason="$n agents answer, waiting for the set to settle"
        fi
      else
        reason=$out
      fi
      ;;
    *)
      echo "wait-for-agents: CHORUS_DISCOVERY must be static, etcd or dns, not $CHORUS_DISCOVERY" >&2
      exit 2
      ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "wait-for-agents: agents not ready after ${CHORUS_WAIT_SECONDS}s; last check: $reason" >&2
    exit 1
  fi
  sleep "$interval"
done

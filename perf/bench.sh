#!/usr/bin/env bash
# Runs the benchmark scenarios of perf/RESULTS.md one after another and keeps every
# output (table + JSON line) under $OUT. Each run first waits (bounded) until no rustc
# is running and the machine is mostly idle, since it may be shared with builds.
#
#   perf/bench.sh [scenario ...]      # default: all
#   SERVER_BIN=/path/to/corecast OUT=/tmp/ccbench/results perf/bench.sh tcp500
set -u
cd "$(dirname "$0")/.."
PERF=${PERF:-target/release/corecast-perf}
SERVER_BIN=${SERVER_BIN:-target/release/corecast}
OUT=${OUT:-/tmp/ccbench/results}
DUR=${DUR:-20}
mkdir -p "$OUT"

# Waits (bounded by QUIET_WAIT seconds) until no rustc runs and the machine is mostly idle
# (< QUIET_PCT % of a core busy), since the machine may be shared with builds and tests.
QUIET_WAIT=${QUIET_WAIT:-600}
QUIET_PCT=${QUIET_PCT:-30}
wait_quiet() {
  local start=$SECONDS cores
  cores=$(nproc)
  while [ $((SECONDS - start)) -lt "$QUIET_WAIT" ]; do
    if ! pgrep -x rustc >/dev/null; then
      local a b
      a=($(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat))
      sleep 2
      b=($(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat))
      local busy=$((b[0] - a[0])) idle=$((b[1] - a[1]))
      local pct=$((100 * busy * cores / (busy + idle + 1)))
      [ "$pct" -lt "$QUIET_PCT" ] && return 0
    fi
    sleep 3
  done
  echo "warning: machine still busy after ${QUIET_WAIT}s, measuring anyway" >&2
}

run() {
  local name=$1; shift
  wait_quiet
  echo "== $name: $PERF $*" | tee "$OUT/$name.txt"
  uptime >> "$OUT/$name.txt"
  timeout 900 "$PERF" "$@" 2>&1 | tee -a "$OUT/$name.txt"
}

sw() { run "$1" swarm --server-bin "$SERVER_BIN" "${@:2}"; }

scenario() {
  case $1 in
    tcp100)  sw tcp100  --publishers 1 --viewers 100  --duration "$DUR" ;;
    tcp500)  sw tcp500  --publishers 1 --viewers 500  --duration "$DUR" ;;
    tcp1000) sw tcp1000 --publishers 1 --viewers 1000 --duration "$DUR" ;;
    tcp2000) sw tcp2000 --publishers 1 --viewers 2000 --duration "$DUR" ;;
    udp100)  sw udp100  --publishers 1 --viewers 100  --transport udp --duration "$DUR" ;;
    udp500)  sw udp500  --publishers 1 --viewers 500  --transport udp --duration "$DUR" ;;
    udp1000) sw udp1000 --publishers 1 --viewers 1000 --transport udp --duration "$DUR" ;;
    s100x10) sw s100x10 --publishers 100 --viewers 10 --duration "$DUR" ;;
    idle1000) sw idle1000 --publishers 1 --viewers 1000 --idle --duration 5 ;;
    s100x10p) sw s100x10p --publishers 100 --viewers 10 --duration "$DUR" --prefill 45 ;;
    cmp1000) run cmp1000 compare --server-bin "$SERVER_BIN" --peers corecast,gst,floor --rounds 2 --publishers 1 --viewers 1000 --duration "$DUR" ;;
    cmp100x10) run cmp100x10 compare --server-bin "$SERVER_BIN" --peers corecast,floor --rounds 1 --publishers 100 --viewers 10 --duration "$DUR" --prefill 45 ;;
    cmp300)  run cmp300 compare --server-bin "$SERVER_BIN" --peers corecast,gst,floor --rounds 2 --publishers 1 --viewers 300 --duration "$DUR" ;;
    cmp300u) run cmp300u compare --server-bin "$SERVER_BIN" --peers corecast,gst,floor --rounds 2 --publishers 1 --viewers 300 --transport udp --duration "$DUR" ;;
    soak)    run soak soak --server-bin "$SERVER_BIN" --publishers 1 --viewers 200 --duration "${SOAK_DUR:-180}" --life-min 5 --life-max 30 --sample-secs 5 ;;
    *) echo "unknown scenario $1" >&2; return 1 ;;
  esac
}

if [ $# -eq 0 ]; then
  set -- tcp100 tcp500 tcp1000 tcp2000 udp100 udp500 udp1000 s100x10 s100x10p idle1000 \
    cmp300 cmp300u cmp1000 cmp100x10 soak
fi
for s in "$@"; do scenario "$s"; done

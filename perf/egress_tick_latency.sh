#!/bin/bash
# Latency side of the egress tick A/B: the harness's synthetic publisher stamps every
# packet, so `swarm` reports end-to-end latency percentiles; the server runs with
# `fanout: egress_tick_us` set per turn. Usage: perf/egress_tick_latency.sh VIEWERS ROUNDS "TICKS"
V=${1:-1000}; ROUNDS=${2:-2}; TICKS=${3:-"0 2000"}
BIN=target/release/corecast; PERF=target/release/corecast-perf
OUT=/tmp/rp/egress_latency.jsonl; : > $OUT; mkdir -p /tmp/rp
for round in $(seq $ROUNDS); do for tick in $TICKS; do
  cat > /tmp/rp/lat.yaml <<Y
rtsp: {listen: "127.0.0.1:18554", rtp_port: 18600}
api: {listen: "127.0.0.1:18984"}
log: {level: warn}
fanout: {egress_tick_us: $tick}
Y
  $BIN -c /tmp/rp/lat.yaml > /tmp/rp/lat-$tick.log 2>&1 &
  SRV=$!
  for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18984/api && break; sleep 0.1; done
  printf '{"round":%s,"egress_tick_us":%s,"result":' $round $tick >> $OUT
  $PERF swarm --server-pid $SRV --rtsp 127.0.0.1:18554 --viewers $V --duration 10 --json-only 2>/dev/null | tail -1 | tr -d '\n' >> $OUT
  echo '}' >> $OUT
  kill $SRV; wait $SRV 2>/dev/null
done; done

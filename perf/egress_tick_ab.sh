#!/bin/bash
# A/B of `fanout: egress_tick_us` with a real publisher: ffmpeg sends a camera-like clip
# packet by packet (-re -c copy, H.264 1 Mbit/s + AAC, 25 fps, 2 s GOP) and
# `corecast-perf view` runs V RTSP/TCP viewers, reporting the server's CPU. Settings
# alternate in turns so machine noise spreads over all of them. The clip:
#   ffmpeg -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=1000:sample_rate=48000 \
#     -t 30 -c:v libx264 -preset veryfast -b:v 1M -maxrate 1M -bufsize 1M -g 50 -bf 0 \
#     -pix_fmt yuv420p -c:a aac -b:a 64k /tmp/rp/clip.mp4
# Usage: perf/egress_tick_ab.sh VIEWERS ROUNDS "TICK_US..."   (from the repo root)
V=${1:-1000}; ROUNDS=${2:-2}; TICKS=${3:-"0 2000 5000"}
BIN=target/release/corecast; PERF=target/release/corecast-perf
OUT=/tmp/rp/egress_tick.jsonl; : > $OUT
for round in $(seq $ROUNDS); do for tick in $TICKS; do
  cat > /tmp/rp/tick.yaml <<Y
rtsp: {listen: "127.0.0.1:18554", rtp_port: 18600}
api: {listen: "127.0.0.1:18984"}
log: {level: warn}
fanout: {egress_tick_us: $tick}
Y
  $BIN -c /tmp/rp/tick.yaml > /tmp/rp/srv-$tick.log 2>&1 &
  SRV=$!
  for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18984/api && break; sleep 0.1; done
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i /tmp/rp/clip.mp4 -c copy -f rtsp -rtsp_transport tcp rtsp://127.0.0.1:18554/cam &
  PUB=$!
  for i in $(seq 100); do curl -s "http://127.0.0.1:18984/api/streams?src=cam" | grep -q '"online":true' && break; sleep 0.1; done
  printf '{"round":%s,"egress_tick_us":%s,"result":' $round $tick >> $OUT
  $PERF view --url rtsp://127.0.0.1:18554/cam --viewers $V --duration 15 --server-pid $SRV --json-only | tail -1 | tr -d '\n' >> $OUT
  echo '}' >> $OUT
  kill $PUB; kill $SRV; wait $PUB $SRV 2>/dev/null
done; done

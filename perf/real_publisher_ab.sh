#!/bin/bash
# A/B of two corecast builds with a real publisher: ffmpeg sends a camera-like clip packet
# by packet (-re -c copy, H.264 1 Mbit/s + AAC, 25 fps, 2 s GOP), 500 RTSP/TCP viewers from
# `corecast-perf view`, which also reports the server's CPU. Builds and harness are copies
# in /tmp/ccb (corecast-base, corecast-final, perf); the clip is made by:
#   ffmpeg -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=1000:sample_rate=48000 \
#     -t 30 -c:v libx264 -preset veryfast -b:v 1M -maxrate 1M -bufsize 1M -g 50 -bf 0 \
#     -pix_fmt yuv420p -c:a aac -b:a 64k /tmp/rp/clip.mp4
OUT=/tmp/rp/results.txt; : > $OUT
for round in 1 2; do for build in base final; do
  cat > /tmp/rp/cfg.yaml <<Y
rtsp: {listen: "127.0.0.1:18554", rtp_port: 18600}
api: {listen: "127.0.0.1:18984"}
log: {level: warn}
Y
  /tmp/ccb/corecast-$build -c /tmp/rp/cfg.yaml > /tmp/rp/srv-$build.log 2>&1 &
  SRV=$!
  for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18984/api && break; sleep 0.1; done
  ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i /tmp/rp/clip.mp4 -c copy -f rtsp -rtsp_transport tcp rtsp://127.0.0.1:18554/cam &
  PUB=$!
  for i in $(seq 100); do curl -s "http://127.0.0.1:18984/api/streams?src=cam" | grep -q '"online":true' && break; sleep 0.1; done
  echo "=== round $round build $build" >> $OUT
  /tmp/ccb/perf view --url rtsp://127.0.0.1:18554/cam --viewers 500 --duration 20 --server-pid $SRV --json-only >> $OUT 2>&1
  kill $PUB; kill $SRV; wait $PUB $SRV 2>/dev/null
done; done
echo RPDONE >> $OUT

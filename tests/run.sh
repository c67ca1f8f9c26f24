#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests need
# (ffmpeg, GStreamer from apt; pytest from PyPI), builds, runs unit tests, then the
# end-to-end tests against real peers.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
APT_PKGS="ffmpeg gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp \
python3-gi gir1.2-gst-rtsp-server-1.0 gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
openssl iproute2 procps chromium gstreamer1.0-nice gir1.2-gst-plugins-bad-1.0 coturn"
missing=""
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "== installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
PY=python3
$PY -c "import pytest" 2>/dev/null || $PY -m pip install -q pytest
# The Chromium test drives the browser over the DevTools protocol (a WebSocket).
$PY -c "import websocket" 2>/dev/null || $PY -m pip install -q websocket-client
# The security tests read config files back with an independent YAML parser.
$PY -c "import yaml" 2>/dev/null || $PY -m pip install -q pyyaml
# The WebRTC tests' viewer (its own ICE, DTLS, SRTP, H.264/Opus/G.711 decoders).
$PY -c "import aiortc" 2>/dev/null || $PY -m pip install -q aiortc
# Home Assistant's go2rtc client (its models decode our answers). 0.4.0 declares Python
# 3.12 for syntax used outside models.py; the tests load only models.py.
$PY -c "import importlib.metadata as m, aiohttp, mashumaro; assert m.version('go2rtc-client') == '0.4.0'" 2>/dev/null \
  || $PY -m pip install -q --ignore-requires-python go2rtc-client==0.4.0

echo "== cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings

echo "== unit tests"
cargo test --workspace -q 2>&1 | tail -n 40

echo "== release build"
cargo build --release -q -p corecast-shards -p corecast-perf

echo "== end-to-end tests"
exec $PY -m pytest -q tests "$@"

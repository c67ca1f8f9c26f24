"""The load harness end to end (issue #3): `corecast-perf swarm` against the release
build prints its table and a JSON line; 500 RTSP/TCP viewers connect and lose nothing."""
import json
import subprocess

from conftest import BIN, ROOT

PERF = ROOT / "target" / "release" / "corecast-perf"


def test_swarm_500_viewers(tmp_path):
    out = subprocess.run(
        [str(PERF), "swarm", "--server-bin", str(BIN), "--publishers", "1", "--viewers", "500",
         "--duration", "6", "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "server CPU per Gbit" in out.stdout, out.stdout[-3000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    assert r["kind"] == "swarm" and r["viewers"] == 500
    assert r["connect_failures"] == 0, r["failure_reasons"]
    assert r["viewers_playing"] == 500
    assert r["loss_pct"] < 0.1, r
    # The server agrees: every viewer is a consumer of the stream.
    assert r["server_api"]["consumers"] == 500
    assert r["delivered_mbps"] > 0.95 * r["expected_mbps"], r


def test_compare_against_gst_rtsp_server_and_raw_floor(tmp_path):
    """`compare` runs the same swarm against corecast, gst-rtsp-server (perf/gst_relay.py)
    and the raw-send floor, and prints the ratios."""
    out = subprocess.run(
        [str(PERF), "compare", "--server-bin", str(BIN), "--peers", "corecast,gst,floor",
         "--rounds", "1", "--publishers", "1", "--viewers", "50", "--duration", "3",
         "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    assert r["kind"] == "compare", r.keys()
    ratios = r["ratios"]
    gst = [k for k in ratios if k.startswith("corecast/gst")]
    floor = [k for k in ratios if k.startswith("corecast/") and "floor" in k]
    assert gst and floor, ratios
    for peer in gst + floor:
        assert ratios[peer].get("server_cpu_s_per_gbit") is not None, ratios[peer]


def test_swarm_20_webrtc_viewers(tmp_path):
    """`--transport webrtc`: 20 WHEP viewers (ICE check, DTLS client, SRTP decrypt in the
    harness) all play the demo clip's H.264 and lose nothing."""
    out = subprocess.run(
        [str(PERF), "swarm", "--server-bin", str(BIN), "--transport", "webrtc",
         "--source", "demo", "--viewers", "20", "--duration", "4", "--warmup", "2",
         "--per-viewer", "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    assert r["transport"] == "webrtc"
    assert r["connect_failures"] == 0, r["failure_reasons"]
    assert r["viewers_playing"] == 20, r
    assert r["server_api"]["consumers"] == 20, r["server_api"]
    per = r["per_viewer"]
    assert len(per) == 20 and all(v["packets"] > 0 and v["frames"] > 0 for v in per), per
    assert r["lost_packets"] == 0 and r["loss_pct"] == 0, r

"""corecast started and driven as Frigate and Home Assistant start and drive go2rtc.

The Home Assistant checks decode every answer with python-go2rtc-client's own models
(`go2rtc_client/models.py` of go2rtc-client 0.4.0, the version Home Assistant 2026.x pins)
and the decoders its REST client uses (`rest.py`: `BasicDecoder(dict[str, Stream])`,
`BasicDecoder(set[str])`, `BasicDecoder(dict[str, Preload])`, `ApplicationInfo.from_dict`
and its version gate), over a Unix socket as Home Assistant's bundled mode connects.
The package needs Python 3.12 syntax in its other modules, so only models.py is loaded.
"""
import asyncio
import importlib.util
import json
import os
import select
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from conftest import (BIN, decoded_frames, ffmpeg_read, free_port_block,
                      wait_http)

GO2RTC_CLIENT_VERSION = "0.4.0"


def _client_models():
    import importlib.metadata as md
    dist = md.distribution("go2rtc-client")
    assert dist.version == GO2RTC_CLIENT_VERSION, dist.version
    path = Path(dist.locate_file("go2rtc_client/models.py"))
    spec = importlib.util.spec_from_file_location("go2rtc_client_models", path)
    mod = importlib.util.module_from_spec(spec)
    # dataclasses resolve string annotations through sys.modules.
    import sys
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _launch(args, cwd):
    log = Path(cwd) / "server.log"
    proc = subprocess.Popen([str(BIN)] + args, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            cwd=cwd)
    return proc, log


def _get(url, method="GET", auth=None):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_frigate_command_line_two_configs(procs):
    """`go2rtc -config=/config/go2rtc_homekit.yml -config=/dev/shm/go2rtc.yaml`: both files'
    streams served, API writes land in the first file."""
    base = free_port_block(6)
    rtsp, api = base, base + 1
    work = Path(tempfile.mkdtemp(prefix="corecast-frigate-"))
    first = work / "go2rtc_homekit.yml"
    first.write_text("streams:\n  homekit_cam:\n")
    second = work / "go2rtc.yaml"
    # The keys Frigate's create_config.py writes.
    second.write_text(
        'api:\n  origin: "*"\n'
        f'  listen: "127.0.0.1:{api}"\n'
        'log:\n  format: text\n'
        f'rtsp:\n  listen: "127.0.0.1:{rtsp}"\n  rtp_port: {base + 2}\n'
        'ffmpeg:\n  bin: ffmpeg\n'
        'webrtc:\n  candidates: ["127.0.0.1:8555", "stun:8555"]\n'
        f'streams:\n  front_door:\n    - rtsp://127.0.0.1:{rtsp}/demo\n'
        'shards: 2\n')
    proc, log = _launch([f"-config={first}", f"-config={second}"], work)
    procs.append(proc)
    wait_http(api, proc, log)
    # Frigate's health check.
    out = subprocess.run(["curl", "--fail", "-s", f"http://127.0.0.1:{api}/api/streams"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    streams = json.loads(out.stdout)
    assert {"homekit_cam", "front_door"} <= set(streams), streams
    # The second file's stream plays.
    r = ffmpeg_read(f"rtsp://127.0.0.1:{rtsp}/front_door", duration=2)
    o, e = r.communicate(timeout=20)
    assert decoded_frames(o) >= 25, e[-800:] + log.read_text()[-2000:]
    # API writes go to the first file; the second is untouched.
    before = second.read_text()
    status, body = _get(f"http://127.0.0.1:{api}/api/streams?name=added&src=rtsp://127.0.0.1:1/x",
                        method="PUT")
    assert status == 200, body
    assert yaml.safe_load(first.read_text())["streams"]["added"] == "rtsp://127.0.0.1:1/x"
    assert second.read_text() == before
    # The console speaks go2rtc's format (log.format: text: no colour codes).
    text = log.read_text()
    assert f" INF [api] listen addr=127.0.0.1:{api}" in text, text[-2000:]
    assert "\x1b[" not in text


def test_home_assistant_bundled_mode(procs):
    """HA's config (Unix socket only, Basic auth with local_auth, allow_paths), its boot-line
    wait, and its client's decoding of every answer."""
    models = _client_models()
    from mashumaro.codecs.basic import BasicDecoder
    from awesomeversion import AwesomeVersion

    base = free_port_block(6)
    work = Path(tempfile.mkdtemp(prefix="corecast-ha-"))
    sock = work / "go2rtc.sock"
    cfg = work / "go2rtc.yaml"
    cfg.write_text(
        "app: {modules: [api, exec, ffmpeg, http, mjpeg, onvif, rtmp, rtsp, srtp, webrtc, ws]}\n"
        "api:\n"
        '  listen: ""\n'
        f"  unix_listen: {sock}\n"
        '  allow_paths: ["/", "/api", "/api/frame.jpeg", "/api/schemes", "/api/streams",'
        ' "/api/webrtc", "/api/ws"]\n'
        "  local_auth: true\n"
        "  username: hass\n"
        "  password: s3cret\n"
        "exec: {allow_paths: [ffmpeg]}\n"
        f'rtsp: {{listen: "127.0.0.1:{base}", rtp_port: {base + 2}}}\n'
        'webrtc: {listen: ":18555/tcp", ice_servers: []}\n'
        "shards: 2\n")
    # HA merges stderr into stdout and waits for the boot line.
    proc = subprocess.Popen([str(BIN), "-c", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=work, bufsize=0)
    procs.append(proc)
    # Unbuffered on our side: select() must not miss lines sitting in a Python buffer.
    seen, lines, deadline = False, [], time.time() + 5
    while time.time() < deadline and not seen:
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.time()))
        if not r:
            break
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break
        lines.append(line)
        seen = "INF [api] listen addr=" in line
    assert seen, "no boot line within 5 s:\n" + "".join(lines)
    # Keep draining stdout so the server never blocks on a full pipe.
    import threading
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()

    import aiohttp

    async def run():
        conn = aiohttp.UnixConnector(path=str(sock))
        import base64
        auth = {"Authorization": "Basic " + base64.b64encode(b"hass:s3cret").decode()}
        async with aiohttp.ClientSession(connector=conn, headers=auth) as s:
            base_url = "http://localhost"

            async def get(path, **kw):
                async with s.get(base_url + path, **kw) as r:
                    r.raise_for_status()
                    return await r.json()

            # validate_server_version
            info = models.ApplicationInfo.from_dict(await get("/api"))
            assert AwesomeVersion("1.9.13") <= info.version < AwesomeVersion("2.0.0")
            # streams.add (the client sends src as a repeated key) then streams.list
            async with s.put(base_url + "/api/streams",
                             params=[("name", "hass_cam"), ("src", "rtsp://127.0.0.1:1/cam"),
                                     ("src", "ffmpeg:hass_cam#audio=opus#query=log_level=debug")]) as r:
                assert r.status == 200, await r.text()
            streams = BasicDecoder(dict[str, models.Stream]).decode(await get("/api/streams"))
            urls = [p.url for p in streams["hass_cam"].producers]
            assert "rtsp://127.0.0.1:1/cam" in urls, urls
            schemes = BasicDecoder(set[str]).decode(await get("/api/schemes"))
            assert {"rtsp", "rtsps", "ffmpeg"} <= schemes, schemes
            # preload.enable / list / disable: /api/preload is outside HA's allow_paths, so
            # it is 404 here as with go2rtc (checked again on TCP below).
            async with s.get(base_url + "/api/preload") as r:
                assert r.status == 404
            async with s.get(base_url + "/api/config") as r:
                assert r.status == 404
            async with s.get(base_url + "/metrics") as r:
                assert r.status == 404
            # The web UI stays ("/" is allowed).
            async with s.get(base_url + "/") as r:
                assert r.status == 200
        # local_auth: the Unix socket asks for credentials too.
        conn = aiohttp.UnixConnector(path=str(sock))
        async with aiohttp.ClientSession(connector=conn) as s:
            async with s.get("http://localhost/api") as r:
                assert r.status == 401
                assert r.headers["WWW-Authenticate"] == 'Basic realm="go2rtc"'

    asyncio.run(run())


def test_preload_as_home_assistant_reads_it(server_factory):
    models = _client_models()
    from mashumaro.codecs.basic import BasicDecoder
    srv = server_factory("streams:\n  cam: rtsp://127.0.0.1:{port}/demo\n", format_ports=True)
    base = f"http://127.0.0.1:{srv.api_port}"
    # HA sends video/audio/microphone plus its own codec-filter keys; go2rtc keeps the first.
    status, body = _get(base + "/api/preload?src=cam&video&audio&microphone"
                        "&video_codec_filter=h264", method="PUT")
    assert status == 200, body
    got = json.loads(_get(base + "/api/preload")[1])
    assert got["cam"]["query"] == "audio=&microphone=&video=", got
    assert isinstance(got["cam"]["consumer"], dict), got
    decoded = BasicDecoder(dict[str, models.Preload]).decode(got)
    assert decoded["cam"].query == "audio=&microphone=&video="
    saved = yaml.safe_load((srv.workdir / "corecast.yaml").read_text())
    assert saved["preload"] == {"cam": "audio=&microphone=&video="}, saved
    # The preloaded source runs without a reader.
    srv.wait_producer("cam")
    assert _get(base + "/api/preload?src=cam", method="DELETE")[0] == 200
    assert "preload" not in yaml.safe_load((srv.workdir / "corecast.yaml").read_text()) or \
        not yaml.safe_load((srv.workdir / "corecast.yaml").read_text())["preload"]
    assert _get(base + "/api/preload?src=cam", method="DELETE")[0] == 500


def test_probe_connects_an_idle_camera(server_factory, gst_server):
    """Frigate's `GET /api/streams?src=N&video=all&audio=all&microphone`: the idle stream's
    producer connects and the answer lists its medias."""
    gst = gst_server(tracks="video,pcma")
    srv = server_factory(f"streams:\n  cam: {gst.url()}\n")
    idle = srv.api("/api/streams?src=cam")
    assert not idle["online"]
    t0 = time.time()
    probed = srv.api("/api/streams?src=cam&video=all&audio=all&microphone")
    assert time.time() - t0 < 6
    medias = [m for p in probed["producers"] for m in p.get("medias", [])]
    assert "video, recvonly, H264" in medias, probed
    assert "audio, recvonly, PCMA/8000" in medias, probed


def test_log_dot_restart_exit(server_factory):
    # No `shards:`: one per core, also after the restart (whose thread was a pinned shard's).
    srv = server_factory(shards="")
    cores = srv.api("/api")["shard_count"]
    assert cores == os.cpu_count(), cores
    base = f"http://127.0.0.1:{srv.api_port}"
    status, body = _get(base + "/api/log")
    assert status == 200
    lines = [json.loads(l) for l in body.decode().splitlines() if l]
    assert any(l["message"] == "[api] listen" and l["level"] == "info" for l in lines), lines[:5]
    assert _get(base + "/api/log", method="DELETE") == (200, b"OK")
    dot = _get(base + "/api/streams.dot")[1].decode()
    assert dot.startswith("digraph {") and '"demo"' in dot and dot.endswith("}"), dot
    # Restart re-executes the binary (same pid, fresh process image: the log starts over).
    pid = srv.proc.pid
    assert _get(base + "/api/restart", method="POST")[0] == 200
    deadline, restarted = time.time() + 15, False
    while time.time() < deadline and not restarted:
        try:
            body = _get(base + "/api/log")[1].decode()
            restarted = "corecast started" in body
        except OSError:
            pass
        if not restarted:
            time.sleep(0.1)
    assert restarted, srv.log()
    assert srv.proc.pid == pid and srv.alive()
    assert srv.api("/api")["shard_count"] == cores
    assert _get(base + "/api/exit?code=200", method="POST")[0] == 400
    assert _get(base + "/api/exit?code=3", method="POST")[0] == 200
    assert srv.proc.wait(timeout=10) == 3


def test_post_src_dst_publishes_to_a_url(server_factory):
    srv = server_factory()
    base = f"http://127.0.0.1:{srv.api_port}"
    dst = srv.url("copy")
    status, body = _get(f"{base}/api/streams?src=demo&dst={dst}", method="POST")
    assert status == 200, body
    srv.wait_producer("copy", timeout=15)
    r = ffmpeg_read(dst, duration=2)
    o, e = r.communicate(timeout=20)
    assert decoded_frames(o) >= 25, e[-800:]
    # Two-way audio into a stream is not implemented: a clear 501, not a silent 200.
    status, body = _get(f"{base}/api/streams?src=rtsp://x/y&dst=demo", method="POST")
    assert status == 501, body


def test_cli_version_and_bad_flags():
    out = subprocess.run([str(BIN), "-v"], capture_output=True, text=True, timeout=5)
    assert out.returncode == 0 and "1.9.14" in out.stdout, out
    out = subprocess.run([str(BIN), "-nope"], capture_output=True, text=True, timeout=5)
    assert out.returncode == 2 and "flag provided but not defined: -nope" in out.stderr, out
    out = subprocess.run([str(BIN), "-d"], capture_output=True, text=True, timeout=5)
    assert out.returncode == 1 and "not supported" in out.stderr, out


def test_http_source_is_read_through_ffmpeg(server_factory):
    """Home Assistant hands over cameras whose source is an http(s) URL; /api/schemes lists
    it and the stream plays (here: our own MPEG-TS output read back over HTTP)."""
    srv = server_factory()
    schemes = srv.api("/api/schemes")
    assert {"http", "https", "rtmp"} <= set(schemes), schemes
    src = f"http://127.0.0.1:{srv.api_port}/api/stream.ts?src=demo"
    status, body = _get(f"http://127.0.0.1:{srv.api_port}/api/streams?name=web&src="
                        + urllib.parse.quote(src, safe=""), method="PUT")
    assert status == 200, body
    r = ffmpeg_read(srv.url("web"), duration=2)
    o, e = r.communicate(timeout=30)
    assert decoded_frames(o) >= 25, e[-800:] + srv.log()


def test_probe_lists_a_cameras_speaker(server_factory, gst_server):
    """A camera with an ONVIF backchannel (GStreamer's ONVIF server describes it only when
    asked with `Require: www.onvif.org/ver20/backchannel`): the probe lists it as
    `audio, sendonly, PCMA/8000` (Frigate enables two-way talk on it), and the camera's
    video still plays."""
    gst = gst_server(tracks="video", backchannel=True)
    srv = server_factory(f"streams:\n  door: {gst.url()}\n")
    probed = srv.api("/api/streams?src=door&video=all&audio=all&microphone")
    medias = [m for p in probed["producers"] for m in p.get("medias", [])]
    assert "audio, sendonly, PCMA/8000" in medias, probed
    assert "video, recvonly, H264" in medias, probed
    r = ffmpeg_read(srv.url("door"), duration=2)
    o, e = r.communicate(timeout=20)
    assert decoded_frames(o) >= 25, e[-800:]
    # Readers are not offered the speaker.
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type",
                          "-of", "json", srv.url("door")], capture_output=True, text=True,
                         timeout=20)
    kinds = [s["codec_type"] for s in json.loads(out.stdout)["streams"]]
    assert kinds == ["video"], kinds


def test_api_refuses_socket_path_changes_and_cross_origin_writes(server_factory):
    srv = server_factory()
    base = f"http://127.0.0.1:{srv.api_port}"
    # unix_listen is replaced at start: from the API it could delete any file.
    req = urllib.request.Request(base + "/api/config", method="PATCH",
                                 data=b"api:\n  unix_listen: /tmp/victim\n")
    try:
        urllib.request.urlopen(req, timeout=5)
        status = 200
    except urllib.error.HTTPError as e:
        status = e.code
    assert status == 403
    # A page on another origin cannot change streams through a visitor's browser.
    url = base + "/api/streams?name=x&src=rtsp://127.0.0.1:1/x"
    req = urllib.request.Request(url, method="PUT", headers={"Origin": "http://evil.example"})
    try:
        urllib.request.urlopen(req, timeout=5)
        status = 200
    except urllib.error.HTTPError as e:
        status = e.code
    assert status == 403
    assert "x" not in srv.streams()
    # The web UI's own origin may.
    req = urllib.request.Request(url, method="PUT",
                                 headers={"Origin": f"http://127.0.0.1:{srv.api_port}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    assert "x" in srv.streams()


def test_source_passwords_stay_out_of_logs_and_errors(server_factory):
    """An http camera with credentials in userinfo and query: its failing ffmpeg's messages
    reach the debug log, /api/log and the stream's error, never the passwords."""
    srv = server_factory("log:\n  level: debug\nstreams:\n"
                         "  cam: http://admin:S3cretPw@127.0.0.1:1/snap?pwd=T0kenValue\n")
    base = f"http://127.0.0.1:{srv.api_port}"
    subprocess.run(["ffprobe", "-v", "quiet", "-rw_timeout", "3000000", srv.url("cam")],
                   timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and not srv.streams()["cam"].get("error"):
        time.sleep(0.1)
    err = srv.streams()["cam"].get("error") or ""
    assert err, srv.streams()["cam"]
    # (/api/streams lists the configured source URL as go2rtc does: Home Assistant compares
    # it with its camera's source, password included.)
    everything = err + _get(base + "/api/log")[1].decode() + srv.log()
    assert "S3cretPw" not in everything and "T0kenValue" not in everything

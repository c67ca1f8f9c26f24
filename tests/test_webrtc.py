"""WebRTC viewers end to end: aiortc plays corecast streams through every signalling path.

WebRTC gathers every interface address, so these tests run in a private network namespace
(only loopback exists): the outer test re-runs this file under `unshare -n`, the inner run
does the work. aiortc skips 127.0.0.1 when it gathers; the inner run makes it offer it.
"""
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import conftest
from conftest import free_port_block, wait_for, wait_live

INNER = os.environ.get("CORECAST_WEBRTC_NETNS") == "1"
if os.environ.get("CORECAST_BIN"):
    conftest.BIN = Path(os.environ["CORECAST_BIN"])

# Frames counted over this window, after the join burst (the ring's GOP) settled.
WINDOW = 5.0
SETTLE = 1.0


def test_webrtc_in_private_netns():
    if INNER:
        pytest.skip("inner run")
    if os.geteuid() != 0:
        pytest.skip("needs root for unshare -n")
    pytest.importorskip("aiortc")
    # Started by conftest right after collection, beside the other tests (its own
    # namespace shares nothing with them); here we wait for it.
    run = conftest.netns_webrtc_run()
    try:
        rc = run["proc"].wait(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(run["proc"].pid, 9)
        run["proc"].wait()
        rc = "timeout (600 s)"
    out = Path(run["log"]).read_text(errors="replace")
    Path(run["log"]).unlink(missing_ok=True)
    print(out[-3000:])
    assert rc == 0, f"inner run: {rc}\n" + out[-8000:]


inner = pytest.mark.skipif(not INNER, reason="runs inside test_webrtc_in_private_netns")


@pytest.fixture
def rtc_server(server_factory):
    def make(config="", shards=2):
        port = free_port_block(2)
        # "{port}" in `config` is the server's RTSP port.
        srv = server_factory(f"webrtc:\n  listen: \"127.0.0.1:{port}\"\n" + config,
                             shards=shards, format_ports=True)
        srv.webrtc_port = port
        return srv
    return make


def _post(url, body, ctype):
    req = urllib.request.Request(url, data=body, method="POST")
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _ws_offer(api_port, src, offer_sdp, ha=False):
    import websocket
    ws = websocket.create_connection(f"ws://127.0.0.1:{api_port}/api/ws?src={src}", timeout=15)
    try:
        # A candidate before the offer (trickle) is taken and ignored, as an end marker is.
        ws.send(json.dumps({"type": "webrtc/candidate", "value": "candidate:1 1 udp 1 192.0.2.1 9 typ host"}))
        if ha:
            ws.send(_ha_messages().WebRTCOffer(sdp=offer_sdp, ice_servers=[]).to_json())
        else:
            ws.send(json.dumps({"type": "webrtc/offer", "value": offer_sdp}))
        ws.send(json.dumps({"type": "webrtc/candidate", "value": ""}))
        msg = json.loads(ws.recv())
    finally:
        # Closing the WebSocket must not end the session.
        ws.close()
    if ha:
        # Decoded as Home Assistant's client decodes it.
        m = _ha_messages()
        decoded = m.BaseMessage.from_json(json.dumps(msg))
        assert isinstance(decoded, m.WebRTC) and isinstance(decoded.value, m.WebRTCAnswer), msg
        return decoded.value.sdp
    assert msg["type"] == "webrtc/answer", msg
    return msg["value"]


def _ha_messages():
    """go2rtc-client's WebSocket messages (what Home Assistant sends and decodes), loaded
    alone: the package's other modules need Python 3.12."""
    import importlib.metadata as md
    import importlib.util
    name = "go2rtc_client_ws_messages"
    if name in sys.modules:
        return sys.modules[name]
    try:
        path = Path(md.distribution("go2rtc-client").locate_file("go2rtc_client/ws/messages.py"))
    except md.PackageNotFoundError:
        pytest.skip("go2rtc-client not installed")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


async def _view(srv, src, path, secs=SETTLE + WINDOW, drop_every=0):
    """One aiortc viewer of `src` through `path`; returns (arrival times per kind, info).
    `drop_every`: the viewer loses every Nth video packet on its first arrival (it NACKs
    it; the retransmission gets through)."""
    import aioice.ice
    from aiortc import RTCPeerConnection, RTCSessionDescription
    import aioice
    # Loss below SRTP, as on a network (a packet dropped after decryption would make its
    # retransmission a replay). aiortc reads datagrams with aioice's Connection.recv.
    original = getattr(aioice.Connection, "_corecast_original", aioice.Connection.recv)
    aioice.Connection._corecast_original = original
    seen = set()
    lost = []

    async def lossy(self):
        while True:
            data = await original(self)
            # Video RTP (not RTCP) by its cleartext header; the demo's audio is not sent.
            if (drop_every and len(data) > 12 and 128 <= data[0] < 192
                    and not 192 <= data[1] <= 223):
                seq = int.from_bytes(data[2:4], "big")
                if seq not in seen:
                    seen.add(seq)
                    if seq % drop_every == 0:
                        lost.append(seq)
                        continue
            return data
    aioice.Connection.recv = lossy
    # aioice leaves out 127.0.0.1 when it gathers host addresses: offer exactly that.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    times = {"video": [], "audio": []}
    # Seconds of audio per arrival (frames differ in length: count time, not frames).
    audio_secs = []
    rates = set()
    done = asyncio.Event()

    async def consume(track):
        while not done.is_set():
            try:
                f = await track.recv()
            except Exception:
                return
            times[track.kind].append(time.monotonic())
            if track.kind == "audio":
                audio_secs.append(f.samples / f.sample_rate)
                rates.add(f.sample_rate)

    tasks = []
    pc.on("track", lambda t: tasks.append(asyncio.ensure_future(consume(t))))
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    api = f"http://127.0.0.1:{srv.api_port}/api/webrtc?src={src}"
    info = {}
    loop = asyncio.get_running_loop()
    if path == "passive":
        # An offer that wants to be the DTLS server: we answer `active` and connect as
        # the DTLS client (aiortc follows the answer's role).
        offer = offer.replace("a=setup:actpass", "a=setup:passive")
    if path in ("json", "passive"):
        body = json.dumps({"type": "offer", "sdp": offer}).encode()
        st, hdrs, out = await loop.run_in_executor(None, _post, api, body, "application/json")
        assert st == 200, out
        ans = json.loads(out)
        assert ans["type"] == "answer"
        answer = ans["sdp"]
    elif path == "whep":
        st, hdrs, out = await loop.run_in_executor(None, _post, api, offer.encode(),
                                                   "application/sdp")
        assert st == 201, out
        info["location"] = hdrs.get("Location")
        assert info["location"].startswith("webrtc?id="), hdrs
        answer = out.decode()
    elif path in ("form", "legacy"):
        body = b"data=" + urllib.parse.quote(base64.b64encode(offer.encode())).encode()
        if path == "legacy":
            # The old RTSPtoWebRTC integration's path.
            api = f"http://127.0.0.1:{srv.api_port}/stream/{src}/channel/0/webrtc"
        st, hdrs, out = await loop.run_in_executor(
            None, _post, api, body, "application/x-www-form-urlencoded")
        assert st == 200, out
        answer = base64.b64decode(out).decode()
    elif path in ("ws", "ha"):
        answer = await loop.run_in_executor(None, _ws_offer, srv.api_port, src, offer,
                                            path == "ha")
    else:
        raise ValueError(path)
    info["answer"] = answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    # Wait for the first frame (connect + DTLS), then measure for a fixed window.
    for _ in range(100):
        if times["video"] or times["audio"]:
            break
        await asyncio.sleep(0.1)
    first = min(t[0] for t in times.values() if t) if any(times.values()) else time.monotonic()
    await asyncio.sleep(max(0.0, first + secs - time.monotonic()))
    info["state"] = pc.connectionState
    if path == "whep":
        info["streams"] = srv.streams()
    done.set()
    await pc.close()
    for t in tasks:
        t.cancel()
    w0, w1 = first + SETTLE, first + SETTLE + WINDOW
    counts = {k: sum(1 for x in v if w0 <= x < w1) for k, v in times.items()}
    counts["audio_secs"] = sum(s for x, s in zip(times["audio"], audio_secs) if w0 <= x < w1)
    counts["lost"] = len(lost)
    info["audio_rates"] = rates
    print(path, src, "decoded in the window:", counts)
    return counts, info


def view(srv, src, path, **kw):
    return asyncio.run(_view(srv, src, path, **kw))


def _publisher(srv, name, audio):
    """ffmpeg publishing 25 fps H.264 and `audio` (libopus / pcm_alaw) to `name`."""
    return _publish_audio(srv, name, {
        "opus": ["-c:a", "libopus", "-b:a", "32k", "-ac", "2"],
        "aac": ["-c:a", "aac", "-b:a", "64k", "-ac", "2"],
        "pcma": ["-c:a", "pcm_alaw", "-ar", "8000", "-ac", "1"]}[audio])


def _publish_audio(srv, name, args):
    """ffmpeg publishing 25 fps H.264 and a 440 Hz tone encoded with `args` to `name`."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "50",
           "-bf", "0", "-pix_fmt", "yuv420p"] + args + [
           "-f", "rtsp", "-rtsp_transport", "tcp", srv.url(name)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@inner
@pytest.mark.parametrize("path", ["json", "ws", "ha", "passive"])
def test_demo_video_through_signalling(rtc_server, path):
    """The demo stream (25 fps H.264 + AAC): video decoded at >= 90 % of its rate; the AAC
    audio m-line is answered inactive (no WebRTC codec)."""
    srv = rtc_server()
    wait_live(srv)
    counts, info = view(srv, "demo", path)
    assert info["state"] == "connected", srv.log()
    assert counts["video"] >= 0.9 * 25 * WINDOW, (counts, srv.log())
    assert "a=inactive" in info["answer"].split("m=audio")[1]
    assert counts["audio"] == 0
    setup = "active" if path == "passive" else "passive"
    assert f"a=setup:{setup}" in info["answer"]
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.api_port}/metrics", timeout=5) as r:
        m = dict(l.rsplit(" ", 1) for l in r.read().decode().splitlines()
                 if l.startswith("corecast_webrtc_srtp"))
    assert int(m["corecast_webrtc_srtp_packets_total"]) >= counts["video"], m


@inner
def test_whep_then_delete(rtc_server):
    srv = rtc_server()
    wait_live(srv)
    counts, info = view(srv, "demo", "whep")
    assert counts["video"] >= 0.9 * 25 * WINDOW, (counts, srv.log())
    consumers = info["streams"]["demo"]["consumers"]
    rtc = [c for c in consumers if c.get("format_name") == "webrtc/whep"]
    assert rtc and rtc[0]["remote_addr"].startswith("127.0.0.1"), consumers
    # A fresh WHEP session (it never connects), ended by DELETE of its Location.
    api = f"http://127.0.0.1:{srv.api_port}/api/webrtc?src=demo"
    st, hdrs, _ = _post(api, _offer_text(), "application/sdp")
    assert st == 201
    loc = hdrs["Location"]

    def whep_consumers():
        return [c for c in srv.streams()["demo"].get("consumers") or []
                if c.get("format_name") == "webrtc/whep"]
    assert wait_for(lambda: len(whep_consumers()) == 1, timeout=5), srv.streams()
    req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}/api/{loc}", method="DELETE")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    assert wait_for(lambda: not whep_consumers(), timeout=5), (whep_consumers(), loc, srv.log())


@inner
def test_viewer_close_ends_session(rtc_server):
    """The server drops its DTLS state once connected (memory per viewer); a viewer that
    closes its peer connection (close_notify, then silence) is still gone in seconds, not
    at ICE consent expiry (30 s)."""
    srv = rtc_server()
    wait_live(srv)
    counts, _ = view(srv, "demo", "json")
    assert counts["video"] >= 0.9 * 25 * WINDOW, (counts, srv.log())
    closed = time.monotonic()

    def rtc_consumers():
        return [c for c in srv.streams()["demo"].get("consumers") or []
                if c.get("format_name", "").startswith("webrtc")]
    assert wait_for(lambda: not rtc_consumers(), timeout=8), (rtc_consumers(), srv.log())
    assert time.monotonic() - closed < 8
    assert "the viewer closed DTLS" in srv.log()


@inner
@pytest.mark.parametrize("audio", ["opus", "pcma"])
def test_published_stream_with_audio(rtc_server, procs, audio):
    """ffmpeg publishes H.264 + Opus or PCMA over RTSP; aiortc decodes both."""
    srv = rtc_server("streams:\n  pub: []\n")
    p = _publisher(srv, "pub", audio)
    procs.append(p)
    wait_live(srv, "pub")
    counts, info = view(srv, "pub", "json")
    assert info["state"] == "connected", srv.log()
    assert counts["video"] >= 0.9 * 25 * WINDOW, (counts, srv.log())
    assert counts["audio_secs"] >= 0.9 * WINDOW, (counts, srv.log())


@inner
def test_aac_stream_gets_opus_from_a_later_source(rtc_server, procs):
    """go2rtc's pattern for AAC cameras: `cam: [<AAC source>, ffmpeg:cam#audio=opus]`. The
    browser offers Opus; the later source is dialled for it and the viewer hears it."""
    srv = rtc_server("streams:\n  src: []\n"
                     "  cam: [\"rtsp://127.0.0.1:{port}/src\", \"ffmpeg:cam#audio=opus\"]\n")
    procs.append(_publisher(srv, "src", "aac"))
    wait_live(srv, "src")
    counts, info = view(srv, "cam", "json")
    assert info["state"] == "connected", srv.log()
    assert "opus/48000" in info["answer"].split("m=audio")[1].lower(), info["answer"]
    assert counts["video"] >= 0.9 * 25 * WINDOW, (counts, srv.log())
    assert counts["audio_secs"] >= 0.9 * WINDOW, (counts, srv.log())


@inner
def test_form_and_errors(rtc_server):
    srv = rtc_server()
    wait_live(srv)
    for path in ("form", "legacy"):
        counts, _ = view(srv, "demo", path)
        assert counts["video"] >= 0.9 * 25 * WINDOW, (path, counts)
    api = f"http://127.0.0.1:{srv.api_port}/api/webrtc"
    for body, ctype in [(b"", "application/sdp"), (b"v=0\r\nm=video\r\n", "application/sdp"),
                        (b"{}", "application/json"), (b"not json", "application/json"),
                        (b"data=!!!", "application/x-www-form-urlencoded")]:
        st, _, out = _post(api + "?src=demo", body, ctype)
        assert st == 400 and out.strip(), (body, st, out)
    st, _, out = _post(api, b"v=0", "application/sdp")
    assert st == 400 and b"src" in out
    st, _, _ = _post(api + "?src=nosuch", _offer_text(), "application/sdp")
    assert st == 404
    # On the WebSocket: errors name the message they answer, the socket stays usable.
    import websocket
    ws = websocket.create_connection(f"ws://127.0.0.1:{srv.api_port}/api/ws?src=demo", timeout=10)
    try:
        ws.send(json.dumps({"type": "webrtc/offer", "value": "v=0\r\nbogus"}))
        msg = json.loads(ws.recv())
        assert msg["type"] == "error" and msg["value"].startswith("webrtc/offer: "), msg
        ws.send(json.dumps({"type": "webrtc", "value": {"type": "offer"}}))
        msg = json.loads(ws.recv())
        assert msg["type"] == "error" and msg["value"].startswith("webrtc: "), msg
    finally:
        ws.close()
    # Audio only, and the demo's audio is AAC: nothing to send (go2rtc's 500 and words).
    st, _, out = _post(api + "?src=demo", _offer_text("audio"), "application/sdp")
    assert st == 500 and out.startswith(b"streams: codecs not matched: video:H264 => audio:"), out
    req = urllib.request.Request(api, method="OPTIONS")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 204
    assert srv.alive()


def _offer_text(kind="video", direction="recvonly"):
    async def go():
        from aiortc import RTCPeerConnection
        pc = RTCPeerConnection()
        pc.addTransceiver(kind, direction=direction)
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp.encode()
    return asyncio.run(go())


def _stun_request(username):
    """A STUN binding request with only USERNAME (no integrity): the session answers 400."""
    import secrets
    u = username.encode()
    attr = (0x0006).to_bytes(2, "big") + len(u).to_bytes(2, "big") + u + b"\0" * (-len(u) % 4)
    return ((0x0001).to_bytes(2, "big") + len(attr).to_bytes(2, "big")
            + (0x2112A442).to_bytes(4, "big") + secrets.token_bytes(12) + attr)


@inner
def test_checks_reach_the_owner_shard(rtc_server):
    """Every shard receives on the WebRTC port; a check that lands on a shard that does not
    own its session is forwarded to the owner (by the ufrag's shard prefix), which answers.
    16 source ports spread over both shards' sockets: every one gets the owner's answer."""
    import socket
    srv = rtc_server()
    wait_live(srv)
    api = f"http://127.0.0.1:{srv.api_port}/api/webrtc?src=demo"
    st, hdrs, answer = _post(api, _offer_text(), "application/sdp")
    assert st == 201, answer
    ufrag = urllib.parse.unquote(hdrs["Location"].split("id=")[1])
    socks = []
    try:
        for _ in range(16):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.settimeout(5)
            s.sendto(_stun_request(f"{ufrag}:remote"), ("127.0.0.1", srv.webrtc_port))
            socks.append(s)
        for s in socks:
            data, _ = s.recvfrom(2048)
            # A binding error response (class 0b10): the session saw the check.
            assert data[:2] == b"\x01\x11", data[:4]
    finally:
        for s in socks:
            s.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.api_port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    forwarded = [l for l in metrics.splitlines() if l.startswith("corecast_webrtc_forwarded_total")]
    assert forwarded and int(forwarded[0].split()[1]) > 0, metrics
    assert "corecast_webrtc_sessions{shard=\"1\"}" in metrics


@inner
def test_chromium_plays_webrtc_mode(rtc_server):
    """Headless Chromium plays stream.html?src=demo&mode=webrtc: getStats' inbound video
    framesDecoded passes 100 (4 s of the 25 fps demo)."""
    from conftest import CHROMIUM, chromium_page
    if not CHROMIUM:
        pytest.skip("no chromium")
    srv = rtc_server()
    wait_live(srv)
    assert _chromium_plays(srv) == "udp"
    consumers = srv.streams()["demo"]["consumers"]
    assert any(c.get("format_name") == "webrtc/ws" for c in consumers), consumers


def _chromium_plays(srv, mode="webrtc"):
    """Chromium plays the demo in WebRTC mode; returns the selected candidate pair's
    local candidate protocol."""
    from conftest import chromium_page
    with chromium_page(srv.api_port + 3,
                       extra_args=["--allow-loopback-in-peer-connection",
                                   # mDNS host names need multicast, which a namespace
                                   # with only loopback lacks: offer the address itself.
                                   "--disable-features=WebRtcHideLocalIpsWithMdns"]) as cdp:
        cdp.call("Page.navigate",
                 url=f"http://127.0.0.1:{srv.api_port}/stream.html?src=demo&mode={mode}")
        probe = ("JSON.stringify({f: (window.corecastPlayer||{}).framesDecoded||0,"
                 " s: (window.corecastPlayer||{}).state, e: (window.corecastPlayer||{}).error,"
                 " m: (window.corecastPlayer||{}).mode})")
        state = {}

        def decoded():
            state.update(json.loads(cdp.eval(probe) or "{}"))
            return state.get("f", 0) > 100
        assert wait_for(decoded, timeout=30, step=0.5), f"{state}\n{srv.log()}"
        assert state["m"] == "webrtc" and state["s"] == "playing", state
        # The transport of the pair in use, from getStats.
        cdp.eval("""player.pc.getStats().then((r) => { const all = {}; r.forEach((x) => all[x.id] = x);
            const t = Object.values(all).find((x) => x.type === 'transport');
            const pair = t && all[t.selectedCandidatePairId];
            window.__pairProtocol = pair ? all[pair.localCandidateId].protocol : 'none'; })""")
        return wait_for(lambda: cdp.eval("window.__pairProtocol || ''"), timeout=5)


def _metric(srv, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.api_port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
    return None


@inner
def test_nack_answered_from_shared_history(rtc_server):
    """The viewer loses one video packet in 10; its NACKs are answered from the stream's
    shared packet ring and it still decodes >= 90 % of the frames."""
    srv = rtc_server()
    wait_live(srv)
    counts, info = view(srv, "demo", "json", drop_every=10)
    assert counts["lost"] > 10, counts
    resent = _metric(srv, "corecast_webrtc_nack_resent_total")
    assert resent and resent >= counts["lost"] // 2, (resent, counts)
    assert counts["video"] >= 0.9 * 25 * WINDOW, (counts, srv.log())


@inner
def test_chromium_over_ice_tcp_only(rtc_server):
    """Only an ICE-TCP candidate offered (`filters: networks: [tcp4]`): Chromium connects
    over TCP (RFC 4571 framing) and decodes > 100 frames."""
    from conftest import CHROMIUM, chromium_page
    if not CHROMIUM:
        pytest.skip("no chromium")
    srv = rtc_server("  filters:\n    networks: [tcp4]\n")
    wait_live(srv)
    assert _chromium_plays(srv) == "tcp"



async def _whip_start(srv, name):
    """aiortc publishes generated video (H.264) and audio to `name` by WHIP; returns
    (its peer connection, the answer, the Location)."""
    import aioice.ice
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    pc = RTCPeerConnection()
    pc.addTrack(VideoStreamTrack())
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    api = f"http://127.0.0.1:{srv.api_port}/api/webrtc?dst={name}"
    st, hdrs, out = await loop.run_in_executor(None, _post, api, pc.localDescription.sdp.encode(),
                                               "application/sdp")
    assert st == 201, (st, out, srv.log())
    loc = hdrs["Location"]
    assert loc.startswith("webrtc?id="), hdrs
    answer = out.decode()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc, answer, loc


def _offline(srv, name):
    return wait_for(lambda: not (srv.streams().get(name) or {}).get("online"), timeout=5)


async def _whip_rtsp(srv, name, read_secs=4):
    """A WHIP publisher read by ffmpeg over RTSP, then ended by DELETE. Returns (frames
    ffmpeg decoded, the answer, the DELETE status, whether the stream went offline)."""
    pc, answer, loc = await _whip_start(srv, name)
    loop = asyncio.get_running_loop()

    def read():
        wait_live(srv, name)
        r = conftest.ffmpeg_read(srv.url(name), duration=read_secs)
        try:
            stdout, stderr = r.communicate(timeout=read_secs + 15)
        except subprocess.TimeoutExpired:
            r.kill()
            stdout, stderr = r.communicate()
        return conftest.decoded_frames(stdout), stderr

    def read_mp4():
        # What MSE players get: the fMP4 muxer over HTTP.
        url = f"http://127.0.0.1:{srv.api_port}/api/stream.mp4?src={name}"
        r = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-i", url,
                            "-t", "2", "-map", "0:v", "-f", "null", "-progress", "pipe:1", "-"],
                           capture_output=True, text=True, timeout=20)
        return conftest.decoded_frames(r.stdout)

    frames, err = await loop.run_in_executor(None, read)
    frames_mp4 = await loop.run_in_executor(None, read_mp4)
    req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}/api/{loc}", method="DELETE")
    with urllib.request.urlopen(req, timeout=5) as r:
        deleted = r.status
    gone = await loop.run_in_executor(None, _offline, srv, name)
    await pc.close()
    print("whip", name, "frames decoded by ffmpeg over RTSP:", frames, "over fMP4:", frames_mp4,
          err[-500:])
    return (frames, frames_mp4), answer, deleted, gone


@inner
def test_whip_publish_read_over_rtsp(rtc_server):
    """aiortc publishes H.264 (30 fps) + Opus by WHIP into a stream no config names;
    ffmpeg decodes it over RTSP and as fMP4 (what MSE gets); DELETE of the Location ends the publish."""
    srv = rtc_server()
    frames, answer, deleted, gone = asyncio.run(_whip_rtsp(srv, "whipcam"))
    video, audio = answer.split("m=audio")
    assert "a=recvonly" in video and "H264/90000" in video, answer
    assert "a=recvonly" in audio and "opus/48000" in audio.lower(), answer
    assert frames[0] >= 0.6 * 30 * 4, (frames, srv.log())
    assert frames[1] >= 0.6 * 30 * 2, (frames, srv.log())
    assert deleted == 200
    assert gone, (srv.streams(), srv.log())
    api = f"http://127.0.0.1:{srv.api_port}/api/webrtc?dst="
    # Nothing to receive from an offer that only receives.
    for body, ctype in [(b"", "application/sdp"), (b"v=0\r\nm=video\r\n", "application/sdp"),
                        (b"{}", "application/json"), (_offer_text(), "application/sdp")]:
        st, _, out = _post(api + "x", body, ctype)
        assert st == 400 and out.strip(), (body, st, out)
    # go2rtc's JSON form: 201, the JSON answer and the Location, which DELETE ends.
    body = json.dumps({"type": "offer", "sdp": _offer_text(direction="sendonly").decode()})
    st, hdrs, out = _post(api + "jsoncam", body.encode(), "application/json")
    assert st == 201 and json.loads(out)["type"] == "answer", (st, out)
    req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}/api/{hdrs['Location']}",
                                 method="DELETE")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    # A stream that has a producer is refused, as an RTSP ANNOUNCE is.
    wait_live(srv)
    st, _, out = _post(api + "demo", _offer_text(direction="sendonly"), "application/sdp")
    assert st == 403, (st, out)
    assert srv.alive()


@inner
def test_whip_read_by_webrtc_viewer(rtc_server):
    """A WHIP publisher's stream played by an aiortc WebRTC viewer (video and audio); the
    publisher gets PLIs; when it closes its peer connection the stream goes offline."""
    srv = rtc_server()

    async def go():
        pc, _, _ = await _whip_start(srv, "whipview")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, wait_live, srv, "whipview")
        counts, info = await _view(srv, "whipview", "json")
        await pc.close()
        return counts, info, await loop.run_in_executor(None, _offline, srv, "whipview")

    counts, info, gone = asyncio.run(go())
    assert info["state"] == "connected", srv.log()
    assert counts["video"] >= 0.6 * 30 * WINDOW, (counts, srv.log())
    assert counts["audio_secs"] >= 0.8 * WINDOW, (counts, srv.log())
    assert _metric(srv, "corecast_webrtc_plis_sent_total") >= 2, srv.log()
    assert gone, (srv.streams(), srv.log())


@inner
def test_whip_publisher_replaced_viewer_stays(rtc_server):
    """A WHIP publisher ends (DELETE); another publishes the same tracks within
    `fanout: resume_ms`: the RTSP reader keeps decoding across both, as with RTSP
    publishers."""
    srv = rtc_server()

    async def go():
        loop = asyncio.get_running_loop()
        pc, _, loc = await _whip_start(srv, "whipswap")
        await loop.run_in_executor(None, wait_live, srv, "whipswap")
        r = conftest.ffmpeg_read(srv.url("whipswap"), duration=6)
        await asyncio.sleep(2.5)  # a stretch of the first publisher's frames, by design
        req = urllib.request.Request(f"http://127.0.0.1:{srv.api_port}/api/{loc}",
                                     method="DELETE")
        await loop.run_in_executor(None, lambda: urllib.request.urlopen(req, timeout=5).close())
        await pc.close()
        pc2, _, _ = await _whip_start(srv, "whipswap")
        out, _ = await loop.run_in_executor(None, lambda: r.communicate(timeout=30))
        await pc2.close()
        return conftest.decoded_frames(out)

    frames = asyncio.run(go())
    print("whip replaced: frames decoded by ffmpeg over RTSP:", frames)
    # The first publisher alone gives ~75; the reader ends at 6 s of stream time.
    assert frames >= 0.6 * 30 * 6, (frames, srv.log())


# --- The web UI in Chromium: publishing the camera by WHIP, auto mode (issue #12 item 7) ---

# Chromium in the namespace: loopback candidates, and addresses instead of mDNS names (mDNS
# needs multicast, which a namespace with only loopback lacks).
CHROMIUM_RTC_ARGS = ["--allow-loopback-in-peer-connection",
                     "--disable-features=WebRtcHideLocalIpsWithMdns"]
# A fake camera (a moving test pattern) and microphone (beeps), permission granted.
CHROMIUM_FAKE_MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def _page_state(cdp, var):
    # The peer connection in it serializes as {}.
    try:
        return json.loads(cdp.eval(f"JSON.stringify(window.{var} || {{}})") or "{}")
    except AssertionError as e:
        # A page that redirects (webrtc.html?src= to the player) can navigate under an
        # evaluate: nothing to read yet, the caller's deadline still applies.
        if "navigated or closed" in str(e):
            return {}
        raise


@inner
def test_chromium_publishes_camera_by_whip(rtc_server):
    """webrtc.html?dst=NAME (go2rtc's page): Chromium's fake camera and microphone are
    published by WHIP as H.264 + Opus; ffprobe sees both over RTSP and ffmpeg decodes the
    video; the page's Stop ends the publish (DELETE)."""
    from conftest import CHROMIUM, chromium_page
    if not CHROMIUM:
        pytest.skip("no chromium")
    srv = rtc_server()
    name = "browsercam"
    with chromium_page(extra_args=CHROMIUM_RTC_ARGS + CHROMIUM_FAKE_MEDIA_ARGS) as cdp:
        cdp.call("Page.navigate", url=f"http://127.0.0.1:{srv.api_port}/webrtc.html"
                                      f"?dst={name}&media=camera+microphone")
        state = {}

        def sending():
            state.update(_page_state(cdp, "corecastPublisher"))
            return (state.get("state") == "publishing" and state.get("framesSent", 0) > 10
                    and state.get("audioCodec"))
        assert wait_for(sending, timeout=30, step=0.5), f"{state}\n{srv.log()}"
        assert state["videoCodec"] == "video/H264", state
        assert state["audioCodec"] == "audio/opus", state
        assert state["location"] and "/api/webrtc?id=" in state["location"], state
        wait_live(srv, name)
        kinds = {s["codec_type"]: s["codec_name"] for s in conftest.ffprobe_streams(srv.url(name))}
        assert kinds == {"video": "h264", "audio": "opus"}, kinds
        secs = 4
        r = conftest.ffmpeg_read(srv.url(name), duration=secs)
        try:
            out, err = r.communicate(timeout=secs + 20)
        except subprocess.TimeoutExpired:
            r.kill()
            out, err = r.communicate()
        frames = conftest.decoded_frames(out)
        sent = _page_state(cdp, "corecastPublisher")
        print("chromium WHIP: frames decoded by ffmpeg over RTSP in", secs, "s:", frames,
              "publisher:", {k: sent.get(k) for k in ("framesSent", "packetsSent", "bytesSent")})
        # The fake camera sends 20 fps (80 decoded in 4 s here).
        assert frames >= 0.6 * 20 * secs, (frames, err[-1000:], srv.log())
        cdp.eval("document.getElementById('stop').click()")
        assert _offline(srv, name), (srv.streams(), srv.log())
        assert _page_state(cdp, "corecastPublisher")["state"] == "stopped"


@inner
def test_chromium_auto_mode_keeps_the_better(rtc_server, clip, procs):
    """stream.html in auto mode (go2rtc's default: MSE and WebRTC both started, ranked as
    video-rtc.js ranks them): H.264 + Opus plays over WebRTC (MSE plays Opus too, but
    WebRTC ranks higher with the same tracks), the demo's H.264 + AAC over MSE (AAC only reaches MSE); the loser is stopped
    and the winner's decoded frames keep growing."""
    from conftest import CHROMIUM, chromium_page
    if not CHROMIUM:
        pytest.skip("no chromium")
    srv = rtc_server("streams:\n  op:\n")
    procs.append(conftest.ffmpeg_publish(srv.url("op"), clip, loop=True,
                                         extra=["-c:a", "libopus", "-b:a", "48k"]))
    srv.wait_producer("op")
    wait_live(srv)
    with chromium_page(extra_args=CHROMIUM_RTC_ARGS) as cdp:
        # `mode=auto`, and no mode at all (the default).
        for query, winner, loser in [("src=op&mode=auto", "webrtc", "mse"),
                                     ("src=demo", "mse", "webrtc")]:
            cdp.call("Page.navigate", url=f"http://127.0.0.1:{srv.api_port}/stream.html?{query}")
            state = {}

            def chosen():
                state.update(_page_state(cdp, "corecastPlayer"))
                return (state.get("decided") and state.get("active") == winner
                        and state.get("framesDecoded", 0) > 25)
            assert wait_for(chosen, timeout=30, step=0.5), f"{query}: {state}\n{srv.log()}"
            assert state["mode"] == "auto" and state["state"] == "playing", state
            assert state["modes"][loser]["state"] == "stopped", state
            first = state["framesDecoded"]
            assert wait_for(lambda: _page_state(cdp, "corecastPlayer")["framesDecoded"] > first + 25,
                            timeout=10, step=0.5), (query, first, _page_state(cdp, "corecastPlayer"))
        # go2rtc's webrtc.html?src= plays: here it is the player in WebRTC mode.
        cdp.call("Page.navigate", url=f"http://127.0.0.1:{srv.api_port}/webrtc.html?src=op")
        state = {}

        def redirected():
            state.update(_page_state(cdp, "corecastPlayer"))
            return state.get("mode") == "webrtc" and state.get("framesDecoded", 0) > 25
        assert wait_for(redirected, timeout=30, step=0.5), state


@inner
def test_chromium_auto_mode_without_webrtc_plays_mse(rtc_server, clip, procs):
    """Auto mode where WebRTC cannot connect (Chromium without loopback candidates, the
    only network here): the H.264 + Opus stream that WebRTC would win plays over MSE."""
    from conftest import CHROMIUM, chromium_page
    if not CHROMIUM:
        pytest.skip("no chromium")
    srv = rtc_server("streams:\n  op:\n")
    procs.append(conftest.ffmpeg_publish(srv.url("op"), clip, loop=True,
                                         extra=["-c:a", "libopus", "-b:a", "48k"]))
    srv.wait_producer("op")
    with chromium_page() as cdp:
        cdp.call("Page.navigate", url=f"http://127.0.0.1:{srv.api_port}/stream.html?src=op")
        state = {}

        def playing():
            state.update(_page_state(cdp, "corecastPlayer"))
            return state.get("active") == "mse" and state.get("framesDecoded", 0) > 50
        assert wait_for(playing, timeout=30, step=0.5), f"{state}\n{srv.log()}"
        assert state["state"] == "playing" and state["modes"]["webrtc"]["state"] != "playing", state


@inner
def test_chromium_webrtc_tcp_mode(rtc_server):
    """stream.html?mode=webrtc/tcp (go2rtc's): the server offers UDP and TCP candidates,
    the player drops the UDP ones and Chromium plays over ICE-TCP."""
    from conftest import CHROMIUM
    if not CHROMIUM:
        pytest.skip("no chromium")
    srv = rtc_server()
    wait_live(srv)
    assert _chromium_plays(srv, mode="webrtc/tcp") == "tcp"


# --- H.265 and G.711 at other rates (issue 12 item 4) ---

@inner
@pytest.mark.parametrize("audio,rtpmap", [
    (["-c:a", "pcm_alaw", "-ar", "16000", "-ac", "1"], "PCMA/8000"),
    (["-c:a", "pcm_mulaw", "-ar", "16000", "-ac", "1"], "PCMU/8000"),
    (["-c:a", "pcm_s16be", "-ar", "48000", "-ac", "2"], "PCMA/8000"),
], ids=["pcma16k", "pcmu16k", "l16-48k-stereo"])
def test_pcm_at_other_rates_resampled_to_8k(rtc_server, procs, audio, rtpmap):
    """A camera's G.711 at 16 kHz (or L16 stereo at 48 kHz) reaches the browser as 8 kHz
    G.711, converted once on the shard: aiortc decodes 8 kHz audio for >= 90 % of the
    window and no more than real time (unconverted 16 kHz would read as twice as long)."""
    srv = rtc_server("streams:\n  pcm: []\n")
    procs.append(_publish_audio(srv, "pcm", audio))
    wait_live(srv, "pcm")
    counts, info = view(srv, "pcm", "json")
    assert info["state"] == "connected", srv.log()
    assert rtpmap in info["answer"].split("m=audio")[1], info["answer"]
    assert info["audio_rates"] == {8000}, info["audio_rates"]
    assert 0.9 * WINDOW <= counts["audio_secs"] <= 1.1 * WINDOW, (counts, srv.log())
    assert counts["video"] >= 0.9 * 25 * WINDOW, (counts, srv.log())


GST_PEER = Path(__file__).resolve().parent / "gst_webrtc_peer.py"


def _gst_webrtc_ready():
    r = subprocess.run(["/usr/bin/python3", "-c",
                        "import gi; gi.require_version('GstWebRTC', '1.0'); "
                        "from gi.repository import Gst; Gst.init(None); "
                        "assert all(Gst.ElementFactory.find(e) for e in "
                        "('webrtcbin', 'nicesrc', 'rtph265depay', 'avdec_h265'))"],
                       capture_output=True, timeout=30)
    return r.returncode == 0


def _nice_interface():
    """libnice (webrtcbin's ICE) gathers no loopback addresses, and the private namespace
    has only loopback: give it a veth pair there (gone with the namespace). Its checks from
    10.254.0.1 to our 127.0.0.1 candidate stay inside the namespace."""
    if b"10.254.0.1/" in subprocess.run(["ip", "-br", "addr"], capture_output=True).stdout:
        return
    for cmd in ("ip link add cc-nice0 type veth peer name cc-nice1",
                "ip addr add 10.254.0.1/30 dev cc-nice0",
                "ip link set cc-nice0 up", "ip link set cc-nice1 up"):
        subprocess.run(cmd.split(), check=True, capture_output=True)


@inner
def test_h265_to_gstreamer_webrtcbin(rtc_server, procs):
    """ffmpeg publishes H.265 (libx265) over RTSP; GStreamer's webrtcbin offers H.265 only,
    gets it answered, depayloads and decodes it with avdec_h265: >= 90 % of 25 fps."""
    if not _gst_webrtc_ready():
        pytest.skip("GStreamer webrtcbin / libnice / avdec_h265 not installed")
    _nice_interface()
    srv = rtc_server("streams:\n  hevc: []\n")
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
           "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
           "-c:v", "libx265", "-preset", "ultrafast", "-tune", "zerolatency",
           "-x265-params", "keyint=25:bframes=0:log-level=error", "-pix_fmt", "yuv420p",
           "-f", "rtsp", "-rtsp_transport", "tcp", srv.url("hevc")]
    procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    wait_live(srv, "hevc")
    url = f"http://127.0.0.1:{srv.api_port}/api/webrtc?src=hevc"
    r = subprocess.run(["/usr/bin/python3", str(GST_PEER), url, str(WINDOW), str(SETTLE)],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print("gstreamer webrtcbin H.265:", {k: v for k, v in out.items() if k != "answer"})
    assert out["error"] is None, (out, r.stderr[-2000:], srv.log())
    assert "H265/90000" in (out["answer"] or ""), out["answer"]
    assert out["window"] >= 0.9 * 25 * WINDOW, (out, r.stderr[-2000:], srv.log())


TURN_PASS = "s3cretPa55"


def _coturn(procs, extra=()):
    """coturn on loopback (user u:TURN_PASS, realm corecast, relay ports in a free block); its
    listening port."""
    import shutil
    if not shutil.which("turnserver"):
        pytest.skip("coturn (turnserver) not installed")
    base = free_port_block(12)
    port, relay_min, relay_max = base, base + 2, base + 11
    import tempfile
    log = tempfile.TemporaryFile()
    p = subprocess.Popen(
        ["turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp", "--log-file=stdout",
         "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         f"--min-port={relay_min}", f"--max-port={relay_max}", "--allow-loopback-peers",
         "--lt-cred-mech", f"--user=u:{TURN_PASS}", "--realm=corecast", "--fingerprint", *extra],
        stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    # Ready when it answers a STUN binding request.
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)

    def answers():
        if p.poll() is not None:
            log.seek(0)
            raise AssertionError(f"coturn exited: {log.read()[-3000:]!r}")
        try:
            s.sendto(b"\x00\x01\x00\x00" + (0x2112A442).to_bytes(4, "big") + os.urandom(12),
                     ("127.0.0.1", port))
            return s.recvfrom(2048)[0][:2] == b"\x01\x01"
        except OSError:
            return False
    try:
        assert wait_for(answers, timeout=10, step=0.1), "coturn did not answer"
    finally:
        s.close()
    return port


async def _view_relayed(srv, turn_port, via):
    """aiortc with relay candidates only (its own allocation on coturn) plays `demo`; our
    answer is cut to its relay candidates, so every packet crosses our allocation too.
    Returns (video frames decoded in the window, answer, connection state)."""
    import aioice.ice
    from aiortc import (RTCConfiguration, RTCIceServer, RTCIceTransportPolicy,
                        RTCPeerConnection, RTCSessionDescription)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    turn = {"urls": f"turn:127.0.0.1:{turn_port}", "username": "u", "credential": TURN_PASS}
    pc = RTCPeerConnection(RTCConfiguration(
        iceServers=[RTCIceServer(**turn)], iceTransportPolicy=RTCIceTransportPolicy.RELAY))
    pc.addTransceiver("video", direction="recvonly")
    times = []
    done = asyncio.Event()

    async def consume(track):
        while not done.is_set():
            try:
                await track.recv()
            except Exception:
                return
            times.append(time.monotonic())
    tasks = []
    pc.on("track", lambda t: tasks.append(asyncio.ensure_future(consume(t))))
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    assert "typ relay" in offer and "typ host" not in offer, offer
    loop = asyncio.get_running_loop()
    if via == "config":
        body = json.dumps({"type": "offer", "sdp": offer}).encode()
        st, _, out = await loop.run_in_executor(
            None, _post, f"http://127.0.0.1:{srv.api_port}/api/webrtc?src=demo", body,
            "application/json")
        assert st == 200, out
        answer = json.loads(out)["sdp"]
    elif via == "trickle":
        # The offer without candidates; they follow as `webrtc/candidate` messages (the
        # relay's permission for the viewer's IP comes from them).
        def trickle():
            import websocket
            ws = websocket.create_connection(
                f"ws://127.0.0.1:{srv.api_port}/api/ws?src=demo", timeout=15)
            try:
                lines = offer.split("\r\n")
                bare = "\r\n".join(l for l in lines if not l.startswith("a=candidate:"))
                ws.send(json.dumps({"type": "webrtc/offer", "value": bare}))
                msg = json.loads(ws.recv())
                for l in lines:
                    if l.startswith("a=candidate:"):
                        ws.send(json.dumps({"type": "webrtc/candidate", "value": l[2:]}))
                ws.send(json.dumps({"type": "webrtc/candidate", "value": ""}))
                return msg
            finally:
                ws.close()
        msg = await loop.run_in_executor(None, trickle)
        assert msg["type"] == "webrtc/answer", msg
        answer = msg["value"]
    else:
        # Home Assistant's message, its ice_servers naming the TURN server.
        def ha():
            import websocket
            ws = websocket.create_connection(
                f"ws://127.0.0.1:{srv.api_port}/api/ws?src=demo", timeout=15)
            try:
                ws.send(json.dumps({"type": "webrtc", "value": {
                    "type": "offer", "sdp": offer, "ice_servers": [turn]}}))
                return json.loads(ws.recv())
            finally:
                ws.close()
        msg = await loop.run_in_executor(None, ha)
        assert msg["type"] == "webrtc", msg
        answer = msg["value"]["sdp"]
    lines = answer.split("\r\n")
    relay_only = "\r\n".join(l for l in lines if "typ host" not in l)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=relay_only, type="answer"))
    for _ in range(100):
        if times:
            break
        await asyncio.sleep(0.1)
    first = times[0] if times else time.monotonic()
    await asyncio.sleep(max(0.0, first + SETTLE + WINDOW - time.monotonic()))
    state = pc.connectionState
    done.set()
    await pc.close()
    for t in tasks:
        t.cancel()
    frames = sum(1 for x in times if first + SETTLE <= x < first + SETTLE + WINDOW)
    return frames, answer, state


@inner
@pytest.mark.parametrize("via", ["config", "trickle", "ha"])
def test_viewer_behind_turn_only(rtc_server, procs, via):
    """A viewer that can reach only a TURN server (coturn on loopback): the server allocates
    a relay on it (from `ice_servers` in the config, or in Home Assistant's message), its
    answer has a relay candidate, and the video crosses both relays at >= 90 % of its rate.
    `trickle`: the viewer's candidates come after the offer on `/api/ws`."""
    turn_port = _coturn(procs)
    servers = (f"  ice_servers:\n    - urls: [\"turn:127.0.0.1:{turn_port}\"]\n"
               f"      username: u\n      credential: {TURN_PASS}\n") if via != "ha" else ""
    srv = rtc_server(servers)
    wait_live(srv)
    frames, answer, state = asyncio.run(_view_relayed(srv, turn_port, via))
    relay = [l for l in answer.split("\r\n") if "typ relay" in l]
    assert relay and " 127.0.0.1 " in relay[0], answer
    assert state == "connected", srv.log()
    assert frames >= 0.9 * 25 * WINDOW, (frames, srv.log())
    # The credential never shows in the log.
    assert TURN_PASS not in srv.log()


@inner
def test_stun_port_candidate(rtc_server, procs):
    """`candidates: [stun:PORT]`: the public address learned from a STUN server (coturn on
    loopback answers 127.0.0.1) with PORT is in the answer, as go2rtc gives it."""
    stun_port = _coturn(procs)
    public_port = 40000 + stun_port % 20000
    srv = rtc_server(f"  candidates: [\"stun:{public_port}\"]\n"
                     f"  ice_servers:\n    - urls: [\"stun:127.0.0.1:{stun_port}\"]\n")
    wait_live(srv)
    st, _, answer = _post(f"http://127.0.0.1:{srv.api_port}/api/webrtc?src=demo",
                          _offer_text(), "application/sdp")
    assert st == 201, answer
    if f" 127.0.0.1 {public_port} typ host" not in answer.decode():
        print(srv.log())
    assert f" 127.0.0.1 {public_port} typ host" in answer.decode(), answer.decode()


@inner
def test_silent_turn_server_does_not_hold_the_answer(rtc_server):
    """A TURN server that never answers: the answer comes within the 2 s bound, without a
    relay candidate, and the next offer does not wait again."""
    import socket
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        srv = rtc_server(f"  ice_servers:\n    - urls: [\"turn:127.0.0.1:{silent.getsockname()[1]}\"]\n"
                         f"      username: u\n      credential: {TURN_PASS}\n", shards=1)
        wait_live(srv)
        api = f"http://127.0.0.1:{srv.api_port}/api/webrtc?src=demo"
        offer = _offer_text()
        took = []
        for _ in range(2):
            t0 = time.monotonic()
            st, _, answer = _post(api, offer, "application/sdp")
            took.append(time.monotonic() - t0)
            assert st == 201, answer
            assert b"typ relay" not in answer and b"typ host" in answer, answer
        assert took[0] < 3.5 and took[1] < 1.0, took
        # It did ask (the allocation request reached the silent server).
        silent.settimeout(1)
        assert silent.recvfrom(2048)[0][:2] == b"\x00\x03"
    finally:
        silent.close()

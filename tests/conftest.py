"""Shared fixtures for corecast's end-to-end tests.

Every test runs the real release binary and real peers (ffmpeg, ffprobe, GStreamer).
Each server gets its own ports so tests never collide, and every process is killed at
the end of its test.
"""
import errno
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "corecast"
ARTIFACTS = ROOT / "tests" / "artifacts"

_next_port = [20000 + (os.getpid() % 200) * 100]


def free_port_block(n=4):
    """A block of n consecutive free ports (TCP and UDP)."""
    while True:
        base = _next_port[0]
        # Even steps keep every block's base even (start_server's rtp_port must be even).
        _next_port[0] += (n + 7) // 2 * 2
        ok = True
        for p in range(base, base + n):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                # IPv4 loopback, and all of IPv6 where there is IPv6: servers listening on
                # ":PORT" take [::] too.
                for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")):
                    try:
                        s = socket.socket(family, kind)
                    except OSError:
                        continue
                    try:
                        if family == socket.AF_INET6:
                            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                        s.bind((host, p))
                    except OSError as e:
                        # EADDRNOTAVAIL: no IPv6 on this host; nothing to collide with.
                        if e.errno != errno.EADDRNOTAVAIL:
                            ok = False
                    finally:
                        s.close()
        if ok:
            return base


class Server:
    def __init__(self, proc, rtsp_port, api_port, workdir, log_path):
        self.proc = proc
        self.rtsp_port = rtsp_port
        self.api_port = api_port
        self.workdir = workdir
        self.log_path = log_path

    def url(self, name, query=""):
        return f"rtsp://127.0.0.1:{self.rtsp_port}/{name}{query}"

    def api(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def streams(self):
        return self.api("/api/streams")

    def wait_producer(self, name, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.streams().get(name)
            if s and s.get("online"):
                return s
            time.sleep(0.1)
        raise AssertionError(f"stream {name} has no producer after {timeout}s; log:\n{self.log()}")

    def log(self):
        try:
            return Path(self.log_path).read_text()[-4000:]
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None


def _rtsp_extra_lines(extra):
    """Lines to put under the generated `rtsp:` section: a dict (values as YAML scalars) or
    YAML text (each line indented here)."""
    if not extra:
        return ""
    if isinstance(extra, dict):
        def scalar(v):
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, str):
                return json.dumps(v)
            return str(v)
        return "".join(f"  {k}: {scalar(v)}\n" for k, v in extra.items())
    return "".join(f"  {l.strip()}\n" for l in extra.splitlines() if l.strip())


# tests/test_webrtc.py runs in its own network namespace (`unshare -n`): only loopback,
# and nothing shared with the other tests, not even ports. That run starts as soon as
# collection is done and goes on beside the other tests; its outer test waits for it.
# (About three minutes saved of a suite that must stay under twenty.)
_NETNS_RUN = {}


def netns_webrtc_run():
    """Starts tests/test_webrtc.py's inner run under `unshare -n` once; {proc, log}."""
    if "proc" not in _NETNS_RUN:
        here = Path(__file__).resolve().parent
        log = tempfile.NamedTemporaryFile(prefix="corecast-webrtc-netns-", suffix=".log",
                                          delete=False)
        cmd = ("ip link set lo up && CORECAST_WEBRTC_NETNS=1 exec "
               f"{sys.executable} -m pytest -x -q -p no:cacheprovider test_webrtc.py")
        proc = subprocess.Popen(["unshare", "-n", "sh", "-c", cmd], cwd=here, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _NETNS_RUN.update(proc=proc, log=log.name)
    return _NETNS_RUN


def pytest_collection_modifyitems(session, config, items):
    if os.environ.get("CORECAST_WEBRTC_NETNS") == "1" or os.geteuid() != 0:
        return
    if not any(i.nodeid.endswith("test_webrtc.py::test_webrtc_in_private_netns")
               for i in items):
        return
    try:
        import aiortc  # noqa: F401
    except ImportError:
        return
    netns_webrtc_run()


def pytest_sessionfinish(session, exitstatus):
    proc = _NETNS_RUN.get("proc")
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_server(config_text="", shards=2, env=None, cwd=None, args=None, wait=True,
                 rtsp_extra=None, format_ports=False, api_extra=None, api_listen=None,
                 rtsp_host="127.0.0.1", api_host="127.0.0.1"):
    # rtsp_host / api_host: the listen address's host ("" for go2rtc's ":PORT", "[::1]", ...);
    # the API must answer on 127.0.0.1 for the start-up wait (or pass wait=False).
    # RTSP, API, then an RTP/RTCP pair per shard (rtp_port + 2 * shard), then WebRTC.
    rtp_ports = 2 * max(shards or 2, 2)
    base = free_port_block(3 + rtp_ports)
    rtsp_port, api_port, rtp_port = base, base + 1, base + 2
    if format_ports:
        # Lets a config refer to the server's own RTSP port ("{port}").
        config_text = config_text.replace("{port}", str(rtsp_port))
    workdir = Path(tempfile.mkdtemp(prefix="corecast-"))
    cfg = workdir / "corecast.yaml"
    # Each server its own WebRTC port (the default :8555 is SO_REUSEPORT: parallel test
    # servers would share it), unless the test configures WebRTC itself.
    webrtc_port = None
    if not ("\n" + config_text).count("\nwebrtc:"):
        webrtc_port = rtp_port + rtp_ports
        config_text += f"webrtc:\n  listen: \"127.0.0.1:{webrtc_port}\"\n"
    cfg.write_text(
        f"rtsp:\n  listen: \"{rtsp_host}:{rtsp_port}\"\n  rtp_port: {rtp_port}\n"
        + _rtsp_extra_lines(rtsp_extra) +
        f"api:\n  listen: \"{api_listen if api_listen is not None else f'{api_host}:{api_port}'}\"\n"
        + _rtsp_extra_lines(api_extra) +
        f"shards: {shards}\n" + config_text
    )
    log_path = workdir / "server.log"
    cmd = [str(BIN), "-c", str(cfg)] + (args or [])
    proc = subprocess.Popen(
        cmd,
        stdout=open(log_path, "w"),
        stderr=subprocess.STDOUT,
        cwd=cwd or workdir,
        env={**os.environ, **(env or {})},
    )
    srv = Server(proc, rtsp_port, api_port, workdir, log_path)
    srv.webrtc_port = webrtc_port
    if wait:
        wait_http(api_port, proc, log_path)
    return srv


def wait_http(api_port, proc, log_path, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {Path(log_path).read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not answer /api in time")


def stop(proc, sig=signal.SIGTERM, timeout=5):
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def server_factory():
    started = []

    def make(*a, **kw):
        s = start_server(*a, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        stop(s.proc)


@pytest.fixture
def procs():
    """Processes a test starts; all are killed at the end, even on failure."""
    ps = []
    yield ps
    for p in ps:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except OSError:
                pass
            p.kill()
            p.wait()


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """A 10 s H.264 + AAC test clip, one keyframe (so a late reader still gets every
    frame from the server's ring), 25 fps: 250 video frames."""
    d = tmp_path_factory.mktemp("clip")
    path = d / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
         "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-g", "300", "-bf", "0",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-ac", "2", str(path)],
        check=True,
    )
    return path


def ffmpeg_publish(url, clip, transport="tcp", loop=False, extra=None):
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re"]
    if loop:
        cmd += ["-stream_loop", "-1"]
    cmd += ["-i", str(clip), "-c", "copy"] + (extra or []) + [
        "-f", "rtsp", "-rtsp_transport", transport, url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def ffmpeg_read(url, transport="tcp", duration=None, extra_in=None):
    """Starts an ffmpeg reader that decodes every stream to null and reports progress."""
    cmd = ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error",
           "-rtsp_transport", transport] + (extra_in or []) + ["-i", url]
    if duration:
        cmd += ["-t", str(duration)]
    cmd += ["-map", "0", "-f", "null", "-progress", "pipe:1", "-"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def decoded_frames(progress_text):
    """Last `frame=` value in ffmpeg -progress output (video frames decoded)."""
    frames = re.findall(r"^frame=(\d+)", progress_text, re.M)
    return int(frames[-1]) if frames else 0


def ffprobe_streams(url, transport="tcp"):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", transport, "-show_entries",
         "stream=codec_name,codec_type", "-of", "json", url],
        capture_output=True, text=True, timeout=20,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["streams"]


# --- A real RTSP server of another project (gst-rtsp-server), for pull-source tests ---

GST_SCRIPT = ROOT / "tests" / "gst_rtsp_server.py"
# python3-gi lives in the system interpreter, not in a pyenv/venv one.
SYSTEM_PYTHON = "/usr/bin/python3"


class GstServer:
    """tests/gst_rtsp_server.py on its own port; `stop()` then `start()` restarts it on
    the same port (the upstream-restart test)."""

    def __init__(self, port, path="/test", tracks="video", user=None, password=None,
                 protocols="all", max_seconds=300, tls_pem=None, backchannel=False):
        self.port, self.path, self.tracks = port, path, tracks
        self.backchannel = backchannel
        self.tls_pem = tls_pem
        self.user, self.password, self.protocols = user, password, protocols
        self.max_seconds = max_seconds
        self.proc = None
        self.log_path = Path(tempfile.mkdtemp(prefix="gst-rtsp-")) / "gst.log"

    def url(self, user=None, password=None, host="127.0.0.1"):
        cred = ""
        if user is not None:
            cred = f"{user}:{password}@" if password is not None else f"{user}@"
        return f"rtsp://{cred}{host}:{self.port}{self.path}"

    def start(self, timeout=20):
        cmd = [SYSTEM_PYTHON, str(GST_SCRIPT), "--port", str(self.port), "--path", self.path,
               "--tracks", self.tracks, "--protocols", self.protocols,
               "--max-seconds", str(self.max_seconds)]
        if self.user is not None:
            cmd += ["--user", self.user, "--password", self.password]
        if self.tls_pem is not None:
            cmd += ["--tls-pem", str(self.tls_pem)]
        if self.backchannel:
            cmd += ["--backchannel"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(self.log_path, "a"),
                                     text=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gst_rtsp_server.py exited with {self.proc.returncode}: "
                                     f"{self.log()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("READY"):
                    return self
        stop(self.proc)
        raise AssertionError(f"gst_rtsp_server.py not READY in {timeout}s: {self.log()}")

    def stop(self):
        if self.proc is not None:
            stop(self.proc, timeout=5)

    def log(self):
        try:
            return self.log_path.read_text()[-4000:]
        except OSError:
            return ""


@pytest.fixture
def gst_server():
    """Factory: gst_server(tracks="video,pcma,aac", user=..., password=..., protocols=...)
    starts gst-rtsp-server on a free port, waits for READY; all are stopped at teardown."""
    started = []

    def make(tracks="video", user=None, password=None, protocols="all", path="/test",
             max_seconds=300, tls_pem=None, backchannel=False):
        g = GstServer(free_port_block(1), path=path, tracks=tracks, user=user,
                      password=password, protocols=protocols, max_seconds=max_seconds,
                      tls_pem=tls_pem, backchannel=backchannel)
        started.append(g)
        return g.start()

    yield make
    for g in started:
        g.stop()


def tcp_connections(port):
    """Established TCP connections whose remote port is `port` (clients of that port)."""
    try:
        out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            return [l for l in out.stdout.splitlines() if l.strip()]
    except FileNotFoundError:
        pass
    conns = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for l in lines:
            f = l.split()
            # f[2] = remote "ADDR:PORT" in hex, f[3] = state (01 = ESTABLISHED)
            if f[3] == "01" and int(f[2].rsplit(":", 1)[1], 16) == port:
                conns.append(l)
    return conns


def wait_for(pred, timeout=15, step=0.2):
    """Polls `pred` until it returns something true or the deadline passes; its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def wait_live(srv, name="demo", timeout=15):
    """Waits until stream `name` has a producer (raises with the server log otherwise)."""
    return srv.wait_producer(name, timeout=timeout)


# --- Headless Chromium over the DevTools protocol (browser tests) ---

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Cdp:
    """Just enough of the Chrome DevTools Protocol: evaluate JS, take a screenshot."""

    def __init__(self, ws_url):
        import websocket  # websocket-client
        self.ws = websocket.create_connection(ws_url, timeout=20)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise AssertionError(msg["error"])
                return msg["result"]

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r["result"].get("value")


@contextlib.contextmanager
def chromium_page(debug_port=0, extra_args=()):
    """Headless Chromium (fresh profile) with one page under DevTools control: yields a
    `Cdp` for it; the browser is killed and its profile removed afterwards.

    DevTools listens on a port Chromium picks itself (read from the profile's
    DevToolsActivePort), so no other process can hold it; a browser that dies while starting
    on a loaded machine is started again (three tries), and its stderr ends the error."""
    del debug_port  # kept for callers; Chromium chooses the port
    profile = tempfile.mkdtemp(prefix="corecast-chromium-")
    chrome, err_path = None, None
    try:
        tab, errors = None, []
        for attempt in range(3):
            shutil.rmtree(profile, ignore_errors=True)
            os.makedirs(profile, exist_ok=True)
            err_path = os.path.join(tempfile.gettempdir(), f"chromium-{os.getpid()}-{attempt}.err")
            with open(err_path, "wb") as err:
                chrome = subprocess.Popen(
                    [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--autoplay-policy=no-user-gesture-required",
                     f"--user-data-dir={profile}", "--remote-debugging-port=0",
                     "--remote-allow-origins=*", *extra_args, "about:blank"],
                    stdout=subprocess.DEVNULL, stderr=err)

            def page():
                if chrome.poll() is not None:
                    return "exited"
                try:
                    with open(os.path.join(profile, "DevToolsActivePort")) as f:
                        port = int(f.readline().strip())
                    tabs = json.loads(urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/json/list", timeout=2).read())
                except (OSError, ValueError):
                    return None
                return next((t for t in tabs if t.get("type") == "page"), None)
            tab = wait_for(page, timeout=45, step=0.3)
            if isinstance(tab, dict):
                break
            with open(err_path, "rb") as f:
                errors.append(f"try {attempt + 1}: {tab or 'no page in 45 s'}: "
                              + f.read()[-1500:].decode(errors="replace"))
            os.unlink(err_path)
            chrome.kill()
            chrome.wait()
            tab = None
        assert tab, "chromium did not expose a page:\n" + "\n".join(errors)
        cdp = Cdp(tab["webSocketDebuggerUrl"])
        cdp.call("Page.enable")
        yield cdp
    finally:
        if chrome is not None:
            chrome.kill()
            chrome.wait()
        shutil.rmtree(profile, ignore_errors=True)
        if err_path:
            with contextlib.suppress(OSError):
                os.unlink(err_path)

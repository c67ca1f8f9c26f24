"""No command execution through the HTTP API (issue: "Security: no command execution").

Tried as an attacker on the same network would against a default configuration: sources
that run programs, sent through every API path that takes a source, must be refused and run
nothing, even when a reader then asks for the stream; the config file stays as it was.
`exec: allow_paths` (go2rtc's key) limits what the config file's own sources may run.
Config writes are serialised YAML: names and sources cannot inject keys.
"""
import http.client
import os
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import yaml

from conftest import BIN, Server, decoded_frames, ffmpeg_read, stop, wait_http


def req(srv, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", srv.api_port, timeout=10)
    c.request(method, path, body=body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data.decode(errors="replace")


def probe(srv, name):
    """A reader asking for the stream: any RTSP request for it would start its source."""
    return subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-timeout", "3000000",
         srv.url(name)],
        capture_output=True, text=True, timeout=20,
    )


def restart_from_file(srv):
    """Stops the server and starts it again from its config file as the API left it."""
    stop(srv.proc)
    log_path = srv.workdir / "restart.log"
    proc = subprocess.Popen([str(BIN), "-c", str(srv.workdir / "corecast.yaml")],
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                            cwd=srv.workdir)
    wait_http(srv.api_port, proc, log_path)
    return Server(proc, srv.rtsp_port, srv.api_port, srv.workdir, log_path)


def evil_program(d):
    """An executable that leaves a mark when run: a source naming it needs no whitespace."""
    mark = Path(d) / "pwned"
    prog = Path(d) / "evil.sh"
    prog.write_text(f"#!/bin/sh\ntouch {mark}\n")
    prog.chmod(0o755)
    return prog, mark


def test_api_refuses_program_sources_and_runs_nothing(server_factory):
    srv = server_factory("streams:\n  keep: rtsp://127.0.0.1:9/keep\n")
    cfg = srv.workdir / "corecast.yaml"
    before = cfg.read_bytes()
    d = tempfile.mkdtemp(prefix="corecast-sec-")
    prog, mark = evil_program(d)
    touched = Path(d) / "touched"
    q = urllib.parse.quote
    attempts = [
        # The exact command (whitespace: 400, as go2rtc answers).
        f"exec:touch {touched}",
        # No whitespace needed to run a program: refused because it is exec:.
        f"exec:{prog}",
        f"echo:{prog}",
        f"expr:{prog}",
        # ffmpeg arguments as written (ffmpeg can write any file).
        "ffmpeg:keep#raw=-y",
        "ffmpeg:keep#input=file",
        f"ffmpeg:keep#raw=-f null {touched}",
        # Control characters in a source.
        "rtsp://127.0.0.1:9/a\nb",
    ]
    for method in ("PUT", "PATCH"):
        for i, src in enumerate(attempts):
            name = f"x{i}"
            status, body = req(srv, method, f"/api/streams?name={name}&src={q(src, safe='')}")
            assert status in (400, 403), (method, src, status, body)
            if any(c.isspace() for c in src):
                assert status == 400, (method, src, status, body)
            assert name not in srv.streams(), (method, src)
            assert probe(srv, name).returncode != 0
    # The same through /api/config, POST (replace) and PATCH (merge).
    for method in ("POST", "PATCH"):
        for src in attempts:
            doc = yaml.safe_dump({"streams": {"keep": "rtsp://127.0.0.1:9/keep", "x": src}})
            status, body = req(srv, method, "/api/config", body=doc.encode())
            assert status in (400, 403), (method, src, status, body)
        # Sections that decide which programs run.
        for doc in ("ffmpeg:\n  bin: " + str(prog) + "\n",
                    "ffmpeg:\n  h264: \"-y " + str(touched) + "\"\n",
                    "exec:\n  allow_paths: [sh]\n",
                    "api:\n  allow_exec: true\n"):
            status, body = req(srv, method, "/api/config", body=doc.encode())
            assert status == 403, (method, doc, status, body)
    # Preload on a stream that does not exist cannot create one.
    assert req(srv, "PUT", f"/api/preload?src={q(f'exec:{prog}')}")[0] == 500  # go2rtc's status for an unknown stream
    assert cfg.read_bytes() == before
    assert not mark.exists() and not touched.exists()
    # A restart from the file runs nothing either.
    srv2 = restart_from_file(srv)
    try:
        assert probe(srv2, "x").returncode != 0
        assert not mark.exists() and not touched.exists()
    finally:
        stop(srv2.proc)


def test_allow_exec_lets_the_api_set_program_sources(server_factory):
    """The file's owner can opt in; then the API may add an exec: source (without spaces)."""
    srv = server_factory("", api_extra={"allow_exec": True})
    d = tempfile.mkdtemp(prefix="corecast-sec-")
    prog, mark = evil_program(d)
    status, body = req(srv, "PUT", f"/api/streams?name=run&src=exec:{prog}")
    assert status == 200, body
    probe(srv, "run")
    deadline = time.time() + 10
    while not mark.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert mark.exists(), srv.log()
    # Whitespace stays refused even then (go2rtc's rule).
    assert req(srv, "PUT", "/api/streams?name=y&src=exec:touch%20/tmp/x")[0] == 400


def test_exec_allow_paths(server_factory, procs):
    d = tempfile.mkdtemp(prefix="corecast-sec-")
    touched = Path(d) / "touched"
    good = ("exec:ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=25 "
            "-c:v libx264 -preset ultrafast -g 25 -bf 0 -f rtsp {output}")
    srv = server_factory(
        "exec:\n  allow_paths: [ffmpeg]\n"
        f"streams:\n  good: {good}\n  bad: exec:touch {touched}\n")
    reader = ffmpeg_read(srv.url("good"), duration=4)
    procs.append(reader)
    out, err = reader.communicate(timeout=40)
    assert decoded_frames(out) >= 75, err[-1500:] + srv.log()
    # `touch` is not allowed: the reader gets nothing, nothing is created, and the stream's
    # error names the program.
    assert probe(srv, "bad").returncode != 0
    error = ""
    deadline = time.time() + 10
    while time.time() < deadline and "touch" not in error:
        error = srv.streams().get("bad", {}).get("error") or ""
        time.sleep(0.1)
    assert "touch" in error and "allow_paths" in error, error
    assert "bad" in error, error
    assert not touched.exists()
    assert "program `touch` is not in `exec.allow_paths`" in srv.log()


def test_config_writes_cannot_inject_yaml(server_factory):
    srv = server_factory("streams:\n  keep: rtsp://127.0.0.1:9/keep\n")
    cfg = srv.workdir / "corecast.yaml"
    q = urllib.parse.quote
    intended = {
        "keep": "rtsp://127.0.0.1:9/keep",
        "a:b#c\"d'e": "rtsp://u:p%40@127.0.0.1:9/x?a=1&b='2'#\"c\":d",
        "-x": "rtsp://127.0.0.1:9/#streams:",
        "[y]": ["rtsp://127.0.0.1:9/{z}", "rtsp://127.0.0.1:9/&w"],
    }
    for name, src in intended.items():
        if name == "keep":
            continue
        srcs = src if isinstance(src, list) else [src]
        query = "&".join(f"src={q(s, safe='')}" for s in srcs)
        status, body = req(srv, "PUT", f"/api/streams?name={q(name, safe='')}&{query}")
        assert status == 200, (name, body)
    # Newlines can't reach the file at all.
    for name, src in [("n\nexec: x", "rtsp://127.0.0.1:9/a"),
                      ("n", "rtsp://127.0.0.1:9/a\napi:\n  allow_exec: true"),
                      ("n", "rtsp://127.0.0.1:9/a\r\n")]:
        status, _ = req(srv, "PUT", f"/api/streams?name={q(name, safe='')}&src={q(src, safe='')}")
        assert status == 400, (name, src)
    # An independent YAML parser reads exactly the intended streams...
    doc = yaml.safe_load(cfg.read_text())
    assert doc["streams"] == intended, doc
    assert "allow_exec" not in doc["api"] and "exec" not in doc
    # ...and so does corecast after a restart from the file.
    srv2 = restart_from_file(srv)
    try:
        got = {n: s["sources"] if len(s["sources"]) > 1 else s["sources"][0]
               for n, s in srv2.streams().items() if n != "demo"}
        assert got == intended, got
    finally:
        stop(srv2.proc)


def test_open_api_is_warned_about(server_factory):
    """API on every interface without credentials: a warning at start."""
    srv = server_factory("", api_listen=":0", wait=False)
    # On port 0 the test can't find the API; the log line is what it waits for.
    deadline = time.time() + 10
    while "anyone who can reach this port" not in srv.log() and time.time() < deadline:
        time.sleep(0.1)
    assert "anyone who can reach this port can change streams" in srv.log()


def test_one_loopback_rule_for_rtsp_and_http_auth(server_factory):
    """All of 127.0.0.0/8 is local for both servers (before, RTSP exempted only 127.0.0.1)."""
    creds = {"username": "admin", "password": "secret"}
    srv = server_factory(rtsp_extra=creds, api_extra=creds)

    def rtsp_status(source_ip):
        s = socket.create_connection(("127.0.0.1", srv.rtsp_port), timeout=5,
                                     source_address=(source_ip, 0))
        s.sendall(f"DESCRIBE {srv.url('demo')} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        head = s.recv(4096).decode(errors="replace")
        s.close()
        return int(head.split()[1])

    def http_status(source_ip):
        s = socket.create_connection(("127.0.0.1", srv.api_port), timeout=5,
                                     source_address=(source_ip, 0))
        s.sendall(b"GET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = s.recv(4096).decode(errors="replace")
        s.close()
        return int(head.split()[1])

    for ip in ("127.0.0.1", "127.0.0.2", "127.1.2.3"):
        assert rtsp_status(ip) == 200, ip
        assert http_status(ip) == 200, ip
    # With local_auth both ask every peer.
    srv2 = server_factory(rtsp_extra={**creds, "local_auth": True},
                          api_extra={**creds, "local_auth": True}, wait=False)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", srv2.api_port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    srv = srv2
    for ip in ("127.0.0.1", "127.0.0.2"):
        assert rtsp_status(ip) == 401, ip
        assert http_status(ip) == 401, ip

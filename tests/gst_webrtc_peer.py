"""A GStreamer webrtcbin viewer that decodes H.265 over WebRTC (aiortc cannot).

Run with the system Python (it needs python3-gi and GStreamer's GstWebRTC introspection):
    /usr/bin/python3 gst_webrtc_peer.py http://127.0.0.1:1984/api/webrtc?src=NAME SECONDS [SETTLE]

It makes a recvonly offer with H.265 only, POSTs it as WHEP (application/sdp), sets the
answer, depayloads and decodes (rtph265depay ! h265parse ! avdec_h265) and prints one JSON
line: frames decoded in total, in a window of SECONDS that starts SETTLE seconds (default 1,
after the join burst) after the first frame, and the answer.
"""
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

CAPS = ("application/x-rtp,media=video,encoding-name=H265,payload=96,clock-rate=90000,"
        "profile-id=(string)1,tx-mode=(string)SRST")


def ecdsa_pem():
    """A fresh P-256 certificate and key: corecast's DTLS (dimpl) takes ECDSA client
    certificates only (as browsers send), GStreamer generates RSA ones by default."""
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "-", "-out", "-",
                        "-subj", "/CN=gst-webrtc-peer", "-days", "2"],
                       capture_output=True, text=True, check=True, timeout=30)
    return r.stdout


def main():
    url, secs = sys.argv[1], float(sys.argv[2])
    settle = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    Gst.init(None)
    loop = GLib.MainLoop()
    pipe = Gst.Pipeline.new("peer")
    rtc = Gst.ElementFactory.make("webrtcbin", "rtc")
    rtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    pipe.add(rtc)
    state = {"frames": [], "answer": None, "error": None, "offered": False}

    def fail(msg):
        state["error"] = msg
        GLib.idle_add(loop.quit)

    def on_handoff(_sink, _buf, _pad):
        state["frames"].append(time.monotonic())

    def on_pad(_rtc, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        dec = Gst.parse_bin_from_description(
            "rtph265depay ! h265parse ! avdec_h265 ! "
            "fakesink name=sink signal-handoffs=true sync=false", True)
        dec.get_by_name("sink").connect("handoff", on_handoff)
        pipe.add(dec)
        dec.sync_state_with_parent()
        pad.link(dec.get_static_pad("sink"))

    def post(offer_sdp):
        req = urllib.request.Request(url, data=offer_sdp.encode(), method="POST")
        req.add_header("Content-Type", "application/sdp")
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def on_offer(promise, _):
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        # Negotiation-needed can fire before the element is playing: that offer fails
        # (None); the next one is used. One offer is sent.
        if offer is None or state["offered"]:
            return
        state["offered"] = True
        rtc.emit("set-local-description", offer, None)
        # webrtcbin wrote its generated certificate's fingerprint; ours is the one used.
        text = re.sub(r"a=fingerprint:sha-256 [0-9A-F:]+", f"a=fingerprint:sha-256 {fp}",
                      offer.sdp.as_text())
        status, body = post(text)
        if status != 201:
            return fail(f"POST {status}: {body}\noffer:\n{text}")
        state["answer"] = body
        ok, sdp = GstSdp.SDPMessage.new_from_text(body)
        if ok != GstSdp.SDPResult.OK:
            return fail(f"answer does not parse: {body}")
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        rtc.emit("set-remote-description", answer, None)

    def on_negotiation_needed(_rtc):
        rtc.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            fail(f"{err.message} ({dbg})")

    pem = ecdsa_pem()
    fp = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=pem,
                        capture_output=True, text=True, check=True).stdout.strip().split("=")[1]

    def on_element(_bin, _sub, element):
        # Set before the offer is made, so its fingerprint is this certificate's.
        factory = element.get_factory()
        if factory and factory.get_name() in ("dtlsdec", "dtlssrtpdec"):
            element.set_property("pem", pem)

    pipe.connect("deep-element-added", on_element)
    rtc.connect("on-negotiation-needed", on_negotiation_needed)
    rtc.connect("pad-added", on_pad)
    rtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
             Gst.Caps.from_string(CAPS))
    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    start = time.monotonic()

    def tick():
        f = state["frames"]
        now = time.monotonic()
        if (f and now >= f[0] + settle + secs) or (not f and now > start + 20):
            loop.quit()
            return False
        return True

    GLib.timeout_add(100, tick)
    GLib.timeout_add_seconds(int(settle + secs) + 40, loop.quit)
    pipe.set_state(Gst.State.PLAYING)
    loop.run()
    pipe.set_state(Gst.State.NULL)
    f = state["frames"]
    window = sum(1 for t in f if f[0] + settle <= t < f[0] + settle + secs) if f else 0
    print(json.dumps({"frames": len(f), "window": window, "error": state["error"],
                      "ice": rtc.get_property("ice-connection-state").value_nick,
                      "answer": state["answer"]}))


if __name__ == "__main__":
    main()

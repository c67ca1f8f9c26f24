#!/usr/bin/python3
"""A real RTSP server of another project for corecast's pull-source tests:
GStreamer's gst-rtsp-server, driven through python3-gi.

Run it with the system interpreter (/usr/bin/python3, where python3-gi is installed):

    /usr/bin/python3 tests/gst_rtsp_server.py --port 8555 --path /test \
        --tracks video,pcma,aac --user user --password pass --protocols tcp

It serves live test sources (one shared pipeline for every client), prints "READY" on
stdout once it listens, and exits on SIGTERM/SIGINT or by itself after --max-seconds.
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

VIDEO = ("videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 ! "
         "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! "
         "rtph264pay name=pay{n} pt=96 config-interval=1")
PCMA = ("audiotestsrc is-live=true ! audio/x-raw,rate=8000,channels=1 ! alawenc ! "
        "rtppcmapay name=pay{n} pt=8")
AAC = ("audiotestsrc is-live=true ! audioconvert ! audioresample ! "
       "audio/x-raw,rate=48000,channels=1 ! {enc} ! rtpmp4gpay name=pay{n} pt=97")

PROTOCOLS = {
    "tcp": GstRtsp.RTSPLowerTrans.TCP,
    "udp": GstRtsp.RTSPLowerTrans.UDP,
    "all": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP
    | GstRtsp.RTSPLowerTrans.UDP_MCAST,
}


def aac_encoder():
    for name in ("avenc_aac", "voaacenc", "fdkaacenc"):
        if Gst.ElementFactory.find(name) is not None:
            return name
    sys.exit("no AAC encoder (avenc_aac, voaacenc, fdkaacenc) installed")


def launch_line(tracks):
    parts = []
    for n, track in enumerate(tracks):
        if track in ("video", "h264"):
            parts.append(VIDEO.format(n=n))
        elif track == "pcma":
            parts.append(PCMA.format(n=n))
        elif track == "aac":
            parts.append(AAC.format(n=n, enc=aac_encoder()))
        else:
            sys.exit(f"unknown track {track!r} (video, pcma, aac)")
    return "( " + " ".join(parts) + " )"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8555)
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--path", default="/test")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--tracks", default="video")
    ap.add_argument("--protocols", choices=sorted(PROTOCOLS), default="all")
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--tls-pem", help="PEM file with certificate and key: serve RTSPS")
    ap.add_argument("--backchannel", action="store_true",
                    help="an ONVIF server whose camera has a PCMA speaker (backchannel)")
    args = ap.parse_args()
    if (args.user is None) != (args.password is None):
        ap.error("--user and --password go together")

    Gst.init(None)
    tracks = [t.strip() for t in args.tracks.split(",") if t.strip()]
    if not tracks:
        ap.error("--tracks: at least one track")

    if args.backchannel:
        # GStreamer's ONVIF server describes the speaker only to clients that send
        # `Require: www.onvif.org/ver20/backchannel`, as cameras do.
        server = GstRtspServer.RTSPOnvifServer()
        factory = GstRtspServer.RTSPOnvifMediaFactory()
        factory.set_backchannel_launch(
            "( capsfilter caps=\"application/x-rtp, media=audio, payload=8, clock-rate=8000, "
            "encoding-name=PCMA\" name=depay_backchannel ! rtppcmadepay ! fakesink async=false )")
    else:
        server = GstRtspServer.RTSPServer()
        factory = GstRtspServer.RTSPMediaFactory()
    server.set_address(args.address)
    server.set_service(str(args.port))

    factory.set_launch(launch_line(tracks))
    # gst-rtsp-server's ONVIF example: a backchannel media is per client, of the ONVIF type.
    factory.set_shared(not args.backchannel)
    if args.backchannel:
        factory.set_media_gtype(GstRtspServer.RTSPOnvifMedia)
    factory.set_protocols(PROTOCOLS[args.protocols])

    if args.tls_pem is not None:
        # RTSP over TLS (rtsps://): every access is allowed through a default token.
        from gi.repository import Gio
        cert = Gio.TlsCertificate.new_from_file(args.tls_pem)
        auth = GstRtspServer.RTSPAuth()
        auth.set_tls_certificate(cert)
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "anyone")
        auth.set_default_token(token)
        server.set_auth(auth)
        factory.add_role_from_structure(Gst.Structure.new_from_string(
            "anyone, media.factory.access=(boolean)true, "
            "media.factory.construct=(boolean)true"))
    elif args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", args.user)
        auth.add_digest(args.user, args.password, token)
        server.set_auth(auth)
        factory.add_role_from_structure(Gst.Structure.new_from_string(
            f"{args.user}, media.factory.access=(boolean)true, "
            "media.factory.construct=(boolean)true"))

    server.get_mount_points().add_factory(args.path, factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"cannot listen on {args.address}:{args.port}", file=sys.stderr, flush=True)
        sys.exit(1)

    # Expire idle sessions so clients that vanished do not keep the pipeline forever.
    def cleanup():
        server.get_session_pool().cleanup()
        return True

    GLib.timeout_add_seconds(2, cleanup)

    def quit_loop(*_):
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, quit_loop)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, quit_loop)
    GLib.timeout_add(int(args.max_seconds * 1000), quit_loop)

    print(f"READY rtsp://{args.address}:{args.port}{args.path} tracks={','.join(tracks)} "
          f"protocols={args.protocols} auth={'digest' if args.user is not None else 'none'}",
          flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

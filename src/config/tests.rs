use super::*;

fn ok(text: &str) -> Config {
    parse(text, "test.yaml").unwrap_or_else(|e| panic!("{e}\n--- input ---\n{text}"))
}

fn err(text: &str) -> ConfigError {
    match parse(text, "test.yaml") {
        Ok(c) => panic!("expected an error, got {c:#?}\n--- input ---\n{text}"),
        Err(e) => e,
    }
}

/// Asserts the error's line and key, and returns its message.
#[track_caller]
fn err_at(text: &str, line: usize, key: &str) -> String {
    let e = err(text);
    assert_eq!((e.line, e.key.as_str()), (line, key), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("test.yaml: line {line}: {key}: ")),
        "{shown}"
    );
    e.message
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

fn stream(c: &Config, name: &str) -> StreamConfig {
    c.streams
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stream {name}"))
        .clone()
}

const FULL: &str = r#"streams:
  demo2: rtsp://127.0.0.1:8554/demo
  cam1:
    - rtsp://admin:pass@192.168.1.10/stream1#backchannel=0
    - ffmpeg:cam1#audio=opus
  publish_only:            # null value => publish-only
  empty_str: ""            # treat as publish-only too
rtsp:
  listen: ":8554"
  default_query: "video&audio"
api:
  listen: ":1984"
  origin: "*"
log:
  level: info       # go2rtc: log.level + per-module keys at the same level
  rtsp: debug
  api: trace
shards: 2
webrtc:
  candidates:
    - stun:8555
hass:
  config: /config
ffmpeg:
  bin: ffmpeg
srtp:
  listen: ":8443"
ngrok:
  command: ngrok tcp 8555
homekit:
  cam1:
preload:
  cam1:
publish:
  cam1: rtmps://example/live
rtmp:
  listen: ":1935"
webtorrent:
  shares: {}
mse: {}
hls: {}
mjpeg: {}
"#;

#[test]
fn full_example() {
    let c = ok(FULL);
    let names: Vec<&str> = c.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["demo2", "cam1", "publish_only", "empty_str"]);
    assert_eq!(
        c.streams[0],
        StreamConfig {
            name: "demo2".into(),
            sources: vec!["rtsp://127.0.0.1:8554/demo".into()],
            line: 2,
        }
    );
    assert_eq!(
        c.streams[1].sources,
        [
            "rtsp://admin:pass@192.168.1.10/stream1#backchannel=0",
            "ffmpeg:cam1#audio=opus"
        ]
    );
    assert_eq!(c.streams[1].line, 3);
    assert!(c.streams[2].sources.is_empty());
    assert_eq!(c.streams[2].line, 6);
    assert!(c.streams[3].sources.is_empty());
    assert_eq!(c.streams[3].line, 7);

    assert_eq!(c.rtsp.listen, addr("0.0.0.0:8554"));
    assert_eq!(c.rtsp.default_query.as_deref(), Some("video&audio"));
    assert_eq!(c.rtsp.session_timeout_secs, 60);
    assert_eq!(c.rtsp.udp_rtp_port, 8000);
    assert_eq!(c.rtsp.ring_packets, 16384);
    assert_eq!(c.api.listen, addr("0.0.0.0:1984"));
    assert!(
        c.rtsp.dual_stack && c.api.dual_stack,
        "\":PORT\" is IPv6 and IPv4"
    );
    assert_eq!(c.api.origin.as_deref(), Some("*"));
    assert_eq!(c.log.level, "info");
    assert_eq!(
        c.log.modules,
        [
            ("rtsp".into(), "debug".into()),
            ("api".into(), "trace".into())
        ]
    );
    assert_eq!(c.shards, Some(2));
    assert_eq!(c.preload, [("cam1".to_string(), None)]);
    assert_eq!(c.ffmpeg.bin, "ffmpeg");
    assert_eq!(
        c.warnings,
        [
            "line 22: section `hass` is not supported yet (ignored)",
            "line 26: section `srtp` is not supported yet (ignored)",
            "line 28: section `ngrok` is not supported yet (ignored)",
            "line 30: section `homekit` is not supported yet (ignored)",
            "line 34: section `publish` is not supported yet (ignored)",
            "line 36: section `rtmp` is not supported yet (ignored)",
            "line 38: section `webtorrent` is not supported yet (ignored)",
            "line 40: section `mse` is not supported yet (ignored)",
            "line 41: section `hls` is not supported yet (ignored)",
            "line 42: section `mjpeg` is not supported yet (ignored)",
        ]
    );
}

#[test]
fn empty_and_comment_only_give_defaults() {
    for text in [
        "",
        "\n\n",
        "# just a comment\n  # another\n",
        "---\n",
        "~\n",
        "\u{feff}",
    ] {
        assert_eq!(ok(text), Config::default(), "{text:?}");
    }
    let d = Config::default();
    assert!(d.streams.is_empty());
    assert_eq!(d.rtsp.listen, addr("0.0.0.0:8554"));
    assert_eq!(d.api.listen, addr("0.0.0.0:1984"));
    assert!(d.rtsp.dual_stack && d.api.dual_stack);
    assert_eq!(d.api.base_path, "");
    assert_eq!(d.log.level, "info");
    assert!(d.log.modules.is_empty());
    assert_eq!(d.shards, None);
    assert_eq!(d.log.filter_directives(), "info");
}

#[test]
fn empty_sections_give_defaults() {
    let c = ok("streams:\nrtsp:\napi:\nlog:\nshards:\n");
    assert_eq!(c, Config::default());
    let c = ok("streams: {}\nrtsp: {}\napi: {}\nlog: {}\n");
    assert_eq!(c, Config::default());
}

/// Snippets from go2rtc's README, verbatim.
#[test]
fn go2rtc_readme_examples() {
    let c = ok(r#"streams:
  sonoff_camera: rtsp://rtsp:12345678@192.168.1.123/av_stream/ch0
  dahua_camera:
    - rtsp://admin:password@192.168.1.123/cam/realmonitor?channel=1&subtype=0&unicast=true&proto=Onvif
    - rtsp://admin:password@192.168.1.123/cam/realmonitor?channel=1&subtype=1
  amcrest_doorbell:
    - rtsp://username:password@192.168.1.123:554/cam/realmonitor?channel=1&subtype=0#backchannel=0
  unifi_camera: rtspx://192.168.1.123:7441/fD6ouM72bWoFijxK
  glichy_camera: ffmpeg:rstp://username:password@192.168.1.123/live/ch00_1 
"#);
    assert_eq!(c.streams.len(), 5);
    assert_eq!(stream(&c, "dahua_camera").sources.len(), 2);
    assert_eq!(
        stream(&c, "glichy_camera").sources,
        ["ffmpeg:rstp://username:password@192.168.1.123/live/ch00_1"]
    );
    assert_eq!(stream(&c, "unifi_camera").line, 8);

    let c = ok(r#"streams:
  # [HTTP-FLV] stream in video/x-flv format
  http_flv: http://192.168.1.123:20880/api/camera/stream/780900131155/657617
  
  # [JPEG] snapshots from Dahua camera, will be converted to MJPEG stream
  dahua_snap: http://admin:password@192.168.1.123/cgi-bin/snapshot.cgi?channel=1

  # Add custom header
  custom_header: "https://mjpeg.sanford.io/count.mjpeg#header=Authorization: Bearer XXX"
  stream: exec:ffmpeg -re -i /media/BigBuckBunny.mp4 -c copy -rtsp_transport tcp -f rtsp {output}
  linux_usbcam:   ffmpeg:device?video=0&video_size=1280x720#video=h264
  webrtc-openipc: webrtc:ws://192.168.1.123/webrtc_ws#format=openipc#ice_servers=[{"urls":"stun:stun.kinesisvideo.eu-north-1.amazonaws.com:443"}]
  "camera.hall": ffmpeg:{input}#video=copy#audio=opus
"#);
    assert_eq!(
        stream(&c, "custom_header").sources,
        ["https://mjpeg.sanford.io/count.mjpeg#header=Authorization: Bearer XXX"]
    );
    assert_eq!(stream(&c, "dahua_snap").line, 6);
    assert_eq!(stream(&c, "camera.hall").line, 13);
    assert_eq!(
        stream(&c, "camera.hall").sources,
        ["ffmpeg:{input}#video=copy#audio=opus"]
    );
    assert!(stream(&c, "webrtc-openipc").sources[0].ends_with(":443\"}]"));

    let c = ok(r#"api:
  listen: ":1984"    # default ":1984", HTTP API port ("" - disabled)
  username: "admin"  # default "", Basic auth for WebUI
  password: "pass"   # default "", Basic auth for WebUI
  base_path: "/rtc"  # default "", API prefix for serve on suburl (/api => /rtc/api)
  static_dir: "www"  # default "", folder for static files (custom web interface)
  origin: "*"        # default "", allow CORS requests (only * supported)
  tls_listen: ":443" # default "", enable HTTPS server
  tls_cert: |        # default "", PEM-encoded fullchain certificate for HTTPS
    -----BEGIN CERTIFICATE-----
    ...
    -----END CERTIFICATE-----
  tls_key: |         # default "", PEM-encoded private key for HTTPS
    -----BEGIN PRIVATE KEY-----
    ...
    -----END PRIVATE KEY-----
  unix_listen: "/tmp/go2rtc.sock"  # default "", unix socket listener for API

rtsp:
  listen: ":8554"    # RTSP Server TCP port, default - 8554
  username: "admin"  # optional, default - disabled
  password: "pass"   # optional, default - disabled
  default_query: "video&audio"  # optional, default codecs filters 
"#);
    assert_eq!(c.api.username.as_deref(), Some("admin"));
    assert_eq!(c.api.password.as_deref(), Some("pass"));
    assert_eq!(c.api.base_path, "/rtc");
    assert_eq!(c.rtsp.username.as_deref(), Some("admin"));
    assert_eq!(
        c.warnings,
        [
            "line 6: `api.static_dir` is not supported yet (ignored)",
            "line 8: `api.tls_listen` is not supported yet (ignored)",
            "line 9: `api.tls_cert` is not supported yet (ignored)",
            "line 13: `api.tls_key` is not supported yet (ignored)",
        ]
    );

    let c = ok(r#"log:
  level: info  # default level
  api: trace
  exec: debug
  ngrok: info
  rtsp: warn
  streams: error
  webrtc: fatal
"#);
    assert_eq!(c.log.modules.len(), 6);
    assert_eq!(c.log.modules[5], ("webrtc".into(), "error".into()));

    let c = ok(r#"api:
  listen: "127.0.0.1:1984" # localhost

rtsp:
  listen: "127.0.0.1:8554" # localhost

webrtc:
  listen: ":8555" # external TCP/UDP port
"#);
    assert_eq!(c.api.listen, addr("127.0.0.1:1984"));
    assert_eq!(c.rtsp.listen, addr("127.0.0.1:8554"));
    assert!(!c.rtsp.dual_stack && !c.api.dual_stack);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.webrtc.listen.map(|a| a.port()), Some(8555));
    assert!(c.webrtc.dual_stack);

    let c = ok(r#"publish:
  # publish stream "tplink_tapo" to Telegram
  tplink_tapo: rtmps://xxx-x.rtmp.t.me/s/xxxxxxxxxx:xxxxxxxxxxxxxxxxxxxxxx
  # publish stream "other_camera" to Telegram and YouTube
  other_camera:
    - rtmps://xxx-x.rtmp.t.me/s/xxxxxxxxxx:xxxxxxxxxxxxxxxxxxxxxx
    - rtmps://xxx.rtmp.youtube.com/live2/xxxx-xxxx-xxxx-xxxx-xxxx

streams:
  # for TP-Link cameras it's important to use transcoding because of wrong pixel format
  tplink_tapo: ffmpeg:rtsp://user:pass@192.168.1.123/stream1#video=h264#hardware#audio=aac

homekit:
  dahua1:                   # same stream ID from streams list
    pin: 12345678           # custom PIN, default: 19550224
    name: Dahua camera      # custom camera name, default: generated from stream ID

webrtc:
  ice_servers:
    - urls: [stun:stun.l.google.com:19302]
    - urls: [turn:123.123.123.123:3478]
      username: your_user
      credential: your_pass
"#);
    assert_eq!(stream(&c, "tplink_tapo").line, 11);
    assert_eq!(c.warnings.len(), 2);
    assert_eq!(c.webrtc.ice_servers.len(), 2);
    assert_eq!(
        c.webrtc.ice_servers[1].username.as_deref(),
        Some("your_user")
    );
}

#[test]
fn explicit_log_modules_form() {
    let c = ok("log: {level: info, modules: {rtsp: debug}}\n");
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.modules, [("rtsp".into(), "debug".into())]);

    let c = ok("log:\n  level: WARNING\n  modules:\n    RTSP: trace\n    api: off\n  rtsp: info\n");
    assert_eq!(c.log.level, "warn");
    // The later setting for a module wins; names are lower-cased.
    assert_eq!(
        c.log.modules,
        [("rtsp".into(), "info".into()), ("api".into(), "off".into())]
    );
}

#[test]
fn filter_directives_map_modules_to_targets() {
    let c = ok("log:\n  level: debug\n  rtsp: trace\n  api: error\n");
    assert_eq!(
        c.log.filter_directives(),
        "debug,corecast::rtsp=trace,corecast_shards::rtsp=trace,\
         corecast_shards::egress::rtsp=trace,corecast_shards::sources::rtsp=trace,\
         corecast::api=error,corecast_shards::api=error,corecast_shards::egress::api=error,\
         corecast_shards::sources::api=error"
    );
    let c = ok("log:\n  level: disabled\n  streams: panic\n");
    assert_eq!(
        c.log.filter_directives(),
        "off,corecast::streams=error,corecast_shards::streams=error,\
         corecast_shards::egress::streams=error,corecast_shards::sources::streams=error"
    );
}

#[test]
fn log_keys_that_are_not_modules_warn() {
    let c = ok("log:\n  format: json\n  output: stdout\n  time: UNIXMS\n  my-mod: debug\n  app:\n");
    assert_eq!(
        (c.log.format.as_str(), c.log.output.as_str(), c.log.time),
        ("json", "stdout", true)
    );
    assert_eq!(c.warnings, ["line 5: unknown key `log.my-mod` (ignored)",]);
    assert!(c.log.modules.is_empty());
}

#[test]
fn listen_forms_as_go2rtc() {
    for (form, listen, dual) in [
        (":8554", "0.0.0.0:8554", true),
        ("0.0.0.0:8554", "0.0.0.0:8554", false),
        ("[::]:8554", "[::]:8554", false),
        ("[::1]:8554", "[::1]:8554", false),
        ("127.0.0.1:8554", "127.0.0.1:8554", false),
    ] {
        let api = form.replace("8554", "1984");
        let c = ok(&format!(
            "rtsp:\n  listen: \"{form}\"\napi:\n  listen: \"{api}\"\n"
        ));
        assert_eq!(
            (c.rtsp.listen, c.rtsp.dual_stack),
            (addr(listen), dual),
            "{form}"
        );
        assert_eq!(c.api.dual_stack, dual, "{api}");
    }
}

#[test]
fn rtsp_and_api_options() {
    let c = ok(r#"rtsp:
  listen: "[::1]:554"
  session_timeout: 30
  rtp_port: 10000
  ring_size: 64
  username: ""
  password: 123456
api:
  listen: ""
  base_path: rtc/
  origin: ""
shards: 256
"#);
    assert_eq!(c.rtsp.listen, addr("[::1]:554"));
    assert_eq!(c.rtsp.session_timeout_secs, 30);
    assert_eq!(c.rtsp.udp_rtp_port, 10000);
    assert_eq!(c.rtsp.ring_packets, 64);
    assert_eq!(c.rtsp.username, None);
    // A digits-only password stays text, as in go2rtc.
    assert_eq!(c.rtsp.password.as_deref(), Some("123456"));
    assert_eq!(c.api.listen, None);
    assert_eq!(c.api.base_path, "/rtc");
    assert_eq!(c.api.origin, None);
    assert_eq!(c.shards, Some(256));

    let c = ok("rtsp:\n  listen: \"\"\n  password: 007\n");
    assert_eq!(c.rtsp.listen, None);
    assert_eq!(c.rtsp.password.as_deref(), Some("007"));
    assert_eq!(ok("api:\n  base_path: /\n").api.base_path, "");
}

#[test]
fn listen_forms() {
    let p = |s: &str| parse_listen(s);
    assert_eq!(p(""), Ok(None));
    assert_eq!(p(":8554"), Ok(addr("0.0.0.0:8554")));
    assert_eq!(p("0.0.0.0:8554"), Ok(addr("0.0.0.0:8554")));
    assert_eq!(p("127.0.0.1:8554"), Ok(addr("127.0.0.1:8554")));
    assert_eq!(p("[::1]:8554"), Ok(addr("[::1]:8554")));
    assert_eq!(p("[::]:1984"), Ok(addr("[::]:1984")));
    assert_eq!(p("localhost:1984"), Ok(addr("127.0.0.1:1984")));
    assert_eq!(p(":0"), Ok(addr("0.0.0.0:0")));
    assert_eq!(p(":65535"), Ok(addr("0.0.0.0:65535")));
    for bad in [
        "8554",
        "nonsense",
        ":",
        ":65536",
        ":+80",
        ":http",
        "0.0.0.0",
        "::1:8554",
        "[::1]",
        "[::1]8554",
        "[1.2.3.4]:80",
        "example.com:80",
        "256.0.0.1:80",
        " :8554",
    ] {
        let e = p(bad).expect_err(bad);
        assert!(
            e.starts_with(&format!("invalid listen address {bad:?}: ")),
            "{e}"
        );
    }
    assert!(p("8554").unwrap_err().contains("did you mean \":8554\"?"));
}

#[test]
fn error_bad_listen() {
    let m = err_at("rtsp:\n  listen: \"nonsense\"\n", 2, "rtsp.listen");
    assert!(m.starts_with("invalid listen address \"nonsense\""), "{m}");
    err_at(
        "streams:\n  a: b\napi:\n  origin: x\n  listen: 1984\n",
        5,
        "api.listen",
    );
    // Flow style: the key's own line is the section's line.
    err_at("rtsp: {listen: nope}\n", 1, "rtsp.listen");
}

#[test]
fn error_yaml_syntax() {
    let e = err("streams:\n  cam1: rtsp://a\n  cam2: \"unterminated\n");
    assert_eq!(e.line, 4, "{e}");
    assert_eq!(e.key, "streams.cam2", "{e}");
    assert!(e.message.contains("quoted scalar"), "{e}");

    // The scan names the offending key itself.
    let e = err("rtsp:\n  listen: :1\n bad: indent\n");
    assert_eq!((e.line, e.key.as_str()), (3, "rtsp.bad"), "{e}");

    let e = err("a: b\n---\nc: d\n");
    assert_eq!((e.line, e.key.as_str()), (0, ROOT_KEY), "{e}");
    assert!(e.message.contains("more than one document"), "{e}");
}

#[test]
fn error_wrong_types() {
    let m = err_at("rtsp:\n  session_timeout: abc\n", 2, "rtsp.session_timeout");
    assert_eq!(m, "invalid type: string \"abc\", expected a whole number");
    let m = err_at("rtsp:\n  rtp_port: 70000\n", 2, "rtsp.rtp_port");
    assert!(
        m.ends_with("expected a whole number from 0 to 65535"),
        "{m}"
    );
    err_at("rtsp:\n  ring_size: [1]\n", 2, "rtsp.ring_size");
    err_at("rtsp:\n  default_query: {a: 1}\n", 2, "rtsp.default_query");
    err_at("rtsp:\n  username: [a]\n", 2, "rtsp.username");
    err_at("rtsp:\n  password:\n    - a\n", 3, "rtsp.password");
    err_at("api:\n  origin: [\"*\"]\n", 2, "api.origin");
    err_at("api:\n  base_path: {}\n", 2, "api.base_path");
    err_at("api:\n  username: []\n", 2, "api.username");
    err_at("api:\n  password: []\n", 2, "api.password");
    err_at("\n\nrtsp: 5\n", 3, "rtsp");
    err_at("api: [a]\n", 1, "api");
    err_at("streams: [a, b]\n", 1, "streams");
    err_at("log: debug\n", 1, "log");
    err_at("streams:\n  a: x\nshards: two\n", 3, "shards");
    err_at("shards: -1\n", 1, "shards");
    let m = err_at("- a\n- b\n", 1, ROOT_KEY);
    assert!(m.contains("expected a mapping of sections"), "{m}");
    err_at("just text\n", 1, ROOT_KEY);
}

#[test]
fn error_shards_range() {
    let m = err_at("shards: 0\n", 1, "shards");
    assert!(m.contains("from 1 to 256"), "{m}");
    err_at("streams:\n  a: b\n\nshards: 257\n", 4, "shards");
}

#[test]
fn error_rtsp_ranges() {
    err_at("rtsp:\n  session_timeout: 0\n", 2, "rtsp.session_timeout");
    err_at(
        "rtsp:\n  session_timeout: 86401\n",
        2,
        "rtsp.session_timeout",
    );
    err_at("rtsp:\n  ring_size: 63\n", 2, "rtsp.ring_size");
    err_at("rtsp:\n  ring_size: 1048577\n", 2, "rtsp.ring_size");
    assert_eq!(
        ok("rtsp:\n  ring_size: 1048576\n").rtsp.ring_packets,
        1 << 20
    );
    let m = err_at("rtsp:\n  rtp_port: 8001\n", 2, "rtsp.rtp_port");
    assert!(m.contains("even"), "{m}");
    err_at("rtsp:\n  rtp_port: 0\n", 2, "rtsp.rtp_port");
    // 256 possible shards need 512 ports.
    err_at("rtsp:\n  rtp_port: 65100\n", 2, "rtsp.rtp_port");
    assert_eq!(
        ok("shards: 2\nrtsp:\n  rtp_port: 65532\n")
            .rtsp
            .udp_rtp_port,
        65532
    );
    err_at("shards: 3\nrtsp:\n  rtp_port: 65532\n", 3, "rtsp.rtp_port");
}

#[test]
fn error_listener_clash() {
    let m = err_at("rtsp:\n  listen: \":1984\"\n", 0, "api.listen");
    assert!(m.contains("already used by rtsp.listen"), "{m}");
    err_at(
        "rtsp:\n  listen: 127.0.0.1:9000\napi:\n  listen: :9000\n",
        4,
        "api.listen",
    );
    ok("rtsp:\n  listen: 127.0.0.1:9000\napi:\n  listen: 127.0.0.2:9000\n");
    ok("rtsp:\n  listen: :0\napi:\n  listen: :0\n");
}

#[test]
fn error_stream_values() {
    let m = err_at("streams:\n  ok: rtsp://a\n  cam: 42\n", 3, "streams.cam");
    assert_eq!(
        m,
        "expected a source URL, a list of them or a mapping with `url`, found a number"
    );
    let m = err_at("streams:\n  cam:\n    url: 7\n", 3, "streams.cam");
    assert!(m.ends_with("found a number"), "{m}");
    err_at("streams:\n  cam: true\n", 2, "streams.cam");
    let m = err_at(
        "streams:\n  cam:\n    - rtsp://a\n    - {x: 1}\n",
        4,
        "streams.cam",
    );
    assert_eq!(m, "source 2 must be a string, found a mapping");
    err_at("streams:\n  cam:\n    - 1.5\n", 3, "streams.cam");
    err_at("streams:\n  cam:\n    - [a]\n", 3, "streams.cam");
    err_at("streams:\n  cam: [rtsp://a, 7]\n", 2, "streams.cam");
    err_at("streams: {a: x, cam: 5}\n", 1, "streams.cam");
    err_at("streams:\n  cam: !secret abc\n", 2, "streams.cam");
    err_at("streams:\n  \"\": rtsp://a\n", 2, "streams.");
}

#[test]
fn map_form_streams_read_url_as_go2rtc() {
    let c = ok(
        "streams:\n  a:\n    url: rtsp://a\n  b:\n    url: [rtsp://b, ffmpeg:b#audio=opus]\n  \
                c: {url: null}\n  d: {}\n  e:\n    url: rtsp://e\n    name: x\n",
    );
    assert_eq!(stream(&c, "a").sources, vec!["rtsp://a"]);
    assert_eq!(
        stream(&c, "b").sources,
        vec!["rtsp://b", "ffmpeg:b#audio=opus"]
    );
    assert!(stream(&c, "c").sources.is_empty(), "no url: publish-only");
    assert!(stream(&c, "d").sources.is_empty());
    assert_eq!(stream(&c, "e").sources, vec!["rtsp://e"]);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("unknown key `name`"),
        "{:?}",
        c.warnings
    );
    err_at("streams:\n  cam:\n    url: {url: 5}\n", 3, "streams.cam");
}

#[test]
fn error_duplicates_point_at_the_second_key() {
    let m = err_at(
        "streams:\n  cam: a\n  other: b\n  cam: c\n",
        4,
        "streams.cam",
    );
    assert_eq!(m, "duplicate stream name (first defined on line 2)");
    let m = err_at("rtsp:\n  listen: :1\n  listen: :2\n", 3, "rtsp.listen");
    assert_eq!(m, "duplicate key");
    err_at("rtsp:\n  listen: :1\napi:\nrtsp:\n", 4, "rtsp");
    err_at("log:\n  rtsp: debug\n  rtsp: info\n", 3, "log.rtsp");
    err_at(
        "log:\n  modules:\n    api: debug\n    api: info\n",
        4,
        "log.modules.api",
    );
}

#[test]
fn error_log_levels() {
    let m = err_at("log:\n  level: info\n  rtsp: loud\n", 3, "log.rtsp");
    assert!(m.starts_with("unknown log level \"loud\""), "{m}");
    err_at("log:\n  level: verbose\n", 2, "log.level");
    err_at("log:\n  level: 3\n", 2, "log.level");
    err_at("log:\n  modules:\n    rtsp: nope\n", 3, "log.modules.rtsp");
    err_at("log:\n  modules: [rtsp]\n", 2, "log.modules");
    err_at("log:\n  api: {a: b}\n", 2, "log.api");
}

#[test]
fn error_limits() {
    let big = format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES));
    let m = err_at(&big, 0, ROOT_KEY);
    assert!(m.contains("too large"), "{m}");

    let mut text = String::from("streams:\n");
    for i in 0..=MAX_STREAMS {
        text.push_str(&format!("  s{i}: rtsp://h/{i}\n"));
    }
    let m = err_at(&text, MAX_STREAMS + 2, "streams.s10000");
    assert!(m.contains("too many streams"), "{m}");

    // Exactly the maximum is fine, and order is kept.
    let cut = text.rfind("  s10000").unwrap();
    let c = ok(&text[..cut]);
    assert_eq!(c.streams.len(), MAX_STREAMS);
    assert_eq!(c.streams[9_999].name, "s9999");
    assert_eq!(c.streams[9_999].line, 10_001);
}

#[test]
fn alias_bombs_fail_fast() {
    // Each level multiplies by 9: ~387M strings if expanded.
    let text = r#"x-a: &a [s, s, s, s, s, s, s, s, s]
x-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
x-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
x-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
x-e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
x-f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
x-g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
x-h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
x-i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
streams:
  cam: *i
log:
  api: *i
"#;
    let e = err(text);
    assert!(
        e.message.contains("limit") || e.message.contains("too much"),
        "{e}"
    );

    // Plain reuse of an anchor works.
    let c = ok("x-src: &src rtsp://cam/1\nstreams:\n  a: *src\n  b: [*src, ffmpeg:a#video=h264]\n");
    assert_eq!(
        stream(&c, "b").sources,
        ["rtsp://cam/1", "ffmpeg:a#video=h264"]
    );
    assert_eq!(c.warnings, ["line 1: unknown key `x-src` (ignored)"]);
}

#[test]
fn deep_flow_nesting_is_refused_up_front() {
    let text = format!("streams:\n  cam: {}\n", "[".repeat(200_000));
    let m = err_at(&text, 2, "streams.cam");
    assert!(m.contains("deeper than 128"), "{m}");
    // Up to the limit it reaches serde_yaml_ng, which has its own (lower, overall) limit.
    let text = format!("streams:\n  a: {}1{}\n", "[".repeat(128), "]".repeat(128));
    assert!(err(&text).message.contains("recursion limit"));
    ok(&format!("x: {}1{}\n", "[".repeat(100), "]".repeat(100)));
}

#[test]
fn warnings_are_capped() {
    let text: String = (0..150).map(|i| format!("k{i}: 1\n")).collect();
    let c = ok(&text);
    assert_eq!(c.warnings.len(), 101);
    assert_eq!(c.warnings[0], "line 1: unknown key `k0` (ignored)");
    assert_eq!(c.warnings[100], "... and 50 more warnings");
}

#[test]
fn unknown_keys_warn_with_line() {
    let c = ok("streams:\n  a: rtsp://x\nrtsp:\n  listen: :8554\n  foo: 1\n  pkt_size: 1200\nbogus:\n  deep: [1]\n");
    assert_eq!(
        c.warnings,
        [
            "line 5: unknown key `rtsp.foo` (ignored)",
            "line 6: `rtsp.pkt_size` is not supported yet (ignored)",
            "line 7: unknown key `bogus` (ignored)",
        ]
    );
    // Flow style: the enclosing key's line.
    let c = ok("api: {listen: ':1985', nope: 1}\n");
    assert_eq!(c.warnings, ["line 1: unknown key `api.nope` (ignored)"]);
}

#[test]
fn empty_sources_in_a_list_warn() {
    let c = ok("streams:\n  cam:\n    - rtsp://a\n    - \"\"\n    -\n");
    assert_eq!(stream(&c, "cam").sources, ["rtsp://a"]);
    assert_eq!(
        c.warnings,
        [
            "line 4: `streams.cam`: empty source 2 (ignored)",
            "line 5: `streams.cam`: empty source 3 (ignored)",
        ]
    );
    assert!(ok("streams:\n  cam: []\n").streams[0].sources.is_empty());
}

#[test]
fn crlf_and_odd_keys() {
    let c = ok("streams:\r\n  007: rtsp://a\r\n  'my cam': rtsp://b\r\nrtsp:\r\n  foo: 1\r\n");
    assert_eq!(c.streams[0].name, "007");
    assert_eq!(c.streams[1].name, "my cam");
    assert_eq!(c.streams[1].line, 3);
    assert_eq!(c.warnings, ["line 5: unknown key `rtsp.foo` (ignored)"]);
}

#[test]
fn error_display_format() {
    let e = parse("rtsp:\n  listen: \"nonsense\"\n", "corecast.yaml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "corecast.yaml: line 2: rtsp.listen: invalid listen address \"nonsense\": \
         expected \"host:port\" or \":port\""
    );
}

#[test]
fn fanout_lag_bound() {
    assert_eq!(ok("").fanout.max_lag_ms, 2000);
    assert_eq!(ok("fanout:\n  max_lag_ms: 500\n").fanout.max_lag_ms, 500);
    let e = err("fanout:\n  max_lag_ms: 5\n");
    assert_eq!((e.key.as_str(), e.line), ("fanout.max_lag_ms", 2), "{e}");
}

#[test]
fn fanout_ring_bytes() {
    assert_eq!(ok("").fanout.ring_bytes, 8 << 20);
    assert_eq!(
        ok("fanout:\n  ring_bytes: 1048576\n").fanout.ring_bytes,
        1 << 20
    );
    let e = err("fanout:\n  ring_bytes: 1000\n");
    assert_eq!((e.key.as_str(), e.line), ("fanout.ring_bytes", 2), "{e}");
    assert!(e.to_string().contains("65536"), "{e}");
}

#[test]
fn fanout_mux_interval_ms() {
    assert_eq!(ok("").fanout.mux_interval_ms, 0);
    assert_eq!(
        ok("fanout:\n  mux_interval_ms: 200\n")
            .fanout
            .mux_interval_ms,
        200
    );
    let e = err("fanout:\n  egress_tick_us: 2000\n  mux_interval_ms: 5000\n");
    assert_eq!(
        (e.key.as_str(), e.line),
        ("fanout.mux_interval_ms", 3),
        "{e}"
    );
    assert!(e.to_string().contains("1000"), "{e}");
}

#[test]
fn fanout_progressive_interval_ms() {
    let c = ok("");
    assert_eq!(c.fanout.progressive_interval_ms, 80);
    assert_eq!(c.fanout.progressive_ms(), 80);
    // The larger of the two applies to progressive viewers.
    let c = ok("fanout:\n  mux_interval_ms: 200\n  progressive_interval_ms: 0\n");
    assert_eq!(c.fanout.progressive_ms(), 200);
    let e = err("fanout:\n  progressive_interval_ms: 1001\n");
    assert_eq!(
        (e.key.as_str(), e.line),
        ("fanout.progressive_interval_ms", 2),
        "{e}"
    );
    assert!(e.to_string().contains("1000"), "{e}");
}

#[test]
fn fanout_audio_hold_ms() {
    assert_eq!(ok("").fanout.audio_hold_ms, 50);
    assert_eq!(ok("fanout:\n  audio_hold_ms: 0\n").fanout.audio_hold_ms, 0);
    let e = err("fanout:\n  audio_hold_ms: 201\n");
    assert_eq!((e.key.as_str(), e.line), ("fanout.audio_hold_ms", 2), "{e}");
    assert!(e.to_string().contains("200"), "{e}");
}

#[test]
fn exec_section_and_allow_exec() {
    let c = ok("exec:\n  allow_paths: [ffmpeg, /usr/bin/ffmpeg]\napi:\n  allow_exec: true\n");
    assert_eq!(
        c.exec.allow_paths.as_deref(),
        Some(&["ffmpeg".to_owned(), "/usr/bin/ffmpeg".to_owned()][..])
    );
    assert!(c.api.allow_exec);
    assert!(!ok("").api.allow_exec);
    assert_eq!(ok("").exec.allow_paths, None);
    // A source the list refuses is a start-up warning naming the stream and the program.
    let c = ok("streams:\n  x: exec:touch /tmp/x\n  y: ffmpeg:x#video=h264\nexec:\n  allow_paths: [ffmpeg]\n");
    assert_eq!(
        c.warnings,
        ["line 2: `streams.x`: program `touch` is not in `exec.allow_paths`; this source will not run"]
    );
    let e = err("exec:\n  allow_paths: ffmpeg\n");
    assert_eq!((e.key.as_str(), e.line), ("exec.allow_paths", 2), "{e}");
}

/// Every typed field's serde errors are attributed to that field.
#[test]
fn typed_paths_cover_every_field() {
    for path in raw::TYPED_PATHS {
        let text = match path.split_once('.') {
            Some((section, field)) => format!("{section}:\n  {field}: [[1]]\n"),
            None => format!("{path}: [[1]]\n"),
        };
        let e = err(&text);
        // List fields name the bad item: `exec.allow_paths[0]`.
        let item = e
            .key
            .strip_prefix(*path)
            .is_some_and(|r| r.starts_with('['));
        assert!(e.key == *path || item, "{e}");
    }
}

/// A cheap stand-in for the fuzz target: truncations and byte edits of valid files must
/// return, never panic.
#[test]
fn truncations_and_mutations_never_panic() {
    let inputs = [
        FULL,
        "log: {level: info, modules: {rtsp: debug}}\nstreams: {a: [b, c]}\n",
    ];
    for text in inputs {
        for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let _ = parse(&text[..cut], "fuzz");
        }
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let specials = b"-:#'\"[]{}&*!|> \n\t?,%@`";
        for _ in 0..800 {
            let mut bytes = text.as_bytes().to_vec();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pos = (seed % bytes.len() as u64) as usize;
                let b = specials[(seed >> 32) as usize % specials.len()];
                match (seed >> 8) % 3 {
                    0 => bytes[pos] = b,
                    1 => bytes.insert(pos, b),
                    _ => {
                        bytes.remove(pos);
                    }
                }
            }
            let _ = parse(&String::from_utf8_lossy(&bytes), "fuzz");
        }
    }
}

#[test]
fn webrtc_section() {
    let c = ok("");
    assert_eq!(c.webrtc.listen.map(|a| a.port()), Some(8555));
    assert!(c.webrtc.dual_stack);
    // go2rtc: "" is a random UDP port (chosen at start-up), not "off".
    let c = ok("webrtc:\n  listen: \"\"\n");
    assert_eq!(c.webrtc.listen.map(|a| a.port()), Some(0));
    // Home Assistant writes ":18555/tcp".
    let c = ok("webrtc: {listen: \":18555/tcp\", ice_servers: []}\n");
    assert_eq!(c.webrtc.listen.map(|a| a.port()), Some(18555));
    let c = ok("webrtc:\n  listen: \"127.0.0.1:9000\"\n  candidates: [1.2.3.4:8555, stun:8555]\n  ice_servers:\n    - urls: stun:stun.example:3478\n  filters:\n    loopback: true\n    networks: [udp4]\n");
    assert!(!c.webrtc.dual_stack);
    assert_eq!(c.webrtc.candidates, ["1.2.3.4:8555", "stun:8555"]);
    assert_eq!(c.webrtc.ice_servers[0].urls, ["stun:stun.example:3478"]);
    assert!(c.webrtc.filters.loopback);
    assert_eq!(
        c.webrtc.filters.networks.as_deref(),
        Some(&["udp4".to_string()][..])
    );
    err("webrtc:\n  ice_servers:\n    - username: x\n");
    err("webrtc:\n  listen: nonsense\n");
}

//! `corecast.yaml`: the configuration model, read from go2rtc-compatible YAML.
//!
//! Sans-IO like the rest of the crate: the caller reads the file and hands its text to
//! [`parse`]. A go2rtc config is accepted as is; sections and keys corecast does not
//! implement yet are kept as [`Config::warnings`] rather than failing the start. Anything
//! malformed is a [`ConfigError`] naming the dotted key and the 1-based line.
//!
//! Parsing is two steps: serde_yaml_ng into the loose model in `raw` (serde_ignored records
//! unknown keys on the way), then validation into [`Config`]. Lines for errors found during
//! validation come from the scan in `locate`, since values carry no spans.

mod locate;
mod merge;
pub use merge::{load, ConfigArg, Loaded};
mod raw;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use locate::{keys, KeyLines, Seg};
use raw::{Node, RawApi, RawConfig, RawRtsp};

/// Larger input is refused before parsing.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// Most streams a config may define.
pub const MAX_STREAMS: usize = 10_000;
/// Most shards (executors) a config may ask for.
pub const MAX_SHARDS: usize = 256;
pub const DEFAULT_RTSP_LISTEN: &str = ":8554";
pub const DEFAULT_API_LISTEN: &str = ":1984";
pub const DEFAULT_SESSION_TIMEOUT_SECS: u64 = 60;
/// Longest accepted `rtsp.session_timeout` (a day); keeps later conversions to µs far from
/// overflow.
pub const MAX_SESSION_TIMEOUT_SECS: u64 = 86_400;
pub const DEFAULT_RTP_PORT: u16 = 8000;
/// The count bound of a stream's ring (`rtsp: ring_size`): a backstop for tiny packets; time
/// and bytes (`fanout: max_lag_ms`, `ring_bytes`) bound what a stream keeps first.
pub const DEFAULT_RING_PACKETS: usize = 16384;
pub const MIN_RING_PACKETS: usize = 64;
pub const MAX_RING_PACKETS: usize = 1 << 20;
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Module paths under which a go2rtc log module name (`rtsp`, `api`, ...) is looked for:
/// the sans-IO core, and the runtime's rooms (its RTSP driver is `egress::rtsp`).
pub const LOG_TARGET_CRATES: &[&str] = &[
    "corecast",
    "corecast_shards",
    "corecast_shards::egress",
    "corecast_shards::sources",
];

/// serde_yaml_ng's own nesting limit; deeper flow collections are refused up front (see
/// [`locate::flow_too_deep`]).
const MAX_FLOW_DEPTH: usize = 128;
/// Warnings kept; a file of thousands of unknown keys shouldn't flood the log.
const MAX_WARNINGS: usize = 100;

/// The key reported for errors that concern the document as a whole.
const ROOT_KEY: &str = "(root)";

/// go2rtc sections corecast does not implement yet: accepted, reported as warnings.
const UNSUPPORTED_SECTIONS: &[&str] = &[
    "echo",
    "gopro",
    "hass",
    "hls",
    "homekit",
    "mjpeg",
    "mp4",
    "mse",
    "ngrok",
    "onvif",
    "publish",
    "roborock",
    "rtmp",
    "srtp",
    "webtorrent",
    "wyoming",
];

/// go2rtc keys of implemented sections that corecast does not implement yet.
const UNSUPPORTED_KEYS: &[&str] = &[
    "rtsp.pkt_size",
    "api.static_dir",
    "api.tls_cert",
    "api.tls_key",
    "api.tls_listen",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// go2rtc `streams:` section, order kept. name -> sources. Empty list = publish-only stream.
    pub streams: Vec<StreamConfig>,
    pub rtsp: RtspConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
    /// Number of shards (executors); None = one per available core.
    pub shards: Option<usize>,
    /// go2rtc `preload:`: streams kept connected with no viewer, with their filter query.
    pub preload: Vec<(String, Option<String>)>,
    /// go2rtc `ffmpeg:`: `bin` and named templates overriding or adding to the built-ins.
    pub ffmpeg: FfmpegConfig,
    /// corecast `sources:`: lifecycle of pull sources.
    pub sources: SourcesConfig,
    /// go2rtc `exec:`: which programs `exec:` and `ffmpeg:` sources may run.
    pub exec: ExecConfig,
    /// corecast `fanout:`: the consumer policy of every viewer.
    pub fanout: FanoutConfig,
    /// go2rtc `webrtc:`: the WebRTC port, candidates, ICE servers, filters.
    pub webrtc: WebrtcConfig,
    /// Non-fatal findings (unknown keys etc.), each naming the key and the line:
    /// "line 7: unknown key `rtsp.foo` (ignored)". Sorted by line; past 100, one summary line.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfmpegConfig {
    /// The ffmpeg binary (default `ffmpeg`).
    pub bin: String,
    /// Named templates (`h264: "-c:v libx264 ..."`), applied over the built-in ones.
    pub templates: Vec<(String, String)>,
}

impl Default for FfmpegConfig {
    fn default() -> Self {
        FfmpegConfig {
            bin: "ffmpeg".into(),
            templates: Vec::new(),
        }
    }
}

/// Default `fanout: ring_bytes`: 8 MiB, over 2 s of a 30 Mbit/s stream.
pub const DEFAULT_RING_BYTES: u64 = 8 << 20;
/// Bounds of `fanout: ring_bytes`.
pub const MIN_RING_BYTES: u64 = 64 << 10;
pub const MAX_RING_BYTES: u64 = 1 << 30;

/// Default `fanout: egress_tick_us` (see BENCHMARKS.md, "Egress tick").
pub const DEFAULT_EGRESS_TICK_US: u64 = 2000;

/// Default `fanout: audio_hold_ms` (see BENCHMARKS.md, "Audio hold for RTSP viewers").
pub const DEFAULT_AUDIO_HOLD_MS: u64 = 50;
/// Bound of `fanout: audio_hold_ms`.
pub const MAX_AUDIO_HOLD_MS: u64 = 200;

/// Bound of `fanout: mux_interval_ms` and `progressive_interval_ms`.
pub const MAX_MUX_INTERVAL_MS: u64 = 1000;

/// Default `fanout: progressive_interval_ms` (see BENCHMARKS.md, "Progressive interval").
pub const DEFAULT_PROGRESSIVE_INTERVAL_MS: u64 = 80;

/// corecast's `fanout:` section (see `corecast::fanout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutConfig {
    /// `max_lag_ms`: a viewer further behind live than this jumps to the newest keyframe
    /// (counted as a skip). Default 2000, 100..=60000.
    pub max_lag_ms: u64,
    /// `resume_ms`: when a stream's producer leaves (a publisher disconnects, an
    /// `exec:`/`ffmpeg:` source restarts), its viewers wait this long for a new producer
    /// and continue with it; after that they are ended. 0 ends them at once. Default
    /// 10000, at most 600000.
    pub resume_ms: u64,
    /// `egress_tick_us`: arrivals are collected and viewers woken (and other shards sent
    /// the batch) at most once per this many microseconds per shard; 0 wakes them after
    /// every receive, as before. At most 50000.
    pub egress_tick_us: u64,
    /// `ring_bytes`: the most a stream's ring holds, in bytes (payload plus per-packet
    /// overhead). A ring keeps from the latest keyframe (where a joiner starts) or the lag
    /// bound, whichever is older, and never more than this. Default 8 MiB, 64 KiB..=1 GiB.
    pub ring_bytes: u64,
    /// `mux_interval_ms`: muxed outputs (`stream.mp4`, MSE, `stream.ts`) publish their
    /// fragments at most once per this many milliseconds, so each viewer is written once
    /// per interval rather than once per video frame; it adds up to the interval to their
    /// latency. 0 (default): once per video frame. At most 1000.
    pub mux_interval_ms: u64,
    /// `progressive_interval_ms`: the same for HTTP progressive viewers (`stream.mp4`,
    /// `stream.ts`), whose players buffer far more than this; the larger of the two
    /// applies to them. MSE (live views) keeps `mux_interval_ms`; when the two differ,
    /// `stream.mp4` viewers get their own muxer. Default 80, 0 = per video frame (go2rtc),
    /// at most 1000.
    pub progressive_interval_ms: u64,
    /// `audio_hold_ms`: when only audio arrived since a stream with video was last
    /// flushed, its viewers get it with the next video packet, or after this long: one
    /// write per video frame instead of one more per audio packet. Needs the egress tick.
    /// 0: audio is flushed as it comes. Default 50, at most 200.
    pub audio_hold_ms: u64,
}

impl FanoutConfig {
    /// The interval HTTP progressive outputs publish at: the larger of the two settings.
    pub fn progressive_ms(&self) -> u64 {
        self.mux_interval_ms.max(self.progressive_interval_ms)
    }
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            max_lag_ms: crate::fanout::DEFAULT_MAX_LAG_US / 1000,
            resume_ms: 10_000,
            egress_tick_us: DEFAULT_EGRESS_TICK_US,
            ring_bytes: DEFAULT_RING_BYTES,
            mux_interval_ms: 0,
            progressive_interval_ms: DEFAULT_PROGRESSIVE_INTERVAL_MS,
            audio_hold_ms: DEFAULT_AUDIO_HOLD_MS,
        }
    }
}

/// go2rtc's `exec:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecConfig {
    /// `allow_paths`: when set, a source may run only a program whose path or name, as
    /// written in the source (`exec:ffmpeg ...`) or as `ffmpeg.bin`, equals an entry.
    /// None = any program (go2rtc's default); an empty list allows none.
    pub allow_paths: Option<Vec<String>>,
}

impl ExecConfig {
    /// Whether a source may run `program` (the first word of its command line).
    pub fn allows(&self, program: &str) -> bool {
        match &self.allow_paths {
            None => true,
            // Exact match only: a bare name entry ("ffmpeg") must not admit another file of
            // that name elsewhere ("/tmp/x/ffmpeg").
            Some(list) => list.iter().any(|p| p == program),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcesConfig {
    /// Seconds an on-demand source stays connected after its last viewer left.
    pub idle_timeout_secs: u64,
    /// Cap of the reconnect backoff, seconds.
    pub reconnect_max_secs: u64,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        SourcesConfig {
            idle_timeout_secs: 5,
            reconnect_max_secs: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    pub name: String,
    /// Source URLs in file order; empty for a publish-only stream.
    pub sources: Vec<String>,
    /// 1-based line of the stream's key (0 if not found, e.g. in flow style).
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RtspConfig {
    /// Default ":8554" => 0.0.0.0:8554 with `dual_stack`; "" => disabled (None).
    pub listen: Option<SocketAddr>,
    /// `listen` was written ":PORT" (no host): like go2rtc (Go), the server listens on IPv6
    /// and IPv4 (`[::]:PORT` with IPV6_V6ONLY off, or 0.0.0.0:PORT where IPv6 is
    /// unavailable); `listen` then holds 0.0.0.0:PORT. Also the RTP/RTCP UDP ports.
    pub dual_stack: bool,
    /// Key `session_timeout`, default 60, 1..=86400.
    pub session_timeout_secs: u64,
    /// Key `rtp_port`, default 8000, even: shard i uses ports rtp_port+2i / rtp_port+2i+1
    /// for RTP/RTCP over UDP.
    pub udp_rtp_port: u16,
    /// Key `ring_size` (go2rtc-era name), default 16384, 64..=1<<20: the most packets a
    /// stream's ring holds. Time and bytes bound it first (`fanout: max_lag_ms`,
    /// `ring_bytes`); this only caps streams of many tiny packets.
    pub ring_packets: usize,
    /// go2rtc `default_query`, as written; None when absent (go2rtc then uses
    /// "video&audio").
    pub default_query: Option<String>,
    /// go2rtc keys, kept for later; "" reads as None (go2rtc: no auth).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Require credentials from 127.0.0.1 / ::1 too (go2rtc's `local_auth`); default false:
    /// local connections are exempt.
    pub local_auth: bool,
}

/// go2rtc's `webrtc:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct WebrtcConfig {
    /// Default ":8555" (UDP on every shard, SO_REUSEPORT); "" => a random UDP port (port 0
    /// here, chosen at start-up).
    pub listen: Option<SocketAddr>,
    /// ":PORT": IPv6 and IPv4 on one socket.
    pub dual_stack: bool,
    /// `candidates:` entries as written (`ip:port`, `host:port`, `stun:port`), first = most
    /// preferred.
    pub candidates: Vec<String>,
    /// `ice_servers:`: STUN servers for `stun:` candidates, TURN servers for relays.
    pub ice_servers: Vec<IceServer>,
    pub filters: crate::webrtc::ice::Filters,
}

#[derive(Clone, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub credential: Option<String>,
}

/// The credential never shows (a TURN password must stay out of logs).
impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &self.credential.as_ref().map(|_| "***"))
            .finish()
    }
}

pub const DEFAULT_WEBRTC_LISTEN: &str = ":8555";

impl Default for WebrtcConfig {
    fn default() -> Self {
        WebrtcConfig {
            listen: default_listen(DEFAULT_WEBRTC_LISTEN),
            dual_stack: true,
            candidates: Vec::new(),
            ice_servers: Vec::new(),
            filters: Default::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// Default ":1984"; "" disables.
    pub listen: Option<SocketAddr>,
    /// As `RtspConfig::dual_stack`: ":PORT" listens on IPv6 and IPv4.
    pub dual_stack: bool,
    /// go2rtc `origin` ("*" enables CORS); "" reads as None.
    pub origin: Option<String>,
    /// URL prefix: "" or "/x" (a missing leading `/` is added, trailing ones dropped).
    pub base_path: String,
    /// Ask 127.0.0.1 / ::1 for credentials too (go2rtc's `api: local_auth`); default false.
    pub local_auth: bool,
    /// "" reads as None (go2rtc: no auth).
    pub username: Option<String>,
    pub password: Option<String>,
    /// corecast's `api: allow_exec` (default false): whether sources that run programs
    /// (`exec:`, `echo:`, `expr:`, and `ffmpeg:` with `#raw=`, `#input=` or `#drawtext=`) and
    /// the `exec:` /
    /// `ffmpeg:` sections may be set through the API. Turning it on lets anyone who can write
    /// to the API run programs as the server's user: set `username`/`password` with it.
    pub allow_exec: bool,
    /// go2rtc `unix_listen`: the same API on a Unix socket (exempt from auth unless
    /// `local_auth`), e.g. Home Assistant's `<config>/go2rtc.sock`.
    pub unix_listen: Option<String>,
    /// go2rtc `allow_paths`: when set, only these paths (after `base_path`) exist.
    pub allow_paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Default "info". One of trace, debug, info, warn, error, off.
    pub level: String,
    /// Per-module levels, (lower-case go2rtc module name, level), in file order.
    pub modules: Vec<(String, String)>,
    /// go2rtc `format`: "" (colour on a terminal), "color", "text" or "json".
    pub format: String,
    /// go2rtc `output`: "stdout" (default), "stderr", or "" (memory only: `/api/log`).
    pub output: String,
    /// go2rtc `time`: "" hides the timestamp; anything else prints `HH:MM:SS.mmm`.
    pub time: bool,
}

impl Default for Config {
    /// The embedded defaults, with no streams.
    fn default() -> Self {
        Config {
            streams: Vec::new(),
            rtsp: RtspConfig::default(),
            api: ApiConfig::default(),
            log: LogConfig::default(),
            shards: None,
            preload: Vec::new(),
            ffmpeg: FfmpegConfig::default(),
            sources: SourcesConfig::default(),
            exec: ExecConfig::default(),
            fanout: FanoutConfig::default(),
            webrtc: WebrtcConfig::default(),
            warnings: Vec::new(),
        }
    }
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig {
            listen: default_listen(DEFAULT_RTSP_LISTEN),
            dual_stack: is_dual_stack(DEFAULT_RTSP_LISTEN),
            session_timeout_secs: DEFAULT_SESSION_TIMEOUT_SECS,
            udp_rtp_port: DEFAULT_RTP_PORT,
            ring_packets: DEFAULT_RING_PACKETS,
            default_query: None,
            username: None,
            password: None,
            local_auth: false,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_listen(DEFAULT_API_LISTEN),
            dual_stack: is_dual_stack(DEFAULT_API_LISTEN),
            origin: None,
            base_path: String::new(),
            local_auth: false,
            username: None,
            password: None,
            allow_exec: false,
            unix_listen: None,
            allow_paths: None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: DEFAULT_LOG_LEVEL.to_owned(),
            modules: Vec::new(),
            format: String::new(),
            output: "stdout".to_owned(),
            time: true,
        }
    }
}

fn default_listen(s: &str) -> Option<SocketAddr> {
    parse_listen(s).ok().flatten()
}

/// A listen address without a host (":PORT") means every address, IPv6 and IPv4 (Go's
/// `net.Listen`, so go2rtc's); "0.0.0.0:PORT" is IPv4 only and "[::]:PORT" IPv6 only.
pub fn is_dual_stack(listen: &str) -> bool {
    listen.starts_with(':')
}

impl LogConfig {
    /// A tracing `EnvFilter` directive string, e.g.
    /// "info,corecast::rtsp=debug,corecast_shards::rtsp=debug,...": the global level, then
    /// each go2rtc module name mapped under every prefix of [`LOG_TARGET_CRATES`].
    /// Level words were checked by [`parse`].
    pub fn filter_directives(&self) -> String {
        let mut out = self.level.clone();
        for (module, level) in &self.modules {
            for krate in LOG_TARGET_CRATES {
                let _ = write!(out, ",{krate}::{module}={level}");
            }
        }
        out
    }
}

/// A malformed config. `line` is 1-based, 0 if unknown; `key` is a dotted path such as
/// "rtsp.listen" or "streams.cam1" ("(root)" for the document itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: line {line}: {key}: {message}")]
pub struct ConfigError {
    pub origin: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// go2rtc listen syntax: ":8554" (all IPv4 interfaces), "0.0.0.0:8554", "127.0.0.1:8554",
/// "[::1]:8554", "localhost:8554"; "" => Ok(None) (listener disabled). Port 0 is allowed
/// (the OS picks one). Host names other than localhost are refused: nothing here resolves.
pub fn parse_listen(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| format!("invalid listen address {s:?}: {why}");
    let (ip, port): (IpAddr, &str) = if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("expected \"[ipv6]:port\""))?;
        let ip = host
            .parse::<Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address in brackets"))?;
        (ip.into(), port)
    } else {
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(if s.bytes().all(|b| b.is_ascii_digit()) {
                bad(&format!(
                    "missing ':' before the port (did you mean \":{s}\"?)"
                ))
            } else {
                bad("expected \"host:port\" or \":port\"")
            });
        };
        let ip: IpAddr = if host.is_empty() {
            Ipv4Addr::UNSPECIFIED.into()
        } else if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST.into()
        } else if host.contains(':') {
            return Err(bad("IPv6 addresses need brackets, e.g. \"[::1]:8554\""));
        } else {
            host.parse::<Ipv4Addr>()
                .map_err(|_| bad("the host must be an IP address or localhost"))?
                .into()
        };
        (ip, port)
    };
    // u16::from_str alone would also take "+80".
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the port must be a number"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| bad("the port must be at most 65535"))?;
    Ok(Some(SocketAddr::new(ip, port)))
}

/// Parses YAML text. `origin` is the file name used in messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError {
            origin: origin.to_owned(),
            line: 0,
            key: ROOT_KEY.to_owned(),
            message: format!(
                "the file is too large ({} bytes, at most {MAX_CONFIG_BYTES})",
                text.len()
            ),
        });
    }
    if let Some(line) = locate::flow_too_deep(text, MAX_FLOW_DEPTH) {
        return Err(ConfigError {
            origin: origin.to_owned(),
            line,
            key: locate::key_at(text, line).unwrap_or_else(|| ROOT_KEY.to_owned()),
            message: format!("`[`/`{{` collections nest deeper than {MAX_FLOW_DEPTH} levels"),
        });
    }
    let lines = KeyLines::scan(text);
    let mut ignored = Vec::new();
    // `Option` so that an empty or comment-only file reads as "no sections".
    let raw: Option<RawConfig> =
        serde_ignored::deserialize(serde_yaml_ng::Deserializer::from_str(text), |path| {
            ignored.push(raw::ignored_path(&path))
        })
        .map_err(|e| yaml_error(&e, text, &lines, origin))?;
    let raw = raw.unwrap_or_default();

    let mut cx = Cx {
        origin,
        lines,
        warnings: Vec::new(),
    };
    for path in &ignored {
        cx.ignored(path);
    }
    let streams = cx.streams(raw.streams.unwrap_or_default().0)?;
    let shards = cx.shards(raw.shards)?;
    let rtsp = cx.rtsp(raw.rtsp.unwrap_or_default(), shards)?;
    let api = cx.api(raw.api.unwrap_or_default())?;
    cx.check_listeners(&rtsp, &api)?;
    let log = cx.log(raw.log.unwrap_or_default().0)?;
    let preload = cx.preload(raw.preload.unwrap_or_default().0)?;
    let ffmpeg = cx.ffmpeg(raw.ffmpeg.unwrap_or_default().0)?;
    let raw_sources = raw.sources.unwrap_or_default();
    let defaults = SourcesConfig::default();
    let sources = SourcesConfig {
        idle_timeout_secs: raw_sources
            .idle_timeout
            .unwrap_or(defaults.idle_timeout_secs),
        reconnect_max_secs: raw_sources
            .reconnect_max
            .unwrap_or(defaults.reconnect_max_secs)
            .max(1),
    };
    let exec = ExecConfig {
        allow_paths: raw.exec.unwrap_or_default().allow_paths,
    };
    cx.check_programs(&streams, &exec, &ffmpeg);
    let raw_fanout = raw.fanout.unwrap_or_default();
    let max_lag_ms = raw_fanout
        .max_lag_ms
        .unwrap_or(FanoutConfig::default().max_lag_ms);
    if !(100..=60_000).contains(&max_lag_ms) {
        return Err(cx.error(
            &["fanout", "max_lag_ms"],
            format!("must be from 100 to 60000 milliseconds, got {max_lag_ms}"),
        ));
    }
    let resume_ms = raw_fanout
        .resume_ms
        .unwrap_or(FanoutConfig::default().resume_ms);
    if resume_ms > 600_000 {
        return Err(cx.error(
            &["fanout", "resume_ms"],
            format!("must be at most 600000 milliseconds, got {resume_ms}"),
        ));
    }
    let egress_tick_us = raw_fanout.egress_tick_us.unwrap_or(DEFAULT_EGRESS_TICK_US);
    if egress_tick_us > 50_000 {
        return Err(cx.error(
            &["fanout", "egress_tick_us"],
            format!("must be at most 50000 microseconds, got {egress_tick_us}"),
        ));
    }
    let ring_bytes = raw_fanout.ring_bytes.unwrap_or(DEFAULT_RING_BYTES);
    if !(MIN_RING_BYTES..=MAX_RING_BYTES).contains(&ring_bytes) {
        return Err(cx.error(
            &["fanout", "ring_bytes"],
            format!("must be from {MIN_RING_BYTES} to {MAX_RING_BYTES} bytes, got {ring_bytes}"),
        ));
    }
    let mux_interval_ms = raw_fanout.mux_interval_ms.unwrap_or(0);
    if mux_interval_ms > MAX_MUX_INTERVAL_MS {
        return Err(cx.error(
            &["fanout", "mux_interval_ms"],
            format!("must be at most {MAX_MUX_INTERVAL_MS} milliseconds, got {mux_interval_ms}"),
        ));
    }
    let progressive_interval_ms = raw_fanout
        .progressive_interval_ms
        .unwrap_or(DEFAULT_PROGRESSIVE_INTERVAL_MS);
    if progressive_interval_ms > MAX_MUX_INTERVAL_MS {
        return Err(cx.error(
            &["fanout", "progressive_interval_ms"],
            format!(
                "must be at most {MAX_MUX_INTERVAL_MS} milliseconds, got {progressive_interval_ms}"
            ),
        ));
    }
    let audio_hold_ms = raw_fanout.audio_hold_ms.unwrap_or(DEFAULT_AUDIO_HOLD_MS);
    if audio_hold_ms > MAX_AUDIO_HOLD_MS {
        return Err(cx.error(
            &["fanout", "audio_hold_ms"],
            format!("must be at most {MAX_AUDIO_HOLD_MS} milliseconds, got {audio_hold_ms}"),
        ));
    }
    let fanout = FanoutConfig {
        max_lag_ms,
        resume_ms,
        egress_tick_us,
        ring_bytes,
        mux_interval_ms,
        progressive_interval_ms,
        audio_hold_ms,
    };
    let webrtc = cx.webrtc(raw.webrtc.unwrap_or_default())?;

    cx.warnings.sort_by_key(|(line, _)| (*line == 0, *line));
    let total = cx.warnings.len();
    let mut warnings: Vec<String> = cx
        .warnings
        .into_iter()
        .take(MAX_WARNINGS)
        .map(|(line, msg)| match line {
            0 => msg,
            _ => format!("line {line}: {msg}"),
        })
        .collect();
    if total > MAX_WARNINGS {
        warnings.push(format!("... and {} more warnings", total - MAX_WARNINGS));
    }
    Ok(Config {
        streams,
        rtsp,
        api,
        log,
        shards,
        preload,
        ffmpeg,
        sources,
        exec,
        fanout,
        webrtc,
        warnings,
    })
}

/// Validation context: where keys are, and the warnings so far.
struct Cx<'a> {
    origin: &'a str,
    lines: KeyLines,
    warnings: Vec<(usize, String)>,
}

impl Cx<'_> {
    fn error(&self, path: &[&str], message: impl Into<String>) -> ConfigError {
        self.error_at(path.join("."), self.lines.line_of(&keys(path)), message)
    }

    fn error_at(&self, key: String, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: self.origin.to_owned(),
            line,
            key,
            message: message.into(),
        }
    }

    fn warn(&mut self, path: &[&str], message: String) {
        let line = self.lines.line_of(&keys(path));
        self.warnings.push((line, message));
    }

    /// A key serde_ignored saw and nothing read.
    fn ignored(&mut self, path: &[String]) {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let dotted = path.join(".");
        let message = if path.len() == 1 && UNSUPPORTED_SECTIONS.contains(&path[0]) {
            format!("section `{dotted}` is not supported yet (ignored)")
        } else if UNSUPPORTED_KEYS.contains(&dotted.as_str()) {
            format!("`{dotted}` is not supported yet (ignored)")
        } else {
            format!("unknown key `{dotted}` (ignored)")
        };
        self.warn(&path, message);
    }

    fn streams(&mut self, pairs: Vec<(String, Node)>) -> Result<Vec<StreamConfig>, ConfigError> {
        if let Some((name, _)) = pairs.get(MAX_STREAMS) {
            return Err(self.error(
                &["streams", name],
                format!("too many streams (at most {MAX_STREAMS})"),
            ));
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(pairs.len());
        for (name, _) in &pairs {
            let count = seen.entry(name.as_str()).or_default();
            *count += 1;
            if *count == 2 {
                let path = keys(&["streams", name]);
                let message = match self.lines.nth_line_of(&path, 0) {
                    Some(first) => format!("duplicate stream name (first defined on line {first})"),
                    None => "duplicate stream name".to_owned(),
                };
                let line = self
                    .lines
                    .nth_line_of(&path, 1)
                    .unwrap_or_else(|| self.lines.line_of(&path));
                return Err(self.error_at(format!("streams.{name}"), line, message));
            }
        }

        let mut out = Vec::with_capacity(pairs.len());
        for (name, node) in pairs {
            let path = keys(&["streams", &name]);
            let key = format!("streams.{name}");
            let line = self.lines.line_of(&path);
            if name.is_empty() {
                return Err(self.error_at(key, line, "the stream name is empty"));
            }
            let sources = self.stream_sources(&key, path, line, node)?;
            out.push(StreamConfig {
                name,
                sources,
                line,
            });
        }
        Ok(out)
    }

    /// A stream's value in go2rtc's forms: a source, a list of them, nothing (publish-only),
    /// or a mapping whose `url` holds one of these (go2rtc internal/streams `NewStream`).
    fn stream_sources(
        &mut self,
        key: &str,
        mut path: Vec<Seg>,
        mut line: usize,
        mut node: Node,
    ) -> Result<Vec<String>, ConfigError> {
        // go2rtc reads `url` of a mapping again as a stream value; a few levels suffice.
        for _ in 0..4 {
            let pairs = match node {
                Node::Map(pairs) => pairs,
                other => {
                    node = other;
                    break;
                }
            };
            let mut url = Node::Null;
            for (k, v) in pairs {
                if k == "url" {
                    url = v;
                } else {
                    let mut p = path.clone();
                    p.push(Seg::Key(k.clone()));
                    let l = self.lines.line_of(&p);
                    self.warnings.push((
                        l,
                        format!("`{key}`: unknown key `{k}` (ignored; only `url` is read)"),
                    ));
                }
            }
            path.push(Seg::Key("url".into()));
            line = self.lines.line_of(&path);
            node = url;
        }
        let sources = match node {
            // go2rtc: a stream without sources only takes published (pushed) media.
            Node::Null => Vec::new(),
            Node::Str(s) if s.is_empty() => Vec::new(),
            Node::Str(s) => vec![s],
            Node::Seq(items) => {
                let mut sources = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let mut item_path = path.clone();
                    item_path.push(Seg::Item(i));
                    let item_line = self.lines.line_of(&item_path);
                    match item {
                        Node::Str(s) if !s.is_empty() => sources.push(s),
                        // go2rtc logs and skips these too.
                        Node::Str(_) | Node::Null => self.warnings.push((
                            item_line,
                            format!("`{key}`: empty source {} (ignored)", i + 1),
                        )),
                        other => {
                            return Err(self.error_at(
                                key.to_string(),
                                item_line,
                                format!(
                                    "source {} must be a string, found {}",
                                    i + 1,
                                    other.kind()
                                ),
                            ))
                        }
                    }
                }
                sources
            }
            other => {
                return Err(self.error_at(
                    key.to_string(),
                    line,
                    format!(
                        "expected a source URL, a list of them or a mapping with `url`, found {}",
                        other.kind()
                    ),
                ))
            }
        };
        Ok(sources)
    }

    fn shards(&self, raw: Option<u64>) -> Result<Option<usize>, ConfigError> {
        match raw {
            None => Ok(None),
            Some(n) if (1..=MAX_SHARDS as u64).contains(&n) => Ok(Some(n as usize)),
            Some(n) => Err(self.error(
                &["shards"],
                format!("must be from 1 to {MAX_SHARDS}, got {n} (leave it out for one per core)"),
            )),
        }
    }

    fn rtsp(&self, raw: RawRtsp, shards: Option<usize>) -> Result<RtspConfig, ConfigError> {
        let listen = self.listen("rtsp", raw.listen.as_deref(), DEFAULT_RTSP_LISTEN)?;
        let dual_stack = is_dual_stack(raw.listen.as_deref().unwrap_or(DEFAULT_RTSP_LISTEN));

        let session_timeout_secs = raw.session_timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT_SECS);
        if !(1..=MAX_SESSION_TIMEOUT_SECS).contains(&session_timeout_secs) {
            return Err(self.error(
                &["rtsp", "session_timeout"],
                format!(
                    "must be from 1 to {MAX_SESSION_TIMEOUT_SECS} seconds, got {session_timeout_secs}"
                ),
            ));
        }

        let port = raw.rtp_port.unwrap_or(DEFAULT_RTP_PORT);
        if port == 0 || port & 1 == 1 {
            return Err(self.error(
                &["rtsp", "rtp_port"],
                format!(
                    "must be a non-zero even port (RTP even, RTCP the odd one above), got {port}"
                ),
            ));
        }
        // Without `shards` the core count decides, so leave room for the most shards.
        let span = shards.unwrap_or(MAX_SHARDS);
        let last = usize::from(port) + 2 * span - 1;
        if last > usize::from(u16::MAX) {
            return Err(self.error(
                &["rtsp", "rtp_port"],
                format!(
                    "{port} leaves no room for {span} shards (2 UDP ports each, up to port {last}); \
                     use a lower port or set `shards`"
                ),
            ));
        }

        let ring = raw.ring_size.unwrap_or(DEFAULT_RING_PACKETS as u64);
        if !(MIN_RING_PACKETS as u64..=MAX_RING_PACKETS as u64).contains(&ring) {
            return Err(self.error(
                &["rtsp", "ring_size"],
                format!(
                    "must be from {MIN_RING_PACKETS} to {MAX_RING_PACKETS} packets, got {ring}"
                ),
            ));
        }

        Ok(RtspConfig {
            listen,
            dual_stack,
            session_timeout_secs,
            udp_rtp_port: port,
            ring_packets: ring as usize,
            default_query: raw.default_query,
            username: non_empty(raw.username),
            password: non_empty(raw.password),
            local_auth: raw.local_auth.unwrap_or(false),
        })
    }

    fn preload(
        &mut self,
        pairs: Vec<(String, Node)>,
    ) -> Result<Vec<(String, Option<String>)>, ConfigError> {
        let mut out = Vec::new();
        for (name, node) in pairs {
            match node {
                Node::Null => out.push((name, None)),
                Node::Str(q) => out.push((name, non_empty(Some(q)))),
                other => {
                    return Err(self.error(
                        &["preload", &name],
                        format!("expected a filter query or nothing, found {}", other.kind()),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn ffmpeg(&mut self, pairs: Vec<(String, Node)>) -> Result<FfmpegConfig, ConfigError> {
        let mut cfg = FfmpegConfig::default();
        for (name, node) in pairs {
            let Node::Str(value) = node else {
                return Err(self.error(
                    &["ffmpeg", &name],
                    format!("expected a string, found {}", node.kind()),
                ));
            };
            if name == "bin" {
                cfg.bin = value;
            } else {
                cfg.templates.push((name, value));
            }
        }
        Ok(cfg)
    }

    fn api(&self, raw: RawApi) -> Result<ApiConfig, ConfigError> {
        let listen = self.listen("api", raw.listen.as_deref(), DEFAULT_API_LISTEN)?;
        let dual_stack = is_dual_stack(raw.listen.as_deref().unwrap_or(DEFAULT_API_LISTEN));
        let base_path = raw.base_path.unwrap_or_default();
        let trimmed = base_path.trim_end_matches('/');
        let base_path = if trimmed.is_empty() || trimmed.starts_with('/') {
            trimmed.to_owned()
        } else {
            format!("/{trimmed}")
        };
        Ok(ApiConfig {
            listen,
            dual_stack,
            origin: non_empty(raw.origin),
            base_path,
            username: non_empty(raw.username),
            password: non_empty(raw.password),
            local_auth: raw.local_auth.unwrap_or(false),
            allow_exec: raw.allow_exec.unwrap_or(false),
            unix_listen: non_empty(raw.unix_listen),
            allow_paths: raw.allow_paths,
        })
    }

    /// Sources whose program `exec.allow_paths` refuses are not errors (go2rtc starts and
    /// fails the source when it is used), but the start-up log should say so.
    fn check_programs(
        &mut self,
        streams: &[StreamConfig],
        exec: &ExecConfig,
        ffmpeg: &FfmpegConfig,
    ) {
        if exec.allow_paths.is_none() {
            return;
        }
        for s in streams {
            for src in &s.sources {
                if let Some(program) = crate::policy::source_program(src, &ffmpeg.bin) {
                    if !exec.allows(&program) {
                        self.warnings.push((
                            s.line,
                            format!(
                                "`streams.{}`: program `{program}` is not in `exec.allow_paths`; \
                                 this source will not run",
                                s.name
                            ),
                        ));
                    }
                }
            }
        }
    }

    fn webrtc(&self, raw: raw::RawWebrtc) -> Result<WebrtcConfig, ConfigError> {
        let text = raw.listen.as_deref().unwrap_or(DEFAULT_WEBRTC_LISTEN);
        // go2rtc: "" is a random UDP port, not "disabled"; ":PORT/tcp" is TCP only (not
        // served yet: read as the UDP port).
        let text = text.strip_suffix("/tcp").unwrap_or(text);
        let listen = if text.is_empty() {
            Some(SocketAddr::from(([0, 0, 0, 0], 0)))
        } else {
            parse_listen(text).map_err(|m| self.error(&["webrtc", "listen"], m))?
        };
        let dual_stack = text.is_empty() || is_dual_stack(text);
        let mut ice_servers = Vec::new();
        for s in raw.ice_servers.unwrap_or_default() {
            let urls = match s.urls {
                Some(serde_yaml_ng::Value::String(u)) => vec![u],
                Some(serde_yaml_ng::Value::Sequence(v)) => v
                    .into_iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect(),
                _ => {
                    return Err(self.error(
                        &["webrtc", "ice_servers"],
                        "each entry needs `urls`: a string or a list of strings",
                    ))
                }
            };
            ice_servers.push(IceServer {
                urls,
                username: s.username,
                credential: s.credential,
            });
        }
        let f = raw.filters.unwrap_or_default();
        Ok(WebrtcConfig {
            listen,
            dual_stack,
            candidates: raw.candidates.unwrap_or_default(),
            ice_servers,
            filters: crate::webrtc::ice::Filters {
                candidates: f.candidates,
                loopback: f.loopback.unwrap_or(false),
                interfaces: f.interfaces,
                ips: f.ips,
                networks: f.networks,
                udp_ports: f.udp_ports,
            },
        })
    }

    fn listen(
        &self,
        section: &str,
        raw: Option<&str>,
        default: &str,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        parse_listen(raw.unwrap_or(default)).map_err(|m| self.error(&[section, "listen"], m))
    }

    /// Both servers are TCP: the same port on overlapping addresses can't bind twice.
    fn check_listeners(&self, rtsp: &RtspConfig, api: &ApiConfig) -> Result<(), ConfigError> {
        if let (Some(r), Some(a)) = (rtsp.listen, api.listen) {
            let overlap = r.ip() == a.ip() || r.ip().is_unspecified() || a.ip().is_unspecified();
            if r.port() == a.port() && r.port() != 0 && overlap {
                return Err(self.error(
                    &["api", "listen"],
                    format!("port {} is already used by rtsp.listen", a.port()),
                ));
            }
        }
        Ok(())
    }

    /// go2rtc's `log:` is a flat map of `level` and per-module levels; corecast also takes an
    /// explicit `modules:` map.
    fn log(&mut self, pairs: Vec<(String, Node)>) -> Result<LogConfig, ConfigError> {
        if let Some(key) = first_duplicate(&pairs) {
            return Err(self.duplicate_key(&["log", key]));
        }
        let mut out = LogConfig::default();
        for (key, node) in &pairs {
            match key.as_str() {
                "level" => {
                    if let Some(level) = self.level(&["log", "level"], node)? {
                        out.level = level;
                    }
                }
                "modules" => match node {
                    Node::Null => {}
                    Node::Map(modules) => {
                        if let Some(name) = first_duplicate(modules) {
                            return Err(self.duplicate_key(&["log", "modules", name]));
                        }
                        for (name, node) in modules {
                            self.module(&mut out, &["log", "modules", name], node)?;
                        }
                    }
                    other => {
                        return Err(self.error(
                            &["log", "modules"],
                            format!(
                                "expected a mapping of module names to levels, found {}",
                                other.kind()
                            ),
                        ))
                    }
                },
                "format" | "output" | "time" => {
                    let value = match node {
                        Node::Str(s) => s.clone(),
                        Node::Null => String::new(),
                        other => {
                            return Err(self.error(
                                &["log", key],
                                format!("expected a string, found {}", other.kind()),
                            ))
                        }
                    };
                    match key.as_str() {
                        "format" => match value.as_str() {
                            "" | "color" | "text" | "json" => out.format = value,
                            _ => self.warn(
                                &["log", "format"],
                                format!(
                                    "`log.format` {value:?} is not one of \"\", color, text, \
                                     json (ignored)"
                                ),
                            ),
                        },
                        // go2rtc also has `file[:path]`; a go2rtc config using it still starts.
                        "output" => match value.as_str() {
                            "" | "stdout" | "stderr" => out.output = value,
                            _ => self.warn(
                                &["log", "output"],
                                format!(
                                    "`log.output` {value:?} is not supported (stdout, stderr or \
                                     \"\"); using stdout"
                                ),
                            ),
                        },
                        _ => out.time = !value.is_empty(),
                    }
                }
                _ => self.module(&mut out, &["log", key], node)?,
            }
        }
        Ok(out)
    }

    fn module(
        &mut self,
        out: &mut LogConfig,
        path: &[&str],
        node: &Node,
    ) -> Result<(), ConfigError> {
        let name = path[path.len() - 1];
        // The name becomes part of a filter directive, so it must be a plain identifier.
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            let message = format!("unknown key `{}` (ignored)", path.join("."));
            self.warn(path, message);
            return Ok(());
        }
        if let Some(level) = self.level(path, node)? {
            let name = name.to_ascii_lowercase();
            match out.modules.iter_mut().find(|(m, _)| *m == name) {
                Some(entry) => entry.1 = level,
                None => out.modules.push((name, level)),
            }
        }
        Ok(())
    }

    /// A level word, normalised to tracing's; None when left empty.
    fn level(&self, path: &[&str], node: &Node) -> Result<Option<String>, ConfigError> {
        match node {
            Node::Null => Ok(None),
            Node::Str(s) if s.is_empty() => Ok(None),
            Node::Str(s) => parse_level(s).map(|l| Some(l.to_owned())).ok_or_else(|| {
                self.error(
                    path,
                    format!(
                        "unknown log level {s:?} (expected trace, debug, info, warn, error or off)"
                    ),
                )
            }),
            other => Err(self.error(
                path,
                format!("expected a log level, found {}", other.kind()),
            )),
        }
    }

    /// Points at the second occurrence of a repeated key.
    fn duplicate_key(&self, path: &[&str]) -> ConfigError {
        let segs = keys(path);
        let line = self
            .lines
            .nth_line_of(&segs, 1)
            .unwrap_or_else(|| self.lines.line_of(&segs));
        self.error_at(path.join("."), line, "duplicate key")
    }
}

fn first_duplicate(pairs: &[(String, Node)]) -> Option<&str> {
    let mut seen = std::collections::HashSet::with_capacity(pairs.len());
    pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !seen.insert(*k))
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// go2rtc's zerolog level words (and a few aliases) as tracing level words.
fn parse_level(s: &str) -> Option<&'static str> {
    Some(match s.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        // tracing has nothing above error.
        "error" | "fatal" | "panic" => "error",
        "off" | "disabled" | "none" => "off",
        _ => return None,
    })
}

/// Phrases serde and serde_yaml_ng begin error messages with; what precedes `": phrase"` in
/// a message is serde_yaml_ng's path to the value.
const SERDE_PHRASES: &[&str] = &[
    "invalid type: ",
    "invalid value: ",
    "invalid length ",
    "duplicate field ",
    "duplicate entry ",
    "unknown field ",
    "unknown variant ",
    "missing field ",
    "non-string key",
    raw::TOO_LARGE,
];

/// Turns a serde_yaml_ng error into a [`ConfigError`]. Its location is used as is; its path is
/// only reachable through `Display` ("rtsp.listen: invalid type: ... at line 2 column 11"),
/// so the message is taken apart, trusting first the fixed paths of the typed fields.
fn yaml_error(
    err: &serde_yaml_ng::Error,
    text: &str,
    lines: &KeyLines,
    origin: &str,
) -> ConfigError {
    let location = err.location();
    let line = location.as_ref().map_or(0, |l| l.line());
    let mut full = err.to_string();
    if let Some(l) = &location {
        full = full.replacen(
            &format!(" at line {} column {}", l.line(), l.column()),
            "",
            1,
        );
    }
    let (path, message) = split_error_path(&full);
    let error = |key: String, line: usize, message: &str| ConfigError {
        origin: origin.to_owned(),
        line,
        key,
        message: match message {
            "repetition limit exceeded" => {
                "YAML aliases expand too much (repetition limit exceeded)".to_owned()
            }
            _ => message
                .replace(", expected u64", ", expected a whole number")
                .replace(
                    ", expected u16",
                    ", expected a whole number from 0 to 65535",
                ),
        },
    };

    // serde reports a repeated struct field at the struct; point at the repeated key instead.
    if let Some(field) = message
        .strip_prefix("duplicate field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        let key = match path {
            Some(parent) => format!("{parent}.{field}"),
            None => field.to_owned(),
        };
        let segs: Vec<Seg> = key.split('.').map(|k| Seg::Key(k.to_owned())).collect();
        let line = lines.nth_line_of(&segs, 1).unwrap_or(line);
        return error(key, line, "duplicate key");
    }
    let key = match path {
        Some(p) => p.to_owned(),
        None if message.contains("expected a mapping of sections") => ROOT_KEY.to_owned(),
        None => locate::key_at(text, line).unwrap_or_else(|| ROOT_KEY.to_owned()),
    };
    error(key, line, message)
}

/// Splits "path: message" as serde_yaml_ng formats it; no path for document-level errors.
fn split_error_path(full: &str) -> (Option<&str>, &str) {
    let fixed = raw::TYPED_PATHS
        .iter()
        .filter(|p| {
            full.strip_prefix(**p)
                .is_some_and(|rest| rest.starts_with(": "))
        })
        .max_by_key(|p| p.len());
    if let Some(p) = fixed {
        return (Some(p), &full[p.len() + 2..]);
    }
    if SERDE_PHRASES.iter().any(|p| full.starts_with(p)) {
        return (None, full);
    }
    // A path through user-chosen names (streams.cam1[2]); take the earliest phrase.
    let cut = SERDE_PHRASES
        .iter()
        .filter_map(|p| full.find(&format!(": {p}")))
        .min();
    match cut {
        Some(i) => (Some(&full[..i]), &full[i + 2..]),
        None => (None, full),
    }
}

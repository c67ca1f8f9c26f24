//! go2rtc-compatible HTTP API handlers that answer with one body: `/api`, `/api/streams`,
//! `/api/config`, `/api/schemes`, `/api/preload`, and `/metrics`.
//!
//! JSON shapes follow go2rtc (what Frigate and Home Assistant's client read); corecast's
//! extras are additional keys. Config writes go back to the YAML file, validated by the same
//! parser as at start-up, written atomically (a temporary file renamed over the old one).

use crate::core::hub::{CtlMsg, RoomMsg, Shard};
use crate::core::registry::Registry;
use corecast::api::{
    ConsumerSnapshot, InfoSnapshot, MetricsSnapshot, ProducerSnapshot, ShardReport, ShardRow,
    StreamJson, StreamRow, StreamSnapshot,
};
use corecast::http::Request;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The go2rtc API level corecast answers as: Home Assistant's client accepts
/// 1.9.13 <= version < 2.0.0 (see README).
pub const GO2RTC_API_VERSION: &str = "1.9.14";

/// Source schemes this build can pull (`/api/schemes`).
/// `http(s)://` and `rtmp(s)://` are read through ffmpeg (`-c copy`).
pub const SCHEMES: &[&str] = &[
    "rtsp", "rtsps", "rtspx", "ffmpeg", "exec", "http", "https", "rtmp", "rtmps",
];

/// Where API config writes go: the file the server started from, else `corecast.yaml`.
static CONFIG_PATH: OnceLock<PathBuf> = OnceLock::new();

pub fn set_config_path(p: PathBuf) {
    let _ = CONFIG_PATH.set(p);
}

fn config_path() -> PathBuf {
    CONFIG_PATH
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("corecast.yaml"))
}

/// A complete response.
pub struct Reply {
    pub status: u16,
    pub ctype: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(status: u16, msg: impl Into<String>) -> Reply {
        let mut body = msg.into().into_bytes();
        body.push(b'\n');
        Reply {
            status,
            ctype: "text/plain; charset=utf-8",
            body,
        }
    }

    fn json<T: Serialize>(v: &T) -> Reply {
        match simd_json::to_vec(v) {
            Ok(body) => Reply {
                status: 200,
                ctype: "application/json",
                body,
            },
            Err(e) => Reply::text(500, format!("json: {e}")),
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            ctype: "text/plain",
            body: Vec::new(),
        }
    }
}

/// `GET /api`.
pub fn info(shard: &Shard, req: &Request) -> Reply {
    Reply::json(&corecast::api::info_json(InfoSnapshot {
        version: GO2RTC_API_VERSION,
        corecast_version: env!("CARGO_PKG_VERSION"),
        config_path: std::path::absolute(config_path())
            .unwrap_or_else(|_| config_path())
            .display()
            .to_string(),
        host: req.header("host").unwrap_or("").to_string(),
        rtsp_listen: shard.config.rtsp.listen,
        default_query: shard.config.rtsp.default_query.clone(),
        shards: shard
            .registry
            .shards
            .iter()
            .enumerate()
            .map(|(id, s)| ShardReport {
                id,
                viewers: s.viewers.load(Relaxed),
                streams_owned: s.streams_owned.load(Relaxed),
                connections: s.connections.load(Relaxed),
                relayed_packets: s.relayed_packets.load(Relaxed),
                relay_dropped: s.relay_dropped.load(Relaxed),
                muxers: s.muxers.load(Relaxed),
            })
            .collect(),
    }))
}

/// The streams as the API shows them: plain data copied under the registry lock, the JSON
/// built after it is released (by `corecast::api`).
fn streams(reg: &Registry, only: Option<&str>) -> BTreeMap<String, StreamJson> {
    let snapshot: Vec<StreamSnapshot> = {
        let g = reg.lock();
        g.streams
            .iter()
            .filter(|(name, e)| {
                // Helper streams are the engine's, not the user's.
                e.helper_of.is_none() && only.is_none_or(|o| o == name.as_str())
            })
            .map(|(name, e)| StreamSnapshot {
                name: name.clone(),
                owner_shard: e.owner,
                sources: e.sources.clone(),
                preload: e.preload.clone(),
                error: e.error.clone(),
                backchannel: e.backchannel.clone(),
                producer: e.producer.as_ref().map(|p| {
                    (
                        ProducerSnapshot {
                            id: p.id,
                            protocol: p.protocol,
                            remote_addr: p.remote_addr.clone(),
                            url: p.url.clone(),
                            user_agent: p.user_agent.clone(),
                            bytes: p.stats.bytes.load(Relaxed),
                            packets: p.stats.packets.load(Relaxed),
                        },
                        e.sdp.clone(),
                    )
                }),
                consumers: e
                    .consumers
                    .iter()
                    .map(|c| ConsumerSnapshot {
                        id: c.id,
                        format_name: c.format_name,
                        protocol: c.protocol,
                        remote_addr: c.remote_addr.clone(),
                        user_agent: c.user_agent.clone(),
                        shard: c.shard,
                        tracks: c.tracks.clone(),
                        bytes: c.stats.bytes.load(Relaxed),
                        packets: c.stats.packets.load(Relaxed),
                        skips: c.stats.skips.load(Relaxed),
                        skipped: c.stats.skipped_packets.load(Relaxed),
                    })
                    .collect(),
            })
            .collect()
    };
    corecast::api::streams_json(snapshot)
}

/// A stream name the API accepts: what fits in an RTSP path segment and a YAML key.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
        && !name.starts_with('/')
}

/// A source from the API: well formed (go2rtc refuses whitespace), allowed to run what it
/// runs (`api.allow_exec`, see `corecast::policy`), and of a scheme we can pull.
fn check_source(src: &str, allow_exec: bool) -> Result<(), Reply> {
    corecast::policy::check_api_source(src, allow_exec).map_err(|e| {
        warn!(source = %crate::sources::lifecycle::redact(src), error = %e, "API source refused");
        Reply::text(e.status(), e.to_string())
    })?;
    let scheme = src.split_once(':').map(|(s, _)| s).unwrap_or("");
    if !SCHEMES.contains(&scheme) {
        return Err(Reply::text(
            400,
            format!(
                "unsupported source scheme `{scheme}` (supported: {})",
                SCHEMES.join(", ")
            ),
        ));
    }
    Ok(())
}

/// `/api/streams`: GET (all or `?src=`), PUT (create/replace, saved to the config), PATCH
/// (create/replace in memory), DELETE (`?src=` or `?name=`, removed from the config).
pub async fn streams_endpoint(shard: &Rc<Shard>, req: &Request) -> Reply {
    let src = req.query("src");
    let name = req.query("name");
    match req.method.as_str() {
        "GET" | "HEAD" => match src.or(name) {
            None => Reply::json(&streams(&shard.registry, None)),
            Some(n) => {
                if !shard.registry.lock().streams.contains_key(n) {
                    return Reply::text(404, "stream not found");
                }
                // go2rtc: `video`/`audio`/`microphone` make the request a probe — the
                // producers connect and the answer carries their medias.
                if ["video", "audio", "microphone"]
                    .iter()
                    .any(|k| req.query(k).is_some())
                {
                    probe(shard, n).await;
                }
                match streams(&shard.registry, Some(n)).remove(n) {
                    Some(s) => Reply::json(&s),
                    None => Reply::text(404, "stream not found"),
                }
            }
        },
        "POST" => post_streams(shard, req).await,
        "PUT" | "PATCH" => {
            let sources: Vec<String> = req.query_all("src").iter().map(|s| s.to_string()).collect();
            let Some(name) = name.or(src) else {
                return Reply::text(400, "missing `name` or `src`");
            };
            if !valid_name(name) {
                return Reply::text(400, format!("invalid stream name `{name}`"));
            }
            if sources.is_empty() {
                return Reply::text(400, "missing `src`");
            }
            for s in &sources {
                if let Err(reply) = check_source(s, shard.config.api.allow_exec) {
                    return reply;
                }
            }
            {
                let g = shard.registry.lock();
                if g.streams.len() >= corecast::config::MAX_STREAMS && !g.streams.contains_key(name)
                {
                    return Reply::text(409, "too many streams");
                }
            }
            shard.registry.declare(name, sources.clone());
            // A running source of the old sources stops; the next reader starts the new.
            shard.wanted_changed(name);
            info!(stream = name, "stream created or updated through the API");
            if req.method == "PUT" {
                let value = if sources.len() == 1 {
                    serde_yaml_ng::Value::String(sources[0].clone())
                } else {
                    serde_yaml_ng::Value::Sequence(
                        sources
                            .into_iter()
                            .map(serde_yaml_ng::Value::String)
                            .collect(),
                    )
                };
                let key = name.to_string();
                let saved = off_thread(move || patch_config(&["streams", &key], Some(value))).await;
                if let Err(e) = saved {
                    warn!(stream = name, error = %e, "stream created but not saved to the config");
                    return Reply::text(400, e);
                }
            }
            Reply::empty(200)
        }
        "DELETE" => {
            let Some(name) = src.or(name) else {
                return Reply::text(400, "missing `src`");
            };
            if !shard.registry.remove(name) {
                return Reply::text(404, "stream not found");
            }
            shard.wanted_changed(name);
            info!(stream = name, "stream deleted through the API");
            let key = name.to_string();
            if let Err(e) = off_thread(move || patch_config(&["streams", &key], None)).await {
                return Reply::text(400, e);
            }
            Reply::empty(200)
        }
        _ => Reply::text(405, "method not allowed"),
    }
}

/// How long a probe waits for a stream's producer (go2rtc's dial timeouts are similar).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the stream's sources as a reader would and waits, bounded, until a producer has
/// described its medias. The source then stops after `sources.idle_timeout` unless a reader
/// comes (go2rtc removes its probe consumer right after answering).
async fn probe(shard: &Rc<Shard>, name: &str) {
    let has_producer = |shard: &Shard| {
        let g = shard.registry.lock();
        g.streams
            .get(name)
            .is_none_or(|e| e.producer.as_ref().is_some_and(|_| e.sdp.is_some()))
    };
    if has_producer(shard) {
        return;
    }
    start_on_owner(shard, name);
    let deadline = Instant::now() + PROBE_TIMEOUT;
    while Instant::now() < deadline && !has_producer(shard) {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a stream's sources on the shard that owns the stream.
fn start_on_owner(shard: &Rc<Shard>, name: &str) {
    let owner = shard.owner_of(name);
    if owner == shard.id {
        crate::sources::lifecycle::start(shard, name);
    } else {
        shard.send_ctl(
            owner,
            CtlMsg::Room(RoomMsg::StartSource { name: name.into() }),
        );
    }
}

/// `POST /api/streams?src=&dst=`: go2rtc plays `src` into stream `dst` (its two-way audio)
/// or publishes stream `src` to the URL `dst`. Publishing runs the configured ffmpeg with
/// fixed arguments (`-c copy` to an `rtsp://`/`rtsps://`/`rtmp://` URL), only when
/// `exec.allow_paths` allows ffmpeg; two-way audio is not implemented (501).
async fn post_streams(shard: &Rc<Shard>, req: &Request) -> Reply {
    let (Some(src), Some(dst)) = (req.query("src"), req.query("dst")) else {
        return Reply::text(400, "streams: `src` and `dst` are required");
    };
    let exists = |n: &str| shard.registry.lock().streams.contains_key(n);
    if exists(dst) {
        return Reply::text(
            501,
            format!("streams: playing into stream `{dst}` (two-way audio) is not supported"),
        );
    }
    if !exists(src) {
        return Reply::text(404, format!("streams: stream not found: {src}"));
    }
    let scheme = dst.split_once("://").map(|(s, _)| s).unwrap_or("");
    let format = match scheme {
        "rtsp" | "rtsps" => "rtsp",
        "rtmp" | "rtmps" => "flv",
        _ => {
            return Reply::text(
                400,
                format!("streams: unsupported destination `{scheme}` (rtsp://, rtsps://, rtmp://)"),
            )
        }
    };
    if dst.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Reply::text(400, "streams: invalid destination URL");
    }
    let bin = shard.config.ffmpeg.bin.clone();
    if !shard.config.exec.allows(&bin) {
        return Reply::text(
            403,
            format!("streams: `{bin}` is not in `exec.allow_paths`; cannot publish"),
        );
    }
    // Our own RTSP server, as our `ffmpeg:` sources read it (with credentials when
    // `local_auth` asks for them, the right host for any `rtsp.listen`).
    let input = match crate::sources::lifecycle::output_url(shard, src) {
        Ok(u) => u,
        Err(e) => return Reply::text(503, format!("streams: {e}")),
    };
    // Bounded: each publish is an ffmpeg process for as long as the destination takes it.
    if PUBLISHING.load(Relaxed) >= MAX_PUBLISHING {
        return Reply::text(
            503,
            format!("streams: {MAX_PUBLISHING} publishes already running"),
        );
    }
    let mut cmd = std::process::Command::new(&bin);
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-rtsp_transport",
        "tcp",
        "-i",
        &input,
        "-c",
        "copy",
        "-f",
        format,
        dst,
    ])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    crate::io::fd::unpin_child(&mut cmd);
    // fork/exec off the shard's thread.
    let spawned = off_thread(move || cmd.spawn()).await;
    match spawned {
        Ok(mut child) => {
            info!(stream = src, to = %crate::sources::lifecycle::redact(dst), pid = child.id(), "publishing through ffmpeg");
            PUBLISHING.fetch_add(1, Relaxed);
            // Reaped when it ends (the destination closes or the stream goes away).
            std::thread::spawn(move || {
                let _ = child.wait();
                PUBLISHING.fetch_sub(1, Relaxed);
            });
            Reply::empty(200)
        }
        Err(e) => Reply::text(500, format!("streams: cannot run `{bin}`: {e}")),
    }
}

/// `POST /api/streams?dst=` publishes running at once (process-wide).
static PUBLISHING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const MAX_PUBLISHING: usize = 16;

/// `GET /api/streams.dot`: the streams as a Graphviz graph (go2rtc's debug view), URLs with
/// their passwords masked.
pub fn streams_dot(shard: &Shard, req: &Request) -> Reply {
    let only: Vec<&str> = req.query_all("src");
    let all = streams(&shard.registry, None);
    let mut dot = String::from("digraph {\n");
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    for (name, s) in all
        .iter()
        .filter(|(n, _)| only.is_empty() || only.contains(&n.as_str()))
    {
        let _ = writeln!(dot, "  \"{}\" [shape=box];", q(name));
        for p in &s.producers {
            let url = match p {
                corecast::api::ProducerOut::Live(l) => &l.url,
                corecast::api::ProducerOut::Idle { url } => url,
            };
            let url = crate::sources::lifecycle::redact(url);
            let _ = writeln!(dot, "  \"{}\" -> \"{}\";", q(&url), q(name));
        }
        for c in s.consumers.iter().flatten() {
            let _ = writeln!(
                dot,
                "  \"{}\" -> \"{} {} {}\";",
                q(name),
                c.format_name,
                c.id,
                q(&c.remote_addr)
            );
        }
    }
    dot.push('}');
    Reply {
        status: 200,
        ctype: "text/vnd.graphviz",
        body: dot.into_bytes(),
    }
}

/// `/api/log`: GET the in-memory log (JSON lines, oldest first), DELETE clears it.
pub fn log_endpoint(req: &Request) -> Reply {
    match req.method.as_str() {
        "GET" => Reply {
            status: 200,
            ctype: "application/jsonlines",
            body: crate::logging::MEMORY_LOG.contents(),
        },
        "DELETE" => {
            crate::logging::MEMORY_LOG.clear();
            Reply {
                status: 200,
                ctype: "text/plain",
                body: b"OK".to_vec(),
            }
        }
        _ => Reply::text(400, "Method not allowed"),
    }
}

/// `POST /api/restart`: re-executes the binary with the same arguments (go2rtc). The answer
/// goes out first; listening sockets are close-on-exec, so the new process binds afresh.
pub fn restart_endpoint(req: &Request) -> Reply {
    if req.method != "POST" {
        return Reply::text(400, "");
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return Reply::text(500, e.to_string()),
    };
    info!(path = %exe.display(), "[api] restart");
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        // Lets the reply reach the client before the process image is replaced.
        std::thread::sleep(Duration::from_millis(200));
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(std::env::args_os().skip(1));
        // This thread belongs to a pinned shard and exec keeps its CPU mask: without this
        // the new process would see one core and start one shard.
        crate::io::fd::unpin_child(&mut cmd);
        let err = cmd.exec();
        tracing::error!(path = %exe.display(), error = %err, "restart failed");
    });
    Reply::empty(200)
}

/// `POST /api/exit?code=N`: ends the process with code N (0..=125), as go2rtc.
pub fn exit_endpoint(req: &Request) -> Reply {
    if req.method != "POST" {
        return Reply::text(400, "");
    }
    let code = match req.query("code").and_then(|c| c.parse::<i32>().ok()) {
        Some(c) if (0..=125).contains(&c) => c,
        _ => return Reply::text(400, "Code must be in the range [0, 125]"),
    };
    info!(code, "[api] exit");
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        std::process::exit(code);
    });
    Reply::empty(200)
}

/// go2rtc's `url.Values.Encode()`: keys sorted, `k=v` joined by `&`, values escaped as a
/// query component (`video&audio` becomes `audio=&video=`).
fn encode_query(pairs: &mut [(String, String)]) -> String {
    fn esc(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (k, v) in pairs.iter() {
        if !out.is_empty() {
            out.push('&');
        }
        esc(k, &mut out);
        out.push('=');
        esc(v, &mut out);
    }
    out
}

/// `/api/schemes`.
pub fn schemes() -> Reply {
    Reply::json(&SCHEMES)
}

/// One preload as go2rtc shows it: the consumer that keeps the stream on, and its query.
#[derive(Serialize)]
struct PreloadJson {
    consumer: PreloadConsumer,
    query: String,
}

#[derive(Serialize)]
struct PreloadConsumer {
    format_name: &'static str,
    medias: Vec<String>,
}

/// The medias a preload query asks for, in go2rtc's words ("video, sendonly, ANY").
fn query_medias(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in query.split('&') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (kind, dir) = match k {
            "video" => ("video", "sendonly"),
            "audio" => ("audio", "sendonly"),
            "microphone" => ("audio", "recvonly"),
            _ => continue,
        };
        let v = v.replace("%2C", ",").replace("%2c", ",");
        let codecs: Vec<String> = v
            .split(',')
            .map(|c| match c.to_ascii_uppercase().as_str() {
                "" | "COPY" => "ANY".to_string(),
                o => o.to_string(),
            })
            .collect();
        out.push(format!("{kind}, {dir}, {}", codecs.join(", ")));
    }
    out
}

/// `/api/preload`: GET (all, go2rtc's `{name: {consumer, query}}`), PUT
/// `?src=NAME[&video&audio&microphone]` (other keys dropped, as go2rtc), DELETE `?src=`.
/// PUT and DELETE write `preload:` in the config file.
pub async fn preload_endpoint(shard: &Rc<Shard>, req: &Request) -> Reply {
    match req.method.as_str() {
        "GET" | "HEAD" => {
            let g = shard.registry.lock();
            let map: BTreeMap<&str, PreloadJson> = g
                .streams
                .iter()
                .filter_map(|(n, e)| {
                    e.preload.as_deref().map(|q| {
                        (
                            n.as_str(),
                            PreloadJson {
                                consumer: PreloadConsumer {
                                    format_name: "preload",
                                    medias: query_medias(q),
                                },
                                query: q.to_string(),
                            },
                        )
                    })
                })
                .collect();
            Reply::json(&map)
        }
        "PUT" => {
            let Some(name) = req.query("src") else {
                return Reply::text(400, "streams: missing `src`");
            };
            // go2rtc keeps only the keys a consumer understands.
            let mut kept: Vec<(String, String)> = req
                .query
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "video" | "audio" | "microphone"))
                .cloned()
                .collect();
            let query = if kept.is_empty() {
                "video&audio".to_string()
            } else {
                encode_query(&mut kept)
            };
            if !shard.registry.set_preload(name, Some(query.clone())) {
                return Reply::text(500, format!("streams: stream not found: {name}"));
            }
            start_on_owner(shard, name);
            let key = name.to_string();
            let value = serde_yaml_ng::Value::String(query);
            if let Err(e) = off_thread(move || patch_config(&["preload", &key], Some(value))).await
            {
                return Reply::text(500, e);
            }
            Reply::empty(200)
        }
        "DELETE" => {
            let Some(name) = req.query("src") else {
                return Reply::text(400, "streams: missing `src`");
            };
            let had = shard
                .registry
                .lock()
                .streams
                .get(name)
                .is_some_and(|e| e.preload.is_some());
            if !had {
                return Reply::text(500, format!("streams: preload not found: {name}"));
            }
            shard.registry.set_preload(name, None);
            shard.wanted_changed(name);
            let key = name.to_string();
            if let Err(e) = off_thread(move || patch_config(&["preload", &key], None)).await {
                return Reply::text(500, e);
            }
            Reply::empty(200)
        }
        _ => Reply::text(405, "method not allowed"),
    }
}

/// `/api/config`: GET the YAML, POST replaces it, PATCH merges a YAML mapping into it. Both
/// writes are validated with the start-up parser; changes apply at the next start.
pub async fn config_endpoint(shard: &Shard, req: &Request) -> Reply {
    let method = req.method.clone();
    let body = req.body.clone();
    let allow_exec = shard.config.api.allow_exec;
    off_thread(move || config_file(&method, &body, allow_exec)).await
}

/// File IO runs on a blocking thread, not on the shard: a slow disk must not stall the
/// viewers the shard serves.
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    glommio::executor().spawn_blocking(f).await
}

/// The `/api/config` work itself (on a blocking thread).
fn config_file(method: &str, body: &[u8], allow_exec: bool) -> Reply {
    let path = config_path();
    match method {
        "GET" | "HEAD" => match std::fs::read(&path) {
            Ok(body) => Reply {
                status: 200,
                ctype: "application/yaml",
                body,
            },
            Err(_) => Reply::text(404, format!("no config file at {}", path.display())),
        },
        "POST" | "PATCH" => {
            let Ok(text) = std::str::from_utf8(body) else {
                return Reply::text(400, "config is not UTF-8");
            };
            let _turn = CONFIG_WRITE.lock().unwrap_or_else(|e| e.into_inner());
            let text = if method == "PATCH" {
                let patch: serde_yaml_ng::Value = match serde_yaml_ng::from_str(text) {
                    Ok(v) => v,
                    Err(e) => return Reply::text(400, format!("invalid YAML: {e}")),
                };
                let mut current = match read_config_value(&path) {
                    Ok(v) => v,
                    Err(e) => return Reply::text(400, e),
                };
                merge(&mut current, patch);
                match serde_yaml_ng::to_string(&current) {
                    Ok(t) => t,
                    Err(e) => return Reply::text(500, e.to_string()),
                }
            } else {
                text.to_string()
            };
            if let Err(reply) = check_config_change(&path, &text, allow_exec) {
                return reply;
            }
            match write_config(&path, &text) {
                Ok(()) => Reply::empty(200),
                Err(e) => Reply::text(400, e),
            }
        }
        _ => Reply::text(405, "method not allowed"),
    }
}

/// Refuses a config from the API that adds program-running sources or changes the sections
/// that decide which programs run (see `corecast::policy`). The file on disk is the
/// reference: what a person wrote there stays writable.
fn check_config_change(path: &std::path::Path, text: &str, allow_exec: bool) -> Result<(), Reply> {
    let origin = path.display().to_string();
    let new =
        corecast::config::parse(text, &origin).map_err(|e| Reply::text(400, e.to_string()))?;
    // A missing or broken file protects nothing: compare with the defaults then.
    let current = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| corecast::config::parse(&t, &origin).ok())
        .unwrap_or_default();
    corecast::policy::check_api_config(&current, &new, allow_exec).map_err(|e| {
        warn!(path = %origin, error = %e, "config change through the API refused");
        Reply::text(e.status(), e.to_string())
    })
}

/// The current config as YAML; only a missing file reads as empty (any other error must not
/// turn into a rewrite that loses the file's content).
fn read_config_value(path: &std::path::Path) -> Result<serde_yaml_ng::Value, String> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => serde_yaml_ng::from_str(&t)
            .map_err(|e| format!("current config {}: {e}", path.display())),
        Ok(_) => Ok(serde_yaml_ng::Value::Mapping(Default::default())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(serde_yaml_ng::Value::Mapping(Default::default()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Shards answer the API in parallel: config read-modify-write cycles take turns.
static CONFIG_WRITE: std::sync::Mutex<()> = std::sync::Mutex::new(());
static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Recursive mapping merge; anything else replaces (go2rtc's PATCH).
fn merge(into: &mut serde_yaml_ng::Value, patch: serde_yaml_ng::Value) {
    use serde_yaml_ng::Value;
    match (into, patch) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(old) if old.is_mapping() && v.is_mapping() => merge(old, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Sets (or with `None` removes) the value at `keys` in the config file.
fn patch_config(keys: &[&str], value: Option<serde_yaml_ng::Value>) -> Result<(), String> {
    use serde_yaml_ng::Value;
    let _turn = CONFIG_WRITE.lock().unwrap_or_else(|e| e.into_inner());
    let path = config_path();
    let mut root = read_config_value(&path)?;
    let mut node = &mut root;
    for k in &keys[..keys.len() - 1] {
        if !node.is_mapping() {
            *node = Value::Mapping(Default::default());
        }
        let Value::Mapping(m) = node else {
            unreachable!("made a mapping above")
        };
        let key = Value::String(k.to_string());
        if !m.get(&key).is_some_and(Value::is_mapping) {
            if value.is_none() {
                return Ok(());
            }
            m.insert(key.clone(), Value::Mapping(Default::default()));
        }
        node = m.get_mut(&key).expect("inserted above");
    }
    let Value::Mapping(m) = node else {
        return Err("config: not a mapping".into());
    };
    let last = Value::String(keys[keys.len() - 1].to_string());
    match value {
        Some(v) => {
            m.insert(last, v);
        }
        None => {
            m.remove(&last);
        }
    }
    let text = serde_yaml_ng::to_string(&root).map_err(|e| e.to_string())?;
    write_config(&path, &text)
}

/// Validates `text` as a corecast config and replaces the file with it atomically.
fn write_config(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    corecast::config::parse(text, &path.display().to_string()).map_err(|e| e.to_string())?;
    // A symlinked config is written through to its target.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let tmp = path.with_extension(format!(
        "yaml.{}.{}.tmp",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        // Keep the old file's permissions (it may hold camera passwords).
        if let Ok(meta) = std::fs::metadata(&path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    info!(path = %path.display(), "config written through the API");
    Ok(())
}

/// `/metrics`: Prometheus text format.
pub fn metrics(shard: &Shard) -> Reply {
    let reg = &shard.registry;
    let mut snap = MetricsSnapshot::default();
    {
        let g = reg.lock();
        for (key, e) in &g.outputs {
            if e.producer.is_some() {
                snap.muxers.push((key.stream.clone(), key.variant.tag()));
            }
        }
        for (name, e) in &g.streams {
            if e.helper_of.is_some() {
                continue;
            }
            let (bytes_in, packets_in) = e.producer.as_ref().map_or((0, 0), |p| {
                (p.stats.bytes.load(Relaxed), p.stats.packets.load(Relaxed))
            });
            snap.streams.push(StreamRow {
                name: name.clone(),
                bytes_in,
                packets_in,
                viewers: e.consumers.len(),
                bytes_out: e.closed_bytes_out
                    + e.consumers
                        .iter()
                        .map(|c| c.stats.bytes.load(Relaxed))
                        .sum::<u64>(),
                skipped: e.closed_skipped
                    + e.consumers
                        .iter()
                        .map(|c| c.stats.skipped_packets.load(Relaxed))
                        .sum::<u64>(),
                online: e.producer.is_some(),
            });
        }
    }
    for s in &reg.shards {
        snap.connections[0] += s.connections.load(Relaxed);
        snap.connections[1] += s.http_connections.load(Relaxed);
        snap.connections[2] += s.ws_connections.load(Relaxed);
        snap.shards.push(ShardRow {
            streams_owned: s.streams_owned.load(Relaxed),
            viewers: s.viewers.load(Relaxed),
            relayed_packets: s.relayed_packets.load(Relaxed),
            relay_dropped: s.relay_dropped.load(Relaxed),
            muxers: s.muxers.load(Relaxed),
            loop_permille: s.loop_permille.load(Relaxed),
        });
    }
    let mut body = corecast::api::metrics_text(&snap);
    crate::muxers::snapshot::metrics(&mut body);
    crate::egress::webrtc::metrics(&mut body);
    Reply {
        status: 200,
        ctype: "text/plain; version=0.0.4; charset=utf-8",
        body: body.into_bytes(),
    }
}

/// Samples the shard's loop utilisation once a second (glommio's stats reset on read).
pub async fn sample_loop_utilization(shard: Rc<Shard>) {
    let mut last = std::time::Instant::now();
    let _ = glommio::executor().executor_stats();
    loop {
        glommio::timer::sleep(std::time::Duration::from_secs(1)).await;
        let busy = glommio::executor().executor_stats().total_runtime();
        let wall = last.elapsed();
        last = std::time::Instant::now();
        let permille = (busy.as_micros() * 1000 / wall.as_micros().max(1)).min(1000) as u64;
        shard.registry.shards[shard.id]
            .loop_permille
            .store(permille, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_recursive() {
        let mut a: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("streams:\n  a: rtsp://x\napi:\n  listen: ':1984'\n").unwrap();
        let b: serde_yaml_ng::Value = serde_yaml_ng::from_str("streams:\n  b: rtsp://y\n").unwrap();
        merge(&mut a, b);
        let s = serde_yaml_ng::to_string(&a).unwrap();
        assert!(s.contains("a: rtsp://x") && s.contains("b: rtsp://y") && s.contains("listen"));
    }

    #[test]
    fn sources_are_checked() {
        assert!(check_source("rtsp://cam/1", false).is_ok());
        assert!(check_source("ffmpeg:rtsp://cam#video=h264", false).is_ok());
        assert!(check_source("http://x", false).is_ok());
        assert!(check_source("gopher://x", false).is_err());
        assert!(check_source("rtsp://a b", true).is_err());
        assert!(check_source("exec:/bin/true", false).is_err());
        assert!(check_source("exec:/bin/true", true).is_ok());
        assert!(
            valid_name("cam_1") && !valid_name("") && !valid_name("a b") && !valid_name("a\0b")
        );
    }
}

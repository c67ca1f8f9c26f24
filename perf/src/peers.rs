//! The servers under test: corecast (release binary with a generated config), the
//! GStreamer gst-rtsp-server relay, our raw-send floor, or an already running process.

use crate::publisher::PubTarget;
use crate::util;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    Corecast,
    Gst,
    Floor,
}

impl PeerKind {
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Corecast => "corecast",
            PeerKind::Gst => "gst-rtsp-server",
            PeerKind::Floor => "raw-floor",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PeerOpts {
    pub corecast_bin: PathBuf,
    /// corecast shards / floor threads (0 = one per core).
    pub threads: usize,
    pub python: String,
    pub gst_script: PathBuf,
    pub log_dir: PathBuf,
    /// corecast: extra `streams:` entries (name, source URL), e.g. cameras to pull.
    pub pull_streams: Vec<(String, String)>,
    /// corecast: keep the pull streams connected with no viewer (`preload:`).
    pub preload: bool,
    /// floor: serve unannounced numbered paths from PREFIX{N % COUNT} (camera farm).
    pub alias: Option<(String, usize)>,
    /// floor: write viewers once per this many ms (0 = per publisher read).
    pub floor_tick_ms: u64,
    /// floor: pull (base URL, prefix, count) cameras at start, as corecast pulls them.
    pub floor_pull: Option<(String, String, usize)>,
    /// corecast: `fanout: egress_tick_us` (None: the server's default).
    pub egress_tick_us: Option<u64>,
    /// corecast: `fanout: mux_interval_ms` (None: the server's default).
    pub mux_interval_ms: Option<u64>,
    /// corecast: `fanout: progressive_interval_ms` (None: the server's default).
    pub progressive_interval_ms: Option<u64>,
    /// corecast: `fanout: audio_hold_ms` (None: the server's default).
    pub audio_hold_ms: Option<u64>,
}

/// A server the harness measures.
pub struct Server {
    pub name: String,
    pub pid: u32,
    pub rtsp: SocketAddr,
    pub api: Option<SocketAddr>,
    /// gst relay: stream i takes plain RTP on `raw_udp_base + 2i`.
    pub raw_udp_base: Option<u16>,
    /// Stream names, in publisher order (the relay needs them at start).
    pub streams: Vec<String>,
    pub threads: usize,
    pub log: Option<PathBuf>,
    child: Option<Child>,
}

impl Server {
    pub fn url(&self, stream: &str) -> String {
        format!("rtsp://{}/{}", self.rtsp, stream)
    }

    /// Where publisher `i` sends stream `name`.
    pub fn publish_target(&self, i: usize, name: &str, udp: bool) -> PubTarget {
        match self.raw_udp_base {
            Some(base) => {
                PubTarget::RawUdp(SocketAddr::from(([127, 0, 0, 1], base + 2 * i as u16)))
            }
            None => PubTarget::Rtsp {
                url: self.url(name),
                udp,
            },
        }
    }

    /// An already running server (not stopped by us).
    pub fn attach(
        pid: u32,
        rtsp: SocketAddr,
        api: Option<SocketAddr>,
        streams: Vec<String>,
    ) -> Self {
        Server {
            name: format!("pid {pid}"),
            pid,
            rtsp,
            api,
            raw_udp_base: None,
            streams,
            threads: 0,
            log: None,
            child: None,
        }
    }

    pub fn alive(&self) -> bool {
        util::pid_alive(self.pid)
    }

    /// Last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let Some(p) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn start(kind: PeerKind, opts: &PeerOpts, streams: &[String]) -> Result<Server, String> {
    std::fs::create_dir_all(&opts.log_dir).map_err(|e| e.to_string())?;
    let threads = if opts.threads == 0 {
        util::cores()
    } else {
        opts.threads
    };
    let port = util::free_tcp_port().map_err(|e| e.to_string())?;
    let rtsp = SocketAddr::from(([127, 0, 0, 1], port));
    let log = opts.log_dir.join(format!("{}-{}.log", kind.name(), port));
    let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let logf2 = logf.try_clone().map_err(|e| e.to_string())?;
    let mut api = None;
    let mut raw_udp_base = None;
    let mut cmd = match kind {
        PeerKind::Corecast => {
            let api_port = util::free_tcp_port().map_err(|e| e.to_string())?;
            let rtp = util::free_udp_range(2 * threads as u16).map_err(|e| e.to_string())?;
            api = Some(SocketAddr::from(([127, 0, 0, 1], api_port)));
            // WebRTC viewers (`--transport webrtc`): a loopback host candidate.
            let webrtc_port = util::free_tcp_port().map_err(|e| e.to_string())?;
            // `demo:` declared publish-only turns the built-in demo stream off, so the
            // server's CPU is spent on the benchmark streams only.
            let mut pulls = String::new();
            for (name, url) in &opts.pull_streams {
                pulls.push_str(&format!("  {name}: {url}\n"));
            }
            if opts.preload && !opts.pull_streams.is_empty() {
                pulls.push_str("preload:\n");
                for (name, _) in &opts.pull_streams {
                    pulls.push_str(&format!("  {name}:\n"));
                }
            }
            let config = format!(
                "streams:\n  demo:\n{pulls}rtsp:\n  listen: \"127.0.0.1:{port}\"\n  rtp_port: {rtp}\napi:\n  listen: \"127.0.0.1:{api_port}\"\nwebrtc:\n  listen: \"127.0.0.1:{webrtc_port}\"\n  filters:\n    loopback: true\nshards: {threads}\nlog:\n  level: warn\n"
            );
            let mut fanout = String::new();
            if let Some(us) = opts.egress_tick_us {
                fanout.push_str(&format!("  egress_tick_us: {us}\n"));
            }
            if let Some(ms) = opts.mux_interval_ms {
                fanout.push_str(&format!("  mux_interval_ms: {ms}\n"));
            }
            if let Some(ms) = opts.progressive_interval_ms {
                fanout.push_str(&format!("  progressive_interval_ms: {ms}\n"));
            }
            if let Some(ms) = opts.audio_hold_ms {
                fanout.push_str(&format!("  audio_hold_ms: {ms}\n"));
            }
            let config = if fanout.is_empty() {
                config
            } else {
                format!("{config}fanout:\n{fanout}")
            };
            let cfg_path = opts.log_dir.join(format!("corecast-{port}.yaml"));
            std::fs::write(&cfg_path, config).map_err(|e| e.to_string())?;
            if !opts.corecast_bin.exists() {
                return Err(format!(
                    "{} not found: build it with `cargo build --release -p corecast-shards`",
                    opts.corecast_bin.display()
                ));
            }
            let mut c = Command::new(&opts.corecast_bin);
            c.arg("-c").arg(&cfg_path);
            c
        }
        PeerKind::Floor => {
            let udp = util::free_udp_range(2 * threads as u16).map_err(|e| e.to_string())?;
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut c = Command::new(exe);
            c.arg("floor")
                .arg("--listen")
                .arg(rtsp.to_string())
                .arg("--threads")
                .arg(threads.to_string())
                .arg("--udp-port")
                .arg(udp.to_string());
            if opts.floor_tick_ms > 0 {
                c.arg("--tick-ms").arg(opts.floor_tick_ms.to_string());
            }
            if let Some((prefix, count)) = &opts.alias {
                c.arg("--alias").arg(format!("{prefix}:{count}"));
            }
            if let Some((base, prefix, count)) = &opts.floor_pull {
                c.arg("--pull-from")
                    .arg(base)
                    .arg("--pull")
                    .arg(format!("{prefix}:{count}"));
            }
            c
        }
        PeerKind::Gst => {
            let base =
                util::free_udp_range(2 * streams.len().max(1) as u16).map_err(|e| e.to_string())?;
            raw_udp_base = Some(base);
            if !opts.gst_script.exists() {
                return Err(format!("{} not found", opts.gst_script.display()));
            }
            let mut c = Command::new(&opts.python);
            c.arg(&opts.gst_script)
                .arg("--port")
                .arg(port.to_string())
                .arg("--udp-base")
                .arg(base.to_string())
                .arg("--streams")
                .arg(streams.join(","));
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(logf))
        .stderr(Stdio::from(logf2));
    // No server outlives the harness, whatever way it ends.
    crate::ffpub::kill_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", kind.name()))?;
    let mut server = Server {
        name: kind.name().to_string(),
        pid: child.id(),
        rtsp,
        api,
        raw_udp_base,
        streams: streams.to_vec(),
        // gst-rtsp-server has no shard setting: its threads are its own business.
        threads: if kind == PeerKind::Gst { 0 } else { threads },
        log: Some(log),
        child: Some(child),
    };
    if !util::wait_listening(rtsp, Duration::from_secs(15)) || !server.alive() {
        let tail = server.log_tail();
        server.stop();
        return Err(format!(
            "{} did not start listening on {rtsp}:\n{tail}",
            kind.name()
        ));
    }
    Ok(server)
}

/// Totals from corecast's `GET /api/streams`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ApiTotals {
    pub consumers: u64,
    pub bytes_send: u64,
    pub packets_send: u64,
    pub skips: u64,
    pub skipped_packets: u64,
}

pub fn api_totals(api: SocketAddr) -> Result<ApiTotals, String> {
    let mut s =
        TcpStream::connect_timeout(&api, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET /api/streams HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&body);
    let (head, json) = text.split_once("\r\n\r\n").ok_or("bad HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("API: {}", head.lines().next().unwrap_or_default()));
    }
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut t = ApiTotals::default();
    for stream in v.as_object().into_iter().flat_map(|o| o.values()) {
        for c in stream["consumers"].as_array().into_iter().flatten() {
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            t.consumers += 1;
            t.bytes_send += n("bytes_send");
            t.packets_send += n("packets_send");
            t.skips += n("skips");
            t.skipped_packets += n("skipped_packets");
        }
    }
    Ok(t)
}

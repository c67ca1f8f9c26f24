//! corecast-perf: load generator and side-by-side benchmark harness for corecast.
//!
//! Subcommands: `publish` (push streams), `view` (N viewers of a URL), `swarm` (P
//! publishers × V viewers against a server it starts or attaches to), `soak` (viewers join
//! and leave while the server's RSS is sampled), `compare` (the same swarm against
//! corecast, gst-rtsp-server and the raw-send floor, in turns), and `floor` (the raw-send
//! floor server itself). See perf/README.md.

mod client;
mod compare;
mod ffpub;
mod floor;
mod frames;
mod hist;
mod mp4view;
mod nvr;
mod peers;
mod procstat;
mod publisher;
mod rtcview;
mod seq;
mod source;
mod swarm;
mod util;
mod viewer;

use clap::{Args, Parser, Subcommand, ValueEnum};
use peers::{PeerKind, PeerOpts, Server};
use publisher::{PubSpec, PubTarget, Publishers};
use source::SourceSpec;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use swarm::SwarmParams;
use viewer::{Churn, Transport, ViewConfig, Viewers};

#[derive(Parser)]
#[command(version, about = "Load generator and benchmark harness for corecast")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Push stream(s) over RTSP (ANNOUNCE/RECORD) at real-time rate, looped.
    Publish(PublishArgs),
    /// N RTSP viewers of a URL for a fixed duration.
    View(ViewArgs),
    /// P publishers x V viewers each against one server; prints a table and a JSON line.
    Swarm(SwarmArgs),
    /// Viewers join and leave continuously while the server's RSS is sampled.
    Soak(SoakArgs),
    /// The same swarm against corecast and peer servers, in turns; prints ratios.
    Compare(CompareArgs),
    /// Run the raw-send floor server (used by `compare`; runnable alone).
    Floor(FloorArgs),
    /// N cameras (pulled from a camera farm, or published by ffmpeg) x K consumers each,
    /// corecast and the floor in turns.
    Nvr(NvrArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum SourceKind {
    /// RTP whose payload carries its send time (latency without decoding).
    Synthetic,
    /// The repo's demo clip (H.264 + AAC), looped.
    Demo,
    /// An Annex-B H.264 file (--file), looped at --fps.
    File,
}

#[derive(Args, Clone)]
struct SourceArgs {
    #[arg(long, value_enum, default_value = "synthetic")]
    source: SourceKind,
    /// Annex-B H.264 file for --source file.
    #[arg(long)]
    file: Option<String>,
    /// Synthetic bitrate in bit/s (suffixes k, M accepted).
    #[arg(long, default_value = "1M", value_parser = parse_rate)]
    bitrate: u64,
    /// RTP packet size in bytes, header included (synthetic: exact; clips: the MTU).
    #[arg(long, default_value_t = 1200)]
    packet_size: usize,
    /// Frames per second (synthetic bursts; file pacing).
    #[arg(long, default_value_t = 25)]
    fps: u32,
    /// A keyframe every N frames (default: 25 for synthetic, 2 s for --publisher ffmpeg).
    #[arg(long)]
    gop: Option<u32>,
    /// Demo clip: video only (no AAC track).
    #[arg(long)]
    no_audio: bool,
    /// Who publishes: the harness (synthetic/demo/file, see --source) or ffmpeg
    /// processes looping a generated H.264 + AAC clip (`-re -c copy -f rtsp`, packet by
    /// packet, like a camera); the clip takes --bitrate, --fps, --gop.
    #[arg(long, value_enum, default_value = "synthetic")]
    publisher: PublisherKind,
    /// Where generated clips are cached.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/perf-clips"))]
    clip_dir: PathBuf,
    /// Clip picture size.
    #[arg(long, default_value = "640x360")]
    clip_size: String,
    /// Clip length before it loops, seconds.
    #[arg(long, default_value_t = 20)]
    clip_secs: u32,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum PublisherKind {
    /// corecast-perf's own publisher (RTSP ANNOUNCE/RECORD, per-frame bursts).
    Synthetic,
    /// ffmpeg -re -stream_loop -1 -i clip -c copy -f rtsp -rtsp_transport tcp.
    Ffmpeg,
}

impl SourceArgs {
    fn clip(&self) -> Result<Option<ffpub::ClipSpec>, String> {
        if self.publisher != PublisherKind::Ffmpeg {
            return Ok(None);
        }
        let (w, h) = self
            .clip_size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
            .ok_or_else(|| format!("bad --clip-size {:?} (WxH)", self.clip_size))?;
        if self.fps == 0 || self.fps > 120 || self.bitrate < 10_000 {
            return Err("clip: --fps 1..120 and --bitrate >= 10k".into());
        }
        Ok(Some(ffpub::ClipSpec {
            bitrate: self.bitrate,
            fps: self.fps,
            gop: self.gop.unwrap_or(2 * self.fps).max(1),
            width: w,
            height: h,
            secs: self.clip_secs.max(2),
            dir: self.clip_dir.clone(),
        }))
    }

    fn spec(&self) -> Result<SourceSpec, String> {
        Ok(match self.source {
            SourceKind::Synthetic => SourceSpec::Synthetic {
                bitrate: self.bitrate,
                packet_size: self.packet_size,
                fps: self.fps,
                gop: self.gop.unwrap_or(25),
            },
            SourceKind::Demo => SourceSpec::Demo {
                audio: !self.no_audio,
                packet_size: self.packet_size,
            },
            SourceKind::File => SourceSpec::File {
                path: self.file.clone().ok_or("--source file needs --file PATH")?,
                fps: self.fps,
                packet_size: self.packet_size,
            },
        })
    }
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k') | Some('K') => (&s[..s.len() - 1], 1e3),
        Some('m') | Some('M') => (&s[..s.len() - 1], 1e6),
        Some('g') | Some('G') => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    num.parse::<f64>()
        .map(|v| (v * mult) as u64)
        .map_err(|e| format!("bad rate {s:?}: {e}"))
}

#[derive(Args)]
struct PublishArgs {
    /// rtsp://host:port/name (with --count > 1, the index is appended to the name).
    #[arg(long)]
    url: Option<String>,
    /// Send plain RTP datagrams to this address instead of RTSP (one track).
    #[arg(long)]
    raw_udp: Option<SocketAddr>,
    /// Media over UDP (default: interleaved on the RTSP connection).
    #[arg(long)]
    udp: bool,
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Seconds to run (0 = until killed).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    #[command(flatten)]
    src: SourceArgs,
}

#[derive(Args)]
struct ViewArgs {
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 1)]
    viewers: usize,
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// Measurement seconds (after ramp-up and warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long)]
    ramp_secs: Option<f64>,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Viewer threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Also report this process's CPU and RSS (the server).
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    json_only: bool,
}

#[derive(Args, Clone)]
struct ServerArgs {
    /// Server to start: corecast (release binary, generated config), gst (gst_relay.py)
    /// or floor (our raw-send floor).
    #[arg(long, value_enum, default_value = "corecast")]
    peer: PeerKind,
    #[arg(long, default_value = "target/release/corecast")]
    server_bin: PathBuf,
    /// Attach to a running server instead (needs --rtsp).
    #[arg(long)]
    server_pid: Option<u32>,
    /// RTSP address of the attached server.
    #[arg(long)]
    rtsp: Option<SocketAddr>,
    /// API address of the attached corecast (for skip counters).
    #[arg(long)]
    api: Option<SocketAddr>,
    /// corecast shards / floor threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long, default_value = "/usr/bin/python3")]
    python: String,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/gst_relay.py"))]
    gst_script: PathBuf,
    /// Where generated configs and server logs go.
    #[arg(long, default_value = "/tmp/corecast-perf")]
    log_dir: PathBuf,
    /// The floor writes each viewer once per this many ms (0: once per read from the
    /// publisher, which with ffmpeg means about once per packet).
    #[arg(long, default_value_t = 0)]
    floor_tick_ms: u64,
    /// corecast: `fanout: egress_tick_us` in its generated config (default: the server's
    /// own default), to measure what a longer tick saves and costs in latency.
    #[arg(long)]
    egress_tick_us: Option<u64>,
    /// corecast: `fanout: mux_interval_ms` in its generated config (default: the server's
    /// own, 0), to measure what fewer `stream.mp4` writes save and cost in latency.
    #[arg(long)]
    mux_interval_ms: Option<u64>,
    /// corecast: `fanout: progressive_interval_ms` in its generated config (default: the
    /// server's own, 80; 0 writes `stream.mp4` viewers per frame, as go2rtc).
    #[arg(long)]
    progressive_interval_ms: Option<u64>,
    /// corecast: `fanout: audio_hold_ms` in its generated config (default: the server's
    /// own), to measure what holding audio for the next video packet saves.
    #[arg(long)]
    audio_hold_ms: Option<u64>,
}

impl ServerArgs {
    fn opts(&self) -> PeerOpts {
        PeerOpts {
            corecast_bin: self.server_bin.clone(),
            threads: self.threads,
            python: self.python.clone(),
            gst_script: self.gst_script.clone(),
            log_dir: self.log_dir.clone(),
            pull_streams: Vec::new(),
            preload: false,
            alias: None,
            floor_tick_ms: self.floor_tick_ms,
            floor_pull: None,
            egress_tick_us: self.egress_tick_us,
            mux_interval_ms: self.mux_interval_ms,
            progressive_interval_ms: self.progressive_interval_ms,
            audio_hold_ms: self.audio_hold_ms,
        }
    }

    fn server(&self, streams: &[String]) -> Result<Server, String> {
        match self.server_pid {
            Some(pid) => {
                let rtsp = self.rtsp.ok_or("--server-pid needs --rtsp HOST:PORT")?;
                if !util::pid_alive(pid) {
                    return Err(format!("no process {pid}"));
                }
                Ok(Server::attach(pid, rtsp, self.api, streams.to_vec()))
            }
            None => peers::start(self.peer, &self.opts(), streams),
        }
    }
}

#[derive(Args, Clone)]
struct ScenarioArgs {
    /// Streams (one publisher each).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Viewers per stream (nvr: consumers per camera).
    #[arg(long, visible_alias = "consumers", default_value_t = 100)]
    viewers: usize,
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// Publish over RTSP/UDP instead of interleaved TCP.
    #[arg(long)]
    publish_udp: bool,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds over which viewers connect (default: 1 s per 250 viewers, at least 1).
    #[arg(long)]
    ramp_secs: Option<f64>,
    /// Seconds between the end of the ramp and the window.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Viewer threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// GET_PARAMETER keepalive interval (0 = none).
    #[arg(long, default_value_t = 20.0)]
    keepalive: f64,
    #[arg(long, default_value = "perf")]
    stream_prefix: String,
    #[arg(long)]
    json_only: bool,
    /// Viewers send PAUSE right after PLAY: measures memory per idle connected viewer.
    #[arg(long)]
    idle: bool,
    /// WebRTC viewers count SRTP packets from their clear RTP headers without decrypting
    /// them (a lighter harness when it, not the server, is the bottleneck).
    #[arg(long)]
    no_srtp_decrypt: bool,
    /// Seconds the streams run before the baseline RSS (so that the server's stream
    /// buffers are full; corecast keeps `ring_size` packets per stream). Default: 0 for
    /// swarm/compare, 45 for soak.
    #[arg(long)]
    prefill: Option<f64>,
    /// Every viewer's window figures (packets, bytes, frames, losses) in the JSON.
    #[arg(long)]
    per_viewer: bool,
    #[command(flatten)]
    src: SourceArgs,
}

impl ScenarioArgs {
    fn params(&self, log_dir: &std::path::Path) -> Result<SwarmParams, String> {
        let total = self.publishers * self.viewers;
        if matches!(self.transport, Transport::HttpMp4 | Transport::Webrtc)
            && self.src.publisher == PublisherKind::Synthetic
            && self.src.source == SourceKind::Synthetic
        {
            // The muxer needs real H.264 parameter sets, which synthetic payloads lack.
            return Err(
                "stream.mp4 and WebRTC viewers need real H.264: use --publisher ffmpeg or --source demo"
                    .into(),
            );
        }
        Ok(SwarmParams {
            publishers: self.publishers,
            viewers_per_stream: self.viewers,
            transport: self.transport,
            publish_udp: self.publish_udp,
            source: self.src.spec()?,
            ramp_secs: self
                .ramp_secs
                .unwrap_or_else(|| (total as f64 / 250.0).max(1.0)),
            warmup_secs: self.warmup,
            duration_secs: self.duration,
            workers: self.workers.unwrap_or_else(util::cores),
            connect_timeout_secs: self.connect_timeout,
            keepalive_secs: self.keepalive,
            stream_prefix: self.stream_prefix.clone(),
            churn: None,
            sample_secs: 5.0,
            settle_secs: 5.0,
            idle: self.idle,
            srtp_decrypt: !self.no_srtp_decrypt,
            prefill_secs: self.prefill.unwrap_or(0.0),
            ffmpeg_clip: self.src.clip()?,
            log_dir: log_dir.to_path_buf(),
            per_viewer: self.per_viewer,
            external_sources: false,
            restart_publishers_secs: 0.0,
        })
    }
}

#[derive(Args)]
struct SwarmArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    scenario: ScenarioArgs,
}

#[derive(Args)]
struct SoakArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Shortest viewer lifetime, seconds.
    #[arg(long, default_value_t = 5.0)]
    life_min: f64,
    /// Longest viewer lifetime, seconds.
    #[arg(long, default_value_t = 30.0)]
    life_max: f64,
    /// A leaving viewer is replaced after a random delay up to this, seconds.
    #[arg(long, default_value_t = 2.0)]
    rejoin_delay: f64,
    /// RSS sampling interval, seconds.
    #[arg(long, default_value_t = 5.0)]
    sample_secs: f64,
    /// Keep sampling RSS this long after all viewers left, seconds.
    #[arg(long, default_value_t = 30.0)]
    settle_secs: f64,
    /// Restart every publisher this often, seconds (`--publisher ffmpeg` only; 0: never).
    #[arg(long, default_value_t = 0.0)]
    restart_publishers_secs: f64,
}

#[derive(Args)]
struct CompareArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Servers to compare, in the order they run each round.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "corecast,gst,floor"
    )]
    peers: Vec<PeerKind>,
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

#[derive(Args)]
struct NvrArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Cameras (streams).
    #[arg(long, default_value_t = 100)]
    cameras: usize,
    /// pull: corecast pulls every camera over RTSP from a camera farm; publish: one ffmpeg
    /// publisher per camera pushes into the server.
    #[arg(long, value_enum, default_value = "pull")]
    camera_kind: nvr::CameraKind,
    /// ffmpeg publishers feeding the camera farm (camera I is source I % F).
    #[arg(long, default_value_t = 4)]
    farm_sources: usize,
    /// corecast keeps every camera pulled with no consumer (`preload:`).
    #[arg(long)]
    preload: bool,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "corecast,floor"
    )]
    peers: Vec<PeerKind>,
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

#[derive(Args)]
struct FloorArgs {
    #[arg(long, default_value = "127.0.0.1:8556")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Thread i uses UDP ports udp_port+2i and +2i+1.
    #[arg(long, default_value_t = 18_600)]
    udp_port: u16,
    /// Camera farm: PREFIX:COUNT serves any path ending in a number N that nobody
    /// announced from the announced stream PREFIX{N % COUNT} (`nvr` uses it).
    #[arg(long, value_parser = parse_alias)]
    alias: Option<(String, usize)>,
    /// Hold what publishers send and write it to viewers once per tick (0: per read from
    /// the publisher).
    #[arg(long, default_value_t = 0)]
    tick_ms: u64,
    /// Pull PREFIX:COUNT cameras (`PREFIX0`..) from `--pull-from` at start and serve them
    /// as if published (the floor of a server that pulls its cameras).
    #[arg(long, value_parser = parse_alias, requires = "pull_from")]
    pull: Option<(String, usize)>,
    /// RTSP base URL the `--pull` cameras come from, e.g. rtsp://127.0.0.1:8554
    #[arg(long)]
    pull_from: Option<String>,
}

fn parse_alias(s: &str) -> Result<(String, usize), String> {
    let (p, n) = s.rsplit_once(':').ok_or("PREFIX:COUNT")?;
    let n: usize = n.parse().map_err(|e| format!("{n}: {e}"))?;
    if n == 0 {
        return Err("COUNT must be at least 1".into());
    }
    Ok((p.to_string(), n))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Publish(a) => cmd_publish(a),
        Cmd::View(a) => cmd_view(a),
        Cmd::Swarm(a) => cmd_swarm(a),
        Cmd::Soak(a) => cmd_soak(a),
        Cmd::Compare(a) => cmd_compare(a),
        Cmd::Nvr(a) => cmd_nvr(a),
        Cmd::Floor(a) => floor::run(
            a.listen,
            if a.threads == 0 {
                util::cores()
            } else {
                a.threads
            },
            a.udp_port,
            a.alias,
            a.tick_ms,
            a.pull
                .zip(a.pull_from)
                .map(|((prefix, count), base)| floor::Pull {
                    base,
                    prefix,
                    count,
                }),
        ),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corecast-perf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn nofile_note(needed: usize) {
    let (lim, ok) = util::raise_nofile(65_536);
    if !ok && needed as u64 + 64 > lim {
        eprintln!(
            "corecast-perf: warning: open-files limit is {lim} and cannot be raised (hard limit); {needed} sockets are needed"
        );
    }
}

fn cmd_publish(a: PublishArgs) -> Result<(), String> {
    if let Some(clip) = a.src.clip()? {
        return publish_ffmpeg(&a, &clip);
    }
    let spec = a.src.spec()?;
    let specs: Vec<PubSpec> = (0..a.count.max(1))
        .map(|i| {
            let target = match (&a.raw_udp, &a.url) {
                (Some(addr), _) => {
                    PubTarget::RawUdp(SocketAddr::new(addr.ip(), addr.port() + 2 * i as u16))
                }
                (None, Some(u)) => PubTarget::Rtsp {
                    url: if a.count > 1 {
                        format!("{u}{i}")
                    } else {
                        u.clone()
                    },
                    udp: a.udp,
                },
                (None, None) => PubTarget::Rtsp {
                    url: String::new(),
                    udp: false,
                },
            };
            PubSpec {
                target,
                source: spec.clone(),
                seed: util::now_ns() ^ (i as u64 + 1),
            }
        })
        .collect();
    if a.url.is_none() && a.raw_udp.is_none() {
        return Err("give --url rtsp://host:port/name or --raw-udp HOST:PORT".into());
    }
    let pubs = Publishers::start(specs)?;
    eprintln!(
        "publishing {} stream(s), nominal {:.3} Mbit/s in total",
        pubs.count, pubs.nominal_mbps
    );
    let start = Instant::now();
    let mut last = pubs.stats();
    let mut ticks = 0u64;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        ticks += 1;
        let done = a.duration > 0.0 && start.elapsed().as_secs_f64() >= a.duration;
        if !ticks.is_multiple_of(5) && !done {
            continue;
        }
        let s = pubs.stats();
        let dt = (ticks - 1) % 5 + 1;
        eprintln!(
            "t={:>5.0}s  {:>8.3} Mbit/s  {:>7.1} packets/s  late {} dropped {} errors {}",
            start.elapsed().as_secs_f64(),
            (s.bytes - last.bytes) as f64 * 8.0 / (dt as f64 * 1e6),
            (s.packets - last.packets) as f64 / dt as f64,
            s.late_bursts,
            s.dropped_bursts,
            s.errors
        );
        last = s;
        if done {
            break;
        }
    }
    let s = pubs.stop();
    println!("{}", serde_json::to_string(&s).unwrap_or_default());
    Ok(())
}

fn cmd_view(a: ViewArgs) -> Result<(), String> {
    let needed = a.viewers * if a.transport == Transport::Udp { 5 } else { 1 };
    nofile_note(needed);
    let ramp = a.ramp_secs.unwrap_or((a.viewers as f64 / 250.0).max(1.0));
    let v = Viewers::start(ViewConfig {
        urls: vec![a.url.clone()],
        viewers: a.viewers,
        transport: a.transport,
        workers: a.workers.unwrap_or_else(util::cores),
        ramp_secs: ramp,
        connect_timeout: Duration::from_secs(10),
        keepalive_secs: 20.0,
        churn: None,
        max_packet: 65_536,
        pause: false,
        srtp_decrypt: true,
    })?;
    v.wait_ramp(Duration::from_secs_f64(ramp + 20.0));
    std::thread::sleep(Duration::from_secs_f64(a.warmup));
    let s0 = a.server_pid.and_then(procstat::sample);
    let g0 = util::self_cpu();
    let t0 = Instant::now();
    v.set_phase(viewer::PHASE_MEASURE);
    std::thread::sleep(Duration::from_secs_f64(a.duration));
    v.set_phase(viewer::PHASE_END);
    let wall = t0.elapsed().as_secs_f64();
    let s1 = a.server_pid.and_then(procstat::sample);
    let g1 = util::self_cpu();
    let sh = v.shared.clone();
    let playing = sh.playing.load(std::sync::atomic::Ordering::Acquire);
    let rep = v.finish();
    let w = &rep.window;
    let lat = swarm::Percentiles::of(&rep.latency, 1e3);
    let out = serde_json::json!({
        "kind": "view",
        "url": a.url,
        "viewers": a.viewers,
        "transport": a.transport,
        "window_s": wall,
        "viewers_playing": playing,
        "connect_failures": sh.failures.load(std::sync::atomic::Ordering::Relaxed),
        "failure_reasons": rep.failures,
        "disconnects": sh.disconnects.load(std::sync::atomic::Ordering::Relaxed),
        "delivered_mbps": rep.bits_per_sec / 1e6,
        "delivered_pps": rep.packets_per_sec,
        "bytes": w.bytes,
        "packets": w.packets,
        "rtcp_packets": w.rtcp_packets,
        "lost_packets": w.lost(),
        "loss_pct": if w.expected > 0 { w.lost() as f64 * 100.0 / w.expected as f64 } else { 0.0 },
        "gaps": w.gaps,
        "duplicates": w.duplicates,
        "reordered": w.reordered,
        "latency_us": lat,
        "connect_ms": swarm::Percentiles::of(&rep.connect, 1e6),
        "gen_cpu_s": (g1.0 + g1.1) - (g0.0 + g0.1),
        "server_cpu_s": match (s0, s1) { (Some(a), Some(b)) => Some(b.cpu_s() - a.cpu_s()), _ => None },
        "server_rss_kib": s1.map(|s| s.rss_kib),
    });
    if !a.json_only {
        println!(
            "  {} viewers of {} ({:?}): playing {}, failures {}, {:.2} Mbit/s, {:.1} packets/s, loss {:.4} %, gaps {}, latency p50/p99/max us {:?}/{:?}/{:?}",
            a.viewers,
            a.url,
            a.transport,
            playing,
            out["connect_failures"],
            rep.bits_per_sec / 1e6,
            rep.packets_per_sec,
            out["loss_pct"].as_f64().unwrap_or(0.0),
            w.gaps,
            lat.p50,
            lat.p99,
            lat.max
        );
    }
    println!("{out}");
    Ok(())
}

fn cmd_swarm(a: SwarmArgs) -> Result<(), String> {
    let p = a.scenario.params(&a.server.log_dir)?;
    nofile_note(p.publishers * p.viewers_per_stream * 2);
    let mut server = a.server.server(&p.stream_names())?;
    let r = swarm::run(&server, &p);
    server.stop();
    let r = r?;
    if !a.scenario.json_only {
        print!("{}", swarm::table(&r));
    }
    println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
    Ok(())
}

fn cmd_soak(a: SoakArgs) -> Result<(), String> {
    let mut p = a.scenario.params(&a.server.log_dir)?;
    p.churn = Some(Churn {
        min_life_s: a.life_min,
        max_life_s: a.life_max.max(a.life_min),
        rejoin_delay_s: a.rejoin_delay,
    });
    p.sample_secs = a.sample_secs;
    p.settle_secs = a.settle_secs;
    p.restart_publishers_secs = a.restart_publishers_secs;
    p.prefill_secs = a.scenario.prefill.unwrap_or(45.0);
    nofile_note(p.publishers * p.viewers_per_stream * 2);
    let mut server = a.server.server(&p.stream_names())?;
    let r = swarm::soak(&server, &p);
    server.stop();
    let r = r?;
    if !a.scenario.json_only {
        print!("{}", swarm::soak_table(&r));
    }
    println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
    Ok(())
}

fn cmd_compare(a: CompareArgs) -> Result<(), String> {
    let p = a.scenario.params(&a.server.log_dir)?;
    nofile_note(p.publishers * p.viewers_per_stream * 2);
    let json_only = a.scenario.json_only;
    let c = compare::run(&a.peers, &a.server.opts(), &p, a.rounds, |r| {
        if !json_only {
            eprintln!(
                "  done: {:<16} {:.2} Mbit/s, loss {:.4} %, server CPU {:.1} % ({:.4} CPU-s/Gbit), p99 {:?} us",
                r.server, r.delivered_mbps, r.loss_pct, r.server_cpu_pct, r.server_cpu_s_per_gbit, r.latency_us.p99
            );
        }
    });
    if !json_only {
        print!("{}", compare::table(&c));
    }
    println!("{}", serde_json::to_string(&c).map_err(|e| e.to_string())?);
    if c.runs.is_empty() {
        return Err("no run succeeded".into());
    }
    Ok(())
}

fn cmd_nvr(mut a: NvrArgs) -> Result<(), String> {
    // Cameras are real publishers (ffmpeg), whatever --publisher says.
    a.scenario.src.publisher = PublisherKind::Ffmpeg;
    a.scenario.publishers = a.cameras.max(1);
    let p = a.scenario.params(&a.server.log_dir)?;
    nofile_note(a.cameras * (a.scenario.viewers + 1) * 2);
    let json_only = a.scenario.json_only;
    let n = nvr::NvrParams {
        cameras: a.cameras.max(1),
        kind: a.camera_kind,
        farm_sources: a.farm_sources,
        preload: a.preload,
    };
    let c = nvr::run(&a.peers, &a.server.opts(), &p, &n, a.rounds, |r| {
        if !json_only {
            eprintln!(
                "  done: {:<16} {:.2} Mbit/s, loss {:.4} %, server CPU {:.1} % ({:.4} CPU-s/Gbit), RSS {:.0} KiB per camera, frames/viewer {}..{}",
                r.server, r.delivered_mbps, r.loss_pct, r.server_cpu_pct, r.server_cpu_s_per_gbit,
                r.rss_per_stream_kib, r.per_viewer_frames_min, r.per_viewer_frames_max
            );
        }
    });
    if !json_only {
        print!("{}", compare::table(&c));
        for r in &c.runs {
            for n in &r.notes {
                println!("  note ({}): {n}", r.server);
            }
        }
    }
    println!("{}", serde_json::to_string(&c).map_err(|e| e.to_string())?);
    if c.runs.is_empty() {
        return Err("no run succeeded".into());
    }
    Ok(())
}

/// `publish --publisher ffmpeg`: one ffmpeg per URL until --duration (0 = until killed).
fn publish_ffmpeg(a: &PublishArgs, clip: &ffpub::ClipSpec) -> Result<(), String> {
    let u = a
        .url
        .as_ref()
        .ok_or("--publisher ffmpeg needs --url rtsp://host:port/name")?;
    let urls: Vec<String> = (0..a.count.max(1))
        .map(|i| {
            if a.count > 1 {
                format!("{u}{i}")
            } else {
                u.clone()
            }
        })
        .collect();
    let path = clip.ensure()?;
    let mut pubs = ffpub::FfPublishers::start(
        &urls,
        &path,
        std::path::Path::new("/tmp/corecast-perf"),
        Duration::from_secs(20),
    )?;
    eprintln!("publishing {} stream(s): {}", urls.len(), clip.describe());
    let start = Instant::now();
    let mut last = pubs.stats();
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let s = pubs.stats();
        eprintln!(
            "t={:>5.0}s  {:.1} frames/s per stream, {} of {} publishers running",
            start.elapsed().as_secs_f64(),
            (s.frames - last.frames) as f64 / 5.0 / urls.len() as f64,
            s.alive,
            urls.len()
        );
        last = s;
        if s.alive == 0 || (a.duration > 0.0 && start.elapsed().as_secs_f64() >= a.duration) {
            break;
        }
    }
    pubs.stop();
    println!("{}", serde_json::to_string(&last).unwrap_or_default());
    Ok(())
}

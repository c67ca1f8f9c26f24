//! Scenarios: P publishers × V viewers each, measured over a window; the soak variant with
//! viewers joining and leaving while the server's RSS is sampled.

use crate::ffpub::{ClipSpec, FfPublishers};
use crate::hist::Histogram;
use crate::peers::{self, ApiTotals, Server};
use crate::procstat::{self, Sample};
use crate::publisher::{PubSpec, PubStats, Publishers};
use crate::source::SourceSpec;
use crate::util::{self, secs};
use crate::viewer::{self, Churn, Transport, ViewConfig, ViewReport, Viewers};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct SwarmParams {
    pub publishers: usize,
    pub viewers_per_stream: usize,
    pub transport: Transport,
    pub publish_udp: bool,
    pub source: SourceSpec,
    pub ramp_secs: f64,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub workers: usize,
    pub connect_timeout_secs: f64,
    pub keepalive_secs: f64,
    pub stream_prefix: String,
    /// Soak only.
    pub churn: Option<Churn>,
    pub sample_secs: f64,
    pub settle_secs: f64,
    /// Viewers PAUSE right after PLAY (idle viewers).
    pub idle: bool,
    /// WebRTC viewers decrypt SRTP (else count from the clear RTP header).
    pub srtp_decrypt: bool,
    /// Seconds the publishers run before the baseline RSS is taken (lets the server's
    /// per-stream buffers fill, so that their growth is not counted against viewers).
    pub prefill_secs: f64,
    /// Real publishers: ffmpeg looping this clip (`-re -c copy -f rtsp`), one per stream,
    /// instead of the harness's synthetic publisher.
    pub ffmpeg_clip: Option<ClipSpec>,
    /// Where ffmpeg publishers write their logs and progress files.
    pub log_dir: std::path::PathBuf,
    /// Put every viewer's window figures (packets, frames, losses) in the JSON.
    pub per_viewer: bool,
    /// The streams exist on the server already (pulled cameras): start no publishers;
    /// `publishers` is then the number of streams.
    pub external_sources: bool,
    /// Soak only: restart every ffmpeg publisher this often (0: never).
    pub restart_publishers_secs: f64,
}

/// The publishers of a run: ours (synthetic/demo/file) or ffmpeg processes.
pub enum Pubs {
    Synthetic(Publishers),
    Ffmpeg(FfPublishers),
}

impl Pubs {
    pub fn stats(&mut self) -> PubStats {
        match self {
            Pubs::Synthetic(p) => p.stats(),
            Pubs::Ffmpeg(f) => {
                let s = f.stats();
                PubStats {
                    kind: "ffmpeg",
                    publishers: f.count(),
                    frames: s.frames,
                    bytes: s.bytes,
                    errors: (f.count() - s.alive) as u64,
                    ..PubStats::default()
                }
            }
        }
    }

    pub fn stop(mut self) -> PubStats {
        let s = self.stats();
        match self {
            Pubs::Synthetic(p) => p.stop(),
            Pubs::Ffmpeg(mut f) => {
                f.stop();
                s
            }
        }
    }
}

/// Starts the publishers of `names` on `server`: ffmpeg processes or the harness's own.
pub fn start_publishers(
    server: &Server,
    p: &SwarmParams,
    names: &[String],
) -> Result<Option<Pubs>, String> {
    if names.is_empty() || p.external_sources {
        return Ok(None);
    }
    if let Some(clip) = &p.ffmpeg_clip {
        if server.raw_udp_base.is_some() {
            return Err(format!(
                "--publisher ffmpeg publishes over RTSP; {} takes plain RTP (use corecast or floor)",
                server.name
            ));
        }
        if p.publish_udp {
            return Err("--publisher ffmpeg publishes over RTSP/TCP (drop --publish-udp)".into());
        }
        let path = clip.ensure()?;
        let urls: Vec<String> = names.iter().map(|n| server.url(n)).collect();
        let f = FfPublishers::start(&urls, &path, &p.log_dir, Duration::from_secs(20))
            .map_err(|e| format!("{e}\n{}", server.log_tail()))?;
        return Ok(Some(Pubs::Ffmpeg(f)));
    }
    let specs: Vec<PubSpec> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let target = server.publish_target(i, n, p.publish_udp);
            let source = if matches!(target, crate::publisher::PubTarget::RawUdp(_)) {
                p.source.video_only()
            } else {
                p.source.clone()
            };
            PubSpec {
                target,
                source,
                seed: util::now_ns() ^ ((i as u64 + 1) * 0x9E37_79B9),
            }
        })
        .collect();
    Publishers::start(specs)
        .map(|p| Some(Pubs::Synthetic(p)))
        .map_err(|e| format!("{e}\n{}", server.log_tail()))
}

impl SwarmParams {
    pub fn stream_names(&self) -> Vec<String> {
        (0..self.publishers)
            .map(|i| format!("{}{i}", self.stream_prefix))
            .collect()
    }

    pub fn publisher_kind(&self) -> &'static str {
        if self.ffmpeg_clip.is_some() {
            "ffmpeg"
        } else {
            "synthetic"
        }
    }

    fn describe_source(&self) -> String {
        if let Some(c) = &self.ffmpeg_clip {
            return c.describe();
        }
        match &self.source {
            SourceSpec::Synthetic {
                bitrate,
                packet_size,
                fps,
                ..
            } => format!(
                "synthetic {} kbit/s, {packet_size} B packets, {fps} fps",
                bitrate / 1000
            ),
            SourceSpec::Demo { audio, .. } => {
                format!("demo clip{}", if *audio { " + AAC" } else { "" })
            }
            SourceSpec::File { path, fps, .. } => format!("file {path} at {fps} fps"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Percentiles {
    pub samples: u64,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

impl Percentiles {
    /// `scale` divides the recorded values (ns → µs: 1000).
    pub fn of(h: &Histogram, scale: f64) -> Self {
        let f = |v: Option<u64>| v.map(|x| round2(x as f64 / scale));
        Percentiles {
            samples: h.count(),
            min: f(h.min()),
            p50: f(h.percentile(50.0)),
            p90: f(h.percentile(90.0)),
            p99: f(h.percentile(99.0)),
            p999: f(h.percentile(99.9)),
            max: f(h.max()),
            mean: h.mean().map(|m| round2(m / scale)),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SwarmResult {
    pub kind: &'static str,
    pub server: String,
    pub server_pid: u32,
    pub server_threads: usize,
    pub machine_cores: usize,
    pub publishers: usize,
    pub viewers_per_stream: usize,
    pub viewers: usize,
    pub transport: Transport,
    /// Viewers paused right after PLAY (`--idle`).
    pub idle: bool,
    pub publish_transport: &'static str,
    pub source: String,
    pub window_s: f64,
    pub viewers_playing: i64,
    pub connect_failures: u64,
    pub failure_reasons: BTreeMap<String, u64>,
    pub disconnects: u64,
    pub nominal_mbps_per_stream: f64,
    pub expected_mbps: f64,
    pub delivered_mbps: f64,
    pub delivered_pps: f64,
    pub loss_pct: f64,
    pub lost_packets: u64,
    pub gaps: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub latency_us: Percentiles,
    /// Synthetic packets older than the viewer's PLAY (ring backlog at join): not timed.
    pub backlog_packets: u64,
    pub connect_ms: Percentiles,
    pub per_viewer_pps_min: f64,
    pub per_viewer_pps_max: f64,
    pub starved_viewers: usize,
    pub server_cpu_s: f64,
    pub server_user_s: f64,
    pub server_sys_s: f64,
    pub server_cpu_pct: f64,
    pub server_cpu_s_per_gbit: f64,
    pub server_rss_baseline_kib: u64,
    /// RSS before any publisher connected (pulled cameras: before any viewer, the pulls
    /// starting on demand).
    pub server_rss_before_publishers_kib: u64,
    /// (RSS at the end of the window - RSS before publishers) / streams: what one stream
    /// with its viewers costs.
    pub rss_per_stream_kib: f64,
    pub server_rss_after_kib: u64,
    /// (RSS at the end of the window - RSS before viewers) / viewers playing. Includes
    /// whatever else grew meanwhile (stream rings filling up).
    pub rss_per_viewer_kib: f64,
    /// RSS a few seconds after all viewers left (publishers still running).
    pub server_rss_after_leave_kib: Option<u64>,
    /// (RSS at the end of the window - RSS after they left) / viewers: memory the viewers
    /// held and gave back.
    pub rss_per_viewer_released_kib: Option<f64>,
    pub gen_cpu_s: f64,
    pub gen_cpu_pct: f64,
    pub gen_cpu_s_per_gbit: f64,
    pub gen_viewer_threads_cpu_s: f64,
    pub gen_read_calls_per_s: f64,
    pub udp_rcvbuf_errors: Option<u64>,
    /// CPU seconds the rest of the machine used during the window (neither the server nor
    /// the generator): other people's builds on a shared machine show up here.
    pub other_cpu_s: Option<f64>,
    pub server_os_threads: u64,
    pub server_api: Option<ApiTotals>,
    pub publisher: PubStats,
    /// `synthetic` or `ffmpeg` (real publishers).
    pub publisher_kind: &'static str,
    /// ffmpeg publishers: video frames one stream's publisher sent during the window.
    pub publisher_frames_per_stream: Option<f64>,
    /// Video frames (RTP marker bits on the first track) per viewer in the window.
    pub per_viewer_frames_min: u64,
    pub per_viewer_frames_max: u64,
    /// Most packets any one viewer lost (sequence gaps) in the window.
    pub per_viewer_lost_max: u64,
    /// ffmpeg publishers: viewers that got fewer than 90 % of the frames sent.
    pub viewers_below_90pct_frames: Option<usize>,
    /// Every viewer's window (with `--per-viewer`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_viewer: Vec<viewer::ViewerWindow>,
    pub notes: Vec<String>,
}

#[derive(Clone, Copy)]
struct Probe {
    server: Sample,
    gen: (f64, f64),
    udp_err: Option<u64>,
    machine_busy: Option<f64>,
    at: Instant,
}

fn probe(pid: u32) -> Result<Probe, String> {
    Ok(Probe {
        server: procstat::sample(pid).ok_or_else(|| format!("server process {pid} is gone"))?,
        gen: util::self_cpu(),
        udp_err: procstat::udp_rcvbuf_errors(),
        machine_busy: procstat::machine_busy_s(),
        at: Instant::now(),
    })
}

/// Publishers up, viewers connected: everything a run needs before its window.
struct Running {
    publishers: Option<Pubs>,
    viewers: Viewers,
    baseline: Sample,
    /// Server RSS before any publisher connected (external sources: = baseline).
    rss_before_publishers: u64,
    notes: Vec<String>,
}

fn bring_up(server: &Server, p: &SwarmParams, churn: Option<Churn>) -> Result<Running, String> {
    let mut notes = Vec::new();
    let names = p.stream_names();
    let rss_before_publishers = (!p.external_sources)
        .then(|| procstat::sample(server.pid).map(|s| s.rss_kib))
        .flatten();
    let publishers = start_publishers(server, p, &names)?;
    // One GOP so that every stream has a keyframe for joining viewers.
    let gop_s = p
        .ffmpeg_clip
        .as_ref()
        .map_or(1.0, |c| c.gop as f64 / c.fps.max(1) as f64);
    std::thread::sleep(secs(gop_s + 0.3).max(secs(p.prefill_secs)));
    let baseline = procstat::sample(server.pid).ok_or("server died before viewers joined")?;
    let rss_before_publishers = rss_before_publishers.unwrap_or(baseline.rss_kib);
    let total = p.publishers.max(1) * p.viewers_per_stream;
    let names = if names.is_empty() {
        server.streams.clone()
    } else {
        names
    };
    let urls: Vec<String> = match (p.transport, server.api) {
        (Transport::HttpMp4, Some(api)) => names
            .iter()
            .map(|n| format!("http://{api}/api/stream.mp4?src={n}"))
            .collect(),
        (Transport::Webrtc, Some(api)) => names
            .iter()
            .map(|n| format!("http://{api}/api/webrtc?src={n}"))
            .collect(),
        (Transport::HttpMp4 | Transport::Webrtc, None) => {
            return Err(format!(
                "stream.mp4 and WebRTC viewers need corecast's API; {} has none",
                server.name
            ))
        }
        _ => names.iter().map(|n| server.url(n)).collect(),
    };
    let max_packet = match &p.source {
        SourceSpec::Synthetic { packet_size, .. } => packet_size + 64,
        SourceSpec::Demo { packet_size, .. } | SourceSpec::File { packet_size, .. } => {
            packet_size + 64
        }
    };
    let viewers = Viewers::start(ViewConfig {
        urls,
        viewers: total,
        transport: p.transport,
        workers: p.workers,
        ramp_secs: p.ramp_secs,
        connect_timeout: secs(p.connect_timeout_secs),
        keepalive_secs: p.keepalive_secs,
        churn,
        max_packet,
        pause: p.idle,
        srtp_decrypt: p.srtp_decrypt,
    })?;
    if !viewers.wait_ramp(secs(p.ramp_secs + p.connect_timeout_secs + 10.0)) {
        notes.push("ramp-up did not complete in time".into());
    }
    if publishers.is_none() && !p.external_sources {
        return Err("no publishers".into());
    }
    Ok(Running {
        publishers,
        viewers,
        baseline,
        rss_before_publishers,
        notes,
    })
}

/// Runs one swarm against `server` and returns its figures.
pub fn run(server: &Server, p: &SwarmParams) -> Result<SwarmResult, String> {
    run_with(server, p, None)
}

/// `run`, with publishers started elsewhere (a camera farm's, for pulled cameras) whose
/// frames are counted in the window like our own.
pub fn run_with(
    server: &Server,
    p: &SwarmParams,
    mut ext: Option<&mut Pubs>,
) -> Result<SwarmResult, String> {
    let (nofile, ok) = util::raise_nofile(65_536);
    let total = p.publishers * p.viewers_per_stream;
    let mut notes = Vec::new();
    let per_viewer_fds = match p.transport {
        Transport::Tcp | Transport::HttpMp4 => 1,
        Transport::Webrtc => 2,
        Transport::Udp => 5,
    };
    if !ok && (total * per_viewer_fds + 64) as u64 > nofile {
        notes.push(format!(
            "open-files limit is {nofile} (hard limit reached), below the ~{} this run needs: raise `ulimit -Hn`",
            total * per_viewer_fds + 64
        ));
    }
    let mut r = bring_up(server, p, None)?;
    notes.append(&mut r.notes);
    std::thread::sleep(secs(p.warmup_secs));
    let pub_a = match (&mut r.publishers, &mut ext) {
        (Some(p), _) => p.stats(),
        (None, Some(e)) => e.stats(),
        _ => PubStats::default(),
    };
    let a = probe(server.pid)?;
    r.viewers.set_phase(viewer::PHASE_MEASURE);
    let deadline = Instant::now() + secs(p.duration_secs);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200).min(deadline - Instant::now()));
        if !server.alive() {
            return Err(format!(
                "server died during the run:\n{}",
                server.log_tail()
            ));
        }
    }
    let b = probe(server.pid)?;
    r.viewers.set_phase(viewer::PHASE_END);
    let pub_b = match (&mut r.publishers, &mut ext) {
        (Some(p), _) => p.stats(),
        (None, Some(e)) => e.stats(),
        _ => PubStats::default(),
    };
    let playing = r
        .viewers
        .shared
        .playing
        .load(std::sync::atomic::Ordering::Acquire);
    let api = server.api.and_then(|a| peers::api_totals(a).ok());
    let shared = r.viewers.shared.clone();
    let rep = r.viewers.finish();
    // RSS once the viewers are gone but the streams still run: what the viewers held,
    // without the growth of the streams' own buffers (rings filling) during the run.
    std::thread::sleep(secs(p.settle_secs.min(3.0)));
    let left = procstat::sample(server.pid);
    let pubs = match (r.publishers, ext) {
        (Some(p), _) => p.stop(),
        (None, Some(e)) => e.stats(),
        _ => PubStats::default(),
    };
    let mut out = summarize(server, p, &a, &b, &rep, r.baseline, playing, &shared);
    out.kind = "swarm";
    if let Some(left) = left {
        out.server_rss_after_leave_kib = Some(left.rss_kib);
        if playing > 0 {
            out.rss_per_viewer_released_kib = Some(round2(
                (b.server.rss_kib as f64 - left.rss_kib as f64) / playing as f64,
            ));
        }
    }
    out.server_api = api;
    out.server_rss_before_publishers_kib = r.rss_before_publishers;
    out.rss_per_stream_kib = round2(
        (out.server_rss_after_kib as f64 - r.rss_before_publishers as f64)
            / p.publishers.max(1) as f64,
    );
    out.publisher = pubs;
    out.publisher.packets = pub_b.packets - pub_a.packets;
    out.publisher.bytes = pub_b.bytes.saturating_sub(pub_a.bytes);
    out.publisher.frames = pub_b.frames.saturating_sub(pub_a.frames);
    if p.ffmpeg_clip.is_some() {
        // Frames each stream's publisher sent during the window, against what each
        // viewer received (one publisher per stream, all at the clip's rate).
        let per_stream = out.publisher.frames as f64 / out.publisher.publishers.max(1) as f64;
        out.publisher_frames_per_stream = Some(round2(per_stream));
        out.viewers_below_90pct_frames = Some(
            out.per_viewer
                .iter()
                .filter(|v| (v.frames as f64) < 0.9 * per_stream)
                .count(),
        );
    }
    if !p.per_viewer {
        out.per_viewer.clear();
    }
    if out.publisher.dropped_bursts > 0 || out.publisher.late_bursts > 0 {
        notes.push(format!(
            "publishers: {} late and {} dropped bursts (generator or server congested)",
            out.publisher.late_bursts, out.publisher.dropped_bursts
        ));
    }
    notes.append(&mut out.notes);
    out.notes = notes;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    server: &Server,
    p: &SwarmParams,
    a: &Probe,
    b: &Probe,
    rep: &ViewReport,
    baseline: Sample,
    playing: i64,
    shared: &viewer::Shared,
) -> SwarmResult {
    use std::sync::atomic::Ordering::Relaxed;
    let wall = (b.at - a.at).as_secs_f64();
    let w = &rep.window;
    let gbit = rep.bits_per_sec * wall / 1e9;
    let server_cpu = b.server.cpu_s() - a.server.cpu_s();
    let gen_cpu = (b.gen.0 + b.gen.1) - (a.gen.0 + a.gen.1);
    let nominal = match &p.source {
        // ffmpeg's clip: its nominal video rate plus 64 kbit/s AAC (RTP headers not
        // counted: an estimate, the delivered figure is measured).
        _ if p.ffmpeg_clip.is_some() => p
            .ffmpeg_clip
            .as_ref()
            .map_or(0.0, |c| (c.bitrate + 64_000) as f64 / 1e6),
        SourceSpec::Synthetic {
            bitrate,
            packet_size,
            ..
        } => {
            // What the synthetic source really sends: whole packets.
            let pps = *bitrate as f64 / 8.0 / *packet_size as f64;
            pps * *packet_size as f64 * 8.0 / 1e6
        }
        _ => 0.0,
    };
    let mut pv: Vec<f64> = rep
        .per_viewer_packets
        .iter()
        .map(|&n| n as f64 / rep.window_secs.max(1e-9))
        .collect();
    pv.sort_by(|x, y| x.total_cmp(y));
    let total = p.publishers.max(1) * p.viewers_per_stream;
    SwarmResult {
        kind: "swarm",
        server: server.name.clone(),
        server_pid: server.pid,
        server_threads: server.threads,
        machine_cores: util::cores(),
        publishers: p.publishers,
        viewers_per_stream: p.viewers_per_stream,
        viewers: total,
        transport: p.transport,
        idle: p.idle,
        publish_transport: if server.raw_udp_base.is_some() {
            "rtp/udp (raw)"
        } else if p.publish_udp {
            "rtsp/udp"
        } else {
            "rtsp/tcp"
        },
        source: p.describe_source(),
        window_s: round2(wall),
        viewers_playing: playing,
        connect_failures: shared.failures.load(Relaxed),
        failure_reasons: rep.failures.clone(),
        disconnects: shared.disconnects.load(Relaxed),
        nominal_mbps_per_stream: round4(nominal),
        expected_mbps: if p.idle {
            0.0
        } else {
            round2(nominal * playing.max(0) as f64)
        },
        delivered_mbps: round2(rep.bits_per_sec / 1e6),
        delivered_pps: round2(rep.packets_per_sec),
        loss_pct: if w.expected > 0 {
            round4(w.lost() as f64 * 100.0 / w.expected as f64)
        } else {
            0.0
        },
        lost_packets: w.lost(),
        gaps: w.gaps,
        duplicates: w.duplicates,
        reordered: w.reordered,
        latency_us: Percentiles::of(&rep.latency, 1e3),
        backlog_packets: w.backlog_packets,
        connect_ms: Percentiles::of(&rep.connect, 1e6),
        per_viewer_pps_min: round2(pv.first().copied().unwrap_or(0.0)),
        per_viewer_pps_max: round2(pv.last().copied().unwrap_or(0.0)),
        starved_viewers: rep.per_viewer_packets.iter().filter(|&&n| n == 0).count(),
        server_cpu_s: round4(server_cpu),
        server_user_s: round4(b.server.user_s - a.server.user_s),
        server_sys_s: round4(b.server.sys_s - a.server.sys_s),
        server_cpu_pct: round2(server_cpu * 100.0 / wall),
        server_cpu_s_per_gbit: if gbit > 0.0 {
            round4(server_cpu / gbit)
        } else {
            0.0
        },
        server_rss_baseline_kib: baseline.rss_kib,
        server_rss_before_publishers_kib: 0,
        rss_per_stream_kib: 0.0,
        server_rss_after_kib: b.server.rss_kib,
        rss_per_viewer_kib: if playing > 0 {
            round2((b.server.rss_kib as f64 - baseline.rss_kib as f64) / playing as f64)
        } else {
            0.0
        },
        server_rss_after_leave_kib: None,
        rss_per_viewer_released_kib: None,
        gen_cpu_s: round4(gen_cpu),
        gen_cpu_pct: round2(gen_cpu * 100.0 / wall),
        gen_cpu_s_per_gbit: if gbit > 0.0 {
            round4(gen_cpu / gbit)
        } else {
            0.0
        },
        gen_viewer_threads_cpu_s: round4(rep.workers_cpu_s),
        gen_read_calls_per_s: round2(w.read_calls as f64 / rep.window_secs.max(1e-9)),
        udp_rcvbuf_errors: match (a.udp_err, b.udp_err) {
            (Some(x), Some(y)) => Some(y - x),
            _ => None,
        },
        other_cpu_s: match (a.machine_busy, b.machine_busy) {
            (Some(x), Some(y)) => Some(round2((y - x - server_cpu - gen_cpu).max(0.0))),
            _ => None,
        },
        server_os_threads: b.server.threads,
        server_api: None,
        publisher: PubStats::default(),
        publisher_kind: p.publisher_kind(),
        publisher_frames_per_stream: None,
        per_viewer_frames_min: rep.per_viewer.iter().map(|v| v.frames).min().unwrap_or(0),
        per_viewer_frames_max: rep.per_viewer.iter().map(|v| v.frames).max().unwrap_or(0),
        per_viewer_lost_max: rep.per_viewer.iter().map(|v| v.lost).max().unwrap_or(0),
        viewers_below_90pct_frames: None,
        per_viewer: rep.per_viewer.clone(),
        notes: Vec::new(),
    }
}

/// Human-readable table of one result.
pub fn table(r: &SwarmResult) -> String {
    let mut s = String::new();
    let mut row = |k: &str, v: String| {
        s.push_str(&format!("  {k:<28} {v}\n"));
    };
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x}"));
    row(
        "server",
        format!(
            "{} (pid {}, {} shards/threads configured, {} OS threads) on {} cores",
            r.server, r.server_pid, r.server_threads, r.server_os_threads, r.machine_cores
        ),
    );
    row(
        "scenario",
        format!(
            "{} streams x {} viewers = {} {} viewers{}; publish {}; {}",
            r.publishers,
            r.viewers_per_stream,
            r.viewers,
            match r.transport {
                Transport::Tcp => "RTSP/TCP",
                Transport::Udp => "RTSP/UDP",
                Transport::HttpMp4 => "HTTP stream.mp4",
                Transport::Webrtc => "WebRTC (WHEP)",
            },
            if r.idle {
                " (idle: paused after PLAY)"
            } else {
                ""
            },
            r.publish_transport,
            r.source
        ),
    );
    row(
        "publishers",
        format!(
            "{} ({})",
            r.publisher_kind,
            match r.publisher_frames_per_stream {
                Some(f) => format!("{f} frames per stream sent in the window"),
                None => "send time in every payload".into(),
            }
        ),
    );
    row("window", format!("{} s", r.window_s));
    row(
        "viewers playing",
        format!(
            "{} (connect failures {}, disconnects {})",
            r.viewers_playing, r.connect_failures, r.disconnects
        ),
    );
    if !r.failure_reasons.is_empty() {
        row("failure reasons", format!("{:?}", r.failure_reasons));
    }
    row(
        "delivered",
        format!(
            "{} Mbit/s, {} packets/s (expected {} Mbit/s)",
            r.delivered_mbps, r.delivered_pps, r.expected_mbps
        ),
    );
    row(
        "loss",
        format!(
            "{} % ({} lost, {} gaps, {} dup, {} reordered)",
            r.loss_pct, r.lost_packets, r.gaps, r.duplicates, r.reordered
        ),
    );
    row(
        "per-viewer packets/s",
        format!(
            "min {} max {} (starved {})",
            r.per_viewer_pps_min, r.per_viewer_pps_max, r.starved_viewers
        ),
    );
    row(
        "per-viewer frames, lost",
        format!(
            "frames min {} max {}{}; most lost by one viewer {}",
            r.per_viewer_frames_min,
            r.per_viewer_frames_max,
            r.viewers_below_90pct_frames
                .map_or(String::new(), |n| format!(
                    " ({n} viewers below 90 % of sent)"
                )),
            r.per_viewer_lost_max
        ),
    );
    row(
        "latency us p50/p99/p99.9/max",
        format!(
            "{} / {} / {} / {} ({} samples)",
            opt(r.latency_us.p50),
            opt(r.latency_us.p99),
            opt(r.latency_us.p999),
            opt(r.latency_us.max),
            r.latency_us.samples
        ),
    );
    row(
        "connect ms p50/p99/max",
        format!(
            "{} / {} / {}",
            opt(r.connect_ms.p50),
            opt(r.connect_ms.p99),
            opt(r.connect_ms.max)
        ),
    );
    row(
        "server CPU",
        format!(
            "{} s ({} user + {} sys) = {} % of a core",
            r.server_cpu_s, r.server_user_s, r.server_sys_s, r.server_cpu_pct
        ),
    );
    row(
        "server CPU per Gbit",
        format!("{} CPU-s/Gbit", r.server_cpu_s_per_gbit),
    );
    row(
        "server RSS",
        format!(
            "{} KiB before viewers -> {} KiB ({} KiB/viewer) -> {} KiB after they left ({} KiB/viewer released)",
            r.server_rss_baseline_kib,
            r.server_rss_after_kib,
            r.rss_per_viewer_kib,
            r.server_rss_after_leave_kib
                .map_or("-".into(), |x| x.to_string()),
            r.rss_per_viewer_released_kib
                .map_or("-".into(), |x| x.to_string())
        ),
    );
    row(
        "server RSS per stream",
        format!(
            "{} KiB before publishers -> {} KiB per stream with its viewers",
            r.server_rss_before_publishers_kib, r.rss_per_stream_kib
        ),
    );
    row(
        "generator CPU",
        format!(
            "{} s = {} % of a core ({} CPU-s/Gbit; viewer threads {} s; {} reads/s)",
            r.gen_cpu_s,
            r.gen_cpu_pct,
            r.gen_cpu_s_per_gbit,
            r.gen_viewer_threads_cpu_s,
            r.gen_read_calls_per_s
        ),
    );
    if let Some(o) = r.other_cpu_s {
        row(
            "other load on the machine",
            format!(
                "{o} CPU-s ({:.1} % of a core)",
                o * 100.0 / r.window_s.max(1e-9)
            ),
        );
    }
    if let Some(u) = r.udp_rcvbuf_errors {
        row("UDP rcvbuf drops (kernel)", u.to_string());
    }
    if let Some(a) = &r.server_api {
        row(
            "server API",
            format!(
                "{} consumers, {} skips ({} skipped packets)",
                a.consumers, a.skips, a.skipped_packets
            ),
        );
    }
    for n in &r.notes {
        row("note", n.clone());
    }
    s
}

#[derive(Debug, Clone, Serialize)]
pub struct RssPoint {
    pub t_s: f64,
    pub rss_kib: u64,
    pub playing: i64,
    pub joins: u64,
    pub leaves: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakResult {
    pub kind: &'static str,
    /// `synthetic` or `ffmpeg`.
    pub publisher_kind: &'static str,
    pub source: String,
    pub server: String,
    pub server_pid: u32,
    pub viewers_target: usize,
    pub transport: Transport,
    pub duration_s: f64,
    pub life_s: (f64, f64),
    pub joins: u64,
    pub leaves: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    pub rss_baseline_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_end_active_kib: u64,
    pub rss_after_all_left_kib: u64,
    pub rss_growth_after_kib: i64,
    /// Least-squares slope of RSS over the second half of the run.
    pub rss_slope_kib_per_min: f64,
    pub returned_to_baseline: bool,
    pub loss_pct: f64,
    pub latency_us: Percentiles,
    /// Packets from the ring backlog a joining viewer receives first (not timed).
    pub backlog_packets: u64,
    /// How many times the publishers were restarted (`--restart-publishers-secs`).
    pub publisher_restarts: u64,
    pub server_cpu_s: f64,
    pub samples: Vec<RssPoint>,
    pub notes: Vec<String>,
}

/// Viewers join and leave for `duration`; RSS every `sample_secs`; then all leave and we
/// check that RSS comes back to where it was before any viewer joined.
pub fn soak(server: &Server, p: &SwarmParams) -> Result<SoakResult, String> {
    use std::sync::atomic::Ordering::Relaxed;
    util::raise_nofile(65_536);
    let churn = p.churn.ok_or("soak needs churn settings")?;
    let t0 = Instant::now();
    let cpu0 = procstat::sample(server.pid).ok_or("server gone")?;
    let mut r = bring_up(server, p, Some(churn))?;
    let mut notes = std::mem::take(&mut r.notes);
    r.viewers.set_phase(viewer::PHASE_MEASURE);
    let mut samples = Vec::new();
    let start = Instant::now();
    let deadline = start + secs(p.duration_secs);
    let sh = r.viewers.shared.clone();
    let restart_every = (p.restart_publishers_secs > 0.0).then(|| secs(p.restart_publishers_secs));
    if restart_every.is_some() && !matches!(r.publishers, Some(Pubs::Ffmpeg(_))) {
        return Err("--restart-publishers-secs needs --publisher ffmpeg".into());
    }
    let mut next_restart = restart_every.map(|d| start + d);
    let mut publisher_restarts = 0;
    // The viewers' own counters stop at the end; samples after it show the settling.
    let mut next_sample = Instant::now();
    while Instant::now() < deadline {
        if let (Some(at), Some(every)) = (next_restart, restart_every) {
            if Instant::now() >= at {
                if let Some(Pubs::Ffmpeg(f)) = r.publishers.as_mut() {
                    f.restart_all()?;
                    publisher_restarts = f.restarts();
                }
                next_restart = Some(at + every);
            }
        }
        if Instant::now() >= next_sample {
            let s = procstat::sample(server.pid).ok_or("server died during the soak")?;
            samples.push(RssPoint {
                t_s: round2(start.elapsed().as_secs_f64()),
                rss_kib: s.rss_kib,
                playing: sh.playing.load(Relaxed),
                joins: sh.plays.load(Relaxed),
                leaves: sh.left.load(Relaxed),
            });
            next_sample += secs(p.sample_secs);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let end_active = procstat::sample(server.pid).ok_or("server died")?;
    r.viewers.set_phase(viewer::PHASE_END);
    let joins = sh.plays.load(Relaxed);
    let leaves = sh.left.load(Relaxed);
    let rep = r.viewers.finish();
    // Keep sampling while the server settles: allocators give memory back lazily.
    let settle_end = Instant::now() + secs(p.settle_secs);
    loop {
        let now = Instant::now();
        if now >= settle_end {
            break;
        }
        std::thread::sleep(secs(p.sample_secs.min(1.0)).min(settle_end - now));
        let s = procstat::sample(server.pid).ok_or("server died after the soak")?;
        samples.push(RssPoint {
            t_s: round2(start.elapsed().as_secs_f64()),
            rss_kib: s.rss_kib,
            playing: sh.playing.load(Relaxed),
            joins: sh.plays.load(Relaxed),
            leaves: sh.left.load(Relaxed),
        });
    }
    let after = procstat::sample(server.pid).ok_or("server died")?;
    let pubs = r.publishers.map(|p| p.stop()).unwrap_or_default();
    if pubs.dropped_bursts > 0 {
        notes.push(format!("publishers dropped {} bursts", pubs.dropped_bursts));
    }
    let half: Vec<&RssPoint> = samples
        .iter()
        .filter(|s| s.t_s >= p.duration_secs / 2.0 && s.t_s <= p.duration_secs)
        .collect();
    let slope = slope_per_min(
        &half
            .iter()
            .map(|s| (s.t_s, s.rss_kib as f64))
            .collect::<Vec<_>>(),
    );
    let growth = after.rss_kib as i64 - r.baseline.rss_kib as i64;
    // "Back to baseline": within 1 MiB or 5 % of the pre-viewer RSS, whichever is larger
    // (allocators keep some freed pages; a leak grows with the number of joins instead).
    let tolerance = (r.baseline.rss_kib as f64 * 0.05).max(1024.0) as i64;
    let w = &rep.all_time;
    let _ = t0;
    Ok(SoakResult {
        kind: "soak",
        publisher_kind: p.publisher_kind(),
        source: p.describe_source(),
        server: server.name.clone(),
        server_pid: server.pid,
        viewers_target: p.publishers.max(1) * p.viewers_per_stream,
        transport: p.transport,
        duration_s: p.duration_secs,
        life_s: (churn.min_life_s, churn.max_life_s),
        joins,
        leaves,
        connect_failures: sh.failures.load(Relaxed),
        disconnects: sh.disconnects.load(Relaxed),
        rss_baseline_kib: r.baseline.rss_kib,
        rss_peak_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        rss_end_active_kib: end_active.rss_kib,
        rss_after_all_left_kib: after.rss_kib,
        rss_growth_after_kib: growth,
        rss_slope_kib_per_min: round2(slope),
        returned_to_baseline: growth <= tolerance,
        loss_pct: if w.expected > 0 {
            round4(w.lost() as f64 * 100.0 / w.expected as f64)
        } else {
            0.0
        },
        latency_us: Percentiles::of(&rep.latency, 1e3),
        backlog_packets: w.backlog_packets,
        publisher_restarts,
        server_cpu_s: round4(after.cpu_s() - cpu0.cpu_s()),
        samples,
        notes,
    })
}

fn slope_per_min(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx * 60.0
    }
}

pub fn soak_table(r: &SoakResult) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "  soak of {} (pid {}): {} RTSP/{:?} viewers, lifetimes {:.0}-{:.0} s, {} s; publishers {} ({})\n",
        r.server,
        r.server_pid,
        r.viewers_target,
        r.transport,
        r.life_s.0,
        r.life_s.1,
        r.duration_s,
        r.publisher_kind,
        r.source
    ));
    s.push_str("       t_s    rss_KiB  playing    joins   leaves\n");
    for p in &r.samples {
        s.push_str(&format!(
            "  {:>8.1} {:>10} {:>8} {:>8} {:>8}\n",
            p.t_s, p.rss_kib, p.playing, p.joins, p.leaves
        ));
    }
    s.push_str(&format!(
        "  joins {} leaves {} failures {} disconnects {}; publisher restarts {}; loss {} %; live latency p50/p99 {:?}/{:?} us ({} backlog packets at joins not timed)\n",
        r.joins,
        r.leaves,
        r.connect_failures,
        r.disconnects,
        r.publisher_restarts,
        r.loss_pct,
        r.latency_us.p50,
        r.latency_us.p99,
        r.backlog_packets
    ));
    s.push_str(&format!(
        "  RSS: baseline {} KiB, peak {} KiB, end (active) {} KiB, after all left {} KiB ({:+} KiB); slope over 2nd half {} KiB/min; back to baseline: {}\n",
        r.rss_baseline_kib,
        r.rss_peak_kib,
        r.rss_end_active_kib,
        r.rss_after_all_left_kib,
        r.rss_growth_after_kib,
        r.rss_slope_kib_per_min,
        if r.returned_to_baseline { "yes" } else { "NO" }
    ));
    for n in &r.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64 * 6.0, 100.0 + i as f64 * 3.0))
            .collect();
        assert!((slope_per_min(&pts) - 30.0).abs() < 1e-9);
        assert_eq!(slope_per_min(&pts[..1]), 0.0);
    }
}

//! Publishers: P streams pushed at real-time rate from one thread (they are cheap: a
//! publisher sends one stream; the viewers are where the load is).

use crate::client::{self, Blocking};
use crate::source::{self, Burst, Source, SourceSpec};
use crate::util::{self, now_ns};
use corecast::rtsp::message::Method;
use serde::Serialize;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where a publisher sends.
#[derive(Debug, Clone)]
pub enum PubTarget {
    /// ANNOUNCE/SETUP(mode=record)/RECORD, media interleaved on TCP or over UDP.
    Rtsp { url: String, udp: bool },
    /// Plain RTP datagrams to a port (peers that ingest RTP directly, e.g. a GStreamer
    /// `udpsrc`); one track only.
    RawUdp(SocketAddr),
}

#[derive(Debug, Clone)]
pub struct PubSpec {
    pub target: PubTarget,
    pub source: SourceSpec,
    pub seed: u64,
}

/// Live counters, updated once per burst.
#[derive(Debug, Default)]
pub struct PubCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Bursts sent more than 20 ms after their due time.
    pub late_bursts: AtomicU64,
    /// Bursts not sent because the server did not drain the connection (TCP backlog full).
    pub dropped_bursts: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PubStats {
    /// `synthetic` (this harness's RTSP publisher) or `ffmpeg` (real publishers).
    pub kind: &'static str,
    pub publishers: usize,
    /// ffmpeg publishers: video frames sent (their `-progress` `frame=`).
    pub frames: u64,
    pub packets: u64,
    pub bytes: u64,
    pub late_bursts: u64,
    pub dropped_bursts: u64,
    pub errors: u64,
    pub nominal_mbps: f64,
}

impl PubCounters {
    pub fn snapshot(&self, publishers: usize, nominal_mbps: f64) -> PubStats {
        PubStats {
            kind: "synthetic",
            publishers,
            frames: 0,
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            late_bursts: self.late_bursts.load(Relaxed),
            dropped_bursts: self.dropped_bursts.load(Relaxed),
            errors: self.errors.load(Relaxed),
            nominal_mbps,
        }
    }
}

enum Out {
    Tcp {
        stream: TcpStream,
        pending: Vec<u8>,
        _ctl: Blocking,
    },
    /// One connected RTP socket per track (RTCP sockets kept open so the ports stay ours).
    Udp {
        rtp: Vec<UdpSocket>,
        _rtcp: Vec<UdpSocket>,
        _ctl: Option<Blocking>,
    },
}

struct Pub {
    source: Box<dyn Source>,
    burst: Burst,
    start: u64,
    next_due: u64,
    out: Out,
    frame: Vec<u8>,
    dead: bool,
}

/// Most bytes queued for a TCP publisher before bursts are dropped.
const MAX_PENDING: usize = 4 << 20;

pub struct Publishers {
    pub counters: Arc<PubCounters>,
    pub count: usize,
    pub nominal_mbps: f64,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Publishers {
    /// Connects every publisher (failing if any cannot), then starts sending. Returns once
    /// all are recording.
    pub fn start(specs: Vec<PubSpec>) -> Result<Publishers, String> {
        let count = specs.len();
        let counters = Arc::new(PubCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Result<f64, String>>();
        let (c2, s2) = (counters.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("publishers".into())
            .spawn(move || {
                let mut pubs = Vec::with_capacity(specs.len());
                let mut nominal = 0.0;
                for (i, spec) in specs.iter().enumerate() {
                    match connect(spec) {
                        Ok(p) => {
                            nominal += p.source.nominal_bps() * 8.0 / 1e6;
                            pubs.push(p);
                        }
                        Err(e) => {
                            let _ = tx.send(Err(format!("publisher {i}: {e}")));
                            return;
                        }
                    }
                }
                let _ = tx.send(Ok(nominal));
                run(pubs, &c2, &s2);
            })
            .map_err(|e| e.to_string())?;
        match rx.recv() {
            Ok(Ok(nominal_mbps)) => Ok(Publishers {
                counters,
                count,
                nominal_mbps,
                stop,
                handle: Some(handle),
            }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => Err("publisher thread died".into()),
        }
    }

    pub fn stats(&self) -> PubStats {
        self.counters.snapshot(self.count, self.nominal_mbps)
    }

    pub fn stop(mut self) -> PubStats {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.stats()
    }
}

impl Drop for Publishers {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn udp_pair() -> Result<(UdpSocket, UdpSocket), String> {
    for _ in 0..100 {
        let a = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = a.local_addr().map_err(|e| e.to_string())?.port();
        if port % 2 == 0 {
            if let Ok(b) = UdpSocket::bind(("127.0.0.1", port + 1)) {
                return Ok((a, b));
            }
        }
    }
    Err("no free UDP port pair".into())
}

fn connect(spec: &PubSpec) -> Result<Pub, String> {
    let source = spec.source.build(spec.seed)?;
    let out = match &spec.target {
        PubTarget::RawUdp(addr) => {
            let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            s.connect(addr).map_err(|e| e.to_string())?;
            Out::Udp {
                rtp: vec![s],
                _rtcp: Vec::new(),
                _ctl: None,
            }
        }
        PubTarget::Rtsp { url, udp } => {
            let u = client::parse_url(url)?;
            let mut c = Blocking::connect(u.addr, Duration::from_secs(5))?;
            let sdp = source.sdp();
            let medias = corecast::sdp::parse(&sdp)
                .map_err(|e| e.to_string())?
                .medias
                .len();
            c.call(
                Method::Announce,
                url,
                &[],
                Some(("application/sdp", sdp.as_str())),
            )?;
            let mut rtp = Vec::new();
            let mut rtcp = Vec::new();
            for i in 0..medias {
                let track_url = client::resolve_control(url, Some(&format!("trackID={i}")));
                if *udp {
                    let (a, b) = udp_pair()?;
                    let pa = a.local_addr().map_err(|e| e.to_string())?.port();
                    let t = format!("RTP/AVP;unicast;client_port={}-{};mode=record", pa, pa + 1);
                    let resp = c.call(Method::Setup, &track_url, &[("Transport", &t)], None)?;
                    let sp = resp
                        .headers
                        .get("Transport")
                        .and_then(client::server_port_of)
                        .ok_or("SETUP response without server_port")?;
                    a.connect(SocketAddr::new(u.addr.ip(), sp.0))
                        .map_err(|e| e.to_string())?;
                    rtp.push(a);
                    rtcp.push(b);
                } else {
                    let t = format!(
                        "RTP/AVP/TCP;unicast;interleaved={}-{};mode=record",
                        2 * i,
                        2 * i + 1
                    );
                    c.call(Method::Setup, &track_url, &[("Transport", &t)], None)?;
                }
            }
            c.call(Method::Record, url, &[("Range", "npt=0.000-")], None)?;
            if *udp {
                c.stream.set_nonblocking(true).ok();
                Out::Udp {
                    rtp,
                    _rtcp: rtcp,
                    _ctl: Some(c),
                }
            } else {
                let stream = c.stream.try_clone().map_err(|e| e.to_string())?;
                stream.set_nonblocking(true).map_err(|e| e.to_string())?;
                Out::Tcp {
                    stream,
                    pending: Vec::new(),
                    _ctl: c,
                }
            }
        }
    };
    Ok(Pub {
        source,
        burst: Burst::default(),
        start: 0,
        next_due: 0,
        out,
        frame: Vec::with_capacity(64 * 1024),
        dead: false,
    })
}

fn run(mut pubs: Vec<Pub>, counters: &PubCounters, stop: &AtomicBool) {
    let n = pubs.len().max(1) as u64;
    let t0 = now_ns() + 5_000_000;
    // Spread publishers over one 40 ms frame interval so their bursts do not coincide.
    for (i, p) in pubs.iter_mut().enumerate() {
        p.start = t0 + i as u64 * 40_000_000 / n;
        p.source.next_burst(&mut p.burst);
        p.next_due = p.start + p.burst.due_ns;
    }
    let mut last_drain = now_ns();
    let mut sink = vec![0u8; 16 * 1024];
    while !stop.load(Relaxed) {
        let Some((i, due)) = pubs
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.dead)
            .map(|(i, p)| (i, p.next_due))
            .min_by_key(|&(_, d)| d)
        else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let now = now_ns();
        if due > now {
            // Sleep at most 50 ms so `stop` is noticed.
            util::sleep_until(due.min(now + 50_000_000));
            continue;
        }
        if now - due > 20_000_000 {
            counters.late_bursts.fetch_add(1, Relaxed);
        }
        let p = &mut pubs[i];
        send(p, counters);
        p.source.next_burst(&mut p.burst);
        p.next_due = p.start + p.burst.due_ns;
        if now - last_drain > 500_000_000 {
            last_drain = now;
            for p in pubs.iter_mut() {
                drain(p, &mut sink);
                flush(p, counters);
            }
        }
    }
}

fn send(p: &mut Pub, counters: &PubCounters) {
    let stamp_time = now_ns();
    let b = &mut p.burst;
    if b.stamp {
        for pkt in b.packets.iter_mut() {
            source::stamp(pkt, stamp_time);
        }
    }
    let bytes: usize = b.packets.iter().map(|x| x.len()).sum();
    match &mut p.out {
        Out::Tcp { pending, .. } => {
            if pending.len() > MAX_PENDING {
                counters.dropped_bursts.fetch_add(1, Relaxed);
                flush(p, counters);
                return;
            }
            p.frame.clear();
            for pkt in &b.packets {
                let len = pkt.len().min(u16::MAX as usize) as u16;
                p.frame
                    .extend_from_slice(&corecast::rtsp::message::write_interleaved_header(
                        2 * b.track as u8,
                        len,
                    ));
                p.frame.extend_from_slice(&pkt[..len as usize]);
            }
            pending.extend_from_slice(&p.frame);
            flush(p, counters);
        }
        Out::Udp { rtp, .. } => {
            let Some(sock) = rtp.get(b.track) else {
                return;
            };
            for pkt in &b.packets {
                if let Err(e) = sock.send(pkt) {
                    // Refused: nobody listens yet (a relay that starts its source on the
                    // first viewer); not an error of ours.
                    if e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::ConnectionRefused
                    {
                        counters.errors.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }
    counters
        .packets
        .fetch_add(p.burst.packets.len() as u64, Relaxed);
    counters.bytes.fetch_add(bytes as u64, Relaxed);
}

fn flush(p: &mut Pub, counters: &PubCounters) {
    if let Out::Tcp {
        stream, pending, ..
    } = &mut p.out
    {
        while !pending.is_empty() {
            match stream.write(pending) {
                Ok(0) => {
                    p.dead = true;
                    break;
                }
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    counters.errors.fetch_add(1, Relaxed);
                    p.dead = true;
                    break;
                }
            }
        }
    }
}

/// Discards whatever the server sent us (RTCP, keepalive answers) so it never blocks.
fn drain(p: &mut Pub, sink: &mut [u8]) {
    let stream = match &mut p.out {
        Out::Tcp { stream, .. } => stream,
        Out::Udp { _ctl: Some(c), .. } => &mut c.stream,
        _ => return,
    };
    loop {
        match stream.read(sink) {
            Ok(0) => {
                p.dead = true;
                return;
            }
            Ok(_) => continue,
            Err(_) => return,
        }
    }
}

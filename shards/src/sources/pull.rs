//! Pulling from cameras: drives the sans-IO RTSP client over a glommio socket and feeds
//! what it receives through parse-once ingest into the stream's ring. Also the stdout side
//! of `exec:` sources.
//!
//! The owned stream outlives a connection: when the camera drops, readers stay attached and
//! resume at the first keyframe after the reconnect.

use crate::core::hub::{LocalStream, Shard};
use crate::core::producer::Producer;
use crate::core::registry::{ProducerInfo, ProducerStats};
use crate::io::tls::Io;
use crate::sources::lifecycle::{redact, set_error, Running};
use crate::sources::SourceError;
use bytes::{Bytes, BytesMut};
use corecast::rtsp::client::{self, Client, ClientEvent, ClientTransport, Tls};
use corecast::sdp::Sdp;
use glommio::net::{TcpStream, UdpSocket};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Largest RTP datagram accepted (jumbo frames included); larger ones are dropped.
pub const MAX_DATAGRAM: usize = 9216;
/// One read from a camera's RTSP/TCP connection (a 1 Mbit/s camera sends ~5 KiB a frame).
const TCP_READ: usize = 32 * 1024;

/// Streams whose producer is a pull or stdout source on this shard, kept across reconnects.
#[derive(Default)]
pub struct Pulled {
    by_name: RefCell<HashMap<String, Owned>>,
}

#[derive(Clone)]
struct Owned {
    stream: Rc<LocalStream>,
    producer: Arc<ProducerInfo>,
    sdp: Sdp,
}

thread_local! {
    // One per shard thread: the pull sources' owned streams.
    static PULLED: Pulled = Pulled::default();
    // Sources that failed to play after being described with the ONVIF backchannel: asked
    // without it from then on (for the process lifetime; bounded by the configured
    // sources, as only their URLs land here).
    static NO_BACKCHANNEL: RefCell<std::collections::HashSet<String>> = RefCell::default();
}

/// Claims the stream for a source with this SDP, or reuses the claim of a previous
/// connection (readers stay attached; then the second value is true and the connection's
/// producer must be made `resuming`).
fn own(
    shard: &Rc<Shard>,
    name: &str,
    sdp: &Sdp,
    url: &str,
    protocol: &'static str,
) -> Result<(Owned, bool), SourceError> {
    if let Some(o) = PULLED.with(|p| p.by_name.borrow().get(name).cloned()) {
        if !o.stream.is_closed() {
            if o.sdp.medias.len() != sdp.medias.len() {
                warn!(
                    stream = name,
                    "source came back with different tracks; keeping the first SDP"
                );
            }
            return Ok((o, true));
        }
    }
    let producer = Arc::new(ProducerInfo {
        id: shard.registry.next_id(),
        protocol,
        remote_addr: String::new(),
        url: url.to_string(),
        user_agent: String::new(),
        stats: ProducerStats::default(),
    });
    let (stream, resumed) = shard
        .claim_stream(name, sdp, producer.clone())
        .map_err(|_| SourceError::Taken)?;
    let o = Owned {
        stream,
        producer,
        sdp: sdp.clone(),
    };
    PULLED.with(|p| p.by_name.borrow_mut().insert(name.to_string(), o.clone()));
    Ok((o, resumed))
}

/// Ends the stream of a source that stopped for good.
pub fn close(shard: &Rc<Shard>, name: &str) {
    if let Some(o) = PULLED.with(|p| p.by_name.borrow_mut().remove(name)) {
        shard.close_owned(&o.stream);
    }
}

/// One connection's ingest state.
struct Feed {
    owned: Owned,
    /// Parse once, statistics, learned parameter sets, push (see `producer`).
    producer: Producer,
    /// Camera media index -> track of the producer.
    map: Vec<Option<usize>>,
    /// Last UDP datagram from the camera (µs), for the silence timeout over UDP.
    last_udp: std::cell::Cell<u64>,
}

impl Feed {
    fn push(&mut self, shard: &Shard, media_index: usize, data: Bytes) {
        let Some(Some(track)) = self.map.get(media_index) else {
            return;
        };
        self.producer.packet(shard, *track, data);
    }
}

/// What a pull feeds.
pub enum Role<'a> {
    /// The stream's first source: claims the stream with its SDP.
    Primary,
    /// A later source (go2rtc's list): adds the tracks `wants` asks for and the stream
    /// lacks. `added` remembers (first track, count) across reconnects; `state` tells the
    /// caller how it went (see `SecondaryState`).
    Secondary {
        wants: &'a corecast::filter::Filter,
        added: &'a std::cell::Cell<Option<(usize, usize)>>,
        state: &'a std::cell::Cell<SecondaryState>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondaryState {
    Connecting,
    Added,
    /// Nothing this source has is wanted, or the primary is gone.
    Useless,
}

/// Pulls `src` as the primary source until the source is stopped or the connection fails.
pub async fn run(
    shard: &Rc<Shard>,
    name: &str,
    src: &str,
    running: &Rc<Running>,
) -> Result<(), SourceError> {
    run_feed(shard, name, src, running, Role::Primary).await
}

/// Pulls `src` in the given role.
pub async fn run_feed(
    shard: &Rc<Shard>,
    name: &str,
    src: &str,
    running: &Rc<Running>,
    role: Role<'_>,
) -> Result<(), SourceError> {
    let mut url = client::parse_source_url(src).map_err(|e| SourceError::BadUrl(e.to_string()))?;
    if NO_BACKCHANNEL.with(|n| n.borrow().contains(src)) {
        url.options.backchannel = false;
    }
    let timeout = Duration::from_secs(url.options.timeout_secs.unwrap_or(5).clamp(1, 300));
    let addr = resolve(&url.host, url.port).await?;
    let udp = matches!(url.options.transport, ClientTransport::Udp);
    let tcp = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(|e| SourceError::Connect {
            addr,
            reason: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    let mut sock = match url.tls {
        // Read through the shard's epoll set; glommio's own read is the fallback when the
        // set cannot take the socket (or with `CORECAST_NO_EPOLL=1`, for A/B runs).
        Tls::None if crate::io::ready::disabled() => Io::Plain(tcp),
        Tls::None => {
            use std::os::fd::AsRawFd;
            match crate::io::ready::Registration::new(tcp.as_raw_fd()) {
                Ok(r) => Io::Polled(r, tcp),
                Err(e) => {
                    debug!(stream = name, error = %e, "epoll registration failed; reading through glommio");
                    Io::Plain(tcp)
                }
            }
        }
        Tls::Verify | Tls::NoVerify => {
            let verify = matches!(url.tls, Tls::Verify);
            glommio::timer::timeout(timeout, async { Ok(Io::tls(tcp, &url.host, verify).await) })
                .await
                .map_err(|_| SourceError::TlsTimeout { addr })?
                .map_err(SourceError::Tls)?
        }
    };
    debug!(stream = name, source = %redact(src), "connected");
    let mut client = Client::new(url, shard.clock.now());
    // Each packet is copied once, out of the read buffer, into this connection's chunks.
    client.copy_payloads();
    let feed: Rc<RefCell<Option<Feed>>> = Rc::new(RefCell::new(None));
    let mut udp_tasks = Tasks(Vec::new());
    let mut udp_sockets: Vec<UdpSocket> = Vec::new();
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut rbuf = vec![0u8; TCP_READ];
    let mut quirks_logged = 0u32;
    let mut last_rx = shard.clock.now();
    let mut played = false;
    let beat_mark = std::cell::Cell::new(0);
    let result: Result<(), SourceError> = 'feed: loop {
        if running.stopped() {
            client.teardown();
            out.clear();
            client.poll_transmit(&mut out);
            let _ = glommio::timer::timeout(Duration::from_secs(1), async {
                sock.write_all(&out)
                    .await
                    .map_err(glommio::GlommioError::from)
            })
            .await;
            break Ok(());
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::NeedUdpPorts { media_index } => {
                    let (rtp, rtcp) =
                        bind_udp_pair().map_err(|e| SourceError::UdpBind(e.to_string()))?;
                    client.set_udp_ports(
                        media_index,
                        rtp.local_addr().map(|a| a.port()).unwrap_or(0),
                        rtcp.local_addr().map(|a| a.port()).unwrap_or(0),
                    );
                    udp_tasks.0.push(spawn_udp(
                        shard.clone(),
                        feed.clone(),
                        rtp,
                        media_index,
                        addr.ip(),
                    ));
                    // Kept open so the camera's RTCP is not answered with ICMP errors.
                    udp_sockets.push(rtcp);
                }
                ClientEvent::Described { sdp, selected } => {
                    let f = match &role {
                        Role::Primary => primary_feed(
                            shard,
                            name,
                            src,
                            &sdp,
                            &selected,
                            client.backchannel_asked(),
                        )?,
                        Role::Secondary {
                            wants,
                            added,
                            state,
                        } => match secondary_feed(shard, name, &sdp, &selected, wants, added) {
                            Some(f) => {
                                state.set(SecondaryState::Added);
                                f
                            }
                            None => {
                                state.set(SecondaryState::Useless);
                                break 'feed Ok(());
                            }
                        },
                    };
                    *feed.borrow_mut() = Some(f);
                }
                ClientEvent::Playing { .. } => {
                    played = true;
                    info!(stream = name, source = %redact(src), transport = if udp { "udp" } else { "tcp" }, "source playing");
                    set_error(shard, name, None);
                }
                ClientEvent::Rtp { media_index, data } => {
                    if let Some(f) = feed.borrow_mut().as_mut() {
                        f.push(shard, media_index, data);
                    }
                }
                ClientEvent::Rtcp { .. } => {}
                ClientEvent::Quirk(q) if quirks_logged < 16 => {
                    quirks_logged += 1;
                    info!(stream = name, source = %redact(src), quirk = ?q, "tolerating camera quirk: {}", q.description());
                }
                ClientEvent::Quirk(_) => {}
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        if let Some(f) = feed.borrow().as_ref() {
            shard.flush(&f.owned.stream);
        }
        out.clear();
        client.poll_transmit(&mut out);
        if !out.is_empty() && sock.write_all(&out).await.is_err() {
            break Err(SourceError::Lost {
                detail: Some("write".into()),
            });
        }
        // Read until data or the shard's next beat (≤ 250 ms), so stop requests and
        // keepalives are timely without a timer per read. Into `rbuf` (zeroed once), then
        // appended to `buf`: zeroing a 64 KiB window of `buf` before every read was a tenth
        // of a server pulling 500 cameras.
        let read = futures_lite::future::or(async { Some(sock.read(&mut rbuf).await) }, async {
            shard.beat.next(&beat_mark).await;
            None
        })
        .await;
        let now = shard.clock.now();
        match read {
            Some(Ok(0)) => break Err(SourceError::Closed),
            Some(Ok(n)) => {
                buf.extend_from_slice(&rbuf[..n]);
                last_rx = now;
                if let Err(e) = client.handle_input(&mut buf, now) {
                    break Err(SourceError::Camera(describe_error(&e)));
                }
            }
            None => {}
            Some(Err(e)) => {
                break Err(SourceError::Lost {
                    detail: Some(e.to_string()),
                });
            }
        }
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
        // Over UDP the media does not arrive on this socket: watch the datagrams instead.
        let last_media = if udp {
            feed.borrow()
                .as_ref()
                .map_or(last_rx, |f| f.last_udp.get().max(last_rx))
        } else {
            last_rx
        };
        if now.saturating_sub(last_media) > timeout.as_micros() as u64 {
            break Err(SourceError::Silent(timeout.as_secs()));
        }
    };
    drop(udp_tasks);
    drop(udp_sockets);
    if result.is_err() && !played && client.backchannel_asked() {
        debug!(stream = name, source = %redact(src), "asking this camera without the ONVIF backchannel from now on");
        NO_BACKCHANNEL.with(|n| {
            let mut n = n.borrow_mut();
            // Bounded: API-made streams could otherwise add URLs without end.
            if n.len() >= 4096 {
                n.clear();
            }
            n.insert(src.to_string());
        });
    }
    result
}

fn primary_feed(
    shard: &Rc<Shard>,
    name: &str,
    src: &str,
    sdp: &Sdp,
    selected: &[usize],
    asked_backchannel: bool,
) -> Result<Feed, SourceError> {
    let stream_sdp = corecast::filter::filtered(sdp, selected);
    let (owned, resumed) = own(shard, name, &stream_sdp, src, "rtsp")?;
    let backchannel: Vec<String> = sdp
        .medias
        .iter()
        .filter(|m| corecast::rtsp::client::is_backchannel(m))
        .filter_map(|m| m.codec().map(|(_, r)| corecast::api::codec_words(r)))
        .collect();
    // Described without asking, the SDP cannot list the speaker: keep what an earlier,
    // asking connection learned.
    if asked_backchannel {
        if let Some(e) = shard.registry.lock().streams.get_mut(name) {
            e.backchannel = backchannel;
        }
    }
    let mut map = vec![None; sdp.medias.len()];
    for (track, &m) in selected.iter().enumerate() {
        if let Some(slot) = map.get_mut(m) {
            *slot = Some(track);
        }
    }
    Ok(Feed {
        producer: primary_producer(&owned, resumed),
        owned,
        map,
        last_udp: std::cell::Cell::new(shard.clock.now()),
    })
}

/// Adds what the stream is missing from this source's medias; None when it has nothing
/// wanted (or the primary is not producing).
fn secondary_feed(
    shard: &Shard,
    name: &str,
    sdp: &Sdp,
    selected: &[usize],
    wants: &corecast::filter::Filter,
    added: &std::cell::Cell<Option<(usize, usize)>>,
) -> Option<Feed> {
    let owned = PULLED.with(|p| p.by_name.borrow().get(name).cloned())?;
    let offered = corecast::filter::filtered(sdp, selected);
    let reconnect = added.get().is_some();
    let (base, take): (usize, Vec<usize>) = match added.get() {
        // Reconnect: the same tracks again, in the same place.
        Some((base, n)) => (base, wants.select(&offered).into_iter().take(n).collect()),
        None => {
            let current = {
                let g = shard.registry.lock();
                g.streams.get(name)?.sdp.clone()?
            };
            let take = wants.missing(&current).select(&offered);
            if take.is_empty() {
                return None;
            }
            let medias = take.iter().map(|&i| offered.medias[i].clone()).collect();
            let base = shard
                .registry
                .append_medias(name, owned.stream.generation, medias)?;
            added.set(Some((base, take.len())));
            info!(
                stream = name,
                tracks = take.len(),
                "secondary source adds tracks"
            );
            (base, take)
        }
    };
    let sub = corecast::filter::filtered(&offered, &take);
    let mut map = vec![None; sdp.medias.len()];
    for (local, &i) in take.iter().enumerate() {
        if let Some(&m) = selected.get(i) {
            if let Some(slot) = map.get_mut(m) {
                *slot = Some(local);
            }
        }
    }
    // Copied on receipt, as the primary's (see `primary_producer`).
    let mut producer = Producer::new(owned.stream.clone(), &sub, owned.producer.clone())
        .payloads_owned()
        .secondary(base);
    if reconnect {
        producer = producer.resuming();
    }
    Some(Feed {
        producer,
        owned,
        map,
        last_udp: std::cell::Cell::new(shard.clock.now()),
    })
}

/// The producer of a primary connection: it starts at a keyframe, and continues the
/// numbering of the connection before it when the stream was kept. Its packets come as
/// right-sized copies already (the RTSP client's and the UDP task's `CopyChunk`, the exec
/// source's packetizer), so the producer does not copy them again.
fn primary_producer(owned: &Owned, resumed: bool) -> Producer {
    let p = Producer::new(owned.stream.clone(), &owned.sdp, owned.producer.clone())
        .payloads_owned()
        .at_keyframe();
    if resumed {
        p.resuming()
    } else {
        p
    }
}

/// UDP receive tasks of one connection, cancelled however the connection ends.
struct Tasks(Vec<glommio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in self.0.drain(..) {
            t.cancel();
        }
    }
}

/// Resolves a camera's host without blocking the shard (names go to a helper thread).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, SourceError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let h = host.to_string();
    let found = glommio::executor()
        .spawn_blocking(move || (h.as_str(), port).to_socket_addrs().map(|mut a| a.next()))
        .await;
    match found {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(SourceError::Resolve {
            host: host.to_string(),
            reason: None,
        }),
        Err(e) => Err(SourceError::Resolve {
            host: host.to_string(),
            reason: Some(e.to_string()),
        }),
    }
}

fn describe_error(e: &client::ClientError) -> String {
    match e {
        client::ClientError::Unauthorized => {
            "the camera refused the credentials (401 Unauthorized): check the user name and password".into()
        }
        other => other.to_string(),
    }
}

/// An even/odd UDP port pair on all interfaces, bound without `SO_REUSEPORT`: a port
/// another camera (or program) holds is refused and another pair is tried.
fn bind_udp_pair() -> std::io::Result<(UdpSocket, UdpSocket)> {
    use crate::io::udp_bind::bind_exclusive;
    use std::net::{Ipv4Addr, SocketAddr};
    let mut last = None;
    for _ in 0..32 {
        let base = 20_000 + (rand::random::<u16>() % 20_000) * 2;
        let at = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        match bind_exclusive(at(base)) {
            Ok(rtp) => match bind_exclusive(at(base + 1)) {
                Ok(rtcp) => return Ok((rtp, rtcp)),
                Err(e) => last = Some(e),
            },
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(|e| std::io::Error::other(e.to_string()))
        .unwrap_or_else(|| std::io::Error::other("no free port pair")))
}

fn spawn_udp(
    shard: Rc<Shard>,
    feed: Rc<RefCell<Option<Feed>>>,
    sock: UdpSocket,
    media_index: usize,
    camera: std::net::IpAddr,
) -> glommio::task::JoinHandle<()> {
    let fd = std::os::unix::io::AsRawFd::as_raw_fd(&sock);
    let task = glommio::spawn_local(async move {
        // Read through the shard's epoll set (see `io::ready`), or glommio's when it cannot
        // take the socket. Declared after `sock`: the registration goes first.
        let sock = sock;
        let reg = if crate::io::ready::disabled() {
            None
        } else {
            crate::io::ready::Registration::new(fd).ok()
        };
        // Datagrams land in a scratch buffer zeroed once and are copied, right-sized, into
        // this track's chunks (the producer keeps them as they are).
        let mut scratch = vec![0u8; MAX_DATAGRAM];
        let mut chunk = corecast::packet::CopyChunk::default();
        loop {
            let first = match &reg {
                Some(r) => {
                    r.readable().await;
                    match crate::io::sendv::try_recv_from(fd, &mut scratch) {
                        Some(x) => x,
                        None => {
                            r.drained();
                            continue;
                        }
                    }
                }
                None => {
                    let Ok(x) = sock.recv_from(&mut scratch).await else {
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    x
                }
            };
            // Drain the burst, then one flush (one producer tick).
            let mut next = Some(first);
            let mut budget = 64;
            {
                let mut f = feed.borrow_mut();
                while let Some((n, from)) = next {
                    // Only the camera's address may feed the stream.
                    if n < MAX_DATAGRAM && from.ip() == camera {
                        let data = chunk.copy(&scratch[..n]).freeze();
                        if let Some(f) = f.as_mut() {
                            f.push(&shard, media_index, data);
                        }
                    }
                    budget -= 1;
                    if budget == 0 {
                        break;
                    }
                    next = crate::io::sendv::try_recv_from(fd, &mut scratch);
                    if next.is_none() {
                        if let Some(r) = &reg {
                            r.drained();
                        }
                    }
                }
                if let Some(f) = f.as_ref() {
                    f.last_udp.set(shard.clock.now());
                    shard.flush(&f.owned.stream);
                }
            }
            if budget == 0 {
                // More may be queued: let the shard's other tasks run first.
                futures_lite::future::yield_now().await;
            }
        }
    })
    .detach();
    task
}

/// `exec:` stdout: sniff the format, demux, packetize to RTP, ingest.
pub struct StdoutIngest {
    name: String,
    sniff: Vec<u8>,
    source: Option<corecast::demux::StdoutSource>,
    feed: Option<Feed>,
}

impl StdoutIngest {
    pub fn new(name: &str) -> Self {
        StdoutIngest {
            name: name.to_string(),
            sniff: Vec::new(),
            source: None,
            feed: None,
        }
    }

    pub fn push(&mut self, shard: &Rc<Shard>, data: &[u8]) -> Result<(), SourceError> {
        let now = shard.clock.now();
        if self.source.is_none() {
            self.sniff.extend_from_slice(data);
            match corecast::demux::detect(&self.sniff) {
                None if self.sniff.len() < 64 * 1024 => return Ok(()),
                None => return Err(SourceError::Output("cannot tell the output format".into())),
                Some(Err(e)) => {
                    return Err(SourceError::Output(format!("unrecognised output: {e}")))
                }
                Some(Ok(format)) => {
                    debug!(stream = %self.name, ?format, "exec output detected");
                    let mut s = corecast::demux::StdoutSource::new(format, rand::random());
                    let pending = std::mem::take(&mut self.sniff);
                    s.push(&pending, now)
                        .map_err(|e| SourceError::Output(e.to_string()))?;
                    self.source = Some(s);
                }
            }
        } else if let Some(s) = self.source.as_mut() {
            s.push(data, now)
                .map_err(|e| SourceError::Output(e.to_string()))?;
        }
        let Some(src) = self.source.as_mut() else {
            return Ok(());
        };
        if self.feed.is_none() {
            let Some(text) = src.sdp() else { return Ok(()) };
            let sdp = corecast::sdp::parse(text)
                .map_err(|e| SourceError::Output(format!("demuxer SDP: {e}")))?;
            let (owned, resumed) = own(shard, &self.name, &sdp, "exec", "exec")?;
            // Demuxed stdout arrives in bursts (MPEG-TS interleaves audio well ahead of
            // video): arrival times say nothing reliable about A/V timing.
            shard.set_arrival_sync(&owned.stream, false);
            set_error(shard, &self.name, None);
            info!(stream = %self.name, tracks = sdp.medias.len(), "exec source producing");
            self.feed = Some(Feed {
                producer: primary_producer(&owned, resumed),
                map: (0..sdp.medias.len()).map(Some).collect(),
                owned,
                last_udp: std::cell::Cell::new(shard.clock.now()),
            });
        }
        if let Some(f) = self.feed.as_mut() {
            while let Some((track, pkt)) = src.poll_packet() {
                f.push(shard, track, pkt);
            }
            shard.flush(&f.owned.stream);
        }
        Ok(())
    }
}

#[cfg(test)]
mod port_tests {
    use super::*;

    /// Many pulled UDP cameras at once: every RTP/RTCP port is distinct (with glommio's
    /// SO_REUSEPORT bind, two pairs could land on the same ports).
    #[test]
    fn pulled_cameras_never_share_a_port() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let mut seen = std::collections::HashSet::new();
                let mut keep = Vec::new();
                for _ in 0..200 {
                    let (rtp, rtcp) = bind_udp_pair().expect("a free pair");
                    let (a, b) = (rtp.local_addr().unwrap(), rtcp.local_addr().unwrap());
                    assert_eq!(a.port() % 2, 0);
                    assert_eq!(b.port(), a.port() + 1);
                    assert!(seen.insert(a.port()) && seen.insert(b.port()), "{a} reused");
                    keep.push((rtp, rtcp));
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

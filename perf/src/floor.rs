//! The raw-send floor: the least a server can do to deliver a stream to N RTSP viewers.
//!
//! It speaks just enough RTSP for our own publisher and viewers (ANNOUNCE/SETUP/RECORD,
//! DESCRIBE/SETUP/PLAY, keepalives), then for every read from a publisher it copies the
//! complete interleaved frames once into a shared batch and writes that batch, as is, with
//! one `write` per TCP viewer (or one `sendmmsg` per batch for all UDP viewers of a
//! thread). Threads: one per core, SO_REUSEPORT listeners, a batch crosses threads once
//! (a queue and an eventfd per thread). No ring, no keyframe logic, no RTCP, no slow-viewer
//! handling beyond a bounded per-viewer backlog: it is the kernel's cost of moving the
//! bytes, which is what corecast is compared against.
//!
//! With `--pull` it is also the floor of a relay: at start it pulls N cameras from another
//! RTSP server (DESCRIBE/SETUP interleaved/PLAY, blocking, before it listens) and treats
//! each as a publisher, so it ingests what a server pulling N cameras ingests (`nvr`).
//!
//! Limitation (fine for the harness): a TCP viewer must ask for interleaved channels
//! `2i-2i+1` for track i (our viewers do), since frames are forwarded without rewriting.

use crate::frames::{self, Item};
use bytes::{Buf, BytesMut};
use corecast::rtsp::message::{self, Message, Method, Request, Response};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

/// Per-viewer backlog before batches are dropped for that viewer.
const MAX_PENDING: usize = 4 << 20;

struct Batch {
    /// Complete interleaved frames (`$`, channel, length, RTP packet), back to back.
    bytes: Vec<u8>,
    /// (offset of the RTP packet in `bytes`, length, channel) for UDP viewers.
    packets: Vec<(usize, usize, u8)>,
}

struct Inbox {
    queue: Mutex<Vec<(usize, Arc<Batch>)>>,
    efd: i32,
}

struct Global {
    /// path → (stream id, SDP as announced)
    streams: Mutex<HashMap<String, (usize, String)>>,
    inboxes: Vec<Inbox>,
    /// Camera farm: a path that nobody announced and that ends in a number N is served
    /// from the announced stream `{prefix}{N % count}` (`--alias`).
    alias: Option<(String, usize)>,
}

impl Global {
    /// The stream a reader of `path` gets: announced under that path, or its alias.
    fn lookup(&self, path: &str) -> Option<(usize, String)> {
        let streams = self.streams.lock().unwrap();
        if let Some(e) = streams.get(path) {
            return Some(e.clone());
        }
        let (prefix, count) = self.alias.as_ref()?;
        streams.get(&alias_of(path, prefix, *count)?).cloned()
    }
}

/// `cam17` with prefix `src` and count 4 → `src1`.
fn alias_of(path: &str, prefix: &str, count: usize) -> Option<String> {
    let digits = path.len() - path.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let n: usize = path[path.len() - digits..].parse().ok()?;
    Some(format!("{prefix}{}", n % count.max(1)))
}

enum Role {
    Unknown,
    Publisher {
        sid: usize,
        recording: bool,
    },
    Reader {
        sid: Option<usize>,
        /// UDP destination (RTP) per track; empty = TCP.
        udp: Vec<Option<SocketAddr>>,
        playing: bool,
    },
}

struct Conn {
    sock: TcpStream,
    peer: SocketAddr,
    rbuf: BytesMut,
    pending: Vec<u8>,
    role: Role,
    session: String,
    dropped: u64,
}

/// `--pull`: cameras `{prefix}{i}` for i < count, pulled from `{base}/{prefix}{i}`.
pub struct Pull {
    pub base: String,
    pub prefix: String,
    pub count: usize,
}

/// A pulled camera's connection, playing, and what was read past the PLAY response.
struct Pulled {
    sock: TcpStream,
    peer: SocketAddr,
    rest: BytesMut,
    sid: usize,
}

/// Pulls camera `path` from `url` over RTSP/TCP, interleaved channels 2t-2t+1 for track t
/// (as the floor's viewers ask), and returns the playing connection and the SDP.
fn pull_one(url: &str) -> Result<(TcpStream, BytesMut, String), String> {
    let u = crate::client::parse_url(url)?;
    let mut c = crate::client::Blocking::connect(u.addr, std::time::Duration::from_secs(5))?;
    let resp = c.call(
        Method::Describe,
        url,
        &[("Accept", "application/sdp")],
        None,
    )?;
    let sdp = String::from_utf8_lossy(&resp.body).to_string();
    for (t, setup) in crate::client::setup_urls(url, &resp)?.iter().enumerate() {
        let transport = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * t, 2 * t + 1);
        c.call(Method::Setup, setup, &[("Transport", &transport)], None)?;
    }
    c.call(Method::Play, url, &[("Range", "npt=0.000-")], None)?;
    let (sock, rest) = c.into_parts();
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    sock.set_nodelay(true).ok();
    Ok((sock, rest, sdp))
}

pub fn run(
    listen: SocketAddr,
    threads: usize,
    udp_port: u16,
    alias: Option<(String, usize)>,
    tick_ms: u64,
    pull: Option<Pull>,
) -> Result<(), String> {
    let threads = threads.max(1);
    // Pulled cameras first: the floor listens (and the harness starts viewers) once all
    // of them play. Camera i goes to thread i % threads.
    let mut streams = HashMap::new();
    let mut pulled: Vec<Vec<Pulled>> = (0..threads).map(|_| Vec::new()).collect();
    if let Some(p) = &pull {
        for i in 0..p.count {
            let path = format!("{}{i}", p.prefix);
            let url = format!("{}/{path}", p.base.trim_end_matches('/'));
            let (sock, rest, sdp) = pull_one(&url).map_err(|e| format!("pull {url}: {e}"))?;
            let peer = sock.peer_addr().map_err(|e| e.to_string())?;
            streams.insert(path, (i, sdp));
            pulled[i % threads].push(Pulled {
                sock,
                peer,
                rest,
                sid: i,
            });
        }
        eprintln!(
            "corecast-perf floor: pulling {} cameras from {}",
            p.count, p.base
        );
    }
    let mut inboxes = Vec::new();
    for _ in 0..threads {
        // SAFETY: plain syscall.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error().to_string());
        }
        inboxes.push(Inbox {
            queue: Mutex::new(Vec::new()),
            efd,
        });
    }
    let global = Arc::new(Global {
        streams: Mutex::new(streams),
        inboxes,
        alias,
    });
    let mut handles = Vec::new();
    for (t, mine) in pulled.into_iter().enumerate() {
        let listener = reuseport_listener(listen).map_err(|e| format!("listen {listen}: {e}"))?;
        let port = udp_port + 2 * t as u16;
        let rtp = UdpSocket::bind(("127.0.0.1", port)).map_err(|e| format!("udp {port}: {e}"))?;
        let rtcp = UdpSocket::bind(("127.0.0.1", port + 1)).map_err(|e| e.to_string())?;
        rtp.set_nonblocking(true).ok();
        let g = global.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("floor-{t}"))
                .spawn(move || {
                    let mut th = Thread::new(t, g, listener, rtp, rtcp, port);
                    th.tick_ns = tick_ms * 1_000_000;
                    for p in mine {
                        th.add_pulled(p);
                    }
                    th.run()
                })
                .map_err(|e| e.to_string())?,
        );
    }
    eprintln!("corecast-perf floor: listening on {listen}, {threads} threads, UDP from {udp_port}");
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

const KEY_LISTENER: u64 = u64::MAX;
const KEY_INBOX: u64 = u64::MAX - 1;

struct Thread {
    id: usize,
    g: Arc<Global>,
    listener: TcpListener,
    rtp: UdpSocket,
    _rtcp: UdpSocket,
    udp_port: u16,
    ep: i32,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    readers: HashMap<usize, Vec<usize>>,
    rbuf: Vec<u8>,
    /// `--tick-ms`: publisher reads are held and written to viewers once per tick.
    tick_ns: u64,
    held: HashMap<usize, Batch>,
}

impl Thread {
    fn new(
        id: usize,
        g: Arc<Global>,
        listener: TcpListener,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        udp_port: u16,
    ) -> Self {
        // SAFETY: plain syscall.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        Thread {
            id,
            g,
            listener,
            rtp,
            _rtcp: rtcp,
            udp_port,
            ep,
            conns: Vec::new(),
            free: Vec::new(),
            readers: HashMap::new(),
            rbuf: vec![0; 256 * 1024],
            tick_ns: 0,
            held: HashMap::new(),
        }
    }

    fn ctl(&self, op: i32, fd: i32, events: u32, key: u64) {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: valid epoll fd and event.
        unsafe { libc::epoll_ctl(self.ep, op, fd, &mut ev) };
    }

    fn run(mut self) {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            self.listener.as_raw_fd(),
            libc::EPOLLIN as u32,
            KEY_LISTENER,
        );
        let efd = self.g.inboxes[self.id].efd;
        self.ctl(libc::EPOLL_CTL_ADD, efd, libc::EPOLLIN as u32, KEY_INBOX);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
        let mut next_tick = crate::util::now_ns() + self.tick_ns;
        loop {
            let timeout = if self.tick_ns == 0 {
                1000
            } else {
                let now = crate::util::now_ns();
                if now >= next_tick {
                    self.tick();
                    next_tick = now + self.tick_ns;
                }
                (next_tick.saturating_sub(now) / 1_000_000).max(1) as i32
            };
            // SAFETY: valid buffer.
            let n = unsafe {
                libc::epoll_wait(self.ep, events.as_mut_ptr(), events.len() as i32, timeout)
            };
            for ev in events.iter().take(n.max(0) as usize) {
                let (flags, key) = (ev.events, ev.u64);
                match key {
                    KEY_LISTENER => self.accept(),
                    KEY_INBOX => self.inbox(),
                    k => {
                        let i = k as usize;
                        if flags & libc::EPOLLOUT as u32 != 0 {
                            self.flush(i);
                        }
                        if flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                            self.readable(i);
                        }
                    }
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, peer)) => {
                    sock.set_nonblocking(true).ok();
                    sock.set_nodelay(true).ok();
                    let i = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    self.ctl(
                        libc::EPOLL_CTL_ADD,
                        sock.as_raw_fd(),
                        libc::EPOLLIN as u32,
                        i as u64,
                    );
                    self.conns[i] = Some(Conn {
                        sock,
                        peer,
                        rbuf: BytesMut::new(),
                        pending: Vec::new(),
                        role: Role::Unknown,
                        session: format!("{:08x}{:04x}", i, self.id),
                        dropped: 0,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return,
            }
        }
    }

    /// A pulled camera: a publisher that is already recording.
    fn add_pulled(&mut self, p: Pulled) {
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.ctl(
            libc::EPOLL_CTL_ADD,
            p.sock.as_raw_fd(),
            libc::EPOLLIN as u32,
            i as u64,
        );
        let pending_media = !p.rest.is_empty();
        self.conns[i] = Some(Conn {
            sock: p.sock,
            peer: p.peer,
            rbuf: p.rest,
            pending: Vec::new(),
            role: Role::Publisher {
                sid: p.sid,
                recording: true,
            },
            session: format!("{:08x}{:04x}", i, self.id),
            dropped: 0,
        });
        if pending_media {
            self.readable_again(i);
        }
    }

    fn inbox(&mut self) {
        let efd = self.g.inboxes[self.id].efd;
        let mut v = 0u64;
        // SAFETY: reading 8 bytes into a u64.
        unsafe { libc::read(efd, &mut v as *mut u64 as *mut libc::c_void, 8) };
        let items = std::mem::take(&mut *self.g.inboxes[self.id].queue.lock().unwrap());
        for (sid, batch) in items {
            self.deliver(sid, &batch);
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(c) = self.conns[i].take() {
            if let Role::Reader { sid: Some(sid), .. } = c.role {
                if let Some(list) = self.readers.get_mut(&sid) {
                    list.retain(|&x| x != i);
                }
            }
            if let Role::Publisher { .. } = c.role {
                // The stream stays announced; a new publisher may take the path again.
            }
            self.free.push(i);
            // Dropping the socket closes it and removes it from the epoll set.
        }
    }

    fn readable(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let n = match c.sock.read(&mut self.rbuf) {
            Ok(0) => {
                self.close(i);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => {
                self.close(i);
                return;
            }
        };
        c.rbuf.extend_from_slice(&self.rbuf[..n]);
        let recording = matches!(
            c.role,
            Role::Publisher {
                recording: true,
                ..
            }
        );
        if recording {
            let sid = match c.role {
                Role::Publisher { sid, .. } => sid,
                _ => unreachable!(),
            };
            let mut batch = Batch {
                bytes: Vec::with_capacity(c.rbuf.len()),
                packets: Vec::new(),
            };
            let mut requests: Vec<Vec<u8>> = Vec::new();
            let used = frames::split(&c.rbuf, |it| match it {
                Item::Frame { channel, data } => {
                    if channel % 2 == 0 {
                        let off = batch.bytes.len() + 4;
                        batch
                            .bytes
                            .extend_from_slice(&message::write_interleaved_header(
                                channel,
                                data.len() as u16,
                            ));
                        batch.bytes.extend_from_slice(data);
                        batch.packets.push((off, data.len(), channel));
                    }
                }
                Item::Message(m) => requests.push(m.to_vec()),
            });
            match used {
                Ok(u) => c.rbuf.advance(u),
                Err(_) => {
                    self.close(i);
                    return;
                }
            }
            for r in requests {
                let mut b = BytesMut::from(&r[..]);
                if let Ok(Some(Message::Request(req))) = message::parse(&mut b) {
                    self.request(i, req);
                }
            }
            self.publish(sid, batch);
            return;
        }
        loop {
            let Some(c) = self.conns[i].as_mut() else {
                return;
            };
            match message::parse(&mut c.rbuf) {
                Ok(Some(Message::Request(req))) => self.request(i, req),
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(_) => {
                    self.close(i);
                    return;
                }
            }
            // RECORD switches the connection to media: the rest is handled above.
            if let Some(Conn {
                role: Role::Publisher {
                    recording: true, ..
                },
                rbuf,
                ..
            }) = self.conns[i].as_ref()
            {
                if !rbuf.is_empty() {
                    self.readable_again(i);
                }
                return;
            }
        }
    }

    /// Media that arrived in the same read as RECORD: process it without a new read.
    fn readable_again(&mut self, i: usize) {
        // Re-enter with an empty read by faking zero new bytes: simplest is to move the
        // bytes through the media path directly.
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let data = std::mem::take(&mut c.rbuf);
        let sid = match c.role {
            Role::Publisher { sid, .. } => sid,
            _ => return,
        };
        let mut batch = Batch {
            bytes: Vec::new(),
            packets: Vec::new(),
        };
        let used = frames::split(&data, |it| {
            if let Item::Frame { channel, data } = it {
                if channel % 2 == 0 {
                    let off = batch.bytes.len() + 4;
                    batch
                        .bytes
                        .extend_from_slice(&message::write_interleaved_header(
                            channel,
                            data.len() as u16,
                        ));
                    batch.bytes.extend_from_slice(data);
                    batch.packets.push((off, data.len(), channel));
                }
            }
        })
        .unwrap_or(data.len());
        c.rbuf.extend_from_slice(&data[used..]);
        self.publish(sid, batch);
    }

    /// Media read from a publisher: out now (per read), or held until the next tick.
    fn publish(&mut self, sid: usize, batch: Batch) {
        if batch.packets.is_empty() {
            return;
        }
        if self.tick_ns == 0 {
            self.send_batch(sid, batch);
            return;
        }
        let held = self.held.entry(sid).or_insert_with(|| Batch {
            bytes: Vec::with_capacity(64 * 1024),
            packets: Vec::new(),
        });
        let base = held.bytes.len();
        held.bytes.extend_from_slice(&batch.bytes);
        held.packets.extend(
            batch
                .packets
                .iter()
                .map(|&(off, len, ch)| (base + off, len, ch)),
        );
    }

    /// Every held batch out (`--tick-ms`).
    fn tick(&mut self) {
        let held: Vec<(usize, Batch)> = self.held.drain().collect();
        for (sid, b) in held {
            self.send_batch(sid, b);
        }
    }

    /// To this thread's viewers, and once to each other thread.
    fn send_batch(&mut self, sid: usize, batch: Batch) {
        let batch = Arc::new(batch);
        self.deliver(sid, &batch);
        for (t, inbox) in self.g.inboxes.iter().enumerate() {
            if t != self.id {
                inbox.queue.lock().unwrap().push((sid, batch.clone()));
                let one = 1u64;
                // SAFETY: writing 8 bytes from a u64 to an eventfd.
                unsafe { libc::write(inbox.efd, &one as *const u64 as *const libc::c_void, 8) };
            }
        }
    }

    fn deliver(&mut self, sid: usize, batch: &Arc<Batch>) {
        let Some(list) = self.readers.get(&sid) else {
            return;
        };
        let list = list.clone();
        // UDP viewers: one sendmmsg for all (viewer, packet) pairs of this batch.
        let mut udp: Vec<(usize, usize, SocketAddr)> = Vec::new();
        for i in list {
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            match &c.role {
                Role::Reader {
                    udp: dests,
                    playing: true,
                    ..
                } if !dests.is_empty() => {
                    for &(off, len, ch) in &batch.packets {
                        if let Some(Some(d)) = dests.get((ch / 2) as usize) {
                            udp.push((off, len, *d));
                        }
                    }
                }
                Role::Reader { playing: true, .. } => {
                    write_or_queue(c, &batch.bytes);
                    if !c.pending.is_empty() {
                        let fd = c.sock.as_raw_fd();
                        self.ctl(
                            libc::EPOLL_CTL_MOD,
                            fd,
                            (libc::EPOLLIN | libc::EPOLLOUT) as u32,
                            i as u64,
                        );
                    }
                }
                _ => {}
            }
        }
        if !udp.is_empty() {
            send_udp(&self.rtp, &batch.bytes, &udp);
        }
    }

    fn flush(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        while !c.pending.is_empty() {
            match c.sock.write(&c.pending) {
                Ok(n) => {
                    c.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.close(i);
                    return;
                }
            }
        }
        let fd = c.sock.as_raw_fd();
        self.ctl(libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32, i as u64);
    }

    fn request(&mut self, i: usize, req: Request) {
        let cseq = req.cseq().unwrap_or(0);
        let udp_port = self.udp_port;
        let mut resp = Response::new(200);
        let path = path_of(&req.uri);
        let c = self.conns[i].as_mut().unwrap();
        let mut start_reading: Option<usize> = None;
        let mut stop_reading: Option<usize> = None;
        match req.method {
            Method::Options => {
                resp = resp.with_header(
                    "Public",
                    "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, GET_PARAMETER",
                );
            }
            Method::Describe => match self.g.lookup(&path) {
                Some((_, sdp)) => {
                    resp = resp
                        .with_header(
                            "Content-Base",
                            format!("{}/", req.uri.trim_end_matches('/')),
                        )
                        .with_body("application/sdp", sdp.into_bytes());
                }
                None => resp = Response::new(404),
            },
            Method::Announce => {
                let sdp = String::from_utf8_lossy(&req.body).to_string();
                let mut streams = self.g.streams.lock().unwrap();
                let next = streams.len();
                let sid = match streams.get_mut(&path) {
                    Some(e) => {
                        e.1 = sdp;
                        e.0
                    }
                    None => {
                        streams.insert(path.clone(), (next, sdp));
                        next
                    }
                };
                c.role = Role::Publisher {
                    sid,
                    recording: false,
                };
            }
            Method::Setup => {
                let (stream_path, track) = split_track(&path);
                let t = req
                    .headers
                    .get("Transport")
                    .and_then(|v| corecast::rtsp::transport::parse(v).ok())
                    .and_then(|v| v.into_iter().next());
                match t {
                    None => resp = Response::new(461),
                    Some(t) if t.mode_record => {
                        resp = resp.with_header("Transport", t.to_string());
                    }
                    Some(t) => {
                        let sid = self.g.lookup(&stream_path).map(|e| e.0);
                        if sid.is_none() {
                            resp = Response::new(404);
                        } else {
                            if !matches!(c.role, Role::Reader { .. }) {
                                c.role = Role::Reader {
                                    sid,
                                    udp: Vec::new(),
                                    playing: false,
                                };
                            }
                            if let Role::Reader { udp, .. } = &mut c.role {
                                if let (false, Some((a, b))) = (t.tcp, t.client_port) {
                                    if udp.len() <= track {
                                        udp.resize(track + 1, None);
                                    }
                                    udp[track] = Some(SocketAddr::new(c.peer.ip(), a));
                                    resp = resp.with_header(
                                        "Transport",
                                        format!(
                                            "RTP/AVP;unicast;client_port={a}-{b};server_port={}-{}",
                                            udp_port,
                                            udp_port + 1
                                        ),
                                    );
                                } else {
                                    let (a, b) = t
                                        .interleaved
                                        .unwrap_or((2 * track as u8, 2 * track as u8 + 1));
                                    resp = resp.with_header(
                                        "Transport",
                                        format!("RTP/AVP/TCP;unicast;interleaved={a}-{b}"),
                                    );
                                }
                            }
                        }
                    }
                }
            }
            Method::Play => {
                if let Role::Reader {
                    sid: Some(sid),
                    playing,
                    ..
                } = &mut c.role
                {
                    if !*playing {
                        *playing = true;
                        start_reading = Some(*sid);
                    }
                    resp = resp.with_header("Range", "npt=0.000-");
                } else {
                    resp = Response::new(455);
                }
            }
            Method::Record => {
                if let Role::Publisher { recording, .. } = &mut c.role {
                    *recording = true;
                } else {
                    resp = Response::new(455);
                }
            }
            Method::Teardown => {
                if let Role::Reader {
                    sid: Some(sid),
                    playing,
                    ..
                } = &mut c.role
                {
                    if *playing {
                        *playing = false;
                        stop_reading = Some(*sid);
                    }
                }
            }
            _ => {}
        }
        resp.headers.insert("CSeq", cseq.to_string());
        resp.headers.insert("Server", "corecast-perf-floor");
        resp.headers
            .insert("Session", format!("{};timeout=60", c.session));
        let mut out = Vec::new();
        resp.write_to(&mut out);
        write_or_queue(c, &out);
        if let Some(sid) = start_reading {
            self.readers.entry(sid).or_default().push(i);
        }
        if let Some(sid) = stop_reading {
            if let Some(l) = self.readers.get_mut(&sid) {
                l.retain(|&x| x != i);
            }
        }
    }
}

fn write_or_queue(c: &mut Conn, bytes: &[u8]) {
    if !c.pending.is_empty() {
        if c.pending.len() + bytes.len() > MAX_PENDING {
            c.dropped += 1;
        } else {
            c.pending.extend_from_slice(bytes);
        }
        return;
    }
    let mut off = 0;
    while off < bytes.len() {
        match c.sock.write(&bytes[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
    if off < bytes.len() {
        c.pending.extend_from_slice(&bytes[off..]);
    }
}

fn send_udp(sock: &UdpSocket, bytes: &[u8], items: &[(usize, usize, SocketAddr)]) {
    const CHUNK: usize = 512;
    for chunk in items.chunks(CHUNK) {
        let addrs: Vec<SockAddr> = chunk.iter().map(|x| SockAddr::from(x.2)).collect();
        let mut iov: Vec<libc::iovec> = chunk
            .iter()
            .map(|&(off, len, _)| libc::iovec {
                iov_base: bytes[off..].as_ptr() as *mut libc::c_void,
                iov_len: len,
            })
            .collect();
        // SAFETY: zeroed mmsghdr is valid; fields filled below point at live data.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; chunk.len()];
        for (k, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_name = addrs[k].as_ptr() as *mut libc::c_void;
            m.msg_hdr.msg_namelen = addrs[k].len();
            m.msg_hdr.msg_iov = &mut iov[k];
            m.msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < msgs.len() {
            // SAFETY: msgs[sent..] are valid headers into live buffers.
            let n = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    msgs[sent..].as_mut_ptr(),
                    (msgs.len() - sent) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
            sent += n as usize;
        }
    }
}

/// `rtsp://host:port/a/b?x` → `a/b`.
fn path_of(uri: &str) -> String {
    let rest = uri
        .strip_prefix("rtsp://")
        .and_then(|r| r.split_once('/').map(|x| x.1))
        .unwrap_or(uri.trim_start_matches('/'));
    let rest = rest.split('?').next().unwrap_or("");
    rest.trim_end_matches('/').to_string()
}

/// `perf0/trackID=1` (ours) or `cam/streamid=1` (ffmpeg's) → (`perf0`, 1).
fn split_track(path: &str) -> (String, usize) {
    if let Some((base, last)) = path.rsplit_once('/') {
        for prefix in ["trackID=", "streamid="] {
            if let Some(n) = last.strip_prefix(prefix) {
                return (base.to_string(), n.parse().unwrap_or(0));
            }
        }
    }
    (path.to_string(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(path_of("rtsp://127.0.0.1:1/perf0"), "perf0");
        assert_eq!(path_of("rtsp://127.0.0.1:1/perf0/"), "perf0");
        assert_eq!(path_of("rtsp://127.0.0.1:1/a/b?x=1"), "a/b");
        assert_eq!(split_track("perf0/trackID=1"), ("perf0".into(), 1));
        assert_eq!(split_track("perf0"), ("perf0".into(), 0));
        assert_eq!(split_track("cam3/streamid=1"), ("cam3".into(), 1));
        assert_eq!(alias_of("cam17", "src", 4).as_deref(), Some("src1"));
        assert_eq!(alias_of("cam", "src", 4), None);
    }
}

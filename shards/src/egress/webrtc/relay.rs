//! TURN relay candidates and `stun:PORT` candidates for WebRTC sessions.
//!
//! Per shard and per TURN server (and credentials), one allocation on its own UDP socket
//! (ephemeral port, not SO_REUSEPORT: the server's answers and relayed data come back to
//! this shard, which owns every session that uses it). It is made when an offer first
//! needs it, shared by the shard's sessions, refreshed while used and closed after
//! [`IDLE`] without users. A session gets a `typ relay` candidate in its answer, and
//! permissions for the IPs of the viewer's candidates (the offer's and trickled ones, at
//! most [`MAX_PEER_IPS`]). Data from the relay enters the session as if it came from the
//! peer (`Transport::Relay(slot)`), and what the session sends to such a peer goes out
//! through the relay (ChannelData once bound, Send indications before).
//!
//! Credentials stay in the TURN client: logs name the server and the username only.

use super::{canon, on_datagram};
use crate::core::hub::Shard;
use crate::io::sendv::UdpBatch;
use corecast::config::IceServer;
use corecast::webrtc::ice::{Remote, Transport};
use corecast::webrtc::turn::{self, Client, State};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Allocations one shard holds at most.
const MAX_RELAYS: usize = 16;
/// TURN servers one session uses at most.
const MAX_PER_SESSION: usize = 4;
/// Peer IPs one session gets permissions for at most.
pub const MAX_PEER_IPS: usize = 16;
/// How long an offer waits for allocations (and the first STUN answer) before it is
/// answered with what there is.
pub const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// An allocation without sessions is kept this long (the next viewer gets it at once).
const IDLE: Duration = Duration::from_secs(300);
/// A server whose allocation failed is not tried again before this.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// `ice_servers` entries and URLs per entry read from a Home Assistant message.
const MAX_SERVERS: usize = 8;
const MAX_URLS: usize = 8;
/// The public address from `stun:` is looked up again after this (and after
/// [`STUN_RETRY`] when no STUN server answered).
const STUN_REFRESH: Duration = Duration::from_secs(1800);
const STUN_RETRY: Duration = Duration::from_secs(60);
/// go2rtc's default STUN servers, used for `stun:PORT` when `ice_servers` names none.
const DEFAULT_STUN: [&str; 2] = ["stun.cloudflare.com:3478", "stun.l.google.com:19302"];
/// Largest datagram read from a relay socket.
const MAX_DATAGRAM: usize = 2048;

struct Relay {
    shard: Rc<Shard>,
    slot: u8,
    server: SocketAddr,
    username: String,
    /// Compared only, to tell allocations with other credentials apart; never logged.
    credential: String,
    sock: glommio::net::UdpSocket,
    client: RefCell<Client>,
    batch: RefCell<UdpBatch>,
    buf: RefCell<Vec<u8>>,
    users: Cell<usize>,
    idle_since: Cell<Instant>,
    failed_at: Cell<Option<Instant>>,
    created: Instant,
}

/// What a session uses: relay slots, and the peer IPs permitted on each.
#[derive(Default)]
struct Uses {
    slots: Vec<u8>,
    ips: Vec<IpAddr>,
}

thread_local! {
    static RELAYS: RefCell<Vec<Option<Rc<Relay>>>> = const { RefCell::new(Vec::new()) };
    /// Session id -> what it uses.
    static USES: RefCell<HashMap<String, Uses>> = RefCell::new(HashMap::new());
    /// `/api/ws` connection (peer address) -> its latest session and the candidates it
    /// trickled before the offer was answered.
    static WS: RefCell<HashMap<SocketAddr, WsPeer>> = RefCell::new(HashMap::new());
    /// The public IP learned by STUN, when it was learned, and whether a lookup runs.
    static STUN_IP: RefCell<StunCache> = RefCell::new(StunCache::default());
}

/// An `/api/ws` connection's session, and the IPs it trickled before its offer.
type WsPeer = (Option<String>, Vec<IpAddr>);

#[derive(Default)]
struct StunCache {
    ip: Option<IpAddr>,
    /// The first lookup has ended (with or without an answer).
    done: bool,
}

fn relay(slot: u8) -> Option<Rc<Relay>> {
    RELAYS.with(|r| r.borrow().get(usize::from(slot)).cloned().flatten())
}

impl Relay {
    fn now(&self) -> u64 {
        self.shard.clock.now()
    }

    fn dead(&self) -> bool {
        matches!(
            self.client.borrow().state(),
            State::Failed(_) | State::Closed
        )
    }

    /// Sends what the client queued (requests, retransmissions).
    fn flush(&self) {
        let mut out = Vec::new();
        {
            let mut c = self.client.borrow_mut();
            while let Some(d) = c.poll_transmit() {
                out.push(d);
            }
        }
        if out.is_empty() {
            return;
        }
        let mut b = self.batch.borrow_mut();
        b.clear();
        for d in &out {
            b.push(d, self.server);
        }
        b.send(self.sock.as_raw_fd());
    }
}

/// TURN servers (`turn:host[:port][?transport=udp]`) of `servers` with credentials.
fn turn_urls(servers: &[IceServer]) -> Vec<(String, u16, &IceServer)> {
    let mut out = Vec::new();
    for s in servers {
        if s.username.is_none() || s.credential.is_none() {
            continue;
        }
        for u in &s.urls {
            let Some(rest) = u.strip_prefix("turn:") else {
                continue; // turns: (TLS) and stun: are not relays we can allocate
            };
            let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
            if query.contains("transport=") && !query.contains("transport=udp") {
                continue;
            }
            if let Some((h, p)) = split_host_port(hostport, 3478) {
                out.push((h, p, s));
            }
        }
    }
    out
}

/// STUN servers (`stun:host[:port]`) of `servers`.
fn stun_urls(servers: &[IceServer]) -> Vec<(String, u16)> {
    servers
        .iter()
        .flat_map(|s| &s.urls)
        .filter_map(|u| split_host_port(u.strip_prefix("stun:")?, 3478))
        .collect()
}

/// `host`, `host:port`, `[v6]:port`, `v6`.
fn split_host_port(s: &str, default: u16) -> Option<(String, u16)> {
    if s.is_empty() {
        return None;
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some((a.ip().to_string(), a.port()));
    }
    if let Ok(ip) = s.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Some((ip.to_string(), default));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((s.to_string(), default)),
    }
}

/// Resolves a host without blocking the shard (names go to a helper thread).
async fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    let h = host.to_string();
    glommio::executor()
        .spawn_blocking(move || {
            use std::net::ToSocketAddrs;
            (h.as_str(), port).to_socket_addrs().ok()?.next()
        })
        .await
}

/// `ice_servers` of a Home Assistant `webrtc` message (`[{urls, username, credential}]`).
pub fn ha_servers(value: Option<&simd_json::OwnedValue>) -> Vec<IceServer> {
    use simd_json::prelude::*;
    let mut out = Vec::new();
    let Some(list) = value
        .and_then(|v| v.get("ice_servers"))
        .and_then(|l| l.as_array())
    else {
        return out;
    };
    for s in list.iter().take(MAX_SERVERS) {
        let urls: Vec<String> = match s.get("urls") {
            Some(u) if u.as_str().is_some() => u.as_str().map(str::to_string).into_iter().collect(),
            Some(u) => u
                .as_array()
                .map(|a| {
                    a.iter()
                        .take(MAX_URLS)
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let text = |k: &str| s.get(k).and_then(|v| v.as_str()).map(str::to_string);
        out.push(IceServer {
            urls,
            username: text("username"),
            credential: text("credential"),
        });
    }
    out
}

/// The relay candidates for a new session: allocations on the TURN servers of the config
/// and of `extra` (from the offer's signalling), made or reused, waited for at most
/// [`ANSWER_WAIT`]. Returns (slot, candidate line) per working allocation.
pub async fn gather(shard: &Rc<Shard>, extra: &[IceServer]) -> Vec<(u8, String)> {
    let config = &shard.config.webrtc.ice_servers;
    let urls: Vec<_> = turn_urls(config)
        .into_iter()
        .chain(turn_urls(extra))
        .take(MAX_PER_SESSION)
        .collect();
    if urls.is_empty() {
        return Vec::new();
    }
    let deadline = Instant::now() + ANSWER_WAIT;
    let mut slots = Vec::new();
    for (host, port, s) in urls {
        let left = deadline.saturating_duration_since(Instant::now());
        let addr = match glommio::timer::timeout(left, async { Ok(resolve(&host, port).await) })
            .await
        {
            Ok(Some(a)) => canon(a),
            _ => {
                warn!(server = %host, "webrtc: TURN server not resolved; answering without its relay");
                continue;
            }
        };
        let user = s.username.as_deref().unwrap_or("");
        let cred = s.credential.as_deref().unwrap_or("");
        if let Some(slot) = relay_for(shard, addr, user, cred) {
            if !slots.contains(&slot) {
                slots.push(slot);
            }
        }
    }
    // Wait (bounded) for the allocations still under way; one that has not answered
    // within ANSWER_WAIT of its start (an earlier offer waited already) is not waited for.
    loop {
        let pending = slots.iter().any(|&s| {
            relay(s).is_some_and(|r| {
                *r.client.borrow().state() == State::Allocating && r.created.elapsed() < ANSWER_WAIT
            })
        });
        if !pending || Instant::now() >= deadline {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    let mut out = Vec::new();
    for (i, &slot) in slots.iter().enumerate() {
        let Some(r) = relay(slot) else { continue };
        let c = r.client.borrow();
        match (c.relayed(), c.state()) {
            (Some(relayed), _) => {
                out.push((slot, turn::relay_candidate_line(relayed, c.mapped(), i)));
            }
            (None, State::Allocating) => {
                info!(server = %r.server, user = %r.username, "webrtc: TURN allocation not ready within {ANSWER_WAIT:?}; answering without it")
            }
            (None, _) => {}
        }
    }
    out
}

/// The slot of a live (or fresh) allocation on `server` with these credentials.
fn relay_for(shard: &Rc<Shard>, server: SocketAddr, user: &str, cred: &str) -> Option<u8> {
    let found = RELAYS.with(|r| {
        r.borrow().iter().flatten().find_map(|x| {
            (x.server == server && x.username == user && x.credential == cred).then(|| x.clone())
        })
    });
    if let Some(r) = &found {
        if !r.dead() {
            return Some(r.slot);
        }
        // A failed server rests a while; a closed one is replaced at once.
        if r.failed_at.get().is_some_and(|t| t.elapsed() < RETRY_AFTER) {
            return None;
        }
    }
    // A free slot: empty, or dead and unused.
    let slot = RELAYS.with(|r| {
        let mut r = r.borrow_mut();
        let free = r
            .iter()
            .position(|x| x.as_ref().is_none_or(|x| x.dead() && x.users.get() == 0));
        match free {
            Some(i) => Some(i),
            None if r.len() < MAX_RELAYS => {
                r.push(None);
                Some(r.len() - 1)
            }
            None => None,
        }
    });
    let Some(slot) = slot else {
        warn!(%server, "webrtc: too many TURN allocations on this shard");
        return None;
    };
    let bind = match server {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let sock = match crate::io::listen::udp_exclusive(bind, false) {
        Ok(s) => s,
        Err(e) => {
            warn!(%server, error = %e, "webrtc: no socket for a TURN allocation");
            return None;
        }
    };
    let r = Rc::new(Relay {
        shard: shard.clone(),
        slot: slot as u8,
        server,
        username: user.to_string(),
        credential: cred.to_string(),
        sock,
        client: RefCell::new(Client::new(server, user, cred, shard.clock.now())),
        batch: RefCell::new(UdpBatch::new()),
        buf: RefCell::new(Vec::with_capacity(MAX_DATAGRAM)),
        users: Cell::new(0),
        idle_since: Cell::new(Instant::now()),
        failed_at: Cell::new(None),
        created: Instant::now(),
    });
    r.flush();
    debug!(%server, user, shard = shard.id, "webrtc: TURN allocation requested");
    RELAYS.with(|x| x.borrow_mut()[slot] = Some(r.clone()));
    glommio::spawn_local(run(r)).detach();
    Some(slot as u8)
}

/// One allocation's life: answers and relayed data from the server, timers, the end.
async fn run(r: Rc<Relay>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut allocated = false;
    loop {
        let now = r.now();
        r.client.borrow_mut().handle_timeout(now);
        r.flush();
        let state = r.client.borrow().state().clone();
        match state {
            State::Failed(why) => {
                warn!(server = %r.server, user = %r.username, reason = %why, "webrtc: TURN allocation failed");
                r.failed_at.set(Some(Instant::now()));
                break;
            }
            State::Closed => break,
            State::Allocated { relayed, .. } if !allocated => {
                allocated = true;
                info!(server = %r.server, user = %r.username, %relayed, shard = r.shard.id, "webrtc: TURN allocation");
            }
            _ => {}
        }
        if r.users.get() == 0 && r.idle_since.get().elapsed() > IDLE {
            info!(server = %r.server, "webrtc: TURN allocation closed (unused)");
            r.client.borrow_mut().close(now);
            r.flush();
            break;
        }
        let wait = r
            .client
            .borrow()
            .next_timeout()
            .map_or(1_000_000, |t| t.saturating_sub(now))
            .clamp(1_000, 1_000_000);
        let got = glommio::timer::timeout(Duration::from_micros(wait), async {
            r.sock.recv_from(&mut buf).await
        })
        .await;
        let Ok((n, from)) = got else { continue };
        if canon(from) != r.server || n >= MAX_DATAGRAM {
            continue;
        }
        let now = r.now();
        let got = r.client.borrow_mut().handle(&buf[..n], now);
        match got {
            Ok(Some(d)) => {
                let from = Remote {
                    transport: Transport::Relay(r.slot),
                    addr: canon(d.peer),
                };
                on_datagram(&r.shard, d.data, from, true);
            }
            Ok(None) => r.flush(),
            Err(e) => debug!(server = %r.server, error = %e, "webrtc: TURN datagram dropped"),
        }
    }
    // The slot stays (dead) until no session uses it; then it is free for reuse.
}

/// Sends `data` to `peer` through the relay in `slot` (control packets and media of a
/// session whose selected pair runs through it).
pub fn send(slot: u8, data: &[u8], peer: SocketAddr) {
    let Some(r) = relay(slot) else { return };
    let now = r.now();
    let mut buf = r.buf.borrow_mut();
    let ok = r.client.borrow_mut().send(peer, data, &mut buf, now);
    if ok {
        let mut b = r.batch.borrow_mut();
        b.clear();
        b.push(&buf, r.server);
        b.send(r.sock.as_raw_fd());
    }
    drop(buf);
    // A ChannelBind may have been queued.
    r.flush();
}

/// IPs of the UDP candidates in `candidates` (`candidate:...` strings; mDNS names and
/// TCP candidates skipped).
pub fn candidate_ips<'a>(candidates: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for c in candidates {
        let c = c
            .trim()
            .trim_start_matches("a=")
            .trim_start_matches("candidate:");
        let f: Vec<&str> = c.split_whitespace().take(5).collect();
        let [_, _, proto, _, addr] = f[..] else {
            continue;
        };
        if !proto.eq_ignore_ascii_case("udp") {
            continue;
        }
        if let Ok(ip) = addr.parse::<IpAddr>() {
            let ip = canon(SocketAddr::new(ip, 0)).ip();
            if !ips.contains(&ip) && ips.len() < MAX_PEER_IPS {
                ips.push(ip);
            }
        }
    }
    ips
}

/// A new session uses the relays in `slots`; permissions for `ips` (the offer's
/// candidates, and those its WebSocket trickled before).
pub fn attach(id: &str, slots: Vec<u8>, mut ips: Vec<IpAddr>, ws_peer: Option<SocketAddr>) {
    if let Some(p) = ws_peer {
        WS.with(|w| {
            let mut w = w.borrow_mut();
            if w.len() >= 4096 && !w.contains_key(&p) {
                w.clear(); // bounded; a lost entry only loses trickled candidates
            }
            let e = w.entry(p).or_default();
            for ip in e.1.drain(..) {
                if !ips.contains(&ip) && ips.len() < MAX_PEER_IPS {
                    ips.push(ip);
                }
            }
            e.0 = Some(id.to_string());
        });
    }
    if slots.is_empty() {
        return;
    }
    for &s in &slots {
        let Some(r) = relay(s) else { continue };
        r.users.set(r.users.get() + 1);
        let now = r.now();
        for &ip in &ips {
            r.client.borrow_mut().permit(ip, now);
        }
        r.flush();
    }
    USES.with(|u| u.borrow_mut().insert(id.to_string(), Uses { slots, ips }));
}

/// A candidate trickled on the WebSocket of `ws_peer` (`webrtc/candidate`): a permission
/// for its IP on the relays of that connection's session (or kept for the offer).
pub fn trickled(ws_peer: SocketAddr, candidate: &str) {
    let Some(&ip) = candidate_ips([candidate]).first() else {
        return;
    };
    let id = WS.with(|w| {
        let mut w = w.borrow_mut();
        if w.len() >= 4096 && !w.contains_key(&ws_peer) {
            w.clear();
        }
        let e = w.entry(ws_peer).or_default();
        if e.0.is_none() && !e.1.contains(&ip) && e.1.len() < MAX_PEER_IPS {
            e.1.push(ip);
        }
        e.0.clone()
    });
    let Some(id) = id else { return };
    let slots = USES.with(|u| {
        let mut u = u.borrow_mut();
        let x = u.get_mut(&id)?;
        if x.ips.contains(&ip) || x.ips.len() >= MAX_PEER_IPS {
            return None;
        }
        x.ips.push(ip);
        Some(x.slots.clone())
    });
    for s in slots.into_iter().flatten() {
        if let Some(r) = relay(s) {
            let now = r.now();
            r.client.borrow_mut().permit(ip, now);
            r.flush();
        }
    }
}

/// The session `id` ended: its permissions and its use of the relays end.
pub fn detach(id: &str) {
    let Some(u) = USES.with(|u| u.borrow_mut().remove(id)) else {
        return;
    };
    for s in u.slots {
        let Some(r) = relay(s) else { continue };
        let mut c = r.client.borrow_mut();
        for &ip in &u.ips {
            c.release(ip);
        }
        r.users.set(r.users.get().saturating_sub(1));
        if r.users.get() == 0 {
            r.idle_since.set(Instant::now());
        }
    }
}

/// The public address for a `stun:PORT` candidate, once STUN told it.
pub fn stun_ip() -> Option<IpAddr> {
    STUN_IP.with(|s| s.borrow().ip)
}

/// Waits (at most [`ANSWER_WAIT`]) for the first STUN lookup, so the first offers after
/// the start carry the `stun:` candidates too.
pub async fn stun_wait() {
    let deadline = Instant::now() + ANSWER_WAIT;
    while !STUN_IP.with(|s| s.borrow().done) && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

/// Learns the public IP with a STUN Binding request to the `ice_servers`' STUN servers
/// (go2rtc's defaults when none), then keeps it fresh; each change rebuilds the shard's
/// candidates with `rebuild`.
pub async fn stun_task(shard: Rc<Shard>, rebuild: impl Fn()) {
    let mut servers = stun_urls(&shard.config.webrtc.ice_servers);
    if servers.is_empty() {
        servers = DEFAULT_STUN
            .iter()
            .filter_map(|s| split_host_port(s, 3478))
            .collect();
    }
    loop {
        let found = stun_lookup(&servers).await;
        let changed = STUN_IP.with(|s| {
            let mut s = s.borrow_mut();
            let changed = found.is_some() && s.ip != found;
            if found.is_some() {
                s.ip = found;
            }
            s.done = true;
            changed
        });
        if changed {
            info!(ip = ?found, shard = shard.id, "webrtc: public address from STUN (stun: candidates)");
            rebuild();
        } else if found.is_none() {
            warn!(
                servers = servers.len(),
                shard = shard.id,
                "webrtc: no STUN server answered; stun: candidates left out"
            );
        }
        let next = if found.is_some() {
            STUN_REFRESH
        } else {
            STUN_RETRY
        };
        glommio::timer::sleep(next).await;
    }
}

/// One lookup: a Binding request to each server in turn (retransmitted), ≤ 2 s in all.
async fn stun_lookup(servers: &[(String, u16)]) -> Option<IpAddr> {
    let deadline = Instant::now() + ANSWER_WAIT;
    for (host, port) in servers {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(addr)) =
            glommio::timer::timeout(left, async { Ok(resolve(host, *port).await) }).await
        else {
            continue;
        };
        let addr = canon(addr);
        let bind = if addr.is_ipv4() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
        } else {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
        };
        let Ok(sock) = crate::io::listen::udp_exclusive(bind, false) else {
            continue;
        };
        let mut tid = [0u8; 12];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut tid).is_err() {
            return None;
        }
        let req = turn::binding_request(&tid);
        let mut buf = vec![0u8; 1024];
        let mut rto = Duration::from_millis(250);
        while Instant::now() < deadline {
            let _ = sock.send_to(&req, addr).await;
            let wait = rto.min(deadline.saturating_duration_since(Instant::now()));
            let got = glommio::timer::timeout(wait, async { sock.recv_from(&mut buf).await }).await;
            if let Ok((n, from)) = got {
                if canon(from) == addr {
                    if let Some(m) = turn::binding_mapped(&buf[..n], &tid) {
                        return Some(canon(m).ip());
                    }
                }
            }
            rto *= 2;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(urls: &[&str], user: Option<&str>) -> IceServer {
        IceServer {
            urls: urls.iter().map(|s| s.to_string()).collect(),
            username: user.map(str::to_string),
            credential: user.map(|_| "secret".to_string()),
        }
    }

    #[test]
    fn urls() {
        let s = [
            server(
                &[
                    "turn:127.0.0.1:3479",
                    "turn:example.org?transport=udp",
                    "turn:example.org:3478?transport=tcp",
                    "turns:example.org:5349",
                    "stun:stun.example.org:19302",
                ],
                Some("u"),
            ),
            server(&["turn:10.0.0.1"], None),
            server(&["stun:[::1]:3478", "stun:1.2.3.4"], None),
        ];
        let t: Vec<_> = turn_urls(&s).into_iter().map(|(h, p, _)| (h, p)).collect();
        assert_eq!(
            t,
            vec![("127.0.0.1".into(), 3479), ("example.org".into(), 3478)]
        );
        assert_eq!(
            stun_urls(&s),
            vec![
                ("stun.example.org".into(), 19302),
                ("::1".into(), 3478),
                ("1.2.3.4".into(), 3478)
            ]
        );
    }

    #[test]
    fn candidate_ips_of_offers() {
        let ips = candidate_ips([
            "candidate:1 1 udp 2130706431 192.0.2.2 50613 typ host",
            "a=candidate:2 1 UDP 16777215 203.0.113.4 3478 typ relay raddr 0.0.0.0 rport 0",
            "candidate:3 1 udp 2113937151 928b0b19-2834.local 56606 typ host",
            "candidate:4 1 tcp 1518280447 192.0.2.9 9 typ host tcptype active",
            "candidate:5 1 udp 2130706431 192.0.2.2 50614 typ host",
            "candidate:6 1 udp 2130706431 ::ffff:198.51.100.1 1 typ host",
            "garbage",
            "",
        ]);
        let want: Vec<IpAddr> = ["192.0.2.2", "203.0.113.4", "198.51.100.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(ips, want);
        let many: Vec<String> = (0..40)
            .map(|i| format!("candidate:1 1 udp 1 10.0.0.{i} 1 typ host"))
            .collect();
        assert_eq!(
            candidate_ips(many.iter().map(String::as_str)).len(),
            MAX_PEER_IPS
        );
    }

    #[test]
    fn ha_ice_servers() {
        let mut text = br#"{"type":"offer","sdp":"x","ice_servers":[
            {"urls":"turn:127.0.0.1:3478","username":"u","credential":"p"},
            {"urls":["stun:a","stun:b"]},
            {"nothing":1}]}"#
            .to_vec();
        let v: simd_json::OwnedValue = simd_json::to_owned_value(&mut text).unwrap();
        let s = ha_servers(Some(&v));
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].urls, vec!["turn:127.0.0.1:3478".to_string()]);
        assert_eq!(s[0].credential.as_deref(), Some("p"));
        assert_eq!(s[1].urls.len(), 2);
        assert!(s[2].urls.is_empty());
        assert!(ha_servers(None).is_empty());
    }
}

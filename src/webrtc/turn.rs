//! A TURN client (RFC 8656) over UDP with long-term credentials, sans-IO: the caller owns
//! the socket, feeds what the server sends to [`Client::handle`], sends what
//! [`Client::poll_transmit`] gives, and calls [`Client::handle_timeout`] at
//! [`Client::next_timeout`]. Time is microseconds on any monotonic clock.
//!
//! One client is one allocation: Allocate (answered 401 with REALM and NONCE, then sent
//! again with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY keyed by MD5(user:realm:pass)),
//! 438 stale nonce retried with the new nonce, Refresh before the lifetime ends,
//! CreatePermission per peer IP (refreshed every 4 minutes while wanted), Send and Data
//! indications, and ChannelBind/ChannelData for peers data is sent to (4 bytes of header
//! instead of 36 per packet).
//!
//! Nothing here panics on what the server sends; every table is bounded.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::stun::{self, Builder, Class, Message, TransactionId};

/// TURN methods (RFC 8656 §17).
pub const METHOD_ALLOCATE: u16 = 0x003;
pub const METHOD_REFRESH: u16 = 0x004;
pub const METHOD_SEND: u16 = 0x006;
pub const METHOD_DATA: u16 = 0x007;
pub const METHOD_CREATE_PERMISSION: u16 = 0x008;
pub const METHOD_CHANNEL_BIND: u16 = 0x009;

/// REQUESTED-TRANSPORT for UDP.
const PROTO_UDP: u8 = 17;
/// Permissions last 300 s (RFC 8656 §9); refreshed well before.
const PERMISSION_REFRESH: u64 = 240_000_000;
/// Channel bindings last 600 s (RFC 8656 §12); refreshed at half (also refreshes the
/// permission of the peer's IP) while data is sent on them, else left to expire. An
/// expired number is not bound to another peer for 300 s (RFC 8656 §12).
const CHANNEL_REFRESH: u64 = 300_000_000;
const CHANNEL_LIFETIME: u64 = 600_000_000;
const CHANNEL_QUARANTINE: u64 = 300_000_000;
/// A refused permission is asked for again after this.
const PERMISSION_RETRY: u64 = 30_000_000;
/// The allocation is refreshed this long before it would expire.
const REFRESH_MARGIN: u64 = 60_000_000;
/// Lifetime asked for (seconds): RFC 8656's default.
const LIFETIME: u32 = 600;
/// RFC 8489 §6.2.1: RTO starts at 500 ms, doubles, seven sends at most.
const RTO: u64 = 500_000;
const MAX_SENDS: u32 = 7;
/// Peer IPs with a permission, and bound channels, per allocation at most.
pub const MAX_PERMISSIONS: usize = 256;
pub const MAX_CHANNELS: usize = 256;
/// 438 answers in a row before giving up (a server that never accepts its own nonce).
const MAX_STALE: u32 = 3;
/// Requests in flight at most (a refresh storm must not grow memory).
const MAX_PENDING: usize = 64;
/// Transmits queued at most (the caller drains them after every call).
const MAX_QUEUED: usize = 256;
/// First ChannelData channel number (RFC 8656 §12: 0x4000..=0x4FFF).
const FIRST_CHANNEL: u16 = 0x4000;
const LAST_CHANNEL: u16 = 0x4fff;

/// Where the allocation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Allocate sent, no answer yet.
    Allocating,
    /// The relayed address peers send to, and our address as the server sees it.
    Allocated {
        relayed: SocketAddr,
        mapped: Option<SocketAddr>,
    },
    /// Gone for good (the text says why; never contains the password).
    Failed(String),
    /// Closed by the caller.
    Closed,
}

/// A datagram a peer sent to the relayed address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerData<'a> {
    pub peer: SocketAddr,
    pub data: &'a [u8],
}

/// Why a datagram from the server was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TurnError {
    #[error("TURN: {0}")]
    Stun(#[from] stun::StunError),
    #[error("TURN: ChannelData shorter than its header or its length")]
    BadChannelData,
    #[error("TURN: ChannelData on unbound channel {0:#06x}")]
    UnknownChannel(u16),
    #[error("TURN: answer to no request of ours")]
    UnknownTransaction,
    #[error("TURN: answer without a valid MESSAGE-INTEGRITY")]
    BadIntegrity,
    #[error("TURN: indication without XOR-PEER-ADDRESS or DATA")]
    BadIndication,
    #[error("TURN: unexpected message (class {0:?}, method {1:#05x})")]
    Unexpected(Class, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Allocate,
    Refresh { lifetime: u32 },
    Permission(IpAddr),
    ChannelBind { channel: u16, peer: SocketAddr },
}

struct Pending {
    tid: TransactionId,
    kind: Kind,
    bytes: Vec<u8>,
    sends: u32,
    next: u64,
    rto: u64,
}

struct Permission {
    /// Users of the permission; 0: no longer refreshed, forgotten when it expires.
    users: u32,
    /// When it was last granted (None: never yet).
    granted: Option<u64>,
    in_flight: bool,
    /// Not asked for again before this (after a refusal).
    retry_at: u64,
}

struct Channel {
    number: u16,
    bound: bool,
    /// When it was last bound.
    at: u64,
    in_flight: bool,
    /// Last data sent on it.
    used: u64,
}

/// One TURN allocation on one server.
pub struct Client {
    server: SocketAddr,
    username: String,
    password: String,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: Option<hmac::Key>,
    state: State,
    /// When the allocation expires.
    expires: u64,
    /// A Refresh is due at this time.
    refresh_at: u64,
    stale: u32,
    pending: Vec<Pending>,
    permissions: HashMap<IpAddr, Permission>,
    channels: HashMap<SocketAddr, Channel>,
    by_number: HashMap<u16, SocketAddr>,
    next_channel: u16,
    /// Numbers of expired channels, and when they expired.
    retired: HashMap<u16, u64>,
    out: Vec<Vec<u8>>,
    rng: SystemRandom,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password and the key never appear.
        f.debug_struct("turn::Client")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `server` that sends its first Allocate now.
    pub fn new(server: SocketAddr, username: &str, password: &str, now: u64) -> Self {
        let mut c = Client {
            server,
            username: username.into(),
            password: password.into(),
            realm: Vec::new(),
            nonce: Vec::new(),
            key: None,
            state: State::Allocating,
            expires: 0,
            refresh_at: u64::MAX,
            stale: 0,
            pending: Vec::new(),
            permissions: HashMap::new(),
            channels: HashMap::new(),
            by_number: HashMap::new(),
            next_channel: FIRST_CHANNEL,
            retired: HashMap::new(),
            out: Vec::new(),
            rng: SystemRandom::new(),
        };
        c.request(Kind::Allocate, now);
        c
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        match self.state {
            State::Allocated { relayed, .. } => Some(relayed),
            _ => None,
        }
    }

    /// Our address as the server saw it (the relay candidate's `raddr`).
    pub fn mapped(&self) -> Option<SocketAddr> {
        match self.state {
            State::Allocated { mapped, .. } => mapped,
            _ => None,
        }
    }

    fn live(&self) -> bool {
        matches!(self.state, State::Allocating | State::Allocated { .. })
    }

    /// The next datagram to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.remove(0))
        }
    }

    fn queue(&mut self, bytes: Vec<u8>) {
        if self.out.len() < MAX_QUEUED {
            self.out.push(bytes);
        }
    }

    fn fail(&mut self, why: String) {
        if self.live() {
            self.state = State::Failed(why);
        }
        self.pending.clear();
    }

    /// Builds and queues a request (authenticated once a realm and nonce are known).
    fn request(&mut self, kind: Kind, now: u64) {
        if self.pending.len() >= MAX_PENDING {
            return;
        }
        let mut tid = [0u8; 12];
        if self.rng.fill(&mut tid).is_err() {
            self.fail("no random transaction id".into());
            return;
        }
        let bytes = self.encode(kind, &tid);
        self.queue(bytes.clone());
        self.pending.push(Pending {
            tid,
            kind,
            bytes,
            sends: 1,
            next: now + RTO,
            rto: RTO,
        });
    }

    fn encode(&self, kind: Kind, tid: &TransactionId) -> Vec<u8> {
        let method = match kind {
            Kind::Allocate => METHOD_ALLOCATE,
            Kind::Refresh { .. } => METHOD_REFRESH,
            Kind::Permission(_) => METHOD_CREATE_PERMISSION,
            Kind::ChannelBind { .. } => METHOD_CHANNEL_BIND,
        };
        let mut out = Vec::with_capacity(160);
        let mut b = Builder::new(&mut out, Class::Request, method, tid);
        match kind {
            Kind::Allocate => {
                b.requested_transport(PROTO_UDP).lifetime(LIFETIME);
            }
            Kind::Refresh { lifetime } => {
                b.lifetime(lifetime);
            }
            // The port is ignored by the server (RFC 8656 §9).
            Kind::Permission(ip) => {
                b.xor_peer_address(SocketAddr::new(ip, 0));
            }
            Kind::ChannelBind { channel, peer } => {
                b.channel_number(channel).xor_peer_address(peer);
            }
        }
        if let Some(key) = &self.key {
            b.username(self.username.as_bytes())
                .realm(&self.realm)
                .nonce(&self.nonce)
                .integrity(key);
        }
        b.fingerprint();
        out
    }

    /// A datagram from the server (the caller checks it came from [`Client::server`]).
    /// Returns the peer data it carried, if any.
    pub fn handle<'a>(
        &mut self,
        datagram: &'a [u8],
        now: u64,
    ) -> Result<Option<PeerData<'a>>, TurnError> {
        if let Some(&b) = datagram.first() {
            if (0x40..=0x4f).contains(&b) {
                return self.channel_data(datagram).map(Some);
            }
        }
        let m = Message::parse(datagram)?;
        match m.class {
            Class::Indication if m.method == METHOD_DATA => {
                let (Some(peer), Some(data)) = (m.xor_peer_address, m.data) else {
                    return Err(TurnError::BadIndication);
                };
                Ok(Some(PeerData { peer, data }))
            }
            Class::Success | Class::Error => {
                self.answer(&m, now)?;
                Ok(None)
            }
            c => Err(TurnError::Unexpected(c, m.method)),
        }
    }

    fn channel_data<'a>(&self, d: &'a [u8]) -> Result<PeerData<'a>, TurnError> {
        let &[a, b, l0, l1, ref rest @ ..] = d else {
            return Err(TurnError::BadChannelData);
        };
        let number = u16::from_be_bytes([a, b]);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        // Over UDP the padding may be missing (RFC 8656 §12.5).
        let data = rest.get(..len).ok_or(TurnError::BadChannelData)?;
        let peer = *self
            .by_number
            .get(&number)
            .ok_or(TurnError::UnknownChannel(number))?;
        Ok(PeerData { peer, data })
    }

    fn answer(&mut self, m: &Message, now: u64) -> Result<(), TurnError> {
        let Some(i) = self.pending.iter().position(|p| p.tid == m.transaction_id) else {
            return Err(TurnError::UnknownTransaction);
        };
        // Answers to authenticated requests must carry our integrity (RFC 8489 §9.2.5);
        // 401 and 438 carry none.
        let authed = self.key.is_some();
        if let Some(key) = &self.key {
            if m.has_integrity() && !m.verify_integrity(key) {
                return Err(TurnError::BadIntegrity);
            }
            if !m.has_integrity() && m.class == Class::Success {
                return Err(TurnError::BadIntegrity);
            }
        }
        let p = self.pending.swap_remove(i);
        if m.class == Class::Error {
            let code = m.error_code.map(|e| e.code).unwrap_or(0);
            let reason = m
                .error_code
                .map(|e| String::from_utf8_lossy(e.reason).into_owned())
                .unwrap_or_default();
            match code {
                401 if !authed => {
                    let (Some(realm), Some(nonce)) = (m.realm, m.nonce) else {
                        self.fail(format!("401 without REALM and NONCE from {}", self.server));
                        return Ok(());
                    };
                    self.realm = realm.to_vec();
                    self.nonce = nonce.to_vec();
                    self.key = Some(stun::long_term_key(
                        self.username.as_bytes(),
                        &self.realm,
                        self.password.as_bytes(),
                    ));
                    self.request(p.kind, now);
                }
                438 if self.stale < MAX_STALE => {
                    self.stale += 1;
                    if let Some(n) = m.nonce {
                        self.nonce = n.to_vec();
                    }
                    if let Some(r) = m.realm {
                        if r != self.realm.as_slice() {
                            self.realm = r.to_vec();
                            self.key = Some(stun::long_term_key(
                                self.username.as_bytes(),
                                &self.realm,
                                self.password.as_bytes(),
                            ));
                        }
                    }
                    self.request(p.kind, now);
                }
                _ => self.refused(p.kind, code, &reason, now),
            }
            return Ok(());
        }
        self.stale = 0;
        match p.kind {
            Kind::Allocate => {
                let Some(relayed) = m.xor_relayed_address else {
                    self.fail(format!(
                        "Allocate answered without XOR-RELAYED-ADDRESS by {}",
                        self.server
                    ));
                    return Ok(());
                };
                let lifetime = u64::from(m.lifetime.unwrap_or(LIFETIME).max(1)) * 1_000_000;
                self.expires = now + lifetime;
                self.refresh_at = now + lifetime.saturating_sub(REFRESH_MARGIN).max(lifetime / 2);
                if self.live() {
                    self.state = State::Allocated {
                        relayed,
                        mapped: m.xor_mapped_address,
                    };
                }
                // Permissions asked for while allocating.
                let want: Vec<IpAddr> = self
                    .permissions
                    .iter()
                    .filter(|(_, p)| p.users > 0 && !p.in_flight)
                    .map(|(ip, _)| *ip)
                    .collect();
                for ip in want {
                    self.create_permission(ip, now);
                }
            }
            Kind::Refresh { lifetime: 0 } => {}
            Kind::Refresh { .. } => {
                let lifetime = u64::from(m.lifetime.unwrap_or(LIFETIME).max(1)) * 1_000_000;
                self.expires = now + lifetime;
                self.refresh_at = now + lifetime.saturating_sub(REFRESH_MARGIN).max(lifetime / 2);
            }
            Kind::Permission(ip) => {
                if let Some(p) = self.permissions.get_mut(&ip) {
                    p.granted = Some(now);
                    p.in_flight = false;
                }
            }
            Kind::ChannelBind { peer, .. } => {
                if let Some(c) = self.channels.get_mut(&peer) {
                    c.bound = true;
                    c.at = now;
                    c.in_flight = false;
                }
            }
        }
        Ok(())
    }

    /// An error answer (or no answer at all: `code` 0) to a request of ours.
    fn refused(&mut self, kind: Kind, code: u16, reason: &str, now: u64) {
        let what = if code == 0 {
            "no answer".to_string()
        } else {
            format!("{code} {reason}")
        };
        match kind {
            Kind::Allocate => self.fail(format!("Allocate on {}: {what}", self.server)),
            Kind::Refresh { lifetime: 0 } => {}
            Kind::Refresh { .. } => self.fail(format!("Refresh on {}: {what}", self.server)),
            // The peer stays unreachable through us; tried again at the next refresh.
            Kind::Permission(ip) => {
                if let Some(p) = self.permissions.get_mut(&ip) {
                    p.in_flight = false;
                    p.retry_at = now + PERMISSION_RETRY;
                }
            }
            // Send indications keep working without the channel.
            Kind::ChannelBind { peer, channel } => {
                self.channels.remove(&peer);
                self.by_number.remove(&channel);
            }
        }
    }

    /// Retransmissions, refreshes, expiries.
    pub fn handle_timeout(&mut self, now: u64) {
        if !self.live() {
            return;
        }
        let mut gave_up = Vec::new();
        for p in &mut self.pending {
            if now < p.next {
                continue;
            }
            if p.sends >= MAX_SENDS {
                gave_up.push(p.tid);
                continue;
            }
            p.sends += 1;
            p.rto *= 2;
            p.next = now + p.rto;
            if self.out.len() < MAX_QUEUED {
                self.out.push(p.bytes.clone());
            }
        }
        for tid in gave_up {
            if let Some(i) = self.pending.iter().position(|p| p.tid == tid) {
                let p = self.pending.swap_remove(i);
                self.refused(p.kind, 0, "", now);
            }
        }
        let State::Allocated { .. } = self.state else {
            return;
        };
        if now >= self.expires {
            self.fail(format!("allocation on {} expired", self.server));
            return;
        }
        let refreshing = |c: &Client| {
            c.pending
                .iter()
                .any(|p| matches!(p.kind, Kind::Refresh { .. }))
        };
        if now >= self.refresh_at && !refreshing(self) {
            self.request(Kind::Refresh { lifetime: LIFETIME }, now);
        }
        // Permissions: refreshed while used, forgotten once unused and expired.
        let mut renew = Vec::new();
        self.permissions.retain(|ip, p| {
            let age = p.granted.map(|g| now.saturating_sub(g));
            if p.users == 0 {
                return age.is_some_and(|a| a < PERMISSION_REFRESH) || p.in_flight;
            }
            if !p.in_flight && now >= p.retry_at && age.is_none_or(|a| a >= PERMISSION_REFRESH) {
                renew.push(*ip);
            }
            true
        });
        for ip in renew {
            self.create_permission(ip, now);
        }
        // Channels: re-bound while used, dropped when they expire unused.
        let mut rebind = Vec::new();
        let mut expired = Vec::new();
        for (peer, c) in &self.channels {
            let age = now.saturating_sub(c.at);
            if c.bound && age >= CHANNEL_LIFETIME {
                expired.push((*peer, c.number));
            } else if c.bound
                && !c.in_flight
                && age >= CHANNEL_REFRESH
                && now.saturating_sub(c.used) < CHANNEL_REFRESH
            {
                rebind.push((*peer, c.number));
            }
        }
        for (peer, number) in expired {
            self.channels.remove(&peer);
            self.by_number.remove(&number);
            self.retired.insert(number, now);
        }
        self.retired
            .retain(|_, t| now.saturating_sub(*t) < CHANNEL_QUARANTINE);
        for (peer, channel) in rebind {
            if let Some(c) = self.channels.get_mut(&peer) {
                c.in_flight = true;
            }
            self.request(Kind::ChannelBind { channel, peer }, now);
        }
    }

    /// When [`Client::handle_timeout`] wants to run next. Work already in flight waits on
    /// its request's retransmission timer instead.
    pub fn next_timeout(&self) -> Option<u64> {
        if !self.live() {
            return None;
        }
        let mut t = self.pending.iter().map(|p| p.next).min();
        if let State::Allocated { .. } = self.state {
            let refreshing = self
                .pending
                .iter()
                .any(|p| matches!(p.kind, Kind::Refresh { .. }));
            let mut at = if refreshing {
                self.expires
            } else {
                self.refresh_at.min(self.expires)
            };
            for p in self.permissions.values().filter(|p| !p.in_flight) {
                match p.granted {
                    Some(g) => at = at.min(g + PERMISSION_REFRESH),
                    None if p.users > 0 => at = at.min(p.retry_at),
                    None => {}
                }
            }
            for c in self.channels.values().filter(|c| c.bound) {
                // Re-bound at half its life when used since the last bind, else dropped.
                let due = if !c.in_flight && c.used > c.at {
                    CHANNEL_REFRESH
                } else {
                    CHANNEL_LIFETIME
                };
                at = at.min(c.at + due);
            }
            t = Some(t.map_or(at, |t| t.min(at)));
        }
        t
    }

    fn create_permission(&mut self, ip: IpAddr, now: u64) {
        if let Some(p) = self.permissions.get_mut(&ip) {
            p.in_flight = true;
        }
        self.request(Kind::Permission(ip), now);
    }

    /// Asks for (or keeps) a permission for `ip`: peers at that IP may then send to the
    /// relayed address. Counted: each call wants a matching [`Client::release`]. False
    /// when the table is full.
    pub fn permit(&mut self, ip: IpAddr, now: u64) -> bool {
        let ip = canonical_ip(ip);
        if let Some(p) = self.permissions.get_mut(&ip) {
            p.users += 1;
            return true;
        }
        if self.permissions.len() >= MAX_PERMISSIONS || !self.live() {
            return false;
        }
        self.permissions.insert(
            ip,
            Permission {
                users: 1,
                granted: None,
                in_flight: false,
                retry_at: 0,
            },
        );
        if self.relayed().is_some() {
            self.create_permission(ip, now);
        }
        true
    }

    /// One user of the permission for `ip` no longer needs it.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(p) = self.permissions.get_mut(&canonical_ip(ip)) {
            p.users = p.users.saturating_sub(1);
        }
    }

    /// Whether a permission for `ip` is in place.
    pub fn permitted(&self, ip: IpAddr) -> bool {
        self.permissions
            .get(&canonical_ip(ip))
            .is_some_and(|p| p.granted.is_some())
    }

    /// Writes into `out` (cleared first) the datagram that carries `data` to `peer`
    /// through the relay: ChannelData when a channel is bound, a Send indication
    /// otherwise (and a ChannelBind is started for the next packets). False when
    /// nothing can be sent (no allocation, or `data` too large).
    pub fn send(&mut self, peer: SocketAddr, data: &[u8], out: &mut Vec<u8>, now: u64) -> bool {
        out.clear();
        if self.relayed().is_none() || data.len() > 65_000 {
            return false;
        }
        if let Some(c) = self.channels.get_mut(&peer) {
            c.used = now;
        }
        match self.channels.get(&peer) {
            Some(c) if c.bound => {
                out.extend_from_slice(&c.number.to_be_bytes());
                out.extend_from_slice(&(data.len() as u16).to_be_bytes());
                out.extend_from_slice(data);
                // Padded to 4 bytes, as RFC 8656 §12.5 asks over UDP too.
                out.resize(out.len().next_multiple_of(4), 0);
                return true;
            }
            Some(_) => {}
            None => self.bind(peer, now),
        }
        let mut tid = [0u8; 12];
        if self.rng.fill(&mut tid).is_err() {
            return false;
        }
        Builder::new(out, Class::Indication, METHOD_SEND, &tid)
            .xor_peer_address(peer)
            .data(data);
        true
    }

    fn bind(&mut self, peer: SocketAddr, now: u64) {
        if self.channels.len() >= MAX_CHANNELS {
            return;
        }
        // The next number neither in use nor recently expired (at most 4096 looks).
        let span = LAST_CHANNEL - FIRST_CHANNEL + 1;
        let free = (0..span)
            .map(|i| FIRST_CHANNEL + (self.next_channel - FIRST_CHANNEL + i) % span)
            .find(|n| !self.by_number.contains_key(n) && !self.retired.contains_key(n));
        let Some(number) = free else { return };
        self.next_channel = if number == LAST_CHANNEL {
            FIRST_CHANNEL
        } else {
            number + 1
        };
        self.channels.insert(
            peer,
            Channel {
                number,
                bound: false,
                at: now,
                in_flight: true,
                used: now,
            },
        );
        self.by_number.insert(number, peer);
        self.request(
            Kind::ChannelBind {
                channel: number,
                peer,
            },
            now,
        );
    }

    /// Ends the allocation (Refresh with lifetime 0, sent once, answer not awaited).
    pub fn close(&mut self, now: u64) {
        if self.relayed().is_some() {
            self.pending.clear();
            self.request(Kind::Refresh { lifetime: 0 }, now);
        }
        self.pending.clear();
        self.state = State::Closed;
    }
}

/// IPv4-mapped IPv6 as IPv4, so one peer has one permission.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        ip => ip,
    }
}

/// The relay candidate for an allocation, as an SDP `candidate:` value (RFC 8839):
/// type preference 0, so a peer prefers any direct path.
pub fn relay_candidate_line(
    relayed: SocketAddr,
    mapped: Option<SocketAddr>,
    index: usize,
) -> String {
    let local = 0xffff - index.min(0xffff) as u32;
    let priority = (local << 8) | 255;
    let foundation = stun::Crc32::new()
        .update(b"relay")
        .update(relayed.ip().to_string().as_bytes())
        .finish();
    let (raddr, rport) = match mapped {
        Some(m) => (m.ip().to_string(), m.port()),
        None => (
            if relayed.is_ipv4() { "0.0.0.0" } else { "::" }.to_string(),
            0,
        ),
    };
    format!(
        "candidate:{foundation} 1 udp {priority} {} {} typ relay raddr {raddr} rport {rport}",
        relayed.ip(),
        relayed.port()
    )
}

#[cfg(test)]
mod tests;

/// A STUN Binding request (no credentials) asking a STUN server for our public address.
pub fn binding_request(tid: &TransactionId) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    Builder::new(&mut out, Class::Request, stun::METHOD_BINDING, tid).fingerprint();
    out
}

/// The XOR-MAPPED-ADDRESS of a Binding success answering `tid`.
pub fn binding_mapped(datagram: &[u8], tid: &TransactionId) -> Option<SocketAddr> {
    let m = Message::parse(datagram).ok()?;
    (m.class == Class::Success && m.method == stun::METHOD_BINDING && m.transaction_id == *tid)
        .then_some(m.xor_mapped_address)
        .flatten()
}

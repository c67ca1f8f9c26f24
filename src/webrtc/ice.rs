//! ICE-lite answering agent (RFC 8445 §2.5, §7.3), sans-IO, plus host candidates and
//! go2rtc's candidate `filters:`.
//!
//! A lite agent sends no checks: it answers the browser's binding requests, learns the
//! browser's address from them (browsers hide host addresses behind mDNS names, so every
//! useful remote address is peer-reflexive here), and sends media to the pair the browser
//! nominated, or before any nomination to the latest pair that passed a check. The browser
//! keeps sending checks on the selected pair for consent (RFC 7675); when none has passed
//! for [`CONSENT_TIMEOUT`] the session is over.
//!
//! Time is an argument: microseconds on the caller's monotonic clock.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ring::hmac;
use ring::rand::SecureRandom;

use super::stun::{self, Builder, Class, Message, METHOD_BINDING};

/// No valid check for this long ends the session (RFC 7675 §5.1: 30 s).
pub const CONSENT_TIMEOUT: u64 = 30_000_000;
/// Remote addresses remembered per session; an authenticated peer could otherwise make the
/// list grow by sending checks from many ports.
pub const MAX_REMOTES: usize = 16;
/// RFC 8445 §5.1.2.2: type preference of host candidates.
const HOST_TYPE_PREFERENCE: u32 = 126;
/// ICE characters (RFC 8445 §15.1): ALPHA / DIGIT / "+" / "/".
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Local ufrag length: 48 random bits, enough to route by ufrag without collisions in
/// practice (the caller still checks its table).
pub const UFRAG_LEN: usize = 8;
/// Local password length: 144 random bits (RFC 8445 asks for at least 128).
pub const PWD_LEN: usize = 24;

/// How a datagram reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    /// ICE-TCP, passive side (RFC 6544), RFC 4571 framed.
    Tcp,
    /// UDP through a TURN allocation of ours (the index of the shard's relay); the
    /// address is the peer as the TURN server sees it.
    Relay(u8),
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Relay(_) => "relay",
        }
    }
}

/// A remote transport address: where a check came from, where media goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Remote {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl Remote {
    pub fn udp(addr: SocketAddr) -> Self {
        Remote {
            transport: Transport::Udp,
            addr,
        }
    }

    pub fn tcp(addr: SocketAddr) -> Self {
        Remote {
            transport: Transport::Tcp,
            addr,
        }
    }
}

impl From<SocketAddr> for Remote {
    fn from(addr: SocketAddr) -> Self {
        Remote::udp(addr)
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.transport.name())
    }
}

/// An ICE username fragment and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub ufrag: String,
    pub pwd: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password authenticates the session: keep it out of logs.
        f.debug_struct("Credentials")
            .field("ufrag", &self.ufrag)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IceError {
    #[error("ICE: the system random generator failed")]
    Random,
}

impl Credentials {
    /// Fresh local credentials from a cryptographic random source (`ring::rand::SystemRandom`
    /// in the server).
    pub fn random(rng: &dyn SecureRandom) -> Result<Self, IceError> {
        Self::random_with_prefix(rng, "")
    }

    /// Like [`random`](Self::random) with `prefix` before the random ufrag, so that a shard
    /// that receives a check for a session it does not own can tell which shard does from
    /// the ufrag alone. Characters of `prefix` that are not ICE characters are left out.
    pub fn random_with_prefix(rng: &dyn SecureRandom, prefix: &str) -> Result<Self, IceError> {
        let mut bytes = [0u8; UFRAG_LEN + PWD_LEN];
        rng.fill(&mut bytes).map_err(|_| IceError::Random)?;
        // 64 symbols: the low 6 bits of a uniform byte are uniform.
        let mut text = bytes
            .iter()
            .map(|b| char::from(ICE_CHARS[usize::from(b & 63)]));
        let mut ufrag: String = prefix
            .chars()
            .filter(|c| c.is_ascii() && ICE_CHARS.contains(&(*c as u8)))
            .take(32)
            .collect();
        ufrag.extend(text.by_ref().take(UFRAG_LEN));
        Ok(Credentials {
            ufrag,
            pwd: text.collect(),
        })
    }
}

/// The local ufrag of a STUN check (the USERNAME's part before the colon), read without any
/// session state, to route a datagram to its session. Not authenticated: the session checks
/// the integrity.
pub fn ufrag_of(datagram: &[u8]) -> Option<&str> {
    let username = stun::username_of(datagram)?;
    let local = username.split(|&b| b == b':').next()?;
    std::str::from_utf8(local).ok().filter(|s| !s.is_empty())
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// No check has passed yet.
    Checking,
    /// A check passed in the last [`CONSENT_TIMEOUT`]; media may flow.
    Connected,
    /// No check passed for [`CONSENT_TIMEOUT`] (or none ever did): the session is over.
    Closed,
}

/// Counters for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IceStats {
    /// Checks that passed.
    pub valid_checks: u64,
    /// Datagrams that were not STUN or were malformed.
    pub malformed: u64,
    /// Requests answered with an error (bad username, integrity, role, unknown attribute).
    pub rejected: u64,
    /// Responses and indications, which a lite agent ignores.
    pub ignored: u64,
    /// Remote addresses forgotten to stay within [`MAX_REMOTES`].
    pub evicted: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pair {
    remote: Remote,
    /// PRIORITY of the peer-reflexive candidate the check would create.
    priority: u32,
    nominated: bool,
    last_valid: u64,
}

/// An ICE-lite agent for one session (one bundled transport, component 1).
pub struct IceLite {
    local: Credentials,
    key: hmac::Key,
    /// `local:remote`, what every check's USERNAME must be.
    expected_username: Vec<u8>,
    remote_ufrag: String,
    remote_pwd: String,
    created: u64,
    last_valid: Option<u64>,
    pairs: Vec<Pair>,
    selected: Option<Remote>,
    closed: bool,
    stats: IceStats,
}

impl fmt::Debug for IceLite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceLite")
            .field("local_ufrag", &self.local.ufrag)
            .field("remote_ufrag", &self.remote_ufrag)
            .field("selected", &self.selected)
            .field("pairs", &self.pairs.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl IceLite {
    /// A session answering checks signed with `local.pwd` and named `local.ufrag:remote_ufrag`
    /// (the remote ufrag and password come from the offer).
    pub fn new(local: Credentials, remote_ufrag: &str, remote_pwd: &str, now: u64) -> Self {
        let key = stun::integrity_key(local.pwd.as_bytes());
        let expected_username = format!("{}:{}", local.ufrag, remote_ufrag).into_bytes();
        IceLite {
            local,
            key,
            expected_username,
            remote_ufrag: remote_ufrag.to_string(),
            remote_pwd: remote_pwd.to_string(),
            created: now,
            last_valid: None,
            pairs: Vec::new(),
            selected: None,
            closed: false,
            stats: IceStats::default(),
        }
    }

    pub fn local_credentials(&self) -> &Credentials {
        &self.local
    }

    pub fn remote_ufrag(&self) -> &str {
        &self.remote_ufrag
    }

    /// The remote password; a lite agent never signs with it, kept for a later full agent.
    pub fn remote_pwd(&self) -> &str {
        &self.remote_pwd
    }

    pub fn stats(&self) -> IceStats {
        self.stats
    }

    /// Where media goes: the latest nominated pair, or before any nomination the latest
    /// pair that passed a check.
    pub fn selected(&self) -> Option<Remote> {
        self.selected
    }

    /// When the last valid check arrived (caller's clock), if one did.
    pub fn last_check(&self) -> Option<u64> {
        self.last_valid
    }

    /// Whether `from` passed a check and is still within consent: DTLS and SRTP from any
    /// other address are dropped.
    pub fn is_valid_remote(&self, from: Remote, now: u64) -> bool {
        !self.closed
            && self
                .pairs
                .iter()
                .any(|p| p.remote == from && now < p.last_valid.saturating_add(CONSENT_TIMEOUT))
    }

    /// Remote addresses that passed a check: `(remote, nominated, PRIORITY of its check)`.
    pub fn remotes(&self) -> impl Iterator<Item = (Remote, bool, u32)> + '_ {
        self.pairs
            .iter()
            .map(|p| (p.remote, p.nominated, p.priority))
    }

    /// Answer a STUN datagram from `from`. Returns the datagram to send back to `from`, if
    /// any. Never panics on any input.
    pub fn handle_stun(
        &mut self,
        from: impl Into<Remote>,
        datagram: &[u8],
        now: u64,
    ) -> Option<Vec<u8>> {
        let from = from.into();
        if self.closed {
            return None;
        }
        let msg = match Message::parse(datagram) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                tracing::debug!(ice = %self.local.ufrag, peer = %from, "ICE: dropped: {e}");
                return None;
            }
        };
        if msg.class != Class::Request {
            // Binding indications are keepalives; responses answer checks we never send.
            self.stats.ignored += 1;
            return None;
        }
        // `why` goes to the log only: the answer carries the standard phrase, short, so an
        // error answer to a spoofed source is hardly bigger than the request.
        let reject = |this: &mut Self, code: u16, why: &str, signed: bool| {
            this.stats.rejected += 1;
            tracing::debug!(ice = %this.local.ufrag, peer = %from, "ICE: check rejected: {code} {why}");
            Some(this.error_response(&msg, code, signed))
        };
        if msg.method != METHOD_BINDING {
            return reject(self, 400, "not a binding request", false);
        }
        // RFC 8489 §9.1.3: short-term credential checks, in this order.
        let (Some(username), true) = (msg.username, msg.has_integrity()) else {
            return reject(self, 400, "USERNAME or MESSAGE-INTEGRITY missing", false);
        };
        if username != self.expected_username.as_slice() {
            return reject(self, 401, "USERNAME is not local:remote", false);
        }
        if !msg.verify_integrity(&self.key) {
            return reject(self, 401, "MESSAGE-INTEGRITY does not verify", false);
        }
        if !msg.unknown_required.is_empty() {
            return reject(self, 420, "unknown comprehension-required attribute", true);
        }
        if msg.ice_controlled.is_some() {
            // The peer thinks it is controlled too. A lite agent is always controlled
            // (RFC 8445 §6.1.1), so the full agent must switch: RFC 8445 §7.3.1.1 487.
            return reject(self, 487, "peer sent ICE-CONTROLLED to a lite agent", true);
        }
        self.valid_check(from, msg.priority.unwrap_or(0), msg.use_candidate, now);
        let mut out = Vec::with_capacity(64);
        Builder::new(
            &mut out,
            Class::Success,
            METHOD_BINDING,
            &msg.transaction_id,
        )
        .xor_mapped_address(from.addr)
        .integrity(&self.key)
        .fingerprint();
        Some(out)
    }

    fn error_response(&self, msg: &Message<'_>, code: u16, signed: bool) -> Vec<u8> {
        let reason: &[u8] = match code {
            400 => b"Bad Request",
            401 => b"Unauthenticated",
            420 => b"Unknown Attribute",
            487 => b"Role Conflict",
            _ => b"",
        };
        let mut out = Vec::with_capacity(96);
        let mut b = Builder::new(&mut out, Class::Error, msg.method, &msg.transaction_id);
        b.error_code(code, reason);
        if code == 420 {
            b.unknown_attributes(msg.unknown_required.as_slice());
        }
        // RFC 8489 §9.1.3: an answer to a request that failed authentication is unsigned.
        if signed {
            b.integrity(&self.key);
        }
        b.fingerprint();
        out
    }

    fn valid_check(&mut self, from: Remote, priority: u32, use_candidate: bool, now: u64) {
        self.stats.valid_checks += 1;
        self.last_valid = Some(now);
        let index = match self.pairs.iter().position(|p| p.remote == from) {
            Some(i) => i,
            None => {
                if self.pairs.len() >= MAX_REMOTES {
                    self.evict_one();
                }
                tracing::debug!(ice = %self.local.ufrag, peer = %from, priority, "ICE: new peer-reflexive remote");
                self.pairs.push(Pair {
                    remote: from,
                    priority,
                    nominated: false,
                    last_valid: now,
                });
                self.pairs.len() - 1
            }
        };
        let pair = &mut self.pairs[index]; // index is in bounds: found or just pushed
        pair.last_valid = now;
        pair.priority = priority;
        if use_candidate {
            pair.nominated = true;
        }
        let any_nominated = self.pairs.iter().any(|p| p.nominated);
        if use_candidate || !any_nominated {
            self.select(Some(from));
        }
    }

    /// Forget the pair that passed a check longest ago, never the selected one.
    fn evict_one(&mut self) {
        let victim = self
            .pairs
            .iter()
            .enumerate()
            .filter(|(_, p)| Some(p.remote) != self.selected)
            .min_by_key(|(_, p)| p.last_valid)
            .map(|(i, _)| i);
        if let Some(i) = victim {
            self.pairs.swap_remove(i);
            self.stats.evicted += 1;
        }
    }

    fn select(&mut self, remote: Option<Remote>) {
        if self.selected != remote {
            tracing::debug!(ice = %self.local.ufrag, from = ?self.selected, to = ?remote, "ICE: media destination");
            self.selected = remote;
        }
    }

    /// Advance time: drop pairs without consent, move media to the freshest remaining pair
    /// (nominated first), close the session when none is left.
    pub fn poll(&mut self, now: u64) -> IceState {
        if self.closed {
            return IceState::Closed;
        }
        let fresh = |p: &Pair| now < p.last_valid.saturating_add(CONSENT_TIMEOUT);
        let before = self.pairs.len();
        self.pairs.retain(fresh);
        if self.pairs.len() != before && !self.pairs.iter().any(|p| Some(p.remote) == self.selected)
        {
            let next = self
                .pairs
                .iter()
                .max_by_key(|p| (p.nominated, p.last_valid))
                .map(|p| p.remote);
            self.select(next);
        }
        let last = self.last_valid.unwrap_or(self.created);
        if now >= last.saturating_add(CONSENT_TIMEOUT) {
            tracing::debug!(ice = %self.local.ufrag, checks = self.stats.valid_checks, "ICE: consent expired");
            self.closed = true;
            self.selected = None;
            self.pairs.clear();
            return IceState::Closed;
        }
        if self.last_valid.is_some() {
            IceState::Connected
        } else {
            IceState::Checking
        }
    }

    /// When [`poll`](Self::poll) next has something to do.
    pub fn next_timeout(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        let session = self.last_valid.unwrap_or(self.created);
        let pairs = self.pairs.iter().map(|p| p.last_valid).min();
        Some(
            pairs
                .unwrap_or(session)
                .min(session)
                .saturating_add(CONSENT_TIMEOUT),
        )
    }

    /// End the session now (DTLS close, stream gone).
    pub fn close(&mut self) {
        self.closed = true;
        self.selected = None;
        self.pairs.clear();
    }
}

// ---------------------------------------------------------------------------------------
// Host candidates and go2rtc's `filters:`.

/// The ports a host address is offered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ports {
    pub udp: Option<u16>,
    /// ICE-TCP, passive.
    pub tcp: Option<u16>,
}

/// Priority of a host candidate (RFC 8445 §5.1.2.1, component 1): earlier `index` higher;
/// UDP above TCP, TCP passive using RFC 6544 §4.2's local preference split.
pub fn host_priority(transport: Transport, index: usize) -> u32 {
    let local = match transport {
        Transport::Udp | Transport::Relay(_) => 0xffff - index.min(0xffff) as u32,
        // Direction preference 4 (passive, host) in the top 3 bits, then the order.
        Transport::Tcp => (4 << 13) | (0x1fff - index.min(0x1fff) as u32),
    };
    (HOST_TYPE_PREFERENCE << 24) | (local << 8) | (256 - 1)
}

/// One `a=candidate:` line (host type). The foundation is a CRC of type, address and
/// transport, so it is stable and equal only where RFC 8445 §5.1.1.3 wants it equal.
pub fn candidate_line(ip: IpAddr, port: u16, transport: Transport, priority: u32) -> String {
    let foundation = stun::Crc32::new()
        .update(b"host")
        .update(ip.to_string().as_bytes())
        .update(transport.name().as_bytes())
        .finish();
    let tcptype = match transport {
        Transport::Udp | Transport::Relay(_) => "",
        Transport::Tcp => " tcptype passive",
    };
    format!(
        "a=candidate:{foundation} 1 {} {priority} {ip} {port} typ host{tcptype}",
        transport.name()
    )
}

/// Host candidate lines for `addrs` in order of preference (configured `candidates:` first,
/// then interface addresses): each address on each port given, earlier ones higher.
pub fn candidate_lines(addrs: &[(IpAddr, Ports)]) -> Vec<String> {
    let mut lines = Vec::with_capacity(addrs.len() * 2);
    for (i, &(ip, ports)) in addrs.iter().enumerate() {
        if let Some(port) = ports.udp {
            let p = host_priority(Transport::Udp, i);
            lines.push(candidate_line(ip, port, Transport::Udp, p));
        }
        if let Some(port) = ports.tcp {
            let p = host_priority(Transport::Tcp, i);
            lines.push(candidate_line(ip, port, Transport::Tcp, p));
        }
    }
    lines
}

/// 172.16.0.0/12: Docker's bridge networks (docker0 172.17/16, Home Assistant's hassio
/// 172.30.32/23). Nobody outside the host reaches them; go2rtc always drops them.
pub fn is_docker_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 172 && (b & 0xf0) == 16
        }
        IpAddr::V6(_) => false,
    }
}

/// A network interface address, as the runtime read it from the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    pub name: String,
    pub ip: IpAddr,
    pub up: bool,
    pub loopback: bool,
}

/// go2rtc's `webrtc: filters:` section. `None` lists mean "no restriction".
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filters {
    /// Host candidates allowed, by IP (`[]` removes every discovered candidate).
    pub candidates: Option<Vec<String>>,
    /// Offer loopback addresses.
    pub loopback: bool,
    /// Interfaces whose addresses are offered.
    pub interfaces: Option<Vec<String>>,
    /// Interface addresses offered.
    pub ips: Option<Vec<String>>,
    /// `udp4`, `udp6`, `tcp4`, `tcp6`.
    pub networks: Option<Vec<String>>,
    /// `[min, max]` for random UDP ports.
    pub udp_ports: Option<Vec<u16>>,
}

fn listed(list: &Option<Vec<String>>, what: &str) -> bool {
    list.as_ref().is_none_or(|l| l.iter().any(|x| x == what))
}

/// Compare as IPs when the entry parses (so `::1` matches `0:0::1`), else as text.
fn ip_listed(list: &Option<Vec<String>>, ip: IpAddr) -> bool {
    list.as_ref().is_none_or(|l| {
        l.iter().any(|x| {
            x.parse::<IpAddr>()
                .map_or(*x == ip.to_string(), |y| y == ip)
        })
    })
}

impl Filters {
    /// `udp4`/`udp6`/`tcp4`/`tcp6` of a candidate.
    pub fn network_name(transport: Transport, ip: IpAddr) -> &'static str {
        match (transport, ip.is_ipv4()) {
            (Transport::Udp | Transport::Relay(_), true) => "udp4",
            (Transport::Udp | Transport::Relay(_), false) => "udp6",
            (Transport::Tcp, true) => "tcp4",
            (Transport::Tcp, false) => "tcp6",
        }
    }

    /// Whether addresses of this interface are gathered (`interfaces`, `loopback`).
    pub fn allows_interface(&self, iface: &InterfaceAddr) -> bool {
        iface.up && (!iface.loopback || self.loopback) && listed(&self.interfaces, &iface.name)
    }

    /// Whether an interface address is gathered (`ips`; Docker range never; IPv6
    /// link-local never, as it needs a scope browsers cannot use).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let link_local_v6 = matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
        !is_docker_range(ip) && !link_local_v6 && !ip.is_unspecified() && ip_listed(&self.ips, ip)
    }

    /// Whether a gathered host candidate is offered (`candidates`, `networks`, Docker).
    pub fn allows_candidate(&self, ip: IpAddr, transport: Transport) -> bool {
        !is_docker_range(ip)
            && ip_listed(&self.candidates, ip)
            && listed(&self.networks, Self::network_name(transport, ip))
    }

    /// The `udp_ports` range, when it is a valid `[min, max]`.
    pub fn udp_port_range(&self) -> Option<std::ops::RangeInclusive<u16>> {
        match self.udp_ports.as_deref() {
            Some(&[min, max]) if min != 0 && min <= max => Some(min..=max),
            _ => None,
        }
    }
}

/// Interface addresses to offer as host candidates, in interface order, without
/// duplicates, after `filters`.
pub fn host_ips(interfaces: &[InterfaceAddr], filters: &Filters) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for iface in interfaces {
        if filters.allows_interface(iface)
            && filters.allows_ip(iface.ip)
            && !ips.contains(&iface.ip)
        {
            ips.push(iface.ip);
        }
    }
    ips
}

/// Candidate lines for a listener: configured `candidates` first (already resolved, each
/// with its own ports), then interface addresses on the listen ports, all through
/// `filters` (configured entries skip the interface filters but not Docker or `networks`).
pub fn gather(
    configured: &[(IpAddr, Ports)],
    interface_ips: &[IpAddr],
    listen: Ports,
    filters: &Filters,
) -> Vec<String> {
    let only = |ip: IpAddr, ports: Ports, check_candidates: bool| -> Ports {
        let ok = |t| {
            if check_candidates {
                filters.allows_candidate(ip, t)
            } else {
                !is_docker_range(ip) && listed(&filters.networks, Filters::network_name(t, ip))
            }
        };
        Ports {
            udp: ports.udp.filter(|_| ok(Transport::Udp)),
            tcp: ports.tcp.filter(|_| ok(Transport::Tcp)),
        }
    };
    let mut entries: Vec<(IpAddr, Ports)> = Vec::new();
    for &(ip, ports) in configured {
        entries.push((ip, only(ip, ports, false)));
    }
    for &ip in interface_ips {
        if !configured.iter().any(|&(c, _)| c == ip) {
            entries.push((ip, only(ip, listen, true)));
        }
    }
    entries.retain(|(_, p)| p.udp.is_some() || p.tcp.is_some());
    candidate_lines(&entries)
}

#[cfg(test)]
mod tests;

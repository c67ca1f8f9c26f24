//! DTLS 1.2 for WebRTC: a thin wrapper over the sans-IO `dimpl` crate.
//!
//! One ECDSA P-256 self-signed certificate per process ([`Identity::process`]); its SHA-256
//! fingerprint goes into every SDP answer. A [`DtlsSession`] is one association in the
//! client or server role: feed it datagrams and time, drain the datagrams it wants sent,
//! and it reports [`DtlsEvent::Connected`] once the handshake finished, the peer's
//! certificate matched the fingerprint from its SDP, and the DTLS-SRTP keys were exported
//! — as two [`SrtpContext`]s (ours to send, theirs to receive).
//!
//! dimpl runs on its pure-Rust `rust-crypto` backend (no C toolchain in the build). Time is
//! an argument (`Instant`, as dimpl takes it); nothing here reads the clock.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dimpl::{Config, Dtls, DtlsCertificate, Output};
use ring::digest;
use thiserror::Error;
use tracing::debug;

use super::srtp::{contexts_from_keying_material, Role, SrtpContext, SrtpProfile};

/// Largest datagram handed to DTLS: a DTLS record is at most 2^14 + 2048 bytes, several fit
/// a datagram, and RFC 4571 framing caps TCP frames at 65535.
pub const MAX_DATAGRAM_LEN: usize = 65_535;
/// Output records are built for this MTU (ICE-TCP and UDP alike; WebRTC stacks use ~1200).
const DTLS_MTU: usize = 1200;

/// What went wrong with DTLS. Every error from a [`DtlsSession`] ends that session (dimpl's
/// errors are fatal); malformed records are dropped inside dimpl and are not errors.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DtlsError {
    #[error("DTLS certificate: {0}")]
    Certificate(String),
    #[error("DTLS: {0}")]
    Protocol(String),
    #[error("DTLS: datagram of {0} bytes is too long")]
    TooLong(usize),
    #[error("DTLS: peer certificate fingerprint {got} does not match the SDP's {want}")]
    FingerprintMismatch { got: String, want: String },
    #[error("DTLS: connected without a peer certificate")]
    NoPeerCertificate,
    #[error("DTLS: connected without DTLS-SRTP keying material (no use_srtp profile agreed)")]
    NoKeyingMaterial,
    #[error("DTLS-SRTP: {0}")]
    Srtp(String),
    #[error("fingerprint: {0}")]
    BadFingerprint(String),
}

/// A SHA-256 certificate fingerprint (`a=fingerprint:sha-256 AA:BB:...`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, der);
        let mut fp = [0u8; 32];
        fp.copy_from_slice(d.as_ref());
        Self(fp)
    }

    /// Parses the value of an `a=fingerprint:` attribute: `sha-256` (any case) then 32
    /// colon-separated hex bytes. Other hash functions are refused: browsers send SHA-256.
    pub fn parse_sdp(value: &str) -> Result<Self, DtlsError> {
        let value = value.trim();
        let (hash, hex) = value
            .split_once(' ')
            .ok_or_else(|| DtlsError::BadFingerprint(format!("no hash function in {value:?}")))?;
        if !hash.eq_ignore_ascii_case("sha-256") {
            return Err(DtlsError::BadFingerprint(format!(
                "hash function {hash:?}, only sha-256 is supported"
            )));
        }
        let hex = hex.trim();
        let mut fp = [0u8; 32];
        let mut n = 0;
        for part in hex.split(':') {
            let b = (part.len() == 2)
                .then(|| u8::from_str_radix(part, 16).ok())
                .flatten()
                .ok_or_else(|| DtlsError::BadFingerprint(format!("bad byte {part:?}")))?;
            if n == fp.len() {
                return Err(DtlsError::BadFingerprint("more than 32 bytes".into()));
            }
            fp[n] = b;
            n += 1;
        }
        if n != fp.len() {
            return Err(DtlsError::BadFingerprint(format!("{n} bytes, want 32")));
        }
        Ok(Self(fp))
    }

    /// The `a=fingerprint:` value: `sha-256 AA:BB:...`.
    pub fn to_sdp(&self) -> String {
        format!("sha-256 {self}")
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Our DTLS identity: certificate, key, fingerprint and the shared dimpl configuration.
pub struct Identity {
    cert: DtlsCertificate,
    fingerprint: Fingerprint,
    config: Arc<Config>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl Identity {
    /// Generates a fresh ECDSA P-256 self-signed certificate.
    pub fn generate() -> Result<Self, DtlsError> {
        use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SerialNumber};
        let err = |e: rcgen::Error| DtlsError::Certificate(e.to_string());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "corecast");
        params.distinguished_name = dn;
        // Firefox refuses two certificates with the same issuer and serial in one profile
        // (mediasoup #127): a random serial per process.
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
            .map_err(|_| DtlsError::Certificate("no system randomness".into()))?;
        serial[0] &= 0x7f; // positive INTEGER
        params.serial_number = Some(SerialNumber::from(serial.to_vec()));
        let cert = params.self_signed(&key).map_err(err)?;
        let der = cert.der().to_vec();
        Self::from_der(der, key.serialize_der())
    }

    /// An identity from a DER certificate and its PKCS#8 (or SEC1) DER private key.
    pub fn from_der(certificate: Vec<u8>, private_key: Vec<u8>) -> Result<Self, DtlsError> {
        let config = Config::builder()
            .mtu(DTLS_MTU)
            .build()
            .map_err(|e| DtlsError::Certificate(format!("dimpl config: {e}")))?;
        Ok(Self {
            fingerprint: Fingerprint::of_der(&certificate),
            cert: DtlsCertificate {
                certificate,
                private_key,
            },
            config: Arc::new(config),
        })
    }

    /// The process's identity, generated on first use and shared by every shard.
    pub fn process() -> Result<Arc<Identity>, DtlsError> {
        static ID: OnceLock<Result<Arc<Identity>, DtlsError>> = OnceLock::new();
        ID.get_or_init(|| Identity::generate().map(Arc::new))
            .clone()
    }

    /// SHA-256 fingerprint of our certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// DER of our certificate.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert.certificate
    }
}

/// The SRTP contexts of an established association.
pub struct SrtpKeys {
    pub profile: SrtpProfile,
    /// Protects what we send.
    pub send: SrtpContext,
    /// Unprotects what the peer sends.
    pub recv: SrtpContext,
}

impl fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpKeys")
            .field("profile", &self.profile)
            .finish()
    }
}

/// What a [`DtlsSession::poll`] reports besides datagrams.
#[derive(Debug)]
pub enum DtlsEvent {
    /// Handshake done, peer certificate verified, SRTP keys ready (reported once).
    Connected(Box<SrtpKeys>),
    /// The peer sent close_notify: the session is over.
    Closed,
    /// A retired session got an alert record it cannot authenticate (a close_notify, most
    /// likely, or a forgery from someone who knows the peer's address): the caller ends
    /// the session unless the peer shows it is still there.
    PeerAlert,
}

/// True for a datagram DTLS should see: RFC 7983 demultiplexing by the first byte
/// (20..=63 DTLS, 0..=3 STUN, 128..=191 RTP/RTCP).
pub fn is_dtls(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(20..=63))
}

/// One DTLS association with one peer.
///
/// Once connected, [`retire`](Self::retire) drops the DTLS state machine (certificate
/// copy, transcript, buffers, record ciphers: ~12 KB a session) and keeps only what the
/// association still needs: our final flight, resent as-is when the peer retransmits its
/// own (RFC 6347 §4.2.4), and a close_notify prepared in advance. The peer's alerts can no
/// longer be authenticated then and are reported as [`DtlsEvent::PeerAlert`].
pub struct DtlsSession {
    /// None once retired.
    dtls: Option<Box<Dtls>>,
    role: Role,
    remote_fingerprint: Fingerprint,
    next_timeout: Option<Instant>,
    peer_verified: bool,
    connected: bool,
    keys: Option<(dimpl::KeyingMaterial, dimpl::SrtpProfile)>,
    reported: bool,
    closed: bool,
    /// The datagrams we sent since the last input (the current flight): after the
    /// handshake, our final flight.
    flight: Vec<Box<[u8]>>,
    /// An input arrived since the last datagram we sent: the next one starts a flight.
    new_flight: bool,
    retired: Option<Box<Retired>>,
}

/// What a retired session keeps.
struct Retired {
    close_notify: Box<[u8]>,
    /// Resends of the final flight left (a spoofed flood must not make us reflect).
    resends_left: u8,
    resend: bool,
    alert: bool,
    close: bool,
}

/// Resends of the final flight a retired session makes at most (a peer retransmits its
/// flight a handful of times before giving up).
const MAX_FLIGHT_RESENDS: u8 = 8;
/// Largest datagram dimpl writes: records are built for [`DTLS_MTU`].
const OUT_BUF: usize = 2048;

impl fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsSession")
            .field("role", &self.role)
            .field("connected", &self.connected)
            .field("retired", &self.retired.is_some())
            .field("closed", &self.closed)
            .finish()
    }
}

fn profile_of(p: dimpl::SrtpProfile) -> Option<SrtpProfile> {
    match p {
        dimpl::SrtpProfile::AES128_CM_SHA1_80 => Some(SrtpProfile::Aes128CmHmacSha1_80),
        dimpl::SrtpProfile::AEAD_AES_128_GCM => Some(SrtpProfile::AeadAes128Gcm),
        dimpl::SrtpProfile::AEAD_AES_256_GCM => Some(SrtpProfile::AeadAes256Gcm),
        _ => None,
    }
}

impl DtlsSession {
    /// A session in `role` (from the SDP `a=setup:` negotiation) that accepts only a peer
    /// whose certificate has `remote_fingerprint` (from the peer's SDP). A client starts
    /// its handshake on the first [`poll`](Self::poll).
    pub fn new(
        identity: &Identity,
        role: Role,
        remote_fingerprint: Fingerprint,
        now: Instant,
    ) -> Self {
        let mut dtls = Dtls::new_12(identity.config.clone(), identity.cert.clone(), now);
        if role == Role::Client {
            dtls.set_active(true);
        }
        Self {
            dtls: Some(Box::new(dtls)),
            role,
            remote_fingerprint,
            next_timeout: None,
            peer_verified: false,
            connected: false,
            keys: None,
            reported: false,
            closed: false,
            flight: Vec::new(),
            new_flight: true,
            retired: None,
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True once [`DtlsEvent::Connected`] was reported.
    pub fn is_connected(&self) -> bool {
        self.reported
    }

    /// True once [`retire`](Self::retire)d.
    pub fn is_retired(&self) -> bool {
        self.retired.is_some()
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to be called next.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.next_timeout
    }

    /// Feeds one received datagram (already demultiplexed as DTLS); follow with
    /// [`poll`](Self::poll).
    pub fn handle_datagram(&mut self, datagram: &[u8], now: Instant) -> Result<(), DtlsError> {
        if datagram.len() > MAX_DATAGRAM_LEN {
            return Err(DtlsError::TooLong(datagram.len()));
        }
        self.new_flight = true;
        if let Some(r) = self.retired.as_mut() {
            // The first record's content type is all we can read without the state:
            // handshake or ChangeCipherSpec = the peer did not get our final flight;
            // alert = the peer closes (or says something fatal), unauthenticated.
            match datagram.first() {
                Some(20 | 22) if r.resends_left > 0 => {
                    r.resends_left -= 1;
                    r.resend = true;
                }
                Some(21) => r.alert = true,
                _ => {}
            }
            return Ok(());
        }
        let Some(dtls) = self.dtls.as_mut() else {
            return Ok(());
        };
        // dimpl's retransmit timers look at the time it last saw.
        dtls.handle_timeout(now)
            .map_err(|e| DtlsError::Protocol(e.to_string()))?;
        dtls.handle_packet(datagram)
            .map_err(|e| DtlsError::Protocol(e.to_string()))
    }

    /// Advances timers (retransmissions, handshake timeout); follow with
    /// [`poll`](Self::poll).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        let Some(dtls) = self.dtls.as_mut() else {
            return Ok(());
        };
        self.new_flight = true;
        dtls.handle_timeout(now)
            .map_err(|e| DtlsError::Protocol(e.to_string()))
    }

    /// Drains what dimpl produced: each datagram to send goes to `transmit`; returns an
    /// event when one happened (call again until `Ok(None)`).
    pub fn poll(
        &mut self,
        transmit: &mut dyn FnMut(&[u8]),
    ) -> Result<Option<DtlsEvent>, DtlsError> {
        if let Some(r) = self.retired.as_mut() {
            if std::mem::take(&mut r.resend) {
                for d in &self.flight {
                    transmit(d);
                }
            }
            if std::mem::take(&mut r.close) {
                transmit(&r.close_notify);
            }
            if std::mem::take(&mut r.alert) {
                return Ok(Some(DtlsEvent::PeerAlert));
            }
            return Ok(None);
        }
        // Records are built for DTLS_MTU: a stack buffer, no per-session one.
        let mut stack = [0u8; OUT_BUF];
        let mut heap = Vec::new();
        loop {
            if self.closed {
                return Ok(None);
            }
            let Some(dtls) = self.dtls.as_mut() else {
                return Ok(None);
            };
            let buf: &mut [u8] = if heap.is_empty() {
                &mut stack
            } else {
                &mut heap
            };
            match dtls.poll_output(buf) {
                Output::Packet(p) => {
                    if std::mem::take(&mut self.new_flight) {
                        self.flight.clear();
                    }
                    // Bounded: a flight is a few datagrams.
                    if self.flight.len() < 16 {
                        self.flight.push(p.into());
                    }
                    transmit(p)
                }
                Output::BufferTooSmall { needed } => {
                    if needed > MAX_DATAGRAM_LEN {
                        return Err(DtlsError::TooLong(needed));
                    }
                    heap.resize(needed, 0);
                }
                Output::Timeout(t) => {
                    self.next_timeout = Some(t);
                    // Connected is reported once dimpl has nothing more to send: the
                    // final flight is out (and recorded) before a caller may retire.
                    if self.connected && self.keys.is_some() && !self.reported {
                        return self.report().map(Some);
                    }
                    return Ok(None);
                }
                Output::PeerCert(der) => {
                    let got = Fingerprint::of_der(der);
                    if got != self.remote_fingerprint {
                        return Err(DtlsError::FingerprintMismatch {
                            got: got.to_string(),
                            want: self.remote_fingerprint.to_string(),
                        });
                    }
                    self.peer_verified = true;
                }
                Output::Connected => self.connected = true,
                Output::KeyingMaterial(km, profile) => self.keys = Some((km, profile)),
                Output::ApplicationData(d) => {
                    // No data channels: SCTP over DTLS is not served.
                    debug!(len = d.len(), "DTLS application data ignored");
                }
                Output::CloseNotify => {
                    self.closed = true;
                    return Ok(Some(DtlsEvent::Closed));
                }
                // dimpl may grow new outputs; none of them concern SRTP.
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
    }

    fn report(&mut self) -> Result<DtlsEvent, DtlsError> {
        if !self.peer_verified {
            return Err(DtlsError::NoPeerCertificate);
        }
        let (km, profile) = self.keys.take().ok_or(DtlsError::NoKeyingMaterial)?;
        let profile = profile_of(profile)
            .ok_or_else(|| DtlsError::Srtp(format!("unknown profile {profile}")))?;
        let (send, recv) = contexts_from_keying_material(profile, &km, self.role)
            .map_err(|e| DtlsError::Srtp(e.to_string()))?;
        self.reported = true;
        Ok(DtlsEvent::Connected(Box::new(SrtpKeys {
            profile,
            send,
            recv,
        })))
    }

    /// Drops the DTLS state machine of a connected session (no-op before
    /// [`DtlsEvent::Connected`] was reported, or when done already), keeping our final
    /// flight and a close_notify made now: nothing else is ever sent in epoch 1 after
    /// it, so its record sequence number stays valid for [`close`](Self::close).
    pub fn retire(&mut self) {
        if !self.reported || self.closed || self.retired.is_some() {
            return;
        }
        let Some(mut dtls) = self.dtls.take() else {
            return;
        };
        let mut close_notify = Vec::new();
        if dtls.close().is_ok() {
            let mut buf = [0u8; OUT_BUF];
            // Bounded: dimpl ends with a Timeout; only the alert is expected before it.
            for _ in 0..8 {
                match dtls.poll_output(&mut buf) {
                    Output::Packet(p) => close_notify.extend_from_slice(p),
                    Output::Timeout(_) => break,
                    _ => {}
                }
            }
        }
        self.flight.shrink_to_fit();
        self.next_timeout = None;
        self.retired = Some(Box::new(Retired {
            close_notify: close_notify.into(),
            resends_left: MAX_FLIGHT_RESENDS,
            resend: false,
            alert: false,
            close: false,
        }));
    }

    /// Sends close_notify (drain with [`poll`](Self::poll)).
    pub fn close(&mut self) -> Result<(), DtlsError> {
        if let Some(r) = self.retired.as_mut() {
            if !self.closed {
                r.close = !r.close_notify.is_empty();
                self.closed = true;
            }
            return Ok(());
        }
        match self.dtls.as_mut() {
            Some(d) => d.close().map_err(|e| DtlsError::Protocol(e.to_string())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs a client and a server against each other in memory with a fake clock; `tamper`
    /// may drop or alter datagrams. Returns what each side reported.
    fn handshake(
        server_id: &Identity,
        client_id: &Identity,
        server_expects: Fingerprint,
        client_expects: Fingerprint,
        mut tamper: impl FnMut(usize, &mut Vec<u8>) -> bool,
    ) -> (
        Result<Option<SrtpKeys>, DtlsError>,
        Result<Option<SrtpKeys>, DtlsError>,
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut server = DtlsSession::new(server_id, Role::Server, server_expects, now);
        let mut client = DtlsSession::new(client_id, Role::Client, client_expects, now);
        let (mut s_keys, mut c_keys) = (None, None);
        let mut n = 0usize;
        for _round in 0..200 {
            let mut to_server = Vec::new();
            let mut to_client = Vec::new();
            match client.poll(&mut |p| to_server.push(p.to_vec())) {
                Ok(Some(DtlsEvent::Connected(k))) => c_keys = Some(*k),
                Ok(_) => {}
                Err(e) => return (Ok(s_keys), Err(e)),
            }
            match server.poll(&mut |p| to_client.push(p.to_vec())) {
                Ok(Some(DtlsEvent::Connected(k))) => s_keys = Some(*k),
                Ok(_) => {}
                Err(e) => return (Err(e), Ok(c_keys)),
            }
            if s_keys.is_some() && c_keys.is_some() {
                break;
            }
            now += Duration::from_millis(10);
            for mut p in to_server {
                n += 1;
                if tamper(n, &mut p) {
                    if let Err(e) = server.handle_datagram(&p, now) {
                        return (Err(e), Ok(c_keys));
                    }
                }
            }
            for mut p in to_client {
                n += 1;
                if tamper(n, &mut p) {
                    if let Err(e) = client.handle_datagram(&p, now) {
                        return (Ok(s_keys), Err(e));
                    }
                }
            }
            // Let retransmission timers fire when a flight was lost.
            for s in [&mut server, &mut client] {
                if s.next_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now).unwrap();
                }
            }
            if now - t0 > Duration::from_secs(30) {
                break;
            }
            now += Duration::from_millis(100);
        }
        (Ok(s_keys), Ok(c_keys))
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 0, 0, 0, 0x10, 0, 1, 2, 3, 4];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(b"media payload");
        p
    }

    #[test]
    fn handshake_in_memory_agrees_on_srtp_keys() {
        let server_id = Identity::generate().unwrap();
        let client_id = Identity::generate().unwrap();
        let (s, c) = handshake(
            &server_id,
            &client_id,
            client_id.fingerprint(),
            server_id.fingerprint(),
            |_, _| true,
        );
        let mut s = s.unwrap().expect("server connected");
        let mut c = c.unwrap().expect("client connected");
        assert_eq!(s.profile, c.profile);
        // dimpl prefers AEAD_AES_256_GCM when both offer everything.
        assert_eq!(s.profile, SrtpProfile::AeadAes256Gcm);

        // Server -> client and client -> server, through each other's contexts.
        let mut wire = Vec::new();
        s.send.protect_rtp_packet(&rtp(1), &mut wire).unwrap();
        let n = c.recv.unprotect_rtp(&mut wire).unwrap();
        assert_eq!(wire[..n], rtp(1)[..]);
        c.send.protect_rtp_packet(&rtp(7), &mut wire).unwrap();
        let n = s.recv.unprotect_rtp(&mut wire).unwrap();
        assert_eq!(wire[..n], rtp(7)[..]);
        // A context does not open its own direction's packets (keys differ per side).
        s.send.protect_rtp_packet(&rtp(2), &mut wire).unwrap();
        assert!(s.recv.unprotect_rtp(&mut wire).is_err());
    }

    #[test]
    fn handshake_survives_lost_datagrams() {
        let server_id = Identity::generate().unwrap();
        let client_id = Identity::generate().unwrap();
        // Drop the 1st and 4th datagram: retransmission timers must recover.
        let (s, c) = handshake(
            &server_id,
            &client_id,
            client_id.fingerprint(),
            server_id.fingerprint(),
            |n, _| n != 1 && n != 4,
        );
        assert!(s.unwrap().is_some() && c.unwrap().is_some());
    }

    /// Runs `server` and `client` until both reported keys (or 200 rounds); `drop_s2c`
    /// decides per server->client datagram whether it is lost (given whether the server
    /// is connected).
    fn run_pair(
        server: &mut DtlsSession,
        client: &mut DtlsSession,
        now: &mut Instant,
        mut drop_s2c: impl FnMut(bool) -> bool,
    ) -> (Option<SrtpKeys>, Option<SrtpKeys>) {
        let (mut s_keys, mut c_keys) = (None, None);
        for _ in 0..200 {
            let (mut to_s, mut to_c) = (Vec::new(), Vec::new());
            if let Some(DtlsEvent::Connected(k)) =
                client.poll(&mut |p| to_s.push(p.to_vec())).unwrap()
            {
                c_keys = Some(*k);
            }
            if let Some(DtlsEvent::Connected(k)) =
                server.poll(&mut |p| to_c.push(p.to_vec())).unwrap()
            {
                s_keys = Some(*k);
                server.retire();
            }
            if s_keys.is_some() && c_keys.is_some() {
                break;
            }
            *now += Duration::from_millis(100);
            for p in to_s {
                server.handle_datagram(&p, *now).unwrap();
            }
            for p in to_c {
                if !drop_s2c(s_keys.is_some()) {
                    client.handle_datagram(&p, *now).unwrap();
                }
            }
            for s in [&mut *server, &mut *client] {
                if s.next_timeout().is_some_and(|t| t <= *now) {
                    s.handle_timeout(*now).unwrap();
                }
            }
        }
        (s_keys, c_keys)
    }

    #[test]
    fn retired_server_resends_its_final_flight_and_closes() {
        let server_id = Identity::generate().unwrap();
        let client_id = Identity::generate().unwrap();
        let mut now = Instant::now();
        let mut server = DtlsSession::new(&server_id, Role::Server, client_id.fingerprint(), now);
        let mut client = DtlsSession::new(&client_id, Role::Client, server_id.fingerprint(), now);
        // The server's final flight (sent as it connects) is lost once: the client
        // retransmits its flight and the retired server answers from what it kept.
        let mut lost = 0;
        let (s, c) = run_pair(&mut server, &mut client, &mut now, |connected| {
            if connected && lost == 0 {
                lost += 1;
                return true;
            }
            false
        });
        assert_eq!(lost, 1);
        assert!(server.is_retired());
        let (mut s, mut c) = (s.expect("server keys"), c.expect("client keys"));
        let mut wire = Vec::new();
        s.send.protect_rtp_packet(&rtp(3), &mut wire).unwrap();
        let n = c.recv.unprotect_rtp(&mut wire).unwrap();
        assert_eq!(wire[..n], rtp(3)[..]);

        // close_notify made at retirement is valid for the (unretired) client.
        server.close().unwrap();
        let mut out = Vec::new();
        assert!(server
            .poll(&mut |p| out.push(p.to_vec()))
            .unwrap()
            .is_none());
        assert_eq!(out.len(), 1);
        client.handle_datagram(&out[0], now).unwrap();
        let mut closed = false;
        while let Some(e) = client.poll(&mut |_| {}).unwrap() {
            closed |= matches!(e, DtlsEvent::Closed);
        }
        assert!(closed, "the client did not see our close_notify");
        // Closing twice sends nothing more.
        server.close().unwrap();
        out.clear();
        server.poll(&mut |p| out.push(p.to_vec())).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn retired_server_reports_the_peer_alert_and_bounds_resends() {
        let server_id = Identity::generate().unwrap();
        let client_id = Identity::generate().unwrap();
        let mut now = Instant::now();
        let mut server = DtlsSession::new(&server_id, Role::Server, client_id.fingerprint(), now);
        let mut client = DtlsSession::new(&client_id, Role::Client, server_id.fingerprint(), now);
        let (s, c) = run_pair(&mut server, &mut client, &mut now, |_| false);
        assert!(s.is_some() && c.is_some() && server.is_retired());
        client.close().unwrap();
        let mut out = Vec::new();
        client.poll(&mut |p| out.push(p.to_vec())).unwrap();
        assert_eq!(out.len(), 1);
        server.handle_datagram(&out[0], now).unwrap();
        assert!(matches!(
            server.poll(&mut |_| {}).unwrap(),
            Some(DtlsEvent::PeerAlert)
        ));
        assert!(server.poll(&mut |_| {}).unwrap().is_none());
        // A flood of handshake-looking datagrams gets a bounded number of resends.
        let mut sent = 0;
        for _ in 0..100 {
            server
                .handle_datagram(&[22, 0xfe, 0xfd, 0, 0], now)
                .unwrap();
            server.poll(&mut |_| sent += 1).unwrap();
        }
        assert!(sent > 0 && sent <= MAX_FLIGHT_RESENDS as usize * 16);
    }

    #[test]
    fn wrong_fingerprint_is_refused() {
        let server_id = Identity::generate().unwrap();
        let client_id = Identity::generate().unwrap();
        let other = Identity::generate().unwrap();
        // The server expects another certificate than the client presents.
        let (s, _c) = handshake(
            &server_id,
            &client_id,
            other.fingerprint(),
            server_id.fingerprint(),
            |_, _| true,
        );
        assert!(matches!(s, Err(DtlsError::FingerprintMismatch { .. })));
        // And the client refuses a server that is not the one in the SDP.
        let (_s, c) = handshake(
            &server_id,
            &client_id,
            client_id.fingerprint(),
            other.fingerprint(),
            |_, _| true,
        );
        assert!(matches!(c, Err(DtlsError::FingerprintMismatch { .. })));
    }

    #[test]
    fn garbage_datagrams_do_not_panic() {
        let id = Identity::generate().unwrap();
        let now = Instant::now();
        let mut s = DtlsSession::new(&id, Role::Server, id.fingerprint(), now);
        let mut sink = |_: &[u8]| {};
        let mut junk = Vec::new();
        for n in 0..300usize {
            junk.push((n * 131 % 251) as u8);
            let mut d = junk.clone();
            d[0] = 20 + (n % 44) as u8; // looks like DTLS by its first byte
                                        // A fatal error ends the session; start a new one and keep feeding.
            if s.handle_datagram(&d, now).is_err() || s.poll(&mut sink).is_err() {
                s = DtlsSession::new(&id, Role::Server, id.fingerprint(), now);
            }
        }
        // A ClientHello-shaped record header with lengths past the end.
        let mut d = vec![
            22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 0xff, 0xff, 0xff,
        ];
        d.extend_from_slice(&[0; 40]);
        let _ = s.handle_datagram(&d, now);
        let _ = s.poll(&mut sink);
        assert!(matches!(
            s.handle_datagram(&vec![22; MAX_DATAGRAM_LEN + 1], now),
            Err(DtlsError::TooLong(_))
        ));
    }

    /// A P-256 certificate and key made by the openssl command, in `dir`.
    fn openssl_cert(
        dir: &std::path::Path,
    ) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        use std::process::{Command, Stdio};
        std::fs::create_dir_all(dir).unwrap();
        let (key, cert, der) = (dir.join("k.pem"), dir.join("c.pem"), dir.join("c.der"));
        let ok = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=peer",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
            && Command::new("openssl")
                .args(["x509", "-outform", "DER", "-in"])
                .arg(&cert)
                .arg("-out")
                .arg(&der)
                .status()
                .unwrap()
                .success();
        assert!(ok, "openssl could not make a client certificate");
        (key, cert, der)
    }

    fn openssl_missing() -> bool {
        let missing = std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err();
        if missing {
            eprintln!("openssl not installed: interop test skipped");
        }
        missing
    }

    fn parse_keying_material(out: &str) -> Vec<u8> {
        let hex = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Keying material: "))
            .unwrap_or_else(|| panic!("no keying material in\n{out}"));
        (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    /// Our client role against OpenSSL's `s_server` (the answer to a `setup:passive`
    /// offer): handshake, certificate requested by the server, keys agree.
    #[test]
    fn openssl_server_interop() {
        use std::io::BufRead;
        use std::net::UdpSocket;
        use std::process::{Command, Stdio};

        if openssl_missing() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("corecast-dtls-s-{}", std::process::id()));
        let (key, cert, der) = openssl_cert(&dir);
        let server_fp = Fingerprint::of_der(&std::fs::read(&der).unwrap());
        let id = Identity::process().unwrap();
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("openssl")
            .args(["s_server", "-dtls1_2", "-naccept", "1", "-verify", "1"])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .args(["-use_srtp", "SRTP_AEAD_AES_256_GCM", "-keymatexport"])
            .args(["EXTRACTOR-dtls_srtp", "-keymatexportlen", "88", "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // s_server's stdout is read on a thread so the handshake loop never blocks on it.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut out = String::new();
        let wait_for = |out: &mut String, what: &str, secs: u64| {
            let deadline = Instant::now() + Duration::from_secs(secs);
            while !out.contains(what) && Instant::now() < deadline {
                if let Ok(l) = rx.recv_timeout(Duration::from_millis(50)) {
                    out.push_str(&l);
                    out.push('\n');
                }
            }
            out.contains(what)
        };
        assert!(
            wait_for(&mut out, "ACCEPT", 10),
            "s_server did not start: {out}"
        );

        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        sock.connect(("127.0.0.1", port)).unwrap();
        let mut client = DtlsSession::new(&id, Role::Client, server_fp, Instant::now());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut keys = None;
        let mut buf = [0u8; 2048];
        while keys.is_none() && Instant::now() < deadline {
            let mut pkts = Vec::new();
            if let Some(DtlsEvent::Connected(k)) =
                client.poll(&mut |p| pkts.push(p.to_vec())).unwrap()
            {
                keys = Some(k);
            }
            for p in pkts {
                sock.send(&p).unwrap();
            }
            if let Ok(n) = sock.recv(&mut buf) {
                client.handle_datagram(&buf[..n], Instant::now()).unwrap();
            } else if client.next_timeout().is_some_and(|t| t <= Instant::now()) {
                client.handle_timeout(Instant::now()).unwrap();
            }
        }
        let mut keys = keys.expect("no handshake with s_server in 10 s");
        assert_eq!(keys.profile, SrtpProfile::AeadAes256Gcm);
        assert!(wait_for(&mut out, "Keying material: ", 10), "{out}");
        let _ = child.kill();
        let _ = child.wait();
        let material = parse_keying_material(&out);
        let (mut s_send, mut s_recv) =
            contexts_from_keying_material(keys.profile, &material, Role::Server).unwrap();
        let mut wire = Vec::new();
        keys.send.protect_rtp_packet(&rtp(3), &mut wire).unwrap();
        let n = s_recv.unprotect_rtp(&mut wire).unwrap();
        assert_eq!(wire[..n], rtp(3)[..]);
        s_send.protect_rtp_packet(&rtp(4), &mut wire).unwrap();
        let n = keys.recv.unprotect_rtp(&mut wire).unwrap();
        assert_eq!(wire[..n], rtp(4)[..]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Interop with an independent DTLS-SRTP stack: OpenSSL's `s_client` (what aiortc runs
    /// on) handshakes with our server over loopback UDP and prints its exported keying
    /// material; contexts built from it must talk to ours both ways. Skipped without the
    /// `openssl` command.
    #[test]
    fn openssl_client_interop() {
        use std::net::UdpSocket;
        use std::process::{Command, Stdio};

        if openssl_missing() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("corecast-dtls-c-{}", std::process::id()));
        let (key, cert, der) = openssl_cert(&dir);
        let client_fp = Fingerprint::of_der(&std::fs::read(&der).unwrap());
        let id = Identity::process().unwrap();

        for (name, len) in [
            ("SRTP_AEAD_AES_128_GCM", 56),
            ("SRTP_AES128_CM_SHA1_80", 60),
        ] {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let port = sock.local_addr().unwrap().port();
            let mut child = Command::new("openssl")
                .args([
                    "s_client",
                    "-dtls1_2",
                    "-connect",
                    &format!("127.0.0.1:{port}"),
                ])
                .args(["-use_srtp", name, "-keymatexport", "EXTRACTOR-dtls_srtp"])
                .args(["-keymatexportlen", &len.to_string(), "-cert"])
                .arg(&cert)
                .arg("-key")
                .arg(&key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut server = DtlsSession::new(&id, Role::Server, client_fp, Instant::now());
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut peer = None;
            let mut keys = None;
            let mut buf = [0u8; 2048];
            while keys.is_none() && Instant::now() < deadline {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    peer = Some(from);
                    server.handle_datagram(&buf[..n], Instant::now()).unwrap();
                } else if server.next_timeout().is_some_and(|t| t <= Instant::now()) {
                    server.handle_timeout(Instant::now()).unwrap();
                }
                let mut out = Vec::new();
                if let Some(DtlsEvent::Connected(k)) =
                    server.poll(&mut |p| out.push(p.to_vec())).unwrap()
                {
                    keys = Some(k);
                }
                for p in out {
                    sock.send_to(&p, peer.unwrap()).unwrap();
                }
            }
            let mut keys = keys.unwrap_or_else(|| panic!("{name}: no handshake in 10 s"));
            // EOF on its stdin makes s_client close and exit; keep answering meanwhile.
            drop(child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    let _ = server.handle_datagram(&buf[..n], Instant::now());
                    let _ = server.poll(&mut |p| {
                        let _ = sock.send_to(p, peer.unwrap());
                    });
                }
            }
            let _ = child.kill();
            let out =
                String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
            assert!(
                out.contains(&format!("SRTP Extension negotiated, profile={name}")),
                "{out}"
            );
            let material = parse_keying_material(&out);
            let (mut c_send, mut c_recv) =
                contexts_from_keying_material(keys.profile, &material, Role::Client).unwrap();
            let mut wire = Vec::new();
            keys.send.protect_rtp_packet(&rtp(1), &mut wire).unwrap();
            let n = c_recv.unprotect_rtp(&mut wire).expect(name);
            assert_eq!(wire[..n], rtp(1)[..]);
            c_send.protect_rtp_packet(&rtp(2), &mut wire).unwrap();
            let n = keys.recv.unprotect_rtp(&mut wire).expect(name);
            assert_eq!(wire[..n], rtp(2)[..]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fingerprint_sdp_roundtrip_and_errors() {
        let id = Identity::process().unwrap();
        assert!(Arc::ptr_eq(&id, &Identity::process().unwrap()));
        let sdp = id.fingerprint().to_sdp();
        assert!(sdp.starts_with("sha-256 "));
        assert_eq!(sdp.len(), 8 + 32 * 3 - 1);
        assert_eq!(Fingerprint::parse_sdp(&sdp).unwrap(), id.fingerprint());
        assert_eq!(
            Fingerprint::parse_sdp(&sdp.to_lowercase().replace("sha-256", "SHA-256")).unwrap(),
            id.fingerprint()
        );
        for bad in [
            "",
            "sha-256",
            "sha-1 AA:BB",
            "sha-256 AA:BB",
            "sha-256 ZZ:BB",
            "sha-256 A:BB",
            &format!("{sdp}:00"),
            &sdp[..sdp.len() - 1],
        ] {
            assert!(Fingerprint::parse_sdp(bad).is_err(), "{bad:?}");
        }
        assert!(is_dtls(&[22, 1]) && !is_dtls(&[0, 1]) && !is_dtls(&[0x80]) && !is_dtls(&[]));
    }
}

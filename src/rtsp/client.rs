//! RTSP 1.0 client session for pulling a stream from a camera, sans-IO.
//!
//! One [`Client`] per connection. The driver connects to [`SourceUrl::host`]:[`SourceUrl::port`]
//! (with TLS if asked), then loops:
//!
//! ```text
//! client.poll_transmit(&mut out)      -> write `out` to the socket
//! while let Some(ev) = client.poll_event()  -> act on it (NeedUdpPorts, Rtp, ...)
//! wait for: socket readable | client.poll_timeout() | driver timeout (#timeout=N)
//!   readable -> client.handle_input(&mut buf, now)?   (buf keeps any partial message)
//!   timer    -> client.handle_timeout(now)
//! ```
//!
//! The exchange is OPTIONS → DESCRIBE → SETUP per selected media → PLAY, one request at a time,
//! retrying once with `Authorization` after a 401. While playing, a keepalive goes out every
//! `min(session timeout / 2, 30 s)`. Cameras bend the protocol in known ways; each tolerated
//! bend is a [`Quirk`], reported once per session. Everything else is an error.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::auth::{self, Challenge, Credentials};
use super::message::{self, Message, Method, ParseError, Request, Response};
use super::transport::{self, Transport};
use crate::packet::CopyChunk;
use crate::sdp::{self, Sdp};

/// `User-Agent` on every request.
pub const USER_AGENT: &str = "corecast";
/// Session timeout assumed when the server gives none (RFC 2326 §12.37).
pub const DEFAULT_SESSION_TIMEOUT_SECS: u64 = 60;
/// Upper bound on the keepalive interval, for NAT boxes with short UDP/TCP timeouts.
pub const MAX_KEEPALIVE_INTERVAL_SECS: u64 = 30;
/// Unanswered keepalives kept for CSeq matching; older ones are forgotten.
const MAX_KEEPALIVES_IN_FLIGHT: usize = 4;
/// Longest session id accepted (it is echoed in every request; real ones are under 40 bytes).
const MAX_SESSION_ID_LEN: usize = 256;
/// 401 answers tolerated for one request when each carries a `stale=true` challenge.
const MAX_STALE_RETRIES: u8 = 3;

/// Transport security of the RTSP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// `rtsp://`
    None,
    /// `rtsps://`: TLS, certificate checked.
    Verify,
    /// `rtspx://` (go2rtc): TLS without certificate check, for cameras with self-signed ones.
    NoVerify,
}

/// Which medias of the camera's SDP to set up (`#media=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaFilter {
    #[default]
    All,
    Video,
    Audio,
}

/// Lower transport for RTP (`#transport=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientTransport {
    /// Interleaved on the RTSP connection.
    #[default]
    Tcp,
    /// A UDP port pair per media, bound by the driver (see [`Client::set_udp_ports`]).
    Udp,
}

/// go2rtc-style options after `#` in a source URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOptions {
    /// Ask the camera for its ONVIF audio backchannel (`Require:
    /// www.onvif.org/ver20/backchannel` on DESCRIBE), so its SDP lists the speaker. go2rtc's
    /// rule: on by default, but a URL with any `#` option asks only with `#backchannel=1`.
    /// A camera that refuses the header is asked again without it. The backchannel media is
    /// reported, never set up.
    pub backchannel: bool,
    pub media: MediaFilter,
    /// `#timeout=N`: the driver's read timeout in seconds (the client has no clock of its own).
    pub timeout_secs: Option<u64>,
    pub transport: ClientTransport,
    /// Options this client does not know (for example go2rtc's `#video=copy` meant for other
    /// sources), verbatim, so the caller can log them. They are otherwise ignored.
    pub unknown: Vec<String>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            backchannel: true,
            media: MediaFilter::All,
            timeout_secs: None,
            transport: ClientTransport::Tcp,
            unknown: Vec::new(),
        }
    }
}

/// A parsed pull source URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUrl {
    pub tls: Tls,
    /// Host to connect to; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
    /// `rtsp://host:port/path?query` (`rtsps://` for TLS): no userinfo, no `#` options.
    pub request_url: String,
    /// From the userinfo, percent-decoded.
    pub credentials: Option<Credentials>,
    pub options: SourceOptions,
}

/// Parses `rtsp://`, `rtsps://` or `rtspx://` URLs with optional `user:pass@` (percent-encoded),
/// `[IPv6]` hosts, a default port (554, or 322 with TLS) and go2rtc `#key=value` options.
/// An unencoded `@` in the password is tolerated (the last `@` ends the userinfo).
pub fn parse_source_url(url: &str) -> Result<SourceUrl, ClientError> {
    let err = |what: String| ClientError::Url(what);
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("whitespace or control character in URL".into()));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| err("missing scheme (expected rtsp://)".into()))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "rtsp" => Tls::None,
        "rtsps" => Tls::Verify,
        "rtspx" => Tls::NoVerify,
        other => return Err(err(format!("unsupported scheme {other:?}"))),
    };
    let (main, fragment) = match rest.split_once('#') {
        Some((m, f)) => (m, Some(f)),
        None => (rest, None),
    };
    let authority_end = main.find(['/', '?']).unwrap_or(main.len());
    let (authority, path_query) = main.split_at(authority_end);
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = split_host_port(host_port).ok_or_else(|| err("bad host or port".into()))?;
    let port = match port {
        Some(p) => p,
        None if tls == Tls::None => 554,
        None => 322,
    };
    let credentials = match userinfo {
        None => None,
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let username =
                percent_decode(user).ok_or_else(|| err("bad user name encoding".into()))?;
            let password =
                percent_decode(pass).ok_or_else(|| err("bad password encoding".into()))?;
            (!username.is_empty() || !password.is_empty())
                .then_some(Credentials { username, password })
        }
    };
    let options = parse_options(fragment.unwrap_or(""))?;
    let scheme_out = if tls == Tls::None { "rtsp" } else { "rtsps" };
    let host_out = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    Ok(SourceUrl {
        tls,
        request_url: format!("{scheme_out}://{host_out}:{port}{path_query}"),
        host,
        port,
        credentials,
        options,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` if malformed. Port 0 is refused.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let ok = host.contains(':')
            && host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !ok {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (host, port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let ok = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !ok {
            return None;
        }
        (host, port)
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|&p| p != 0)?)
        }
        Some(_) => return None,
    };
    Some((host.to_owned(), port))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_options(fragment: &str) -> Result<SourceOptions, ClientError> {
    let mut o = SourceOptions::default();
    // go2rtc: any `#` option turns the backchannel request off unless it says 1.
    if !fragment.trim_matches('#').is_empty() {
        o.backchannel = false;
    }
    for part in fragment.split('#').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let bad = || ClientError::Url(format!("bad value in option {part:?}"));
        match key {
            "backchannel" => {
                o.backchannel = match value {
                    "0" | "false" => false,
                    "1" | "true" => true,
                    _ => return Err(bad()),
                }
            }
            "media" => {
                let (mut video, mut audio) = (false, false);
                for m in value.split(',') {
                    match m {
                        "video" => video = true,
                        "audio" => audio = true,
                        _ => return Err(bad()),
                    }
                }
                o.media = match (video, audio) {
                    (true, false) => MediaFilter::Video,
                    (false, true) => MediaFilter::Audio,
                    _ => MediaFilter::All,
                };
            }
            "timeout" => {
                let ok = !value.is_empty()
                    && value.len() <= 9
                    && value.bytes().all(|b| b.is_ascii_digit());
                o.timeout_secs = Some(value.parse().ok().filter(|_| ok).ok_or_else(bad)?);
            }
            "transport" => {
                o.transport = match value.to_ascii_lowercase().as_str() {
                    "tcp" => ClientTransport::Tcp,
                    "udp" => ClientTransport::Udp,
                    _ => return Err(bad()),
                }
            }
            _ => o.unknown.push(part.to_owned()),
        }
    }
    Ok(o)
}

/// Why a pull session failed. The driver adds the stream name and the peer address.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("bad source URL: {0}")]
    Url(String),
    /// A request was answered with an error status (e.g. 404 on DESCRIBE, 461 on SETUP).
    #[error("{method} answered {status} {reason}")]
    Status {
        method: &'static str,
        status: u16,
        reason: String,
    },
    /// 401 without credentials to answer with, or credentials refused.
    #[error("unauthorized: credentials missing or refused")]
    Unauthorized,
    /// A well-formed message that makes no sense here (CSeq mismatch, no usable media, ...).
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("unparseable data from server: {0}")]
    Parse(#[from] ParseError),
}

/// A tolerated deviation from RFC 2326, reported once per session via [`ClientEvent::Quirk`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    /// The PLAY answer has no `RTP-Info` (RFC 2326 §12.33 wants one entry per stream), an
    /// unparseable one, or none for some track we set up; those tracks start without a
    /// known sequence number or timestamp. Xiongmai "H264DVR" firmwares answer PLAY with
    /// only `Range` and `Session`. (A single-track answer whose `url=` matches nothing, as
    /// the GW Security GW4089IP sends, is applied to that track without this note.)
    NoRtpInfo,
    /// A media has no `a=control`: it is set up at the base URL; several such medias are
    /// each set up there, in SDP order, and the answers are matched by that order. RFC 2326
    /// C.1.1 only allows leaving it out for a single-stream presentation; seen on small
    /// embedded servers.
    NoControl,
    /// A media's absolute `a=control` names another host or port than the one we connected
    /// to, usually the camera's LAN address seen through NAT or a port forward (GeoVision
    /// and others build controls from their own address). The control is used as given:
    /// servers route on the path.
    AbsoluteControl,
    /// The SETUP answer's `interleaved=` channels differ from the ones requested; the
    /// server's are used, as FFmpeg does. Seen on small embedded servers that allocate
    /// channels themselves; a pair that clashes with another track's is still an error.
    ChannelMismatch,
    /// A UDP SETUP answer without `server_port` (seen on small embedded servers): we can
    /// receive but have nowhere to send RTCP receiver reports or NAT punches.
    TransportWithoutPorts,
    /// The `Session` header has no (usable) `;timeout=`; 60 s is assumed. Reolink cameras
    /// and Luckfox/Rockchip `rkipc` send a bare session id.
    SessionTimeoutMissing,
    /// `Content-Base` (or `Content-Location`) without a trailing `/`, or not an absolute URL
    /// (then the request URL is used): relative controls are resolved as if the `/` were
    /// there, as FFmpeg does, since that is what these cameras expect. Seen on budget
    /// cameras that echo the request URL as their base.
    BadContentBase,
}

impl Quirk {
    /// One line for logs.
    pub fn description(self) -> &'static str {
        match self {
            Quirk::NoRtpInfo => "PLAY answer lacks usable RTP-Info",
            Quirk::NoControl => "SDP media without a=control",
            Quirk::AbsoluteControl => "absolute a=control names another host",
            Quirk::ChannelMismatch => "server changed the interleaved channels",
            Quirk::TransportWithoutPorts => "UDP SETUP answer without server_port",
            Quirk::SessionTimeoutMissing => "Session without timeout, assuming 60 s",
            Quirk::BadContentBase => "Content-Base without trailing slash or not a URL",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// What the driver must know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// UDP only: bind an even/odd port pair for this media and call
    /// [`Client::set_udp_ports`]; the SETUP for it waits until then.
    NeedUdpPorts {
        media_index: usize,
    },
    /// DESCRIBE answered: the SDP as parsed (all medias) and the media indexes that will be
    /// set up, after the `#media` filter, without the ONVIF backchannel (an `a=sendonly`
    /// audio media) and without non-RTP medias. Application (metadata) medias are kept.
    Described {
        sdp: Sdp,
        selected: Vec<usize>,
    },
    /// PLAY answered.
    Playing {
        tracks: Vec<PlayingTrack>,
    },
    /// Interleaved RTP of a set-up media (index in the SDP).
    Rtp {
        media_index: usize,
        data: Bytes,
    },
    Rtcp {
        media_index: usize,
        data: Bytes,
    },
    Quirk(Quirk),
}

/// Per selected media, what the PLAY exchange told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayingTrack {
    pub media_index: usize,
    /// UDP: the server's RTP/RTCP ports, if it said.
    pub server_ports: Option<(u16, u16)>,
    /// From `RTP-Info`, if given.
    pub seq: Option<u16>,
    pub rtptime: Option<u32>,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Options,
    Describe,
    /// Setting up medias (possibly waiting for UDP ports).
    Setup,
    Play,
    Playing,
    /// TEARDOWN sent, waiting for its answer.
    Teardown,
    /// Done; the driver closes the connection.
    Closed,
    /// An error was returned; the connection is unusable.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Options,
    Describe,
    /// Index into `Client::tracks`.
    Setup(usize),
    Play,
    Keepalive,
    Teardown,
}

/// A request waiting for its answer, kept without `CSeq`/`Authorization` for a retry.
#[derive(Debug)]
struct InFlight {
    cseq: u32,
    step: Step,
    request: Request,
    unauthorized: u8,
}

#[derive(Debug)]
struct Track {
    media_index: usize,
    url: String,
    requested_channels: Option<(u8, u8)>,
    channels: Option<(u8, u8)>,
    server_ports: Option<(u16, u16)>,
}

#[derive(Debug)]
struct AuthState {
    challenge: Challenge,
    /// Requests sent with this challenge's nonce.
    nc: u32,
}

/// One RTSP pull session. See the module docs for the driving loop.
#[derive(Debug)]
pub struct Client {
    url: SourceUrl,
    state: ClientState,
    failure: Option<ClientError>,
    next_cseq: u32,
    in_flight: VecDeque<InFlight>,
    out: Vec<u8>,
    events: VecDeque<ClientEvent>,
    auth: Option<AuthState>,
    use_get_parameter: bool,
    /// The DESCRIBE in flight (or answered) asked for the ONVIF backchannel.
    backchannel_asked: bool,
    /// Content-Base/Location as given (or the request URL), with a `/` appended.
    join_base: String,
    /// Aggregate control URL for PLAY, keepalives and TEARDOWN.
    play_url: String,
    tracks: Vec<Track>,
    next_setup: usize,
    awaiting_ports: bool,
    /// `(media_index, rtp, rtcp)` given by the driver.
    udp_ports: Vec<(usize, u16, u16)>,
    session: Option<String>,
    session_timeout_secs: u64,
    next_keepalive: Option<u64>,
    quirks: u16,
    now: u64,
    /// Set by [`Client::copy_payloads`]: interleaved payloads are copied here.
    copy: Option<CopyChunk>,
}

impl Client {
    /// Starts the session: an OPTIONS is ready for [`Client::poll_transmit`].
    pub fn new(url: SourceUrl, now: u64) -> Client {
        let request_url = url.request_url.clone();
        let mut c = Client {
            join_base: with_slash(&request_url),
            play_url: request_url.clone(),
            url,
            state: ClientState::Options,
            failure: None,
            next_cseq: 1,
            in_flight: VecDeque::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            auth: None,
            use_get_parameter: false,
            backchannel_asked: false,
            tracks: Vec::new(),
            next_setup: 0,
            awaiting_ports: false,
            udp_ports: Vec::new(),
            session: None,
            session_timeout_secs: DEFAULT_SESSION_TIMEOUT_SECS,
            next_keepalive: None,
            quirks: 0,
            now,
            copy: None,
        };
        c.send(Step::Options, Request::new(Method::Options, request_url), 0);
        c
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    /// Whether the camera was described with the ONVIF backchannel (its SDP then lists the
    /// speaker). Some servers then refuse SETUP or PLAY unless the backchannel is set up
    /// too; the driver connects again without asking (go2rtc reconnects likewise).
    pub fn backchannel_asked(&self) -> bool {
        self.backchannel_asked
    }

    pub fn url(&self) -> &SourceUrl {
        &self.url
    }

    /// The session id once the first SETUP is answered.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Appends the bytes to write to the connection (requests, answers to server requests).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out);
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] next has work (keepalive), while playing.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            ClientState::Playing => self.next_keepalive,
            _ => None,
        }
    }

    /// Interleaved payloads (the media over RTSP/TCP) are handed out as copies packed in
    /// this client's own chunks ([`CopyChunk`]) instead of slices of the read buffer: for a
    /// driver that keeps the packets, so its producer need not copy them again
    /// ([`Ingest::copy_payloads`](crate::ingest::Ingest::copy_payloads) off).
    pub fn copy_payloads(&mut self) {
        self.copy = Some(CopyChunk::default());
    }

    /// Consumes every complete message at the front of `buf` (a partial one stays for the
    /// next read). Interleaved payloads are handed out as slices of `buf` without copying,
    /// or as copies with [`Client::copy_payloads`].
    /// After an error the session is [`ClientState::Failed`] and every call returns it again.
    pub fn handle_input(&mut self, buf: &mut BytesMut, now: u64) -> Result<(), ClientError> {
        self.now = now;
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        loop {
            let parsed = match &mut self.copy {
                Some(chunk) => message::parse_copying(buf, chunk),
                None => message::parse(buf),
            };
            let msg = match parsed {
                Ok(Some(msg)) => msg,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(e.into())),
            };
            let result = match msg {
                Message::Interleaved { channel, payload } => {
                    self.on_interleaved(channel, payload);
                    Ok(())
                }
                Message::Request(req) => {
                    self.on_server_request(&req);
                    Ok(())
                }
                Message::Response(resp) => self.on_response(resp),
            };
            if let Err(e) = result {
                return Err(self.fail(e));
            }
        }
    }

    /// Sends a keepalive when one is due.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = now;
        if self.state != ClientState::Playing {
            return;
        }
        let Some(due) = self.next_keepalive else {
            return;
        };
        if now < due {
            return;
        }
        let method = if self.use_get_parameter {
            Method::GetParameter
        } else {
            Method::Options
        };
        let keepalives = self
            .in_flight
            .iter()
            .filter(|f| f.step == Step::Keepalive)
            .count();
        if keepalives >= MAX_KEEPALIVES_IN_FLIGHT {
            if let Some(i) = self
                .in_flight
                .iter()
                .position(|f| f.step == Step::Keepalive)
            {
                self.in_flight.remove(i);
            }
        }
        self.send(
            Step::Keepalive,
            Request::new(method, self.play_url.clone()),
            0,
        );
        self.next_keepalive = Some(now.saturating_add(self.keepalive_interval_us()));
    }

    /// UDP: the local RTP/RTCP ports bound for `media_index`. May be given ahead of the
    /// [`ClientEvent::NeedUdpPorts`] for it; a later call for the same media replaces it.
    pub fn set_udp_ports(&mut self, media_index: usize, rtp: u16, rtcp: u16) {
        self.udp_ports.retain(|&(m, _, _)| m != media_index);
        self.udp_ports.push((media_index, rtp, rtcp));
        let waiting_for_this = self.awaiting_ports
            && self
                .tracks
                .get(self.next_setup)
                .is_some_and(|t| t.media_index == media_index);
        if waiting_for_this && self.state == ClientState::Setup {
            self.awaiting_ports = false;
            self.setup_next();
        }
    }

    /// Ends the session: queues a TEARDOWN if the server gave us a session, else closes at once.
    /// Answers to earlier requests are ignored from now on.
    pub fn teardown(&mut self) {
        if matches!(
            self.state,
            ClientState::Teardown | ClientState::Closed | ClientState::Failed
        ) {
            return;
        }
        self.next_keepalive = None;
        self.awaiting_ports = false;
        if self.session.is_some() {
            self.state = ClientState::Teardown;
            self.send(
                Step::Teardown,
                Request::new(Method::Teardown, self.play_url.clone()),
                0,
            );
        } else {
            self.state = ClientState::Closed;
            self.in_flight.clear();
        }
    }

    fn fail(&mut self, e: ClientError) -> ClientError {
        self.state = ClientState::Failed;
        self.next_keepalive = None;
        self.failure = Some(e.clone());
        e
    }

    fn quirk(&mut self, q: Quirk) {
        if self.quirks & q.bit() == 0 {
            self.quirks |= q.bit();
            self.events.push_back(ClientEvent::Quirk(q));
        }
    }

    fn keepalive_interval_us(&self) -> u64 {
        let secs = (self.session_timeout_secs / 2).clamp(1, MAX_KEEPALIVE_INTERVAL_SECS);
        secs * 1_000_000
    }

    /// Writes `request` with CSeq, User-Agent, Session and Authorization, and remembers it.
    fn send(&mut self, step: Step, request: Request, unauthorized: u8) {
        let cseq = self.next_cseq;
        self.next_cseq = self.next_cseq.wrapping_add(1).max(1);
        let mut wire = Request::new(request.method.clone(), request.uri.clone())
            .with_header("CSeq", cseq.to_string())
            .with_header("User-Agent", USER_AGENT);
        for (k, v) in request.headers.iter() {
            wire.headers.append(k, v);
        }
        if let Some(session) = &self.session {
            wire.headers.insert("Session", session.clone());
        }
        if let (Some(a), Some(creds)) = (&mut self.auth, &self.url.credentials) {
            a.nc = a.nc.wrapping_add(1);
            let nonce = match &a.challenge {
                Challenge::Digest(d) => d.nonce.as_str(),
                Challenge::Basic { .. } => "",
            };
            // Not a secret, only needs to vary (RFC 2617 §3.2.2).
            let seed = format!("{}:{cseq}:{nonce}", self.now);
            let cnonce = &auth::md5_hex(seed.as_bytes())[..16];
            let value = auth::authorization(
                &a.challenge,
                creds,
                request.method.as_str(),
                &request.uri,
                a.nc,
                cnonce,
            );
            wire.headers.insert("Authorization", value);
        }
        wire.body = request.body.clone();
        wire.write_to(&mut self.out);
        self.in_flight.push_back(InFlight {
            cseq,
            step,
            request,
            unauthorized,
        });
    }

    fn on_server_request(&mut self, req: &Request) {
        if self.state == ClientState::Closed {
            return;
        }
        // We implement no server-to-client methods (RFC 2326 allows 501 for all of them).
        let resp = match req.cseq() {
            Some(cseq) => Response::new(501).with_header("CSeq", cseq.to_string()),
            None => Response::new(400),
        };
        resp.write_to(&mut self.out);
    }

    fn on_interleaved(&mut self, channel: u8, data: Bytes) {
        if matches!(self.state, ClientState::Closed | ClientState::Failed) {
            return;
        }
        for t in &self.tracks {
            match t.channels {
                Some((rtp, _)) if rtp == channel => {
                    let media_index = t.media_index;
                    self.events
                        .push_back(ClientEvent::Rtp { media_index, data });
                    return;
                }
                Some((_, rtcp)) if rtcp == channel => {
                    let media_index = t.media_index;
                    self.events
                        .push_back(ClientEvent::Rtcp { media_index, data });
                    return;
                }
                _ => {}
            }
        }
        // A channel we did not set up (or set up for a media we dropped): ignore.
    }

    fn on_response(&mut self, resp: Response) -> Result<(), ClientError> {
        let closing = matches!(self.state, ClientState::Teardown | ClientState::Closed);
        let Some(cseq) = resp.cseq() else {
            if closing {
                return Ok(());
            }
            return Err(ClientError::Protocol(format!(
                "response {} {} without CSeq",
                resp.status, resp.reason
            )));
        };
        let Some(pos) = self.in_flight.iter().position(|f| f.cseq == cseq) else {
            // While playing, a late answer to a keepalive we stopped waiting for is harmless.
            let sent_earlier = cseq >= 1 && cseq < self.next_cseq;
            if closing || (self.state == ClientState::Playing && sent_earlier) {
                return Ok(());
            }
            return Err(ClientError::Protocol(format!(
                "response CSeq {cseq} matches no request"
            )));
        };
        let Some(flight) = self.in_flight.remove(pos) else {
            return Ok(()); // `pos` was just found, so this is unreachable.
        };
        if closing {
            if flight.step == Step::Teardown {
                self.state = ClientState::Closed;
                self.in_flight.clear();
            }
            return Ok(());
        }
        if resp.status == 401 {
            return self.on_unauthorized(flight, &resp);
        }
        let ok = (200..300).contains(&resp.status);
        let method = method_name(&flight.request.method);
        let status_error = || ClientError::Status {
            method,
            status: resp.status,
            reason: resp.reason.clone(),
        };
        match flight.step {
            Step::Keepalive => {
                if ok {
                    return Ok(());
                }
                match resp.status {
                    454 => Err(status_error()),
                    405 | 501 | 551 if flight.request.method == Method::GetParameter => {
                        self.use_get_parameter = false;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            Step::Teardown => Ok(()),
            // A camera without the ONVIF backchannel may refuse the `Require` header (551,
            // or anything else): ask again without it, as go2rtc does.
            Step::Describe if !ok && flight.request.headers.get("Require").is_some() => {
                let req = self.describe_request(false);
                self.send(Step::Describe, req, 0);
                Ok(())
            }
            _ if !ok => Err(status_error()),
            Step::Options => {
                self.use_get_parameter = resp
                    .headers
                    .get_all("Public")
                    .flat_map(|v| v.split(','))
                    .any(|m| m.trim() == "GET_PARAMETER");
                self.state = ClientState::Describe;
                let req = self.describe_request(self.url.options.backchannel);
                self.send(Step::Describe, req, 0);
                Ok(())
            }
            Step::Describe => self.on_describe(&resp),
            Step::Setup(i) => self.on_setup(i, &resp),
            Step::Play => {
                self.on_play(&resp);
                Ok(())
            }
        }
    }

    fn describe_request(&mut self, backchannel: bool) -> Request {
        self.backchannel_asked = backchannel;
        let req = Request::new(Method::Describe, self.url.request_url.clone())
            .with_header("Accept", "application/sdp");
        if backchannel {
            req.with_header("Require", BACKCHANNEL_REQUIRE)
        } else {
            req
        }
    }

    fn on_unauthorized(&mut self, flight: InFlight, resp: &Response) -> Result<(), ClientError> {
        if self.url.credentials.is_none() {
            return Err(ClientError::Unauthorized);
        }
        let challenges = auth::parse_challenges(resp.headers.get_all("WWW-Authenticate"));
        let Some(best) = challenges.into_iter().next() else {
            return Err(ClientError::Unauthorized);
        };
        // One retry per request; a `stale` nonce (right password, expired nonce) may repeat.
        let retry = flight.unauthorized == 0
            || (best.is_stale() && flight.unauthorized < MAX_STALE_RETRIES);
        if !retry {
            return Err(ClientError::Unauthorized);
        }
        self.auth = Some(AuthState {
            challenge: best,
            nc: 0,
        });
        self.send(flight.step, flight.request, flight.unauthorized + 1);
        Ok(())
    }

    fn on_describe(&mut self, resp: &Response) -> Result<(), ClientError> {
        let protocol = |s: String| Err(ClientError::Protocol(s));
        if let Some(ct) = resp.headers.get("Content-Type") {
            let mime = ct.split(';').next().unwrap_or("").trim();
            if !mime.eq_ignore_ascii_case("application/sdp") {
                return protocol(format!("DESCRIBE answer is {ct:?}, not application/sdp"));
            }
        }
        if resp.body.is_empty() {
            return protocol("DESCRIBE answer has no SDP".into());
        }
        let Ok(text) = std::str::from_utf8(&resp.body) else {
            return protocol("DESCRIBE answer's SDP is not UTF-8".into());
        };
        let sdp = match sdp::parse(text) {
            Ok(sdp) => sdp,
            Err(e) => return protocol(format!("DESCRIBE answer has a bad SDP: {e}")),
        };

        let given_base = resp
            .headers
            .get("Content-Base")
            .or_else(|| resp.headers.get("Content-Location"))
            .map(str::trim);
        let base = match given_base {
            Some(b) if is_absolute(b) && is_request_uri(b) => {
                if !b.ends_with('/') {
                    self.quirk(Quirk::BadContentBase);
                }
                b.to_owned()
            }
            Some(_) => {
                self.quirk(Quirk::BadContentBase);
                self.url.request_url.clone()
            }
            None => self.url.request_url.clone(),
        };
        self.join_base = with_slash(&base);
        self.play_url = match sdp.session_control.as_deref().map(str::trim) {
            Some(c) if !c.is_empty() && c != "*" => {
                if !is_request_uri(c) {
                    return protocol(format!("unusable session a=control {c:?}"));
                }
                resolve(&self.join_base, c)
            }
            _ => base.clone(),
        };

        let filter = self.url.options.media;
        let selected: Vec<usize> = sdp
            .medias
            .iter()
            .enumerate()
            .filter(|(_, m)| m.proto.to_ascii_uppercase().contains("RTP"))
            .filter(|(_, m)| !is_backchannel(m))
            .filter(|(_, m)| match filter {
                MediaFilter::All => true,
                MediaFilter::Video => m.kind.eq_ignore_ascii_case("video"),
                MediaFilter::Audio => m.kind.eq_ignore_ascii_case("audio"),
            })
            .map(|(i, _)| i)
            .collect();
        if selected.is_empty() {
            return protocol(format!(
                "no usable media among the {} in the SDP",
                sdp.medias.len()
            ));
        }
        let our_authority = authority(&self.url.request_url);
        for &i in &selected {
            let url = match sdp.medias[i].control.as_deref().map(str::trim) {
                Some(c) if !c.is_empty() && c != "*" => {
                    if !is_request_uri(c) {
                        return protocol(format!("unusable a=control {c:?}"));
                    }
                    if is_absolute(c) && authority(c) != our_authority {
                        self.quirk(Quirk::AbsoluteControl);
                    }
                    resolve(&self.join_base, c)
                }
                _ => {
                    self.quirk(Quirk::NoControl);
                    base.clone()
                }
            };
            self.tracks.push(Track {
                media_index: i,
                url,
                requested_channels: None,
                channels: None,
                server_ports: None,
            });
        }
        self.events
            .push_back(ClientEvent::Described { sdp, selected });
        self.state = ClientState::Setup;
        self.setup_next();
        Ok(())
    }

    /// Sends the next SETUP (or PLAY once all are done), or asks for UDP ports.
    fn setup_next(&mut self) {
        let Some(track) = self.tracks.get(self.next_setup) else {
            self.state = ClientState::Play;
            let req = Request::new(Method::Play, self.play_url.clone())
                .with_header("Range", "npt=0.000-");
            self.send(Step::Play, req, 0);
            return;
        };
        let media_index = track.media_index;
        let url = track.url.clone();
        let transport = match self.url.options.transport {
            ClientTransport::Tcp => {
                let pair = self.free_channel_pair();
                self.tracks[self.next_setup].requested_channels = Some(pair);
                Transport {
                    profile: "RTP/AVP/TCP".into(),
                    tcp: true,
                    interleaved: Some(pair),
                    ..Transport::default()
                }
            }
            ClientTransport::Udp => {
                let ports = self
                    .udp_ports
                    .iter()
                    .find(|&&(m, _, _)| m == media_index)
                    .map(|&(_, rtp, rtcp)| (rtp, rtcp));
                let Some(ports) = ports else {
                    if !self.awaiting_ports {
                        self.awaiting_ports = true;
                        self.events
                            .push_back(ClientEvent::NeedUdpPorts { media_index });
                    }
                    return;
                };
                Transport {
                    profile: "RTP/AVP".into(),
                    client_port: Some(ports),
                    ..Transport::default()
                }
            }
        };
        let req = Request::new(Method::Setup, url).with_header("Transport", transport.to_string());
        self.send(Step::Setup(self.next_setup), req, 0);
    }

    /// Lowest even channel pair no set-up track uses (0-1, 2-3, ... unless a server moved one).
    fn free_channel_pair(&self) -> (u8, u8) {
        let used = |c: u8| {
            self.tracks
                .iter()
                .filter_map(|t| t.channels)
                .any(|(a, b)| a == c || b == c)
        };
        (0..=127u8)
            .map(|n| (2 * n, 2 * n + 1))
            .find(|&(a, b)| !used(a) && !used(b))
            .unwrap_or((254, 255)) // Unreachable: at most 32 medias, 128 pairs.
    }

    fn on_setup(&mut self, i: usize, resp: &Response) -> Result<(), ClientError> {
        let protocol = |s: String| Err(ClientError::Protocol(s));
        match resp.headers.get("Session") {
            Some(v) => {
                let Some((id, timeout)) = parse_session(v) else {
                    return protocol(format!("bad Session header {v:?}"));
                };
                match &self.session {
                    Some(existing) if *existing != id => {
                        return protocol(format!("session id changed from {existing:?} to {id:?}"));
                    }
                    Some(_) => {}
                    None => {
                        self.session = Some(id);
                        self.session_timeout_secs = match timeout {
                            Some(t) => t,
                            None => {
                                self.quirk(Quirk::SessionTimeoutMissing);
                                DEFAULT_SESSION_TIMEOUT_SECS
                            }
                        };
                    }
                }
            }
            None if self.session.is_none() => {
                return protocol("SETUP answer without Session".into());
            }
            None => {}
        }
        let Some(value) = resp.headers.get("Transport") else {
            return protocol("SETUP answer without Transport".into());
        };
        let t = match transport::parse(value) {
            Ok(mut all) if !all.is_empty() => all.swap_remove(0),
            Ok(_) => return protocol("SETUP answer with empty Transport".into()),
            Err(e) => return protocol(format!("SETUP answer has a bad Transport: {e}")),
        };
        if t.multicast {
            return protocol(format!("asked for unicast, server answered {value:?}"));
        }
        match self.url.options.transport {
            ClientTransport::Tcp => {
                let Some((rtp, rtcp)) = t.interleaved else {
                    return protocol(format!(
                        "asked for interleaved TCP, server answered {value:?}"
                    ));
                };
                if rtp == rtcp {
                    return protocol(format!("RTP and RTCP on one channel in {value:?}"));
                }
                let clash = self.tracks.iter().enumerate().any(|(j, o)| {
                    j != i
                        && o.channels
                            .is_some_and(|(a, b)| a == rtp || a == rtcp || b == rtp || b == rtcp)
                });
                if clash {
                    return protocol(format!(
                        "channels {rtp}-{rtcp} already used by another track"
                    ));
                }
                let Some(track) = self.tracks.get(i) else {
                    return protocol("SETUP answer for an unknown track".into());
                };
                if track.requested_channels != Some((rtp, rtcp)) {
                    self.quirk(Quirk::ChannelMismatch);
                }
                if let Some(track) = self.tracks.get_mut(i) {
                    track.channels = Some((rtp, rtcp));
                }
            }
            ClientTransport::Udp => {
                if t.tcp {
                    return protocol(format!("asked for UDP, server answered {value:?}"));
                }
                if t.server_port.is_none() {
                    self.quirk(Quirk::TransportWithoutPorts);
                }
                if let Some(track) = self.tracks.get_mut(i) {
                    track.server_ports = t.server_port;
                }
            }
        }
        self.next_setup = i + 1;
        self.setup_next();
        Ok(())
    }

    fn on_play(&mut self, resp: &Response) {
        let mut infos: Vec<(Option<u16>, Option<u32>)> = vec![(None, None); self.tracks.len()];
        let mut assigned = vec![false; self.tracks.len()];
        let mut usable = true;
        match resp.headers.get("RTP-Info").map(parse_rtp_info) {
            None | Some(None) => usable = false,
            Some(Some(entries)) => {
                for entry in entries {
                    let found = self.track_for_rtp_info_url(&entry.url, &assigned);
                    if let Some(k) = found {
                        assigned[k] = true;
                        infos[k] = (entry.seq, entry.rtptime);
                    }
                }
            }
        }
        if !usable || infos.iter().any(|&(s, t)| s.is_none() && t.is_none()) {
            self.quirk(Quirk::NoRtpInfo);
        }
        let tracks = self
            .tracks
            .iter()
            .zip(infos)
            .map(|(t, (seq, rtptime))| PlayingTrack {
                media_index: t.media_index,
                server_ports: t.server_ports,
                seq,
                rtptime,
            })
            .collect();
        self.events.push_back(ClientEvent::Playing { tracks });
        self.state = ClientState::Playing;
        self.next_keepalive = Some(self.now.saturating_add(self.keepalive_interval_us()));
    }

    /// The first not yet assigned track whose URL this `RTP-Info` url names: the same URL,
    /// the same after resolving a relative one, or one ending in the other at a path
    /// boundary. A lone track takes any url (the GW Security GW4089IP sends a wrong one).
    fn track_for_rtp_info_url(&self, url: &str, assigned: &[bool]) -> Option<usize> {
        let url = url.trim_end_matches('/');
        let resolved = resolve(&self.join_base, url);
        let resolved = resolved.trim_end_matches('/');
        let candidates = || {
            self.tracks
                .iter()
                .enumerate()
                .filter(|(k, _)| !assigned[*k])
                .map(|(k, t)| (k, t.url.trim_end_matches('/')))
        };
        candidates()
            .find(|(_, t)| *t == url || *t == resolved)
            .or_else(|| {
                candidates().find(|(_, t)| ends_at_boundary(t, url) || ends_at_boundary(url, t))
            })
            .map(|(k, _)| k)
            .or_else(|| (self.tracks.len() == 1 && !assigned[0]).then_some(0))
    }
}

fn method_name(m: &Method) -> &'static str {
    match m {
        Method::Options => "OPTIONS",
        Method::Describe => "DESCRIBE",
        Method::Setup => "SETUP",
        Method::Play => "PLAY",
        Method::Teardown => "TEARDOWN",
        Method::GetParameter => "GET_PARAMETER",
        _ => "request",
    }
}

/// The ONVIF option that makes a camera describe its speaker.
const BACKCHANNEL_REQUIRE: &str = "www.onvif.org/ver20/backchannel";

/// The ONVIF audio backchannel as a camera describes it: audio the camera *receives*.
pub fn is_backchannel(m: &sdp::Media) -> bool {
    m.kind.eq_ignore_ascii_case("audio") && m.lines.iter().any(|l| l.trim() == "a=sendonly")
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    }
}

/// Can this go on a request line as is (no whitespace or control characters)?
fn is_request_uri(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `scheme://...` with a valid scheme.
fn is_absolute(url: &str) -> bool {
    let Some((scheme, _)) = url.split_once("://") else {
        return false;
    };
    let mut b = scheme.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Lowercase host and port (default by scheme) of an absolute URL.
fn authority(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    let host_port = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    let (host, port) = split_host_port(host_port)?;
    let default = if scheme.eq_ignore_ascii_case("rtsps") {
        322
    } else {
        554
    };
    Some((host.to_ascii_lowercase(), port.unwrap_or(default)))
}

/// A control URL against the base (which ends in `/`): absolute as is, `/path` against the
/// base's origin, anything else appended (FFmpeg's behaviour, which is what cameras
/// with `Content-Base: .../realmonitor?channel=1&subtype=0/` rely on).
fn resolve(join_base: &str, control: &str) -> String {
    if is_absolute(control) {
        return control.to_owned();
    }
    if control.starts_with('/') {
        if let Some((scheme, rest)) = join_base.split_once("://") {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            return format!("{scheme}://{}{control}", &rest[..end]);
        }
    }
    format!("{join_base}{control}")
}

fn ends_at_boundary(url: &str, tail: &str) -> bool {
    if tail.is_empty() || !url.ends_with(tail) {
        return false;
    }
    let head = &url[..url.len() - tail.len()];
    head.is_empty() || head.ends_with('/') || tail.starts_with(['/', '?'])
}

/// `id[;timeout=N][;other]` → `(id, timeout)`; a zero or unparseable timeout is `None`.
fn parse_session(v: &str) -> Option<(String, Option<u64>)> {
    let mut parts = v.split(';');
    let id = parts.next()?.trim();
    let id_ok = !id.is_empty()
        && id.len() <= MAX_SESSION_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'"'));
    if !id_ok {
        return None;
    }
    let mut timeout = None;
    for p in parts {
        if let Some((k, val)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("timeout") {
                let val = val.trim();
                let digits =
                    !val.is_empty() && val.len() <= 9 && val.bytes().all(|b| b.is_ascii_digit());
                timeout = val.parse::<u64>().ok().filter(|&t| digits && t > 0);
            }
        }
    }
    Some((id.to_owned(), timeout))
}

#[derive(Debug, PartialEq, Eq)]
struct RtpInfoEntry {
    url: String,
    seq: Option<u16>,
    rtptime: Option<u32>,
}

/// RFC 2326 §12.33: `url=U;seq=N;rtptime=T, url=...`. Commas inside a URL are tolerated (a
/// piece not starting with `url=` continues the previous one), as are empty parameters
/// (`...;rtptime=0;`). `None` if an entry lacks `url=` or a number does not parse.
fn parse_rtp_info(v: &str) -> Option<Vec<RtpInfoEntry>> {
    let mut raw: Vec<String> = Vec::new();
    for piece in v.split(',') {
        let starts_entry = piece
            .trim_start()
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("url="));
        match raw.last_mut() {
            Some(last) if !starts_entry => {
                last.push(',');
                last.push_str(piece);
            }
            _ => raw.push(piece.trim_start().to_owned()),
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    for entry in raw {
        // The URL may itself contain ';' only in theory; cameras don't, so split plainly.
        let mut params = entry.split(';').map(str::trim);
        let first = params.next()?;
        let url = first
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("url="))
            .and(first.get(4..))
            .filter(|u| !u.is_empty())?;
        let mut e = RtpInfoEntry {
            url: url.trim_matches('"').to_owned(),
            seq: None,
            rtptime: None,
        };
        for p in params.filter(|p| !p.is_empty()) {
            let (k, val) = p.split_once('=')?;
            let digits = !val.is_empty() && val.bytes().all(|b| b.is_ascii_digit());
            match k.trim().to_ascii_lowercase().as_str() {
                "seq" => e.seq = Some(val.parse().ok().filter(|_| digits)?),
                "rtptime" => e.rtptime = Some(val.parse().ok().filter(|_| digits)?),
                _ => {}
            }
        }
        out.push(e);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtsp::auth::ServerAuth;

    const T0: u64 = 1_000_000_000;
    const SEC: u64 = 1_000_000;

    const FIXTURES: &[(&str, &str)] = &[
        (
            "hikvision_digest_tcp",
            include_str!("fixtures/hikvision_digest_tcp.txt"),
        ),
        ("dahua_tcp", include_str!("fixtures/dahua_tcp.txt")),
        ("gstreamer_tcp", include_str!("fixtures/gstreamer_tcp.txt")),
        ("mediamtx_udp", include_str!("fixtures/mediamtx_udp.txt")),
        (
            "reolink_no_session_timeout",
            include_str!("fixtures/reolink_no_session_timeout.txt"),
        ),
        (
            "xiongmai_no_rtp_info",
            include_str!("fixtures/xiongmai_no_rtp_info.txt"),
        ),
        ("no_control", include_str!("fixtures/no_control.txt")),
        (
            "geovision_nat_absolute_control",
            include_str!("fixtures/geovision_nat_absolute_control.txt"),
        ),
        (
            "channel_mismatch",
            include_str!("fixtures/channel_mismatch.txt"),
        ),
        (
            "udp_without_server_port",
            include_str!("fixtures/udp_without_server_port.txt"),
        ),
        (
            "bad_content_base",
            include_str!("fixtures/bad_content_base.txt"),
        ),
    ];

    #[derive(Debug, Clone)]
    enum FStep {
        /// The client's next request: method and URI.
        Expect(String, String),
        /// Bytes from the server.
        Send(Vec<u8>),
    }

    /// See `fixtures/README.md` for the format.
    fn parse_fixture(text: &str) -> Vec<FStep> {
        let mut steps = Vec::new();
        let mut server: Option<Vec<&str>> = None;
        let flush = |server: &mut Option<Vec<&str>>, steps: &mut Vec<FStep>| {
            if let Some(lines) = server.take() {
                steps.push(FStep::Send(server_message(&lines)));
            }
        };
        for line in text.lines() {
            if let Some(req) = line.strip_prefix("C: ") {
                flush(&mut server, &mut steps);
                let (m, u) = req.split_once(' ').expect("C: METHOD URI");
                steps.push(FStep::Expect(m.into(), u.into()));
            } else if line == "S:" {
                flush(&mut server, &mut steps);
                server = Some(Vec::new());
            } else if let Some(lines) = &mut server {
                lines.push(line);
            } else {
                assert!(
                    line.starts_with('#') || line.is_empty(),
                    "stray line {line:?}"
                );
            }
        }
        flush(&mut server, &mut steps);
        steps
    }

    /// Joins lines with CRLF and checks `Content-Length` against the body.
    fn server_message(lines: &[&str]) -> Vec<u8> {
        let mut lines = lines.to_vec();
        while lines.last() == Some(&"") {
            lines.pop();
        }
        let (head, body) = match lines.iter().position(|l| l.is_empty()) {
            Some(i) => (&lines[..i], &lines[i + 1..]),
            None => (&lines[..], &[][..]),
        };
        let mut wire = head.join("\r\n");
        wire.push_str("\r\n\r\n");
        let body = if body.is_empty() {
            String::new()
        } else {
            format!("{}\r\n", body.join("\r\n"))
        };
        let declared = head
            .iter()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map(|n| n.parse::<usize>().expect("numeric Content-Length"));
        assert_eq!(
            declared.unwrap_or(0),
            body.len(),
            "Content-Length in {head:?}"
        );
        wire.push_str(&body);
        wire.into_bytes()
    }

    fn fixture(name: &str) -> Vec<FStep> {
        let (_, text) = FIXTURES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no fixture {name}"));
        parse_fixture(text)
    }

    /// An ad-hoc server message: LF to CRLF, `Content-Length` added for a body.
    fn msg(head: &str, body: &str) -> Vec<u8> {
        let mut s = head.trim_end().replace('\n', "\r\n");
        if !body.is_empty() {
            let body = body.replace('\n', "\r\n");
            s.push_str(&format!("\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        } else {
            s.push_str("\r\n\r\n");
        }
        s.into_bytes()
    }

    fn frame(channel: u8, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(payload.len()).expect("small payload");
        let mut v = message::write_interleaved_header(channel, len).to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// A client plus everything it did, with UDP ports handed out as asked.
    struct Run {
        client: Client,
        pending: VecDeque<Request>,
        requests: Vec<Request>,
        answers: Vec<Response>,
        events: Vec<ClientEvent>,
        udp_next: u16,
        now: u64,
    }

    impl Run {
        fn new(url: &str) -> Run {
            let url = parse_source_url(url).expect("test URL");
            let mut run = Run {
                client: Client::new(url, T0),
                pending: VecDeque::new(),
                requests: Vec::new(),
                answers: Vec::new(),
                events: Vec::new(),
                udp_next: 50000,
                now: T0,
            };
            run.pump();
            run
        }

        fn pump(&mut self) {
            loop {
                let mut out = Vec::new();
                self.client.poll_transmit(&mut out);
                let mut progressed = !out.is_empty();
                let mut buf = BytesMut::from(&out[..]);
                while let Some(m) = message::parse(&mut buf).expect("client output parses") {
                    match m {
                        Message::Request(r) => {
                            self.pending.push_back(r.clone());
                            self.requests.push(r);
                        }
                        Message::Response(r) => self.answers.push(r),
                        Message::Interleaved { .. } => panic!("client sent interleaved data"),
                    }
                }
                assert!(buf.is_empty(), "client wrote a partial message");
                while let Some(ev) = self.client.poll_event() {
                    progressed = true;
                    if let ClientEvent::NeedUdpPorts { media_index } = ev {
                        self.client
                            .set_udp_ports(media_index, self.udp_next, self.udp_next + 1);
                        self.udp_next += 2;
                    }
                    self.events.push(ev);
                }
                if !progressed {
                    break;
                }
            }
        }

        fn feed(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
            let mut buf = BytesMut::from(bytes);
            let r = self.client.handle_input(&mut buf, self.now);
            if r.is_ok() {
                assert!(buf.is_empty(), "whole messages are consumed");
            }
            self.pump();
            r
        }

        fn timeout(&mut self, now: u64) {
            self.now = now;
            self.client.handle_timeout(now);
            self.pump();
        }

        fn expect(&mut self, method: &str, uri: &str) -> Request {
            let r = self
                .pending
                .pop_front()
                .unwrap_or_else(|| panic!("no request, expected {method} {uri}"));
            assert_eq!((r.method.as_str(), r.uri.as_str()), (method, uri));
            r
        }

        /// A whole exchange: afterwards no request may be left unanswered.
        fn play(&mut self, steps: &[FStep]) -> Result<(), ClientError> {
            self.play_prefix(steps)?;
            assert!(self.pending.is_empty(), "unexpected {:?}", self.pending);
            Ok(())
        }

        fn play_prefix(&mut self, steps: &[FStep]) -> Result<(), ClientError> {
            for s in steps {
                match s {
                    FStep::Expect(m, u) => {
                        self.expect(m, u);
                    }
                    FStep::Send(b) => self.feed(b)?,
                }
            }
            Ok(())
        }

        fn quirks(&self) -> Vec<Quirk> {
            self.events
                .iter()
                .filter_map(|e| match e {
                    ClientEvent::Quirk(q) => Some(*q),
                    _ => None,
                })
                .collect()
        }

        fn selected(&self) -> Vec<usize> {
            self.events
                .iter()
                .find_map(|e| match e {
                    ClientEvent::Described { selected, .. } => Some(selected.clone()),
                    _ => None,
                })
                .expect("Described")
        }

        fn playing(&self) -> Vec<PlayingTrack> {
            self.events
                .iter()
                .find_map(|e| match e {
                    ClientEvent::Playing { tracks } => Some(tracks.clone()),
                    _ => None,
                })
                .expect("Playing")
        }

        fn media_events(&self) -> Vec<(bool, usize, Bytes)> {
            self.events
                .iter()
                .filter_map(|e| match e {
                    ClientEvent::Rtp { media_index, data } => {
                        Some((true, *media_index, data.clone()))
                    }
                    ClientEvent::Rtcp { media_index, data } => {
                        Some((false, *media_index, data.clone()))
                    }
                    _ => None,
                })
                .collect()
        }
    }

    fn track(media_index: usize, seq: Option<u16>, rtptime: Option<u32>) -> PlayingTrack {
        PlayingTrack {
            media_index,
            server_ports: None,
            seq,
            rtptime,
        }
    }

    const HIK_URL: &str = "rtsp://admin:12345abc@192.168.1.64/Streaming/Channels/101";

    fn hik_server() -> ServerAuth {
        ServerAuth {
            realm: "IP Camera(C2358)".into(),
            username: "admin".into(),
            password: "12345abc".into(),
            nonce: "b8c4dcd2e3a6e8de7c2a0b6ce9f4a1d7".into(),
        }
    }

    // ---- source URLs ----

    #[test]
    fn source_url_forms() {
        let u = parse_source_url("rtsp://192.168.1.64/Streaming/Channels/101").unwrap();
        assert_eq!(u.tls, Tls::None);
        assert_eq!((u.host.as_str(), u.port), ("192.168.1.64", 554));
        assert_eq!(
            u.request_url,
            "rtsp://192.168.1.64:554/Streaming/Channels/101"
        );
        assert_eq!(u.credentials, None);
        assert_eq!(u.options, SourceOptions::default());
        assert!(u.options.backchannel);

        let u = parse_source_url("rtsps://cam.local/live?x=1").unwrap();
        assert_eq!((u.tls, u.port), (Tls::Verify, 322));
        assert_eq!(u.request_url, "rtsps://cam.local:322/live?x=1");
        let u = parse_source_url("RTSPX://cam.local:7441/abc").unwrap();
        assert_eq!((u.tls, u.port), (Tls::NoVerify, 7441));
        assert_eq!(u.request_url, "rtsps://cam.local:7441/abc");

        // Percent-encoded userinfo; an unencoded '@' in the password.
        let u = parse_source_url("rtsp://admin:p%40ss%3Aw%2Fd@10.0.0.2:8554/live").unwrap();
        let c = u.credentials.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss:w/d")
        );
        let u = parse_source_url("rtsp://admin:p@ss@10.0.0.2/live").unwrap();
        assert_eq!(u.credentials.unwrap().password, "p@ss");
        assert_eq!(u.host, "10.0.0.2");
        let u = parse_source_url("rtsp://admin@10.0.0.2/").unwrap();
        assert_eq!(u.credentials.unwrap().password, "");
        assert_eq!(u.request_url, "rtsp://10.0.0.2:554/");
        assert_eq!(
            parse_source_url("rtsp://@10.0.0.2/").unwrap().credentials,
            None
        );

        // IPv6.
        let u = parse_source_url("rtsp://[fe80::1]:8554/cam").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("fe80::1", 8554));
        assert_eq!(u.request_url, "rtsp://[fe80::1]:8554/cam");
        let u = parse_source_url("rtsp://u:p@[::1]/cam").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 554));

        // No path at all; query without path.
        assert_eq!(
            parse_source_url("rtsp://h").unwrap().request_url,
            "rtsp://h:554"
        );
        assert_eq!(
            parse_source_url("rtsp://h:1?a=b").unwrap().request_url,
            "rtsp://h:1?a=b"
        );
        // The Xiongmai path with '=' and '&'.
        let u = parse_source_url(
            "rtsp://192.168.1.10:554/user=admin&password=&channel=1&stream=0.sdp?real_stream",
        )
        .unwrap();
        assert_eq!(
            u.request_url,
            "rtsp://192.168.1.10:554/user=admin&password=&channel=1&stream=0.sdp?real_stream"
        );
    }

    #[test]
    fn source_url_options() {
        let u = parse_source_url(
            "rtsp://u:p@cam/stream#backchannel=0#media=video#timeout=30#transport=udp#video=copy#weird",
        )
        .unwrap();
        assert_eq!(u.request_url, "rtsp://cam:554/stream");
        let o = &u.options;
        assert!(!o.backchannel);
        assert_eq!(o.media, MediaFilter::Video);
        assert_eq!(o.timeout_secs, Some(30));
        assert_eq!(o.transport, ClientTransport::Udp);
        assert_eq!(o.unknown, vec!["video=copy", "weird"]);
        let o = parse_source_url("rtsp://cam/#media=audio##transport=TCP#backchannel=1")
            .unwrap()
            .options;
        assert_eq!(o.media, MediaFilter::Audio);
        assert_eq!(o.transport, ClientTransport::Tcp);
        assert!(o.backchannel);
        let o = parse_source_url("rtsp://cam/#media=video,audio")
            .unwrap()
            .options;
        assert_eq!(o.media, MediaFilter::All);
    }

    #[test]
    fn source_url_errors() {
        for bad in [
            "",
            "cam/stream",
            "http://cam/stream",
            "rtsp://",
            "rtsp:///path",
            "rtsp://:554/path",
            "rtsp://cam:0/",
            "rtsp://cam:65536/",
            "rtsp://cam:12ab/",
            "rtsp://cam:554:1/",
            "rtsp://[::1/",
            "rtsp://[zz::1]/",
            "rtsp://[::1]x/",
            "rtsp://ca m/",
            "rtsp://cam/a b",
            "rtsp://cam/\n",
            "rtsp://u:%zz@cam/",
            "rtsp://u:%ff@cam/",
            "rtsp://u:%4@cam/",
            "rtsp://ca%41m/",
            "rtsp://cam/#timeout=abc",
            "rtsp://cam/#timeout=",
            "rtsp://cam/#timeout=99999999999",
            "rtsp://cam/#media=data",
            "rtsp://cam/#transport=ws",
            "rtsp://cam/#backchannel=maybe",
        ] {
            let e = parse_source_url(bad).expect_err(bad);
            assert!(matches!(e, ClientError::Url(_)), "{bad}: {e:?}");
            // Errors never echo the password.
            assert!(!e.to_string().contains("%zz"), "{e}");
        }
    }

    // ---- happy paths ----

    #[test]
    fn hikvision_digest_over_tcp() {
        let mut run = Run::new(HIK_URL);
        run.play(&fixture("hikvision_digest_tcp")).unwrap();
        assert_eq!(run.client.state(), ClientState::Playing);
        assert_eq!(run.client.session_id(), Some("1273222592"));
        assert_eq!(
            run.quirks(),
            vec![],
            "absolute controls on our own host are fine"
        );
        assert_eq!(run.selected(), vec![0, 1], "the metadata track is kept");
        assert_eq!(
            run.playing(),
            vec![
                track(0, Some(24104), Some(1270711678)),
                track(1, Some(1457), Some(1270711678)),
            ]
        );

        let server = hik_server();
        let r = &run.requests;
        assert_eq!(r.len(), 6);
        for (i, req) in r.iter().enumerate() {
            assert_eq!(req.cseq(), Some(i as u32 + 1));
            assert_eq!(req.headers.get("User-Agent"), Some("corecast"));
            let auth = req.headers.get("Authorization");
            if i < 2 {
                assert_eq!(auth, None, "no credentials before the challenge");
            } else {
                let auth = auth.expect("Authorization after the 401");
                assert!(auth.starts_with("Digest "), "{auth}");
                assert!(auth.contains(&format!("uri=\"{}\"", req.uri)), "{auth}");
                assert!(server.check(req.method.as_str(), Some(auth)), "{auth}");
            }
        }
        assert_eq!(r[1].headers.get("Accept"), Some("application/sdp"));
        assert_eq!(
            r[3].headers.get("Transport"),
            Some("RTP/AVP/TCP;unicast;interleaved=0-1")
        );
        assert_eq!(
            r[4].headers.get("Transport"),
            Some("RTP/AVP/TCP;unicast;interleaved=2-3")
        );
        assert_eq!(r[3].headers.get("Session"), None);
        assert_eq!(r[4].headers.get("Session"), Some("1273222592"));
        assert_eq!(r[5].headers.get("Session"), Some("1273222592"));
        assert_eq!(r[5].headers.get("Range"), Some("npt=0.000-"));

        // Media, zero-copy out of the input buffer; unknown channels are dropped.
        let mut input = BytesMut::new();
        input.extend_from_slice(&frame(0, b"\x80\x60rtp-video"));
        input.extend_from_slice(&frame(1, b"\x80\xc8rtcp-video"));
        input.extend_from_slice(&frame(9, b"stray"));
        input.extend_from_slice(&frame(2, b"\x80\x6bmeta"));
        let base = input.as_ptr() as usize;
        run.client.handle_input(&mut input, T0).unwrap();
        run.pump();
        let media = run.media_events();
        assert_eq!(
            media
                .iter()
                .map(|(rtp, m, d)| (*rtp, *m, &d[..]))
                .collect::<Vec<_>>(),
            vec![
                (true, 0, &b"\x80\x60rtp-video"[..]),
                (false, 0, &b"\x80\xc8rtcp-video"[..]),
                (true, 1, &b"\x80\x6bmeta"[..]),
            ]
        );
        assert_eq!(media[0].2.as_ptr() as usize, base + 4, "payload not copied");
    }

    #[test]
    fn digest_with_qop_counts_nonces() {
        let text = FIXTURES[0]
            .1
            .replace("stale=\"FALSE\"", "qop=\"auth\", stale=\"FALSE\"");
        let mut run = Run::new(HIK_URL);
        run.play(&parse_fixture(&text)).unwrap();
        let server = hik_server();
        let ncs: Vec<String> = run.requests[2..]
            .iter()
            .map(|r| {
                let auth = r.headers.get("Authorization").unwrap();
                assert!(server.check(r.method.as_str(), Some(auth)), "{auth}");
                let nc = auth.split("nc=").nth(1).unwrap();
                nc[..8].to_owned()
            })
            .collect();
        assert_eq!(ncs, ["00000001", "00000002", "00000003", "00000004"]);
        // The keepalive continues the count.
        run.timeout(T0 + 30 * SEC);
        let ka = run.expect(
            "GET_PARAMETER",
            "rtsp://192.168.1.64:554/Streaming/Channels/101/?transportmode=unicast",
        );
        let auth = ka.headers.get("Authorization").unwrap();
        assert!(auth.contains("nc=00000005"), "{auth}");
        assert!(server.check("GET_PARAMETER", Some(auth)));
    }

    #[test]
    fn dahua_over_tcp_skips_backchannel() {
        let mut run =
            Run::new("rtsp://admin:admin123@192.168.1.108:554/cam/realmonitor?channel=1&subtype=0");
        run.play(&fixture("dahua_tcp")).unwrap();
        assert_eq!(run.quirks(), vec![]);
        assert_eq!(
            run.selected(),
            vec![0, 1, 2],
            "sendonly audio (backchannel) left out"
        );
        assert_eq!(
            run.playing(),
            vec![
                track(0, Some(47121), Some(3475222385)),
                track(1, Some(2310), Some(1210547812)),
                track(2, Some(9), Some(3475222385)),
            ]
        );
        let server = ServerAuth {
            realm: "Login to 4L0C1A2PAZ12345".into(),
            username: "admin".into(),
            password: "admin123".into(),
            nonce: "3a8c1e2f6d0b47a5a1c9e6f3b2d8a4c7".into(),
        };
        for r in &run.requests[2..] {
            let auth = r.headers.get("Authorization").unwrap();
            assert!(!auth.contains("qop"), "{auth}");
            assert!(server.check(r.method.as_str(), Some(auth)));
        }
        let ClientEvent::Described { sdp, .. } = &run.events[0] else {
            panic!("{:?}", run.events[0]);
        };
        assert_eq!(sdp.medias.len(), 4, "the full SDP is handed out");
    }

    /// The fixture up to and including the DESCRIBE answer.
    fn until_described(steps: &[FStep]) -> Vec<FStep> {
        let setup = steps
            .iter()
            .position(|s| matches!(s, FStep::Expect(m, _) if m == "SETUP"))
            .unwrap();
        steps[..setup].to_vec()
    }

    #[test]
    fn media_filter() {
        let url = "rtsp://admin:admin123@192.168.1.108:554/cam/realmonitor?channel=1&subtype=0";
        let base = "rtsp://192.168.1.108:554/cam/realmonitor?channel=1&subtype=0/";
        for (option, selected, control) in [("video", 0, "trackID=0"), ("audio", 1, "trackID=1")] {
            let mut run = Run::new(&format!("{url}#media={option}"));
            run.play_prefix(&until_described(&fixture("dahua_tcp")))
                .unwrap();
            assert_eq!(run.selected(), vec![selected]);
            let setup = run.expect("SETUP", &format!("{base}{control}"));
            assert_eq!(
                setup.headers.get("Transport"),
                Some("RTP/AVP/TCP;unicast;interleaved=0-1")
            );
            run.feed(&msg(
                "RTSP/1.0 200 OK\nCSeq: 4\nSession: 1;timeout=60\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1",
                "",
            ))
            .unwrap();
            run.expect("PLAY", base);
            run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 5\nSession: 1", ""))
                .unwrap();
            assert_eq!(run.playing().len(), 1);
        }
        // Only a backchannel left after filtering: nothing to pull.
        let mut run = Run::new(&format!("{url}#media=audio"));
        let sdp = "v=0\ns=x\nm=audio 0 RTP/AVP 8\na=control:trackID=5\na=sendonly\n";
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 1", "")).unwrap();
        let e = run
            .feed(&msg(
                "RTSP/1.0 200 OK\nCSeq: 2\nContent-Type: application/sdp",
                sdp,
            ))
            .unwrap_err();
        assert!(
            matches!(e, ClientError::Protocol(ref s) if s.contains("no usable media")),
            "{e}"
        );
    }

    #[test]
    fn gstreamer_stream_controls() {
        let mut run = Run::new("rtsp://127.0.0.1:8554/test");
        run.play(&fixture("gstreamer_tcp")).unwrap();
        assert_eq!(run.quirks(), vec![]);
        assert_eq!(
            run.playing(),
            vec![
                track(0, Some(22418), Some(1541290342)),
                track(1, Some(4587), Some(3289001273)),
            ]
        );
        assert!(run
            .requests
            .iter()
            .all(|r| r.headers.get("Authorization").is_none()));
    }

    #[test]
    fn mediamtx_over_udp() {
        let mut run = Run::new("rtsp://127.0.0.1:8554/mystream#transport=udp");
        run.play(&fixture("mediamtx_udp")).unwrap();
        assert_eq!(run.quirks(), vec![]);
        let need: Vec<_> = run
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::NeedUdpPorts { .. }))
            .cloned()
            .collect();
        assert_eq!(
            need,
            vec![
                ClientEvent::NeedUdpPorts { media_index: 0 },
                ClientEvent::NeedUdpPorts { media_index: 1 }
            ]
        );
        assert_eq!(
            run.requests[2].headers.get("Transport"),
            Some("RTP/AVP;unicast;client_port=50000-50001")
        );
        assert_eq!(
            run.requests[3].headers.get("Transport"),
            Some("RTP/AVP;unicast;client_port=50002-50003")
        );
        let tracks = run.playing();
        assert_eq!(tracks.len(), 2);
        assert!(tracks.iter().all(|t| t.server_ports == Some((8000, 8001))));
        assert_eq!(
            (tracks[1].seq, tracks[1].rtptime),
            (Some(52011), Some(1473921833))
        );
    }

    #[test]
    fn udp_waits_for_ports() {
        let steps = until_described(&fixture("mediamtx_udp"));
        // Drive by hand so no ports are handed out automatically.
        let mut client = Client::new(
            parse_source_url("rtsp://127.0.0.1:8554/mystream#transport=udp").unwrap(),
            T0,
        );
        client.set_udp_ports(1, 50010, 50011); // Ahead of time is fine.
        let mut out = Vec::new();
        for s in &steps {
            if let FStep::Send(b) = s {
                client
                    .handle_input(&mut BytesMut::from(&b[..]), T0)
                    .unwrap();
            }
        }
        client.poll_transmit(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("SETUP"), "waits for ports: {text}");
        assert_eq!(client.state(), ClientState::Setup);
        let evs: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
        assert!(
            matches!(
                evs.last(),
                Some(ClientEvent::NeedUdpPorts { media_index: 0 })
            ),
            "{evs:?}"
        );
        client.set_udp_ports(3, 1, 2); // Not a selected media: ignored.
        let mut out = Vec::new();
        client.poll_transmit(&mut out);
        assert!(out.is_empty());
        client.set_udp_ports(0, 50000, 50001);
        client.poll_transmit(&mut out);
        assert!(String::from_utf8_lossy(&out).contains("client_port=50000-50001"));
        let answer = msg(
            "RTSP/1.0 200 OK\nCSeq: 3\nSession: s1\nTransport: RTP/AVP;unicast;client_port=50000-50001;server_port=8000-8001",
            "",
        );
        client
            .handle_input(&mut BytesMut::from(&answer[..]), T0)
            .unwrap();
        let mut out = Vec::new();
        client.poll_transmit(&mut out);
        // Media 1's ports were given early, so its SETUP goes out at once.
        assert!(String::from_utf8_lossy(&out).contains("client_port=50010-50011"));
    }

    // ---- quirks ----

    #[test]
    fn quirk_session_timeout_missing() {
        let mut run = Run::new("rtsp://192.168.1.206/h264Preview_01_main");
        run.play(&fixture("reolink_no_session_timeout")).unwrap();
        assert_eq!(run.quirks(), vec![Quirk::SessionTimeoutMissing]);
        assert_eq!(
            run.playing(),
            vec![
                track(0, Some(16852), Some(1070938629)),
                track(1, None, Some(3075976528)),
            ]
        );
        // 60 s assumed: keepalive every 30 s.
        assert_eq!(run.client.poll_timeout(), Some(T0 + 30 * SEC));
    }

    #[test]
    fn quirk_no_rtp_info() {
        let mut run = Run::new(
            "rtsp://192.168.1.10:554/user=admin&password=&channel=1&stream=1.sdp?real_stream",
        );
        run.play(&fixture("xiongmai_no_rtp_info")).unwrap();
        assert_eq!(run.quirks(), vec![Quirk::NoRtpInfo]);
        assert_eq!(run.playing(), vec![track(0, None, None)]);
        // Unparseable RTP-Info is the same quirk.
        let text = FIXTURES[5]
            .1
            .replace("Range: npt=now-", "RTP-Info: url=x;seq=abc");
        let mut run = Run::new(
            "rtsp://192.168.1.10:554/user=admin&password=&channel=1&stream=1.sdp?real_stream",
        );
        run.play(&parse_fixture(&text)).unwrap();
        assert_eq!(run.quirks(), vec![Quirk::NoRtpInfo]);
    }

    #[test]
    fn quirk_no_control() {
        let mut run = Run::new("rtsp://10.0.0.7/live");
        run.play(&fixture("no_control")).unwrap();
        assert_eq!(
            run.quirks(),
            vec![Quirk::NoControl],
            "reported once for two medias"
        );
        assert_eq!(
            run.playing(),
            vec![
                track(0, Some(100), Some(9000)),
                track(1, Some(200), Some(800))
            ]
        );
        // Keepalive by OPTIONS (no Public), every 15 s (timeout=30).
        assert_eq!(run.client.poll_timeout(), Some(T0 + 15 * SEC));
        run.timeout(T0 + 15 * SEC);
        let ka = run.expect("OPTIONS", "rtsp://10.0.0.7:554/live");
        assert_eq!(ka.headers.get("Session"), Some("5521"));
    }

    #[test]
    fn quirk_absolute_control_other_host() {
        let mut run = Run::new("rtsp://203.0.113.7:10554/media/video1");
        run.play(&fixture("geovision_nat_absolute_control"))
            .unwrap();
        assert_eq!(run.quirks(), vec![Quirk::AbsoluteControl]);
        assert_eq!(
            run.playing(),
            vec![
                track(0, Some(31337), Some(2003)),
                track(1, Some(12), Some(2003))
            ]
        );
        run.timeout(T0 + 30 * SEC);
        run.expect("OPTIONS", "rtsp://203.0.113.7:10554/media/video1");
    }

    #[test]
    fn controls_with_queries_and_paths() {
        let base = "rtsp://cam:554/a/b?x=1/";
        assert_eq!(
            resolve(base, "trackID=1"),
            "rtsp://cam:554/a/b?x=1/trackID=1"
        );
        assert_eq!(
            resolve(base, "rtsp://cam/ch1?trackID=1"),
            "rtsp://cam/ch1?trackID=1"
        );
        assert_eq!(
            resolve(base, "/other/track2"),
            "rtsp://cam:554/other/track2"
        );
        assert_eq!(resolve("rtsp://[::1]:554/s/", "/t"), "rtsp://[::1]:554/t");
        assert_eq!(
            authority("rtsp://u:p@CAM/x"),
            authority("rtsp://cam:554/y?z")
        );
        assert_ne!(authority("rtsps://cam/x"), authority("rtsp://cam/x"));
        assert_eq!(authority("rtsps://cam/x"), Some(("cam".into(), 322)));
        assert!(is_absolute("RTSP://h/x") && !is_absolute("trackID=1") && !is_absolute("1://x"));

        // A relative control carrying a query, and one absolute control with a query.
        let sdp = "v=0\ns=x\nm=video 0 RTP/AVP 96\na=control:ch1?trackID=1\nm=audio 0 RTP/AVP 0\na=control:rtsp://cam/ch1?trackID=2\n";
        let mut run = Run::new("rtsp://cam/ch1");
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 1", "")).unwrap();
        run.feed(&msg(
            "RTSP/1.0 200 OK\nCSeq: 2\nContent-Base: rtsp://cam/\nContent-Type: application/sdp; charset=utf-8",
            sdp,
        ))
        .unwrap();
        run.expect("OPTIONS", "rtsp://cam:554/ch1");
        run.expect("DESCRIBE", "rtsp://cam:554/ch1");
        run.expect("SETUP", "rtsp://cam/ch1?trackID=1");
        run.feed(&msg(
            "RTSP/1.0 200 OK\nCSeq: 3\nSession: abc;timeout=60\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1",
            "",
        ))
        .unwrap();
        run.expect("SETUP", "rtsp://cam/ch1?trackID=2");
        assert_eq!(run.quirks(), vec![], "same host, default port");

        // Content-Location stands in for a missing Content-Base.
        let sdp = "v=0\ns=x\nm=video 0 RTP/AVP 96\na=control:track1\n";
        let mut run = Run::new("rtsp://cam/ch1");
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 1", "")).unwrap();
        run.feed(&msg(
            "RTSP/1.0 200 OK\nCSeq: 2\nContent-Location: rtsp://cam/loc/",
            sdp,
        ))
        .unwrap();
        assert_eq!(run.requests.last().unwrap().uri, "rtsp://cam/loc/track1");
    }

    #[test]
    fn quirk_channel_mismatch() {
        let mut run = Run::new("rtsp://10.1.2.3/stream1");
        let mut steps = fixture("channel_mismatch");
        // Data on the server's channels before the PLAY answer must be delivered.
        let play = steps.len() - 1;
        steps.insert(play, FStep::Send(frame(4, b"early-audio")));
        run.play(&steps).unwrap();
        assert_eq!(run.quirks(), vec![Quirk::ChannelMismatch]);
        run.feed(
            &[
                frame(2, b"nobody"),
                frame(5, b"audio-rtcp"),
                frame(0, b"video"),
            ]
            .concat(),
        )
        .unwrap();
        let media: Vec<_> = run
            .media_events()
            .into_iter()
            .map(|(rtp, m, d)| (rtp, m, d.to_vec()))
            .collect();
        assert_eq!(
            media,
            vec![
                (true, 1, b"early-audio".to_vec()),
                (false, 1, b"audio-rtcp".to_vec()),
                (true, 0, b"video".to_vec()),
            ]
        );
        let early = run
            .events
            .iter()
            .position(|e| matches!(e, ClientEvent::Rtp { .. }))
            .unwrap();
        let playing = run
            .events
            .iter()
            .position(|e| matches!(e, ClientEvent::Playing { .. }))
            .unwrap();
        assert!(early < playing);
    }

    #[test]
    fn channel_choice_avoids_server_moved_channels() {
        let sdp =
            "v=0\ns=x\nm=video 0 RTP/AVP 96\na=control:t1\nm=audio 0 RTP/AVP 0\na=control:t2\n";
        let mut run = Run::new("rtsp://cam/s");
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 1", "")).unwrap();
        run.feed(&msg(
            "RTSP/1.0 200 OK\nCSeq: 2\nContent-Type: application/sdp",
            sdp,
        ))
        .unwrap();
        run.feed(&msg(
            "RTSP/1.0 200 OK\nCSeq: 3\nSession: abc\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3",
            "",
        ))
        .unwrap();
        let setup = run.requests.last().unwrap();
        assert_eq!(
            setup.headers.get("Transport"),
            Some("RTP/AVP/TCP;unicast;interleaved=0-1")
        );
        // The server then hands out a clashing pair: refused.
        let e = run
            .feed(&msg(
                "RTSP/1.0 200 OK\nCSeq: 4\nSession: abc\nTransport: RTP/AVP/TCP;unicast;interleaved=3-4",
                "",
            ))
            .unwrap_err();
        assert!(
            matches!(e, ClientError::Protocol(ref s) if s.contains("already used")),
            "{e}"
        );
    }

    #[test]
    fn quirk_udp_without_server_port() {
        let mut run = Run::new("rtsp://10.0.0.9/h264#transport=udp");
        let mut steps = fixture("udp_without_server_port");
        // Ports are handed out from 50000, the fixture answers with 40000: fine, it's echo only.
        if let FStep::Send(b) = &mut steps[5] {
            *b = String::from_utf8(b.clone())
                .unwrap()
                .replace("40000-40001", "50000-50001")
                .into_bytes();
        }
        run.play(&steps).unwrap();
        assert_eq!(run.quirks(), vec![Quirk::TransportWithoutPorts]);
        assert_eq!(run.playing(), vec![track(0, Some(5000), Some(123456))]);
    }

    #[test]
    fn quirk_bad_content_base() {
        let mut run = Run::new("rtsp://192.168.1.20/live/ch00_0");
        run.play(&fixture("bad_content_base")).unwrap();
        assert_eq!(run.quirks(), vec![Quirk::BadContentBase]);
        assert_eq!(run.playing(), vec![track(0, Some(7), Some(70))]);
        // A Content-Base that is not a URL: the request URL is used.
        let sdp = "v=0\ns=x\nm=video 0 RTP/AVP 96\na=control:track1\n";
        let mut run = Run::new("rtsp://cam/live");
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 1", "")).unwrap();
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 2\nContent-Base: live/", sdp))
            .unwrap();
        assert_eq!(run.quirks(), vec![Quirk::BadContentBase]);
        assert_eq!(
            run.requests.last().unwrap().uri,
            "rtsp://cam:554/live/track1"
        );
        // Nor is one with a space in it: it could not go on a request line.
        let mut run = Run::new("rtsp://cam/live");
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 1", "")).unwrap();
        run.feed(&msg(
            "RTSP/1.0 200 OK\nCSeq: 2\nContent-Base: rtsp://cam/my live/",
            sdp,
        ))
        .unwrap();
        assert_eq!(run.quirks(), vec![Quirk::BadContentBase]);
        assert_eq!(
            run.requests.last().unwrap().uri,
            "rtsp://cam:554/live/track1"
        );
    }

    #[test]
    fn every_quirk_has_a_description() {
        for q in [
            Quirk::NoRtpInfo,
            Quirk::NoControl,
            Quirk::AbsoluteControl,
            Quirk::ChannelMismatch,
            Quirk::TransportWithoutPorts,
            Quirk::SessionTimeoutMissing,
            Quirk::BadContentBase,
        ] {
            assert!(!q.description().is_empty());
        }
    }

    // ---- errors ----

    #[test]
    fn wrong_password_is_unauthorized() {
        let steps = fixture("hikvision_digest_tcp");
        let FStep::Send(challenge) = &steps[3] else {
            panic!()
        };
        let again = String::from_utf8(challenge.clone())
            .unwrap()
            .replace("CSeq: 2", "CSeq: 3")
            .into_bytes();
        let mut run = Run::new("rtsp://admin:wrong@192.168.1.64/Streaming/Channels/101");
        run.play_prefix(&steps[..4]).unwrap();
        run.expect("DESCRIBE", "rtsp://192.168.1.64:554/Streaming/Channels/101");
        assert_eq!(run.feed(&again), Err(ClientError::Unauthorized));
        assert_eq!(run.client.state(), ClientState::Failed);
        // The error sticks.
        assert_eq!(
            run.feed(b"RTSP/1.0 200 OK\r\n"),
            Err(ClientError::Unauthorized)
        );

        // No credentials at all: the first 401 is final.
        let mut run = Run::new("rtsp://192.168.1.64/Streaming/Channels/101");
        assert_eq!(run.play_prefix(&steps[..4]), Err(ClientError::Unauthorized));
        // Credentials but no challenge we can answer.
        let mut run = Run::new(HIK_URL);
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 1", "")).unwrap();
        assert_eq!(
            run.feed(&msg(
                "RTSP/1.0 401 Unauthorized\nCSeq: 2\nWWW-Authenticate: NTLM",
                ""
            )),
            Err(ClientError::Unauthorized)
        );
    }

    #[test]
    fn stale_nonce_is_retried() {
        let mut run = Run::new(HIK_URL);
        run.play(&fixture("hikvision_digest_tcp")).unwrap();
        run.timeout(T0 + 30 * SEC);
        let ka = run.pending.pop_front().unwrap();
        let stale = |cseq: u32, nonce: &str| {
            msg(
                &format!("RTSP/1.0 401 Unauthorized\nCSeq: {cseq}\nWWW-Authenticate: Digest realm=\"IP Camera(C2358)\", nonce=\"{nonce}\", stale=\"TRUE\""),
                "",
            )
        };
        run.feed(&stale(ka.cseq().unwrap(), "n2")).unwrap();
        let retry = run.pending.pop_front().unwrap();
        assert_eq!(retry.method, Method::GetParameter);
        let server = ServerAuth {
            nonce: "n2".into(),
            ..hik_server()
        };
        assert!(server.check("GET_PARAMETER", retry.headers.get("Authorization")));
        // Stale again and again: bounded.
        let mut cseq = retry.cseq().unwrap();
        let mut result = Ok(());
        for i in 0..5 {
            result = run.feed(&stale(cseq, &format!("n{}", i + 3)));
            if result.is_err() {
                break;
            }
            cseq = run.pending.pop_front().unwrap().cseq().unwrap();
        }
        assert_eq!(result, Err(ClientError::Unauthorized));
    }

    #[test]
    fn error_statuses() {
        let mut run = Run::new("rtsp://cam/nope");
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 1", "")).unwrap();
        // The first DESCRIBE asks for the ONVIF backchannel; refused, it is asked again
        // without (go2rtc), and only that answer's error counts.
        let first = run.pending.pop_back().unwrap();
        assert_eq!(first.headers.get("Require"), Some(BACKCHANNEL_REQUIRE));
        run.pending.clear();
        run.feed(&msg("RTSP/1.0 551 Option not supported\nCSeq: 2", ""))
            .unwrap();
        let again = run.pending.pop_front().unwrap();
        assert_eq!(again.method, Method::Describe);
        assert_eq!(again.headers.get("Require"), None);
        let e = run
            .feed(&msg("RTSP/1.0 404 Not Found\nCSeq: 3", ""))
            .unwrap_err();
        assert_eq!(
            e,
            ClientError::Status {
                method: "DESCRIBE",
                status: 404,
                reason: "Not Found".into()
            }
        );
        assert_eq!(e.to_string(), "DESCRIBE answered 404 Not Found");

        let mut run = Run::new("rtsp://cam/x");
        let e = run
            .feed(&msg("RTSP/1.0 503 Service Unavailable\nCSeq: 1", ""))
            .unwrap_err();
        assert!(matches!(
            e,
            ClientError::Status {
                method: "OPTIONS",
                status: 503,
                ..
            }
        ));

        let mut run = Run::new("rtsp://127.0.0.1:8554/test");
        run.play_prefix(&until_described(&fixture("gstreamer_tcp")))
            .unwrap();
        let e = run
            .feed(&msg("RTSP/1.0 461 Unsupported Transport\nCSeq: 3", ""))
            .unwrap_err();
        assert!(matches!(
            e,
            ClientError::Status {
                method: "SETUP",
                status: 461,
                ..
            }
        ));
    }

    fn after_describe() -> Run {
        let mut run = Run::new("rtsp://127.0.0.1:8554/test");
        run.play_prefix(&until_described(&fixture("gstreamer_tcp")))
            .unwrap();
        run
    }

    #[test]
    fn malformed_answers_are_errors() {
        type Case = (&'static str, Vec<u8>);
        let sdp_answer = |ct: &str, body: &str| {
            msg(
                &format!("RTSP/1.0 200 OK\nCSeq: 2\nContent-Type: {ct}"),
                body,
            )
        };
        // Answers to the DESCRIBE (OPTIONS already answered).
        let describe_cases: Vec<Case> = vec![
            ("http", b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
            ("garbage", b"\x00\x01\x02garbage".to_vec()),
            ("cseq mismatch", msg("RTSP/1.0 200 OK\nCSeq: 7", "")),
            ("no cseq", msg("RTSP/1.0 200 OK", "")),
            ("html", sdp_answer("text/html", "<html></html>")),
            (
                "no body",
                msg(
                    "RTSP/1.0 200 OK\nCSeq: 2\nContent-Type: application/sdp",
                    "",
                ),
            ),
            ("bad sdp", sdp_answer("application/sdp", "not sdp at all\n")),
            ("non-utf8 sdp", {
                let mut v = msg("RTSP/1.0 200 OK\nCSeq: 2\nContent-Length: 3", "");
                v.truncate(v.len() - 2);
                v.extend_from_slice(b"\r\n\r\n\xff\xfe\xfd");
                v
            }),
            ("no media", sdp_answer("application/sdp", "v=0\ns=x\n")),
            (
                "non-rtp media",
                sdp_answer("application/sdp", "v=0\ns=x\nm=application 9 TCP/BFCP *\n"),
            ),
            (
                "control with a space",
                sdp_answer(
                    "application/sdp",
                    "v=0\ns=x\nm=video 0 RTP/AVP 96\na=control:track 1\n",
                ),
            ),
            (
                "session control with a tab",
                sdp_answer(
                    "application/sdp",
                    "v=0\ns=x\na=control:a\tb\nm=video 0 RTP/AVP 96\n",
                ),
            ),
        ];
        for (what, bytes) in describe_cases {
            let mut run = Run::new("rtsp://127.0.0.1:8554/test");
            run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 1", "")).unwrap();
            let e = run.feed(&bytes).expect_err(what);
            assert!(
                matches!(e, ClientError::Protocol(_) | ClientError::Parse(_)),
                "{what}: {e:?}"
            );
            assert_eq!(run.client.state(), ClientState::Failed, "{what}");
        }
        // Answers to the first SETUP.
        let setup_cases: Vec<Case> = vec![
            ("no session", msg("RTSP/1.0 200 OK\nCSeq: 3\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1", "")),
            ("bad session", msg("RTSP/1.0 200 OK\nCSeq: 3\nSession: ;timeout=60\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1", "")),
            ("no transport", msg("RTSP/1.0 200 OK\nCSeq: 3\nSession: a", "")),
            ("bad transport", msg("RTSP/1.0 200 OK\nCSeq: 3\nSession: a\nTransport: RTP/AVP/TCP;interleaved=x", "")),
            ("udp answer", msg("RTSP/1.0 200 OK\nCSeq: 3\nSession: a\nTransport: RTP/AVP;unicast;client_port=1-2;server_port=3-4", "")),
            ("multicast", msg("RTSP/1.0 200 OK\nCSeq: 3\nSession: a\nTransport: RTP/AVP/TCP;multicast;interleaved=0-1", "")),
            ("one channel", msg("RTSP/1.0 200 OK\nCSeq: 3\nSession: a\nTransport: RTP/AVP/TCP;unicast;interleaved=1-1", "")),
        ];
        for (what, bytes) in setup_cases {
            let mut run = after_describe();
            let e = run.feed(&bytes).expect_err(what);
            assert!(matches!(e, ClientError::Protocol(_)), "{what}: {e:?}");
        }
        // Second SETUP with another session id.
        let mut run = after_describe();
        run.feed(&msg(
            "RTSP/1.0 200 OK\nCSeq: 3\nSession: a\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1",
            "",
        ))
        .unwrap();
        let e = run
            .feed(&msg("RTSP/1.0 200 OK\nCSeq: 4\nSession: b\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3", ""))
            .unwrap_err();
        assert!(
            matches!(e, ClientError::Protocol(ref s) if s.contains("session id changed")),
            "{e}"
        );
        // UDP asked, TCP answered.
        let mut run = Run::new("rtsp://127.0.0.1:8554/test#transport=udp");
        run.play_prefix(&until_described(&fixture("gstreamer_tcp")))
            .unwrap();
        let e = run
            .feed(&msg("RTSP/1.0 200 OK\nCSeq: 3\nSession: a\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1", ""))
            .unwrap_err();
        assert!(matches!(e, ClientError::Protocol(_)), "{e}");
    }

    /// Deterministic junk after the DESCRIBE exchange, in many shapes: never a panic.
    #[test]
    fn junk_never_panics() {
        let mut state = 0x2545_f491_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let big_nonce = format!(
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"{}\", stale=TRUE\r\n",
            "n".repeat(2000)
        );
        let pieces: [&[u8]; 14] = [
            b"RTSP/1.0 200 OK\r\nCSeq: 3\r\n",
            b"Session: x;timeout=0\r\n",
            b"Transport: RTP/AVP/TCP;interleaved=0-1\r\n",
            b"RTP-Info: url=;seq=;rtptime=,,\r\n",
            b"\r\n",
            b"$\x00\x00\x02ab",
            b"GET_PARAMETER * RTSP/1.0\r\nCSeq: 1\r\n\r\n",
            b"Content-Length: 3\r\n\r\nv=0",
            b"\xff\x00",
            b"WWW-Authenticate: Digest realm=\"\r\n",
            b"RTSP/1.0 401 Unauthorized\r\nCSeq: 7\r\n",
            b"WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", stale=TRUE\r\n",
            big_nonce.as_bytes(),
            b"CSeq: 7\r\n",
        ];
        let hikvision = fixture("hikvision_digest_tcp");
        for _ in 0..2000 {
            // Either mid-setup, or playing with Digest and a keepalive (CSeq 7) in flight.
            let mut run = if next() % 2 == 0 {
                after_describe()
            } else {
                let mut run = Run::new(HIK_URL);
                run.play(&hikvision).unwrap();
                run.timeout(T0 + 30 * SEC);
                run
            };
            let mut bytes = Vec::new();
            for _ in 0..(next() % 8) {
                bytes.extend_from_slice(pieces[next() as usize % pieces.len()]);
                if next() % 4 == 0 {
                    bytes.push(next() as u8);
                }
            }
            let cut = next() as usize % (bytes.len() + 1);
            let mut buf = BytesMut::from(&bytes[..cut]);
            let _ = run.client.handle_input(&mut buf, T0);
            run.pump();
            buf.extend_from_slice(&bytes[cut..]);
            let _ = run.client.handle_input(&mut buf, T0);
            run.pump();
            run.timeout(T0 + 3600 * SEC);
            run.client.teardown();
            let _ = run.client.handle_input(&mut buf, T0);
            // `pump` checks that whatever the client wrote is well-formed RTSP.
            run.pump();
        }
    }

    // ---- byte splits ----

    /// The Hikvision exchange plus media, one of the frames before the PLAY answer.
    fn hikvision_server_bytes() -> Vec<u8> {
        let steps = fixture("hikvision_digest_tcp");
        let mut wire = Vec::new();
        let sends: Vec<&Vec<u8>> = steps
            .iter()
            .filter_map(|s| match s {
                FStep::Send(b) => Some(b),
                FStep::Expect(..) => None,
            })
            .collect();
        for (i, b) in sends.iter().enumerate() {
            if i == sends.len() - 1 {
                wire.extend(frame(0, b"\x80\x60early"));
            }
            wire.extend_from_slice(b);
        }
        wire.extend(frame(0, &[0x80, 0x60, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4, 0x65]));
        wire.extend(frame(1, b"\x80\xc8sr"));
        wire.extend(frame(2, b"\x80\x6bonvif"));
        wire.extend(frame(7, b"ignored"));
        wire.extend(msg(
            "GET_PARAMETER rtsp://192.168.1.10/ RTSP/1.0\nCSeq: 42",
            "",
        ));
        wire
    }

    /// Feeds `chunks` through one buffer; returns the events and every byte sent.
    fn drive(chunks: &[&[u8]]) -> (Vec<ClientEvent>, Vec<u8>) {
        let mut client = Client::new(parse_source_url(HIK_URL).unwrap(), T0);
        let mut buf = BytesMut::new();
        let mut tx = Vec::new();
        let mut events = Vec::new();
        client.poll_transmit(&mut tx);
        for c in chunks {
            buf.extend_from_slice(c);
            client.handle_input(&mut buf, T0).unwrap();
            client.poll_transmit(&mut tx);
            events.extend(std::iter::from_fn(|| client.poll_event()));
        }
        assert!(buf.is_empty());
        (events, tx)
    }

    #[test]
    fn split_anywhere_gives_the_same_session() {
        let wire = hikvision_server_bytes();
        let (events, tx) = drive(&[&wire]);
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, ClientEvent::Rtp { .. }))
                .count(),
            3
        );
        assert!(matches!(
            events.last(),
            Some(ClientEvent::Rtp { media_index: 1, .. })
        ));
        let tx_text = String::from_utf8(tx.clone()).unwrap();
        assert!(
            tx_text.ends_with("RTSP/1.0 501 Not Implemented\r\nCSeq: 42\r\n\r\n"),
            "{tx_text}"
        );
        for split in 0..=wire.len() {
            let (a, b) = wire.split_at(split);
            assert_eq!(
                drive(&[a, b]),
                (events.clone(), tx.clone()),
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(drive(&bytes), (events, tx));
    }

    // ---- server requests, keepalive, teardown ----

    #[test]
    fn server_requests_get_501() {
        let mut run = Run::new("rtsp://127.0.0.1:8554/test");
        run.play(&fixture("gstreamer_tcp")).unwrap();
        run.feed(&msg(
            "OPTIONS * RTSP/1.0\nCSeq: 12\nUser-Agent: GStreamer",
            "",
        ))
        .unwrap();
        run.feed(&msg("SET_PARAMETER rtsp://127.0.0.1:8554/test RTSP/1.0\nCSeq: 13\nContent-Type: text/parameters", "a: b\n"))
            .unwrap();
        run.feed(&msg("ANNOUNCE rtsp://127.0.0.1:8554/test RTSP/1.0", ""))
            .unwrap();
        let answers: Vec<(u16, Option<u32>)> =
            run.answers.iter().map(|r| (r.status, r.cseq())).collect();
        assert_eq!(answers, vec![(501, Some(12)), (501, Some(13)), (400, None)]);
        assert_eq!(run.client.state(), ClientState::Playing);
    }

    #[test]
    fn keepalive_schedule() {
        let mut run = Run::new("rtsp://127.0.0.1:8554/test");
        run.play(&fixture("gstreamer_tcp")).unwrap();
        assert_eq!(run.client.poll_timeout(), Some(T0 + 30 * SEC));
        run.timeout(T0 + 30 * SEC - 1);
        assert!(run.pending.is_empty(), "not yet due");
        run.timeout(T0 + 30 * SEC);
        let ka = run.expect("GET_PARAMETER", "rtsp://127.0.0.1:8554/test/");
        assert_eq!(ka.headers.get("Session"), Some("2iY8sSBLrAQ5wU7e"));
        assert_eq!(ka.cseq(), Some(6));
        assert_eq!(run.client.poll_timeout(), Some(T0 + 60 * SEC));
        run.feed(&msg(
            "RTSP/1.0 200 OK\nCSeq: 6\nSession: 2iY8sSBLrAQ5wU7e",
            "",
        ))
        .unwrap();

        // Unanswered keepalives don't pile up, and a late answer is harmless.
        for k in 2..10 {
            run.timeout(T0 + k * 30 * SEC);
        }
        assert_eq!(run.pending.len(), 8);
        run.pending.clear();
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 7", "")).unwrap();
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 14", "")).unwrap();
        // But an answer to something never sent is an error.
        let e = run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 99", "")).unwrap_err();
        assert!(matches!(e, ClientError::Protocol(_)));
        assert_eq!(
            run.client.poll_timeout(),
            None,
            "failed sessions have no timers"
        );
    }

    #[test]
    fn keepalive_interval_follows_session_timeout() {
        for (timeout, interval) in [
            (";timeout=10", 5),
            (";timeout=3600", 30),
            (";timeout=1", 1),
            ("", 30),
            (";timeout=abc", 30),
        ] {
            let text = FIXTURES[2].1.replace(
                "Session: 2iY8sSBLrAQ5wU7e;timeout=60",
                &format!("Session: 2iY8sSBLrAQ5wU7e{timeout}"),
            );
            let mut run = Run::new("rtsp://127.0.0.1:8554/test");
            run.play(&parse_fixture(&text)).unwrap();
            assert_eq!(
                run.client.poll_timeout(),
                Some(T0 + interval * SEC),
                "{timeout}"
            );
        }
    }

    #[test]
    fn keepalive_falls_back_to_options() {
        let mut run = Run::new("rtsp://127.0.0.1:8554/test");
        run.play(&fixture("gstreamer_tcp")).unwrap();
        run.timeout(T0 + 30 * SEC);
        run.expect("GET_PARAMETER", "rtsp://127.0.0.1:8554/test/");
        run.feed(&msg("RTSP/1.0 501 Not Implemented\nCSeq: 6", ""))
            .unwrap();
        run.timeout(T0 + 60 * SEC);
        run.expect("OPTIONS", "rtsp://127.0.0.1:8554/test/");
        // Session gone: that ends the pull.
        let e = run
            .feed(&msg("RTSP/1.0 454 Session Not Found\nCSeq: 7", ""))
            .unwrap_err();
        assert!(matches!(
            e,
            ClientError::Status {
                method: "OPTIONS",
                status: 454,
                ..
            }
        ));
    }

    #[test]
    fn teardown_flow() {
        let mut run = Run::new("rtsp://127.0.0.1:8554/test");
        run.play(&fixture("gstreamer_tcp")).unwrap();
        run.client.teardown();
        run.pump();
        let td = run.expect("TEARDOWN", "rtsp://127.0.0.1:8554/test/");
        assert_eq!(td.headers.get("Session"), Some("2iY8sSBLrAQ5wU7e"));
        assert_eq!(run.client.state(), ClientState::Teardown);
        assert_eq!(run.client.poll_timeout(), None);
        run.client.teardown(); // Idempotent.
        run.pump();
        assert!(run.pending.is_empty());
        run.feed(&frame(0, b"still flowing")).unwrap();
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 6", "")).unwrap();
        assert_eq!(run.client.state(), ClientState::Closed);
        let before = run.events.len();
        run.feed(&[frame(0, b"late"), msg("RTSP/1.0 200 OK\nCSeq: 99", "")].concat())
            .unwrap();
        assert_eq!(run.events.len(), before, "nothing after close");

        // Before any session: closed at once, nothing sent.
        let mut run = Run::new("rtsp://127.0.0.1:8554/test");
        run.client.teardown();
        run.pump();
        assert_eq!(run.client.state(), ClientState::Closed);
        assert_eq!(run.requests.len(), 1);
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 1", "")).unwrap();
        assert_eq!(run.requests.len(), 1);

        // During setup, once a session exists: TEARDOWN, and the SETUP answer is ignored.
        let mut run = after_describe();
        run.feed(&msg("RTSP/1.0 200 OK\nCSeq: 3\nSession: s;timeout=60\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1", ""))
            .unwrap();
        run.client.teardown();
        run.pump();
        run.pending.clear();
        let td = run.requests.last().unwrap().clone();
        assert_eq!(td.method, Method::Teardown);
        run.feed(&msg(
            "RTSP/1.0 200 OK\nCSeq: 4\nSession: s\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3",
            "",
        ))
        .unwrap();
        assert_eq!(run.client.state(), ClientState::Teardown);
        run.feed(&msg(
            &format!("RTSP/1.0 200 OK\nCSeq: {}", td.cseq().unwrap()),
            "",
        ))
        .unwrap();
        assert_eq!(run.client.state(), ClientState::Closed);
    }

    // ---- helpers ----

    #[test]
    fn session_header_forms() {
        assert_eq!(
            parse_session("1273222592;timeout=60"),
            Some(("1273222592".into(), Some(60)))
        );
        assert_eq!(
            parse_session("9a90de54; timeout=120"),
            Some(("9a90de54".into(), Some(120)))
        );
        assert_eq!(parse_session(" F8F8E425 "), Some(("F8F8E425".into(), None)));
        assert_eq!(parse_session("abc;timeout=0"), Some(("abc".into(), None)));
        assert_eq!(
            parse_session("abc;TIMEOUT = 30;x=y"),
            Some(("abc".into(), Some(30)))
        );
        assert_eq!(
            parse_session("abc;timeout=99999999999"),
            Some(("abc".into(), None))
        );
        assert_eq!(parse_session(""), None);
        assert_eq!(parse_session(";timeout=60"), None);
        assert_eq!(parse_session("a b"), None);
        assert_eq!(parse_session(&"x".repeat(MAX_SESSION_ID_LEN + 1)), None);
    }

    #[test]
    fn rtp_info_forms() {
        let e = parse_rtp_info(
            "url=rtsp://h/a;seq=1;rtptime=2, url=rtsp://h/b;rtptime=3;ssrc=9fc9fff8",
        )
        .unwrap();
        assert_eq!(
            e,
            vec![
                RtpInfoEntry {
                    url: "rtsp://h/a".into(),
                    seq: Some(1),
                    rtptime: Some(2)
                },
                RtpInfoEntry {
                    url: "rtsp://h/b".into(),
                    seq: None,
                    rtptime: Some(3)
                },
            ]
        );
        // Trailing ';' (Laureii) and a comma inside a URL.
        let e = parse_rtp_info("url=rtsp://h/0/main/trackID=0;seq=0;rtptime=0;").unwrap();
        assert_eq!(e[0].seq, Some(0));
        let e = parse_rtp_info("url=rtsp://h/a,b;seq=5").unwrap();
        assert_eq!((e.len(), e[0].url.as_str()), (1, "rtsp://h/a,b"));
        for bad in [
            "",
            "seq=1",
            "url=",
            "url=x;seq=70000",
            "url=x;seq=-1",
            "url=x;rtptime=abc",
            "url=x;seq",
        ] {
            assert_eq!(parse_rtp_info(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fixtures_are_well_formed() {
        for (name, text) in FIXTURES {
            let steps = parse_fixture(text);
            assert!(steps.len() >= 6, "{name}");
            for s in steps {
                if let FStep::Send(b) = s {
                    let mut buf = BytesMut::from(&b[..]);
                    let m = message::parse(&mut buf).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(matches!(m, Some(Message::Response(_))), "{name}");
                    assert!(buf.is_empty(), "{name}: one message per block");
                }
            }
        }
    }

    #[test]
    fn sizes() {
        // Printed so growth is noticed (one per pulled stream; not per packet).
        println!("Client: {} bytes", std::mem::size_of::<Client>());
        println!("ClientEvent: {} bytes", std::mem::size_of::<ClientEvent>());
        assert!(std::mem::size_of::<ClientEvent>() <= 128);
    }
}

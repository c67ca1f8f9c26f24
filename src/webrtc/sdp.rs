//! WebRTC SDP offer/answer (RFC 8829 JSEP, RFC 8843 BUNDLE, RFC 8839 ICE, RFC 8842 DTLS).
//!
//! [`parse_offer`] reads a browser's or aiortc's offer strictly and boundedly: every line
//! is `x=value`, sizes and counts are capped, errors name the line. Only what a WebRTC
//! server acts on is modelled (ICE credentials, fingerprint, setup, BUNDLE, mid,
//! direction, codecs with fmtp and rtcp-fb, extmap, rtcp-mux, candidates); other
//! attributes (ssrc, msid, simulcast, sctp-port, ...) are skipped.
//!
//! [`build_answer`] writes our answer: one BUNDLE transport, ICE-lite, our ICE credentials
//! and certificate fingerprint, the DTLS `setup` chosen from the offer's, and per m-line the
//! codec chosen from what the stream has, with the browser's payload type. Our own small
//! parser rather than sdp-rs, for the reasons given in `crate::sdp` (strict line order and
//! typed re-rendering), and because every limit here is ours.

use std::fmt::Write as _;

use thiserror::Error;

use super::dtls::Fingerprint;
use super::srtp::Role;

/// Largest offer accepted (Chrome's offer with every codec is ~6 KB per m-line).
pub const MAX_OFFER_LEN: usize = 64 * 1024;
/// Longest line accepted, without its line ending.
pub const MAX_LINE_LEN: usize = 4096;
/// Most lines accepted.
pub const MAX_LINES: usize = 2048;
/// Most m-lines accepted.
pub const MAX_MEDIAS: usize = 16;
/// Most codecs (payload types) per m-line: every dynamic and static one fits.
pub const MAX_CODECS: usize = 128;
/// Most rtcp-fb lines per codec.
pub const MAX_RTCP_FB: usize = 16;
/// Most extmap lines per m-line.
pub const MAX_EXTMAPS: usize = 32;
/// Most candidates per m-line.
pub const MAX_CANDIDATES: usize = 64;

/// Why an offer was refused or no answer could be built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP offer is {0} bytes, over the {MAX_OFFER_LEN}-byte limit")]
    TooLarge(usize),
    #[error("SDP offer line {line}: {what}")]
    Line { line: usize, what: String },
    #[error("SDP offer m-line {index} (mid {mid}): {what}")]
    Media {
        index: usize,
        mid: String,
        what: String,
    },
    #[error("SDP offer: {0}")]
    Session(String),
    #[error("codecs not matched: {0}")]
    NoCodecMatch(String),
}

fn line_err(line: usize, what: impl Into<String>) -> SdpError {
    SdpError::Line {
        line,
        what: what.into(),
    }
}

/// Media direction (RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sendrecv" => Self::SendRecv,
            "sendonly" => Self::SendOnly,
            "recvonly" => Self::RecvOnly,
            "inactive" => Self::Inactive,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// The answer's direction for an offer's `self` when we want `ours` (RFC 3264 §6.1):
    /// we send only if they receive, we receive only if they send.
    pub fn answer(self, ours: Direction) -> Direction {
        let send = ours.sends() && self.receives();
        let recv = ours.receives() && self.sends();
        match (send, recv) {
            (true, true) => Self::SendRecv,
            (true, false) => Self::SendOnly,
            (false, true) => Self::RecvOnly,
            (false, false) => Self::Inactive,
        }
    }
}

/// DTLS setup attribute (RFC 4145, RFC 8842).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    ActPass,
    Active,
    Passive,
}

impl Setup {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "actpass" => Self::ActPass,
            "active" => Self::Active,
            "passive" => Self::Passive,
            _ => return None,
        })
    }

    /// Our DTLS role and `a=setup:` answer for the offer's setup: an `actpass` or `active`
    /// offerer makes us the DTLS server (`passive`), a `passive` one makes us the client.
    pub fn answer(offer: Option<Setup>) -> (Role, &'static str) {
        match offer {
            // RFC 4145 §4: a missing setup means active.
            Some(Self::ActPass) | Some(Self::Active) | None => (Role::Server, "passive"),
            Some(Self::Passive) => (Role::Client, "active"),
        }
    }
}

/// One payload type of an m-line with its rtpmap, fmtp and rtcp-fb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferCodec {
    pub payload_type: u8,
    /// Encoding name as written (`H264`, `opus`, ...); compare case-insensitively.
    pub name: String,
    pub clock_rate: u32,
    /// Audio channels (1 when the rtpmap has none).
    pub channels: u16,
    pub fmtp: Option<String>,
    /// Values of `a=rtcp-fb:<pt> ...` (and `a=rtcp-fb:* ...`), e.g. `nack pli`.
    pub rtcp_fb: Vec<String>,
}

impl OfferCodec {
    /// Value of one `key=value` fmtp parameter.
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp.as_deref()?.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
        })
    }
}

/// `a=extmap:<id>[/<direction>] <uri>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtMap {
    pub id: u8,
    pub direction: Option<Direction>,
    pub uri: String,
}

/// One m-line of an offer, with session-level defaults (ICE credentials, fingerprint,
/// setup) already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferMedia {
    /// `audio`, `video`, `application`, ...
    pub kind: String,
    pub port: u16,
    pub proto: String,
    /// Formats of the m-line as written (payload types, or `webrtc-datachannel`).
    pub formats: Vec<String>,
    pub mid: Option<String>,
    pub direction: Direction,
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub fingerprint: Option<Fingerprint>,
    pub setup: Option<Setup>,
    pub rtcp_mux: bool,
    pub codecs: Vec<OfferCodec>,
    pub extmaps: Vec<ExtMap>,
    /// `a=candidate:` values (`candidate:...`, the attribute name included as JSEP
    /// candidate strings carry it).
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
    /// SSRCs the offerer will send with (`a=ssrc:<id> ...`), for WHIP.
    pub ssrcs: Vec<u32>,
}

impl OfferMedia {
    /// True for RTP media over DTLS-SRTP (`UDP/TLS/RTP/SAVPF` and its TCP variant).
    pub fn is_rtp(&self) -> bool {
        self.proto.contains("RTP/SAVP")
    }
}

/// A parsed WebRTC offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// mids of `a=group:BUNDLE` (empty when the offer has none).
    pub bundle: Vec<String>,
    pub ice_lite: bool,
    pub medias: Vec<OfferMedia>,
}

impl Offer {
    /// The transport of the bundle: ICE credentials and fingerprint of the first m-line that
    /// is not rejected (all bundled m-lines share it, RFC 8843 §7.1.3).
    pub fn transport(&self) -> Option<(&str, &str, Fingerprint, Option<Setup>)> {
        self.medias.iter().filter(|m| m.port != 0).find_map(|m| {
            Some((
                m.ice_ufrag.as_deref()?,
                m.ice_pwd.as_deref()?,
                m.fingerprint?,
                m.setup,
            ))
        })
    }
}

/// Session-level values that media sections inherit.
#[derive(Default)]
struct SessionDefaults {
    ice_ufrag: Option<String>,
    ice_pwd: Option<String>,
    fingerprint: Option<Fingerprint>,
    setup: Option<Setup>,
    direction: Option<Direction>,
}

/// ice-char = ALPHA / DIGIT / "+" / "/" (RFC 8839 §5.4); ufrag 4..=256, pwd 22..=256.
fn check_ice(value: &str, min: usize, what: &str, line: usize) -> Result<String, SdpError> {
    let ok = (min..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if ok {
        Ok(value.to_string())
    } else {
        Err(line_err(
            line,
            format!(
                "{what} must be {min}..=256 ice-chars, got {} bytes",
                value.len()
            ),
        ))
    }
}

fn parse_pt(s: &str, line: usize) -> Result<u8, SdpError> {
    match s.parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => Err(line_err(line, format!("bad payload type {s:?}"))),
    }
}

/// Static payload types browsers list without an rtpmap (RFC 3551).
fn static_codec(pt: u8) -> Option<(&'static str, u32)> {
    match pt {
        0 => Some(("PCMU", 8000)),
        8 => Some(("PCMA", 8000)),
        9 => Some(("G722", 8000)),
        _ => None,
    }
}

/// Parses a WebRTC offer. Strict: the first line is `v=0`, every line is `<letter>=<value>`
/// within the limits above, media attributes must follow an `m=` of the right shape, and
/// every m-line that is not rejected has ICE credentials, a SHA-256 fingerprint, a mid and
/// rtcp-mux or the offer is refused.
pub fn parse_offer(text: &str) -> Result<Offer, SdpError> {
    if text.len() > MAX_OFFER_LEN {
        return Err(SdpError::TooLarge(text.len()));
    }
    let mut session = SessionDefaults::default();
    let mut bundle = Vec::new();
    let mut ice_lite = false;
    let mut medias: Vec<OfferMedia> = Vec::new();
    // Per m-line: rtcp-fb lines seen before their rtpmap, and `*` ones.
    let mut pending_fb: Vec<(u8, String)> = Vec::new();
    let mut pending_fmtp: Vec<(u8, String)> = Vec::new();
    let mut media_dir: Option<Direction> = None;
    let mut seen_v = false;

    let mut lines = 0usize;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if l.is_empty() {
            continue; // a trailing newline, or blank lines some tools emit
        }
        lines += 1;
        if lines > MAX_LINES {
            return Err(line_err(n, format!("more than {MAX_LINES} lines")));
        }
        if l.len() > MAX_LINE_LEN {
            return Err(line_err(n, format!("longer than {MAX_LINE_LEN} bytes")));
        }
        let b = l.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_lowercase() || b[1] != b'=' {
            return Err(line_err(n, "not a <type>=<value> line"));
        }
        if l.bytes().any(|c| c < 0x20 && c != b'\t') {
            return Err(line_err(n, "control character"));
        }
        let (kind, value) = (b[0], &l[2..]);
        if !seen_v {
            if l != "v=0" {
                return Err(line_err(n, "first line must be v=0"));
            }
            seen_v = true;
            continue;
        }
        match kind {
            b'm' => {
                if medias.len() == MAX_MEDIAS {
                    return Err(line_err(n, format!("more than {MAX_MEDIAS} m-lines")));
                }
                if let Some(prev) = medias.last_mut() {
                    finish_media(
                        prev,
                        &mut pending_fmtp,
                        &mut pending_fb,
                        media_dir.take(),
                        &session,
                    )?;
                }
                medias.push(parse_m_line(value, n)?);
            }
            b'a' => {
                let (name, val) = match value.split_once(':') {
                    Some((k, v)) => (k, Some(v)),
                    None => (value, None),
                };
                let Some(m) = medias.last_mut() else {
                    session_attr(name, val, n, &mut session, &mut bundle, &mut ice_lite)?;
                    continue;
                };
                media_attr(
                    m,
                    name,
                    val,
                    n,
                    &mut pending_fmtp,
                    &mut pending_fb,
                    &mut media_dir,
                )?;
            }
            b'v' => return Err(line_err(n, "second v= line")),
            // o=, s=, t=, c=, b=, i=, u=, e=, p=, r=, z=, k=: nothing a WebRTC server needs.
            _ => {}
        }
    }
    if !seen_v {
        return Err(SdpError::Session("empty offer".into()));
    }
    if let Some(prev) = medias.last_mut() {
        finish_media(
            prev,
            &mut pending_fmtp,
            &mut pending_fb,
            media_dir.take(),
            &session,
        )?;
    }
    if medias.is_empty() {
        return Err(SdpError::Session("no m-lines".into()));
    }
    validate(&medias, &bundle)?;
    Ok(Offer {
        bundle,
        ice_lite,
        medias,
    })
}

fn parse_m_line(value: &str, n: usize) -> Result<OfferMedia, SdpError> {
    let mut it = value.split(' ');
    let kind = it.next().filter(|k| !k.is_empty());
    let port = it.next();
    let proto = it.next().filter(|p| !p.is_empty());
    let (Some(kind), Some(port), Some(proto)) = (kind, port, proto) else {
        return Err(line_err(n, "m= needs <media> <port> <proto> <fmt>..."));
    };
    let port = port.split('/').next().unwrap_or(port);
    let port: u16 = port
        .parse()
        .map_err(|_| line_err(n, format!("bad port {port:?}")))?;
    let formats: Vec<String> = it.map(str::to_string).collect();
    if formats.is_empty() || formats.iter().any(|f| f.is_empty()) {
        return Err(line_err(n, "m= has no formats"));
    }
    if formats.len() > MAX_CODECS {
        return Err(line_err(n, format!("more than {MAX_CODECS} formats")));
    }
    let mut codecs = Vec::new();
    if proto.contains("RTP/") {
        for f in &formats {
            let pt = parse_pt(f, n)?;
            if codecs.iter().any(|c: &OfferCodec| c.payload_type == pt) {
                return Err(line_err(n, format!("payload type {pt} listed twice")));
            }
            // Name filled by a=rtpmap or the static table; empty = unknown so far.
            codecs.push(OfferCodec {
                payload_type: pt,
                name: String::new(),
                clock_rate: 0,
                channels: 1,
                fmtp: None,
                rtcp_fb: Vec::new(),
            });
        }
    }
    Ok(OfferMedia {
        kind: kind.to_string(),
        port,
        proto: proto.to_string(),
        formats,
        mid: None,
        direction: Direction::SendRecv,
        ice_ufrag: None,
        ice_pwd: None,
        fingerprint: None,
        setup: None,
        rtcp_mux: false,
        codecs,
        extmaps: Vec::new(),
        candidates: Vec::new(),
        end_of_candidates: false,
        ssrcs: Vec::new(),
    })
}

fn session_attr(
    name: &str,
    val: Option<&str>,
    n: usize,
    s: &mut SessionDefaults,
    bundle: &mut Vec<String>,
    ice_lite: &mut bool,
) -> Result<(), SdpError> {
    match (name, val) {
        ("group", Some(v)) => {
            let mut it = v.split(' ');
            if it.next() == Some("BUNDLE") {
                if !bundle.is_empty() {
                    return Err(line_err(n, "second a=group:BUNDLE (one transport only)"));
                }
                for mid in it.filter(|m| !m.is_empty()) {
                    if bundle.len() == MAX_MEDIAS {
                        return Err(line_err(n, "BUNDLE group lists too many mids"));
                    }
                    bundle.push(mid.to_string());
                }
            }
        }
        ("ice-lite", None) => *ice_lite = true,
        ("ice-ufrag", Some(v)) => s.ice_ufrag = Some(check_ice(v, 4, "ice-ufrag", n)?),
        ("ice-pwd", Some(v)) => s.ice_pwd = Some(check_ice(v, 22, "ice-pwd", n)?),
        ("fingerprint", Some(v)) => parse_fingerprint(v, n, &mut s.fingerprint)?,
        ("setup", Some(v)) => s.setup = Some(parse_setup(v, n)?),
        (d, None) if Direction::parse(d).is_some() => s.direction = Direction::parse(d),
        _ => {}
    }
    Ok(())
}

/// Keeps the first SHA-256 fingerprint; other hash functions are skipped (aiortc also
/// lists sha-384 and sha-512 ones), a malformed SHA-256 one is an error.
fn parse_fingerprint(v: &str, n: usize, into: &mut Option<Fingerprint>) -> Result<(), SdpError> {
    let hash = v.trim_start().split(' ').next().unwrap_or("");
    if !hash.eq_ignore_ascii_case("sha-256") {
        if hash.is_empty() || v.trim_start().len() == hash.len() {
            return Err(line_err(n, "fingerprint needs <hash> <bytes>"));
        }
        return Ok(());
    }
    let fp = Fingerprint::parse_sdp(v).map_err(|e| line_err(n, e.to_string()))?;
    into.get_or_insert(fp);
    Ok(())
}

fn parse_setup(v: &str, n: usize) -> Result<Setup, SdpError> {
    Setup::parse(v)
        .ok_or_else(|| line_err(n, format!("setup {v:?}: want actpass, active or passive")))
}

#[allow(clippy::too_many_arguments)]
fn media_attr(
    m: &mut OfferMedia,
    name: &str,
    val: Option<&str>,
    n: usize,
    pending_fmtp: &mut Vec<(u8, String)>,
    pending_fb: &mut Vec<(u8, String)>,
    dir: &mut Option<Direction>,
) -> Result<(), SdpError> {
    match (name, val) {
        ("mid", Some(v)) => {
            if m.mid.is_some() {
                return Err(line_err(n, "second a=mid"));
            }
            if v.is_empty() || v.len() > 32 || v.contains(' ') {
                return Err(line_err(n, "a=mid must be 1..=32 bytes without spaces"));
            }
            m.mid = Some(v.to_string());
        }
        ("ice-ufrag", Some(v)) => m.ice_ufrag = Some(check_ice(v, 4, "ice-ufrag", n)?),
        ("ice-pwd", Some(v)) => m.ice_pwd = Some(check_ice(v, 22, "ice-pwd", n)?),
        ("fingerprint", Some(v)) => parse_fingerprint(v, n, &mut m.fingerprint)?,
        ("setup", Some(v)) => m.setup = Some(parse_setup(v, n)?),
        ("rtcp-mux", None) => m.rtcp_mux = true,
        ("end-of-candidates", None) => m.end_of_candidates = true,
        ("candidate", Some(v)) => {
            if m.candidates.len() == MAX_CANDIDATES {
                return Err(line_err(
                    n,
                    format!("more than {MAX_CANDIDATES} candidates"),
                ));
            }
            // foundation component transport priority address port typ type ...
            let f: Vec<&str> = v.split(' ').filter(|w| !w.is_empty()).take(8).collect();
            if f.len() < 8 {
                return Err(line_err(n, "candidate needs at least 8 fields"));
            }
            let ok = f[1].parse::<u16>().is_ok_and(|c| (1..=256).contains(&c))
                && f[3].parse::<u32>().is_ok()
                && f[5].parse::<u16>().is_ok()
                && f[6] == "typ";
            if !ok {
                return Err(line_err(
                    n,
                    "candidate is not <foundation> <component> <transport> <priority> <address> <port> typ <type>",
                ));
            }
            m.candidates.push(format!("candidate:{v}"));
        }
        ("rtpmap", Some(v)) if m.is_rtp() => {
            let (pt, rest) = v
                .split_once(' ')
                .ok_or_else(|| line_err(n, "rtpmap needs <pt> <encoding>/<clock>"))?;
            let pt = parse_pt(pt, n)?;
            let mut parts = rest.trim().split('/');
            let name = parts.next().unwrap_or("");
            let clock = parts.next().and_then(|c| c.parse::<u32>().ok());
            let channels = match parts.next() {
                None => Some(1),
                Some(c) => c.parse::<u16>().ok().filter(|c| (1..=8).contains(c)),
            };
            let valid_name = !name.is_empty()
                && name.len() <= 32
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            let (Some(clock), Some(channels), true, None) =
                (clock, channels, valid_name, parts.next())
            else {
                return Err(line_err(n, format!("bad rtpmap {v:?}")));
            };
            if clock == 0 {
                return Err(line_err(n, "rtpmap clock rate 0"));
            }
            let c = m
                .codecs
                .iter_mut()
                .find(|c| c.payload_type == pt)
                .ok_or_else(|| {
                    line_err(
                        n,
                        format!("rtpmap for payload type {pt} not in the m= line"),
                    )
                })?;
            if !c.name.is_empty() && c.clock_rate != 0 {
                return Err(line_err(n, format!("second rtpmap for payload type {pt}")));
            }
            c.name = name.to_string();
            c.clock_rate = clock;
            c.channels = channels;
        }
        ("fmtp", Some(v)) if m.is_rtp() => {
            let (pt, params) = v
                .split_once(' ')
                .ok_or_else(|| line_err(n, "fmtp needs <pt> <parameters>"))?;
            let pt = parse_pt(pt, n)?;
            if !m.codecs.iter().any(|c| c.payload_type == pt) {
                return Err(line_err(
                    n,
                    format!("fmtp for payload type {pt} not in the m= line"),
                ));
            }
            if pending_fmtp.iter().any(|(p, _)| *p == pt) {
                return Err(line_err(n, format!("second fmtp for payload type {pt}")));
            }
            pending_fmtp.push((pt, params.trim().to_string()));
        }
        ("rtcp-fb", Some(v)) if m.is_rtp() => {
            let (pt, fb) = v
                .split_once(' ')
                .ok_or_else(|| line_err(n, "rtcp-fb needs <pt> <type>"))?;
            let pt = if pt == "*" { 255 } else { parse_pt(pt, n)? };
            if pt != 255 && !m.codecs.iter().any(|c| c.payload_type == pt) {
                return Err(line_err(
                    n,
                    format!("rtcp-fb for payload type {pt} not in the m= line"),
                ));
            }
            if pending_fb.iter().filter(|(p, _)| *p == pt).count() >= MAX_RTCP_FB {
                return Err(line_err(
                    n,
                    format!("more than {MAX_RTCP_FB} rtcp-fb for one payload type"),
                ));
            }
            pending_fb.push((pt, fb.trim().to_string()));
        }
        ("extmap", Some(v)) => {
            if m.extmaps.len() == MAX_EXTMAPS {
                return Err(line_err(n, format!("more than {MAX_EXTMAPS} extmaps")));
            }
            let mut it = v.split(' ');
            let head = it.next().unwrap_or("");
            let uri = it.next().filter(|u| !u.is_empty());
            let (id, direction) = match head.split_once('/') {
                Some((id, d)) => (id, Some(Direction::parse(d))),
                None => (head, None),
            };
            let id = id.parse::<u8>().ok().filter(|&id| id >= 1 && id != 15);
            let (Some(id), Some(uri)) = (id, uri) else {
                return Err(line_err(n, format!("bad extmap {v:?}")));
            };
            let direction = match direction {
                Some(Some(d)) => Some(d),
                Some(None) => return Err(line_err(n, format!("bad extmap direction in {v:?}"))),
                None => None,
            };
            if m.extmaps.iter().any(|e| e.id == id) {
                return Err(line_err(n, format!("extmap id {id} used twice")));
            }
            m.extmaps.push(ExtMap {
                id,
                direction,
                uri: uri.to_string(),
            });
        }
        ("ssrc", Some(v)) => {
            let id = v.split(' ').next().unwrap_or("");
            let ssrc: u32 = id
                .parse()
                .map_err(|_| line_err(n, format!("bad ssrc {id:?}")))?;
            if !m.ssrcs.contains(&ssrc) {
                if m.ssrcs.len() == MAX_CANDIDATES {
                    return Err(line_err(n, "too many SSRCs"));
                }
                m.ssrcs.push(ssrc);
            }
        }
        (d, None) if Direction::parse(d).is_some() => {
            if dir.is_some() {
                return Err(line_err(n, "second direction attribute"));
            }
            *dir = Direction::parse(d);
        }
        _ => {}
    }
    Ok(())
}

/// Applies fmtp/rtcp-fb and session defaults to a finished m-line.
fn finish_media(
    m: &mut OfferMedia,
    fmtp: &mut Vec<(u8, String)>,
    fb: &mut Vec<(u8, String)>,
    dir: Option<Direction>,
    s: &SessionDefaults,
) -> Result<(), SdpError> {
    for c in &mut m.codecs {
        if c.name.is_empty() {
            if let Some((name, clock)) = static_codec(c.payload_type) {
                c.name = name.to_string();
                c.clock_rate = clock;
            }
        }
    }
    for (pt, params) in fmtp.drain(..) {
        if let Some(c) = m.codecs.iter_mut().find(|c| c.payload_type == pt) {
            c.fmtp = Some(params);
        }
    }
    for (pt, f) in fb.drain(..) {
        for c in m
            .codecs
            .iter_mut()
            .filter(|c| pt == 255 || c.payload_type == pt)
        {
            if c.rtcp_fb.len() < MAX_RTCP_FB && !c.rtcp_fb.contains(&f) {
                c.rtcp_fb.push(f.clone());
            }
        }
    }
    // Payload types without rtpmap and not static stay unnamed: never chosen.
    m.codecs.retain(|c| !c.name.is_empty());
    m.direction = dir.or(s.direction).unwrap_or(Direction::SendRecv);
    m.ice_ufrag = m.ice_ufrag.take().or_else(|| s.ice_ufrag.clone());
    m.ice_pwd = m.ice_pwd.take().or_else(|| s.ice_pwd.clone());
    m.fingerprint = m.fingerprint.or(s.fingerprint);
    m.setup = m.setup.or(s.setup);
    Ok(())
}

fn validate(medias: &[OfferMedia], bundle: &[String]) -> Result<(), SdpError> {
    for (i, m) in medias.iter().enumerate() {
        let index = i + 1;
        let err = |what: &str| SdpError::Media {
            index,
            mid: m.mid.clone().unwrap_or_else(|| "-".into()),
            what: what.to_string(),
        };
        if m.port == 0 {
            continue; // rejected by the offerer; nothing to check
        }
        if m.mid.is_none() {
            return Err(err("no a=mid"));
        }
        if medias[..i].iter().any(|o| o.mid == m.mid) {
            return Err(err("mid used twice"));
        }
        if m.ice_ufrag.is_none() || m.ice_pwd.is_none() {
            return Err(err("no a=ice-ufrag/a=ice-pwd"));
        }
        if m.fingerprint.is_none() {
            return Err(err("no a=fingerprint:sha-256"));
        }
    }
    for mid in bundle {
        if !medias.iter().any(|m| m.mid.as_deref() == Some(mid)) {
            return Err(SdpError::Session(format!(
                "BUNDLE lists mid {mid:?} which no m-line has"
            )));
        }
    }
    Ok(())
}

/// A codec a stream can send (or, for WHIP, accept), in the caller's order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCodec {
    /// H.264; `profile_level_id` is the stream's (from its SPS), used to prefer an offered
    /// profile that matches.
    H264 {
        profile_level_id: Option<[u8; 3]>,
    },
    /// H.265 (RFC 7798, sent as one RTP stream); `profile_id` is the stream's
    /// general_profile_idc (1 Main, 2 Main 10), used to prefer an offered profile that
    /// matches.
    H265 {
        profile_id: Option<u8>,
    },
    Opus,
    Pcmu,
    Pcma,
}

impl StreamCodec {
    fn is_video(self) -> bool {
        matches!(self, Self::H264 { .. } | Self::H265 { .. })
    }

    fn label(self) -> &'static str {
        match self {
            Self::H264 { .. } => "video:H264",
            Self::H265 { .. } => "video:H265",
            Self::Opus => "audio:OPUS",
            Self::Pcmu => "audio:PCMU",
            Self::Pcma => "audio:PCMA",
        }
    }

    /// How well an offered codec fits (None: not usable). Name, clock rate and channels
    /// must match; H.264 needs packetization-mode=1 (we send FU-A) and ranks by profile.
    fn score(self, c: &OfferCodec) -> Option<u8> {
        let name = c.name.as_str();
        match self {
            Self::H264 { profile_level_id } => {
                if !name.eq_ignore_ascii_case("H264") || c.clock_rate != 90000 {
                    return None;
                }
                if c.fmtp_param("packetization-mode") != Some("1") {
                    return None;
                }
                let offered = c.fmtp_param("profile-level-id").and_then(parse_plid);
                Some(match (profile_level_id, offered) {
                    // Same profile_idc and constraint flags: exactly what we send.
                    (Some(s), Some(o)) if s[0] == o[0] && s[1] == o[1] => 3,
                    (Some(s), Some(o)) if s[0] == o[0] => 2,
                    // Another profile: browsers decode any H.264 they offer (go2rtc
                    // relies on this); last resort.
                    _ => 1,
                })
            }
            Self::H265 { profile_id } => {
                if !name.eq_ignore_ascii_case("H265") || c.clock_rate != 90000 {
                    return None;
                }
                // We send one RTP stream (SRST, the default when absent).
                if c.fmtp_param("tx-mode")
                    .is_some_and(|m| !m.eq_ignore_ascii_case("SRST"))
                {
                    return None;
                }
                // profile-id defaults to 1 (Main) when absent (RFC 7798 7.1).
                let offered = c
                    .fmtp_param("profile-id")
                    .map_or(Some(1), |p| p.parse::<u8>().ok());
                Some(match (profile_id, offered) {
                    (Some(s), Some(o)) if s == o => 3,
                    // Another profile: last resort, as for H.264.
                    _ => 1,
                })
            }
            Self::Opus => {
                (name.eq_ignore_ascii_case("opus") && c.clock_rate == 48000 && c.channels == 2)
                    .then_some(1)
            }
            Self::Pcmu => {
                (name.eq_ignore_ascii_case("PCMU") && c.clock_rate == 8000 && c.channels == 1)
                    .then_some(1)
            }
            Self::Pcma => {
                (name.eq_ignore_ascii_case("PCMA") && c.clock_rate == 8000 && c.channels == 1)
                    .then_some(1)
            }
        }
    }
}

fn parse_plid(s: &str) -> Option<[u8; 3]> {
    if s.len() != 6 {
        return None;
    }
    let b = |i: usize| u8::from_str_radix(s.get(i..i + 2)?, 16).ok();
    Some([b(0)?, b(2)?, b(4)?])
}

/// What the answer needs from us.
#[derive(Debug, Clone)]
pub struct AnswerParams<'a> {
    pub ice_ufrag: &'a str,
    pub ice_pwd: &'a str,
    pub fingerprint: Fingerprint,
    /// Our candidates as `candidate:...` strings.
    pub candidates: &'a [String],
    /// What we do with served media: `SendOnly` for viewers, `RecvOnly` for WHIP.
    pub direction: Direction,
    /// Codecs the stream has, preferred first.
    pub codecs: &'a [StreamCodec],
    /// SSRCs we send with (video, audio); written as `a=ssrc` for sending m-lines.
    pub ssrcs: (u32, u32),
    /// Session id for the `o=` line.
    pub session_id: u64,
}

/// The codec chosen for an m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenCodec {
    pub codec: StreamCodec,
    /// The browser's payload type for it.
    pub payload_type: u8,
    pub clock_rate: u32,
    /// The browser's rtcp-fb for it that we honour (nack, nack pli, ccm fir).
    pub nack: bool,
    pub pli: bool,
    pub fir: bool,
}

/// One m-line of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerMedia {
    pub mid: Option<String>,
    pub kind: String,
    /// None: answered inactive or rejected.
    pub chosen: Option<ChosenCodec>,
    pub direction: Direction,
    /// Port 0 in the answer (not bundled, not served).
    pub rejected: bool,
    /// Why the m-line is not served, for the log.
    pub reason: Option<String>,
}

/// The answer and what it decided.
#[derive(Debug, Clone)]
pub struct Answer {
    pub sdp: String,
    /// Our DTLS role.
    pub role: Role,
    /// The peer's transport (from the offer): ICE ufrag/pwd and certificate fingerprint.
    pub remote_ufrag: String,
    pub remote_pwd: String,
    pub remote_fingerprint: Fingerprint,
    pub medias: Vec<AnswerMedia>,
}

/// Builds the answer to `offer`. Fails when the offer has no usable transport or when no
/// m-line can be served with the stream's codecs (the error lists both sides, as go2rtc).
pub fn build_answer(offer: &Offer, p: &AnswerParams<'_>) -> Result<Answer, SdpError> {
    let (ufrag, pwd, fp, setup) = offer
        .transport()
        .ok_or_else(|| SdpError::Session("no m-line with a transport".into()))?;
    let (role, setup_answer) = Setup::answer(setup);

    let mut medias = Vec::with_capacity(offer.medias.len());
    let (mut video_done, mut audio_done) = (false, false);
    for m in &offer.medias {
        let mut am = AnswerMedia {
            mid: m.mid.clone(),
            kind: m.kind.clone(),
            chosen: None,
            direction: Direction::Inactive,
            rejected: false,
            reason: None,
        };
        let is_video = m.kind == "video";
        let is_av = is_video || m.kind == "audio";
        if m.port == 0 {
            am.rejected = true;
            am.reason = Some("rejected in the offer".into());
        } else if !is_av || !m.is_rtp() {
            am.rejected = true;
            am.reason = Some(format!("{} {} is not served", m.kind, m.proto));
        } else if !m.rtcp_mux {
            am.reason = Some("no a=rtcp-mux".into());
        } else if (is_video && video_done) || (!is_video && audio_done) {
            am.reason = Some(format!("one {} m-line is served", m.kind));
        } else {
            let dir = m.direction.answer(p.direction);
            let best = p
                .codecs
                .iter()
                .filter(|c| c.is_video() == is_video)
                .enumerate()
                .flat_map(|(rank, sc)| {
                    m.codecs
                        .iter()
                        .filter_map(move |oc| sc.score(oc).map(|s| (s, rank, sc, oc)))
                })
                // Highest score first, then the caller's order, then the browser's.
                .min_by_key(|(s, rank, _, _)| (u8::MAX - s, *rank));
            match best {
                None => am.reason = Some("no codec in common".into()),
                Some(_) if dir == Direction::Inactive => {
                    am.reason = Some(format!("offer direction {}", m.direction.as_str()))
                }
                Some((_, _, sc, oc)) => {
                    let has = |f: &str| oc.rtcp_fb.iter().any(|x| x == f);
                    am.chosen = Some(ChosenCodec {
                        codec: *sc,
                        payload_type: oc.payload_type,
                        clock_rate: oc.clock_rate,
                        nack: has("nack"),
                        pli: has("nack pli"),
                        fir: has("ccm fir"),
                    });
                    am.direction = dir;
                    if is_video {
                        video_done = true;
                    } else {
                        audio_done = true;
                    }
                }
            }
        }
        medias.push(am);
    }
    if medias.iter().all(|m| m.chosen.is_none()) {
        let ours: Vec<&str> = p.codecs.iter().map(|c| c.label()).collect();
        let theirs: Vec<String> = offer
            .medias
            .iter()
            .flat_map(|m| {
                m.codecs
                    .iter()
                    .map(move |c| format!("{}:{}", m.kind, c.name))
            })
            .fold(Vec::new(), |mut v, s| {
                if !v.contains(&s) && v.len() < 16 {
                    v.push(s);
                }
                v
            });
        return Err(SdpError::NoCodecMatch(format!(
            "{} => {}",
            ours.join(", "),
            theirs.join(", ")
        )));
    }

    let sdp = write_answer(offer, p, setup_answer, &medias);
    Ok(Answer {
        sdp,
        role,
        remote_ufrag: ufrag.to_string(),
        remote_pwd: pwd.to_string(),
        remote_fingerprint: fp,
        medias,
    })
}

fn write_answer(
    offer: &Offer,
    p: &AnswerParams<'_>,
    setup: &str,
    medias: &[AnswerMedia],
) -> String {
    let mut s = String::with_capacity(1024 + 512 * medias.len());
    let _ = write!(
        s,
        "v=0\r\no=- {} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
        p.session_id
    );
    let bundled: Vec<&str> = medias
        .iter()
        .filter(|m| !m.rejected)
        .filter_map(|m| m.mid.as_deref())
        .collect();
    if !bundled.is_empty() {
        let _ = write!(s, "a=group:BUNDLE {}\r\n", bundled.join(" "));
    }
    s.push_str("a=ice-lite\r\n");
    for (om, am) in offer.medias.iter().zip(medias) {
        let port = if am.rejected { 0 } else { 9 };
        // The format list must not be empty: the chosen payload type, else the first
        // offered format echoed.
        let fmt = match &am.chosen {
            Some(c) => c.payload_type.to_string(),
            None => om.formats.first().cloned().unwrap_or_else(|| "0".into()),
        };
        let _ = write!(s, "m={} {} {} {}\r\n", om.kind, port, om.proto, fmt);
        s.push_str("c=IN IP4 0.0.0.0\r\n");
        if let Some(mid) = &am.mid {
            let _ = write!(s, "a=mid:{mid}\r\n");
        }
        if am.rejected {
            continue;
        }
        let _ = write!(
            s,
            "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:{}\r\na=setup:{}\r\n",
            p.ice_ufrag,
            p.ice_pwd,
            p.fingerprint.to_sdp(),
            setup
        );
        let _ = write!(s, "a={}\r\na=rtcp-mux\r\n", am.direction.as_str());
        if am.chosen.is_none() {
            // The echoed format gets its rtpmap too: peers such as aiortc refuse an m-line
            // (even an inactive one) whose formats they cannot name.
            if let Some(oc) = om
                .codecs
                .iter()
                .find(|oc| oc.payload_type.to_string() == fmt)
            {
                let _ = write!(
                    s,
                    "a=rtpmap:{} {}/{}",
                    oc.payload_type, oc.name, oc.clock_rate
                );
                if om.kind == "audio" && oc.channels > 1 {
                    let _ = write!(s, "/{}", oc.channels);
                }
                s.push_str("\r\n");
                if let Some(f) = &oc.fmtp {
                    let _ = write!(s, "a=fmtp:{} {}\r\n", oc.payload_type, f);
                }
            }
        }
        if let Some(c) = &am.chosen {
            // The browser's own rtpmap/fmtp for the payload type, echoed.
            if let Some(oc) = om
                .codecs
                .iter()
                .find(|oc| oc.payload_type == c.payload_type)
            {
                let _ = write!(
                    s,
                    "a=rtpmap:{} {}/{}",
                    oc.payload_type, oc.name, oc.clock_rate
                );
                if om.kind == "audio" && oc.channels > 1 {
                    let _ = write!(s, "/{}", oc.channels);
                }
                s.push_str("\r\n");
                if let Some(f) = &oc.fmtp {
                    let _ = write!(s, "a=fmtp:{} {}\r\n", oc.payload_type, f);
                }
                for (on, fb) in [(c.nack, "nack"), (c.pli, "nack pli"), (c.fir, "ccm fir")] {
                    if on {
                        let _ = write!(s, "a=rtcp-fb:{} {}\r\n", oc.payload_type, fb);
                    }
                }
            }
            if am.direction.sends() {
                let ssrc = if om.kind == "video" {
                    p.ssrcs.0
                } else {
                    p.ssrcs.1
                };
                let _ = write!(
                    s,
                    "a=msid:corecast {kind}\r\na=ssrc:{ssrc} cname:corecast\r\na=ssrc:{ssrc} msid:corecast {kind}\r\n",
                    kind = om.kind
                );
            }
        }
        for c in p.candidates {
            // `candidate:...` or a whole `a=candidate:...` line (as `ice::candidate_lines`
            // writes them).
            let c = c.strip_prefix("a=").unwrap_or(c);
            let _ = write!(s, "a={c}\r\n");
        }
        s.push_str("a=end-of-candidates\r\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F";

    /// Chromium 130's offer from go2rtc's player (video and audio transceivers recvonly,
    /// max-bundle), as it appears in chrome://webrtc-internals, with one mDNS host
    /// candidate trickled into the SDP.
    fn chrome_offer() -> String {
        let mut s = String::from(
            "v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103 104 105 106 107 108 109 127 125 39 40 45 46 47 48 112 113 114 115 116
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1467250027 1 udp 2122260223 0f6e5a1c-4c1b-4b0e-9f5e-2d3a1b7c9e11.local 54321 typ host generation 0 network-id 1
a=ice-ufrag:gL7v
a=ice-pwd:Fhx7l0x8rOQfHbWrX4DmSnC8
a=ice-options:trickle
a=fingerprint:FP
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 urn:3gpp:video-orientation
a=extmap:4 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type
a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing
a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=recvonly
a=rtcp-mux
a=rtcp-rsize
",
        );
        let video: &[(u8, &str, Option<&str>)] = &[
            (96, "VP8/90000", None),
            (97, "rtx/90000", Some("apt=96")),
            (98, "VP9/90000", Some("profile-id=0")),
            (99, "rtx/90000", Some("apt=98")),
            (100, "VP9/90000", Some("profile-id=2")),
            (101, "rtx/90000", Some("apt=100")),
            (
                102,
                "H264/90000",
                Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
            ),
            (103, "rtx/90000", Some("apt=102")),
            (
                104,
                "H264/90000",
                Some("level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f"),
            ),
            (105, "rtx/90000", Some("apt=104")),
            (
                106,
                "H264/90000",
                Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
            ),
            (107, "rtx/90000", Some("apt=106")),
            (
                108,
                "H264/90000",
                Some("level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"),
            ),
            (109, "rtx/90000", Some("apt=108")),
            (
                127,
                "H264/90000",
                Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f"),
            ),
            (125, "rtx/90000", Some("apt=127")),
            (
                39,
                "H264/90000",
                Some("level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=4d001f"),
            ),
            (40, "rtx/90000", Some("apt=39")),
            (45, "AV1/90000", Some("level-idx=5;profile=0;tier=0")),
            (46, "rtx/90000", Some("apt=45")),
            (47, "VP9/90000", Some("profile-id=1")),
            (48, "rtx/90000", Some("apt=47")),
            (
                112,
                "H264/90000",
                Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f"),
            ),
            (113, "rtx/90000", Some("apt=112")),
            (114, "red/90000", None),
            (115, "rtx/90000", Some("apt=114")),
            (116, "ulpfec/90000", None),
        ];
        for (pt, map, fmtp) in video {
            s += &format!("a=rtpmap:{pt} {map}\n");
            if !map.starts_with("rtx") && !map.starts_with("red") && !map.starts_with("ulpfec") {
                for fb in ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"] {
                    s += &format!("a=rtcp-fb:{pt} {fb}\n");
                }
            }
            if let Some(f) = fmtp {
                s += &format!("a=fmtp:{pt} {f}\n");
            }
        }
        s += "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:gL7v
a=ice-pwd:Fhx7l0x8rOQfHbWrX4DmSnC8
a=ice-options:trickle
a=fingerprint:FP
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:4 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
";
        s.replace("FP", FP).replace('\n', "\r\n")
    }

    /// Firefox 131's offer for the same player: fingerprint at session level, fmtp and
    /// rtcp-fb before their rtpmap, LF-only line endings accepted too.
    fn firefox_offer() -> String {
        "v=0
o=mozilla...THIS_IS_SDPARTA-99.0 3166393463623567181 0 IN IP4 0.0.0.0
s=-
t=0 0
a=fingerprint:FP
a=group:BUNDLE 0 1
a=ice-options:trickle
a=msid-semantic:WMS *
m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98 123 122 119
c=IN IP4 0.0.0.0
a=recvonly
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:5 urn:ietf:params:rtp-hdrext:toffset
a=extmap:6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1
a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1
a=fmtp:120 max-fs=12288;max-fr=60
a=fmtp:124 apt=120
a=fmtp:121 max-fs=12288;max-fr=60
a=fmtp:125 apt=121
a=fmtp:127 apt=126
a=fmtp:98 apt=97
a=fmtp:119 apt=122
a=ice-pwd:5d9b2c38f0a0e1c8e3a1a2d7b7c0f6e1
a=ice-ufrag:3f1c9a2b
a=mid:0
a=rtcp-fb:120 nack
a=rtcp-fb:120 nack pli
a=rtcp-fb:120 ccm fir
a=rtcp-fb:120 goog-remb
a=rtcp-fb:120 transport-cc
a=rtcp-fb:126 nack
a=rtcp-fb:126 nack pli
a=rtcp-fb:126 ccm fir
a=rtcp-fb:126 goog-remb
a=rtcp-fb:126 transport-cc
a=rtcp-fb:97 nack
a=rtcp-fb:97 nack pli
a=rtcp-fb:97 ccm fir
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:120 VP8/90000
a=rtpmap:124 rtx/90000
a=rtpmap:121 VP9/90000
a=rtpmap:125 rtx/90000
a=rtpmap:126 H264/90000
a=rtpmap:127 rtx/90000
a=rtpmap:97 H264/90000
a=rtpmap:98 rtx/90000
a=rtpmap:123 ulpfec/90000
a=rtpmap:122 red/90000
a=rtpmap:119 rtx/90000
a=setup:actpass
a=ssrc:2519281405 cname:{5c4a0c5e-8d2f-4f35-9a5b-3f1f9d6c1a22}
m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101
c=IN IP4 0.0.0.0
a=recvonly
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1
a=fmtp:101 0-15
a=ice-pwd:5d9b2c38f0a0e1c8e3a1a2d7b7c0f6e1
a=ice-ufrag:3f1c9a2b
a=mid:1
a=rtcp-mux
a=rtpmap:109 opus/48000/2
a=rtpmap:9 G722/8000/1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000/1
a=setup:actpass
a=ssrc:3421117098 cname:{5c4a0c5e-8d2f-4f35-9a5b-3f1f9d6c1a22}
"
        .replace("FP", FP)
    }

    /// aiortc 1.16's offer (`addTransceiver("video"/"audio", "recvonly")`), generated with
    /// `python3 -c` and kept verbatim: three fingerprints, candidates in the offer.
    const AIORTC_OFFER: &str = r"v=0
o=- 4005287529 4005287529 IN IP4 0.0.0.0
s=-
t=0 0
a=group:BUNDLE 0 1
a=msid-semantic:WMS *
m=video 50613 UDP/TLS/RTP/SAVPF 97 98 99 100 101 102
c=IN IP4 192.0.2.2
a=recvonly
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=mid:0
a=msid:a4bd3e39-a00c-4bb6-bd35-c7745e1895e2 beac08b4-8daa-466f-965f-117e6edff5c1
a=rtcp:9 IN IP4 0.0.0.0
a=rtcp-mux
a=ssrc-group:FID 139776562 3027460456
a=ssrc:139776562 cname:953e3d06-ebed-4c80-ac8c-83bba4e37fdf
a=ssrc:3027460456 cname:953e3d06-ebed-4c80-ac8c-83bba4e37fdf
a=rtpmap:97 VP8/90000
a=rtcp-fb:97 nack
a=rtcp-fb:97 nack pli
a=rtcp-fb:97 goog-remb
a=rtpmap:98 rtx/90000
a=fmtp:98 apt=97
a=rtpmap:99 H264/90000
a=rtcp-fb:99 nack
a=rtcp-fb:99 nack pli
a=rtcp-fb:99 goog-remb
a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:100 rtx/90000
a=fmtp:100 apt=99
a=rtpmap:101 H264/90000
a=rtcp-fb:101 nack
a=rtcp-fb:101 nack pli
a=rtcp-fb:101 goog-remb
a=fmtp:101 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:102 rtx/90000
a=fmtp:102 apt=101
a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 192.0.2.2 50613 typ host
a=candidate:d0bcf3d9c29a2bc887618212a1623bfa 1 udp 2130706431 fd00::2 39007 typ host
a=end-of-candidates
a=ice-ufrag:OjRY
a=ice-pwd:qjYNLpBFuwi3EeTapFsGrD
a=fingerprint:sha-256 87:1C:96:F3:55:7B:B8:ED:35:06:42:96:F5:05:DB:E3:91:AC:17:37:BE:7A:7F:6E:0D:EB:A5:5F:7D:D0:F3:D7
a=fingerprint:sha-384 44:76:74:F4:99:1E:58:96:E9:FB:C5:DF:B3:B9:A2:7E:FB:92:22:57:64:70:6F:0F:1A:63:2B:14:A9:1D:1D:65:FB:82:FC:F8:DA:9C:D6:2E:93:97:FE:08:70:7C:CD:B9
a=fingerprint:sha-512 4A:EC:8F:6C:6C:E0:52:5D:03:CC:70:C1:31:65:7E:73:83:AF:CE:47:AA:B2:0F:8C:95:1F:D0:96:40:39:55:F2:E3:33:62:2B:C5:C2:78:51:7D:BD:38:B1:8E:81:F1:35:A1:E5:17:08:1A:0E:5B:45:34:CC:61:B2:D2:40:36:26
a=setup:actpass
m=audio 47892 UDP/TLS/RTP/SAVPF 96 9 0 8
c=IN IP4 192.0.2.2
a=recvonly
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=mid:1
a=msid:a4bd3e39-a00c-4bb6-bd35-c7745e1895e2 c2eca104-2642-43a1-b247-1f5923079411
a=rtcp:9 IN IP4 0.0.0.0
a=rtcp-mux
a=ssrc:2927208793 cname:953e3d06-ebed-4c80-ac8c-83bba4e37fdf
a=rtpmap:96 opus/48000/2
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 192.0.2.2 47892 typ host
a=candidate:d0bcf3d9c29a2bc887618212a1623bfa 1 udp 2130706431 fd00::2 55567 typ host
a=end-of-candidates
a=ice-ufrag:OjRY
a=ice-pwd:qjYNLpBFuwi3EeTapFsGrD
a=fingerprint:sha-256 87:1C:96:F3:55:7B:B8:ED:35:06:42:96:F5:05:DB:E3:91:AC:17:37:BE:7A:7F:6E:0D:EB:A5:5F:7D:D0:F3:D7
a=fingerprint:sha-384 44:76:74:F4:99:1E:58:96:E9:FB:C5:DF:B3:B9:A2:7E:FB:92:22:57:64:70:6F:0F:1A:63:2B:14:A9:1D:1D:65:FB:82:FC:F8:DA:9C:D6:2E:93:97:FE:08:70:7C:CD:B9
a=fingerprint:sha-512 4A:EC:8F:6C:6C:E0:52:5D:03:CC:70:C1:31:65:7E:73:83:AF:CE:47:AA:B2:0F:8C:95:1F:D0:96:40:39:55:F2:E3:33:62:2B:C5:C2:78:51:7D:BD:38:B1:8E:81:F1:35:A1:E5:17:08:1A:0E:5B:45:34:CC:61:B2:D2:40:36:26
a=setup:actpass
";

    /// A real offer from headless Chromium 156 (Debian build), captured with
    /// `chromium --headless --dump-dom` on a page doing `addTransceiver("video"/"audio",
    /// {direction: "recvonly"})` with max-bundle; kept verbatim (LF here, CRLF in the test).
    const CHROMIUM_156_OFFER: &str = r#"v=0
o=- 4363933895662743005 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 35 36 37 38 102 103 104 107 108 109 114 115 116 117 39 40 41 42 43 44 45 46 47 48 118 119 120 49
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1942754664 1 udp 2113937151 928b0b19-2834-4606-a43f-85b4a5617741.local 56606 typ host generation 0 network-cost 999
a=candidate:1958640088 1 udp 2113942271 806fa684-fc08-4af2-b8c9-b0b50f73fd6d.local 34667 typ host generation 0 network-cost 999
a=ice-ufrag:YRCY
a=ice-pwd:SCMDPIlxJKCMTtzD46bHsSvX
a=ice-options:trickle
a=fingerprint:sha-256 DD:0A:D2:73:FD:BB:30:41:61:D5:2B:EE:42:3C:2B:86:95:68:D0:D6:4B:22:AF:A9:2D:C8:46:93:3A:CE:55:96
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 urn:3gpp:video-orientation
a=extmap:4 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type
a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing
a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtcp-xr:rcvr-rtt=all
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 VP9/90000
a=rtcp-fb:98 goog-remb
a=rtcp-fb:98 transport-cc
a=rtcp-fb:98 ccm fir
a=rtcp-fb:98 nack
a=rtcp-fb:98 nack pli
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:100 VP9/90000
a=rtcp-fb:100 goog-remb
a=rtcp-fb:100 transport-cc
a=rtcp-fb:100 ccm fir
a=rtcp-fb:100 nack
a=rtcp-fb:100 nack pli
a=fmtp:100 profile-id=2
a=rtpmap:101 rtx/90000
a=fmtp:101 apt=100
a=rtpmap:35 VP9/90000
a=rtcp-fb:35 goog-remb
a=rtcp-fb:35 transport-cc
a=rtcp-fb:35 ccm fir
a=rtcp-fb:35 nack
a=rtcp-fb:35 nack pli
a=fmtp:35 profile-id=1
a=rtpmap:36 rtx/90000
a=fmtp:36 apt=35
a=rtpmap:37 VP9/90000
a=rtcp-fb:37 goog-remb
a=rtcp-fb:37 transport-cc
a=rtcp-fb:37 ccm fir
a=rtcp-fb:37 nack
a=rtcp-fb:37 nack pli
a=fmtp:37 profile-id=3
a=rtpmap:38 rtx/90000
a=fmtp:38 apt=37
a=rtpmap:102 H264/90000
a=rtcp-fb:102 goog-remb
a=rtcp-fb:102 transport-cc
a=rtcp-fb:102 ccm fir
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:104 H264/90000
a=rtcp-fb:104 goog-remb
a=rtcp-fb:104 transport-cc
a=rtcp-fb:104 ccm fir
a=rtcp-fb:104 nack
a=rtcp-fb:104 nack pli
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f
a=rtpmap:107 rtx/90000
a=fmtp:107 apt=104
a=rtpmap:108 H264/90000
a=rtcp-fb:108 goog-remb
a=rtcp-fb:108 transport-cc
a=rtcp-fb:108 ccm fir
a=rtcp-fb:108 nack
a=rtcp-fb:108 nack pli
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:109 rtx/90000
a=fmtp:109 apt=108
a=rtpmap:114 H264/90000
a=rtcp-fb:114 goog-remb
a=rtcp-fb:114 transport-cc
a=rtcp-fb:114 ccm fir
a=rtcp-fb:114 nack
a=rtcp-fb:114 nack pli
a=fmtp:114 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f
a=rtpmap:115 rtx/90000
a=fmtp:115 apt=114
a=rtpmap:116 H264/90000
a=rtcp-fb:116 goog-remb
a=rtcp-fb:116 transport-cc
a=rtcp-fb:116 ccm fir
a=rtcp-fb:116 nack
a=rtcp-fb:116 nack pli
a=fmtp:116 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f
a=rtpmap:117 rtx/90000
a=fmtp:117 apt=116
a=rtpmap:39 H264/90000
a=rtcp-fb:39 goog-remb
a=rtcp-fb:39 transport-cc
a=rtcp-fb:39 ccm fir
a=rtcp-fb:39 nack
a=rtcp-fb:39 nack pli
a=fmtp:39 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=4d001f
a=rtpmap:40 rtx/90000
a=fmtp:40 apt=39
a=rtpmap:41 H264/90000
a=rtcp-fb:41 goog-remb
a=rtcp-fb:41 transport-cc
a=rtcp-fb:41 ccm fir
a=rtcp-fb:41 nack
a=rtcp-fb:41 nack pli
a=fmtp:41 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=f4001f
a=rtpmap:42 rtx/90000
a=fmtp:42 apt=41
a=rtpmap:43 H264/90000
a=rtcp-fb:43 goog-remb
a=rtcp-fb:43 transport-cc
a=rtcp-fb:43 ccm fir
a=rtcp-fb:43 nack
a=rtcp-fb:43 nack pli
a=fmtp:43 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=f4001f
a=rtpmap:44 rtx/90000
a=fmtp:44 apt=43
a=rtpmap:45 AV1/90000
a=rtcp-fb:45 goog-remb
a=rtcp-fb:45 transport-cc
a=rtcp-fb:45 ccm fir
a=rtcp-fb:45 nack
a=rtcp-fb:45 nack pli
a=fmtp:45 level-idx=5;profile=0;tier=0
a=rtpmap:46 rtx/90000
a=fmtp:46 apt=45
a=rtpmap:47 AV1/90000
a=rtcp-fb:47 goog-remb
a=rtcp-fb:47 transport-cc
a=rtcp-fb:47 ccm fir
a=rtcp-fb:47 nack
a=rtcp-fb:47 nack pli
a=fmtp:47 level-idx=5;profile=1;tier=0
a=rtpmap:48 rtx/90000
a=fmtp:48 apt=47
a=rtpmap:118 red/90000
a=rtpmap:119 rtx/90000
a=fmtp:119 apt=118
a=rtpmap:120 ulpfec/90000
a=rtpmap:49 flexfec-03/90000
a=rtcp-fb:49 goog-remb
a=rtcp-fb:49 transport-cc
a=fmtp:49 repair-window=10000000
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:YRCY
a=ice-pwd:SCMDPIlxJKCMTtzD46bHsSvX
a=ice-options:trickle
a=fingerprint:sha-256 DD:0A:D2:73:FD:BB:30:41:61:D5:2B:EE:42:3C:2B:86:95:68:D0:D6:4B:22:AF:A9:2D:C8:46:93:3A:CE:55:96
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:4 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtcp-xr:rcvr-rtt=all
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
"#;

    fn params<'a>(codecs: &'a [StreamCodec], candidates: &'a [String]) -> AnswerParams<'a> {
        AnswerParams {
            ice_ufrag: "Cc4Uf",
            ice_pwd: "corecastcorecastcorecast",
            fingerprint: Fingerprint([0xab; 32]),
            candidates,
            direction: Direction::SendOnly,
            codecs,
            ssrcs: (0x1111, 0x2222),
            session_id: 42,
        }
    }

    fn cands() -> Vec<String> {
        vec!["candidate:1 1 udp 2130706431 192.168.1.10 8555 typ host".to_string()]
    }

    const HIGH: StreamCodec = StreamCodec::H264 {
        profile_level_id: Some([0x64, 0x00, 0x28]),
    };
    const CBASE: StreamCodec = StreamCodec::H264 {
        profile_level_id: Some([0x42, 0xe0, 0x1f]),
    };

    /// Our answer must itself be valid SDP (sdp-rs, strict) and parse with our parser.
    fn check_answer_syntax(sdp: &str) {
        let strict: Result<sdp_rs::SessionDescription, _> = sdp.parse();
        assert!(strict.is_ok(), "sdp-rs rejects:\n{sdp}\n{strict:?}");
        parse_offer(sdp).unwrap_or_else(|e| panic!("{e}\n{sdp}"));
    }

    #[test]
    fn chrome_offer_parses() {
        let o = parse_offer(&chrome_offer()).unwrap();
        assert_eq!(o.bundle, ["0", "1"]);
        assert_eq!(o.medias.len(), 2);
        let v = &o.medias[0];
        assert_eq!((v.kind.as_str(), v.mid.as_deref()), ("video", Some("0")));
        assert_eq!(v.direction, Direction::RecvOnly);
        assert_eq!(v.codecs.len(), 27);
        assert_eq!(v.extmaps.len(), 11);
        assert!(v.rtcp_mux && !v.end_of_candidates);
        assert_eq!(v.candidates.len(), 1);
        assert!(v.candidates[0].starts_with("candidate:1467250027 1 udp"));
        assert_eq!(v.setup, Some(Setup::ActPass));
        assert_eq!(v.ice_ufrag.as_deref(), Some("gL7v"));
        assert_eq!(v.fingerprint, Some(Fingerprint::parse_sdp(FP).unwrap()));
        let h = v.codecs.iter().find(|c| c.payload_type == 112).unwrap();
        assert_eq!((h.name.as_str(), h.clock_rate), ("H264", 90000));
        assert_eq!(h.fmtp_param("profile-level-id"), Some("64001f"));
        assert_eq!(
            h.rtcp_fb,
            ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
        );
        let a = &o.medias[1];
        let opus = &a.codecs[0];
        assert_eq!(
            (opus.payload_type, opus.clock_rate, opus.channels),
            (111, 48000, 2)
        );
        assert_eq!(opus.fmtp.as_deref(), Some("minptime=10;useinbandfec=1"));
    }

    #[test]
    fn chrome_answer_for_a_viewer() {
        let o = parse_offer(&chrome_offer()).unwrap();
        let c = cands();
        let codecs = [HIGH, StreamCodec::Opus];
        let a = build_answer(&o, &params(&codecs, &c)).unwrap();
        assert_eq!(a.role, Role::Server);
        assert_eq!(a.remote_ufrag, "gL7v");
        assert_eq!(a.remote_fingerprint, Fingerprint::parse_sdp(FP).unwrap());
        let v = a.medias[0].chosen.as_ref().unwrap();
        // High profile stream -> Chrome's 64001f payload type, with its feedback.
        assert_eq!(
            (v.payload_type, v.nack, v.pli, v.fir),
            (112, true, true, true)
        );
        assert_eq!(a.medias[0].direction, Direction::SendOnly);
        let au = a.medias[1].chosen.as_ref().unwrap();
        assert_eq!(
            (au.codec, au.payload_type, au.clock_rate),
            (StreamCodec::Opus, 111, 48000)
        );
        let sdp = &a.sdp;
        for want in [
            "a=group:BUNDLE 0 1\r\n",
            "a=ice-lite\r\n",
            "m=video 9 UDP/TLS/RTP/SAVPF 112\r\n",
            "a=rtpmap:112 H264/90000\r\n",
            "a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f\r\n",
            "a=rtcp-fb:112 nack\r\na=rtcp-fb:112 nack pli\r\na=rtcp-fb:112 ccm fir\r\n",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
            "a=rtpmap:111 opus/48000/2\r\n",
            "a=setup:passive\r\n",
            "a=sendonly\r\n",
            "a=ice-ufrag:Cc4Uf\r\n",
            "a=ssrc:4369 cname:corecast\r\n",
            "a=candidate:1 1 udp 2130706431 192.168.1.10 8555 typ host\r\na=end-of-candidates\r\n",
        ] {
            assert!(sdp.contains(want), "missing {want:?} in\n{sdp}");
        }
        assert!(sdp.contains(&format!(
            "a=fingerprint:sha-256 {}\r\n",
            ["AB"; 32].join(":")
        )));
        assert!(!sdp.contains("transport-cc") && !sdp.contains("goog-remb"));
        check_answer_syntax(sdp);
    }

    #[test]
    fn real_chromium_offer() {
        let o = parse_offer(&CHROMIUM_156_OFFER.replace('\n', "\r\n")).unwrap();
        let v = &o.medias[0];
        assert_eq!(v.formats.len(), 34);
        assert_eq!(v.candidates.len(), 2);
        assert!(v.candidates[0].contains(".local "));
        let c = cands();
        // This build offers no 64001f: a High stream goes out on the first mode-1 H.264
        // (42001f), as go2rtc does; Main finds its own payload type.
        let codecs = [HIGH, StreamCodec::Opus];
        let a = build_answer(&o, &params(&codecs, &c)).unwrap();
        assert_eq!(a.medias[0].chosen.as_ref().unwrap().payload_type, 102);
        assert_eq!(a.medias[1].chosen.as_ref().unwrap().payload_type, 111);
        assert_eq!(a.remote_ufrag, "YRCY");
        check_answer_syntax(&a.sdp);
        let main = [StreamCodec::H264 {
            profile_level_id: Some([0x4d, 0x00, 0x1f]),
        }];
        let a = build_answer(&o, &params(&main, &c)).unwrap();
        assert_eq!(a.medias[0].chosen.as_ref().unwrap().payload_type, 116);
        assert!(a.medias[1].chosen.is_none());
        assert!(a.sdp.contains("a=inactive\r\n"));
    }

    #[test]
    fn h264_profile_choice() {
        let o = parse_offer(&chrome_offer()).unwrap();
        let c = cands();
        let pt = |codec: StreamCodec| {
            let codecs = [codec];
            let a = build_answer(&o, &params(&codecs, &c)).unwrap();
            a.medias[0].chosen.as_ref().unwrap().payload_type
        };
        // Constrained baseline: 42e01f with packetization-mode=1, never the mode-0 one.
        assert_eq!(pt(CBASE), 106);
        // Main: 4d001f mode 1.
        assert_eq!(
            pt(StreamCodec::H264 {
                profile_level_id: Some([0x4d, 0x00, 0x29])
            }),
            127
        );
        // Unknown profile: the first mode-1 H.264 the browser lists.
        assert_eq!(
            pt(StreamCodec::H264 {
                profile_level_id: None
            }),
            102
        );
        // A profile the browser does not offer (High 4:2:2): still a mode-1 H.264.
        assert_eq!(
            pt(StreamCodec::H264 {
                profile_level_id: Some([0x7a, 0, 0x28])
            }),
            102
        );
    }

    #[test]
    fn unmatched_codecs() {
        let o = parse_offer(&chrome_offer()).unwrap();
        let c = cands();
        // H.265 only: Chrome 130 offers none; audio Opus still served, video inactive.
        let codecs = [StreamCodec::H265 { profile_id: None }, StreamCodec::Opus];
        let a = build_answer(&o, &params(&codecs, &c)).unwrap();
        assert!(a.medias[0].chosen.is_none() && !a.medias[0].rejected);
        assert_eq!(a.medias[0].reason.as_deref(), Some("no codec in common"));
        assert!(a.sdp.contains("m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"));
        assert!(a.sdp.contains("a=inactive\r\n"));
        check_answer_syntax(&a.sdp);
        // Nothing in common at all: an error naming both sides.
        let codecs = [StreamCodec::H265 { profile_id: None }];
        let e = build_answer(&o, &params(&codecs, &c)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("codecs not matched: video:H265 => video:VP8"),
            "{text}"
        );
    }

    /// Chrome's offer with its H.265 formats (Chrome 136+: profile-id 1 and 2, tx-mode
    /// SRST) added: an H.265 stream gets the format of its profile, with the browser's fmtp
    /// echoed; an H.264 stream still gets H.264; an MRST-only H.265 is not taken.
    #[test]
    fn h265_offer() {
        let h265 = |fmtp1: &str, fmtp2: &str| {
            chrome_offer()
                .replace(
                    "m=video 9 UDP/TLS/RTP/SAVPF 96 ",
                    "m=video 9 UDP/TLS/RTP/SAVPF 49 50 51 52 96 ",
                )
                .replace(
                    "a=rtpmap:96 VP8/90000\r\n",
                    &format!(
                        "a=rtpmap:96 VP8/90000\r\na=rtpmap:49 H265/90000\r\n\
                         a=rtcp-fb:49 nack\r\na=rtcp-fb:49 nack pli\r\na=fmtp:49 {fmtp1}\r\n\
                         a=rtpmap:50 rtx/90000\r\na=fmtp:50 apt=49\r\n\
                         a=rtpmap:51 H265/90000\r\na=fmtp:51 {fmtp2}\r\n\
                         a=rtpmap:52 rtx/90000\r\na=fmtp:52 apt=51\r\n"
                    ),
                )
        };
        let main = "level-id=180;profile-id=1;tier-flag=0;tx-mode=SRST";
        let main10 = "level-id=180;profile-id=2;tier-flag=0;tx-mode=SRST";
        let o = parse_offer(&h265(main, main10)).unwrap();
        let c = cands();
        let video_pt = |codecs: &[StreamCodec]| {
            let a = build_answer(&o, &params(codecs, &c)).unwrap();
            check_answer_syntax(&a.sdp);
            (a.medias[0].chosen.clone().unwrap(), a.sdp)
        };
        let (ch, sdp) = video_pt(&[
            StreamCodec::H265 {
                profile_id: Some(1),
            },
            StreamCodec::Opus,
        ]);
        assert_eq!((ch.payload_type, ch.clock_rate), (49, 90000));
        assert!(ch.nack && ch.pli);
        assert!(sdp.contains("m=video 9 UDP/TLS/RTP/SAVPF 49\r\n"), "{sdp}");
        assert!(sdp.contains(&format!("a=rtpmap:49 H265/90000\r\na=fmtp:49 {main}\r\n")));
        let (ch, _) = video_pt(&[StreamCodec::H265 {
            profile_id: Some(2),
        }]);
        assert_eq!(ch.payload_type, 51);
        // Unknown or other profile: the first H.265 offered.
        let (ch, _) = video_pt(&[StreamCodec::H265 { profile_id: None }]);
        assert_eq!(ch.payload_type, 49);
        let (ch, _) = video_pt(&[StreamCodec::H265 {
            profile_id: Some(4),
        }]);
        assert_eq!(ch.payload_type, 49);
        let (ch, _) = video_pt(&[CBASE]);
        assert!(matches!(ch.codec, StreamCodec::H264 { .. }));

        // Only MRST H.265 on offer (and no profile-id: Main by default): not taken.
        let o = parse_offer(&h265("tx-mode=MRST", "tx-mode=MRST")).unwrap();
        let a = build_answer(
            &o,
            &params(
                &[
                    StreamCodec::H265 {
                        profile_id: Some(1),
                    },
                    StreamCodec::Opus,
                ],
                &c,
            ),
        )
        .unwrap();
        assert!(a.medias[0].chosen.is_none());
        let o = parse_offer(&h265("level-id=93", "tx-mode=MRST")).unwrap();
        let a = build_answer(
            &o,
            &params(
                &[StreamCodec::H265 {
                    profile_id: Some(1),
                }],
                &c,
            ),
        )
        .unwrap();
        assert_eq!(a.medias[0].chosen.as_ref().unwrap().payload_type, 49);
    }

    #[test]
    fn firefox_offer_and_answer() {
        let o = parse_offer(&firefox_offer()).unwrap();
        let v = &o.medias[0];
        // Session-level fingerprint inherited; fmtp/rtcp-fb before rtpmap applied.
        assert_eq!(v.fingerprint, Some(Fingerprint::parse_sdp(FP).unwrap()));
        let h = v.codecs.iter().find(|c| c.payload_type == 126).unwrap();
        assert_eq!(h.fmtp_param("packetization-mode"), Some("1"));
        assert_eq!(h.rtcp_fb.len(), 5);
        assert_eq!(v.extmaps[3].direction, Some(Direction::RecvOnly));
        assert_eq!(o.medias[1].codecs[1].channels, 1);
        let c = cands();
        let codecs = [CBASE, StreamCodec::Pcmu];
        let a = build_answer(&o, &params(&codecs, &c)).unwrap();
        assert_eq!(a.medias[0].chosen.as_ref().unwrap().payload_type, 126);
        assert_eq!(a.medias[1].chosen.as_ref().unwrap().payload_type, 0);
        assert!(a.sdp.contains("a=rtpmap:0 PCMU/8000\r\n"));
        assert_eq!(a.remote_ufrag, "3f1c9a2b");
        check_answer_syntax(&a.sdp);
    }

    #[test]
    fn aiortc_offer_and_answer() {
        let o = parse_offer(&AIORTC_OFFER.replace('\n', "\r\n")).unwrap();
        let v = &o.medias[0];
        assert_eq!(v.port, 50613);
        // sha-384/sha-512 lines skipped, the sha-256 one kept.
        assert!(v.fingerprint.is_some());
        assert_eq!(v.candidates.len(), 2);
        assert!(v.end_of_candidates);
        assert_eq!(v.ssrcs.len(), 2);
        let c = cands();
        let codecs = [CBASE, StreamCodec::Pcma];
        let a = build_answer(&o, &params(&codecs, &c)).unwrap();
        let vc = a.medias[0].chosen.as_ref().unwrap();
        assert_eq!(
            (vc.payload_type, vc.nack, vc.pli, vc.fir),
            (101, true, true, false)
        );
        assert_eq!(a.medias[1].chosen.as_ref().unwrap().payload_type, 8);
        check_answer_syntax(&a.sdp);
    }

    /// An m-line answered inactive names its echoed format (aiortc refuses an answer
    /// whose audio format it cannot name); whole `a=candidate:` lines are taken as well.
    #[test]
    fn inactive_line_names_its_format() {
        let o = parse_offer(&AIORTC_OFFER.replace('\n', "\r\n")).unwrap();
        let c = vec!["a=candidate:1 1 udp 2130706431 192.168.1.10 8555 typ host".to_string()];
        let codecs = [CBASE];
        let a = build_answer(&o, &params(&codecs, &c)).unwrap();
        assert!(a.medias[1].chosen.is_none());
        let audio = a.sdp.split("m=audio").nth(1).unwrap();
        let fmt = audio.split_whitespace().nth(2).unwrap();
        assert!(audio.contains(&format!("a=rtpmap:{fmt} ")), "{audio}");
        assert!(audio.contains("a=inactive"));
        assert!(!a.sdp.contains("a=a="), "{}", a.sdp);
        assert!(a.sdp.contains("\r\na=candidate:1 1 udp"));
        check_answer_syntax(&a.sdp);
    }

    #[test]
    fn setup_roles_and_directions() {
        let base = chrome_offer();
        let c = cands();
        let codecs = [CBASE, StreamCodec::Opus];
        for (setup, role, ours) in [
            ("actpass", Role::Server, "passive"),
            ("active", Role::Server, "passive"),
            ("passive", Role::Client, "active"),
        ] {
            let o =
                parse_offer(&base.replace("a=setup:actpass", &format!("a=setup:{setup}"))).unwrap();
            let a = build_answer(&o, &params(&codecs, &c)).unwrap();
            assert_eq!(a.role, role, "{setup}");
            assert!(a.sdp.contains(&format!("a=setup:{ours}\r\n")), "{setup}");
        }
        assert!(parse_offer(&base.replace("a=setup:actpass", "a=setup:holdconn")).is_err());

        // WHIP: the browser sends (sendonly), we receive.
        let o = parse_offer(&base.replace("a=recvonly", "a=sendonly")).unwrap();
        let mut p = params(&codecs, &c);
        p.direction = Direction::RecvOnly;
        let a = build_answer(&o, &p).unwrap();
        assert!(a.medias.iter().all(|m| m.direction == Direction::RecvOnly));
        assert!(!a.sdp.contains("a=ssrc:"));
        // A viewer whose offer only sends: nothing to serve.
        assert!(build_answer(&o, &params(&codecs, &c)).is_err());
        // sendrecv offer to a viewer: sendonly.
        let o = parse_offer(&base.replace("a=recvonly", "a=sendrecv")).unwrap();
        let a = build_answer(&o, &params(&codecs, &c)).unwrap();
        assert_eq!(a.medias[0].direction, Direction::SendOnly);
    }

    #[test]
    fn datachannel_is_rejected_and_unbundled() {
        let mut s = chrome_offer().replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2");
        s += "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
              a=ice-ufrag:gL7v\r\na=ice-pwd:Fhx7l0x8rOQfHbWrX4DmSnC8\r\n\
              a=fingerprint:FP\r\na=setup:actpass\r\na=mid:2\r\na=sctp-port:5000\r\n\
              a=max-message-size:262144\r\n"
            .replace("FP", FP)
            .as_str();
        // A second video m-line: answered inactive (one video is served).
        let o = parse_offer(&s).unwrap();
        let c = cands();
        let codecs = [CBASE, StreamCodec::Opus];
        let a = build_answer(&o, &params(&codecs, &c)).unwrap();
        assert!(a.medias[2].rejected);
        assert!(a.sdp.contains("a=group:BUNDLE 0 1\r\n"));
        assert!(a
            .sdp
            .contains("m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
        check_answer_syntax(&a.sdp);
    }

    #[test]
    fn malformed_offers_name_the_line() {
        let base = chrome_offer();
        let line_of = |needle: &str| base.split("\r\n").position(|l| l == needle).unwrap() + 1;
        let cases: Vec<(String, Option<usize>)> = vec![
            (base.replacen("v=0", "v=1", 1), Some(1)),
            (
                base.replace("a=ice-ufrag:gL7v", "a=ice-ufrag:g"),
                Some(line_of("a=ice-ufrag:gL7v")),
            ),
            (
                base.replace("a=ice-pwd:Fhx7l0x8rOQfHbWrX4DmSnC8", "a=ice-pwd:short"),
                Some(line_of("a=ice-pwd:Fhx7l0x8rOQfHbWrX4DmSnC8")),
            ),
            (
                base.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:200 VP8/90000"),
                Some(line_of("a=rtpmap:96 VP8/90000")),
            ),
            (
                base.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:95 VP8/90000"),
                Some(line_of("a=rtpmap:96 VP8/90000")),
            ),
            (
                base.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP8/0"),
                Some(line_of("a=rtpmap:96 VP8/90000")),
            ),
            (
                base.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP8/90000/1/2"),
                Some(line_of("a=rtpmap:96 VP8/90000")),
            ),
            (
                base.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/48000/99"),
                Some(line_of("a=rtpmap:111 opus/48000/2")),
            ),
            (
                base.replace(
                    "a=extmap:3 urn:3gpp:video-orientation",
                    "a=extmap:0 urn:3gpp:video-orientation",
                ),
                Some(line_of("a=extmap:3 urn:3gpp:video-orientation")),
            ),
            (
                base.replace("a=extmap:3 urn:3gpp:video-orientation", "a=extmap:1 urn:x"),
                Some(line_of("a=extmap:3 urn:3gpp:video-orientation")),
            ),
            (
                base.replace(
                    "a=extmap:3 urn:3gpp:video-orientation",
                    "a=extmap:3/sideways urn:x",
                ),
                Some(line_of("a=extmap:3 urn:3gpp:video-orientation")),
            ),
            (
                base.replacen("a=fingerprint:sha-256 D2", "a=fingerprint:sha-256 Z2", 1),
                Some(line_of(&format!("a=fingerprint:{FP}"))),
            ),
            (
                base.replace("m=audio 9 ", "m=audio 99999 "),
                Some(line_of(
                    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
                )),
            ),
            (
                base.replace(
                    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
                    "m=audio 9 UDP/TLS/RTP/SAVPF",
                ),
                Some(line_of(
                    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
                )),
            ),
            (
                base.replace("a=mid:1", "a=mid:1\r\na=mid:2"),
                Some(line_of("a=mid:1") + 1),
            ),
            (
                base.replace("a=recvonly", "a=recvonly\r\na=sendonly"),
                Some(line_of("a=recvonly") + 1),
            ),
            (
                base.replace(
                    "a=candidate:1467250027 1 udp 2122260223",
                    "a=candidate:1467250027 1 udp",
                ),
                None,
            ),
            (base.replace("s=-", "s=-\r\nnot an sdp line"), Some(4)),
            (base.replace("s=-", "s=\u{1}"), Some(3)),
            (base.replace("s=-", "v=0"), Some(3)),
            (
                base.replace("s=-", &format!("s={}", "x".repeat(MAX_LINE_LEN))),
                Some(3),
            ),
            // Media-level checks name the m-line.
            (base.replace("a=mid:1\r\n", ""), None),
            (base.replace("a=mid:1", "a=mid:0"), None),
            (base.replace(&format!("a=fingerprint:{FP}\r\n"), ""), None),
            (
                base.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 7"),
                None,
            ),
            (String::new(), None),
            ("v=0\r\ns=-\r\n".to_string(), None),
        ];
        for (i, (text, line)) in cases.iter().enumerate() {
            let Err(e) = parse_offer(text) else {
                panic!("case {i} accepted");
            };
            if let Some(line) = line {
                assert!(
                    matches!(&e, SdpError::Line { line: l, .. } if l == line),
                    "case {i}: want line {line}, got {e}"
                );
            }
            assert!(!e.to_string().is_empty());
        }
        // The candidate case names its line too.
        let e = parse_offer(&cases[16].0).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("SDP offer line 11: candidate is not"),
            "{e}"
        );
        let e = parse_offer(&cases[21].0).unwrap_err();
        assert_eq!(e.to_string(), "SDP offer m-line 2 (mid -): no a=mid");
    }

    #[test]
    fn limits() {
        let big = format!("v=0\r\n{}", "a=x\r\n".repeat(MAX_OFFER_LEN / 5));
        assert!(matches!(parse_offer(&big), Err(SdpError::TooLarge(_))));
        let many = format!("v=0\r\n{}", "a=x\r\n".repeat(MAX_LINES + 1));
        assert!(matches!(parse_offer(&many), Err(SdpError::Line { .. })));
        let m = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n".repeat(MAX_MEDIAS + 1);
        let e = parse_offer(&format!("v=0\r\n{m}")).unwrap_err();
        assert!(e.to_string().contains("m-lines"), "{e}");
        let mut s = chrome_offer();
        for i in 0..=MAX_CANDIDATES {
            s += &format!("a=candidate:{i} 1 udp 1 10.0.0.1 {i} typ host\r\n");
        }
        assert!(parse_offer(&s).is_err());
    }

    /// Every truncation and many byte flips of real offers: an error or an offer, never a
    /// panic (the fuzz target `sdp_offer` does this at scale).
    #[test]
    fn mutations_do_not_panic() {
        for base in [
            chrome_offer(),
            firefox_offer(),
            AIORTC_OFFER.to_string(),
            CHROMIUM_156_OFFER.to_string(),
        ] {
            let b = base.as_bytes();
            for n in (0..b.len()).step_by(7) {
                if let Ok(s) = std::str::from_utf8(&b[..n]) {
                    if let Ok(o) = parse_offer(s) {
                        let c = cands();
                        let _ = build_answer(&o, &params(&[CBASE, StreamCodec::Opus], &c));
                    }
                }
            }
            for i in (0..b.len()).step_by(13) {
                let mut v = b.to_vec();
                v[i] = b" :/=\r\n0a9"[i % 9];
                if let Ok(s) = std::str::from_utf8(&v) {
                    let _ = parse_offer(s);
                }
            }
        }
    }
}

//! The RTSP `Transport` header (RFC 2326 §12.39).
//!
//! ```text
//! Transport: RTP/AVP/TCP;unicast;interleaved=0-1, RTP/AVP;unicast;client_port=5000-5001
//! ```
//! A request lists alternatives in preference order; the response names exactly one.

use std::fmt;

/// Longest header value accepted; real ones are well under 200 bytes.
pub const MAX_LEN: usize = 1024;
/// Most alternatives accepted in one header.
pub const MAX_ALTERNATIVES: usize = 8;

/// One transport alternative.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transport {
    /// `RTP/AVP`, `RTP/AVP/TCP`, `RTP/AVP/UDP`, `RTP/SAVP`... as given.
    pub profile: String,
    /// Lower transport is TCP: the profile ends in `/TCP` or `interleaved` is present.
    pub tcp: bool,
    /// `multicast` was given (unicast is the default).
    pub multicast: bool,
    pub interleaved: Option<(u8, u8)>,
    pub client_port: Option<(u16, u16)>,
    pub server_port: Option<(u16, u16)>,
    pub ssrc: Option<u32>,
    /// `mode=record` (or `receive`, used by older publishers), any case, quoted or not.
    pub mode_record: bool,
    pub destination: Option<String>,
    pub source: Option<String>,
    pub ttl: Option<u8>,
    /// Parameters not understood here, kept verbatim (e.g. `mode=play` is not kept: it is the
    /// default, but an unknown mode is).
    pub other: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("empty transport")]
    Empty,
    #[error("transport header longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("more than {MAX_ALTERNATIVES} transport alternatives")]
    TooManyAlternatives,
    #[error("unbalanced quote")]
    UnbalancedQuote,
    #[error("invalid transport profile {0:?}")]
    BadProfile(String),
    #[error("invalid port range in {0:?}")]
    BadPortRange(String),
    #[error("port 0 in {0:?}")]
    PortZero(String),
    #[error("invalid interleaved channels in {0:?}")]
    BadInterleaved(String),
    #[error("invalid ssrc in {0:?}")]
    BadSsrc(String),
    #[error("invalid ttl in {0:?}")]
    BadTtl(String),
    #[error("parameter given twice: {0:?}")]
    Duplicate(String),
    #[error("invalid parameter {0:?}")]
    BadParam(String),
}

/// Parses a `Transport` header value into its comma-separated alternatives, in order.
pub fn parse(value: &str) -> Result<Vec<Transport>, TransportError> {
    if value.len() > MAX_LEN {
        return Err(TransportError::TooLong);
    }
    let alternatives = split_unquoted(value, ',')?;
    if alternatives.len() > MAX_ALTERNATIVES {
        return Err(TransportError::TooManyAlternatives);
    }
    alternatives.into_iter().map(parse_one).collect()
}

fn parse_one(spec: &str) -> Result<Transport, TransportError> {
    use TransportError::*;
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(Empty);
    }
    let mut params = split_unquoted(spec, ';')?.into_iter().map(str::trim);
    let profile = params.next().unwrap_or("");
    let profile_ok = !profile.is_empty()
        && profile
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'+'));
    if !profile_ok {
        return Err(BadProfile(profile.to_owned()));
    }
    let upper_tcp = profile
        .rsplit('/')
        .next()
        .is_some_and(|lower| lower.eq_ignore_ascii_case("TCP"));
    let mut t = Transport {
        profile: profile.to_owned(),
        ..Transport::default()
    };
    let mut mode_seen = false;
    for param in params {
        // Tolerate "a;;b" and a trailing ';' (seen from some cameras).
        if param.is_empty() {
            continue;
        }
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (param, None),
        };
        let lname = name.to_ascii_lowercase();
        let dup = || Duplicate(lname.clone());
        match (lname.as_str(), value) {
            ("unicast", None) => t.multicast = false,
            ("multicast", None) => t.multicast = true,
            ("interleaved", Some(v)) => {
                if t.interleaved.is_some() {
                    return Err(dup());
                }
                t.interleaved =
                    Some(parse_channels(v).ok_or_else(|| BadInterleaved(param.into()))?);
            }
            ("client_port", Some(v)) => {
                if t.client_port.is_some() {
                    return Err(dup());
                }
                t.client_port = Some(parse_ports(v, param)?);
            }
            ("server_port", Some(v)) => {
                if t.server_port.is_some() {
                    return Err(dup());
                }
                t.server_port = Some(parse_ports(v, param)?);
            }
            ("ssrc", Some(v)) => {
                if t.ssrc.is_some() {
                    return Err(dup());
                }
                t.ssrc = Some(parse_ssrc(v).ok_or_else(|| BadSsrc(param.into()))?);
            }
            ("ttl", Some(v)) => {
                if t.ttl.is_some() {
                    return Err(dup());
                }
                let ttl = parse_digits(v).and_then(|n| u8::try_from(n).ok());
                t.ttl = Some(ttl.ok_or_else(|| BadTtl(param.into()))?);
            }
            ("destination", Some(v)) if !v.is_empty() => {
                if t.destination.is_some() {
                    return Err(dup());
                }
                t.destination = Some(v.to_owned());
            }
            ("source", Some(v)) if !v.is_empty() => {
                if t.source.is_some() {
                    return Err(dup());
                }
                t.source = Some(v.to_owned());
            }
            ("mode", Some(v)) => {
                if mode_seen {
                    return Err(dup());
                }
                mode_seen = true;
                let m = unquote(v);
                if m.eq_ignore_ascii_case("record") || m.eq_ignore_ascii_case("receive") {
                    t.mode_record = true;
                } else if !m.eq_ignore_ascii_case("play") {
                    t.other.push(param.to_owned());
                }
            }
            _ => {
                let printable = param.bytes().all(|b| !b.is_ascii_control());
                if !printable {
                    return Err(BadParam(param.into()));
                }
                t.other.push(param.to_owned());
            }
        }
    }
    t.tcp = upper_tcp || t.interleaved.is_some();
    Ok(t)
}

/// Splits on `sep` outside double quotes (`mode="PLAY,RECORD"` is one parameter).
fn split_unquoted(s: &str, sep: char) -> Result<Vec<&str>, TransportError> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    if quoted {
        return Err(TransportError::UnbalancedQuote);
    }
    out.push(&s[start..]);
    Ok(out)
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// `a-b`, or a single `a` meaning `a-(a+1)`; values must fit `max`.
fn parse_pair(v: &str, max: u32) -> Option<(u32, u32)> {
    match v.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_digits(a)?, parse_digits(b)?);
            (a <= max && b <= max).then_some((a, b))
        }
        None => {
            let a = parse_digits(v)?;
            // The implied second value must exist too (e.g. 65535 has no odd partner).
            (a < max).then_some((a, a + 1))
        }
    }
}

fn parse_channels(v: &str) -> Option<(u8, u8)> {
    let (a, b) = parse_pair(v, u32::from(u8::MAX))?;
    Some((u8::try_from(a).ok()?, u8::try_from(b).ok()?))
}

fn parse_ports(v: &str, param: &str) -> Result<(u16, u16), TransportError> {
    let (a, b) = parse_pair(v, u32::from(u16::MAX))
        .ok_or_else(|| TransportError::BadPortRange(param.into()))?;
    if a == 0 || b == 0 {
        return Err(TransportError::PortZero(param.into()));
    }
    let a = u16::try_from(a).map_err(|_| TransportError::BadPortRange(param.into()))?;
    let b = u16::try_from(b).map_err(|_| TransportError::BadPortRange(param.into()))?;
    Ok((a, b))
}

/// RFC 2326 gives the SSRC as 8 hex digits; fewer are accepted (leading zeros dropped).
fn parse_ssrc(v: &str) -> Option<u32> {
    if v.is_empty() || v.len() > 8 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(v, 16).ok()
}

/// Plain decimal up to 10 digits (enough for any u32), no sign.
fn parse_digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for Transport {
    /// Canonical order: profile, cast, destination, source, ttl, interleaved, ports, ssrc,
    /// mode, then unknown parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.profile.is_empty(), self.tcp) {
            (false, _) => f.write_str(&self.profile)?,
            (true, true) => f.write_str("RTP/AVP/TCP")?,
            (true, false) => f.write_str("RTP/AVP")?,
        }
        f.write_str(if self.multicast {
            ";multicast"
        } else {
            ";unicast"
        })?;
        if let Some(d) = &self.destination {
            write!(f, ";destination={d}")?;
        }
        if let Some(s) = &self.source {
            write!(f, ";source={s}")?;
        }
        if let Some(ttl) = self.ttl {
            write!(f, ";ttl={ttl}")?;
        }
        if let Some((a, b)) = self.interleaved {
            write!(f, ";interleaved={a}-{b}")?;
        }
        if let Some((a, b)) = self.client_port {
            write!(f, ";client_port={a}-{b}")?;
        }
        if let Some((a, b)) = self.server_port {
            write!(f, ";server_port={a}-{b}")?;
        }
        if let Some(ssrc) = self.ssrc {
            write!(f, ";ssrc={ssrc:08X}")?;
        }
        if self.mode_record {
            f.write_str(";mode=record")?;
        }
        for p in &self.other {
            write!(f, ";{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Transport {
        let mut all = parse(v).unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert_eq!(all.len(), 1, "{v:?}");
        all.remove(0)
    }

    fn roundtrip(t: &Transport) {
        let text = t.to_string();
        assert_eq!(&one(&text), t, "{text}");
    }

    #[test]
    fn ffmpeg_tcp() {
        let t = one("RTP/AVP/TCP;unicast;interleaved=0-1");
        assert_eq!(t.profile, "RTP/AVP/TCP");
        assert!(t.tcp && !t.multicast && !t.mode_record);
        assert_eq!(t.interleaved, Some((0, 1)));
        assert_eq!(t.client_port, None);
        assert_eq!(t.to_string(), "RTP/AVP/TCP;unicast;interleaved=0-1");
        roundtrip(&t);
    }

    #[test]
    fn ffmpeg_udp() {
        let t = one("RTP/AVP/UDP;unicast;client_port=5000-5001");
        assert!(!t.tcp);
        assert_eq!(t.client_port, Some((5000, 5001)));
        roundtrip(&t);
        let t = one("RTP/AVP;unicast;client_port=5000");
        assert_eq!(
            t.client_port,
            Some((5000, 5001)),
            "single port implies the RTCP one"
        );
    }

    #[test]
    fn canonical_forms() {
        let t = Transport {
            profile: "RTP/AVP/TCP".into(),
            tcp: true,
            interleaved: Some((0, 1)),
            ssrc: Some(0x1A2B3C4D),
            mode_record: true,
            ..Transport::default()
        };
        assert_eq!(
            t.to_string(),
            "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=1A2B3C4D;mode=record"
        );
        roundtrip(&t);
        let t = Transport {
            profile: "RTP/AVP".into(),
            client_port: Some((5000, 5001)),
            server_port: Some((8000, 8001)),
            ..Transport::default()
        };
        assert_eq!(
            t.to_string(),
            "RTP/AVP;unicast;client_port=5000-5001;server_port=8000-8001"
        );
        roundtrip(&t);
        // An empty profile falls back to the one implied by `tcp`.
        let t = Transport {
            tcp: true,
            interleaved: Some((2, 3)),
            ..Transport::default()
        };
        assert_eq!(t.to_string(), "RTP/AVP/TCP;unicast;interleaved=2-3");
    }

    #[test]
    fn record_mode_variants() {
        for v in [
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=RECORD",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=\"RECORD\"",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=\"record\"",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=receive",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode = record",
        ] {
            let t = one(v);
            assert!(t.mode_record, "{v}");
            assert!(t.other.is_empty(), "{v}");
            roundtrip(&t);
        }
        for v in [
            "RTP/AVP;unicast;client_port=1-2;mode=play",
            "RTP/AVP;mode=\"PLAY\"",
        ] {
            let t = one(v);
            assert!(!t.mode_record && t.other.is_empty(), "{v}");
        }
        let t = one("RTP/AVP;mode=\"PLAY,RECORD\"");
        assert!(!t.mode_record);
        assert_eq!(t.other, vec!["mode=\"PLAY,RECORD\""]);
        roundtrip(&t);
    }

    #[test]
    fn gstreamer_alternatives() {
        // rtspsrc with protocols=udp+tcp offers both, UDP first.
        let all = parse(
            "RTP/AVP;unicast;client_port=50000-50001;mode=\"PLAY\",RTP/AVP/TCP;unicast;interleaved=0-1;mode=\"PLAY\"",
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].client_port, Some((50000, 50001)));
        assert!(!all[0].tcp);
        assert_eq!(all[1].interleaved, Some((0, 1)));
        assert!(all[1].tcp);
        // Whitespace after the comma is common too.
        let all =
            parse("RTP/AVP/TCP;unicast;interleaved=0-1, RTP/AVP;unicast;client_port=5000-5001")
                .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].profile, "RTP/AVP");
    }

    #[test]
    fn vlc_and_others() {
        let t = one("RTP/AVP;unicast;client_port=54436-54437");
        assert_eq!(t.client_port, Some((54436, 54437)));
        // A server answer as VLC would parse it.
        let t = one("RTP/AVP;unicast;destination=192.168.1.20;source=192.168.1.10;client_port=54436-54437;server_port=6970-6971;ssrc=5DC6B2A1");
        assert_eq!(t.destination.as_deref(), Some("192.168.1.20"));
        assert_eq!(t.source.as_deref(), Some("192.168.1.10"));
        assert_eq!(t.server_port, Some((6970, 6971)));
        assert_eq!(t.ssrc, Some(0x5DC6B2A1));
        roundtrip(&t);
        let t = one("RTP/AVP;multicast;destination=232.0.0.1;ttl=16;port=5004-5005");
        assert!(t.multicast);
        assert_eq!(t.ttl, Some(16));
        assert_eq!(t.other, vec!["port=5004-5005"]);
        roundtrip(&t);
        // interleaved alone implies TCP even with a bare RTP/AVP profile.
        let t = one("RTP/AVP;interleaved=4-5");
        assert!(t.tcp);
        let t = one("rtp/avp/tcp;interleaved=6");
        assert!(t.tcp);
        assert_eq!(t.interleaved, Some((6, 7)));
        let t = one("RTP/SAVP;unicast;client_port=5000-5001;ssrc=0;rtcp-mux;");
        assert_eq!(t.ssrc, Some(0));
        assert_eq!(t.other, vec!["rtcp-mux"]);
        roundtrip(&t);
    }

    #[test]
    fn malformed() {
        use TransportError::*;
        type Check = fn(&TransportError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| *e == Empty),
            ("   ", |e| *e == Empty),
            ("RTP/AVP,", |e| *e == Empty),
            ("RTP/AVP;client_port=70000", |e| {
                matches!(e, BadPortRange(_))
            }),
            ("RTP/AVP;client_port=70000-70001", |e| {
                matches!(e, BadPortRange(_))
            }),
            ("RTP/AVP;client_port=5-", |e| matches!(e, BadPortRange(_))),
            ("RTP/AVP;client_port=-5", |e| matches!(e, BadPortRange(_))),
            ("RTP/AVP;client_port=", |e| matches!(e, BadPortRange(_))),
            ("RTP/AVP;client_port=+5-6", |e| matches!(e, BadPortRange(_))),
            ("RTP/AVP;client_port=65535", |e| {
                matches!(e, BadPortRange(_))
            }),
            ("RTP/AVP;client_port=0-1", |e| matches!(e, PortZero(_))),
            ("RTP/AVP;server_port=0", |e| matches!(e, PortZero(_))),
            ("RTP/AVP;client_port=99999999999-1", |e| {
                matches!(e, BadPortRange(_))
            }),
            ("RTP/AVP/TCP;interleaved=a-b", |e| {
                matches!(e, BadInterleaved(_))
            }),
            ("RTP/AVP/TCP;interleaved=0-256", |e| {
                matches!(e, BadInterleaved(_))
            }),
            ("RTP/AVP/TCP;interleaved=255", |e| {
                matches!(e, BadInterleaved(_))
            }),
            ("RTP/AVP/TCP;interleaved=", |e| {
                matches!(e, BadInterleaved(_))
            }),
            ("RTP/AVP;ssrc=XYZ", |e| matches!(e, BadSsrc(_))),
            ("RTP/AVP;ssrc=123456789", |e| matches!(e, BadSsrc(_))),
            ("RTP/AVP;ttl=256", |e| matches!(e, BadTtl(_))),
            ("client_port=5000-5001", |e| matches!(e, BadProfile(_))),
            ("RTP AVP;unicast", |e| matches!(e, BadProfile(_))),
            ("RTP/AVP;mode=\"PLAY", |e| *e == UnbalancedQuote),
            ("RTP/AVP;client_port=1-2;client_port=3-4", |e| {
                matches!(e, Duplicate(_))
            }),
            ("RTP/AVP;x=\u{1}", |e| matches!(e, BadParam(_))),
        ];
        for (v, ok) in cases {
            let err = parse(v).expect_err(v);
            assert!(ok(&err), "{v:?} gave {err:?}");
        }
    }

    #[test]
    fn limits() {
        let nine = ["RTP/AVP/TCP;interleaved=0-1"; 9].join(",");
        assert_eq!(parse(&nine), Err(TransportError::TooManyAlternatives));
        let eight = ["RTP/AVP/TCP;interleaved=0-1"; 8].join(",");
        assert_eq!(parse(&eight).unwrap().len(), 8);
        let long = format!("RTP/AVP;x={}", "a".repeat(MAX_LEN));
        assert_eq!(parse(&long), Err(TransportError::TooLong));
    }
}

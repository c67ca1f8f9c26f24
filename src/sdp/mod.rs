//! SDP model for RTSP (RFC 8866 syntax, RFC 2326/7826 usage).
//!
//! This is our own line-based model rather than sdp-rs: sdp-rs insists on the strict RFC line
//! order and a `t=` line (cameras get both wrong) and rebuilds lines from typed fields, so it
//! cannot promise that attributes it does not know pass through byte for byte. Here only the
//! lines the server acts on (`m=`, `a=control`, `a=rtpmap`, `a=fmtp`) are interpreted; every
//! other line is kept verbatim and in order, so any codec passes through untouched. Tests use
//! sdp-rs to check that what we write is valid SDP.

use std::fmt::Write as _;
use std::sync::LazyLock;

use crate::codec::CodecKind;

/// Largest SDP accepted, counting a CRLF line ending as one byte so LF and CRLF inputs are
/// treated alike (and anything we write can be parsed again).
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Most non-blank lines accepted.
pub const MAX_LINES: usize = 1024;
/// Most `m=` sections accepted.
pub const MAX_MEDIAS: usize = 32;
/// Longest line accepted (bytes, without the line ending).
pub const MAX_LINE_LEN: usize = 4 * 1024;

const DEFAULT_VERSION: &str = "v=0";
const DEFAULT_ORIGIN: &str = "o=- 0 0 IN IP4 127.0.0.1";
const DEFAULT_SESSION_NAME: &str = "s=corecast";
const DEFAULT_TIMING: &str = "t=0 0";
const READER_CONNECTION: &str = "c=IN IP4 0.0.0.0";

/// Why an SDP was rejected; line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("SDP is {0} bytes, over the {MAX_SDP_LEN}-byte limit")]
    TooLarge(usize),
    #[error("line {line}: more than {MAX_LINES} lines")]
    TooManyLines { line: usize },
    #[error("line {line}: longer than {MAX_LINE_LEN} bytes")]
    LineTooLong { line: usize },
    #[error("line {line}: more than {MAX_MEDIAS} media sections")]
    TooManyMedias { line: usize },
    #[error("line {line}: {what}")]
    Malformed { line: usize, what: &'static str },
}

/// A session description: session-level lines plus media sections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sdp {
    /// Session-level lines, verbatim and in order, except `a=control`.
    pub session: Vec<String>,
    /// Value of the session-level `a=control`, if any.
    pub session_control: Option<String>,
    pub medias: Vec<Media>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `video`, `audio`, `application`, ...
    pub kind: String,
    /// Port from the `m=` line (a `/<count>` suffix is not kept; RTSP does not use it).
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
    pub control: Option<String>,
    pub rtpmap: Vec<RtpMap>,
    pub fmtp: Vec<(u8, String)>,
    /// All other media-level lines, verbatim and in order (no `m=`, `a=control`, and no
    /// `a=rtpmap`/`a=fmtp` that parsed; ones that did not parse are kept here).
    pub lines: Vec<String>,
}

/// A parsed `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
}

/// Static payload types from RFC 3551 tables 4 and 5.
static STATIC_RTPMAPS: LazyLock<Vec<RtpMap>> = LazyLock::new(|| {
    let table: [(u8, &str, u32, Option<u16>); 24] = [
        (0, "PCMU", 8000, Some(1)),
        (3, "GSM", 8000, Some(1)),
        (4, "G723", 8000, Some(1)),
        (5, "DVI4", 8000, Some(1)),
        (6, "DVI4", 16000, Some(1)),
        (7, "LPC", 8000, Some(1)),
        (8, "PCMA", 8000, Some(1)),
        (9, "G722", 8000, Some(1)),
        (10, "L16", 44100, Some(2)),
        (11, "L16", 44100, Some(1)),
        (12, "QCELP", 8000, Some(1)),
        (13, "CN", 8000, Some(1)),
        (14, "MPA", 90000, None),
        (15, "G728", 8000, Some(1)),
        (16, "DVI4", 11025, Some(1)),
        (17, "DVI4", 22050, Some(1)),
        (18, "G729", 8000, Some(1)),
        (25, "CelB", 90000, None),
        (26, "JPEG", 90000, None),
        (28, "nv", 90000, None),
        (31, "H261", 90000, None),
        (32, "MPV", 90000, None),
        (33, "MP2T", 90000, None),
        (34, "H263", 90000, None),
    ];
    table
        .iter()
        .map(|&(payload_type, encoding, clock_rate, channels)| RtpMap {
            payload_type,
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
        })
        .collect()
});

/// Parse an SDP. Accepts LF or CRLF line endings, skips blank lines, and tolerates a leading
/// byte-order mark and trailing NULs (some cameras send C strings).
pub fn parse(text: &str) -> Result<Sdp, SdpError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.trim_end_matches('\0');
    let content_len = text.len() - text.matches("\r\n").count();
    if content_len > MAX_SDP_LEN {
        return Err(SdpError::TooLarge(content_len));
    }

    let mut sdp = Sdp::default();
    let mut line_count = 0;
    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        line_count += 1;
        if line_count > MAX_LINES {
            return Err(SdpError::TooManyLines { line: line_no });
        }
        if line.len() > MAX_LINE_LEN {
            return Err(SdpError::LineTooLong { line: line_no });
        }
        let malformed = |what| SdpError::Malformed {
            line: line_no,
            what,
        };
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(malformed("control character in line"));
        }
        let &[kind, b'=', ..] = line.as_bytes() else {
            return Err(malformed("expected <type>=<value>"));
        };
        if !kind.is_ascii_alphabetic() {
            return Err(malformed("expected <type>=<value>"));
        }

        if kind == b'm' {
            if sdp.medias.len() == MAX_MEDIAS {
                return Err(SdpError::TooManyMedias { line: line_no });
            }
            sdp.medias
                .push(parse_media_line(&line[2..]).map_err(malformed)?);
        } else if let Some(media) = sdp.medias.last_mut() {
            media.add_line(line);
        } else if let Some(control) = line.strip_prefix("a=control:") {
            sdp.session_control = Some(control.trim().to_owned());
        } else {
            sdp.session.push(line.to_owned());
        }
    }
    Ok(sdp)
}

/// `<media> <port>[/<count>] <proto> <fmt> ...`
fn parse_media_line(value: &str) -> Result<Media, &'static str> {
    let mut tokens = value.split_ascii_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (tokens.next(), tokens.next(), tokens.next())
    else {
        return Err("m= line needs media, port and protocol");
    };
    let (port, count) = match port.split_once('/') {
        Some((port, count)) => (port, Some(count)),
        None => (port, None),
    };
    let port = port.parse().map_err(|_| "bad port in m= line")?;
    if count.is_some_and(|c| c.parse::<u16>().is_err()) {
        return Err("bad port count in m= line");
    }
    Ok(Media {
        kind: kind.to_owned(),
        port,
        proto: proto.to_owned(),
        formats: tokens.map(str::to_owned).collect(),
        control: None,
        rtpmap: Vec::new(),
        fmtp: Vec::new(),
        lines: Vec::new(),
    })
}

fn parse_payload_type(s: &str) -> Option<u8> {
    s.parse().ok().filter(|&pt| pt < 128)
}

fn parse_rtpmap(value: &str) -> Option<RtpMap> {
    let (pt, rest) = value.trim().split_once(|c: char| c.is_ascii_whitespace())?;
    let mut parts = rest.trim().split('/');
    let encoding = parts
        .next()
        .filter(|e| !e.is_empty() && !e.contains(|c: char| c.is_ascii_whitespace()))?;
    let clock_rate = parts.next()?.parse().ok().filter(|&r| r > 0)?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(RtpMap {
        payload_type: parse_payload_type(pt)?,
        encoding: encoding.to_owned(),
        clock_rate,
        channels,
    })
}

fn parse_fmtp(value: &str) -> Option<(u8, String)> {
    let value = value.trim();
    let (pt, params) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    Some((parse_payload_type(pt)?, params.trim().to_owned()))
}

impl Media {
    fn add_line(&mut self, line: &str) {
        if let Some(control) = line.strip_prefix("a=control:") {
            self.control = Some(control.trim().to_owned());
            return;
        }
        if let Some(map) = line.strip_prefix("a=rtpmap:").and_then(parse_rtpmap) {
            self.rtpmap.push(map);
            return;
        }
        if let Some(fmtp) = line.strip_prefix("a=fmtp:").and_then(parse_fmtp) {
            self.fmtp.push(fmtp);
            return;
        }
        self.lines.push(line.to_owned());
    }

    /// The first format as an RTP payload type.
    pub fn payload_type(&self) -> Option<u8> {
        parse_payload_type(self.formats.first()?)
    }

    /// Codec of the first payload type, from its rtpmap or the static payload type table.
    pub fn codec(&self) -> Option<(CodecKind, &RtpMap)> {
        let pt = self.payload_type()?;
        let map = self
            .rtpmap
            .iter()
            .find(|m| m.payload_type == pt)
            .or_else(|| STATIC_RTPMAPS.iter().find(|m| m.payload_type == pt))?;
        Some((CodecKind::from_encoding_name(&map.encoding), map))
    }

    /// RTP clock rate of the first payload type; 8000 for unknown audio, 90000 otherwise.
    pub fn clock_rate(&self) -> u32 {
        match self.codec() {
            Some((_, map)) => map.clock_rate,
            None if self.kind.eq_ignore_ascii_case("audio") => 8000,
            None => 90000,
        }
    }

    pub fn fmtp_for(&self, pt: u8) -> Option<&str> {
        self.fmtp
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, v)| v.as_str())
    }

    /// Replace the fmtp of `pt`, or add one.
    pub fn set_fmtp(&mut self, pt: u8, value: String) {
        match self.fmtp.iter_mut().find(|(p, _)| *p == pt) {
            Some(entry) => entry.1 = value,
            None => self.fmtp.push((pt, value)),
        }
    }

    fn write(&self, out: &mut String) {
        let _ = write!(out, "m={} {} {}", self.kind, self.port, self.proto);
        for format in &self.formats {
            out.push(' ');
            out.push_str(format);
        }
        out.push_str("\r\n");
        for line in &self.lines {
            push_line(out, line);
        }
        for map in &self.rtpmap {
            let _ = write!(
                out,
                "a=rtpmap:{} {}/{}",
                map.payload_type, map.encoding, map.clock_rate
            );
            if let Some(channels) = map.channels {
                let _ = write!(out, "/{channels}");
            }
            out.push_str("\r\n");
        }
        for (pt, value) in &self.fmtp {
            if value.is_empty() {
                let _ = write!(out, "a=fmtp:{pt}\r\n");
            } else {
                let _ = write!(out, "a=fmtp:{pt} {value}\r\n");
            }
        }
        if let Some(control) = &self.control {
            let _ = write!(out, "a=control:{control}\r\n");
        }
    }
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push_str("\r\n");
}

fn line_type(line: &str) -> Option<u8> {
    line.as_bytes().first().copied()
}

impl Sdp {
    /// The SDP served to RTSP readers: the publisher's session lines with defaults filled in
    /// for missing `v=`/`o=`/`s=`/`t=`, `c=IN IP4 0.0.0.0`, `a=control:*`, every port 0 and
    /// each media's control set to `trackID=<index>`. Media-level `c=` lines are dropped so a
    /// publisher's (possibly multicast) address cannot steer readers' transport choice; all
    /// other lines are untouched.
    pub fn for_readers(&self) -> Sdp {
        let first = |t: u8, default: &str| {
            self.session
                .iter()
                .find(|l| line_type(l) == Some(t))
                .map_or_else(|| default.to_owned(), Clone::clone)
        };
        let mut session = vec![
            first(b'v', DEFAULT_VERSION),
            first(b'o', DEFAULT_ORIGIN),
            first(b's', DEFAULT_SESSION_NAME),
        ];
        // Keep the RFC 8866 order: c= goes before b=/t=/.../a=, t= before r=/z=/k=/a=.
        let mut need_connection = true;
        let mut need_timing = !self.session.iter().any(|l| line_type(l) == Some(b't'));
        for line in &self.session {
            let t = line_type(line).unwrap_or(0);
            if matches!(t, b'v' | b'o' | b's' | b'c') {
                continue;
            }
            if need_connection && b"btrzka".contains(&t) {
                session.push(READER_CONNECTION.to_owned());
                need_connection = false;
            }
            if need_timing && b"rzka".contains(&t) {
                session.push(DEFAULT_TIMING.to_owned());
                need_timing = false;
            }
            session.push(line.clone());
        }
        if need_connection {
            session.push(READER_CONNECTION.to_owned());
        }
        if need_timing {
            session.push(DEFAULT_TIMING.to_owned());
        }

        let medias = self
            .medias
            .iter()
            .enumerate()
            .map(|(index, media)| Media {
                port: 0,
                control: Some(format!("trackID={index}")),
                lines: media
                    .lines
                    .iter()
                    .filter(|l| line_type(l) != Some(b'c'))
                    .cloned()
                    .collect(),
                ..media.clone()
            })
            .collect();
        Sdp {
            session,
            session_control: Some("*".to_owned()),
            medias,
        }
    }

    /// Serialize with CRLF line endings: session lines, session `a=control`, then for each
    /// media its `m=` line, other lines, rtpmaps, fmtps and `a=control`.
    pub fn write(&self) -> String {
        let mut out = String::new();
        for line in &self.session {
            push_line(&mut out, line);
        }
        if let Some(control) = &self.session_control {
            let _ = write!(out, "a=control:{control}\r\n");
        }
        for media in &self.medias {
            media.write(&mut out);
        }
        out
    }

    /// Which media a SETUP URL refers to. Tries, in order: an exact match of the media's
    /// control; the URL ending in the (relative) control at a path boundary, or an absolute
    /// control ending in the given relative one; a unique match of the last path segment
    /// (absolute controls whose host differs from what the client used); and finally the
    /// only media when it has no specific control.
    pub fn media_index_for_control(&self, control: &str) -> Option<usize> {
        let wanted = normalize_control(control);
        let controls: Vec<Option<&str>> = self
            .medias
            .iter()
            .map(|m| m.control.as_deref().map(normalize_control))
            .map(|c| c.filter(|c| !c.is_empty() && *c != "*"))
            .collect();

        if let Some(i) = controls.iter().position(|c| *c == Some(wanted)) {
            return Some(i);
        }
        let suffix_match = |c: &str| ends_at_boundary(wanted, c) || ends_at_boundary(c, wanted);
        if let Some(i) = controls.iter().position(|c| c.is_some_and(suffix_match)) {
            return Some(i);
        }
        let segment = last_segment(wanted);
        if !segment.is_empty() {
            let mut matches = controls
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_some_and(|c| last_segment(c) == segment));
            if let (Some((i, _)), None) = (matches.next(), matches.next()) {
                return Some(i);
            }
        }
        (self.medias.len() == 1 && controls[0].is_none()).then_some(0)
    }
}

fn normalize_control(control: &str) -> &str {
    control.trim().trim_end_matches('/')
}

/// Does `url` end with `tail`, where `tail` is a whole path segment (or a query)?
fn ends_at_boundary(url: &str, tail: &str) -> bool {
    if tail.is_empty() || !url.ends_with(tail) {
        return false;
    }
    let head = &url[..url.len() - tail.len()];
    head.is_empty() || head.ends_with('/') || tail.starts_with(['/', '?'])
}

/// Last path segment of a URL, ignoring a query string.
fn last_segment(url: &str) -> &str {
    let path = url.split('?').next().unwrap_or(url);
    let path = path.trim_end_matches('/');
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG: &str = "v=0\n\
o=- 0 0 IN IP4 127.0.0.1\n\
s=No Name\n\
c=IN IP4 127.0.0.1\n\
t=0 0\n\
a=tool:libavformat 61.7.100\n\
m=video 0 RTP/AVP 96\n\
b=AS:250\n\
a=rtpmap:96 H264/90000\n\
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z00AHpWoKA9oAPGU,aO48gA==; profile-level-id=4D001E\n\
a=control:streamid=0\n\
m=audio 0 RTP/AVP 97\n\
b=AS:48\n\
a=rtpmap:97 MPEG4-GENERIC/48000/1\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1188\n\
a=control:streamid=1\n";

    const GSTREAMER: &str = "v=0\r\n\
o=- 1188340656180883 1 IN IP4 127.0.0.1\r\n\
s=Session streamed with GStreamer\r\n\
i=rtsp-server\r\n\
t=0 0\r\n\
a=tool:GStreamer\r\n\
a=type:broadcast\r\n\
a=range:npt=now-\r\n\
m=video 0 RTP/AVP 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtpmap:96 H264/90000\r\n\
a=framerate:30\r\n\
a=ts-refclk:local\r\n\
a=mediaclk:sender\r\n\
a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z2QAH6zZQFAFuwEQAAADABAAAAMDyPGDGWA=,aOvjyyLA;profile-level-id=64001f\r\n\
a=control:stream=0\r\n\
m=audio 0 RTP/AVP 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtpmap:97 OPUS/48000/2\r\n\
a=fmtp:97 sprop-stereo=0\r\n\
a=control:stream=1\r\n";

    /// Hikvision-style DESCRIBE answer with absolute controls and ONVIF metadata.
    const CAMERA: &str = "v=0\r\n\
o=- 1109162014219182 1109162014219192 IN IP4 192.168.1.64\r\n\
s=Media Presentation\r\n\
e=NONE\r\n\
b=AS:5050\r\n\
t=0 0\r\n\
a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/?transportmode=unicast\r\n\
m=video 0 RTP/AVP 96\r\n\
c=IN IP4 0.0.0.0\r\n\
b=AS:5000\r\n\
a=recvonly\r\n\
a=x-dimensions:1920,1080\r\n\
a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=1?transportmode=unicast\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=420029; packetization-mode=1; sprop-parameter-sets=Z01AKI2NQDwBE/LCAAAOEAACvyAI,aO44gA==\r\n\
a=Media_header:MEDIAINFO=494D4B48010100000400000100000000000000000000000000000000000000000000000000000000;\r\n\
a=appversion:1.0\r\n\
m=application 0 RTP/AVP 107\r\n\
c=IN IP4 0.0.0.0\r\n\
b=AS:50\r\n\
a=recvonly\r\n\
a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=3?transportmode=unicast\r\n\
a=rtpmap:107 vnd.onvif.metadata/90000\r\n";

    /// Camera with `a=control:*`, a range, H.265 and static-PT PCMA, no t= line, out of order.
    const PCMA_CAMERA: &str = "v=0\r\n\
o=- 38990265062388 38990265062388 IN IP4 10.0.0.5\r\n\
s=RTSP Session\r\n\
a=control:*\r\n\
a=range:npt=0-\r\n\
c=IN IP4 0.0.0.0\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H265/90000\r\n\
a=fmtp:96 sprop-vps=QAEMAf//AWAAAAMAAAMAAAMAAAMAlqwJ;sprop-sps=QgEBAWAAAAMAAAMAAAMAAAMAlqADwIARB8u0;sprop-pps=RAHA8vA8kA==\r\n\
a=framerate:25.000000\r\n\
a=control:trackID=0\r\n\
m=audio 0 RTP/AVP 8\r\n\
a=control:trackID=1\r\n\
\0";

    const ONVIF_ONLY: &str = "v=0\n\
o=- 1 1 IN IP4 10.1.1.1\n\
s=meta\n\
t=0 0\n\
m=application 0 RTP/AVP 107\n\
a=rtpmap:107 vnd.onvif.metadata/90000\n\
a=sendonly\n\
a=x-custom:keep me  \n\
a=control:track3\n";

    fn roundtrip(sdp: &Sdp) {
        assert_eq!(&parse(&sdp.write()).unwrap(), sdp);
    }

    /// Our output must be acceptable to a strict, independent parser.
    fn assert_valid_sdp(text: &str) {
        let strict: Result<sdp_rs::SessionDescription, _> = text.parse();
        assert!(strict.is_ok(), "sdp-rs rejects:\n{text}\n{strict:?}");
    }

    #[test]
    fn ffmpeg_announce() {
        let sdp = parse(FFMPEG).unwrap();
        assert_eq!(
            sdp.session,
            vec![
                "v=0",
                "o=- 0 0 IN IP4 127.0.0.1",
                "s=No Name",
                "c=IN IP4 127.0.0.1",
                "t=0 0",
                "a=tool:libavformat 61.7.100"
            ]
        );
        assert_eq!(sdp.session_control, None);
        assert_eq!(sdp.medias.len(), 2);

        let video = &sdp.medias[0];
        assert_eq!(
            (video.kind.as_str(), video.port, video.proto.as_str()),
            ("video", 0, "RTP/AVP")
        );
        assert_eq!(video.formats, vec!["96"]);
        assert_eq!(video.payload_type(), Some(96));
        assert_eq!(video.control.as_deref(), Some("streamid=0"));
        assert_eq!(video.lines, vec!["b=AS:250"]);
        let (kind, map) = video.codec().unwrap();
        assert_eq!(kind, CodecKind::H264);
        assert_eq!(
            (map.encoding.as_str(), map.clock_rate, map.channels),
            ("H264", 90000, None)
        );
        assert_eq!(
            video.fmtp_for(96),
            Some("packetization-mode=1; sprop-parameter-sets=Z00AHpWoKA9oAPGU,aO48gA==; profile-level-id=4D001E")
        );
        assert_eq!(video.clock_rate(), 90000);

        let audio = &sdp.medias[1];
        let (kind, map) = audio.codec().unwrap();
        assert_eq!(kind, CodecKind::Aac);
        assert_eq!((map.clock_rate, map.channels), (48000, Some(1)));
        assert_eq!(audio.clock_rate(), 48000);
        assert!(audio.fmtp_for(97).unwrap().ends_with("config=1188"));
        assert_eq!(audio.fmtp_for(96), None);

        roundtrip(&sdp);
        assert_eq!(
            sdp.media_index_for_control("rtsp://127.0.0.1:8554/live/streamid=1"),
            Some(1)
        );
        assert_eq!(sdp.media_index_for_control("streamid=0"), Some(0));
    }

    #[test]
    fn gstreamer_announce() {
        let sdp = parse(GSTREAMER).unwrap();
        assert_eq!(sdp.medias.len(), 2);
        let video = &sdp.medias[0];
        assert_eq!(
            video.lines,
            vec![
                "c=IN IP4 0.0.0.0",
                "a=framerate:30",
                "a=ts-refclk:local",
                "a=mediaclk:sender"
            ]
        );
        assert_eq!(sdp.medias[1].codec().unwrap().0, CodecKind::Opus);
        assert_eq!(sdp.medias[1].codec().unwrap().1.channels, Some(2));
        assert!(sdp.session.contains(&"a=range:npt=now-".to_owned()));
        roundtrip(&sdp);
        assert_valid_sdp(&sdp.write());
    }

    #[test]
    fn camera_with_absolute_controls_and_metadata() {
        let sdp = parse(CAMERA).unwrap();
        assert_eq!(
            sdp.session_control.as_deref(),
            Some("rtsp://192.168.1.64:554/Streaming/Channels/101/?transportmode=unicast")
        );
        assert_eq!(sdp.medias.len(), 2);
        let meta = &sdp.medias[1];
        assert_eq!(meta.kind, "application");
        assert_eq!(meta.codec().unwrap().0, CodecKind::Other);
        assert_eq!(meta.clock_rate(), 90000);
        assert_eq!(
            sdp.media_index_for_control(
                "rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=3?transportmode=unicast"
            ),
            Some(1)
        );
        // Same track through a different host name (NAT, proxy).
        assert_eq!(
            sdp.media_index_for_control(
                "rtsp://cam.example/Streaming/Channels/101/trackID=1?transportmode=unicast"
            ),
            Some(0)
        );
        assert_eq!(sdp.media_index_for_control("trackID=2"), None);
        roundtrip(&sdp);
    }

    #[test]
    fn pcma_camera_static_payload_type() {
        let sdp = parse(PCMA_CAMERA).unwrap();
        assert_eq!(sdp.session_control.as_deref(), Some("*"));
        assert!(sdp.session.contains(&"a=range:npt=0-".to_owned()));
        let audio = &sdp.medias[1];
        assert_eq!(audio.payload_type(), Some(8));
        assert!(audio.rtpmap.is_empty());
        let (kind, map) = audio.codec().unwrap();
        assert_eq!(
            (kind, map.clock_rate, map.channels),
            (CodecKind::Pcma, 8000, Some(1))
        );
        assert_eq!(audio.clock_rate(), 8000);
        assert_eq!(sdp.medias[0].codec().unwrap().0, CodecKind::H265);
        assert_eq!(
            sdp.media_index_for_control("rtsp://10.0.0.5/ch0/trackID=1"),
            Some(1)
        );
        assert_eq!(
            sdp.media_index_for_control("rtsp://10.0.0.5/ch0/trackID=1/"),
            Some(1)
        );
        roundtrip(&sdp);

        let readers = sdp.for_readers();
        let text = readers.write();
        assert_valid_sdp(&text);
        // Missing t= inserted before the first attribute; c= replaced.
        assert_eq!(
            readers.session,
            vec![
                "v=0",
                "o=- 38990265062388 38990265062388 IN IP4 10.0.0.5",
                "s=RTSP Session",
                "c=IN IP4 0.0.0.0",
                "t=0 0",
                "a=range:npt=0-"
            ]
        );
    }

    #[test]
    fn unknown_codec_survives_for_readers() {
        let sdp = parse(ONVIF_ONLY).unwrap();
        let readers = sdp.for_readers();
        let media = &readers.medias[0];
        assert_eq!(media.lines, vec!["a=sendonly", "a=x-custom:keep me  "]);
        assert_eq!(media.rtpmap, sdp.medias[0].rtpmap);
        assert_eq!(media.control.as_deref(), Some("trackID=0"));
        let text = readers.write();
        assert_eq!(
            text,
            "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=meta\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
a=control:*\r\n\
m=application 0 RTP/AVP 107\r\na=sendonly\r\na=x-custom:keep me  \r\n\
a=rtpmap:107 vnd.onvif.metadata/90000\r\na=control:trackID=0\r\n"
        );
        assert_valid_sdp(&text);
        // Only one media and a relative control: any URL ending in it resolves.
        assert_eq!(sdp.media_index_for_control("rtsp://h/x/track3"), Some(0));
    }

    #[test]
    fn for_readers_rewrites_only_what_it_must() {
        let sdp = parse(CAMERA).unwrap();
        let readers = sdp.for_readers();
        assert_eq!(readers.session_control.as_deref(), Some("*"));
        assert_eq!(
            readers.session,
            vec![
                "v=0",
                "o=- 1109162014219182 1109162014219192 IN IP4 192.168.1.64",
                "s=Media Presentation",
                "e=NONE",
                "c=IN IP4 0.0.0.0",
                "b=AS:5050",
                "t=0 0"
            ]
        );
        for (i, (before, after)) in sdp.medias.iter().zip(&readers.medias).enumerate() {
            assert_eq!(after.port, 0);
            assert_eq!(after.control, Some(format!("trackID={i}")));
            let kept: Vec<_> = before
                .lines
                .iter()
                .filter(|l| !l.starts_with("c="))
                .collect();
            assert_eq!(after.lines.iter().collect::<Vec<_>>(), kept);
            assert_eq!(
                (&after.rtpmap, &after.fmtp, &after.formats),
                (&before.rtpmap, &before.fmtp, &before.formats)
            );
            assert_eq!(
                readers.media_index_for_control(&format!("rtsp://srv:8554/cam/trackID={i}")),
                Some(i)
            );
        }
        let text = readers.write();
        assert_valid_sdp(&text);
        assert!(text.contains("a=Media_header:MEDIAINFO=494D4B48"));
        roundtrip(&readers);

        let ffmpeg = parse(FFMPEG).unwrap().for_readers();
        assert_eq!(ffmpeg.session[3], "c=IN IP4 0.0.0.0");
        assert_eq!(
            ffmpeg
                .session
                .iter()
                .filter(|l| l.starts_with("c="))
                .count(),
            1
        );
        assert_valid_sdp(&ffmpeg.write());

        // An SDP without the mandatory session lines gets defaults.
        let bare = parse("m=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n").unwrap();
        assert_eq!(bare.medias[0].port, 5004);
        let readers = bare.for_readers();
        assert_eq!(
            readers.session,
            vec![
                DEFAULT_VERSION,
                DEFAULT_ORIGIN,
                DEFAULT_SESSION_NAME,
                READER_CONNECTION,
                DEFAULT_TIMING
            ]
        );
        assert_eq!(readers.medias[0].port, 0);
        assert_valid_sdp(&readers.write());
    }

    #[test]
    fn write_order() {
        let mut sdp = parse(FFMPEG).unwrap();
        sdp.medias[0].set_fmtp(96, "packetization-mode=1".to_owned());
        sdp.medias[0].set_fmtp(98, String::new());
        let text = sdp.write();
        let video: Vec<&str> = text
            .split("\r\n")
            .skip_while(|l| !l.starts_with("m=video"))
            .take(6)
            .collect();
        assert_eq!(
            video,
            vec![
                "m=video 0 RTP/AVP 96",
                "b=AS:250",
                "a=rtpmap:96 H264/90000",
                "a=fmtp:96 packetization-mode=1",
                "a=fmtp:98",
                "a=control:streamid=0"
            ]
        );
        assert!(text.ends_with("a=control:streamid=1\r\n"));
        assert!(
            !text.contains("\n\n") && text.matches('\n').count() == text.matches("\r\n").count()
        );
        roundtrip(&sdp);
    }

    #[test]
    fn lenient_details() {
        // Tabs, odd spacing, port counts, unparseable rtpmap kept verbatim, BOM.
        let sdp = parse(
            "\u{feff}v=0\r\n\r\nm=video  5000/2\tRTP/AVP 96 97\r\n\
a=rtpmap:96\tH264/90000\r\na=rtpmap:97 weird\r\na=fmtp:96\r\na=fmtp:x y\r\na=control: trackID=5 \r\n",
        )
        .unwrap();
        let m = &sdp.medias[0];
        assert_eq!((m.port, m.formats.len()), (5000, 2));
        assert_eq!(m.rtpmap.len(), 1);
        assert_eq!(m.lines, vec!["a=rtpmap:97 weird", "a=fmtp:x y"]);
        assert_eq!(m.fmtp, vec![(96, String::new())]);
        assert_eq!(m.control.as_deref(), Some("trackID=5"));
        roundtrip(&sdp);
        // No m= line at all is fine.
        let sdp = parse("v=0\no=- 0 0 IN IP4 1.2.3.4\ns=x\nt=0 0\n").unwrap();
        assert!(sdp.medias.is_empty());
        assert_eq!(parse("").unwrap(), Sdp::default());
        // Unknown codecs and dynamic PTs without rtpmap.
        let sdp =
            parse("m=audio 0 RTP/AVP 101\nm=video 0 RTP/AVP 120\nm=text 0 RTP/AVP x\n").unwrap();
        assert_eq!(sdp.medias[0].codec(), None);
        assert_eq!(sdp.medias[0].clock_rate(), 8000);
        assert_eq!(sdp.medias[1].clock_rate(), 90000);
        assert_eq!(sdp.medias[2].payload_type(), None);
    }

    #[test]
    fn malformed_inputs_name_the_line() {
        let err = |text: &str| parse(text).unwrap_err();
        assert_eq!(
            err("v=0\ns=x\nm=video abc RTP/AVP 96\n"),
            SdpError::Malformed {
                line: 3,
                what: "bad port in m= line"
            }
        );
        assert_eq!(
            err("v=0\nm=video 70000 RTP/AVP 96\n"),
            SdpError::Malformed {
                line: 2,
                what: "bad port in m= line"
            }
        );
        assert_eq!(
            err("v=0\nm=video 0/x RTP/AVP 96\n"),
            SdpError::Malformed {
                line: 2,
                what: "bad port count in m= line"
            }
        );
        assert!(matches!(
            err("v=0\nm=video 0\n"),
            SdpError::Malformed { line: 2, .. }
        ));
        assert!(matches!(
            err("v=0\r\nhello\r\n"),
            SdpError::Malformed { line: 2, .. }
        ));
        assert!(matches!(
            err("v=0\n=x\n"),
            SdpError::Malformed { line: 2, .. }
        ));
        assert!(matches!(
            err("v=0\n1=x\n"),
            SdpError::Malformed { line: 2, .. }
        ));
        assert!(matches!(
            err("v=0\na=x\u{7}y\n"),
            SdpError::Malformed { line: 2, .. }
        ));
        assert!(matches!(
            err("v=0\na=x\r\r\n"),
            SdpError::Malformed { line: 2, .. }
        ));

        let many: String = (0..33)
            .map(|i| format!("m=video 0 RTP/AVP {i}\n"))
            .collect();
        assert_eq!(
            err(&format!("v=0\n{many}")),
            SdpError::TooManyMedias { line: 34 }
        );
        let ok: String = (0..32)
            .map(|i| format!("m=video 0 RTP/AVP {i}\n"))
            .collect();
        assert_eq!(parse(&ok).unwrap().medias.len(), 32);

        let long = format!("v=0\na={}\n", "x".repeat(MAX_LINE_LEN));
        assert_eq!(err(&long), SdpError::LineTooLong { line: 2 });
        let lines: String = (0..=MAX_LINES).map(|_| "a=x\n").collect();
        assert_eq!(
            err(&lines),
            SdpError::TooManyLines {
                line: MAX_LINES + 1
            }
        );
        let big = "a=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n".repeat(1100);
        assert_eq!(err(&big), SdpError::TooLarge(big.len()));
        // The size limit counts CRLF as one byte.
        let at_limit: String = format!("{}\n", "a=".to_owned() + &"y".repeat(1021)).repeat(64);
        assert_eq!(at_limit.len(), MAX_SDP_LEN);
        assert!(parse(&at_limit).is_ok());
        assert!(parse(&at_limit.replace('\n', "\r\n")).is_ok());
        let msg = err("v=0\nm=video abc RTP/AVP 96\n").to_string();
        assert_eq!(msg, "line 2: bad port in m= line");
    }

    #[test]
    fn control_matching() {
        let sdp = parse(
            "m=video 0 RTP/AVP 96\na=control:trackID=1\n\
m=audio 0 RTP/AVP 97\na=control:trackID=11\n\
m=audio 0 RTP/AVP 0\na=control:?ctype=audio\n",
        )
        .unwrap();
        assert_eq!(sdp.media_index_for_control("trackID=1"), Some(0));
        assert_eq!(
            sdp.media_index_for_control("rtsp://h/p/trackID=11"),
            Some(1)
        );
        assert_eq!(sdp.media_index_for_control("rtsp://h/p/trackID=1"), Some(0));
        assert_eq!(sdp.media_index_for_control("rtsp://h/ptrackID=1"), None);
        assert_eq!(
            sdp.media_index_for_control("rtsp://h/p?ctype=audio"),
            Some(2)
        );
        assert_eq!(sdp.media_index_for_control("rtsp://h/p"), None);
        assert_eq!(sdp.media_index_for_control(""), None);

        // A lone media without a control is the aggregate URL itself.
        let single = parse("m=video 0 RTP/AVP 96\n").unwrap();
        assert_eq!(single.media_index_for_control("rtsp://h/anything"), Some(0));
        let star = parse("m=video 0 RTP/AVP 96\na=control:*\nm=audio 0 RTP/AVP 0\n").unwrap();
        assert_eq!(star.media_index_for_control("rtsp://h/anything"), None);
    }

    /// What the `sdp_parse` fuzz target checks, over deterministic mutations of the samples.
    #[test]
    fn mutated_samples_roundtrip() {
        let mut x = 0x2545_f491_u64;
        let mut rand = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let alphabet = b" \t\r\n=/:;,*0123456789amvcbtopsrx\0";
        for sample in [FFMPEG, GSTREAMER, CAMERA, PCMA_CAMERA, ONVIF_ONLY] {
            for _ in 0..400 {
                let mut bytes = sample.as_bytes().to_vec();
                for _ in 0..1 + rand(4) {
                    let at = rand(bytes.len());
                    match rand(3) {
                        0 => bytes[at] = alphabet[rand(alphabet.len())],
                        1 => {
                            bytes.remove(at);
                        }
                        _ => bytes.insert(at, alphabet[rand(alphabet.len())]),
                    }
                }
                let Ok(text) = std::str::from_utf8(&bytes) else {
                    continue;
                };
                if let Ok(sdp) = parse(text) {
                    let again = parse(&sdp.write()).expect("written SDP parses");
                    assert_eq!(again, sdp, "input:\n{text}");
                    let readers = sdp.for_readers();
                    for i in 0..readers.medias.len() {
                        let url = format!("rtsp://h/p/trackID={i}");
                        assert_eq!(readers.media_index_for_control(&url), Some(i));
                    }
                }
            }
        }
    }
}

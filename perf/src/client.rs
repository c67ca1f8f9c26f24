//! RTSP client pieces shared by publishers and viewers: URLs, requests, SDP → SETUP URLs,
//! and a small blocking request/response helper.

use bytes::BytesMut;
use corecast::rtsp::message::{self, Message, Method, Request, Response};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

pub const USER_AGENT: &str = "corecast-perf";

/// `rtsp://host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspUrl {
    pub addr: SocketAddr,
    /// Everything after the authority, without the leading '/'.
    pub path: String,
    /// The URL as given (no credentials support: the harness never needs them).
    pub url: String,
}

pub fn parse_url(url: &str) -> Result<RtspUrl, String> {
    // http:// for stream.mp4 viewers.
    let (rest, port) = match url.strip_prefix("rtsp://") {
        Some(r) => (r, 554),
        None => (
            url.strip_prefix("http://")
                .ok_or_else(|| format!("not an rtsp:// URL: {url}"))?,
            80,
        ),
    };
    let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
    let hostport = if auth.contains(':') {
        auth.to_string()
    } else {
        format!("{auth}:{port}")
    };
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| format!("no IPv4 address for {hostport}"))?;
    Ok(RtspUrl {
        addr,
        path: path.to_string(),
        url: url.to_string(),
    })
}

/// Serialises a request with CSeq, User-Agent and (if any) Session.
pub fn request(
    method: Method,
    url: &str,
    cseq: u32,
    session: Option<&str>,
    extra: &[(&str, &str)],
    out: &mut Vec<u8>,
) {
    let mut r = Request::new(method, url)
        .with_header("CSeq", cseq.to_string())
        .with_header("User-Agent", USER_AGENT);
    if let Some(s) = session {
        r = r.with_header("Session", s);
    }
    for (k, v) in extra {
        r = r.with_header(*k, *v);
    }
    r.write_to(out);
}

/// The Session id of a response, without `;timeout=`.
pub fn session_id(resp: &Response) -> Option<String> {
    resp.headers
        .get("Session")
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
}

/// SETUP URLs of every media in a DESCRIBE answer, resolved against Content-Base.
pub fn setup_urls(request_url: &str, resp: &Response) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(&resp.body).map_err(|_| "SDP is not UTF-8".to_string())?;
    let sdp = corecast::sdp::parse(text).map_err(|e| format!("bad SDP: {e}"))?;
    if sdp.medias.is_empty() {
        return Err("SDP has no media".into());
    }
    let base = resp
        .headers
        .get("Content-Base")
        .or_else(|| resp.headers.get("Content-Location"))
        .unwrap_or(request_url)
        .to_string();
    Ok(sdp
        .medias
        .iter()
        .map(|m| resolve_control(&base, m.control.as_deref()))
        .collect())
}

pub fn resolve_control(base: &str, control: Option<&str>) -> String {
    match control {
        None | Some("*") | Some("") => base.to_string(),
        Some(c) if c.starts_with("rtsp://") || c.starts_with("rtsps://") => c.to_string(),
        Some(c) => {
            if base.ends_with('/') {
                format!("{base}{c}")
            } else {
                format!("{base}/{c}")
            }
        }
    }
}

/// `interleaved=a-b` of a Transport header value.
pub fn interleaved_of(transport: &str) -> Option<(u8, u8)> {
    corecast::rtsp::transport::parse(transport)
        .ok()?
        .first()?
        .interleaved
}

/// `server_port=a-b` of a Transport header value.
pub fn server_port_of(transport: &str) -> Option<(u16, u16)> {
    corecast::rtsp::transport::parse(transport)
        .ok()?
        .first()?
        .server_port
}

/// A blocking RTSP connection for the control phase of a publisher.
pub struct Blocking {
    pub stream: TcpStream,
    buf: BytesMut,
    cseq: u32,
    pub session: Option<String>,
}

impl Blocking {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, String> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(timeout)).ok();
        stream.set_write_timeout(Some(timeout)).ok();
        Ok(Blocking {
            stream,
            buf: BytesMut::with_capacity(8192),
            cseq: 0,
            session: None,
        })
    }

    /// The socket and what was read past the last response (media after PLAY).
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buf)
    }

    /// Sends a request and waits for its response (interleaved data before it is skipped).
    pub fn call(
        &mut self,
        method: Method,
        url: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &str)>,
    ) -> Result<Response, String> {
        self.cseq += 1;
        let mut r = Request::new(method.clone(), url)
            .with_header("CSeq", self.cseq.to_string())
            .with_header("User-Agent", USER_AGENT);
        if let Some(s) = &self.session {
            r = r.with_header("Session", s.as_str());
        }
        for (k, v) in extra {
            r = r.with_header(*k, *v);
        }
        if let Some((ct, b)) = body {
            r = r.with_body(ct, b.as_bytes().to_vec());
        }
        let mut out = Vec::new();
        r.write_to(&mut out);
        self.stream
            .write_all(&out)
            .map_err(|e| format!("{method} write: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match message::parse(&mut self.buf) {
                Ok(Some(Message::Response(resp))) => {
                    if resp.status != 200 {
                        return Err(format!("{method} {url}: {} {}", resp.status, resp.reason));
                    }
                    if let Some(s) = session_id(&resp) {
                        self.session = Some(s);
                    }
                    return Ok(resp);
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return Err(format!("{method}: bad response: {e}")),
            }
            if Instant::now() > deadline {
                return Err(format!("{method}: no response"));
            }
            let mut tmp = [0u8; 8192];
            match self.stream.read(&mut tmp) {
                Ok(0) => return Err(format!("{method}: connection closed")),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) => return Err(format!("{method} read: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_controls() {
        let u = parse_url("rtsp://127.0.0.1:8554/cam/main").unwrap();
        assert_eq!(u.addr, "127.0.0.1:8554".parse().unwrap());
        assert_eq!(u.path, "cam/main");
        assert_eq!(parse_url("rtsp://127.0.0.1/x").unwrap().addr.port(), 554);
        assert!(parse_url("http://x/").is_err());
        assert_eq!(
            resolve_control("rtsp://h:1/s/", Some("stream=0")),
            "rtsp://h:1/s/stream=0"
        );
        assert_eq!(
            resolve_control("rtsp://h:1/s", Some("trackID=1")),
            "rtsp://h:1/s/trackID=1"
        );
        assert_eq!(
            resolve_control("rtsp://h:1/s", Some("rtsp://o:2/t")),
            "rtsp://o:2/t"
        );
        assert_eq!(resolve_control("rtsp://h:1/s", Some("*")), "rtsp://h:1/s");
    }

    #[test]
    fn transport_fields() {
        assert_eq!(
            interleaved_of("RTP/AVP/TCP;unicast;interleaved=2-3"),
            Some((2, 3))
        );
        assert_eq!(
            server_port_of("RTP/AVP;unicast;client_port=5000-5001;server_port=8000-8001"),
            Some((8000, 8001))
        );
    }
}

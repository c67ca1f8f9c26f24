//! One WebRTC viewer's protocol state (WHEP offer/answer, ICE check, DTLS client, SRTP
//! receive), driven by the viewer worker's epoll loop in `viewer.rs`. The sans-IO pieces
//! come from the corecast library; this file only glues them to one UDP socket.

use crate::util::Rng;
use corecast::webrtc::dtls::{DtlsEvent, DtlsSession, Fingerprint, Identity};
use corecast::webrtc::srtp::{Role, SrtpContext};
use corecast::webrtc::stun::{self, Builder, Class, Message, METHOD_BINDING};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::SocketAddr;
use std::time::Instant;

/// Largest WHEP answer we accept (an answer is ~1-2 KiB).
pub const MAX_ANSWER: usize = 64 * 1024;
/// Consent freshness: a check every 5 s (the server drops a silent viewer after 30 s).
pub const CONSENT_NS: u64 = 5_000_000_000;
/// ICE check retransmission before the first answer.
pub const CHECK_RETRY_NS: u64 = 200_000_000;

pub struct Rtc {
    pub sock: Socket,
    local_ufrag: String,
    remote_ufrag: String,
    remote_pwd: String,
    remote_fp: Fingerprint,
    /// WHEP resource (`Location`), for the DELETE on leave.
    pub location: Option<String>,
    tie_breaker: u64,
    pub dtls: Option<DtlsSession>,
    pub srtp: Option<SrtpContext>,
    pub next_check: u64,
    pub checked: bool,
    pub out: Vec<u8>,
}

/// Our offer: one recvonly H.264 (pt 102, packetization-mode=1) m-line, BUNDLE, rtcp-mux,
/// DTLS `actpass` (the server answers passive, so we are the DTLS client).
pub fn offer(ufrag: &str, pwd: &str, fp: &Fingerprint) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n\
         a=rtcp-mux\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=fingerprint:{}\r\n\
         a=setup:actpass\r\na=rtpmap:102 H264/90000\r\n\
         a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n",
        fp.to_sdp()
    )
}

/// Random ICE credentials: ufrag 8 chars, pwd 24 chars (RFC 8839 minimums 4 and 22).
pub fn credentials(rng: &mut Rng) -> (String, String) {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut s = |n: usize| -> String {
        (0..n)
            .map(|_| A[(rng.next_u64() % A.len() as u64) as usize] as char)
            .collect()
    };
    (s(8), s(24))
}

/// The WHEP POST carrying `sdp` to `url` (`http://host:port/api/webrtc?src=NAME`).
pub fn post_request(url: &str, sdp: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corecast-perf\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// `DELETE` of the WHEP resource (`Location: webrtc?id=ID`, relative to /api/).
pub fn delete_request(url: &str, location: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let host = rest.split_once('/').map_or(rest, |(h, _)| h);
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        format!("/api/{location}")
    };
    format!("DELETE {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: corecast-perf\r\n\r\n")
}

/// A complete HTTP answer in `buf`: `Ok(None)` while incomplete, else (status, Location,
/// body).
pub fn parse_answer(buf: &[u8]) -> Result<Option<(u16, Option<String>, String)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_ANSWER {
            return Err("WHEP answer head too long".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "WHEP answer head not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("WHEP answer without a status")?;
    let (mut len, mut location) = (0usize, None);
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse().map_err(|_| "bad Content-Length")?;
        } else if k.eq_ignore_ascii_case("location") {
            location = Some(v.trim().to_string());
        }
    }
    if len > MAX_ANSWER {
        return Err(format!("WHEP answer body of {len} bytes"));
    }
    let body = end + 4;
    if buf.len() < body + len {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&buf[body..body + len]).into_owned();
    Ok(Some((status, location, text)))
}

/// From an answer SDP: ICE ufrag/pwd, DTLS fingerprint and the first UDP IPv4 host
/// candidate.
pub fn answer_params(sdp: &str) -> Result<(String, String, Fingerprint, SocketAddr), String> {
    let (mut ufrag, mut pwd, mut fp, mut cand) = (None, None, None, None);
    for l in sdp.lines() {
        let l = l.trim();
        if let Some(v) = l.strip_prefix("a=ice-ufrag:") {
            ufrag.get_or_insert_with(|| v.to_string());
        } else if let Some(v) = l.strip_prefix("a=ice-pwd:") {
            pwd.get_or_insert_with(|| v.to_string());
        } else if let Some(v) = l.strip_prefix("a=fingerprint:") {
            if fp.is_none() {
                fp = Some(Fingerprint::parse_sdp(v).map_err(|e| format!("answer: {e}"))?);
            }
        } else if let Some(v) = l.strip_prefix("a=candidate:") {
            // foundation component transport priority ip port typ host ...
            let f: Vec<&str> = v.split_whitespace().collect();
            if cand.is_none() && f.len() >= 6 && f[2].eq_ignore_ascii_case("udp") {
                if let (Ok(ip), Ok(port)) = (f[4].parse::<std::net::Ipv4Addr>(), f[5].parse()) {
                    cand = Some(SocketAddr::from((ip, port)));
                }
            }
        }
    }
    Ok((
        ufrag.ok_or("answer without ice-ufrag")?,
        pwd.ok_or("answer without ice-pwd")?,
        fp.ok_or("answer without fingerprint")?,
        cand.ok_or("answer without a UDP IPv4 candidate")?,
    ))
}

impl Rtc {
    /// A UDP socket connected to the answer's candidate.
    pub fn new(
        local_ufrag: String,
        answer: &str,
        location: Option<String>,
        tie_breaker: u64,
    ) -> Result<Rtc, String> {
        let (remote_ufrag, remote_pwd, remote_fp, cand) = answer_params(answer)?;
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| format!("udp socket: {e}"))?;
        sock.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))
            .map_err(|e| format!("udp bind: {e}"))?;
        sock.connect(&SockAddr::from(cand))
            .map_err(|e| format!("udp connect {cand}: {e}"))?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        // Room for ~4 s of a 1 Mbit/s stream: the harness shares two cores with the server,
        // and the 208 KiB default overflows whenever a viewer thread is late by ~1 s.
        let _ = sock.set_recv_buffer_size(crate::viewer::UDP_RCVBUF);
        Ok(Rtc {
            sock,
            local_ufrag,
            remote_ufrag,
            remote_pwd,
            remote_fp,
            location,
            tie_breaker,
            dtls: None,
            srtp: None,
            next_check: 0,
            checked: false,
            out: Vec::new(),
        })
    }

    /// Sends a binding request (USE-CANDIDATE, ICE-CONTROLLING, integrity, fingerprint):
    /// the nomination at start, consent afterwards.
    pub fn send_check(&mut self, tid: [u8; 12]) -> std::io::Result<()> {
        let user = format!("{}:{}", self.remote_ufrag, self.local_ufrag);
        let key = stun::integrity_key(self.remote_pwd.as_bytes());
        self.out.clear();
        Builder::new(&mut self.out, Class::Request, METHOD_BINDING, &tid)
            .username(user.as_bytes())
            .priority(0x6e00_01ff)
            .use_candidate()
            .ice_controlling(self.tie_breaker)
            .integrity(&key)
            .fingerprint();
        self.sock.send(&self.out).map(|_| ())
    }

    /// A STUN datagram: the first success answer starts the DTLS handshake.
    pub fn on_stun(&mut self, data: &[u8], identity: &Identity) -> Result<(), String> {
        let m = Message::parse(data).map_err(|e| format!("STUN: {e}"))?;
        if m.class != Class::Success || self.dtls.is_some() {
            return Ok(());
        }
        self.checked = true;
        let now = Instant::now();
        self.dtls = Some(DtlsSession::new(
            identity,
            Role::Client,
            self.remote_fp,
            now,
        ));
        self.pump().map(|_| ())
    }

    /// A DTLS datagram; returns true when the handshake just completed.
    pub fn on_dtls(&mut self, data: &[u8]) -> Result<bool, String> {
        let Some(d) = self.dtls.as_mut() else {
            return Ok(false);
        };
        d.handle_datagram(data, Instant::now())
            .map_err(|e| format!("DTLS: {e}"))?;
        self.pump()
    }

    /// DTLS retransmission timer; returns true when the handshake just completed.
    pub fn on_timer(&mut self, now: Instant) -> Result<bool, String> {
        let Some(d) = self.dtls.as_mut() else {
            return Ok(false);
        };
        if d.next_timeout().is_some_and(|t| t <= now) {
            d.handle_timeout(now).map_err(|e| format!("DTLS: {e}"))?;
            return self.pump();
        }
        Ok(false)
    }

    /// Sends what DTLS produced; keeps the receive SRTP context when it connects.
    fn pump(&mut self) -> Result<bool, String> {
        let Some(d) = self.dtls.as_mut() else {
            return Ok(false);
        };
        let sock = &self.sock;
        let mut connected = false;
        loop {
            match d.poll(&mut |p| {
                // Lost handshake datagrams are retransmitted by the DTLS timer.
                let _ = sock.send(p);
            }) {
                Ok(Some(DtlsEvent::Connected(keys))) => {
                    self.srtp = Some(keys.recv);
                    connected = true;
                }
                Ok(Some(DtlsEvent::Closed)) => return Err("DTLS closed by the server".into()),
                Ok(None) => return Ok(connected),
                Err(e) => return Err(format!("DTLS: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_parsing() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=ice-ufrag:0abc\r\n\
                   a=ice-pwd:pwpwpwpwpwpwpwpwpwpwpwpw\r\na=fingerprint:sha-256 \
                   00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:1F\r\n\
                   a=candidate:1 1 tcp 100 127.0.0.1 9 typ host tcptype passive\r\n\
                   a=candidate:2 1 udp 200 127.0.0.1 8555 typ host\r\n";
        let (u, p, _, c) = answer_params(sdp).unwrap();
        assert_eq!((u.as_str(), p.len()), ("0abc", 24));
        assert_eq!(c, SocketAddr::from(([127, 0, 0, 1], 8555)));
        let r = b"HTTP/1.1 201 Created\r\nLocation: webrtc?id=7\r\nContent-Length: 3\r\n\r\nv=0";
        let (s, l, b) = parse_answer(r).unwrap().unwrap();
        assert_eq!(
            (s, l.as_deref(), b.as_str()),
            (201, Some("webrtc?id=7"), "v=0")
        );
        assert!(parse_answer(&r[..r.len() - 1]).unwrap().is_none());
        assert_eq!(
            delete_request("http://h:1/api/webrtc?src=x", "webrtc?id=7"),
            "DELETE /api/webrtc?id=7 HTTP/1.1\r\nHost: h:1\r\nUser-Agent: corecast-perf\r\n\r\n"
        );
    }
}

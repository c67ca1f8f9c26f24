//! WebRTC signalling as go2rtc speaks it: `POST /api/webrtc?src=` in its four body formats
//! (JSON, WHEP `application/sdp` with `Location` and `DELETE`, base64 form, raw SDP), and the
//! `/api/ws` messages `webrtc/offer`, `webrtc/candidate` and Home Assistant's `webrtc`.

use super::feed::RtcFeed;
use super::{Session, State, Track, CANDIDATES, MAX_SESSIONS, SESSIONS, STATS};
use crate::api::Reply;
use crate::core::hub::Shard;
use crate::core::registry::{ConsumerInfo, ConsumerStats};
use base64::Engine as _;
use corecast::http::Request;
use corecast::webrtc::dtls::{DtlsSession, Identity};
use corecast::webrtc::ice::{Credentials, IceLite};
use corecast::webrtc::sdp::{self, AnswerParams, Direction, SdpError, StreamCodec};
use serde::{Deserialize, Serialize};
use simd_json::prelude::*;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, info};

/// A session made from an offer.
pub struct Created {
    pub sdp: String,
    pub id: String,
}

/// Answers `offer` for a viewer of `name`: starts the source, chooses the codecs, creates
/// the session on this shard. Errors are (HTTP status, text).
pub async fn offer(
    shard: &Rc<Shard>,
    name: &str,
    offer: &str,
    format_name: &'static str,
    peer: SocketAddr,
    user_agent: &str,
) -> Result<Created, (u16, String)> {
    offer_with(shard, name, offer, format_name, peer, user_agent, &[], None).await
}

/// [`offer`] with TURN/STUN servers from the signalling (Home Assistant's `ice_servers`)
/// and, for `/api/ws`, the connection whose trickled candidates belong to the session.
#[allow(clippy::too_many_arguments)]
pub async fn offer_with(
    shard: &Rc<Shard>,
    name: &str,
    offer: &str,
    format_name: &'static str,
    peer: SocketAddr,
    user_agent: &str,
    ice_servers: &[corecast::config::IceServer],
    ws_peer: Option<SocketAddr>,
) -> Result<Created, (u16, String)> {
    let Some(port) = super::port() else {
        return Err((503, "WebRTC is not listening (webrtc: listen)".into()));
    };
    // Parse first: a malformed offer costs no source start.
    let parsed = sdp::parse_offer(offer).map_err(|e| (400, format!("offer: {e}")))?;
    if !shard.registry.lock().streams.contains_key(name) {
        return Err((404, format!("stream `{name}` not found")));
    }
    if SESSIONS.with(|s| s.borrow().len()) >= MAX_SESSIONS {
        return Err((503, "too many WebRTC sessions on this shard".into()));
    }
    // What the browser can take, as a reader query: a later source of the stream
    // (`cam: [rtsp://cam, ffmpeg:cam#audio=opus]`) is dialled when only it has it.
    let query = offer_query(&parsed);
    crate::sources::lifecycle::ensure(shard, name, query.as_deref(), user_agent)
        .await
        .map_err(|e| (502, format!("stream `{name}`: {e}")))?;
    let feed =
        RtcFeed::of(shard, name).map_err(|e| (e.status(), format!("stream `{name}`: {e}")))?;
    let identity = Identity::process().map_err(|e| (500, format!("DTLS identity: {e}")))?;
    let rng = ring::rand::SystemRandom::new();
    let creds = Credentials::random_with_prefix(&rng, &format!("{:02x}", shard.id))
        .map_err(|e| (500, e.to_string()))?;
    // `stun:` candidates (first lookup) and TURN allocations: waited for ≤ 2 s each.
    if shard
        .config
        .webrtc
        .candidates
        .iter()
        .any(|c| c.starts_with("stun:"))
    {
        super::relay::stun_wait().await;
    }
    let relays = super::relay::gather(shard, ice_servers).await;
    let mut candidates = CANDIDATES.with(|c| c.borrow().clone());
    candidates.extend(relays.iter().map(|(_, line)| line.clone()));
    let ssrcs: (u32, u32) = (rand::random(), rand::random());
    let answer = sdp::build_answer(
        &parsed,
        &AnswerParams {
            ice_ufrag: &creds.ufrag,
            ice_pwd: &creds.pwd,
            fingerprint: identity.fingerprint(),
            candidates: &candidates,
            direction: Direction::SendOnly,
            codecs: &feed.codecs,
            ssrcs,
            session_id: rand::random::<u64>() >> 1,
        },
    )
    .map_err(|e| match e {
        SdpError::NoCodecMatch(_) => (500, format!("streams: {e}")),
        e => (400, format!("offer: {e}")),
    })?;
    let (mut video, mut audio) = (None, None);
    let mut tracks = Vec::new();
    for m in &answer.medias {
        match &m.chosen {
            Some(c) => {
                let is_video =
                    matches!(c.codec, StreamCodec::H264 { .. } | StreamCodec::H265 { .. });
                let (slot, ssrc) = if is_video {
                    (&mut video, ssrcs.0)
                } else {
                    (&mut audio, ssrcs.1)
                };
                *slot = Some(Track::new(c.payload_type, ssrc, c.clock_rate));
                tracks.extend(feed.track(is_video));
            }
            None => {
                let mut why = m.reason.clone().unwrap_or_default();
                if m.kind == "audio" {
                    if let Some(note) = &feed.audio_note {
                        why = format!("{why}: {note}");
                    }
                }
                info!(stream = name, kind = %m.kind, mid = ?m.mid, reason = %why, "webrtc: m-line not served");
            }
        }
    }
    let now = shard.clock.now();
    let ice = IceLite::new(creds.clone(), &answer.remote_ufrag, &answer.remote_pwd, now);
    let dtls = DtlsSession::new(
        &identity,
        answer.role,
        answer.remote_fingerprint,
        Instant::now(),
    );
    let consumer = Arc::new(ConsumerInfo {
        id: shard.registry.next_id(),
        shard: shard.id,
        format_name,
        protocol: "udp",
        remote_addr: crate::io::listen::peer_text(peer),
        user_agent: user_agent.chars().take(256).collect(),
        tracks,
        stats: ConsumerStats::default(),
    });
    let session = Rc::new(Session {
        id: creds.ufrag.clone(),
        name: name.to_string(),
        st: RefCell::new(State {
            ice,
            dtls,
            keys: None,
            video,
            audio,
            addrs: Vec::new(),
            failed: None,
            nack_budget: (0, 0),
            alert_at: None,
            last_heard: None,
        }),
        feed: Some(feed),
        whip: None,
        closed: Cell::new(false),
        waker: RefCell::new(None),
        consumer: consumer.clone(),
        created: Instant::now(),
        unpublished: Cell::new((0, 0)),
        published_at: Cell::new(0),
    });
    SESSIONS.with(|s| s.borrow_mut().insert(creds.ufrag.clone(), session.clone()));
    STATS.sessions[shard.id % 64].fetch_add(1, Relaxed);
    super::relay::attach(
        &creds.ufrag,
        relays.iter().map(|(slot, _)| *slot).collect(),
        super::relay::candidate_ips(
            parsed
                .medias
                .iter()
                .flat_map(|m| m.candidates.iter().map(String::as_str)),
        ),
        ws_peer,
    );
    shard.viewer_joined(name, consumer);
    info!(stream = name, session = %creds.ufrag, %peer, format = format_name, port = port.port, "webrtc: offer answered");
    glommio::spawn_local(super::run(shard.clone(), session)).detach();
    Ok(Created {
        sdp: answer.sdp,
        id: creds.ufrag,
    })
}

/// The offer's receivable codecs as a reader filter (`video=h264&audio=opus,pcma`), in
/// go2rtc's names; None when it names none we send.
fn offer_query(offer: &sdp::Offer) -> Option<String> {
    let mut parts = Vec::new();
    for (kind, names) in [
        ("video", &["h264", "h265"][..]),
        ("audio", &["opus", "pcma", "pcmu"][..]),
    ] {
        let mut have: Vec<&str> = Vec::new();
        for m in offer
            .medias
            .iter()
            .filter(|m| m.kind == kind && m.port != 0)
        {
            for c in &m.codecs {
                let n = c.name.to_ascii_lowercase();
                if let Some(x) = names.iter().find(|x| **x == n) {
                    if !have.contains(x) {
                        have.push(x);
                    }
                }
            }
        }
        if !have.is_empty() {
            parts.push(format!("{kind}={}", have.join(",")));
        }
    }
    (!parts.is_empty()).then(|| parts.join("&"))
}

#[derive(Deserialize)]
struct JsonOffer {
    #[serde(default)]
    sdp: Option<String>,
}

#[derive(Serialize)]
struct JsonAnswer<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    sdp: &'a str,
}

fn reply(status: u16, ctype: &'static str, body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        ctype,
        body: body.into(),
    }
}

/// Decodes `application/x-www-form-urlencoded` percent escapes (`+` is a space).
fn form_value(body: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    for pair in text.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != key {
            continue;
        }
        let b = v.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                    out.push(u8::from_str_radix(h, 16).ok()?);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        return String::from_utf8(out).ok();
    }
    None
}

/// `POST|DELETE /api/webrtc`. Returns the reply and extra headers (`Location`).
pub async fn http(
    shard: &Rc<Shard>,
    req: &Request,
    peer: SocketAddr,
) -> (Reply, Vec<(&'static str, String)>) {
    let none = Vec::new();
    match req.method.as_str() {
        "POST" => {}
        "DELETE" => {
            let Some(id) = req.query("id") else {
                return (Reply::text(400, "webrtc: `id` required"), none);
            };
            return if super::close(shard, id) {
                (Reply::text(200, "ok"), none)
            } else {
                (Reply::text(404, format!("webrtc: no session `{id}`")), none)
            };
        }
        _ => return (Reply::text(405, "method not allowed"), none),
    }
    if let Some(dst) = req.query("dst") {
        return whip(shard, req, peer, dst);
    }
    let Some(name) = req.query("src").map(str::to_string) else {
        return (Reply::text(400, "webrtc: `src` or `dst` required"), none);
    };
    let ua = req.header("user-agent").unwrap_or("").to_string();
    let ctype = req
        .header("content-type")
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let fail = |(status, text): (u16, String)| {
        debug!(stream = %name, %peer, status, error = %text, "webrtc: offer refused");
        (Reply::text(status, text), Vec::new())
    };
    match ctype.as_str() {
        "application/json" => {
            let mut body = req.body.to_vec();
            let sdp = match simd_json::from_slice::<JsonOffer>(&mut body) {
                Ok(JsonOffer { sdp: Some(s) }) => s,
                Ok(_) => return fail((400, "offer: JSON without `sdp`".into())),
                Err(e) => return fail((400, format!("offer: invalid JSON: {e}"))),
            };
            match offer(shard, &name, &sdp, "webrtc/json", peer, &ua).await {
                Ok(c) => {
                    let body = simd_json::to_vec(&JsonAnswer {
                        kind: "answer",
                        sdp: &c.sdp,
                    })
                    .unwrap_or_default();
                    (reply(200, "application/json", body), none)
                }
                Err(e) => fail(e),
            }
        }
        "application/sdp" => {
            let sdp = String::from_utf8_lossy(&req.body).into_owned();
            match offer(shard, &name, &sdp, "webrtc/whep", peer, &ua).await {
                Ok(c) => (
                    reply(201, "application/sdp", c.sdp),
                    // The id is our ufrag: its `+` and `/` are escaped (a `+` in a query
                    // reads as a space).
                    vec![(
                        "Location",
                        format!("webrtc?id={}", c.id.replace('+', "%2B").replace('/', "%2F")),
                    )],
                ),
                Err(e) => fail(e),
            }
        }
        "application/x-www-form-urlencoded" => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let Some(data) = form_value(&req.body, "data") else {
                return fail((400, "offer: form without `data`".into()));
            };
            let sdp = match b64.decode(data.trim().replace(' ', "+")) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => return fail((400, format!("offer: invalid base64: {e}"))),
            };
            match offer(shard, &name, &sdp, "webrtc/post", peer, &ua).await {
                Ok(c) => (reply(200, "text/plain", b64.encode(c.sdp)), none),
                Err(e) => fail(e),
            }
        }
        _ => {
            let sdp = String::from_utf8_lossy(&req.body).into_owned();
            match offer(shard, &name, &sdp, "webrtc/raw", peer, &ua).await {
                Ok(c) => (reply(200, "application/sdp", c.sdp), none),
                Err(e) => fail(e),
            }
        }
    }
}

/// `POST /api/webrtc?dst=NAME` (WHIP): SDP (or go2rtc's JSON) in, 201 with the answer and
/// `Location: webrtc?id=...` (its `DELETE` ends the publish).
fn whip(
    shard: &Rc<Shard>,
    req: &Request,
    peer: SocketAddr,
    dst: &str,
) -> (Reply, Vec<(&'static str, String)>) {
    let json = req.header("content-type").is_some_and(|c| {
        c.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    });
    let fail = |(status, text): (u16, String)| {
        debug!(stream = %dst, %peer, status, error = %text, "webrtc: WHIP offer refused");
        (Reply::text(status, text), Vec::new())
    };
    let sdp = if json {
        let mut body = req.body.to_vec();
        match simd_json::from_slice::<JsonOffer>(&mut body) {
            Ok(JsonOffer { sdp: Some(s) }) => s,
            Ok(_) => return fail((400, "offer: JSON without `sdp`".into())),
            Err(e) => return fail((400, format!("offer: invalid JSON: {e}"))),
        }
    } else {
        String::from_utf8_lossy(&req.body).into_owned()
    };
    let ua = req.header("user-agent").unwrap_or("");
    let c = match super::whip::publish(shard, dst, &sdp, peer, ua) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // The id is our ufrag: its `+` and `/` are escaped (a `+` in a query reads as a space).
    let location = vec![(
        "Location",
        format!("webrtc?id={}", c.id.replace('+', "%2B").replace('/', "%2F")),
    )];
    if json {
        let body = simd_json::to_vec(&JsonAnswer {
            kind: "answer",
            sdp: &c.sdp,
        })
        .unwrap_or_default();
        (reply(201, "application/json", body), location)
    } else {
        (reply(201, "application/sdp", c.sdp), location)
    }
}

/// `POST /stream/{name}/channel/0/webrtc` (RTSPtoWebRTC): form `data=<base64 offer>`,
/// answered with the base64 answer.
pub async fn legacy(shard: &Rc<Shard>, req: &Request, peer: SocketAddr, path: &str) -> Reply {
    if req.method != "POST" {
        return Reply::text(405, "method not allowed");
    }
    let name = path
        .strip_prefix("/stream/")
        .and_then(|p| p.strip_suffix("/channel/0/webrtc"))
        .unwrap_or("");
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(data) = form_value(&req.body, "data") else {
        return Reply::text(400, "offer: form without `data`");
    };
    let sdp = match b64.decode(data.trim().replace(' ', "+")) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return Reply::text(400, format!("offer: invalid base64: {e}")),
    };
    let ua = req.header("user-agent").unwrap_or("");
    match offer(shard, name, &sdp, "webrtc/post", peer, ua).await {
        Ok(c) => reply(200, "text/plain", b64.encode(c.sdp)),
        Err((status, text)) => Reply::text(status, text),
    }
}

#[derive(Serialize)]
struct WsText<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct WsHa<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    value: JsonAnswer<'a>,
}

/// One `/api/ws` message of the `webrtc` family; returns the JSON texts to send back.
pub async fn ws(
    shard: &Rc<Shard>,
    peer: SocketAddr,
    req: &Request,
    name: Option<&str>,
    kind: &str,
    value: Option<&simd_json::OwnedValue>,
) -> Vec<String> {
    // go2rtc prefixes an error with the type of the message it answers.
    let err = |e: &str| {
        let text = format!("{kind}: {e}");
        vec![simd_json::to_string(&WsText {
            kind: "error",
            value: &text,
        })
        .unwrap_or_default()]
    };
    let ua = req.header("user-agent").unwrap_or("");
    match kind {
        // ICE-lite: the viewer's addresses are learned from its checks, and ours are all
        // in the answer; its candidates only open TURN permissions for their IPs.
        "webrtc/candidate" => {
            if let Some(c) = value.and_then(|v| v.as_str()) {
                super::relay::trickled(peer, c);
            }
            Vec::new()
        }
        "webrtc/offer" => {
            let Some(name) = name else {
                return err("missing `src` in the WebSocket URL");
            };
            let Some(sdp) = value.and_then(|v| v.as_str()) else {
                return err("`value` must be the offer SDP");
            };
            match offer_with(shard, name, sdp, "webrtc/ws", peer, ua, &[], Some(peer)).await {
                Ok(c) => vec![simd_json::to_string(&WsText {
                    kind: "webrtc/answer",
                    value: &c.sdp,
                })
                .unwrap_or_default()],
                Err((_, e)) => err(&e),
            }
        }
        // Home Assistant: {"type":"webrtc","value":{"type":"offer","sdp":..,"ice_servers":[..]}}.
        "webrtc" => {
            let Some(name) = name else {
                return err("missing `src` in the WebSocket URL");
            };
            let Some(sdp) = value.and_then(|v| v.get("sdp")).and_then(|s| s.as_str()) else {
                return err("`value.sdp` missing");
            };
            // Its TURN servers give this session relay candidates (with the config's).
            let servers = super::relay::ha_servers(value);
            match offer_with(
                shard,
                name,
                sdp,
                "webrtc/hass",
                peer,
                ua,
                &servers,
                Some(peer),
            )
            .await
            {
                Ok(c) => vec![simd_json::to_string(&WsHa {
                    kind: "webrtc",
                    value: JsonAnswer {
                        kind: "answer",
                        sdp: &c.sdp,
                    },
                })
                .unwrap_or_default()],
                Err((_, e)) => err(&e),
            }
        }
        _ => err("unsupported message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_queries() {
        let offer = sdp::parse_offer(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
             a=group:BUNDLE 0 1\r\n\
             a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n\
             a=recvonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 H264/90000\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n\
             a=recvonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:8 PCMA/8000\r\n",
        )
        .unwrap();
        assert_eq!(
            offer_query(&offer).as_deref(),
            Some("video=h264&audio=opus,pcmu,pcma")
        );
    }

    #[test]
    fn form_values() {
        assert_eq!(
            form_value(b"data=YQ%3D%3D", "data").as_deref(),
            Some("YQ==")
        );
        assert_eq!(form_value(b"x=1&data=a+b", "data").as_deref(), Some("a b"));
        assert_eq!(form_value(b"data=%zz", "data"), None);
        assert_eq!(form_value(b"data=%4", "data"), None);
        assert_eq!(form_value(b"other=1", "data"), None);
    }
}

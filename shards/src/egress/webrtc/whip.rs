//! WHIP ingest (`POST /api/webrtc?dst=NAME`): a WebRTC publisher (OBS, a browser, aiortc)
//! becomes the producer of stream NAME, read by RTSP, MSE and WebRTC viewers alike.
//!
//! The answer is made on the shard that got the request; the session is made on the shard
//! that owns the stream (its ufrag carries that shard's index, so the publisher's datagrams
//! reach it as a viewer's reach its session): decrypted RTP goes straight into the
//! stream's producer, nothing crosses shards per packet.

use super::{send_to, signal::Created, Session, State, CANDIDATES, MAX_SESSIONS, SESSIONS, STATS};
use crate::core::hub::{RoomMsg, Shard};
use crate::core::producer::Producer;
use crate::core::registry::{ConsumerInfo, ConsumerStats, ProducerInfo, ProducerStats};
use bytes::Bytes;
use corecast::rtp::rtcp;
use corecast::webrtc::dtls::{DtlsSession, Fingerprint, Identity};
use corecast::webrtc::ice::{Credentials, IceLite, Remote};
use corecast::webrtc::sdp::{self, AnswerParams, Direction, StreamCodec};
use corecast::webrtc::srtp::Role;
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How often a publisher's session looks at its timers (PLI).
pub const TICK: Duration = Duration::from_millis(100);
/// A PLI goes to the publisher this often (go2rtc: every 2 s per video track), so that a
/// viewer joining waits at most that long for a keyframe...
const PLI_INTERVAL_US: u64 = 2_000_000;
/// ...and sooner when a WebRTC viewer asks for one, but not more often than this.
const PLI_MIN_GAP_US: u64 = 300_000;
/// Longest stream name a publisher may claim.
const MAX_NAME: usize = 256;
/// What we take from a publisher, preferred first.
const CODECS: [StreamCodec; 4] = [
    StreamCodec::H264 {
        profile_level_id: None,
    },
    StreamCodec::Opus,
    StreamCodec::Pcma,
    StreamCodec::Pcmu,
];

/// What the answering shard decided, for the owner shard that runs the session.
struct Start {
    name: String,
    /// The producer's SDP (one media per received track, in track order).
    sdp: String,
    creds: Credentials,
    remote_ufrag: String,
    remote_pwd: String,
    role: Role,
    fingerprint: Fingerprint,
    /// Payload type of each track, and whether it is video.
    pts: Vec<(u8, bool)>,
    peer: SocketAddr,
    user_agent: String,
}

/// A publisher session's ingest state.
pub struct Ingest {
    producer: Producer,
    pts: Vec<(u8, bool)>,
    /// Our SSRC in the PLIs we send.
    our_ssrc: u32,
    /// The publisher's video SSRC (learned from its RTP): where PLIs go.
    video_ssrc: Option<u32>,
    last_pli: u64,
    /// Keyframe requests of viewers seen so far (process-wide PLI and FIR counters): a
    /// change asks the publisher for a keyframe.
    requests_seen: u64,
    refused: u64,
}

fn viewer_requests() -> u64 {
    STATS.plis.load(Relaxed) + STATS.firs.load(Relaxed)
}

/// Answers a WHIP offer for stream `name`; the session starts on the stream's owner shard.
/// Errors are (HTTP status, text).
pub fn publish(
    shard: &Rc<Shard>,
    name: &str,
    offer: &str,
    peer: SocketAddr,
    user_agent: &str,
) -> Result<Created, (u16, String)> {
    if super::port().is_none() {
        return Err((503, "WebRTC is not listening (webrtc: listen)".into()));
    }
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(|c| c.is_control()) {
        return Err((400, "webrtc: invalid `dst` stream name".into()));
    }
    let parsed = sdp::parse_offer(offer).map_err(|e| (400, format!("offer: {e}")))?;
    // As an RTSP ANNOUNCE: any name, unless another producer holds it.
    if shard
        .registry
        .lock()
        .streams
        .get(name)
        .is_some_and(|e| e.producer.is_some())
    {
        return Err((403, format!("stream `{name}` already has a producer")));
    }
    let identity = Identity::process().map_err(|e| (500, format!("DTLS identity: {e}")))?;
    let owner = shard.owner_of(name);
    let rng = ring::rand::SystemRandom::new();
    let creds = Credentials::random_with_prefix(&rng, &format!("{owner:02x}"))
        .map_err(|e| (500, e.to_string()))?;
    let candidates = CANDIDATES.with(|c| c.borrow().clone());
    let answer = sdp::build_answer(
        &parsed,
        &AnswerParams {
            ice_ufrag: &creds.ufrag,
            ice_pwd: &creds.pwd,
            fingerprint: identity.fingerprint(),
            candidates: &candidates,
            direction: Direction::RecvOnly,
            codecs: &CODECS,
            ssrcs: (rand::random(), rand::random()),
            session_id: rand::random::<u64>() >> 1,
        },
    )
    .map_err(|e| (400, format!("offer: {e}")))?;
    let (text, pts) = media_sdp(&parsed, &answer);
    if pts.is_empty() {
        return Err((
            400,
            "offer: nothing to receive (H.264, Opus, PCMA, PCMU)".into(),
        ));
    }
    corecast::sdp::parse(&text).map_err(|e| (400, format!("offer: its media: {e}")))?;
    let start = Start {
        name: name.to_string(),
        sdp: text,
        creds: creds.clone(),
        remote_ufrag: answer.remote_ufrag,
        remote_pwd: answer.remote_pwd,
        role: answer.role,
        fingerprint: answer.remote_fingerprint,
        pts,
        peer,
        user_agent: user_agent.chars().take(256).collect(),
    };
    // The claim happens on the owner, after this reply: a publisher that raced another to
    // the same name between the check above and then gets no session (logged there).
    shard.send_room(
        owner,
        RoomMsg::Call(Box::new(move |s| start_here(s, start))),
    );
    info!(stream = name, session = %creds.ufrag, %peer, owner, "webrtc: WHIP offer answered");
    Ok(Created {
        sdp: answer.sdp,
        id: creds.ufrag,
    })
}

/// The producer's SDP: one media per m-line we receive, in the offer's words (rtpmap and
/// fmtp of the chosen payload type); with each track's payload type and whether it is video.
fn media_sdp(offer: &sdp::Offer, answer: &sdp::Answer) -> (String, Vec<(u8, bool)>) {
    let mut text = String::from("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=WHIP\r\nt=0 0\r\n");
    let mut pts = Vec::new();
    for m in &answer.medias {
        let Some(c) = &m.chosen else { continue };
        let Some(oc) = offer
            .medias
            .iter()
            .filter(|om| om.mid == m.mid && om.kind == m.kind)
            .flat_map(|om| om.codecs.iter())
            .find(|oc| oc.payload_type == c.payload_type)
        else {
            continue;
        };
        let pt = c.payload_type;
        let _ = write!(
            text,
            "m={} 0 RTP/AVP {pt}\r\na=rtpmap:{pt} {}/{}",
            m.kind, oc.name, oc.clock_rate
        );
        if m.kind == "audio" && oc.channels > 1 {
            let _ = write!(text, "/{}", oc.channels);
        }
        text.push_str("\r\n");
        if let Some(f) = &oc.fmtp {
            let _ = write!(text, "a=fmtp:{pt} {f}\r\n");
        }
        let _ = write!(text, "a=control:trackID={}\r\n", pts.len());
        pts.push((pt, m.kind == "video"));
    }
    (text, pts)
}

/// Claims the stream and starts the publisher's session (on the stream's owner shard).
fn start_here(shard: &Rc<Shard>, st: Start) {
    let name = st.name.as_str();
    if SESSIONS.with(|s| s.borrow().len()) >= MAX_SESSIONS {
        warn!(stream = name, peer = %st.peer, "WHIP publish refused: too many WebRTC sessions on this shard");
        return;
    }
    let sdp = match corecast::sdp::parse(&st.sdp) {
        Ok(s) => s,
        Err(e) => {
            warn!(stream = name, peer = %st.peer, error = %e, "WHIP publish refused: media SDP");
            return;
        }
    };
    let identity = match Identity::process() {
        Ok(i) => i,
        Err(e) => {
            warn!(stream = name, error = %e, "WHIP publish refused: DTLS identity");
            return;
        }
    };
    let peer_text = crate::io::listen::peer_text(st.peer);
    let info = Arc::new(ProducerInfo {
        id: shard.registry.next_id(),
        protocol: "webrtc",
        remote_addr: peer_text.clone(),
        url: format!("webrtc://{peer_text}/{name}"),
        user_agent: st.user_agent.clone(),
        stats: ProducerStats::default(),
    });
    let (stream, resumed) = match shard.claim_stream(name, &sdp, info.clone()) {
        Ok(v) => v,
        Err(e) => {
            warn!(stream = name, peer = %st.peer, error = %e, "WHIP publish refused");
            return;
        }
    };
    let producer = Producer::new(stream, &sdp, info);
    let producer = if resumed {
        producer.resuming()
    } else {
        producer
    };
    let now = shard.clock.now();
    // The publisher is no viewer: this record is never registered.
    let consumer = Arc::new(ConsumerInfo {
        id: 0,
        shard: shard.id,
        format_name: "webrtc/whip",
        protocol: "udp",
        remote_addr: peer_text,
        user_agent: st.user_agent,
        tracks: Vec::new(),
        stats: ConsumerStats::default(),
    });
    let session = Rc::new(Session {
        id: st.creds.ufrag.clone(),
        name: st.name.clone(),
        st: RefCell::new(State {
            ice: IceLite::new(st.creds.clone(), &st.remote_ufrag, &st.remote_pwd, now),
            dtls: DtlsSession::new(&identity, st.role, st.fingerprint, Instant::now()),
            keys: None,
            video: None,
            audio: None,
            addrs: Vec::new(),
            failed: None,
            nack_budget: (0, 0),
            alert_at: None,
            last_heard: None,
        }),
        feed: None,
        whip: Some(RefCell::new(Ingest {
            producer,
            pts: st.pts,
            our_ssrc: rand::random(),
            video_ssrc: None,
            last_pli: 0,
            requests_seen: viewer_requests(),
            refused: 0,
        })),
        closed: Cell::new(false),
        waker: RefCell::new(None),
        consumer,
        created: Instant::now(),
        unpublished: Cell::new((0, 0)),
        published_at: Cell::new(0),
    });
    SESSIONS.with(|s| {
        s.borrow_mut()
            .insert(st.creds.ufrag.clone(), session.clone())
    });
    STATS.sessions[shard.id % 64].fetch_add(1, Relaxed);
    info!(stream = name, session = %st.creds.ufrag, peer = %st.peer, resumed, "webrtc: WHIP publisher session");
    glommio::spawn_local(super::run(shard.clone(), session)).detach();
}

/// One SRTP/SRTCP datagram from the publisher: its RTP feeds the producer.
pub fn on_packet(shard: &Rc<Shard>, s: &Session, w: &RefCell<Ingest>, data: &[u8], from: Remote) {
    // Its sender reports and receiver reports are not needed.
    if corecast::rtp::is_rtcp(data) {
        return;
    }
    let mut st = s.st.borrow_mut();
    let Some(keys) = st.keys.as_mut() else { return };
    let mut buf = data.to_vec();
    let mut w = w.borrow_mut();
    let n = match keys.recv.unprotect_rtp(&mut buf) {
        Ok(n) if n >= 12 => n,
        Ok(_) => return,
        Err(e) => {
            w.refused += 1;
            if w.refused.is_power_of_two() {
                debug!(stream = %s.name, session = %s.id, peer = %from, error = %e, count = w.refused, "webrtc: publisher SRTP refused");
            }
            return;
        }
    };
    buf.truncate(n);
    st.last_heard = Some(shard.clock.now());
    let pt = buf[1] & 0x7f;
    let Some(track) = w.pts.iter().position(|(p, _)| *p == pt) else {
        return; // RTX, FEC, or a payload type we did not answer
    };
    if w.pts[track].1 {
        w.video_ssrc = Some(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
    }
    w.producer.packet(shard, track, Bytes::from(buf));
    w.producer.flush(shard);
}

/// The publisher's timers: a PLI every 2 s and when a viewer asked for a keyframe.
/// Returns why the session ends, if it does.
pub fn tick(s: &Session, w: &RefCell<Ingest>, now: u64) -> Option<String> {
    let mut w = w.borrow_mut();
    if w.producer.stream.is_closed() {
        return Some("stream ended".into());
    }
    let requests = viewer_requests();
    let since = now.saturating_sub(w.last_pli);
    let asked = requests != w.requests_seen && since >= PLI_MIN_GAP_US;
    if since >= PLI_INTERVAL_US || asked {
        send_pli(s, &mut w, now, requests);
    }
    None
}

/// Asks the publisher for a keyframe, once its video SSRC is known and DTLS is up.
fn send_pli(s: &Session, w: &mut Ingest, now: u64, requests: u64) -> Option<()> {
    let media_ssrc = w.video_ssrc?;
    let mut st = s.st.borrow_mut();
    let to = st.ice.selected()?;
    let keys = st.keys.as_mut()?;
    w.last_pli = now;
    w.requests_seen = requests;
    // A compound packet starts with a report (RFC 3550 §6.1): an empty RR, then the PLI.
    let mut pkt = vec![0x80, 201, 0, 1];
    pkt.extend_from_slice(&w.our_ssrc.to_be_bytes());
    rtcp::write_pli(&mut pkt, w.our_ssrc, media_ssrc);
    let mut out = Vec::with_capacity(pkt.len() + 32);
    keys.send.protect_rtcp(&pkt, &mut out).ok()?;
    send_to(&out, to);
    STATS.plis_sent.fetch_add(1, Relaxed);
    Some(())
}

/// The publisher is gone: its producer leaves (viewers wait `fanout.resume_ms`).
pub fn end(shard: &Rc<Shard>, s: &Session, w: &RefCell<Ingest>) {
    let stream = w.borrow().producer.stream.clone();
    info!(stream = %s.name, session = %s.id, "WHIP publisher left");
    shard.leave_owned(&stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F";

    fn answer(offer: &sdp::Offer) -> sdp::Answer {
        sdp::build_answer(
            offer,
            &AnswerParams {
                ice_ufrag: "00abcdef",
                ice_pwd: "abcdefghijklmnopqrstuvwx",
                fingerprint: Fingerprint([7; 32]),
                candidates: &[],
                direction: Direction::RecvOnly,
                codecs: &CODECS,
                ssrcs: (1, 2),
                session_id: 1,
            },
        )
        .unwrap()
    }

    #[test]
    fn publisher_media_becomes_the_producer_sdp() {
        let offer = sdp::parse_offer(&format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
             a=group:BUNDLE 0 1\r\na=fingerprint:sha-256 {FP}\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n\
             a=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 H264/90000\r\n\
             a=fmtp:97 packetization-mode=1;profile-level-id=42e01f\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n\
             a=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
        ))
        .unwrap();
        let a = answer(&offer);
        assert!(a.sdp.contains("a=recvonly"), "{}", a.sdp);
        let (text, pts) = media_sdp(&offer, &a);
        assert_eq!(pts, [(97, true), (111, false)]);
        assert!(text.contains("a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1;profile-level-id=42e01f\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:111 opus/48000/2\r\n"), "{text}");
        let parsed = corecast::sdp::parse(&text).unwrap();
        assert_eq!(parsed.medias.len(), 2);
    }

    #[test]
    fn receive_only_offer_gives_nothing_to_ingest() {
        let offer = sdp::parse_offer(&format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 {FP}\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n\
             a=recvonly\r\na=rtcp-mux\r\na=rtpmap:97 H264/90000\r\n"
        ))
        .unwrap();
        match sdp::build_answer(
            &offer,
            &AnswerParams {
                ice_ufrag: "00abcdef",
                ice_pwd: "abcdefghijklmnopqrstuvwx",
                fingerprint: Fingerprint([7; 32]),
                candidates: &[],
                direction: Direction::RecvOnly,
                codecs: &CODECS,
                ssrcs: (1, 2),
                session_id: 1,
            },
        ) {
            Err(_) => {}
            Ok(a) => assert!(media_sdp(&offer, &a).1.is_empty()),
        }
    }
}

//! The WebRTC packets of one stream, made once on a shard for all its WebRTC viewers.
//!
//! Built on the shard's frame feed (`muxers::FrameFeed`, the same assembled frames fMP4 and
//! snapshots read): H.264 and H.265 access units are re-packetized at MTU 1200 with the
//! parameter sets before every IDR/IRAP; Opus, PCMA and PCMU frames (one per source packet)
//! become one packet each, G.711 at other rates and L16 converted to 8 kHz G.711 first.
//! The packets go into a ring with the payload type and SSRC left zero: a viewer copies the
//! 12-byte header, writes its own payload type, SSRC, sequence and timestamp offsets, and
//! encrypts. The ring is also the NACK history: a lost packet is found by sequence number.

use crate::core::hub::Shard;
use crate::muxers::{FrameFeed, MuxError};
use bytes::Bytes;
use corecast::codec::pcm::To8k;
use corecast::codec::{h264, h265, CodecKind};
use corecast::mux::{Frame, Pcm, TrackConfig};
use corecast::ring::{Cursor, Next, Ring};
use corecast::webrtc::sdp::StreamCodec;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// WebRTC MTU for RTP packets (header included): fits any path with room for SRTP, ICE-TCP
/// framing and tunnels, as browsers and go2rtc use.
pub const MTU: usize = 1200;
/// Packets kept: the joining point and the NACK history (several seconds at 1-4 Mbit/s).
const RING: usize = 4096;
/// Frames the feed may fall behind the frame ring before it skips to a keyframe.
const MAX_FRAME_LAG: u64 = 512;
/// Largest parameter set kept from the stream.
const MAX_PARAMETER_SET: usize = 1024;

/// One packet ready for every viewer of the stream.
#[derive(Debug)]
pub struct RtcPacket {
    /// The whole RTP packet; payload type and SSRC zero, sequence number `seq`.
    pub data: Bytes,
    pub video: bool,
    /// Sequence number in the feed (one series per kind).
    pub seq: u16,
    /// RTP timestamp, the track's clock.
    pub timestamp: u32,
    /// Arrival of the frame (server monotonic microseconds): sender reports map from it.
    pub arrival: u64,
}

struct Video {
    track: usize,
    /// Parameter sets last seen: VPS (H.265 only), SPS, PPS.
    params: [Option<Bytes>; 3],
    packetizer: Packetizer,
}

enum Packetizer {
    H264(h264::Packetizer),
    H265(h265::Packetizer),
}

impl Packetizer {
    fn seq(&self) -> u16 {
        match self {
            Packetizer::H264(p) => p.seq,
            Packetizer::H265(p) => p.seq,
        }
    }

    fn packetize(&mut self, units: &[Bytes], ts: u32, out: &mut Vec<Bytes>) {
        match self {
            Packetizer::H264(p) => p.packetize(units, ts, out),
            Packetizer::H265(p) => p.packetize(units, ts, out),
        }
    }

    /// Which parameter set slot (VPS, SPS, PPS) a NAL unit fills, if any, and whether it is
    /// an access unit delimiter (meaningless to a browser, dropped).
    fn classify(&self, u: &[u8]) -> (Option<usize>, bool) {
        match self {
            Packetizer::H264(_) => match h264::nal_type(u) {
                7 if u.len() >= 4 => (Some(1), false),
                8 if u.len() >= 2 => (Some(2), false),
                9 => (None, true),
                _ => (None, false),
            },
            Packetizer::H265(_) => match h265::nal_type(u) {
                h265::VPS if u.len() > 2 => (Some(0), false),
                h265::SPS if u.len() > 2 => (Some(1), false),
                h265::PPS if u.len() > 2 => (Some(2), false),
                h265::AUD => (None, true),
                _ => (None, false),
            },
        }
    }
}

struct Audio {
    track: usize,
    seq: u16,
    /// PCMA/PCMU: one byte per sample, cut into 20 ms packets.
    g711: bool,
    /// G.711 at another rate or with more channels, or L16: converted to 8 kHz mono G.711
    /// here, once for every viewer.
    to8k: Option<To8k>,
    pcm: Vec<u8>,
}

/// 20 ms of 8 kHz G.711.
const G711_CHUNK: usize = 160;
/// G.711 packets up to 60 ms pass as they are.
const G711_MAX: usize = 480;
/// Largest audio frame taken from the source.
const MAX_AUDIO_FRAME: usize = 65_536;

/// The shared packets of one stream on this shard.
pub struct RtcFeed {
    pub name: String,
    frames: Rc<FrameFeed>,
    cursor: RefCell<Cursor>,
    pub ring: RefCell<Ring<Rc<RtcPacket>>>,
    video: RefCell<Option<Video>>,
    audio: RefCell<Option<Audio>>,
    /// What the stream can send a browser, preferred first (video, then audio).
    pub codecs: Vec<StreamCodec>,
    /// Why the stream's audio cannot go to a browser, when it cannot (AAC, say).
    pub audio_note: Option<String>,
    scratch: RefCell<Vec<Bytes>>,
    units: RefCell<Vec<Bytes>>,
    frame_epoch: Cell<u64>,
}

thread_local! {
    static FEEDS: RefCell<HashMap<String, Weak<RtcFeed>>> = RefCell::new(HashMap::new());
}

impl RtcFeed {
    /// The feed of `name` on this shard, made on first use (kept alive by its viewers).
    pub fn of(shard: &Rc<Shard>, name: &str) -> Result<Rc<RtcFeed>, MuxError> {
        let frames = FrameFeed::of(shard, name)?;
        if let Some(f) = FEEDS.with(|m| m.borrow().get(name).and_then(Weak::upgrade)) {
            // Same frame feed: same stream generation and tracks.
            if Rc::ptr_eq(&f.frames, &frames) {
                return Ok(f);
            }
        }
        let sdp = &frames.sdp;
        let mut codecs = Vec::new();
        let mut video = None;
        let mut audio = None;
        let mut audio_note = None;
        // A stream with both (an H.265 camera and `ffmpeg:cam#video=h264`) sends H.264,
        // which every browser takes.
        let has_h264 = sdp
            .medias
            .iter()
            .any(|m| m.codec().is_some_and(|(k, _)| k == CodecKind::H264));
        for (i, m) in sdp.medias.iter().enumerate() {
            let Some((kind, map)) = m.codec() else {
                continue;
            };
            match kind {
                CodecKind::H264 if video.is_none() => {
                    let (sps, pps) = match TrackConfig::from_media(m) {
                        Some(TrackConfig::H264 { sps, pps }) => (Some(sps), Some(pps)),
                        _ => (None, None),
                    };
                    let plid = sps
                        .as_ref()
                        .and_then(|s| (s.len() >= 4).then(|| [s[1], s[2], s[3]]));
                    codecs.insert(
                        0,
                        StreamCodec::H264 {
                            profile_level_id: plid,
                        },
                    );
                    let mut packetizer = h264::Packetizer::new(0, 0, rand::random());
                    packetizer.mtu = MTU;
                    video = Some(Video {
                        track: i,
                        params: [None, sps, pps],
                        packetizer: Packetizer::H264(packetizer),
                    });
                }
                // Sent only to browsers that offer H.265 (Safari, Chrome 136+ with hardware
                // decoding); others get no video from an H.265 stream, as from go2rtc
                // (which transcodes only when a source such as `ffmpeg:cam#video=h264` is
                // listed).
                CodecKind::H265 if video.is_none() && !has_h264 => {
                    let [vps, sps, pps] = match TrackConfig::from_media(m) {
                        Some(TrackConfig::H265 { vps, sps, pps }) => {
                            [Some(vps), Some(sps), Some(pps)]
                        }
                        _ => [None, None, None],
                    };
                    // general_profile_idc: after the 2-byte NAL header and the byte with
                    // the VPS id and sub-layer count.
                    let profile_id = sps.as_ref().and_then(|s| s.get(3)).map(|b| b & 0x1f);
                    codecs.insert(0, StreamCodec::H265 { profile_id });
                    let mut packetizer = h265::Packetizer::new(0, 0, rand::random());
                    packetizer.mtu = MTU;
                    video = Some(Video {
                        track: i,
                        params: [vps, sps, pps],
                        packetizer: Packetizer::H265(packetizer),
                    });
                }
                CodecKind::Opus if audio.is_none() => {
                    if map.clock_rate != 48_000 {
                        audio_note = Some(format!(
                            "{} at {} Hz is not sent over WebRTC",
                            map.encoding, map.clock_rate
                        ));
                        continue;
                    }
                    codecs.push(StreamCodec::Opus);
                    audio = Some(Audio {
                        track: i,
                        seq: rand::random(),
                        g711: false,
                        to8k: None,
                        pcm: Vec::new(),
                    });
                    audio_note = None;
                }
                CodecKind::Pcma | CodecKind::Pcmu | CodecKind::Other if audio.is_none() => {
                    // G.711 at 8 kHz mono passes; other rates, channels and L16 are
                    // converted to 8 kHz mono (µ-law stays µ-law, L16 becomes A-law).
                    let Some(TrackConfig::Flac {
                        pcm,
                        sample_rate,
                        channels,
                    }) = TrackConfig::from_media(m)
                    else {
                        // Not PCM (another codec), or PCM with a rate or channel count
                        // out of range.
                        if kind != CodecKind::Other || map.encoding.eq_ignore_ascii_case("L16") {
                            audio_note = Some(format!(
                                "{}/{} is not sent over WebRTC",
                                map.encoding, map.clock_rate
                            ));
                        }
                        continue;
                    };
                    let alaw = pcm != Pcm::Ulaw;
                    let to8k = To8k::new(pcm, sample_rate, channels, alaw);
                    let passes = matches!(pcm, Pcm::Alaw | Pcm::Ulaw)
                        && sample_rate == corecast::codec::pcm::RATE
                        && channels == 1;
                    if to8k.is_none() && !passes {
                        audio_note = Some(format!(
                            "{}/{}/{} is not sent over WebRTC (8000 Hz and up only)",
                            map.encoding, map.clock_rate, channels
                        ));
                        continue;
                    }
                    if to8k.is_some() {
                        tracing::info!(
                            stream = name,
                            from = %format!("{}/{}/{}", map.encoding, map.clock_rate, channels),
                            to = if alaw { "PCMA/8000" } else { "PCMU/8000" },
                            "webrtc: audio converted once for the stream's viewers"
                        );
                    }
                    codecs.push(if alaw {
                        StreamCodec::Pcma
                    } else {
                        StreamCodec::Pcmu
                    });
                    audio = Some(Audio {
                        track: i,
                        seq: rand::random(),
                        g711: true,
                        to8k,
                        pcm: Vec::new(),
                    });
                    audio_note = None;
                }
                CodecKind::Aac if audio.is_none() => {
                    audio_note = Some(
                        "AAC is not a WebRTC codec (add an Opus source, e.g. ffmpeg:NAME#audio=opus)"
                            .into(),
                    );
                }
                _ => {}
            }
        }
        let cursor = Cursor::join(&frames.ring.borrow());
        let feed = Rc::new(RtcFeed {
            name: name.to_string(),
            cursor: RefCell::new(cursor),
            ring: RefCell::new(Ring::new(RING)),
            video: RefCell::new(video),
            audio: RefCell::new(audio),
            codecs,
            audio_note,
            scratch: RefCell::new(Vec::new()),
            units: RefCell::new(Vec::new()),
            frame_epoch: Cell::new(frames.epoch.get()),
            frames,
        });
        FEEDS.with(|m| {
            let mut m = m.borrow_mut();
            m.retain(|_, w| w.strong_count() > 0);
            m.insert(name.to_string(), Rc::downgrade(&feed));
        });
        Ok(feed)
    }

    pub fn is_closed(&self) -> bool {
        self.frames.is_closed()
    }

    /// The stream's media index sent as video (or audio).
    pub fn track(&self, video: bool) -> Option<usize> {
        if video {
            self.video.borrow().as_ref().map(|v| v.track)
        } else {
            self.audio.borrow().as_ref().map(|a| a.track)
        }
    }

    /// Packetizes the frames that arrived since anyone last looked.
    pub fn pump(&self) {
        self.frames.pump();
        if self.frames.epoch.get() != self.frame_epoch.get() {
            // A new producer: start again at its first keyframe.
            self.frame_epoch.set(self.frames.epoch.get());
            self.cursor.borrow_mut().wait_for_keyframe();
        }
        let frames = self.frames.ring.borrow();
        let mut cursor = self.cursor.borrow_mut();
        let mut ring = self.ring.borrow_mut();
        let has_video = self.video.borrow().is_some();
        while let Next::Item(f) = cursor.next(&frames, MAX_FRAME_LAG) {
            self.packetize(f, has_video, &mut ring);
        }
    }

    fn packetize(&self, f: &Frame, has_video: bool, ring: &mut Ring<Rc<RtcPacket>>) {
        let ts = f.timestamp as u32;
        if let Some(v) = self
            .video
            .borrow_mut()
            .as_mut()
            .filter(|v| v.track == f.track)
        {
            let mut units = self.units.borrow_mut();
            units.clear();
            let mut has = [false; 3];
            for u in &f.units {
                match v.packetizer.classify(u) {
                    (_, true) => continue,
                    (Some(k), _) if u.len() <= MAX_PARAMETER_SET => {
                        has[k] = true;
                        v.params[k] = Some(u.clone());
                    }
                    _ => {}
                }
                units.push(u.clone());
            }
            if f.keyframe {
                // Parameter sets before every IDR/IRAP, so a viewer that joins or recovers
                // here decodes at once.
                let missing = v
                    .params
                    .iter()
                    .zip(has)
                    .filter(|(_, has)| !has)
                    .filter_map(|(p, _)| p.clone());
                units.splice(0..0, missing);
            }
            let mut out = self.scratch.borrow_mut();
            out.clear();
            let first_seq = v.packetizer.seq();
            v.packetizer.packetize(&units, ts, &mut out);
            for (k, data) in out.drain(..).enumerate() {
                let key = f.keyframe && k == 0;
                ring.push(
                    Rc::new(RtcPacket {
                        data,
                        video: true,
                        seq: first_seq.wrapping_add(k as u16),
                        timestamp: ts,
                        arrival: f.arrival,
                    }),
                    key,
                );
            }
            return;
        }
        if let Some(a) = self
            .audio
            .borrow_mut()
            .as_mut()
            .filter(|a| a.track == f.track)
        {
            let mut len: usize = f.units.iter().map(Bytes::len).sum();
            let mut ts = ts;
            if len > MAX_AUDIO_FRAME {
                return;
            }
            if let Some(t) = a.to8k.as_mut() {
                a.pcm.clear();
                for u in &f.units {
                    t.push(u, &mut a.pcm);
                }
                len = a.pcm.len();
                ts = t.timestamp(f.timestamp);
            }
            // G.711 is one byte per sample: long packets (up to ~1400 bytes from some
            // senders) are cut into 20 ms ones, as browsers send. Opus packets are frames:
            // whole, or dropped when they cannot fit.
            let chunk = if a.g711 && len > G711_MAX {
                G711_CHUNK
            } else {
                MTU - 12
            };
            if len == 0 || len > MAX_AUDIO_FRAME || (!a.g711 && len > chunk) {
                return;
            }
            let mut joined = Vec::new();
            let payload: &[u8] = if a.to8k.is_some() {
                &a.pcm
            } else {
                joined.reserve(len);
                for u in &f.units {
                    joined.extend_from_slice(u);
                }
                &joined
            };
            for (k, part) in payload.chunks(chunk).enumerate() {
                let t = ts.wrapping_add((k * chunk) as u32);
                let mut p = Vec::with_capacity(12 + part.len());
                corecast::rtp::write_header(&mut p, 0, true, a.seq, t, 0);
                p.extend_from_slice(part);
                ring.push(
                    Rc::new(RtcPacket {
                        data: p.into(),
                        video: false,
                        seq: a.seq,
                        timestamp: t,
                        arrival: f.arrival,
                    }),
                    // Without video every audio packet is a starting point.
                    !has_video,
                );
                a.seq = a.seq.wrapping_add(1);
            }
        }
    }

    /// Waits for the stream to move on (or `limit`); then [`pump`](Self::pump).
    pub async fn wait(&self, registered: &Cell<u64>, limit: Duration) {
        self.frames.wait(registered, limit).await;
    }

    /// The packet of a kind with feed sequence number `seq`, if still held (NACK). Walks
    /// back from the newest packet and stops once that kind's numbers are older than
    /// `seq` (they rise along the ring), so a recent loss is found in a few steps.
    pub fn find(&self, video: bool, seq: u16) -> Option<Rc<RtcPacket>> {
        let ring = self.ring.borrow();
        let (head, tail) = (ring.head(), ring.tail());
        let mut pos = head;
        while pos > tail && head - pos < RING as u64 {
            pos -= 1;
            let Some(p) = ring.get(pos).filter(|p| p.video == video) else {
                continue;
            };
            // How far `seq` is behind this packet, modulo 2^16: past half the space it
            // is ahead (never sent) or older than the ring.
            let behind = p.seq.wrapping_sub(seq);
            if behind == 0 {
                return Some(p.clone());
            }
            if behind >= 0x8000 {
                return None;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameter sets go to their slots (VPS, SPS, PPS), delimiters are dropped, slices and
    /// SEI pass; units too short to be a parameter set are not taken as one.
    #[test]
    fn nal_classes() {
        let h264 = Packetizer::H264(h264::Packetizer::new(0, 0, 0));
        assert_eq!(h264.classify(&[0x67, 0x42, 0xe0, 0x1f]), (Some(1), false));
        assert_eq!(h264.classify(&[0x67, 0x42]), (None, false));
        assert_eq!(h264.classify(&[0x68, 0xce]), (Some(2), false));
        assert_eq!(h264.classify(&[0x09, 0xf0]), (None, true));
        assert_eq!(h264.classify(&[0x65, 0x88]), (None, false));
        let h265 = Packetizer::H265(h265::Packetizer::new(0, 0, 0));
        assert_eq!(h265.classify(&[0x40, 0x01, 0x0c]), (Some(0), false));
        assert_eq!(h265.classify(&[0x42, 0x01, 0x01]), (Some(1), false));
        assert_eq!(h265.classify(&[0x44, 0x01, 0xc1]), (Some(2), false));
        assert_eq!(h265.classify(&[0x44, 0x01]), (None, false));
        assert_eq!(h265.classify(&[0x46, 0x01, 0x50]), (None, true));
        assert_eq!(h265.classify(&[0x26, 0x01, 0xaf]), (None, false));
        assert_eq!(h265.classify(&[]), (None, false));
    }

    /// A NACK for a number the feed has not reached is "ahead": found nowhere, checked
    /// in one step (the wrapping distance says so).
    #[test]
    fn wrapping_distance() {
        let behind = |have: u16, want: u16| have.wrapping_sub(want);
        assert_eq!(behind(10, 5), 5);
        assert_eq!(behind(2, 65_534), 4);
        assert!(behind(5, 10) >= 0x8000);
    }
}

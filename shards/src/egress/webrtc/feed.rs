//! The WebRTC packets of one stream, made once on a shard for all its WebRTC viewers.
//!
//! Built on the shard's frame feed (`muxers::FrameFeed`, the same assembled frames fMP4 and
//! snapshots read): H.264 access units are re-packetized at MTU 1200 with SPS/PPS before
//! every IDR; Opus, PCMA and PCMU frames (one per source packet) become one packet each.
//! The packets go into a ring with the payload type and SSRC left zero: a viewer copies the
//! 12-byte header, writes its own payload type, SSRC, sequence and timestamp offsets, and
//! encrypts. The ring is also the NACK history: a lost packet is found by sequence number.

use crate::core::hub::Shard;
use crate::muxers::{FrameFeed, MuxError};
use bytes::Bytes;
use corecast::codec::{h264, CodecKind};
use corecast::mux::{Frame, TrackConfig};
use corecast::ring::{Bounds, Cursor, Next, Ring};
use corecast::webrtc::sdp::StreamCodec;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// WebRTC MTU for RTP packets (header included): fits any path with room for SRTP, ICE-TCP
/// framing and tunnels, as browsers and go2rtc use.
pub const MTU: usize = 1200;
/// Packets kept at most. What the feed holds is bounded as the stream's own ring is
/// (`fanout: max_lag_ms` back or from the latest keyframe, whichever is older, within
/// `ring_bytes`): the joining point and the NACK history, not a fixed count of packets
/// (4,096 were ~38 s of a 1 Mbit/s stream, ~4.5 MB per shard).
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
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    packetizer: h264::Packetizer,
}

struct Audio {
    track: usize,
    seq: u16,
    /// PCMA/PCMU: one byte per sample, cut into 20 ms packets.
    g711: bool,
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
                        sps,
                        pps,
                        packetizer,
                    });
                }
                CodecKind::Opus | CodecKind::Pcma | CodecKind::Pcmu if audio.is_none() => {
                    let (codec, rate) = match kind {
                        CodecKind::Opus => (StreamCodec::Opus, 48_000),
                        CodecKind::Pcma => (StreamCodec::Pcma, 8_000),
                        _ => (StreamCodec::Pcmu, 8_000),
                    };
                    if map.clock_rate != rate {
                        // G.711 at other rates would need resampling (go2rtc does; not yet).
                        audio_note = Some(format!(
                            "{} at {} Hz is not sent over WebRTC (8000 Hz only)",
                            map.encoding, map.clock_rate
                        ));
                        continue;
                    }
                    codecs.push(codec);
                    audio = Some(Audio {
                        track: i,
                        seq: rand::random(),
                        g711: kind != CodecKind::Opus,
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
            ring: RefCell::new(Ring::bounded(Bounds {
                max_items: RING,
                ..shard.ring_bounds(false)
            })),
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
            let (mut has_sps, mut has_pps) = (false, false);
            for u in &f.units {
                match h264::nal_type(u) {
                    7 if u.len() >= 4 && u.len() <= MAX_PARAMETER_SET => {
                        has_sps = true;
                        v.sps = Some(u.clone());
                    }
                    8 if u.len() >= 2 && u.len() <= MAX_PARAMETER_SET => {
                        has_pps = true;
                        v.pps = Some(u.clone());
                    }
                    // Access unit delimiters mean nothing to a browser.
                    9 => continue,
                    _ => {}
                }
                units.push(u.clone());
            }
            if f.keyframe {
                // Parameter sets before every IDR, so a viewer that joins or recovers here
                // decodes at once.
                if !has_pps {
                    if let Some(p) = &v.pps {
                        units.insert(0, p.clone());
                    }
                }
                if !has_sps {
                    if let Some(s) = &v.sps {
                        units.insert(0, s.clone());
                    }
                }
            }
            let mut out = self.scratch.borrow_mut();
            out.clear();
            let first_seq = v.packetizer.seq;
            v.packetizer.packetize(&units, ts, &mut out);
            for (k, data) in out.drain(..).enumerate() {
                let key = f.keyframe && k == 0;
                let len = data.len();
                ring.push_held(
                    Rc::new(RtcPacket {
                        data,
                        video: true,
                        seq: first_seq.wrapping_add(k as u16),
                        timestamp: ts,
                        arrival: f.arrival,
                    }),
                    key,
                    len,
                    f.arrival,
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
            let len: usize = f.units.iter().map(Bytes::len).sum();
            // G.711 is one byte per sample: long packets (up to ~1400 bytes from some
            // senders) are cut into 20 ms ones, as browsers send. Opus packets are frames: whole, or dropped
            // when they cannot fit.
            let chunk = if a.g711 && len > G711_MAX {
                G711_CHUNK
            } else {
                MTU - 12
            };
            if len == 0 || len > MAX_AUDIO_FRAME || (!a.g711 && len > chunk) {
                return;
            }
            let mut payload = Vec::with_capacity(len);
            for u in &f.units {
                payload.extend_from_slice(u);
            }
            for (k, part) in payload.chunks(chunk).enumerate() {
                let t = ts.wrapping_add((k * chunk) as u32);
                let mut p = Vec::with_capacity(12 + part.len());
                corecast::rtp::write_header(&mut p, 0, true, a.seq, t, 0);
                p.extend_from_slice(part);
                let len = p.len();
                ring.push_held(
                    Rc::new(RtcPacket {
                        data: p.into(),
                        video: false,
                        seq: a.seq,
                        timestamp: t,
                        arrival: f.arrival,
                    }),
                    // Without video every audio packet is a starting point.
                    !has_video,
                    len,
                    f.arrival,
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

//! Parse-once ingest: turns received RTP packets of a producer into [`Packet`]s.
//!
//! The RTP header is checked here, once; sequence numbers and timestamps are widened;
//! keyframe starts are detected per codec; H.264/H.265 parameter sets sent in-band are
//! learned so readers that join later can be given them in the SDP.

use crate::codec::{self, CodecKind};
use crate::packet::{CopyChunk, Packet};
use crate::rtp::{self, RtpError, SeqExtender, TsExtender};
use crate::sdp::Sdp;
use bytes::Bytes;

/// Ingest state of one track.
#[derive(Debug)]
struct Track {
    codec: CodecKind,
    seq: SeqExtender,
    ts: TsExtender,
    /// Keyframes of this track are where readers start (the first video track; every
    /// packet of an audio-only stream).
    sync_source: bool,
    /// The SDP already carries parameter sets: nothing to learn.
    has_sprop: bool,
    vps: Option<Vec<u8>>,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    /// RTP clock rate from the SDP (for continuing a previous producer's timestamps).
    clock_rate: u32,
    continuation: Continuation,
    /// RTP timestamp (extended) of the last packet flagged as a keyframe start: the other
    /// packets of that picture (a multi-slice IDR's later slices) are not starts.
    last_key_ts: Option<u64>,
}

/// Where a track's previous producer left off (see [`Ingest::continue_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackTail {
    pub ssrc: u32,
    /// Extended sequence number and timestamp of its last packet.
    pub seq: u64,
    pub timestamp: u64,
    /// When that packet arrived (µs).
    pub arrival: u64,
}

impl TrackTail {
    /// The tail a packet leaves (None if its header is unreadable).
    pub fn of(p: &Packet) -> Option<TrackTail> {
        let ssrc = rtp::view(&p.data).ok()?.ssrc;
        Some(TrackTail {
            ssrc,
            seq: p.seq,
            timestamp: p.timestamp,
            arrival: p.arrival,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continuation {
    /// Packets keep their own numbering.
    None,
    /// Continue `TrackTail`'s numbering from this track's first packet on.
    Pending(TrackTail),
    /// Rewrite every packet: our SSRC, sequence and timestamp shifted by these.
    /// (`tail` kept: a dropped packet anchors it again, see `Ingest::dropped`.)
    Active {
        tail: TrackTail,
        ssrc: u32,
        seq_off: i64,
        ts_off: i64,
    },
}

/// Parameter sets learned in-band for a track, as an fmtp `sprop-*` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub track: usize,
    /// e.g. `sprop-parameter-sets=Z0LAHtkA...,aMuDyyA=`
    pub fmtp_param: String,
}

/// Ingest state of one producer.
#[derive(Debug)]
pub struct Ingest {
    tracks: Vec<Track>,
    /// Store a copy of each packet (see [`copy_payloads`](Self::copy_payloads)).
    copy: bool,
    /// Where copies go: every packet with `copy`, else only packets whose header is
    /// rewritten (a continuation).
    chunk: CopyChunk,
}

impl Ingest {
    pub fn new(sdp: &Sdp) -> Self {
        let sync_track = sdp
            .medias
            .iter()
            .position(|m| m.codec().is_some_and(|(k, _)| k.is_video()))
            .or_else(|| sdp.medias.iter().position(|m| m.kind == "video"));
        let tracks = sdp
            .medias
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let codec = m.codec().map_or(CodecKind::Other, |(k, _)| k);
                let has_sprop = m
                    .payload_type()
                    .and_then(|pt| m.fmtp_for(pt))
                    .is_some_and(|f| f.contains("sprop-parameter-sets") || f.contains("sprop-sps"));
                Track {
                    codec,
                    seq: SeqExtender::default(),
                    ts: TsExtender::default(),
                    sync_source: match sync_track {
                        Some(v) => v == i,
                        None => true,
                    },
                    has_sprop,
                    vps: None,
                    sps: None,
                    pps: None,
                    clock_rate: m.clock_rate().max(1),
                    continuation: Continuation::None,
                    last_key_ts: None,
                }
            })
            .collect();
        Ingest {
            tracks,
            copy: false,
            chunk: CopyChunk::default(),
        }
    }

    /// Makes every packet's `data` a copy of what was received, packed with this
    /// producer's previous packets in 32 KiB chunks. For receive paths whose `Bytes` are
    /// slices of a larger buffer (an RTSP/TCP read chunk, a UDP receive buffer shared by a
    /// shard's publishers): kept in a ring for seconds, such a slice would pin the whole
    /// buffer, which then outlives its own packets by as long as the slowest stream sharing
    /// it keeps any. A chunk holds only this stream's packets in order, and a ring evicts in
    /// order, so what stays pinned beyond the packets held is at most the chunk being filled
    /// and the oldest one, half evicted. Packing, rather than one allocation per packet,
    /// keeps the allocator's pages from fragmenting as packets leave the ring (measured:
    /// BENCHMARKS.md, "Rings bounded by time and bytes", with the copy's cost).
    pub fn copy_payloads(&mut self, on: bool) {
        self.copy = on;
    }

    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Makes this producer continue a previous one's RTP numbering, per track: the first
    /// packet gets the next sequence number and a timestamp advanced by the wall-clock gap
    /// since the previous producer's last packet, and the previous SSRC. Viewers that stayed
    /// attached (RTSP players, the muxers) then see one continuous stream instead of a jump
    /// in sequence, timestamp and SSRC. The price is one copy of each packet of this
    /// producer at ingest (its header is rewritten); never a copy per viewer.
    pub fn continue_from(&mut self, tails: &[Option<TrackTail>]) {
        for (t, tail) in self.tracks.iter_mut().zip(tails) {
            if let Some(tail) = tail {
                t.continuation = Continuation::Pending(*tail);
            }
        }
    }

    /// The caller dropped the packet it just got for `track` (it waits for a keyframe): the
    /// continuation is anchored again on the next packet, so the first packet kept gets
    /// the sequence number right after the previous producer's last (no gap).
    pub fn dropped(&mut self, track: usize) {
        if let Some(t) = self.tracks.get_mut(track) {
            if let Continuation::Active { tail, .. } = t.continuation {
                t.continuation = Continuation::Pending(tail);
            }
        }
    }

    /// Checks and wraps one RTP packet of `track`. `now` is the arrival time (µs).
    pub fn packet(
        &mut self,
        track: usize,
        data: Bytes,
        now: u64,
    ) -> Result<(Packet, Option<Learned>), IngestError> {
        let t = self
            .tracks
            .get_mut(track)
            .ok_or(IngestError::UnknownTrack(track))?;
        let v = rtp::view(&data).map_err(IngestError::Rtp)?;
        let payload = data
            .get(v.payload_offset..v.payload_offset + v.payload_len)
            .unwrap_or(&[]);
        let learned = if t.has_sprop {
            None
        } else {
            learn(t, payload).map(|fmtp_param| Learned { track, fmtp_param })
        };
        let mut seq = t.seq.extend(v.sequence);
        let mut timestamp = t.ts.extend(v.timestamp);
        // Only the first packet of a keyframe's picture is where a reader may start: one
        // that joined at a later slice would get a picture with its top missing.
        let keyframe = t.sync_source
            && t.last_key_ts != Some(timestamp)
            && codec::starts_keyframe(t.codec, payload);
        if keyframe {
            t.last_key_ts = Some(timestamp);
        }
        let payload_offset = v.payload_offset as u16;
        if let Continuation::Pending(tail) = t.continuation {
            let gap_us = now.saturating_sub(tail.arrival) as i128;
            let gap_ticks = (gap_us * t.clock_rate as i128 / 1_000_000).max(1);
            let clamp = |v: i128| v.clamp(i64::MIN as i128 / 4, i64::MAX as i128 / 4) as i64;
            t.continuation = Continuation::Active {
                tail,
                ssrc: tail.ssrc,
                seq_off: clamp(tail.seq as i128 + 1 - seq as i128),
                ts_off: clamp(tail.timestamp as i128 + gap_ticks - timestamp as i128),
            };
        }
        let rewrite = match t.continuation {
            Continuation::Active {
                ssrc,
                seq_off,
                ts_off,
                ..
            } => {
                seq = seq.saturating_add_signed(seq_off);
                timestamp = timestamp.saturating_add_signed(ts_off);
                Some((ssrc, seq as u16, timestamp as u32))
            }
            _ => None,
        };
        let data = if self.copy || rewrite.is_some() {
            let mut b = self.chunk.copy(&data);
            if let Some((ssrc, seq, ts)) = rewrite {
                set_header(&mut b, ssrc, seq, ts);
            }
            b.freeze()
        } else {
            data
        };
        let pkt = Packet {
            track: track as u8,
            seq,
            timestamp,
            marker: v.marker,
            keyframe,
            arrival: now,
            payload_offset,
            data,
        };
        Ok((pkt, learned))
    }
}

/// Gives an RTP packet (header already checked, at least 12 bytes) another SSRC, sequence
/// number and timestamp.
fn set_header(b: &mut [u8], ssrc: u32, seq: u16, timestamp: u32) {
    b[2..4].copy_from_slice(&seq.to_be_bytes());
    b[4..8].copy_from_slice(&timestamp.to_be_bytes());
    b[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

fn learn(t: &mut Track, payload: &[u8]) -> Option<String> {
    match t.codec {
        CodecKind::H264 => {
            if !codec::h264::learn_parameter_sets(payload, &mut t.sps, &mut t.pps) {
                return None;
            }
            let (sps, pps) = (t.sps.as_ref()?, t.pps.as_ref()?);
            let mut s = format!(
                "sprop-parameter-sets={}",
                codec::h264::sprop_parameter_sets(sps, pps)
            );
            if let Some(pl) = codec::h264::profile_level_id(sps) {
                s = format!("profile-level-id={pl};{s}");
            }
            Some(s)
        }
        CodecKind::H265 => {
            if !codec::h265::learn_parameter_sets(payload, &mut t.vps, &mut t.sps, &mut t.pps) {
                return None;
            }
            let (vps, sps, pps) = (t.vps.as_ref()?, t.sps.as_ref()?, t.pps.as_ref()?);
            Some(format!(
                "sprop-vps={};sprop-sps={};sprop-pps={}",
                b64(vps),
                b64(sps),
                b64(pps)
            ))
        }
        _ => None,
    }
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Why an incoming packet was refused (the packet is dropped and counted, the
/// connection stays).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error("packet for track {0}, which the SDP does not have")]
    UnknownTrack(usize),
    #[error("malformed RTP: {0}")]
    Rtp(RtpError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp() -> Sdp {
        crate::sdp::parse(
            "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
             m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n",
        )
        .unwrap()
    }

    fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Bytes {
        let mut p = Vec::new();
        crate::rtp::write_header(&mut p, 96, false, seq, ts, ssrc);
        p.extend_from_slice(payload);
        Bytes::from(p)
    }

    /// A new producer continues the previous one's numbering: sequence +1, timestamp
    /// advanced by the wall-clock gap, the old SSRC; the payload is untouched.
    #[test]
    fn a_new_producer_continues_the_numbering() {
        let mut old = Ingest::new(&sdp());
        let (last, _) = old
            .packet(0, rtp(65_535, 1000, 0xAAAA, &[1, 2]), 5_000_000)
            .unwrap();
        let tail = TrackTail::of(&last).unwrap();
        assert_eq!(tail.seq as u16, 65_535);

        let mut new = Ingest::new(&sdp());
        new.continue_from(&[Some(tail), None]);
        // 2 s later, the new publisher starts at seq 7, timestamp 123, SSRC 0xBBBB.
        let (p, _) = new
            .packet(0, rtp(7, 123, 0xBBBB, &[9, 9, 9]), 7_000_000)
            .unwrap();
        let v = crate::rtp::view(&p.data).unwrap();
        assert_eq!((v.sequence, v.ssrc), (0, 0xAAAA));
        assert_eq!(p.seq, tail.seq + 1);
        assert_eq!(p.timestamp, tail.timestamp + 180_000);
        assert_eq!(v.timestamp, 181_000);
        assert_eq!(p.payload(), &[9, 9, 9]);
        let (p2, _) = new
            .packet(0, rtp(8, 123 + 3000, 0xBBBB, &[1]), 7_040_000)
            .unwrap();
        assert_eq!(
            (p2.seq, p2.timestamp),
            (tail.seq + 2, tail.timestamp + 183_000)
        );
        // A packet the caller drops before the first one it keeps (waiting for a keyframe)
        // does not use up a number: the first kept one follows the old producer's last.
        let mut late = Ingest::new(&sdp());
        late.continue_from(&[Some(tail), None]);
        late.packet(0, rtp(7, 123, 0xBBBB, &[1]), 7_000_000)
            .unwrap();
        late.dropped(0);
        let (k, _) = late
            .packet(0, rtp(8, 3123, 0xBBBB, &[2]), 7_080_000)
            .unwrap();
        // Anchored at its arrival, 2.08 s after the old producer's last packet.
        assert_eq!(
            (k.seq, k.timestamp),
            (tail.seq + 1, tail.timestamp + 187_200)
        );
        // A track without a tail keeps its own numbering, uncopied.
        let data = rtp(50, 77, 0xCCCC, &[5]);
        let (a, _) = new.packet(1, data.clone(), 7_000_000).unwrap();
        assert_eq!(a.data.as_ptr(), data.as_ptr());
        assert_eq!((a.rtp_seq(), a.rtp_timestamp()), (50, 77));
    }

    /// With `copy_payloads`, a packet received as a slice of a large buffer is stored as a
    /// copy of its own size: the buffer is not pinned (it is unique again once the caller
    /// drops its handle), and the copy carries the same bytes.
    #[test]
    fn copied_payloads_do_not_pin_the_receive_buffer() {
        let mut buf = vec![0u8; 64 * 1024];
        let pkt = rtp(9, 90, 0xAAAA, &[7; 1000]);
        buf[100..100 + pkt.len()].copy_from_slice(&pkt);
        let buf = Bytes::from(buf);
        let mut ing = Ingest::new(&sdp());
        ing.copy_payloads(true);
        let (p, _) = ing.packet(0, buf.slice(100..100 + pkt.len()), 0).unwrap();
        assert_eq!(p.data, pkt);
        assert_eq!(p.payload(), &[7; 1000]);
        assert!(
            buf.is_unique(),
            "the receive buffer is not referenced by the packet"
        );
        let mut plain = Ingest::new(&sdp());
        let (q, _) = plain.packet(0, buf.slice(100..100 + pkt.len()), 0).unwrap();
        assert!(
            !buf.is_unique(),
            "without the copy the packet pins the buffer"
        );
        drop(q);
        // Copies are packed in order into chunks of their own: consecutive packets are
        // neighbours, and a continued numbering is rewritten in the copy.
        let (p2, _) = ing.packet(0, pkt.clone(), 0).unwrap();
        assert_eq!(p2.data.as_ptr(), p.data.as_ptr().wrapping_add(pkt.len()));
        let mut cont = Ingest::new(&sdp());
        cont.copy_payloads(true);
        cont.continue_from(&[Some(TrackTail::of(&p).unwrap()), None]);
        let (r, _) = cont.packet(0, pkt.clone(), 1_000_000).unwrap();
        let v = crate::rtp::view(&r.data).unwrap();
        assert_eq!((v.sequence, r.seq), (10, p.seq + 1));
        assert_eq!(r.payload(), &[7; 1000]);
    }

    /// A multi-slice IDR (x264 `tune=zerolatency` slices every picture): only its first
    /// packet is a keyframe start, so a joining reader gets the whole picture.
    #[test]
    fn only_the_first_slice_of_an_idr_is_a_keyframe_start() {
        let mut ing = Ingest::new(&sdp());
        let idr = [0x65, 0x88, 0x80];
        let flags: Vec<bool> = [(1, 3000), (2, 3000), (3, 3000), (4, 6000), (5, 9000)]
            .iter()
            .map(|&(seq, ts)| {
                let nal: &[u8] = if ts == 6000 { &[0x41, 0x9a] } else { &idr };
                ing.packet(0, rtp(seq, ts, 1, nal), 0).unwrap().0.keyframe
            })
            .collect();
        assert_eq!(flags, [true, false, false, false, true]);
    }
}

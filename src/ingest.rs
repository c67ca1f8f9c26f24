//! Parse-once ingest: turns received RTP packets of a producer into [`Packet`]s.
//!
//! The RTP header is checked here, once; sequence numbers and timestamps are widened;
//! keyframe starts are detected per codec; H.264/H.265 parameter sets sent in-band are
//! learned so readers that join later can be given them in the SDP.

use crate::codec::{self, CodecKind};
use crate::packet::Packet;
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
                }
            })
            .collect();
        Ingest { tracks }
    }

    pub fn track_count(&self) -> usize {
        self.tracks.len()
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
        let keyframe = t.sync_source && codec::starts_keyframe(t.codec, payload);
        let learned = if t.has_sprop {
            None
        } else {
            learn(t, payload).map(|fmtp_param| Learned { track, fmtp_param })
        };
        let pkt = Packet {
            track: track as u8,
            seq: t.seq.extend(v.sequence),
            timestamp: t.ts.extend(v.timestamp),
            marker: v.marker,
            keyframe,
            arrival: now,
            payload_offset: v.payload_offset as u16,
            data,
        };
        Ok((pkt, learned))
    }
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

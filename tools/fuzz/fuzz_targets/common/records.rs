//! Shared by the assembler targets: fuzz input as RTP packets of up to four tracks, and the
//! muxable tracks of an SDP.

use bytes::Bytes;
use corecast::mux::TrackConfig;
use corecast::packet::Packet;
use corecast::{rtp, sdp};

/// (media index, config) of every track of `sdp` a muxer can carry.
pub fn track_configs(sdp: &sdp::Sdp) -> Vec<(usize, TrackConfig)> {
    sdp.medias
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((i, TrackConfig::from_media(m)?)))
        .collect()
}

/// Records of [control, length, payload...]: the control byte picks the track (its low two
/// bits; payload type 96 + track), the marker, a timestamp step of `ts_step` × 0..=3 and a
/// sequence skip. Calls `each` with every packet in order.
pub fn for_each_packet(data: &[u8], ts_step: u64, mut each: impl FnMut(Packet)) {
    let mut seq = [0u64; 4];
    let mut timestamp = [0u64; 4];
    let mut arrival = 0;
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let (payload, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        let track = usize::from(control & 3);
        let marker = control & 4 != 0;
        timestamp[track] += u64::from((control >> 3) & 3) * ts_step;
        seq[track] += 1 + u64::from(control >> 7);
        arrival += 1000;
        let mut packet = Vec::with_capacity(rtp::HEADER_LEN + payload.len());
        rtp::write_header(
            &mut packet,
            96 + track as u8,
            marker,
            seq[track] as u16,
            timestamp[track] as u32,
            1,
        );
        packet.extend_from_slice(payload);
        each(Packet {
            data: Bytes::from(packet),
            track: track as u8,
            seq: seq[track],
            timestamp: timestamp[track],
            marker,
            keyframe: false,
            arrival,
            payload_offset: rtp::HEADER_LEN as u16,
        });
    }
}

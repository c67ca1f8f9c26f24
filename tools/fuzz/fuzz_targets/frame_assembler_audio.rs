//! Arbitrary bytes as RTP packets of Opus, PCMA, PCMU and stereo L16 tracks through the
//! FrameAssembler and the fMP4 muxer (Opus passed through, G.711 and L16 re-encoded as FLAC):
//! nothing may panic and frames stay within their track.
#![no_main]

use bytes::Bytes;
use corecast::mux::fmp4::LiveFmp4;
use corecast::mux::{FrameAssembler, TrackConfig};
use corecast::packet::Packet;
use corecast::{rtp, sdp};
use libfuzzer_sys::fuzz_target;

const SDP: &str = "v=0\r\n\
o=- 0 0 IN IP4 127.0.0.1\r\n\
s=fuzz\r\n\
t=0 0\r\n\
m=audio 0 RTP/AVP 96\r\n\
a=rtpmap:96 opus/48000/2\r\n\
m=audio 0 RTP/AVP 97\r\n\
a=rtpmap:97 PCMA/8000\r\n\
m=audio 0 RTP/AVP 98\r\n\
a=rtpmap:98 PCMU/16000\r\n\
m=audio 0 RTP/AVP 99\r\n\
a=rtpmap:99 L16/44100/2\r\n";

fuzz_target!(|data: &[u8]| {
    let sdp = sdp::parse(SDP).expect("fixed SDP parses");
    let configs: Vec<(usize, TrackConfig)> = sdp
        .medias
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((i, TrackConfig::from_media(m)?)))
        .collect();
    assert_eq!(configs.len(), 4);
    let mut assembler = FrameAssembler::new(&sdp);
    let mut mp4 = LiveFmp4::new(configs);
    let (mut frames, mut mp4_out) = (Vec::new(), Vec::new());
    let mut seq = [0u64; 4];
    let mut timestamp = [0u64; 4];
    let mut arrival = 0;

    // Records of [control, length, payload...]: the control byte picks the track, the
    // marker, a timestamp step and a sequence skip.
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let (payload, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        let track = usize::from(control & 3);
        let marker = control & 4 != 0;
        timestamp[track] += u64::from((control >> 3) & 3) * 160;
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
        let pkt = Packet {
            data: Bytes::from(packet),
            track: track as u8,
            seq: seq[track],
            timestamp: timestamp[track],
            marker,
            keyframe: false,
            arrival,
            payload_offset: rtp::HEADER_LEN as u16,
        };
        assembler.push(&pkt, &mut frames);
        for frame in frames.drain(..) {
            assert_eq!(frame.track, track);
            mp4.push(frame, &mut mp4_out);
        }
    }
    mp4.flush(&mut mp4_out);
    let _ = mp4.init();
});

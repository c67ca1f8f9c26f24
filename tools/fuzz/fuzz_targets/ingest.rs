//! Arbitrary RTP packets from a publisher through parse-once ingest (`Ingest::packet`),
//! fresh and continuing a previous producer (`continue_from`, the header rewrite): no
//! panic, every packet accepted stays valid RTP with its payload unchanged, and a
//! continued track carries the previous producer's SSRC and the widened sequence number
//! in its header.
#![no_main]

use bytes::Bytes;
use corecast::ingest::{Ingest, TrackTail};
use corecast::rtp;
use libfuzzer_sys::fuzz_target;

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
m=video 0 RTP/AVP 98\r\na=rtpmap:98 H265/90000\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let sdp = corecast::sdp::parse(SDP).expect("fixed SDP");
    let mut ingest = Ingest::new(&sdp);
    let tail = TrackTail {
        ssrc: 0x1234_5678,
        seq: (1 << 16) + u64::from(mode) * 257,
        timestamp: (1 << 32) + u64::from(mode) * 65_537,
        arrival: 1_000,
    };
    let continued = mode & 1 == 1;
    if continued {
        ingest.continue_from(&[Some(tail), Some(tail), None]);
    }
    // Packets are length-prefixed (one byte) slices of the input.
    let mut pos = 0;
    let mut now = 2_000u64;
    while pos < rest.len() {
        let len = usize::from(rest[pos]);
        pos += 1;
        let end = (pos + len).min(rest.len());
        let packet = Bytes::copy_from_slice(&rest[pos..end]);
        pos = end;
        let track = len % 3;
        now += 40_000;
        let Ok((p, _)) = ingest.packet(track, packet.clone(), now) else {
            continue;
        };
        let view = rtp::view(&p.data).expect("an accepted packet stays valid RTP");
        let orig = rtp::view(&packet).expect("it was valid RTP");
        assert_eq!(p.payload(), orig.payload(&packet));
        assert_eq!(p.data.len(), packet.len());
        if continued && track < 2 {
            assert_eq!(view.ssrc, tail.ssrc);
            assert_eq!(view.sequence, p.seq as u16);
        }
        if mode & 2 == 2 {
            ingest.dropped(track);
        }
    }
});

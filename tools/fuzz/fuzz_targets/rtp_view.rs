//! Arbitrary bytes through the RTP/RTCP ingest checks and the codec payload inspectors: none
//! may panic, and a packet view must stay inside the packet.
#![no_main]

use corecast::codec::{aac, h264, h265};
use corecast::rtp::{self, rtcp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rtp::is_rtcp(data);
    if let Ok(view) = rtp::view(data) {
        assert!(view.payload_offset + view.payload_len <= data.len());
        let payload = view.payload(data);
        let _ = h264::rtp_starts_keyframe(payload);
        let _ = h265::rtp_starts_keyframe(payload);
        let (mut sps, mut pps, mut vps) = (None, None, None);
        let _ = h264::learn_parameter_sets(payload, &mut sps, &mut pps);
        let _ = h265::learn_parameter_sets(payload, &mut vps, &mut sps, &mut pps);
        let _ = aac::depacketize_rfc3640(payload);
        let mut depacketizer = h264::Depacketizer::new();
        let mut out = Vec::new();
        depacketizer.push(view.sequence, view.timestamp, true, payload, &mut out);
    }
    let total: usize = rtcp::packets(data).map(|(_, p)| p.len()).sum();
    assert!(total <= data.len());
    let _ = rtcp::parse_sender_report(data);
});

//! Arbitrary bytes as RTP packets of an H.264, an H.265 and an AAC track through the
//! FrameAssembler and both live muxers: nothing may panic, frames stay within their track,
//! and the TS output stays whole 188-byte packets.
#![no_main]

use corecast::mux::fmp4::LiveFmp4;
use corecast::mux::ts::LiveTs;
use corecast::mux::FrameAssembler;
use corecast::sdp;
use libfuzzer_sys::fuzz_target;

#[path = "common/records.rs"]
mod records;

const SDP: &str = "v=0\r\n\
o=- 0 0 IN IP4 127.0.0.1\r\n\
s=fuzz\r\n\
t=0 0\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z00AHpWoKA9oAPGU,aO48gA==\r\n\
m=video 0 RTP/AVP 97\r\n\
a=rtpmap:97 H265/90000\r\n\
a=fmtp:97 sprop-vps=QAEMAf//AWAAAAMAAAMAAAMAAAMAlqwJ;sprop-sps=QgEBAWAAAAMAAAMAAAMAAAMAlqADwIARB8u0;sprop-pps=RAHA8vA8kA==\r\n\
m=audio 0 RTP/AVP 98\r\n\
a=rtpmap:98 MPEG4-GENERIC/48000/2\r\n\
a=fmtp:98 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\r\n";

fuzz_target!(|data: &[u8]| {
    let sdp = sdp::parse(SDP).expect("fixed SDP parses");
    let configs = records::track_configs(&sdp);
    assert_eq!(configs.len(), 3);
    let mut assembler = FrameAssembler::new(&sdp);
    let mut mp4 = LiveFmp4::new(configs.clone());
    let mut ts = LiveTs::new(configs);
    let (mut frames, mut mp4_out, mut ts_out) = (Vec::new(), Vec::new(), Vec::new());
    // Track 3 is not in the SDP.
    records::for_each_packet(data, 1500, |pkt| {
        let track = usize::from(pkt.track);
        assembler.push(&pkt, &mut frames);
        for frame in frames.drain(..) {
            assert_eq!(frame.track, track);
            mp4.push(frame.clone(), &mut mp4_out);
            ts.push(frame, &mut ts_out);
        }
    });
    mp4.flush(&mut mp4_out);
    for fragment in &ts_out {
        assert_eq!(fragment.data.len() % 188, 0);
        assert!(fragment.data.chunks(188).all(|p| p[0] == 0x47));
    }
    let _ = mp4.init();
});

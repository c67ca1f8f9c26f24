//! Arbitrary bytes as RTP packets of Opus, PCMA, PCMU and stereo L16 tracks through the
//! FrameAssembler and the fMP4 muxer (Opus passed through, G.711 and L16 re-encoded as FLAC):
//! nothing may panic and frames stay within their track.
#![no_main]

use corecast::mux::fmp4::LiveFmp4;
use corecast::mux::FrameAssembler;
use corecast::sdp;
use libfuzzer_sys::fuzz_target;

#[path = "common/records.rs"]
mod records;

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
    let configs = records::track_configs(&sdp);
    assert_eq!(configs.len(), 4);
    let mut assembler = FrameAssembler::new(&sdp);
    let mut mp4 = LiveFmp4::new(configs);
    let (mut frames, mut mp4_out) = (Vec::new(), Vec::new());
    records::for_each_packet(data, 160, |pkt| {
        let track = usize::from(pkt.track);
        assembler.push(&pkt, &mut frames);
        for frame in frames.drain(..) {
            assert_eq!(frame.track, track);
            mp4.push(frame, &mut mp4_out);
        }
    });
    mp4.flush(&mut mp4_out);
    let _ = mp4.init();
});

//! Arbitrary text through the WebRTC offer parser and the answer builder: never a panic;
//! whatever answer we build parses again with our own strict parser, keeps one m-line per
//! offered m-line, and answers each chosen codec with a payload type the offer listed.
#![no_main]

use corecast::webrtc::dtls::Fingerprint;
use corecast::webrtc::sdp::{self, AnswerParams, Direction, StreamCodec};
use libfuzzer_sys::fuzz_target;

const CODECS: [StreamCodec; 4] = [
    StreamCodec::H264 {
        profile_level_id: Some([0x64, 0x00, 0x28]),
    },
    StreamCodec::H265,
    StreamCodec::Opus,
    StreamCodec::Pcma,
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = sdp::parse_offer(text) else {
        return;
    };
    let candidates = ["candidate:1 1 udp 2130706431 10.0.0.1 8555 typ host".to_string()];
    for direction in [Direction::SendOnly, Direction::RecvOnly] {
        let params = AnswerParams {
            ice_ufrag: "fuzz",
            ice_pwd: "fuzzfuzzfuzzfuzzfuzzfuzz",
            fingerprint: Fingerprint([7; 32]),
            candidates: &candidates,
            direction,
            codecs: &CODECS,
            ssrcs: (1, 2),
            session_id: 1,
        };
        let Ok(answer) = sdp::build_answer(&offer, &params) else {
            continue;
        };
        let again = sdp::parse_offer(&answer.sdp).expect("our answer must parse");
        assert_eq!(again.medias.len(), offer.medias.len());
        for (m, a) in offer.medias.iter().zip(&answer.medias) {
            if let Some(c) = &a.chosen {
                assert!(m.codecs.iter().any(|oc| oc.payload_type == c.payload_type));
            }
        }
    }
});

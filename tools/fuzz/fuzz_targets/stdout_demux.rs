//! Arbitrary bytes as a program's stdout: detect() must decide within its limit and agree
//! with itself on longer prefixes, and every demuxer must take the bytes in any chunking
//! without panicking, giving the same packets and SDP however they are split.
#![no_main]

use corecast::demux::{detect, Format, StdoutSource, DETECT_LIMIT};
use corecast::rtp;
use libfuzzer_sys::fuzz_target;

const FORMATS: [Format; 4] = [
    Format::MpegTs,
    Format::AnnexBH264,
    Format::AnnexBH265,
    Format::Mjpeg,
];

fn demux(
    format: Format,
    data: &[u8],
    mut chunk: impl FnMut() -> usize,
) -> (Vec<(usize, Vec<u8>)>, Option<String>, bool) {
    let mut source = StdoutSource::new(format, 1);
    let mut packets = Vec::new();
    let mut errors = 0;
    let mut pos = 0;
    while pos < data.len() {
        let n = chunk().clamp(1, data.len() - pos);
        // Arrival time stands still: Annex-B and MJPEG stamps then do not depend on chunking.
        errors += usize::from(source.push(&data[pos..pos + n], 0).is_err());
        while let Some((mline, p)) = source.poll_packet() {
            packets.push((mline, p.to_vec()));
        }
        pos += n;
    }
    source.finish(0);
    while let Some((mline, p)) = source.poll_packet() {
        packets.push((mline, p.to_vec()));
    }
    // Errors are reported per push (a call reports its first), so their count depends on
    // chunking; whether the input failed does not.
    (packets, source.sdp().map(str::to_owned), errors > 0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let detected = detect(data);
    if data.len() >= DETECT_LIMIT {
        assert!(detected.is_some(), "undecided after {DETECT_LIMIT} bytes");
    }
    if let Some(decision) = &detected {
        // Once decided, more bytes do not change the answer (error texts may quote more).
        // A sample of shorter prefixes keeps this linear-ish.
        for len in (1..data.len()).step_by(1 + data.len() / 64) {
            if let Some(earlier) = detect(&data[..len]) {
                assert_eq!(earlier.ok(), decision.as_ref().ok().copied());
            }
        }
    }
    // Feed the detected demuxer, or one picked by the input when detection did not say.
    let format = match detected {
        Some(Ok(format)) => format,
        _ => FORMATS[usize::from(selector) % FORMATS.len()],
    };
    let whole = demux(format, data, || usize::MAX);
    let mut state = u32::from(selector) | 1;
    let chunked = demux(format, data, || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + state as usize % 300
    });
    assert_eq!(whole, chunked);
    for (_, p) in &whole.0 {
        rtp::view(p).expect("valid RTP");
    }
});

//! Arbitrary bytes through the MPEG-TS demuxer in input-chosen chunk sizes: it must never
//! panic, every packet it emits must be RTP for an m= line of its SDP, and how the input is
//! split must not change the packets or the SDP.
#![no_main]

use corecast::demux::{Format, StdoutSource};
use corecast::{rtp, sdp};
use libfuzzer_sys::fuzz_target;

/// Packets (m= line, bytes), SDP and errors after pushing `data` in the given chunks.
fn demux(
    data: &[u8],
    mut chunk: impl FnMut() -> usize,
) -> (Vec<(usize, Vec<u8>)>, Option<String>, usize) {
    let mut source = StdoutSource::new(Format::MpegTs, 7);
    let mut packets = Vec::new();
    let mut errors = 0;
    let mut pos = 0;
    while pos < data.len() {
        let n = chunk().clamp(1, data.len() - pos);
        // Time stands still so the probe timeout cannot make runs differ.
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
    (packets, source.sdp().map(str::to_owned), errors)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let whole = demux(data, || usize::MAX);
    let mut state = u32::from(seed) | 1;
    let chunked = demux(data, || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        1 + state as usize % 400
    });
    assert_eq!(whole, chunked);

    let (packets, sdp_text, _) = whole;
    let medias = match &sdp_text {
        Some(text) => sdp::parse(text).expect("our SDP parses").medias.len(),
        None => {
            assert!(packets.is_empty(), "packets before the SDP");
            return;
        }
    };
    for (mline, p) in &packets {
        assert!(*mline < medias);
        rtp::view(p).expect("valid RTP");
    }
});

//! Arbitrary text through the SDP parser: it must never panic, and anything it accepts must
//! survive write → parse unchanged (so served SDPs are stable) and for_readers().
#![no_main]

use corecast::sdp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = sdp::parse(text) else {
        return;
    };
    let written = parsed.write();
    let again = sdp::parse(&written).expect("written SDP must parse");
    assert_eq!(again.medias, parsed.medias);
    assert_eq!(again, parsed);

    let readers = parsed.for_readers();
    assert_eq!(readers.medias.len(), parsed.medias.len());
    for i in 0..readers.medias.len() {
        let url = format!("rtsp://127.0.0.1:8554/stream/trackID={i}");
        assert_eq!(readers.media_index_for_control(&url), Some(i));
    }
    for media in &parsed.medias {
        let _ = (media.codec(), media.clock_rate(), media.payload_type());
    }
});

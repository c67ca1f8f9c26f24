//! Arbitrary bytes as server answers (prefixed with `RTSP/1.0 ` when the first byte is even,
//! so most inputs reach the status line and headers). Every response that parses must
//! survive write -> parse unchanged; everything else must be an error, never a panic.
#![no_main]

use bytes::BytesMut;
use corecast::rtsp::message::{parse, Message, ParseErrorKind, MAX_HEAD_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let mut buf = BytesMut::new();
    if first % 2 == 0 {
        buf.extend_from_slice(b"RTSP/1.0 ");
    }
    buf.extend_from_slice(input);
    loop {
        let before = buf.len();
        match parse(&mut buf) {
            Ok(Some(Message::Response(resp))) => {
                assert!(buf.len() < before, "a message must consume bytes");
                let mut wire = Vec::new();
                resp.write_to(&mut wire);
                let mut again = BytesMut::from(&wire[..]);
                match parse(&mut again) {
                    Ok(Some(Message::Response(back))) => {
                        assert_eq!(back, resp);
                        assert!(again.is_empty(), "writer emitted trailing bytes");
                    }
                    // Normalising "Name:v" to "Name: v" and LF to CRLF can push a head that
                    // was just under the limit over it.
                    Err(e)
                        if e.kind == ParseErrorKind::HeadTooLarge
                            && wire.len() - resp.body.len() > MAX_HEAD_BYTES => {}
                    other => panic!("re-parse of {resp:?} gave {other:?}"),
                }
            }
            Ok(Some(_)) => assert!(buf.len() < before, "a message must consume bytes"),
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) must not consume");
                return;
            }
            Err(_) => {
                assert_eq!(buf.len(), before, "errors must not consume");
                return;
            }
        }
    }
});

//! Arbitrary bytes into the WebSocket frame decoder, once as a single buffer and once as a
//! buffer growing in steps chosen by the first byte: both must make progress or ask for more,
//! and agree on every message and on the error. Each message must survive re-encoding as a
//! client frame (also fragmented, with a ping in between) and as a server frame.
#![no_main]

use corecast::http::ws::{
    frame_header, masked_frame, Decoder, Message, WsError, OP_BINARY, OP_CLOSE, OP_CONTINUATION,
    OP_PING, OP_PONG, OP_TEXT,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<WsError>,
    consumed: usize,
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    // Small limits half the time so TooLarge is reachable.
    let max = if first & 1 == 0 {
        1 << 16
    } else {
        usize::from(first)
    };
    let whole = decode_stream(input, max, input.len().max(1));
    let step = usize::from(first >> 1) % 17 + 1;
    let grown = decode_stream(input, max, step);
    assert_eq!(whole, grown);
    for msg in &whole.messages {
        round_trip(msg, max, first);
    }
});

/// Decodes `input` with bytes arriving `step` at a time.
fn decode_stream(input: &[u8], max: usize, step: usize) -> Outcome {
    let mut dec = Decoder::new(max);
    let mut messages = Vec::new();
    let mut pos = 0;
    let mut end = 0;
    loop {
        end = (end + step).min(input.len());
        loop {
            match dec.decode(&input[pos..end]) {
                Ok((msg, 0)) => {
                    assert!(msg.is_none(), "a message must consume bytes");
                    break;
                }
                Ok((msg, n)) => {
                    assert!(n <= end - pos, "consumed more than given");
                    pos += n;
                    messages.extend(msg);
                }
                Err(e) => {
                    assert!(matches!(e.close_code(), 1002 | 1007 | 1009), "{e:?}");
                    return Outcome {
                        messages,
                        error: Some(e),
                        consumed: pos,
                    };
                }
            }
        }
        if end == input.len() {
            return Outcome {
                messages,
                error: None,
                consumed: pos,
            };
        }
    }
}

fn round_trip(msg: &Message, max: usize, seed: u8) {
    let mask = [seed, seed ^ 0x5a, seed.wrapping_add(7), 0xc3];
    let (opcode, payload) = match msg {
        Message::Text(s) => (OP_TEXT, s.as_bytes().to_vec()),
        Message::Binary(b) => (OP_BINARY, b.to_vec()),
        Message::Ping(b) => (OP_PING, b.to_vec()),
        Message::Pong(b) => (OP_PONG, b.to_vec()),
        Message::Close(None, reason) => {
            assert!(reason.is_empty());
            (OP_CLOSE, Vec::new())
        }
        Message::Close(Some(code), reason) => {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice(reason.as_bytes());
            (OP_CLOSE, p)
        }
    };
    assert!(payload.len() <= max);

    let frame = masked_frame(true, opcode, mask, &payload);
    let got = decode_stream(&frame, max, frame.len());
    assert_eq!(got.messages, std::slice::from_ref(msg));
    assert_eq!(got.consumed, frame.len());

    if opcode == OP_TEXT || opcode == OP_BINARY {
        // Split anywhere (also inside a UTF-8 sequence), with a ping between the fragments.
        let cut = usize::from(seed) * payload.len() / 256;
        let mut stream = masked_frame(false, opcode, mask, &payload[..cut]);
        stream.extend(masked_frame(true, OP_PING, mask, b"x"));
        stream.extend(masked_frame(true, OP_CONTINUATION, mask, &payload[cut..]));
        let got = decode_stream(&stream, max, 1 + usize::from(seed) % 7);
        assert_eq!(got.error, None);
        assert_eq!(got.messages.len(), 2);
        assert_eq!(got.messages[1], *msg);
    }

    // The server header, with a zero mask spliced in, must decode the same.
    let mut server = frame_header(opcode, payload.len());
    assert!(matches!(server.len(), 2 | 4 | 10));
    server[1] |= 0x80;
    server.extend_from_slice(&[0; 4]);
    server.extend_from_slice(&payload);
    let got = decode_stream(&server, max, server.len());
    assert_eq!(got.messages, std::slice::from_ref(msg));
}

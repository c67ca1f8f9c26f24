//! A stream of interleaved frames and RTSP messages built from the input, fed to the parser in
//! input-chosen chunk sizes; everything must come back out intact and in order, from the
//! zero-copy parse and from the copying one alike.
#![no_main]

use bytes::{Bytes, BytesMut};
use corecast::packet::CopyChunk;
use corecast::rtsp::message::{
    parse, parse_copying, write_interleaved_header, Message, Method, Request, Response,
};
use libfuzzer_sys::fuzz_target;

/// Draws bytes from the fuzz input, yielding zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

const METHODS: [Method; 6] = [
    Method::Options,
    Method::Describe,
    Method::Setup,
    Method::Play,
    Method::GetParameter,
    Method::Record,
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    // Chunk sizes for feeding come from the first byte; the rest builds the stream.
    let chunk_seed = input.byte();
    let mut cseq = 0u32;
    while !input.0.is_empty() && expected.len() < 64 {
        let op = input.byte();
        if op & 0x80 != 0 {
            // Stray line breaks between messages must be skipped.
            wire.extend_from_slice(b"\r\n");
        }
        cseq += 1;
        let msg = match op % 3 {
            0 => {
                let channel = input.byte();
                let len = usize::from(input.byte()) | (usize::from(op & 0x7c) << 6);
                let payload = Bytes::copy_from_slice(input.bytes(len));
                Message::Interleaved { channel, payload }
            }
            1 => {
                let method = METHODS[usize::from(input.byte()) % METHODS.len()].clone();
                let mut req = Request::new(
                    method,
                    format!("rtsp://127.0.0.1:8554/cam/trackID={}", op & 3),
                )
                .with_header("CSeq", cseq.to_string());
                let len = usize::from(input.byte());
                if len > 0 {
                    req = req.with_body("text/parameters", input.bytes(len).to_vec());
                }
                Message::Request(req)
            }
            _ => {
                let status = [200, 401, 404, 454, 461][usize::from(input.byte()) % 5];
                let mut resp = Response::new(status).with_header("CSeq", cseq.to_string());
                let len = usize::from(input.byte());
                if len > 0 {
                    resp = resp.with_body("application/sdp", input.bytes(len).to_vec());
                }
                Message::Response(resp)
            }
        };
        match &msg {
            Message::Request(r) => r.write_to(&mut wire),
            Message::Response(r) => r.write_to(&mut wire),
            Message::Interleaved { channel, payload } => {
                let len = u16::try_from(payload.len()).expect("len < 2^16 by construction");
                wire.extend_from_slice(&write_interleaved_header(*channel, len));
                wire.extend_from_slice(payload);
            }
        }
        expected.push(msg);
    }

    let mut got = Vec::new();
    let mut buf = BytesMut::new();
    let mut state = u32::from(chunk_seed) | 1;
    // The copying parse (pulled cameras) when the seed's high bit is set.
    let mut chunk = (chunk_seed & 0x80 != 0).then(CopyChunk::default);
    let mut pos = 0;
    while pos < wire.len() {
        // xorshift: varied chunk sizes from 1 byte up to a few frames.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = 1 + (state as usize % 600).min(wire.len() - pos - 1);
        buf.extend_from_slice(&wire[pos..pos + n]);
        pos += n;
        loop {
            let parsed = match chunk.as_mut() {
                Some(c) => parse_copying(&mut buf, c),
                None => parse(&mut buf),
            };
            let Some(m) = parsed.expect("well-formed stream") else {
                break;
            };
            got.push(m);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    assert_eq!(got, expected);
});

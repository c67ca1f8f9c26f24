//! WebSocket framing (RFC 6455 §5), server side: a strict [`Decoder`] for masked client
//! frames and writers for unmasked server frames. No extensions (RSV bits must be 0).
//!
//! The decoder reads from the front of the caller's buffer and never copies more than one
//! frame's payload; a length above the limit is refused from the frame header alone, before
//! any of the payload is buffered or allocated.

use super::HeadSlot;
use base64::Engine as _;
use bytes::Bytes;

pub const OP_CONTINUATION: u8 = 0;
pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

/// Largest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (§4.2.2): base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut ctx = ::ring::digest::Context::new(&::ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

/// One complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// Status code (absent when the close frame had no payload) and reason.
    Close(Option<u16>, String),
}

/// A protocol violation by the client. Send a close frame with [`WsError::close_code`] and
/// drop the connection; the [`Decoder`] is not usable afterwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    #[error("client frame is not masked")]
    Unmasked,
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    BadOpcode(u8),
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    #[error("fragmented control frame")]
    FragmentedControl,
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    #[error("message exceeds the size limit")]
    TooLarge,
    #[error("text is not valid UTF-8")]
    BadUtf8,
    #[error("invalid close code {0}")]
    BadCloseCode(u16),
    #[error("close payload of one byte")]
    BadClosePayload,
    #[error("payload length not in its shortest encoding")]
    NonMinimalLength,
    #[error("64-bit payload length with the most significant bit set")]
    BadLength,
}

impl WsError {
    /// The close code to send (§7.4.1): 1007 for bad UTF-8, 1009 for too large, 1002 for
    /// every other protocol error.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::BadUtf8 => 1007,
            WsError::TooLarge => 1009,
            _ => 1002,
        }
    }
}

/// A data message whose final fragment has not arrived yet.
#[derive(Debug)]
struct Fragmented {
    opcode: u8,
    data: Vec<u8>,
    /// Prefix of `data` known to be valid UTF-8 (text only), so each fragment is checked
    /// once and invalid text fails on the fragment that carries it.
    utf8_checked: usize,
}

/// Server side decoder of client frames; see [`Decoder::decode`].
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    fragmented: Option<Fragmented>,
}

impl Decoder {
    /// `max_message` bounds each frame's payload and each reassembled message.
    pub fn new(max_message: usize) -> Self {
        Decoder {
            max_message,
            fragmented: None,
        }
    }

    /// Decodes at most one frame from the start of `buf`; returns the message it completed
    /// (if any) and the bytes it used:
    /// - `(Some(msg), n)`: a message; drop `n` bytes and call again.
    /// - `(None, n)` with `n > 0`: a non-final fragment was taken in; drop `n` and call again.
    /// - `(None, 0)`: the frame at the front is incomplete; call again with more bytes.
    ///
    /// Control frames between the fragments of a data message are returned as they come.
    /// Errors are detected as early as the bytes allow: header violations and too-large
    /// lengths before the payload arrives.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(Option<Message>, usize), WsError> {
        let Some(&b0) = buf.first() else {
            return Ok((None, 0));
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let opcode = b0 & 0x0f;
        let control = match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => false,
            OP_CLOSE | OP_PING | OP_PONG => true,
            other => return Err(WsError::BadOpcode(other)),
        };
        if control && !fin {
            return Err(WsError::FragmentedControl);
        }
        match (opcode, self.fragmented.is_some()) {
            (OP_CONTINUATION, false) => return Err(WsError::UnexpectedContinuation),
            (OP_TEXT | OP_BINARY, true) => return Err(WsError::ExpectedContinuation),
            _ => {}
        }

        let Some(&b1) = buf.get(1) else {
            return Ok((None, 0));
        };
        if b1 & 0x80 == 0 {
            return Err(WsError::Unmasked);
        }
        let len7 = b1 & 0x7f;
        if control && usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(WsError::ControlTooLong);
        }
        let (len, mut pos): (u64, usize) = match len7 {
            126 => {
                let Some(&[hi, lo]) = buf.get(2..4) else {
                    return Ok((None, 0));
                };
                let n = u16::from_be_bytes([hi, lo]);
                if n < 126 {
                    return Err(WsError::NonMinimalLength);
                }
                (u64::from(n), 4)
            }
            127 => {
                let Some(ext) = buf.get(2..10) else {
                    return Ok((None, 0));
                };
                let mut be = [0u8; 8];
                be.copy_from_slice(ext);
                let n = u64::from_be_bytes(be);
                if n >> 63 != 0 {
                    return Err(WsError::BadLength);
                }
                if n <= 0xffff {
                    return Err(WsError::NonMinimalLength);
                }
                (n, 10)
            }
            n => (u64::from(n), 2),
        };
        let already = match (&self.fragmented, opcode) {
            (Some(f), OP_CONTINUATION) => f.data.len(),
            _ => 0,
        };
        // `already <= max_message` always holds: fragments are only kept after this check.
        let room = self.max_message.saturating_sub(already);
        let len = match usize::try_from(len) {
            Ok(len) if len <= room => len,
            _ => return Err(WsError::TooLarge),
        };

        let Some(&[m0, m1, m2, m3]) = buf.get(pos..pos + 4) else {
            return Ok((None, 0));
        };
        pos += 4;
        let Some(masked) = buf.get(pos..).and_then(|rest| rest.get(..len)) else {
            return Ok((None, 0));
        };
        let consumed = pos + len;
        let mask = [m0, m1, m2, m3];
        let payload: Vec<u8> = masked
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect();

        let msg = match opcode {
            OP_PING => Message::Ping(payload.into()),
            OP_PONG => Message::Pong(payload.into()),
            OP_CLOSE => parse_close(&payload)?,
            OP_TEXT | OP_BINARY if fin => data_message(opcode, payload)?,
            OP_TEXT | OP_BINARY => {
                let mut f = Fragmented {
                    opcode,
                    data: payload,
                    utf8_checked: 0,
                };
                check_utf8_prefix(&mut f)?;
                self.fragmented = Some(f);
                return Ok((None, consumed));
            }
            _ => {
                // OP_CONTINUATION; `fragmented` is Some, checked above.
                let Some(f) = self.fragmented.as_mut() else {
                    return Err(WsError::UnexpectedContinuation);
                };
                f.data.extend_from_slice(&payload);
                check_utf8_prefix(f)?;
                if !fin {
                    return Ok((None, consumed));
                }
                let Some(f) = self.fragmented.take() else {
                    return Err(WsError::UnexpectedContinuation);
                };
                data_message(f.opcode, f.data)?
            }
        };
        Ok((Some(msg), consumed))
    }
}

fn data_message(opcode: u8, payload: Vec<u8>) -> Result<Message, WsError> {
    if opcode == OP_TEXT {
        String::from_utf8(payload)
            .map(Message::Text)
            .map_err(|_| WsError::BadUtf8)
    } else {
        Ok(Message::Binary(payload.into()))
    }
}

/// Fails as soon as a text message holds a byte sequence that no continuation can repair; an
/// incomplete sequence at the end is left for the next fragment.
fn check_utf8_prefix(f: &mut Fragmented) -> Result<(), WsError> {
    if f.opcode != OP_TEXT {
        return Ok(());
    }
    let unchecked = f.data.get(f.utf8_checked..).unwrap_or(&[]);
    match std::str::from_utf8(unchecked) {
        Ok(_) => f.utf8_checked = f.data.len(),
        Err(e) if e.error_len().is_some() => return Err(WsError::BadUtf8),
        Err(e) => f.utf8_checked += e.valid_up_to(),
    }
    Ok(())
}

fn parse_close(payload: &[u8]) -> Result<Message, WsError> {
    match payload {
        [] => Ok(Message::Close(None, String::new())),
        [_] => Err(WsError::BadClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(WsError::BadCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::BadUtf8)?;
            Ok(Message::Close(Some(code), reason.to_owned()))
        }
    }
}

/// Codes a peer may send (§7.4): 1000-1003, 1007-1011, and the registered/private range
/// 3000-4999. 1004-1006 and 1015 are reserved and never appear on the wire.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Header of one final, unmasked server frame with a `len`-byte payload (2, 4 or 10 bytes),
/// built in place: no allocation.
pub fn frame_head(opcode: u8, len: usize) -> HeadSlot {
    let mut h = HeadSlot::default();
    h.push(&[0x80 | (opcode & 0x0f)]);
    match len {
        0..=125 => h.push(&[len as u8]),
        126..=0xffff => {
            h.push(&[126]);
            h.push(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(&[127]);
            h.push(&(len as u64).to_be_bytes());
        }
    }
    h
}

/// [`frame_head`] as a `Vec` (for one-off frames).
pub fn frame_header(opcode: u8, len: usize) -> Vec<u8> {
    frame_head(opcode, len).to_vec()
}

/// The shortest length encoding of `len`, with `mask_bit` (0 or 0x80) in the second byte.
fn put_len(out: &mut Vec<u8>, mask_bit: u8, len: usize) {
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = frame_header(opcode, payload.len());
    out.extend_from_slice(payload);
    out
}

/// A complete text frame.
pub fn text_frame(s: &str) -> Vec<u8> {
    server_frame(OP_TEXT, s.as_bytes())
}

/// A complete binary frame.
pub fn binary_frame(payload: &[u8]) -> Vec<u8> {
    server_frame(OP_BINARY, payload)
}

/// A close frame; `reason` is cut on a char boundary so the payload fits 125 bytes.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    server_frame(OP_CLOSE, &payload)
}

/// A ping frame; the payload is cut to 125 bytes.
pub fn ping_frame(payload: &[u8]) -> Vec<u8> {
    server_frame(OP_PING, &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)])
}

/// A pong frame echoing `payload` (cut to 125 bytes; a valid ping never carries more).
pub fn pong_frame(payload: &[u8]) -> Vec<u8> {
    server_frame(OP_PONG, &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)])
}

/// A client-side masked frame, for tests and tools (the server never sends masked frames).
/// Writes exactly what it is given: nothing stops an invalid frame (e.g. a long control
/// frame), which is what tests want.
pub fn masked_frame(fin: bool, opcode: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + payload.len());
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0f));
    put_len(&mut out, 0x80, payload.len());
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Decodes every frame in `buf`, which must hold only whole frames.
    fn decode_all(dec: &mut Decoder, mut buf: &[u8]) -> Result<Vec<Message>, WsError> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let (msg, n) = dec.decode(buf)?;
            assert!(n > 0, "stuck with {} bytes left", buf.len());
            buf = &buf[n..];
            out.extend(msg);
        }
        Ok(out)
    }

    fn one(buf: &[u8]) -> Result<Message, WsError> {
        let mut msgs = decode_all(&mut Decoder::new(1 << 20), buf)?;
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        Ok(msgs.remove(0))
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn rfc_5_7_masked_hello() {
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(one(&frame), Ok(Message::Text("Hello".into())));
        assert_eq!(masked_frame(true, OP_TEXT, MASK, b"Hello"), frame);
        // Every strict prefix asks for more without consuming.
        let mut dec = Decoder::new(1024);
        for k in 0..frame.len() {
            assert_eq!(dec.decode(&frame[..k]), Ok((None, 0)), "prefix {k}");
        }
        assert_eq!(
            dec.decode(&frame),
            Ok((Some(Message::Text("Hello".into())), frame.len()))
        );
    }

    #[test]
    fn rfc_5_7_unmasked_frames_are_refused() {
        // The RFC's unmasked "Hello" and unmasked ping are server->client examples.
        let hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(one(&hello), Err(WsError::Unmasked));
        assert_eq!(WsError::Unmasked.close_code(), 1002);
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(one(&ping), Err(WsError::Unmasked));
        // And what we write is exactly those examples.
        assert_eq!(text_frame("Hello"), hello);
        assert_eq!(ping_frame(b"Hello"), ping);
        assert_eq!(
            pong_frame(b"Hello"),
            [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
    }

    #[test]
    fn rfc_5_7_fragmented_and_control() {
        // The RFC's fragmented "Hel" + "lo", masked as a client would send it.
        let first = masked_frame(false, OP_TEXT, MASK, b"Hel");
        let last = masked_frame(true, OP_CONTINUATION, [1, 2, 3, 4], b"lo");
        assert_eq!(first[0], 0x01);
        assert_eq!(last[0], 0x80);
        let mut dec = Decoder::new(1024);
        assert_eq!(dec.decode(&first), Ok((None, first.len())));
        assert_eq!(
            dec.decode(&last),
            Ok((Some(Message::Text("Hello".into())), last.len()))
        );
        // The RFC's masked pong.
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(one(&pong), Ok(Message::Pong(Bytes::from_static(b"Hello"))));
        let ping = masked_frame(true, OP_PING, MASK, b"Hello");
        assert_eq!(one(&ping), Ok(Message::Ping(Bytes::from_static(b"Hello"))));
        assert_eq!(
            one(&masked_frame(true, OP_PING, MASK, b"")),
            Ok(Message::Ping(Bytes::new()))
        );
    }

    #[test]
    fn control_frames_between_fragments() {
        let mut stream = masked_frame(false, OP_BINARY, MASK, &[1, 2]);
        stream.extend(masked_frame(true, OP_PING, MASK, b"p"));
        stream.extend(masked_frame(false, OP_CONTINUATION, MASK, &[3]));
        stream.extend(masked_frame(true, OP_PONG, MASK, b""));
        stream.extend(masked_frame(true, OP_CONTINUATION, MASK, &[4, 5]));
        stream.extend(masked_frame(true, OP_TEXT, MASK, b"after"));
        let msgs = decode_all(&mut Decoder::new(1024), &stream).unwrap();
        assert_eq!(
            msgs,
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Pong(Bytes::new()),
                Message::Binary(Bytes::from_static(&[1, 2, 3, 4, 5])),
                Message::Text("after".into()),
            ]
        );
    }

    #[test]
    fn extended_lengths() {
        assert_eq!(frame_header(OP_BINARY, 125), [0x82, 125]);
        assert_eq!(frame_header(OP_BINARY, 126), [0x82, 126, 0, 126]);
        assert_eq!(frame_header(OP_BINARY, 256), [0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(frame_header(OP_BINARY, 65535), [0x82, 0x7e, 0xff, 0xff]);
        assert_eq!(
            frame_header(OP_BINARY, 65536),
            [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(frame_header(OP_TEXT, 0), [0x81, 0]);

        for len in [0, 125, 126, 256, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let frame = masked_frame(true, OP_BINARY, MASK, &payload);
            let header = match len {
                0..=125 => 6,
                126..=65535 => 8,
                _ => 14,
            };
            assert_eq!(frame.len(), header + len);
            assert_eq!(one(&frame), Ok(Message::Binary(payload.into())), "{len}");
        }
    }

    #[test]
    fn non_minimal_and_top_bit_lengths() {
        // 16-bit length used for 125 bytes.
        let mut f = vec![0x82, 0x80 | 126, 0, 125];
        f.extend_from_slice(&MASK);
        f.extend_from_slice(&[0; 125]);
        assert_eq!(one(&f), Err(WsError::NonMinimalLength));
        // 64-bit length used for 65535 bytes; refused from the header alone.
        let f = [0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        assert_eq!(one(&f), Err(WsError::NonMinimalLength));
        let f = [0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(one(&f), Err(WsError::BadLength));
        assert_eq!(WsError::BadLength.close_code(), 1002);
    }

    #[test]
    fn oversize_is_refused_from_the_header() {
        let mut dec = Decoder::new(1000);
        // 2^40 bytes announced, no mask, no payload: refused without waiting or allocating.
        let f = [0x82, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0];
        assert_eq!(dec.decode(&f), Err(WsError::TooLarge));
        assert_eq!(WsError::TooLarge.close_code(), 1009);
        let mut dec = Decoder::new(1000);
        assert_eq!(
            dec.decode(&[0x82, 0x80 | 126, 0x03, 0xe9]),
            Err(WsError::TooLarge)
        );
        let mut dec = Decoder::new(1000);
        let f = [0x82, 0x80 | 126, 0x03, 0xe8];
        assert_eq!(
            dec.decode(&f),
            Ok((None, 0)),
            "exactly the limit waits for bytes"
        );
        // Limit on the reassembled message.
        let mut dec = Decoder::new(1000);
        let first = masked_frame(false, OP_BINARY, MASK, &[0; 600]);
        assert_eq!(dec.decode(&first), Ok((None, first.len())));
        let second = masked_frame(true, OP_CONTINUATION, MASK, &[0; 401]);
        assert_eq!(dec.decode(&second[..4]), Err(WsError::TooLarge));
        let mut dec = Decoder::new(1000);
        dec.decode(&first).unwrap();
        let second = masked_frame(true, OP_CONTINUATION, MASK, &[0; 400]);
        assert_eq!(
            dec.decode(&second),
            Ok((Some(Message::Binary(vec![0; 1000].into())), second.len()))
        );
        // Control frames count too when the limit is below 125.
        let mut dec = Decoder::new(4);
        assert_eq!(
            dec.decode(&masked_frame(true, OP_PING, MASK, b"12345")),
            Err(WsError::TooLarge)
        );
    }

    #[test]
    fn header_violations() {
        let cases: [(&[u8], WsError); 9] = [
            (&[0xc1, 0x80], WsError::ReservedBits),
            (&[0xa1], WsError::ReservedBits),
            (&[0x91], WsError::ReservedBits),
            (&[0x83, 0x80], WsError::BadOpcode(3)),
            (&[0x87], WsError::BadOpcode(7)),
            (&[0x8b], WsError::BadOpcode(0xb)),
            (&[0x8f], WsError::BadOpcode(0xf)),
            (&[0x09], WsError::FragmentedControl),
            (&[0x89, 0x80 | 126], WsError::ControlTooLong),
        ];
        for (buf, want) in cases {
            assert_eq!(
                Decoder::new(1024).decode(buf),
                Err(want.clone()),
                "{buf:02x?}"
            );
            assert_eq!(want.close_code(), 1002);
        }
        assert_eq!(
            one(&masked_frame(
                true,
                OP_CLOSE,
                MASK,
                &[0x03, 0xe8, b'x'].repeat(42)
            )),
            Err(WsError::ControlTooLong)
        );
        assert_eq!(
            one(&masked_frame(false, OP_PING, MASK, b"")),
            Err(WsError::FragmentedControl)
        );
    }

    #[test]
    fn continuation_rules() {
        let mut dec = Decoder::new(1024);
        assert_eq!(
            dec.decode(&masked_frame(true, OP_CONTINUATION, MASK, b"x")),
            Err(WsError::UnexpectedContinuation)
        );
        let mut dec = Decoder::new(1024);
        assert_eq!(
            dec.decode(&masked_frame(false, OP_CONTINUATION, MASK, b"x")),
            Err(WsError::UnexpectedContinuation)
        );
        let mut dec = Decoder::new(1024);
        dec.decode(&masked_frame(false, OP_TEXT, MASK, b"a"))
            .unwrap();
        assert_eq!(
            dec.decode(&masked_frame(true, OP_BINARY, MASK, b"b")),
            Err(WsError::ExpectedContinuation)
        );
        assert_eq!(WsError::ExpectedContinuation.close_code(), 1002);
        assert_eq!(WsError::UnexpectedContinuation.close_code(), 1002);
        // After a complete fragmented message, a continuation is unexpected again.
        let mut dec = Decoder::new(1024);
        dec.decode(&masked_frame(false, OP_TEXT, MASK, b"a"))
            .unwrap();
        dec.decode(&masked_frame(true, OP_CONTINUATION, MASK, b"b"))
            .unwrap();
        assert_eq!(
            dec.decode(&masked_frame(true, OP_CONTINUATION, MASK, b"c")),
            Err(WsError::UnexpectedContinuation)
        );
        // Empty fragments are fine.
        let mut s = masked_frame(false, OP_TEXT, MASK, b"");
        s.extend(masked_frame(false, OP_CONTINUATION, MASK, b""));
        s.extend(masked_frame(true, OP_CONTINUATION, MASK, b""));
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &s),
            Ok(vec![Message::Text(String::new())])
        );
    }

    #[test]
    fn utf8_validation() {
        assert_eq!(
            one(&masked_frame(true, OP_TEXT, MASK, b"\xff")),
            Err(WsError::BadUtf8)
        );
        assert_eq!(WsError::BadUtf8.close_code(), 1007);
        // A truncated sequence in a final frame.
        assert_eq!(
            one(&masked_frame(true, OP_TEXT, MASK, b"a\xe2\x82")),
            Err(WsError::BadUtf8)
        );
        // Binary is not checked.
        assert_eq!(
            one(&masked_frame(true, OP_BINARY, MASK, b"\xff")),
            Ok(Message::Binary(Bytes::from_static(b"\xff")))
        );
        // "€" = e2 82 ac split over three fragments is valid.
        let mut s = masked_frame(false, OP_TEXT, MASK, b"a\xe2");
        s.extend(masked_frame(false, OP_CONTINUATION, MASK, b"\x82"));
        s.extend(masked_frame(true, OP_CONTINUATION, MASK, b"\xacb"));
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &s),
            Ok(vec![Message::Text("a€b".into())])
        );
        // Invalid bytes fail on the fragment that carries them, before the message ends.
        let mut dec = Decoder::new(1024);
        assert_eq!(
            dec.decode(&masked_frame(false, OP_TEXT, MASK, b"ok\xc0\xaf")),
            Err(WsError::BadUtf8)
        );
        let mut dec = Decoder::new(1024);
        dec.decode(&masked_frame(false, OP_TEXT, MASK, b"\xe2\x82"))
            .unwrap();
        assert_eq!(
            dec.decode(&masked_frame(false, OP_CONTINUATION, MASK, b"x")),
            Err(WsError::BadUtf8)
        );
        // A sequence left incomplete by the final fragment.
        let mut dec = Decoder::new(1024);
        dec.decode(&masked_frame(false, OP_TEXT, MASK, b"ab"))
            .unwrap();
        assert_eq!(
            dec.decode(&masked_frame(true, OP_CONTINUATION, MASK, b"\xe2\x82")),
            Err(WsError::BadUtf8)
        );
    }

    #[test]
    fn close_payloads() {
        let close = |p: &[u8]| one(&masked_frame(true, OP_CLOSE, MASK, p));
        assert_eq!(close(b""), Ok(Message::Close(None, String::new())));
        assert_eq!(close(&[0x03]), Err(WsError::BadClosePayload));
        assert_eq!(WsError::BadClosePayload.close_code(), 1002);
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            let mut p = code.to_be_bytes().to_vec();
            p.extend_from_slice("bye ✓".as_bytes());
            assert_eq!(
                close(&p),
                Ok(Message::Close(Some(code), "bye ✓".into())),
                "{code}"
            );
            assert_eq!(
                close(&code.to_be_bytes()),
                Ok(Message::Close(Some(code), String::new()))
            );
        }
        for code in [
            0u16, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(close(&code.to_be_bytes()), Err(WsError::BadCloseCode(code)));
            assert_eq!(WsError::BadCloseCode(code).close_code(), 1002);
        }
        assert_eq!(close(&[0x03, 0xe8, 0xff]), Err(WsError::BadUtf8));
    }

    #[test]
    fn server_frames() {
        let f = close_frame(1000, "bye");
        assert_eq!(f, [0x88, 5, 0x03, 0xe8, b'b', b'y', b'e']);
        // 200 two-byte chars: cut to 61 chars (122 bytes) on a char boundary.
        let long = "é".repeat(200);
        let f = close_frame(1001, &long);
        assert_eq!(f[1], 2 + 122);
        assert_eq!(f.len(), 2 + 2 + 122);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
        let f = close_frame(1001, &"a".repeat(200));
        assert_eq!(f[1], 125);
        let f = pong_frame(&[7; 300]);
        assert_eq!(f[1], 125);
        assert_eq!(f.len(), 127);
        let big = binary_frame(&[1; 70_000]);
        assert_eq!(&big[..10], &frame_header(OP_BINARY, 70_000)[..]);
        assert_eq!(big.len(), 70_010);
    }

    #[test]
    fn every_split_point() {
        let mut stream = masked_frame(false, OP_TEXT, MASK, "frag€".as_bytes());
        stream.extend(masked_frame(true, OP_PING, MASK, b"ping"));
        stream.extend(masked_frame(true, OP_CONTINUATION, [9, 8, 7, 6], b"ment"));
        stream.extend(masked_frame(true, OP_BINARY, MASK, &[0xaa; 300]));
        stream.extend(masked_frame(
            true,
            OP_CLOSE,
            MASK,
            &[0x03, 0xe8, b'o', b'k'],
        ));
        let expected = vec![
            Message::Ping(Bytes::from_static(b"ping")),
            Message::Text("frag€ment".into()),
            Message::Binary(vec![0xaa; 300].into()),
            Message::Close(Some(1000), "ok".into()),
        ];
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &stream).unwrap(),
            expected
        );
        for split in 0..=stream.len() {
            let mut dec = Decoder::new(1024);
            let mut got = Vec::new();
            let mut pos = 0;
            for end in [split, stream.len()] {
                loop {
                    let (msg, n) = dec.decode(&stream[pos..end]).unwrap();
                    if n == 0 {
                        assert!(msg.is_none());
                        break;
                    }
                    pos += n;
                    got.extend(msg);
                }
            }
            assert_eq!(pos, stream.len(), "split {split}");
            assert_eq!(got, expected, "split {split}");
        }
    }
}

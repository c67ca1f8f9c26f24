//! Minimal HTTP/1.1 server side: a strict request parser on `httparse` ([`request`]),
//! response heads, chunked framing and Basic auth ([`response`]), and WebSocket (RFC 6455)
//! framing ([`ws`]).
//!
//! Everything here is a pure function over bytes or a small state machine; the driver owns
//! the sockets, the buffers and the timeouts.

pub mod request;
pub mod response;
pub mod ws;

pub use request::{parse_request, percent_decode, HttpError, Limits, Request};

/// A short framing header (a chunk size line, a WebSocket frame header) built in place, so
/// that a live viewer frames every fragment without allocating: writers keep a `Vec` of
/// these, reused every batch, and point iovecs at them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadSlot {
    buf: [u8; HeadSlot::CAP],
    len: u8,
}

impl HeadSlot {
    /// 16 hex digits + CRLF (a chunk of any `usize`); a WebSocket header needs at most 10.
    pub const CAP: usize = 18;

    fn push(&mut self, b: &[u8]) {
        // Callers write at most CAP bytes in total (see the two builders).
        let at = self.len as usize;
        self.buf[at..at + b.len()].copy_from_slice(b);
        self.len += b.len() as u8;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::ops::Deref for HeadSlot {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

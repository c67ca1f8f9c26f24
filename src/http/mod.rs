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

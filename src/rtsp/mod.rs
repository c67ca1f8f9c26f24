//! RTSP 1.0 (RFC 2326): message framing, the Transport header, request-URI helpers and the
//! server session state machine.

pub mod auth;
pub mod client;
pub mod message;
pub mod server;
pub mod transport;
pub mod url;

//! corecast media core: sans-IO protocol state machines and pure functions over bytes.
//!
//! Nothing in this crate touches a socket or reads the clock; time is always an argument
//! (`now` in microseconds on the server's monotonic clock unless a function says otherwise).
#![forbid(unsafe_code)]

pub mod api;
pub mod codec;
pub mod config;
pub mod demux;
pub mod fanout;
pub mod ffmpeg;
pub mod filter;
pub mod http;
pub mod ingest;
pub mod mux;
pub mod packet;
pub mod policy;
pub mod ring;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
pub mod webrtc;

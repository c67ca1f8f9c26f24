//! What produces: stream lifecycles (on demand, idle stop, reconnect; `lifecycle`), RTSP
//! pull and `exec:` stdout (`pull`), and the built-in demo (`demo`). RTSP publishers are
//! received by `egress::rtsp` (one RTSP connection serves both directions) and use the
//! same Producer API.

pub mod demo;
pub mod lifecycle;
pub mod pull;

//! Per-protocol drivers: read socket → handle → drain outputs → write.

pub mod http;
pub mod rtsp;
pub mod udp;

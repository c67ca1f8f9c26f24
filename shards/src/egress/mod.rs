//! Per-protocol drivers: a socket, a `corecast` sans-IO session, and for viewers a
//! `fanout::Consumer` and vectored writes. `rtsp` (also receives RTSP publishers), `http`
//! (API, live media, WebSocket), `udp` (the shard's RTP/RTCP ports), `webrtc` (the WebRTC port, sessions, signalling).

pub mod http;
pub mod rtsp;
pub mod udp;
pub mod webrtc;

ab_switch! {
    /// `CORECAST_NO_DIRECT=1`: caught-up viewers' tasks are always woken, never written
    /// inline by their stream's notify.
    pub(crate) fn direct_allowed = "CORECAST_NO_DIRECT"
}

ab_switch! {
    /// `CORECAST_NO_GATHER=1`: inline writes go as their iovecs, not gathered into one
    /// buffer (`io::sendv::Gathered`).
    pub(crate) fn gather_allowed = "CORECAST_NO_GATHER"
}

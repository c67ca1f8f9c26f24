//! Per-protocol drivers: a socket, a `corecast` sans-IO session, and for viewers a
//! `fanout::Consumer` and vectored writes. `rtsp` (also receives RTSP publishers), `http`
//! (API, live media, WebSocket), `udp` (the shard's RTP/RTCP ports), `webrtc` (the WebRTC port, sessions, signalling).

pub mod http;
pub mod rtsp;
pub mod udp;
pub mod webrtc;

//! What produces: stream lifecycles (on demand, idle stop, reconnect; `lifecycle`), RTSP
//! pull and `exec:` stdout (`pull`), and the built-in demo (`demo`). RTSP publishers are
//! received by `egress::rtsp` (one RTSP connection serves both directions) and use the
//! same Producer API.

pub mod demo;
pub mod hardware;
pub mod lifecycle;
pub mod pull;

use std::net::SocketAddr;

/// Why a source failed. The text goes to the log (with the stream and the source URL,
/// credentials redacted) and to the stream's `error` in `/api/streams`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("bad source URL: {0}")]
    BadUrl(String),
    #[error("cannot resolve {host}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Resolve {
        host: String,
        reason: Option<String>,
    },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("TLS handshake with {addr} timed out")]
    TlsTimeout { addr: SocketAddr },
    /// The TLS layer's own words (certificate refused, ...).
    #[error("{0}")]
    Tls(String),
    #[error("cannot bind UDP ports for RTP: {0}")]
    UdpBind(String),
    #[error("connection to the camera lost{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Lost { detail: Option<String> },
    #[error("the camera closed the connection")]
    Closed,
    /// The RTSP client's finding (an error status, a malformed answer, ...).
    #[error("{0}")]
    Camera(String),
    #[error("no data from the camera for {0}s")]
    Silent(u64),
    #[error("the stream already has a publisher")]
    Taken,
    #[error("exec: {0}")]
    Command(String),
    #[error("stream `{stream}`: program `{program}` is not in exec.allow_paths ({allowed}); nothing was run")]
    NotAllowed {
        stream: String,
        program: String,
        allowed: String,
    },
    #[error("cannot run `{program}`: {reason}")]
    Spawn { program: String, reason: String },
    #[error("`{program}` exited with {status}{tail}")]
    Exited {
        program: String,
        status: String,
        /// ": <its last stderr line>" or nothing.
        tail: String,
    },
    /// What a program wrote could not be read (format, demuxer).
    #[error("{0}")]
    Output(String),
    #[error("ffmpeg source: {0}")]
    Ffmpeg(String),
    #[error("unsupported source scheme `{0}`")]
    Scheme(String),
    #[error("exec {{output}} needs the RTSP server (rtsp: listen)")]
    NoRtspServer,
    #[error("a later source must be RTSP, ffmpeg: or exec with {{output}}")]
    LaterSource,
    #[error("source did not start in time")]
    StartTimeout,
    #[error("stream removed")]
    Removed,
    /// A failure recorded earlier (the stream's `error`), handed to a waiting reader.
    #[error("{0}")]
    Earlier(String),
}

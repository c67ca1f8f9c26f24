//! corecast's thread-per-core runtime and IO drivers, as a library: the `corecast` binary
//! (`main.rs`) parses the command line and calls [`runtime::run`]; unit tests and the
//! criterion benches (`benches/engine.rs`) call the same code.
//!
//! Rooms, dependencies pointing one way (runtime → api, egress → sources, muxers → core):
//! - `core`: streams, rings, relay, registry, the Producer API (imports no other room)
//! - `sources`: what produces (pull, exec, demo, lifecycles)
//! - `muxers`: one frame assembler per stream feeding fMP4/TS/ADTS/MJPEG, snapshots
//! - `egress`: RTSP, HTTP/WebSocket, UDP drivers
//! - `io`: vectored sends, exclusive UDP binds, TLS
//! - `api`: the HTTP API handlers
//!
//! One packet from a publisher's socket to every viewer, in six files:
//! `egress/rtsp.rs` (the publisher's connection reads RTP) → `core/producer.rs` (parse
//! once via `corecast::ingest`, push) → `core/hub.rs` (the stream's ring; the cross-shard
//! relay to mirrors) → `corecast::fanout` (each viewer's policy) → `egress/rtsp.rs` /
//! `egress/http.rs` (the viewer's writer) → `io/sendv.rs` (one vectored send).

// Every unsafe line of the runtime is in `io` (and the tests that check it).
#![deny(unsafe_code)]

/// An A/B switch of BENCHMARKS.md's runs, read once per thread: the path is on unless the
/// environment variable is set to something other than `0`.
macro_rules! ab_switch {
    ($(#[$m:meta])* $vis:vis fn $name:ident = $var:literal) => {
        $(#[$m])*
        $vis fn $name() -> bool {
            thread_local! {
                static ON: bool = std::env::var_os($var).is_none_or(|v| v == "0");
            }
            ON.with(|on| *on)
        }
    };
}

pub mod api;
pub mod core;
pub mod egress;
#[allow(unsafe_code)]
pub mod io;
pub mod logging;
pub mod muxers;
pub mod runtime;
pub mod sources;

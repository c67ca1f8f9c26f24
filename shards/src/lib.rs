//! corecast's thread-per-core runtime and IO drivers, as a library: the `corecast` binary
//! (`main.rs`) parses the command line and calls [`runtime::run`]; unit tests and the
//! criterion benches (`benches/engine.rs`) call the same code.
//!
//! One packet from a publisher's socket to every viewer, in six files:
//! `drive/rtsp.rs` (the publisher's connection reads RTP) → `producer.rs` (parse once,
//! push) → `hub.rs` (the stream's ring; the cross-shard relay to mirrors) →
//! `src/fanout.rs` (each viewer's policy) → `drive/rtsp.rs` / `drive/http.rs` (the
//! viewer's writer) → `sendv.rs` (one vectored send).

pub mod api;
pub mod demo;
pub mod drive;
pub mod hub;
pub mod media;
pub mod producer;
pub mod pull;
pub mod registry;
pub mod runtime;
pub mod sendv;
pub mod source;
pub mod tls;
pub mod udp_bind;

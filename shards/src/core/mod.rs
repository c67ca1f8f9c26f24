//! The core: streams (rings and waiters), the cross-shard relay and control messages
//! (`hub`), the shared directory of streams and outputs (`registry`), and the Producer API
//! every ingest path calls (`producer`). Viewers follow the consumer policy of
//! `corecast::fanout`. Nothing here imports another room of `shards/`: the rooms'
//! control messages reach them through the handler the runtime installs.

pub mod beat;
pub mod hub;
pub mod producer;
pub mod registry;

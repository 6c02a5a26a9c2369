//! fraudmesh-node: the daemon and CLI around the pure core. It owns time, sockets,
//! disk and processes: config, the node directory, the sled store, the engine thread,
//! the libp2p network, the HTTP API and metrics.

pub mod api;
pub mod apiban;
pub mod audit;
pub mod bouncers;
pub mod calls;
pub mod calls_api;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod crowdsec;
pub mod detect;
pub mod dir;
pub mod enforce;
pub mod engine;
pub mod metrics;
pub mod net;
pub mod run;
pub mod store;
pub mod sync;

/// The wall clock in ms since the Unix epoch: the only place the node reads it for the core.
pub fn now_ms() -> fraudmesh::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

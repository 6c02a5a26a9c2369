//! fraudmesh-node: the daemon and CLI around the pure core. It owns time, sockets,
//! disk and processes.
//!
//! Each folder is one role, and every arrow points down the list:
//!
//! - [`cli`]: the command line (clap types, what each command does, how answers print);
//! - [`daemon`]: `fraudmesh run` (the node directory, the config, wiring and signals);
//! - [`http`]: the local HTTP API (router, handlers, request/response types, the client);
//! - [`calls`], [`detect`], [`enforce`], [`audit`]: the subsystems the daemon starts;
//! - [`net`]: the libp2p swarm, gossip and catch-up sync;
//! - [`engine`]: the task that owns the core's ledger and the sled store;
//! - [`metrics`]: the Prometheus registry every part counts into;
//! - [`time`], [`fsutil`], [`backoff`]: small helpers every part shares (the clock,
//!   atomic file writes, retry delays).

#![warn(missing_docs)]

pub mod audit;
pub mod backoff;
pub mod calls;
pub mod cli;
pub mod daemon;
pub mod detect;
pub mod enforce;
pub mod engine;
pub mod fsutil;
pub mod http;
pub mod metrics;
pub mod net;
pub mod priority;
pub mod time;

pub use time::now_ms;

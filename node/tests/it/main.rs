//! The node's integration tests, one binary (`cargo test -p fraudmesh-node --test it`):
//! real `fraudmesh` processes on 127.0.0.1 and, for the firewall and SIP tests, real
//! nftables, Kamailio and sipp in network namespaces the tests create. One module per
//! area; the shared harness is in [`common`]; fixture files are in `node/tests/fixtures/`.
//!
//! Run one area with its module path, e.g. `cargo test -p fraudmesh-node --test it
//! mesh::`. The tests of this binary run on parallel threads: names of namespaces,
//! directories and ports are unique per test, and tests that assert wall-clock bounds or
//! load the CPU take [`common::exclusive`].

mod common;

mod apiban;
mod audit;
mod bad_input;
mod bounds;
mod calls;
mod calls_kamailio;
mod crowdsec;
mod detect;
mod detect_kamailio;
mod enforce_files;
mod enforce_kamailio;
mod enforce_nftables;
mod flood;
mod gossip_validation;
mod mesh;
mod nat;
mod org;
mod org_sync;
mod relay;
mod sensor;
mod sync;

//! fraudmesh-testnet: many fraudmesh nodes on one machine. `run` drives real node
//! processes through scenarios, `inproc` runs hundreds of node stacks in one process, and
//! `sim` simulates the gossip of the core at sizes no machine holds as real stacks.

pub mod client;
pub mod cluster;
pub mod inproc;
pub mod netns;
pub mod plot;
pub mod report;
pub mod rogue;
pub mod scenario;
pub mod sim;

//! fraudmesh-testnet: many fraudmesh nodes on one machine. `run` drives real node
//! processes through scenarios, `inproc` runs hundreds of node stacks in one process, and
//! `sim` simulates the gossip of the core at sizes no machine holds as real stacks.

pub mod sim;

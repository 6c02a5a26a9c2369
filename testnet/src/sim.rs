//! Deterministic gossip simulation (to be written).

//! fraudmesh core: the pure rules of the mesh.
//!
//! Everything in this crate is deterministic: no I/O, no clock reads, no async, and no
//! answer that depends on randomness (the blocklist's hash sets use randomly keyed
//! hashers against hash flooding, which changes speed, never results). Time comes in as
//! a [`Millis`] argument, keys come in as bytes.
//! The node (`fraudmesh-node`) wires these rules to sockets, disk and clocks.
//!
//! - [`audit`]: judging secrets and bindings found in PBX configurations (default PINs, weak passwords, open management ports).
//! - [`calls`]: call authorisation against toll fraud (numbers, premium rate, countries, limits).
//! - [`identity`]: ed25519 identities and their peer-id names.
//! - [`target`]: what a sighting accuses (addresses, prefixes, number prefixes), canonical forms.
//! - [`sighting`]: the signed record, signing and verification with every rejection reason.
//! - [`endorsement`]: organisations' signed endorsements and revocations of node keys.
//! - [`ledger`]: the CRDT holding the newest record per (reporter, target).
//! - [`roster`]: the CRDT holding the newest endorsement record per (organisation, member).
//! - [`policy`]: trust weights (peers, organisations, reputation), the block threshold, the
//!   allowlist and the operator's allows: what is blocked, and why.
//! - [`sync`]: range-based set reconciliation of active record ids between two peers.
//! - [`blocklist`]: the decided set in a structure built for "is this IP blocked?".
//! - [`rate`]: per-reporter token buckets bounding what strangers make a node do.
//! - [`quota`]: fair shares of the store for strangers, evicting the most prolific first.
//! - [`decisions`]: what is blocked and the numbered log of its changes, which enforcers follow.
//! - [`detect`]: log patterns, thresholds and the decoy SIP parser that turn attacks into sightings.

#![warn(missing_docs)]

pub mod audit;
pub mod blocklist;
pub mod calls;
pub mod decisions;
pub mod detect;
pub mod endorsement;
pub mod identity;
pub mod ledger;
pub mod policy;
pub mod quota;
pub mod rate;
pub mod roster;
pub mod sighting;
mod signature;
pub mod sync;
pub mod target;

/// Generated protobuf types of `proto/fraudmesh/v1/*.proto`.
pub mod proto {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/fraudmesh.v1.rs"));
}

/// Milliseconds since the Unix epoch (UTC). The core never reads a clock: callers pass it in.
pub type Millis = u64;

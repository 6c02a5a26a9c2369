//! Call authorisation against toll fraud: the SIP stack asks before each outgoing call
//! whether this account may call this number now.
//!
//! - [`emergency`]: emergency and toll-free short numbers (libphonenumber's short-number
//!   metadata), which always pass.
//! - [`number`]: what users dial, to E.164 with libphonenumber's metadata, and its type.
//! - [`account`]: per-account limits over sliding windows, calls in progress, locks, all
//!   bounded.
//! - [`policy`]: the rules in order (emergency, the operator's always-allow list, the
//!   number of accounts, lock, number, mesh fraud numbers, premium rate, countries,
//!   limits), each decision naming its rule and a reason.
//!
//! Pure like the rest of the core: time comes in as an argument, state is in values the
//! node persists.

pub mod account;
pub mod emergency;
pub mod number;
pub mod policy;

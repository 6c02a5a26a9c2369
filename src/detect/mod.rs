//! Detection rules: what in a PBX's logs or on a decoy SIP port makes an attacker, kept
//! pure so that every rule is tested on fixtures and random input.
//!
//! - [`logs`]: built-in, versioned patterns for Asterisk, FreeSWITCH and Kamailio log lines,
//!   and operators' own patterns; the address only ever comes from the field the SIP stack
//!   wrote.
//! - [`window`]: sliding-window thresholds per source and kind of event.
//! - [`pipeline`]: never-report rules (allowlist, trunks, recently registered) then thresholds.
//! - [`sip`]: a strict parser for requests sent to a decoy listener, and scanner user agents.
//!
//! The node follows the files and sockets and feeds these rules; what crosses a threshold
//! becomes a signed sighting like any manual report.

pub mod logs;
pub mod pipeline;
pub mod sip;
pub mod window;

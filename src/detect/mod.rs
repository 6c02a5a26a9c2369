//! Detection rules: what in a PBX's logs or on a decoy SIP port makes an attacker, kept
//! pure so that every rule is tested on fixtures and random input.
//!
//! - [`logs`]: built-in, versioned patterns for Asterisk, FreeSWITCH and Kamailio log lines,
//!   anchored to each stack's own field structure, and operators' own patterns; each event
//!   says what [`Proof`] of return routability its line carries.
//! - [`window`]: sliding-window thresholds per source group (an IPv4 address, an IPv6 /64)
//!   and kind of event, with least-recently-used eviction.
//! - [`pipeline`]: proof first (unproven events never count), then the never-report rules
//!   (allowlist, trunks, own addresses, peers, recently registered), the thresholds and the
//!   per-node report cap.
//! - [`sip`]: a strict parser for requests sent to a decoy listener, and scanner user agents.
//!
//! The node follows the files and sockets and feeds these rules; what crosses a threshold
//! becomes a signed sighting like any manual report.

pub mod logs;
pub mod pipeline;
pub mod sip;
pub mod window;

/// What shows that an event's source really receives packets at its address (return
/// routability). An off-path spoofer can put any source address on a UDP datagram, so
/// only a proven event may count toward a report: anything else could name an innocent
/// address, a peer or a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proof {
    /// Nothing proves it: the source may be forged. Counted (by `reason`), never reported.
    None {
        /// Why not, as a stable metric label (`udp`, `no-transport`, `nonce-not-sent`, …).
        reason: &'static str,
    },
    /// A completed handshake with that address: TCP (also under TLS and WebSocket) or SCTP.
    Handshake,
    /// The source answered with a nonce that was sent to that address: the PBX's digest
    /// challenge (when the nonce is bound to the address or the log shows where it went)
    /// or the sensor's.
    NonceEcho,
}

impl Proof {
    /// Whether the event may count toward a report.
    pub fn is_proven(self) -> bool {
        !matches!(self, Self::None { .. })
    }

    /// A stable name for output: `none`, `handshake`, `nonce-echo`.
    pub fn label(self) -> &'static str {
        match self {
            Self::None { .. } => "none",
            Self::Handshake => "handshake",
            Self::NonceEcho => "nonce-echo",
        }
    }

    /// Why the event is unproven (`None` when it is proven).
    pub fn unproven_reason(self) -> Option<&'static str> {
        match self {
            Self::None { reason } => Some(reason),
            _ => None,
        }
    }
}

//! Acceptance bounds: the fixed size caps of a payload and its evidence, the per-node
//! [`AcceptLimits`] (prefix breadth, TTL, clock skew), and evidence checked or cut to the caps.

use super::{Error, Evidence};
use crate::target::Bounds;

/// Largest encoded payload accepted.
pub const MAX_PAYLOAD_BYTES: usize = 1024;
/// Largest SIP method in evidence.
pub const MAX_METHOD_BYTES: usize = 16;
/// Largest user agent in evidence.
pub const MAX_USER_AGENT_BYTES: usize = 128;
/// Largest free-text reason in evidence.
pub const MAX_REASON_BYTES: usize = 200;
/// Most usernames in evidence (more is refused on receipt, cut when signing).
pub const MAX_USERNAMES: usize = 8;
/// Largest single username in evidence.
pub const MAX_USERNAME_BYTES: usize = 32;

/// The bounds a node puts on what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptLimits {
    /// The broadest IP prefixes accepted, per family. Default /16 for IPv4, /32 for IPv6.
    pub bounds: Bounds,
    /// Longest TTL accepted, seconds. Default 7 days.
    pub max_ttl_s: u32,
    /// How far in the future `observed_at` may lie, ms. Default 5 minutes.
    pub max_future_skew_ms: u64,
}

impl Default for AcceptLimits {
    fn default() -> Self {
        Self {
            bounds: Bounds::default(),
            max_ttl_s: 7 * 24 * 3600,
            max_future_skew_ms: 5 * 60 * 1000,
        }
    }
}

impl Evidence {
    pub(super) fn check(&self) -> Result<(), Error> {
        if self.method.len() > MAX_METHOD_BYTES {
            return Err(Error::EvidenceTooLarge("method"));
        }
        if self.user_agent.len() > MAX_USER_AGENT_BYTES {
            return Err(Error::EvidenceTooLarge("user_agent"));
        }
        if self.reason.len() > MAX_REASON_BYTES {
            return Err(Error::EvidenceTooLarge("reason"));
        }
        if self.usernames.len() > MAX_USERNAMES || self.usernames.iter().any(|u| u.len() > MAX_USERNAME_BYTES) {
            return Err(Error::EvidenceTooLarge("usernames"));
        }
        Ok(())
    }

    /// Cuts every field to its bound (at a character boundary), for locally made evidence.
    pub fn truncated(mut self) -> Self {
        fn cut(s: &mut String, max: usize) {
            if s.len() > max {
                let mut end = max;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
            }
        }
        cut(&mut self.method, MAX_METHOD_BYTES);
        cut(&mut self.user_agent, MAX_USER_AGENT_BYTES);
        cut(&mut self.reason, MAX_REASON_BYTES);
        self.usernames.truncate(MAX_USERNAMES);
        for u in &mut self.usernames {
            cut(u, MAX_USERNAME_BYTES);
        }
        self
    }
}

//! The node's wall clock and how it writes times for people and other tools.

use fraudmesh::Millis;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock in ms since the Unix epoch: the only place the node reads it for the core.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `ms` since the Unix epoch as RFC 3339 in UTC, to the second (`2026-11-27T08:00:00Z`).
pub fn rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_to_the_second() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_790_000_000_999), "2026-09-21T14:13:20Z");
    }
}

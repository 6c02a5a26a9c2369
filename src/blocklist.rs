//! The hot-path "is this IP / number blocked?" structure.
//!
//! A [`Blocklist`] is an immutable snapshot built once by a
//! [`BlocklistBuilder`] from the nets and number prefixes the ledger and the
//! trust policy decided to block. The node publishes it behind an
//! `Arc<Blocklist>` that it swaps atomically, so readers never lock and the
//! structure itself has no interior mutability.
//!
//! # Why it is shaped this way
//!
//! Almost every blocked entry is a single host (a fraudster's SIP endpoint);
//! real prefixes are few (tens of thousands at most). Measured on the team's
//! machine, one trie holding everything answers in 250–350 ns, while a hash
//! set of hosts plus a small sorted structure for the prefixes answers in
//! tens of ns over 1M hosts + 50k prefixes. So:
//!
//! * **Hosts** (an IPv4 `/32` or an IPv6 `/128`) live in a `HashSet<u32>` /
//!   `HashSet<u128>`: one probe of a compact table, no pointer chasing.
//! * **Prefixes** are merged at build time into a sorted `Vec` of disjoint,
//!   non-adjacent inclusive ranges `(start, end)` (one for IPv4 as `u32`, one
//!   for IPv6 as `u128`); a lookup is a `partition_point` binary search, and
//!   is only done when the host set misses. Overlapping, nested and adjacent
//!   prefixes collapse into one range, so the vector is never longer than the
//!   number of inserted prefixes. IPv4 also gets a 65,537-entry index by the
//!   top 16 bits (256 KiB) that narrows the search to the ranges starting in
//!   the address's /16: a plain binary search over 50k ranges cost ~1.5-2x a
//!   `HashSet<IpAddr>` lookup in the benchmark, the indexed one ~1x.
//! * **IPv4-mapped IPv6**: a *query* for `::ffff:a.b.c.d` is a query for the
//!   IPv4 address `a.b.c.d` (that is how a dual-stack socket shows an IPv4
//!   peer), and [`BlocklistBuilder::insert_host`] stores a mapped address as
//!   IPv4. But an IPv4 query only ever consults IPv4 entries: no IPv6 *entry*
//!   blocks an IPv4 address, not `::/0`, not `::fffe:0:0/95`, not an IPv6
//!   net inside `::ffff:0:0/96`. Such entries cannot come from targets (the
//!   protocol refuses IPv6 prefixes overlapping the mapped range, and turns
//!   mapped addresses into IPv4 before they are signed: see
//!   [`crate::target`]); if a caller inserts one anyway, it blocks only the
//!   non-mapped IPv6 addresses it contains. An IPv6 accusation therefore never
//!   reaches IPv4, and a lookup needs exactly one family.
//! * **Number prefixes** (E.164 digits, no `+`, at most 15) sit in a hash set;
//!   a lookup tries each prefix length of the input from the longest down,
//!   skipping lengths for which nothing was inserted.
//!
//! The hash sets keep std's [`RandomState`](std::collections::hash_map::RandomState)
//! (keyed SipHash): the keys are addresses seen in attackers' traffic, so an
//! unkeyed fast hash would let an attacker choose colliding addresses and
//! degrade the hot path (hash flooding). The benchmark in
//! `benches/blocklist.rs` shows the keyed hash is within budget. (The keys
//! come from the OS random source once per thread; that is not a clock and
//! does not make any answer depend on it.)
//!
//! This module is pure: no I/O, no clock, no panics on external input.

use std::collections::HashSet;
use std::error::Error;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Longest E.164 number (and so longest number prefix), in digits.
pub const MAX_NUMBER_DIGITS: usize = 15;

/// `::ffff:0:0/96`, the IPv4-mapped IPv6 range, as `u128` bounds (tests only: the
/// lookup turns mapped queries into IPv4 with `to_ipv4_mapped`).
#[cfg(test)]
const MAPPED_START: u128 = 0xffff_u128 << 32;

/// Why a number prefix was refused by [`BlocklistBuilder::try_insert_number_prefix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberPrefixError {
    /// The prefix has no digits.
    Empty,
    /// The prefix is longer than [`MAX_NUMBER_DIGITS`].
    TooLong,
    /// The prefix holds something other than ASCII digits (a `+` included).
    NotDigits,
}

impl fmt::Display for NumberPrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("number prefix is empty"),
            Self::TooLong => write!(f, "number prefix is longer than {MAX_NUMBER_DIGITS} digits"),
            Self::NotDigits => f.write_str("number prefix holds a non-digit character"),
        }
    }
}

impl Error for NumberPrefixError {}

/// Checks that `digits` is a valid E.164 number prefix: 1..=15 ASCII digits.
pub fn validate_number_prefix(digits: &str) -> Result<(), NumberPrefixError> {
    if digits.is_empty() {
        Err(NumberPrefixError::Empty)
    } else if !digits.bytes().all(|b| b.is_ascii_digit()) {
        Err(NumberPrefixError::NotDigits)
    } else if digits.len() > MAX_NUMBER_DIGITS {
        Err(NumberPrefixError::TooLong)
    } else {
        Ok(())
    }
}

/// Collects blocked nets and number prefixes, then freezes them into a
/// [`Blocklist`] with [`build`](Self::build).
#[derive(Clone, Default)]
pub struct BlocklistBuilder {
    v4_hosts: HashSet<u32>,
    v6_hosts: HashSet<u128>,
    v4_nets: Vec<Ipv4Net>,
    v6_nets: Vec<Ipv6Net>,
    numbers: HashSet<Box<str>>,
}

impl BlocklistBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves room for `v4` more IPv4 and `v6` more IPv6 single hosts, so
    /// inserting a large set does not rehash repeatedly.
    pub fn reserve_hosts(&mut self, v4: usize, v6: usize) {
        self.v4_hosts.reserve(v4);
        self.v6_hosts.reserve(v6);
    }

    /// Adds a blocked target: an address or prefix, or a number prefix.
    pub fn insert_target(&mut self, target: &crate::target::Target) {
        match target {
            crate::target::Target::Ip(net) => self.insert_net(*net),
            crate::target::Target::Number(digits) => self.insert_number_prefix(digits),
        }
    }

    /// Adds a blocked IPv4/IPv6 host or prefix. A /32 (v4) or /128 (v6) is a host.
    ///
    /// Host bits below the prefix length are ignored (`10.1.2.3/8` is
    /// `10.0.0.0/8`). An IPv6 net stays IPv6 and never blocks an IPv4 address
    /// (see the module doc), even one inside or over `::ffff:0:0/96`.
    pub fn insert_net(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => self.insert_v4(n),
            IpNet::V6(n) => self.insert_v6(n),
        }
    }

    /// Adds a single blocked host (same as inserting a /32 or /128), except that an
    /// IPv4-mapped IPv6 address is the IPv4 address it maps.
    pub fn insert_host(&mut self, ip: IpAddr) {
        match canonical(ip) {
            IpAddr::V4(a) => {
                self.v4_hosts.insert(u32::from(a));
            }
            IpAddr::V6(a) => {
                self.v6_hosts.insert(u128::from(a));
            }
        }
    }

    fn insert_v4(&mut self, net: Ipv4Net) {
        if net.prefix_len() == 32 {
            self.v4_hosts.insert(u32::from(net.addr()));
        } else {
            self.v4_nets.push(net.trunc());
        }
    }

    fn insert_v6(&mut self, net: Ipv6Net) {
        let net = net.trunc();
        let bits = u128::from(net.network());
        if net.prefix_len() == 128 {
            self.v6_hosts.insert(bits);
        } else {
            self.v6_nets.push(net);
        }
    }

    /// Adds a blocked E.164 number prefix (ASCII digits only, no '+', 1..=15 digits).
    ///
    /// An invalid prefix is ignored; use
    /// [`try_insert_number_prefix`](Self::try_insert_number_prefix) to learn why.
    pub fn insert_number_prefix(&mut self, digits: &str) {
        // Ignoring is the documented behaviour for invalid input.
        let _ = self.try_insert_number_prefix(digits);
    }

    /// Adds a blocked E.164 number prefix, or says why it is not valid.
    pub fn try_insert_number_prefix(&mut self, digits: &str) -> Result<(), NumberPrefixError> {
        validate_number_prefix(digits)?;
        if !self.numbers.contains(digits) {
            self.numbers.insert(digits.into());
        }
        Ok(())
    }

    /// Freezes the builder into an immutable snapshot. O(n log n) in the
    /// number of prefixes.
    pub fn build(self) -> Blocklist {
        let Self {
            mut v4_hosts,
            mut v6_hosts,
            mut v4_nets,
            mut v6_nets,
            mut numbers,
        } = self;

        v4_nets.sort_unstable();
        v4_nets.dedup();
        v6_nets.sort_unstable();
        v6_nets.dedup();

        let v4_ranges: Vec<(u32, u32)> = v4_nets
            .iter()
            .map(|n| (u32::from(n.network()), u32::from(n.broadcast())))
            .collect();
        // IPv6 ranges never become IPv4 ones, whatever part of ::ffff:0:0/96 they cover.
        let v6_ranges: Vec<(u128, u128)> = v6_nets
            .iter()
            .map(|n| (u128::from(n.network()), u128::from(n.broadcast())))
            .collect();

        let number_len_mask = numbers.iter().fold(0u16, |m, p| m | (1 << p.len()));
        v4_hosts.shrink_to_fit();
        v6_hosts.shrink_to_fit();
        numbers.shrink_to_fit();

        Blocklist {
            v4_hosts,
            v6_hosts,
            v4_ranges: V4Ranges::new(merge_ranges(v4_ranges, |x| x.checked_add(1))),
            v6_ranges: merge_ranges(v6_ranges, |x| x.checked_add(1)),
            prefix_count: v4_nets.len() + v6_nets.len(),
            numbers,
            number_len_mask,
        }
    }
}

impl Extend<IpNet> for BlocklistBuilder {
    fn extend<I: IntoIterator<Item = IpNet>>(&mut self, iter: I) {
        for net in iter {
            self.insert_net(net);
        }
    }
}

impl FromIterator<IpNet> for BlocklistBuilder {
    fn from_iter<I: IntoIterator<Item = IpNet>>(iter: I) -> Self {
        let mut b = Self::new();
        b.extend(iter);
        b
    }
}

impl fmt::Debug for BlocklistBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlocklistBuilder")
            .field("hosts", &(self.v4_hosts.len() + self.v6_hosts.len()))
            .field("prefixes", &(self.v4_nets.len() + self.v6_nets.len()))
            .field("numbers", &self.numbers.len())
            .finish()
    }
}

/// Sorts inclusive ranges and merges overlapping and adjacent ones, giving
/// disjoint, non-adjacent ranges in ascending order. `succ` is `x + 1`, or
/// `None` at the top of the address space.
fn merge_ranges<T: Copy + Ord>(mut ranges: Vec<(T, T)>, succ: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        if let Some(last) = merged.last_mut() {
            // `None`: the last range already reaches the top, it covers this one.
            let touches = succ(last.1).is_none_or(|next| start <= next);
            if touches {
                last.1 = last.1.max(end);
                continue;
            }
        }
        merged.push((start, end));
    }
    merged.shrink_to_fit();
    merged
}

/// Whether `x` falls in one of `ranges` (sorted, disjoint).
#[inline]
fn in_ranges<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|&(start, _)| start <= x);
    match i.checked_sub(1).and_then(|j| ranges.get(j)) {
        Some(&(_, end)) => x <= end,
        None => false,
    }
}

/// Merged IPv4 ranges plus an index by the top 16 bits of the address, so a
/// lookup searches only the few ranges that start in the address's /16
/// instead of binary-searching all of them.
#[derive(Clone, Default)]
struct V4Ranges {
    /// Sorted, disjoint, non-adjacent inclusive ranges.
    ranges: Vec<(u32, u32)>,
    /// `index[h]` = how many ranges start below `h << 16`; 65,537 entries,
    /// or empty when there are no ranges (or, absurdly, more than `u32::MAX`).
    index: Box<[u32]>,
}

impl V4Ranges {
    const BUCKETS: usize = 1 << 16;

    fn new(ranges: Vec<(u32, u32)>) -> Self {
        if ranges.is_empty() || u32::try_from(ranges.len()).is_err() {
            return Self {
                ranges,
                index: Box::default(),
            };
        }
        let mut index = Vec::with_capacity(Self::BUCKETS + 1);
        let mut below = 0usize;
        for h in 0..=Self::BUCKETS as u64 {
            let bucket_start = h << 16;
            while ranges
                .get(below)
                .is_some_and(|&(start, _)| u64::from(start) < bucket_start)
            {
                below += 1;
            }
            // Fits: checked against u32::MAX above.
            index.push(below as u32);
        }
        Self {
            ranges,
            index: index.into_boxed_slice(),
        }
    }

    #[inline]
    fn contains(&self, x: u32) -> bool {
        let h = (x >> 16) as usize;
        let (lo, hi) = match (self.index.get(h), self.index.get(h + 1)) {
            (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
            _ => (0, self.ranges.len()),
        };
        // The candidate is the last range starting at or below `x`: inside
        // this /16's slice, or the one just before it (which may reach in).
        let in_slice = self
            .ranges
            .get(lo..hi)
            .map_or(0, |s| s.partition_point(|&(start, _)| start <= x));
        match (lo + in_slice).checked_sub(1).and_then(|j| self.ranges.get(j)) {
            Some(&(_, end)) => x <= end,
            None => false,
        }
    }

    fn len(&self) -> usize {
        self.ranges.len()
    }

    fn heap_bytes(&self) -> usize {
        self.ranges.capacity() * std::mem::size_of::<(u32, u32)>() + self.index.len() * std::mem::size_of::<u32>()
    }
}

/// The family an address is looked up in: IPv4-mapped IPv6 becomes IPv4.
#[inline]
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// An immutable snapshot of what is blocked. Cheap to share behind an `Arc`.
#[derive(Clone, Default)]
pub struct Blocklist {
    v4_hosts: HashSet<u32>,
    v6_hosts: HashSet<u128>,
    /// Sorted, disjoint, non-adjacent inclusive ranges.
    v4_ranges: V4Ranges,
    /// Sorted, disjoint, non-adjacent inclusive ranges.
    v6_ranges: Vec<(u128, u128)>,
    /// Distinct prefixes as inserted (after truncation and dedup).
    prefix_count: usize,
    numbers: HashSet<Box<str>>,
    /// Bit `n` is set when some number prefix has `n` digits.
    number_len_mask: u16,
}

impl Blocklist {
    /// An empty blocklist (blocks nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `ip` is blocked, by a host entry or by a prefix. The hot path.
    ///
    /// `::ffff:a.b.c.d` is treated exactly as `a.b.c.d`; an IPv4 address is only
    /// ever blocked by IPv4 entries.
    #[inline]
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.is_blocked_v4(a),
            IpAddr::V6(a) => self.is_blocked_v6(a),
        }
    }

    /// [`is_blocked`](Self::is_blocked) for an IPv4 address: IPv4 hosts and ranges only.
    #[inline]
    pub fn is_blocked_v4(&self, ip: Ipv4Addr) -> bool {
        let x = u32::from(ip);
        self.v4_hosts.contains(&x) || self.v4_ranges.contains(x)
    }

    /// [`is_blocked`](Self::is_blocked) for an IPv6 address (IPv4-mapped
    /// addresses are looked up as IPv4, in IPv4 entries only).
    #[inline]
    pub fn is_blocked_v6(&self, ip: Ipv6Addr) -> bool {
        if let Some(v4) = ip.to_ipv4_mapped() {
            return self.is_blocked_v4(v4);
        }
        let x = u128::from(ip);
        self.v6_hosts.contains(&x) || in_ranges(&self.v6_ranges, x)
    }

    /// The longest blocked number prefix that `digits` (E.164 digits, no '+') starts with.
    ///
    /// A single leading `+` is tolerated and skipped, so a caller that forgot
    /// to strip it does not silently miss a block.
    pub fn blocked_number_prefix(&self, digits: &str) -> Option<&str> {
        if self.number_len_mask == 0 {
            return None;
        }
        let digits = digits.strip_prefix('+').unwrap_or(digits);
        let longest = digits.len().min(MAX_NUMBER_DIGITS);
        (1..=longest)
            .rev()
            .filter(|&n| self.number_len_mask & (1 << n) != 0)
            // `get` is `None` off a char boundary: no panic on non-ASCII input.
            .find_map(|n| digits.get(..n).and_then(|p| self.numbers.get(p)))
            .map(|p| &**p)
    }

    /// Distinct single hosts (IPv4 /32 and IPv6 /128; mapped addresses given to
    /// [`BlocklistBuilder::insert_host`] count as IPv4).
    pub fn host_count(&self) -> usize {
        self.v4_hosts.len() + self.v6_hosts.len()
    }

    /// Distinct prefixes as inserted (after dedup), IPv4 + IPv6. Merging of
    /// overlapping prefixes for lookup does not change this count.
    pub fn prefix_count(&self) -> usize {
        self.prefix_count
    }

    /// Distinct blocked number prefixes.
    pub fn number_count(&self) -> usize {
        self.numbers.len()
    }

    /// Whether nothing at all is blocked.
    pub fn is_empty(&self) -> bool {
        self.host_count() == 0 && self.prefix_count == 0 && self.numbers.is_empty()
    }

    /// Number of merged lookup ranges, IPv4 + IPv6 (at most `prefix_count`).
    pub fn range_count(&self) -> usize {
        self.v4_ranges.len() + self.v6_ranges.len()
    }

    /// Rough heap footprint in bytes, estimated from capacities (hash tables
    /// as a power-of-two bucket count with one control byte per bucket).
    pub fn approx_heap_bytes(&self) -> usize {
        fn table<T>(capacity: usize) -> usize {
            if capacity == 0 {
                return 0;
            }
            let buckets = if capacity < 8 {
                capacity.next_power_of_two().max(4)
            } else {
                (capacity.saturating_mul(8) / 7).next_power_of_two()
            };
            buckets.saturating_mul(std::mem::size_of::<T>() + 1) + 16
        }
        let number_bytes: usize = self.numbers.iter().map(|p| p.len()).sum();
        table::<u32>(self.v4_hosts.capacity())
            + table::<u128>(self.v6_hosts.capacity())
            + table::<Box<str>>(self.numbers.capacity())
            + number_bytes
            + self.v4_ranges.heap_bytes()
            + self.v6_ranges.capacity() * std::mem::size_of::<(u128, u128)>()
    }
}

impl fmt::Debug for Blocklist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blocklist")
            .field("hosts", &self.host_count())
            .field("prefixes", &self.prefix_count)
            .field("ranges", &self.range_count())
            .field("numbers", &self.numbers.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test net")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn build(nets: &[&str]) -> Blocklist {
        nets.iter().map(|s| net(s)).collect::<BlocklistBuilder>().build()
    }

    #[test]
    fn blocklist_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Blocklist>();
        assert_send_sync::<BlocklistBuilder>();
    }

    #[test]
    fn empty_blocks_nothing() {
        for bl in [Blocklist::default(), BlocklistBuilder::new().build()] {
            assert!(bl.is_empty());
            assert_eq!((bl.host_count(), bl.prefix_count(), bl.number_count()), (0, 0, 0));
            for a in ["0.0.0.0", "255.255.255.255", "::", "::ffff:1.2.3.4", "2001:db8::1"] {
                assert!(!bl.is_blocked(ip(a)), "{a}");
            }
            assert_eq!(bl.blocked_number_prefix("441234567890"), None);
        }
    }

    #[test]
    fn v4_hosts_match_exactly() {
        let bl = build(&["192.0.2.1/32", "198.51.100.7/32", "192.0.2.1/32"]);
        assert_eq!(bl.host_count(), 2);
        assert_eq!(bl.prefix_count(), 0);
        assert!(!bl.is_empty());
        assert!(bl.is_blocked(ip("192.0.2.1")));
        assert!(bl.is_blocked(ip("198.51.100.7")));
        assert!(!bl.is_blocked(ip("192.0.2.0")));
        assert!(!bl.is_blocked(ip("192.0.2.2")));
        assert!(!bl.is_blocked(ip("198.51.100.6")));
    }

    #[test]
    fn v4_prefix_first_and_last_address() {
        let bl = build(&["10.1.2.0/24"]);
        assert_eq!(bl.prefix_count(), 1);
        assert_eq!(bl.host_count(), 0);
        assert!(!bl.is_blocked(ip("10.1.1.255")));
        assert!(bl.is_blocked(ip("10.1.2.0")));
        assert!(bl.is_blocked(ip("10.1.2.128")));
        assert!(bl.is_blocked(ip("10.1.2.255")));
        assert!(!bl.is_blocked(ip("10.1.3.0")));
    }

    #[test]
    fn host_bits_are_truncated() {
        let bl = build(&["10.1.2.3/24", "10.1.2.0/24"]);
        assert_eq!(bl.prefix_count(), 1, "same prefix after truncation");
        assert!(bl.is_blocked(ip("10.1.2.0")));
        assert!(bl.is_blocked(ip("10.1.2.255")));
    }

    #[test]
    fn overlapping_prefixes_are_merged() {
        let bl = build(&["10.0.0.0/8", "10.1.0.0/16", "10.255.255.0/24", "10.0.0.0/8"]);
        assert_eq!(bl.prefix_count(), 3, "duplicates removed, nested kept");
        assert_eq!(bl.range_count(), 1);
        assert!(bl.is_blocked(ip("10.0.0.0")));
        assert!(bl.is_blocked(ip("10.255.255.255")));
        assert!(!bl.is_blocked(ip("9.255.255.255")));
        assert!(!bl.is_blocked(ip("11.0.0.0")));
    }

    #[test]
    fn adjacent_prefixes_are_merged() {
        let bl = build(&["10.0.0.0/25", "10.0.0.128/25", "10.0.1.0/24", "10.0.3.0/24"]);
        assert_eq!(bl.prefix_count(), 4);
        assert_eq!(bl.range_count(), 2, "10.0.0.0-10.0.1.255 and 10.0.3.0/24");
        assert!(bl.is_blocked(ip("10.0.0.127")));
        assert!(bl.is_blocked(ip("10.0.0.128")));
        assert!(bl.is_blocked(ip("10.0.1.255")));
        assert!(!bl.is_blocked(ip("10.0.2.0")));
        assert!(!bl.is_blocked(ip("10.0.2.255")));
        assert!(bl.is_blocked(ip("10.0.3.0")));
        assert!(!bl.is_blocked(ip("10.0.4.0")));
    }

    #[test]
    fn merge_ranges_handles_the_top_of_the_space() {
        let merged = merge_ranges(
            vec![(u32::MAX, u32::MAX), (0, 5), (6, 6), (8, 9), (10, u32::MAX), (3, 4)],
            |x| x.checked_add(1),
        );
        assert_eq!(merged, vec![(0, 6), (8, u32::MAX)]);
        let merged = merge_ranges(vec![(0u8, u8::MAX), (7, 9)], |x| x.checked_add(1));
        assert_eq!(merged, vec![(0, u8::MAX)]);
        assert!(merge_ranges(Vec::<(u8, u8)>::new(), |x| x.checked_add(1)).is_empty());
    }

    #[test]
    fn edges_of_the_address_space() {
        let bl = build(&[
            "0.0.0.0/32",
            "255.255.255.255/32",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120",
        ]);
        assert!(bl.is_blocked(ip("0.0.0.0")));
        assert!(bl.is_blocked(ip("255.255.255.255")));
        assert!(!bl.is_blocked(ip("0.0.0.1")));
        assert!(!bl.is_blocked(ip("255.255.255.254")));
        assert!(bl.is_blocked(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(bl.is_blocked(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00")));
        assert!(!bl.is_blocked(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:feff")));
    }

    #[test]
    fn v4_slash_zero_blocks_all_v4_only() {
        let bl = build(&["0.0.0.0/0"]);
        assert_eq!(bl.prefix_count(), 1);
        for a in ["0.0.0.0", "1.2.3.4", "255.255.255.255", "::ffff:8.8.8.8"] {
            assert!(bl.is_blocked(ip(a)), "{a}");
        }
        for a in ["::", "::1", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"] {
            assert!(!bl.is_blocked(ip(a)), "{a}");
        }
    }

    #[test]
    fn v6_slash_zero_blocks_all_v6_but_no_v4() {
        // ::/0 contains ::ffff:0:0/96, but an IPv6 entry never blocks IPv4, and a mapped
        // address is looked up as IPv4.
        let bl = build(&["::/0"]);
        assert_eq!(bl.prefix_count(), 1);
        for a in [
            "::",
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::fffe:1.2.3.4",
        ] {
            assert!(bl.is_blocked(ip(a)), "{a}");
        }
        for a in ["1.2.3.4", "::ffff:1.2.3.4", "0.0.0.0", "255.255.255.255"] {
            assert!(!bl.is_blocked(ip(a)), "{a}");
        }
    }

    #[test]
    fn v6_entries_over_the_mapped_range_never_block_v4() {
        // Issue 14, item 8: ::fffe:0:0/95 passed the /32 bound and blocked all of IPv4.
        for nets in [
            &["::fffe:0:0/95"][..],
            &["::ffff:0:0/96"],
            &["::ffff:1.2.3.4/128"],
            &["::ffff:1.2.3.0/120"],
            &["::/64"],
            &["::/16"],
        ] {
            let bl = build(nets);
            for a in ["1.2.3.4", "::ffff:1.2.3.4", "9.9.9.9", "0.0.0.0", "255.255.255.255"] {
                assert!(!bl.is_blocked(ip(a)), "{nets:?} blocks {a}");
            }
            assert_eq!(bl.range_count() + bl.host_count(), 1, "{nets:?}: one IPv6 entry");
        }
        // The non-mapped IPv6 addresses they contain are blocked.
        let bl = build(&["::fffe:0:0/95"]);
        assert!(bl.is_blocked(ip("::fffe:1.2.3.4")));
        assert!(!bl.is_blocked(ip("::fffd:ffff:ffff")));
        let bl = build(&["::/64"]);
        assert!(bl.is_blocked(ip("::1")));
        assert!(!bl.is_blocked(ip("2001:db8::1")));
    }

    #[test]
    fn v6_hosts_and_prefixes() {
        let bl = build(&[
            "2001:db8::1/128",
            "2001:db8:1::/48",
            "2001:db8:3::/48",
            "2001:db8:4::/48",
        ]);
        assert_eq!(bl.host_count(), 1);
        assert_eq!(bl.prefix_count(), 3);
        assert_eq!(bl.range_count(), 2, ":3::/48 and :4::/48 are adjacent");
        assert!(bl.is_blocked(ip("2001:db8::1")));
        assert!(!bl.is_blocked(ip("2001:db8::2")));
        assert!(!bl.is_blocked(ip("2001:db8:0:ffff:ffff:ffff:ffff:ffff")));
        assert!(bl.is_blocked(ip("2001:db8:1::")));
        assert!(bl.is_blocked(ip("2001:db8:1:ffff:ffff:ffff:ffff:ffff")));
        assert!(!bl.is_blocked(ip("2001:db8:2::")));
        assert!(!bl.is_blocked(ip("2001:db8:2:ffff:ffff:ffff:ffff:ffff")));
        assert!(bl.is_blocked(ip("2001:db8:3::")));
        assert!(bl.is_blocked(ip("2001:db8:3:ffff:ffff:ffff:ffff:ffff")));
        assert!(bl.is_blocked(ip("2001:db8:4::")));
        assert!(bl.is_blocked(ip("2001:db8:4:ffff:ffff:ffff:ffff:ffff")));
        assert!(!bl.is_blocked(ip("2001:db8:5::")));
        assert!(!bl.is_blocked(ip("192.0.2.1")));
    }

    #[test]
    fn v4_mapped_v6_is_the_v4_address() {
        // A v4 host is hit by its mapped form.
        let bl = build(&["192.0.2.1/32", "198.51.100.0/24"]);
        assert!(bl.is_blocked(ip("::ffff:192.0.2.1")));
        assert!(bl.is_blocked(ip("::ffff:198.51.100.77")));
        assert!(!bl.is_blocked(ip("::ffff:192.0.2.2")));

        // A mapped address inserted as a host is the IPv4 host: one host in both forms.
        let mut b = BlocklistBuilder::new();
        b.insert_host(ip("::ffff:203.0.113.9"));
        b.insert_host(ip("203.0.113.9"));
        let bl = b.build();
        assert_eq!(bl.host_count(), 1);
        assert!(bl.is_blocked(ip("203.0.113.9")));
        assert!(bl.is_blocked(ip("::ffff:203.0.113.9")));
    }

    #[test]
    fn v4_compatible_v6_is_not_v4() {
        // Only ::ffff:a.b.c.d is mapped; deprecated ::a.b.c.d stays IPv6.
        let bl = build(&["192.0.2.1/32"]);
        assert!(!bl.is_blocked(ip("::192.0.2.1")));
        let bl = build(&["::192.0.2.1/128"]);
        assert!(!bl.is_blocked(ip("192.0.2.1")));
        assert!(bl.is_blocked(ip("::192.0.2.1")));
    }

    #[test]
    fn hosts_and_prefixes_together() {
        let bl = build(&["10.0.0.0/8", "10.1.2.3/32", "192.0.2.1/32"]);
        assert_eq!((bl.host_count(), bl.prefix_count()), (2, 1));
        assert!(bl.is_blocked(ip("10.1.2.3")));
        assert!(bl.is_blocked(ip("10.9.9.9")));
        assert!(bl.is_blocked(ip("192.0.2.1")));
        assert!(!bl.is_blocked(ip("192.0.2.2")));
    }

    #[test]
    fn number_prefixes_longest_match() {
        let mut b = BlocklistBuilder::new();
        for p in ["44", "4420", "442079460", "1", "882"] {
            b.insert_number_prefix(p);
        }
        b.insert_number_prefix("44"); // duplicate
        let bl = b.build();
        assert_eq!(bl.number_count(), 5);
        assert!(!bl.is_empty());
        assert_eq!(bl.blocked_number_prefix("442079460000"), Some("442079460"));
        assert_eq!(bl.blocked_number_prefix("442079461000"), Some("4420"));
        assert_eq!(bl.blocked_number_prefix("441234567890"), Some("44"));
        assert_eq!(bl.blocked_number_prefix("4420"), Some("4420"));
        assert_eq!(bl.blocked_number_prefix("4"), None);
        assert_eq!(bl.blocked_number_prefix("12125550100"), Some("1"));
        assert_eq!(bl.blocked_number_prefix("33123456789"), None);
        assert_eq!(bl.blocked_number_prefix(""), None);
        assert_eq!(bl.blocked_number_prefix("+442079460000"), Some("442079460"));
        // Non-ASCII and junk: no panic, no false match.
        assert_eq!(bl.blocked_number_prefix("é44"), None);
        assert_eq!(bl.blocked_number_prefix("4é4"), None);
        assert_eq!(bl.blocked_number_prefix("++44"), None);
        // Longer than 15 digits still matches on its first 15.
        assert_eq!(bl.blocked_number_prefix("4420794600000000000"), Some("442079460"));
    }

    #[test]
    fn number_prefix_of_fifteen_digits() {
        let mut b = BlocklistBuilder::new();
        b.insert_number_prefix("123456789012345");
        let bl = b.build();
        assert_eq!(bl.blocked_number_prefix("123456789012345"), Some("123456789012345"));
        assert_eq!(bl.blocked_number_prefix("1234567890123456"), Some("123456789012345"));
        assert_eq!(bl.blocked_number_prefix("12345678901234"), None);
    }

    #[test]
    fn invalid_number_prefixes_are_refused() {
        let mut b = BlocklistBuilder::new();
        assert_eq!(b.try_insert_number_prefix(""), Err(NumberPrefixError::Empty));
        assert_eq!(b.try_insert_number_prefix("+44"), Err(NumberPrefixError::NotDigits));
        assert_eq!(b.try_insert_number_prefix("44 20"), Err(NumberPrefixError::NotDigits));
        assert_eq!(b.try_insert_number_prefix("٤٤"), Err(NumberPrefixError::NotDigits));
        assert_eq!(
            b.try_insert_number_prefix("1234567890123456"),
            Err(NumberPrefixError::TooLong)
        );
        b.insert_number_prefix("+44");
        b.insert_number_prefix("");
        assert_eq!(b.try_insert_number_prefix("44"), Ok(()));
        let bl = b.build();
        assert_eq!(bl.number_count(), 1);
        assert!(!NumberPrefixError::TooLong.to_string().is_empty());
    }

    #[test]
    fn debug_output_is_counts_only() {
        let bl = build(&["10.0.0.0/8", "192.0.2.1/32"]);
        let s = format!("{bl:?}");
        assert!(s.contains("hosts: 1") && s.contains("prefixes: 1"), "{s}");
        assert!(bl.approx_heap_bytes() > 0);
    }

    // ---- property tests against a naive reference ----

    /// Naive reference: the query is IPv4 when mapped (`::ffff:a.b.c.d` is
    /// `a.b.c.d`); it is blocked when an inserted net of its own family contains
    /// it. (IPv6 nets are never consulted for an IPv4 query.)
    fn naive_is_blocked(nets: &[IpNet], ip: IpAddr) -> bool {
        let query = canonical(ip);
        nets.iter().any(|n| match (n, query) {
            (IpNet::V4(n), IpAddr::V4(a)) => n.contains(&a),
            (IpNet::V6(n), IpAddr::V6(a)) => n.contains(&a),
            _ => false,
        })
    }

    fn arb_v4_addr() -> impl Strategy<Value = u32> {
        prop_oneof![
            any::<u32>(),
            // Clustered in 10.0.0.0/16 so nets overlap and touch.
            (0u32..=0xffff).prop_map(|x| 0x0a00_0000 | x),
            Just(0),
            Just(u32::MAX),
        ]
    }

    fn arb_net() -> impl Strategy<Value = IpNet> {
        let v4 = (arb_v4_addr(), prop_oneof![3 => 16u8..=32, 1 => 0u8..=32])
            .prop_map(|(a, len)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len.min(32)).expect("len <= 32")));
        let v6_addr = prop_oneof![
            any::<u128>(),
            (0u128..=0xffff_ffff).prop_map(|x| (0x2001_0db8_u128 << 96) | x),
            // IPv4-mapped, including clustered 10.0.x.x.
            arb_v4_addr().prop_map(|a| MAPPED_START | u128::from(a)),
            // Low addresses, so short prefixes may span ::ffff:0:0/96.
            (0u128..=0xffff_ffff_ffff).prop_map(|x| x << 8),
            Just(u128::MAX),
        ];
        let v6 = (v6_addr, prop_oneof![3 => 88u8..=128, 1 => 0u8..=128])
            .prop_map(|(a, len)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len.min(128)).expect("len <= 128")));
        prop_oneof![v4, v6]
    }

    /// How one probe address is chosen; turned into an address once the nets
    /// are known, so most probes land in, or right next to, an inserted net.
    #[derive(Debug, Clone)]
    enum ProbeSpec {
        Random(IpNet),
        Inside {
            idx: usize,
            offset: u128,
            as_other_form: bool,
        },
        JustBelow(usize),
        JustAbove(usize),
    }

    fn arb_probe() -> impl Strategy<Value = ProbeSpec> {
        prop_oneof![
            1 => arb_net().prop_map(ProbeSpec::Random),
            3 => (any::<usize>(), any::<u128>(), any::<bool>()).prop_map(|(idx, offset, as_other_form)| {
                ProbeSpec::Inside { idx, offset, as_other_form }
            }),
            1 => any::<usize>().prop_map(ProbeSpec::JustBelow),
            1 => any::<usize>().prop_map(ProbeSpec::JustAbove),
        ]
    }

    fn other_form(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        }
    }

    fn probe_addr(nets: &[IpNet], spec: &ProbeSpec) -> IpAddr {
        let pick = |idx: usize| nets[idx % nets.len()];
        match *spec {
            ProbeSpec::Random(n) => n.addr(),
            ProbeSpec::Inside {
                idx,
                offset,
                as_other_form,
            } => {
                let a = match pick(idx) {
                    IpNet::V4(n) => {
                        let mask = u32::from(n.hostmask());
                        IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | (offset as u32 & mask)))
                    }
                    IpNet::V6(n) => {
                        let mask = u128::from(n.hostmask());
                        IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | (offset & mask)))
                    }
                };
                if as_other_form {
                    other_form(a)
                } else {
                    a
                }
            }
            ProbeSpec::JustBelow(idx) => match pick(idx) {
                IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()).wrapping_sub(1))),
                IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).wrapping_sub(1))),
            },
            ProbeSpec::JustAbove(idx) => match pick(idx) {
                IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.broadcast()).wrapping_add(1))),
                IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.broadcast()).wrapping_add(1))),
            },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn is_blocked_matches_naive_reference(
            nets in prop::collection::vec(arb_net(), 1..40),
            probes in prop::collection::vec(arb_probe(), 1..64),
        ) {
            let bl = nets.iter().copied().collect::<BlocklistBuilder>().build();
            for spec in &probes {
                let a = probe_addr(&nets, spec);
                prop_assert_eq!(bl.is_blocked(a), naive_is_blocked(&nets, a), "probe {} ({:?})", a, spec);
            }
            // Every inserted net's first and last address is blocked (unless it is an
            // IPv4-mapped address, which is an IPv4 query).
            for n in &nets {
                for a in [n.network(), n.broadcast()] {
                    if canonical(a) == a {
                        prop_assert!(bl.is_blocked(a), "{} {}", n, a);
                    }
                }
            }
            prop_assert!(bl.range_count() <= bl.prefix_count());
        }

        #[test]
        fn v4_index_matches_plain_binary_search(
            nets in prop::collection::vec((any::<u32>(), 8u8..=32), 0..300),
            probes in prop::collection::vec(any::<u32>(), 0..100),
        ) {
            let ranges: Vec<(u32, u32)> = nets
                .iter()
                .filter_map(|&(a, len)| Ipv4Net::new(Ipv4Addr::from(a), len).ok())
                .map(|n| (u32::from(n.network()), u32::from(n.broadcast())))
                .collect();
            let ranges = merge_ranges(ranges, |x| x.checked_add(1));
            let indexed = V4Ranges::new(ranges.clone());
            prop_assert_eq!(indexed.len(), ranges.len());
            // Random probes, every range's edges and the edges of their /16s.
            let edges = ranges.iter().flat_map(|&(s, e)| {
                [s.wrapping_sub(1), s, e, e.wrapping_add(1), s & 0xffff_0000, e | 0xffff]
            });
            for x in probes.iter().copied().chain(edges) {
                prop_assert_eq!(indexed.contains(x), in_ranges(&ranges, x), "probe {:#x}", x);
            }
        }

        #[test]
        fn counts_match_naive_dedup(nets in prop::collection::vec(arb_net(), 0..40)) {
            let bl = nets.iter().copied().collect::<BlocklistBuilder>().build();
            // Nets are kept as given, truncated (IPv6 stays IPv6).
            let set: std::collections::BTreeSet<IpNet> = nets.iter().map(IpNet::trunc).collect();
            let hosts = set.iter().filter(|n| n.prefix_len() == n.max_prefix_len()).count();
            prop_assert_eq!(bl.host_count(), hosts);
            prop_assert_eq!(bl.prefix_count(), set.len() - hosts);
            prop_assert_eq!(bl.is_empty(), nets.is_empty());
        }

        #[test]
        fn number_prefix_matches_naive_reference(
            prefixes in prop::collection::vec("[0-9]{1,4}", 0..20),
            number in "[0-9]{0,17}",
        ) {
            let mut b = BlocklistBuilder::new();
            for p in &prefixes {
                b.insert_number_prefix(p);
            }
            let bl = b.build();
            let expected = prefixes
                .iter()
                .filter(|p| number.starts_with(p.as_str()))
                .max_by_key(|p| p.len())
                .map(String::as_str);
            prop_assert_eq!(bl.blocked_number_prefix(&number), expected);
        }
    }
}

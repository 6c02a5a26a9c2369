//! The node's TOML configuration: embedded defaults (so `fraudmesh run` starts with no
//! file at all), strict parsing (unknown keys are errors), and validation into the
//! core's types with errors that name the offending key.

use super::dir::NodeDir;
use anyhow::{anyhow, bail, Context};
use fraudmesh::identity::PublicKey;
use fraudmesh::policy::{OrgTrust, Policy, ReputationConfig, TrustConfig, Weight};
use fraudmesh::sighting::{AcceptLimits, LimitsError};
use fraudmesh::target::{Bounds, Target};
use ipnet::IpNet;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The embedded defaults, also the commented template `init` writes.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// Loads DIR's `config.toml`, or the embedded defaults when it has none.
pub fn load(dir: &NodeDir) -> anyhow::Result<Config> {
    if dir.config().exists() {
        Config::load(&dir.config())
    } else {
        Ok(Config::default())
    }
}

/// Where [`load`] takes the config from, as error messages name it.
fn source(dir: &NodeDir) -> String {
    if dir.config().exists() {
        dir.config().display().to_string()
    } else {
        "the embedded default config".to_string()
    }
}

/// Loads and validates DIR's config for the node key `local`; errors name the file they
/// come from.
pub fn load_settings(dir: &NodeDir, local: PublicKey) -> anyhow::Result<Settings> {
    load(dir)?
        .settings(local)
        .with_context(|| format!("in {}", source(dir)))
}

/// Loads and validates DIR's config before (or without) the node's key: the key only
/// names the node itself in the trust policy, so any key checks the rest.
pub fn check(dir: &NodeDir) -> anyhow::Result<Settings> {
    load_settings(dir, placeholder_key())
}

/// A fixed key standing in for the node's own where a config is validated without it.
pub fn placeholder_key() -> PublicKey {
    fraudmesh::identity::Identity::from_secret([1; 32]).public()
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Networking and API.
    #[serde(default)]
    pub node: NodeSection,
    /// Connection and sync bounds.
    #[serde(default)]
    pub net: crate::net::Limits,
    /// Trust weights.
    #[serde(default)]
    pub trust: TrustSection,
    /// Block policy bounds.
    #[serde(default)]
    pub policy: PolicySection,
    /// Abuse bounds for strangers.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Storage.
    #[serde(default)]
    pub store: StoreSection,
    /// Where the list is applied (left out of `init`'s file while empty, so operators add
    /// `[[enforce.files]]` or `[enforce.nftables]` blocks without clashing keys).
    #[serde(default, skip_serializing_if = "crate::enforce::EnforceConfig::is_empty")]
    pub enforce: crate::enforce::EnforceConfig,
    /// Attack detection (left out of `init`'s file while empty).
    #[serde(default, skip_serializing_if = "crate::detect::DetectConfig::is_empty")]
    pub detect: crate::detect::DetectConfig,
    /// Call authorisation (left out of `init`'s file while at its defaults).
    #[serde(default, skip_serializing_if = "crate::calls::CallsConfig::is_default")]
    pub calls: crate::calls::CallsConfig,
    /// Controls for testnets.
    #[serde(default)]
    pub debug: DebugSection,
    /// The scheduled PBX audit (left out of `init`'s file while at its defaults).
    #[serde(default, skip_serializing_if = "crate::audit::AuditConfig::is_empty")]
    pub audit: crate::audit::AuditConfig,
    /// This node as a circuit relay for nodes behind NAT.
    #[serde(default)]
    pub relay: crate::net::nat::RelayConfig,
}

/// The default listen addresses: TCP and QUIC, IPv4 and IPv6, port 7710.
pub const DEFAULT_LISTEN: [&str; 4] = [
    "/ip4/0.0.0.0/tcp/7710",
    "/ip6/::/tcp/7710",
    "/ip4/0.0.0.0/udp/7710/quic-v1",
    "/ip6/::/udp/7710/quic-v1",
];

/// `[node]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// libp2p listen multiaddrs. Default TCP and QUIC on IPv4 and IPv6, port 7710 (an
    /// address that cannot be bound, e.g. IPv6 on a host without it, is a warning while
    /// another one listens).
    pub listen: Vec<String>,
    /// Seed peers, full multiaddrs ending in `/p2p/<peer id>`. Default none.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// HTTP API address. Default `127.0.0.1:7711`.
    pub api: String,
    /// Ask the router for port mappings over UPnP IGD. Default false.
    pub upnp: bool,
    /// Addresses this node is reachable at from outside, as the operator knows them (a
    /// seed with a public IP): confirmed at start, reachability is then public. Default
    /// none (AutoNAT finds out).
    pub external_addresses: Vec<String>,
}

/// One trusted peer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustedPeer {
    /// Its peer id (`12D3KooW…`).
    pub peer_id: String,
    /// Its weight. Default 1.0.
    #[serde(default = "one")]
    pub weight: f64,
}

/// `[trust]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrustSection {
    /// Block threshold. Default 1.0.
    pub threshold: f64,
    /// Weight shown for strangers (never counted toward a block). Default 0.1.
    pub stranger_weight: f64,
    /// Cap of all strangers of one target, as shown. Default 0.5.
    pub stranger_cap: f64,
    /// Trusted peers. Default none.
    #[serde(default)]
    pub peers: Vec<TrustedPeer>,
    /// Trusted organisations: their endorsed members count the organisation's weight.
    /// Default none.
    #[serde(default)]
    pub orgs: Vec<TrustedOrg>,
    /// How overriding a reporter's sightings with `allow` lowers its weight here.
    #[serde(default)]
    pub reputation: ReputationSection,
}

/// One trusted organisation (`[[trust.orgs]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustedOrg {
    /// The organisation key's id (`12D3KooW…`, printed by `fraudmesh org init`).
    pub id: String,
    /// Its name, shown by `explain`: 1 to [`MAX_ORG_NAME_BYTES`] bytes, no control
    /// characters.
    pub name: String,
    /// The weight of each member it endorses. Default 1.0.
    #[serde(default = "one")]
    pub weight: f64,
}

/// Longest `trust.orgs[].name`, bytes.
pub const MAX_ORG_NAME_BYTES: usize = 64;

/// `[trust.reputation]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReputationSection {
    /// Share of its configured weight a reporter loses each time this node's operator
    /// overrides one of its accusations with `allow`. Default 0.25; 0 turns it off.
    pub penalty: f64,
    /// Share of its configured weight a penalised reporter regains per day. Default 0.05.
    pub recovery_per_day: f64,
}

impl Default for ReputationSection {
    fn default() -> Self {
        Self {
            penalty: 0.25,
            recovery_per_day: 0.05,
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySection {
    /// Never-blocked addresses and prefixes. Default none (plus implicit ones).
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Default TTL of local reports. Default 24h.
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// Longest TTL of the sightings this node stores (retractions excepted). Default 7d; at
    /// most 30d, the protocol's bound.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Allowed clock skew. Default 5m.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Broadest IPv4 prefix this node stores. Default 16; 8 at the broadest (the
    /// protocol's bound).
    pub min_ipv4_prefix: u8,
    /// Broadest IPv6 prefix this node stores. Default 32; 16 at the broadest (the
    /// protocol's bound).
    pub min_ipv6_prefix: u8,
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Sightings/s per stranger. Default 10.
    pub stranger_rate: f64,
    /// Burst per stranger. Default 100.
    pub stranger_burst: u32,
    /// Records per stranger. Default 1000.
    pub max_records_per_stranger: usize,
    /// Records of all strangers. Default 100000.
    pub max_stranger_records: usize,
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// sled cache, MiB. Default 64.
    pub cache_mb: u64,
}

/// `[debug]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DebugSection {
    /// Let the API refuse given peers (`PUT /v1/debug/refuse`). Default false.
    pub fault_injection: bool,
    /// Listen on nothing but relayed addresses on the seeds, reachability private from
    /// the start: a node behind a NAT on one host, for tests. Default false.
    pub relay_only: bool,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.iter().map(|a| a.to_string()).collect(),
            seeds: Vec::new(),
            api: "127.0.0.1:7711".into(),
            upnp: false,
            external_addresses: Vec::new(),
        }
    }
}

impl Default for TrustSection {
    fn default() -> Self {
        Self {
            threshold: 1.0,
            stranger_weight: 0.1,
            stranger_cap: 0.5,
            peers: Vec::new(),
            orgs: Vec::new(),
            reputation: ReputationSection::default(),
        }
    }
}

impl Default for PolicySection {
    fn default() -> Self {
        Self {
            allowlist: Vec::new(),
            default_ttl: Duration::from_secs(24 * 3600),
            max_ttl: Duration::from_secs(7 * 24 * 3600),
            max_clock_skew: Duration::from_secs(300),
            min_ipv4_prefix: 16,
            min_ipv6_prefix: 32,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            stranger_rate: 10.0,
            stranger_burst: 100,
            max_records_per_stranger: 1000,
            max_stranger_records: 100_000,
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        Self { cache_mb: 64 }
    }
}

fn one() -> f64 {
    1.0
}

/// Everything the node needs, validated and in the core's types.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Seed addresses with their peer ids.
    pub seeds: Vec<(libp2p::PeerId, Multiaddr)>,
    /// API socket address.
    pub api: SocketAddr,
    /// The block policy (trust + allowlist).
    pub policy: Policy,
    /// Acceptance bounds for sightings.
    pub limits: AcceptLimits,
    /// Default TTL of local reports, seconds.
    pub default_ttl_s: u32,
    /// Stranger abuse bounds.
    pub strangers: crate::engine::StrangerBounds,
    /// sled cache bytes.
    pub cache_bytes: u64,
    /// Whether the API offers fault injection.
    pub fault_injection: bool,
    /// The network's bounds.
    pub net: crate::net::Limits,
    /// The trusted peers' ids (they bypass the connection bounds).
    pub trusted_peers: Vec<libp2p::PeerId>,
    /// The enforcers.
    pub enforce: crate::enforce::EnforceConfig,
    /// The detectors, compiled.
    pub detect: crate::detect::Detect,
    /// The call policy's rules.
    pub calls: fraudmesh::calls::policy::CallRules,
    /// What call authorisation answers when the node cannot decide.
    pub calls_on_error: crate::calls::OnError,
    /// The scheduled audit.
    pub audit: crate::audit::AuditConfig,
    /// NAT traversal: UPnP, declared external addresses, the relay server's bounds.
    pub nat: crate::net::nat::NatConfig,
}

impl Config {
    /// Reads and parses a file; the path is in every error.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses TOML text; missing keys take their defaults.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).map_err(|e| anyhow!("{}", e.to_string().trim_end()))
    }

    /// Validates everything and converts to [`Settings`] for a node whose key is `local`.
    pub fn settings(&self, local: PublicKey) -> anyhow::Result<Settings> {
        let listen = self.node.listen()?;
        let seeds = self.node.seeds()?;
        let api = self.node.api()?;
        let trust = self.trust.config(local)?;
        let (limits, default_ttl_s) = self.policy.limits()?;
        let mut allowlist = self.policy.allowlist()?;
        allowlist.extend(implicit_allowlist(&listen, &seeds));
        let detect = self.detect.compile(&allowlist)?;
        let policy = Policy::new(trust, allowlist).context("trust")?;
        self.enforce.validate()?;
        self.audit.validate()?;
        let strangers = self.limits.strangers()?;
        check_net(&self.net)?;
        let net = self.net.clone();
        let trusted_peers = self.trust.peer_ids()?;
        let nat = crate::net::nat::NatConfig {
            upnp: self.node.upnp,
            external: self.node.external_addresses()?,
            relay: self.relay.clone(),
            relay_only: self.debug.relay_only,
        };
        nat.relay.validate().map_err(|e| anyhow!(e))?;
        Ok(Settings {
            listen,
            seeds,
            api,
            policy,
            limits,
            default_ttl_s,
            strangers,
            cache_bytes: self.store.cache_mb.saturating_mul(1024 * 1024),
            fault_injection: self.debug.fault_injection,
            net,
            trusted_peers,
            enforce: self.enforce.clone(),
            detect,
            calls: self.calls.compile()?,
            calls_on_error: self.calls.on_error,
            audit: self.audit.clone(),
            nat,
        })
    }
}

impl NodeSection {
    /// `node.external_addresses`: multiaddrs with an IP and a port, without `/p2p`.
    fn external_addresses(&self) -> anyhow::Result<Vec<Multiaddr>> {
        self.external_addresses
            .iter()
            .map(|a| {
                let addr: Multiaddr = a
                    .parse()
                    .with_context(|| format!("node.external_addresses: bad multiaddr {a:?}"))?;
                let ip = crate::net::dial::ip_of(&addr);
                let port = addr.iter().any(|p| matches!(p, Protocol::Tcp(_) | Protocol::Udp(_)));
                if ip.is_none_or(|ip| ip.is_unspecified()) || !port {
                    bail!("node.external_addresses: {a:?} needs a specific IP address and a TCP or UDP port");
                }
                if addr
                    .iter()
                    .any(|p| matches!(p, Protocol::P2p(_) | Protocol::P2pCircuit))
                {
                    bail!(
                        "node.external_addresses: {a:?} must be this node's own address, without /p2p or /p2p-circuit"
                    );
                }
                Ok(addr)
            })
            .collect()
    }

    /// `node.listen`: at least one multiaddr.
    fn listen(&self) -> anyhow::Result<Vec<Multiaddr>> {
        let listen = self
            .listen
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>()
                    .with_context(|| format!("node.listen: bad multiaddr {a:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if listen.is_empty() {
            bail!("node.listen: at least one listen address is needed");
        }
        Ok(listen)
    }

    /// `node.seeds`, each with its peer id.
    fn seeds(&self) -> anyhow::Result<Vec<(libp2p::PeerId, Multiaddr)>> {
        self.seeds
            .iter()
            .map(|s| parse_seed(s).with_context(|| format!("node.seeds: {s:?}")))
            .collect()
    }

    /// `node.api`.
    fn api(&self) -> anyhow::Result<SocketAddr> {
        self.api.parse().with_context(|| {
            format!(
                "node.api: expected HOST:PORT such as 127.0.0.1:7711, got {:?}",
                self.api
            )
        })
    }
}

/// `[net]`, checked: every count at least 1, timeouts at least 1 s.
fn check_net(net: &crate::net::Limits) -> anyhow::Result<()> {
    let counts = [
        ("net.max_incoming", net.max_incoming),
        ("net.max_outgoing", net.max_outgoing),
        ("net.max_connections", net.max_connections),
        ("net.max_per_peer", net.max_per_peer),
        ("net.max_pending_incoming", net.max_pending_incoming),
        ("net.max_pending_outgoing", net.max_pending_outgoing),
        ("net.max_incoming_per_ip", net.max_incoming_per_ip),
        ("net.sync_requests_per_minute", net.sync_requests_per_minute),
        ("net.target_peers", net.target_peers),
    ];
    for (key, v) in counts {
        if v == 0 {
            bail!("{key}: must be at least 1");
        }
    }
    if !(1..=16).contains(&net.sync_streams) {
        bail!("net.sync_streams: must be 1..=16, got {}", net.sync_streams);
    }
    if net.max_memory_percent > 100 {
        bail!(
            "net.max_memory_percent: must be 0..=100 (0 = off), got {}",
            net.max_memory_percent
        );
    }
    for (key, d) in [
        ("net.handshake_timeout", net.handshake_timeout),
        ("net.idle_timeout", net.idle_timeout),
        ("net.sync_timeout", net.sync_timeout),
        ("net.redial_max", net.redial_max),
    ] {
        if d < Duration::from_secs(1) {
            bail!("{key}: must be at least 1s");
        }
    }
    // The node looks for target_peers, keeps up to max_peers and can hold
    // max_connections: a target above what it keeps would prune what discovery just
    // found, and a soft bound above the hard one would never act.
    if net.target_peers > net.max_peers {
        bail!(
            "net.target_peers ({}) must not exceed net.max_peers ({})",
            net.target_peers,
            net.max_peers
        );
    }
    if net.max_peers > net.max_connections {
        bail!(
            "net.max_peers ({}) must not exceed net.max_connections ({})",
            net.max_peers,
            net.max_connections
        );
    }
    Ok(())
}

/// A trust weight from its decimal form in the config; errors start with `key`.
fn weight(key: &str, v: f64) -> anyhow::Result<Weight> {
    if !(0.0..=1000.0).contains(&v) || !v.is_finite() {
        bail!("{key}: must be between 0 and 1000, got {v}");
    }
    Ok((v * 1000.0).round() as Weight)
}

impl TrustSection {
    /// `[trust]` for a node whose key is `local`.
    fn config(&self, local: PublicKey) -> anyhow::Result<TrustConfig> {
        let mut trusted = HashMap::new();
        for (i, p) in self.peers.iter().enumerate() {
            let key: PublicKey = p.peer_id.parse().with_context(|| format!("trust.peers[{i}].peer_id"))?;
            trusted.insert(key, weight(&format!("trust.peers[{i}].weight"), p.weight)?);
        }
        Ok(TrustConfig {
            local,
            trusted,
            stranger_weight: weight("trust.stranger_weight", self.stranger_weight)?,
            stranger_cap: weight("trust.stranger_cap", self.stranger_cap)?,
            threshold: weight("trust.threshold", self.threshold)?,
            orgs: self
                .org_entries()?
                .into_iter()
                .map(|e| {
                    (
                        e.key,
                        OrgTrust {
                            name: e.name,
                            weight: e.weight,
                        },
                    )
                })
                .collect(),
            reputation: {
                let (penalty, recovery_per_day) = self.reputation.thousandths()?;
                ReputationConfig {
                    penalty,
                    recovery_per_day,
                }
            },
        })
    }
}

/// One `[[trust.orgs]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgEntry {
    /// The organisation's key.
    pub key: PublicKey,
    /// Its name.
    pub name: String,
    /// Its members' weight, thousandths.
    pub weight: Weight,
}

impl TrustSection {
    /// `[[trust.orgs]]`, validated: ids are keys, names are printable and each
    /// organisation is listed once.
    pub fn org_entries(&self) -> anyhow::Result<Vec<OrgEntry>> {
        let mut out: Vec<OrgEntry> = Vec::with_capacity(self.orgs.len());
        for (i, o) in self.orgs.iter().enumerate() {
            let key: PublicKey =
                o.id.parse()
                    .with_context(|| format!("trust.orgs[{i}].id: {:?} is not an organisation id (12D3KooW…)", o.id))?;
            if o.name.is_empty() || o.name.len() > MAX_ORG_NAME_BYTES || o.name.chars().any(char::is_control) {
                bail!(
                    "trust.orgs[{i}].name: must be 1 to {MAX_ORG_NAME_BYTES} bytes without control characters, got {:?}",
                    o.name
                );
            }
            let weight = weight(&format!("trust.orgs[{i}].weight"), o.weight)?;
            if let Some(j) = out.iter().position(|e| e.key == key) {
                bail!("trust.orgs[{i}].id: {} is already listed as trust.orgs[{j}]", o.id);
            }
            out.push(OrgEntry {
                key,
                name: o.name.clone(),
                weight,
            });
        }
        Ok(out)
    }
}

impl ReputationSection {
    /// `(penalty, recovery_per_day)` in thousandths of the configured weight.
    pub fn thousandths(&self) -> anyhow::Result<(Weight, Weight)> {
        let share = |key: &str, v: f64| {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                bail!("{key}: must be between 0 and 1 (a share of the configured weight), got {v}");
            }
            Ok((v * 1000.0).round() as Weight)
        };
        Ok((
            share("trust.reputation.penalty", self.penalty)?,
            share("trust.reputation.recovery_per_day", self.recovery_per_day)?,
        ))
    }
}

impl TrustSection {
    /// The trusted peers' libp2p ids.
    fn peer_ids(&self) -> anyhow::Result<Vec<libp2p::PeerId>> {
        self.peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.peer_id
                    .parse()
                    .with_context(|| format!("trust.peers[{i}].peer_id: not a peer id"))
            })
            .collect()
    }
}

impl PolicySection {
    /// The acceptance bounds of sightings and the default TTL of local reports, seconds.
    fn limits(&self) -> anyhow::Result<(AcceptLimits, u32)> {
        if self.min_ipv4_prefix > 32 || self.min_ipv6_prefix > 128 {
            bail!("policy.min_ipv4_prefix must be 0..=32 and policy.min_ipv6_prefix 0..=128");
        }
        let bounds = Bounds {
            min_v4_len: self.min_ipv4_prefix,
            min_v6_len: self.min_ipv6_prefix,
        };
        let max_ttl_s = secs("policy.max_ttl", self.max_ttl)?;
        let default_ttl_s = secs("policy.default_ttl", self.default_ttl)?;
        if default_ttl_s > max_ttl_s {
            bail!("policy.default_ttl ({default_ttl_s}s) exceeds policy.max_ttl ({max_ttl_s}s)");
        }
        let limits = AcceptLimits {
            bounds,
            max_ttl_s,
            max_future_skew_ms: self.max_clock_skew.as_millis().min(u128::from(u64::MAX)) as u64,
        };
        // Local limits may be stricter than the protocol's bounds, never looser: peers
        // refuse (and blame) what lies beyond the protocol's.
        limits.validate().map_err(|e| {
            let key = match e {
                LimitsError::Ipv4TooBroad { .. } => "policy.min_ipv4_prefix",
                LimitsError::Ipv6TooBroad { .. } => "policy.min_ipv6_prefix",
                LimitsError::PrefixTooLong(_) => "policy.min_ipv4_prefix / policy.min_ipv6_prefix",
                LimitsError::TtlTooLong { .. } | LimitsError::ZeroTtl => "policy.max_ttl",
            };
            anyhow!("{key}: {e}")
        })?;
        Ok((limits, default_ttl_s))
    }

    /// `policy.allowlist` (without the implicit entries).
    fn allowlist(&self) -> anyhow::Result<Vec<IpNet>> {
        let mut allowlist = Vec::new();
        for (i, a) in self.allowlist.iter().enumerate() {
            // Allowlist entries may be as broad as the operator likes: only parse them.
            let t = Target::parse(
                a,
                Bounds {
                    min_v4_len: 0,
                    min_v6_len: 0,
                },
            )
            .with_context(|| format!("policy.allowlist[{i}]"))?;
            let net = t
                .ip_net()
                .ok_or_else(|| anyhow!("policy.allowlist[{i}]: {a:?} is a number, not an address"))?;
            allowlist.push(net);
        }
        Ok(allowlist)
    }
}

/// A duration in whole seconds, at least one and fitting in 32 bits; errors start with `key`.
fn secs(key: &str, d: Duration) -> anyhow::Result<u32> {
    u32::try_from(d.as_secs())
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| anyhow!("{key}: must be between 1s and about 136 years"))
}

impl LimitsSection {
    /// The abuse bounds for strangers.
    fn strangers(&self) -> anyhow::Result<crate::engine::StrangerBounds> {
        if !(self.stranger_rate.is_finite() && self.stranger_rate >= 0.0) {
            bail!("limits.stranger_rate: must be a non-negative number");
        }
        Ok(crate::engine::StrangerBounds {
            rate: self.stranger_rate,
            burst: self.stranger_burst,
            max_per_stranger: self.max_records_per_stranger,
            max_total: self.max_stranger_records,
        })
    }
}

/// Parses `/ip4/…/tcp/…/p2p/<peer id>` into the peer id and the address.
pub fn parse_seed(s: &str) -> anyhow::Result<(libp2p::PeerId, Multiaddr)> {
    let addr: Multiaddr = s.parse().context("not a multiaddr")?;
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Ok((peer, addr)),
        _ => bail!("a seed address must end with /p2p/<peer id>"),
    }
}

/// Loopback, the node's own listen addresses — every interface's address when one of them
/// is unspecified (`0.0.0.0`, `::`): the node can be reached, and reports itself, at any of
/// them — and the seeds' addresses.
fn implicit_allowlist(listen: &[Multiaddr], seeds: &[(libp2p::PeerId, Multiaddr)]) -> Vec<IpNet> {
    implicit_allowlist_with(listen, seeds, interface_addresses)
}

/// [`implicit_allowlist`] with the interface addresses from `interfaces` (asked only when
/// a listen address is unspecified).
fn implicit_allowlist_with(
    listen: &[Multiaddr],
    seeds: &[(libp2p::PeerId, Multiaddr)],
    interfaces: impl FnOnce() -> Vec<IpAddr>,
) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = vec![
        "127.0.0.0/8".parse().expect("constant"),
        "::1/128".parse().expect("constant"),
    ];
    let mut unspecified = false;
    let addrs = listen.iter().chain(seeds.iter().map(|(_, a)| a));
    for a in addrs {
        for p in a.iter() {
            let ip = match p {
                Protocol::Ip4(ip) => IpAddr::V4(ip),
                Protocol::Ip6(ip) => IpAddr::V6(ip),
                _ => continue,
            };
            if ip.is_unspecified() {
                unspecified = true;
            } else {
                out.push(IpNet::from(ip));
            }
        }
    }
    if unspecified {
        out.extend(interfaces().into_iter().map(IpNet::from));
    }
    out.sort();
    out.dedup();
    out
}

/// This host's interface addresses (none, with a warning, when they cannot be read).
fn interface_addresses() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.iter().map(|i| i.ip()).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the interface addresses (to never block or report them) failed");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraudmesh::identity::Identity;

    fn local() -> PublicKey {
        Identity::from_secret([5; 32]).public()
    }

    #[test]
    fn embedded_defaults_parse_and_validate() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        // The commented template shipped in the binary says exactly what the defaults are.
        assert_eq!(Config::parse(DEFAULT_TOML).unwrap(), Config::default());
        // A partial section keeps the other keys' defaults.
        let partial = Config::parse("[trust]\nthreshold = 0.8").unwrap();
        assert_eq!(partial.trust.stranger_cap, 0.5);
        let s = c.settings(local()).unwrap();
        assert_eq!(s.api.to_string(), "127.0.0.1:7711");
        assert_eq!(s.limits.max_ttl_s, 7 * 24 * 3600);
        assert_eq!(s.default_ttl_s, 24 * 3600);
        assert!(s.policy.is_allowlisted_ip("127.0.0.1".parse().unwrap()));
        assert_eq!(s.net, crate::net::Limits::default());
        assert!(s.trusted_peers.is_empty());
    }

    #[test]
    fn net_bounds_parse_validate_and_name_their_key() {
        let c = Config::parse(
            "[net]\nmax_incoming = 10\nmax_incoming_per_ip = 3\nidle_timeout = \"2m\"\nsync_timeout = \"5s\"\ndial_private = true",
        )
        .unwrap();
        let s = c.settings(local()).unwrap();
        assert_eq!(s.net.max_incoming, 10);
        assert_eq!(s.net.max_incoming_per_ip, 3);
        assert_eq!(s.net.idle_timeout, Duration::from_secs(120));
        assert_eq!(s.net.sync_timeout, Duration::from_secs(5));
        assert!(s.net.dial_private);
        assert_eq!(s.net.max_outgoing, 64, "the others keep their defaults");
        let c = Config::parse("[net]\ntarget_peers = 2\nmax_peers = 3\nredial_max = \"5s\"").unwrap();
        let s = c.settings(local()).unwrap();
        assert_eq!((s.net.target_peers, s.net.max_peers), (2, 3));
        assert_eq!(s.net.redial_max, Duration::from_secs(5));
        for (text, key) in [
            ("[net]\nmax_per_peer = 0", "net.max_per_peer"),
            ("[net]\nsync_streams = 17", "net.sync_streams"),
            ("[net]\nmax_memory_percent = 101", "net.max_memory_percent"),
            ("[net]\nidle_timeout = \"10ms\"", "net.idle_timeout"),
            ("[net]\nredial_max = \"100ms\"", "net.redial_max"),
            ("[net]\ntarget_peers = 0", "net.target_peers"),
            (
                "[net]\ntarget_peers = 9\nmax_peers = 8",
                "net.target_peers (9) must not exceed net.max_peers (8)",
            ),
            (
                "[net]\nmax_peers = 301",
                "net.max_peers (301) must not exceed net.max_connections (300)",
            ),
        ] {
            let err = format!("{:#}", Config::parse(text).unwrap().settings(local()).unwrap_err());
            assert!(err.contains(key), "{text} → {err}");
        }
        let trusting = format!(
            "[[trust.peers]]\npeer_id = \"{}\"",
            Identity::from_secret([9; 32]).public().peer_id()
        );
        let s = Config::parse(&trusting).unwrap().settings(local()).unwrap();
        assert_eq!(s.trusted_peers.len(), 1);
        assert_eq!(
            s.trusted_peers[0].to_string(),
            Identity::from_secret([9; 32]).public().peer_id()
        );
    }

    #[test]
    fn bad_configs_name_the_key() {
        let cases = [
            ("[node]\nlisten = [\"nonsense\"]\napi = \"127.0.0.1:1\"", "node.listen"),
            ("[node]\nlisten = []\napi = \"127.0.0.1:1\"", "node.listen"),
            ("[node]\nlisten = [\"/ip4/127.0.0.1/tcp/1\"]\napi = \"localhost\"", "node.api"),
            ("[trust]\nthreshold = 1.0\nstranger_weight = 0.1\nstranger_cap = 1.0", "stranger cap"),
            ("[trust]\nthreshold = 1.0\nstranger_weight = 0.1\nstranger_cap = 0.5\n[[trust.peers]]\npeer_id = \"bob\"", "trust.peers[0].peer_id"),
            ("[policy]\nallowlist = [\"999.1.1.1\"]\ndefault_ttl = \"1h\"\nmax_ttl = \"7d\"\nmax_clock_skew = \"5m\"\nmin_ipv4_prefix = 16\nmin_ipv6_prefix = 32", "policy.allowlist[0]"),
            ("[policy]\ndefault_ttl = \"8d\"\nmax_ttl = \"7d\"\nmax_clock_skew = \"5m\"\nmin_ipv4_prefix = 16\nmin_ipv6_prefix = 32", "default_ttl"),
            // Looser than the protocol's bounds (/8, /16, 30 days).
            ("[policy]\nmin_ipv4_prefix = 7", "policy.min_ipv4_prefix: an IPv4 bound of /7 is broader than the protocol allows (/8 at most)"),
            ("[policy]\nmin_ipv6_prefix = 12", "policy.min_ipv6_prefix: an IPv6 bound of /12"),
            ("[policy]\nmax_ttl = \"31d\"", "policy.max_ttl: a max ttl of 2678400s is longer than the protocol allows"),
        ];
        for (text, needle) in cases {
            let err = Config::parse(text).and_then(|c| c.settings(local()).map(|_| ()));
            let msg = format!("{:#}", err.expect_err(text));
            assert!(msg.contains(needle), "{text}\n→ {msg}");
        }
        let unknown = format!("{:#}", Config::parse("[node]\nlisten_on = []").unwrap_err());
        assert!(unknown.contains("unknown field"), "{unknown}");
        let typo = format!("{:#}", Config::parse("[trust]\nthreshold = \"high\"").unwrap_err());
        assert!(typo.contains("threshold"), "{typo}");
    }

    #[test]
    fn nat_keys_parse_with_defaults_and_bad_values_name_the_key() {
        let s = Config::default().settings(local()).unwrap();
        assert_eq!(s.listen.len(), 4, "TCP and QUIC on IPv4 and IPv6 by default");
        assert!(s.listen.iter().any(|a| a.to_string() == "/ip6/::/udp/7710/quic-v1"));
        assert!(!s.nat.upnp && s.nat.external.is_empty() && !s.nat.relay_only);
        assert_eq!(s.nat.relay, crate::net::nat::RelayConfig::default());
        assert!(s.nat.relay.serve);

        let text = "[node]\nupnp = true\nexternal_addresses = [\"/ip4/192.0.2.10/tcp/7710\", \"/ip6/2001:db8::1/udp/7710/quic-v1\"]\n\
                    [relay]\nserve = false\nmax_circuits = 4\nmax_circuits_per_peer = 2\ncircuit_duration = \"10m\"\ncircuit_bytes = 2000000\n\
                    [debug]\nrelay_only = true";
        let s = Config::parse(text).unwrap().settings(local()).unwrap();
        assert!(s.nat.upnp && s.nat.relay_only && !s.nat.relay.serve);
        assert_eq!(s.nat.external.len(), 2);
        assert_eq!(s.nat.relay.max_circuits, 4);
        assert_eq!(s.nat.relay.circuit_duration, Duration::from_secs(600));
        assert_eq!(s.nat.relay.max_reservations, 128, "the others keep their defaults");

        for (text, needle) in [
            (
                "[node]\nexternal_addresses = [\"nonsense\"]",
                "node.external_addresses: bad multiaddr",
            ),
            (
                "[node]\nexternal_addresses = [\"/ip4/0.0.0.0/tcp/7710\"]",
                "needs a specific IP",
            ),
            ("[node]\nexternal_addresses = [\"/ip4/192.0.2.1\"]", "TCP or UDP port"),
            (
                "[node]\nexternal_addresses = [\"/ip4/192.0.2.1/tcp/1/p2p-circuit\"]",
                "without /p2p",
            ),
            ("[relay]\nmax_circuits = 0", "relay.max_circuits: must be at least 1"),
            (
                "[relay]\nmax_reservations = 2\nmax_reservations_per_peer = 3",
                "relay.max_reservations_per_peer",
            ),
            (
                "[relay]\nmax_circuits = 2",
                "relay.max_circuits_per_peer: must not exceed",
            ),
            (
                "[relay]\ncircuit_duration = \"500ms\"",
                "relay.circuit_duration: must be between",
            ),
            ("[relay]\nreservation_duration = \"2d\"", "relay.reservation_duration"),
            ("[relay]\ncircuit_bytes = 0", "relay.circuit_bytes: must be at least"),
        ] {
            let err = Config::parse(text).and_then(|c| c.settings(local()).map(|_| ()));
            let msg = format!("{:#}", err.expect_err(text));
            assert!(msg.contains(needle), "{text}\n→ {msg}");
        }
        let unknown = format!("{:#}", Config::parse("[relay]\nmax_bytes = 1").unwrap_err());
        assert!(unknown.contains("unknown field"), "{unknown}");
    }

    #[test]
    fn own_addresses_are_allowlisted_also_when_listening_on_every_interface() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let listen = |a: &str| vec![a.parse::<Multiaddr>().unwrap()];
        let seed = parse_seed(&format!(
            "/ip4/198.51.100.7/tcp/7710/p2p/{}",
            libp2p::identity::Keypair::generate_ed25519().public().to_peer_id()
        ))
        .unwrap();
        let fake = || vec![ip("203.0.113.9"), ip("2001:db8::9")];
        // Unspecified (IPv4 or IPv6): every interface address, plus loopback and seeds.
        for any in ["/ip4/0.0.0.0/tcp/7710", "/ip6/::/tcp/7710"] {
            let nets = implicit_allowlist_with(&listen(any), std::slice::from_ref(&seed), fake);
            for a in ["203.0.113.9", "2001:db8::9", "127.0.0.1", "::1", "198.51.100.7"] {
                assert!(nets.iter().any(|n| n.contains(&ip(a))), "{any}: {a} not allowlisted");
            }
        }
        // A specific address: that one, and the interfaces are not asked.
        let nets = implicit_allowlist_with(&listen("/ip4/192.0.2.1/tcp/7710"), &[], || panic!("asked"));
        assert!(nets.iter().any(|n| n.contains(&ip("192.0.2.1"))));
        // The default config (0.0.0.0) allowlists every address of this host.
        let s = Config::default().settings(local()).unwrap();
        let own = interface_addresses();
        assert!(!own.is_empty(), "this host has interface addresses");
        for a in own {
            assert!(
                s.policy.is_allowlisted_ip(a),
                "{a} is not allowlisted with the default listen address"
            );
        }
    }

    #[test]
    fn organisations_and_reputation_parse_validate_and_name_their_key() {
        let org = Identity::from_secret([7; 32]).public();
        let other = Identity::from_secret([8; 32]).public();
        let text = format!(
            "[[trust.orgs]]\nid = \"{}\"\nname = \"example-telecom\"\n\
             [[trust.orgs]]\nid = \"{}\"\nname = \"partner\"\nweight = 0.5\n\
             [trust.reputation]\npenalty = 0.5",
            org.peer_id(),
            other.peer_id()
        );
        let c = Config::parse(&text).unwrap();
        let s = c.settings(local()).unwrap();
        let trust = s.policy.trust();
        assert_eq!(trust.orgs.len(), 2);
        assert_eq!(trust.orgs[&other].weight, 500);
        assert_eq!(trust.orgs[&org].name, "example-telecom");
        assert_eq!(trust.reputation.penalty, 500);
        assert_eq!(trust.reputation.recovery_per_day, 50);
        let orgs = c.trust.org_entries().unwrap();
        assert_eq!(
            orgs,
            vec![
                OrgEntry {
                    key: org,
                    name: "example-telecom".into(),
                    weight: 1000
                },
                OrgEntry {
                    key: other,
                    name: "partner".into(),
                    weight: 500
                },
            ],
            "weight defaults to 1.0"
        );
        assert_eq!(
            c.trust.reputation.thousandths().unwrap(),
            (500, 50),
            "recovery keeps its default"
        );
        assert_eq!(Config::default().trust.reputation.thousandths().unwrap(), (250, 50));
        assert!(Config::default().trust.org_entries().unwrap().is_empty());

        let id = org.peer_id();
        for (text, needle) in [
            (
                "[[trust.orgs]]\nid = \"bob\"\nname = \"x\"".to_string(),
                "trust.orgs[0].id: \"bob\" is not an organisation id",
            ),
            (
                format!("[[trust.orgs]]\nid = \"{id}\"\nname = \"\""),
                "trust.orgs[0].name: must be 1 to 64 bytes",
            ),
            (
                format!("[[trust.orgs]]\nid = \"{id}\"\nname = \"{}\"", "x".repeat(65)),
                "trust.orgs[0].name",
            ),
            (
                format!("[[trust.orgs]]\nid = \"{id}\"\nname = \"a\\nb\""),
                "control characters",
            ),
            (
                format!("[[trust.orgs]]\nid = \"{id}\"\nname = \"x\"\nweight = -1.0"),
                "trust.orgs[0].weight: must be between 0 and 1000",
            ),
            (
                format!("[[trust.orgs]]\nid = \"{id}\"\nname = \"x\"\n[[trust.orgs]]\nid = \"{id}\"\nname = \"y\""),
                "trust.orgs[1].id",
            ),
            (
                "[trust.reputation]\npenalty = 1.5".to_string(),
                "trust.reputation.penalty: must be between 0 and 1",
            ),
            (
                "[trust.reputation]\nrecovery_per_day = -0.1".to_string(),
                "trust.reputation.recovery_per_day",
            ),
        ] {
            let err = Config::parse(&text).and_then(|c| c.settings(local()).map(|_| ()));
            let msg = format!("{:#}", err.expect_err(&text));
            assert!(msg.contains(needle), "{text}\n→ {msg}");
        }
        for text in [
            format!("[[trust.orgs]]\nid = \"{id}\""),
            format!("[[trust.orgs]]\nid = \"{id}\"\nname = \"x\"\ncolour = \"red\""),
            "[trust.reputation]\ndecay = 1".to_string(),
        ] {
            assert!(Config::parse(&text).is_err(), "{text}");
        }
        // What `init` writes reads back the same.
        let written = toml::to_string_pretty(&c).unwrap();
        assert_eq!(Config::parse(&written).unwrap(), c, "{written}");
    }

    #[test]
    fn seeds_need_a_peer_id() {
        assert!(parse_seed("/ip4/127.0.0.1/tcp/7710").is_err());
        let id = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id();
        let (peer, _) = parse_seed(&format!("/ip4/127.0.0.1/tcp/7710/p2p/{id}")).unwrap();
        assert_eq!(peer, id);
    }
}

//! A cluster of real `fraudmesh` processes, on 127.0.0.1 unless placed elsewhere
//! ([`Placement`]: an address, and a network namespace for `spoof`): each with its own
//! directory, a fixed libp2p port chosen free up front (so a restarted node comes back
//! where its peers expect it), the API on a port the OS picks (read from `node.json`).
//! Every process is started with `kill_on_drop`, so none outlives the testnet, whatever
//! happens to it.
//!
//! By default every node dials the first `seeds` nodes and trusts every other node at
//! 1.0. A scenario can lay the cluster out otherwise, node by node ([`NodeSpec`]): whom it
//! dials at start, whom it trusts and how much (peer ids, or organisations only:
//! [`NodeSpec::org_only`]), the only nodes it may connect to (a graph
//! rather than a full mesh; [`Cluster::refusals`] says whom each node must refuse, applied
//! through the fault-injection API once the nodes run) and any change to its config
//! (local policy, limits).

use crate::client::Api;
use anyhow::{bail, Context};
use fraudmesh_node::daemon::config::{Config, TrustedOrg, TrustedPeer};
use fraudmesh_node::daemon::dir::NodeDir;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long a node may take to answer on its API after starting.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Where a node runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Its libp2p address.
    pub host: Ipv4Addr,
    /// Its API address (the port is the OS's choice).
    pub api: Ipv4Addr,
    /// The network namespace it runs in (`ip netns exec`); `None`: the testnet's own.
    pub netns: Option<String>,
}

impl Default for Placement {
    /// 127.0.0.1 in the testnet's own namespace.
    fn default() -> Self {
        Self {
            host: Ipv4Addr::LOCALHOST,
            api: Ipv4Addr::LOCALHOST,
            netns: None,
        }
    }
}

/// A change to one node's config, applied after the layout's own settings.
pub type Tweak = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// One node's place in a cluster laid out by a scenario. A field left `None` takes the
/// uniform layout: dial the seeds, trust every other node at 1.0, connect to anyone,
/// default config.
#[derive(Clone, Default)]
pub struct NodeSpec {
    /// The nodes it dials at start (its configured seeds).
    pub dials: Option<Vec<usize>>,
    /// The nodes it trusts, with their weights (`[[trust.peers]]`).
    pub trusts: Option<Vec<(usize, f64)>>,
    /// The organisations it trusts (`[[trust.orgs]]`; default none).
    pub orgs: Vec<OrgEntry>,
    /// The only nodes it may be connected to; every other node refuses it and it refuses
    /// them (see [`Cluster::refusals`]).
    pub links: Option<Vec<usize>>,
    /// A change to its config (e.g. `[policy]` or `[limits]`).
    pub tweak: Option<Tweak>,
    /// What it is in the scenario (`relay`, `strict`, …), for the report.
    pub role: Option<&'static str>,
    /// Where it runs (default: 127.0.0.1 in the testnet's own namespace).
    pub placement: Placement,
}

/// One organisation a node trusts: its key's id (`12D3KooW…`), a name for explanations,
/// and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgEntry {
    /// The organisation key's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its weight on the node.
    pub weight: f64,
}

impl NodeSpec {
    /// A node that trusts these organisations and no peer id: the config of a provider
    /// that endorses its nodes instead of listing them.
    pub fn org_only(orgs: Vec<OrgEntry>) -> Self {
        Self {
            trusts: Some(Vec::new()),
            orgs,
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for NodeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSpec")
            .field("dials", &self.dials)
            .field("trusts", &self.trusts)
            .field("orgs", &self.orgs)
            .field("links", &self.links)
            .field("tweak", &self.tweak.as_ref().map(|_| "…"))
            .field("role", &self.role)
            .field("placement", &self.placement)
            .finish()
    }
}

/// One node of the cluster.
pub struct Member {
    /// Position in the cluster (0-based; the first `seeds` are the seed peers).
    pub index: usize,
    /// Its directory.
    pub dir: PathBuf,
    /// Its peer id.
    pub peer_id: String,
    /// Its libp2p port (on its placement's host).
    pub port: u16,
    /// Where it runs.
    pub placement: Placement,
    /// Its API client while running.
    pub api: Option<Api>,
    /// How many times it was started.
    pub starts: u32,
    /// The nodes it trusts, with their weights.
    pub trusts: Vec<(usize, f64)>,
    /// The only nodes it may be connected to (`None`: any).
    pub links: Option<Vec<usize>>,
    /// What it is in the scenario, if the layout says.
    pub role: Option<&'static str>,
    child: Option<Child>,
    token: String,
}

impl Member {
    /// The full dialable address.
    pub fn addr(&self) -> String {
        format!("/ip4/{}/tcp/{}/p2p/{}", self.placement.host, self.port, self.peer_id)
    }

    /// The API of a running node.
    pub fn api(&self) -> anyhow::Result<&Api> {
        self.api
            .as_ref()
            .with_context(|| format!("node {} is not running", self.index))
    }

    /// Whether its process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process's resident set size now, bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// CPU time the process has used so far (user + system), ms, from
    /// `/proc/<pid>/stat`.
    pub fn cpu_ms(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id()?;
        cpu_ms_of(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }
}

/// User + system CPU time, ms, from the text of `/proc/<pid>/stat`.
fn cpu_ms_of(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces and parentheses): state is
    // field 3, utime 14 and stime 15, in clock ticks.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 1000 / USER_HZ)
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux
/// architecture's user interface).
const USER_HZ: u64 = 100;

/// The cluster.
pub struct Cluster {
    /// Its nodes, seeds first.
    pub members: Vec<Member>,
    bin: PathBuf,
    http: reqwest::Client,
}

/// Reserves `n` distinct free TCP ports on 127.0.0.1 below the kernel's ephemeral range
/// (held open together, then released for the nodes to bind). Ports from the ephemeral
/// range would race with the nodes' own outgoing connections, which take their local
/// ports from it: a node restarted or started late then found its port taken.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(12_000).max(1024);
    let span = ephemeral_low - low;
    if usize::from(span) < n * 2 {
        bail!("not enough ports below the ephemeral range ({low}..{ephemeral_low}) for {n} nodes");
    }
    // Start somewhere random so that two testnets at once rarely probe the same ports.
    let start: u16 = rand::random::<u16>() % span;
    let mut held = Vec::with_capacity(n);
    for k in 0..span {
        if held.len() == n {
            break;
        }
        let port = low + (start + k) % span;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    if held.len() < n {
        bail!("found only {} free ports in {low}..{ephemeral_low}", held.len());
    }
    held.iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect::<std::io::Result<Vec<u16>>>()
        .context("reading reserved ports")
}

impl Cluster {
    /// Creates `n` node directories under `root` (which must not hold nodes yet): the
    /// first `seeds` are everyone's seed peers, and every node trusts every other one.
    pub fn create(bin: &Path, root: &Path, n: usize, seeds: usize) -> anyhow::Result<Self> {
        Self::create_laid_out(bin, root, seeds, vec![NodeSpec::default(); n])
    }

    /// Creates one node directory per spec under `root` (which must not hold nodes yet):
    /// the first `seeds` are the seed peers of every node whose spec does not say whom it
    /// dials; trust, links and config as each spec says.
    pub fn create_laid_out(bin: &Path, root: &Path, seeds: usize, specs: Vec<NodeSpec>) -> anyhow::Result<Self> {
        let n = specs.len();
        for (i, spec) in specs.iter().enumerate() {
            let named = spec.dials.iter().flatten().chain(spec.links.iter().flatten());
            let trusted = spec.trusts.iter().flatten().map(|(j, _)| j);
            if let Some(j) = named.chain(trusted).find(|&&j| j >= n || j == i) {
                bail!("the layout of node {i} names node {j}, which is itself or not in the cluster of {n}");
            }
        }
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let ports = free_ports(n)?;
        let mut members = Vec::with_capacity(n);
        for ((index, port), spec) in ports.into_iter().enumerate().zip(&specs) {
            let dir = root.join(format!("node{index:03}"));
            if dir.exists() {
                bail!("{} already exists: choose an empty --out directory", dir.display());
            }
            let nd = NodeDir::new(&dir);
            let identity = nd.create_secrets(false)?;
            let token = nd.load_token()?;
            members.push(Member {
                index,
                dir,
                peer_id: identity.public().peer_id(),
                port,
                placement: spec.placement.clone(),
                api: None,
                starts: 0,
                trusts: spec
                    .trusts
                    .clone()
                    .unwrap_or_else(|| (0..n).filter(|&j| j != index).map(|j| (j, 1.0)).collect()),
                links: spec.links.clone(),
                role: spec.role,
                child: None,
                token,
            });
        }
        for (m, spec) in members.iter().zip(&specs) {
            let mut c = Config::default();
            c.node.listen = vec![format!("/ip4/{}/tcp/{}", m.placement.host, m.port)];
            c.node.api = format!("{}:0", m.placement.api);
            let dials: Vec<usize> = match &spec.dials {
                Some(d) => d.clone(),
                None => (0..seeds.min(n)).filter(|&s| s != m.index).collect(),
            };
            c.node.seeds = dials.iter().map(|&j| members[j].addr()).collect();
            c.trust.peers = m
                .trusts
                .iter()
                .map(|&(j, weight)| TrustedPeer {
                    peer_id: members[j].peer_id.clone(),
                    weight,
                })
                .collect();
            c.trust.orgs = spec
                .orgs
                .iter()
                .map(|o| TrustedOrg {
                    id: o.id.clone(),
                    name: o.name.clone(),
                    weight: o.weight,
                })
                .collect();
            c.debug.fault_injection = true;
            c.store.cache_mb = 8;
            if let Some(tweak) = &spec.tweak {
                tweak(&mut c);
            }
            let text = toml::to_string(&c).context("writing a node config")?;
            let path = NodeDir::new(&m.dir).config();
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            members,
            bin: bin.to_path_buf(),
            http,
        })
    }

    /// Changes node `i`'s config file (takes effect at its next start).
    pub fn edit_config(&self, i: usize, edit: impl FnOnce(&mut Config)) -> anyhow::Result<()> {
        let path = NodeDir::new(&self.members[i].dir).config();
        let mut c = Config::load(&path)?;
        edit(&mut c);
        let text = toml::to_string(&c).context("writing a node config")?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Spawns node `i`; [`Cluster::wait_started`] waits for its API.
    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &mut self.members[i];
        if m.child.is_some() {
            bail!("node {i} already runs");
        }
        let nd = NodeDir::new(&m.dir);
        let _ = std::fs::remove_file(nd.runtime());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("node.log"))
            .context("opening the node log")?;
        let mut command = match &m.placement.netns {
            Some(ns) => {
                // `ip netns exec` execs the node: the child's pid is the node's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let child = command
            .arg("--dir")
            .arg(&m.dir)
            .arg("run")
            .env("FRAUDMESH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        m.child = Some(child);
        m.api = None;
        m.starts += 1;
        Ok(())
    }

    /// Waits until node `i` answers on its API.
    pub async fn wait_started(&mut self, i: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let m = &mut self.members[i];
            let child = m.child.as_mut().with_context(|| format!("node {i} is not running"))?;
            if let Some(status) = child.try_wait()? {
                m.child = None;
                let log = std::fs::read_to_string(m.dir.join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                bail!(
                    "node {i} exited with {status}: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            if let Some(rt) = NodeDir::new(&m.dir).read_runtime() {
                let api = Api::with_http(&rt.api, Some(m.token.clone()), self.http.clone());
                if api.status().await.is_ok() {
                    m.api = Some(api);
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("node {i} did not answer on its API within {START_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the given nodes and waits for all of them.
    pub async fn start(&mut self, nodes: impl IntoIterator<Item = usize>) -> anyhow::Result<()> {
        let nodes: Vec<usize> = nodes.into_iter().collect();
        for &i in &nodes {
            self.spawn(i)?;
        }
        for &i in &nodes {
            self.wait_started(i).await?;
        }
        Ok(())
    }

    /// SIGKILL: no chance to flush anything.
    pub async fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &mut self.members[i];
        m.api = None;
        if let Some(mut c) = m.child.take() {
            c.kill().await.with_context(|| format!("killing node {i}"))?;
        }
        Ok(())
    }

    /// SIGTERM to every running node, then waits; a node that does not exit in time is
    /// killed. Returns how many had to be killed.
    pub async fn stop_all(&mut self) -> usize {
        for m in &self.members {
            if let Some(pid) = m.child.as_ref().and_then(Child::id) {
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
            }
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        let mut killed = 0;
        for m in &mut self.members {
            m.api = None;
            if let Some(mut c) = m.child.take() {
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, c.wait()).await.is_err() {
                    let _ = c.kill().await;
                    killed += 1;
                }
            }
        }
        killed
    }

    /// The `fraudmesh` binary the nodes run.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Whether node `i` counts node `j`'s reports (itself, or a trusted peer with a
    /// positive weight).
    pub fn trusts(&self, i: usize, j: usize) -> bool {
        i == j || self.members[i].trusts.iter().any(|&(k, w)| k == j && w > 0.0)
    }

    /// The peer ids node `i` must refuse so that every node's connections stay within its
    /// links: a node with links refuses everyone else, and everyone else refuses it.
    pub fn refusals(&self, i: usize) -> Vec<String> {
        let allowed = |a: usize, b: usize| self.members[a].links.as_ref().is_none_or(|l| l.contains(&b));
        self.members
            .iter()
            .filter(|m| m.index != i && !(allowed(i, m.index) && allowed(m.index, i)))
            .map(|m| m.peer_id.clone())
            .collect()
    }

    /// How many nodes node `i` may be connected to under the links.
    pub fn possible_peers(&self, i: usize) -> usize {
        self.members.len() - 1 - self.refusals(i).len()
    }

    /// Indices of running nodes.
    pub fn running(&self) -> Vec<usize> {
        self.members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| m.index)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_from_proc_stat() {
        let stat = "4242 (fraud (mesh) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_ms_of(stat), Some(3250));
        assert_eq!(cpu_ms_of("4242 (x) S 1"), None);
    }

    #[test]
    fn an_org_only_cluster_writes_organisations_and_no_peer_id() {
        let tmp = tempfile::tempdir().unwrap();
        let org = OrgEntry {
            id: fraudmesh::identity::Identity::from_secret([9; 32]).public().peer_id(),
            name: "provider".to_string(),
            weight: 0.5,
        };
        let specs = vec![NodeSpec::org_only(vec![org.clone()]); 3];
        let c = Cluster::create_laid_out(Path::new("/bin/true"), tmp.path(), 1, specs).unwrap();
        for m in &c.members {
            let config = Config::load(&NodeDir::new(&m.dir).config()).unwrap();
            assert!(config.trust.peers.is_empty());
            assert_eq!(config.trust.orgs.len(), 1);
            let o = &config.trust.orgs[0];
            assert_eq!((&o.id, &o.name, o.weight), (&org.id, &org.name, org.weight));
        }
        assert!(!c.trusts(0, 1) && c.trusts(1, 1));
    }

    #[test]
    fn a_laid_out_cluster_writes_its_graph_trust_and_tweaks() {
        let tmp = tempfile::tempdir().unwrap();
        let leaf = NodeSpec {
            dials: Some(vec![2]),
            links: Some(vec![2]),
            trusts: Some(vec![(0, 0.5)]),
            tweak: Some(Arc::new(|c: &mut Config| c.limits.max_stranger_records = 7)),
            role: Some("leaf"),
            ..NodeSpec::default()
        };
        let relay = NodeSpec {
            trusts: Some(Vec::new()),
            ..NodeSpec::default()
        };
        let specs = vec![NodeSpec::default(), NodeSpec::default(), relay, leaf];
        let c = Cluster::create_laid_out(Path::new("/bin/true"), tmp.path(), 2, specs).unwrap();
        let id = |i: usize| c.members[i].peer_id.clone();
        // The leaf and every node but its relay refuse each other.
        assert_eq!(c.refusals(3), vec![id(0), id(1)]);
        assert_eq!(c.refusals(0), vec![id(3)]);
        assert!(c.refusals(2).is_empty());
        assert_eq!(
            (c.possible_peers(3), c.possible_peers(2), c.possible_peers(0)),
            (1, 3, 2)
        );
        assert!(c.trusts(0, 2) && c.trusts(3, 0) && c.trusts(3, 3));
        assert!(!c.trusts(2, 0) && !c.trusts(3, 1));
        let config = |i: usize| Config::load(&NodeDir::new(&c.members[i].dir).config()).unwrap();
        let leaf = config(3);
        assert_eq!(leaf.node.seeds, vec![c.members[2].addr()]);
        assert_eq!(leaf.limits.max_stranger_records, 7);
        assert_eq!(leaf.trust.peers.len(), 1);
        assert_eq!(leaf.trust.peers[0].weight, 0.5);
        assert!(config(2).trust.peers.is_empty());
        let first = config(0);
        assert_eq!(first.node.seeds, vec![c.members[1].addr()]);
        assert_eq!(first.trust.peers.len(), 3);
        assert_eq!(
            first.limits.max_stranger_records,
            Config::default().limits.max_stranger_records
        );
        // A layout naming a node outside the cluster is refused.
        let bad = vec![
            NodeSpec::default(),
            NodeSpec {
                links: Some(vec![5]),
                ..NodeSpec::default()
            },
        ];
        assert!(Cluster::create_laid_out(Path::new("/bin/true"), &tmp.path().join("bad"), 1, bad).is_err());
    }
}

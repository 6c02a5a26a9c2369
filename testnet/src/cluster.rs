//! A cluster of real `fraudmesh` processes, on 127.0.0.1 unless placed elsewhere
//! ([`Placement`]: an address, and a network namespace for `spoof`): each with its own
//! directory, a fixed libp2p port chosen free up front (so a restarted node comes back
//! where its peers expect it), the API on a port the OS picks (read from `node.json`).
//! Every process is started with `kill_on_drop`, so none outlives the testnet, whatever
//! happens to it.

use crate::client::Api;
use anyhow::{bail, Context};
use fraudmesh_node::daemon::config::{Config, TrustedPeer};
use fraudmesh_node::daemon::dir::NodeDir;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
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
}

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
        Self::create_placed(bin, root, &vec![Placement::default(); n], seeds)
    }

    /// [`Cluster::create`] with one node per placement.
    pub fn create_placed(bin: &Path, root: &Path, placements: &[Placement], seeds: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let n = placements.len();
        let ports = free_ports(n)?;
        let mut members = Vec::with_capacity(n);
        for (index, port) in ports.into_iter().enumerate() {
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
                placement: placements[index].clone(),
                api: None,
                starts: 0,
                child: None,
                token,
            });
        }
        for m in &members {
            let mut c = Config::default();
            c.node.listen = vec![format!("/ip4/{}/tcp/{}", m.placement.host, m.port)];
            c.node.api = format!("{}:0", m.placement.api);
            c.node.seeds = members
                .iter()
                .take(seeds)
                .filter(|s| s.index != m.index)
                .map(Member::addr)
                .collect();
            c.trust.peers = members
                .iter()
                .filter(|p| p.index != m.index)
                .map(|p| TrustedPeer {
                    peer_id: p.peer_id.clone(),
                    weight: 1.0,
                })
                .collect();
            c.debug.fault_injection = true;
            c.store.cache_mb = 8;
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

    /// Indices of running nodes.
    pub fn running(&self) -> Vec<usize> {
        self.members
            .iter()
            .filter(|m| m.is_running())
            .map(|m| m.index)
            .collect()
    }
}

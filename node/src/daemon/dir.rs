//! The node directory (`--dir`): what lives in it and how each file is read and written.
//!
//! ```text
//! DIR/config.toml    the operator's configuration (optional: defaults apply)
//! DIR/identity.key   the ed25519 secret seed, hex, mode 0600
//! DIR/api.token      the bearer token for API writes, mode 0600
//! DIR/data/          the sled database
//! DIR/calls/         the call counters' sled database
//! DIR/node.json      written by a running node: its pid, API and listen addresses
//! ```

use anyhow::{anyhow, bail, Context};
use fraudmesh::identity::Identity;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Paths inside one node directory.
#[derive(Debug, Clone)]
pub struct NodeDir {
    root: PathBuf,
}

/// What a running node tells CLI commands about itself (`node.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Runtime {
    /// The node's process id.
    pub pid: u32,
    /// Its peer id.
    pub peer_id: String,
    /// The API address actually bound (port 0 in the config becomes a real port).
    pub api: String,
    /// Listen addresses actually bound, with `/p2p/<peer id>`.
    pub listen: Vec<String>,
}

impl NodeDir {
    /// The directory at `root` (not created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// `identity.key`.
    pub fn identity(&self) -> PathBuf {
        self.root.join("identity.key")
    }
    /// `api.token`.
    pub fn token(&self) -> PathBuf {
        self.root.join("api.token")
    }
    /// `bouncers.json`, the CrowdSec bouncer keys (hashed).
    pub fn bouncers(&self) -> PathBuf {
        self.root.join("bouncers.json")
    }
    /// `data/`, the sled database.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    /// `calls/`, the call counters' sled database.
    pub fn calls_db(&self) -> PathBuf {
        self.root.join("calls")
    }
    /// `node.json`.
    pub fn runtime(&self) -> PathBuf {
        self.root.join("node.json")
    }

    /// Loads the identity, creating a fresh one (0600) if there is none yet, so that
    /// `fraudmesh run` works on an empty directory.
    pub fn load_or_create_identity(&self) -> anyhow::Result<Identity> {
        if self.identity().exists() {
            return self.load_identity();
        }
        fs::create_dir_all(&self.root).with_context(|| format!("creating {}", self.root.display()))?;
        let id = Identity::from_secret(rand::random());
        write_secret(&self.identity(), &hex::encode(id.secret_bytes()), false)?;
        Ok(id)
    }

    /// Loads the identity; refuses a key file others can read.
    pub fn load_identity(&self) -> anyhow::Result<Identity> {
        let path = self.identity();
        let meta = fs::metadata(&path)
            .with_context(|| format!("no identity at {} (run `fraudmesh init` first)", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} is readable by others; run: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let bytes = hex::decode(text.trim()).map_err(|e| anyhow!("{}: not hex: {e}", path.display()))?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow!("{}: expected 32 bytes (64 hex digits)", path.display()))?;
        Ok(Identity::from_secret(secret))
    }

    /// Loads the API token, creating one (0600) if missing.
    pub fn load_or_create_token(&self) -> anyhow::Result<String> {
        if self.token().exists() {
            return self.load_token();
        }
        fs::create_dir_all(&self.root).with_context(|| format!("creating {}", self.root.display()))?;
        let token = hex::encode(rand::random::<[u8; 32]>());
        write_secret(&self.token(), &token, false)?;
        Ok(token)
    }

    /// Loads the API token.
    pub fn load_token(&self) -> anyhow::Result<String> {
        let path = self.token();
        let t = fs::read_to_string(&path).with_context(|| format!("reading the API token {}", path.display()))?;
        Ok(t.trim().to_string())
    }

    /// Writes a new identity and token (for `init`), replacing old ones only when `force`.
    pub fn create_secrets(&self, force: bool) -> anyhow::Result<Identity> {
        fs::create_dir_all(&self.root).with_context(|| format!("creating {}", self.root.display()))?;
        let id = Identity::from_secret(rand::random());
        write_secret(&self.identity(), &hex::encode(id.secret_bytes()), force)?;
        write_secret(&self.token(), &hex::encode(rand::random::<[u8; 32]>()), force)?;
        Ok(id)
    }

    /// Writes `node.json` atomically.
    pub fn write_runtime(&self, rt: &Runtime) -> anyhow::Result<()> {
        crate::fsutil::write_atomically(&self.runtime(), &serde_json::to_vec_pretty(rt)?, 0o644)
    }

    /// `node.json` of a node that is still running (its pid exists).
    pub fn running(&self) -> Option<Runtime> {
        self.read_runtime()
            .filter(|rt| Path::new(&format!("/proc/{}", rt.pid)).exists())
    }

    /// Reads `node.json` if present.
    pub fn read_runtime(&self) -> Option<Runtime> {
        let bytes = fs::read(self.runtime()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes `node.json` (on shutdown).
    pub fn clear_runtime(&self) {
        let _ = fs::remove_file(self.runtime());
    }
}

/// Writes a secret with mode 0600 from creation on. Without `force`, an existing file is
/// an error rather than silently replaced.
fn write_secret(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).with_context(|| {
        if path.exists() {
            format!("{} already exists (use --force to replace it)", path.display())
        } else {
            format!("creating {}", path.display())
        }
    })?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

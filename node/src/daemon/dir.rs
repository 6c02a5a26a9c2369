//! The node directory (`--dir`): what lives in it and how each file is read and written.
//!
//! ```text
//! DIR/config.toml    the operator's configuration (optional: defaults apply)
//! DIR/identity.key   the ed25519 secret seed, hex, mode 0600
//! DIR/api.token      the admin bearer token (writes, accounts, audit), mode 0600
//! DIR/calls.token    the SIP stack's bearer token for call authorisation, mode 0640
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
    /// `calls.token`, the SIP stack's credential for `/v1/calls/authorize` and
    /// `/v1/calls/{call_id}/end`.
    pub fn calls_token(&self) -> PathBuf {
        self.root.join("calls.token")
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
        write_secret(&self.identity(), &hex::encode(id.secret_bytes()), 0o600, false)?;
        Ok(id)
    }

    /// Loads the identity; refuses a key file others can read.
    pub fn load_identity(&self) -> anyhow::Result<Identity> {
        let path = self.identity();
        if !path.exists() {
            bail!("no identity at {} (run `fraudmesh init` first)", path.display());
        }
        load_key_file(&path)
    }

    /// Loads the API token for the daemon, creating one (0600) if missing; refuses a
    /// token file that group or others can read or write (anyone who reads it
    /// administers the node).
    pub fn load_or_create_token(&self) -> anyhow::Result<String> {
        if !self.token().exists() {
            fs::create_dir_all(&self.root).with_context(|| format!("creating {}", self.root.display()))?;
            write_secret(&self.token(), &new_token(), API_TOKEN_MODE, false)?;
        }
        check_mode(&self.token(), 0o077, "chmod 600")?;
        self.load_token()
    }

    /// Loads the API token (the CLI; the daemon checks its mode).
    pub fn load_token(&self) -> anyhow::Result<String> {
        read_token(&self.token(), "the API token")
    }

    /// Loads the calls token for the daemon, creating one (0640) if missing; refuses a
    /// token file that others (not the owner, not its group) can read or write. Its group
    /// is left as created: `chgrp asterisk DIR/calls.token` lets the PBX's group read it.
    pub fn load_or_create_calls_token(&self) -> anyhow::Result<String> {
        if !self.calls_token().exists() {
            fs::create_dir_all(&self.root).with_context(|| format!("creating {}", self.root.display()))?;
            write_secret(&self.calls_token(), &new_token(), CALLS_TOKEN_MODE, false)?;
        }
        check_mode(&self.calls_token(), 0o007, "chmod 640")?;
        read_token(&self.calls_token(), "the calls token")
    }

    /// Writes a new identity, API token and calls token (for `init`), replacing old ones
    /// only when `force`.
    pub fn create_secrets(&self, force: bool) -> anyhow::Result<Identity> {
        fs::create_dir_all(&self.root).with_context(|| format!("creating {}", self.root.display()))?;
        let id = Identity::from_secret(rand::random());
        write_secret(&self.identity(), &hex::encode(id.secret_bytes()), 0o600, force)?;
        write_secret(&self.token(), &new_token(), API_TOKEN_MODE, force)?;
        write_secret(&self.calls_token(), &new_token(), CALLS_TOKEN_MODE, force)?;
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

/// Creates a key file at `path` holding a fresh ed25519 secret seed (hex, mode 0600 from
/// creation on); an existing file is never replaced. For an organisation's key, kept
/// apart from any node's directory.
pub fn create_key_file(path: &Path) -> anyhow::Result<Identity> {
    if path.exists() {
        bail!(
            "{} already exists: an organisation key is never overwritten (choose another file)",
            path.display()
        );
    }
    let id = Identity::from_secret(rand::random());
    write_secret(path, &hex::encode(id.secret_bytes()), 0o600, false)?;
    Ok(id)
}

/// Loads a key file (a node's identity, an organisation's key); refuses one that group
/// or others can read or write, naming `chmod 600 FILE`.
pub fn load_key_file(path: &Path) -> anyhow::Result<Identity> {
    check_mode(path, 0o077, "chmod 600")?;
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = hex::decode(text.trim()).map_err(|e| anyhow!("{}: not hex: {e}", path.display()))?;
    let secret: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow!("{}: expected 32 bytes (64 hex digits)", path.display()))?;
    Ok(Identity::from_secret(secret))
}

/// `api.token`'s mode: the owner only.
const API_TOKEN_MODE: u32 = 0o600;
/// `calls.token`'s mode: the owner and its group (the PBX's, after `chgrp`).
const CALLS_TOKEN_MODE: u32 = 0o640;

/// 32 random bytes, hex.
fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Refuses a secret file whose mode has any of `forbidden`'s bits, naming the fix.
fn check_mode(path: &Path, forbidden: u32, fix: &str) -> anyhow::Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & forbidden != 0 {
        bail!(
            "{} has mode {mode:03o}: readable or writable by others; run: {fix} {}",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// Reads a token file; an empty one is an error.
fn read_token(path: &Path, what: &str) -> anyhow::Result<String> {
    let t = fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let t = t.trim();
    if t.is_empty() {
        bail!("{what} {} is empty", path.display());
    }
    Ok(t.to_string())
}

/// Writes a secret with `mode` from creation on. Without `force`, an existing file is
/// an error rather than silently replaced.
fn write_secret(path: &Path, text: &str, mode: u32, force: bool) -> anyhow::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).mode(mode);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).with_context(|| {
        if path.exists() && !force {
            format!("{} already exists (use --force to replace it)", path.display())
        } else {
            format!("creating {}", path.display())
        }
    })?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_private_never_overwritten_and_refused_when_loose() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("org.key");
        let id = create_key_file(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_key_file(&path).unwrap().public(), id.public());

        let err = format!("{:#}", create_key_file(&path).unwrap_err());
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(
            load_key_file(&path).unwrap().public(),
            id.public(),
            "the key is untouched"
        );

        for mode in [0o640, 0o604, 0o620, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = format!("{:#}", load_key_file(&path).unwrap_err());
            assert!(
                err.contains(&format!("chmod 600 {}", path.display())),
                "{mode:o}: {err}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(
            load_key_file(&path).unwrap().public(),
            id.public(),
            "read-only by its owner is fine"
        );

        let bad = tmp.path().join("bad.key");
        write_secret(&bad, "not hex", 0o600, false).unwrap();
        assert!(format!("{:#}", load_key_file(&bad).unwrap_err()).contains("not hex"));
        let short = tmp.path().join("short.key");
        write_secret(&short, "abcd", 0o600, false).unwrap();
        assert!(format!("{:#}", load_key_file(&short).unwrap_err()).contains("32 bytes"));
    }
}

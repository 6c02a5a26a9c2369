//! CrowdSec bouncer keys: `DIR/bouncers.json` holds each bouncer's name and the SHA-256
//! of its key (the key itself is printed once by `fraudmesh bouncers add` and never
//! stored). The API reads the file on each request, so keys added or deleted while the
//! node runs take effect at once.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One registered bouncer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bouncer {
    /// Its name.
    pub name: String,
    /// Hex SHA-256 of its key.
    pub key_sha256: String,
    /// When it was added, Unix ms.
    pub created: u64,
}

/// The registry file of a node directory.
#[derive(Debug, Clone)]
pub struct Bouncers {
    path: PathBuf,
}

/// Hex SHA-256 of a key.
fn hash_key(key: &str) -> String {
    hex::encode(super::hash_secret(key))
}

/// Why a bouncer's request is refused (each API answers it in its own dialect).
#[derive(Debug)]
pub enum Denied {
    /// No key, or one no bouncer holds.
    UnknownKey,
    /// The registry could not be read.
    Registry(String),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Bouncers {
    /// The registry at `path` (created on the first `add`).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
        }
    }

    /// Every registered bouncer (none when the file does not exist).
    pub fn list(&self) -> anyhow::Result<Vec<Bouncer>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    /// The name of the bouncer holding `key` (when given), or why the request is refused.
    pub fn admit(&self, key: Option<&str>) -> Result<String, Denied> {
        let key = key.ok_or(Denied::UnknownKey)?;
        match self.authenticate(key) {
            Ok(Some(name)) => Ok(name),
            Ok(None) => Err(Denied::UnknownKey),
            Err(e) => Err(Denied::Registry(format!("{e:#}"))),
        }
    }

    /// The name of the bouncer holding `key`, if any.
    pub fn authenticate(&self, key: &str) -> anyhow::Result<Option<String>> {
        let h = hash_key(key);
        Ok(self.list()?.into_iter().find(|b| b.key_sha256 == h).map(|b| b.name))
    }

    /// Adds a bouncer and returns its new key.
    pub fn add(&self, name: &str, now_ms: u64) -> anyhow::Result<String> {
        if !valid_name(name) {
            bail!("bouncer name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'");
        }
        let mut all = self.list()?;
        if all.iter().any(|b| b.name == name) {
            bail!("a bouncer named {name:?} exists already (delete it first)");
        }
        let key = hex::encode(rand::random::<[u8; 32]>());
        all.push(Bouncer {
            name: name.to_string(),
            key_sha256: hash_key(&key),
            created: now_ms,
        });
        self.write(&all)?;
        Ok(key)
    }

    /// Deletes a bouncer; an unknown name is an error.
    pub fn delete(&self, name: &str) -> anyhow::Result<()> {
        let mut all = self.list()?;
        let before = all.len();
        all.retain(|b| b.name != name);
        if all.len() == before {
            bail!("no bouncer named {name:?}");
        }
        self.write(&all)
    }

    /// Writes the file atomically, mode 0600.
    fn write(&self, all: &[Bouncer]) -> anyhow::Result<()> {
        crate::fsutil::write_atomically(&self.path, &serde_json::to_vec_pretty(all)?, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_authenticate_delete() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bouncers::new(dir.path().join("bouncers.json"));
        assert!(b.list().unwrap().is_empty());
        let key = b.add("firewall", 1).unwrap();
        assert_eq!(key.len(), 64);
        assert_eq!(b.authenticate(&key).unwrap().as_deref(), Some("firewall"));
        assert_eq!(b.authenticate("nope").unwrap(), None);
        assert!(b.add("firewall", 2).is_err(), "names are unique");
        assert!(b.add("bad name", 2).is_err());
        assert!(b.add("", 2).is_err());
        let text = std::fs::read_to_string(dir.path().join("bouncers.json")).unwrap();
        assert!(!text.contains(&key), "the key itself is never stored");
        b.delete("firewall").unwrap();
        assert_eq!(b.authenticate(&key).unwrap(), None);
        assert!(b.delete("firewall").is_err());
    }
}

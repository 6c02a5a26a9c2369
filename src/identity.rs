//! Node identities: an ed25519 key pair signs sightings, and its public half names the
//! reporter everywhere people see it as a libp2p peer id (`12D3KooW…`).
//!
//! The peer id is computed here rather than through libp2p so the core stays free of the
//! networking stack; the node's tests check it equals libp2p's own `PeerId` for the same key.

use ed25519_dalek::{SigningKey, VerifyingKey};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// The prefix of an ed25519 peer id before the 32 key bytes: identity multihash (0x00),
/// length 36 (0x24), then the protobuf `PublicKey { Type = Ed25519 (0x08 0x01), Data (0x12 0x20) }`.
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// Why a public key or peer id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not base58 or does not hold an identity-multihash ed25519 key.
    #[error("not an ed25519 peer id (expected 12D3KooW…): {0}")]
    NotAPeerId(String),
    /// The 32 bytes are not a valid ed25519 point, or a weak (small-order) key that
    /// could make signatures ambiguous; such reporters are refused.
    #[error("invalid or weak ed25519 public key")]
    BadKey,
}

/// A reporter's public key: 32 bytes, checked on construction to be a valid, non-weak
/// ed25519 key. Only the bytes are kept (a decompressed point is six times larger, and a
/// ledger holds a key per record); [`KeyCache`] keeps decompressed keys for verification.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey {
    bytes: [u8; 32],
}

impl PublicKey {
    /// Checks and wraps raw key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        checked_key(bytes).map(|(public, _)| public)
    }

    /// The raw 32 bytes as they travel on the wire.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The libp2p peer id text of this key (`12D3KooW…`).
    pub fn peer_id(&self) -> String {
        let mut buf = [0u8; 38];
        buf[..6].copy_from_slice(&PEER_ID_PREFIX);
        buf[6..].copy_from_slice(&self.bytes);
        bs58::encode(buf).into_string()
    }
}

/// Decompresses and checks a key: valid point, not of small order.
fn checked_key(bytes: &[u8]) -> Result<(PublicKey, VerifyingKey), Error> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::BadKey)?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| Error::BadKey)?;
    if key.is_weak() {
        return Err(Error::BadKey);
    }
    Ok((PublicKey { bytes: arr }, key))
}

/// Reporters' keys, decompressed and checked once. Decompressing a key costs about as
/// much as a third of a signature check and reporters repeat, so the ingest path keeps
/// them here. Bounded: when full it starts over, which only costs time.
#[derive(Debug, Clone)]
pub struct KeyCache {
    keys: HashMap<[u8; 32], VerifyingKey>,
    capacity: usize,
}

impl KeyCache {
    /// A cache holding at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            keys: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The checked key for `bytes`.
    pub fn get(&mut self, bytes: &[u8]) -> Result<(PublicKey, VerifyingKey), Error> {
        if let Some(k) = <&[u8; 32]>::try_from(bytes).ok().and_then(|b| self.keys.get(b)) {
            return Ok((PublicKey { bytes: k.to_bytes() }, *k));
        }
        let (public, key) = checked_key(bytes)?;
        if self.keys.len() >= self.capacity {
            self.keys.clear();
        }
        self.keys.insert(public.bytes, key);
        Ok((public, key))
    }
}

impl FromStr for PublicKey {
    type Err = Error;

    /// Parses a libp2p ed25519 peer id (`12D3KooW…`).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::NotAPeerId(s.to_string());
        let bytes = bs58::decode(s.trim()).into_vec().map_err(|_| bad())?;
        if bytes.len() != 38 || bytes[..6] != PEER_ID_PREFIX {
            return Err(bad());
        }
        Self::from_bytes(&bytes[6..])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.peer_id())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.peer_id())
    }
}

/// A node's signing identity. The secret never leaves this type except through
/// [`Identity::secret_bytes`], used to write the key file and to build the libp2p key.
pub struct Identity {
    key: SigningKey,
    public: PublicKey,
}

impl Identity {
    /// Builds the identity from its 32-byte secret seed (randomness comes from the caller).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&secret);
        let public = PublicKey {
            bytes: key.verifying_key().to_bytes(),
        };
        Self { key, public }
    }

    /// The public half, naming this node as a reporter.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The 32-byte secret seed.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public.peer_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_round_trips_and_starts_like_libp2p() {
        let id = Identity::from_secret([7; 32]);
        let text = id.public().peer_id();
        assert!(text.starts_with("12D3KooW"), "{text}");
        assert_eq!(text.parse::<PublicKey>(), Ok(id.public()));
    }

    #[test]
    fn garbage_peer_ids_are_refused() {
        for bad in [
            "",
            "hello",
            "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
            "12D3KooW",
        ] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (a small-order point) encoded as a public key.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity_point), Err(Error::BadKey));
        assert_eq!(PublicKey::from_bytes(&[1, 2, 3]), Err(Error::BadKey));
        let mut cache = KeyCache::new(2);
        assert_eq!(cache.get(&identity_point).unwrap_err(), Error::BadKey);
    }

    #[test]
    fn key_cache_answers_like_from_bytes_and_stays_bounded() {
        let mut cache = KeyCache::new(2);
        for n in 0..5u8 {
            let id = Identity::from_secret([n; 32]);
            for _ in 0..2 {
                let (public, key) = cache.get(id.public().as_bytes()).unwrap();
                assert_eq!(public, id.public());
                assert_eq!(key.to_bytes(), *id.public().as_bytes());
            }
            assert!(cache.keys.len() <= 2);
        }
    }
}

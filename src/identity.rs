//! Node identities: an ed25519 key pair signs sightings, and its public half names the
//! reporter everywhere people see it as a libp2p peer id (`12D3KooW…`).
//!
//! The peer id is computed here rather than through libp2p so the core stays free of the
//! networking stack; the node's tests check it equals libp2p's own `PeerId` for the same key.

use ed25519_dalek::{SigningKey, VerifyingKey};
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

/// A reporter's public key: 32 bytes, checked to be a valid, non-weak ed25519 key.
/// Compared, ordered and hashed by its bytes.
#[derive(Clone, Copy)]
pub struct PublicKey {
    bytes: [u8; 32],
    key: VerifyingKey,
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for PublicKey {}
impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}
impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state)
    }
}

impl PublicKey {
    /// Checks and wraps raw key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::BadKey)?;
        let key = VerifyingKey::from_bytes(&arr).map_err(|_| Error::BadKey)?;
        if key.is_weak() {
            return Err(Error::BadKey);
        }
        Ok(Self { bytes: arr, key })
    }

    /// The raw 32 bytes as they travel on the wire.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The dalek verifying key.
    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The libp2p peer id text of this key (`12D3KooW…`).
    pub fn peer_id(&self) -> String {
        let mut buf = [0u8; 38];
        buf[..6].copy_from_slice(&PEER_ID_PREFIX);
        buf[6..].copy_from_slice(&self.bytes);
        bs58::encode(buf).into_string()
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
        let verifying = key.verifying_key();
        let public = PublicKey {
            bytes: verifying.to_bytes(),
            key: verifying,
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
    }
}

//! Node identities: an ed25519 key pair signs sightings, and its public half names the
//! reporter everywhere people see it as a libp2p peer id (`12D3KooW…`).
//!
//! The peer id is computed here rather than through libp2p so the core stays free of the
//! networking stack; the node's tests check it equals libp2p's own `PeerId` for the same key.
//!
//! # Which keys are reporters
//!
//! A reporter key must be the canonical encoding of a curve point of prime order `l`:
//! it decompresses, re-encodes to the same 32 bytes, is not of small order and has no
//! torsion component (`[l]A` is the identity). Everything else is refused by
//! [`PublicKey::from_bytes`] and [`KeyCache::get`], and a sighting naming such a reporter is
//! invalid for every receiver (it blames the sender). Why torsion matters: with a torsion
//! component in `A`, whether a signature verifies can depend on how the verifier combines
//! it with others (batch verification draws random multipliers), so one node could accept
//! a record that another refuses, and the mesh would split over who is honest. Keys made
//! by [`Identity`] (and by every RFC 8032 signer) are `[a]B` and always pass. The
//! non-canonical encodings are refused so that one key has exactly one name.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::SigningKey;
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
    /// The 32 bytes are not the canonical encoding of an ed25519 point of prime order:
    /// not a point, not canonical, of small order, or with a torsion component (see the
    /// module doc). Such reporters are refused.
    #[error("invalid or weak ed25519 public key (not a canonical point of prime order)")]
    BadKey,
}

/// A reporter's public key: 32 bytes, checked on construction to be a canonical ed25519
/// point of prime order (see the module doc). Only the bytes are kept (a decompressed point is six times larger, and a
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

/// Decompresses and checks a key: a point, canonically encoded, not of small order and
/// torsion-free. The torsion check is a scalar multiplication by `l` (tens of µs), which is
/// why received keys go through [`KeyCache`].
fn checked_key(bytes: &[u8]) -> Result<(PublicKey, EdwardsPoint), Error> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::BadKey)?;
    let point = CompressedEdwardsY(arr).decompress().ok_or(Error::BadKey)?;
    let canonical = point.compress().to_bytes() == arr;
    if !canonical || point.is_small_order() || !is_torsion_free(&point) {
        return Err(Error::BadKey);
    }
    Ok((PublicKey { bytes: arr }, point))
}

/// `[l]P = 0`, computed as `[l − 1]P + P` in variable time (keys are public, and this is
/// about a third faster than curve25519-dalek's constant-time `is_torsion_free`, which
/// matters when a flood brings fresh keys). `−1` is the scalar `l − 1`.
fn is_torsion_free(point: &EdwardsPoint) -> bool {
    let l_minus_one = EdwardsPoint::vartime_double_scalar_mul_basepoint(&-Scalar::ONE, point, &Scalar::ZERO);
    (l_minus_one + point).is_identity()
}

/// Reporters' keys, decompressed and checked once. Checking a key (decompression and the
/// torsion check) costs about as much as a signature check and reporters repeat, so the
/// ingest path keeps them here. Only keys that passed are kept, so a refused key is
/// refused again every time. Bounded: when full it starts over, which only costs time.
#[derive(Debug, Clone)]
pub struct KeyCache {
    keys: HashMap<[u8; 32], EdwardsPoint>,
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

    /// The checked key for `bytes` and its decompressed point; the same answer as
    /// [`PublicKey::from_bytes`].
    pub fn get(&mut self, bytes: &[u8]) -> Result<(PublicKey, EdwardsPoint), Error> {
        if let Ok(arr) = <[u8; 32]>::try_from(bytes) {
            if let Some(point) = self.keys.get(&arr) {
                return Ok((PublicKey { bytes: arr }, *point));
            }
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
    use curve25519_dalek::constants::EIGHT_TORSION;
    use proptest::prelude::*;

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

    /// `[a]B` for a scalar from `seed`: an honest key (prime order).
    fn honest_point(seed: [u8; 32]) -> EdwardsPoint {
        EdwardsPoint::mul_base(&Scalar::from_bytes_mod_order(seed))
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        // The basepoint's y with p added (y + p < 2^255 only for y < 19, so use y = 2..18
        // where a point exists): the same point under a second name.
        let mut refused = 0;
        for y in 2u8..19 {
            let mut canonical = [0u8; 32];
            canonical[0] = y;
            let Some(point) = CompressedEdwardsY(canonical).decompress() else {
                continue;
            };
            // y + p = y + 2^255 - 19: low byte y + 0xed, then 0xff.., top byte 0x7f.
            let mut alias = [0xffu8; 32];
            alias[0] = y + 0xed;
            alias[31] = 0x7f;
            assert_eq!(CompressedEdwardsY(alias).decompress(), Some(point), "y = {y}");
            assert_eq!(PublicKey::from_bytes(&alias), Err(Error::BadKey), "y = {y}");
            refused += 1;
        }
        assert!(refused > 0, "some small y has a point");
    }

    proptest! {
        /// An honest key plus any non-zero 8-torsion point is refused by both
        /// `PublicKey::from_bytes` and the cache, and so is the torsion point alone; the
        /// honest key itself passes.
        #[test]
        fn keys_with_a_torsion_component_are_refused(seed in any::<[u8; 32]>(), i in 1usize..8) {
            let honest = honest_point(seed);
            prop_assume!(!honest.is_small_order());
            let bytes = honest.compress().to_bytes();
            prop_assert!(PublicKey::from_bytes(&bytes).is_ok());
            let mut cache = KeyCache::new(8);
            prop_assert!(cache.get(&bytes).is_ok());
            for bad in [honest + EIGHT_TORSION[i], EIGHT_TORSION[i]] {
                let bad = bad.compress().to_bytes();
                prop_assert_eq!(PublicKey::from_bytes(&bad), Err(Error::BadKey));
                // Twice: a refusal is never cached as a success.
                prop_assert_eq!(cache.get(&bad).unwrap_err(), Error::BadKey);
                prop_assert_eq!(cache.get(&bad).unwrap_err(), Error::BadKey);
            }
        }

        /// The variable-time torsion check answers like curve25519-dalek's, for honest
        /// points with and without each torsion point added.
        #[test]
        fn torsion_check_matches_curve25519_dalek(seed in any::<[u8; 32]>(), i in 0usize..8) {
            for p in [honest_point(seed), honest_point(seed) + EIGHT_TORSION[i], EIGHT_TORSION[i]] {
                prop_assert_eq!(is_torsion_free(&p), p.is_torsion_free());
            }
        }

        /// The cache answers exactly like `from_bytes` for arbitrary bytes.
        #[test]
        fn key_cache_agrees_with_from_bytes(bytes in any::<[u8; 32]>()) {
            let mut cache = KeyCache::new(4);
            prop_assert_eq!(cache.get(&bytes).map(|(p, _)| p), PublicKey::from_bytes(&bytes));
        }
    }

    #[test]
    fn key_cache_answers_like_from_bytes_and_stays_bounded() {
        let mut cache = KeyCache::new(2);
        for n in 0..5u8 {
            let id = Identity::from_secret([n; 32]);
            for _ in 0..2 {
                let (public, point) = cache.get(id.public().as_bytes()).unwrap();
                assert_eq!(public, id.public());
                assert_eq!(point.compress().to_bytes(), *id.public().as_bytes());
            }
            assert!(cache.keys.len() <= 2);
        }
    }
}

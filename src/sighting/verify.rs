//! Receiving: the cheap checks (size, decoding, protocol bounds, the clock window and this
//! node's own limits) that make a [`Pending`], then the signature, one at a time or in
//! batches. The single-signature checks live in `crate::signature`, shared with
//! endorsements; the batch equation is here.
//!
//! # One verdict per signature, everywhere
//!
//! A signature must get the same verdict on every node and in every context (alone from
//! gossip, or in a sync batch of strangers' records), or one node accepts and relays what
//! another refuses and blames on the relay. So the verdict is a function of the signature
//! alone, and batches are only a faster way to compute it:
//!
//! 1. *Encodings* (cheap checks, before the signature stage): the signature is 64 bytes,
//!    `s` is below the group order `l`, `R`'s y-coordinate is canonical (below `p`). The
//!    key is a canonical point of prime order: no torsion component, not of small order
//!    (see [`crate::identity`]).
//! 2. *`R`* (signature stage, after dedup and rate limits): it decompresses to a curve
//!    point (else the signature is simply invalid) that is not of small order. With 1
//!    this makes `R`'s encoding canonical: the only other non-canonical form, x = 0 with
//!    the sign bit set, belongs to small-order points. A member refused here gets that
//!    verdict and stays out of any batch.
//! 3. *The equation*, cofactored: `[8]([s]B − [k]A − R) = 0` with
//!    `k = SHA-512(R ‖ A ‖ len(DOMAIN) ‖ DOMAIN ‖ payload) mod l`.
//!
//! A batch of n checks `[8](Σ zᵢRᵢ + Σ (zᵢkᵢ)Aᵢ − (Σ zᵢsᵢ)B) = 0`, with 128-bit `zᵢ` derived
//! from SHA-512 over every member's `(SHA-512(Rᵢ‖Aᵢ‖Mᵢ), sᵢ)`. Write `Dᵢ = Rᵢ + kᵢAᵢ − sᵢB`. Each
//! single check is `[8]Dᵢ = 0`; the batch is `Σ zᵢ[8]Dᵢ = 0`, and every `[8]Dᵢ` lies in the
//! prime-order subgroup. If every member passes alone, the batch passes. If some member
//! fails alone, its `[8]Dⱼ ≠ 0` has order `l`, so for any choice of the other multipliers
//! exactly one value of `zⱼ` mod `l` makes the sum vanish: probability at most 2⁻¹²⁸, and
//! since the `zᵢ` are a hash of all inputs, an attacker can only search for such a batch,
//! at 2¹²⁸ work. A batch that fails is checked member by member, so its verdicts are the
//! single verdicts. Hence batch ≡ single for every input; the result never depends on a
//! batch's other members or on randomness (the core stays deterministic).
//!
//! Why not ed25519-dalek's `verify_strict` and `verify_batch`: `verify_strict` is
//! cofactorless (`R = [s]B − [k]A` exactly) while `verify_batch` is neither cofactorless
//! nor cofactored. With a torsion-free key, the two still disagree on signatures whose `R`
//! carries a torsion component `T` (`R = [r]B + T`, `s = r + k·a`, which any key holder can
//! make): strict always refuses them, the batch accepts them whenever `zᵢ·T = 0`, i.e.
//! for about one batch in 2, 4 or 8 (by the order of `T`) — deterministically per batch,
//! so the verdict differs between a gossip message and a sync chunk (the test
//! `ed25519_dalek_batch_and_strict_disagree_on_signer_made_torsion_r` in
//! `sighting/tests/torsion.rs` shows it). Refusing such `R` outright would need
//! a subgroup check per signature (a scalar multiplication by `l`), which costs more than
//! the batch saves. The cofactored equation accepts them everywhere, alone and in every
//! batch. It agrees with `verify_strict` on every signature whose `R` is torsion-free —
//! every signature an RFC 8032 signer makes — and is still strongly unforgeable: `k`
//! binds the exact `R` bytes and `A` has prime order, so nobody without the secret key
//! can turn one valid signature into another (the record id, which hashes the signature,
//! cannot be changed by a relay).

use super::record::{record_id, record_with_id};
use super::{
    AcceptLimits, Error, Evidence, Kind, Record, Sighting, DOMAIN, ENDORSEMENT_DOMAIN, MAX_PAYLOAD_BYTES,
    PROTOCOL_MAX_TTL_S,
};
use crate::identity::KeyCache;
use crate::proto;
use crate::signature;
use crate::target::{self, Bounds, Target, PROTOCOL_BOUNDS};
use crate::Millis;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use prost::Message;
use sha2::{Digest, Sha512};
use std::collections::HashMap;

/// Domain of the batch multipliers' transcript (never a signing domain).
const BATCH_LABEL: &[u8] = b"fraudmesh/v1/batch-verification";

/// A sighting that passed every check but the signature.
#[derive(Debug, Clone)]
pub struct Pending {
    sighting: Sighting,
    payload: Vec<u8>,
    /// `R ‖ s`, as received.
    signature: [u8; 64],
    /// SHA-256(payload ‖ signature): hashed once here, for dedup before the signature
    /// stage and then as the record's id.
    id: super::RecordId,
    /// `s`, checked to be below `l`.
    s: Scalar,
    /// The reporter key `A`, checked to be a canonical point of prime order.
    key: EdwardsPoint,
}

impl Pending {
    /// Every check but the signature: [`Pending::check_wire`], then this node's own limits
    /// ([`AcceptLimits::admit`]). `now` is the receiver's clock.
    pub fn check(signed: &proto::SignedSighting, now: Millis, limits: &AcceptLimits) -> Result<Self, Error> {
        let pending = Self::check_wire(signed, now, limits)?;
        limits.admit(&pending.sighting)?;
        Ok(pending)
    }

    /// [`Pending::check`] with reporters' keys taken from (and added to) `keys`.
    pub fn check_cached(
        signed: &proto::SignedSighting,
        now: Millis,
        limits: &AcceptLimits,
        keys: &mut KeyCache,
    ) -> Result<Self, Error> {
        let pending = Self::check_wire_cached(signed, now, limits, keys)?;
        limits.admit(&pending.sighting)?;
        Ok(pending)
    }

    /// The checks a relay needs: size, structure, encodings and the protocol's bounds
    /// (errors that blame the sender), then the clock window against `now` and
    /// `limits.max_future_skew_ms` (which does not). This node's prefix and TTL limits are
    /// *not* applied: a record outside them may still be verified and relayed, and
    /// [`AcceptLimits::admit`] then says whether to store it.
    pub fn check_wire(signed: &proto::SignedSighting, now: Millis, limits: &AcceptLimits) -> Result<Self, Error> {
        Self::check_wire_inner(signed, now, limits, &mut KeyCache::new(1))
    }

    /// [`Pending::check_wire`] with reporters' keys taken from (and added to) `keys`.
    pub fn check_wire_cached(
        signed: &proto::SignedSighting,
        now: Millis,
        limits: &AcceptLimits,
        keys: &mut KeyCache,
    ) -> Result<Self, Error> {
        Self::check_wire_inner(signed, now, limits, keys)
    }

    fn check_wire_inner(
        signed: &proto::SignedSighting,
        now: Millis,
        limits: &AcceptLimits,
        keys: &mut KeyCache,
    ) -> Result<Self, Error> {
        let pending = Self::check_fields(signed, PROTOCOL_BOUNDS, PROTOCOL_MAX_TTL_S, keys)?;
        let s = &pending.sighting;
        if s.observed_at > now.saturating_add(limits.max_future_skew_ms) {
            return Err(Error::FutureDated {
                observed_at: s.observed_at,
                now,
            });
        }
        if !s.is_active(now) {
            return Err(Error::Expired {
                expires_at: s.expires_at(),
                now,
            });
        }
        Ok(pending)
    }

    /// Size, signature encodings, decoding, key, kind, target (canonical, within
    /// `bounds`), evidence, count and a TTL within `1..=max_ttl_s`.
    pub(super) fn check_fields(
        signed: &proto::SignedSighting,
        bounds: Bounds,
        max_ttl_s: u32,
        keys: &mut KeyCache,
    ) -> Result<Self, Error> {
        let payload = &signed.payload;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::Oversized {
                len: payload.len(),
                max: MAX_PAYLOAD_BYTES,
            });
        }
        let signature: [u8; 64] = signed
            .signature
            .as_ref()
            .try_into()
            .map_err(|_| Error::MalformedSignature(signed.signature.len()))?;
        let s = signature::signature_scalar(&signature)?;
        let p = proto::Sighting::decode(payload.as_ref()).map_err(|e| Error::Decode(e.to_string()))?;
        let (reporter, key) = keys.get(&p.reporter)?;
        let kind = Kind::from_proto(p.kind)?;
        let target = Target::from_proto(
            p.target
                .as_ref()
                .ok_or(Error::BadTarget(target::Error::NotCanonical("no target".into())))?,
            bounds,
        )?;
        let e = p.evidence.unwrap_or_default();
        let evidence = Evidence::from_proto(e);
        evidence.check()?;
        if p.count == 0 {
            return Err(Error::ZeroCount);
        }
        if p.ttl_s == 0 || p.ttl_s > max_ttl_s {
            return Err(Error::BadTtl {
                ttl_s: p.ttl_s,
                max_s: max_ttl_s,
            });
        }
        Ok(Self {
            sighting: Sighting {
                reporter,
                target,
                kind,
                observed_at: p.observed_at_ms,
                ttl_s: p.ttl_s,
                count: p.count,
            },
            id: record_id(payload, &signature),
            payload: payload.to_vec(),
            signature,
            s,
            key,
        })
    }

    /// The decoded (not yet authenticated) sighting, for dedup, rate limits by reporter
    /// and [`AcceptLimits::admit`].
    pub fn sighting(&self) -> &Sighting {
        &self.sighting
    }

    /// The id the record will have once verified (SHA-256(payload ‖ signature)), for
    /// dedup before the signature is checked.
    pub fn id(&self) -> super::RecordId {
        self.id
    }

    /// Checks the signature alone (see the module doc for what is checked).
    pub fn verify(self) -> Result<Record, Error> {
        let r = signature::r_point(&self.signature)?;
        self.verify_with(&r)
    }

    /// The single check with `R` already decompressed and checked; names the wrong
    /// domain when the signature is one made for endorsements.
    fn verify_with(self, r: &EdwardsPoint) -> Result<Record, Error> {
        signature::verify_in(&self.checked(*r), DOMAIN, &[ENDORSEMENT_DOMAIN], &self.payload).map_err(Error::from)?;
        Ok(self.into_record())
    }

    /// The parts the shared signature checks take.
    fn checked(&self, r: EdwardsPoint) -> signature::Checked<'_> {
        signature::Checked {
            signature: &self.signature,
            r,
            s: self.s,
            signer: &self.sighting.reporter,
            key: self.key,
        }
    }

    pub(super) fn into_record(self) -> Record {
        record_with_id(self.sighting, self.payload, &self.signature, self.id)
    }
}

/// Verifies many signatures at once (about twice as fast per signature as one by one),
/// with exactly the verdicts [`Pending::verify`] gives each (see the module doc). When the
/// batch equation fails, each member is checked alone so only the bad ones are refused.
/// Results are in input order.
pub fn verify_batch(pending: Vec<Pending>) -> Vec<Result<Record, Error>> {
    let mut results: Vec<Option<Result<Record, Error>>> = Vec::with_capacity(pending.len());
    let mut members: Vec<(usize, Pending, EdwardsPoint)> = Vec::with_capacity(pending.len());
    for (i, p) in pending.into_iter().enumerate() {
        match signature::r_point(&p.signature) {
            Ok(r) => {
                members.push((i, p, r));
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e.into()))),
        }
    }
    let all_hold = members.len() >= 2 && batch_holds(&members);
    for (i, p, r) in members {
        results[i] = Some(if all_hold {
            Ok(p.into_record())
        } else {
            p.verify_with(&r)
        });
    }
    results.into_iter().flatten().collect()
}

/// The batch equation over members whose `R` passed [`r_point`].
fn batch_holds(members: &[(usize, Pending, EdwardsPoint)]) -> bool {
    let hashes: Vec<[u8; 64]> = members
        .iter()
        .map(|(_, p, _)| signature::challenge_hash(&p.signature, &p.sighting.reporter, DOMAIN, &p.payload))
        .collect();
    // The multipliers depend on every input: each challenge hash binds R, A and the
    // message; s is added on its own.
    let mut transcript = Sha512::new();
    transcript.update(BATCH_LABEL);
    transcript.update((members.len() as u64).to_le_bytes());
    for ((_, p, _), h) in members.iter().zip(&hashes) {
        transcript.update(h);
        transcript.update(&p.signature[32..]);
    }
    let seed: [u8; 64] = transcript.finalize().into();

    // Points: B, then each R, then each distinct key once (a reporter's records share it).
    let mut scalars: Vec<Scalar> = Vec::with_capacity(2 * members.len() + 1);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(2 * members.len() + 1);
    scalars.push(Scalar::ZERO);
    points.push(ED25519_BASEPOINT_POINT);
    let mut key_slot: HashMap<[u8; 32], usize> = HashMap::with_capacity(members.len());
    let mut b_coefficient = Scalar::ZERO;
    for (n, ((_, p, r), h)) in members.iter().zip(&hashes).enumerate() {
        let mut zh = Sha512::new();
        zh.update(seed);
        zh.update((n as u64).to_le_bytes());
        let z_bytes: [u8; 64] = zh.finalize().into();
        let mut low = [0u8; 16];
        low.copy_from_slice(&z_bytes[..16]);
        let z = Scalar::from(u128::from_le_bytes(low));
        let k = Scalar::from_bytes_mod_order_wide(h);
        b_coefficient += z * p.s;
        scalars.push(z);
        points.push(*r);
        let slot = *key_slot.entry(*p.sighting.reporter.as_bytes()).or_insert_with(|| {
            scalars.push(Scalar::ZERO);
            points.push(p.key);
            points.len() - 1
        });
        scalars[slot] += z * k;
    }
    scalars[0] = -b_coefficient;
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

/// Checks and verifies one received sighting (all checks, local limits included).
pub fn verify(signed: &proto::SignedSighting, now: Millis, limits: &AcceptLimits) -> Result<Record, Error> {
    Pending::check(signed, now, limits)?.verify()
}

//! Ed25519 signatures in fraudmesh's signing domains, shared by every signed record
//! (sightings, endorsements): the signed message, the encoding checks and the cofactored
//! single-signature equation.
//!
//! A record is signed over `len(domain) ‖ domain ‖ payload` (see [`signed_message`]), so a
//! signature made for one purpose never verifies for another. The verdict on a signature
//! is exactly specified (`proto/fraudmesh/v1/sighting.proto`, "Verification") so that every
//! receiver agrees on it, alone or in a batch; `sighting::verify` explains why it is the
//! cofactored equation and how batches give the same verdicts. Keys are checked by
//! [`crate::identity`] (canonical, prime order); this module checks the rest:
//!
//! 1. [`signature_scalar`]: `R`'s y-coordinate is canonical and `s < l` (cheap, before any
//!    curve arithmetic);
//! 2. [`r_point`]: `R` decompresses (else the signature is simply invalid) and is not of
//!    small order;
//! 3. [`equation_holds`]: `[8]([s]B − [k]A − R) = 0` with
//!    `k = SHA-512(R ‖ A ‖ len(domain) ‖ domain ‖ payload) mod l`.

use crate::identity::{Identity, PublicKey};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::Signer;
use sha2::{Digest, Sha512};

/// Why a signature failed, in the terms every record type reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// An encoding only a crafted signature has (`s ≥ l`, `R` not canonical, `R` of small
    /// order).
    Weak(&'static str),
    /// Valid, but in another fraudmesh signing domain.
    WrongDomain,
    /// Does not verify (or `R` is not a curve point).
    Invalid,
}

/// `len(domain) || domain || payload`: the bytes a signature in `domain` covers.
pub(crate) fn signed_message(domain: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 + domain.len() + payload.len());
    // Domains are short constants; the length byte makes the split unambiguous.
    m.push(domain.len() as u8);
    m.extend_from_slice(domain);
    m.extend_from_slice(payload);
    m
}

/// Signs `payload` in `domain` as `identity` (RFC 8032): `R ‖ s`.
pub(crate) fn sign(identity: &Identity, domain: &[u8], payload: &[u8]) -> [u8; 64] {
    identity.signing_key().sign(&signed_message(domain, payload)).to_bytes()
}

/// The cheap half of the encoding checks: `R`'s y-coordinate below `p`, and `s` below the
/// group order (so `s` and `s + l` are not two signatures of one record). Returns `s`.
pub(crate) fn signature_scalar(signature: &[u8; 64]) -> Result<Scalar, Failure> {
    let (r, s) = signature.split_at(32);
    if !y_is_canonical(r) {
        return Err(Failure::Weak("R is not canonically encoded"));
    }
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(s);
    Option::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(Failure::Weak("s is not below the group order"))
}

/// `R` from a signature whose y passed [`signature_scalar`]: a curve point (else the
/// signature is simply invalid, as any corruption of `R` usually makes it), not of small
/// order.
pub(crate) fn r_point(signature: &[u8; 64]) -> Result<EdwardsPoint, Failure> {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&signature[..32]);
    let r = CompressedEdwardsY(bytes).decompress().ok_or(Failure::Invalid)?;
    // Also refuses the one other non-canonical form: x = 0 with the sign bit set, which
    // only the identity and the point of order 2 have.
    if r.is_small_order() {
        return Err(Failure::Weak("R has small order"));
    }
    Ok(r)
}

/// Whether the 255-bit y-coordinate of an encoded point (32 bytes) is below `p = 2²⁵⁵ − 19`.
fn y_is_canonical(bytes: &[u8]) -> bool {
    // y ≥ p exactly when the top byte (sign bit masked) is 0x7f, the 30 bytes below it
    // are 0xff, and the lowest byte is at least 0xed.
    !(bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
}

/// `SHA-512(R ‖ A ‖ len(domain) ‖ domain ‖ payload)`: the challenge before reduction.
pub(crate) fn challenge_hash(signature: &[u8; 64], signer: &PublicKey, domain: &[u8], payload: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(&signature[..32]);
    h.update(signer.as_bytes());
    h.update([domain.len() as u8]);
    h.update(domain);
    h.update(payload);
    h.finalize().into()
}

/// The parts of one signature that passed [`signature_scalar`] and [`r_point`], with the
/// signer's checked key.
pub(crate) struct Checked<'a> {
    /// `R ‖ s` as received.
    pub signature: &'a [u8; 64],
    /// `R`, decompressed, not of small order.
    pub r: EdwardsPoint,
    /// `s`, below `l`.
    pub s: Scalar,
    /// The signer's key bytes, checked by [`crate::identity`].
    pub signer: &'a PublicKey,
    /// The signer's key `A`, decompressed.
    pub key: EdwardsPoint,
}

/// `[8]([s]B − [k]A − R) = 0` for `payload` in `domain`.
pub(crate) fn equation_holds(c: &Checked<'_>, domain: &[u8], payload: &[u8]) -> bool {
    let k = Scalar::from_bytes_mod_order_wide(&challenge_hash(c.signature, c.signer, domain, payload));
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&-k, &c.key, &c.s);
    (sb_minus_ka - c.r).mul_by_cofactor().is_identity()
}

/// The single verdict: holds in `domain`; else, if it holds in one of `other_domains`,
/// [`Failure::WrongDomain`] (a signature replayed from another purpose is named as such);
/// else [`Failure::Invalid`].
pub(crate) fn verify_in(
    c: &Checked<'_>,
    domain: &[u8],
    other_domains: &[&[u8]],
    payload: &[u8],
) -> Result<(), Failure> {
    if equation_holds(c, domain, payload) {
        return Ok(());
    }
    if other_domains.iter().any(|d| equation_holds(c, d, payload)) {
        return Err(Failure::WrongDomain);
    }
    Err(Failure::Invalid)
}

//! The verified record: a sighting with the exact bytes its reporter signed, its id, and
//! its wire and storage encodings.

use super::verify::Pending;
use super::{Error, Evidence, RecordId, Sighting};
use crate::identity::KeyCache;
use crate::proto;
use crate::target::Bounds;
use prost::Message;
use sha2::{Digest, Sha256};

/// A verified sighting together with the exact bytes that were signed. Kept compact: a
/// ledger holds one per (reporter, target), a million of them on a busy mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    sighting: Sighting,
    id: RecordId,
    /// payload || signature (the last 64 bytes).
    signed: Box<[u8]>,
}

impl Record {
    /// The decoded, checked fields of the record.
    pub fn sighting(&self) -> &Sighting {
        &self.sighting
    }

    /// SHA-256(payload || signature).
    pub fn id(&self) -> &RecordId {
        &self.id
    }

    /// The exact signed payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.signed[..self.signed.len() - 64]
    }

    /// The 64-byte ed25519 signature over the domain-separated payload.
    pub fn signature(&self) -> &[u8] {
        &self.signed[self.signed.len() - 64..]
    }

    /// The evidence, decoded from the signed payload.
    pub fn evidence(&self) -> Evidence {
        let e = proto::Sighting::decode(self.payload())
            .ok()
            .and_then(|p| p.evidence)
            .unwrap_or_default();
        Evidence::from_proto(e)
    }

    /// The wire form, `SignedSighting` (copies the payload and signature).
    pub fn to_proto(&self) -> proto::SignedSighting {
        proto::SignedSighting {
            payload: self.payload().to_vec().into(),
            signature: self.signature().to_vec().into(),
        }
    }

    /// The encoded `SignedSighting` (for storage and sync).
    pub fn encode(&self) -> Vec<u8> {
        // The same bytes as `to_proto().encode_to_vec()`, without the two copies.
        use prost::encoding::{encode_key, encode_varint, WireType};
        let (payload, signature) = (self.payload(), self.signature());
        let mut out = Vec::with_capacity(self.signed.len() + 8);
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        encode_key(2, WireType::LengthDelimited, &mut out);
        encode_varint(signature.len() as u64, &mut out);
        out.extend_from_slice(signature);
        out
    }

    /// Decodes a record this node stored itself after verifying it. The signature is not
    /// checked again (the store is trusted), the structure and encodings are (a record of
    /// a key refused since is refused), bounds are not (limits may have changed since),
    /// and the id is recomputed.
    pub fn decode_stored(bytes: &[u8], keys: &mut KeyCache) -> Result<Self, Error> {
        let signed = proto::SignedSighting::decode(bytes).map_err(|e| Error::Decode(e.to_string()))?;
        let any_breadth = Bounds {
            min_v4_len: 0,
            min_v6_len: 0,
        };
        let pending = Pending::check_fields(&signed, any_breadth, u32::MAX, keys)?;
        Ok(pending.into_record())
    }
}

/// The id a wire record will have once verified: SHA-256(payload || signature). Lets a
/// receiver check that a record is one it asked for before spending a verification.
pub fn wire_id(signed: &proto::SignedSighting) -> RecordId {
    record_id(&signed.payload, &signed.signature)
}

pub(crate) fn record_id(payload: &[u8], signature: &[u8]) -> RecordId {
    let mut h = Sha256::new();
    h.update(payload);
    h.update(signature);
    h.finalize().into()
}

/// Assembles a record from a decoded sighting, its payload and signature, computing its id.
pub(super) fn record_of(sighting: Sighting, payload: Vec<u8>, signature: &[u8; 64]) -> Record {
    let id = record_id(&payload, signature);
    record_with_id(sighting, payload, signature, id)
}

/// [`record_of`] with the id already computed (by [`record_id`] over the same payload
/// and signature: a received record's id is hashed once, for dedup before the signature
/// stage, and kept).
pub(super) fn record_with_id(sighting: Sighting, mut payload: Vec<u8>, signature: &[u8; 64], id: RecordId) -> Record {
    payload.extend_from_slice(signature);
    Record {
        sighting,
        id,
        signed: payload.into_boxed_slice(),
    }
}

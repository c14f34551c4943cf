//! Signed entries: what a signature covers, and its check.
//!
//! An entry is signed by three records of its header (`docs/FORMAT.md`):
//! [`tag::BODY_SHA256`] (the body's SHA-256), optionally
//! [`tag::SECURITY_COUNTER`], and last [`tag::SIGNATURE`]: an Ed25519
//! signature of the 32-byte digest
//!
//! ```text
//! SHA-256( DOMAIN ‖ H (u16 LE) ‖ header bytes from +0 up to the signature record )
//! ```
//!
//! so it covers the length field, every fixed field (format version,
//! codec, source identity, target size, CRC-32 and SHA-256, body length
//! and CRC-32) and every record before it, the body digest among them. A
//! device that holds a public key checks the signature before it uses
//! anything of the header, the body digest as the body streams in, and the
//! target's SHA-256 after writing. Devices without a key skip these
//! records: they are not critical.
//!
//! The check itself, [`verify`], needs the `sign` feature
//! (`ed25519-compact`, built for size).

use sha2::{Digest, Sha256};

use crate::format::{tag, HeaderError, Records, FIXED_HEADER_LEN};

/// Domain separation: signatures of flashpatch entries are never valid
/// for anything else.
pub const DOMAIN: &[u8] = b"flashpatch entry signature v1\0";
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of the signature record: tag, length, signature.
pub const SIGNATURE_RECORD_LEN: usize = 2 + SIGNATURE_LEN;

/// What an entry header says about trust.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Trust {
    /// The security counter (0 when the header has none).
    pub counter: u32,
    /// The body's SHA-256, when recorded.
    pub body_sha256: Option<[u8; 32]>,
    /// The signature, when present.
    pub signature: Option<[u8; SIGNATURE_LEN]>,
    /// Header bytes before the signature record: what it signs, with `H`.
    pub signed_len: usize,
}

/// The digest a signature of a header of length `h` signs, given the
/// header's bytes before its signature record.
pub fn signed_digest(h: u16, before_signature: &[u8]) -> [u8; 32] {
    let mut d = Sha256::new();
    d.update(DOMAIN);
    d.update(h.to_le_bytes());
    d.update(before_signature);
    d.finalize().into()
}

impl Trust {
    /// Reads the trust records of an entry header from its `H` bytes
    /// (`raw`, already checked by [`crate::format::EntryHeader::parse`]).
    /// A signature record that is not the last one, or that has the wrong
    /// size, makes the header malformed, as does a counter or body digest
    /// of the wrong size.
    pub fn of(raw: &[u8]) -> Result<Trust, HeaderError> {
        let end = raw.len().checked_sub(4).ok_or(HeaderError::Length)?;
        let body = raw.get(FIXED_HEADER_LEN..end).ok_or(HeaderError::Length)?;
        let mut t = Trust::default();
        let mut at = FIXED_HEADER_LEN;
        for r in Records::new(body) {
            let (tg, v) = r?;
            let start = at;
            at += 2 + v.len();
            match tg {
                tag::SECURITY_COUNTER => {
                    let b: [u8; 4] = v.try_into().map_err(|_| HeaderError::Records)?;
                    t.counter = u32::from_le_bytes(b);
                }
                tag::BODY_SHA256 => {
                    t.body_sha256 = Some(v.try_into().map_err(|_| HeaderError::Records)?);
                }
                tag::SIGNATURE => {
                    if at != end {
                        return Err(HeaderError::Records);
                    }
                    t.signature = Some(v.try_into().map_err(|_| HeaderError::Records)?);
                    t.signed_len = start;
                }
                _ => {}
            }
        }
        Ok(t)
    }

    /// The digest the signature signs, for the header `raw` these records
    /// were read from.
    pub fn signed_digest(&self, raw: &[u8]) -> [u8; 32] {
        signed_digest(raw.len() as u16, &raw[..self.signed_len.min(raw.len())])
    }
}

/// Whether `signature` is `key`'s Ed25519 signature of `digest`.
#[cfg(feature = "sign")]
pub fn verify(
    key: &[u8; PUBLIC_KEY_LEN],
    digest: &[u8; 32],
    signature: &[u8; SIGNATURE_LEN],
) -> bool {
    let key = ed25519_compact::PublicKey::new(*key);
    let sig = ed25519_compact::Signature::new(*signature);
    key.verify(digest, &sig).is_ok()
}

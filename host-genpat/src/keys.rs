//! Ed25519 signing keys for patch entries, and their files.
//!
//! A key pair is two text files: the secret key (`KEY`, mode 0600 on Unix)
//! and the public key (`KEY.pub`), each one line:
//!
//! ```text
//! flashpatch-ed25519-secret <64 hex digits: the 32-byte seed>
//! flashpatch-ed25519-public <64 hex digits: the 32-byte public key>
//! ```
//!
//! The device gets the 32 public-key bytes: read from `KEY.pub` when it is
//! built (as `firmware-demo`'s `build.rs` does with `DEMO_PUBKEY`), or the
//! hex pasted into its source.

use std::fmt;

use ed25519_compact::{KeyPair, Seed};
use flashpatch::sign::PUBLIC_KEY_LEN;

const SECRET_PREFIX: &str = "flashpatch-ed25519-secret ";
const PUBLIC_PREFIX: &str = "flashpatch-ed25519-public ";

/// A secret signing key.
pub struct SecretKey(KeyPair);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", hex(&self.public()))
    }
}

/// Why a key file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not a key of the expected kind.
    #[error("not a flashpatch {0} key file (expected one line '{1}<64 hex digits>')")]
    Format(&'static str, &'static str),
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        SecretKey(KeyPair::from_seed(Seed::generate()))
    }

    /// The key of a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(KeyPair::from_seed(Seed::new(seed)))
    }

    /// The public key.
    pub fn public(&self) -> [u8; PUBLIC_KEY_LEN] {
        *self.0.pk
    }

    /// Signs `message` (deterministic Ed25519).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        *self.0.sk.sign(message, None)
    }

    /// The secret key file's text.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", hex(self.0.sk.seed().as_ref()))
    }

    /// Reads a secret key file's text.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let seed =
            parse_line(text, SECRET_PREFIX).ok_or(KeyError::Format("secret", SECRET_PREFIX))?;
        Ok(SecretKey::from_seed(seed))
    }
}

/// The public key file's text for `key`.
pub fn public_text(key: &[u8; PUBLIC_KEY_LEN]) -> String {
    format!("{PUBLIC_PREFIX}{}\n", hex(key))
}

/// Reads a public key file's text.
pub fn public_from_text(text: &str) -> Result<[u8; PUBLIC_KEY_LEN], KeyError> {
    parse_line(text, PUBLIC_PREFIX).ok_or(KeyError::Format("public", PUBLIC_PREFIX))
}

fn parse_line(text: &str, prefix: &str) -> Option<[u8; 32]> {
    let digits = text.trim().strip_prefix(prefix)?.trim();
    if digits.len() != 64 || !digits.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip() {
        let k = SecretKey::from_seed([7; 32]);
        let back = SecretKey::from_text(&k.to_text()).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(
            public_from_text(&public_text(&k.public())).unwrap(),
            k.public()
        );
        assert!(SecretKey::from_text(&public_text(&k.public())).is_err());
        assert!(public_from_text("flashpatch-ed25519-public 12").is_err());
        assert_ne!(
            SecretKey::generate().public(),
            SecretKey::generate().public()
        );
    }
}

//! Update manifests (`update.json`, `docs/MANIFEST.md`): what a release
//! offers, for `genpat update` to choose from by what the device runs.
//!
//! ```text
//! update.json                       update.json.sig
//! ┌──────────────────────────────┐  ┌──────────────────────────────────────┐
//! │ format, version, sequence,   │  │ flashpatch-ed25519-signature <hex>   │
//! │ notes                        │  │   Ed25519 over every byte of         │
//! │ components: [                │  │   update.json, as served             │
//! │   name, target {size,sha256} │  └──────────────────────────────────────┘
//! │   security_counter           │
//! │   url, size, sha256  (full)  │
//! │   patch_urls: {              │
//! │     <source sha256>: url,    │
//! │       size, sha256, source,  │
//! │       target } ]             │
//! └──────────────────────────────┘
//! ```
//!
//! The signature is detached: it covers the exact bytes of the file, so no
//! reader has to rebuild a canonical form of the JSON to check it.
//!
//! What a host has seen of each device, which keeps `genpat update` from
//! taking an older manifest or installing an older image, is in
//! [`history`].

pub mod history;

use std::collections::BTreeMap;
use std::fmt;

use ed25519_compact::{PublicKey, Signature};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use flashpatch::sign::PUBLIC_KEY_LEN;

use crate::keys::SecretKey;

/// The value of `format` that this genpat writes and reads.
pub const FORMAT: u32 = 1;

/// The component a manifest names when it is not told another.
pub const DEFAULT_COMPONENT: &str = "app";

/// The first word of a signature file's line.
const SIGNATURE_PREFIX: &str = "flashpatch-ed25519-signature ";

/// A SHA-256 digest, written as 64 lower-case hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Hex(pub [u8; 32]);

impl Sha256Hex {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Sha256Hex(Sha256::digest(data).into())
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_hex::<32>(&text)
            .map(Sha256Hex)
            .ok_or_else(|| serde::de::Error::custom("expected 64 lower-case hex digits"))
    }
}

/// `N` bytes from `2 * N` lower-case hex digits.
fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// An image as a device announces it: its size and SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Bytes.
    pub size: u32,
    /// SHA-256 of those bytes.
    pub sha256: Sha256Hex,
}

impl Image {
    /// The identity of `data` (at most 4 GiB - 1 bytes, as patch images).
    pub fn of(data: &[u8]) -> Self {
        Image {
            size: data.len() as u32,
            sha256: Sha256Hex::of(data),
        }
    }
}

/// A patch from one source image to the component's target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    /// Where to download the patch file: absolute, or relative to the
    /// manifest.
    pub url: String,
    /// Bytes of the patch file.
    pub size: u64,
    /// SHA-256 of the patch file.
    pub sha256: Sha256Hex,
    /// The image the patch applies to.
    pub source: Image,
    /// The image it makes.
    pub target: Image,
}

/// One updatable part of a device (`app` today; a bootloader, a radio
/// firmware or a file system image tomorrow).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// Its name, unique in the manifest.
    pub name: String,
    /// The image this release installs.
    pub target: Image,
    /// The full image as a flashpatch patch file with no source
    /// (`docs/FORMAT.md`): absolute, or relative to the manifest.
    pub url: String,
    /// Bytes of that file.
    pub size: u64,
    /// SHA-256 of that file.
    pub sha256: Sha256Hex,
    /// The security counter that the target's patch entries carry
    /// (`docs/FORMAT.md`), if they carry one: the host's measure of which
    /// of two images is older, as the device's is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_counter: Option<u32>,
    /// Patches, keyed by the SHA-256 of the image they apply to.
    #[serde(default)]
    pub patch_urls: BTreeMap<Sha256Hex, Patch>,
}

/// An update manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format: [`FORMAT`].
    pub format: u32,
    /// The release's version text.
    pub version: String,
    /// The manifest's sequence number: a later manifest has a higher one
    /// (SUIT's manifest sequence number). `None` when the file has none;
    /// it then counts as 0 ([`Manifest::sequence`]).
    #[serde(default, rename = "sequence", skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    /// Release notes.
    #[serde(default)]
    pub notes: String,
    /// What the release updates.
    pub components: Vec<Component>,
}

/// What to send a device, by [`Component::select`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice<'m> {
    /// The device already runs the target.
    Current,
    /// The patch from the image the device runs.
    Patch(&'m Patch),
    /// No patch is for the device's image: the full image.
    Full,
}

impl Component {
    /// What to send a device that runs `running`: nothing if it runs the
    /// target, else the patch keyed by its digest (if the size matches
    /// too), else the full image.
    pub fn select(&self, running: &Image) -> Choice<'_> {
        if *running == self.target {
            return Choice::Current;
        }
        match self.patch_urls.get(&running.sha256) {
            Some(p) if p.source == *running => Choice::Patch(p),
            _ => Choice::Full,
        }
    }
}

/// Why a manifest is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The text is not a manifest.
    #[error("not an update manifest: {0}")]
    Json(String),
    /// Another format version.
    #[error("manifest format {0}; this genpat reads format {FORMAT}")]
    Format(u32),
    /// No component at all.
    #[error("the manifest lists no component")]
    NoComponents,
    /// A name given twice.
    #[error("component '{0}' is listed twice")]
    DuplicateComponent(String),
    /// A patch keyed by another digest than its source's.
    #[error("component '{0}': the patch keyed {1} is for source {2}")]
    KeyMismatch(String, Sha256Hex, Sha256Hex),
    /// A patch for another target than its component's.
    #[error("component '{0}': the patch for source {1} makes another image than the target")]
    TargetMismatch(String, Sha256Hex),
    /// The signature file is not one.
    #[error(
        "not a flashpatch signature file (expected one line '{SIGNATURE_PREFIX}<128 hex digits>')"
    )]
    SignatureFormat,
    /// The signature does not match.
    #[error("the signature does not match: the manifest was changed after signing, or signed with another key")]
    BadSignature,
}

impl Manifest {
    /// The manifest's file: pretty JSON and a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        out.push(b'\n');
        out
    }

    /// Reads a manifest file and checks that it is consistent.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// Checks what the JSON types cannot: the format, unique component
    /// names, patch keys and targets.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.format != FORMAT {
            return Err(ManifestError::Format(self.format));
        }
        if self.components.is_empty() {
            return Err(ManifestError::NoComponents);
        }
        for (i, c) in self.components.iter().enumerate() {
            if self.components[..i].iter().any(|d| d.name == c.name) {
                return Err(ManifestError::DuplicateComponent(c.name.clone()));
            }
            for (key, p) in &c.patch_urls {
                if *key != p.source.sha256 {
                    return Err(ManifestError::KeyMismatch(
                        c.name.clone(),
                        *key,
                        p.source.sha256,
                    ));
                }
                if p.target != c.target {
                    return Err(ManifestError::TargetMismatch(c.name.clone(), *key));
                }
            }
        }
        Ok(())
    }

    /// The sequence number, 0 for a manifest that has none (which any
    /// manifest with one is newer than).
    pub fn sequence(&self) -> u64 {
        self.sequence_number.unwrap_or(0)
    }

    /// The component called `name`, or with `None` the only one.
    pub fn component(&self, name: Option<&str>) -> Option<&Component> {
        match name {
            Some(n) => self.components.iter().find(|c| c.name == n),
            None if self.components.len() == 1 => self.components.first(),
            None => None,
        }
    }
}

/// The signature file's text for the manifest file `bytes`.
pub fn sign(bytes: &[u8], key: &SecretKey) -> String {
    let sig = key.sign(bytes);
    let digits: String = sig.iter().map(|b| format!("{b:02x}")).collect();
    format!("{SIGNATURE_PREFIX}{digits}\n")
}

/// Checks the signature file's text `signature` over the manifest file
/// `bytes` with the public key `key`.
pub fn verify(
    bytes: &[u8],
    signature: &str,
    key: &[u8; PUBLIC_KEY_LEN],
) -> Result<(), ManifestError> {
    let sig = signature
        .trim()
        .strip_prefix(SIGNATURE_PREFIX)
        .and_then(|d| parse_hex::<64>(d.trim()))
        .ok_or(ManifestError::SignatureFormat)?;
    PublicKey::new(*key)
        .verify(bytes, &Signature::new(sig))
        .map_err(|_| ManifestError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let target = Image::of(b"v3");
        let mut c = Component {
            name: DEFAULT_COMPONENT.into(),
            target,
            url: "v3.fpatch".into(),
            size: 10,
            sha256: Sha256Hex::of(b"full"),
            security_counter: Some(3),
            patch_urls: BTreeMap::new(),
        };
        for (old, url) in [(&b"v1"[..], "v1-v3.fpatch"), (b"v2", "v2-v3.fpatch")] {
            let source = Image::of(old);
            c.patch_urls.insert(
                source.sha256,
                Patch {
                    url: url.into(),
                    size: 5,
                    sha256: Sha256Hex::of(url.as_bytes()),
                    source,
                    target,
                },
            );
        }
        Manifest {
            format: FORMAT,
            version: "3".into(),
            sequence_number: Some(30),
            notes: "Fixes.".into(),
            components: vec![c],
        }
    }

    #[test]
    fn round_trips_and_selects() {
        let m = sample();
        let back = Manifest::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(back, m);
        let c = back.component(None).unwrap();
        assert_eq!(c.select(&Image::of(b"v3")), Choice::Current);
        match c.select(&Image::of(b"v2")) {
            Choice::Patch(p) => assert_eq!(p.url, "v2-v3.fpatch"),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.select(&Image::of(b"v0")), Choice::Full);
        // The digest alone is not enough: the size must match as well.
        let mut odd = Image::of(b"v1");
        odd.size += 1;
        assert_eq!(c.select(&odd), Choice::Full);
        assert!(back.component(Some("radio")).is_none());
    }

    #[test]
    fn manifests_without_sequence_or_counter_are_read() {
        let m = sample();
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert!(text.contains("\"sequence\": 30,") && text.contains("\"security_counter\": 3,"));
        let old = text
            .replace("  \"sequence\": 30,\n", "")
            .replace("      \"security_counter\": 3,\n", "");
        assert_ne!(old, text);
        let back = Manifest::from_bytes(old.as_bytes()).unwrap();
        assert_eq!((back.sequence_number, back.sequence()), (None, 0));
        assert_eq!(back.components[0].security_counter, None);
        // Written again, they still have neither.
        assert_eq!(String::from_utf8(back.to_bytes()).unwrap(), old);
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let mut m = sample();
        m.format = 2;
        assert_eq!(
            Manifest::from_bytes(&m.to_bytes()),
            Err(ManifestError::Format(2))
        );
        let mut m = sample();
        m.components.push(m.components[0].clone());
        assert!(matches!(
            m.check(),
            Err(ManifestError::DuplicateComponent(_))
        ));
        let mut m = sample();
        let p = m.components[0].patch_urls.values_mut().next().unwrap();
        p.target.size += 1;
        assert!(matches!(m.check(), Err(ManifestError::TargetMismatch(..))));
        let text = String::from_utf8(sample().to_bytes()).unwrap();
        let upper = text.replacen(&Image::of(b"v3").sha256.to_string()[..8], "ABCDEF01", 1);
        assert!(matches!(
            Manifest::from_bytes(upper.as_bytes()),
            Err(ManifestError::Json(_))
        ));
    }

    #[test]
    fn signature_covers_every_byte() {
        let key = SecretKey::from_seed([5; 32]);
        let bytes = sample().to_bytes();
        let sig = sign(&bytes, &key);
        assert_eq!(verify(&bytes, &sig, &key.public()), Ok(()));
        let mut changed = bytes.clone();
        let at = changed.len() - 3;
        changed[at] ^= 1;
        assert_eq!(
            verify(&changed, &sig, &key.public()),
            Err(ManifestError::BadSignature)
        );
        let other = SecretKey::from_seed([6; 32]).public();
        assert_eq!(
            verify(&bytes, &sig, &other),
            Err(ManifestError::BadSignature)
        );
        assert_eq!(
            verify(&bytes, "garbage", &key.public()),
            Err(ManifestError::SignatureFormat)
        );
    }
}

//! The whole-image digests: MD5 of the source (is this patch for the
//! running image?) and SHA-256 of the target (is what was written the new
//! image?), on every target from maintained crates (RustCrypto's `md-5` and
//! `sha2`), through the `digest` traits, so that a chip's hash engine can
//! take their place.
//!
//! [`Hashes`] names the two hash types; [`Software`], the default of every
//! type that hashes an image ([`crate::Applier`], [`crate::slots::Slots`]),
//! names the crates'. A device with a hash engine implements [`Hashes`]
//! with its own types and names it where it names the applier
//! ([`crate::Applier::with_hashes`]) or the slot manager
//! ([`crate::slots::Slots::with_hashes`], whose boot checks and updates
//! then use it; the in-place manager, `slots::InPlace`, hashes in
//! software):
//!
//! ```
//! use flashpatch::hashes::{digest, Hashes, Software};
//! use flashpatch::{mock::MockFlash, Applier, ApplierState};
//!
//! /// MD5 in software, SHA-256 by "the engine" (here: the crate again).
//! enum Engine {}
//! impl Hashes for Engine {
//!     type Md5 = <Software as Hashes>::Md5;
//!     type Sha256 = sha2::Sha256;
//! }
//!
//! let mut source = MockFlash::<1, 4, 4096>::new(4096);
//! let mut target = MockFlash::<1, 4, 4096>::new(4096);
//! let mut state = ApplierState::new();
//! let _applier: Applier<_, _, 64, 64, Engine> =
//!     Applier::with_hashes(&mut source, &mut target, &mut state);
//! ```
//!
//! A hash type is created with `Default` when a pass over an image starts,
//! fed the image in pieces of the applier's buffer (`Update`) and finalized
//! once, in place (`FixedOutputReset`: finalizing by value moves the hasher
//! into another frame, 104 bytes more stack on the Cortex-M4 demo); one
//! hash runs at a time. `docs/CODEC.md` (section
//! "Digests") sketches an STM32 HASH and an nRF CryptoCell type.

pub use digest;
use digest::consts::{U16, U32};
use digest::{FixedOutputReset, Update};

/// The hash functions an applier or a slot manager uses on whole images.
pub trait Hashes {
    /// MD5 (RFC 1321): which source an entry is for.
    type Md5: Default + Update + FixedOutputReset<OutputSize = U16>;
    /// SHA-256 (FIPS 180-4): the target's identity, read back after
    /// writing it, and the boot stage's check of an image.
    type Sha256: Default + Update + FixedOutputReset<OutputSize = U32>;
}

/// The software hashes: `md5::Md5` and `sha2::Sha256` (on devices,
/// build with `--cfg sha2_backend_soft="compact"` for its looped rounds:
/// see `docs/CODEC.md`).
#[derive(Clone, Copy, Debug)]
pub enum Software {}

impl Hashes for Software {
    type Md5 = md5::Md5;
    type Sha256 = sha2::Sha256;
}

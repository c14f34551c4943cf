//! The device's side of an update once the patch is stored: check it,
//! apply it into the inactive slot of each component it has entries for,
//! activate the new images together, and say so.
//!
//! ```text
//!  staged patch ─► CRC check ─┬─► for each component k:                    ─► activate_group ─► clear staging
//!                     │       │   Slots::begin_component_update(k) ─► feed ─► finish     │
//!                     │       │     (no entry for k: skipped)                            └─ "OK": restart
//!                     │       └─► every image found running: "OK, new version already installed"
//!                     └─ "Patch data is invalid or corrupt"
//! ```
//!
//! A device with several components ([`Slots::new_group`](crate::slots::Slots::new_group)) updates every
//! component the patch has entries for in one run: each is applied into
//! its own inactive slot, then **one record write** activates all of them
//! ([`Slots::activate_group`](crate::slots::Slots::activate_group)), so a power cut leaves all old or all new.
//! A component whose entries are all for other images than the one it
//! runs fails the whole update ("No suitable patches were found"), and
//! nothing is activated.
//!
//! Every step is safe to repeat after a power cut: the staged patch stays
//! complete until the update has been activated (or refused), so the host
//! sending the same patch again makes the device run [`install`] again;
//! the running slot is never written.
//!
//! A device built with a public key calls [`install_signed`] instead
//! (feature `sign`): the update then requires the key's signature
//! ([`crate::slots::Update::require_signature`]), and a patch it refuses is cleared from
//! staging like any other refused patch.

use crate::slots::{self, Image, Slot};
use crate::{Outcome, SlotError, Verdict};

#[cfg(feature = "sign")]
pub use super::blocking::install::install_signed;
pub use super::blocking::install::{component, install};

/// How often (in patch bytes fed) [`install`] reports progress.
pub const PROGRESS_EVERY: u32 = 4096;

/// How an [`install`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Installed {
    /// The result sent to the host.
    pub verdict: Verdict,
    /// Whether the device must restart now to boot the new image.
    pub restart: bool,
}

/// What an install requires of the patch's signatures. Empty without the
/// feature `sign`, so that an install without it is exactly what it was.
#[derive(Clone, Copy, Default)]
pub(crate) struct Policy {
    /// The key entries must be signed by, and the lowest security counter.
    #[cfg(feature = "sign")]
    pub(crate) key: Option<([u8; crate::sign::PUBLIC_KEY_LEN], u32)>,
}

pub(crate) type Failed = (Verdict, &'static str);

pub(crate) fn failed(e: SlotError) -> Failed {
    let v = e.verdict();
    (v, v.message())
}

/// An empty place for what an update left.
pub(crate) const NOTHING: slots::Installed = slots::Installed {
    component: 0,
    slot: Slot::A,
    image: Image::NONE,
    outcome: Outcome::Applied,
};

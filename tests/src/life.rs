//! The life of a device through one update, power cuts included: boot
//! stage, application, sender, over and over until the update has come to
//! its end. Used by the power-cut sweep and the golden wear counts.
//!
//! After every boot selection it checks that the selected slot holds
//! exactly the old image or exactly the new one.

use flashpatch::slots::Slot;

use crate::device::{DevError, Device};

// The life is written once, as async code, and compiled twice, as the
// slot manager is: `blocking::live` over the blocking slot manager,
// `asynch::live` over the async one (every flash operation suspended once,
// `flashpatch::mock::Yielding`).
#[allow(clippy::duplicate_mod)]
#[path = "life"]
pub mod blocking {
    use super::{DevError, Device};
    pub(crate) use flashpatch::slots::Update;
    use flashpatch_macros::blocking as io;

    pub(crate) type Slots<'a, const E: usize, const R: usize, const W: usize, const X: u8> =
        crate::device::DevSlots<'a, E, R, W, X>;
    /// A partition of the device's flash, as the slot manager takes it.
    pub(crate) type Part<'a, const E: usize, const R: usize, const W: usize, const X: u8> =
        flashpatch::Partition<'a, crate::device::DevFlash<E, R, W, X>>;

    /// The slot manager, built afresh over the device's flash.
    pub(crate) fn open<const E: usize, const R: usize, const W: usize, const X: u8>(
        dev: &Device<E, R, W, X>,
    ) -> Result<Slots<'_, E, R, W, X>, DevError> {
        dev.slots()
    }

    mod run;
    pub use run::live;
}

#[allow(clippy::duplicate_mod)]
#[path = "life"]
pub mod asynch {
    use super::{DevError, Device};
    pub(crate) use flashpatch::slots::asynch::Update;
    use flashpatch_macros::asynchronous as io;

    pub(crate) type Slots<'a, const E: usize, const R: usize, const W: usize, const X: u8> =
        crate::device::AsyncDevSlots<'a, E, R, W, X>;
    /// A partition of the device's flash as an async driver that waits
    /// once at every operation.
    pub(crate) type Part<'a, const E: usize, const R: usize, const W: usize, const X: u8> =
        flashpatch::mock::Yielding<flashpatch::Partition<'a, crate::device::DevFlash<E, R, W, X>>>;

    /// The async slot manager, built afresh over the device's flash.
    pub(crate) async fn open<const E: usize, const R: usize, const W: usize, const X: u8>(
        dev: &Device<E, R, W, X>,
    ) -> Result<Slots<'_, E, R, W, X>, DevError> {
        dev.async_slots().await
    }

    mod run;
    pub use run::live;
}

pub use blocking::live;

/// Patch bytes the sender hands over at a time.
pub const CHUNK: usize = 1024;

/// Boot sessions after which a life that has not ended is a failure.
pub(crate) const MAX_SESSIONS: u32 = 64;

/// One update to live through.
pub struct Scenario<'a> {
    /// The running image, in slot A, confirmed.
    pub old: &'a [u8],
    /// The image the patch makes.
    pub new: &'a [u8],
    /// The patch old → new.
    pub patch: &'a [u8],
    /// The application never confirms the new image: it must be rolled
    /// back. Otherwise the application confirms at its first boot.
    pub rollback: bool,
}

/// How a life went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lived {
    /// Power cuts that happened.
    pub cuts: u32,
    /// Boot selections.
    pub boots: u32,
    /// Updates begun from the start of the patch.
    pub starts: u32,
    /// Updates resumed from a checkpoint.
    pub resumes: u32,
    /// Patch bytes the sender sent in all.
    pub sent: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Holds {
    Old,
    New,
}

/// Which image `slot` holds, if exactly one of them.
pub(crate) fn holds<const E: usize, const R: usize, const W: usize, const X: u8>(
    dev: &Device<E, R, W, X>,
    sc: &Scenario<'_>,
    slot: Slot,
) -> Option<Holds> {
    let f = dev.flash.borrow();
    let at = match slot {
        Slot::A => dev.layout.slot_a,
        Slot::B => dev.layout.slot_b,
    } as usize;
    let bytes = &f.as_bytes()[at..at + dev.layout.slot_size as usize];
    if bytes.starts_with(sc.new) {
        Some(Holds::New)
    } else if bytes.starts_with(sc.old) {
        Some(Holds::Old)
    } else {
        None
    }
}

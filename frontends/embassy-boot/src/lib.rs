//! flashpatch as the delta layer of [embassy-boot]: a patch is applied
//! into embassy-boot's DFU partition, reading the running image from its
//! ACTIVE partition, and the update is marked with embassy-boot's own
//! state ([`FirmwareState::mark_updated`](embassy_boot::FirmwareState::mark_updated)),
//! so that embassy-boot's bootloader swaps it in, boots it on trial and
//! reverts it unless the new image calls `mark_booted`. Nothing of
//! embassy-boot is re-implemented here: its bootloader, its state
//! partition and its swap are the `embassy-boot` crate's.
//!
//! The application's side: apply the patch as it arrives, then let
//! embassy-boot swap it in. Here over RAM flash, with blocking drivers:
//!
//! ```
//! use embassy_boot::{BlockingFirmwareState, State};
//! use flashpatch::mock::MockFlash;
//! use flashpatch::{ApplierState, Status};
//! use flashpatch_embassy_boot::blocking::DfuUpdate;
//!
//! let old = b"Hello from version 1 of the firmware!\n".repeat(16);
//! let patch = include_bytes!("../../../core/examples/data/hello.fpat");
//! // embassy-boot's partitions: ACTIVE, DFU (one page larger), STATE.
//! let mut active = MockFlash::<1, 4, 4096>::with_image(old, 4096);
//! let mut dfu = MockFlash::<1, 4, 4096>::new(2 * 4096);
//! let mut aligned = [0u8; 4]; // STATE's write size
//! let mut state = BlockingFirmwareState::new(MockFlash::<1, 4, 4096>::new(4096), &mut aligned);
//! let mut mem = ApplierState::new(); // a `static` on a device
//!
//! let mut update = DfuUpdate::begin(&mut active, &mut dfu, &mut state, &mut mem)?;
//! for chunk in patch.chunks(64) {
//!     // as the link delivers it
//!     if let Status::Done(_) = update.feed(chunk)? {
//!         break;
//!     }
//! }
//! update.finish(&mut state)?; // verified, and marked with embassy-boot's state
//! assert_eq!(state.get_state()?, State::Swap); // reset: embassy-boot swaps it in
//! // ...and the new image, once it works: state.mark_booted()?;
//! # Ok::<(), flashpatch_embassy_boot::Error>(())
//! ```
//!
//! With async drivers (embassy's HALs), [`asynch::DfuUpdate`] is the same
//! type with `async` methods, over [`embassy_boot::FirmwareState`]:
//! `DfuUpdate::begin(..).await?`, `update.feed(chunk).await?`,
//! `update.finish(&mut state).await?`.
//!
//! Both are compiled from one source (as flashpatch's own slot manager).
//!
//! What it guarantees, with embassy-boot's bootloader:
//!
//! - It writes nothing while embassy-boot has swapped in an image that has
//!   not called `mark_booted` yet ([`Error::AwaitingMarkBooted`]): the DFU
//!   partition then holds the image embassy-boot reverts to.
//! - The image must fit the ACTIVE partition (embassy-boot swaps that
//!   many pages): a larger target is refused before anything is written.
//! - The new image is verified (its SHA-256, from the patch) before the
//!   update is marked. A power cut before the mark leaves embassy-boot
//!   booting the running image; the application then applies the patch
//!   again from the start (the DFU partition is scratch until marked).
//! - `tests/tests/embassy_boot.rs` cuts power at every flash operation of the
//!   whole sequence (our writes into DFU, the mark, embassy-boot's swap
//!   and the first boot's `mark_booted`), and checks that ACTIVE always
//!   holds exactly the old or exactly the new image once embassy-boot's
//!   `prepare_boot` has run. On flash with ECC, embassy-boot itself does
//!   not survive one cut in its `mark_booted` (`docs/EMBASSY-BOOT.md`).
//!
//! [embassy-boot]: https://crates.io/crates/embassy-boot
#![no_std]
#![warn(missing_docs)]

use core::fmt;

use embassy_boot::FirmwareUpdaterError;
pub use embassy_boot::State;
use flashpatch::{ApplyError, FlashError, FlashRole};

// One source, two copies, as flashpatch's own slot manager.
#[allow(clippy::duplicate_mod)]
/// Over blocking flash drivers (`embedded_storage`) and
/// [`embassy_boot::BlockingFirmwareState`].
#[path = "."]
pub mod blocking {
    use embassy_boot::BlockingFirmwareState as FirmwareState;
    use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
    use flashpatch::Applier;
    use flashpatch_macros::blocking as io;

    mod update;
    pub use update::DfuUpdate;
}

#[allow(clippy::duplicate_mod)]
/// Over async flash drivers (`embedded_storage_async`, as embassy's HALs
/// give) and [`embassy_boot::FirmwareState`].
#[path = "."]
pub mod asynch {
    use embassy_boot::FirmwareState;
    use embedded_storage_async::nor_flash::{NorFlash, ReadNorFlash};
    use flashpatch::asynch::Applier;
    use flashpatch_macros::asynchronous as io;

    mod update;
    pub use update::DfuUpdate;
}

/// Why an update into embassy-boot's DFU partition did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// embassy-boot has swapped in an image that has not called
    /// `mark_booted` yet; the DFU partition holds the image it would
    /// revert to. Nothing was written.
    AwaitingMarkBooted,
    /// The patch was refused or failed (nothing was marked; the running
    /// image boots as before).
    Apply(ApplyError),
    /// A flash failed: the ACTIVE partition (source), the DFU partition
    /// (target) or embassy-boot's state partition (state).
    Flash(FlashError),
    /// embassy-boot's state partition refused the change.
    State,
}

impl From<ApplyError> for Error {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Flash(f) => Error::Flash(f),
            e => Error::Apply(e),
        }
    }
}

impl From<FirmwareUpdaterError> for Error {
    fn from(e: FirmwareUpdaterError) -> Self {
        match e {
            FirmwareUpdaterError::Flash(kind) => Error::Flash(FlashError {
                role: FlashRole::State,
                kind,
            }),
            FirmwareUpdaterError::BadState => Error::AwaitingMarkBooted,
            FirmwareUpdaterError::Signature(_) => Error::State,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AwaitingMarkBooted => f.write_str(
                "embassy-boot waits for the swapped-in image to call mark_booted; \
                 the DFU partition holds the image to revert to",
            ),
            Error::Apply(e) => write!(f, "{e}"),
            Error::Flash(e) => write!(f, "{e}"),
            Error::State => f.write_str("embassy-boot's state partition refused the change"),
        }
    }
}

impl core::error::Error for Error {}

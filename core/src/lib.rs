//! # flashpatch
//!
//! Applies small binary patches to microcontroller firmware, streaming, in a
//! fixed and small amount of RAM, with no allocator.
//!
//! Patch bytes arrive in chunks of any size through [`Applier::feed`]; the
//! applier reads the running image from a source partition and writes the
//! new image, front to back, into a target partition, erasing each erase
//! unit just before it is first written. It never writes the source. Before
//! writing anything it checks that the patch is for the image in the source
//! partition; after the last byte it reads the target back and checks its
//! SHA-256.
//!
//! Here a patch of 121 bytes (made by `genpat OLD NEW PATCH`) turns a
//! 608-byte image into the next version, between two slots of one flash
//! (the mock flash of the feature `mock`; on a device, the chip's
//! `NorFlash` driver):
//!
//! ```
//! use core::cell::RefCell;
//! use flashpatch::{mock::MockFlash, Applier, ApplierState, Outcome, Partition, Status};
//!
//! let old = b"Hello from version 1 of the firmware!\n".repeat(16);
//! let new = b"Hello from version 2 of the firmware!\n".repeat(16);
//! let patch = include_bytes!("../examples/data/hello.fpat");
//!
//! let mut chip = MockFlash::<1, 4, 4096>::new(2 * 4096);
//! chip.preload(0, &old); // slot A runs the old image
//! let flash = RefCell::new(chip);
//! let source = Partition::new(&flash, 0, 4096).unwrap();
//! let target = Partition::new(&flash, 4096, 4096).unwrap();
//!
//! let mut state = ApplierState::new();
//! let mut applier: Applier<_, _> = Applier::new(source, target, &mut state);
//! let mut status = Status::NeedMore;
//! for chunk in patch.chunks(16) {
//!     status = applier.feed(chunk).unwrap();
//! }
//! assert_eq!(status, Status::Done(Outcome::Applied));
//! assert_eq!(&flash.borrow().as_bytes()[4096..4096 + new.len()], &new[..]);
//!
//! // Something that is not a patch is refused, and nothing is written:
//! let mut applier: Applier<_, _> = Applier::new(
//!     Partition::new(&flash, 0, 4096).unwrap(),
//!     Partition::new(&flash, 4096, 4096).unwrap(),
//!     &mut state,
//! );
//! let e = applier.feed(b"FPAT\x01\x00\x00\x00").unwrap_err();
//! assert_eq!(e.verdict().message(), "Patch data is invalid or corrupt");
//! ```
//!
//! ## Blocking or async flash, and flashes of different types
//!
//! [`Applier`] takes blocking drivers (`embedded_storage::nor_flash`);
//! [`asynch::Applier`] takes async ones (`embedded_storage_async`, as
//! embassy's HALs give), and its `feed` is an `async fn`; so do the slot
//! manager of [`slots::asynch`] and the staging area, message handling and
//! install of `proto::asynch` (feature `proto`). Each is the same code as
//! its blocking twin: it is written once, as async code, and compiled a
//! second time with every `async` and `.await` removed
//! (`flashpatch-macros`), so the blocking code has no futures in it. The source and the target may be
//! flashes of different types with different error types (internal flash
//! and an external SPI NOR, say), and so may a device's two slots
//! ([`slots::Either`]: slot A in internal flash, slot B in an external
//! one, each update writing whichever is not running); a driver's error
//! reaches the caller as a
//! [`FlashError`]: its `NorFlashErrorKind` and which flash it was
//! ([`FlashRole`]). Each layer has its own error: the applier's
//! [`ApplyError`], the slot manager's [`SlotError`].
//!
//! ```
//! use flashpatch::{asynch, mock::Yielding, mock::MockFlash, ApplierState, Outcome};
//!
//! let old = b"Hello from version 1 of the firmware!\n".repeat(16);
//! let patch = include_bytes!("../examples/data/hello.fpat");
//! // Drivers that wait (return `Pending`) at every operation.
//! let mut source = Yielding::new(MockFlash::<1, 4, 4096>::with_image(old, 4096));
//! let mut target = Yielding::new(MockFlash::<1, 4, 4096>::new(4096));
//! let mut state: ApplierState = ApplierState::new();
//! let outcome = pollster::block_on(async {
//!     let mut applier = asynch::Applier::new(&mut source, &mut target, &mut state);
//!     applier.feed(patch).await?;
//!     applier.finish()
//! });
//! assert_eq!(outcome, Ok(Outcome::Applied));
//! assert!(target.suspensions > 0);
//! ```
//!
//! `core/examples/` holds whole programs (`cargo run --release -p
//! flashpatch --example blocking`, `async`, `two_flashes`).
//!
//! The patch format is specified in `docs/FORMAT.md`.
//!
//! ## Flash geometry
//!
//! Everything works on flash with write units of 1 to 64 bytes, read units
//! of 1 to 64 bytes and erase units from 256 bytes (the power-cut sweep
//! covers up to 128 KiB), taken from the `embedded-storage` constants and
//! checked at compile time. The applier
//! and the slot manager ([`slots`]) do not need to know what erased flash
//! reads: they recognise what they wrote by magic, length and CRC (records)
//! or size and SHA-256 (images), never by looking for erased bytes, so
//! they run unchanged on flash erased to `0x00` (embassy-boot's
//! `flash-erase-zero` chips). The patch staging area (`proto::Staging`,
//! feature `proto`) does look for erased progress words:
//! `Staging::open` is for flash erased to `0xFF`, and
//! `Staging::open_erased(flash, 0x00)` for flash erased to zeros (a
//! Zephyr device passes its `flash_parameters.erase_value`).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "mock"))]
pub mod mock;

mod log;

mod apply;
pub mod codec;
pub mod crc32;
mod error;
pub mod format;
pub mod hashes;

/// The async API: the same types as the crate root's, over async flash
/// drivers (`embedded_storage_async::nor_flash`), with `async` methods.
/// Their logic is the blocking types' logic, compiled from the same
/// source (see `flashpatch-macros`).
pub mod asynch {
    pub use crate::apply::asynch::Applier;
}
mod partition;
#[cfg(feature = "proto")]
pub mod proto;
pub mod sign;
pub mod slots;
mod snapshot;

pub use apply::blocking::Applier;
pub use apply::{ApplierState, Found, Outcome, Progress, Status, MAX_SOURCE_PASSES};
pub use error::{ApplyError, FlashError, FlashRole, SlotError, Verdict};
pub use partition::{Bounded, Partition, PartitionError};

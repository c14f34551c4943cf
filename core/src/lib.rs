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
//! ```
//! # #[cfg(feature = "mock")] {
//! use core::cell::RefCell;
//! use flashpatch::{mock::MockFlash, Applier, ApplierState, Partition, Status};
//!
//! let flash = RefCell::new(MockFlash::<1, 4, 4096>::new(2 * 65536));
//! let source = Partition::new(&flash, 0, 65536).unwrap();
//! let target = Partition::new(&flash, 65536, 65536).unwrap();
//! let mut state = ApplierState::new();
//! let mut applier: Applier<_, _> = Applier::new(source, target, &mut state);
//! // A patch with no entries is refused as corrupt:
//! let bad = b"FPAT\x01\x00\x00\x00";
//! assert!(applier.feed(bad).is_err());
//! # }
//! ```
//!
//! The patch format is specified in `docs/FORMAT.md`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "mock"))]
pub mod mock;

mod apply;
pub mod codec;
pub mod crc32;
mod digest;
mod error;
pub mod format;
mod partition;
#[cfg(feature = "proto")]
pub mod proto;
pub mod sign;
pub mod slots;

pub use apply::{Applier, ApplierState, Found, Outcome, Progress, Status};
pub use error::{Error, Verdict};
pub use partition::{Partition, PartitionError};

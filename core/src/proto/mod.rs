//! The update protocol (feature `proto`): how a host hands a patch to a
//! device over any byte link (a UART, TCP), specified in
//! `docs/PROTOCOL.md`.
//!
//! - [`frame`]: COBS frames with a CRC-32, and a push-style decoder that
//!   resynchronises after garbage.
//! - [`msg`]: the messages, postcard-encoded.
//! - [`stage`]: the device stores the patch in a staging partition as it
//!   arrives, so that a transfer resumes after a power cut.
//!
//! The device side of a session is [`handle`] (what to answer to a host
//! message) and [`feed_staged`] (feeds the stored patch to an
//! applier); the firmware adds the link and the slot activation.
//!
//! A host's `Begin` and one `Chunk`, framed, sent over a link that cuts
//! them into odd pieces, and staged by the device:
//!
//! ```
//! use core::cell::RefCell;
//! use flashpatch::crc32::crc32;
//! use flashpatch::mock::MockFlash;
//! use flashpatch::proto::{frame, handle, Action, FrameDecoder, HostMsg, Staging, MAX_FRAME};
//! use flashpatch::Partition;
//!
//! let patch = include_bytes!("../../examples/data/hello.fpat");
//! // The host: two messages, each one frame.
//! let mut wire = Vec::new();
//! let mut buf = [0u8; MAX_FRAME];
//! for msg in [
//!     HostMsg::Begin { size: patch.len() as u32, crc32: crc32(patch) },
//!     HostMsg::Chunk { offset: 0, data: patch },
//! ] {
//!     let n = frame::encode(&msg, &mut buf).unwrap();
//!     wire.extend_from_slice(&buf[..n]);
//! }
//!
//! // The device: a staging partition, and the frames as they arrive.
//! let flash = RefCell::new(MockFlash::<1, 4, 4096>::new(2 * 4096));
//! let mut staging = Staging::open(Partition::new(&flash, 0, 2 * 4096).unwrap()).unwrap();
//! let mut frames = FrameDecoder::new();
//! let mut actions = Vec::new();
//! for piece in wire.chunks(7) {
//!     let mut rest = piece;
//!     while !rest.is_empty() {
//!         let (taken, payload) = frames.feed(rest);
//!         rest = &rest[taken..];
//!         if let Some(payload) = payload {
//!             let msg: HostMsg = frame::decode(payload.unwrap()).unwrap();
//!             actions.push(handle(&mut staging, &msg));
//!         }
//!     }
//! }
//! let n = patch.len() as u32;
//! assert_eq!(actions, [
//!     Action::Ack { offset: 0, complete: false },
//!     Action::Ack { offset: n, complete: true },
//! ]);
//! // Staged whole: `device::install` applies and activates it.
//! assert!(staging.complete());
//! ```

pub mod device;
pub mod frame;
pub mod msg;
mod staging;

// Loading the same file twice is the point: one source, two copies (see
// `crate::apply`).
#[allow(clippy::duplicate_mod)]
#[path = "."]
pub(crate) mod blocking {
    use crate::slots::Slots;
    use embedded_storage::nor_flash::NorFlash;
    use flashpatch_macros::blocking as io;

    pub(crate) mod install;
    pub mod stage;
}

#[allow(clippy::duplicate_mod)]
#[path = "."]
mod asynchronous {
    use crate::slots::asynch::Slots;
    use embedded_storage_async::nor_flash::NorFlash;
    use flashpatch_macros::asynchronous as io;

    pub(crate) mod install;
    pub mod stage;
}

pub use blocking::stage;
pub use blocking::stage::{feed_staged, feed_staged_from, handle};

/// The device side over async flash drivers (`embedded_storage_async`):
/// the same staging area, [`handle`], [`feed_staged`] and
/// [`device::install`] as this module's, compiled from the same source,
/// with `async` functions; `install` takes the async slot manager
/// ([`crate::slots::asynch::Slots`]).
pub mod asynch {
    #[cfg(feature = "sign")]
    pub use super::asynchronous::install::install_signed;
    pub use super::asynchronous::install::{component, install};
    pub use super::asynchronous::stage::{feed_staged, feed_staged_from, handle, Staging};
}

pub use frame::{FrameDecoder, FrameError, MAX_FRAME};
pub use msg::{
    Announce, ComponentImage, DeviceMsg, HostMsg, Resume, Stage, MAX_CHUNK, PROTO_VERSION,
};
pub use stage::{StageError, Staging};

use crate::Verdict;

/// What a device does about a host message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// Announce itself ([`DeviceMsg::Hello`]).
    Announce,
    /// Send [`DeviceMsg::Ack`]; if `complete`, the patch is all stored:
    /// apply it next ([`feed_staged`]).
    Ack {
        /// Bytes stored.
        offset: u32,
        /// Whether that is the whole patch.
        complete: bool,
    },
    /// End the update with this result ([`DeviceMsg::Result`]).
    Fail(Verdict, &'static str),
    /// Say what this component runs ([`DeviceMsg::Component`], built by
    /// [`device::component`]).
    Describe(u8),
}

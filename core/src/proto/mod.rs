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
pub mod stage;

use embedded_storage::nor_flash::NorFlash;

pub use frame::{FrameDecoder, FrameError, MAX_FRAME};
pub use msg::{
    Announce, ComponentImage, DeviceMsg, HostMsg, Resume, Stage, MAX_CHUNK, PROTO_VERSION,
};
pub use stage::{StageError, Staging};

use crate::{ApplyError, FlashError, Status, Verdict};

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

/// What a device answers to `msg`, with its patch staged in `staging`.
pub fn handle<F: NorFlash>(staging: &mut Staging<F>, msg: &HostMsg<'_>) -> Action {
    let stored = match *msg {
        HostMsg::Hello => return Action::Announce,
        HostMsg::Component { component } => return Action::Describe(component),
        HostMsg::Begin { size, crc32 } => staging.begin(size, crc32),
        HostMsg::Chunk { offset, data } => staging.write(offset, data),
    };
    match stored {
        Ok(offset) => Action::Ack {
            offset,
            complete: staging.complete(),
        },
        Err(StageError::Offset { expected }) => Action::Ack {
            offset: expected,
            complete: staging.complete(),
        },
        Err(StageError::TooLarge { .. }) => {
            Action::Fail(Verdict::Error, "the patch is larger than the staging area")
        }
        Err(StageError::NotStarted) => Action::Fail(Verdict::Error, "patch data before Begin"),
        Err(StageError::Length) => Action::Fail(Verdict::Error, "a chunk has a bad length"),
        Err(StageError::Flash(_)) => Action::Fail(Verdict::Error, "the staging flash failed"),
    }
}

/// Hands the patch stored in `staging` to `feed` (an applier's or an
/// update's `feed`), read through `buf` (its length rounded down to a
/// multiple of 4 bytes, or of the flash's read size if larger; at least
/// one such multiple), and calls `progress` with the bytes
/// fed so far after each piece. The patch must be complete
/// ([`Staging::complete`]); the caller then calls the applier's `finish`.
pub fn feed_staged<F, E>(
    staging: &mut Staging<F>,
    buf: &mut [u8],
    mut feed: impl FnMut(&[u8]) -> Result<Status, E>,
    mut progress: impl FnMut(u32),
) -> Result<(), E>
where
    F: NorFlash,
    E: From<ApplyError> + From<FlashError>,
{
    let size = staging.resume().map_or(0, |r| r.size);
    let align = F::READ_SIZE.max(4);
    let step = (buf.len() / align * align) as u32;
    if !staging.complete() || step == 0 {
        return Err(ApplyError::Truncated.into());
    }
    let mut at = 0;
    while at < size {
        let n = step.min(size - at) as usize;
        let nr = n.next_multiple_of(align);
        staging.read(at, &mut buf[..nr])?;
        feed(&buf[..n])?;
        at += n as u32;
        progress(at);
    }
    Ok(())
}

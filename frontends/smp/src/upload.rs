//! An SMP image upload fed into flashpatch's slot manager: the bytes of
//! a flashpatch patch (or a full image in a patch file) are applied into
//! the inactive slot as the requests arrive, without being stored first.
//!
//! What SMP clients expect of a resumable upload (Zephyr's `img_mgmt`
//! does the same): a request at offset 0 with the `len` and `sha` of the
//! upload in progress is answered with the offset the device has, and the
//! client goes on from there; one with another `sha` starts a new upload;
//! a request at any other offset than the device's is answered with the
//! device's offset. With [`Config::checkpoint_units`] > 0 this holds
//! across resets too: the update is continued from its newest checkpoint
//! ([`Slots::resume_or_begin`]), and the first answer after the reset is
//! that checkpoint's offset.
//!
//! [`Config::checkpoint_units`]: flashpatch::slots::Config::checkpoint_units

use embedded_storage::nor_flash::NorFlash;
use flashpatch::slots::{Installed, PatchId, Slots, Update};
use flashpatch::ApplierState;

use crate::server::EINVAL;
use crate::{Upload, EBADSTATE};

/// The identity a checkpoint records for an upload: its length and the
/// first four bytes of its SHA-256 (the CRC-32 a [`PatchId`] otherwise
/// holds is not known before the last byte). Without a `sha` an upload
/// is not continued after a reset.
pub fn patch_id(len: u32, sha: Option<&[u8]>) -> PatchId {
    match sha {
        Some(s) if s.len() >= 4 && len > 0 => PatchId {
            size: len,
            crc32: u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        },
        _ => PatchId::UNKNOWN,
    }
}

/// One upload in progress, over the slots and the applier's memory it
/// borrows until it is finished or dropped.
pub struct Receiver<'s, P, S> {
    update: Update<'s, P, S, 1>,
    len: u32,
    /// The upload's SHA-256, if its first request gave one.
    sha: Option<[u8; 32]>,
    next: u32,
}

/// What a request did to the upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// The device has the upload up to this offset: answer it.
    More(u32),
    /// The last byte arrived: [`Receiver::finish`], activate, then answer
    /// the upload's length.
    Complete,
}

impl<'s, P: NorFlash, S: NorFlash> Receiver<'s, P, S> {
    /// Starts the upload whose first request (offset 0, with its `len`) is
    /// `first`, or continues the one a checkpoint belongs to. Then feed it
    /// `first` ([`Receiver::feed`] takes its data if it is the next to
    /// come). An `MGMT_ERR` code if it cannot start (no `len`, or an
    /// update is on trial).
    pub fn begin(
        slots: &'s mut Slots<P, S, 1>,
        state: &'s mut ApplierState,
        first: &Upload<'_>,
    ) -> Result<Self, u32> {
        let len = match (first.off, first.len) {
            (0, Some(n)) if n > 0 => n,
            _ => return Err(EINVAL),
        };
        let id = patch_id(len, first.sha);
        let (update, next) = slots.resume_or_begin(0, id, state).map_err(|_| EBADSTATE)?;
        Ok(Receiver {
            update,
            len,
            sha: first.sha.and_then(|s| s.try_into().ok()),
            next,
        })
    }

    /// The update being written, to require a signature before the first
    /// [`Receiver::feed`] (`Update::require_signature`).
    pub fn update(&mut self) -> &mut Update<'s, P, S, 1> {
        &mut self.update
    }

    /// Whether `first` (a request at offset 0) is this upload again, as a
    /// client sends it when it starts over after a lost link: same length
    /// and same SHA-256. Then answer [`Receiver::offset`]; else the client
    /// starts another upload (drop this one and [`Receiver::begin`]).
    pub fn same(&self, first: &Upload<'_>) -> bool {
        first.len == Some(self.len) && self.sha.is_some_and(|s| first.sha == Some(&s[..]))
    }

    /// The offset the device has the upload up to.
    pub fn offset(&self) -> u32 {
        self.next
    }

    /// The upload's length.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the upload is empty (never: [`Receiver::begin`] refuses it).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes a request of this upload: its data if it starts at the
    /// device's offset (any other offset is answered with the device's),
    /// applied at once. An `MGMT_ERR` code if it does not apply: the
    /// upload is then refused (drop it).
    pub fn feed(&mut self, u: &Upload<'_>) -> Result<Fed, u32> {
        if u.off != self.next {
            return Ok(Fed::More(self.next));
        }
        let room = (self.len - self.next) as usize;
        let data = &u.data[..u.data.len().min(room)];
        self.update.feed(data).map_err(|_| EBADSTATE)?;
        self.next += data.len() as u32;
        Ok(if self.next == self.len {
            Fed::Complete
        } else {
            Fed::More(self.next)
        })
    }

    /// Finishes the complete upload: the image installed in the inactive
    /// slot, for [`Slots::activate`]. An `MGMT_ERR` code if the patch did
    /// not make a whole, verified image.
    pub fn finish(self) -> Result<Installed, u32> {
        self.update.finish().map_err(|_| EBADSTATE)
    }
}

//! What the blocking and the async staging area share: its errors and
//! the constants of its layout (drawn in `stage.rs`).

use crate::error::{FlashError, FlashRole};

/// Makes a staging flash driver's error a [`FlashError`].
pub(crate) fn staging<E: embedded_storage::nor_flash::NorFlashError>(e: E) -> FlashError {
    FlashError::new(FlashRole::Staging, e)
}

pub(crate) const MAGIC: [u8; 4] = *b"FPST";
pub(crate) const HEADER: u32 = 16;

/// Why a staging step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StageError {
    /// The flash failed.
    Flash(FlashError),
    /// The patch does not fit in the staging partition.
    TooLarge {
        /// Largest patch the partition holds.
        max: u32,
    },
    /// No transfer was begun.
    NotStarted,
    /// A chunk does not start where the stored bytes end.
    Offset {
        /// Where the next chunk must start.
        expected: u32,
    },
    /// A chunk is too long, reaches past the patch, or is not a multiple
    /// of 4 bytes without ending the patch.
    Length,
}

/// An interrupted or running transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub(crate) size: u32,
    pub(crate) crc32: u32,
    pub(crate) received: u32,
    pub(crate) erased: u32,
}

/// The largest write and read size staging supports.
pub(crate) const MAX_UNIT: usize = 64;

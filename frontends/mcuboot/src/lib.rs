//! flashpatch as the delta layer of [MCUboot]: a patch whose target is an
//! MCUboot image (as `imgtool sign` makes it: header, payload, TLVs; the
//! patch diffs it as bytes) is applied into MCUboot's secondary slot,
//! reading the running image from the primary slot, and then the image
//! trailer is written for a test swap or a permanent one exactly as
//! MCUboot's `boot_set_pending` lays it out. The new image, once it runs
//! well, confirms itself as MCUboot's `boot_set_confirmed` does
//! ([`blocking::set_confirmed`]).
//!
//! ```
//! use flashpatch::mock::MockFlash;
//! use flashpatch::{ApplierState, Status};
//! use flashpatch_mcuboot::blocking::{read_state, SecondaryUpdate};
//! use flashpatch_mcuboot::{Magic, Swap, Trailer};
//!
//! let old = b"Hello from version 1 of the firmware!\n".repeat(16);
//! let patch = include_bytes!("../../../core/examples/data/hello.fpat");
//! // MCUboot's two slots (here of 8 KiB, 4-byte writes).
//! let mut primary = MockFlash::<1, 4, 4096>::with_image(old, 8192);
//! let mut secondary = MockFlash::<1, 4, 4096>::new(8192);
//! let trailer = Trailer::for_flash::<MockFlash<1, 4, 4096>>(8192);
//! let mut mem = ApplierState::new(); // a `static` on a device
//!
//! let mut update = SecondaryUpdate::begin(&mut primary, &mut secondary, trailer, &mut mem)?;
//! for chunk in patch.chunks(64) {
//!     // as the link delivers it
//!     if let Status::Done(_) = update.feed(chunk)? {
//!         break;
//!     }
//! }
//! update.finish(Swap::Test)?; // verified; the trailer asks MCUboot for a test swap
//! let state = read_state(&mut secondary, &trailer)?;
//! assert_eq!((state.magic, state.swap), (Magic::Good, Some(Swap::Test)));
//! # Ok::<(), flashpatch_mcuboot::Error>(())
//! ```
//!
//! [`asynch`] has the same functions and type with `async` methods, for
//! async flash drivers; both are compiled from one source.
//!
//! ## The image trailer
//!
//! At the end of each slot (offsets from the slot's end `S`, for
//! `BOOT_MAX_ALIGN` = `A`, 8 unless the flash writes more than 8 bytes at
//! once, then its write size; MCUboot allows 8, 16 and 32):
//!
//! | field | offset | written as |
//! |---|---|---|
//! | magic | `S - 16` (written from `S - align_up(16, A)`, erased bytes before it) | 16 bytes: for `A` = 8 `77 c2 95 f3 60 d2 ef 7f 35 52 50 0f 2c b6 79 80`; otherwise `A` as a little-endian `u16` and `2d e1 5d 29 41 0b 8d 77 67 9c 11 0f 1f 8a` |
//! | image_ok | `align_down(S - 16 - A, A)` | `01`, padded with erased bytes to the write size |
//! | copy_done | image_ok - `A` | written by MCUboot only |
//! | swap info | copy_done - `A` | `(image << 4) \| type`, type 2 test, 3 permanent |
//! | swap size, swap status | below | written by MCUboot only |
//!
//! `boot_set_pending(permanent)` on an erased trailer writes the magic,
//! then (permanent only) image_ok, then the swap info; with the magic
//! already there it writes nothing. `boot_set_confirmed` on the primary
//! slot writes image_ok if the magic is there and image_ok is not.
//! `tests/tests/mcuboot.rs` checks these bytes against what MCUboot's own
//! `imgtool` writes for alignments 1, 4, 8 and 32, and that `imgtool verify`
//! accepts the secondary slot flashpatch wrote.
//!
//! [MCUboot]: https://docs.mcuboot.com/
#![no_std]
#![warn(missing_docs)]

use core::fmt;

use embedded_storage::nor_flash::NorFlash;
use flashpatch::{ApplyError, FlashError};

#[allow(clippy::duplicate_mod)]
/// Over blocking flash drivers (`embedded_storage`).
#[path = "."]
pub mod blocking {
    use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
    use flashpatch::Applier;
    use flashpatch_macros::blocking as io;

    mod trailer;
    mod update;
    pub use trailer::{read_state, set_confirmed, set_pending};
    pub use update::SecondaryUpdate;
}

#[allow(clippy::duplicate_mod)]
/// Over async flash drivers (`embedded_storage_async`).
#[path = "."]
pub mod asynch {
    use embedded_storage_async::nor_flash::{NorFlash, ReadNorFlash};
    use flashpatch::asynch::Applier;
    use flashpatch_macros::asynchronous as io;

    mod trailer;
    mod update;
    pub use trailer::{read_state, set_confirmed, set_pending};
    pub use update::SecondaryUpdate;
}

/// MCUboot's magic for `BOOT_MAX_ALIGN` = 8.
pub const MAGIC_ALIGN_8: [u8; 16] = [
    0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80,
];

/// The 14 bytes after the alignment in MCUboot's magic for any other
/// `BOOT_MAX_ALIGN`.
pub const MAGIC_TAIL: [u8; 14] = [
    0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b, 0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f, 0x1f, 0x8a,
];

/// MCUboot's default `BOOT_MAX_IMG_SECTORS`.
pub const DEFAULT_MAX_SECTORS: u32 = 128;

/// `BOOT_FLAG_SET`: what image_ok and copy_done hold once set.
const FLAG_SET: u8 = 0x01;

/// Where a slot's image trailer lies, for one slot size and flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// The slot's size in bytes (a whole number of erase units).
    pub slot_size: u32,
    /// The flash's write size (MCUboot's `flash_area_align`).
    pub write_size: u32,
    /// MCUboot's `BOOT_MAX_ALIGN`: 8, 16 or 32.
    pub max_align: u32,
    /// MCUboot's `BOOT_MAX_IMG_SECTORS` (the swap status it reserves).
    pub max_sectors: u32,
    /// What an erased byte reads.
    pub erased: u8,
}

impl Trailer {
    /// The trailer of a slot of `slot_size` bytes on flash of type `F`
    /// erased to `0xFF`: `BOOT_MAX_ALIGN` is 8, or the write size if it is
    /// larger (as `imgtool` chooses), with [`DEFAULT_MAX_SECTORS`].
    pub const fn for_flash<F: NorFlash>(slot_size: u32) -> Self {
        let w = F::WRITE_SIZE as u32;
        Trailer {
            slot_size,
            write_size: w,
            max_align: if w > 8 { w } else { 8 },
            max_sectors: DEFAULT_MAX_SECTORS,
            erased: 0xFF,
        }
    }

    /// The 16 magic bytes.
    pub const fn magic(&self) -> [u8; 16] {
        if self.max_align == 8 {
            return MAGIC_ALIGN_8;
        }
        let mut m = [0u8; 16];
        let a = (self.max_align as u16).to_le_bytes();
        m[0] = a[0];
        m[1] = a[1];
        let mut i = 0;
        while i < 14 {
            m[2 + i] = MAGIC_TAIL[i];
            i += 1;
        }
        m
    }

    /// The magic's offset in the slot.
    pub const fn magic_off(&self) -> u32 {
        self.slot_size - 16
    }

    /// Bytes the magic is written as: `align_up(16, BOOT_MAX_ALIGN)`.
    pub const fn magic_write_len(&self) -> u32 {
        align_up(16, self.max_align)
    }

    /// image_ok's offset.
    pub const fn image_ok_off(&self) -> u32 {
        align_down(self.magic_off() - self.max_align, self.max_align)
    }

    /// copy_done's offset.
    pub const fn copy_done_off(&self) -> u32 {
        self.image_ok_off() - self.max_align
    }

    /// The swap info's offset.
    pub const fn swap_info_off(&self) -> u32 {
        self.copy_done_off() - self.max_align
    }

    /// The bytes MCUboot keeps at the end of the slot (swap status for
    /// `max_sectors` sectors, swap size, swap info, copy_done, image_ok,
    /// magic), as `imgtool` reserves them: an image must end before.
    pub const fn size(&self) -> u32 {
        self.max_sectors * 3 * self.write_size + 4 * self.max_align + self.magic_write_len()
    }

    /// Where the trailer starts: the most an image may hold.
    pub const fn start(&self) -> u32 {
        self.slot_size.saturating_sub(self.size())
    }
}

const fn align_up(n: u32, a: u32) -> u32 {
    n.div_ceil(a) * a
}

const fn align_down(n: u32, a: u32) -> u32 {
    n / a * a
}

/// A trailer's magic, as MCUboot reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Magic {
    /// Erased: nothing requested.
    Unset,
    /// MCUboot's magic.
    Good,
    /// Neither.
    Bad,
}

/// The swap a trailer asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swap {
    /// Boot the new image once; MCUboot reverts it unless it confirms
    /// itself (`BOOT_SWAP_TYPE_TEST`, 2).
    Test,
    /// Boot the new image for good (`BOOT_SWAP_TYPE_PERM`, 3).
    Permanent,
}

impl Swap {
    const fn code(self) -> u8 {
        match self {
            Swap::Test => 2,
            Swap::Permanent => 3,
        }
    }
}

/// A slot's trailer, as MCUboot's `boot_read_swap_state` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwapState {
    /// The magic.
    pub magic: Magic,
    /// The swap info's type, when it is test or permanent (revert is
    /// MCUboot's own; erased or anything else is `None`).
    pub swap: Option<Swap>,
    /// The swap info's image number.
    pub image: u8,
    /// copy_done is set.
    pub copy_done: bool,
    /// image_ok is set.
    pub image_ok: bool,
}

/// Why an update into MCUboot's secondary slot did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The primary slot runs an image MCUboot swapped in on test that has
    /// not confirmed itself: the secondary slot holds the image MCUboot
    /// reverts to. Nothing was written.
    AwaitingConfirm,
    /// The patch was refused or failed (no trailer was written; MCUboot
    /// boots the primary slot as before).
    Apply(ApplyError),
    /// A flash failed: the primary slot (source) or the secondary slot
    /// (target).
    Flash(FlashError),
    /// The trailer holds something that is not MCUboot's magic
    /// (`BOOT_EBADIMAGE`/`BOOT_EBADVECT` in MCUboot).
    BadTrailer,
}

impl From<ApplyError> for Error {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Flash(f) => Error::Flash(f),
            e => Error::Apply(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AwaitingConfirm => f.write_str(
                "MCUboot waits for the image on test to confirm itself; \
                 the secondary slot holds the image to revert to",
            ),
            Error::Apply(e) => write!(f, "{e}"),
            Error::Flash(e) => write!(f, "{e}"),
            Error::BadTrailer => f.write_str("the slot's image trailer is not MCUboot's"),
        }
    }
}

impl core::error::Error for Error {}

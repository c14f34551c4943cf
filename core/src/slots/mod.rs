//! A/B slots: two image slots (per component) and a state area, atomic
//! activation, trial boot with automatic rollback, an anti-rollback floor,
//! and updates that resume after a reset.
//!
//! The boot stage and the application share nothing but the flash: every
//! decision is made from what the state area holds, so either side may be
//! reset at any instant.
//!
//! ```text
//!  flash:  | slot A (image) | slot B (image) | state area: bank 0 | bank 1 |
//!           each a multiple of the erase size; the two banks each hold
//!           at least one boot record and one checkpoint
//!
//!  a bank: | record | record | record | ... | erased ... |
//!  record: +0 4 magic "FPSR"   +4 1 kind (1 boot, 2 checkpoint)  +5 1 version (1)
//!          +6 2 length L (a multiple of the record alignment: 32, or 64
//!          on flash with 64-byte write or read units; see `record_align`)
//!          +8 4 sequence  +12 4 generation
//!          +16 .. body          L-4 4 CRC-32 of bytes 0..L-4
//!
//!  boot record body (L = 128 for one component, +96 per further one):
//!          +16 1 active slot (0 A, 1 B)   +17 1 state (1 trial, 2 confirmed)
//!          +18 1 boot attempts            +19 1 flags (bit 0: rolled back,
//!                                               bit 1: component 0 not on trial)
//!          +20 4 slot A image size  +24 32 slot A image SHA-256   (size 0: none)
//!          +56 4 slot B image size  +60 32 slot B image SHA-256
//!          +92 4 slot A security counter  +96 4 slot B security counter
//!          +100 4 floor  +104 1 components N  +105 19 zero
//!          +124 96 × (N-1) further components (see `record.rs`)
//!          L-4 4 CRC-32
//!  (a 96-byte boot record, written before security counters, ends at +92
//!   with its CRC and is read as counters 0 and floor 0)
//! ```
//!
//! `docs/FORMAT.md` (section "State area") is the normative description.
//!
//! The newest valid boot record (highest sequence number) is the boot
//! state. Records are only appended; a torn or half-erased record fails
//! its CRC and the one before it stands. **Activation is one record
//! write.** The generation counts boot-state changes: copies of a boot
//! record (made when a bank is started) keep it, and a checkpoint belongs
//! to the generation it was written in.
//!
//! | who | call | writes |
//! |---|---|---|
//! | factory | [`Slots::provision`] ([`Slots::provision_group`]) | one confirmed boot record for the image in a slot (of each component) |
//! | boot stage | [`Slots::select`] ([`Slots::select_group`]) | trial: one record per boot (attempt count), or a rollback record; confirmed: nothing |
//! | application | [`Slots::begin_update`] ([`Slots::begin_component_update`]), [`Update::feed`], [`Update::finish`] | the inactive slot, and a checkpoint per target erase unit |
//! | application | [`Slots::resume`] | continues an update from its newest checkpoint |
//! | application | [`Slots::resume_or_begin`] | continues an update of a known patch from its checkpoint, or begins it (what `proto::device::install` calls) |
//! | application | [`Slots::activate`] ([`Slots::activate_group`]) | one boot record: the new image(s), on trial |
//! | application | [`Slots::confirm`] | one boot record: the images are confirmed, floors raised |
//!
//! ## Anti-rollback floor
//!
//! Each slot's image is recorded with the security counter of the patch
//! entry that made it ([`Installed::image`]). Each component has a
//! **floor**: [`Slots::confirm`] raises it to the running image's counter,
//! and nothing lowers it. [`Slots::activate`] refuses an image below the
//! floor ([`SlotError::Rollback`](crate::SlotError::Rollback)), and [`Slots::select`] never boots one nor
//! rolls back to one. The application passes [`BootRecord::floor`] to
//! `Applier::require_signature` as the minimum counter, so that an older
//! patch is refused before anything is written.
//!
//! ## Components
//!
//! A `Slots<P, S, N>` manages `N` components (the application, a data
//! partition, ...), each with its own slot pair, in one state area: one
//! boot record holds them all, so one record write activates, confirms or
//! rolls back every component at once. [`Slots::begin_component_update`]
//! applies one component's entries of a patch file (entries for the
//! others are skipped); [`Slots::activate_group`] activates what the
//! updates installed, all or nothing. The single-component API
//! ([`Slots::new`], [`Slots::select`], ...) is `N = 1`, and its methods
//! act on component 0 of a group.
//!
//! ## Resume and what a checkpoint costs
//!
//! An update stops each time the target is written up to another erase
//! unit boundary and appends a checkpoint: the component, the patch
//! ([`PatchId`], if the caller said which with [`Update::set_patch`]) and
//! the applier's whole state (the entry header, positions, the running
//! body CRC, the 128-byte input ring, the range decoder and the codec
//! model's context bytes and every probability — 2,388 bytes with codec
//! 3; a [`CHECKPOINT_LEN`] = 2,432-byte record). After a reset,
//! [`Slots::resume`] loads the newest one and reports the patch offset to
//! feed from (a patch streamed from the link: the sender re-sends from
//! there), and [`Slots::resume_or_begin`] does the same for a known patch
//! (a stored one: `proto::device::install`), or begins from the start if
//! the checkpoint is of another patch. Either way the target is rewritten
//! from the start of the erase unit that was in progress, so at most one
//! unit is written twice.
//!
//! Cost per checkpoint: 2,432 bytes programmed in 38 writes of at most 64
//! bytes (a small buffer, as it is on the stack under the decoder's
//! frames), and, when the current bank has no room for it (always, with
//! 4 KiB banks), one bank erase and a 128-byte copy of the boot record
//! before it. With 4 KiB erase units that is about as much flash work as
//! the target unit it protects (one erase and 2.4 KiB programmed against
//! one erase and 4 KiB), so an update costs roughly twice the flash time
//! of an update without checkpoints, and each of the two state-area banks
//! takes one erase per two target units. Larger banks make the erases
//! rarer (a bank of N KiB holds about N/2.5 checkpoints), and
//! [`Config::checkpoint_units`] trades rewrite-after-reset for fewer
//! checkpoints. `docs/RESUME.md` says what to choose. The CPU work
//! (serialising 2.5 KiB and a CRC over it) is small next to the flash
//! work. `tests/tests/golden.rs` pins the record sizes and the exact
//! erase and write counts of a small update.
//!
//! [`Slots::select`] never returns a slot whose image fails its size and
//! SHA-256 check or is below the floor. A trial image that has been booted
//! [`Config::max_boot_attempts`] times without a confirmation is rolled
//! back to the previous image, and [`Slots::state`] then reports
//! `rolled_back` to the application.

mod checkpoint;
mod either;
mod layout;
mod record;

// Loading the same files twice is the point: one source, two copies.
#[allow(clippy::duplicate_mod)]
/// The slot manager over blocking flash drivers (`embedded_storage`):
/// this directory's `manager.rs`, `update.rs` and `store.rs` as they are,
/// with every `async` and `.await` removed (`flashpatch_macros::blocking`).
#[path = "."]
pub(crate) mod blocking {
    use crate::apply::blocking::reads::{digest_of, sha256_of};
    use crate::apply::blocking::Applier;
    use embedded_storage::nor_flash::{MultiwriteNorFlash, NorFlash, ReadNorFlash};
    use flashpatch_macros::blocking as io;

    mod either_io;
    pub(crate) mod in_place;
    pub(crate) mod manager;
    mod store;
    pub(crate) mod update;
}

#[allow(clippy::duplicate_mod)]
/// The slot manager over async flash drivers (`embedded_storage_async`):
/// the same files, compiled as they are.
#[path = "."]
pub(crate) mod asynchronous {
    use crate::apply::asynch::reads::{digest_of, sha256_of};
    use crate::apply::asynch::Applier;
    use embedded_storage_async::nor_flash::{MultiwriteNorFlash, NorFlash, ReadNorFlash};
    use flashpatch_macros::asynchronous as io;

    mod either_io;
    pub(crate) mod manager;
    mod store;
    pub(crate) mod update;
}

/// The slot manager over async flash drivers
/// (`embedded_storage_async::nor_flash`, as embassy's HALs give): the same
/// types as this module's, with `async` methods where they touch flash.
/// Their logic is the blocking types' logic, compiled from the same source
/// (see `flashpatch-macros`).
///
/// ```
/// use core::cell::RefCell;
/// use flashpatch::mock::{MockFlash, Yielding};
/// use flashpatch::slots::{asynch::Slots, Config, Layout, Slot};
/// use flashpatch::{ApplierState, Outcome};
///
/// let old = b"Hello from version 1 of the firmware!\n".repeat(16);
/// let patch = include_bytes!("../../examples/data/hello.fpat");
/// const LAYOUT: Layout = Layout::new(4096, 0, 0x1000, 0x1000, 0x2000, 0x2000);
/// let mut chip = MockFlash::<1, 4, 4096>::new(0x4000);
/// chip.preload(0, &old);
/// let flash = RefCell::new(chip);
/// // Drivers that wait (return `Pending`) at every operation.
/// let open = || async {
///     let [a, b, state] = LAYOUT.partitions(&flash).unwrap();
///     let y = Yielding::new;
///     Slots::new(y(a), y(b), y(state), Config::default()).await.unwrap()
/// };
/// pollster::block_on(async {
///     open().await.provision(Slot::A, old.len() as u32).await.unwrap();
///     let mut slots = open().await;
///     let mut mem = ApplierState::new();
///     let mut update = slots.begin_update(&mut mem).await.unwrap();
///     update.feed(patch).await.unwrap();
///     let installed = update.finish().await.unwrap();
///     assert_eq!(installed.outcome, Outcome::Applied);
///     slots.activate(&installed).await.unwrap();
///     let boot = open().await.select().await.unwrap();
///     assert_eq!((boot.slot, boot.trial), (Slot::B, true));
/// });
/// ```
pub mod asynch {
    pub use super::asynchronous::manager::{Resumed, Slots};
    pub use super::asynchronous::update::Update;
}

pub use blocking::in_place::{in_place_checkpoint_len, InPlace, Rewrite, ViewError};
pub use blocking::manager::{Resumed, Slots};
pub use blocking::update::Update;
pub use checkpoint::{checkpoint_len, Installed, PatchId, CHECKPOINT_LEN};
pub use either::Either;
pub use layout::Layout;
pub use record::{boot_record_len, BootRecord, BootState, Component, Image, BOOT_RECORD_LEN};

/// Records are written and read in multiples of this many bytes on a state
/// area whose write and read sizes are at most 32 bytes (on larger ones,
/// in multiples of the larger of the two: [`record_align`]).
pub const RECORD_ALIGN: usize = 32;

/// The largest write or read size of a state area: records are then
/// aligned to 64 bytes.
pub const MAX_RECORD_ALIGN: usize = 64;

/// The alignment of records (their offsets and lengths) in a state area of
/// type `S`: the largest of [`RECORD_ALIGN`], `S::WRITE_SIZE` and
/// `S::READ_SIZE`, so that every record is written and read in whole
/// units. 32 bytes on flash with write and read sizes up to 32 bytes.
pub const fn record_align<S: embedded_storage::nor_flash::NorFlash>() -> usize {
    align_for(S::WRITE_SIZE, S::READ_SIZE)
}

/// [`record_align`] of a state area with these write and read sizes.
pub const fn align_for(write_size: usize, read_size: usize) -> usize {
    let a = if write_size > RECORD_ALIGN {
        write_size
    } else {
        RECORD_ALIGN
    };
    if read_size > a {
        read_size
    } else {
        a
    }
}

/// `len` rounded up to a multiple of `align`.
pub(crate) const fn aligned(len: usize, align: usize) -> usize {
    len.div_ceil(align) * align
}

/// One of the two image slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Slot {
    /// The first slot.
    A,
    /// The second slot.
    B,
}

impl Slot {
    /// The other slot.
    pub const fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    const fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }
}

/// Settings of the slot manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Boots a trial image gets without a confirmation before it is rolled
    /// back (at least 1).
    pub max_boot_attempts: u8,
    /// An update appends a checkpoint each time this many more target
    /// erase units are written (0: no checkpoints). A reset then costs at
    /// most this many erase units of target rewritten.
    pub checkpoint_units: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_boot_attempts: 3,
            checkpoint_units: 1,
        }
    }
}

/// What the boot stage should start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Boot {
    /// The slot to boot; its image has been verified.
    pub slot: Slot,
    /// Whether the image is on trial (the application must confirm it).
    pub trial: bool,
    /// Whether a trial image was rolled back to reach this one.
    pub rolled_back: bool,
}

/// What the boot stage should start, for every component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GroupBoot<const N: usize> {
    /// Each component's slot; its image (if one is recorded) has been
    /// verified.
    pub slots: [Slot; N],
    /// Whether an activation is on trial (the application must confirm it).
    pub trial: bool,
    /// Whether a trial was rolled back to reach this state.
    pub rolled_back: bool,
}

//! A/B slots: two image slots and a state area, atomic activation, trial
//! boot with automatic rollback, and updates that resume after a reset.
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
//!  a bank: | record | record | record | ... | 0xFF ... |
//!  record: +0 4 magic "FPSR"   +4 1 kind (1 boot, 2 checkpoint)  +5 1 version (1)
//!          +6 2 length L (a multiple of 32)  +8 4 sequence  +12 4 generation
//!          +16 .. body          L-4 4 CRC-32 of bytes 0..L-4
//!
//!  boot record body (L = 96):
//!          +16 1 active slot (0 A, 1 B)   +17 1 state (1 trial, 2 confirmed)
//!          +18 1 boot attempts            +19 1 flags (bit 0: rolled back)
//!          +20 4 slot A image size  +24 32 slot A image SHA-256   (size 0: none)
//!          +56 4 slot B image size  +60 32 slot B image SHA-256
//!          +92 4 CRC-32
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
//! | factory | [`Slots::provision`] | one confirmed boot record for the image in a slot |
//! | boot stage | [`Slots::select`] | trial: one record per boot (attempt count), or a rollback record; confirmed: nothing |
//! | application | [`Slots::begin_update`], [`Update::feed`], [`Update::finish`] | the inactive slot, and a checkpoint per target erase unit |
//! | application | [`Slots::resume`] | continues an update from its newest checkpoint |
//! | application | [`Slots::activate`] | one boot record: the new image, on trial |
//! | application | [`Slots::confirm`] | one boot record: the image is confirmed |
//!
//! ## Resume and what a checkpoint costs
//!
//! An update stops each time the target is written up to another erase
//! unit boundary and appends a checkpoint: the applier's whole state (the
//! entry header, positions, the running body CRC, the 256-byte input
//! ring, the range decoder and the codec model's context bytes and every
//! probability — 2,500 bytes with codec 3, a [`CHECKPOINT_LEN`] = 2,528-byte
//! record). After a reset, [`Slots::resume`] loads the newest one and
//! reports the patch offset to feed from; the target is rewritten from the
//! start of the erase unit that was in progress, so at most one unit is
//! written twice.
//!
//! Cost per checkpoint: 2,528 bytes programmed in 40 writes of at most 64
//! bytes (a small buffer, as it is on the stack under the decoder's
//! frames), and, when the current bank has no room for it (always, with
//! 4 KiB banks), one bank erase and a 96-byte copy of the boot record
//! before it. With 4 KiB erase units that is about as much flash work as
//! the target unit it protects (one erase and ~2.5 KiB programmed against
//! one erase and 4 KiB), so an update costs roughly twice the flash time
//! of an update without checkpoints, and each of the two state-area banks
//! takes one erase per two target units. Larger banks make the erases
//! rarer (a bank of N KiB holds about N/2.5 checkpoints), and
//! [`Config::checkpoint_units`] trades rewrite-after-reset for fewer
//! checkpoints. The CPU work (serialising 2.5 KiB and a CRC over it) is
//! small next to the flash work. `tests/tests/golden.rs` pins the record
//! sizes and the exact erase and write counts of a small update.
//!
//! [`Slots::select`] never returns a slot whose image fails its size and
//! SHA-256 check. A trial image that has been booted
//! [`Config::max_boot_attempts`] times without a confirmation is rolled
//! back to the previous image, and [`Slots::state`] then reports
//! `rolled_back` to the application.

mod record;
mod store;
mod update;

use embedded_storage::nor_flash::NorFlash;

use crate::apply::io::sha256_of;
use crate::error::Error;
use crate::ApplierState;
use store::Store;

pub use record::{BootRecord, Image, BOOT_RECORD_LEN};
pub use update::{Installed, Update, CHECKPOINT_LEN};

/// Records are written and read in multiples of this many bytes.
pub const RECORD_ALIGN: usize = 32;

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

/// Where the slots and the state area lie in one flash, checked when it
/// is built in a `const` (so a bad layout fails the build).
///
/// ```
/// use flashpatch::slots::Layout;
/// const LAYOUT: Layout = Layout::new(4096, 0x1_0000, 0x4_0000, 0x5_0000, 0x9_0000, 0x2000);
/// assert_eq!(LAYOUT.slot_b, 0x5_0000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Start of slot A.
    pub slot_a: u32,
    /// Start of slot B.
    pub slot_b: u32,
    /// Bytes of each slot.
    pub slot_size: u32,
    /// Start of the state area.
    pub state: u32,
    /// Bytes of the state area.
    pub state_size: u32,
}

impl Layout {
    /// A layout for a flash with `erase` bytes per erase unit: slot A at
    /// `slot_a`, slot B at `slot_b`, both `slot_size` bytes, the state area
    /// at `state`, `state_size` bytes. Panics (at compile time in a
    /// `const`) if anything is misaligned, the three overlap, or the state
    /// area has fewer than two erase units.
    pub const fn new(
        erase: u32,
        slot_a: u32,
        slot_size: u32,
        slot_b: u32,
        state: u32,
        state_size: u32,
    ) -> Layout {
        assert!(erase > 0, "erase size is zero");
        assert!(
            slot_a.is_multiple_of(erase)
                && slot_b.is_multiple_of(erase)
                && state.is_multiple_of(erase),
            "a region does not start on an erase unit"
        );
        assert!(
            slot_size.is_multiple_of(erase) && state_size.is_multiple_of(erase),
            "a region is not a whole number of erase units"
        );
        assert!(slot_size > 0, "empty slots");
        assert!(
            state_size >= 2 * erase,
            "the state area needs two erase units"
        );
        const fn disjoint(a: u32, al: u32, b: u32, bl: u32) -> bool {
            a as u64 + al as u64 <= b as u64 || b as u64 + bl as u64 <= a as u64
        }
        assert!(
            disjoint(slot_a, slot_size, slot_b, slot_size)
                && disjoint(slot_a, slot_size, state, state_size)
                && disjoint(slot_b, slot_size, state, state_size),
            "regions overlap"
        );
        Layout {
            slot_a,
            slot_b,
            slot_size,
            state,
            state_size,
        }
    }

    /// The three regions as partitions of `flash`: slot A, slot B, state
    /// area. `None` if they do not fit the flash or its erase size.
    pub fn partitions<'a, F: NorFlash>(
        &self,
        flash: &'a core::cell::RefCell<F>,
    ) -> Option<[crate::Partition<'a, F>; 3]> {
        use crate::Partition;
        Some([
            Partition::new(flash, self.slot_a, self.slot_size)?,
            Partition::new(flash, self.slot_b, self.slot_size)?,
            Partition::new(flash, self.state, self.state_size)?,
        ])
    }
}

/// An update continued from a checkpoint by [`Slots::resume`].
pub struct Resumed<'s, P, S> {
    /// The update, ready for the rest of the patch.
    pub update: Update<'s, P, S>,
    /// The patch offset to feed from: the sender re-sends `patch[offset..]`.
    pub offset: u32,
    /// The image the interrupted update makes. If the patch on offer now is
    /// for another target, drop this and [`Slots::begin_update`] instead.
    pub target: crate::format::TargetId,
}

/// The two slots and the state area. Build one at every start (boot stage
/// or application) with [`Slots::new`]; it reads the state area once.
pub struct Slots<P, S> {
    slots: [P; 2],
    store: Store<S>,
    config: Config,
}

type Res<T, E> = Result<T, Error<E>>;

impl<P, S> Slots<P, S>
where
    P: NorFlash,
    S: NorFlash<Error = P::Error>,
{
    /// The slot manager over slot A, slot B and the state area. Reads the
    /// state area. [`Error::StateArea`] if the state area cannot hold two
    /// banks (each a whole number of erase units, at least
    /// [`Slots::MIN_BANK`] bytes).
    pub fn new(a: P, b: P, state: S, config: Config) -> Res<Self, P::Error> {
        const {
            assert!(RECORD_ALIGN.is_multiple_of(S::WRITE_SIZE));
            assert!(RECORD_ALIGN.is_multiple_of(S::READ_SIZE));
            assert!(S::ERASE_SIZE.is_multiple_of(RECORD_ALIGN));
        }
        Ok(Slots {
            slots: [a, b],
            store: Store::open(state, Self::MIN_BANK)?,
            config,
        })
    }

    /// The smallest bank: a boot record and a checkpoint.
    pub const MIN_BANK: u32 = (BOOT_RECORD_LEN + update::CHECKPOINT_LEN) as u32;

    /// The boot state: the newest valid boot record, if any.
    pub fn state(&self) -> Option<BootRecord> {
        self.store.boot()
    }

    /// The slot the boot state says runs (A before provisioning).
    pub fn active(&self) -> Slot {
        self.state().map(|r| r.active).unwrap_or(Slot::A)
    }

    /// Gives the flashes back: slot A, slot B, state area.
    pub fn into_parts(self) -> (P, P, S) {
        let [a, b] = self.slots;
        (a, b, self.store.flash)
    }

    /// Whether `slot` holds `image` (size and SHA-256).
    pub fn holds(&mut self, slot: Slot, image: &Image) -> Res<bool, P::Error> {
        let flash = &mut self.slots[slot.index()];
        if image.size == 0 || image.size as usize > flash.capacity() {
            return Ok(false);
        }
        let mut buf = [0u8; 128];
        let sha = sha256_of(flash, &mut buf, image.size).map_err(Error::Flash)?;
        Ok(sha == image.sha256)
    }

    /// Factory step: records the first `size` bytes of `slot` as the
    /// confirmed, running image. Only allowed while the state area holds
    /// no boot record ([`Error::SlotState`] otherwise).
    pub fn provision(&mut self, slot: Slot, size: u32) -> Res<(), P::Error> {
        if self.state().is_some() {
            return Err(Error::SlotState);
        }
        let flash = &mut self.slots[slot.index()];
        if size == 0 || size as usize > flash.capacity() {
            return Err(Error::NoBootableImage);
        }
        let mut buf = [0u8; 128];
        let sha256 = sha256_of(flash, &mut buf, size).map_err(Error::Flash)?;
        let mut images = [Image::NONE; 2];
        images[slot.index()] = Image { size, sha256 };
        self.store.write_boot(&BootRecord {
            active: slot,
            trial: false,
            attempts: 0,
            rolled_back: false,
            images,
            gen: 1,
        })
    }

    /// Boot stage: the slot to start. Verifies the image first and never
    /// returns a slot whose image fails. A trial image is counted (one
    /// record write) before it is returned; after
    /// [`Config::max_boot_attempts`] unconfirmed boots, or if it fails
    /// verification, the previous image is made active again (one record
    /// write) and returned with `rolled_back` set.
    pub fn select(&mut self) -> Res<Boot, P::Error> {
        let rec = self.state().ok_or(Error::NoBootRecord)?;
        let act = rec.active;
        let good = self.holds(act, &rec.images[act.index()])?;
        if rec.trial {
            if good && rec.attempts < self.config.max_boot_attempts.max(1) {
                let next = BootRecord {
                    attempts: rec.attempts + 1,
                    gen: rec.gen.wrapping_add(1),
                    ..rec
                };
                self.store.write_boot(&next)?;
                return Ok(Boot {
                    slot: act,
                    trial: true,
                    rolled_back: false,
                });
            }
            if self.fall_back(&rec)? {
                return Ok(Boot {
                    slot: act.other(),
                    trial: false,
                    rolled_back: true,
                });
            }
            // The previous image is gone too: a verified trial image is
            // better than nothing.
            return match good {
                true => Ok(Boot {
                    slot: act,
                    trial: true,
                    rolled_back: false,
                }),
                false => Err(Error::NoBootableImage),
            };
        }
        if good {
            return Ok(Boot {
                slot: act,
                trial: false,
                rolled_back: rec.rolled_back,
            });
        }
        // The confirmed image is damaged: the other one, if it is whole.
        if self.fall_back(&rec)? {
            return Ok(Boot {
                slot: act.other(),
                trial: false,
                rolled_back: true,
            });
        }
        Err(Error::NoBootableImage)
    }

    /// Makes the other slot active and confirmed, if its image verifies.
    fn fall_back(&mut self, rec: &BootRecord) -> Res<bool, P::Error> {
        let prev = rec.active.other();
        if !self.holds(prev, &rec.images[prev.index()])? {
            return Ok(false);
        }
        let mut images = rec.images;
        images[rec.active.index()] = Image::NONE;
        self.store.write_boot(&BootRecord {
            active: prev,
            trial: false,
            attempts: 0,
            rolled_back: true,
            images,
            gen: rec.gen.wrapping_add(1),
        })?;
        Ok(true)
    }

    /// Application: the image it runs works; a trial becomes confirmed (one
    /// record write). Nothing is written if it is confirmed already.
    pub fn confirm(&mut self) -> Res<(), P::Error> {
        let rec = self.state().ok_or(Error::NoBootRecord)?;
        if !rec.trial {
            return Ok(());
        }
        self.store.write_boot(&BootRecord {
            trial: false,
            attempts: 0,
            gen: rec.gen.wrapping_add(1),
            ..rec
        })
    }

    /// Application: starts writing a new image into the inactive slot,
    /// from a patch against the active one. The running image must be
    /// confirmed ([`Error::SlotState`] otherwise). Checkpoints are
    /// written as [`Config::checkpoint_units`] says, so that
    /// [`Slots::resume`] can continue after a reset. The applier works in
    /// `state`, which the caller keeps (a `static` on a device): the
    /// update itself is small.
    pub fn begin_update<'s>(
        &'s mut self,
        state: &'s mut ApplierState,
    ) -> Res<Update<'s, P, S>, P::Error> {
        let rec = self.state().ok_or(Error::NoBootRecord)?;
        let every = self.config.checkpoint_units;
        if rec.trial {
            return Err(Error::SlotState);
        }
        let [a, b] = &mut self.slots;
        let (source, target) = match rec.active {
            Slot::A => (a, b),
            Slot::B => (b, a),
        };
        Ok(Update::new(
            source,
            target,
            &mut self.store,
            rec.active,
            rec.images[rec.active.index()],
            every,
            state,
        ))
    }

    /// Application, after a reset: continues the update the newest
    /// checkpoint belongs to. Returns it with the patch offset from which
    /// to feed again (the sender re-sends only from there), or `None` if
    /// there is nothing to resume (then [`Slots::begin_update`] and feed
    /// from 0). At most one erase unit of target (with the default
    /// [`Config::checkpoint_units`]) is written again.
    pub fn resume<'s>(
        &'s mut self,
        state: &'s mut ApplierState,
    ) -> Res<Option<Resumed<'s, P, S>>, P::Error> {
        if self.store.checkpoint.is_none() || self.state().is_none_or(|r| r.trial) {
            return Ok(None);
        }
        let mut up = self.begin_update(state)?;
        Ok(up.load()?.map(|offset| Resumed {
            target: up.target(),
            update: up,
            offset,
        }))
    }

    /// Application: makes the image [`Update::finish`] reported the one to
    /// boot next, on trial. Checks the slot's image first. One record
    /// write; nothing if the image is the one running already.
    #[inline(never)]
    pub fn activate(&mut self, installed: &Installed) -> Res<(), P::Error> {
        let rec = self.state().ok_or(Error::NoBootRecord)?;
        if installed.slot == rec.active {
            return Ok(());
        }
        if rec.trial {
            return Err(Error::SlotState);
        }
        if !self.holds(installed.slot, &installed.image)? {
            return Err(Error::TargetMismatch);
        }
        let mut images = rec.images;
        images[installed.slot.index()] = installed.image;
        self.store.write_boot(&BootRecord {
            active: installed.slot,
            trial: true,
            attempts: 0,
            rolled_back: false,
            images,
            gen: rec.gen.wrapping_add(1),
        })
    }
}

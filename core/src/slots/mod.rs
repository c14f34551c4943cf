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
//! | application | [`Slots::activate`] ([`Slots::activate_group`]) | one boot record: the new image(s), on trial |
//! | application | [`Slots::confirm`] | one boot record: the images are confirmed, floors raised |
//!
//! ## Anti-rollback floor
//!
//! Each slot's image is recorded with the security counter of the patch
//! entry that made it ([`Installed::image`]). Each component has a
//! **floor**: [`Slots::confirm`] raises it to the running image's counter,
//! and nothing lowers it. [`Slots::activate`] refuses an image below the
//! floor ([`Error::Rollback`]), and [`Slots::select`] never boots one nor
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
//! body CRC, the 256-byte input ring, the range decoder and the codec
//! model's context bytes and every probability — 2,504 bytes with codec
//! 3; a [`CHECKPOINT_LEN`] = 2,560-byte record). After a reset,
//! [`Slots::resume`] loads the newest one and reports the patch offset to
//! feed from (a patch streamed from the link: the sender re-sends from
//! there), and [`Slots::resume_or_begin`] does the same for a known patch
//! (a stored one: `proto::device::install`), or begins from the start if
//! the checkpoint is of another patch. Either way the target is rewritten
//! from the start of the erase unit that was in progress, so at most one
//! unit is written twice.
//!
//! Cost per checkpoint: 2,560 bytes programmed in 40 writes of at most 64
//! bytes (a small buffer, as it is on the stack under the decoder's
//! frames), and, when the current bank has no room for it (always, with
//! 4 KiB banks), one bank erase and a 128-byte copy of the boot record
//! before it. With 4 KiB erase units that is about as much flash work as
//! the target unit it protects (one erase and 2.5 KiB programmed against
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

mod layout;
mod record;
mod store;
mod update;

use embedded_storage::nor_flash::NorFlash;

use crate::apply::blocking::reads::sha256_of;
use crate::error::{FlashError, FlashRole, SlotError as Error};
use crate::ApplierState;
use store::Store;

pub use layout::Layout;
pub use record::{boot_record_len, BootRecord, BootState, Component, Image, BOOT_RECORD_LEN};
pub use update::{checkpoint_len, Installed, PatchId, Update, CHECKPOINT_LEN};

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
pub const fn record_align<S: NorFlash>() -> usize {
    let a = if S::WRITE_SIZE > RECORD_ALIGN {
        S::WRITE_SIZE
    } else {
        RECORD_ALIGN
    };
    if S::READ_SIZE > a {
        S::READ_SIZE
    } else {
        a
    }
}

/// `len` rounded up to a multiple of `align`.
const fn aligned(len: usize, align: usize) -> usize {
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

/// An update continued from a checkpoint by [`Slots::resume`].
pub struct Resumed<'s, P, S, const N: usize = 1> {
    /// The update, ready for the rest of the patch.
    pub update: Update<'s, P, S, N>,
    /// The component it updates.
    pub component: u8,
    /// The patch offset to feed from: the sender re-sends `patch[offset..]`.
    pub offset: u32,
    /// The image the interrupted update makes. If the patch on offer now is
    /// for another target, drop this and [`Slots::begin_update`] instead.
    pub target: crate::format::TargetId,
    /// The patch the interrupted update was fed ([`PatchId::UNKNOWN`] if
    /// its caller did not say, [`Update::set_patch`]).
    pub patch: PatchId,
}

/// The slot pairs of `N` components (one by default: slot A and slot B)
/// and the state area. Build one at every start (boot stage or
/// application) with [`Slots::new`] or [`Slots::new_group`]; it reads the
/// state area once.
///
/// A whole update, from the factory to a confirmed new image:
///
/// ```
/// use core::cell::RefCell;
/// use flashpatch::mock::MockFlash;
/// use flashpatch::slots::{Config, Layout, Slot, Slots};
/// use flashpatch::{ApplierState, Partition};
///
/// let old = b"Hello from version 1 of the firmware!\n".repeat(16);
/// let patch = include_bytes!("../../examples/data/hello.fpat");
/// // Slots of 4 KiB at 0 and 0x1000, a state area of two 4 KiB banks.
/// const LAYOUT: Layout = Layout::new(4096, 0, 0x1000, 0x1000, 0x2000, 0x2000);
/// let mut chip = MockFlash::<1, 4, 4096>::new(0x4000);
/// chip.preload(0, &old);
/// let flash = RefCell::new(chip);
/// let open = || {
///     let [a, b, state] = LAYOUT.partitions(&flash).unwrap();
///     Slots::new(a, b, state, Config::default()).unwrap()
/// };
///
/// // The factory records the image in slot A.
/// open().provision(Slot::A, old.len() as u32).unwrap();
/// // The application applies a patch into slot B and activates it.
/// let mut slots = open();
/// let mut mem = ApplierState::new();
/// let mut update = slots.begin_update(&mut mem).unwrap();
/// for chunk in patch.chunks(32) {
///     update.feed(chunk).unwrap();
/// }
/// let installed = update.finish().unwrap();
/// slots.activate(&installed).unwrap();
/// // After the reset, the boot stage starts slot B on trial...
/// let boot = open().select().unwrap();
/// assert_eq!((boot.slot, boot.trial), (Slot::B, true));
/// // ...and the new image, once it runs well, confirms itself.
/// open().confirm().unwrap();
/// assert!(!open().select().unwrap().trial);
/// ```
pub struct Slots<P, S, const N: usize = 1> {
    slots: [[P; 2]; N],
    store: Store<S, N>,
    config: Config,
}

type Res<T> = Result<T, Error>;

impl<P, S> Slots<P, S>
where
    P: NorFlash,
    S: NorFlash,
{
    /// The slot manager over slot A, slot B and the state area. Reads the
    /// state area. [`Error::StateArea`] if the state area cannot hold two
    /// banks (each a whole number of erase units, at least
    /// [`Slots::MIN_BANK`] bytes).
    pub fn new(a: P, b: P, state: S, config: Config) -> Res<Self> {
        Self::new_group([[a, b]], state, config)
    }

    /// Gives the flashes back: slot A, slot B, state area.
    pub fn into_parts(self) -> (P, P, S) {
        let ([[a, b]], s) = self.into_group_parts();
        (a, b, s)
    }

    /// Factory step: records the first `size` bytes of `slot` as the
    /// confirmed, running image (security counter 0, floor 0). Only
    /// allowed while the state area holds no boot record
    /// ([`Error::SlotState`] otherwise).
    pub fn provision(&mut self, slot: Slot, size: u32) -> Res<()> {
        self.provision_group([(slot, size)])
    }
}

impl<P, S, const N: usize> Slots<P, S, N>
where
    P: NorFlash,
    S: NorFlash,
{
    /// The slot manager over the slot pairs of `N` components (`[A, B]`
    /// each) and the state area, which holds the boot state of all of
    /// them. Reads the state area; [`Error::StateArea`] as [`Slots::new`].
    /// The boot stage and the application must use the same `N`.
    pub fn new_group(pairs: [[P; 2]; N], state: S, config: Config) -> Res<Self> {
        const {
            let align = record_align::<S>();
            assert!(
                align <= MAX_RECORD_ALIGN,
                "state area write and read sizes up to 64 bytes"
            );
            assert!(align.is_multiple_of(S::WRITE_SIZE));
            assert!(align.is_multiple_of(S::READ_SIZE));
            assert!(S::ERASE_SIZE.is_multiple_of(align));
        }
        Ok(Slots {
            slots: pairs,
            store: Store::open(state, Self::MIN_BANK)?,
            config,
        })
    }

    /// The smallest bank: a boot record and a checkpoint (each rounded up
    /// to the [`record_align`] of `S`).
    pub const MIN_BANK: u32 = (aligned(boot_record_len(N), record_align::<S>())
        + update::checkpoint_len(record_align::<S>())) as u32;

    /// The boot state of every component: the newest valid boot record,
    /// if any.
    pub fn boot_state(&self) -> Option<BootState<N>> {
        self.store.boot()
    }

    /// The boot state as component 0 (the one a single-component device
    /// has) sees it: the newest valid boot record, if any. Its `floor` is
    /// the minimum security counter to require of the next patch.
    pub fn state(&self) -> Option<BootRecord> {
        self.store.boot().and_then(|s| s.record(0))
    }

    /// The slot the boot state says component 0 runs (A before
    /// provisioning).
    pub fn active(&self) -> Slot {
        self.state().map(|r| r.active).unwrap_or(Slot::A)
    }

    /// Gives the flashes back: the slot pairs and the state area.
    pub fn into_group_parts(self) -> ([[P; 2]; N], S) {
        (self.slots, self.store.flash)
    }

    /// Whether `slot` of component 0 holds `image` (size and SHA-256).
    pub fn holds(&mut self, slot: Slot, image: &Image) -> Res<bool> {
        self.holds_in(0, slot, image)
    }

    /// Whether `slot` of `component` holds `image` (size and SHA-256).
    /// Not inlined: its read buffer and digest are on the stack only while
    /// it runs.
    #[inline(never)]
    pub fn holds_in(&mut self, component: usize, slot: Slot, image: &Image) -> Res<bool> {
        let Some(pair) = self.slots.get_mut(component) else {
            return Ok(false);
        };
        let flash = &mut pair[slot.index()];
        if image.size == 0 || image.size as usize > flash.capacity() {
            return Ok(false);
        }
        let mut buf = [0u8; 64];
        let sha = sha256_of(flash, &mut buf, image.size).map_err(|e| {
            // The running image's slot is the source of an update.
            let running = self.store.boot().map(|r| r.components[component].active);
            let role = match running {
                Some(s) if s != slot => FlashRole::Target,
                _ => FlashRole::Source,
            };
            FlashError::new(role, e)
        })?;
        Ok(sha == image.sha256)
    }

    /// Whether `slot` of component `k` may be booted with `image`
    /// recorded: the image verifies and its counter is not below `floor`.
    fn bootable(&mut self, k: usize, slot: Slot, image: &Image, floor: u32) -> Res<bool> {
        Ok(image.counter >= floor && self.holds_in(k, slot, image)?)
    }

    /// Factory step: for each component, records the first `size` bytes
    /// of its `slot` as its confirmed, running image (counter 0, floor 0).
    /// Size 0 leaves a component other than 0 empty: nothing to verify at
    /// boot, until an update (a full image) fills it. Only allowed while
    /// the state area holds no boot record ([`Error::SlotState`]).
    pub fn provision_group(&mut self, images: [(Slot, u32); N]) -> Res<()> {
        if self.store.boot().is_some() {
            return Err(Error::SlotState);
        }
        let mut components = [Component::EMPTY; N];
        for (k, (slot, size)) in images.into_iter().enumerate() {
            let flash = &mut self.slots[k][slot.index()];
            components[k].active = slot;
            if size == 0 && k > 0 {
                continue;
            }
            if size == 0 || size as usize > flash.capacity() {
                return Err(Error::NoBootableImage);
            }
            let mut buf = [0u8; 64];
            let sha256 =
                sha256_of(flash, &mut buf, size).map_err(FlashError::of(FlashRole::Source))?;
            components[k].images[slot.index()] = Image {
                size,
                sha256,
                counter: 0,
            };
        }
        self.store.write_boot(&BootState {
            trial: false,
            attempts: 0,
            rolled_back: false,
            gen: 1,
            components,
        })
    }

    /// Boot stage: the slot to start (component 0's, for a group see
    /// [`Slots::select_group`]). Verifies the image first and never
    /// returns a slot whose image fails its size and SHA-256 check or has a
    /// security counter below the recorded floor. A trial image is counted
    /// (one record write) before it is returned; after
    /// [`Config::max_boot_attempts`] unconfirmed boots, or if it fails
    /// verification, the previous image is made active again (one record
    /// write) and returned with `rolled_back` set.
    pub fn select(&mut self) -> Res<Boot> {
        let g = self.select_group()?;
        Ok(Boot {
            slot: g.slots[0],
            trial: g.trial,
            rolled_back: g.rolled_back,
        })
    }

    /// Boot stage, for every component: as [`Slots::select`], over all of
    /// them at once. Each component's active image (where one is
    /// recorded) must verify and be at or above its floor. A trial is
    /// counted once for all; a rollback (attempts used up, or a component
    /// that fails) switches back every component the trial switched, and
    /// any damaged one, in one record write, provided each previous image
    /// verifies and is at or above its floor.
    pub fn select_group(&mut self) -> Res<GroupBoot<N>> {
        let rec = self.store.boot().ok_or(Error::NoBootRecord)?;
        let mut good = [true; N];
        for (k, c) in rec.components.iter().enumerate() {
            let empty = k > 0 && c.image().size == 0;
            good[k] = empty || self.bootable(k, c.active, &c.image(), c.floor)?;
        }
        let all = good.iter().all(|g| *g);
        let boot = |s: &BootState<N>, trial, rolled_back| GroupBoot {
            slots: s.components.map(|c| c.active),
            trial,
            rolled_back,
        };
        if rec.trial {
            if all && rec.attempts < self.config.max_boot_attempts.max(1) {
                self.store.write_boot(&BootState {
                    attempts: rec.attempts + 1,
                    gen: rec.gen.wrapping_add(1),
                    ..rec
                })?;
                return Ok(boot(&rec, true, false));
            }
            if let Some(back) = self.fall_back(&rec, &good)? {
                return Ok(boot(&back, false, true));
            }
            // The previous images are gone too: verified trial images are
            // better than nothing.
            return match all {
                true => Ok(boot(&rec, true, false)),
                false => Err(Error::NoBootableImage),
            };
        }
        if all {
            return Ok(boot(&rec, false, rec.rolled_back));
        }
        // A confirmed image is damaged: the other one, if it is whole.
        if let Some(back) = self.fall_back(&rec, &good)? {
            return Ok(boot(&back, false, true));
        }
        Err(Error::NoBootableImage)
    }

    /// Switches back every component on trial and every one that is not
    /// `good`, confirmed, if each previous image may be booted; writes
    /// that state and returns it, or `None` (nothing written).
    fn fall_back(&mut self, rec: &BootState<N>, good: &[bool; N]) -> Res<Option<BootState<N>>> {
        let mut next = BootState {
            trial: false,
            attempts: 0,
            rolled_back: true,
            gen: rec.gen.wrapping_add(1),
            components: rec.components,
        };
        for (k, c) in rec.components.iter().enumerate() {
            next.components[k].on_trial = false;
            if (rec.trial && c.on_trial) || !good[k] {
                let prev = c.active.other();
                if !self.bootable(k, prev, &c.images[prev.index()], c.floor)? {
                    return Ok(None);
                }
                next.components[k].images[c.active.index()] = Image::NONE;
                next.components[k].active = prev;
            }
        }
        self.store.write_boot(&next)?;
        Ok(Some(next))
    }

    /// Application: the images it runs work; a trial becomes confirmed
    /// (one record write, for every component), and each component's
    /// floor rises to its active image's security counter (it never
    /// falls). Nothing is written if the state is confirmed already.
    pub fn confirm(&mut self) -> Res<()> {
        let rec = self.store.boot().ok_or(Error::NoBootRecord)?;
        if !rec.trial {
            return Ok(());
        }
        let mut next = BootState {
            trial: false,
            attempts: 0,
            gen: rec.gen.wrapping_add(1),
            ..rec
        };
        for c in next.components.iter_mut() {
            c.on_trial = false;
            c.floor = c.floor.max(c.image().counter);
        }
        self.store.write_boot(&next)
    }

    /// Application: starts writing a new image of component 0 into its
    /// inactive slot, as [`Slots::begin_component_update`].
    pub fn begin_update<'s>(&'s mut self, state: &'s mut ApplierState) -> Res<Update<'s, P, S, N>> {
        self.begin_component_update(0, state)
    }

    /// Application: starts writing a new image of `component` into its
    /// inactive slot, from a patch against its active one; the applier
    /// skips entries for other components. Nothing may be on trial
    /// ([`Error::SlotState`] otherwise, or for a component past the last).
    /// Checkpoints are written as [`Config::checkpoint_units`] says, so
    /// that [`Slots::resume`] can continue after a reset. The applier
    /// works in `state`, which the caller keeps (a `static` on a device):
    /// the update itself is small.
    pub fn begin_component_update<'s>(
        &'s mut self,
        component: u8,
        state: &'s mut ApplierState,
    ) -> Res<Update<'s, P, S, N>> {
        let rec = self.store.boot().ok_or(Error::NoBootRecord)?;
        let every = self.config.checkpoint_units;
        let c = match rec.components.get(component as usize) {
            Some(c) if !rec.trial => *c,
            _ => return Err(Error::SlotState),
        };
        let [a, b] = &mut self.slots[component as usize];
        let (source, target) = match c.active {
            Slot::A => (a, b),
            Slot::B => (b, a),
        };
        Ok(Update::new(
            source,
            target,
            &mut self.store,
            component,
            (c.active, c.image()),
            every,
            state,
        ))
    }

    /// Application, after a reset: continues the update the newest
    /// checkpoint belongs to (whatever its component). Returns it with the
    /// patch offset from which to feed again (the sender re-sends only
    /// from there), or `None` if there is nothing to resume (then
    /// [`Slots::begin_update`] and feed from 0). At most one erase unit of
    /// target (with the default [`Config::checkpoint_units`]) is written
    /// again.
    pub fn resume<'s>(
        &'s mut self,
        state: &'s mut ApplierState,
    ) -> Res<Option<Resumed<'s, P, S, N>>> {
        if self.store.checkpoint.is_none() || self.store.boot().is_none_or(|r| r.trial) {
            return Ok(None);
        }
        // A checkpoint's body starts with the component it is for.
        let mut c = [0u8; 1];
        if let Some(mut r) = self.store.checkpoint_reader() {
            r.read(&mut c);
            if let Some(e) = r.err {
                return Err(FlashError::new(FlashRole::State, e).into());
            }
        }
        let component = c[0];
        if component as usize >= N {
            self.store.drop_checkpoint();
            return Ok(None);
        }
        let mut up = self.begin_component_update(component, state)?;
        Ok(up.load()?.map(|offset| Resumed {
            target: up.target(),
            patch: up.patch(),
            component,
            update: up,
            offset,
        }))
    }

    /// Application: an update of `component` with `patch` (its size and
    /// CRC-32, known and not [`PatchId::UNKNOWN`]), continued from the
    /// newest checkpoint if that checkpoint is of an update of the same
    /// component with the same patch, else begun from the start. Returns
    /// it with the patch offset to feed from (0 when begun). This is what
    /// an install from a stored patch calls: after a reset during the
    /// apply, at most [`Config::checkpoint_units`] erase units of target
    /// are written again, not the whole image.
    pub fn resume_or_begin<'s>(
        &'s mut self,
        component: u8,
        patch: PatchId,
        state: &'s mut ApplierState,
    ) -> Res<(Update<'s, P, S, N>, u32)> {
        let usable = self.store.boot().is_some_and(|r| !r.trial) && patch != PatchId::UNKNOWN;
        let mut ours = false;
        if let (true, Some(mut r)) = (usable, self.store.checkpoint_reader()) {
            ours = update::checkpoint_for(&mut r) == Some((component, patch));
            if let Some(e) = r.err {
                return Err(FlashError::new(FlashRole::State, e).into());
            }
        }
        let mut up = self.begin_component_update(component, state)?;
        let offset = match ours {
            true => up.load()?.unwrap_or(0),
            false => 0,
        };
        up.set_patch(patch);
        Ok((up, offset))
    }

    /// Application: makes the image [`Update::finish`] reported the one to
    /// boot next, on trial, as [`Slots::activate_group`] with one image.
    pub fn activate(&mut self, installed: &Installed) -> Res<()> {
        self.activate_group(core::slice::from_ref(installed))
    }

    /// Application: makes the images [`Update::finish`] reported (at most
    /// one per component) the ones to boot next, all on trial together:
    /// **one record write** switches every component whose image is not
    /// the running one, so a reset at any instant leaves all of them old
    /// or all new. Checks each slot's image first ([`Error::ImageMismatch`])
    /// and its security counter against the component's floor
    /// ([`Error::Rollback`]); nothing is written if any fails, or if every
    /// image is running already. [`Error::SlotState`] if a trial is not
    /// confirmed yet, or a component is past the last or given twice.
    #[inline(never)]
    pub fn activate_group(&mut self, installed: &[Installed]) -> Res<()> {
        let rec = self.store.boot().ok_or(Error::NoBootRecord)?;
        let mut next = rec;
        let mut seen = [false; N];
        let mut changed = false;
        for i in installed {
            let k = i.component as usize;
            match seen.get_mut(k) {
                Some(s) if !*s => *s = true,
                _ => return Err(Error::SlotState),
            }
            let c = rec.components[k];
            if i.slot == c.active {
                continue;
            }
            if rec.trial {
                return Err(Error::SlotState);
            }
            if i.image.counter < c.floor {
                return Err(Error::Rollback {
                    counter: i.image.counter,
                    min: c.floor,
                });
            }
            if !self.holds_in(k, i.slot, &i.image)? {
                return Err(Error::ImageMismatch);
            }
            let n = &mut next.components[k];
            n.images[i.slot.index()] = i.image;
            n.active = i.slot;
            n.on_trial = true;
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        next.trial = true;
        next.attempts = 0;
        next.rolled_back = false;
        next.gen = rec.gen.wrapping_add(1);
        self.store.write_boot(&next)
    }
}

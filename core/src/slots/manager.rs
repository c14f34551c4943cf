//! The slot manager's flash work, written once: `slots` compiles this
//! file twice, as the blocking [`crate::slots::Slots`] and as the async
//! [`crate::slots::asynch::Slots`] (see `flashpatch-macros`). Everything
//! here that reads or writes flash is `async` under `#[io]`.

use super::store::Store;
use super::update::{self, Update};
use super::{digest_of, io, sha256_of, NorFlash};
use crate::error::{FlashError, FlashRole, SlotError as Error};
use crate::hashes::{Hashes, Software};
use crate::log;
use crate::slots::{
    align_for, aligned, boot_record_len, checkpoint_len, Boot, BootRecord, BootState, Component,
    Config, GroupBoot, Image, Installed, PatchId, Slot, MAX_RECORD_ALIGN,
};
use crate::ApplierState;
use core::marker::PhantomData;

/// An update continued from a checkpoint by [`Slots::resume`].
pub struct Resumed<'s, P, S, const N: usize = 1, H = Software> {
    /// The update, ready for the rest of the patch.
    pub update: Update<'s, P, S, N, H>,
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
pub struct Slots<P, S, const N: usize = 1, H = Software> {
    slots: [[P; 2]; N],
    store: Store<S, N>,
    config: Config,
    /// Per component: the slot and image its last update through this
    /// manager read back and checked ([`Update::finish`]), if no update has
    /// started writing that component's slots since. Activation trusts it
    /// instead of hashing the slot again.
    read_back: [ReadBack; N],
    /// The hashes that verify images (a chip's engine or [`Software`]).
    hashes: PhantomData<fn() -> H>,
}

/// A slot and the image an update read back from it (size and SHA-256
/// checked), or `None`.
pub(crate) type ReadBack = Option<(Slot, Image)>;

type Res<T> = Result<T, Error>;

#[io]
impl<P, S> Slots<P, S>
where
    P: NorFlash,
    S: NorFlash,
{
    /// The slot manager over slot A, slot B and the state area. Reads the
    /// state area. [`Error::StateArea`] if the state area cannot hold two
    /// banks (each a whole number of erase units, at least
    /// [`Slots::MIN_BANK`] bytes).
    pub async fn new(a: P, b: P, state: S, config: Config) -> Res<Self> {
        Self::new_group([[a, b]], state, config).await
    }
}

#[io]
impl<P, S, const N: usize> Slots<P, S, N>
where
    P: NorFlash,
    S: NorFlash,
{
    /// The slot manager over the slot pairs of `N` components (`[A, B]`
    /// each) and the state area, which holds the boot state of all of
    /// them. Reads the state area; [`Error::StateArea`] as [`Slots::new`].
    /// The boot stage and the application must use the same `N`. It
    /// verifies images in software; [`Slots::with_hashes`] takes other
    /// hashes.
    pub async fn new_group(pairs: [[P; 2]; N], state: S, config: Config) -> Res<Self> {
        Self::with_hashes(pairs, state, config).await
    }
}

#[io]
impl<P, S, H: Hashes> Slots<P, S, 1, H>
where
    P: NorFlash,
    S: NorFlash,
{
    /// Gives the flashes back: slot A, slot B, state area.
    pub fn into_parts(self) -> (P, P, S) {
        let ([[a, b]], s) = self.into_group_parts();
        (a, b, s)
    }

    /// Factory step: records the first `size` bytes of `slot` as the
    /// confirmed, running image (security counter 0, floor 0). Only
    /// allowed while the state area holds no boot record
    /// ([`Error::SlotState`] otherwise).
    pub async fn provision(&mut self, slot: Slot, size: u32) -> Res<()> {
        self.provision_group([(slot, size)]).await
    }
}

#[io]
impl<P, S, const N: usize, H: Hashes> Slots<P, S, N, H>
where
    P: NorFlash,
    S: NorFlash,
{
    /// [`Slots::new_group`] with the image hashes `H` (a chip's hash
    /// engine, see [`crate::hashes`]), named where the manager's type is:
    /// `let s: Slots<_, _, 1, Engine> = Slots::with_hashes([[a, b]], state, config)?`.
    pub async fn with_hashes(pairs: [[P; 2]; N], state: S, config: Config) -> Res<Self> {
        const {
            let align = align_for(S::WRITE_SIZE, S::READ_SIZE);
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
            store: Store::open(state, Self::MIN_BANK).await?,
            config,
            read_back: [None; N],
            hashes: PhantomData,
        })
    }

    /// The smallest bank: a boot record and a checkpoint (each rounded up
    /// to the [`record_align`](crate::slots::record_align) of `S`).
    pub const MIN_BANK: u32 = (aligned(boot_record_len(N), align_for(S::WRITE_SIZE, S::READ_SIZE))
        + checkpoint_len(align_for(S::WRITE_SIZE, S::READ_SIZE)))
        as u32;

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
    pub async fn holds(&mut self, slot: Slot, image: &Image) -> Res<bool> {
        self.holds_in(0, slot, image).await
    }

    /// Whether `slot` of `component` holds `image` (size and SHA-256).
    /// Not inlined: its read buffer and digest are on the stack only while
    /// it runs.
    #[inline(never)]
    pub async fn holds_in(&mut self, component: usize, slot: Slot, image: &Image) -> Res<bool> {
        let Some(pair) = self.slots.get_mut(component) else {
            return Ok(false);
        };
        let flash = &mut pair[slot.index()];
        if image.size == 0 || image.size as usize > flash.capacity() {
            return Ok(false);
        }
        // Where the flash reads in units that divide 32, one 64-byte array
        // is both the read buffer and the digest.
        let mut buf = [0u8; 64];
        let mut apart = [0u8; 32];
        let split = match 32 % P::READ_SIZE {
            0 => buf.split_last_chunk_mut::<32>(),
            _ => Some((&mut buf[..], &mut apart)),
        };
        let Some((rd, sha)) = split else {
            return Ok(false);
        };
        digest_of::<_, H::Sha256>(flash, rd, image.size, sha.into())
            .await
            .map_err(|e| {
                // The running image's slot is the source of an update.
                let running = self.store.boot().map(|r| r.components[component].active);
                let role = match running {
                    Some(s) if s != slot => FlashRole::Target,
                    _ => FlashRole::Source,
                };
                FlashError::new(role, e)
            })?;
        Ok(*sha == image.sha256)
    }

    /// Whether `slot` of component `k` may be booted with `image`
    /// recorded: the image verifies and its counter is not below `floor`.
    async fn bootable(&mut self, k: usize, slot: Slot, image: &Image, floor: u32) -> Res<bool> {
        Ok(image.counter >= floor && self.holds_in(k, slot, image).await?)
    }

    /// Factory step: for each component, records the first `size` bytes
    /// of its `slot` as its confirmed, running image (counter 0, floor 0).
    /// Size 0 leaves a component other than 0 empty: nothing to verify at
    /// boot, until an update (a full image) fills it. Only allowed while
    /// the state area holds no boot record ([`Error::SlotState`]).
    pub async fn provision_group(&mut self, images: [(Slot, u32); N]) -> Res<()> {
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
            let sha256 = sha256_of::<H, _>(flash, &mut buf, size)
                .await
                .map_err(FlashError::of(FlashRole::Source))?;
            components[k].images[slot.index()] = Image {
                size,
                sha256,
                counter: 0,
            };
        }
        self.store
            .write_boot(&BootState {
                trial: false,
                attempts: 0,
                rolled_back: false,
                gen: 1,
                components,
            })
            .await
    }

    /// Boot stage: the slot to start (component 0's, for a group see
    /// [`Slots::select_group`]). Verifies the image first and never
    /// returns a slot whose image fails its size and SHA-256 check or has a
    /// security counter below the recorded floor. A trial image is counted
    /// (one record write) before it is returned; after
    /// [`Config::max_boot_attempts`] unconfirmed boots, or if it fails
    /// verification, the previous image is made active again (one record
    /// write) and returned with `rolled_back` set.
    pub async fn select(&mut self) -> Res<Boot> {
        let g = self.select_group().await?;
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
    pub async fn select_group(&mut self) -> Res<GroupBoot<N>> {
        let rec = self.store.boot().ok_or(Error::NoBootRecord)?;
        let mut good = [true; N];
        for (k, c) in rec.components.iter().enumerate() {
            let empty = k > 0 && c.image().size == 0;
            good[k] = empty || self.bootable(k, c.active, &c.image(), c.floor).await?;
        }
        let all = good.iter().all(|g| *g);
        let boot = |s: &BootState<N>, trial, rolled_back| GroupBoot {
            slots: s.components.map(|c| c.active),
            trial,
            rolled_back,
        };
        if rec.trial {
            if all && rec.attempts < self.config.max_boot_attempts.max(1) {
                self.store
                    .write_boot(&BootState {
                        attempts: rec.attempts + 1,
                        gen: rec.gen.wrapping_add(1),
                        ..rec
                    })
                    .await?;
                log::info!(
                    "flashpatch: booting a trial image, attempt {=u8}",
                    rec.attempts + 1
                );
                return Ok(boot(&rec, true, false));
            }
            if let Some(back) = self.fall_back(&rec, &good).await? {
                log::warning!("flashpatch: trial image not confirmed or not whole: rolled back");
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
        if let Some(back) = self.fall_back(&rec, &good).await? {
            log::warning!("flashpatch: confirmed image damaged: rolled back");
            return Ok(boot(&back, false, true));
        }
        log::warning!("flashpatch: no bootable image");
        Err(Error::NoBootableImage)
    }

    /// Switches back every component on trial and every one that is not
    /// `good`, confirmed, if each previous image may be booted; writes
    /// that state and returns it, or `None` (nothing written).
    async fn fall_back(
        &mut self,
        rec: &BootState<N>,
        good: &[bool; N],
    ) -> Res<Option<BootState<N>>> {
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
                if !self
                    .bootable(k, prev, &c.images[prev.index()], c.floor)
                    .await?
                {
                    return Ok(None);
                }
                next.components[k].images[c.active.index()] = Image::NONE;
                next.components[k].active = prev;
            }
        }
        self.store.write_boot(&next).await?;
        Ok(Some(next))
    }

    /// Application: the images it runs work; a trial becomes confirmed
    /// (one record write, for every component), and each component's
    /// floor rises to its active image's security counter (it never
    /// falls). Nothing is written if the state is confirmed already.
    pub async fn confirm(&mut self) -> Res<()> {
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
        self.store.write_boot(&next).await?;
        log::info!("flashpatch: trial image confirmed");
        Ok(())
    }

    /// Application: erases the inactive slot of `component` (what an SMP
    /// image erase asks). First one boot record write of the next
    /// generation forgets the slot's image (and makes any checkpoint of
    /// an update into it stale), then the slot is erased: after a reset
    /// in between, nothing claims the half-erased slot. Not while on trial
    /// ([`Error::SlotState`], and for a component past the last): the
    /// inactive image is then the one a rollback returns to.
    pub async fn erase_inactive(&mut self, component: usize) -> Res<()> {
        let rec = self.store.boot().ok_or(Error::NoBootRecord)?;
        let c = match rec.components.get(component) {
            Some(c) if !rec.trial => *c,
            _ => {
                log::warning!("flashpatch: update refused: a trial is not confirmed yet, or no such component");
                return Err(Error::SlotState);
            }
        };
        let other = c.active.other().index();
        self.read_back[component] = None;
        if c.images[other] != Image::NONE || self.checkpoint_of(component as u8).await? {
            let mut next = BootState {
                gen: rec.gen.wrapping_add(1),
                ..rec
            };
            next.components[component].images[other] = Image::NONE;
            self.store.write_boot(&next).await?;
        }
        let slot = &mut self.slots[component][other];
        let len = slot.capacity() as u32;
        slot.erase(0, len)
            .await
            .map_err(|e| FlashError::new(FlashRole::Target, e).into())
    }

    /// Application: starts writing a new image of component 0 into its
    /// inactive slot, as [`Slots::begin_component_update`].
    pub async fn begin_update<'s>(
        &'s mut self,
        state: &'s mut ApplierState,
    ) -> Res<Update<'s, P, S, N, H>> {
        self.begin_component_update(0, state).await
    }

    /// Application: starts writing a new image of `component` into its
    /// inactive slot, from a patch against its active one; the applier
    /// skips entries for other components. Nothing may be on trial
    /// ([`Error::SlotState`] otherwise, or for a component past the last).
    /// Checkpoints are written as [`Config::checkpoint_units`] says, so
    /// that [`Slots::resume`] can continue after a reset. The applier
    /// works in `state`, which the caller keeps (a `static` on a device):
    /// the update itself is small.
    ///
    /// A checkpoint of an earlier, unfinished update of the same component
    /// is made stale before the new update first writes the target (one
    /// boot record write, only then): from there on the target is not what
    /// that checkpoint describes, so it must never be continued after a
    /// reset. An update that finds its image installed writes nothing.
    pub async fn begin_component_update<'s>(
        &'s mut self,
        component: u8,
        state: &'s mut ApplierState,
    ) -> Res<Update<'s, P, S, N, H>> {
        let stale = self.checkpoint_of(component).await?;
        let mut up = self.start(component, state)?;
        log::info!("flashpatch: update of component {=u8} begins", component);
        if stale {
            up.forget_before_writing();
        }
        Ok(up)
    }

    /// Whether the newest checkpoint is of an update of `component`.
    async fn checkpoint_of(&mut self, component: u8) -> Res<bool> {
        let Some(mut r) = self.store.checkpoint_reader() else {
            return Ok(false);
        };
        let of = update::checkpoint_for(&mut r).await.map(|(c, _)| c);
        if let Some(e) = r.err {
            return Err(FlashError::new(FlashRole::State, e).into());
        }
        Ok(of == Some(component))
    }

    /// Makes the newest checkpoint stale on flash if it is of an update of
    /// `component` (see [`Update::finish`]'s caller in `proto::device`).
    #[cfg(feature = "proto")]
    pub(crate) async fn forget_checkpoint(&mut self, component: u8) -> Res<()> {
        if self.checkpoint_of(component).await? {
            self.store.forget_checkpoint().await?;
        }
        Ok(())
    }

    /// An update of `component` over its slots, nothing written.
    fn start<'s>(
        &'s mut self,
        component: u8,
        state: &'s mut ApplierState,
    ) -> Res<Update<'s, P, S, N, H>> {
        let rec = self.store.boot().ok_or(Error::NoBootRecord)?;
        let every = self.config.checkpoint_units;
        let c = match rec.components.get(component as usize) {
            Some(c) if !rec.trial => *c,
            _ => {
                log::warning!("flashpatch: update refused: a trial is not confirmed yet, or no such component");
                return Err(Error::SlotState);
            }
        };
        let [a, b] = &mut self.slots[component as usize];
        let (source, target) = match c.active {
            Slot::A => (a, b),
            Slot::B => (b, a),
        };
        // The update may write the inactive slot: what was read back from
        // it is forgotten until the update finishes.
        let read_back = &mut self.read_back[component as usize];
        *read_back = None;
        Ok(Update::new(
            source,
            (target, read_back),
            &mut self.store,
            component,
            (c.active, c.image(), c.images[c.active.other().index()]),
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
    pub async fn resume<'s>(
        &'s mut self,
        state: &'s mut ApplierState,
    ) -> Res<Option<Resumed<'s, P, S, N, H>>> {
        if self.store.checkpoint.is_none() || self.store.boot().is_none_or(|r| r.trial) {
            return Ok(None);
        }
        // A checkpoint's body starts with the component it is for.
        let mut c = [0u8; 1];
        if let Some(mut r) = self.store.checkpoint_reader() {
            r.read(&mut c).await;
            if let Some(e) = r.err {
                return Err(FlashError::new(FlashRole::State, e).into());
            }
        }
        let component = c[0];
        if component as usize >= N {
            self.store.drop_checkpoint();
            return Ok(None);
        }
        let mut up = self.start(component, state)?;
        let offset = up.load().await?;
        if let Some(at) = offset {
            log::info!(
                "flashpatch: update of component {=u8} resumes at patch byte {=u32}",
                component,
                at
            );
        }
        Ok(offset.map(|offset| Resumed {
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
    /// are written again, not the whole image. A checkpoint of another
    /// patch is made stale first, as [`Slots::begin_component_update`]
    /// does.
    /// Not inlined: what it reads and checks is off the stack before the
    /// update is fed.
    #[inline(never)]
    pub async fn resume_or_begin<'s>(
        &'s mut self,
        component: u8,
        patch: PatchId,
        state: &'s mut ApplierState,
    ) -> Res<(Update<'s, P, S, N, H>, u32)> {
        let usable = self.store.boot().is_some_and(|r| !r.trial) && patch != PatchId::UNKNOWN;
        let mut ours = false;
        if let (true, Some(mut r)) = (usable, self.store.checkpoint_reader()) {
            ours = update::checkpoint_for(&mut r).await == Some((component, patch));
            if let Some(e) = r.err {
                return Err(FlashError::new(FlashRole::State, e).into());
            }
        }
        let (mut up, offset) = match ours {
            true => {
                let mut up = self.start(component, state)?;
                let offset = up.load().await?.unwrap_or(0);
                (up, offset)
            }
            // Another update's checkpoint is made stale before anything
            // is written (see `begin_component_update`).
            false => (self.begin_component_update(component, state).await?, 0),
        };
        up.set_patch(patch);
        Ok((up, offset))
    }

    /// Application: makes the image [`Update::finish`] reported the one to
    /// boot next, on trial, as [`Slots::activate_group`] with one image.
    pub async fn activate(&mut self, installed: &Installed) -> Res<()> {
        self.activate_group(core::slice::from_ref(installed)).await
    }

    /// Application: makes the images [`Update::finish`] reported (at most
    /// one per component) the ones to boot next, all on trial together:
    /// **one record write** switches every component whose image is not
    /// the running one, so a reset at any instant leaves all of them old
    /// or all new. Checks each slot's image first ([`Error::ImageMismatch`])
    /// and its security counter against the component's floor
    /// ([`Error::Rollback`]); nothing is written if any fails, or if every
    /// image is running already. The image check hashes the slot, unless
    /// this manager's own update of the component read that image back
    /// from that slot ([`Update::finish`]) and no update has started
    /// writing the component's slots since (`docs/HASHES.md`, "Hashing
    /// the target once"): an `Installed` built by the caller, or one of
    /// an earlier update, is hashed. [`Error::SlotState`] if a trial is not
    /// confirmed yet, or a component is past the last or given twice.
    #[inline(never)]
    pub async fn activate_group(&mut self, installed: &[Installed]) -> Res<()> {
        // Everything is checked before the next boot state is built: no
        // copy of a boot state is on the stack while a slot is hashed.
        let mut seen = [false; N];
        let mut changed = false;
        for i in installed {
            let k = i.component as usize;
            match seen.get_mut(k) {
                Some(s) if !*s => *s = true,
                _ => return Err(Error::SlotState),
            }
            let rec = self.store.current().ok_or(Error::NoBootRecord)?;
            let (active, floor, trial) =
                (rec.components[k].active, rec.components[k].floor, rec.trial);
            if i.slot == active {
                continue;
            }
            if trial {
                log::warning!("flashpatch: activation refused: a trial is not confirmed yet");
                return Err(Error::SlotState);
            }
            if i.image.counter < floor {
                log::warning!(
                    "flashpatch: activation refused: counter {=u32} below floor {=u32}",
                    i.image.counter,
                    floor
                );
                return Err(Error::Rollback {
                    counter: i.image.counter,
                    min: floor,
                });
            }
            let read_back = matches!(self.read_back[k],
                Some((s, im)) if s == i.slot && im.same_bytes(&i.image));
            if !read_back && !self.holds_in(k, i.slot, &i.image).await? {
                log::warning!("flashpatch: activation refused: the slot does not hold the image");
                return Err(Error::ImageMismatch);
            }
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        self.switch_to(installed).await
    }

    /// Writes the boot state that boots `installed` next, on trial (checked
    /// by [`Slots::activate_group`]). Not inlined: the state it builds is on
    /// the stack only while it runs, not while the checks hash a slot.
    #[inline(never)]
    async fn switch_to(&mut self, installed: &[Installed]) -> Res<()> {
        let mut next = self.store.boot().ok_or(Error::NoBootRecord)?;
        for i in installed {
            let n = &mut next.components[i.component as usize];
            if i.slot != n.active {
                n.images[i.slot.index()] = i.image;
                n.active = i.slot;
                n.on_trial = true;
            }
        }
        next.trial = true;
        next.attempts = 0;
        next.rolled_back = false;
        next.gen = next.gen.wrapping_add(1);
        self.store.write_boot(&next).await?;
        log::info!("flashpatch: new image activated: it boots next, on trial");
        Ok(())
    }
}

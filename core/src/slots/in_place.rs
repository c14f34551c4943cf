//! In-place updates, for devices with room for one image: the new image
//! is written over the old one, erase unit by erase unit, from a staged
//! patch, with a scratch area of two units and a checkpoint per unit in
//! the state area. `docs/IN-PLACE.md` is the description; this is the
//! code (blocking flash drivers).
//!
//! ```text
//!  flash: | image slot | scratch: 2 units | state area: 2 banks | staged patch |
//! ```
//!
//! For each unit `i` of the entry's output (the target's units in the
//! entry's order, front to back or back to front), before anything of it
//! is written: one checkpoint record (the applier's state at the start of
//! unit `i`, the CRC-32 of the old contents of the address unit `v` it
//! goes to), then `v`'s old contents are copied to scratch unit `i mod 2`
//! and read back. Only then is `v` erased and written. The body reads old
//! unit `v` and the one written just before it from the scratch area, the
//! units not yet written from the slot, and never a unit already
//! overwritten (the generator sees to it; a body that tries fails, see
//! [`ViewError::Overwritten`]).
//!
//! After a reset, the newest checkpoint says where to go on: the scratch
//! unit holds `v`'s old contents if its CRC-32 is the recorded one;
//! otherwise the copy was cut and `v` has not been touched, so it is made
//! again. The first checkpoint is the commit point: before it the old
//! image is whole and boots; after it the boot stage ([`InPlace::boot`])
//! finishes the update before anything boots. Its last step is one boot
//! record: the new image, on trial if the staged file carries a reverse
//! entry that rolls it back (then a failed trial is rolled back the same
//! way), else confirmed (the update is final).

use core::cell::{Cell, RefCell};

use embedded_storage::nor_flash::{ErrorType, NorFlashError, NorFlashErrorKind};

use super::store::Store;
use super::{sha256_of, Applier, NorFlash, ReadNorFlash};
use crate::apply::io::align_up;
use crate::crc32::Crc32;
use crate::error::{ApplyError, FlashError, FlashRole, SlotError as Error};
use crate::format::{EntryHeader, InPlaceEntry, CONTAINER_HEADER_LEN, MAX_HEADER_LEN};
use crate::hashes::Software;
use crate::slots::record::HEADER_LEN;
use crate::slots::{
    align_for, aligned, boot_record_len, Boot, BootRecord, BootState, Component, Config, Image,
    PatchId, Slot, MAX_RECORD_ALIGN,
};
use crate::snapshot::{Field, Fields};
use crate::{ApplierState, Outcome};

type Res<T> = Result<T, Error>;

/// Bytes of an in-place checkpoint record with records aligned to
/// `align` bytes.
pub const fn in_place_checkpoint_len(align: usize) -> usize {
    (HEADER_LEN + 1 + 8 + 1 + InPlaceEntry::LEN + 4 + 4 + crate::apply::SAVED_LEN + 4)
        .div_ceil(align)
        * align
}

/// What the two flash views of a run share.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Bytes of an erase unit of the rewrite.
    unit: u32,
    /// Address units the target spans.
    units: u32,
    /// Written back to front.
    back: bool,
    /// The output unit being written, once rewriting has begun; until
    /// then both views read the slot as it is.
    at: Option<u32>,
    /// The target has been written to its end: the target view reads the
    /// slot as it is again (for the read-back check of the image).
    done: bool,
}

/// Where an old erase unit is now.
enum Old {
    Slot,
    Scratch(u32),
    Gone,
}

impl Run {
    fn new(unit: u32) -> Run {
        Run {
            unit,
            units: 0,
            back: false,
            at: None,
            done: false,
        }
    }

    /// The address unit output unit `i` goes to.
    fn address_unit(&self, i: u32) -> u32 {
        if self.back {
            self.units - 1 - i
        } else {
            i
        }
    }

    fn old(&self, u: u32) -> Old {
        let Some(i) = self.at else {
            return Old::Slot;
        };
        let v = self.address_unit(i);
        if u == v {
            return Old::Scratch(i % 2);
        }
        if i > 0 && u == self.address_unit(i - 1) {
            return Old::Scratch((i - 1) % 2);
        }
        let written = u < self.units && if self.back { u > v } else { u < v };
        if written {
            Old::Gone
        } else {
            Old::Slot
        }
    }

    /// Where target (output) byte `o` lies in the slot.
    fn target(&self, o: u32) -> u32 {
        if self.at.is_none() || self.done || !self.back {
            return o;
        }
        self.address_unit(o / self.unit) * self.unit + o % self.unit
    }
}

/// Errors of the flash views an in-place update reads and writes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewError {
    /// The slot's or the scratch area's driver failed.
    Flash(NorFlashErrorKind),
    /// The body read old bytes that are already overwritten: a patch not
    /// made for in-place application with this erase unit.
    Overwritten,
    /// The flash is in use by the other view at this moment.
    Busy,
}

#[cfg(feature = "defmt")]
impl defmt::Format for ViewError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            ViewError::Flash(k) => defmt::write!(f, "{}", crate::error::kind_text(*k)),
            ViewError::Overwritten => defmt::write!(f, "read of an overwritten unit"),
            ViewError::Busy => defmt::write!(f, "flash busy"),
        }
    }
}

impl NorFlashError for ViewError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            ViewError::Flash(k) => *k,
            _ => NorFlashErrorKind::Other,
        }
    }
}

fn with<F, R>(
    cell: &RefCell<F>,
    f: impl FnOnce(&mut F) -> Result<R, F::Error>,
) -> Result<R, ViewError>
where
    F: ErrorType,
{
    let mut flash = cell.try_borrow_mut().map_err(|_| ViewError::Busy)?;
    f(&mut flash).map_err(|e| ViewError::Flash(e.kind()))
}

/// The old image as the applier reads it during a rewrite.
struct SourceView<'a, F, X> {
    slot: &'a RefCell<F>,
    scratch: &'a RefCell<X>,
    run: &'a Cell<Run>,
}

impl<F: NorFlash, X: NorFlash> ErrorType for SourceView<'_, F, X> {
    type Error = ViewError;
}

impl<F: NorFlash, X: NorFlash> ReadNorFlash for SourceView<'_, F, X> {
    const READ_SIZE: usize = F::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), ViewError> {
        let run = self.run.get();
        let mut done = 0;
        while done < bytes.len() {
            let at = offset + done as u32;
            let (u, off) = (at / run.unit, at % run.unit);
            let n = ((run.unit - off) as usize).min(bytes.len() - done);
            let piece = &mut bytes[done..done + n];
            match run.old(u) {
                Old::Slot => with(self.slot, |f| f.read(at, piece))?,
                Old::Scratch(k) => with(self.scratch, |f| f.read(k * run.unit + off, piece))?,
                Old::Gone => return Err(ViewError::Overwritten),
            }
            done += n;
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.slot.try_borrow().map(|f| f.capacity()).unwrap_or(0)
    }
}

/// The new image as the applier writes it: output unit `i` into the
/// address unit the entry's order gives.
struct TargetView<'a, F> {
    slot: &'a RefCell<F>,
    run: &'a Cell<Run>,
    /// Bytes of the target: a write that reaches it ends the mapping.
    len: &'a Cell<u32>,
}

impl<F: NorFlash> TargetView<'_, F> {
    /// Runs `f` on each piece of `[offset, offset + len)` that lies in one
    /// erase unit, with its slot address and its start within the range.
    fn pieces(
        &self,
        offset: u32,
        len: usize,
        mut f: impl FnMut(&mut F, u32, usize, usize) -> Result<(), F::Error>,
    ) -> Result<(), ViewError> {
        let run = self.run.get();
        let mut done = 0;
        while done < len {
            let at = offset + done as u32;
            let n = ((run.unit - at % run.unit) as usize).min(len - done);
            with(self.slot, |fl| f(fl, run.target(at), done, n))?;
            done += n;
        }
        Ok(())
    }
}

impl<F: NorFlash> ErrorType for TargetView<'_, F> {
    type Error = ViewError;
}

impl<F: NorFlash> ReadNorFlash for TargetView<'_, F> {
    const READ_SIZE: usize = F::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), ViewError> {
        let n = bytes.len();
        self.pieces(offset, n, |f, at, i, k| f.read(at, &mut bytes[i..i + k]))
    }

    fn capacity(&self) -> usize {
        self.slot.try_borrow().map(|f| f.capacity()).unwrap_or(0)
    }
}

impl<F: NorFlash> NorFlash for TargetView<'_, F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), ViewError> {
        let len = to.saturating_sub(from) as usize;
        self.pieces(from, len, |f, at, _, k| f.erase(at, at + k as u32))
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), ViewError> {
        self.pieces(offset, bytes.len(), |f, at, i, k| {
            f.write(at, &bytes[i..i + k])
        })?;
        let mut run = self.run.get();
        if run.at.is_some() && offset as u64 + bytes.len() as u64 >= self.len.get() as u64 {
            run.done = true;
            self.run.set(run);
        }
        Ok(())
    }
}

/// An in-place checkpoint's body.
struct Checkpoint<'a> {
    component: u8,
    patch: PatchId,
    /// Written before the entry's body was begun: the run starts again
    /// from the patch's start, with output unit 0 in the scratch area
    /// (`state` is not used).
    fresh: bool,
    entry: [u8; InPlaceEntry::LEN],
    /// Bytes of the target.
    target_len: u32,
    /// CRC-32 of the old contents of the address unit being rewritten.
    unit_crc: u32,
    state: &'a mut ApplierState,
}

impl Fields for Checkpoint<'_> {
    fn field(&mut self, i: usize) -> Option<(&'static str, Field<'_>)> {
        crate::snapshot::fields!(i;
            "the component (0)" => Field::U8(&mut self.component),
            "size of the staged patch" => Field::U32(&mut self.patch.size),
            "CRC-32 of the staged patch" => Field::U32(&mut self.patch.crc32),
            "1: written before the body was begun" => Field::Flag(&mut self.fresh),
            "the entry's in-place record" => Field::Bytes(&mut self.entry),
            "bytes of the target" => Field::U32(&mut self.target_len),
            "CRC-32 of the old contents of the unit being rewritten" => Field::U32(&mut self.unit_crc),
            .. ApplierState: self.state,
        )
    }
}

/// An in-place checkpoint's fields besides the applier's state.
struct Loaded {
    fresh: bool,
    patch: PatchId,
    entry: InPlaceEntry,
    target_len: u32,
    unit_crc: u32,
}

/// A rewrite that has applied its entry and verified the image; the
/// target and counter [`InPlace::record`] writes into the boot record
/// are in the applier's state (two bytes here, not a copy of them in
/// each frame the result passes through).
#[derive(Clone, Copy)]
struct Applied {
    /// The entry was a reverse one.
    rollback: bool,
    /// The slot held the target already (the outcome
    /// [`Outcome::AlreadyInstalled`]).
    already: bool,
}

/// Ends a rewrite whose body was begun: the read-back check of the image.
fn verified<S, T>(applier: &mut Applier<'_, S, T>, rollback: bool) -> Res<Applied>
where
    S: ReadNorFlash,
    T: NorFlash,
{
    let outcome = applier.finish()?;
    Ok(Applied {
        rollback,
        already: matches!(outcome, Outcome::AlreadyInstalled(_)),
    })
}

/// What the boot state says of an in-place device, and how to change it:
/// the image slot, the scratch area (at least two erase units of the
/// rewrite), the state area, and the erase unit the entries are made for
/// (`genpat --in-place --erase-unit`).
///
/// The boot record's slot A is the image in the slot; its slot B, while a
/// trial runs, the image it replaced (what a rollback restores).
pub struct InPlace<'f, F, X, S> {
    slot: &'f RefCell<F>,
    scratch: &'f RefCell<X>,
    store: Store<S, 1>,
    unit: u32,
    config: Config,
    /// The key entries must be signed with (`require_signature`).
    #[cfg(feature = "sign")]
    key: Option<[u8; crate::sign::PUBLIC_KEY_LEN]>,
}

/// What an in-place run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Rewrite {
    /// The slot holds the new image; it boots next, on trial if it can
    /// be rolled back.
    Applied {
        /// Whether it is on trial (the staged file can roll it back).
        trial: bool,
    },
    /// The slot held the target already: nothing was written.
    AlreadyInstalled,
}

impl<'f, F, X, S> InPlace<'f, F, X, S>
where
    F: NorFlash,
    X: NorFlash,
    S: NorFlash,
{
    /// The smallest state-area bank: a boot record and an in-place
    /// checkpoint.
    pub const MIN_BANK: u32 = (aligned(boot_record_len(1), align_for(S::WRITE_SIZE, S::READ_SIZE))
        + in_place_checkpoint_len(align_for(S::WRITE_SIZE, S::READ_SIZE)))
        as u32;

    /// Opens the in-place device: `slot` holds the image, `scratch` at
    /// least two erase units of `unit` bytes, `state` the boot records and
    /// checkpoints. `unit` must be a multiple of 64 and of the slot's and
    /// the scratch area's erase sizes ([`Error::InPlaceEntry`] otherwise),
    /// and the scratch area must hold two of them. Not inlined: the state
    /// area's scan is on the stack only while it runs, not under the
    /// caller's frame.
    #[inline(never)]
    pub fn new(
        slot: &'f RefCell<F>,
        scratch: &'f RefCell<X>,
        state: S,
        unit: u32,
        config: Config,
    ) -> Res<Self> {
        const {
            let align = align_for(S::WRITE_SIZE, S::READ_SIZE);
            assert!(align <= MAX_RECORD_ALIGN);
            assert!(S::ERASE_SIZE.is_multiple_of(align));
            assert!(F::READ_SIZE <= 64 && 64 % F::READ_SIZE == 0);
            assert!(X::READ_SIZE <= 64 && 64 % X::READ_SIZE == 0);
            assert!(X::WRITE_SIZE <= 64 && 64 % X::WRITE_SIZE == 0);
            assert!(F::READ_SIZE % X::READ_SIZE == 0);
        }
        let fits = scratch
            .try_borrow()
            .map(|x| x.capacity() as u64 >= 2 * unit as u64)
            .unwrap_or(false);
        let whole = unit != 0
            && unit.is_multiple_of(64)
            && unit.is_multiple_of(F::ERASE_SIZE as u32)
            && unit.is_multiple_of(X::ERASE_SIZE as u32);
        if !(fits && whole) {
            return Err(Error::InPlaceEntry);
        }
        let mut dev = InPlace {
            slot,
            scratch,
            store: Store::unscanned(state, Self::MIN_BANK)?,
            unit,
            config,
            #[cfg(feature = "sign")]
            key: None,
        };
        // Scanned where it lies: one copy of the store on the stack.
        dev.store.scan()?;
        Ok(dev)
    }

    /// Accepts only entries signed by `key`: the update's entry must also
    /// carry a security counter at least the boot record's floor; the
    /// reverse entry of a rollback (which restores the image the record
    /// names) only its signature. Checked before the commit point; a
    /// rewrite resumed after a cut had its entry checked when it began,
    /// and its image is still verified against the signed SHA-256.
    #[cfg(feature = "sign")]
    pub fn require_signature(&mut self, key: [u8; crate::sign::PUBLIC_KEY_LEN]) {
        self.key = Some(key);
    }

    /// The boot state: the newest valid boot record, if any.
    pub fn state(&self) -> Option<BootRecord> {
        self.store.boot().and_then(|s| s.record(0))
    }

    /// Whether a rewrite has begun and not finished: the slot holds
    /// neither image whole, and [`InPlace::boot`] finishes it.
    pub fn in_progress(&self) -> bool {
        self.store.checkpoint.is_some()
    }

    /// Factory step: records the first `size` bytes of the slot as the
    /// confirmed image ([`Error::SlotState`] if the device is provisioned).
    pub fn provision(&mut self, size: u32) -> Res<()> {
        if self.store.boot().is_some() {
            return Err(Error::SlotState);
        }
        let mut buf = [0u8; 64];
        let sha = self.slot_sha(&mut buf, size)?;
        let image = Image {
            size,
            sha256: sha,
            counter: 0,
        };
        self.store.write_boot(&BootState {
            trial: false,
            attempts: 0,
            rolled_back: false,
            gen: 0,
            components: [Component {
                images: [image, Image::NONE],
                ..Component::EMPTY
            }],
        })
    }

    fn slot_sha<const B: usize>(&mut self, buf: &mut [u8; B], size: u32) -> Res<[u8; 32]> {
        let mut slot = self
            .slot
            .try_borrow_mut()
            .map_err(|_| busy(FlashRole::Source))?;
        if size as usize > slot.capacity() {
            return Ok([0; 32]);
        }
        Ok(sha256_of::<Software, _>(&mut *slot, buf, size)
            .map_err(FlashError::of(FlashRole::Source))?)
    }

    /// Whether the slot holds `image` (size and SHA-256).
    #[inline(never)]
    pub fn holds(&mut self, image: &Image) -> Res<bool> {
        if image.size == 0 {
            return Ok(false);
        }
        let mut buf = [0u8; 64];
        Ok(self.slot_sha(&mut buf, image.size)? == image.sha256)
    }

    /// Application: applies the staged patch (`id` says its size and
    /// CRC-32; it lies in the first bytes of `patch`) in place. Allowed on
    /// a confirmed image with no rewrite in progress ([`Error::SlotState`]
    /// otherwise). Nothing is written until the patch has been checked
    /// whole and its entry for the image chosen; from the first
    /// checkpoint on, a reset leaves the rest to [`InPlace::boot`].
    pub fn update<P: ReadNorFlash>(
        &mut self,
        patch: &mut P,
        id: PatchId,
        mem: &mut ApplierState,
    ) -> Res<Rewrite> {
        let rec = self.store.boot().ok_or(Error::NoBootRecord)?;
        if rec.trial || self.in_progress() {
            return Err(Error::SlotState);
        }
        match self.rewrite(patch, id, mem, false)? {
            Some(done) => self.record(done, mem, patch, id),
            None => Ok(Rewrite::AlreadyInstalled),
        }
    }

    /// Application: the trial image works; it is confirmed and the floor
    /// rises to its counter (one boot record). Nothing is written if it is
    /// confirmed already.
    pub fn confirm(&mut self) -> Res<()> {
        let rec = self.store.boot().ok_or(Error::NoBootRecord)?;
        if !rec.trial {
            return Ok(());
        }
        let mut c = rec.components[0];
        c.floor = c.floor.max(c.images[0].counter);
        c.images[1] = Image::NONE;
        c.on_trial = false;
        self.store.write_boot(&BootState {
            trial: false,
            attempts: 0,
            gen: rec.gen.wrapping_add(1),
            components: [c],
            ..rec
        })
    }

    /// Boot stage: finishes a rewrite in progress (from the staged patch
    /// and the newest checkpoint), counts a trial boot, or rolls back a
    /// trial that has had its boots (with the staged file's reverse
    /// entry, in place as well); then says what to boot, once the slot's
    /// image has verified.
    pub fn boot<P: ReadNorFlash>(
        &mut self,
        patch: &mut P,
        id: PatchId,
        mem: &mut ApplierState,
    ) -> Res<Boot> {
        // Each rewrite in a frame of its own, and its boot record written
        // once that frame (the applier, its views, the decoder's chain)
        // is gone: what the boot stage needs at once is the deepest of
        // them, not their sum.
        if self.in_progress() {
            if let Some(done) = self.resume(patch, id, mem)? {
                self.record(done, mem, patch, id)?;
            }
        }
        // The applier's state is free here (no run is under way): its
        // buffer is the image check's.
        match self.count_boot(mem.header_buf())? {
            Some(boot) => Ok(boot),
            None => {
                if let Some(done) = self.rewrite_apart(patch, id, mem, true)? {
                    self.record(done, mem, patch, id)?;
                }
                Ok(Boot {
                    slot: Slot::A,
                    trial: false,
                    rolled_back: true,
                })
            }
        }
    }

    /// Boot stage, no rewrite in progress: what to boot, once the slot's
    /// image has verified (a trial boot counted), or `None` if the trial
    /// has had its boots and is rolled back. Not inlined: the boot state
    /// it copies is not on the stack under a rewrite.
    #[inline(never)]
    fn count_boot(&mut self, buf: &mut [u8; MAX_HEADER_LEN]) -> Res<Option<Boot>> {
        // The image and the floor only, while the slot is hashed (through
        // `buf`); the boot state is copied once that is done.
        let (image, floor) = match self.store.current() {
            Some(r) => (r.components[0].images[0], r.components[0].floor),
            None => return Err(Error::NoBootRecord),
        };
        let good = image.counter >= floor
            && image.size != 0
            && self.slot_sha(buf, image.size)? == image.sha256;
        let mut rec = self.store.boot().ok_or(Error::NoBootRecord)?;
        let boot = |trial, rolled_back| {
            Some(Boot {
                slot: Slot::A,
                trial,
                rolled_back,
            })
        };
        if !rec.trial {
            return match good {
                true => Ok(boot(false, rec.rolled_back)),
                false => Err(Error::NoBootableImage),
            };
        }
        if !good {
            // A trial image that does not verify cannot be the source of
            // its reverse patch either.
            return Err(Error::NoBootableImage);
        }
        if rec.attempts >= self.config.max_boot_attempts.max(1) {
            return Ok(None);
        }
        rec.attempts += 1;
        rec.gen = rec.gen.wrapping_add(1);
        self.store.write_boot(&rec)?;
        Ok(boot(true, false))
    }

    /// The slot as the applier's source and target while `run` goes on.
    fn views<'v>(
        &self,
        run: &'v Cell<Run>,
        len: &'v Cell<u32>,
    ) -> (SourceView<'v, F, X>, TargetView<'v, F>)
    where
        'f: 'v,
    {
        let source = SourceView {
            slot: self.slot,
            scratch: self.scratch,
            run,
        };
        let target = TargetView {
            slot: self.slot,
            run,
            len,
        };
        (source, target)
    }

    /// Continues the rewrite the newest checkpoint is of; what it
    /// applied, for [`InPlace::record`] (`None`: the checkpoint is not an
    /// in-place one, nothing this device began).
    #[inline(never)]
    fn resume<P: ReadNorFlash>(
        &mut self,
        patch: &mut P,
        id: PatchId,
        mem: &mut ApplierState,
    ) -> Res<Option<Applied>> {
        let len = in_place_checkpoint_len(align_for(S::WRITE_SIZE, S::READ_SIZE));
        if self.store.checkpoint.map(|(c, _)| c.len as usize) != Some(len) {
            // Not an in-place checkpoint: nothing this device began.
            self.store.drop_checkpoint();
            return Ok(None);
        }
        let run = Cell::new(Run::new(self.unit));
        let target_len = Cell::new(0);
        let (src, tgt) = self.views(&run, &target_len);
        let mut applier: Applier<'_, _, _> = Applier::new(src, tgt, mem);
        applier.set_checkpoints(self.unit);
        let ck = self.load_checkpoint(&mut applier)?;
        if ck.patch != id || !self.patch_whole(patch, id)? {
            return Err(Error::StagedPatch);
        }
        let (i, offset) = if ck.fresh {
            applier.restart();
            applier.set_in_place(ck.entry);
            applier.hold_before_body();
            (0, 0)
        } else {
            if !applier.resumed() {
                return Err(Error::StagedPatch);
            }
            applier.set_in_place(ck.entry);
            (applier.progress().written / self.unit, applier.consumed())
        };
        target_len.set(ck.target_len);
        run.set(Run {
            units: ck.target_len / self.unit,
            back: ck.entry.back_to_front,
            ..run.get()
        });
        // The scratch copy of the unit in progress, if it was cut.
        let v = run.get().address_unit(i);
        if self.scratch_crc(i)? != ck.unit_crc {
            self.copy_to_scratch(v, i)?;
        }
        run.set(Run {
            at: Some(i),
            ..run.get()
        });
        self.drive(&mut applier, &run, &target_len, patch, id, offset, ck.fresh)?;
        verified(&mut applier, ck.entry.rollback).map(Some)
    }

    /// Loads the newest checkpoint into `applier` (its state) and returns
    /// the rest of it. Not inlined: the record's reader is on the stack
    /// only while it runs, not under the rewrite.
    #[inline(never)]
    fn load_checkpoint<'v>(
        &mut self,
        applier: &mut Applier<'_, SourceView<'v, F, X>, TargetView<'v, F>>,
    ) -> Res<Loaded> {
        let mut body = Checkpoint {
            component: 0,
            patch: PatchId::UNKNOWN,
            fresh: false,
            entry: [0; InPlaceEntry::LEN],
            target_len: 0,
            unit_crc: 0,
            state: applier.loading(),
        };
        let Some(mut reader) = self.store.checkpoint_reader() else {
            return Err(Error::StagedPatch);
        };
        let read = reader.read_fields(&mut body);
        if let Some(e) = reader.err {
            return Err(FlashError::new(FlashRole::State, e).into());
        }
        let entry = InPlaceEntry::from_bytes(&body.entry);
        match entry.filter(|e| read && e.unit == self.unit) {
            Some(entry) => Ok(Loaded {
                fresh: body.fresh,
                patch: body.patch,
                entry,
                target_len: body.target_len,
                unit_crc: body.unit_crc,
            }),
            None => Err(Error::StagedPatch),
        }
    }

    /// [`InPlace::rewrite`] in a frame of its own, for the boot stage: see
    /// [`InPlace::boot`]. (The application's update inlines it: there one
    /// frame for the update and the rewrite is the smaller.)
    #[inline(never)]
    fn rewrite_apart<P: ReadNorFlash>(
        &mut self,
        patch: &mut P,
        id: PatchId,
        mem: &mut ApplierState,
        rollback: bool,
    ) -> Res<Option<Applied>> {
        self.rewrite(patch, id, mem, rollback)
    }

    /// Begins a rewrite with the staged patch: the update (`rollback`
    /// false) or the rollback of a trial. What it applied, for
    /// [`InPlace::record`]; `None` if the slot held the target already
    /// (nothing written).
    #[inline(always)]
    fn rewrite<P: ReadNorFlash>(
        &mut self,
        patch: &mut P,
        id: PatchId,
        mem: &mut ApplierState,
        rollback: bool,
    ) -> Res<Option<Applied>> {
        if !self.patch_whole(patch, id)? {
            return Err(Error::StagedPatch);
        }
        let run = Cell::new(Run::new(self.unit));
        let target_len = Cell::new(0);
        let (src, tgt) = self.views(&run, &target_len);
        let mut applier: Applier<'_, _, _> = Applier::new(src, tgt, mem);
        applier.set_checkpoints(self.unit);
        applier.set_in_place(InPlaceEntry {
            unit: self.unit,
            back_to_front: false,
            rollback,
        });
        #[cfg(feature = "sign")]
        if let Some(key) = self.key {
            let floor = self.store.boot().map_or(0, |b| b.components[0].floor);
            applier.require_signature(key, if rollback { 0 } else { floor });
        }
        // An update starts from the running image, which the boot stage
        // verified and the boot record names: the entry that names it is
        // selected without hashing the slot. The target is written over
        // that same image, so the slot holds the target before any write
        // only if it is the running image (which the selection found
        // installed already): the slot is not read to look for it there
        // either. A rollback hashes the trial.
        if let Some(r) = self.store.current().filter(|_| !rollback) {
            let image = r.components[0].images[0];
            if image.size != 0 {
                applier.vouch_image(image.size, image.sha256);
                applier.vouch_target_slot(image.size, image.sha256);
            }
        }
        applier.hold_before_body();
        let applied = self.drive(&mut applier, &run, &target_len, patch, id, 0, true)?;
        if !applied {
            return match applier.finish()? {
                Outcome::Applied => Err(Error::Apply(ApplyError::Failed)),
                Outcome::AlreadyInstalled(_) => Ok(None),
            };
        }
        verified(&mut applier, rollback).map(Some)
    }

    /// Feeds the staged patch from `offset` to its end, taking each stop
    /// of the applier: before the body (`hold`: the first checkpoint,
    /// the commit point) and at each output unit. `true` if the body was
    /// begun. Inlined into its two callers: a frame of its own would lie
    /// under both the decoder's and the checkpoint's chains.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn drive<'v, P: ReadNorFlash>(
        &mut self,
        applier: &mut Applier<'_, SourceView<'v, F, X>, TargetView<'v, F>>,
        run: &Cell<Run>,
        target_len: &Cell<u32>,
        patch: &mut P,
        id: PatchId,
        offset: u32,
        mut hold: bool,
    ) -> Res<bool> {
        let mut begun = !hold;
        let mut at = offset;
        while feed_to_stop(applier, patch, id, &mut at)? {
            if applier.due() && !applier.take_due()? {
                // Selected, or read back: no stop of ours.
            } else if hold {
                hold = false;
                begun = true;
                self.begin(applier, run, target_len, id)?;
            } else {
                let i = applier.progress().written / self.unit;
                self.step(applier, run, id, i, false)?;
            }
        }
        Ok(begun)
    }

    /// The entry to apply is chosen and nothing of it is written: checks
    /// it, and on a fresh start writes the first checkpoint (the commit
    /// point).
    fn begin<'v>(
        &mut self,
        applier: &mut Applier<'_, SourceView<'v, F, X>, TargetView<'v, F>>,
        run: &Cell<Run>,
        target_len: &Cell<u32>,
        id: PatchId,
    ) -> Res<()> {
        let e = applier.entry_target();
        let entry = applier.in_place().ok_or(Error::InPlaceEntry)?;
        let cap = self.slot.try_borrow().map(|f| f.capacity()).unwrap_or(0);
        if e.size == 0 || !e.size.is_multiple_of(self.unit) || e.size as usize > cap {
            return Err(Error::InPlaceEntry);
        }
        if run.get().at.is_some() {
            // Started again after a reset before unit 0 was done: its
            // scratch copy is in place already.
            return Ok(());
        }
        target_len.set(e.size);
        run.set(Run {
            units: e.size / self.unit,
            back: entry.back_to_front,
            ..run.get()
        });
        self.step(applier, run, id, 0, true)
    }

    /// Before output unit `i` is written: the checkpoint, then the old
    /// contents of its address unit into the scratch area.
    #[inline(never)]
    fn step<'v>(
        &mut self,
        applier: &mut Applier<'_, SourceView<'v, F, X>, TargetView<'v, F>>,
        run: &Cell<Run>,
        id: PatchId,
        i: u32,
        fresh: bool,
    ) -> Res<()> {
        let r = run.get();
        let v = r.address_unit(i);
        let unit_crc = self.slot_unit_crc(v)?;
        let entry = applier.in_place().ok_or(Error::InPlaceEntry)?;
        let len = in_place_checkpoint_len(align_for(S::WRITE_SIZE, S::READ_SIZE));
        let mut body = Checkpoint {
            component: 0,
            patch: id,
            fresh,
            entry: entry.to_bytes(),
            target_len: r.units * r.unit,
            unit_crc,
            state: applier.saved(),
        };
        self.store.write_checkpoint(len, &mut body)?;
        self.copy_to_scratch(v, i)?;
        run.set(Run { at: Some(i), ..r });
        applier.invalidate_cache();
        Ok(())
    }

    /// CRC-32 of address unit `v` of the slot.
    fn slot_unit_crc(&mut self, v: u32) -> Res<u32> {
        let mut slot = self
            .slot
            .try_borrow_mut()
            .map_err(|_| busy(FlashRole::Source))?;
        Ok(unit_crc(&mut *slot, v * self.unit, self.unit)
            .map_err(FlashError::of(FlashRole::Source))?)
    }

    /// CRC-32 of scratch unit `i mod 2`.
    fn scratch_crc(&mut self, i: u32) -> Res<u32> {
        let mut x = self
            .scratch
            .try_borrow_mut()
            .map_err(|_| busy(FlashRole::Scratch))?;
        Ok(unit_crc(&mut *x, (i % 2) * self.unit, self.unit)
            .map_err(FlashError::of(FlashRole::Scratch))?)
    }

    /// Copies address unit `v` of the slot into scratch unit `i mod 2`
    /// and checks the copy.
    #[inline(never)]
    fn copy_to_scratch(&mut self, v: u32, i: u32) -> Res<()> {
        let scratch = FlashError::of(FlashRole::Scratch);
        let (from, to) = (v * self.unit, (i % 2) * self.unit);
        {
            let mut x = self
                .scratch
                .try_borrow_mut()
                .map_err(|_| busy(FlashRole::Scratch))?;
            let mut slot = self
                .slot
                .try_borrow_mut()
                .map_err(|_| busy(FlashRole::Source))?;
            x.erase(to, to + self.unit).map_err(&scratch)?;
            let mut buf = [0u8; 64];
            for k in (0..self.unit).step_by(64) {
                slot.read(from + k, &mut buf)
                    .map_err(FlashError::of(FlashRole::Source))?;
                x.write(to + k, &buf).map_err(&scratch)?;
            }
        }
        let want = self.slot_unit_crc(v)?;
        if self.scratch_crc(i)? != want {
            return Err(busy(FlashRole::Scratch));
        }
        Ok(())
    }

    /// Whether the first `id.size` bytes of `patch` have CRC-32 `id.crc32`.
    #[inline(never)]
    fn patch_whole<P: ReadNorFlash>(&mut self, patch: &mut P, id: PatchId) -> Res<bool> {
        if id.size == 0 || align_up(id.size as u64, P::READ_SIZE) > patch.capacity() as u64 {
            return Ok(false);
        }
        const { assert!(P::READ_SIZE <= 64 && 64 % P::READ_SIZE == 0) };
        let mut crc = Crc32::new();
        let mut buf = [0u8; 64];
        let mut at = 0;
        while at < id.size {
            let n = (id.size - at).min(64);
            let want = align_up(n as u64, P::READ_SIZE) as usize;
            patch
                .read(at, &mut buf[..want])
                .map_err(FlashError::of(FlashRole::Staging))?;
            crc.update(&buf[..n as usize]);
            at += n;
        }
        Ok(crc.value() == id.crc32)
    }

    /// The body has been applied and the image verified: one boot record
    /// says so. Not inlined: the reverse entry's header and the next boot
    /// state are on the stack one after the other, never under a rewrite.
    #[inline(never)]
    fn record<P: ReadNorFlash>(
        &mut self,
        done: Applied,
        mem: &mut ApplierState,
        patch: &mut P,
        id: PatchId,
    ) -> Res<Rewrite> {
        let Applied { rollback, already } = done;
        let (image, _) = mem
            .outcome_target()
            .ok_or(Error::Apply(ApplyError::Failed))?;
        let image = (image.size, image.crc32);
        // Looked for before the next boot state is built, in the applier's
        // header buffer (its run has ended): one of each on the stack at a
        // time, and no header on it.
        let reverse = !rollback && reverse_entry(patch, id, self.unit, image, mem.header_buf())?;
        let (t, counter) = mem
            .outcome_target()
            .ok_or(Error::Apply(ApplyError::Failed))?;
        let mut next = self.store.boot().ok_or(Error::NoBootRecord)?;
        next.attempts = 0;
        next.rolled_back = rollback;
        next.gen = next.gen.wrapping_add(1);
        let c = &mut next.components[0];
        if rollback {
            // Back to the image the trial replaced, as it was recorded.
            c.images = [c.images[1], Image::NONE];
        } else {
            let new = Image {
                size: t.size,
                sha256: t.sha256,
                counter,
            };
            c.images = [new, if reverse { c.images[0] } else { Image::NONE }];
            if !reverse {
                c.floor = c.floor.max(counter);
            }
        }
        let trial = reverse;
        c.on_trial = trial;
        next.trial = trial;
        self.store.write_boot(&next)?;
        Ok(match already {
            false => Rewrite::Applied { trial },
            true => Rewrite::AlreadyInstalled,
        })
    }

    /// Gives the state area back.
    pub fn into_state(self) -> S {
        self.store.flash
    }
}

/// Feeds the staged patch (`id`) to `applier` from `*at`, which it
/// advances by what the applier took, until the applier stops (`true`:
/// the caller takes the stop, then calls again) or the file's end has
/// been fed (`false`). The file is read again from `*at` after a stop.
/// Inlined into the rewrite's frame, with [`InPlace::drive`]: frames of
/// their own under it cost more stack on the decoder's path (measured on
/// the demo) than they save on the checkpoint's.
///
/// The file is read through a window on the stack, of 16 bytes where the
/// staging flash reads in units that divide 16 (the patch is a few percent
/// of the image: a smaller window costs little time and every chain of
/// the rewrite 48 bytes less stack), else of 64.
#[inline(always)]
fn feed_to_stop<S, T, P>(
    applier: &mut Applier<'_, S, T>,
    patch: &mut P,
    id: PatchId,
    at: &mut u32,
) -> Res<bool>
where
    S: ReadNorFlash,
    T: NorFlash,
    P: ReadNorFlash,
{
    if 16 % P::READ_SIZE == 0 {
        feed_through::<S, T, P, 16>(applier, patch, id, at)
    } else {
        feed_through::<S, T, P, 64>(applier, patch, id, at)
    }
}

/// [`feed_to_stop`] through a window of `WIN` bytes. (One function with
/// a closure over the window made the rollback's stack 8 bytes deeper.)
#[inline(always)]
fn feed_through<S, T, P, const WIN: usize>(
    applier: &mut Applier<'_, S, T>,
    patch: &mut P,
    id: PatchId,
    at: &mut u32,
) -> Res<bool>
where
    S: ReadNorFlash,
    T: NorFlash,
    P: ReadNorFlash,
{
    // Up to `WIN` bytes of the file, read whole read units from the one
    // `at` lies in: the rest of a `WIN`-byte window.
    const { assert!(P::READ_SIZE <= 64 && 64 % P::READ_SIZE == 0) };
    let mut buf = [0u8; WIN];
    loop {
        let skip = *at as usize % P::READ_SIZE;
        // The last round feeds nothing: what the input ring holds still
        // decodes (all of it, after a resume at the end).
        let n = id.size.saturating_sub(*at).min((WIN - skip) as u32);
        if n > 0 {
            let want = align_up((skip + n as usize) as u64, P::READ_SIZE) as usize;
            patch
                .read(*at - skip as u32, &mut buf[..want])
                .map_err(FlashError::of(FlashRole::Staging))?;
        }
        let mut rest = &buf[skip..skip + n as usize];
        let before = rest.len();
        let stop = applier.feed_some(&mut rest)?;
        *at += (before - rest.len()) as u32;
        if stop.is_none() {
            return Ok(true);
        }
        if n == 0 {
            return Ok(false);
        }
    }
}

/// An error of the flash in `role` that is in use elsewhere.
fn busy(role: FlashRole) -> Error {
    FlashError::new(role, ViewError::Busy).into()
}

/// CRC-32 of `len` bytes (a multiple of 64) of `flash` from `at`.
fn unit_crc<G: ReadNorFlash>(flash: &mut G, at: u32, len: u32) -> Result<u32, G::Error> {
    let mut crc = Crc32::new();
    let mut buf = [0u8; 64];
    for k in (0..len).step_by(64) {
        flash.read(at + k, &mut buf)?;
        crc.update(&buf);
    }
    Ok(crc.value())
}

/// Whether the staged file has an in-place reverse entry for `unit`
/// whose source is `image` (its size and CRC-32 are checked here; its
/// MD5 when the rollback selects it). Headers are read into `head`.
#[inline(never)]
fn reverse_entry<P: ReadNorFlash>(
    patch: &mut P,
    id: PatchId,
    unit: u32,
    image: (u32, u32),
    head: &mut [u8; MAX_HEADER_LEN],
) -> Res<bool> {
    // `n` bytes of the file from `at` into the front of `head`, through
    // windows of whole read units.
    let mut read = |at: u32, n: usize, head: &mut [u8; MAX_HEADER_LEN]| -> Res<()> {
        if at as u64 + n as u64 > id.size as u64 || n > head.len() {
            return Err(Error::StagedPatch);
        }
        const { assert!(P::READ_SIZE <= 64 && 64 % P::READ_SIZE == 0) };
        let mut win = [0u8; 64];
        let mut done = 0;
        while done < n {
            let pos = at + done as u32;
            let skip = pos as usize % P::READ_SIZE;
            let k = (64 - skip).min(n - done);
            let len = align_up((skip + k) as u64, P::READ_SIZE) as usize;
            let start = pos - skip as u32;
            if start as u64 + len as u64 > patch.capacity() as u64 {
                return Err(Error::StagedPatch);
            }
            patch
                .read(start, &mut win[..len])
                .map_err(FlashError::of(FlashRole::Staging))?;
            head[done..done + k].copy_from_slice(&win[skip..skip + k]);
            done += k;
        }
        Ok(())
    };
    read(0, CONTAINER_HEADER_LEN, head)?;
    let mut container = [0u8; CONTAINER_HEADER_LEN];
    container.copy_from_slice(&head[..CONTAINER_HEADER_LEN]);
    let count = crate::format::parse_container(&container).map_err(|e| Error::Apply(e.into()))?;
    let mut at = CONTAINER_HEADER_LEN as u32;
    for _ in 0..count {
        read(at, 2, head)?;
        let h = u16::from_le_bytes([head[0], head[1]]) as usize;
        if h > MAX_HEADER_LEN {
            return Err(Error::StagedPatch);
        }
        read(at + 2, h, head)?;
        let (e, records) = EntryHeader::parse(&head[..h]).map_err(|e| Error::Apply(e.into()))?;
        let meta = records.meta().map_err(|e| Error::Apply(e.into()))?;
        if let (0, Some(ip)) = (meta.component, meta.in_place()) {
            let from = (e.source.size, e.source.crc32);
            if ip.rollback && ip.unit == unit && from == image {
                return Ok(true);
            }
        }
        at = at.saturating_add(2 + h as u32).saturating_add(e.body_len);
    }
    Ok(false)
}

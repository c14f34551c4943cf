//! An update in progress: the applier writing the inactive slot. Written
//! once and compiled twice, as `manager.rs` is.

use super::store::Store;
use super::{io, Applier, NorFlash};
use crate::error::{FlashError, FlashRole, SlotError as Error};
use crate::hashes::{Hashes, Software};
use crate::slots::checkpoint::Checkpoint;
use crate::slots::{align_for, checkpoint_len, Image, Installed, PatchId, Slot};
use crate::{ApplierState, Found, Outcome, Progress, Status};

/// The component and patch of the checkpoint `reader` is at the start of.
#[io]
pub(crate) async fn checkpoint_for<S: NorFlash>(
    reader: &mut super::store::RecordReader<'_, S>,
) -> Option<(u8, PatchId)> {
    let mut b = [0u8; 9];
    reader.read(&mut b).await.then(|| {
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        (
            b[0],
            PatchId {
                size: u(1),
                crc32: u(5),
            },
        )
    })
}

/// An update being written into the inactive slot. Feed it the patch with
/// [`Update::feed`], then call [`Update::finish`].
///
/// Each time the target is written up to another erase unit boundary
/// (every [`crate::slots::Config::checkpoint_units`] units), the update stops and
/// appends a checkpoint to the state area before it goes on; after a reset
/// [`crate::slots::Slots::resume`] continues from the newest one.
pub struct Update<'s, P, S, const N: usize = 1, H = Software> {
    applier: Applier<'s, &'s mut P, &'s mut P, 64, 64, H>,
    store: &'s mut Store<S, N>,
    component: u8,
    /// The patch being applied, as checkpoints record it.
    patch: PatchId,
    /// Before the first target write, the boot record must forget what
    /// it says of the target slot: the image it records there (the claim
    /// the applier was given, [`Applier::vouch_target_slot`]), or a
    /// checkpoint of an earlier update of this component.
    forget: Forget,
    target: Slot,
    running: Slot,
    running_image: Image,
    /// Where [`Update::finish`] tells the manager what it read back.
    read_back: &'s mut super::manager::ReadBack,
}

/// What an update must still make the boot record forget of its target
/// slot (the image named there, a stale checkpoint), and when.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Forget {
    /// Nothing.
    No,
    /// At the stop before the first target write.
    BeforeBody,
    /// Before the next feed: continued from a checkpoint past that stop.
    Now,
}

#[io]
impl<'s, P, S, const N: usize, H: Hashes> Update<'s, P, S, N, H>
where
    P: NorFlash,
    S: NorFlash,
{
    pub(crate) fn new(
        source: &'s mut P,
        // The target slot, and where `finish` says what it read back.
        (target, read_back): (&'s mut P, &'s mut super::manager::ReadBack),
        store: &'s mut Store<S, N>,
        component: u8,
        // The running slot and image, and the image the boot record names
        // in the target slot.
        (running, running_image, target_image): (Slot, Image, Image),
        every: u32,
        state: &'s mut ApplierState,
    ) -> Self {
        const {
            assert!(
                P::ERASE_SIZE.is_multiple_of(64),
                "erase units must hold whole write buffers"
            );
        }
        let mut applier = Applier::with_hashes(source, target, state);
        applier.set_checkpoints(every.saturating_mul(P::ERASE_SIZE as u32));
        applier.set_component(component);
        // The boot record vouches for the running image: the boot stage
        // verified it before booting it, and a trial is confirmed before
        // an update starts. An entry that names it as its source is
        // selected without hashing the slot (`docs/HASHES.md`).
        if running_image.size != 0 {
            applier.vouch_image(running_image.size, running_image.sha256);
        }
        // And for the inactive slot: it holds the image the record says,
        // or none to look for (the record forgets the slot's image before
        // any update writes it, below). An entry whose target is that
        // image is found installed without reading the slot.
        applier.vouch_target_slot(target_image.size, target_image.sha256);
        let forget = if target_image == Image::NONE {
            Forget::No
        } else {
            applier.hold_before_body();
            Forget::BeforeBody
        };
        Update {
            applier,
            store,
            component,
            patch: PatchId::UNKNOWN,
            forget,
            target: running.other(),
            running,
            running_image,
            read_back,
        }
    }

    /// Accepts only entries signed by `key` whose security counter is at
    /// least `min_counter` (pass the component's
    /// [`crate::slots::BootRecord::floor`]), as [`Applier::require_signature`]
    /// does. Call it before the first [`Update::feed`]. On an update
    /// continued by [`crate::slots::Slots::resume`] the entry in progress had its
    /// signature checked before its first checkpoint, and its image is still
    /// checked against the signed SHA-256, but the body digest is not
    /// carried over.
    #[cfg(feature = "sign")]
    pub fn require_signature(&mut self, key: [u8; crate::sign::PUBLIC_KEY_LEN], min_counter: u32) {
        self.applier.require_signature(key, min_counter);
    }

    /// Makes the newest checkpoint stale before the first target write
    /// (it is of an earlier update of this component).
    pub(crate) fn forget_before_writing(&mut self) {
        self.forget = Forget::BeforeBody;
        self.applier.hold_before_body();
    }

    /// Says which patch is being fed ([`PatchId`]): checkpoints record it,
    /// so that [`crate::slots::Slots::resume_or_begin`] continues an update only
    /// with the patch it was made from. Call it before the first
    /// [`Update::feed`].
    pub fn set_patch(&mut self, patch: PatchId) {
        self.patch = patch;
    }

    /// The patch this update is for, as [`Update::set_patch`] (or the
    /// checkpoint it was continued from) says.
    pub fn patch(&self) -> PatchId {
        self.patch
    }

    /// Takes the next chunk of the patch (any size), as
    /// [`Applier::feed`] does.
    pub async fn feed(&mut self, chunk: &[u8]) -> Result<Status, Error> {
        // Continued from a checkpoint past the body's start: before it
        // writes on (`Update::load`).
        if self.forget == Forget::Now {
            self.forget_slot().await?;
        }
        let mut rest = chunk;
        loop {
            match self.applier.feed_some(&mut rest).await? {
                Some(status) => return Ok(status),
                // Never a checkpoint here: a restart goes on from the one
                // before and writes the rest again.
                None if self.applier.due() && !self.applier.take_due().await? => {}
                // The first stop is before the first target write.
                None if self.forget == Forget::BeforeBody => self.forget_slot().await?,
                None => self.checkpoint().await?,
            }
        }
    }

    /// Makes the boot record forget the target slot's image (and the
    /// newest checkpoint stale). Not inlined: the boot state it writes is
    /// on the stack only while it runs, never under the decoder's frames.
    #[inline(never)]
    async fn forget_slot(&mut self) -> Result<(), Error> {
        self.forget = Forget::No;
        self.store
            .name_slot(self.component, self.target, &Image::NONE)
            .await
    }

    /// Appends the applier's state to the state area. Not inlined: its
    /// record buffer is then on the stack only while it runs.
    #[inline(never)]
    async fn checkpoint(&mut self) -> Result<(), Error> {
        let len = checkpoint_len(align_for(S::WRITE_SIZE, S::READ_SIZE));
        let mut body = Checkpoint {
            component: self.component,
            patch: self.patch,
            state: self.applier.saved(),
        };
        self.store.write_checkpoint(len, &mut body).await
    }

    /// Loads the newest checkpoint; the patch offset to feed from, or
    /// `None` if there is none or it cannot be used.
    pub(crate) async fn load(&mut self) -> Result<Option<u32>, Error> {
        let len = checkpoint_len(align_for(S::WRITE_SIZE, S::READ_SIZE));
        if self.store.checkpoint.map(|(c, _)| c.len as usize) != Some(len) {
            self.store.drop_checkpoint();
            return Ok(None);
        }
        let Some(mut reader) = self.store.checkpoint_reader() else {
            return Ok(None);
        };
        let mut body = Checkpoint {
            component: u8::MAX,
            patch: PatchId::UNKNOWN,
            state: self.applier.loading(),
        };
        let read = reader.read_fields(&mut body).await;
        let (component, patch) = (body.component, body.patch);
        let ok = read && component == self.component && self.applier.resumed();
        if let Some(e) = reader.err {
            return Err(FlashError::new(FlashRole::State, e).into());
        }
        if !ok {
            self.store.drop_checkpoint();
            self.applier.restart();
            return Ok(None);
        }
        self.patch = patch;
        // The update goes on writing the slot: a record that still names
        // an image there (written before records were forgotten ahead of
        // an update) forgets it before the next feed writes (which makes
        // this checkpoint stale on flash: the next one is what a later
        // reset continues from). Not here, under the caller's frame.
        if self.forget == Forget::BeforeBody {
            self.forget = Forget::Now;
        }
        Ok(Some(self.applier.consumed()))
    }

    /// The image being made (known once the entry for the running image
    /// has been read, or after a resume).
    pub fn target(&self) -> crate::format::TargetId {
        self.applier.entry_target()
    }

    /// How far the update has come.
    pub fn progress(&self) -> Progress {
        self.applier.progress()
    }

    /// Whether the patch fed so far has had an entry for this update's
    /// component, as [`Applier::component_seen`]: after
    /// [`crate::ApplyError::NoSuitablePatch`], `false` means the patch has nothing for
    /// the component (a patch for other components only), `true` that
    /// its entries are for other images than the running one.
    pub fn component_seen(&self) -> bool {
        self.applier.component_seen()
    }

    /// The patch has ended: the image it installed, or why it failed.
    /// [`Error::ImageMismatch`] if the target was found at the start of
    /// the running slot but is not the image the boot state records there
    /// (a strict prefix of it): that slot cannot boot it as it is recorded.
    pub async fn finish(mut self) -> Result<Installed, Error> {
        // A resumed update may hold the rest of the body in its input ring
        // already (offset = patch length): decode it.
        self.feed(&[]).await?;
        let outcome = self.applier.finish()?;
        let t = self
            .applier
            .result_target()
            .ok_or(Error::Apply(crate::ApplyError::Failed))?;
        let image = Image {
            size: t.size,
            sha256: t.sha256,
            counter: self.applier.result_counter().unwrap_or(0),
        };
        let slot = match outcome {
            Outcome::AlreadyInstalled(Found::Source) if image.same_bytes(&self.running_image) => {
                self.running
            }
            Outcome::AlreadyInstalled(Found::Source) => return Err(Error::ImageMismatch),
            Outcome::Applied => {
                // Read back just now: the boot record names it in the
                // slot, so that this update sent again finds it there
                // without reading the slot (and the checkpoint is stale).
                self.store
                    .name_slot(self.component, self.target, &image)
                    .await?;
                *self.read_back = Some((self.target, image));
                self.target
            }
            Outcome::AlreadyInstalled(Found::Target) => {
                // The boot record names it in the slot: an update read
                // it back there, and every update since forgot it before
                // writing the slot. Activation need not hash it again
                // while no update writes the slot.
                *self.read_back = Some((self.target, image));
                self.target
            }
        };
        Ok(Installed {
            component: self.component,
            slot,
            image,
            outcome,
        })
    }
}

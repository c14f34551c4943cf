//! An update in progress: the applier writing the inactive slot.

use embedded_storage::nor_flash::NorFlash;

use super::store::{Store, HEADER_LEN};
use super::{record_align, Image, Slot, RECORD_ALIGN};
use crate::error::{FlashError, FlashRole, SlotError as Error};
use crate::snapshot::{Field, Fields};
use crate::{Applier, ApplierState, Found, Outcome, Progress, Status};

/// Bytes of a checkpoint record on flash (header, the component, the
/// applier's state, padding, CRC) with records aligned to [`RECORD_ALIGN`]
/// (write and read sizes up to 32 bytes; [`checkpoint_len`] gives it for
/// any alignment). A checkpoint of another length (another codec's or
/// version's) is ignored.
pub const CHECKPOINT_LEN: usize = checkpoint_len(RECORD_ALIGN);

/// Bytes of a checkpoint record with records aligned to `align` bytes
/// ([`super::record_align`] of the state area).
pub const fn checkpoint_len(align: usize) -> usize {
    (HEADER_LEN + 1 + 8 + crate::apply::SAVED_LEN + 4).div_ceil(align) * align
}

/// Which patch an update applies: its size and CRC-32 (the staging area
/// and the protocol's `Begin` know both). A checkpoint records it, so
/// that an update is continued only with the patch it was made from
/// ([`super::Slots::resume_or_begin`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PatchId {
    /// Bytes of the whole patch file.
    pub size: u32,
    /// CRC-32 of the whole patch file.
    pub crc32: u32,
}

impl PatchId {
    /// Not known: an update fed by a caller that did not say
    /// ([`Update::set_patch`]). Its checkpoints are continued only by
    /// [`super::Slots::resume`], which leaves the check to the caller.
    pub const UNKNOWN: PatchId = PatchId { size: 0, crc32: 0 };
}

/// A checkpoint's body: the component, the patch, then the applier's
/// state.
struct Checkpoint<'a> {
    component: u8,
    patch: PatchId,
    state: &'a mut ApplierState,
}

impl Fields for Checkpoint<'_> {
    fn field(&mut self, i: usize) -> Option<(&'static str, Field<'_>)> {
        crate::snapshot::fields!(i;
            "the component the update is for" => Field::U8(&mut self.component),
            "size of the patch being applied (0: not known)" => Field::U32(&mut self.patch.size),
            "CRC-32 of the patch being applied" => Field::U32(&mut self.patch.crc32),
            .. ApplierState: self.state,
        )
    }
}

/// The component and patch of the checkpoint `reader` is at the start of.
pub(crate) fn checkpoint_for<S: NorFlash>(
    reader: &mut super::store::RecordReader<'_, S>,
) -> Option<(u8, PatchId)> {
    let mut b = [0u8; 9];
    reader.read(&mut b).then(|| {
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

/// The image an update left, ready for [`super::Slots::activate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Installed {
    /// The component the image is for.
    pub component: u8,
    /// Where the image is: the active slot if the patch found its target
    /// running already ([`Found::Source`]; activating it then writes
    /// nothing), else the inactive one.
    pub slot: Slot,
    /// The image, with the security counter of the entry that made it.
    pub image: Image,
    /// What the patch did.
    pub outcome: Outcome,
}

/// An update being written into the inactive slot. Feed it the patch with
/// [`Update::feed`], then call [`Update::finish`].
///
/// Each time the target is written up to another erase unit boundary
/// (every [`super::Config::checkpoint_units`] units), the update stops and
/// appends a checkpoint to the state area before it goes on; after a reset
/// [`super::Slots::resume`] continues from the newest one.
pub struct Update<'s, P, S, const N: usize = 1> {
    applier: Applier<'s, &'s mut P, &'s mut P>,
    store: &'s mut Store<S, N>,
    component: u8,
    /// The patch being applied, as checkpoints record it.
    patch: PatchId,
    target: Slot,
    running: Slot,
    running_image: Image,
}

impl<'s, P, S, const N: usize> Update<'s, P, S, N>
where
    P: NorFlash,
    S: NorFlash,
{
    pub(crate) fn new(
        source: &'s mut P,
        target: &'s mut P,
        store: &'s mut Store<S, N>,
        component: u8,
        (running, running_image): (Slot, Image),
        every: u32,
        state: &'s mut ApplierState,
    ) -> Self {
        const {
            assert!(
                P::ERASE_SIZE.is_multiple_of(64),
                "erase units must hold whole write buffers"
            );
        }
        let mut applier = Applier::new(source, target, state);
        applier.set_checkpoints(every.saturating_mul(P::ERASE_SIZE as u32));
        applier.set_component(component);
        Update {
            applier,
            store,
            component,
            patch: PatchId::UNKNOWN,
            target: running.other(),
            running,
            running_image,
        }
    }

    /// Accepts only entries signed by `key` whose security counter is at
    /// least `min_counter` (pass the component's
    /// [`super::BootRecord::floor`]), as [`Applier::require_signature`]
    /// does. Call it before the first [`Update::feed`]. On an update
    /// continued by [`super::Slots::resume`] the entry in progress had its
    /// signature checked before its first checkpoint, and its image is still
    /// checked against the signed SHA-256, but the body digest is not
    /// carried over.
    #[cfg(feature = "sign")]
    pub fn require_signature(&mut self, key: [u8; crate::sign::PUBLIC_KEY_LEN], min_counter: u32) {
        self.applier.require_signature(key, min_counter);
    }

    /// Says which patch is being fed ([`PatchId`]): checkpoints record it,
    /// so that [`super::Slots::resume_or_begin`] continues an update only
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
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Status, Error> {
        let mut rest = chunk;
        loop {
            match self.applier.feed_some(&mut rest)? {
                Some(status) => return Ok(status),
                None => self.checkpoint()?,
            }
        }
    }

    /// Appends the applier's state to the state area. Not inlined: its
    /// record buffer is then on the stack only while it runs.
    #[inline(never)]
    fn checkpoint(&mut self) -> Result<(), Error> {
        let len = checkpoint_len(record_align::<S>());
        let mut body = Checkpoint {
            component: self.component,
            patch: self.patch,
            state: self.applier.saved(),
        };
        self.store.write_checkpoint(len, &mut body)
    }

    /// Loads the newest checkpoint; the patch offset to feed from, or
    /// `None` if there is none or it cannot be used.
    pub(crate) fn load(&mut self) -> Result<Option<u32>, Error> {
        let len = checkpoint_len(record_align::<S>());
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
        let read = reader.read_fields(&mut body);
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
    pub fn finish(mut self) -> Result<Installed, Error> {
        // A resumed update may hold the rest of the body in its input ring
        // already (offset = patch length): decode it.
        self.feed(&[])?;
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
            Outcome::AlreadyInstalled(Found::Target) | Outcome::Applied => self.target,
        };
        Ok(Installed {
            component: self.component,
            slot,
            image,
            outcome,
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    /// The table of a checkpoint's body, from its field list.
    fn table() -> String {
        use std::fmt::Write;
        let mut state = ApplierState::new();
        let mut body = Checkpoint {
            component: 0,
            patch: PatchId::UNKNOWN,
            state: &mut state,
        };
        let mut out = String::from("| offset | size | field |\n|---:|---:|---|\n");
        let (mut i, mut at) = (0, HEADER_LEN);
        while let Some((name, f)) = body.field(i) {
            writeln!(out, "| +{at} | {} | {name} |", f.len()).unwrap();
            at += f.len();
            i += 1;
        }
        assert_eq!(at, HEADER_LEN + 1 + 8 + crate::apply::SAVED_LEN);
        out
    }

    /// `docs/FORMAT.md`'s table of a checkpoint is the field list's:
    /// `FLASHPATCH_WRITE_DOCS=1 cargo test -p flashpatch checkpoint_table`
    /// writes it after a change.
    #[test]
    fn checkpoint_table_in_format_md_is_the_field_list() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (begin, end) = (
            "<!-- checkpoint fields: begin -->\n",
            "<!-- checkpoint fields: end -->",
        );
        let a = doc.find(begin).expect("begin marker") + begin.len();
        let b = doc.find(end).expect("end marker");
        let want = table();
        if std::env::var_os("FLASHPATCH_WRITE_DOCS").is_some() {
            let new = [&doc[..a], &want, &doc[b..]].concat();
            std::fs::write(path, new).unwrap();
            return;
        }
        assert!(
            doc[a..b] == want,
            "docs/FORMAT.md's checkpoint table differs from the field list; \
             FLASHPATCH_WRITE_DOCS=1 cargo test -p flashpatch checkpoint_table writes it:\n{want}"
        );
    }
}

//! An update in progress: the applier writing the inactive slot.

use embedded_storage::nor_flash::NorFlash;

use super::store::{Store, HEADER_LEN};
use super::{Image, Slot, RECORD_ALIGN};
use crate::error::Error;
use crate::{Applier, Outcome, Progress, Status};

/// Bytes of a checkpoint record on flash.
pub(crate) const CHECKPOINT_LEN: usize =
    (HEADER_LEN + crate::apply::SAVED_LEN + 4).div_ceil(RECORD_ALIGN) * RECORD_ALIGN;

/// The image an update left, ready for [`super::Slots::activate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Installed {
    /// Where the image is. The active slot if the patch found its target
    /// running already (activating it then writes nothing).
    pub slot: Slot,
    /// The image.
    pub image: Image,
    /// What the patch did.
    pub outcome: Outcome,
}

/// An update being written into the inactive slot. Feed it the patch with
/// [`Update::feed`], then call [`Update::finish`].
pub struct Update<'s, P, S> {
    applier: Applier<&'s mut P, &'s mut P>,
    store: &'s mut Store<S>,
    target: Slot,
    running: Slot,
    running_image: Image,
}

impl<'s, P, S> Update<'s, P, S>
where
    P: NorFlash,
    S: NorFlash<Error = P::Error>,
{
    pub(crate) fn new(
        source: &'s mut P,
        target: &'s mut P,
        store: &'s mut Store<S>,
        target_slot: Slot,
        running: Slot,
        running_image: Image,
    ) -> Self {
        Update {
            applier: Applier::new(source, target),
            store,
            target: target_slot,
            running,
            running_image,
        }
    }

    /// Takes the next chunk of the patch (any size), as
    /// [`Applier::feed`] does.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Status, Error<P::Error>> {
        let _ = &mut self.store;
        self.applier.feed(chunk)
    }

    /// How far the update has come.
    pub fn progress(&self) -> Progress {
        self.applier.progress()
    }

    /// The patch has ended: the image it installed, or why it failed.
    pub fn finish(mut self) -> Result<Installed, Error<P::Error>> {
        let outcome = self.applier.finish()?;
        let t = self.applier.result_target().ok_or(Error::Failed)?;
        let image = Image {
            size: t.size,
            sha256: t.sha256,
        };
        // "Already installed" may mean the running image is the target.
        let slot = if outcome == Outcome::AlreadyInstalled && image == self.running_image {
            self.running
        } else {
            self.target
        };
        Ok(Installed {
            slot,
            image,
            outcome,
        })
    }
}

//! An update into embassy-boot's DFU partition. Written once, as async
//! code, and compiled twice (see `lib.rs`).

use super::{io, Applier, FirmwareState, NorFlash, ReadNorFlash};
use crate::{Error, State};
use flashpatch::{ApplierState, Bounded, Found, Outcome, Status};

/// A patch being applied into embassy-boot's DFU partition, from the
/// image in its ACTIVE partition. [`DfuUpdate::begin`], then
/// [`DfuUpdate::feed`] the patch in pieces of any size, then
/// [`DfuUpdate::finish`], which marks the update for embassy-boot.
pub struct DfuUpdate<'a, ACTIVE, DFU> {
    applier: Applier<'a, &'a mut ACTIVE, Bounded<&'a mut DFU>>,
}

#[io]
impl<'a, ACTIVE: ReadNorFlash, DFU: NorFlash> DfuUpdate<'a, ACTIVE, DFU> {
    /// Starts an update: `active` and `dfu` are embassy-boot's ACTIVE and
    /// DFU partitions, `state` its state partition; the applier works in
    /// `mem` (a `static` on a device). Refused with
    /// [`Error::AwaitingMarkBooted`] while a swapped-in image has not
    /// called `mark_booted` (the DFU partition then holds the image to
    /// revert to). Reads the state; writes nothing.
    pub async fn begin<STATE: NorFlash>(
        active: &'a mut ACTIVE,
        dfu: &'a mut DFU,
        state: &mut FirmwareState<'_, STATE>,
        mem: &'a mut ApplierState,
    ) -> Result<Self, Error> {
        if state.get_state().await? == State::Swap {
            return Err(Error::AwaitingMarkBooted);
        }
        // embassy-boot swaps as many bytes as ACTIVE holds.
        let dfu = Bounded::new(dfu, active.capacity());
        Ok(DfuUpdate {
            applier: Applier::new(active, dfu, mem),
        })
    }

    /// Takes the next piece of the patch; [`Status::Done`] once the whole
    /// patch is read and the new image verified.
    pub async fn feed(&mut self, chunk: &[u8]) -> Result<Status, Error> {
        Ok(self.applier.feed(chunk).await?)
    }

    /// Ends the update: the patch must be complete. Marks it for
    /// embassy-boot (`mark_updated`, so that the next boot swaps it in on
    /// trial) when the new image is in the DFU partition, and marks
    /// nothing when the ACTIVE partition holds it already
    /// ([`Outcome::AlreadyInstalled`] with [`Found::Source`]).
    pub async fn finish<STATE: NorFlash>(
        mut self,
        state: &mut FirmwareState<'_, STATE>,
    ) -> Result<Outcome, Error> {
        let outcome = self.applier.finish()?;
        if outcome != Outcome::AlreadyInstalled(Found::Source) {
            state.mark_updated().await?;
        }
        Ok(outcome)
    }
}

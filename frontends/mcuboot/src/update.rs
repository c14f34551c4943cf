//! An update into MCUboot's secondary slot. Written once, as async code,
//! and compiled twice (see `lib.rs`).

use super::trailer::{read_state, set_pending};
use super::{io, Applier, NorFlash};
use crate::{Error, Magic, Swap, Trailer};
use flashpatch::{ApplierState, Bounded, FlashError, FlashRole, Found, Outcome, Status};

/// A patch being applied into MCUboot's secondary slot, from the image in
/// the primary slot: [`SecondaryUpdate::begin`], [`SecondaryUpdate::feed`]
/// the patch in pieces of any size, then [`SecondaryUpdate::finish`],
/// which writes the trailer.
pub struct SecondaryUpdate<'a, P, S> {
    applier: Applier<'a, &'a mut P, Bounded<&'a mut S>>,
    trailer: Trailer,
}

#[io]
impl<'a, P: NorFlash, S: NorFlash> SecondaryUpdate<'a, P, S> {
    /// Starts an update of the image in `secondary` (whose trailer is
    /// `trailer`, the same layout as the primary slot's) from the one in
    /// `primary`; the applier works in `mem`. Refused with
    /// [`Error::AwaitingConfirm`] while MCUboot has swapped in an image on
    /// test that has not confirmed itself. Erases the erase units that
    /// hold the secondary slot's trailer first, so that an update cut
    /// short never leaves MCUboot's magic beside a partly written image;
    /// the image itself must end before the trailer (`imgtool sign
    /// --slot-size` checks that too).
    pub async fn begin(
        primary: &'a mut P,
        secondary: &'a mut S,
        trailer: Trailer,
        mem: &'a mut ApplierState,
    ) -> Result<Self, Error> {
        let running = read_state(primary, &trailer).await?;
        if running.magic == Magic::Good && running.copy_done && !running.image_ok {
            return Err(Error::AwaitingConfirm);
        }
        let erase = S::ERASE_SIZE as u32;
        let from = trailer.start() / erase * erase;
        secondary
            .erase(from, trailer.slot_size)
            .await
            .map_err(|e| Error::Flash(FlashError::new(FlashRole::Target, e)))?;
        Ok(SecondaryUpdate {
            applier: Applier::new(
                primary,
                Bounded::new(secondary, trailer.start() as usize),
                mem,
            ),
            trailer,
        })
    }

    /// Takes the next piece of the patch; [`Status::Done`] once the whole
    /// patch is read and the new image verified.
    pub async fn feed(&mut self, chunk: &[u8]) -> Result<Status, Error> {
        Ok(self.applier.feed(chunk).await?)
    }

    /// Ends the update (the patch must be complete): writes the secondary
    /// slot's trailer for `swap`, as `boot_set_pending` does, unless the
    /// primary slot runs the image already ([`Found::Source`]).
    pub async fn finish(mut self, swap: Swap) -> Result<Outcome, Error> {
        let outcome = self.applier.finish()?;
        let (_, secondary) = self.applier.into_parts();
        if outcome != Outcome::AlreadyInstalled(Found::Source) {
            set_pending(secondary.into_inner(), &self.trailer, swap, 0).await?;
        }
        Ok(outcome)
    }
}

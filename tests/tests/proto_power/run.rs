//! One boot and one protocol session of the device, written once and
//! compiled for the blocking and the async device side (see
//! `proto_power.rs`).

use core::cell::RefCell;

use flashpatch::proto::{Action, HostMsg};
use flashpatch::slots::Slot;
use flashpatch::{ApplierState, Verdict};

use super::super::{Flash, STAGE, STAGE_AT};
use super::{handle, install, io, open_slots, open_staging};

/// Boot stage and application start: select, then confirm a trial (both
/// versions are good). The SHA-256 of the image that runs, or `None` if
/// the power failed.
#[io]
pub async fn boot<const R: usize, const W: usize, const E: usize, const X: u8>(
    flash: &RefCell<Flash<R, W, E, X>>,
) -> Option<[u8; 32]> {
    let mut s = open_slots(flash).await?;
    let b = s.select().await.ok()?;
    if b.trial {
        s.confirm().await.ok()?;
    }
    let rec = s.state()?;
    Some(rec.images[if b.slot == Slot::A { 0 } else { 1 }].sha256)
}

/// One connection: the host sends `patch` from where the device says, in
/// chunks of `step` bytes; the device stores and installs it. The result,
/// or `None` if the power failed.
#[io]
pub async fn session<const R: usize, const W: usize, const E: usize, const X: u8>(
    flash: &RefCell<Flash<R, W, E, X>>,
    patch: &[u8],
    step: usize,
) -> Option<(Verdict, bool)> {
    let mut s = open_slots(flash).await?;
    let mut stage = open_staging(flash, STAGE_AT, STAGE).await?;
    let crc32 = flashpatch::crc32::crc32(patch);
    let begin = HostMsg::Begin {
        size: patch.len() as u32,
        crc32,
    };
    let mut act = handle(&mut stage, &begin).await;
    loop {
        match act {
            Action::Ack { complete: true, .. } => {
                let mut mem = ApplierState::new();
                let r = install(&mut s, &mut mem, &mut stage, &mut [0u8; 64], &mut |_| {}).await;
                return (!flash.borrow().is_dead()).then_some((r.verdict, r.restart));
            }
            Action::Ack { offset, .. } => {
                let end = (offset as usize + step).min(patch.len());
                let data = &patch[offset as usize..end];
                act = handle(&mut stage, &HostMsg::Chunk { offset, data }).await;
            }
            Action::Fail(..) | Action::Announce | Action::Describe(_) => return None,
        }
    }
}

//! The life of a device through one update, written once (see
//! `life.rs`): boot stage, application and sender, until the update has
//! come to its end.

use flashpatch::slots::Boot;
use flashpatch::{ApplierState, Status};

use super::super::{holds, Holds, Lived, Scenario, CHUNK, MAX_SESSIONS};
use super::{io, open, DevError, Device, Part, Update};
use crate::device::DevFlash;
use flashpatch::slots::Slot;

/// The boot stage: builds the slot manager and selects.
#[io]
async fn boot<const E: usize, const R: usize, const W: usize, const X: u8>(
    dev: &Device<E, R, W, X>,
) -> Result<Boot, DevError> {
    open(dev).await?.select().await
}

/// The application confirms the image it runs.
#[io]
async fn confirm<const E: usize, const R: usize, const W: usize, const X: u8>(
    dev: &Device<E, R, W, X>,
) -> Result<(), DevError> {
    open(dev).await?.confirm().await
}

/// Lives through `sc` on `dev`. `after_cut` is called with the flash after
/// each power cut, once power is back (to arm the next cut). `Err` says
/// which rule was broken.
#[io]
pub async fn live<const E: usize, const R: usize, const W: usize, const X: u8>(
    dev: &Device<E, R, W, X>,
    sc: &Scenario<'_>,
    mut after_cut: impl FnMut(&mut DevFlash<E, R, W, X>),
) -> Result<Lived, String> {
    let mut lived = Lived::default();
    let dead = || dev.flash.borrow().is_dead();
    for _ in 0..MAX_SESSIONS {
        if dead() {
            let mut f = dev.flash.borrow_mut();
            f.reboot();
            lived.cuts += 1;
            after_cut(&mut f);
        }
        // The boot stage.
        lived.boots += 1;
        let boot = match boot(dev).await {
            Ok(b) => b,
            Err(_) if dead() => continue,
            Err(e) => return Err(format!("boot selection failed: {e:?}")),
        };
        let holds = holds(dev, sc, boot.slot).ok_or_else(|| {
            format!(
                "boot selected slot {:?} (trial {}), which holds neither image",
                boot.slot, boot.trial
            )
        })?;
        // The application.
        let st = open(dev)
            .await
            .map_err(|e| format!("slots: {e:?}"))?
            .state()
            .ok_or("no boot state after a boot")?;
        match (holds, sc.rollback) {
            (Holds::New, false) if boot.trial => match confirm(dev).await {
                Ok(()) => {}
                Err(_) if dead() => {}
                Err(e) => return Err(format!("confirm failed: {e:?}")),
            },
            (Holds::New, false) => {
                check_end(dev, sc, boot, Holds::New).await?;
                return Ok(lived);
            }
            (Holds::New, true) if boot.trial => {} // never confirmed: reset
            (Holds::New, true) => return Err("a never-confirmed image became confirmed".into()),
            (Holds::Old, _) if boot.trial => return Err("the old image is on trial".into()),
            (Holds::Old, true) if st.rolled_back => {
                check_end(dev, sc, boot, Holds::Old).await?;
                return Ok(lived);
            }
            (Holds::Old, false) if st.rolled_back => {
                return Err("rolled back although the application confirms".into())
            }
            (Holds::Old, _) => match update(dev, sc, &mut lived).await {
                Ok(()) => {}
                Err(_) if dead() => {}
                Err(e) => return Err(format!("update failed: {e:?}")),
            },
        }
    }
    Err(format!("no end after {MAX_SESSIONS} boots"))
}

#[io]
async fn check_end<const E: usize, const R: usize, const W: usize, const X: u8>(
    dev: &Device<E, R, W, X>,
    sc: &Scenario<'_>,
    boot: Boot,
    want: Holds,
) -> Result<(), String> {
    let st = open(dev)
        .await
        .map_err(|e| format!("{e:?}"))?
        .state()
        .ok_or("no state")?;
    let ok = match want {
        Holds::New => boot.slot == Slot::B && !boot.trial && !st.trial && !st.rolled_back,
        Holds::Old => boot.slot == Slot::A && !boot.trial && !st.trial && st.rolled_back,
    };
    // The old image's slot is never written by an update to B.
    if ok && holds(dev, sc, Slot::A) == Some(Holds::Old) {
        Ok(())
    } else {
        Err(format!("wrong end state: {boot:?}, {st:?}"))
    }
}

/// The application's update: resume from a checkpoint or start over,
/// feed, finish, activate.
#[io]
async fn update<const E: usize, const R: usize, const W: usize, const X: u8>(
    dev: &Device<E, R, W, X>,
    sc: &Scenario<'_>,
    lived: &mut Lived,
) -> Result<(), DevError> {
    let mut slots = open(dev).await?;
    let mut mem = ApplierState::new();
    let resumed = slots.resume(&mut mem).await?;
    let inst = match resumed {
        Some(r) => {
            lived.resumes += 1;
            let (mut up, from) = (r.update, r.offset as usize);
            feed(&mut up, &sc.patch[from..], lived).await?;
            up.finish().await?
        }
        None => {
            lived.starts += 1;
            let mut mem = ApplierState::new();
            let mut up = slots.begin_update(&mut mem).await?;
            feed(&mut up, sc.patch, lived).await?;
            up.finish().await?
        }
    };
    slots.activate(&inst).await
}

#[io]
async fn feed<const E: usize, const R: usize, const W: usize, const X: u8>(
    up: &mut Update<'_, Part<'_, E, R, W, X>, Part<'_, E, R, W, X>>,
    patch: &[u8],
    lived: &mut Lived,
) -> Result<(), DevError> {
    for piece in patch.chunks(CHUNK) {
        lived.sent += piece.len() as u64;
        if let Status::Done(_) = up.feed(piece).await? {
            break;
        }
    }
    Ok(())
}

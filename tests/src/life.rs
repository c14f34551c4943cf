//! The life of a device through one update, power cuts included: boot
//! stage, application, sender, over and over until the update has come to
//! its end. Used by the power-cut sweep and the golden wear counts.
//!
//! After every boot selection it checks that the selected slot holds
//! exactly the old image or exactly the new one.

use flashpatch::slots::{Boot, Slot};
use flashpatch::ApplierState;
use flashpatch::Status;

use crate::device::{DevError, DevFlash, DevUpdate, Device};

/// Patch bytes the sender hands over at a time.
pub const CHUNK: usize = 1024;

/// Boot sessions after which a life that has not ended is a failure.
const MAX_SESSIONS: u32 = 64;

/// One update to live through.
pub struct Scenario<'a> {
    /// The running image, in slot A, confirmed.
    pub old: &'a [u8],
    /// The image the patch makes.
    pub new: &'a [u8],
    /// The patch old → new.
    pub patch: &'a [u8],
    /// The application never confirms the new image: it must be rolled
    /// back. Otherwise the application confirms at its first boot.
    pub rollback: bool,
}

/// How a life went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lived {
    /// Power cuts that happened.
    pub cuts: u32,
    /// Boot selections.
    pub boots: u32,
    /// Updates begun from the start of the patch.
    pub starts: u32,
    /// Updates resumed from a checkpoint.
    pub resumes: u32,
    /// Patch bytes the sender sent in all.
    pub sent: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Holds {
    Old,
    New,
}

/// Lives through `sc` on `dev`. `after_cut` is called with the flash after
/// each power cut, once power is back (to arm the next cut). `Err` says
/// which rule was broken.
pub fn live<const E: usize, const R: usize, const W: usize, const X: u8>(
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
        let boot = match dev.boot() {
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
        let st = dev
            .slots()
            .map_err(|e| format!("slots: {e:?}"))?
            .state()
            .ok_or("no boot state after a boot")?;
        match (holds, sc.rollback) {
            (Holds::New, false) if boot.trial => match dev.slots().and_then(|mut s| s.confirm()) {
                Ok(()) => {}
                Err(_) if dead() => {}
                Err(e) => return Err(format!("confirm failed: {e:?}")),
            },
            (Holds::New, false) => {
                check_end(dev, sc, boot, Holds::New)?;
                return Ok(lived);
            }
            (Holds::New, true) if boot.trial => {} // never confirmed: reset
            (Holds::New, true) => return Err("a never-confirmed image became confirmed".into()),
            (Holds::Old, _) if boot.trial => return Err("the old image is on trial".into()),
            (Holds::Old, true) if st.rolled_back => {
                check_end(dev, sc, boot, Holds::Old)?;
                return Ok(lived);
            }
            (Holds::Old, false) if st.rolled_back => {
                return Err("rolled back although the application confirms".into())
            }
            (Holds::Old, _) => match update(dev, sc, &mut lived) {
                Ok(()) => {}
                Err(_) if dead() => {}
                Err(e) => return Err(format!("update failed: {e:?}")),
            },
        }
    }
    Err(format!("no end after {MAX_SESSIONS} boots"))
}

/// Which image `slot` holds, if exactly one of them.
fn holds<const E: usize, const R: usize, const W: usize, const X: u8>(
    dev: &Device<E, R, W, X>,
    sc: &Scenario<'_>,
    slot: Slot,
) -> Option<Holds> {
    let f = dev.flash.borrow();
    let at = match slot {
        Slot::A => dev.layout.slot_a,
        Slot::B => dev.layout.slot_b,
    } as usize;
    let bytes = &f.as_bytes()[at..at + dev.layout.slot_size as usize];
    if bytes.starts_with(sc.new) {
        Some(Holds::New)
    } else if bytes.starts_with(sc.old) {
        Some(Holds::Old)
    } else {
        None
    }
}

fn check_end<const E: usize, const R: usize, const W: usize, const X: u8>(
    dev: &Device<E, R, W, X>,
    sc: &Scenario<'_>,
    boot: Boot,
    want: Holds,
) -> Result<(), String> {
    let st = dev
        .slots()
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
fn update<const E: usize, const R: usize, const W: usize, const X: u8>(
    dev: &Device<E, R, W, X>,
    sc: &Scenario<'_>,
    lived: &mut Lived,
) -> Result<(), DevError> {
    let mut slots = dev.slots()?;
    let mut mem = ApplierState::new();
    let resumed = slots.resume(&mut mem)?;
    let inst = match resumed {
        Some(r) => {
            lived.resumes += 1;
            let (mut up, from) = (r.update, r.offset as usize);
            feed(&mut up, &sc.patch[from..], lived)?;
            up.finish()?
        }
        None => {
            lived.starts += 1;
            let mut mem = ApplierState::new();
            let mut up = slots.begin_update(&mut mem)?;
            feed(&mut up, sc.patch, lived)?;
            up.finish()?
        }
    };
    slots.activate(&inst)
}

fn feed<const E: usize, const R: usize, const W: usize, const X: u8>(
    up: &mut DevUpdate<'_, '_, E, R, W, X>,
    patch: &[u8],
    lived: &mut Lived,
) -> Result<(), DevError> {
    for piece in patch.chunks(CHUNK) {
        lived.sent += piece.len() as u64;
        if let Status::Done(_) = up.feed(piece)? {
            break;
        }
    }
    Ok(())
}

//! The device's side of an update once the patch is stored: check it,
//! apply it into the inactive slot, activate the new image, and say so.
//!
//! ```text
//!  staged patch ─► CRC check ─► Slots::begin_update ─► feed ─► finish ─► activate ─► clear staging
//!                     │                                           │           │
//!                     └─ "Patch data is invalid or corrupt"       │           └─ "OK": restart
//!                                                                 └─ "OK, new version already installed"
//! ```
//!
//! Every step is safe to repeat after a power cut: the staged patch stays
//! complete until the update has been activated (or refused), so the host
//! sending the same patch again makes the device run [`install`] again;
//! the running slot is never written.
//!
//! A device built with a public key calls [`install_signed`] instead
//! (feature `sign`): the update then requires the key's signature
//! ([`crate::slots::Update::require_signature`]), and a patch it refuses is cleared from
//! staging like any other refused patch.

use embedded_storage::nor_flash::NorFlash;

use super::msg::{verdict_code, DeviceMsg, Stage};
use super::Staging;
use crate::slots::Slots;
use crate::{ApplierState, Outcome, Verdict};

/// How often (in patch bytes fed) [`install`] reports progress.
pub const PROGRESS_EVERY: u32 = 4096;

/// How an [`install`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Installed {
    /// The result sent to the host.
    pub verdict: Verdict,
    /// Whether the device must restart now to boot the new image.
    pub restart: bool,
}

/// Installs the complete patch in `staging`, with the applier working in
/// `state` (kept by the caller, e.g. in a `static`): sends
/// [`DeviceMsg::Progress`] through `send` as it goes, and the
/// [`DeviceMsg::Result`] at the end. `buf` is the read buffer for the
/// staged patch (a multiple of 4 bytes). On "OK" the caller restarts the
/// device ([`Installed::restart`]).
pub fn install<P, S, F>(
    slots: &mut Slots<P, S>,
    state: &mut ApplierState,
    staging: &mut Staging<F>,
    buf: &mut [u8],
    send: &mut dyn FnMut(&DeviceMsg<'_>),
) -> Installed
where
    P: NorFlash,
    S: NorFlash,
    F: NorFlash,
{
    install_with(slots, state, staging, buf, send, Policy::default())
}

/// [`install`] on a device that holds a public key (feature `sign`): only
/// a patch whose entries are signed by `key` (an Ed25519 public key, e.g.
/// the 32 bytes of a `genpat keygen` `KEY.pub`) with a security counter of
/// at least `min_counter` is applied. Each entry header's signature is
/// checked before anything of the entry is used, the body against its
/// signed SHA-256 as it streams, and the image against its signed SHA-256
/// before activation. An unsigned patch, one signed with another key and a
/// tampered one get "Patch data is invalid or corrupt"; a counter below
/// `min_counter` gets "An error occurred while patching". The running
/// slot is never written either way.
#[cfg(feature = "sign")]
pub fn install_signed<P, S, F>(
    slots: &mut Slots<P, S>,
    state: &mut ApplierState,
    staging: &mut Staging<F>,
    buf: &mut [u8],
    key: [u8; crate::sign::PUBLIC_KEY_LEN],
    min_counter: u32,
    send: &mut dyn FnMut(&DeviceMsg<'_>),
) -> Installed
where
    P: NorFlash,
    S: NorFlash,
    F: NorFlash,
{
    let policy = Policy {
        key: Some((key, min_counter)),
    };
    install_with(slots, state, staging, buf, send, policy)
}

/// What an install requires of the patch's signatures. Empty without the
/// feature `sign`, so that an install without it is exactly what it was.
#[derive(Clone, Copy, Default)]
struct Policy {
    /// The key entries must be signed by, and the lowest security counter.
    #[cfg(feature = "sign")]
    key: Option<([u8; crate::sign::PUBLIC_KEY_LEN], u32)>,
}

/// [`install`], with `policy` applied to the update before it is fed.
fn install_with<P, S, F>(
    slots: &mut Slots<P, S>,
    state: &mut ApplierState,
    staging: &mut Staging<F>,
    buf: &mut [u8],
    send: &mut dyn FnMut(&DeviceMsg<'_>),
    policy: Policy,
) -> Installed
where
    P: NorFlash,
    S: NorFlash,
    F: NorFlash,
{
    let (verdict, text, restart) = match run(slots, state, staging, buf, send, policy) {
        Ok(Outcome::Applied) => (Verdict::Ok, Verdict::Ok.message(), true),
        Ok(Outcome::AlreadyInstalled) => {
            let v = Verdict::AlreadyInstalled;
            (v, v.message(), false)
        }
        Err((v, text)) => (v, text, false),
    };
    if !restart {
        // Refused or nothing to do: the patch is not tried again.
        let _ = staging.clear();
    }
    send(&DeviceMsg::Result {
        code: verdict_code(verdict),
        text,
    });
    Installed { verdict, restart }
}

type Failed = (Verdict, &'static str);

fn run<P, S, F>(
    slots: &mut Slots<P, S>,
    state: &mut ApplierState,
    staging: &mut Staging<F>,
    buf: &mut [u8],
    send: &mut dyn FnMut(&DeviceMsg<'_>),
    policy: Policy,
) -> Result<Outcome, Failed>
where
    P: NorFlash,
    S: NorFlash,
    F: NorFlash,
{
    let size = staging.resume().map_or(0, |r| r.size);
    let error = |e: crate::SlotError| {
        let v = e.verdict();
        (v, v.message())
    };
    match staging.check(buf) {
        Ok(true) => {}
        Ok(false) => return Err((Verdict::Corrupt, Verdict::Corrupt.message())),
        Err(_) => return Err((Verdict::Error, "the staging flash failed")),
    }
    send(&DeviceMsg::Progress {
        stage: Stage::Applying,
        done: 0,
        total: size,
    });
    let installed = {
        let mut update = slots.begin_update(state).map_err(error)?;
        #[cfg(feature = "sign")]
        if let Some((key, min_counter)) = policy.key {
            update.require_signature(key, min_counter);
        }
        let _ = policy;
        let mut next = PROGRESS_EVERY;
        super::feed_staged(
            staging,
            buf,
            |c| update.feed(c),
            |done| {
                if done >= next || done == size {
                    next = done + PROGRESS_EVERY;
                    send(&DeviceMsg::Progress {
                        stage: Stage::Applying,
                        done,
                        total: size,
                    });
                }
            },
        )
        .map_err(error)?;
        update.finish().map_err(error)?
    };
    if installed.outcome == Outcome::AlreadyInstalled && installed.slot == slots.active() {
        return Ok(Outcome::AlreadyInstalled);
    }
    send(&DeviceMsg::Progress {
        stage: Stage::Activating,
        done: 0,
        total: 1,
    });
    slots.activate(&installed).map_err(error)?;
    // Activated: from here a power cut boots the new image on trial.
    let _ = staging.clear();
    send(&DeviceMsg::Progress {
        stage: Stage::Restarting,
        done: 1,
        total: 1,
    });
    Ok(Outcome::Applied)
}

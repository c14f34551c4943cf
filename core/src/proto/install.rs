//! The device's side of an update once the patch is stored, written once
//! and compiled twice (as the blocking `proto::device` functions and the
//! async `proto::asynch` ones; see `flashpatch-macros`). The module docs
//! are `proto::device`'s.

use super::stage::{feed_staged_from, Staging};
use super::{io, NorFlash, Slots};
use crate::hashes::Hashes;
use crate::log;
use crate::proto::device::{failed, Failed, Installed, Policy, NOTHING, PROGRESS_EVERY};
use crate::proto::msg::{verdict_code, ComponentImage, DeviceMsg, Stage};
use crate::slots::{self, Image};
use crate::{ApplierState, ApplyError, Found, Outcome, SlotError, Verdict};

/// The answer to [`crate::proto::HostMsg::Component`]: what `component` of
/// `slots` runs (the image its boot state records as active; size 0 for an
/// empty component or one past the last).
pub fn component<P, S, H: Hashes, const N: usize>(
    slots: &Slots<P, S, N, H>,
    component: u8,
) -> DeviceMsg<'static>
where
    P: NorFlash,
    S: NorFlash,
{
    let c = slots
        .boot_state()
        .and_then(|b| b.components.get(component as usize).copied());
    let image = c.map_or(Image::NONE, |c| c.image());
    DeviceMsg::Component(ComponentImage {
        component,
        components: N.min(u8::MAX as usize) as u8,
        image_size: image.size,
        image_sha256: image.sha256,
        security_counter: image.counter,
        floor: c.map_or(0, |c| c.floor),
    })
}

/// Installs the complete patch in `staging`, with the applier working in
/// `state` (kept by the caller, e.g. in a `static`): sends
/// [`DeviceMsg::Progress`] through `send` as it goes, and the
/// [`DeviceMsg::Result`] at the end. `buf` is the read buffer for the
/// staged patch (a multiple of 4 bytes). On "OK" the caller restarts the
/// device ([`Installed::restart`]).
///
/// With `N` components the staged patch is fed once per component (the
/// applier skips the entries of the others), and progress counts the
/// bytes fed of `N` times the patch size. Components the patch has no
/// entry for are left as they are; "OK, new version already installed"
/// means that each component it has entries for already runs its target.
#[io]
pub async fn install<P, S, F, H: Hashes, const N: usize>(
    slots: &mut Slots<P, S, N, H>,
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
    install_with(slots, state, staging, buf, send, Policy::default()).await
}

/// [`install`] on a device that holds a public key (feature `sign`): only
/// a patch whose entries are signed by `key` (an Ed25519 public key, e.g.
/// the 32 bytes of a `genpat keygen` `KEY.pub`) with a security counter of
/// at least `min_counter`, and at least its component's
/// [`floor`](crate::slots::BootRecord::floor), is applied. Each entry
/// header's signature is checked before anything of the entry is used,
/// the body against its signed SHA-256 as it streams, and the image
/// against its signed SHA-256 before activation. An unsigned patch, one signed with another key and a
/// tampered one get "Patch data is invalid or corrupt"; a counter below
/// `min_counter` gets "An error occurred while patching". The running
/// slot is never written either way.
#[io]
#[cfg(feature = "sign")]
pub async fn install_signed<P, S, F, H: Hashes, const N: usize>(
    slots: &mut Slots<P, S, N, H>,
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
    install_with(slots, state, staging, buf, send, policy).await
}

/// [`install`], with `policy` applied to each update before it is fed.
#[io]
async fn install_with<P, S, F, H: Hashes, const N: usize>(
    slots: &mut Slots<P, S, N, H>,
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
    let (verdict, text, restart) = match run(slots, state, staging, buf, send, policy).await {
        Ok(true) => (Verdict::Ok, Verdict::Ok.message(), true),
        Ok(false) => {
            let v = Verdict::AlreadyInstalled;
            (v, v.message(), false)
        }
        Err((v, text)) => (v, text, false),
    };
    match verdict {
        Verdict::Ok => log::info!("flashpatch: install done: restart into the new image"),
        Verdict::AlreadyInstalled => log::info!("flashpatch: install: already installed"),
        _ => log::warning!("flashpatch: install refused: {=str}", text),
    }
    if !restart {
        // Refused or nothing to do: the patch is not tried again.
        let _ = staging.clear().await;
    }
    send(&DeviceMsg::Result {
        code: verdict_code(verdict),
        text,
    });
    Installed { verdict, restart }
}

/// Applies the staged patch to every component it has entries for and
/// activates the images together: `true` if a new image was activated,
/// `false` if every one was running already.
#[io]
async fn run<P, S, F, H: Hashes, const N: usize>(
    slots: &mut Slots<P, S, N, H>,
    state: &mut ApplierState,
    staging: &mut Staging<F>,
    buf: &mut [u8],
    send: &mut dyn FnMut(&DeviceMsg<'_>),
    policy: Policy,
) -> Result<bool, Failed>
where
    P: NorFlash,
    S: NorFlash,
    F: NorFlash,
{
    let size = staging.resume().map_or(0, |r| r.size);
    match staging.check(buf).await {
        Ok(true) => {}
        Ok(false) => return Err((Verdict::Corrupt, Verdict::Corrupt.message())),
        Err(_) => return Err((Verdict::Error, "the staging flash failed")),
    }
    let mut next = PROGRESS_EVERY;
    send(&DeviceMsg::Progress {
        stage: Stage::Applying,
        done: 0,
        total: size.saturating_mul(N as u32),
    });
    if N == 1 {
        // One component: its image is made after the only pass, so that
        // nothing is held on the stack while the decoder runs.
        let one = apply_component(slots, 0, state, staging, buf, send, policy, &mut next).await?;
        return activate(slots, staging, send, one.as_slice()).await;
    }
    // What each component's update left, in component order.
    let mut done = [NOTHING; N];
    let mut n = 0;
    for k in 0..N {
        let one =
            apply_component(slots, k as u8, state, staging, buf, send, policy, &mut next).await?;
        if let Some(i) = one {
            done[n] = i;
            n += 1;
        }
    }
    activate(slots, staging, send, &done[..n]).await
}

/// Activates what the updates left (`done`, at most one per component)
/// in one record write: `true` if a new image was activated, `false` if
/// every one was running already.
#[io]
async fn activate<P, S, F, H: Hashes, const N: usize>(
    slots: &mut Slots<P, S, N, H>,
    staging: &mut Staging<F>,
    send: &mut dyn FnMut(&DeviceMsg<'_>),
    done: &[slots::Installed],
) -> Result<bool, Failed>
where
    P: NorFlash,
    S: NorFlash,
    F: NorFlash,
{
    if done.is_empty() {
        let v = Verdict::NoSuitablePatch;
        return Err((v, v.message()));
    }
    let running = |i: &slots::Installed| i.outcome == Outcome::AlreadyInstalled(Found::Source);
    if done.iter().all(running) {
        return Ok(false);
    }
    send(&DeviceMsg::Progress {
        stage: Stage::Activating,
        done: 0,
        total: 1,
    });
    slots.activate_group(done).await.map_err(failed)?;
    // Activated: from here a power cut boots the new images on trial.
    let _ = staging.clear().await;
    send(&DeviceMsg::Progress {
        stage: Stage::Restarting,
        done: 1,
        total: 1,
    });
    Ok(true)
}

/// Feeds the staged patch to an update of component `k`: the image it
/// left, or `None` if the patch has no entry for `k`. Progress counts the
/// bytes fed by this pass and the `k` before it, of `N` passes; `next` is
/// when the next report is due.
#[allow(clippy::too_many_arguments)]
#[io]
async fn apply_component<P, S, F, H: Hashes, const N: usize>(
    slots: &mut Slots<P, S, N, H>,
    k: u8,
    state: &mut ApplierState,
    staging: &mut Staging<F>,
    buf: &mut [u8],
    send: &mut dyn FnMut(&DeviceMsg<'_>),
    policy: Policy,
    next: &mut u32,
) -> Result<Option<slots::Installed>, Failed>
where
    P: NorFlash,
    S: NorFlash,
    F: NorFlash,
{
    #[cfg(feature = "sign")]
    let floor = slots
        .boot_state()
        .and_then(|b| b.components.get(k as usize).map(|c| c.floor))
        .unwrap_or(0);
    let (size, crc32) = staging.resume().map_or((0, 0), |r| (r.size, r.crc32));
    // After a reset during the apply, the update goes on from its
    // checkpoint if it has one for this component and this patch.
    let patch = slots::PatchId { size, crc32 };
    let (mut update, from) = slots
        .resume_or_begin(k, patch, state)
        .await
        .map_err(failed)?;
    #[cfg(feature = "sign")]
    if let Some((key, min_counter)) = policy.key {
        update.require_signature(key, min_counter.max(floor));
    }
    let _ = policy;
    let r = feed_staged_from(
        staging,
        from,
        buf,
        async |c| update.feed(c).await,
        |done| {
            let at = (k as u32).saturating_mul(size).saturating_add(done);
            let total = size.saturating_mul(N as u32);
            if at >= *next || at == total {
                *next = at.saturating_add(PROGRESS_EVERY);
                send(&DeviceMsg::Progress {
                    stage: Stage::Applying,
                    done: at,
                    total,
                });
            }
        },
    )
    .await;
    let done = match r {
        Ok(()) => update.finish().await.map(Some),
        // Nothing for this component in the patch: it stays as it is.
        Err(SlotError::Apply(ApplyError::NoSuitablePatch)) if !update.component_seen() => Ok(None),
        Err(e) => Err(e),
    };
    if done.is_err() && from > 0 {
        // A continued update that fails is not continued again: the next
        // try begins at 0.
        let _ = slots.forget_checkpoint(k).await;
    }
    done.map_err(failed)
}

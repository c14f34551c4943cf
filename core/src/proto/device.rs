//! The device's side of an update once the patch is stored: check it,
//! apply it into the inactive slot of each component it has entries for,
//! activate the new images together, and say so.
//!
//! ```text
//!  staged patch ─► CRC check ─┬─► for each component k:                    ─► activate_group ─► clear staging
//!                     │       │   Slots::begin_component_update(k) ─► feed ─► finish     │
//!                     │       │     (no entry for k: skipped)                            └─ "OK": restart
//!                     │       └─► every image found running: "OK, new version already installed"
//!                     └─ "Patch data is invalid or corrupt"
//! ```
//!
//! A device with several components ([`Slots::new_group`]) updates every
//! component the patch has entries for in one run: each is applied into
//! its own inactive slot, then **one record write** activates all of them
//! ([`Slots::activate_group`]), so a power cut leaves all old or all new.
//! A component whose entries are all for other images than the one it
//! runs fails the whole update ("No suitable patches were found"), and
//! nothing is activated.
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

use super::msg::{verdict_code, ComponentImage, DeviceMsg, Stage};
use super::Staging;
use crate::slots::{self, Image, Slot, Slots};
use crate::{ApplierState, ApplyError, Found, Outcome, SlotError, Verdict};

/// How often (in patch bytes fed) [`install`] reports progress.
pub const PROGRESS_EVERY: u32 = 4096;

/// The answer to [`super::HostMsg::Component`]: what `component` of
/// `slots` runs (the image its boot state records as active; size 0 for an
/// empty component or one past the last).
pub fn component<P, S, const N: usize>(slots: &Slots<P, S, N>, component: u8) -> DeviceMsg<'static>
where
    P: NorFlash,
    S: NorFlash,
{
    let image = slots
        .boot_state()
        .and_then(|b| b.components.get(component as usize).map(|c| c.image()))
        .unwrap_or(Image::NONE);
    DeviceMsg::Component(ComponentImage {
        component,
        components: N.min(u8::MAX as usize) as u8,
        image_size: image.size,
        image_sha256: image.sha256,
    })
}

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
///
/// With `N` components the staged patch is fed once per component (the
/// applier skips the entries of the others), and progress counts the
/// bytes fed of `N` times the patch size. Components the patch has no
/// entry for are left as they are; "OK, new version already installed"
/// means that each component it has entries for already runs its target.
pub fn install<P, S, F, const N: usize>(
    slots: &mut Slots<P, S, N>,
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
/// at least `min_counter`, and at least its component's
/// [`floor`](crate::slots::BootRecord::floor), is applied. Each entry
/// header's signature is checked before anything of the entry is used,
/// the body against its signed SHA-256 as it streams, and the image
/// against its signed SHA-256 before activation. An unsigned patch, one signed with another key and a
/// tampered one get "Patch data is invalid or corrupt"; a counter below
/// `min_counter` gets "An error occurred while patching". The running
/// slot is never written either way.
#[cfg(feature = "sign")]
pub fn install_signed<P, S, F, const N: usize>(
    slots: &mut Slots<P, S, N>,
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

/// [`install`], with `policy` applied to each update before it is fed.
fn install_with<P, S, F, const N: usize>(
    slots: &mut Slots<P, S, N>,
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
        Ok(true) => (Verdict::Ok, Verdict::Ok.message(), true),
        Ok(false) => {
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

fn failed(e: SlotError) -> Failed {
    let v = e.verdict();
    (v, v.message())
}

/// Applies the staged patch to every component it has entries for and
/// activates the images together: `true` if a new image was activated,
/// `false` if every one was running already.
fn run<P, S, F, const N: usize>(
    slots: &mut Slots<P, S, N>,
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
    match staging.check(buf) {
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
        let one = apply_component(slots, 0, state, staging, buf, send, policy, &mut next)?;
        return activate(slots, staging, send, one.as_slice());
    }
    // What each component's update left, in component order.
    let mut done = [NOTHING; N];
    let mut n = 0;
    for k in 0..N {
        let one = apply_component(slots, k as u8, state, staging, buf, send, policy, &mut next)?;
        if let Some(i) = one {
            done[n] = i;
            n += 1;
        }
    }
    activate(slots, staging, send, &done[..n])
}

/// Activates what the updates left (`done`, at most one per component)
/// in one record write: `true` if a new image was activated, `false` if
/// every one was running already.
fn activate<P, S, F, const N: usize>(
    slots: &mut Slots<P, S, N>,
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
    slots.activate_group(done).map_err(failed)?;
    // Activated: from here a power cut boots the new images on trial.
    let _ = staging.clear();
    send(&DeviceMsg::Progress {
        stage: Stage::Restarting,
        done: 1,
        total: 1,
    });
    Ok(true)
}

/// An empty place for what an update left.
const NOTHING: slots::Installed = slots::Installed {
    component: 0,
    slot: Slot::A,
    image: Image::NONE,
    outcome: Outcome::Applied,
};

/// Feeds the staged patch to an update of component `k`: the image it
/// left, or `None` if the patch has no entry for `k`. Progress counts the
/// bytes fed by this pass and the `k` before it, of `N` passes; `next` is
/// when the next report is due.
#[allow(clippy::too_many_arguments)]
fn apply_component<P, S, F, const N: usize>(
    slots: &mut Slots<P, S, N>,
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
    let (mut update, from) = slots.resume_or_begin(k, patch, state).map_err(failed)?;
    #[cfg(feature = "sign")]
    if let Some((key, min_counter)) = policy.key {
        update.require_signature(key, min_counter.max(floor));
    }
    let _ = policy;
    let r = super::feed_staged_from(
        staging,
        from,
        buf,
        |c| update.feed(c),
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
    );
    match r {
        Ok(()) => update.finish().map(Some).map_err(failed),
        // Nothing for this component in the patch: it stays as it is.
        Err(SlotError::Apply(ApplyError::NoSuitablePatch)) if !update.component_seen() => Ok(None),
        Err(e) => Err(failed(e)),
    }
}

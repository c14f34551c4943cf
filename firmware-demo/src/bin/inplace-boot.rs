//! The in-place demo's boot stage: before anything boots,
//! `flashpatch::slots::InPlace::boot` finishes a rewrite a reset cut
//! (from the staged file and the newest checkpoint), counts a trial boot,
//! or rolls back a trial that has had its boots with the file's reverse
//! entry, in place too. Then it loads the verified image to `APP_BASE`,
//! checks the copy and starts it. It measures its own RAM: the applier's
//! state (a static) and the stack high-water of the whole stage.
#![no_std]
#![no_main]

use core::cell::RefCell;

use cortex_m_rt::entry;
use embedded_storage::nor_flash::ReadNorFlash;
use firmware_demo::flash::FileFlash;
use firmware_demo::in_place as ip;
use firmware_demo::{log, semihost, stack, Flash, Part, APP_BASE, CONFIG};
use flashpatch::proto::Staging;
use flashpatch::slots::{Boot, Image, InPlace, PatchId};
use flashpatch::{ApplierState, Partition};
use sha2::{Digest, Sha256};

firmware_demo::handlers!();

/// The applier's working memory, for a rewrite the boot stage finishes
/// or a rollback: a static, as in the application.
static mut APPLIER: ApplierState = ApplierState::new();

#[entry]
fn main() -> ! {
    // The whole stage's stack is measured: painted before anything else.
    let painted = stack::paint();
    let flash = firmware_demo::open_flash_of(ip::FLASH_SIZE);
    // Each step in its own frame: what the boot stage needs at once is
    // the deepest of them, not their sum. The image to start stays in
    // the device's boot record, under `select`: no copy of it here.
    let how = select(&flash);
    measured(painted, how);
    // SAFETY: the image verified; its first words are its vector table.
    unsafe {
        let p = cortex_m::Peripherals::steal();
        p.SCB.vtor.write(APP_BASE);
        cortex_m::asm::bootload(APP_BASE as *const u32)
    }
}

/// Says what the stage took: the applier's state and the stack
/// high-water. Not inlined: its formatting is not under `select`.
#[inline(never)]
fn measured(painted: u32, how: &str) {
    log!(
        "boot: measured: applier_state={} stack_high_water={} ({how})",
        core::mem::size_of::<ApplierState>(),
        stack::used_in_all(painted),
    );
}

/// A partition of the flash, or the stage stops.
fn part(flash: &Flash, (at, len): (u32, u32)) -> Partition<'_, FileFlash> {
    Partition::new(flash, at, len).unwrap_or_else(|| semihost::exit(semihost::exit::FLASH))
}

/// The staged file's identity, if a transfer completed: what a rewrite in
/// progress or a rollback reads.
#[inline(never)]
fn staged_id(flash: &Flash) -> PatchId {
    Staging::open(part(flash, ip::STAGE))
        .ok()
        .and_then(|s| s.resume())
        .filter(|r| r.offset == r.size)
        .map_or(PatchId::UNKNOWN, |r| PatchId {
            size: r.size,
            crc32: r.crc32,
        })
}

/// `InPlace::boot`: finishes a cut rewrite, counts a trial boot or rolls
/// a trial back, then loads the image to start; what it took.
#[inline(never)]
fn select(flash: &Flash) -> &'static str {
    let slot = RefCell::new(part(flash, ip::SLOT));
    let scratch = RefCell::new(part(flash, ip::SCRATCH));
    let state = part(flash, ip::STATE);
    // Borrowed where it was made, not moved out of its `Result`: one copy
    // of the device on the stack.
    let mut opened = InPlace::new(&slot, &scratch, state, ip::UNIT, CONFIG);
    let dev = match &mut opened {
        Ok(d) => d,
        Err(e) => fail("state area unreadable", e),
    };
    let id = staged_id(flash);
    let finishing = dev.in_progress();
    let was_trial = on_trial(dev);
    if finishing {
        log!("boot: a rewrite was cut; finishing it from the staged file");
    }
    // SAFETY: the only reference to APPLIER, taken once.
    let applier = unsafe { &mut *core::ptr::addr_of_mut!(APPLIER) };
    let boot = match dev.boot(&mut part(flash, ip::STAGED), id, applier) {
        Ok(b) => b,
        Err(e) => fail("NO BOOTABLE IMAGE", &e),
    };
    start(flash, dev, &boot);
    if finishing {
        "finished a cut rewrite"
    } else if was_trial && boot.rolled_back {
        "rolled back"
    } else {
        "no rewrite"
    }
}

/// Says why nothing boots and stops. Not inlined: its formatting is not
/// in the caller's frame.
#[cold]
#[inline(never)]
fn fail(what: &str, e: &dyn core::fmt::Display) -> ! {
    log!("boot: {what}: {e}");
    semihost::exit(semihost::exit::NO_IMAGE)
}

/// The in-place device of this flash.
type Device<'f> = InPlace<'f, Part<'f>, Part<'f>, Part<'f>>;

/// Whether the image in the slot is on trial. Not inlined, as [`report`].
#[inline(never)]
fn on_trial(dev: &Device<'_>) -> bool {
    dev.state().is_some_and(|r| r.trial)
}

/// Says what boots and loads it. Not inlined: the boot record it reads
/// is on the stack only while it runs, not under a rewrite.
#[inline(never)]
fn start(flash: &Flash, dev: &Device<'_>, boot: &Boot) {
    let Some(rec) = dev.state() else {
        semihost::exit(semihost::exit::NO_IMAGE)
    };
    let image = &rec.images[0];
    log!(
        "boot: in place, {} bytes, counter {} (floor {}), {}{}",
        image.size,
        image.counter,
        rec.floor,
        if boot.trial { "trial" } else { "confirmed" },
        if boot.rolled_back {
            ", rolled back by the reverse patch"
        } else {
            ""
        }
    );
    load(flash, image);
}

/// Copies `image` from the slot to `APP_BASE` and checks the copy's
/// SHA-256.
#[inline(never)]
fn load(flash: &Flash, image: &Image) {
    let mut slot = part(flash, ip::SLOT);
    // SAFETY: APP_BASE..+slot size is code memory that nothing else uses;
    // the boot stage runs from below it and never returns there.
    let dest = unsafe { core::slice::from_raw_parts_mut(APP_BASE as *mut u8, image.size as usize) };
    if image.size as usize > slot.capacity() || slot.read(0, dest).is_err() {
        log!("boot: cannot load the image");
        semihost::exit(semihost::exit::NO_IMAGE)
    }
    if Sha256::digest(&*dest)[..] != image.sha256[..] {
        log!("boot: the loaded image does not match its SHA-256");
        semihost::exit(semihost::exit::NO_IMAGE)
    }
}

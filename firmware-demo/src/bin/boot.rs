//! The boot stage: picks the slot to run with flashpatch's slot manager
//! (which verifies the image's size and SHA-256, refuses one whose
//! security counter is below the recorded floor, and counts or rolls back
//! a trial) and starts it where it lies: vector table, stack pointer and
//! reset handler from the slot, nothing copied.
//!
//! An image executes only at the address it was linked for. One whose
//! vector table does not point into its own slot (a build for the other
//! slot, which an update made with a same-slot entry would install) is
//! not started: on trial, the boot stage restarts, so that the slot
//! manager counts the failed boot and rolls the trial back once its
//! attempts are spent; confirmed, it stops with "no bootable image".
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use firmware_demo::{log, semihost, slot_address, CONFIG, LAYOUT, RAM};
use flashpatch::slots::{Slot, Slots};

firmware_demo::handlers!();

#[entry]
fn main() -> ! {
    let flash = firmware_demo::xip_flash();
    let Some([a, b, state]) = LAYOUT.partitions(&flash) else {
        log!("boot: the flash is smaller than the layout");
        semihost::exit(semihost::exit::FLASH)
    };
    let mut slots = match Slots::new(a, b, state, CONFIG) {
        Ok(s) => s,
        Err(e) => {
            log!("boot: state area unreadable: {e}");
            semihost::exit(semihost::exit::NO_IMAGE)
        }
    };
    let boot = match slots.select() {
        Ok(b) => b,
        Err(e) => {
            log!("boot: NO BOOTABLE IMAGE: {e}");
            semihost::exit(semihost::exit::NO_IMAGE)
        }
    };
    let Some(rec) = slots.state() else {
        semihost::exit(semihost::exit::NO_IMAGE)
    };
    let image = rec.images[match boot.slot {
        Slot::A => 0,
        Slot::B => 1,
    }];
    log!(
        "boot: slot {:?}, {} bytes, counter {} (floor {}), {}{}",
        boot.slot,
        image.size,
        image.counter,
        rec.floor,
        if boot.trial { "trial" } else { "confirmed" },
        if boot.rolled_back {
            ", rolled back"
        } else {
            ""
        }
    );
    let at = slot_address(boot.slot);
    let (sp, reset) = vectors(at);
    let end = at + image.size;
    // Thumb: the reset vector's bit 0 is set.
    if !(at..end).contains(&(reset & !1)) || !(RAM.0..=RAM.0 + RAM.1).contains(&sp) {
        log!(
            "boot: the image in slot {:?} is not linked for {at:#010x} (reset vector {reset:#010x}): not started",
            boot.slot
        );
        if boot.trial {
            log!("boot: restarting; the trial is rolled back once its boots are spent");
            firmware_demo::reset()
        }
        semihost::exit(semihost::exit::NO_IMAGE)
    }
    log!("boot: executing in place at {at:#010x}");
    // SAFETY: the slot manager verified the image (size and SHA-256), and
    // its vector table points into this slot, for which it was linked; the
    // boot stage leaves nothing behind that the image relies on.
    unsafe {
        let p = cortex_m::Peripherals::steal();
        p.SCB.vtor.write(at);
        cortex_m::asm::bootload(at as *const u32)
    }
}

/// The initial stack pointer and reset vector of the image at `at`.
fn vectors(at: u32) -> (u32, u32) {
    // SAFETY: `at` is a slot's address in the mapped flash, word-aligned.
    unsafe {
        let v = at as *const u32;
        (v.read_volatile(), v.add(1).read_volatile())
    }
}

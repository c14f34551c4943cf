//! The boot stage: picks the slot to run with flashpatch's slot manager
//! (which verifies the image's size and SHA-256, counts a trial boot and
//! rolls back a trial that was not confirmed), checks that the image's
//! vector table belongs to its slot (each image is linked for one slot;
//! a trial image that is not is restarted until it is rolled back), and
//! starts it where it lies: stack pointer and reset handler from the
//! slot's vector table. The Cortex-M0 has no VTOR: exceptions keep going
//! through this stage's table (the application uses none; a HardFault
//! stops QEMU with its exit code).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use firmware_microbit::{log, semihost, slot_start, stack, CONFIG, LAYOUT, RAM, SLOT_SIZE};
use flashpatch::slots::{Slot, Slots};

#[cortex_m_rt::exception]
unsafe fn HardFault(ef: &cortex_m_rt::ExceptionFrame) -> ! {
    log!("HARDFAULT at pc {:#010x}", ef.pc());
    semihost::exit(semihost::exit::HARD_FAULT)
}

#[entry]
fn main() -> ! {
    // The stack below main's frame is painted: what selecting a slot
    // uses of it is measured before the jump.
    let top = stack::paint();
    let flash = firmware_microbit::open_flash();
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
    let index = match boot.slot {
        Slot::A => 0,
        Slot::B => 1,
    };
    let image = rec.images[index];
    let at = slot_start(index);
    log!(
        "boot: slot {:?}, {} bytes, {}{}",
        boot.slot,
        image.size,
        if boot.trial { "trial" } else { "confirmed" },
        if boot.rolled_back {
            ", rolled back"
        } else {
            ""
        }
    );
    // SAFETY: the slot lies in the flash, mapped at 0x0; its first two
    // words are the image's initial stack pointer and reset vector.
    let (sp, pc) = unsafe {
        (
            (at as *const u32).read_volatile(),
            ((at + 4) as *const u32).read_volatile(),
        )
    };
    let code = at..at + image.size.min(SLOT_SIZE);
    if !(RAM.0 < sp && sp <= RAM.0 + RAM.1) || pc & 1 == 0 || !code.contains(&(pc & !1)) {
        log!(
            "boot: the image in slot {:?} is not linked for {at:#07x} (sp {sp:#010x}, reset {pc:#010x})",
            boot.slot
        );
        if boot.trial {
            // As an image that fails its self-test: each restart counts a
            // boot of the trial, and the slot manager rolls it back.
            log!("boot: not starting it; restarting");
            firmware_microbit::reset()
        }
        semihost::exit(semihost::exit::NO_IMAGE)
    }
    log!(
        "boot: measured: stack_high_water={}",
        stack::used_in_all(top)
    );
    log!("boot: executing in place at {at:#07x}");
    // SAFETY: the image verified and its vector table points into its
    // own slot and into RAM.
    unsafe { cortex_m::asm::bootload(at as *const u32) }
}

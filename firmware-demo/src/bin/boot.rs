//! The boot stage: picks the slot to run with flashpatch's slot manager
//! (which verifies the image, refuses one whose security counter is below
//! the recorded floor, and counts or rolls back a trial), loads the
//! image to `APP_BASE`, checks the copy, and starts it: vector table,
//! stack pointer, reset handler.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use embedded_storage::nor_flash::ReadNorFlash;
use firmware_demo::{log, semihost, APP_BASE, CONFIG, LAYOUT};
use flashpatch::slots::{Slot, Slots};
use sha2::{Digest, Sha256};

firmware_demo::handlers!();

#[entry]
fn main() -> ! {
    let flash = firmware_demo::open_flash();
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
    let (a, b, _) = slots.into_parts();
    let mut part = if index == 0 { a } else { b };
    // SAFETY: APP_BASE..+slot size is code memory that nothing else uses;
    // the boot stage runs from below it and never returns there.
    let dest = unsafe { core::slice::from_raw_parts_mut(APP_BASE as *mut u8, image.size as usize) };
    if image.size as usize > part.capacity() || part.read(0, dest).is_err() {
        log!("boot: cannot load the image");
        semihost::exit(semihost::exit::NO_IMAGE)
    }
    if Sha256::digest(&*dest)[..] != image.sha256[..] {
        log!("boot: the loaded image does not match its SHA-256");
        semihost::exit(semihost::exit::NO_IMAGE)
    }
    // SAFETY: the image verified; its first words are its vector table.
    unsafe {
        let p = cortex_m::Peripherals::steal();
        p.SCB.vtor.write(APP_BASE);
        cortex_m::asm::bootload(APP_BASE as *const u32)
    }
}

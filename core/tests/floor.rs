//! The anti-rollback floor of the slot manager, over a mock flash: confirm
//! raises it, nothing lowers it, activation refuses an image below it, and
//! the boot stage neither boots nor rolls back to one.

use core::cell::RefCell;

use embedded_storage::nor_flash::NorFlash;
use flashpatch::crc32::crc32;
use flashpatch::mock::MockFlash;
use flashpatch::slots::{Boot, Config, Image, Installed, Layout, Slot, Slots};
use flashpatch::{Outcome, Partition, SlotError as Error};
use sha2::{Digest, Sha256};

type Flash = MockFlash<1, 4, 4096>;
type Err = Error;
const SLOT: u32 = 16 * 1024;
const LAYOUT: Layout = Layout::new(4096, 0, SLOT, SLOT, 2 * SLOT, 8192);

fn device(first: &[u8]) -> RefCell<Flash> {
    let mut f = Flash::new(2 * SLOT as usize + 8192);
    f.preload(0, first);
    let flash = RefCell::new(f);
    slots(&flash)
        .provision(Slot::A, first.len() as u32)
        .unwrap();
    flash
}

/// The slot manager, built afresh (as after a reset).
fn slots(flash: &RefCell<Flash>) -> Slots<Partition<'_, Flash>, Partition<'_, Flash>> {
    let [a, b, s] = LAYOUT.partitions(flash).unwrap();
    Slots::new(a, b, s, Config::default()).unwrap()
}

fn image(seed: u8, counter: u32) -> (Vec<u8>, Image) {
    let bytes: Vec<u8> = (0..5000u32)
        .map(|i| (i as u8).wrapping_mul(seed | 1) ^ seed)
        .collect();
    let img = Image {
        size: bytes.len() as u32,
        sha256: Sha256::digest(&bytes).into(),
        counter,
    };
    (bytes, img)
}

fn at(slot: Slot) -> u32 {
    match slot {
        Slot::A => 0,
        Slot::B => SLOT,
    }
}

/// Writes `bytes` into `slot` (as an update would) and activates it with
/// security counter `img.counter`.
fn install(flash: &RefCell<Flash>, slot: Slot, (bytes, img): &(Vec<u8>, Image)) -> Result<(), Err> {
    {
        let mut f = flash.borrow_mut();
        f.erase(at(slot), at(slot) + SLOT).unwrap();
        f.write(at(slot), bytes).unwrap();
    }
    slots(flash).activate(&Installed {
        component: 0,
        slot,
        image: *img,
        outcome: Outcome::Applied,
    })
}

fn boot(flash: &RefCell<Flash>) -> Result<Boot, Err> {
    slots(flash).select()
}

fn floor(flash: &RefCell<Flash>) -> u32 {
    slots(flash).state().unwrap().floor
}

#[test]
fn confirm_raises_the_floor_and_nothing_lowers_it() {
    let flash = device(&image(1, 0).0);
    assert_eq!(floor(&flash), 0);
    install(&flash, Slot::B, &image(2, 5)).unwrap();
    assert_eq!(boot(&flash).unwrap().slot, Slot::B);
    assert_eq!(floor(&flash), 0, "a trial does not raise the floor");
    slots(&flash).confirm().unwrap();
    let st = slots(&flash).state().unwrap();
    assert_eq!((st.floor, st.images[1].counter), (5, 5));

    // A trial of counter 9 that is never confirmed rolls back; the floor
    // stays where the last confirmation put it.
    install(&flash, Slot::A, &image(3, 9)).unwrap();
    let b = loop {
        let b = boot(&flash).unwrap();
        if b.rolled_back {
            break b;
        }
    };
    assert_eq!(b.slot, Slot::B);
    assert_eq!(floor(&flash), 5);

    // An image at the floor is accepted; confirming it keeps the floor.
    install(&flash, Slot::A, &image(4, 5)).unwrap();
    boot(&flash).unwrap();
    slots(&flash).confirm().unwrap();
    assert_eq!(floor(&flash), 5);
    install(&flash, Slot::B, &image(5, 6)).unwrap();
    boot(&flash).unwrap();
    slots(&flash).confirm().unwrap();
    assert_eq!(floor(&flash), 6);
}

#[test]
fn activation_below_the_floor_is_refused_and_writes_nothing() {
    let flash = device(&image(1, 0).0);
    install(&flash, Slot::B, &image(2, 5)).unwrap();
    boot(&flash).unwrap();
    slots(&flash).confirm().unwrap();
    let before = slots(&flash).state();
    assert_eq!(
        install(&flash, Slot::A, &image(3, 4)),
        Err(Error::Rollback { counter: 4, min: 5 })
    );
    assert_eq!(slots(&flash).state(), before);
    assert_eq!(boot(&flash).unwrap().slot, Slot::B);
}

#[test]
fn a_slot_below_the_floor_is_not_booted() {
    // B holds an image of counter 5, A one of counter 7; A is damaged.
    let run = |confirm_a: bool| {
        let flash = device(&image(1, 0).0);
        install(&flash, Slot::B, &image(2, 5)).unwrap();
        boot(&flash).unwrap();
        slots(&flash).confirm().unwrap();
        install(&flash, Slot::A, &image(3, 7)).unwrap();
        assert_eq!(boot(&flash).unwrap().slot, Slot::A);
        if confirm_a {
            slots(&flash).confirm().unwrap();
        }
        // Damage one byte of A's image.
        flash.borrow_mut().preload(100, &[0x5A]);
        boot(&flash)
    };
    // On trial, the floor is still 5: B (counter 5) is the rollback.
    assert_eq!(
        run(false),
        Ok(Boot {
            slot: Slot::B,
            trial: false,
            rolled_back: true
        })
    );
    // Confirmed, the floor is 7: B's image is below it and is not booted.
    assert_eq!(run(true), Err(Error::NoBootableImage));
}

#[test]
fn version_1_boot_records_read_as_counter_and_floor_0() {
    // A 96-byte boot record as flashpatch wrote it before security
    // counters: slot A confirmed, its image, slot B empty.
    let (bytes, img) = image(1, 0);
    let mut r = [0u8; 96];
    r[..4].copy_from_slice(b"FPSR");
    r[4] = 1; // boot record
    r[5] = 1; // record version
    r[6..8].copy_from_slice(&96u16.to_le_bytes());
    r[8..12].copy_from_slice(&1u32.to_le_bytes()); // sequence
    r[12..16].copy_from_slice(&1u32.to_le_bytes()); // generation
    r[16] = 0; // slot A
    r[17] = 2; // confirmed
    r[20..24].copy_from_slice(&img.size.to_le_bytes());
    r[24..56].copy_from_slice(&img.sha256);
    let crc = crc32(&r[..92]);
    r[92..].copy_from_slice(&crc.to_le_bytes());
    let mut f = Flash::new(2 * SLOT as usize + 8192);
    f.preload(0, &bytes);
    f.preload(2 * SLOT as usize, &r);
    let flash = RefCell::new(f);

    let st = slots(&flash).state().unwrap();
    assert_eq!((st.active, st.trial, st.floor), (Slot::A, false, 0));
    assert_eq!(st.images, [img, Image::NONE]);
    assert_eq!(boot(&flash).unwrap().slot, Slot::A);
    // The next record is the new layout and carries the counter.
    install(&flash, Slot::B, &image(2, 3)).unwrap();
    boot(&flash).unwrap();
    slots(&flash).confirm().unwrap();
    let st = slots(&flash).state().unwrap();
    assert_eq!((st.active, st.floor, st.images[0]), (Slot::B, 3, img));
}

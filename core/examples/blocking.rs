//! A patch applied with the blocking applier, between two slots of a NOR
//! flash in RAM, as a device would: the running image in slot A, the new
//! one written into slot B, then read back and compared. Prints `OK`.
//!
//! ```text
//! cargo run --release -p flashpatch --example blocking
//! ```
//!
//! Both images are made here ([`images`]); `data/blocking.fpat` is the
//! patch genpat builds between exactly these two. To make it again:
//!
//! ```text
//! cargo run --release -p flashpatch --example blocking -- --write-images target/blocking
//! rm -f core/examples/data/blocking.fpat
//! cargo run --release -p host-genpat --bin genpat -- \
//!     target/blocking/old target/blocking/new core/examples/data/blocking.fpat
//! ```

use core::cell::RefCell;

use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};
use flashpatch::{Applier, ApplierState, Outcome, Partition, Status};

/// The patch from the old image to the new one.
const PATCH: &[u8] = include_bytes!("data/blocking.fpat");

/// A NOR flash in RAM, with the rules the applier relies on: an erase sets
/// whole 4 KiB units to `0xFF`, a write is 4-byte aligned and can only
/// clear bits.
struct RamFlash(Vec<u8>);

impl ErrorType for RamFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for RamFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let at = offset as usize;
        let from = self.0.get(at..at + bytes.len());
        bytes.copy_from_slice(from.ok_or(NorFlashErrorKind::OutOfBounds)?);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.0.len()
    }
}

impl NorFlash for RamFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if !from.is_multiple_of(4096) || !to.is_multiple_of(4096) {
            return Err(NorFlashErrorKind::NotAligned);
        }
        let units = self.0.get_mut(from as usize..to as usize);
        units.ok_or(NorFlashErrorKind::OutOfBounds)?.fill(0xFF);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if !offset.is_multiple_of(4) || !bytes.len().is_multiple_of(4) {
            return Err(NorFlashErrorKind::NotAligned);
        }
        let at = offset as usize;
        let to = self.0.get_mut(at..at + bytes.len());
        for (cell, b) in to
            .ok_or(NorFlashErrorKind::OutOfBounds)?
            .iter_mut()
            .zip(bytes)
        {
            *cell &= b;
        }
        Ok(())
    }
}

/// The running image (12,000 bytes that look like code) and the next
/// version: a string inserted in the middle and a table changed.
fn images() -> (Vec<u8>, Vec<u8>) {
    let mut x = 0x2545_F491u32;
    let old: Vec<u8> = (0..12_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    let mut new = old[..5_000].to_vec();
    new.extend_from_slice(b"flashpatch example, version 2\0\0\0");
    new.extend_from_slice(&old[5_000..]);
    for b in &mut new[9_000..9_200] {
        *b = b.wrapping_add(1);
    }
    (old, new)
}

/// Bytes of each slot.
const SLOT: u32 = 16 * 1024;

fn main() {
    let (old, new) = images();
    let mut args = std::env::args().skip(1);
    if let (Some("--write-images"), Some(dir)) = (args.next().as_deref(), args.next()) {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/old"), &old).unwrap();
        std::fs::write(format!("{dir}/new"), &new).unwrap();
        return;
    }

    // A flash of two slots, slot A programmed with the running image.
    let mut chip = RamFlash(vec![0xFF; 2 * SLOT as usize]);
    chip.write(0, &old).unwrap();
    let flash = RefCell::new(chip);
    let source = Partition::new(&flash, 0, SLOT).unwrap();
    let target = Partition::new(&flash, SLOT, SLOT).unwrap();

    // The patch arrives in pieces (here 64 bytes, as from a UART); each is
    // fed as it comes, and the applier says when the patch is complete.
    let mut state = ApplierState::new();
    let mut applier: Applier<_, _> = Applier::new(source, target, &mut state);
    let mut outcome = None;
    for chunk in PATCH.chunks(64) {
        match applier.feed(chunk) {
            Ok(Status::NeedMore) => {}
            Ok(Status::Done(o)) => outcome = Some(o),
            Err(e) => panic!("{}: {e}", e.verdict().message()),
        }
    }
    assert_eq!(outcome, Some(Outcome::Applied));

    // Slot B now holds the new image (the applier checked its SHA-256;
    // the example checks it again byte for byte).
    let mut written = vec![0; new.len()];
    flash.borrow_mut().read(SLOT, &mut written).unwrap();
    assert!(written == new, "slot B does not hold the new image");
    println!("OK");
}

//! The running image in one flash, the new one written into another of
//! another type: internal flash read-only to the applier (its driver has
//! its own error type), an external SPI NOR with 256-byte pages and
//! 64 KiB blocks as the target (another driver, another error type).
//! Prints `OK`.
//!
//! ```text
//! cargo run --release -p flashpatch --example two_flashes
//! ```
//!
//! The patch is `data/hello.fpat` (see `data/README.md`).

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use flashpatch::{Applier, ApplierState, FlashRole, Outcome, Status};

const PATCH: &[u8] = include_bytes!("data/hello.fpat");

/// The internal flash, as the applier sees it: a read-only window on the
/// running image (8-byte reads, as through a memory-mapped bus).
struct Internal<'a>(&'a [u8]);

#[derive(Debug)]
enum InternalError {
    Range,
}

impl NorFlashError for InternalError {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::OutOfBounds
    }
}

impl ErrorType for Internal<'_> {
    type Error = InternalError;
}

impl ReadNorFlash for Internal<'_> {
    const READ_SIZE: usize = 8;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), InternalError> {
        let at = offset as usize;
        let src = self
            .0
            .get(at..at + bytes.len())
            .ok_or(InternalError::Range)?;
        bytes.copy_from_slice(src);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.0.len()
    }
}

/// An external SPI NOR: page program (any length within a 256-byte page,
/// here in 1-byte units), 64 KiB block erase. Counts its commands.
struct SpiNor {
    chip: Vec<u8>,
    commands: usize,
}

#[derive(Debug, PartialEq)]
enum SpiError {
    /// The address is past the chip.
    Address(u32),
    /// An erase not on block boundaries.
    Block(u32),
}

impl NorFlashError for SpiError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SpiError::Address(_) => NorFlashErrorKind::OutOfBounds,
            SpiError::Block(_) => NorFlashErrorKind::NotAligned,
        }
    }
}

impl ErrorType for SpiNor {
    type Error = SpiError;
}

const BLOCK: u32 = 64 * 1024;

impl ReadNorFlash for SpiNor {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SpiError> {
        self.commands += 1;
        let end = offset as usize + bytes.len();
        let src = self
            .chip
            .get(offset as usize..end)
            .ok_or(SpiError::Address(offset))?;
        bytes.copy_from_slice(src);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.chip.len()
    }
}

impl NorFlash for SpiNor {
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = BLOCK as usize;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SpiError> {
        for block in (from..to).step_by(BLOCK as usize) {
            self.commands += 1;
            if !block.is_multiple_of(BLOCK) {
                return Err(SpiError::Block(block));
            }
            let cells = self.chip.get_mut(block as usize..(block + BLOCK) as usize);
            cells.ok_or(SpiError::Address(block))?.fill(0xFF);
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SpiError> {
        // One page program per 256-byte page touched.
        let mut at = offset;
        for piece in bytes.chunks(256) {
            self.commands += 1;
            let end = at as usize + piece.len();
            let cells = self
                .chip
                .get_mut(at as usize..end)
                .ok_or(SpiError::Address(at))?;
            for (cell, b) in cells.iter_mut().zip(piece) {
                *cell &= b;
            }
            at += piece.len() as u32;
        }
        Ok(())
    }
}

fn main() {
    let old = b"Hello from version 1 of the firmware!\n".repeat(16);
    let new = b"Hello from version 2 of the firmware!\n".repeat(16);
    // The internal flash holds the running image, padded to whole reads.
    let mut internal = old.clone();
    internal.resize(old.len().next_multiple_of(8) + 64, 0xFF);
    let mut spi = SpiNor {
        chip: vec![0; 2 * BLOCK as usize],
        commands: 0,
    };

    let mut state = ApplierState::new();
    let mut applier: Applier<_, _> = Applier::new(Internal(&internal), &mut spi, &mut state);
    for chunk in PATCH.chunks(100) {
        if let Err(e) = applier.feed(chunk) {
            panic!("{e}");
        }
    }
    assert_eq!(applier.finish(), Ok(Outcome::Applied));
    assert_eq!(
        &spi.chip[..new.len()],
        &new[..],
        "the SPI NOR holds the new image"
    );

    // A failure says which flash it was: here the target, too small for the
    // image's erase block.
    let mut tiny = SpiNor {
        chip: vec![0; 4096],
        commands: 0,
    };
    let mut applier: Applier<_, _> = Applier::new(Internal(&internal), &mut tiny, &mut state);
    let err = applier.feed(PATCH).map(|s| s == Status::NeedMore);
    match err {
        Err(flashpatch::ApplyError::TargetTooSmall { .. }) => {}
        Err(flashpatch::ApplyError::Flash(f)) => assert_eq!(f.role, FlashRole::Target),
        other => panic!("unexpected {other:?}"),
    }
    println!("target: {} SPI NOR commands", spi.commands);
    println!("OK");
}

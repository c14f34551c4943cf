//! A patch applied with the async applier (`flashpatch::asynch`), over
//! a flash driver whose every operation waits for its completion, as one
//! driven by DMA and an interrupt does. A host executor (`pollster`) stands
//! in for embassy's. Prints `OK`.
//!
//! ```text
//! cargo run --release -p flashpatch --example async
//! ```
//!
//! The patch is `data/hello.fpat` (see `data/README.md`).

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use embedded_storage_async::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use flashpatch::{asynch::Applier, ApplierState, Outcome, Status};

const PATCH: &[u8] = include_bytes!("data/hello.fpat");

/// The flash operation "in progress": pending once, then complete, as a
/// transfer that ends in an interrupt which wakes the task.
struct Transfer(bool);

impl Future for Transfer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// A 4 KiB-sector NOR flash in RAM behind an async driver, 8-byte program
/// unit (as on an STM32L4).
struct DmaFlash {
    cells: Vec<u8>,
    waits: usize,
}

#[derive(Debug)]
struct DmaError(NorFlashErrorKind);

impl NorFlashError for DmaError {
    fn kind(&self) -> NorFlashErrorKind {
        self.0
    }
}

impl ErrorType for DmaFlash {
    type Error = DmaError;
}

impl DmaFlash {
    /// Waits for the "transfer", then checks that `[at, at + len)` is on
    /// the flash and aligned to `unit`.
    async fn span(
        &mut self,
        at: u32,
        len: usize,
        unit: usize,
    ) -> Result<std::ops::Range<usize>, DmaError> {
        self.waits += 1;
        Transfer(false).await;
        let start = at as usize;
        if !start.is_multiple_of(unit) || !len.is_multiple_of(unit) {
            return Err(DmaError(NorFlashErrorKind::NotAligned));
        }
        match start.checked_add(len) {
            Some(end) if end <= self.cells.len() => Ok(start..end),
            _ => Err(DmaError(NorFlashErrorKind::OutOfBounds)),
        }
    }
}

impl ReadNorFlash for DmaFlash {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), DmaError> {
        let r = self.span(offset, bytes.len(), 1).await?;
        bytes.copy_from_slice(&self.cells[r]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.cells.len()
    }
}

impl NorFlash for DmaFlash {
    const WRITE_SIZE: usize = 8;
    const ERASE_SIZE: usize = 4096;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), DmaError> {
        let len = to.saturating_sub(from) as usize;
        let r = self.span(from, len, 4096).await?;
        self.cells[r].fill(0xFF);
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), DmaError> {
        let r = self.span(offset, bytes.len(), 8).await?;
        self.cells[r]
            .iter_mut()
            .zip(bytes)
            .for_each(|(c, b)| *c &= b);
        Ok(())
    }
}

fn main() {
    let old = b"Hello from version 1 of the firmware!\n".repeat(16);
    let new = b"Hello from version 2 of the firmware!\n".repeat(16);
    let mut source = DmaFlash {
        cells: vec![0xFF; 4096],
        waits: 0,
    };
    source.cells[..old.len()].copy_from_slice(&old);
    let mut target = DmaFlash {
        cells: vec![0xFF; 4096],
        waits: 0,
    };

    let mut state: ApplierState = ApplierState::new();
    let outcome = pollster::block_on(async {
        let mut applier = Applier::new(&mut source, &mut target, &mut state);
        // Pieces as they arrive from the link; each `feed` awaits the
        // flash operations it needs.
        for chunk in PATCH.chunks(32) {
            if let Status::Done(o) = applier.feed(chunk).await.expect("the patch applies") {
                return o;
            }
        }
        applier.finish().expect("the patch is complete")
    });
    assert_eq!(outcome, Outcome::Applied);
    assert_eq!(
        &target.cells[..new.len()],
        &new[..],
        "the target holds the new image"
    );
    assert!(
        source.waits > 0 && target.waits > 0,
        "the driver was awaited"
    );
    println!("OK");
}

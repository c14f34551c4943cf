//! Links the flashpatch applier into a bare Cortex-M program and nothing
//! else, so that the `.text` of the result is the code a device needs to
//! apply a patch: header parsing, the codec 3 decoder, the source checks
//! (CRC-32, MD5), the target read-back (SHA-256), plus this file's stub
//! flash driver (a few dozen bytes) and the compiler's `memcpy`.
//! `cargo xtask bench` builds it for `thumbv7em-none-eabihf` and reads the
//! size of `.text` from the ELF file.
#![no_std]
#![no_main]

use core::cell::RefCell;
use core::hint::black_box;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use flashpatch::{Applier, ApplierState, Partition, Status};

/// A flash whose contents the optimiser cannot see.
struct Opaque;

#[derive(Debug)]
struct Never;

impl NorFlashError for Never {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

impl ErrorType for Opaque {
    type Error = Never;
}

impl ReadNorFlash for Opaque {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Never> {
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = black_box(offset as u8 ^ i as u8);
        }
        Ok(())
    }
    fn capacity(&self) -> usize {
        black_box(1 << 20)
    }
}

impl NorFlash for Opaque {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Never> {
        black_box((from, to));
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Never> {
        black_box((offset, bytes));
        Ok(())
    }
}

/// The entry point: feeds whatever bytes `black_box` hands over.
#[no_mangle]
pub extern "C" fn _start() -> ! {
    let flash = RefCell::new(Opaque);
    let half = 1 << 19;
    let (Some(source), Some(target)) = (
        Partition::new(&flash, 0, half),
        Partition::new(&flash, half, half),
    ) else {
        loop {}
    };
    // As a device keeps it (firmware-demo's application does the same): a
    // static in `.bss`, zeroed by the start-up code, not built on the stack.
    static mut STATE: ApplierState = ApplierState::new();
    // SAFETY: the only reference to STATE, taken once; nothing else runs.
    let state = unsafe { &mut *core::ptr::addr_of_mut!(STATE) };
    let mut applier: Applier<_, _> = Applier::new(source, target, state);
    #[cfg(feature = "sign")]
    applier.require_signature(black_box([0; 32]), black_box(0));
    let chunk: &[u8] = black_box(&[]);
    loop {
        match applier.feed(chunk) {
            Ok(Status::NeedMore) => {}
            r => {
                black_box(r.is_ok());
            }
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

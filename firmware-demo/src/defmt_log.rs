//! defmt's global logger (feature `defmt`): frames go to the host file
//! `defmt.bin` in QEMU's working directory (semihosting, appended), where
//! `defmt-print -e APP.elf` decodes them (`xtask/src/defmt_log.rs`).
//! flashpatch logs through it when built with its own feature `defmt`
//! and `DEFMT_LOG=info`.

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::semihost;

/// The host file the frames are appended to.
const FILE: &str = "defmt.bin";
/// SYS_OPEN's mode "ab".
const APPEND_BINARY: u32 = 9;

static TAKEN: AtomicBool = AtomicBool::new(false);
static mut ENCODER: defmt::Encoder = defmt::Encoder::new();
static mut HANDLE: Option<u32> = None;

#[defmt::global_logger]
struct Logger;

// SAFETY: the application logs from thread mode only (no logging
// interrupt handler), and `TAKEN` refuses a nested frame, so `ENCODER` and
// `HANDLE` have one user at a time.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        if TAKEN.swap(true, Ordering::Acquire) {
            panic!("defmt: nested log frame");
        }
        unsafe { (*addr_of_mut!(ENCODER)).start_frame(put) }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        unsafe { (*addr_of_mut!(ENCODER)).end_frame(put) };
        TAKEN.store(false, Ordering::Release);
    }

    unsafe fn write(bytes: &[u8]) {
        unsafe { (*addr_of_mut!(ENCODER)).write(bytes, put) }
    }
}

/// Appends encoded bytes to the file (opened on first use).
fn put(bytes: &[u8]) {
    // SAFETY: only called inside a frame (see above).
    let h = unsafe { &mut *addr_of_mut!(HANDLE) };
    if h.is_none() {
        *h = semihost::open(FILE, APPEND_BINARY);
    }
    if let Some(h) = *h {
        semihost::write(h, bytes);
    }
}

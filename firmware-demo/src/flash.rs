//! A NOR flash kept in a host file through semihosting, so that it
//! survives a reset and a new QEMU process, and killing QEMU is a power
//! cut. NOR rules hold: erase sets whole 4 KiB units to 0xFF, a write can
//! only clear bits (what it would set stays as it was and the write
//! fails), writes are 4-byte aligned.
//!
//! For the QEMU power-cut tests, a binary that calls [`arm_cut`] ends
//! QEMU just before the flash step the host names: the file then holds
//! what a power cut at that instant leaves (see [`arm_cut`]).

use core::sync::atomic::{AtomicU32, Ordering};

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

use crate::semihost;

/// Errors of a [`FileFlash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashError {
    /// Outside the flash.
    OutOfBounds,
    /// Misaligned.
    NotAligned,
    /// The host file failed.
    Io,
    /// A write would have set a bit that erase did not.
    SetsBits,
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            FlashError::NotAligned => NorFlashErrorKind::NotAligned,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// The host file that asks for a power cut: one line `NAME N`.
pub const CUT_FILE: &str = "cut";

/// The step to cut power before (0: none), and the steps taken so far.
static CUT_AT: AtomicU32 = AtomicU32::new(0);
static STEPS: AtomicU32 = AtomicU32::new(0);

/// Arms a power cut if the host file [`CUT_FILE`] says `name N`: this
/// binary then ends QEMU (exit code [`semihost::exit::POWER_CUT`]) just
/// before its `N`-th flash step, counted from 1 since it started. A step
/// programs or erases 64 bytes (a write or an erase is one step per 64
/// bytes), so a cut may leave a write or an erase part done, as a power
/// cut in the middle of one would; nothing after the cut is written.
/// Without the file, or with another name in it, nothing happens.
pub fn arm_cut(name: &str) {
    let Some(h) = semihost::open(CUT_FILE, 1) else {
        return;
    };
    let mut buf = [0u8; 32];
    let n = semihost::flen(h).unwrap_or(0).min(buf.len() as u32) as usize;
    if n == 0 || !semihost::read(h, &mut buf[..n]) {
        return;
    }
    let text = core::str::from_utf8(&buf[..n]).unwrap_or("");
    let mut words = text.split_whitespace();
    if words.next() == Some(name) {
        if let Some(at) = words.next().and_then(|w| w.parse().ok()) {
            crate::log!("flash: a power cut is armed before flash step {at}");
            CUT_AT.store(at, Ordering::Relaxed);
        }
    }
}

/// Flash steps (64 bytes programmed or erased) taken since start-up.
pub fn steps() -> u32 {
    STEPS.load(Ordering::Relaxed)
}

/// Counts one step; ends QEMU instead if it is the armed cut's.
fn step() {
    let n = STEPS.load(Ordering::Relaxed) + 1;
    if n == CUT_AT.load(Ordering::Relaxed) {
        crate::log!("flash: power cut before flash step {n}");
        semihost::exit(semihost::exit::POWER_CUT)
    }
    STEPS.store(n, Ordering::Relaxed);
}

/// The flash file, `size` bytes.
pub struct FileFlash {
    handle: u32,
    size: u32,
}

impl FileFlash {
    /// Opens the host file `name` (which must exist, `size` bytes).
    pub fn open(name: &str, size: u32) -> Option<FileFlash> {
        semihost::open(name, 3).map(|handle| FileFlash { handle, size })
    }

    fn check(&self, offset: u32, len: usize, align: u32) -> Result<(), FlashError> {
        if !offset.is_multiple_of(align) || !(len as u32).is_multiple_of(align) {
            return Err(FlashError::NotAligned);
        }
        if offset as u64 + len as u64 > self.size as u64 {
            return Err(FlashError::OutOfBounds);
        }
        Ok(())
    }

    fn raw_read(&self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        if buf.is_empty() {
            return Ok(());
        }
        if semihost::seek(self.handle, offset) && semihost::read(self.handle, buf) {
            Ok(())
        } else {
            Err(FlashError::Io)
        }
    }

    fn raw_write(&self, offset: u32, buf: &[u8]) -> Result<(), FlashError> {
        if semihost::seek(self.handle, offset) && semihost::write(self.handle, buf) {
            Ok(())
        } else {
            Err(FlashError::Io)
        }
    }
}

impl ErrorType for FileFlash {
    type Error = FlashError;
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.check(offset, bytes.len(), 1)?;
        self.raw_read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.size as usize
    }
}

impl NorFlash for FileFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let len = to.checked_sub(from).ok_or(FlashError::OutOfBounds)?;
        self.check(from, len as usize, Self::ERASE_SIZE as u32)?;
        let ff = [0xFFu8; 64];
        let mut at = from;
        while at < to {
            step();
            self.raw_write(at, &ff)?;
            at += ff.len() as u32;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.check(offset, bytes.len(), Self::WRITE_SIZE as u32)?;
        // A word at a time (writes are whole words): the guest's share of
        // this emulation stays a few instructions per byte, so that the
        // instruction counts of `applybench` are mostly the applier's.
        let mut old = [[0u8; 4]; 16];
        for (i, piece) in bytes.chunks(64).enumerate() {
            let at = offset + 64 * i as u32;
            let old = &mut old[..piece.len() / 4];
            self.raw_read(at, old.as_flattened_mut())?;
            let mut sets = false;
            for (o, n) in old.iter_mut().zip(piece.as_chunks::<4>().0) {
                let (ow, nw) = (u32::from_ne_bytes(*o), u32::from_ne_bytes(*n));
                // NOR programming only clears bits.
                sets |= nw & !ow != 0;
                *o = (ow & nw).to_ne_bytes();
            }
            step();
            self.raw_write(at, old.as_flattened())?;
            if sets {
                return Err(FlashError::SetsBits);
            }
        }
        Ok(())
    }
}

//! The A/B demo's flash: memory the CPU reads and executes in place,
//! driven with NOR rules (erase sets whole 4 KiB units to 0xFF, a write
//! can only clear bits and fails if it would set one, writes are 4-byte
//! aligned).
//!
//! On QEMU's `mps2-an386` it is the board's 16 MiB RAM at
//! [`crate::FLASH_BASE`], which the harness backs with the host file
//! `flash.bin` (`-object memory-backend-file,share=on` as the machine's
//! RAM): every store below lands in that file at once, so the flash
//! survives a reset and a new QEMU process, and killing QEMU is a power
//! cut that keeps exactly the stores made before it. Reads are loads from
//! the same addresses the CPU fetches the running image's instructions
//! from: nothing copies the image anywhere.
//!
//! A real flash takes no plain stores; this memory would, so
//! [`MappedFlash::guarded`] has the MPU make the mapping read-only, and the
//! driver opens it only for the stores of its own erases and writes: any
//! other store to the flash faults (a HardFault; the demo's handler stops
//! QEMU with exit code 102).
//!
//! The driver counts the erase units it erases and the writes it makes
//! ([`MappedFlash::wear`]): the application reports them per install.
//!
//! What this does not model: programming and erasing take no time; a cut
//! leaves whole words written or not (no half-programmed word); and a
//! single-bank flash cannot be read while it is programmed, which here it
//! can.

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};

use crate::flash::FlashError;
use crate::wear::Wear;

/// `size` bytes of memory-mapped flash at `base`.
pub struct MappedFlash {
    base: u32,
    size: u32,
    /// Whether the MPU keeps the mapping read-only between the driver's
    /// stores ([`MappedFlash::guarded`]).
    guarded: bool,
    /// What the driver erased and wrote.
    wear: Wear,
}

/// The MPU region that guards the flash.
const REGION: u32 = 0;
/// MPU_RASR's access permissions: read-only, or read-write (privileged and
/// unprivileged alike).
const AP_RO: u32 = 0b110;
const AP_RW: u32 = 0b011;
/// MPU_CTRL: enabled, with the default memory map for privileged accesses
/// outside the regions.
const MPU_ENABLE_PRIVDEFENA: u32 = 0b101;

impl MappedFlash {
    /// The flash at `base`, `size` bytes (both multiples of the erase unit).
    ///
    /// # Safety
    ///
    /// `base..base + size` must be memory that nothing but this driver
    /// writes, for as long as the driver lives.
    pub const unsafe fn new(base: u32, size: u32) -> MappedFlash {
        MappedFlash {
            base,
            size,
            guarded: false,
            wear: Wear::NONE,
        }
    }

    /// The flash with the MPU keeping it read-only, except while the
    /// driver erases or writes: one region over `size` rounded up to a
    /// power of two (`base` must be aligned to it), executable, and the
    /// MPU enabled with the default map elsewhere.
    pub fn guarded(mut self) -> MappedFlash {
        let window = self.size.next_power_of_two();
        assert!(window >= 32 && self.base.is_multiple_of(window));
        self.guarded = true;
        // SAFETY: this driver owns the flash (`new`) and so the region that
        // guards it; the rest of memory keeps the default map.
        unsafe {
            let mpu = &*cortex_m::peripheral::MPU::PTR;
            mpu.rnr.write(REGION);
            mpu.rbar.write(self.base);
            mpu.ctrl.write(MPU_ENABLE_PRIVDEFENA);
        }
        self.set_access(AP_RO);
        self
    }

    /// Sets the guard region's access permissions (if guarded).
    fn set_access(&self, ap: u32) {
        if !self.guarded {
            return;
        }
        let size = self.size.next_power_of_two().trailing_zeros() - 1;
        // Normal memory (TEX 0b001, not cacheable), executable, enabled.
        let rasr = ap << 24 | 0b001 << 19 | size << 1 | 1;
        // SAFETY: only the guard region's permissions change.
        unsafe {
            let mpu = &*cortex_m::peripheral::MPU::PTR;
            mpu.rnr.write(REGION);
            mpu.rasr.write(rasr);
        }
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
    }

    /// The erase units erased and the writes made since [`MappedFlash::new`].
    pub const fn wear(&self) -> Wear {
        self.wear
    }

    /// The address at which flash offset `offset` is mapped.
    pub const fn address(&self, offset: u32) -> u32 {
        self.base + offset
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

    fn word(&self, offset: u32) -> *mut u32 {
        self.address(offset) as *mut u32
    }
}

impl ErrorType for MappedFlash {
    type Error = FlashError;
}

impl ReadNorFlash for MappedFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.check(offset, bytes.len(), 1)?;
        // SAFETY: `check` keeps the range inside the mapping, which `new`'s
        // caller vouched for; `bytes` is a distinct buffer in RAM.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.address(offset) as *const u8,
                bytes.as_mut_ptr(),
                bytes.len(),
            )
        };
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.size as usize
    }
}

impl NorFlash for MappedFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let len = to.checked_sub(from).ok_or(FlashError::OutOfBounds)?;
        self.check(from, len as usize, Self::ERASE_SIZE as u32)?;
        self.wear.erased(len / Self::ERASE_SIZE as u32);
        self.set_access(AP_RW);
        for at in (from..to).step_by(4) {
            // SAFETY: inside the mapping (`check`), word-aligned.
            unsafe { self.word(at).write_volatile(u32::MAX) };
        }
        self.set_access(AP_RO);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.check(offset, bytes.len(), Self::WRITE_SIZE as u32)?;
        let mut sets = false;
        self.wear.wrote(bytes.len());
        self.set_access(AP_RW);
        for (i, w) in bytes.as_chunks::<4>().0.iter().enumerate() {
            let p = self.word(offset + 4 * i as u32);
            // SAFETY: inside the mapping (`check`), word-aligned; one
            // volatile store per word, in order, so that a cut keeps a
            // prefix of the write as a real flash would.
            unsafe {
                let (old, new) = (p.read_volatile(), u32::from_ne_bytes(*w));
                // NOR programming only clears bits.
                sets |= new & !old != 0;
                p.write_volatile(old & new);
            }
        }
        self.set_access(AP_RO);
        match sets {
            true => Err(FlashError::SetsBits),
            false => Ok(()),
        }
    }
}

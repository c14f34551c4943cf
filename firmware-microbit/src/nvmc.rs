//! The nRF51's flash through its NVMC (non-volatile memory controller),
//! with the register block of the `nrf51-pac` crate, as an
//! `embedded_storage` NOR flash: reads are plain loads (the flash is
//! mapped at 0x0), a page erase sets a 1 KiB page to 0xFF, a word write
//! can only clear bits. The boot stage's region ([`crate::BOOT`]) is
//! refused, so that no update can overwrite the code that picks a slot.
//!
//! Every page erase and word write goes through [`nvmc_erase_page`] and
//! [`nvmc_write_word`], two functions with fixed symbol names: the QEMU
//! power-cut tests stop the core at their entry (a breakpoint of QEMU's
//! gdb stub), that is, between two flash operations.
//!
//! The driver counts the pages it erases and the writes it makes
//! ([`Nvmc::wear`]): the application reports them per install.

use embedded_storage::nor_flash::{
    check_erase, check_read, check_write, ErrorType, NorFlash, NorFlashError, NorFlashErrorKind,
    ReadNorFlash,
};

use crate::{Wear, BOOT, FLASH_SIZE, PAGE};

/// The flash, as the NVMC programs it.
pub struct Nvmc {
    regs: nrf51_pac::NVMC,
    /// What the driver erased and wrote.
    wear: Wear,
}

/// Why the driver refused an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvmcError {
    /// Not aligned to the read, write or erase size.
    NotAligned,
    /// Outside the flash, or inside the boot stage's region.
    OutOfBounds,
}

impl NorFlashError for NvmcError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            NvmcError::NotAligned => NorFlashErrorKind::NotAligned,
            NvmcError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
        }
    }
}

impl From<NorFlashErrorKind> for NvmcError {
    fn from(k: NorFlashErrorKind) -> Self {
        match k {
            NorFlashErrorKind::NotAligned => NvmcError::NotAligned,
            _ => NvmcError::OutOfBounds,
        }
    }
}

impl Nvmc {
    /// The flash behind the NVMC `regs`.
    pub fn new(regs: nrf51_pac::NVMC) -> Nvmc {
        Nvmc {
            regs,
            wear: Wear::NONE,
        }
    }

    /// The pages erased and the writes made since [`Nvmc::new`].
    pub const fn wear(&self) -> Wear {
        self.wear
    }

    fn wait_ready(&self) {
        while self.regs.ready.read().ready().is_busy() {}
    }

    /// Refuses writes and erases that touch the boot stage.
    fn writable(from: u32) -> Result<(), NvmcError> {
        if from < BOOT.0 + BOOT.1 {
            Err(NvmcError::OutOfBounds)
        } else {
            Ok(())
        }
    }
}

/// Erases the page at `addr` (the NVMC must be in erase mode).
#[inline(never)]
#[no_mangle]
pub extern "C" fn nvmc_erase_page(regs: &nrf51_pac::nvmc::RegisterBlock, addr: u32) {
    // SAFETY: any page address is a valid value of ERASEPAGE.
    regs.erasepage().write(|w| unsafe { w.bits(addr) });
    while regs.ready.read().ready().is_busy() {}
}

/// Programs the word at `addr` (the NVMC must be in write mode).
#[inline(never)]
#[no_mangle]
pub extern "C" fn nvmc_write_word(regs: &nrf51_pac::nvmc::RegisterBlock, addr: u32, word: u32) {
    // SAFETY: `addr` is a word-aligned flash address outside the code
    // that runs (checked by the caller); the NVMC is in write mode.
    unsafe { (addr as *mut u32).write_volatile(word) };
    while regs.ready.read().ready().is_busy() {}
}

impl ErrorType for Nvmc {
    type Error = NvmcError;
}

impl ReadNorFlash for Nvmc {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NvmcError> {
        check_read(self, offset, bytes.len())?;
        for (i, b) in bytes.iter_mut().enumerate() {
            // SAFETY: [offset, offset + len) lies in the flash, which is
            // mapped at 0x0 and always readable.
            *b = unsafe { ((offset as usize + i) as *const u8).read_volatile() };
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        FLASH_SIZE as usize
    }
}

impl NorFlash for Nvmc {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = PAGE as usize;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), NvmcError> {
        check_erase(self, from, to)?;
        Self::writable(from)?;
        self.wear.erased((to - from) / PAGE);
        self.regs.config.write(|w| w.wen().een());
        self.wait_ready();
        for page in (from..to).step_by(PAGE as usize) {
            nvmc_erase_page(&self.regs, page);
        }
        self.regs.config.write(|w| w.wen().ren());
        self.wait_ready();
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NvmcError> {
        check_write(self, offset, bytes.len())?;
        Self::writable(offset)?;
        self.wear.wrote(bytes.len());
        self.regs.config.write(|w| w.wen().wen());
        self.wait_ready();
        for (i, w) in bytes.chunks_exact(4).enumerate() {
            let word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            nvmc_write_word(&self.regs, offset + 4 * i as u32, word);
        }
        self.regs.config.write(|w| w.wen().ren());
        self.wait_ready();
        Ok(())
    }
}

//! The DFU partition as the applier sees it: no larger than the ACTIVE
//! partition, since embassy-boot swaps only that many pages. Written once
//! and compiled twice (see `lib.rs`).

use super::{io, NorFlash, ReadNorFlash};
use embedded_storage::nor_flash::ErrorType;

/// The first `len` bytes of `flash`.
pub(crate) struct Window<'a, F> {
    pub(crate) flash: &'a mut F,
    pub(crate) len: usize,
}

impl<F: ErrorType> ErrorType for Window<'_, F> {
    type Error = F::Error;
}

#[io]
impl<F: ReadNorFlash> ReadNorFlash for Window<'_, F> {
    const READ_SIZE: usize = F::READ_SIZE;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.flash.read(offset, bytes).await
    }

    fn capacity(&self) -> usize {
        self.len.min(self.flash.capacity())
    }
}

#[io]
impl<F: NorFlash> NorFlash for Window<'_, F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.flash.erase(from, to).await
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.flash.write(offset, bytes).await
    }
}

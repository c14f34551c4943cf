//! [`crate::Bounded`]'s flash traits, written once and compiled twice (as
//! `run.rs` is).

use super::{io, NorFlash, ReadNorFlash};
use crate::error::kind;
use crate::partition::Bounded;

#[io]
impl<F: ReadNorFlash> ReadNorFlash for Bounded<F> {
    const READ_SIZE: usize = F::READ_SIZE;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.covers(offset, bytes.len())?;
        kind(self.flash.read(offset, bytes).await)
    }

    fn capacity(&self) -> usize {
        self.len.min(self.flash.capacity())
    }
}

#[io]
impl<F: NorFlash> NorFlash for Bounded<F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.covers(from, to.saturating_sub(from) as usize)?;
        kind(self.flash.erase(from, to).await)
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.covers(offset, bytes.len())?;
        kind(self.flash.write(offset, bytes).await)
    }
}

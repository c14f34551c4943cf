//! [`Either`]'s flash traits, written once and compiled twice (as
//! `manager.rs` is): each operation goes to the driver the slot holds.

use super::{io, MultiwriteNorFlash, NorFlash, ReadNorFlash};
use crate::error::kind;
use crate::slots::either::{larger, Either};

#[io]
impl<A: ReadNorFlash, B: ReadNorFlash> ReadNorFlash for Either<A, B> {
    const READ_SIZE: usize = larger(A::READ_SIZE, B::READ_SIZE);

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        match self {
            Either::A(f) => kind(f.read(offset, bytes).await),
            Either::B(f) => kind(f.read(offset, bytes).await),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Either::A(f) => f.capacity(),
            Either::B(f) => f.capacity(),
        }
    }
}

#[io]
impl<A: NorFlash, B: NorFlash> NorFlash for Either<A, B> {
    const WRITE_SIZE: usize = larger(A::WRITE_SIZE, B::WRITE_SIZE);
    const ERASE_SIZE: usize = larger(A::ERASE_SIZE, B::ERASE_SIZE);

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        match self {
            Either::A(f) => kind(f.erase(from, to).await),
            Either::B(f) => kind(f.erase(from, to).await),
        }
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        match self {
            Either::A(f) => kind(f.write(offset, bytes).await),
            Either::B(f) => kind(f.write(offset, bytes).await),
        }
    }
}

impl<A: MultiwriteNorFlash, B: MultiwriteNorFlash> MultiwriteNorFlash for Either<A, B> {}

//! An in-memory NOR flash for tests, host-side apply and fuzzing (feature
//! `mock`, needs `alloc`).
//!
//! It keeps NOR semantics strictly, so that code that works on it does not
//! rely on anything a real chip would not give: erase sets whole erase units
//! to `0xFF`; a write may only clear bits, must be aligned to `WRITE` bytes,
//! and each write unit may be written once between erases (as on flash with
//! ECC). It counts every operation.

extern crate alloc;
use alloc::vec;
use alloc::vec::Vec;
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Operation counters of a [`MockFlash`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `read` calls.
    pub reads: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// `write` calls.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Erase units erased.
    pub erases: u64,
}

/// Errors of a [`MockFlash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MockError {
    /// The access reaches outside the flash.
    OutOfBounds,
    /// The access is not aligned.
    NotAligned,
    /// A write would set a bit that is 0 back to 1 without an erase.
    SetsBits {
        /// The first offending byte.
        offset: u32,
    },
    /// A write unit was written twice without an erase.
    WriteTwice {
        /// The first offending write unit.
        offset: u32,
    },
}

impl NorFlashError for MockError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            MockError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            MockError::NotAligned => NorFlashErrorKind::NotAligned,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// A NOR flash in RAM with `READ`, `WRITE` and `ERASE` byte granularity.
#[derive(Clone, Debug)]
pub struct MockFlash<const READ: usize = 1, const WRITE: usize = 4, const ERASE: usize = 4096> {
    bytes: Vec<u8>,
    written: Vec<bool>,
    /// What has been done to the flash so far.
    pub stats: Stats,
}

impl<const READ: usize, const WRITE: usize, const ERASE: usize> MockFlash<READ, WRITE, ERASE> {
    const CHECK: () =
        assert!(READ > 0 && WRITE > 0 && ERASE.is_multiple_of(WRITE) && ERASE.is_multiple_of(READ));

    /// An erased flash of `size` bytes, rounded up to whole erase units.
    pub fn new(size: usize) -> Self {
        let () = Self::CHECK;
        let size = size.div_ceil(ERASE) * ERASE;
        MockFlash {
            bytes: vec![0xFF; size],
            written: vec![false; size / WRITE],
            stats: Stats::default(),
        }
    }

    /// A flash of `size` bytes (rounded up to whole erase units) that holds
    /// `image` at offset 0, programmed, and is erased after it. It takes
    /// `image`'s buffer rather than copying it.
    pub fn with_image(mut image: Vec<u8>, size: usize) -> Self {
        let () = Self::CHECK;
        let size = size.max(image.len()).div_ceil(ERASE) * ERASE;
        let programmed = image.len().div_ceil(WRITE);
        image.resize(size, 0xFF);
        let mut written = vec![false; size / WRITE];
        written[..programmed].fill(true);
        MockFlash {
            bytes: image,
            written,
            stats: Stats::default(),
        }
    }

    /// The whole contents.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The whole contents, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Puts `data` at `offset` as if it had been programmed there before
    /// (for setting up a source image); the range is marked as written.
    pub fn preload(&mut self, offset: usize, data: &[u8]) {
        self.bytes[offset..offset + data.len()].copy_from_slice(data);
        let first = offset / WRITE;
        let last = (offset + data.len()).div_ceil(WRITE);
        self.written[first..last].iter_mut().for_each(|w| *w = true);
    }

    fn range(
        &self,
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<core::ops::Range<usize>, MockError> {
        let start = offset as usize;
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(MockError::NotAligned);
        }
        match start.checked_add(len) {
            Some(end) if end <= self.bytes.len() => Ok(start..end),
            _ => Err(MockError::OutOfBounds),
        }
    }
}

impl<const R: usize, const W: usize, const E: usize> ErrorType for MockFlash<R, W, E> {
    type Error = MockError;
}

impl<const R: usize, const W: usize, const E: usize> ReadNorFlash for MockFlash<R, W, E> {
    const READ_SIZE: usize = R;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), MockError> {
        let r = self.range(offset, bytes.len(), R)?;
        bytes.copy_from_slice(&self.bytes[r]);
        self.stats.reads += 1;
        self.stats.bytes_read += bytes.len() as u64;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.bytes.len()
    }
}

impl<const R: usize, const W: usize, const E: usize> NorFlash for MockFlash<R, W, E> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), MockError> {
        let len = (to as usize)
            .checked_sub(from as usize)
            .ok_or(MockError::OutOfBounds)?;
        let r = self.range(from, len, E)?;
        self.written[r.start / W..r.end / W]
            .iter_mut()
            .for_each(|w| *w = false);
        self.bytes[r].iter_mut().for_each(|b| *b = 0xFF);
        self.stats.erases += (len / E) as u64;
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), MockError> {
        let r = self.range(offset, bytes.len(), W)?;
        let units = r.start / W..r.end / W;
        // Folds rather than early exits: they vectorise, and errors are rare.
        if self.written[units.clone()]
            .iter()
            .fold(false, |a, &w| a | w)
        {
            let i = units
                .clone()
                .find(|&i| self.written[i])
                .unwrap_or(units.start);
            return Err(MockError::WriteTwice {
                offset: (i * W) as u32,
            });
        }
        let old = &self.bytes[r.clone()];
        if bytes.iter().zip(old).fold(0u8, |a, (n, o)| a | (n & !o)) != 0 {
            let i = bytes
                .iter()
                .zip(old)
                .position(|(n, o)| n & !o != 0)
                .unwrap_or(0);
            return Err(MockError::SetsBits {
                offset: offset + i as u32,
            });
        }
        self.written[units].fill(true);
        self.bytes[r].copy_from_slice(bytes);
        self.stats.writes += 1;
        self.stats.bytes_written += bytes.len() as u64;
        Ok(())
    }
}

/// A small deterministic PRNG (xorshift64*) for tests and fuzzing seeds.
/// A zero seed is replaced by one.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        if self.0 == 0 {
            self.0 = 1;
        }
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nor_semantics() {
        let mut f = MockFlash::<1, 4, 256>::new(1000);
        assert_eq!(f.capacity(), 1024);
        f.write(0, &[0x0F, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(
            f.write(0, &[0x0F, 0xFF, 0xFF, 0xFF]),
            Err(MockError::WriteTwice { offset: 0 })
        );
        assert_eq!(f.write(2, &[0; 4]), Err(MockError::NotAligned));
        assert_eq!(f.write(1024, &[0; 4]), Err(MockError::OutOfBounds));
        f.erase(0, 256).unwrap();
        f.write(0, &[0x0F, 0, 0, 0]).unwrap();
        f.erase(0, 256).unwrap();
        assert_eq!(f.as_bytes()[0], 0xFF);
        assert_eq!(f.stats.erases, 2);
        assert_eq!(f.erase(0, 100), Err(MockError::NotAligned));
        f.preload(4, &[1, 2]);
        assert!(matches!(
            f.write(4, &[0; 4]),
            Err(MockError::WriteTwice { .. })
        ));
    }

    #[test]
    fn with_image_is_programmed_then_erased() {
        let mut f = MockFlash::<1, 4, 256>::with_image(vec![0x12; 6], 300);
        assert_eq!(f.capacity(), 512);
        assert_eq!(
            &f.as_bytes()[..7],
            &[0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0xFF]
        );
        assert!(f.as_bytes()[6..].iter().all(|&b| b == 0xFF));
        // The write unit holding the image's tail counts as programmed.
        assert!(matches!(
            f.write(4, &[0; 4]),
            Err(MockError::WriteTwice { offset: 4 })
        ));
        f.write(8, &[0; 4]).unwrap();
        assert_eq!(f.into_bytes().len(), 512);
    }
}

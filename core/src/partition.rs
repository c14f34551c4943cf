//! A window over part of a flash device, so that the source and target
//! slots of one chip can be handed out as two flash objects.
//!
//! ```text
//!  flash: |....| source partition |....| target partition |....|
//!         0    ^offset            offset+size
//! ```
//!
//! Every access is checked against the window: nothing outside it can be
//! read, written or erased through a `Partition`.

use core::cell::RefCell;
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// A window `[offset, offset + size)` over a flash shared through a
/// `RefCell`.
///
/// ```
/// use core::cell::RefCell;
/// use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
/// use flashpatch::{mock::MockFlash, Partition, PartitionError};
///
/// let flash = RefCell::new(MockFlash::<1, 4, 4096>::new(3 * 4096));
/// let mut slot = Partition::new(&flash, 4096, 4096).unwrap();
/// slot.write(0, b"abcd").unwrap(); // offsets are the window's
/// assert_eq!(&flash.borrow().as_bytes()[4096..4100], b"abcd");
/// // Nothing outside the window is reached.
/// let mut byte = [0u8];
/// assert_eq!(slot.read(4096, &mut byte), Err(PartitionError::OutOfBounds));
/// // A window must lie within the flash.
/// assert!(Partition::new(&flash, 8192, 8192).is_none());
/// ```
pub struct Partition<'a, F> {
    flash: &'a RefCell<F>,
    offset: u32,
    size: u32,
}

/// Errors of a [`Partition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PartitionError<E> {
    /// The underlying flash failed.
    Flash(E),
    /// The access reaches outside the partition.
    OutOfBounds,
    /// The access is not aligned to the flash's read, write or erase size.
    NotAligned,
    /// The flash is being used by another partition at this moment.
    Busy,
}

impl<E: NorFlashError> NorFlashError for PartitionError<E> {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            PartitionError::Flash(e) => e.kind(),
            PartitionError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            PartitionError::NotAligned => NorFlashErrorKind::NotAligned,
            PartitionError::Busy => NorFlashErrorKind::Other,
        }
    }
}

impl<'a, F: NorFlash> Partition<'a, F> {
    /// A window over `flash`. `offset` and `size` must be multiples of the
    /// erase size and lie within the flash; `None` otherwise.
    pub fn new(flash: &'a RefCell<F>, offset: u32, size: u32) -> Option<Self> {
        let erase = F::ERASE_SIZE as u32;
        let cap = flash.try_borrow().ok()?.capacity() as u64;
        let fits = offset as u64 + size as u64 <= cap;
        (fits && offset.is_multiple_of(erase) && size.is_multiple_of(erase)).then_some(Partition {
            flash,
            offset,
            size,
        })
    }

    /// Where the window starts in the flash.
    pub fn offset(&self) -> u32 {
        self.offset
    }

    fn window(
        &self,
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<u32, PartitionError<F::Error>> {
        if !(offset as usize).is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(PartitionError::NotAligned);
        }
        match (offset as u64).checked_add(len as u64) {
            Some(end) if end <= self.size as u64 => Ok(self.offset + offset),
            _ => Err(PartitionError::OutOfBounds),
        }
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut F) -> Result<R, F::Error>,
    ) -> Result<R, PartitionError<F::Error>> {
        let mut flash = self
            .flash
            .try_borrow_mut()
            .map_err(|_| PartitionError::Busy)?;
        f(&mut flash).map_err(PartitionError::Flash)
    }
}

impl<F: NorFlash> ErrorType for Partition<'_, F> {
    type Error = PartitionError<F::Error>;
}

impl<F: NorFlash> ReadNorFlash for Partition<'_, F> {
    const READ_SIZE: usize = F::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let at = self.window(offset, bytes.len(), F::READ_SIZE)?;
        self.with(|f| f.read(at, bytes))
    }

    fn capacity(&self) -> usize {
        self.size as usize
    }
}

impl<F: NorFlash> NorFlash for Partition<'_, F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = to.checked_sub(from).ok_or(PartitionError::OutOfBounds)?;
        let at = self.window(from, len as usize, F::ERASE_SIZE)?;
        self.with(|f| f.erase(at, at + len))
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let at = self.window(offset, bytes.len(), F::WRITE_SIZE)?;
        self.with(|f| f.write(at, bytes))
    }
}

/// The first `len` bytes of a flash (which it owns: a driver, or `&mut`
/// one), for a target that must not be written to its end: an
/// embassy-boot DFU partition (the swap moves only as many bytes as the
/// ACTIVE partition holds), an MCUboot slot (its image trailer is at the
/// end). Its capacity is `len` (at most the flash's), so an applier refuses
/// a larger image before it writes anything (`ApplyError::TargetTooSmall`);
/// an access past it fails with [`NorFlashErrorKind::OutOfBounds`], and a
/// driver's error is its kind. Blocking and async.
///
/// ```
/// use embedded_storage::nor_flash::{NorFlash, NorFlashErrorKind, ReadNorFlash};
/// use flashpatch::{mock::MockFlash, Bounded};
///
/// let mut chip = MockFlash::<1, 4, 4096>::new(3 * 4096);
/// let mut first = Bounded::new(&mut chip, 2 * 4096);
/// assert_eq!(first.capacity(), 2 * 4096);
/// first.write(4096, &[0; 4]).unwrap();
/// assert_eq!(first.write(2 * 4096, &[0; 4]), Err(NorFlashErrorKind::OutOfBounds));
/// assert_eq!(first.erase(4096, 3 * 4096), Err(NorFlashErrorKind::OutOfBounds));
/// assert_eq!(chip.stats.erases, 0);
/// ```
#[derive(Debug)]
pub struct Bounded<F> {
    pub(crate) flash: F,
    pub(crate) len: usize,
}

impl<F> Bounded<F> {
    /// The first `len` bytes of `flash`.
    pub fn new(flash: F, len: usize) -> Self {
        Bounded { flash, len }
    }

    /// Gives the flash back.
    pub fn into_inner(self) -> F {
        self.flash
    }

    /// Whether `[offset, offset + n)` lies within the first `len` bytes.
    pub(crate) fn covers(&self, offset: u32, n: usize) -> Result<(), NorFlashErrorKind> {
        match (offset as usize).checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(NorFlashErrorKind::OutOfBounds),
        }
    }
}

impl<F: ErrorType> ErrorType for Bounded<F> {
    type Error = NorFlashErrorKind;
}

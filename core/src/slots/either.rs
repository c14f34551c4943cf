//! Slot A and slot B on flashes of different types.

use embedded_storage::nor_flash::{ErrorType, NorFlashErrorKind};

/// One of two flash types, so that slot A and slot B may live on different
/// flashes with different drivers and error types (the running image in
/// internal flash, the other slot in an external SPI NOR, say):
/// `Slots::new(Either::A(internal), Either::B(external), state, config)`.
/// Each slot is a whole `Either`, and which of the two it holds decides
/// which driver every operation goes to.
///
/// Both drivers are seen through the larger of their read sizes, write
/// sizes and erase units (the larger one must be a multiple of the
/// smaller, or `Slots` does not compile), so each slot's capacity should be
/// a multiple of the larger erase unit. A driver's error becomes its
/// [`NorFlashErrorKind`], which is what [`FlashError`](crate::FlashError)
/// keeps, together with the slot's role (source or target). Slots on one
/// flash type need none of this: `Slots<P, S>` with the same `P` for both
/// is what the blocking path is measured with.
///
/// ```
/// use core::cell::RefCell;
/// use flashpatch::mock::MockFlash;
/// use flashpatch::slots::{Config, Either, Slot, Slots};
/// use flashpatch::{ApplierState, Partition};
///
/// let old = b"Hello from version 1 of the firmware!\n".repeat(16);
/// let patch = include_bytes!("../../examples/data/hello.fpat");
/// // Internal flash (8-byte writes, 2 KiB pages): slot A and the state
/// // area. An external flash (1-byte writes, 4 KiB sectors): slot B.
/// let internal = RefCell::new(MockFlash::<4, 8, 2048>::new(0x3000));
/// internal.borrow_mut().preload(0, &old);
/// let external = RefCell::new(MockFlash::<1, 1, 4096>::new(0x1000));
/// let open = || {
///     let a = Either::A(Partition::new(&internal, 0, 0x1000).unwrap());
///     let b = Either::B(Partition::new(&external, 0, 0x1000).unwrap());
///     let state = Partition::new(&internal, 0x1000, 0x2000).unwrap();
///     Slots::new(a, b, state, Config::default()).unwrap()
/// };
/// open().provision(Slot::A, old.len() as u32).unwrap();
/// let mut slots = open();
/// let mut mem = ApplierState::new();
/// let mut update = slots.begin_update(&mut mem).unwrap();
/// update.feed(patch).unwrap();
/// let installed = update.finish().unwrap();
/// slots.activate(&installed).unwrap();
/// // The new image runs from the external flash, on trial.
/// assert_eq!(open().select().unwrap().slot, Slot::B);
/// ```
#[derive(Debug)]
pub enum Either<A, B> {
    /// A flash of the first type.
    A(A),
    /// A flash of the second type.
    B(B),
}

/// The larger of two sizes, which must be a multiple of the smaller.
pub(super) const fn larger(a: usize, b: usize) -> usize {
    let (big, small) = if a >= b { (a, b) } else { (b, a) };
    assert!(
        small > 0 && big.is_multiple_of(small),
        "the two flashes' read sizes, write sizes and erase units must each divide the other's"
    );
    big
}

impl<A: ErrorType, B: ErrorType> ErrorType for Either<A, B> {
    type Error = NorFlashErrorKind;
}

#[cfg(test)]
mod tests {
    use super::larger;

    #[test]
    fn the_larger_size_is_used() {
        assert_eq!(larger(8, 1), 8);
        assert_eq!(larger(4096, 65536), 65536);
        assert_eq!(larger(32, 32), 32);
    }

    #[test]
    #[should_panic(expected = "must each divide")]
    fn sizes_that_do_not_divide_are_refused() {
        larger(12, 8);
    }
}

//! Where the slots and the state area lie in one flash.

use embedded_storage::nor_flash::NorFlash;

/// Where the slots and the state area lie in one flash, checked when it
/// is built in a `const` (so a bad layout fails the build).
///
/// ```
/// use flashpatch::slots::Layout;
/// const LAYOUT: Layout = Layout::new(4096, 0x1_0000, 0x4_0000, 0x5_0000, 0x9_0000, 0x2000);
/// assert_eq!(LAYOUT.slot_b, 0x5_0000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Start of slot A.
    pub slot_a: u32,
    /// Start of slot B.
    pub slot_b: u32,
    /// Bytes of each slot.
    pub slot_size: u32,
    /// Start of the state area.
    pub state: u32,
    /// Bytes of the state area.
    pub state_size: u32,
}

impl Layout {
    /// A layout for a flash with `erase` bytes per erase unit: slot A at
    /// `slot_a`, slot B at `slot_b`, both `slot_size` bytes, the state area
    /// at `state`, `state_size` bytes. Panics (at compile time in a
    /// `const`) if anything is misaligned, the three overlap, or the state
    /// area has fewer than two erase units.
    pub const fn new(
        erase: u32,
        slot_a: u32,
        slot_size: u32,
        slot_b: u32,
        state: u32,
        state_size: u32,
    ) -> Layout {
        assert!(erase > 0, "erase size is zero");
        assert!(
            slot_a.is_multiple_of(erase)
                && slot_b.is_multiple_of(erase)
                && state.is_multiple_of(erase),
            "a region does not start on an erase unit"
        );
        assert!(
            slot_size.is_multiple_of(erase) && state_size.is_multiple_of(erase),
            "a region is not a whole number of erase units"
        );
        assert!(slot_size > 0, "empty slots");
        assert!(
            state_size >= 2 * erase,
            "the state area needs two erase units"
        );
        const fn disjoint(a: u32, al: u32, b: u32, bl: u32) -> bool {
            a as u64 + al as u64 <= b as u64 || b as u64 + bl as u64 <= a as u64
        }
        assert!(
            disjoint(slot_a, slot_size, slot_b, slot_size)
                && disjoint(slot_a, slot_size, state, state_size)
                && disjoint(slot_b, slot_size, state, state_size),
            "regions overlap"
        );
        Layout {
            slot_a,
            slot_b,
            slot_size,
            state,
            state_size,
        }
    }

    /// The three regions as partitions of `flash`: slot A, slot B, state
    /// area. `None` if they do not fit the flash or its erase size.
    pub fn partitions<'a, F: NorFlash>(
        &self,
        flash: &'a core::cell::RefCell<F>,
    ) -> Option<[crate::Partition<'a, F>; 3]> {
        use crate::Partition;
        Some([
            Partition::new(flash, self.slot_a, self.slot_size)?,
            Partition::new(flash, self.slot_b, self.slot_size)?,
            Partition::new(flash, self.state, self.state_size)?,
        ])
    }
}

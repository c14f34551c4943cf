//! Figures that tests pin and that README.md and docs/ quote: the tests
//! assert them, and `tests/tests/readme_figures.rs` checks that the
//! documents quote these values and no others.

/// Wear of the small update of `golden.rs` (erases, writes, bytes written):
/// the update and its activation.
pub const UPDATE_WEAR: (u64, u64, u64) = (5, 243, 15_504);
/// The same for the first (trial) boot.
pub const TRIAL_BOOT_WEAR: (u64, u64, u64) = (1, 2, 128);
/// The same for the confirmation.
pub const CONFIRM_WEAR: (u64, u64, u64) = (1, 2, 128);
/// The checkpoint record's length in bytes (`slots::CHECKPOINT_LEN`).
pub const CHECKPOINT_LEN: usize = 2560;

/// The two-component power-cut sweep of `components.rs`: flash
/// operations of the update, cut runs, runs that booted both components
/// old after the cut, and both new.
pub const TWO_COMPONENT_SWEEP: (usize, usize, usize, usize) = (301, 602, 582, 20);

/// `ram.rs`, on a 64-bit host: `size_of` of the slot manager, of an update
/// in progress and of the applier's state (with host-genpat's `vouch`).
pub const SLOTS_RAM: (usize, usize, usize) = (200, 88, 2928);
/// `ram.rs`, on a 64-bit host: the applier as `genpat apply` instantiates
/// it (handle and state), and the codec model.
pub const APPLIER_RAM: (usize, usize) = (2952, 2128);

//! Figures that tests pin and that README.md and docs/ quote: the tests
//! assert them, and `tests/tests/readme_figures.rs` checks that the
//! documents quote these values and no others.

/// Wear of the small update of `golden.rs` (erases, writes, bytes written):
/// the update and its activation.
pub const UPDATE_WEAR: (u64, u64, u64) = (5, 241, 15_376);
/// The same for the first (trial) boot.
pub const TRIAL_BOOT_WEAR: (u64, u64, u64) = (1, 2, 128);
/// The same for the confirmation.
pub const CONFIRM_WEAR: (u64, u64, u64) = (1, 2, 128);
/// The checkpoint record's length in bytes (`slots::CHECKPOINT_LEN`).
pub const CHECKPOINT_LEN: usize = 2432;

/// The two-component power-cut sweep of `components.rs`: flash
/// operations of the update, cut runs, runs that booted both components
/// old after the cut, and both new.
pub const TWO_COMPONENT_SWEEP: (usize, usize, usize, usize) = (305, 610, 590, 20);

/// `ram.rs`, on a 64-bit host: `size_of` of the slot manager, of an update
/// in progress and of the applier's state (with host-genpat's `vouch`).
pub const SLOTS_RAM: (usize, usize, usize) = (248, 96, 2872);
/// `ram.rs`, on a 64-bit host: the applier as `genpat apply` instantiates
/// it (handle and state), and the codec model.
pub const APPLIER_RAM: (usize, usize) = (2896, 2148);

/// What one way of feeding an update costs (`resume_costs.rs`, the
/// k64f-mbed-blinky pair on 4 KiB erase units and 4-byte write units).
/// Flash figures are (erase units erased, bytes programmed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeCost {
    /// One whole update (transfer, apply, activate): the target slot.
    pub target: (u64, u64),
    /// The same: the state area (boot record and checkpoints).
    pub state: (u64, u64),
    /// The same: the staging area (0 when streaming).
    pub staging: (u64, u64),
    /// Patch bytes sent over the link for the whole update.
    pub sent: u64,
    /// One power cut half way through the apply: what the recovery
    /// programs in the target slot again.
    pub cut_target: (u64, u64),
    /// The same: patch bytes the sender sends again.
    pub cut_resent: u64,
}

impl ResumeCost {
    /// Flash time of the whole update's erases and writes at the nRF52840
    /// timings [`ERASE_MS`] and [`WORD_US`], in ms.
    pub const fn update_ms(&self) -> u64 {
        flash_ms(self.target) + flash_ms(self.state) + flash_ms(self.staging)
    }

    /// The same for what the cut's recovery programs again in the target.
    pub const fn cut_ms(&self) -> u64 {
        flash_ms(self.cut_target)
    }
}

/// nRF52840 timings the documents convert flash work with: a 4 KiB page
/// erase, in ms ...
pub const ERASE_MS: u64 = 85;
/// ... and a 32-bit word write, in µs.
pub const WORD_US: u64 = 41;

/// Flash time of (erase units, bytes programmed) at those timings, in ms
/// (rounded up).
pub const fn flash_ms((erases, bytes): (u64, u64)) -> u64 {
    erases * ERASE_MS + (bytes / 4 * WORD_US).div_ceil(1000)
}

/// Streamed from the link, a checkpoint at every target erase unit.
pub const RESUME_STREAM: ResumeCost = ResumeCost {
    target: (13, 52_760),
    state: (12, 30_976),
    staging: (0, 0),
    sent: 3_498,
    cut_target: (1, 1_728),
    cut_resent: 204,
};
/// Staged first, no checkpoints (`checkpoint_units: 0`).
pub const RESUME_STAGE_BARE: ResumeCost = ResumeCost {
    target: (13, 52_760),
    state: (1, 256),
    staging: (3, 3_520),
    sent: 3_498,
    cut_target: (7, 26_304),
    cut_resent: 0,
};
/// Staged first, a checkpoint at every target erase unit.
pub const RESUME_STAGE: ResumeCost = ResumeCost {
    target: (13, 52_760),
    state: (12, 30_976),
    staging: (3, 3_520),
    sent: 3_498,
    cut_target: (1, 1_728),
    cut_resent: 0,
};

/// `resume_costs.rs`: state-area erase units erased by one streamed update
/// with a checkpoint at every unit, and the most any one unit took, with a
/// state area of 2 and of 8 erase units.
pub const STATE_WEAR: [(usize, usize); 2] = [(12, 6), (8, 1)];

//! A simulated device for slot tests: one [`MockFlash`] holding slot A,
//! slot B and the state area, and the boot stage and application as
//! functions that build everything afresh over the same bytes (nothing but
//! the flash survives a "reset"). Its flash geometry is its type: erase
//! units of `E` bytes, read units of `R`, write units of `W`, erased bytes
//! reading `X` (by default 1, 4 and 0xFF).

use core::cell::RefCell;

use flashpatch::mock::{Cut, MockFlash, Yielding};
use flashpatch::slots::{Boot, Config, Layout, Slot, Slots};
use flashpatch::{Partition, SlotError};

/// The device's flash error.
pub type DevError = SlotError;

/// The device's flash.
pub type DevFlash<const E: usize, const R: usize = 1, const W: usize = 4, const X: u8 = 0xFF> =
    MockFlash<R, W, E, X>;

/// The slot manager as the device builds it.
pub type DevSlots<'a, const E: usize, const R: usize = 1, const W: usize = 4, const X: u8 = 0xFF> =
    Slots<Partition<'a, DevFlash<E, R, W, X>>, Partition<'a, DevFlash<E, R, W, X>>>;

/// The async slot manager as the device builds it: every partition an
/// async driver that waits once at each operation.
pub type AsyncDevSlots<
    'a,
    const E: usize,
    const R: usize = 1,
    const W: usize = 4,
    const X: u8 = 0xFF,
> = flashpatch::slots::asynch::Slots<
    Yielding<Partition<'a, DevFlash<E, R, W, X>>>,
    Yielding<Partition<'a, DevFlash<E, R, W, X>>>,
>;

/// An update in progress on the device.
pub type DevUpdate<
    's,
    'a,
    const E: usize,
    const R: usize = 1,
    const W: usize = 4,
    const X: u8 = 0xFF,
> = flashpatch::slots::Update<
    's,
    Partition<'a, DevFlash<E, R, W, X>>,
    Partition<'a, DevFlash<E, R, W, X>>,
>;

/// A device: flash with erase units of `E` bytes, read units of `R`,
/// write units of `W`, erased to `X`.
pub struct Device<const E: usize, const R: usize = 1, const W: usize = 4, const X: u8 = 0xFF> {
    /// The flash; survives resets.
    pub flash: RefCell<DevFlash<E, R, W, X>>,
    /// Where the slots and state area are.
    pub layout: Layout,
    /// Slot manager settings.
    pub config: Config,
}

impl<const E: usize, const R: usize, const W: usize, const X: u8> Device<E, R, W, X> {
    /// A device with slots of `slot` bytes (rounded up to erase units) and
    /// a state area of `state_units` erase units; slot A holds `image`,
    /// provisioned as the running, confirmed image.
    pub fn provisioned(image: &[u8], slot: usize, state_units: usize) -> Self {
        let slot = slot.div_ceil(E).max(1) * E;
        let state = state_units * E;
        let layout = Layout::new(
            E as u32,
            0,
            slot as u32,
            slot as u32,
            2 * slot as u32,
            state as u32,
        );
        let mut flash = DevFlash::<E, R, W, X>::new(2 * slot + state);
        flash.preload(0, image);
        let dev = Device {
            flash: RefCell::new(flash),
            layout,
            config: Config::default(),
        };
        dev.slots()
            .unwrap()
            .provision(Slot::A, image.len() as u32)
            .unwrap();
        dev
    }

    /// A copy of the device armed to lose power at its flash operation `i`
    /// (counted from now), as `kind` says, the torn bytes seeded from `i`.
    pub fn cut_copy(&self, i: usize, kind: Cut) -> Self {
        let dev = self.snapshot();
        dev.flash
            .borrow_mut()
            .cut_at(i as u64, kind, i as u64 * 7 + 1);
        dev
    }

    /// A copy of the device as it is now (no cut armed, no logs).
    pub fn snapshot(&self) -> Self {
        let mut flash = self.flash.borrow().clone();
        flash.disarm();
        flash.op_trace = None;
        flash.erase_log = None;
        Device {
            flash: RefCell::new(flash),
            layout: self.layout,
            config: self.config,
        }
    }

    /// The slot manager, built afresh over the flash (as after a reset).
    pub fn slots(&self) -> Result<DevSlots<'_, E, R, W, X>, DevError> {
        let [a, b, s] = self.layout.partitions(&self.flash).unwrap();
        Slots::new(a, b, s, self.config)
    }

    /// The async slot manager, built afresh over the flash (as after a
    /// reset), each partition suspended once at every operation.
    pub async fn async_slots(&self) -> Result<AsyncDevSlots<'_, E, R, W, X>, DevError> {
        let [a, b, s] = self.layout.partitions(&self.flash).unwrap();
        let y = Yielding::new;
        flashpatch::slots::asynch::Slots::new(y(a), y(b), y(s), self.config).await
    }

    /// The boot stage: builds the slot manager and selects.
    pub fn boot(&self) -> Result<Boot, DevError> {
        self.slots()?.select()
    }

    /// The first `len` bytes of `slot`.
    pub fn slot_bytes(&self, slot: Slot, len: usize) -> Vec<u8> {
        let at = match slot {
            Slot::A => self.layout.slot_a,
            Slot::B => self.layout.slot_b,
        } as usize;
        self.flash.borrow().as_bytes()[at..at + len].to_vec()
    }

    /// Flash operation counters so far.
    pub fn stats(&self) -> flashpatch::mock::Stats {
        self.flash.borrow().stats
    }
}

/// Every point of a run whose flash operations `trace` lists (`true`: a
/// write) where power can be cut: before each operation, and in its middle.
pub fn cut_points(trace: &[bool]) -> impl Iterator<Item = (usize, Cut)> + '_ {
    trace.iter().enumerate().flat_map(|(i, &write)| {
        let torn = if write { Cut::MidWrite } else { Cut::MidErase };
        [(i, Cut::Before), (i, torn)]
    })
}

//! What the boot stage and the application of the micro:bit demo share:
//! the flash map, the NVMC flash driver, the UART, a cycle counter, and
//! restarting. Runs on QEMU's `microbit` (nRF51822: Cortex-M0, 256 KiB of
//! flash at 0x0 in 1 KiB pages, 16 KiB of RAM at 0x2000_0000).
//!
//! Flash map (addresses are flash offsets: the flash is mapped at 0x0 and
//! code runs where it lies):
//!
//! ```text
//!  0x00000  boot stage       24 KiB   (never written by the firmware)
//!  0x06000  slot A           92 KiB   (images linked at 0x06000)
//!  0x1D000  slot B           92 KiB   (images linked at 0x1D000)
//!  0x34000  state area        8 KiB   (boot records: flashpatch::slots)
//!  0x36000  patch staging    40 KiB   (flashpatch::proto::Staging)
//!  0x40000  end
//! ```
//!
//! Console text and exit codes go through semihosting, as in the mps2
//! demo (`firmware_demo::{log, semihost}`); the update protocol runs on
//! the nRF51's UART.
#![no_std]

pub mod nvmc;
pub mod uart;

use core::cell::RefCell;

pub use firmware_demo::{log, self_test, semihost, stack, Wear, VERSION};
use flashpatch::slots::{Config, Layout};
use flashpatch::Partition;
pub use nvmc::Nvmc;

/// Bytes of the flash.
pub const FLASH_SIZE: u32 = 0x40000;
/// A flash page: the NVMC's erase unit.
pub const PAGE: u32 = 1024;
/// The boot stage's region: the NVMC driver refuses to erase or program
/// it.
pub const BOOT: (u32, u32) = (0, 0x6000);
/// Slot A's start.
pub const SLOT_A: u32 = 0x6000;
/// Slot B's start.
pub const SLOT_B: u32 = 0x1D000;
/// Bytes of a slot.
pub const SLOT_SIZE: u32 = 0x17000;
/// Slots and state area.
pub const LAYOUT: Layout = Layout::new(PAGE, SLOT_A, SLOT_SIZE, SLOT_B, 0x34000, 0x2000);
/// Where the staging partition starts, and its size.
pub const STAGE: (u32, u32) = (0x36000, 0xA000);
/// RAM: start and size.
pub const RAM: (u32, u32) = (0x2000_0000, 0x4000);

const _: () = assert!(BOOT.0 + BOOT.1 == SLOT_A && SLOT_A + SLOT_SIZE == SLOT_B);
const _: () =
    assert!(SLOT_B + SLOT_SIZE == LAYOUT.state && LAYOUT.state + LAYOUT.state_size == STAGE.0);
// Each of the state area's two banks holds a boot record and a checkpoint.
const _: () = assert!(
    LAYOUT.state_size / 2 >= flashpatch::slots::Slots::<Part<'static>, Part<'static>>::MIN_BANK
);
const _: () = assert!(STAGE.0 + STAGE.1 == FLASH_SIZE);

/// A trial image gets two boots to confirm itself; the patch is staged
/// in flash, so an interrupted apply runs again from it (no checkpoints).
pub const CONFIG: Config = Config {
    max_boot_attempts: 2,
    checkpoint_units: 0,
};

/// The flash as both stages see it.
pub type Flash = RefCell<Nvmc>;
/// A partition of it.
pub type Part<'a> = Partition<'a, Nvmc>;

/// The flash, driven through the NVMC.
pub fn open_flash() -> Flash {
    // SAFETY: only this driver touches the NVMC, and each stage opens the
    // flash once.
    RefCell::new(Nvmc::new(unsafe { nrf51_pac::Peripherals::steal() }.NVMC))
}

/// Where slot `index` (0 for A, 1 for B) starts: the vector table of the
/// image in it, which is linked to run there.
pub const fn slot_start(index: usize) -> u32 {
    [SLOT_A, SLOT_B][index]
}

/// Sends `m` on `uart` as one frame of the update protocol.
pub fn send(uart: &mut uart::Uart, m: &flashpatch::proto::DeviceMsg<'_>) {
    use flashpatch::proto::frame;
    let mut out = [0u8; frame::MAX_DEVICE_FRAME];
    if let Ok(n) = frame::encode(m, &mut out) {
        uart.write(&out[..n]);
    }
}

/// Restarts the device (SYSRESETREQ): the core starts again at the boot
/// stage's vector table at 0x0.
pub fn reset() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// A free-running counter of TIMER0 at 16 MHz (prescaler 0, 32 bits):
/// with `-icount shift=0` QEMU runs one instruction per nanosecond, so a
/// tick is 62.5 instructions ([`timer::calibrate`] measures it).
pub mod timer {
    fn t() -> nrf51_pac::TIMER0 {
        // SAFETY: only this module touches TIMER0.
        unsafe { nrf51_pac::Peripherals::steal() }.TIMER0
    }

    /// Starts the counter from zero.
    pub fn start() {
        let t = t();
        t.mode.write(|w| w.mode().timer());
        t.bitmode.write(|w| w.bitmode()._32bit());
        // SAFETY: 0 is a valid prescaler (16 MHz).
        t.prescaler.write(|w| unsafe { w.prescaler().bits(0) });
        t.tasks_clear.write(|w| unsafe { w.bits(1) });
        t.tasks_start.write(|w| unsafe { w.bits(1) });
    }

    /// Ticks since [`start`].
    pub fn now() -> u32 {
        let t = t();
        t.tasks_capture[0].write(|w| unsafe { w.bits(1) });
        t.cc[0].read().bits()
    }

    /// Ticks that 2,000,000 instructions take (a loop of two instructions,
    /// run 1,000,000 times): the instructions per tick, times 2,000,000.
    pub fn calibrate() -> u32 {
        let t0 = now();
        // SAFETY: a register-only loop.
        unsafe {
            core::arch::asm!(
                "2:",
                "subs {n}, #1",
                "bne 2b",
                n = inout(reg) 1_000_000u32 => _,
                options(nomem, nostack),
            );
        }
        now().wrapping_sub(t0)
    }
}

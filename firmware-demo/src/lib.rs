//! What the boot stage and the application of the flashpatch demo share:
//! the board (UART, semihosting, the flash file), the flash layout, a
//! console, and fault handling. Runs on QEMU's `mps2-an386`.
//!
//! Flash (the host file `flash.bin`, mapped at [`FLASH_BASE`]: see
//! [`mapped`]; 4 KiB erase units):
//!
//! ```text
//!  offset   address
//!  0x00000  0x2100_0000  slot A          128 KiB
//!  0x20000  0x2102_0000  slot B          128 KiB
//!  0x40000  0x2104_0000  state area        8 KiB   (boot records: flashpatch::slots)
//!  0x42000  0x2104_2000  patch staging    72 KiB   (flashpatch::proto::Staging)
//!  0x54000               end
//! ```
//!
//! Images execute in place: the boot stage starts the selected slot where
//! it lies, so each release is built once per slot, linked at that slot's
//! address (`link/slot-a/memory.x`, `link/slot-b/memory.x`, chosen by
//! `DEMO_SLOT` at build time), and an update writes the build for the
//! slot it goes into.
#![no_std]

#[cfg(feature = "defmt")]
mod defmt_log;
pub mod flash;
pub mod mapped;
pub mod semihost;
pub mod stack;
pub mod uart;
pub mod version;
pub mod wear;

use core::cell::RefCell;
use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicU32, Ordering};

use flashpatch::slots::{Config, Layout};
use flashpatch::Partition;

pub use flash::FileFlash;
pub use mapped::MappedFlash;
pub use version::{self_test, version_tag, VERSION};
pub use wear::Wear;

/// The flash file, relative to QEMU's working directory.
pub const FLASH_FILE: &str = "flash.bin";
/// Bytes of the flash.
pub const FLASH_SIZE: u32 = 0x54000;
/// Erase unit.
pub const ERASE: u32 = 4096;
/// Slots and state area.
pub const LAYOUT: Layout = Layout::new(ERASE, 0, 0x20000, 0x20000, 0x40000, 0x2000);
/// Where the staging partition starts, and its size.
pub const STAGE: (u32, u32) = (0x42000, 0x12000);
/// Where the A/B flash is mapped: QEMU's 16 MiB machine RAM, which the
/// harness backs with `flash.bin` ([`mapped`]).
pub const FLASH_BASE: u32 = 0x2100_0000;
/// The board's RAM for statics and stacks (its SSRAM2&3): start, bytes.
pub const RAM: (u32, u32) = (0x2000_0000, 0x40_0000);
/// Where the in-place demo's boot stage loads its image to run it
/// ([`in_place`]).
pub const APP_BASE: u32 = 0x0010_0000;
/// Where an application image holds its version tag (`link/app/memory.x`):
/// [`VERSION_MAGIC`], a length byte and the version text.
pub const VERSION_AT: u32 = 0x400;
/// Bytes of the version tag.
pub const VERSION_TAG_LEN: usize = 32;
/// The first bytes of a version tag.
pub const VERSION_MAGIC: [u8; 4] = *b"FPv\x01";

/// The version text of a tag (`None` if `tag` is none).
pub fn version_of(tag: &[u8; VERSION_TAG_LEN]) -> Option<&str> {
    let n = tag[4] as usize;
    if tag[..4] != VERSION_MAGIC || n > VERSION_TAG_LEN - 5 {
        return None;
    }
    core::str::from_utf8(&tag[5..5 + n]).ok()
}
/// Slot manager settings: a trial image gets two boots to confirm itself.
/// No apply checkpoints: the patch is staged in flash, so an interrupted
/// apply simply runs again from the staged patch.
pub const CONFIG: Config = Config {
    max_boot_attempts: 2,
    checkpoint_units: 0,
};

/// The A/B demo's flash, as both stages see it.
pub type XipFlash = RefCell<MappedFlash>;
/// A partition of it.
pub type XipPart<'a> = Partition<'a, MappedFlash>;

/// Where slot `slot`'s image lies, and so where it executes.
pub const fn slot_address(slot: flashpatch::slots::Slot) -> u32 {
    FLASH_BASE
        + match slot {
            flashpatch::slots::Slot::A => LAYOUT.slot_a,
            flashpatch::slots::Slot::B => LAYOUT.slot_b,
        }
}

/// The in-place demo's flash file ([`in_place`]).
pub type Flash = RefCell<FileFlash>;
/// A partition of it.
pub type Part<'a> = Partition<'a, FileFlash>;

/// The in-place demo's flash (`inplace`, `inplace-boot`, and
/// `flashpatch::slots::InPlace`): the same kind of file, with one image
/// slot, 4 KiB erase units.
///
/// ```text
///  0x00000  image slot      128 KiB
///  0x20000  scratch           8 KiB   (two erase units of the rewrite)
///  0x22000  state area        8 KiB   (boot records and checkpoints)
///  0x24000  patch staging    72 KiB   (the update and its reverse entry)
///  0x36000  end
/// ```
///
/// The image is loaded to [`APP_BASE`] and runs there (the A/B demo's
/// images execute in place instead), so that rewriting its slot does not
/// touch the code that runs.
pub mod in_place {
    /// Bytes of the flash: the A/B layout's [`super::FLASH_SIZE`] less
    /// one slot, plus the scratch area.
    pub const FLASH_SIZE: u32 = 0x36000;
    /// The image slot: offset and size.
    pub const SLOT: (u32, u32) = (0, 0x20000);
    /// The scratch area.
    pub const SCRATCH: (u32, u32) = (0x20000, 0x2000);
    /// The state area.
    pub const STATE: (u32, u32) = (0x22000, 0x2000);
    /// The staging partition (`flashpatch::proto::Staging`).
    pub const STAGE: (u32, u32) = (0x24000, 0x12000);
    /// Where the staged file lies: one erase unit into the staging
    /// partition (its header unit; see `flashpatch::proto::Staging`).
    pub const STAGED: (u32, u32) = (STAGE.0 + super::ERASE, STAGE.1 - super::ERASE);
    /// The erase unit the entries are made for (`genpat diff --in-place
    /// --erase-unit 4096`).
    pub const UNIT: u32 = super::ERASE;
}

/// The A/B demo's flash, mapped at [`FLASH_BASE`], read-only but for its
/// driver's stores ([`MappedFlash::guarded`]).
pub fn xip_flash() -> XipFlash {
    // SAFETY: FLASH_BASE.. is QEMU's machine RAM, which the firmware uses
    // for nothing else (its RAM is at 0x2000_0000), and each stage makes
    // one driver.
    RefCell::new(unsafe { MappedFlash::new(FLASH_BASE, FLASH_SIZE) }.guarded())
}

/// Opens the flash file of `size` bytes, or stops QEMU with
/// [`semihost::exit::FLASH`].
pub fn open_flash_of(size: u32) -> Flash {
    match FileFlash::open(FLASH_FILE, size) {
        Some(f) => RefCell::new(f),
        None => {
            log(format_args!("flash: cannot open {FLASH_FILE}"));
            semihost::exit(semihost::exit::FLASH)
        }
    }
}

static CONSOLE: AtomicU32 = AtomicU32::new(u32::MAX);

/// One line of text on the host console (QEMU's stdout).
pub fn log(args: fmt::Arguments<'_>) {
    struct Line {
        buf: [u8; 200],
        len: usize,
    }
    impl fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let n = s.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
    let mut h = CONSOLE.load(Ordering::Relaxed);
    if h == u32::MAX {
        h = semihost::open(":tt", 4).unwrap_or(u32::MAX);
        CONSOLE.store(h, Ordering::Relaxed);
    }
    let mut line = Line {
        buf: [0; 200],
        len: 0,
    };
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    semihost::write(h, &line.buf[..line.len]);
}

/// `log!("...", args)`: a line on the host console.
#[macro_export]
macro_rules! log {
    ($($t:tt)*) => { $crate::log(format_args!($($t)*)) };
}

/// SysTick wraps since [`cycles_start`].
pub static SYSTICK_WRAPS: AtomicU32 = AtomicU32::new(0);

/// Starts SysTick as a free-running counter of the core clock.
pub fn cycles_start(syst: &mut cortex_m::peripheral::SYST) {
    use cortex_m::peripheral::syst::SystClkSource;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(0x00FF_FFFF);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// SysTick ticks since [`cycles_start`] (under `-icount shift=0`, one
/// tick is 40 instructions on this board).
pub fn ticks() -> u64 {
    loop {
        let w = SYSTICK_WRAPS.load(Ordering::Relaxed);
        let cur = cortex_m::peripheral::SYST::get_current();
        if SYSTICK_WRAPS.load(Ordering::Relaxed) == w {
            return w as u64 * 0x0100_0000 + (0x00FF_FFFF - cur) as u64;
        }
    }
}

/// Defines the HardFault and SysTick handlers of a binary: a HardFault
/// stops QEMU with [`semihost::exit::HARD_FAULT`].
#[macro_export]
macro_rules! handlers {
    () => {
        #[cortex_m_rt::exception]
        unsafe fn HardFault(ef: &cortex_m_rt::ExceptionFrame) -> ! {
            $crate::log!("HARDFAULT at pc {:#010x}", ef.pc());
            $crate::semihost::exit($crate::semihost::exit::HARD_FAULT)
        }

        #[cortex_m_rt::exception]
        fn SysTick() {
            $crate::SYSTICK_WRAPS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    log(format_args!("PANIC: {info}"));
    semihost::exit(semihost::exit::PANIC)
}

/// Sends `m` on `uart` as one frame of the update protocol.
pub fn send(uart: &mut uart::Uart, m: &flashpatch::proto::DeviceMsg<'_>) {
    use flashpatch::proto::frame;
    let mut out = [0u8; frame::MAX_DEVICE_FRAME];
    if let Ok(n) = frame::encode(m, &mut out) {
        uart.write(&out[..n]);
    }
}

/// Restarts the device (SYSRESETREQ), once the UART has had time to send
/// what it holds.
pub fn reset() -> ! {
    for _ in 0..20_000 {
        cortex_m::asm::nop();
    }
    cortex_m::peripheral::SCB::sys_reset()
}

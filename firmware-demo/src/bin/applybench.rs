//! The apply alone, counted in Cortex-M4 instructions: applies one patch
//! with `flashpatch::Applier` (as the application does, 64-byte write
//! buffer and read cache) and prints how many instructions each phase
//! took. `cargo xtask bench` runs it for every pair of the corpus and
//! checks the result on the host.
//!
//! It runs on QEMU's mps2-an386 with `-icount shift=0` and semihosting,
//! in a directory that holds three host files:
//!
//! | file | what it is |
//! |---|---|
//! | `src.bin` | the source flash: the running image, exactly |
//! | `dst.bin` | the target flash: room for the new image, rounded up to the 4 KiB erase unit, plus one erase unit of scratch |
//! | `patch.bin` | the patch, one entry, from `src.bin` to the new image |
//!
//! and, when it is there, `image.bin`: the source image's size (u32 LE)
//! and SHA-256, which the bench then vouches for
//! (`Applier::vouch_image`), as the slot manager does with its boot
//! record, and it vouches that the target slot holds no image
//! (`Applier::vouch_target_slot`), as the slot manager does when its boot
//! record names none there, or another image than the target: the entry
//! is selected without hashing the source, the target slot is not read
//! before it is written, and only the total is printed (the phases below
//! are those of an apply without it).
//!
//! It stops QEMU with exit code 0 when the patch was applied (the host
//! then compares `dst.bin` with the new image), 5 if the apply failed, 4
//! if a file is missing.
//!
//! **How instructions are counted.** Under `-icount shift=0` QEMU's
//! virtual clock advances exactly 1 ns per guest instruction, and SysTick,
//! clocked by the 25 MHz core clock, ticks every 40 ns: one tick is 40
//! instructions. The firmware checks that first with a loop of a known
//! number of instructions (the `clock:` line). QEMU does not model DWT
//! CYCCNT (it reads 0) and the CMSDK timers count the same 25 MHz clock,
//! so no timer the guest can read is finer. Each reading is exact to one
//! tick, so a figure is exact to ±40 instructions for each `feed` call it
//! spans (one per 4 KiB of patch): a few ticks in all, far below 0.01
//! instructions per output byte, and what differs from run to run.
//!
//! Semihosting calls (the flash files, the patch file, the console) are
//! host work: the guest executes one `BKPT` for each, so the counts hold
//! no host file I/O. They do hold the guest side of the flash driver,
//! [`FileFlash`]: bounds checks, and on every write the NOR check that no
//! bit is set. What that costs per call is measured separately at the end
//! (the `flash:` figures), and the calls are counted, in all and within
//! the `decode_write` phase, so that the host can tell the applier's share
//! from the emulated flash's. Reading the patch file lies outside the
//! timed `feed` calls.
//!
//! The phases, told apart by the flash accesses that start them:
//!
//! | phase | from | to |
//! |---|---|---|
//! | `source_crc` | the first `feed` | the second read of source offset 0 |
//! | `source_md5` | there | the first read of target offset 0 |
//! | `target_crc` (is the target there already?) | there | the end of the `feed` that completed the entry header |
//! | `decode_write` | there | the return of the write that reaches the image's end |
//! | `sha256` (the read-back) | there | the end of the last `feed` |
#![no_std]
#![no_main]

use core::cell::Cell;

use cortex_m_rt::entry;
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use firmware_demo::flash::FlashError;
use firmware_demo::{log, semihost, FileFlash};
use flashpatch::format::{EntryHeader, CONTAINER_HEADER_LEN};
use flashpatch::{Applier, ApplierState, Outcome};

firmware_demo::handlers!();

/// Instructions per SysTick tick under `-icount shift=0` (1 ns each, a
/// 25 MHz clock).
const TICK: u64 = 40;
/// Patch bytes read from the host file per `feed`.
const CHUNK: usize = 4096;
/// Iterations of the loop that checks [`TICK`].
const SPIN: u32 = 1_000_000;

/// Ticks that passed inside the timed calls only: the apply's own clock,
/// stopped while the bench reads the patch file.
struct ApplyClock {
    spent: Cell<u64>,
    since: Cell<Option<u64>>,
    /// Flash driver calls so far, both flashes: reads, writes, erases.
    calls: Cell<Calls>,
}

/// Calls of the flash driver: reads, writes, erases.
#[derive(Clone, Copy, Default)]
struct Calls([u32; 3]);

impl Calls {
    /// The calls from `self` to `later`.
    fn to(self, later: Calls) -> Calls {
        Calls(core::array::from_fn(|i| later.0[i] - self.0[i]))
    }
}

impl ApplyClock {
    fn now(&self) -> u64 {
        self.spent.get() + self.since.get().map_or(0, |s| firmware_demo::ticks() - s)
    }

    fn run<X>(&self, f: impl FnOnce() -> X) -> X {
        self.since.set(Some(firmware_demo::ticks()));
        let x = f();
        self.spent.set(self.now());
        self.since.set(None);
        x
    }

    /// Counts one call of the flash driver: 0 read, 1 write, 2 erase.
    fn call(&self, kind: usize) {
        let mut c = self.calls.get();
        c.0[kind] += 1;
        self.calls.set(c);
    }
}

/// A [`FileFlash`] that counts its calls on the apply clock and notes
/// there the accesses that start the phases.
struct Probe<'c> {
    flash: FileFlash,
    clock: &'c ApplyClock,
    /// A write that reaches this offset is the image's last.
    end: u32,
    /// When offset 0 was read the first two times: every pass over a
    /// whole image starts there.
    zero_reads: [Option<u64>; 2],
    /// When the image's last write returned, and the driver calls until
    /// then.
    last_write: Option<(u64, Calls)>,
}

impl<'c> Probe<'c> {
    fn new(flash: FileFlash, clock: &'c ApplyClock, end: u32) -> Self {
        Probe {
            flash,
            clock,
            end,
            zero_reads: [None; 2],
            last_write: None,
        }
    }
}

impl ErrorType for Probe<'_> {
    type Error = FlashError;
}

impl ReadNorFlash for Probe<'_> {
    const READ_SIZE: usize = FileFlash::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.clock.call(0);
        if offset == 0 {
            if let Some(slot) = self.zero_reads.iter_mut().find(|t| t.is_none()) {
                *slot = Some(self.clock.now());
            }
        }
        self.flash.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.flash.capacity()
    }
}

impl NorFlash for Probe<'_> {
    const WRITE_SIZE: usize = FileFlash::WRITE_SIZE;
    const ERASE_SIZE: usize = FileFlash::ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        self.clock.call(2);
        self.flash.erase(from, to)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        self.clock.call(1);
        let r = self.flash.write(offset, bytes);
        if offset as usize + bytes.len() >= self.end as usize {
            self.last_write = Some((self.clock.now(), self.clock.calls.get()));
        }
        r
    }
}

/// `SPIN` turns of a two-instruction loop.
fn spin() {
    // SAFETY: a loop on one register, touching neither memory nor stack.
    unsafe {
        core::arch::asm!(
            "1:",
            "subs {0}, {0}, #1",
            "bne 1b",
            inout(reg) SPIN => _,
            options(nomem, nostack)
        );
    }
}

fn fail(what: core::fmt::Arguments<'_>) -> ! {
    log!("applybench: FAILED: {what}");
    semihost::exit(semihost::exit::FAILED)
}

/// Opens a host file as a flash of its length (a first handle, read
/// only, tells the length).
fn open(name: &str) -> FileFlash {
    semihost::open(name, 1)
        .and_then(semihost::flen)
        .and_then(|len| FileFlash::open(name, len))
        .unwrap_or_else(|| {
            log!("applybench: cannot open {name}");
            semihost::exit(semihost::exit::FLASH)
        })
}

/// Instructions per call of the flash driver: (read, 64-byte write,
/// 4 KiB erase), measured on the scratch unit at `at`.
fn driver_costs(f: &mut FileFlash, at: u32) -> Result<(u64, u64, u64), FlashError> {
    const N: u32 = 64;
    let t = firmware_demo::ticks();
    f.erase(at, at + FileFlash::ERASE_SIZE as u32)?;
    let erase = (firmware_demo::ticks() - t) * TICK;
    let t = firmware_demo::ticks();
    for i in 0..N {
        f.write(at + 64 * i, &[0x5A; 64])?;
    }
    let write = (firmware_demo::ticks() - t) * TICK / N as u64;
    let mut buf = [0u8; 64];
    let t = firmware_demo::ticks();
    for i in 0..N {
        f.read(at + 64 * i, &mut buf)?;
    }
    let read = (firmware_demo::ticks() - t) * TICK / N as u64;
    Ok((read, write, erase))
}

#[entry]
fn main() -> ! {
    let mut cp =
        cortex_m::Peripherals::take().unwrap_or_else(|| semihost::exit(semihost::exit::PANIC));
    firmware_demo::cycles_start(&mut cp.SYST);
    // A started SysTick reads 0 until its first reload.
    while cortex_m::peripheral::SYST::get_current() == 0 {}
    let t = firmware_demo::ticks();
    spin();
    log!(
        "applybench: clock: {} loop instructions in {} ticks",
        2 * SPIN,
        firmware_demo::ticks() - t
    );

    let patch = semihost::open("patch.bin", 1).unwrap_or_else(|| {
        log!("applybench: cannot open patch.bin");
        semihost::exit(semihost::exit::FLASH)
    });
    let patch_len = semihost::flen(patch).unwrap_or(0) as usize;
    let mut buf = [0u8; CHUNK];
    let mut n = patch_len.min(CHUNK);
    if !semihost::read(patch, &mut buf[..n]) {
        fail(format_args!("cannot read patch.bin"));
    }
    // The container header, the entry header's length, the entry header.
    let len_at = CONTAINER_HEADER_LEN;
    let header_end = match buf[..n].get(len_at..len_at + 2) {
        Some(h) => len_at + 2 + u16::from_le_bytes([h[0], h[1]]) as usize,
        None => fail(format_args!("patch.bin is too short")),
    };
    let target_size = match buf[..n].get(len_at + 2..header_end).map(EntryHeader::parse) {
        Some(Ok((e, _))) => e.target.size,
        Some(Err(e)) => fail(format_args!("entry header: {e}")),
        None => fail(format_args!("patch.bin is too short")),
    };

    let clock = ApplyClock {
        spent: Cell::new(0),
        since: Cell::new(None),
        calls: Cell::new(Calls::default()),
    };
    let end = target_size.next_multiple_of(FileFlash::WRITE_SIZE as u32);
    let source = Probe::new(open("src.bin"), &clock, u32::MAX);
    let target = Probe::new(open("dst.bin"), &clock, end);
    let scratch = target_size.next_multiple_of(FileFlash::ERASE_SIZE as u32);
    if (scratch as usize + FileFlash::ERASE_SIZE) > target.capacity() {
        fail(format_args!("dst.bin has no scratch unit after the image"));
    }
    let mut mem = ApplierState::new();
    let mut applier: Applier<Probe<'_>, Probe<'_>> = Applier::new(source, target, &mut mem);
    let vouched = semihost::open("image.bin", 1).map(|h| {
        let mut b = [0u8; 36];
        if !semihost::read(h, &mut b) {
            fail(format_args!("cannot read image.bin"));
        }
        let size = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let mut sha = [0u8; 32];
        sha.copy_from_slice(&b[4..]);
        applier.vouch_image(size, sha);
        applier.vouch_target_slot(0, [0; 32]);
    });
    // The headers on their own, so that the source check is one `feed`.
    if let Err(e) = clock.run(|| applier.feed(&buf[..header_end])) {
        fail(format_args!("{e}"));
    }
    let (select_end, select_calls) = (clock.now(), clock.calls.get());
    let (mut from, mut fed) = (header_end, 0);
    loop {
        if let Err(e) = clock.run(|| applier.feed(&buf[from..n])) {
            fail(format_args!("{e}"));
        }
        fed += n;
        if fed == patch_len {
            break;
        }
        n = (patch_len - fed).min(CHUNK);
        if !semihost::read(patch, &mut buf[..n]) {
            fail(format_args!("cannot read patch.bin"));
        }
        from = 0;
    }
    let total = clock.now();
    match applier.finish() {
        Ok(Outcome::Applied) => {}
        Ok(o) => fail(format_args!("{o:?}: nothing was written")),
        Err(e) => fail(format_args!("{e}")),
    }
    let (source, mut target) = applier.into_parts();
    let Ok((read, write, erase)) = driver_costs(&mut target.flash, scratch) else {
        fail(format_args!("the scratch unit of dst.bin failed"))
    };
    // Lines of their own: the console takes 200 bytes a line.
    log!(
        "applybench: applied output={target_size} total={}",
        total * TICK
    );
    if vouched.is_none() {
        let (Some(md5_at), Some(target_crc_at), Some((write_end, write_calls))) = (
            source.zero_reads[1],
            target.zero_reads[0],
            target.last_write,
        ) else {
            fail(format_args!("the phases did not happen as expected"))
        };
        log!(
            "applybench: phases source_crc={} source_md5={} target_crc={} decode_write={} sha256={}",
            md5_at * TICK,
            (target_crc_at - md5_at) * TICK,
            (select_end - target_crc_at) * TICK,
            (write_end - select_end) * TICK,
            (total - write_end) * TICK,
        );
        let Calls([reads, writes, erases]) = select_calls.to(write_calls);
        log!("applybench: decode_write flash reads={reads} writes={writes} erases={erases}");
    }
    let Calls([reads, writes, erases]) = clock.calls.get();
    log!(
        "applybench: flash reads={reads} writes={writes} erases={erases} read_cost={read} write_cost={write} erase_cost={erase}",
    );
    semihost::exit(semihost::exit::OK)
}

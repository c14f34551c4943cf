//! ARM semihosting: the few calls the demo needs (file I/O on the host,
//! console text, exit with a code), each one `BKPT 0xAB` with the
//! operation in r0 and its parameter block in r1.

/// Exit codes QEMU returns, so that a test tells outcomes apart.
pub mod exit {
    /// A test asked the device to stop.
    pub const OK: u32 = 0;
    /// The boot stage found no image it can start.
    pub const NO_IMAGE: u32 = 3;
    /// The flash file cannot be used.
    pub const FLASH: u32 = 4;
    /// The work measured by `applybench` failed.
    pub const FAILED: u32 = 5;
    /// A power cut the host asked for (`crate::flash::arm_cut`).
    pub const POWER_CUT: u32 = 6;
    /// A panic.
    pub const PANIC: u32 = 101;
    /// A HardFault.
    pub const HARD_FAULT: u32 = 102;
}

const SYS_OPEN: u32 = 0x01;
const SYS_WRITE: u32 = 0x05;
const SYS_READ: u32 = 0x06;
const SYS_SEEK: u32 = 0x0A;
const SYS_FLEN: u32 = 0x0C;
const SYS_EXIT_EXTENDED: u32 = 0x20;
const ADP_STOPPED_APPLICATION_EXIT: u32 = 0x20026;

#[inline(always)]
fn call(op: u32, arg: *const u32) -> i32 {
    let r: i32;
    // SAFETY: the semihosting trap reads the parameter block at `arg`,
    // which the callers keep alive for the call.
    unsafe {
        core::arch::asm!("bkpt #0xab", inout("r0") op as i32 => r, in("r1") arg, options(nostack));
    }
    r
}

/// Opens a host file (`mode` as in SYS_OPEN: 3 is "r+b", 4 "w"); a
/// handle, or `None`.
pub fn open(name: &str, mode: u32) -> Option<u32> {
    // SYS_OPEN wants a NUL-terminated name.
    let mut buf = [0u8; 64];
    let n = name.len().min(buf.len() - 1);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    let block = [buf.as_ptr() as u32, mode, n as u32];
    let h = call(SYS_OPEN, block.as_ptr());
    (h >= 0).then_some(h as u32)
}

/// Moves to `pos` in file `h`.
pub fn seek(h: u32, pos: u32) -> bool {
    let block = [h, pos];
    call(SYS_SEEK, block.as_ptr()) == 0
}

/// Length of file `h`.
pub fn flen(h: u32) -> Option<u32> {
    let block = [h];
    let n = call(SYS_FLEN, block.as_ptr());
    (n >= 0).then_some(n as u32)
}

/// Reads exactly `buf.len()` bytes; false if fewer came.
pub fn read(h: u32, buf: &mut [u8]) -> bool {
    let block = [h, buf.as_mut_ptr() as u32, buf.len() as u32];
    call(SYS_READ, block.as_ptr()) == 0
}

/// Writes all of `buf`; false if not.
pub fn write(h: u32, buf: &[u8]) -> bool {
    let block = [h, buf.as_ptr() as u32, buf.len() as u32];
    call(SYS_WRITE, block.as_ptr()) == 0
}

/// Ends QEMU with exit code `code`.
pub fn exit(code: u32) -> ! {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code];
    call(SYS_EXIT_EXTENDED, block.as_ptr());
    // Not under a debugger that exits: stop here.
    cortex_m::asm::udf()
}

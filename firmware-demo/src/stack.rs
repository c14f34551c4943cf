//! Stack high-water marks: the free stack is painted with a pattern, and
//! what is no longer the pattern afterwards was used.

const PAINT: u32 = 0xC5C5_C5C5;

extern "C" {
    static mut __sheap: u32;
    static _stack_start: u32;
}

/// Fills the free stack below the caller's frame with a pattern; returns
/// the caller's stack pointer. Inlined, so that it runs in the caller's
/// frame and what the caller calls next starts right below `sp`.
#[inline(always)]
pub fn paint() -> u32 {
    let sp = cortex_m::register::msp::read();
    // SAFETY: [__sheap, sp - 16) is free stack: nothing lives there now
    // (an interrupt may push onto it, which then counts as used).
    unsafe {
        let mut p = core::ptr::addr_of_mut!(__sheap);
        while (p as u32) < sp - 16 {
            p.write_volatile(PAINT);
            p = p.add(1);
        }
    }
    sp
}

/// Bytes of stack used below `from` since [`paint`].
pub fn used_below(from: u32) -> u32 {
    // SAFETY: reads the painted region back.
    unsafe {
        let mut p = core::ptr::addr_of_mut!(__sheap) as *const u32;
        while (p as u32) < from && p.read_volatile() == PAINT {
            p = p.add(1);
        }
        from - p as u32
    }
}

/// Bytes of stack used since [`paint`] returned `from`, counted from the
/// top of the stack: what the frames above `from` hold as well.
pub fn used_in_all(from: u32) -> u32 {
    let top = core::ptr::addr_of!(_stack_start) as u32;
    used_below(from) + top.saturating_sub(from)
}

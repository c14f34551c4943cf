//! The CMSDK UART of mps2-an386 (UART0 at 0x4000_4000), polled.

const BASE: usize = 0x4000_4000;
const DATA: *mut u32 = BASE as *mut u32;
const STATE: *mut u32 = (BASE + 0x04) as *mut u32;
const CTRL: *mut u32 = (BASE + 0x08) as *mut u32;
const BAUDDIV: *mut u32 = (BASE + 0x10) as *mut u32;

const TX_FULL: u32 = 1;
const RX_FULL: u32 = 2;

/// UART0.
pub struct Uart(());

impl Uart {
    /// Enables transmit and receive. Reads DATA once: QEMU's model
    /// otherwise holds the first received byte back for about a second.
    pub fn new() -> Uart {
        // SAFETY: the UART registers are at these addresses on this board,
        // and only this driver touches them.
        unsafe {
            BAUDDIV.write_volatile(16);
            CTRL.write_volatile(0b11);
            let _ = DATA.read_volatile();
        }
        Uart(())
    }

    /// Sends `bytes`, waiting while the transmitter is full.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: as in `new`.
            unsafe {
                while STATE.read_volatile() & TX_FULL != 0 {}
                DATA.write_volatile(b as u32);
            }
        }
    }

    /// A received byte, if one is there.
    pub fn read(&mut self) -> Option<u8> {
        // SAFETY: as in `new`.
        unsafe { (STATE.read_volatile() & RX_FULL != 0).then(|| DATA.read_volatile() as u8) }
    }
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

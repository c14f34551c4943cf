//! The nRF51's UART0 (`nrf51-pac`), polled: 115200 baud on the
//! micro:bit's USB-serial pins (TX P0.24, RX P0.25).

/// UART0.
pub struct Uart(nrf51_pac::UART0);

impl Uart {
    /// Enables the UART and starts its transmitter and receiver.
    pub fn new() -> Uart {
        // SAFETY: only this driver touches UART0, and it is made once.
        let u = unsafe { nrf51_pac::Peripherals::steal() }.UART0;
        // SAFETY: pin numbers and the baud rate value are valid.
        unsafe {
            u.pseltxd.write(|w| w.bits(24));
            u.pselrxd.write(|w| w.bits(25));
        }
        u.baudrate.write(|w| w.baudrate().baud115200());
        u.enable.write(|w| w.enable().enabled());
        u.events_rxdrdy.reset();
        // SAFETY: triggering a task is writing 1.
        u.tasks_starttx.write(|w| unsafe { w.bits(1) });
        u.tasks_startrx.write(|w| unsafe { w.bits(1) });
        Uart(u)
    }

    /// Sends `bytes`, waiting for each to leave.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0.events_txdrdy.reset();
            // SAFETY: any byte is a valid TXD value.
            self.0.txd.write(|w| unsafe { w.bits(b as u32) });
            while self.0.events_txdrdy.read().bits() == 0 {}
        }
    }

    /// A received byte, if one is there.
    pub fn read(&mut self) -> Option<u8> {
        if self.0.events_rxdrdy.read().bits() == 0 {
            return None;
        }
        self.0.events_rxdrdy.reset();
        Some(self.0.rxd.read().bits() as u8)
    }
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

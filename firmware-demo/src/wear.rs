//! Flash wear as a driver counts it: the erase units it erased and the
//! writes (program operations) it made, with the bytes they programmed.
//! Both boards' drivers keep one ([`crate::MappedFlash::wear`],
//! `firmware_microbit::Nvmc::wear`); the applications log the difference
//! over an install and over the storing of a patch, in the form `Display`
//! gives (`erases=E writes=W written=B`), which the host parses.

use core::fmt;

/// Counts since the driver was made; they wrap at `u32::MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wear {
    /// Erase units erased.
    pub erases: u32,
    /// Write calls that programmed the flash.
    pub writes: u32,
    /// Bytes those writes programmed.
    pub written: u32,
}

impl Wear {
    /// Nothing erased or written.
    pub const NONE: Wear = Wear {
        erases: 0,
        writes: 0,
        written: 0,
    };

    /// Counts an erase of `units` erase units.
    pub fn erased(&mut self, units: u32) {
        self.erases = self.erases.wrapping_add(units);
    }

    /// Counts one write of `bytes` bytes.
    pub fn wrote(&mut self, bytes: usize) {
        self.writes = self.writes.wrapping_add(1);
        self.written = self.written.wrapping_add(bytes as u32);
    }

    /// What was counted after `earlier` (an earlier reading of the same
    /// driver).
    pub fn since(self, earlier: Wear) -> Wear {
        Wear {
            erases: self.erases.wrapping_sub(earlier.erases),
            writes: self.writes.wrapping_sub(earlier.writes),
            written: self.written.wrapping_sub(earlier.written),
        }
    }
}

impl fmt::Display for Wear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "erases={} writes={} written={}",
            self.erases, self.writes, self.written
        )
    }
}

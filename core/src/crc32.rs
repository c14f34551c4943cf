//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), the checksum of
//! zlib, PNG and Ethernet.
//!
//! On a device: the `crc` crate's CRC-32 (`CRC_32_ISO_HDLC`), with one
//! 256-entry table (1 KiB of flash).
//! With the feature `fast-crc` (host tools; needs `std`) the work goes to
//! `crc32fast`, which uses the CPU's carry-less multiply: the same values,
//! ten times faster.
//!
//! ```
//! use flashpatch::crc32::{crc32, Crc32};
//!
//! assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
//! // In pieces, as a patch arrives, and resumed from a saved register:
//! let mut c = Crc32::new();
//! c.update(b"1234");
//! let mut c = Crc32::from_register(c.register());
//! c.update(b"56789");
//! assert_eq!(c.value(), 0xCBF4_3926);
//! ```

/// The `crc` crate's CRC-32 with its one 256-entry table (1 KiB of
/// flash), a byte a time. `docs/CODEC.md` has the three table variants
/// measured on a Cortex-M4 (code, table, instructions per byte).
#[cfg(not(feature = "fast-crc"))]
static CRC: crc::Crc<u32, crc::Table<1>> =
    crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);

/// A running CRC-32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// A CRC over no bytes yet.
    pub const fn new() -> Self {
        Crc32(!0)
    }

    /// Adds `bytes` to the checksum.
    pub fn update(&mut self, bytes: &[u8]) {
        #[cfg(feature = "fast-crc")]
        {
            let mut h = crc32fast::Hasher::new_with_initial(!self.0);
            h.update(bytes);
            self.0 = !h.finalize();
        }
        #[cfg(not(feature = "fast-crc"))]
        {
            // The crate keeps the register of a reflected CRC as it is
            // here and takes a starting value bit-reversed; its result is
            // the register inverted (CRC-32's final XOR).
            let mut d = CRC.digest_with_initial(self.0.reverse_bits());
            d.update(bytes);
            self.0 = !d.finalize();
        }
    }

    /// The running register, to be saved and given back to
    /// [`Crc32::from_register`] (for resuming a checksum after a reset).
    pub const fn register(&self) -> u32 {
        self.0
    }

    /// The running register, in place (for saved state).
    pub(crate) const fn register_mut(&mut self) -> &mut u32 {
        &mut self.0
    }

    /// A running CRC with the register [`Crc32::register`] returned.
    pub const fn from_register(r: u32) -> Self {
        Crc32(r)
    }

    /// The checksum of everything added so far.
    pub const fn value(&self) -> u32 {
        !self.0
    }
}

/// CRC-32 of `bytes` in one call.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(bytes);
    c.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLY: u32 = 0xEDB8_8320;

    /// The bit-at-a-time definition.
    fn reference(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn every_length_and_split_matches_the_definition() {
        let data: [u8; 70] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        for len in 0..data.len() {
            for cut in 0..=len.min(9) {
                let mut c = Crc32::new();
                c.update(&data[..cut]);
                c.update(&data[cut..len]);
                assert_eq!(c.value(), reference(&data[..len]), "{len} {cut}");
            }
        }
    }

    #[test]
    fn check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let mut c = Crc32::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.value(), 0xCBF4_3926);
    }

    #[test]
    fn any_split_gives_the_same_crc() {
        let data: [u8; 61] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        let whole = crc32(&data);
        for cut in 0..data.len() {
            let mut c = Crc32::new();
            c.update(&data[..cut]);
            c.update(&data[cut..]);
            assert_eq!(c.value(), whole, "cut at {cut}");
        }
        // Against the bitwise definition.
        let mut slow = !0u32;
        for &b in &data {
            slow ^= b as u32;
            for _ in 0..8 {
                slow = if slow & 1 != 0 {
                    (slow >> 1) ^ POLY
                } else {
                    slow >> 1
                };
            }
        }
        assert_eq!(whole, !slow);
    }
}

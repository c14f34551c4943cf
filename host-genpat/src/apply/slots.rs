//! The two flash slots of host-side apply, in memory.
//!
//! The source slot holds the old image and can only be read: it has no
//! write or erase at all. The target slot is a NOR flash with the rules of
//! core's test flash (`flashpatch::mock::MockFlash`) that matter to the
//! applier (erase sets whole erase units to `0xFF`, writes are aligned and
//! program each write unit at most once between erases, nothing outside
//! the slot is reached, each refusal a [`SlotError`]), built for speed
//! rather than for power cuts: an erase only marks its
//! units blank, and a blank unit is filled with `0xFF` when it is first
//! written, so the target costs one pass of memory traffic per byte the
//! applier writes and nothing for the rest.
//!
//! | slot | capacity | reads | writes, erases |
//! |---|---|---|---|
//! | [`SourceSlot`] | the image, rounded up to whole erase units | the image, then `0xFF` (erased flash) | none |
//! | [`TargetSlot`] | as asked, rounded up to whole erase units | blank units read `0xFF` | 4-byte units, once per erase; 4 KiB erase units |

use core::ops::Range;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Bytes of a write unit.
pub const WRITE: usize = 4;
/// Bytes of an erase unit.
pub const ERASE: usize = 4096;

/// The capacity of a slot for `size` bytes: whole erase units, at least one.
pub fn slot_len(size: usize) -> usize {
    size.div_ceil(ERASE).max(1) * ERASE
}

/// What a slot refuses. The slots are genpat's own flash, so that the
/// tool does not build core's test flash (feature `mock`) in; these are
/// the mock's errors that can happen to them, under the same names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotError {
    /// The access reaches outside the slot.
    OutOfBounds,
    /// The access is not aligned.
    NotAligned,
    /// A write unit was written twice without an erase.
    WriteTwice {
        /// The first offending write unit.
        offset: u32,
    },
}

impl NorFlashError for SlotError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SlotError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            SlotError::NotAligned => NorFlashErrorKind::NotAligned,
            SlotError::WriteTwice { .. } => NorFlashErrorKind::Other,
        }
    }
}

/// Checks an access of `len` bytes at `offset` against `capacity` and the
/// alignment `align`; the byte range it covers.
fn range(
    offset: u32,
    len: usize,
    align: usize,
    capacity: usize,
) -> Result<Range<usize>, SlotError> {
    let start = offset as usize;
    if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
        return Err(SlotError::NotAligned);
    }
    match start.checked_add(len) {
        Some(end) if end <= capacity => Ok(start..end),
        _ => Err(SlotError::OutOfBounds),
    }
}

/// The source slot: the old image, read only, erased after its end.
#[derive(Debug)]
pub struct SourceSlot<'a> {
    image: &'a [u8],
    capacity: usize,
}

impl<'a> SourceSlot<'a> {
    /// A slot holding `image`, read in place.
    pub fn new(image: &'a [u8]) -> Self {
        let capacity = slot_len(image.len());
        SourceSlot { image, capacity }
    }

    /// The first `len` bytes of the slot (`len` ≤ its capacity), as the
    /// applier reads them: the image, then `0xFF`.
    pub fn prefix(&self, len: usize) -> Vec<u8> {
        let mut v = self.image[..len.min(self.image.len())].to_vec();
        v.resize(len, 0xFF);
        v
    }

    /// Hands the bytes of [`SourceSlot::prefix`]`(len)` to `f`, in pieces,
    /// without the copy.
    pub fn prefix_pieces(&self, len: usize, mut f: impl FnMut(&[u8])) {
        f(&self.image[..len.min(self.image.len())]);
        for _ in self.image.len()..len {
            f(&[0xFF]);
        }
    }

    /// CRC-32 of [`SourceSlot::prefix`]`(len)`, without the copy.
    pub fn prefix_crc32(&self, len: usize) -> u32 {
        let mut crc = flashpatch::crc32::Crc32::new();
        self.prefix_pieces(len, |b| crc.update(b));
        crc.value()
    }

    /// MD5 of [`SourceSlot::prefix`]`(len)`, without the copy.
    pub fn prefix_md5(&self, len: usize) -> [u8; 16] {
        use md5::Digest as _;
        let mut md5 = md5::Md5::new();
        self.prefix_pieces(len, |b| md5.update(b));
        md5.finalize().into()
    }
}

impl ErrorType for SourceSlot<'_> {
    type Error = SlotError;
}

impl ReadNorFlash for SourceSlot<'_> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SlotError> {
        let r = range(offset, bytes.len(), 1, self.capacity)?;
        match self.image.get(r.clone()) {
            Some(image) => bytes.copy_from_slice(image),
            None => {
                let tail = self.image.get(r.start..).unwrap_or_default();
                let have = tail.len();
                bytes[..have].copy_from_slice(tail);
                bytes[have..].fill(0xFF);
            }
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

/// What an erase unit of a [`TargetSlot`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    /// Erased, and its memory holds `0xFF`.
    Clean,
    /// Erased, but its memory is stale: it reads `0xFF`, and is filled
    /// with `0xFF` before its first write.
    Stale,
    /// Written since its last erase: its memory holds it.
    Live,
}

/// The target slot: an erased NOR flash whose erase units are filled in
/// when they are first written.
#[derive(Debug)]
pub struct TargetSlot {
    /// The contents of the units that are not stale.
    bytes: Vec<u8>,
    capacity: usize,
    units: Vec<Unit>,
    /// One bit per write unit: programmed since its last erase.
    written: Vec<u64>,
}

/// The words of a bit set that hold bits `r`, each with the mask of those
/// bits.
fn bit_words(r: Range<usize>) -> impl Iterator<Item = (usize, u64)> {
    (r.start / 64..r.end.div_ceil(64)).map(move |w| {
        let lo = r.start.max(w * 64) - w * 64;
        let hi = r.end.min(w * 64 + 64) - w * 64;
        let ones = if hi - lo == 64 {
            !0
        } else {
            (1u64 << (hi - lo)) - 1
        };
        (w, ones << lo)
    })
}

impl TargetSlot {
    /// An erased slot of `size` bytes, rounded up to whole erase units (at
    /// least one). Its memory is not touched until it is written.
    pub fn new(size: usize) -> Self {
        let capacity = slot_len(size);
        TargetSlot {
            // Zeroed allocations come from the OS untouched: no pass over
            // memory that may never be written.
            bytes: vec![0; capacity],
            capacity,
            units: vec![Unit::Stale; capacity / ERASE],
            written: vec![0; (capacity / WRITE).div_ceil(64)],
        }
    }

    /// As [`TargetSlot::new`], or None when the memory for it cannot be had
    /// now (a hostile header that claims a huge target): checked with a
    /// fallible reservation, so that genpat reports it instead of aborting.
    pub fn try_new(size: usize) -> Option<Self> {
        let capacity = slot_len(size);
        let mut probe = Vec::<u8>::new();
        // Reserved, never touched, and given back before the zeroed one.
        probe.try_reserve_exact(capacity).ok()?;
        drop(probe);
        Some(Self::new(size))
    }

    /// Erases the whole slot again, in place: as a fresh slot of the same
    /// size, without a second allocation.
    pub fn erase_all(&mut self) {
        self.units.fill(Unit::Stale);
        self.written.fill(0);
    }

    /// The first `len` bytes of the slot (`len` ≤ its capacity).
    pub fn into_image(mut self, len: usize) -> Vec<u8> {
        for u in 0..len.div_ceil(ERASE) {
            self.fill_stale(u);
        }
        self.bytes.truncate(len);
        self.bytes
    }

    /// Gives erase unit `u` its erased contents in memory if they are stale.
    fn fill_stale(&mut self, u: usize) {
        if self.units[u] == Unit::Stale {
            self.bytes[u * ERASE..(u + 1) * ERASE].fill(0xFF);
            self.units[u] = Unit::Clean;
        }
    }
}

impl ErrorType for TargetSlot {
    type Error = SlotError;
}

impl ReadNorFlash for TargetSlot {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SlotError> {
        let r = range(offset, bytes.len(), 1, self.capacity)?;
        let mut at = r.start;
        for out in bytes.chunks_mut(ERASE) {
            // A piece may straddle two erase units: split it there.
            let split = (ERASE - at % ERASE).min(out.len());
            for (piece, from) in [(0..split, at), (split..out.len(), at + split)] {
                let dst = &mut out[piece];
                if dst.is_empty() {
                    continue;
                }
                if self.units[from / ERASE] == Unit::Stale {
                    dst.fill(0xFF);
                } else {
                    dst.copy_from_slice(&self.bytes[from..from + dst.len()]);
                }
            }
            at += out.len();
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

impl NorFlash for TargetSlot {
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SlotError> {
        let len = to.checked_sub(from).ok_or(SlotError::OutOfBounds)? as usize;
        let r = range(from, len, ERASE, self.capacity)?;
        for u in &mut self.units[r.start / ERASE..r.end / ERASE] {
            if *u == Unit::Live {
                *u = Unit::Stale;
            }
        }
        for (w, m) in bit_words(r.start / WRITE..r.end / WRITE) {
            self.written[w] &= !m;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SlotError> {
        let r = range(offset, bytes.len(), WRITE, self.capacity)?;
        self.claim(r.start / WRITE..r.end / WRITE)?;
        // Every write unit in range is unwritten since its erase, so it
        // holds 0xFF once its erase unit is filled in: the write clears
        // bits only, and needs no check for setting any.
        for u in r.start / ERASE..r.end.div_ceil(ERASE) {
            self.fill_stale(u);
            self.units[u] = Unit::Live;
        }
        self.bytes[r].copy_from_slice(bytes);
        Ok(())
    }
}

impl TargetSlot {
    /// Marks write units `units` as programmed, unless one already is.
    #[inline]
    fn claim(&mut self, units: Range<usize>) -> Result<(), SlotError> {
        let (w, n) = (units.start / 64, units.len());
        let taken = if n > 0 && (units.end - 1) / 64 == w {
            // Within one word of the bit set: the usual write of a few
            // dozen bytes.
            let m = (u64::MAX >> (64 - n)) << (units.start % 64);
            let taken = self.written[w] & m;
            if taken == 0 {
                self.written[w] |= m;
            }
            taken
        } else {
            let taken = bit_words(units.clone()).fold(0, |a, (w, m)| a | self.written[w] & m);
            if taken == 0 {
                for (w, m) in bit_words(units.clone()) {
                    self.written[w] |= m;
                }
            }
            taken
        };
        if taken == 0 {
            return Ok(());
        }
        // Nothing was marked: find the first unit written before.
        let (w, m) = bit_words(units)
            .find(|&(w, m)| self.written[w] & m != 0)
            .unwrap_or_default();
        let first = w * 64 + (self.written[w] & m).trailing_zeros() as usize;
        Err(SlotError::WriteTwice {
            offset: (first * WRITE) as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_reads_the_image_then_erased_bytes_and_nothing_beyond() {
        let mut s = SourceSlot::new(&[1, 2, 3]);
        assert_eq!(s.capacity(), ERASE);
        let mut b = [0u8; 5];
        s.read(1, &mut b).unwrap();
        assert_eq!(b, [2, 3, 0xFF, 0xFF, 0xFF]);
        s.read(ERASE as u32 - 5, &mut b).unwrap();
        assert_eq!(b, [0xFF; 5]);
        assert_eq!(
            s.read(ERASE as u32 - 4, &mut b),
            Err(SlotError::OutOfBounds)
        );
        assert_eq!(s.prefix(5), [1, 2, 3, 0xFF, 0xFF]);
    }

    #[test]
    fn target_keeps_nor_rules() {
        let mut t = TargetSlot::new(2 * ERASE + 1);
        assert_eq!(t.capacity(), 3 * ERASE);
        // Erasing an erased unit before anything is written.
        t.erase(0, ERASE as u32).unwrap();
        let mut b = [0u8; 8];
        t.read(ERASE as u32 - 4, &mut b).unwrap();
        assert_eq!(b, [0xFF; 8], "a fresh slot is erased");
        t.write(ERASE as u32 - 4, &[1, 2, 3, 4, 5, 6, 7, 8])
            .unwrap();
        t.read(ERASE as u32 - 4, &mut b).unwrap();
        assert_eq!(
            b,
            [1, 2, 3, 4, 5, 6, 7, 8],
            "a write across two erase units"
        );
        assert_eq!(
            t.write(ERASE as u32, &[0; 4]),
            Err(SlotError::WriteTwice {
                offset: ERASE as u32
            })
        );
        assert_eq!(t.write(2, &[0; 4]), Err(SlotError::NotAligned));
        assert_eq!(t.write(0, &[0; 3]), Err(SlotError::NotAligned));
        assert_eq!(
            t.write(3 * ERASE as u32, &[0; 4]),
            Err(SlotError::OutOfBounds)
        );
        assert_eq!(t.erase(0, 100), Err(SlotError::NotAligned));
        assert_eq!(t.erase(ERASE as u32, 0), Err(SlotError::OutOfBounds));
        assert_eq!(t.erase(0, 4 * ERASE as u32), Err(SlotError::OutOfBounds));
        // Erasing the second unit frees its write units and blanks it; the
        // first keeps what was written.
        t.erase(ERASE as u32, 2 * ERASE as u32).unwrap();
        t.read(ERASE as u32 - 4, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF]);
        t.write(ERASE as u32, &[9; 4]).unwrap();
        assert_eq!(
            t.write(ERASE as u32 - 4, &[0; 4]),
            Err(SlotError::WriteTwice {
                offset: ERASE as u32 - 4
            })
        );
        // A write unit deep inside a long write is found as the first
        // written one.
        t.write(3000, &[0; 4]).unwrap();
        assert_eq!(
            t.write(256, &[0; 4000]),
            Err(SlotError::WriteTwice { offset: 3000 })
        );
        let image = t.into_image(ERASE + 8);
        assert_eq!(
            &image[ERASE - 4..],
            [1, 2, 3, 4, 9, 9, 9, 9, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(image[3000..3004], [0; 4]);
        assert!(image[..3000].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn a_refused_write_changes_nothing() {
        let mut t = TargetSlot::new(ERASE);
        // Within one word of the bit set, then across two.
        for (at, len, taken) in [(0, 8, 4), (248, 16, 256)] {
            t.write(taken, &[1; 4]).unwrap();
            assert_eq!(
                t.write(at, &vec![2; len]),
                Err(SlotError::WriteTwice { offset: taken })
            );
            t.write(at, &[3; 4]).unwrap();
            let mut b = [0u8; 4];
            t.read(taken, &mut b).unwrap();
            assert_eq!(b, [1; 4]);
        }
    }

    #[test]
    fn bit_words_cover_exactly_the_range() {
        for (s, e) in [
            (0, 0),
            (5, 5),
            (0, 64),
            (3, 70),
            (64, 128),
            (10, 200),
            (63, 65),
        ] {
            let mut bits = [0u64; 4];
            for (w, m) in bit_words(s..e) {
                bits[w] |= m;
            }
            for i in 0..256 {
                assert_eq!(
                    bits[i / 64] >> (i % 64) & 1 == 1,
                    (s..e).contains(&i),
                    "{s}..{e}: bit {i}"
                );
            }
        }
    }

    #[test]
    fn a_target_slot_too_large_to_have_is_none_not_an_abort() {
        assert!(TargetSlot::try_new(usize::MAX / 2).is_none());
        assert_eq!(TargetSlot::try_new(10).unwrap().capacity(), ERASE);
    }

    #[test]
    fn erase_all_makes_the_slot_as_new() {
        let mut t = TargetSlot::new(ERASE);
        t.write(0, &[1; WRITE]).unwrap();
        t.erase_all();
        t.write(0, &[2; WRITE]).unwrap();
        let mut b = [0u8; WRITE + 1];
        t.read(0, &mut b).unwrap();
        assert_eq!(b[..WRITE], [2; WRITE]);
        assert_eq!(b[WRITE], 0xFF);
    }
}

//! An in-memory NOR flash for tests, host-side apply and fuzzing (feature
//! `mock`, needs `alloc`).
//!
//! It keeps NOR semantics strictly, so that code that works on it does not
//! rely on anything a real chip would not give: erase sets whole erase units
//! to the erased value `ERASED` (`0xFF` by default, `0x00` as on flash that
//! erases to zeros); a write may only move bits away from it (clear them on
//! `0xFF` flash, set them on `0x00` flash), must be aligned to `WRITE`
//! bytes, and each write unit may be written once between erases (as on
//! flash with ECC; [`MockFlash::multiwrite`] allows writing a unit again,
//! as flash without ECC does). It counts every operation.
//!
//! It can also lose power. [`MockFlash::cut_at`] arms a countdown over the
//! flash-changing operations (`write` and `erase` calls); the operation it
//! reaches is cut in one of three ways ([`Cut`]):
//!
//! | cut | what the flash holds afterwards |
//! |---|---|
//! | [`Cut::Before`] | nothing of the operation |
//! | [`Cut::MidWrite`] | a prefix of whole write units written, the write unit in progress with a random subset of its bit transitions done (away from the erased value: 1→0 on `0xFF` flash, 0→1 on `0x00` flash), the rest untouched |
//! | [`Cut::MidErase`] | the erase units before the one in progress erased, that one with random bytes (neither erased nor intact), the rest untouched |
//!
//! A `MidWrite` cut armed at an erase (or `MidErase` at a write) waits for
//! the next write (erase). The write unit torn by a `MidWrite` counts as
//! written: writing it again before an erase is refused, as on flash with
//! ECC. From the cut on, every operation, reads included, fails with
//! [`MockError::PowerLost`] until [`MockFlash::reboot`]: the test then
//! builds fresh instances of everything over the same bytes, as a device
//! does after a reset.

extern crate alloc;

mod asynch;
pub use asynch::Yielding;

use alloc::vec;
use alloc::vec::Vec;
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Operation counters of a [`MockFlash`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `read` calls.
    pub reads: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// `write` calls.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Erase units erased.
    pub erases: u64,
}

/// How power is lost in the middle of an operation (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cut {
    /// Just before the operation: it has no effect.
    Before,
    /// In the middle of a write: a prefix written, one write unit torn.
    MidWrite,
    /// In the middle of an erase: one erase unit left with random bytes.
    MidErase,
}

impl Cut {
    /// The three kinds.
    pub const ALL: [Cut; 3] = [Cut::Before, Cut::MidWrite, Cut::MidErase];
}

/// An armed power cut.
#[derive(Clone, Copy, Debug)]
struct Armed {
    /// Flash-changing operations still allowed before the cut.
    countdown: u64,
    kind: Cut,
}

/// Errors of a [`MockFlash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MockError {
    /// The access reaches outside the flash.
    OutOfBounds,
    /// The access is not aligned.
    NotAligned,
    /// A write would move a bit back to its erased value (0 to 1 on `0xFF`
    /// flash, 1 to 0 on `0x00` flash) without an erase.
    SetsBits {
        /// The first offending byte.
        offset: u32,
    },
    /// A write unit was written twice without an erase.
    WriteTwice {
        /// The first offending write unit.
        offset: u32,
    },
    /// Power was cut (see [`MockFlash::cut_at`]); nothing works until
    /// [`MockFlash::reboot`].
    PowerLost,
}

impl NorFlashError for MockError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            MockError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            MockError::NotAligned => NorFlashErrorKind::NotAligned,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// A NOR flash in RAM with `READ`, `WRITE` and `ERASE` byte granularity
/// whose erased bytes read `ERASED` (`0xFF` or `0x00`).
#[derive(Clone, Debug)]
pub struct MockFlash<
    const READ: usize = 1,
    const WRITE: usize = 4,
    const ERASE: usize = 4096,
    const ERASED: u8 = 0xFF,
> {
    bytes: Vec<u8>,
    written: Vec<bool>,
    /// What has been done to the flash so far.
    pub stats: Stats,
    /// Flash-changing operations (`write` and `erase` calls that passed
    /// their checks) so far, including a cut one.
    pub ops: u64,
    /// When `Some`, every flash-changing operation (a cut one included) is
    /// appended: `true` for a write, `false` for an erase.
    pub op_trace: Option<Vec<bool>>,
    /// When `Some`, the start of every erase unit erased (or torn) is
    /// appended, in order.
    pub erase_log: Option<Vec<u32>>,
    /// A write unit may be written again before an erase, as long as the
    /// write only moves bits away from the erased value (flash without
    /// ECC, such as nRF52's; `false`, the default, is flash with ECC,
    /// such as STM32L4's, which refuses a second program).
    pub multiwrite: bool,
    armed: Option<Armed>,
    dead: bool,
    rng: Rng,
}

impl<const READ: usize, const WRITE: usize, const ERASE: usize, const ERASED: u8>
    MockFlash<READ, WRITE, ERASE, ERASED>
{
    const CHECK: () = assert!(
        READ > 0
            && WRITE > 0
            && ERASE.is_multiple_of(WRITE)
            && ERASE.is_multiple_of(READ)
            && (ERASED == 0xFF || ERASED == 0x00)
    );

    /// What an erased byte reads.
    pub const ERASED: u8 = ERASED;

    /// An erased flash of `size` bytes, rounded up to whole erase units.
    pub fn new(size: usize) -> Self {
        let () = Self::CHECK;
        let size = size.div_ceil(ERASE) * ERASE;
        MockFlash {
            bytes: vec![ERASED; size],
            written: vec![false; size / WRITE],
            stats: Stats::default(),
            ops: 0,
            erase_log: None,
            op_trace: None,
            multiwrite: false,
            armed: None,
            dead: false,
            rng: Rng(0x5EED),
        }
    }

    /// A flash of `size` bytes (rounded up to whole erase units) that holds
    /// `image` at offset 0, programmed, and is erased after it. It takes
    /// `image`'s buffer rather than copying it.
    pub fn with_image(mut image: Vec<u8>, size: usize) -> Self {
        let () = Self::CHECK;
        let size = size.max(image.len()).div_ceil(ERASE) * ERASE;
        let programmed = image.len().div_ceil(WRITE);
        image.resize(size, ERASED);
        let mut written = vec![false; size / WRITE];
        written[..programmed].fill(true);
        MockFlash {
            bytes: image,
            written,
            stats: Stats::default(),
            ops: 0,
            armed: None,
            dead: false,
            rng: Rng(0x5EED),
            erase_log: None,
            op_trace: None,
            multiwrite: false,
        }
    }

    /// Arms a power cut: the `n`-th flash-changing operation from now
    /// (0: the next one) is cut as `kind` says; `seed` drives the random
    /// bits a torn operation leaves. Replaces any cut already armed.
    pub fn cut_at(&mut self, n: u64, kind: Cut, seed: u64) {
        self.armed = Some(Armed { countdown: n, kind });
        self.rng = Rng(seed);
    }

    /// Disarms a pending cut.
    pub fn disarm(&mut self) {
        self.armed = None;
    }

    /// Whether power has been cut (and not yet restored by a reboot).
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Power comes back: operations work again, any pending cut is
    /// disarmed. The bytes are what the cut left.
    pub fn reboot(&mut self) {
        self.dead = false;
        self.armed = None;
    }

    /// Whether the operation about to run (a write if `write`) is cut,
    /// and how; counts it.
    fn due(&mut self, write: bool) -> Option<Cut> {
        self.ops += 1;
        if let Some(t) = &mut self.op_trace {
            t.push(write);
        }
        let a = self.armed.as_mut()?;
        if a.countdown > 0 {
            a.countdown -= 1;
            return None;
        }
        let fits = match a.kind {
            Cut::Before => true,
            Cut::MidWrite => write,
            Cut::MidErase => !write,
        };
        if !fits {
            return None;
        }
        let kind = a.kind;
        self.armed = None;
        self.dead = true;
        Some(kind)
    }

    /// The whole contents.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The whole contents, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Puts `data` at `offset` as if it had been programmed there before
    /// (for setting up a source image); the range is marked as written.
    pub fn preload(&mut self, offset: usize, data: &[u8]) {
        self.bytes[offset..offset + data.len()].copy_from_slice(data);
        let first = offset / WRITE;
        let last = (offset + data.len()).div_ceil(WRITE);
        self.written[first..last].iter_mut().for_each(|w| *w = true);
    }

    fn range(
        &self,
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<core::ops::Range<usize>, MockError> {
        let start = offset as usize;
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(MockError::NotAligned);
        }
        match start.checked_add(len) {
            Some(end) if end <= self.bytes.len() => Ok(start..end),
            _ => Err(MockError::OutOfBounds),
        }
    }
}

impl<const R: usize, const W: usize, const E: usize, const X: u8> ErrorType
    for MockFlash<R, W, E, X>
{
    type Error = MockError;
}

impl<const R: usize, const W: usize, const E: usize, const X: u8> ReadNorFlash
    for MockFlash<R, W, E, X>
{
    const READ_SIZE: usize = R;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), MockError> {
        if self.dead {
            return Err(MockError::PowerLost);
        }
        let r = self.range(offset, bytes.len(), R)?;
        bytes.copy_from_slice(&self.bytes[r]);
        self.stats.reads += 1;
        self.stats.bytes_read += bytes.len() as u64;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.bytes.len()
    }
}

impl<const R: usize, const W: usize, const E: usize, const X: u8> NorFlash
    for MockFlash<R, W, E, X>
{
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), MockError> {
        if self.dead {
            return Err(MockError::PowerLost);
        }
        let len = (to as usize)
            .checked_sub(from as usize)
            .ok_or(MockError::OutOfBounds)?;
        let r = self.range(from, len, E)?;
        if let Some(log) = &mut self.erase_log {
            log.extend((r.start..r.end).step_by(E).map(|u| u as u32));
        }
        match self.due(false) {
            None => {}
            Some(Cut::MidErase) if len > 0 => {
                // Units before the torn one are erased, the torn one holds
                // random bytes, the rest is untouched.
                let torn = self.rng.below(len / E);
                let start = r.start + torn * E;
                self.written[r.start / W..(start + E) / W].fill(false);
                self.bytes[r.start..start].fill(X);
                for b in &mut self.bytes[start..start + E] {
                    *b = self.rng.next_u64() as u8;
                }
                self.stats.erases += torn as u64;
                return Err(MockError::PowerLost);
            }
            Some(_) => return Err(MockError::PowerLost),
        }
        self.written[r.start / W..r.end / W]
            .iter_mut()
            .for_each(|w| *w = false);
        self.bytes[r].iter_mut().for_each(|b| *b = X);
        self.stats.erases += (len / E) as u64;
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), MockError> {
        if self.dead {
            return Err(MockError::PowerLost);
        }
        let r = self.range(offset, bytes.len(), W)?;
        let units = r.start / W..r.end / W;
        // Folds rather than early exits: they vectorise, and errors are rare.
        if !self.multiwrite
            && self.written[units.clone()]
                .iter()
                .fold(false, |a, &w| a | w)
        {
            let i = units
                .clone()
                .find(|&i| self.written[i])
                .unwrap_or(units.start);
            return Err(MockError::WriteTwice {
                offset: (i * W) as u32,
            });
        }
        // Bits a write would move back to the erased value: on 0xFF flash
        // a 1 where the flash holds a 0, on 0x00 flash the reverse. With
        // `x = byte ^ X` (bits away from erased), `new & !old` in that
        // space.
        let old = &self.bytes[r.clone()];
        let back = |n: u8, o: u8| !(n ^ X) & (o ^ X);
        if bytes
            .iter()
            .zip(old)
            .fold(0u8, |a, (&n, &o)| a | back(n, o))
            != 0
        {
            let i = bytes
                .iter()
                .zip(old)
                .position(|(&n, &o)| back(n, o) != 0)
                .unwrap_or(0);
            return Err(MockError::SetsBits {
                offset: offset + i as u32,
            });
        }
        match self.due(true) {
            None => {}
            Some(Cut::MidWrite) if !bytes.is_empty() => {
                // A prefix of whole write units, then one unit with a random
                // subset of its transitions (away from erased) done.
                let n = bytes.len() / W;
                let done = self.rng.below(n);
                let torn = r.start + done * W;
                self.bytes[r.start..torn].copy_from_slice(&bytes[..done * W]);
                for (o, &b) in self.bytes[torn..torn + W]
                    .iter_mut()
                    .zip(&bytes[done * W..(done + 1) * W])
                {
                    let flip = (*o ^ b) & self.rng.next_u64() as u8;
                    *o ^= flip;
                }
                self.written[units.start..units.start + done + 1].fill(true);
                return Err(MockError::PowerLost);
            }
            Some(_) => return Err(MockError::PowerLost),
        }
        self.written[units].fill(true);
        self.bytes[r].copy_from_slice(bytes);
        self.stats.writes += 1;
        self.stats.bytes_written += bytes.len() as u64;
        Ok(())
    }
}

/// A small deterministic PRNG (xorshift64*) for tests and fuzzing seeds.
/// A zero seed is replaced by one.
#[derive(Clone, Copy, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        if self.0 == 0 {
            self.0 = 1;
        }
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nor_semantics() {
        let mut f = MockFlash::<1, 4, 256>::new(1000);
        assert_eq!(f.capacity(), 1024);
        f.write(0, &[0x0F, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(
            f.write(0, &[0x0F, 0xFF, 0xFF, 0xFF]),
            Err(MockError::WriteTwice { offset: 0 })
        );
        assert_eq!(f.write(2, &[0; 4]), Err(MockError::NotAligned));
        assert_eq!(f.write(1024, &[0; 4]), Err(MockError::OutOfBounds));
        f.erase(0, 256).unwrap();
        f.write(0, &[0x0F, 0, 0, 0]).unwrap();
        f.erase(0, 256).unwrap();
        assert_eq!(f.as_bytes()[0], 0xFF);
        assert_eq!(f.stats.erases, 2);
        assert_eq!(f.erase(0, 100), Err(MockError::NotAligned));
        f.preload(4, &[1, 2]);
        assert!(matches!(
            f.write(4, &[0; 4]),
            Err(MockError::WriteTwice { .. })
        ));
    }

    #[test]
    fn zero_erased_flash_only_sets_bits() {
        let mut f = MockFlash::<1, 4, 256, 0x00>::new(512);
        assert!(f.as_bytes().iter().all(|&b| b == 0));
        f.write(0, &[0xF0, 0, 0, 0x01]).unwrap();
        f.erase(0, 256).unwrap();
        assert_eq!(f.as_bytes()[..4], [0; 4]);
        f.write(0, &[0xF0, 0, 0, 0x01]).unwrap();
        f.erase(256, 512).unwrap();
        // Clearing a set bit needs an erase.
        f.preload(256, &[0xF0]);
        f.erase(256, 512).unwrap();
        f.write(256, &[0xF0, 0, 0, 0]).unwrap();
        f.erase(256, 512).unwrap();
        f.write(256, &[0xF0, 0, 0, 0]).unwrap();
        let mut g = MockFlash::<1, 4, 256, 0x00>::new(256);
        g.preload(0, &[0xF0]);
        g.written.fill(false);
        assert_eq!(
            g.write(0, &[0x70, 0, 0, 0]),
            Err(MockError::SetsBits { offset: 0 })
        );
        g.write(0, &[0xF8, 0, 0, 0]).unwrap();
        let h = MockFlash::<1, 4, 256, 0x00>::with_image(vec![1, 2], 256);
        assert_eq!(h.as_bytes()[..3], [1, 2, 0]);
        assert_eq!(MockFlash::<1, 4, 256, 0x00>::ERASED, 0);
    }

    #[test]
    fn zero_erased_flash_tears_writes_and_erases_away_from_zero() {
        for seed in 1..100u64 {
            let mut f = MockFlash::<1, 4, 256, 0x00>::new(1024);
            f.cut_at(0, Cut::MidWrite, seed);
            assert_eq!(f.write(0, &[0x0F; 32]), Err(MockError::PowerLost));
            // Only bits the write sets are set, and a prefix is whole.
            assert!(f.as_bytes()[..32].iter().all(|&b| b & !0x0F == 0));
            assert!(f.as_bytes()[32..].iter().all(|&b| b == 0));
            f.reboot();
            f.preload(256, &[0xAA; 768]);
            f.cut_at(0, Cut::MidErase, seed);
            assert_eq!(f.erase(256, 1024), Err(MockError::PowerLost));
            let units: Vec<&[u8]> = f.as_bytes()[256..].chunks(256).collect();
            let erased = units
                .iter()
                .take_while(|u| u.iter().all(|&b| b == 0))
                .count();
            assert!(erased < 3, "seed {seed}");
            assert!(units[erased + 1..]
                .iter()
                .all(|u| u.iter().all(|&b| b == 0xAA)));
        }
    }

    #[test]
    fn with_image_is_programmed_then_erased() {
        let mut f = MockFlash::<1, 4, 256>::with_image(vec![0x12; 6], 300);
        assert_eq!(f.capacity(), 512);
        assert_eq!(
            &f.as_bytes()[..7],
            &[0x12, 0x12, 0x12, 0x12, 0x12, 0x12, 0xFF]
        );
        assert!(f.as_bytes()[6..].iter().all(|&b| b == 0xFF));
        // The write unit holding the image's tail counts as programmed.
        assert!(matches!(
            f.write(4, &[0; 4]),
            Err(MockError::WriteTwice { offset: 4 })
        ));
        f.write(8, &[0; 4]).unwrap();
        assert_eq!(f.into_bytes().len(), 512);
    }

    #[test]
    fn cut_before_changes_nothing_and_kills_everything() {
        let mut f = MockFlash::<1, 4, 256>::new(512);
        f.write(0, &[1, 2, 3, 4]).unwrap();
        f.cut_at(1, Cut::Before, 7);
        f.write(4, &[0; 4]).unwrap(); // countdown 1: this one passes
        let before = f.as_bytes().to_vec();
        assert_eq!(f.erase(0, 256), Err(MockError::PowerLost));
        assert!(f.is_dead());
        assert_eq!(f.as_bytes(), &before[..]);
        assert_eq!(f.read(0, &mut [0; 4]), Err(MockError::PowerLost));
        assert_eq!(f.write(8, &[0; 4]), Err(MockError::PowerLost));
        f.reboot();
        assert!(!f.is_dead());
        f.write(8, &[0; 4]).unwrap();
        assert_eq!(f.ops, 4);
    }

    #[test]
    fn mid_write_tears_one_unit_after_a_prefix() {
        for seed in 1..200u64 {
            let mut f = MockFlash::<1, 4, 256>::new(256);
            f.write(0, &[0xF0; 4]).unwrap();
            f.cut_at(0, Cut::MidWrite, seed);
            let new = [0x0Fu8; 32];
            assert_eq!(
                f.write(0, &[0; 4]),
                Err(MockError::WriteTwice { offset: 0 })
            );
            assert_eq!(f.write(64, &new), Err(MockError::PowerLost));
            let b = &f.as_bytes()[64..96];
            // Some prefix of whole units is the new data.
            let done = b.chunks(4).take_while(|c| *c == [0x0F; 4]).count().min(7);
            // The torn unit only lost bits the write clears.
            for &x in &b[done * 4..done * 4 + 4] {
                assert_eq!(
                    x & 0x0F,
                    0x0F,
                    "seed {seed}: a bit was cleared that the write keeps"
                );
            }
            // Everything after it is untouched.
            assert!(b[done * 4 + 4..].iter().all(|&x| x == 0xFF), "seed {seed}");
            f.reboot();
            // The torn unit counts as written.
            assert!(matches!(
                f.write(64 + done as u32 * 4, &[0; 4]),
                Err(MockError::WriteTwice { .. })
            ));
        }
    }

    #[test]
    fn mid_erase_leaves_random_bytes_in_one_unit() {
        let mut torn_seen = 0;
        for seed in 1..50u64 {
            let mut f = MockFlash::<1, 4, 256>::new(1024);
            f.preload(0, &[0u8; 1024]);
            f.cut_at(0, Cut::MidErase, seed);
            assert_eq!(f.erase(0, 1024), Err(MockError::PowerLost));
            let units: Vec<&[u8]> = f.as_bytes().chunks(256).collect();
            let erased = units
                .iter()
                .take_while(|u| u.iter().all(|&b| b == 0xFF))
                .count();
            assert!(erased < 4, "seed {seed}");
            let torn = units[erased];
            assert!(torn.iter().any(|&b| b != 0xFF) && torn.iter().any(|&b| b != 0));
            assert!(units[erased + 1..]
                .iter()
                .all(|u| u.iter().all(|&b| b == 0)));
            torn_seen += erased;
        }
        assert!(torn_seen > 0, "the torn unit is not always the first");
    }

    #[test]
    fn a_kind_waits_for_its_operation() {
        let mut f = MockFlash::<1, 4, 256>::new(512);
        f.cut_at(0, Cut::MidErase, 3);
        f.write(0, &[0; 4]).unwrap();
        f.write(4, &[0; 4]).unwrap();
        assert_eq!(f.erase(256, 512), Err(MockError::PowerLost));
        assert_eq!(f.ops, 3);
    }

    #[test]
    fn multiwrite_allows_a_second_program_that_only_clears_bits() {
        for multiwrite in [false, true] {
            let mut f = MockFlash::<1, 4, 256>::new(256);
            f.multiwrite = multiwrite;
            f.write(0, &[0xF0; 4]).unwrap();
            let again = f.write(0, &[0x00; 4]);
            match multiwrite {
                false => assert_eq!(again, Err(MockError::WriteTwice { offset: 0 })),
                true => assert_eq!(again, Ok(())),
            }
            // Setting bits needs an erase either way.
            assert_eq!(
                f.write(0, &[0xFF; 4]),
                Err(if multiwrite {
                    MockError::SetsBits { offset: 0 }
                } else {
                    MockError::WriteTwice { offset: 0 }
                })
            );
        }
    }
}

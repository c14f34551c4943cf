//! The applier's buffers: a read cache over the virtual source, the
//! sequential target writer that erases ahead, and what the digest passes
//! share (their flash passes are in `reads.rs`).

/// Rounds `v` up to a multiple of `to`.
pub(crate) const fn align_up(v: u64, to: usize) -> u64 {
    v.div_ceil(to as u64) * to as u64
}

/// Sets every byte of `bytes` to `v`: the few bytes of padding after a
/// digest's message or before a write's end. A plain loop (`black_box`
/// keeps the compiler from turning it into a `memset` call, which would
/// link about 200 bytes of Thumb code for these short runs).
#[inline(never)]
pub(crate) fn fill(bytes: &mut [u8], v: u8) {
    for b in bytes {
        *b = core::hint::black_box(v);
    }
}

/// Whether `a` and `b` hold the same bytes. The digest checks go through
/// here rather than `==`, which calls `memcmp`: one function less on a
/// device.
#[inline(never)]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// Which flash the read cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cached {
    Nothing,
    Source,
    Target,
}

/// A small read cache: one block of `R` bytes.
pub(crate) struct ReadCache<const R: usize> {
    pub(crate) buf: [u8; R],
    pub(crate) base: u32,
    pub(crate) len: u32,
    pub(crate) what: Cached,
}

impl<const R: usize> ReadCache<R> {
    pub(crate) const fn new() -> Self {
        ReadCache {
            buf: [0; R],
            base: 0,
            len: 0,
            what: Cached::Nothing,
        }
    }

    /// The cached bytes from offset `at` of the block on (`get`, not
    /// indexing: no panic path, so the compiler inlines it).
    #[inline]
    pub(crate) fn piece(&self, at: usize) -> &[u8] {
        self.buf.get(at..self.len as usize).unwrap_or_default()
    }

    /// The cached byte at offset `at` of the block.
    #[inline]
    pub(crate) fn byte(&self, at: usize) -> u8 {
        self.buf.get(at).copied().unwrap_or(0)
    }

    /// Forgets what is cached (after `buf` was used for something else).
    pub(crate) fn invalidate(&mut self) {
        self.what = Cached::Nothing;
    }
}

/// Writes the target front to back in `W`-byte pieces, erasing each erase
/// unit just before its first write.
pub(crate) struct Writer<const W: usize> {
    pub(crate) buf: [u8; W],
    pub(crate) len: u16,
    /// Bytes already programmed.
    pub(crate) flushed: u32,
    /// Bytes already erased.
    pub(crate) erased: u32,
}

impl<const W: usize> Writer<W> {
    /// Starts again with the first `at` bytes programmed, in place. What
    /// the buffer held stays: only its first `len` bytes are ever read,
    /// and the flush pads the rest.
    pub(crate) fn restart(&mut self, at: u32) {
        self.len = 0;
        self.flushed = at;
        self.erased = at;
    }

    /// A writer at the start of the target. The buffer starts zeroed,
    /// like the rest of an [`crate::ApplierState`]: its bytes are read only
    /// once written, and the flush pads with 0xFF.
    pub(crate) const fn new() -> Self {
        Writer {
            buf: [0; W],
            len: 0,
            flushed: 0,
            erased: 0,
        }
    }

    /// Appends one byte; `true` if the buffer is then full, and must be
    /// programmed (`flush_writer`) before the next one.
    #[inline]
    pub(crate) fn push(&mut self, b: u8) -> bool {
        self.buf[self.len as usize % W] = b;
        self.len += 1;
        self.len as usize == W
    }

    /// Free bytes in the buffer (at least one: a full buffer is programmed
    /// at once).
    #[inline]
    pub(crate) fn room(&self) -> usize {
        W - self.len as usize
    }

    /// Puts `bytes` (at most [`Self::room`]) after the buffered ones,
    /// without counting them in: the caller adds them to `len`.
    /// A byte loop, not `memcpy`: the pieces that come here are short
    /// (what is left of a cached block; a long copy is read straight into
    /// the buffer), for which the call and its slice checks cost more
    /// than the copy.
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let at = (self.len as usize).min(W);
        for (d, &s) in self.buf[at..].iter_mut().zip(bytes) {
            *d = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::blocking::reads::{
        crc_of, crc_of_prefixes, digest_of, flush_writer, sha256_of,
    };
    use crate::crc32::Crc32;
    use crate::hashes::Software;
    use crate::mock::MockFlash;
    use sha2::Digest;

    fn check<const R: usize, const B: usize>(image: &[u8]) {
        for len in (0..=300).chain([511, 512, 513, 1000, 1024]) {
            let mut flash = MockFlash::<R, 4, 4096>::new(4096);
            flash.preload(0, image);
            let mut buf = [0u8; B];
            let want: [u8; 32] = sha2::Sha256::digest(&image[..len]).into();
            let got = sha256_of::<Software, _>(&mut flash, &mut buf, len as u32);
            assert_eq!(got, Ok(want), "{len}");
            let want: [u8; 16] = md5::Md5::digest(&image[..len]).into();
            let mut got = [0; 16];
            let r = digest_of::<_, md5::Md5>(&mut flash, &mut buf, len as u32, (&mut got).into());
            assert_eq!((r, got), (Ok(()), want), "{len}");
        }
    }

    fn crc(bytes: &[u8]) -> u32 {
        let mut c = Crc32::new();
        c.update(bytes);
        c.value()
    }

    #[test]
    fn crc_of_prefixes_matches_the_crc_of_each_prefix() {
        let image: [u8; 700] = core::array::from_fn(|i| (i * 13 + i / 7) as u8);
        let mut flash = MockFlash::<4, 4, 4096>::new(4096);
        flash.preload(0, &image);
        let lens = [0, 1, 63, 64, 65, 127, 128, 129, 255, 256, 257, 500, 700];
        for buf_len in [64, 100, 128] {
            let mut buf = [0u8; 128];
            let buf = &mut buf[..buf_len];
            for a in lens {
                for b in lens {
                    let got = crc_of_prefixes(&mut flash, buf, a as u32, b as u32);
                    let want = (crc(&image[..a]), crc(&image[..b]));
                    assert_eq!(got, Ok(want), "prefixes {a} and {b}, {buf_len}-byte buffer");
                }
                assert_eq!(crc_of(&mut flash, buf, a as u32), Ok(crc(&image[..a])));
            }
        }
    }

    #[test]
    fn a_restarted_writer_pads_with_0xff_whatever_its_buffer_held() {
        let mut flash = MockFlash::<1, 4, 4096>::new(8192);
        let mut w = Writer::<16>::new();
        w.buf = [0x5A; 16];
        w.restart(4096);
        for b in [1, 2, 3, 4, 5] {
            assert!(!w.push(b));
        }
        flush_writer(&mut w, &mut flash).unwrap();
        assert_eq!(w.flushed, 4096 + 8);
        let bytes = flash.as_bytes();
        assert_eq!(bytes[4096..4096 + 8], [1, 2, 3, 4, 5, 0xFF, 0xFF, 0xFF]);
        assert!(bytes[4096 + 8..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn a_writer_programs_flash_erased_to_zero_in_wide_units() {
        let mut flash = MockFlash::<1, 64, 4096, 0x00>::new(8192);
        let mut w = Writer::<64>::new();
        for b in 0..100u8 {
            if w.push(b) {
                flush_writer(&mut w, &mut flash).unwrap();
            }
        }
        flush_writer(&mut w, &mut flash).unwrap();
        assert_eq!((w.flushed, flash.stats.writes), (128, 2));
        let bytes = flash.as_bytes();
        assert!((0..100).all(|i| bytes[i] == i as u8));
        assert!(bytes[100..128].iter().all(|&b| b == 0xFF));
        assert!(bytes[128..].iter().all(|&b| b == 0));
    }

    #[test]
    fn fill_and_same() {
        let mut b = [1u8, 2, 3, 4, 5];
        fill(&mut b[1..4], 0xFF);
        assert_eq!(b, [1, 0xFF, 0xFF, 0xFF, 5]);
        assert!(same(&b, &[1, 0xFF, 0xFF, 0xFF, 5]));
        assert!(!same(&b, &[1, 0xFF, 0xFF, 0xFF, 4]));
        assert!(!same(&b, &b[..4]));
        assert!(same(&[], &[]));
    }

    #[test]
    fn digests_match_the_digest_crates_at_every_padding_boundary() {
        let image: [u8; 1040] = core::array::from_fn(|i| (i * 7 + i / 256) as u8);
        check::<1, 64>(&image);
        check::<1, 128>(&image);
        check::<4, 256>(&image);
        check::<8, 192>(&image);
    }
}

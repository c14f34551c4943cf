//! Flash access of the applier: a read cache over the virtual source, the
//! sequential target writer that erases ahead, and whole-image digests.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

use crate::crc32::Crc32;
use crate::digest::{md5_compress, sha256_compress, MD5_INIT, SHA256_INIT};

/// Rounds `v` up to a multiple of `to`.
pub(crate) const fn align_up(v: u64, to: usize) -> u64 {
    v.div_ceil(to as u64) * to as u64
}

/// Whether `len` bytes, read in `READ_SIZE` units, fit in `flash`.
pub(crate) fn fits<F: ReadNorFlash>(flash: &F, len: u32) -> bool {
    align_up(len as u64, F::READ_SIZE) <= flash.capacity() as u64
}

/// CRC-32 of `[0, len)` of `flash`, read through `buf`. The caller checks
/// [`fits`] first.
pub(crate) fn crc_of<F: ReadNorFlash>(
    flash: &mut F,
    buf: &mut [u8],
    len: u32,
) -> Result<u32, F::Error> {
    // One function for both passes over a device's flash (the same work:
    // a prefix of `len` is the whole).
    Ok(crc_of_prefixes(flash, buf, len, len)?.0)
}

/// CRC-32s of the prefixes `[0, a)` and `[0, b)` of `flash`, in one pass
/// over the longer one, read through `buf`. The caller checks [`fits`]
/// first.
pub(crate) fn crc_of_prefixes<F: ReadNorFlash>(
    flash: &mut F,
    buf: &mut [u8],
    a: u32,
    b: u32,
) -> Result<(u32, u32), F::Error> {
    let (short, long) = (a.min(b), a.max(b));
    let mut c = Crc32::new();
    let mut at_short = c.value();
    let mut off = 0u32;
    while off < long {
        let n = buf.len().min((long - off) as usize);
        let nr = (align_up(n as u64, F::READ_SIZE) as usize).min(buf.len());
        flash.read(off, &mut buf[..nr])?;
        // The bytes of this piece before `short`: all, some (then the
        // short prefix ends here) or none.
        let cut = (short.saturating_sub(off) as usize).min(n);
        c.update(&buf[..cut]);
        if off + cut as u32 == short {
            at_short = c.value();
        }
        c.update(&buf[cut..n]);
        off += n as u32;
    }
    let (s, l) = (at_short, c.value());
    Ok(if a <= b { (s, l) } else { (l, s) })
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

/// A hash of 64-byte blocks whose padding ends in the message length in
/// bits: MD5 or SHA-256. Its chaining value is the first four or all
/// eight words of a `[u32; 8]`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BlockHash {
    Md5,
    Sha256,
}

impl BlockHash {
    fn compress(self, state: &mut [u32; 8], blocks: &[[u8; 64]]) {
        match self {
            BlockHash::Md5 => {
                if let Some(s) = state.first_chunk_mut::<4>() {
                    md5_compress(s, blocks);
                }
            }
            BlockHash::Sha256 => sha256_compress(state, blocks),
        }
    }
}

/// Runs `hash` over `[0, len)` of `flash` and returns the digest (MD5's
/// in the first 16 bytes), with the compression function alone: whole
/// blocks are compressed straight out of `buf`, and the padded last
/// block(s) are built in `buf` too, so the chaining value is the only
/// hash state (no block buffer, no copy of it on finalizing). `buf` is
/// used in whole 64-byte blocks; when the padding takes two blocks and
/// `buf` holds one, they are built one after the other. One function for
/// both hashes and every buffer size, not inlined: a device has one copy
/// per flash type.
#[inline(never)]
fn block_hash<F: ReadNorFlash>(
    flash: &mut F,
    buf: &mut [u8],
    len: u32,
    hash: BlockHash,
) -> Result<[u8; 32], F::Error> {
    let b = buf.len() / 64 * 64;
    if b == 0 {
        // Not reached: `md5_of` and `sha256_of` take whole blocks, checked
        // when they are compiled.
        return Ok([0; 32]);
    }
    let sha = hash == BlockHash::Sha256;
    let mut state = SHA256_INIT;
    if !sha {
        state[..4].copy_from_slice(&MD5_INIT);
    }
    let mut off = 0u32;
    loop {
        let n = (b as u32).min(len - off) as usize;
        if n > 0 {
            let nr = (align_up(n as u64, F::READ_SIZE) as usize).min(b);
            flash.read(off, &mut buf[..nr])?;
        }
        off += n as u32;
        let whole = n / 64 * 64;
        hash.compress(&mut state, buf[..whole].as_chunks().0);
        if off < len {
            continue;
        }
        let tail = n - whole;
        if whole > 0 {
            // Not `copy_within`: that links `memmove` (1.5 KB of Thumb code)
            // for a copy that cannot overlap (`tail < 64 <= whole`).
            let (head, rest) = buf.split_at_mut(whole);
            head[..tail].copy_from_slice(&rest[..tail]);
        }
        buf[tail] = 0x80;
        if tail >= 56 {
            // No room for the length: this block ends with zeros, and
            // the next one is zeros and the length.
            fill(&mut buf[tail + 1..64], 0);
            hash.compress(&mut state, buf[..64].as_chunks().0);
            fill(&mut buf[..56], 0);
        } else {
            fill(&mut buf[tail + 1..56], 0);
        }
        let bits = len as u64 * 8;
        buf[56..64].copy_from_slice(&if sha {
            bits.to_be_bytes()
        } else {
            bits.to_le_bytes()
        });
        hash.compress(&mut state, buf[..64].as_chunks().0);
        // Built byte by byte, not zeroed first: no `memclr` call.
        return Ok(core::array::from_fn(|i| {
            let w = state[i / 4 % 8];
            let b = if sha {
                w.to_be_bytes()
            } else {
                w.to_le_bytes()
            };
            b[i % 4]
        }));
    }
}

/// MD5 of `[0, len)` of `flash`, read through `buf`.
pub(crate) fn md5_of<F: ReadNorFlash, const B: usize>(
    flash: &mut F,
    buf: &mut [u8; B],
    len: u32,
) -> Result<[u8; 16], F::Error> {
    const { assert!(B >= 64 && B.is_multiple_of(64)) };
    let d = block_hash(flash, buf, len, BlockHash::Md5)?;
    Ok(*d.first_chunk().unwrap_or(&[0; 16]))
}

/// SHA-256 of `[0, len)` of `flash`, read through `buf`.
pub(crate) fn sha256_of<F: ReadNorFlash, const B: usize>(
    flash: &mut F,
    buf: &mut [u8; B],
    len: u32,
) -> Result<[u8; 32], F::Error> {
    const { assert!(B >= 64 && B.is_multiple_of(64)) };
    block_hash(flash, buf, len, BlockHash::Sha256)
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
    base: u32,
    len: u32,
    what: Cached,
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

    /// Forgets what is cached (after `buf` was used for something else).
    pub(crate) fn invalidate(&mut self) {
        self.what = Cached::Nothing;
    }

    /// The bytes of `flash` from `pos` to the end of the cached block
    /// (at least one), whose readable part ends at `limit` (a multiple of
    /// its `READ_SIZE`, within its capacity). `pos < limit`.
    #[inline]
    pub(crate) fn at<F: ReadNorFlash>(
        &mut self,
        what: Cached,
        flash: &mut F,
        pos: u32,
        limit: u32,
    ) -> Result<&[u8], F::Error> {
        let rel = pos.wrapping_sub(self.base);
        if self.what != what || rel >= self.len {
            let base = pos - pos % F::READ_SIZE as u32;
            let len = (R as u32).min(limit - base);
            self.what = Cached::Nothing;
            flash.read(base, &mut self.buf[..len as usize])?;
            self.what = what;
            self.base = base;
            self.len = len;
        }
        let rel = pos.wrapping_sub(self.base) as usize;
        Ok(&self.buf[rel.min(R)..(self.len as usize).min(R)])
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
    erased: u32,
}

impl<const W: usize> Writer<W> {
    /// Starts again with the first `at` bytes programmed, in place. What
    /// the buffer held stays: only its first `len` bytes are ever read,
    /// and [`Writer::flush`] pads the rest.
    pub(crate) fn restart(&mut self, at: u32) {
        self.len = 0;
        self.flushed = at;
        self.erased = at;
    }

    /// A writer at the start of the target. The buffer starts zeroed,
    /// like the rest of an [`crate::ApplierState`]: its bytes are read only
    /// once written, and [`Writer::flush`] pads with 0xFF.
    pub(crate) const fn new() -> Self {
        Writer {
            buf: [0; W],
            len: 0,
            flushed: 0,
            erased: 0,
        }
    }

    /// Appends one byte; programs the buffer when it is full.
    #[inline]
    pub(crate) fn push<F: NorFlash>(&mut self, flash: &mut F, b: u8) -> Result<(), F::Error> {
        self.buf[self.len as usize % W] = b;
        self.len += 1;
        if self.len as usize == W {
            self.flush(flash)?;
        }
        Ok(())
    }

    /// Free bytes in the buffer (at least one: a full buffer is programmed
    /// at once).
    #[inline]
    pub(crate) fn room(&self) -> usize {
        W - self.len as usize
    }

    /// Appends `bytes` (at most [`Self::room`]); programs the buffer when it
    /// is full.
    #[inline]
    pub(crate) fn extend<F: NorFlash>(
        &mut self,
        flash: &mut F,
        bytes: &[u8],
    ) -> Result<(), F::Error> {
        let at = self.len as usize;
        let n = bytes.len().min(W - at);
        self.buf[at..at + n].copy_from_slice(&bytes[..n]);
        self.len += n as u16;
        if self.len as usize == W {
            self.flush(flash)?;
        }
        Ok(())
    }

    /// Programs what is buffered, padded with 0xFF to whole write units
    /// (on flash erased to 0x00 as well: the padding goes into erased
    /// flash, where any value can be programmed, and nothing reads it).
    pub(crate) fn flush<F: NorFlash>(&mut self, flash: &mut F) -> Result<(), F::Error> {
        if self.len == 0 {
            return Ok(());
        }
        let n = (align_up(self.len as u64, F::WRITE_SIZE) as usize).min(W);
        fill(&mut self.buf[self.len as usize..n], 0xFF);
        let end = self.flushed + n as u32;
        while self.erased < end {
            let next = self.erased + F::ERASE_SIZE as u32;
            flash.erase(self.erased, next)?;
            self.erased = next;
        }
        flash.write(self.flushed, &self.buf[..n])?;
        self.flushed = end;
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MockFlash;
    use sha2::Digest;

    fn check<const R: usize, const B: usize>(image: &[u8]) {
        for len in (0..=300).chain([511, 512, 513, 1000, 1024]) {
            let mut flash = MockFlash::<R, 4, 4096>::new(4096);
            flash.preload(0, image);
            let mut buf = [0u8; B];
            let want: [u8; 32] = sha2::Sha256::digest(&image[..len]).into();
            assert_eq!(
                sha256_of(&mut flash, &mut buf, len as u32),
                Ok(want),
                "{len}"
            );
            let want: [u8; 16] = md5::Md5::digest(&image[..len]).into();
            assert_eq!(md5_of(&mut flash, &mut buf, len as u32), Ok(want), "{len}");
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
            w.push(&mut flash, b).unwrap();
        }
        w.flush(&mut flash).unwrap();
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
            w.push(&mut flash, b).unwrap();
        }
        w.flush(&mut flash).unwrap();
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

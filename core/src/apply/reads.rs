//! The applier's passes over flash, written once for the blocking and the
//! async copy of `apply` (see [`super::run`]): whole-image digests, the
//! read cache's refill and the write buffer's flush.

use super::{io, NorFlash, ReadNorFlash};
use crate::apply::io::{align_up, fill, BlockHash, Cached, ReadCache, Writer};
use crate::crc32::Crc32;
use crate::digest::{MD5_INIT, SHA256_INIT};

/// Whether `len` bytes, read in `READ_SIZE` units, fit in `flash`.
pub(crate) fn fits<F: ReadNorFlash>(flash: &F, len: u32) -> bool {
    align_up(len as u64, F::READ_SIZE) <= flash.capacity() as u64
}

/// CRC-32 of `[0, len)` of `flash`, read through `buf`. The caller checks
/// [`fits`] first.
#[io]
pub(crate) async fn crc_of<F: ReadNorFlash>(
    flash: &mut F,
    buf: &mut [u8],
    len: u32,
) -> Result<u32, F::Error> {
    // One function for both passes over a device's flash (the same work:
    // a prefix of `len` is the whole).
    Ok(crc_of_prefixes(flash, buf, len, len).await?.0)
}

/// CRC-32s of the prefixes `[0, a)` and `[0, b)` of `flash`, in one pass
/// over the longer one, read through `buf`. The caller checks [`fits`]
/// first.
#[io]
pub(crate) async fn crc_of_prefixes<F: ReadNorFlash>(
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
        flash.read(off, &mut buf[..nr]).await?;
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
#[io]
async fn block_hash<F: ReadNorFlash>(
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
            flash.read(off, &mut buf[..nr]).await?;
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
#[io]
pub(crate) async fn md5_of<F: ReadNorFlash, const B: usize>(
    flash: &mut F,
    buf: &mut [u8; B],
    len: u32,
) -> Result<[u8; 16], F::Error> {
    const { assert!(B >= 64 && B.is_multiple_of(64)) };
    let d = block_hash(flash, buf, len, BlockHash::Md5).await?;
    Ok(*d.first_chunk().unwrap_or(&[0; 16]))
}

/// SHA-256 of `[0, len)` of `flash`, read through `buf`.
#[io]
pub(crate) async fn sha256_of<F: ReadNorFlash, const B: usize>(
    flash: &mut F,
    buf: &mut [u8; B],
    len: u32,
) -> Result<[u8; 32], F::Error> {
    const { assert!(B >= 64 && B.is_multiple_of(64)) };
    block_hash(flash, buf, len, BlockHash::Sha256).await
}

/// The bytes of `flash` (which is `what`) from `pos` to the end of the
/// block of `cache` that holds it (at least one), read first if `cache`
/// does not hold it; the flash's readable part ends at `limit` (a
/// multiple of its `READ_SIZE`, within its capacity). `pos < limit`.
#[inline]
#[io]
pub(crate) async fn cached<'c, F: ReadNorFlash, const R: usize>(
    cache: &'c mut ReadCache<R>,
    what: Cached,
    flash: &mut F,
    pos: u32,
    limit: u32,
) -> Result<&'c [u8], F::Error> {
    let rel = pos.wrapping_sub(cache.base);
    if cache.what != what || rel >= cache.len {
        let base = pos - pos % F::READ_SIZE as u32;
        let len = (R as u32).min(limit - base);
        cache.what = Cached::Nothing;
        flash.read(base, &mut cache.buf[..len as usize]).await?;
        cache.what = what;
        cache.base = base;
        cache.len = len;
    }
    let rel = pos.wrapping_sub(cache.base) as usize;
    Ok(&cache.buf[rel.min(R)..(cache.len as usize).min(R)])
}

/// Programs what is buffered, padded with 0xFF to whole write units
/// (on flash erased to 0x00 as well: the padding goes into erased
/// flash, where any value can be programmed, and nothing reads it).
#[io]
pub(crate) async fn flush_writer<F: NorFlash, const W: usize>(
    w: &mut Writer<W>,
    flash: &mut F,
) -> Result<(), F::Error> {
    if w.len == 0 {
        return Ok(());
    }
    let n = (align_up(w.len as u64, F::WRITE_SIZE) as usize).min(W);
    fill(&mut w.buf[w.len as usize..n], 0xFF);
    let end = w.flushed + n as u32;
    while w.erased < end {
        let next = w.erased + F::ERASE_SIZE as u32;
        flash.erase(w.erased, next).await?;
        w.erased = next;
    }
    flash.write(w.flushed, &w.buf[..n]).await?;
    w.flushed = end;
    w.len = 0;
    Ok(())
}

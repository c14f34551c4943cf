//! The applier's passes over flash, written once for the blocking and the
//! async copy of `apply` (see [`super::run`]): whole-image digests, the
//! read cache's refill and the write buffer's flush.

use super::{io, NorFlash, ReadNorFlash};
use crate::apply::io::{align_up, fill, Cached, ReadCache, Writer};
use crate::crc32::Crc32;
use crate::hashes::Hashes;
use digest::{FixedOutputReset, Output, Update};

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

/// Puts the digest `D` of `[0, len)` of `flash`, read through `buf` (any
/// length from one read unit up), into `out`. Not inlined: a device has
/// one copy per flash and hash type. The digest goes straight into the
/// caller's array (no copy of it in this frame, which the hasher's
/// finalization nests under).
#[inline(never)]
#[io]
pub(crate) async fn digest_of<F: ReadNorFlash, D: Default + Update + FixedOutputReset>(
    flash: &mut F,
    buf: &mut [u8],
    len: u32,
    out: &mut Output<D>,
) -> Result<(), F::Error> {
    let mut d = D::default();
    let mut off = 0u32;
    while off < len {
        let n = buf.len().min((len - off) as usize);
        let nr = (align_up(n as u64, F::READ_SIZE) as usize).min(buf.len());
        flash.read(off, &mut buf[..nr]).await?;
        d.update(&buf[..n]);
        off += n as u32;
    }
    d.finalize_into_reset(out);
    Ok(())
}

/// SHA-256 of `[0, len)` of `flash` with `H`'s hash, read through `buf`.
#[io]
pub(crate) async fn sha256_of<H: Hashes, F: ReadNorFlash>(
    flash: &mut F,
    buf: &mut [u8],
    len: u32,
) -> Result<[u8; 32], F::Error> {
    let mut out = [0; 32];
    digest_of::<F, H::Sha256>(flash, buf, len, (&mut out).into()).await?;
    Ok(out)
}

/// Makes `cache` hold the block of `flash` (which is `what`) that holds
/// `pos`, reading it if it does not already; returns where `pos` is in
/// the block (below its length: [`ReadCache::piece`], [`ReadCache::byte`]).
/// The flash's readable part ends at `limit` (a multiple of its
/// `READ_SIZE`, within its capacity). `pos < limit`. Always inlined: a
/// hit (most calls: every copy piece and `Diff` reads here) costs a few
/// instructions in the caller, a miss one call.
#[inline(always)]
#[io]
pub(crate) async fn cached<F: ReadNorFlash, const R: usize>(
    cache: &mut ReadCache<R>,
    what: Cached,
    flash: &mut F,
    pos: u32,
    limit: u32,
) -> Result<usize, F::Error> {
    if cache.what != what || pos.wrapping_sub(cache.base) >= cache.len {
        refill(cache, what, flash, pos, limit).await?;
    }
    Ok(pos.wrapping_sub(cache.base) as usize)
}

/// [`cached`] not inlined: for reads of the target written so far (copies
/// from far back in the new image), fewer than those of the source.
#[inline(never)]
#[io]
pub(crate) async fn cached_far<F: ReadNorFlash, const R: usize>(
    cache: &mut ReadCache<R>,
    what: Cached,
    flash: &mut F,
    pos: u32,
    limit: u32,
) -> Result<usize, F::Error> {
    cached(cache, what, flash, pos, limit).await
}

/// [`cached`]'s miss: reads the block that holds `pos`.
#[inline(never)]
#[io]
async fn refill<F: ReadNorFlash, const R: usize>(
    cache: &mut ReadCache<R>,
    what: Cached,
    flash: &mut F,
    pos: u32,
    limit: u32,
) -> Result<(), F::Error> {
    let base = pos - pos % F::READ_SIZE as u32;
    let len = (R as u32).min(limit - base);
    cache.what = Cached::Nothing;
    flash.read(base, &mut cache.buf[..len as usize]).await?;
    cache.what = what;
    cache.base = base;
    cache.len = len;
    Ok(())
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

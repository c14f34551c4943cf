//! Patch staging: the patch is stored in a flash partition as it arrives,
//! so that a transfer resumes after a power cut from what was stored, and
//! the patch is applied only once it is complete.
//!
//! Layout of the staging partition, with `E` its erase size, `H` =
//! max(16, write size, read size) and `P` = max(4, write size, read size)
//! (16 and 4 on flash with write and read sizes up to 4 bytes):
//!
//! ```text
//!  offset   size   field
//!  0        4      magic "FPST"
//!  4        4      patch size
//!  8        4      patch CRC-32
//!  12       4      CRC-32 of bytes 0..12
//!  16       H-16   erased (padding to a whole write unit)
//!  H+Pk     P      progress word of data unit k: erased until unit k
//!                  (patch bytes [kE, (k+1)E)) is completely written, then
//!                  every bit flipped (0x00 bytes on flash erased to 0xFF)
//!  E        ...    the patch, unit k at E + kE
//! ```
//!
//! A progress word is written only after its whole unit is, so any word
//! that is not erased (even one torn by a power cut) means its unit is
//! complete. A transfer resumes at the first incomplete unit, which is
//! erased again before its first write. A new patch erases the header
//! unit first; a torn header fails its CRC and is no transfer at all.
//!
//! "Erased" is the value the flash's erased bytes read: 0xFF for
//! [`Staging::open`], any other (0x00 on flash that erases to zeros) for
//! [`Staging::open_erased`]. Patch bytes that do not fill a write unit
//! yet (the host sends multiples of 4 bytes; flash with 8- to 64-byte
//! write units programs whole units) wait in RAM until the next chunk, or
//! the last one, fills it: a power cut loses them, and the transfer
//! resumes from the start of their erase unit anyway.

use super::super::staging::{staging, Transfer, HEADER, MAGIC, MAX_UNIT};
use super::{io, NorFlash};
use crate::crc32::Crc32;
use crate::error::{ApplyError, FlashError};
use crate::proto::{Action, Resume, Verdict, MAX_CHUNK};
use crate::Status;

pub use super::super::staging::StageError;

/// A staging partition: `F` is a [`NorFlash`] window holding nothing else.
pub struct Staging<F> {
    flash: F,
    transfer: Option<Transfer>,
    /// What an erased byte reads.
    erased: u8,
    /// Patch bytes since the last whole write unit, not programmed yet.
    tail: [u8; MAX_UNIT],
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

type Res<T> = Result<T, StageError>;

#[io]
impl<F: NorFlash> Staging<F> {
    const UNIT: u32 = F::ERASE_SIZE as u32;
    /// Bytes of the header, padded to whole write and read units.
    const HEAD: u32 = max(HEADER as usize, max(F::WRITE_SIZE, F::READ_SIZE)) as u32;
    /// Bytes of each progress word, padded the same way.
    const STEP: u32 = max(4, max(F::WRITE_SIZE, F::READ_SIZE)) as u32;

    /// Opens the staging partition of a flash whose erased bytes read
    /// 0xFF and finds an interrupted transfer.
    pub async fn open(flash: F) -> Result<Self, FlashError> {
        Self::open_erased(flash, 0xFF).await
    }

    /// Opens the staging partition of a flash whose erased bytes read
    /// `erased` (0x00 on flash that erases to zeros) and finds an
    /// interrupted transfer. Staging is the only part of flashpatch that
    /// needs to know (see the crate docs).
    pub async fn open_erased(flash: F, erased: u8) -> Result<Self, FlashError> {
        const {
            let (w, r) = (F::WRITE_SIZE, F::READ_SIZE);
            assert!(
                w <= MAX_UNIT && r <= MAX_UNIT,
                "write and read sizes up to 64 bytes"
            );
            let (head, step) = (Self::HEAD as usize, Self::STEP as usize);
            assert!(head.is_multiple_of(w) && head.is_multiple_of(r));
            assert!(step.is_multiple_of(w) && step.is_multiple_of(r));
            assert!(F::ERASE_SIZE >= 64);
            assert!(Self::UNIT >= Self::HEAD + Self::STEP);
        };
        let mut s = Staging {
            flash,
            transfer: None,
            erased,
            tail: [erased; MAX_UNIT],
        };
        s.transfer = s.scan().await?;
        Ok(s)
    }

    async fn scan(&mut self) -> Result<Option<Transfer>, FlashError> {
        let mut block = [0u8; MAX_UNIT];
        let mut h = [0u8; HEADER as usize];
        self.flash
            .read(0, &mut block[..Self::HEAD as usize])
            .await
            .map_err(staging)?;
        h.copy_from_slice(&block[..HEADER as usize]);
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        if h[..4] != MAGIC || crate::crc32::crc32(&h[..12]) != word(12) {
            return Ok(None);
        }
        let (size, crc32) = (word(4), word(8));
        if size > self.max_size() {
            return Ok(None);
        }
        let units = size.div_ceil(Self::UNIT);
        let mut done = 0;
        while done < units {
            let w = &mut block[..Self::STEP as usize];
            self.flash
                .read(Self::HEAD + Self::STEP * done, w)
                .await
                .map_err(staging)?;
            if w.iter().all(|&b| b == self.erased) {
                break;
            }
            done += 1;
        }
        let received = (done * Self::UNIT).min(size);
        Ok(Some(Transfer {
            size,
            crc32,
            received,
            erased: done * Self::UNIT,
        }))
    }

    /// The largest patch this partition holds.
    pub fn max_size(&self) -> u32 {
        let cap = self.flash.capacity() as u64;
        let data = cap.saturating_sub(Self::UNIT as u64);
        let words = ((Self::UNIT - Self::HEAD) / Self::STEP) as u64;
        data.min(words * Self::UNIT as u64).min(u32::MAX as u64) as u32
    }

    /// The transfer held, if any: what a device announces.
    pub fn resume(&self) -> Option<Resume> {
        self.transfer.map(|t| Resume {
            size: t.size,
            crc32: t.crc32,
            offset: t.received,
        })
    }

    /// Whether the whole patch is stored.
    pub fn complete(&self) -> bool {
        self.transfer.is_some_and(|t| t.received == t.size)
    }

    /// Starts a transfer of a patch of `size` bytes with CRC-32 `crc32`, or
    /// continues the one held if it is the same patch. Returns the offset
    /// the host continues from.
    pub async fn begin(&mut self, size: u32, crc32: u32) -> Res<u32> {
        if let Some(t) = self.transfer {
            if t.size == size && t.crc32 == crc32 {
                return Ok(t.received);
            }
        }
        let max = self.max_size();
        if size > max {
            return Err(StageError::TooLarge { max });
        }
        self.transfer = None;
        self.flash
            .erase(0, Self::UNIT)
            .await
            .map_err(|e| StageError::Flash(staging(e)))?;
        let mut h = [self.erased; MAX_UNIT];
        h[..4].copy_from_slice(&MAGIC);
        h[4..8].copy_from_slice(&size.to_le_bytes());
        h[8..12].copy_from_slice(&crc32.to_le_bytes());
        let c = crate::crc32::crc32(&h[..12]);
        h[12..16].copy_from_slice(&c.to_le_bytes());
        self.flash
            .write(0, &h[..Self::HEAD as usize])
            .await
            .map_err(|e| StageError::Flash(staging(e)))?;
        self.transfer = Some(Transfer {
            size,
            crc32,
            received: 0,
            erased: 0,
        });
        Ok(0)
    }

    /// Stores `data` at patch offset `offset`; returns the bytes stored in
    /// all. `offset` must be where the stored bytes end.
    pub async fn write(&mut self, offset: u32, data: &[u8]) -> Res<u32> {
        let mut t = self.transfer.ok_or(StageError::NotStarted)?;
        if offset != t.received {
            return Err(StageError::Offset {
                expected: t.received,
            });
        }
        let end = offset as u64 + data.len() as u64;
        let last = end == t.size as u64;
        if data.len() > MAX_CHUNK || end > t.size as u64 || (!last && !data.len().is_multiple_of(4))
        {
            return Err(StageError::Length);
        }
        let end = end as u32;
        let flash = |e| StageError::Flash(staging(e));
        let w = F::WRITE_SIZE;
        while t.erased < end.next_multiple_of(w as u32) {
            let at = Self::UNIT + t.erased;
            self.flash.erase(at, at + Self::UNIT).await.map_err(flash)?;
            t.erased += Self::UNIT;
        }
        // The write unit in progress starts at `at`; `have` of its bytes
        // wait in `tail`.
        let mut at = offset - offset % w as u32;
        let mut have = (offset - at) as usize;
        let mut rest = data;
        if have > 0 {
            let n = rest.len().min(w - have);
            self.tail[have..have + n].copy_from_slice(&rest[..n]);
            (have, rest) = (have + n, &rest[n..]);
            if have == w {
                self.flash
                    .write(Self::UNIT + at, &self.tail[..w])
                    .await
                    .map_err(flash)?;
                (at, have) = (at + w as u32, 0);
            }
        }
        if have == 0 {
            let whole = rest.len() / w * w;
            if whole > 0 {
                self.flash
                    .write(Self::UNIT + at, &rest[..whole])
                    .await
                    .map_err(flash)?;
            }
            at += whole as u32;
            rest = &rest[whole..];
            self.tail[..rest.len()].copy_from_slice(rest);
            have = rest.len();
        }
        if last && have > 0 {
            // The patch's last bytes, padded to a whole write unit.
            self.tail[have..w].fill(self.erased);
            self.flash
                .write(Self::UNIT + at, &self.tail[..w])
                .await
                .map_err(flash)?;
        }
        // Progress words of every unit this chunk completed (a unit
        // boundary is a write unit boundary: those units are programmed).
        let first = offset / Self::UNIT;
        let done = if last {
            end.div_ceil(Self::UNIT)
        } else {
            end / Self::UNIT
        };
        let mark = [!self.erased; MAX_UNIT];
        let mark = &mark[..Self::STEP as usize];
        for k in first..done {
            let at = Self::HEAD + Self::STEP * k;
            self.flash.write(at, mark).await.map_err(flash)?;
        }
        t.received = end;
        self.transfer = Some(t);
        Ok(end)
    }

    /// Reads stored patch bytes at `offset` into `buf`.
    pub async fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        self.flash
            .read(Self::UNIT + offset, buf)
            .await
            .map_err(staging)
    }

    /// Whether the stored patch matches the CRC-32 it was begun with,
    /// read back through `buf`.
    #[inline(never)]
    pub async fn check(&mut self, buf: &mut [u8]) -> Result<bool, FlashError> {
        let Some(t) = self.transfer.filter(|t| t.received == t.size) else {
            return Ok(false);
        };
        let mut c = Crc32::new();
        let mut at = 0;
        while at < t.size && !buf.is_empty() {
            let n = (buf.len() as u32).min(t.size - at) as usize;
            let nr = n.next_multiple_of(F::READ_SIZE).min(buf.len());
            self.flash
                .read(Self::UNIT + at, &mut buf[..nr])
                .await
                .map_err(staging)?;
            c.update(&buf[..n]);
            at += n as u32;
        }
        Ok(c.value() == t.crc32)
    }

    /// Forgets the transfer (erases the header unit).
    pub async fn clear(&mut self) -> Result<(), FlashError> {
        self.transfer = None;
        self.flash.erase(0, Self::UNIT).await.map_err(staging)
    }

    /// Gives the flash back.
    pub fn into_inner(self) -> F {
        self.flash
    }
}

/// What a device answers to `msg`, with its patch staged in `staging`.
#[io]
pub async fn handle<F: NorFlash>(
    staging: &mut Staging<F>,
    msg: &crate::proto::HostMsg<'_>,
) -> Action {
    let stored = match *msg {
        crate::proto::HostMsg::Hello => return Action::Announce,
        crate::proto::HostMsg::Component { component } => return Action::Describe(component),
        crate::proto::HostMsg::Begin { size, crc32 } => staging.begin(size, crc32).await,
        crate::proto::HostMsg::Chunk { offset, data } => staging.write(offset, data).await,
    };
    match stored {
        Ok(offset) => Action::Ack {
            offset,
            complete: staging.complete(),
        },
        Err(StageError::Offset { expected }) => Action::Ack {
            offset: expected,
            complete: staging.complete(),
        },
        Err(StageError::TooLarge { .. }) => {
            Action::Fail(Verdict::Error, "the patch is larger than the staging area")
        }
        Err(StageError::NotStarted) => Action::Fail(Verdict::Error, "patch data before Begin"),
        Err(StageError::Length) => Action::Fail(Verdict::Error, "a chunk has a bad length"),
        Err(StageError::Flash(_)) => Action::Fail(Verdict::Error, "the staging flash failed"),
    }
}

/// Hands the patch stored in `staging` to `feed` (an applier's or an
/// update's `feed`), read through `buf` (its length rounded down to a
/// multiple of 4 bytes, or of the flash's read size if larger; at least
/// one such multiple), and calls `progress` with the bytes
/// fed so far after each piece. The patch must be complete
/// ([`Staging::complete`]); the caller then calls the applier's `finish`.
#[io]
pub async fn feed_staged<F, E>(
    staging: &mut Staging<F>,
    buf: &mut [u8],
    feed: impl AsyncFnMut(&[u8]) -> Result<Status, E>,
    progress: impl FnMut(u32),
) -> Result<(), E>
where
    F: NorFlash,
    E: From<ApplyError> + From<FlashError>,
{
    feed_staged_from(staging, 0, buf, feed, progress).await
}

/// [`feed_staged`] from patch offset `from` on (an update continued from a
/// checkpoint, [`crate::slots::Slots::resume_or_begin`]); `progress` counts
/// from the start of the patch.
#[io]
pub async fn feed_staged_from<F, E>(
    staging: &mut Staging<F>,
    from: u32,
    buf: &mut [u8],
    mut feed: impl AsyncFnMut(&[u8]) -> Result<Status, E>,
    mut progress: impl FnMut(u32),
) -> Result<(), E>
where
    F: NorFlash,
    E: From<ApplyError> + From<FlashError>,
{
    let size = staging.resume().map_or(0, |r| r.size);
    let align = F::READ_SIZE.max(4);
    let step = (buf.len() / align * align) as u32;
    if !staging.complete() || step == 0 || from > size {
        return Err(ApplyError::Truncated.into());
    }
    // Reads start at a multiple of the read size; the bytes before `from`
    // in the first piece are not fed.
    let mut at = from - from % align as u32;
    while at < size {
        let n = step.min(size - at) as usize;
        let nr = n.next_multiple_of(align);
        staging.read(at, &mut buf[..nr]).await?;
        let skip = from.saturating_sub(at) as usize;
        feed(&buf[skip..n]).await?;
        at += n as u32;
        progress(at);
    }
    Ok(())
}

//! The state area: an append-only log of CRC-protected records in two
//! banks (see the layout in the parent module's docs).
//!
//! Rules that make every power cut harmless:
//! - records are only appended; a record is valid only if its CRC holds,
//!   and scanning a bank stops at the first record that is not valid;
//! - the first record a session appends goes into a freshly erased bank
//!   (after a reset nobody knows whether a write was torn just past the
//!   last valid record), and so does a record that does not fit;
//! - a fresh bank starts with a copy of the newest boot record, so the
//!   bank that is erased next never holds the only copy of the boot state;
//! - of the two banks, the one erased is never the one holding the newest
//!   checkpoint of the current state (that bank also holds a boot record
//!   of the same generation, since a bank starts with one).

use super::{io, NorFlash};
use crate::crc32::Crc32;
use crate::error::{FlashError, FlashRole, SlotError as Error};
use crate::slots::record::{
    boot_record_len, CheckpointAt, Encoded, BASE, BLOCK, HEADER_LEN, KIND_BOOT, KIND_CHECKPOINT,
    PIECE, RECORD_MAGIC, RECORD_VERSION,
};
use crate::slots::{align_for, aligned, BootState, Image, Slot, MAX_RECORD_ALIGN};
use crate::snapshot::{Field, Fields, SMALL};

/// The state area and what its scan found, for `N` components.
pub(crate) struct Store<S, const N: usize> {
    pub(crate) flash: S,
    bank_size: u32,
    /// The newest valid boot record, and the bank it is in.
    pub(crate) current: Option<(BootState<N>, u8)>,
    /// The sequence number of `current`.
    current_seq: u32,
    /// The newest valid checkpoint of `current`'s generation, and its bank.
    pub(crate) checkpoint: Option<(CheckpointAt, u8)>,
    /// The highest sequence number seen or written.
    seq: u32,
    /// Append position: bank and offset in the state area; `None` until
    /// this session has started a bank.
    next: Option<(u8, u32)>,
}

/// What appending a record changes of a [`Store`]: its flash, the append
/// position and the sequence number.
struct Log<'a, S> {
    flash: &'a mut S,
    bank_size: u32,
    next: &'a mut Option<(u8, u32)>,
    seq: &'a mut u32,
}

/// The fields of a record header.
struct Header {
    kind: u8,
    len: u32,
    seq: u32,
    gen: u32,
}

type Res<T> = Result<T, Error>;

#[io]
impl<S: NorFlash, const N: usize> Store<S, N> {
    /// Records' alignment here (offsets and lengths).
    const ALIGN: usize = align_for(S::WRITE_SIZE, S::READ_SIZE);

    /// Scans the state area; [`Error::StateArea`] if it cannot hold two
    /// banks of at least `min_bank` bytes each.
    pub(crate) async fn open(flash: S, min_bank: u32) -> Res<Self> {
        let mut store = Self::unscanned(flash, min_bank)?;
        store.scan().await?;
        Ok(store)
    }

    /// The store of `flash`, not scanned yet ([`Store::scan`] next):
    /// a caller that keeps the store in a larger value scans it where it
    /// lies, with no copy of it on the stack under the scan.
    pub(crate) fn unscanned(flash: S, min_bank: u32) -> Res<Self> {
        let erase = S::ERASE_SIZE as u32;
        let bank_size = (flash.capacity() as u32 / 2) / erase * erase;
        if bank_size < min_bank {
            return Err(Error::StateArea);
        }
        Ok(Store {
            flash,
            bank_size,
            current: None,
            current_seq: 0,
            checkpoint: None,
            seq: 0,
            next: None,
        })
    }

    /// The newest boot state.
    pub(crate) fn boot(&self) -> Option<BootState<N>> {
        self.current.map(|(r, _)| r)
    }

    /// The newest boot state, where it is kept (no copy on the stack).
    pub(crate) fn current(&self) -> Option<&BootState<N>> {
        self.current.as_ref().map(|(r, _)| r)
    }

    /// Room for a record of `len` bytes: in the bank this session writes,
    /// or in a freshly erased one (which then starts with a copy of the
    /// boot record if `copy_boot`). Returns its offset.
    async fn place(&mut self, len: u32, copy_boot: bool) -> Res<u32> {
        if let Some((bank, next)) = self.next {
            if next + len <= (bank as u32 + 1) * self.bank_size {
                return Ok(next);
            }
        }
        let keep = match (self.checkpoint, self.current) {
            (Some((_, b)), _) | (None, Some((_, b))) => b,
            (None, None) => 1,
        };
        let fresh = 1 - keep;
        let start = fresh as u32 * self.bank_size;
        self.next = None;
        self.flash
            .erase(start, start + self.bank_size)
            .await
            .map_err(FlashError::of(FlashRole::State))?;
        self.next = Some((fresh, start));
        if copy_boot {
            self.copy_boot(start).await?;
        }
        match self.next {
            Some((_, next)) if next + len <= start + self.bank_size => Ok(next),
            _ => Err(Error::StateArea),
        }
    }

    /// Appends a boot record (one write for up to two components). A
    /// record of a new generation makes the checkpoints of the old one
    /// stale.
    pub(crate) async fn write_boot(&mut self, rec: &BootState<N>) -> Res<()> {
        let len = aligned(boot_record_len(N), Self::ALIGN);
        let at = self.place(len as u32, false).await?;
        self.put_boot(at, rec).await
    }

    /// Writes a copy of the newest boot record at `at` (the start of a
    /// fresh bank, or where [`Store::place`] found room for a new state
    /// made in place), from where it is kept (a copy on the stack would
    /// lie under the record's write buffer).
    #[inline(never)]
    async fn copy_boot(&mut self, at: u32) -> Res<()> {
        let Store {
            flash,
            bank_size,
            current,
            current_seq,
            seq,
            next,
            ..
        } = self;
        let Some((rec, bank)) = current else {
            return Ok(());
        };
        let len = aligned(boot_record_len(N), Self::ALIGN);
        let mut body = Encoded {
            state: &*rec,
            buf: [0; PIECE],
        };
        let log = Log {
            flash,
            bank_size: *bank_size,
            next,
            seq,
        };
        Self::append(log, at, KIND_BOOT, len, rec.gen, &mut body).await?;
        *bank = (at / *bank_size) as u8;
        *current_seq = *seq;
        Ok(())
    }

    /// Writes a boot record at `at` (where [`Store::place`] found room).
    #[inline(never)]
    async fn put_boot(&mut self, at: u32, rec: &BootState<N>) -> Res<()> {
        let len = aligned(boot_record_len(N), Self::ALIGN);
        let mut body = Encoded {
            state: rec,
            buf: [0; PIECE],
        };
        self.write_record(at, KIND_BOOT, len, rec.gen, &mut body)
            .await?;
        if self.current.is_none_or(|(c, _)| c.gen != rec.gen) {
            self.checkpoint = None;
        }
        self.current = Some((*rec, (at / self.bank_size) as u8));
        self.current_seq = self.seq;
        Ok(())
    }

    /// Says in the boot record that `slot` of `component` holds `image`
    /// ([`Image::NONE`]: no image to take its word for): one record of the
    /// next generation, which also makes the newest checkpoint stale.
    /// Nothing is written if the record says so already and there is no
    /// checkpoint, or while on trial. An update forgets the image of the
    /// slot it writes before its first write, and names the image it read
    /// back there when it finishes: a record names an image in an
    /// inactive slot only if the slot holds exactly that image, which is
    /// what lets the next update take the record's word for it
    /// (`crate::Applier::vouch_target_slot`).
    pub(crate) async fn name_slot(&mut self, component: u8, slot: Slot, image: &Image) -> Res<()> {
        let Some((rec, _)) = self.current.as_mut().filter(|(r, _)| !r.trial) else {
            return Ok(());
        };
        let Some(c) = rec.components.get_mut(component as usize) else {
            return Ok(());
        };
        let i = slot.index();
        if c.images[i] == *image && self.checkpoint.is_none() {
            return Ok(());
        }
        // The next state is made where the current one is kept (a copy
        // would lie on the stack under the record's write, on an update's
        // path), and put back if it cannot be written.
        let was = core::mem::replace(&mut c.images[i], *image);
        rec.gen = rec.gen.wrapping_add(1);
        let written = self.put_current().await;
        if let (Err(_), Some((rec, _))) = (&written, self.current.as_mut()) {
            rec.gen = rec.gen.wrapping_sub(1);
            rec.components[component as usize].images[i] = was;
        }
        written
    }

    /// Appends the current boot state, changed in place to a new
    /// generation, as a boot record: its checkpoints are stale.
    #[inline(never)]
    async fn put_current(&mut self) -> Res<()> {
        let len = aligned(boot_record_len(N), Self::ALIGN);
        let at = self.place(len as u32, false).await?;
        self.copy_boot(at).await?;
        self.checkpoint = None;
        Ok(())
    }

    /// Makes the newest checkpoint stale, if there is one: a boot record
    /// of the same state and the next generation (checkpoints belong to
    /// the generation they were written in), so that after a reset
    /// nothing continues it (after an update continued from it failed:
    /// `proto::device`).
    #[cfg(feature = "proto")]
    pub(crate) async fn forget_checkpoint(&mut self) -> Res<()> {
        // The same state at the next generation, made in place as
        // `name_slot` makes it (no copy of the state on the stack): slot
        // A of component 0 named with the image it already has.
        let image = match self.current() {
            Some(rec) if self.checkpoint.is_some() && !rec.trial => match rec.components.first() {
                Some(c) => c.images[0],
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        self.name_slot(0, Slot::A, &image).await
    }

    /// Writes a record of `kind` and `len` bytes at `at`, its body the
    /// fields of `body`, padded with 0xFF up to the CRC (any
    /// value does: the CRC covers it, and it is written into erased flash,
    /// so it programs on flash erased to 0x00 as well).
    async fn write_record(
        &mut self,
        at: u32,
        kind: u8,
        len: usize,
        gen: u32,
        body: &mut dyn Fields,
    ) -> Res<()> {
        let log = Log {
            flash: &mut self.flash,
            bank_size: self.bank_size,
            next: &mut self.next,
            seq: &mut self.seq,
        };
        Self::append(log, at, kind, len, gen, body).await
    }

    /// [`Store::write_record`] over the parts of the store it changes. Not
    /// inlined: its write buffer is on the stack only while it runs.
    #[inline(never)]
    async fn append(
        log: Log<'_, S>,
        at: u32,
        kind: u8,
        len: usize,
        gen: u32,
        body: &mut dyn Fields,
    ) -> Res<()> {
        *log.seq = log.seq.saturating_add(1);
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&RECORD_MAGIC);
        h[4] = kind;
        h[5] = RECORD_VERSION;
        h[6..8].copy_from_slice(&(len as u16).to_le_bytes());
        h[8..12].copy_from_slice(&log.seq.to_le_bytes());
        h[12..16].copy_from_slice(&gen.to_le_bytes());
        let bank = (at / log.bank_size) as u8;
        *log.next = None;
        let mut w = RecordWriter {
            flash: log.flash,
            at,
            end: at + len as u32 - 4,
            align: Self::ALIGN,
            buf: [0xFF; CHUNK],
            fill: 0,
            crc: Crc32::new(),
            err: None,
        };
        w.push(&h).await;
        let mut i = 0;
        while let Some((_, f)) = body.field(i) {
            w.push_field(&f).await;
            i += 1;
        }
        w.finish().await?;
        *log.next = Some((bank, at + len as u32));
        Ok(())
    }

    /// Appends a checkpoint of `len` bytes (header and CRC included) for
    /// the current generation, its body the fields of `body` (what does
    /// not fit is dropped).
    pub(crate) async fn write_checkpoint(&mut self, len: usize, body: &mut dyn Fields) -> Res<()> {
        let gen = self.current.map(|(c, _)| c.gen).unwrap_or(0);
        let at = self.place(len as u32, true).await?;
        let bank = (at / self.bank_size) as u8;
        self.write_record(at, KIND_CHECKPOINT, len, gen, body)
            .await?;
        let seq = self.seq;
        self.checkpoint = Some((
            CheckpointAt {
                seq,
                at,
                len: len as u32,
            },
            bank,
        ));
        Ok(())
    }

    /// A reader over the body of the current checkpoint (after its
    /// header, up to its CRC, which the scan checked); `None` if there is
    /// no checkpoint.
    pub(crate) fn checkpoint_reader(&mut self) -> Option<RecordReader<'_, S>> {
        let (ck, _) = self.checkpoint?;
        Some(record_reader(&mut self.flash, ck.at, ck.len))
    }

    /// Forgets the checkpoint (it did not load); the next record goes to a
    /// fresh bank as usual.
    pub(crate) fn drop_checkpoint(&mut self) {
        self.checkpoint = None;
    }

    #[inline(never)]
    pub(crate) async fn scan(&mut self) -> Res<()> {
        let mut best_ck: Option<(CheckpointAt, u8, u32)> = None;
        for bank in 0..2u8 {
            let start = bank as u32 * self.bank_size;
            let end = start + self.bank_size;
            let mut at = start;
            while let Some(h) = self.valid_record(at, end).await? {
                self.seq = self.seq.max(h.seq);
                if h.kind == KIND_BOOT {
                    self.scan_boot(at, &h, bank).await?;
                } else if best_ck.is_none_or(|(c, _, _)| c.seq < h.seq) {
                    let ck = CheckpointAt {
                        seq: h.seq,
                        at,
                        len: h.len,
                    };
                    best_ck = Some((ck, bank, h.gen));
                }
                at += h.len;
            }
        }
        self.checkpoint = match (best_ck, self.current) {
            (Some((ck, bank, gen)), Some((cur, _))) if gen == cur.gen => Some((ck, bank)),
            _ => None,
        };
        Ok(())
    }

    /// Reads the boot record at `at` (its header `h`, checked) and keeps
    /// its state if it is the newest yet. Not inlined, as
    /// [`Store::valid_record`]: the scan's frame holds neither one's
    /// buffers.
    #[inline(never)]
    async fn scan_boot(&mut self, at: u32, h: &Header, bank: u8) -> Res<()> {
        let mut reader = record_reader(&mut self.flash, at, h.len);
        let rec = reader.boot_state::<N>(h.len as usize, h.gen).await;
        if let Some(e) = reader.err {
            return Err(FlashError::new(FlashRole::State, e).into());
        }
        if let Some(r) = rec {
            if self.current.is_none() || self.current_seq < h.seq {
                self.current = Some((r, bank));
                self.current_seq = h.seq;
            }
        }
        Ok(())
    }

    /// The header of the valid record at `at` (bank ends at `end`), if
    /// there is one: magic, version, kind, length and CRC all hold.
    #[inline(never)]
    async fn valid_record(&mut self, at: u32, end: u32) -> Res<Option<Header>> {
        let a = Self::ALIGN;
        if at + a as u32 > end {
            return Ok(None);
        }
        // The header is in the record's first block, read whole.
        let mut block = [0u8; MAX_RECORD_ALIGN];
        let buf = &mut block[..a];
        self.flash
            .read(at, buf)
            .await
            .map_err(FlashError::of(FlashRole::State))?;
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&buf[..HEADER_LEN]);
        let len = u16::from_le_bytes([h[6], h[7]]) as u32;
        let kind = h[4];
        if h[..4] != RECORD_MAGIC
            || h[5] != RECORD_VERSION
            || !(kind == KIND_BOOT || kind == KIND_CHECKPOINT)
            || len < (HEADER_LEN + 4) as u32
            || !len.is_multiple_of(a as u32)
            || at + len > end
        {
            return Ok(None);
        }
        let mut crc = Crc32::new();
        let body_end = at + len - 4;
        let mut pos = at;
        loop {
            let n = (body_end.saturating_sub(pos) as usize).min(a);
            crc.update(&buf[..n]);
            pos += a as u32;
            if pos >= at + len {
                break;
            }
            self.flash
                .read(pos, buf)
                .await
                .map_err(FlashError::of(FlashRole::State))?;
        }
        let stored = u32::from_le_bytes([buf[a - 4], buf[a - 3], buf[a - 2], buf[a - 1]]);
        if stored != crc.value() {
            return Ok(None);
        }
        let u = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Ok(Some(Header {
            kind,
            len,
            seq: u(8),
            gen: u(12),
        }))
    }
}

/// Bytes a checkpoint is written in at a time: its buffer is on the stack
/// under the decoder's frames, so it is small.
const CHUNK: usize = 64;
const _: () = assert!(CHUNK.is_multiple_of(MAX_RECORD_ALIGN));

/// Streams a record to flash in `CHUNK`-byte writes, padding its end with
/// 0xFF up to the CRC.
struct RecordWriter<'a, S: NorFlash> {
    flash: &'a mut S,
    /// Flash offset of `buf[0]`.
    at: u32,
    /// Where the CRC goes.
    end: u32,
    /// Record alignment: every write is a multiple of it.
    align: usize,
    buf: [u8; CHUNK],
    fill: usize,
    crc: Crc32,
    err: Option<S::Error>,
}

#[io]
impl<S: NorFlash> RecordWriter<'_, S> {
    async fn push(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            let room = (self.end - self.at) as usize - self.fill;
            let n = b.len().min(CHUNK - self.fill).min(room);
            if n == 0 {
                return; // past the CRC: dropped
            }
            self.buf[self.fill..self.fill + n].copy_from_slice(&b[..n]);
            self.crc.update(&b[..n]);
            self.fill += n;
            b = &b[n..];
            if self.fill == CHUNK {
                self.flush().await;
            }
        }
    }

    /// Adds the encoding of `f`.
    async fn push_field(&mut self, f: &Field<'_>) {
        let (mut at, len) = (0, f.len());
        while at < len {
            let room = ((self.end - self.at) as usize - self.fill).min(CHUNK - self.fill);
            if room == 0 {
                return; // past the CRC: dropped
            }
            let out = &mut self.buf[self.fill..self.fill + room];
            let n = f.get(at, out);
            self.crc.update(&out[..n]);
            self.fill += n;
            at += n;
            if self.fill == CHUNK {
                self.flush().await;
            }
        }
    }

    async fn flush(&mut self) {
        let n = self.fill.div_ceil(self.align) * self.align;
        if self.err.is_none() && n > 0 {
            if let Err(e) = self.flash.write(self.at, &self.buf[..n]).await {
                self.err = Some(e);
            }
        }
        // Moves on even after an error, so that the record still ends.
        self.at += n as u32;
        self.fill = 0;
        self.buf.fill(0xFF);
    }

    /// Pads and closes the record. By reference: moving the writer would
    /// copy its buffer on the stack.
    async fn finish(&mut self) -> Result<(), Error> {
        // Pad up to the CRC, then the CRC closes the record.
        while self.at + (self.fill as u32) < self.end {
            let pad = [0xFFu8; 32];
            let n = ((self.end - self.at) as usize - self.fill).min(pad.len());
            self.push(&pad[..n]).await;
        }
        // `end` is 4 bytes short of an alignment boundary (and `CHUNK` a
        // multiple of the alignment), so the CRC always fits in the chunk.
        let crc = self.crc.value().to_le_bytes();
        if let Some(at) = self.buf.get_mut(self.fill..self.fill + 4) {
            at.copy_from_slice(&crc);
            self.fill += 4;
        }
        self.flush().await;
        match self.err.take() {
            Some(e) => Err(FlashError::new(FlashRole::State, e).into()),
            None => Ok(()),
        }
    }
}

/// A reader over the body of the record of `len` bytes at `at` (after its
/// header, up to its CRC).
fn record_reader<S: NorFlash>(flash: &mut S, at: u32, len: u32) -> RecordReader<'_, S> {
    RecordReader {
        flash,
        pos: at + HEADER_LEN as u32,
        end: at + len - 4,
        buf: [0; MAX_RECORD_ALIGN],
        base: u32::MAX,
        err: None,
    }
}

/// Reads a record's body front to back, in reads of the record alignment.
pub(crate) struct RecordReader<'a, S: NorFlash> {
    flash: &'a mut S,
    pos: u32,
    end: u32,
    buf: [u8; MAX_RECORD_ALIGN],
    /// Flash offset `buf` holds (`u32::MAX`: nothing).
    base: u32,
    /// The first flash error met.
    pub(crate) err: Option<S::Error>,
}

#[io]
impl<S: NorFlash> RecordReader<'_, S> {
    /// Fills `out` with the next bytes; `false` past the end or on a flash
    /// error.
    pub(crate) async fn read(&mut self, out: &mut [u8]) -> bool {
        for o in out.iter_mut() {
            if self.pos >= self.end || self.err.is_some() {
                return false;
            }
            let a = align_for(S::WRITE_SIZE, S::READ_SIZE);
            let base = self.pos - self.pos % a as u32;
            if base != self.base {
                if let Err(e) = self.flash.read(base, &mut self.buf[..a]).await {
                    self.err = Some(e);
                    return false;
                }
                self.base = base;
            }
            *o = self.buf[(self.pos - base) as usize % a];
            self.pos += 1;
        }
        true
    }

    /// Reads the fields of `body`, in order; `false` past the end, on a
    /// flash error, or if a field refuses its bytes.
    pub(crate) async fn read_fields(&mut self, body: &mut dyn Fields) -> bool {
        let mut i = 0;
        while let Some((_, mut f)) = body.field(i) {
            let len = f.len();
            let mut b = [0u8; 32];
            if f.in_pieces() {
                let mut at = 0;
                while at < len {
                    let n = (len - at).min(b.len());
                    if !self.read(&mut b[..n]).await {
                        return false;
                    }
                    f.set(at, &b[..n]);
                    at += n;
                }
            } else if !self.read(&mut b[..len.min(SMALL)]).await || !f.set(0, &b[..len]) {
                return false;
            }
            i += 1;
        }
        true
    }

    /// The boot state in a boot record of `len` bytes of generation `gen`
    /// (header and CRC checked), if its fields are ones a writer makes.
    async fn boot_state<const N: usize>(&mut self, len: usize, gen: u32) -> Option<BootState<N>> {
        // The head, zeros after it (a record from before security
        // counters has a shorter one).
        let mut head = [0u8; BASE];
        if !self.read(&mut head[..BootState::<N>::head_len(len)]).await {
            return None;
        }
        let (mut s, count) = BootState::<N>::parse_head(len, gen, &head)?;
        for k in 1..count.min(N) {
            let mut b = [0u8; BLOCK];
            if !self.read(&mut b).await {
                return None;
            }
            s.parse_block(k, &b)?;
        }
        Some(s)
    }
}

//! The streaming applier: patch bytes in, target image out.
//!
//! ```text
//! feed(chunk) ─► container header ─► entry length ─► entry header ─┬─► body: decode ─► write target
//!                                        ▲                         │        │
//!                                        │                         └─► skip body (CRC checked)
//!                                        └──────────── next entry ◄─────────┘
//! ```
//!
//! For each entry header, in this order:
//! 1. if the source partition already holds the entry's target: the
//!    result is "already installed", nothing is written;
//! 2. if the source partition does not hold the entry's source (size,
//!    CRC-32, then MD5): the entry is skipped;
//! 3. if the target partition already holds the target: "already
//!    installed", nothing is written;
//! 4. otherwise the body is decoded into the target partition, which is
//!    then read back and checked against the target's SHA-256.
//!
//! Every entry's header and body CRC is checked, applied or not, and the
//! result is given once the whole patch has been fed.
//!
//! RAM is `size_of::<Applier<..>>()`: nothing grows with the image or the
//! patch. The write buffer is `W` bytes and the read cache `R` bytes.

pub(crate) mod io;
mod resume;

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

use crate::codec::{ByteSource, Decoder, DecoderState, Model, Op, Params, CODEC_RC2, MAX_OP_INPUT};
use crate::crc32::Crc32;
use crate::error::Error;
use crate::format::{self, EntryHeader, TargetId, CONTAINER_HEADER_LEN, MAX_HEADER_LEN};
use io::{align_up, crc_of, crc_of_prefixes, fits, md5_of, sha256_of, Cached, ReadCache, Writer};

/// Bytes of the input buffer: it holds an entry header, then serves as the
/// ring the body is decoded from.
const BUF: usize = MAX_HEADER_LEN;
const _: () = assert!(BUF >= MAX_OP_INPUT + 8 && BUF <= u16::MAX as usize);

pub(crate) use resume::SAVED_LEN;

/// What a finished patch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// The target image was written and verified.
    Applied,
    /// The target image was already there; nothing was written.
    AlreadyInstalled,
}

/// What [`Applier::feed`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status {
    /// The patch is not complete yet: feed more.
    NeedMore,
    /// The whole patch has been read; this is its outcome.
    Done(Outcome),
}

/// How far the applier has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Progress {
    /// Patch bytes consumed (saturating at 4 GiB).
    pub consumed: u32,
    /// Target bytes produced by the entry being applied.
    pub written: u32,
    /// Target size of the entry being applied (0 before one is chosen).
    pub target_size: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Container,
    EntryLen,
    EntryHeader,
    Body,
    Skip,
    Done,
    Failed,
}

/// Work left over from the last operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    None,
    Copy(u32),
    Lit(u32),
}

/// The input ring, lent to the range decoder.
struct Ring<'a> {
    buf: &'a [u8; BUF],
    head: &'a mut u16,
    len: &'a mut u16,
}

impl ByteSource for Ring<'_> {
    #[inline]
    fn next(&mut self) -> Option<u8> {
        if *self.len == 0 {
            return None;
        }
        let b = self.buf[*self.head as usize % BUF];
        *self.head = ((*self.head as usize + 1) % BUF) as u16;
        *self.len -= 1;
        Some(b)
    }
}

/// Applies a patch, fed in chunks of any size, from the image in `source`
/// into `target`.
///
/// `W` is the write buffer and `R` the read cache, in bytes; both must be
/// multiples of the flashes' read size, and `W` of the target's write
/// size (checked at compile time).
pub struct Applier<S, T, const W: usize = 64, const R: usize = 64> {
    source: S,
    target: T,
    phase: Phase,
    entries_left: u16,
    outcome: Option<Outcome>,
    result: TargetId,
    consumed: u32,
    buf: [u8; BUF],
    head: u16,
    len: u16,
    need: u16,
    entry: EntryHeader,
    body_left: u32,
    body_crc: Crc32,
    started: bool,
    rc: DecoderState,
    model: Model,
    cursor: u32,
    out: u32,
    prev_byte: u8,
    job: Job,
    writer: Writer<W>,
    cache: ReadCache<R>,
    /// Target bytes between checkpoints (0: none).
    ckpt_every: u32,
    /// Where the next checkpoint is due.
    ckpt_next: u32,
    /// Decoding stopped at a checkpoint.
    paused: bool,
    #[cfg(feature = "sign")]
    gate: Gate,
}

/// The signature policy and the running body digest (feature `sign`).
#[cfg(feature = "sign")]
struct Gate {
    /// Entries must be signed by this key.
    key: Option<[u8; crate::sign::PUBLIC_KEY_LEN]>,
    /// ... and have at least this security counter.
    min_counter: u32,
    /// The body digest the current entry's signed header promises.
    want: Option<[u8; 32]>,
    /// The current entry's security counter.
    counter: u32,
    /// The security counter of the entry the outcome refers to.
    result_counter: u32,
    body: sha2::Sha256,
}

#[cfg(feature = "sign")]
impl Gate {
    /// Checks a just-parsed entry header (its `H` bytes) against the policy.
    fn check<E>(&mut self, raw: &[u8]) -> Res<(), E> {
        use sha2::Digest;
        self.want = None;
        let t = crate::sign::Trust::of(raw)?;
        self.counter = t.counter;
        let Some(key) = &self.key else {
            return Ok(());
        };
        let (Some(sig), Some(body)) = (t.signature, t.body_sha256) else {
            return Err(Error::Unsigned);
        };
        if !crate::sign::verify(key, &t.signed_digest(raw), &sig) {
            return Err(Error::BadSignature);
        }
        if t.counter < self.min_counter {
            return Err(Error::Rollback {
                counter: t.counter,
                min: self.min_counter,
            });
        }
        self.want = Some(body);
        self.body = sha2::Sha256::new();
        Ok(())
    }

    /// Checks the body digest once the whole body has been read.
    fn check_body<E>(&mut self) -> Res<(), E> {
        use sha2::Digest;
        match self.want {
            Some(w) if <[u8; 32]>::from(self.body.finalize_reset()) != w => Err(Error::BodyDigest),
            _ => Ok(()),
        }
    }
}

type Res<T, E> = Result<T, Error<E>>;

impl<S, T, const W: usize, const R: usize> Applier<S, T, W, R>
where
    T: NorFlash,
    S: ReadNorFlash<Error = T::Error>,
{
    /// An applier that reads the running image from `source` and writes the
    /// new one into `target`.
    pub fn new(source: S, target: T) -> Self {
        const {
            assert!(
                W >= T::WRITE_SIZE
                    && W.is_multiple_of(T::WRITE_SIZE)
                    && W.is_multiple_of(T::READ_SIZE)
            );
            assert!(W <= u16::MAX as usize);
            assert!(
                R >= S::READ_SIZE
                    && R.is_multiple_of(S::READ_SIZE)
                    && R.is_multiple_of(T::READ_SIZE)
            );
            assert!(T::ERASE_SIZE % T::WRITE_SIZE == 0);
        };
        Applier {
            source,
            target,
            phase: Phase::Container,
            entries_left: 0,
            outcome: None,
            result: TargetId::default(),
            consumed: 0,
            buf: [0; BUF],
            head: 0,
            len: 0,
            need: CONTAINER_HEADER_LEN as u16,
            entry: EntryHeader::default(),
            body_left: 0,
            body_crc: Crc32::new(),
            started: false,
            rc: DecoderState::default(),
            model: Model::new(Params { lc: 0, lp: 0 }),
            cursor: 0,
            out: 0,
            prev_byte: 0,
            job: Job::None,
            writer: Writer::new(),
            cache: ReadCache::new(),
            ckpt_every: 0,
            ckpt_next: 0,
            paused: false,
            #[cfg(feature = "sign")]
            gate: Gate {
                key: None,
                min_counter: 0,
                want: None,
                counter: 0,
                result_counter: 0,
                body: sha2::Digest::new(),
            },
        }
    }

    /// Accepts only entries signed by `key` (an Ed25519 public key) whose
    /// security counter is at least `min_counter`: each entry header's
    /// signature is checked before anything of it is used, and the body
    /// against its signed SHA-256 before the target is read back. Call it
    /// before the first [`Applier::feed`].
    #[cfg(feature = "sign")]
    pub fn require_signature(&mut self, key: [u8; crate::sign::PUBLIC_KEY_LEN], min_counter: u32) {
        self.gate.key = Some(key);
        self.gate.min_counter = min_counter;
    }

    /// The security counter of the entry the outcome refers to, once there
    /// is an outcome (0 for an entry without one).
    #[cfg(feature = "sign")]
    pub fn result_counter(&self) -> Option<u32> {
        self.outcome.map(|_| self.gate.result_counter)
    }

    /// Gives the flashes back.
    pub fn into_parts(self) -> (S, T) {
        (self.source, self.target)
    }

    /// The image the outcome refers to (the target of the entry that was
    /// applied or found installed), once there is an outcome.
    pub fn result_target(&self) -> Option<TargetId> {
        self.outcome.map(|_| self.result)
    }

    /// How far the applier has come.
    pub fn progress(&self) -> Progress {
        let applying = self.phase == Phase::Body;
        Progress {
            consumed: self.consumed,
            written: if applying { self.out } else { 0 },
            target_size: if applying { self.entry.target.size } else { 0 },
        }
    }

    /// Takes the next chunk of the patch. The outcome never depends on how
    /// the patch is cut into chunks. After an error the applier refuses
    /// further input ([`Error::Failed`]).
    pub fn feed(&mut self, chunk: &[u8]) -> Res<Status, T::Error> {
        let mut chunk = chunk;
        loop {
            match self.feed_some(&mut chunk)? {
                Some(status) => return Ok(status),
                None => self.paused = false,
            }
        }
    }

    /// Takes bytes from the front of `chunk` until it is used up or a
    /// checkpoint is due; `None` in the second case (`chunk` then holds
    /// what is left, and the applier stays paused until called again).
    pub(crate) fn feed_some(&mut self, chunk: &mut &[u8]) -> Res<Option<Status>, T::Error> {
        if self.phase == Phase::Failed {
            return Err(Error::Failed);
        }
        self.paused = false;
        let r = self.run(chunk);
        if r.is_err() {
            self.phase = Phase::Failed;
        }
        r
    }

    /// Says that the patch has ended; returns its outcome, or
    /// [`Error::Truncated`] if it ended early.
    pub fn finish(&mut self) -> Res<Outcome, T::Error> {
        match (self.phase, self.outcome) {
            (Phase::Done, Some(o)) => Ok(o),
            (Phase::Failed, _) => Err(Error::Failed),
            _ => {
                self.phase = Phase::Failed;
                Err(Error::Truncated)
            }
        }
    }

    fn run(&mut self, chunk: &mut &[u8]) -> Res<Option<Status>, T::Error> {
        self.run_inner(chunk).map(|s| (!self.paused).then_some(s))
    }

    fn run_inner(&mut self, chunk: &mut &[u8]) -> Res<Status, T::Error> {
        loop {
            match self.phase {
                Phase::Done | Phase::Failed => {
                    return match (chunk.is_empty(), self.outcome) {
                        (true, Some(o)) => Ok(Status::Done(o)),
                        (true, None) => Err(Error::Failed),
                        (false, _) => Err(Error::TrailingData),
                    };
                }
                Phase::Container | Phase::EntryLen | Phase::EntryHeader => {
                    let want = self.need as usize - self.len as usize;
                    let n = want.min(chunk.len());
                    self.buf[self.len as usize..self.len as usize + n].copy_from_slice(&chunk[..n]);
                    self.len += n as u16;
                    self.consumed = self.consumed.saturating_add(n as u32);
                    *chunk = &chunk[n..];
                    if self.len < self.need {
                        return Ok(Status::NeedMore);
                    }
                    self.header_part()?;
                }
                Phase::Skip => {
                    let n = (self.body_left as usize).min(chunk.len());
                    self.body_crc.update(&chunk[..n]);
                    self.body_left -= n as u32;
                    self.consumed = self.consumed.saturating_add(n as u32);
                    *chunk = &chunk[n..];
                    if self.body_left > 0 {
                        return Ok(Status::NeedMore);
                    }
                    self.end_of_body()?;
                }
                Phase::Body => {
                    let n = (BUF - self.len as usize)
                        .min(self.body_left as usize)
                        .min(chunk.len());
                    let mut tail = (self.head as usize + self.len as usize) % BUF;
                    for &b in &chunk[..n] {
                        self.buf[tail] = b;
                        tail = (tail + 1) % BUF;
                    }
                    self.body_crc.update(&chunk[..n]);
                    #[cfg(feature = "sign")]
                    if self.gate.want.is_some() {
                        sha2::Digest::update(&mut self.gate.body, &chunk[..n]);
                    }
                    self.len += n as u16;
                    self.body_left -= n as u32;
                    self.consumed = self.consumed.saturating_add(n as u32);
                    *chunk = &chunk[n..];
                    self.decode()?;
                    if self.paused {
                        return Ok(Status::NeedMore);
                    }
                    if self.out == self.entry.target.size && self.started && self.job == Job::None {
                        // The coder uses up its body exactly; anything left is not ours.
                        if self.len != 0 || self.body_left != 0 {
                            return Err(Error::BodyInvalid);
                        }
                        self.writer.flush(&mut self.target).map_err(Error::Flash)?;
                        self.end_of_body()?;
                        continue;
                    }
                    if chunk.is_empty() {
                        return Ok(Status::NeedMore);
                    }
                }
            }
        }
    }

    /// A header piece is complete in `buf[..need]`.
    fn header_part(&mut self) -> Res<(), T::Error> {
        match self.phase {
            Phase::Container => {
                let mut b = [0u8; CONTAINER_HEADER_LEN];
                b.copy_from_slice(&self.buf[..CONTAINER_HEADER_LEN]);
                self.entries_left = format::parse_container(&b)?;
                self.start_entry();
            }
            Phase::EntryLen => {
                let h = u16::from_le_bytes([self.buf[0], self.buf[1]]);
                if !(format::MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&(h as usize)) {
                    return Err(format::HeaderError::Length.into());
                }
                self.phase = Phase::EntryHeader;
                self.need = h;
                self.len = 0;
            }
            _ => {
                let (entry, _) = EntryHeader::parse(&self.buf[..self.need as usize])?;
                #[cfg(feature = "sign")]
                self.gate.check(&self.buf[..self.need as usize])?;
                self.entry = entry;
                self.body_left = entry.body_len;
                self.body_crc = Crc32::new();
                self.len = 0;
                self.head = 0;
                self.phase = if self.outcome.is_some() {
                    Phase::Skip
                } else {
                    self.select()?
                };
            }
        }
        Ok(())
    }

    fn start_entry(&mut self) {
        self.phase = Phase::EntryLen;
        self.need = 2;
        self.len = 0;
    }

    /// Decides what to do with the entry whose header was just read.
    fn select(&mut self) -> Res<Phase, T::Error> {
        let e = self.entry;
        self.cache.invalidate();
        // The header is parsed, so the input buffer is free: the digest
        // passes read through it, in fewer and larger reads than the cache.
        let buf = &mut self.buf[..];
        let flash = Error::Flash;
        let (ts, ss) = (e.target.size, e.source.size);
        // One CRC pass serves both pre-checks: is the target already in
        // the source slot, and is the source the entry's source?
        let (t_fits, s_fits) = (fits(&self.source, ts), fits(&self.source, ss));
        let (t_crc, s_crc) = crc_of_prefixes(
            &mut self.source,
            buf,
            if t_fits { ts } else { 0 },
            if s_fits { ss } else { 0 },
        )
        .map_err(flash)?;
        if t_fits
            && t_crc == e.target.crc32
            && sha256_of(&mut self.source, buf, ts).map_err(flash)? == e.target.sha256
        {
            self.outcome = Some(Outcome::AlreadyInstalled);
            self.result = e.target;
            #[cfg(feature = "sign")]
            {
                self.gate.result_counter = self.gate.counter;
            }
            return Ok(Phase::Skip);
        }
        if !s_fits
            || s_crc != e.source.crc32
            || md5_of(&mut self.source, buf, ss).map_err(flash)? != e.source.md5
        {
            return Ok(Phase::Skip);
        }
        let params = match (e.codec, Params::from_byte(e.params)) {
            (CODEC_RC2, Some(p)) => p,
            _ => {
                return Err(Error::Codec {
                    codec: e.codec,
                    params: e.params,
                })
            }
        };
        let needed = align_up(ts as u64, T::ERASE_SIZE);
        if needed > self.target.capacity() as u64 {
            return Err(Error::TargetTooSmall {
                needed: needed.min(u32::MAX as u64) as u32,
                capacity: self.target.capacity().min(u32::MAX as usize) as u32,
            });
        }
        if crc_of(&mut self.target, buf, ts).map_err(flash)? == e.target.crc32
            && sha256_of(&mut self.target, buf, ts).map_err(flash)? == e.target.sha256
        {
            self.outcome = Some(Outcome::AlreadyInstalled);
            self.result = e.target;
            #[cfg(feature = "sign")]
            {
                self.gate.result_counter = self.gate.counter;
            }
            return Ok(Phase::Skip);
        }
        self.model = Model::new(params);
        self.started = false;
        self.cursor = 0;
        self.out = 0;
        self.prev_byte = 0;
        self.job = Job::None;
        self.writer = Writer::new();
        self.ckpt_next = self.ckpt_every;
        Ok(Phase::Body)
    }

    /// The body of the current entry has been read completely.
    fn end_of_body(&mut self) -> Res<(), T::Error> {
        if self.body_crc.value() != self.entry.body_crc32 {
            return Err(Error::BodyCrc);
        }
        if self.phase == Phase::Body {
            #[cfg(feature = "sign")]
            self.gate.check_body()?;
            // The body is used up (`len == 0`): the input buffer is free.
            let sha = sha256_of(&mut self.target, &mut self.buf, self.entry.target.size)
                .map_err(Error::Flash)?;
            if sha != self.entry.target.sha256 {
                return Err(Error::TargetMismatch);
            }
            self.outcome = Some(Outcome::Applied);
            self.result = self.entry.target;
            #[cfg(feature = "sign")]
            {
                self.gate.result_counter = self.gate.counter;
            }
        }
        self.entries_left -= 1;
        if self.entries_left > 0 {
            self.start_entry();
        } else if self.outcome.is_some() {
            self.phase = Phase::Done;
        } else {
            return Err(Error::NoSuitablePatch);
        }
        Ok(())
    }

    /// Runs `f` with a decoder over the input ring; an error if the ring ran
    /// dry, since everything decoded then is made up.
    fn decode_with<X>(
        &mut self,
        f: impl FnOnce(&mut Model, &mut Decoder<'_, Ring<'_>>) -> X,
    ) -> Res<X, T::Error> {
        let mut ring = Ring {
            buf: &self.buf,
            head: &mut self.head,
            len: &mut self.len,
        };
        let mut dec = Decoder {
            state: &mut self.rc,
            src: &mut ring,
            starved: false,
        };
        let x = f(&mut self.model, &mut dec);
        if dec.starved {
            return Err(Error::BodyInvalid);
        }
        Ok(x)
    }

    /// Decodes as far as the buffered input surely reaches.
    fn decode(&mut self) -> Res<(), T::Error> {
        let all_in = self.body_left == 0;
        let have = |s: &Self, n: usize| all_in || s.len as usize >= n;
        if !self.started {
            if !have(self, crate::codec::rc::INIT_BYTES) {
                return Ok(());
            }
            let mut ring = Ring {
                buf: &self.buf,
                head: &mut self.head,
                len: &mut self.len,
            };
            self.rc = DecoderState::start(&mut ring).ok_or(Error::BodyInvalid)?;
            self.started = true;
        }
        let size = self.entry.target.size;
        loop {
            if self.ckpt_every != 0
                && self.writer.len == 0
                && self.writer.flushed == self.ckpt_next
                && self.out < size
            {
                // A target erase unit is complete: stop for a checkpoint.
                self.ckpt_next = self.ckpt_next.saturating_add(self.ckpt_every);
                self.paused = true;
                return Ok(());
            }
            let left = size - self.out;
            match self.job {
                Job::Copy(n) => {
                    let k = self.copy_some(n)?;
                    self.job = if n > k { Job::Copy(n - k) } else { Job::None };
                }
                _ if left == 0 => return Ok(()),
                Job::Lit(n) => {
                    if !have(self, 8) {
                        return Ok(());
                    }
                    let (prev, pos) = (self.prev_byte, self.out);
                    let b = self.decode_with(|m, d| m.literal(d, prev, pos, 0))?;
                    self.job = if n > 1 { Job::Lit(n - 1) } else { Job::None };
                    self.emit(b)?;
                }
                Job::None => {
                    if !have(self, MAX_OP_INPUT) {
                        return Ok(());
                    }
                    let pos = self.out;
                    let op = self.decode_with(|m, d| m.op(d, pos, Op::Copy { len: 0 }))?;
                    self.start_op(op, left)?;
                }
            }
        }
    }

    /// Checks a decoded operation against the images and starts it.
    fn start_op(&mut self, op: Op, left: u32) -> Res<(), T::Error> {
        let reach = self.entry.source.size as u64 + self.out as u64;
        match op {
            Op::Copy { len } | Op::Seek { len, .. } | Op::Lit { len } if len > left => {
                Err(Error::BodyInvalid)
            }
            Op::Lit { len } => {
                self.job = Job::Lit(len);
                Ok(())
            }
            Op::Seek { delta, len } => {
                let c = self.cursor as i64 + delta;
                if c < 0 || c as u64 >= reach {
                    return Err(Error::BodyInvalid);
                }
                self.cursor = c as u32;
                self.job = Job::Copy(len);
                Ok(())
            }
            _ if self.cursor as u64 >= reach => Err(Error::BodyInvalid),
            Op::Copy { len } => {
                self.job = Job::Copy(len);
                Ok(())
            }
            Op::Diff { d } => {
                let s = self.virtual_byte(self.cursor)?;
                let b = self.model.diff_byte(s, d);
                self.cursor += 1;
                self.emit(b)
            }
        }
    }

    /// The byte at `pos` of the virtual source: the source image, then the
    /// target written so far. The caller keeps `pos < source size + out`.
    #[inline]
    fn virtual_byte(&mut self, pos: u32) -> Res<u8, T::Error> {
        let ss = self.entry.source.size;
        let b = if pos < ss {
            let limit = align_up(ss as u64, S::READ_SIZE) as u32;
            self.cache.at(Cached::Source, &mut self.source, pos, limit)
        } else {
            let (t, w) = (pos - ss, &self.writer);
            if t >= w.flushed {
                return Ok(w.buf[(t - w.flushed) as usize % W]);
            }
            self.cache
                .at(Cached::Target, &mut self.target, t, w.flushed)
        };
        Ok(b.map_err(Error::Flash)?.first().copied().unwrap_or(0))
    }

    /// Copies up to `n` (≥ 1) bytes from the cursor to the target, as many
    /// as one cached block and the write buffer allow; returns how many.
    fn copy_some(&mut self, n: u32) -> Res<u32, T::Error> {
        let ss = self.entry.source.size;
        let pos = self.cursor;
        let room = (self.writer.room() as u32).min(n);
        let piece = if pos < ss {
            let limit = align_up(ss as u64, S::READ_SIZE) as u32;
            self.cache.at(Cached::Source, &mut self.source, pos, limit)
        } else if pos - ss < self.writer.flushed {
            self.cache.at(
                Cached::Target,
                &mut self.target,
                pos - ss,
                self.writer.flushed,
            )
        } else {
            // From the write buffer itself, perhaps overlapping what it
            // produces: byte by byte.
            let b = self.virtual_byte(pos)?;
            self.cursor += 1;
            self.emit(b)?;
            return Ok(1);
        }
        .map_err(Error::Flash)?;
        let mut k = (piece.len() as u32).min(room);
        if pos < ss {
            // A copy from the source stops at its end, where the target begins.
            k = k.min(ss - pos);
        }
        let piece = &piece[..k as usize];
        if let Some(&last) = piece.last() {
            self.prev_byte = last;
        }
        self.writer
            .extend(&mut self.target, piece)
            .map_err(Error::Flash)?;
        self.cursor += k;
        self.out += k;
        Ok(k)
    }

    #[inline]
    fn emit(&mut self, b: u8) -> Res<(), T::Error> {
        self.out += 1;
        self.prev_byte = b;
        self.writer.push(&mut self.target, b).map_err(Error::Flash)
    }
}

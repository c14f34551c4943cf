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
//!    result is "already installed" ([`Found::Source`]), nothing is
//!    written;
//! 2. if the source partition does not hold the entry's source (size,
//!    CRC-32, then MD5): the entry is skipped;
//! 3. if the target partition already holds the target: "already
//!    installed" ([`Found::Target`]), nothing is written;
//! 4. otherwise the body is decoded into the target partition, which is
//!    then read back and checked against the target's SHA-256.
//!
//! Entries for another component than the applier's
//! ([`Applier::set_component`]) are skipped before step 1, like entries
//! for other sources: their bodies stream past, CRC-checked, unbuffered.
//!
//! Every entry's header and body CRC is checked, applied or not, and the
//! result is given once the whole patch has been fed.
//!
//! RAM is `size_of::<Applier<..>>()`: nothing grows with the image or the
//! patch. The write buffer is `W` bytes and the read cache `R` bytes.

pub(crate) mod io;
mod resume;

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

use crate::codec::{ByteSource, Decoder, DecoderState, Model, Op, Params, CODEC_RC3, MAX_OP_INPUT};
use crate::crc32::Crc32;
use crate::error::Error;
use crate::format::{self, EntryHeader, TargetId, CONTAINER_HEADER_LEN, MAX_HEADER_LEN};
use io::{
    align_up, crc_of, crc_of_prefixes, fits, md5_of, same, sha256_of, Cached, ReadCache, Writer,
};

/// Bytes of the input buffer: it holds an entry header, then serves as the
/// ring the body is decoded from.
const BUF: usize = MAX_HEADER_LEN;
const _: () = assert!(BUF >= MAX_OP_INPUT + 8 && BUF <= u16::MAX as usize);

pub(crate) use resume::SAVED_LEN;

/// What a finished patch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// The target image was written into the target partition and
    /// verified.
    Applied,
    /// The target image was already there, in the partition this says;
    /// nothing was written.
    AlreadyInstalled(Found),
}

/// Where an already installed target image was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Found {
    /// At the start of the source partition (with A/B slots: the running
    /// slot).
    Source,
    /// At the start of the target partition (with A/B slots: the inactive
    /// slot, written by an earlier run of the same update).
    Target,
}

/// The outcome as [`ApplierState`] keeps it. `None` is 0, so that a fresh
/// state is all zeros: a `static` of it is in `.bss`, with no initial
/// image in flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Kept {
    None = 0,
    Applied,
    InSource,
    InTarget,
}

impl Kept {
    const fn get(self) -> Option<Outcome> {
        match self {
            Kept::None => None,
            Kept::Applied => Some(Outcome::Applied),
            Kept::InSource => Some(Outcome::AlreadyInstalled(Found::Source)),
            Kept::InTarget => Some(Outcome::AlreadyInstalled(Found::Target)),
        }
    }
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
/// into `target`, working in an [`ApplierState`] that the caller owns.
///
/// `W` is the write buffer and `R` the read cache, in bytes; both must be
/// multiples of the flashes' read size, and `W` of the target's write
/// size (checked at compile time).
pub struct Applier<'m, S, T, const W: usize = 64, const R: usize = 64> {
    source: S,
    target: T,
    st: &'m mut ApplierState<W, R>,
}

/// The applier's working memory: everything but the two flashes (about
/// 3.8 KiB with the default `W` and `R`; its `size_of` is the applier's
/// RAM). It stays where the caller put it — a `static` (its
/// [`ApplierState::new`] is `const`) or a long-lived stack frame — and is
/// never moved: [`Applier::new`] resets it in place, so no copy of it
/// lands on the stack. One state serves one applier at a time, and can be
/// used again for the next update.
pub struct ApplierState<const W: usize = 64, const R: usize = 64> {
    phase: Phase,
    entries_left: u16,
    outcome: Kept,
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
    /// The component to apply: entries for others are skipped.
    component: u8,
    /// An entry for `component` has been read.
    seen: bool,
    /// The security counter of the entry being applied, then of the one
    /// the outcome refers to.
    counter: u32,
    /// A source identity the caller vouches for ([`Applier::vouch_source`]).
    #[cfg(feature = "vouch")]
    vouched: Option<(u32, [u8; 16])>,
    #[cfg(feature = "sign")]
    gate: Gate,
}

impl<const W: usize, const R: usize> Default for ApplierState<W, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const R: usize> ApplierState<W, R> {
    /// A state ready for [`Applier::new`].
    pub const fn new() -> Self {
        ApplierState {
            phase: Phase::Container,
            entries_left: 0,
            outcome: Kept::None,
            result: TargetId::EMPTY,
            consumed: 0,
            buf: [0; BUF],
            head: 0,
            len: 0,
            need: 0,
            entry: EntryHeader::EMPTY,
            body_left: 0,
            body_crc: Crc32::from_register(0),
            started: false,
            rc: DecoderState::EMPTY,
            model: Model::UNSET,
            cursor: 0,
            out: 0,
            prev_byte: 0,
            job: Job::None,
            writer: Writer::new(),
            cache: ReadCache::new(),
            ckpt_every: 0,
            ckpt_next: 0,
            paused: false,
            component: 0,
            seen: false,
            counter: 0,
            #[cfg(feature = "vouch")]
            vouched: None,
            #[cfg(feature = "sign")]
            gate: Gate::new(),
        }
    }

    /// Back to the state [`ApplierState::new`] gives, field by field: the
    /// model and the buffers are not copied (the input buffer and the
    /// model are set up again before they are read).
    fn reset(&mut self) {
        self.phase = Phase::Container;
        self.entries_left = 0;
        self.outcome = Kept::None;
        self.result = TargetId::EMPTY;
        self.consumed = 0;
        self.head = 0;
        self.len = 0;
        self.need = CONTAINER_HEADER_LEN as u16;
        self.entry = EntryHeader::EMPTY;
        self.body_left = 0;
        self.body_crc = Crc32::new();
        self.started = false;
        self.rc = DecoderState::EMPTY;
        self.cursor = 0;
        self.out = 0;
        self.prev_byte = 0;
        self.job = Job::None;
        self.writer.restart(0);
        self.cache.invalidate();
        self.ckpt_every = 0;
        self.ckpt_next = 0;
        self.paused = false;
        self.component = 0;
        self.seen = false;
        self.counter = 0;
        #[cfg(feature = "vouch")]
        {
            self.vouched = None;
        }
        #[cfg(feature = "sign")]
        self.gate.reset();
    }

    /// The MD5 the caller vouched for a source of `size` bytes, if any.
    #[inline(always)]
    fn vouched_md5(&self, size: u32) -> Option<[u8; 16]> {
        #[cfg(feature = "vouch")]
        if let Some((n, md5)) = self.vouched {
            if n == size {
                return Some(md5);
            }
        }
        let _ = size;
        None
    }
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
    /// The running body digest, while `want` is set.
    body: Option<sha2::Sha256>,
}

#[cfg(feature = "sign")]
impl Gate {
    const fn new() -> Self {
        Gate {
            key: None,
            min_counter: 0,
            want: None,
            body: None,
        }
    }

    fn reset(&mut self) {
        *self = Gate::new();
    }

    /// Checks a just-parsed entry header (its `H` bytes) against the policy;
    /// the security counter only if the entry is for the applier's
    /// component (`ours`): other components count on their own.
    fn check<E>(&mut self, raw: &[u8], ours: bool) -> Res<(), E> {
        use sha2::Digest;
        self.want = None;
        let t = crate::sign::Trust::of(raw)?;
        let Some(key) = &self.key else {
            return Ok(());
        };
        let (Some(sig), Some(body)) = (t.signature, t.body_sha256) else {
            return Err(Error::Unsigned);
        };
        if !crate::sign::verify(key, &t.signed_digest(raw), &sig) {
            return Err(Error::BadSignature);
        }
        if ours && t.counter < self.min_counter {
            return Err(Error::Rollback {
                counter: t.counter,
                min: self.min_counter,
            });
        }
        self.want = Some(body);
        self.body = Some(sha2::Sha256::new());
        Ok(())
    }

    /// Checks the body digest once the whole body has been read.
    fn check_body<E>(&mut self) -> Res<(), E> {
        use sha2::Digest;
        let (Some(want), Some(body)) = (self.want, self.body.take()) else {
            return Ok(());
        };
        if <[u8; 32]>::from(body.finalize()) != want {
            return Err(Error::BodyDigest);
        }
        Ok(())
    }
}

type Res<T, E> = Result<T, Error<E>>;

impl<'m, S, T, const W: usize, const R: usize> Applier<'m, S, T, W, R>
where
    T: NorFlash,
    S: ReadNorFlash<Error = T::Error>,
{
    /// An applier that reads the running image from `source` and writes the
    /// new one into `target`, working in `state` (reset first, in place).
    pub fn new(source: S, target: T, state: &'m mut ApplierState<W, R>) -> Self {
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
        state.reset();
        Applier {
            source,
            target,
            st: state,
        }
    }

    /// Accepts only entries signed by `key` (an Ed25519 public key) whose
    /// security counter, for entries of the applier's component, is at
    /// least `min_counter` (with slots: [`crate::slots::BootRecord::floor`]): each entry header's
    /// signature is checked before anything of it is used, and the body
    /// against its signed SHA-256 before the target is read back. Call it
    /// before the first [`Applier::feed`].
    #[cfg(feature = "sign")]
    pub fn require_signature(&mut self, key: [u8; crate::sign::PUBLIC_KEY_LEN], min_counter: u32) {
        self.st.gate.key = Some(key);
        self.st.gate.min_counter = min_counter;
    }

    /// The security counter of the entry the outcome refers to, once there
    /// is an outcome (0 for an entry without one).
    pub fn result_counter(&self) -> Option<u32> {
        self.st.outcome.get().map(|_| self.st.counter)
    }

    /// Applies the entries for component `id` (records `0x80`, see
    /// `docs/FORMAT.md`) and skips the others, as it skips entries for
    /// other sources. Without this call the applier applies component 0,
    /// which entries without a component record are for. Call it before
    /// the first [`Applier::feed`].
    pub fn set_component(&mut self, id: u8) {
        self.st.component = id;
    }

    /// Vouches that the first `size` bytes of the source slot have the MD5
    /// `md5`: an entry for a source of `size` bytes is then selected by
    /// comparing its MD5 with this one instead of hashing the source slot
    /// (its size and CRC-32 are still checked against the slot). The
    /// applier trusts it: with a wrong `md5` it may write a target from
    /// the wrong source, or skip a patch that was for it (the target's
    /// digest is still verified after writing). `genpat apply` hashes its
    /// source on another thread while the applier runs, and keeps the
    /// result only if that MD5 is the one it vouched for. Call it before
    /// the first [`Applier::feed`].
    #[cfg(feature = "vouch")]
    pub fn vouch_source(&mut self, size: u32, md5: [u8; 16]) {
        self.st.vouched = Some((size, md5));
    }

    /// Whether the patch fed so far has had an entry for the applier's
    /// component ([`Applier::set_component`]), whatever its source. With
    /// [`Error::NoSuitablePatch`], `false` says that the patch has
    /// nothing for this component, `true` that it has, for other images.
    pub fn component_seen(&self) -> bool {
        self.st.seen
    }

    /// Gives the flashes back.
    pub fn into_parts(self) -> (S, T) {
        (self.source, self.target)
    }

    /// The image the outcome refers to (the target of the entry that was
    /// applied or found installed), once there is an outcome.
    pub fn result_target(&self) -> Option<TargetId> {
        self.st.outcome.get().map(|_| self.st.result)
    }

    /// How far the applier has come.
    pub fn progress(&self) -> Progress {
        let applying = self.st.phase == Phase::Body;
        Progress {
            consumed: self.st.consumed,
            written: if applying { self.st.out } else { 0 },
            target_size: if applying {
                self.st.entry.target.size
            } else {
                0
            },
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
                None => self.st.paused = false,
            }
        }
    }

    /// Takes bytes from the front of `chunk` until it is used up or a
    /// checkpoint is due; `None` in the second case (`chunk` then holds
    /// what is left, and the applier stays paused until called again).
    pub(crate) fn feed_some(&mut self, chunk: &mut &[u8]) -> Res<Option<Status>, T::Error> {
        if self.st.phase == Phase::Failed {
            return Err(Error::Failed);
        }
        self.st.paused = false;
        let r = self.run(chunk);
        if r.is_err() {
            self.st.phase = Phase::Failed;
        }
        r
    }

    /// Says that the patch has ended; returns its outcome, or
    /// [`Error::Truncated`] if it ended early.
    pub fn finish(&mut self) -> Res<Outcome, T::Error> {
        match (self.st.phase, self.st.outcome.get()) {
            (Phase::Done, Some(o)) => Ok(o),
            (Phase::Failed, _) => Err(Error::Failed),
            _ => {
                self.st.phase = Phase::Failed;
                Err(Error::Truncated)
            }
        }
    }

    fn run(&mut self, chunk: &mut &[u8]) -> Res<Option<Status>, T::Error> {
        self.run_inner(chunk)
            .map(|s| (!self.st.paused).then_some(s))
    }

    fn run_inner(&mut self, chunk: &mut &[u8]) -> Res<Status, T::Error> {
        loop {
            match self.st.phase {
                Phase::Done | Phase::Failed => {
                    return match (chunk.is_empty(), self.st.outcome.get()) {
                        (true, Some(o)) => Ok(Status::Done(o)),
                        (true, None) => Err(Error::Failed),
                        (false, _) => Err(Error::TrailingData),
                    };
                }
                Phase::Container | Phase::EntryLen | Phase::EntryHeader => {
                    let want = self.st.need as usize - self.st.len as usize;
                    let n = want.min(chunk.len());
                    self.st.buf[self.st.len as usize..self.st.len as usize + n]
                        .copy_from_slice(&chunk[..n]);
                    self.st.len += n as u16;
                    self.st.consumed = self.st.consumed.saturating_add(n as u32);
                    *chunk = &chunk[n..];
                    if self.st.len < self.st.need {
                        return Ok(Status::NeedMore);
                    }
                    // Entry selection runs after the header's frame is gone:
                    // the two are never on the stack together.
                    if self.header_part()? {
                        self.st.phase = self.select()?;
                    }
                }
                Phase::Skip => {
                    let n = (self.st.body_left as usize).min(chunk.len());
                    self.st.body_crc.update(&chunk[..n]);
                    self.st.body_left -= n as u32;
                    self.st.consumed = self.st.consumed.saturating_add(n as u32);
                    *chunk = &chunk[n..];
                    if self.st.body_left > 0 {
                        return Ok(Status::NeedMore);
                    }
                    self.end_of_body()?;
                }
                Phase::Body => {
                    let n = (BUF - self.st.len as usize)
                        .min(self.st.body_left as usize)
                        .min(chunk.len());
                    let mut tail = (self.st.head as usize + self.st.len as usize) % BUF;
                    for &b in &chunk[..n] {
                        self.st.buf[tail] = b;
                        tail = (tail + 1) % BUF;
                    }
                    self.st.body_crc.update(&chunk[..n]);
                    #[cfg(feature = "sign")]
                    if let Some(h) = &mut self.st.gate.body {
                        sha2::Digest::update(h, &chunk[..n]);
                    }
                    self.st.len += n as u16;
                    self.st.body_left -= n as u32;
                    self.st.consumed = self.st.consumed.saturating_add(n as u32);
                    *chunk = &chunk[n..];
                    self.decode()?;
                    if self.st.paused {
                        return Ok(Status::NeedMore);
                    }
                    if self.st.out == self.st.entry.target.size
                        && self.st.started
                        && self.st.job == Job::None
                    {
                        // The coder uses up its body exactly; anything left is not ours.
                        if self.st.len != 0 || self.st.body_left != 0 {
                            return Err(Error::BodyInvalid);
                        }
                        self.st
                            .writer
                            .flush(&mut self.target)
                            .map_err(Error::Flash)?;
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

    /// A header piece is complete in `buf[..need]`; `true` if it was an
    /// entry header and the entry is to be selected ([`Applier::select`])
    /// next. Not inlined (see [`Applier::select`]).
    #[inline(never)]
    fn header_part(&mut self) -> Res<bool, T::Error> {
        match self.st.phase {
            Phase::Container => {
                let mut b = [0u8; CONTAINER_HEADER_LEN];
                b.copy_from_slice(&self.st.buf[..CONTAINER_HEADER_LEN]);
                self.st.entries_left = format::parse_container(&b)?;
                self.start_entry();
            }
            Phase::EntryLen => {
                let h = u16::from_le_bytes([self.st.buf[0], self.st.buf[1]]);
                if !(format::MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&(h as usize)) {
                    return Err(format::HeaderError::Length.into());
                }
                self.st.phase = Phase::EntryHeader;
                self.st.need = h;
                self.st.len = 0;
            }
            _ => {
                let (entry, records) = EntryHeader::parse(&self.st.buf[..self.st.need as usize])?;
                let meta = records.meta()?;
                let ours = meta.component == self.st.component;
                self.st.seen |= ours;
                #[cfg(feature = "sign")]
                self.st
                    .gate
                    .check(&self.st.buf[..self.st.need as usize], ours)?;
                self.st.entry = entry;
                self.st.body_left = entry.body_len;
                self.st.body_crc = Crc32::new();
                self.st.len = 0;
                self.st.head = 0;
                if self.st.outcome == Kept::None && ours {
                    self.st.counter = meta.counter;
                    return Ok(true);
                }
                self.st.phase = Phase::Skip;
            }
        }
        Ok(false)
    }

    fn start_entry(&mut self) {
        self.st.phase = Phase::EntryLen;
        self.st.need = 2;
        self.st.len = 0;
    }

    /// Decides what to do with the entry whose header was just read. Not
    /// inlined, so that the digests' state is on the stack only while it
    /// runs, not under the decoder's frames.
    #[inline(never)]
    fn select(&mut self) -> Res<Phase, T::Error> {
        let vouched = self.st.vouched_md5(self.st.entry.source.size);
        let e = &self.st.entry;
        self.st.cache.invalidate();
        // The header is parsed, so the input buffer is free: the digest
        // passes read through it, in fewer and larger reads than the cache.
        let buf = &mut self.st.buf;
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
            && same(
                &sha256_of(&mut self.source, buf, ts).map_err(flash)?,
                &e.target.sha256,
            )
        {
            self.st.outcome = Kept::InSource;
            self.st.result = e.target;
            return Ok(Phase::Skip);
        }
        if !s_fits
            || s_crc != e.source.crc32
            || !same(
                &match vouched {
                    Some(md5) => md5,
                    None => md5_of(&mut self.source, buf, ss).map_err(flash)?,
                },
                &e.source.md5,
            )
        {
            return Ok(Phase::Skip);
        }
        let params = match (e.codec, Params::from_byte(e.params)) {
            (CODEC_RC3, Some(p)) => p,
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
            && same(
                &sha256_of(&mut self.target, buf, ts).map_err(flash)?,
                &e.target.sha256,
            )
        {
            self.st.outcome = Kept::InTarget;
            self.st.result = e.target;
            return Ok(Phase::Skip);
        }
        self.st.model.reset(params);
        self.st.started = false;
        self.st.cursor = 0;
        self.st.out = 0;
        self.st.prev_byte = 0;
        self.st.job = Job::None;
        self.st.writer.restart(0);
        self.st.ckpt_next = self.st.ckpt_every;
        Ok(Phase::Body)
    }

    /// The body of the current entry has been read completely. Not
    /// inlined (see [`Applier::select`]).
    #[inline(never)]
    fn end_of_body(&mut self) -> Res<(), T::Error> {
        if self.st.body_crc.value() != self.st.entry.body_crc32 {
            return Err(Error::BodyCrc);
        }
        if self.st.phase == Phase::Body {
            #[cfg(feature = "sign")]
            self.st.gate.check_body()?;
            // The body is used up (`len == 0`): the input buffer is free.
            let sha = sha256_of(
                &mut self.target,
                &mut self.st.buf,
                self.st.entry.target.size,
            )
            .map_err(Error::Flash)?;
            if !same(&sha, &self.st.entry.target.sha256) {
                return Err(Error::TargetMismatch);
            }
            self.st.outcome = Kept::Applied;
            self.st.result = self.st.entry.target;
        }
        self.st.entries_left -= 1;
        if self.st.entries_left > 0 {
            self.start_entry();
        } else if self.st.outcome != Kept::None {
            self.st.phase = Phase::Done;
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
            buf: &self.st.buf,
            head: &mut self.st.head,
            len: &mut self.st.len,
        };
        let mut dec = Decoder {
            state: &mut self.st.rc,
            src: &mut ring,
            starved: false,
        };
        let x = f(&mut self.st.model, &mut dec);
        if dec.starved {
            return Err(Error::BodyInvalid);
        }
        Ok(x)
    }

    /// Decodes as far as the buffered input surely reaches.
    fn decode(&mut self) -> Res<(), T::Error> {
        let all_in = self.st.body_left == 0;
        let have = |s: &Self, n: usize| all_in || s.st.len as usize >= n;
        if !self.st.started {
            if !have(self, crate::codec::rc::INIT_BYTES) {
                return Ok(());
            }
            let mut ring = Ring {
                buf: &self.st.buf,
                head: &mut self.st.head,
                len: &mut self.st.len,
            };
            self.st.rc = DecoderState::start(&mut ring).ok_or(Error::BodyInvalid)?;
            self.st.started = true;
        }
        let size = self.st.entry.target.size;
        loop {
            if self.st.ckpt_every != 0
                && self.st.writer.len == 0
                && self.st.writer.flushed == self.st.ckpt_next
                && self.st.out < size
            {
                // A target erase unit is complete: stop for a checkpoint.
                self.st.ckpt_next = self.st.ckpt_next.saturating_add(self.st.ckpt_every);
                self.st.paused = true;
                return Ok(());
            }
            let left = size - self.st.out;
            match self.st.job {
                Job::Copy(n) => {
                    let k = self.copy_some(n)?;
                    self.st.job = if n > k { Job::Copy(n - k) } else { Job::None };
                }
                _ if left == 0 => return Ok(()),
                Job::Lit(n) => {
                    if !have(self, 8) {
                        return Ok(());
                    }
                    let (prev, pos) = (self.st.prev_byte, self.st.out);
                    let b = self.decode_with(|m, d| m.literal(d, prev, pos, 0))?;
                    self.st.job = if n > 1 { Job::Lit(n - 1) } else { Job::None };
                    self.emit(b)?;
                }
                Job::None => {
                    if !have(self, MAX_OP_INPUT) {
                        return Ok(());
                    }
                    let pos = self.st.out;
                    let op = self.decode_with(|m, d| m.op(d, pos, Op::Copy { len: 0 }))?;
                    self.start_op(op, left)?;
                }
            }
        }
    }

    /// Checks a decoded operation against the images and starts it.
    fn start_op(&mut self, op: Op, left: u32) -> Res<(), T::Error> {
        let reach = self.st.entry.source.size as u64 + self.st.out as u64;
        match op {
            Op::Copy { len } | Op::Seek { len, .. } | Op::Lit { len } if len > left => {
                Err(Error::BodyInvalid)
            }
            Op::Lit { len } => {
                self.st.job = Job::Lit(len);
                Ok(())
            }
            Op::Seek { delta, len } => {
                let c = self.st.cursor as i64 + delta;
                if c < 0 || c as u64 >= reach {
                    return Err(Error::BodyInvalid);
                }
                self.st.cursor = c as u32;
                self.st.job = Job::Copy(len);
                Ok(())
            }
            _ if self.st.cursor as u64 >= reach => Err(Error::BodyInvalid),
            Op::Copy { len } => {
                self.st.job = Job::Copy(len);
                Ok(())
            }
            Op::Diff { d } => {
                let s = self.virtual_byte(self.st.cursor)?;
                let b = self.st.model.diff_byte(s, d);
                self.st.cursor += 1;
                self.emit(b)
            }
        }
    }

    /// The byte at `pos` of the virtual source: the source image, then the
    /// target written so far. The caller keeps `pos < source size + out`.
    #[inline]
    fn virtual_byte(&mut self, pos: u32) -> Res<u8, T::Error> {
        let ss = self.st.entry.source.size;
        let b = if pos < ss {
            let limit = align_up(ss as u64, S::READ_SIZE) as u32;
            self.st
                .cache
                .at(Cached::Source, &mut self.source, pos, limit)
        } else {
            let (t, w) = (pos - ss, &self.st.writer);
            if t >= w.flushed {
                return Ok(w.buf[(t - w.flushed) as usize % W]);
            }
            self.st
                .cache
                .at(Cached::Target, &mut self.target, t, w.flushed)
        };
        Ok(b.map_err(Error::Flash)?.first().copied().unwrap_or(0))
    }

    /// Copies up to `n` (≥ 1) bytes from the cursor to the target, as many
    /// as one cached block and the write buffer allow; returns how many.
    fn copy_some(&mut self, n: u32) -> Res<u32, T::Error> {
        let ss = self.st.entry.source.size;
        let pos = self.st.cursor;
        let room = (self.st.writer.room() as u32).min(n);
        let piece = if pos < ss {
            let limit = align_up(ss as u64, S::READ_SIZE) as u32;
            self.st
                .cache
                .at(Cached::Source, &mut self.source, pos, limit)
        } else if pos - ss < self.st.writer.flushed {
            self.st.cache.at(
                Cached::Target,
                &mut self.target,
                pos - ss,
                self.st.writer.flushed,
            )
        } else {
            // From the write buffer itself, perhaps overlapping what it
            // produces: byte by byte.
            let b = self.virtual_byte(pos)?;
            self.st.cursor += 1;
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
            self.st.prev_byte = last;
        }
        self.st
            .writer
            .extend(&mut self.target, piece)
            .map_err(Error::Flash)?;
        self.st.cursor += k;
        self.st.out += k;
        Ok(k)
    }

    #[inline]
    fn emit(&mut self, b: u8) -> Res<(), T::Error> {
        self.st.out += 1;
        self.st.prev_byte = b;
        self.st
            .writer
            .push(&mut self.target, b)
            .map_err(Error::Flash)
    }
}

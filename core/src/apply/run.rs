//! The applier's flash work, written once: `apply` compiles this file
//! twice, as the blocking [`crate::Applier`] and as the async
//! [`crate::asynch::Applier`] (see `flashpatch-macros`). Everything here
//! that reads or writes flash is `async` under `#[io]`.

use super::reads::{cached, cached_far, crc_of, crc_of_prefixes, digest_of, fits, flush_writer};
use super::{io, NorFlash, ReadNorFlash};
use crate::apply::io::{align_up, same, Cached};
use crate::apply::{
    ApplierState, Job, Kept, Named, Outcome, Phase, Progress, SlotDigests, Status, RING,
};
use crate::codec::{DecoderState, Op, Params, CODEC_RC3, MAX_OP_INPUT};
use crate::crc32::Crc32;
use crate::error::{ApplyError as Error, FlashError, FlashRole};
use crate::format::{self, EntryHeader, TargetId, CONTAINER_HEADER_LEN, MAX_HEADER_LEN};
use crate::hashes::{Hashes, Software};
use crate::log;
use core::marker::PhantomData;

type Res<T> = Result<T, Error>;

/// Applies a patch, fed in chunks of any size, from the image in `source`
/// into `target`, working in an [`ApplierState`] that the caller owns.
///
/// `W` is the write buffer and `R` the read cache, in bytes; both must be
/// multiples of the flashes' read size, and `W` of the target's write
/// size (checked at compile time).
///
/// The source and target may be two flashes. Fed to a target that already
/// holds the new image, the same patch writes nothing:
///
/// ```
/// use flashpatch::{mock::MockFlash, Applier, ApplierState, Found, Outcome, Status};
///
/// let old = b"Hello from version 1 of the firmware!\n".repeat(16);
/// let new = b"Hello from version 2 of the firmware!\n".repeat(16);
/// let patch = include_bytes!("../../examples/data/hello.fpat");
/// let mut source = MockFlash::<1, 4, 4096>::new(4096);
/// source.preload(0, &old);
/// let mut target = MockFlash::<1, 4, 4096>::new(4096);
///
/// let mut state = ApplierState::new();
/// for round in 0..2 {
///     let mut applier: Applier<_, _> = Applier::new(&mut source, &mut target, &mut state);
///     // One piece at a time, of any size: the result is the same.
///     let (head, tail) = patch.split_at(50);
///     assert_eq!(applier.feed(head), Ok(Status::NeedMore));
///     assert_eq!(applier.progress().consumed, 50);
///     applier.feed(tail).unwrap();
///     let outcome = applier.finish().unwrap();
///     let expected = [Outcome::Applied, Outcome::AlreadyInstalled(Found::Target)][round];
///     assert_eq!(outcome, expected);
///     assert_eq!(&target.as_bytes()[..new.len()], &new[..]);
/// }
/// assert_eq!(target.stats.erases, 1, "the second round erased nothing");
/// ```
pub struct Applier<'m, S, T, const W: usize = 64, const R: usize = 64, H = Software> {
    pub(super) source: S,
    pub(super) target: T,
    pub(super) st: &'m mut ApplierState<W, R>,
    /// The hashes of whole images (a chip's engine or [`Software`]).
    hashes: PhantomData<fn() -> H>,
}

impl<'m, S, T, const W: usize, const R: usize> Applier<'m, S, T, W, R>
where
    S: ReadNorFlash,
    T: NorFlash,
{
    /// An applier that reads the running image from `source` and writes the
    /// new one into `target`, working in `state` (reset first, in place).
    /// Source and target may be flashes of different types. It hashes
    /// images in software; [`Applier::with_hashes`] takes other hashes.
    pub fn new(source: S, target: T, state: &'m mut ApplierState<W, R>) -> Self {
        Self::with_hashes(source, target, state)
    }
}

impl<'m, S, T, const W: usize, const R: usize, H: Hashes> Applier<'m, S, T, W, R, H>
where
    S: ReadNorFlash,
    T: NorFlash,
{
    /// [`Applier::new`] with the image hashes `H` (a chip's hash engine,
    /// see [`crate::hashes`]), named where the applier's type is:
    /// `let a: Applier<_, _, 64, 64, Engine> = Applier::with_hashes(..)`.
    pub fn with_hashes(source: S, target: T, state: &'m mut ApplierState<W, R>) -> Self {
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
            assert!(T::ERASE_SIZE.is_multiple_of(T::WRITE_SIZE));
        };
        state.reset();
        Applier {
            source,
            target,
            st: state,
            hashes: PhantomData,
        }
    }
}

impl<S, T, const W: usize, const R: usize, H> Applier<'_, S, T, W, R, H> {
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
        let d = &mut self.st.digests;
        d.size[1] = size;
        d.md5 = md5;
        d.known |= SlotDigests::MD5;
    }

    /// Vouches that the source slot holds the image of `size` bytes with
    /// the SHA-256 `sha256` (what a boot record says of the running
    /// image). The applier then decides without reading the slot whether
    /// an entry's target is that image (already installed), and whether
    /// an entry whose source identity record ([`crate::format::tag::SOURCE_ID`])
    /// is for a source of `size` bytes is for it; an entry without the
    /// record, or for a source of another size, is checked by hashing the
    /// slot as without this call. The applier trusts it: with a wrong
    /// image it may write a target from the wrong source (the target's
    /// digest is still verified after writing). The slot manager calls it
    /// with the running image of its boot record. Call it after
    /// [`Applier::new`] and before the first [`Applier::feed`].
    pub fn vouch_image(&mut self, size: u32, sha256: [u8; 32]) {
        let d = &mut self.st.digests;
        d.size[0] = size;
        d.sha256 = sha256;
        // Whatever was learnt of prefix 0 is of another image; what is
        // vouched for of the source's MD5 and of the target slot stays.
        d.known = d.known & (SlotDigests::MD5 | SlotDigests::TARGET_SLOT) | SlotDigests::IMAGE;
    }

    /// Vouches for what the target slot holds: the image of `size` bytes
    /// with the SHA-256 `sha256`, or no image at all if `size` is 0 (what
    /// a boot record says of the inactive slot). The applier then decides
    /// without reading the slot whether an entry's target is there already
    /// (found installed, nothing written): only if it is that image. The
    /// applier trusts it: with a wrong claim it may write a target that
    /// was there already, or report as installed an image the slot does
    /// not hold (activation then checks the slot, unless the caller skips
    /// that as the slot manager does for what its boot record vouches for).
    /// The slot manager calls it with its boot record's image of the
    /// inactive slot, which it forgets before writing the slot. Call it
    /// after [`Applier::new`] and before the first [`Applier::feed`].
    pub fn vouch_target_slot(&mut self, size: u32, sha256: [u8; 32]) {
        // `result` is free until there is an outcome: the claim is kept
        // there, where an outcome would put the same target.
        self.st.result.size = size;
        self.st.result.sha256 = sha256;
        self.st.digests.known |= SlotDigests::TARGET_SLOT;
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

    /// Says that the patch has ended; returns its outcome, or
    /// [`Error::Truncated`] if it ended early.
    pub fn finish(&mut self) -> Res<Outcome> {
        match (self.st.phase, self.st.outcome.get()) {
            (Phase::Done, Some(o)) => Ok(o),
            (Phase::Failed, _) => Err(Error::Failed),
            _ => {
                self.st.phase = Phase::Failed;
                Err(Error::Truncated)
            }
        }
    }
}

#[io]
impl<S, T, const W: usize, const R: usize, H: Hashes> Applier<'_, S, T, W, R, H>
where
    S: ReadNorFlash,
    T: NorFlash,
{
    /// Takes the next chunk of the patch. The outcome never depends on how
    /// the patch is cut into chunks. After an error the applier refuses
    /// further input ([`Error::Failed`]).
    pub async fn feed(&mut self, chunk: &[u8]) -> Res<Status> {
        let mut chunk = chunk;
        loop {
            match self.feed_some(&mut chunk).await? {
                Some(status) => return Ok(status),
                None if self.due() && !self.take_due().await? => {}
                None => self.st.paused = false,
            }
        }
    }

    /// Takes bytes from the front of `chunk` until it is used up or a
    /// checkpoint is due; `None` in the second case (`chunk` then holds
    /// what is left, and the applier stays paused until called again).
    pub(crate) async fn feed_some(&mut self, chunk: &mut &[u8]) -> Res<Option<Status>> {
        if self.st.phase == Phase::Failed {
            return Err(Error::Failed);
        }
        self.st.paused = false;
        let r = self.run(chunk).await;
        if let Err(e) = &r {
            log::warning!("flashpatch: patch refused: {}", e);
            self.st.phase = Phase::Failed;
        }
        r
    }

    async fn run(&mut self, chunk: &mut &[u8]) -> Res<Option<Status>> {
        self.run_inner(chunk)
            .await
            .map(|s| (!self.st.paused).then_some(s))
    }

    /// Reads and decodes. Not inlined: the caller's frame, under which
    /// the selection and the read-back run, holds none of the decoder's.
    #[inline(never)]
    async fn run_inner(&mut self, chunk: &mut &[u8]) -> Res<Status> {
        loop {
            match self.st.phase {
                Phase::Done | Phase::Failed => {
                    return match (chunk.is_empty(), self.st.outcome.get()) {
                        (true, Some(o)) => Ok(Status::Done(o)),
                        (true, None) => Err(Error::Failed),
                        (false, _) => Err(Error::TrailingData),
                    };
                }
                Phase::Select | Phase::Verify => {
                    // Taken by the caller: stays a stop until it is.
                    self.st.paused = true;
                    return Ok(Status::NeedMore);
                }
                Phase::Container | Phase::EntryLen | Phase::EntryHeader => {
                    let have = self.st.input.len as usize;
                    let n = (self.st.need as usize - have).min(chunk.len());
                    self.st.model.spare()[have..have + n].copy_from_slice(&chunk[..n]);
                    self.st.input.len += n as u16;
                    self.st.consumed = self.st.consumed.saturating_add(n as u32);
                    *chunk = &chunk[n..];
                    if self.st.input.len < self.st.need {
                        return Ok(Status::NeedMore);
                    }
                    // Entry selection is the caller's next step (`take_due`):
                    // its digest passes are never on the stack under this
                    // frame, nor under the header's.
                    if self.header_part()? {
                        self.st.phase = Phase::Select;
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
                    self.end_of_body().await?;
                }
                Phase::Body => {
                    let input = &mut self.st.input;
                    let n = (RING - input.len as usize)
                        .min(self.st.body_left as usize)
                        .min(chunk.len());
                    let mut tail = (input.head as usize + input.len as usize) % RING;
                    for &b in &chunk[..n] {
                        input.ring[tail] = b;
                        tail = (tail + 1) % RING;
                    }
                    self.st.body_crc.update(&chunk[..n]);
                    #[cfg(feature = "sign")]
                    if let Some(h) = &mut self.st.gate.body {
                        sha2::Digest::update(h, &chunk[..n]);
                    }
                    self.st.input.len += n as u16;
                    self.st.body_left -= n as u32;
                    self.st.consumed = self.st.consumed.saturating_add(n as u32);
                    *chunk = &chunk[n..];
                    self.decode().await?;
                    if self.st.paused {
                        return Ok(Status::NeedMore);
                    }
                    if self.st.out == self.st.entry.target.size
                        && self.st.started
                        && self.st.job == Job::None
                    {
                        // The coder uses up its body exactly; anything left is not ours.
                        if self.st.input.len != 0 || self.st.body_left != 0 {
                            return Err(Error::BodyInvalid);
                        }
                        self.flush_target().await?;
                        self.end_of_body().await?;
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
    fn header_part(&mut self) -> Res<bool> {
        match self.st.phase {
            Phase::Container => {
                let mut b = [0u8; CONTAINER_HEADER_LEN];
                b.copy_from_slice(&self.st.model.spare()[..CONTAINER_HEADER_LEN]);
                self.st.entries_left = format::parse_container(&b)?;
                self.start_entry();
            }
            Phase::EntryLen => {
                let buf = self.st.model.spare();
                let h = u16::from_le_bytes([buf[0], buf[1]]);
                if !(format::MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&(h as usize)) {
                    return Err(format::HeaderError::Length.into());
                }
                self.st.phase = Phase::EntryHeader;
                self.st.need = h;
                self.st.input.len = 0;
            }
            _ => {
                let raw = &self.st.model.spare()[..self.st.need as usize];
                let (entry, records) = EntryHeader::parse(raw)?;
                let meta = records.meta()?;
                // An A/B applier takes A/B entries; an in-place one, only
                // in-place entries of its unit, order aside, and role.
                // (Words: 0 for A/B; bit 0, the order, aside.)
                let got = meta.in_place_word;
                let mode = (self.st.in_place ^ got) & !1 == 0;
                let ours = meta.component == self.st.component && mode;
                self.st.seen |= ours;
                #[cfg(feature = "sign")]
                self.st.gate.check(raw, ours)?;
                self.st.entry = entry;
                self.st.body_left = entry.body_len;
                self.st.body_crc = Crc32::new();
                self.st.input.len = 0;
                self.st.input.head = 0;
                if self.st.outcome == Kept::None && ours {
                    self.st.counter = meta.counter;
                    self.st.in_place = got;
                    let d = &self.st.digests;
                    self.st.named = match meta.source_id {
                        Some(id) if d.known & SlotDigests::IMAGE != 0 => {
                            if same(&d.sha256[..id.len()], &id) {
                                Named::Image
                            } else {
                                Named::Other
                            }
                        }
                        _ => Named::Unknown,
                    };
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
        self.st.input.len = 0;
    }

    /// Decides what to do with the entry whose header was just read. Not
    /// inlined, so that the digests' state is on the stack only while it
    /// runs, not under the decoder's frames.
    #[inline(never)]
    async fn select(&mut self) -> Res<Phase> {
        let e = &self.st.entry;
        self.st.cache.invalidate();
        // The header is parsed, so the header buffer is free (the model is
        // set up below, after it): the digest passes read through it, in
        // fewer and larger reads than the cache.
        let buf = self.st.model.spare();
        let src = FlashError::of(FlashRole::Source);
        let tgt = FlashError::of(FlashRole::Target);
        let (ts, ss) = (e.target.size, e.source.size);
        // The slot does not change between entries: its digests are
        // computed once and remembered ([`crate::apply::SlotDigests`]), and the
        // passes for CRC-32s of new prefix sizes are bounded
        // ([`crate::apply::MAX_SOURCE_PASSES`]), so that no number of entries
        // makes selection cost more than a few passes of the slot. One CRC
        // pass serves both pre-checks: is the target already in the source
        // slot, and is the source the entry's source?
        let d = &mut self.st.digests;
        // With an image vouched for (`Applier::vouch_image`), the target is
        // in the slot if it is that image, and the source is that image if
        // the entry names it (`Named`): no pass over the slot decides
        // either. The source of an entry without the identity, or for a
        // source of another size, is decided by hashing, as without.
        let image = d.known & SlotDigests::IMAGE != 0;
        let hash = !(image && ss == d.size[0] && ss != 0 && self.st.named != Named::Unknown);
        let size = [ts, ss];
        let mut new = 0;
        let mut len = [0; 2];
        // Prefix 0 is never hashed with an image vouched for.
        for i in image as usize..2 {
            if hash && fits(&self.source, size[i]) && !d.knows(i, size[i]) {
                new |= 1 << i;
                len[i] = size[i];
            }
        }
        if new != 0 {
            if d.passes == crate::apply::MAX_SOURCE_PASSES {
                return Ok(Phase::Skip);
            }
            let crc = crc_of_prefixes(&mut self.source, buf, len[0], len[1])
                .await
                .map_err(&src)?;
            d.learn(new, size, crc);
        }
        if image || d.knows(0, ts) && d.crc32[0] == e.target.crc32 {
            if d.known & (SlotDigests::SHA256 | SlotDigests::IMAGE) == 0 {
                // Straight into the state: no digest in this frame.
                digest_of::<_, H::Sha256>(&mut self.source, buf, ts, (&mut d.sha256).into())
                    .await
                    .map_err(&src)?;
                d.known |= SlotDigests::SHA256;
            }
            if d.size[0] == ts && same(&d.sha256, &e.target.sha256) {
                log::info!("flashpatch: target image already in the source slot");
                self.st.outcome = Kept::InSource;
                self.st.result = e.target;
                return Ok(Phase::Skip);
            }
        }
        if !hash && self.st.named == Named::Other {
            return Ok(Phase::Skip);
        }
        if hash {
            if !d.knows(1, ss) || d.crc32[1] != e.source.crc32 {
                return Ok(Phase::Skip);
            }
            if d.known & SlotDigests::MD5 == 0 {
                digest_of::<_, H::Md5>(&mut self.source, buf, ss, (&mut d.md5).into())
                    .await
                    .map_err(&src)?;
                d.known |= SlotDigests::MD5;
            }
            if !same(&d.md5, &e.source.md5) {
                return Ok(Phase::Skip);
            }
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
        // `result` is free until there is an outcome (selection runs only
        // before one): the target slot's digest goes there, not into this
        // frame. With the slot vouched for, the claim is there already and
        // the slot is not read.
        let got = &mut self.st.result;
        let found = if d.known & SlotDigests::TARGET_SLOT != 0 {
            got.size == ts && ts != 0 && same(&got.sha256, &e.target.sha256)
        } else {
            crc_of(&mut self.target, buf, ts).await.map_err(&tgt)? == e.target.crc32
                && digest_of::<_, H::Sha256>(&mut self.target, buf, ts, (&mut got.sha256).into())
                    .await
                    .map_err(&tgt)
                    .map(|()| same(&got.sha256, &e.target.sha256))?
        };
        if found {
            log::info!("flashpatch: target image already in the target slot");
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
        // Stops before the first target write if asked to (the slot
        // manager then makes an older checkpoint of this target stale).
        self.st.paused = core::mem::take(&mut self.st.hold);
        log::info!(
            "flashpatch: applying an entry: {=u32} B source -> {=u32} B target",
            ss,
            ts
        );
        Ok(Phase::Body)
    }

    /// The body of the current entry has been read completely. Not
    /// inlined (see [`Applier::select`]).
    #[inline(never)]
    async fn end_of_body(&mut self) -> Res<()> {
        if self.st.body_crc.value() != self.st.entry.body_crc32 {
            return Err(Error::BodyCrc);
        }
        if self.st.phase == Phase::Body {
            #[cfg(feature = "sign")]
            self.st.gate.check_body()?;
            // The read-back is the caller's next step (`take_due`).
            self.st.phase = Phase::Verify;
            self.st.paused = true;
            return Ok(());
        }
        self.next_entry()
    }

    /// Whether the applier stopped for a step of its own that reads a
    /// whole image (the selection of the entry whose header was just read,
    /// or the read-back check of the target it has written): the caller
    /// of [`Applier::feed_some`] runs [`Applier::take_due`] next.
    pub(crate) fn due(&self) -> bool {
        matches!(self.st.phase, Phase::Select | Phase::Verify)
    }

    /// The step [`Applier::due`] says is due: the entry's selection (its
    /// digest passes over the source slot), or the read-back check of the
    /// target (its SHA-256 against the entry's) and then the next entry.
    /// `true` if it ended in a stop the caller takes as any other: the
    /// entry was selected and [`Applier::hold_before_body`] asked for a
    /// stop before its first target write. Called by the caller of
    /// [`Applier::feed_some`], not under it, so the digests' frames are
    /// never on the stack with the decoder's; inlined into that caller,
    /// with the two steps not inlined, so each is one call from its frame.
    #[inline(always)]
    pub(crate) async fn take_due(&mut self) -> Res<bool> {
        // The stop is taken: only a hold asked for stops again.
        self.st.paused = false;
        let r = match self.st.phase {
            Phase::Select => self.select().await.map(|p| {
                self.st.phase = p;
                self.st.paused
            }),
            _ => self.read_back().await.map(|()| false),
        };
        if let Err(e) = &r {
            log::warning!("flashpatch: patch refused: {}", e);
            self.st.phase = Phase::Failed;
        }
        r
    }

    /// The read-back check. Not inlined, as [`Applier::select`]: the
    /// caller's frame is then that of neither.
    #[inline(never)]
    async fn read_back(&mut self) -> Res<()> {
        // The body is decoded: the model's memory is free (the header
        // buffer, `Model::spare`). The digest goes straight into this
        // frame's array.
        let mut sha = [0; 32];
        digest_of::<_, H::Sha256>(
            &mut self.target,
            self.st.model.spare(),
            self.st.entry.target.size,
            (&mut sha).into(),
        )
        .await
        .map_err(FlashError::of(FlashRole::Target))?;
        if !same(&sha, &self.st.entry.target.sha256) {
            return Err(Error::TargetMismatch);
        }
        log::info!("flashpatch: target written and read back: SHA-256 matches");
        self.st.outcome = Kept::Applied;
        self.st.result = self.st.entry.target;
        self.next_entry()
    }

    /// An entry has ended: the next one, or the end of the file.
    fn next_entry(&mut self) -> Res<()> {
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

    /// Decodes up to `n` (≥ 1) literal bytes of a `Lit` straight into the
    /// write buffer, while the buffer has room and the ring surely holds
    /// the next byte's input (8 bytes, one per decision at most, or the
    /// whole body); returns how many, at least one (the caller checked the
    /// ring). Does not program a full buffer.
    fn literals(&mut self, n: u32, all_in: bool) -> Res<u32> {
        let st = &mut *self.st;
        let at = st.writer.len as usize;
        let room = (W - at).min(n as usize);
        let (mut prev, pos) = (st.prev_byte, st.out);
        let mut k = 0u32;
        for slot in &mut st.writer.buf[at..at + room] {
            let here = pos.wrapping_add(k);
            prev = st.model.literal(&mut st.input, prev, here, 0);
            *slot = prev;
            k += 1;
            if !all_in && st.input.len < 8 {
                break;
            }
        }
        if st.input.starved() {
            return Err(Error::BodyInvalid);
        }
        st.writer.len += k as u16;
        st.out += k;
        st.prev_byte = prev;
        Ok(k)
    }

    /// Decodes as far as the buffered input surely reaches.
    async fn decode(&mut self) -> Res<()> {
        let all_in = self.st.body_left == 0;
        let have = |s: &Self, n: usize| all_in || s.st.input.len as usize >= n;
        if !self.st.started {
            if !have(self, crate::codec::rc::INIT_BYTES) {
                return Ok(());
            }
            let input = &mut self.st.input;
            input.state = DecoderState::start(input)
                .filter(|_| !input.starved())
                .ok_or(Error::BodyInvalid)?;
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
                    let k = self.copy_some(n).await?;
                    self.st.job = if n > k { Job::Copy(n - k) } else { Job::None };
                }
                _ if left == 0 => return Ok(()),
                Job::Lit(n) => {
                    if !have(self, 8) {
                        return Ok(());
                    }
                    let k = self.literals(n, all_in)?;
                    self.st.job = if n > k { Job::Lit(n - k) } else { Job::None };
                    if self.st.writer.len as usize == W {
                        self.flush_target().await?;
                    }
                }
                Job::None => {
                    if !have(self, MAX_OP_INPUT) {
                        return Ok(());
                    }
                    let st = &mut *self.st;
                    let base = st.entry.source.size;
                    let op =
                        st.model
                            .op(&mut st.input, st.out, st.cursor, base, Op::Copy { len: 0 });
                    if st.input.starved() {
                        return Err(Error::BodyInvalid);
                    }
                    self.start_op(op, left).await?;
                }
            }
        }
    }

    /// Checks a decoded operation against the images and starts it.
    async fn start_op(&mut self, op: Op, left: u32) -> Res<()> {
        let (ss, out) = (self.st.entry.source.size, self.st.out);
        // The cursor is within the virtual source (`ss + out` bytes so
        // far): in 32 bits, what `(cursor as u64) < ss + out` says.
        let within = |c: u32| c < ss || c - ss < out;
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
                if c < 0 || c > u32::MAX as i64 || !within(c as u32) {
                    return Err(Error::BodyInvalid);
                }
                self.st.cursor = c as u32;
                self.st.job = Job::Copy(len);
                Ok(())
            }
            _ if !within(self.st.cursor) => Err(Error::BodyInvalid),
            Op::Copy { len } => {
                self.st.job = Job::Copy(len);
                Ok(())
            }
            Op::Diff { d } => {
                let s = self.virtual_byte(self.st.cursor).await?;
                let b = self.st.model.diff_byte(s, d);
                self.st.cursor += 1;
                self.emit(b).await
            }
        }
    }

    /// The byte at `pos` of the virtual source: the source image, then the
    /// target written so far. The caller keeps `pos < source size + out`.
    #[inline]
    async fn virtual_byte(&mut self, pos: u32) -> Res<u8> {
        let ss = self.st.entry.source.size;
        let at = if pos < ss {
            let limit = align_up(ss as u64, S::READ_SIZE) as u32;
            cached(
                &mut self.st.cache,
                Cached::Source,
                &mut self.source,
                pos,
                limit,
            )
            .await
            .map_err(FlashError::of(FlashRole::Source))?
        } else {
            let (t, w) = (pos - ss, &self.st.writer);
            if t >= w.flushed {
                return Ok(w.buf[(t - w.flushed) as usize % W]);
            }
            let flushed = w.flushed;
            cached_far(
                &mut self.st.cache,
                Cached::Target,
                &mut self.target,
                t,
                flushed,
            )
            .await
            .map_err(FlashError::of(FlashRole::Target))?
        };
        Ok(self.st.cache.byte(at))
    }

    /// Copies up to `n` (≥ 1) bytes from the cursor to the target, as many
    /// as one cached block and the write buffer allow; returns how many.
    /// Each source puts its bytes at the end of the write buffer; one tail
    /// takes them.
    async fn copy_some(&mut self, n: u32) -> Res<u32> {
        let ss = self.st.entry.source.size;
        let pos = self.st.cursor;
        let st = &mut *self.st;
        let room = (st.writer.room() as u32).min(n);
        let at = st.writer.len as usize;
        let cache = &st.cache;
        let cached_source =
            cache.what == Cached::Source && pos.wrapping_sub(cache.base) < cache.len;
        let k = if pos < ss && S::READ_SIZE == 1 && !cached_source {
            // Not cached, and the source reads any byte: straight into
            // the write buffer, as much as it has room for (a long copy:
            // one read per write, no copy between buffers).
            let k = room.min(ss - pos);
            self.source
                .read(pos, &mut st.writer.buf[at..at + k as usize])
                .await
                .map_err(FlashError::of(FlashRole::Source))?;
            k
        } else if pos >= ss && pos - ss >= st.writer.flushed {
            // From the write buffer itself, perhaps overlapping what it
            // produces (a run of one byte copies from one behind): byte
            // by byte, front to back, within the buffer.
            let w = &mut st.writer;
            // What the copy reads lies `back` bytes before what it writes.
            let back = at - (pos - ss - w.flushed) as usize;
            let buf = &mut w.buf[..at + room as usize];
            for i in at..buf.len() {
                buf[i] = buf[i - back];
            }
            room
        } else {
            // Through the read cache, from the source or the target
            // written so far; a copy from the source stops at its end,
            // where the target begins.
            let (at, end) = if pos < ss {
                let limit = align_up(ss as u64, S::READ_SIZE) as u32;
                let at = cached(&mut st.cache, Cached::Source, &mut self.source, pos, limit)
                    .await
                    .map_err(FlashError::of(FlashRole::Source))?;
                (at, ss - pos)
            } else {
                let flushed = st.writer.flushed;
                let at = cached_far(
                    &mut st.cache,
                    Cached::Target,
                    &mut self.target,
                    pos - ss,
                    flushed,
                )
                .await
                .map_err(FlashError::of(FlashRole::Target))?;
                (at, room)
            };
            let piece = st.cache.piece(at);
            let k = (piece.len() as u32).min(room).min(end);
            st.writer.put(&piece[..k as usize]);
            k
        };
        // `k` ≥ 1: every source gives at least one byte.
        let w = &mut st.writer;
        st.prev_byte = w.buf[(at + k as usize - 1) % W];
        w.len += k as u16;
        st.cursor += k;
        st.out += k;
        if w.len as usize == W {
            flush_writer(w, &mut self.target)
                .await
                .map_err(FlashError::of(FlashRole::Target))?;
        }
        Ok(k)
    }

    #[inline]
    async fn emit(&mut self, b: u8) -> Res<()> {
        self.st.out += 1;
        self.st.prev_byte = b;
        if self.st.writer.push(b) {
            flush_writer(&mut self.st.writer, &mut self.target)
                .await
                .map_err(FlashError::of(FlashRole::Target))?;
        }
        Ok(())
    }

    /// Programs the write buffer.
    #[inline]
    async fn flush_target(&mut self) -> Res<()> {
        flush_writer(&mut self.st.writer, &mut self.target)
            .await
            .map_err(|e| Error::Flash(FlashError::new(FlashRole::Target, e)))
    }
}

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

// Loading the same files twice is the point: one source, two copies.
#[allow(clippy::duplicate_mod)]
/// The applier over blocking flash drivers (`embedded_storage`): this
/// directory's `run.rs`, `reads.rs` and `resume.rs` as they are, with
/// every `async` and `.await` removed (`flashpatch_macros::blocking`).
#[path = "."]
pub(crate) mod blocking {
    use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
    use flashpatch_macros::blocking as io;

    mod bounded;
    pub(crate) mod reads;
    mod resume;
    mod run;

    pub use run::Applier;
}

#[allow(clippy::duplicate_mod)]
/// The applier over async flash drivers (`embedded_storage_async`): the
/// same files, compiled as they are.
#[path = "."]
pub(crate) mod asynch {
    use embedded_storage_async::nor_flash::{NorFlash, ReadNorFlash};
    use flashpatch_macros::asynchronous as io;

    mod bounded;
    pub(crate) mod reads;
    mod resume;
    mod run;

    pub use run::Applier;
}

use crate::codec::rc::RingDecoder;
use crate::codec::{DecoderState, Model, MAX_OP_INPUT};
use crate::crc32::Crc32;
#[cfg(feature = "sign")]
use crate::error::ApplyError as Error;
use crate::format::{EntryHeader, TargetId, CONTAINER_HEADER_LEN, MAX_HEADER_LEN};
use io::{ReadCache, Writer};

/// Bytes of the header buffer: it holds an entry header, and is the read
/// buffer of the digest passes before and after a body. It is the codec
/// model's memory ([`Model::spare`]): the model is used only while a body
/// is decoded, and set up again ([`Model::reset`], or loaded from a
/// checkpoint) before it is.
const BUF: usize = MAX_HEADER_LEN;
const _: () = assert!(BUF == crate::codec::model::SPARE);

/// Bytes of the input ring the body is decoded from: at least an
/// operation's input ([`MAX_OP_INPUT`]) and the literal's 8 more, and a
/// power of two, so that `% RING` is a mask (a Cortex-M0 has no divide).
const RING: usize = 128;
const _: () =
    assert!(RING >= MAX_OP_INPUT + 8 && RING.is_power_of_two() && RING <= u16::MAX as usize);

/// Bytes of the applier's saved state ([`ApplierState::field`]).
pub(crate) const SAVED_LEN: usize = crate::snapshot::layout!(ApplierState::<64, 64>::new()).1;

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

/// What `select` learnt of the source slot's prefixes. The slot does not
/// change between entries, so its digests are computed once and kept: a
/// file of many entries for one size costs one pass of each hash, not one
/// per entry. Index 0 is the prefix checked against an entry's target
/// (is it installed already?), index 1 the one checked against its source.
#[derive(Clone, Copy)]
pub(crate) struct SlotDigests {
    /// The prefixes' sizes.
    pub(crate) size: [u32; 2],
    /// Their CRC-32s, where `known` says so.
    pub(crate) crc32: [u32; 2],
    /// SHA-256 of prefix 0, if `known & SHA256`.
    pub(crate) sha256: [u8; 32],
    /// MD5 of prefix 1, if `known & MD5`: computed, or vouched for by the
    /// caller.
    pub(crate) md5: [u8; 16],
    /// Bit `i`: `crc32[i]` is known; [`SlotDigests::SHA256`],
    /// [`SlotDigests::MD5`].
    pub(crate) known: u8,
    /// CRC-32 passes made ([`MAX_SOURCE_PASSES`]).
    pub(crate) passes: u8,
}

impl SlotDigests {
    pub(crate) const SHA256: u8 = 4;
    pub(crate) const MD5: u8 = 8;
    /// The caller vouched for the slot's image ([`crate::Applier::vouch_image`]):
    /// it is `size[0]` bytes with the SHA-256 `sha256`, and prefix 0 is
    /// never hashed.
    pub(crate) const IMAGE: u8 = 16;
    /// The caller vouched for what the target slot holds
    /// ([`crate::Applier::vouch_target_slot`]): kept in the state's
    /// `result` (size 0: no image), and the slot is never read to find an
    /// entry's target installed.
    pub(crate) const TARGET_SLOT: u8 = 32;
    /// What a caller may have vouched for before the first feed (an MD5
    /// of the source is only ever vouched for then).
    pub(crate) const VOUCHED: u8 = Self::IMAGE | Self::TARGET_SLOT | Self::MD5;
    const EMPTY: SlotDigests = SlotDigests {
        size: [0; 2],
        crc32: [0; 2],
        sha256: [0; 32],
        md5: [0; 16],
        known: 0,
        passes: 0,
    };

    /// Whether the CRC-32 of prefix `i` is known for `size` bytes.
    pub(crate) fn knows(&self, i: usize, size: u32) -> bool {
        self.known >> i & 1 != 0 && self.size[i] == size
    }

    /// Remembers the CRC-32s `crc` of the prefixes of `size` bytes for
    /// the indices in the bit set `new`; a digest of another size is
    /// forgotten (one of the same size, a vouched MD5, is kept).
    #[inline(never)]
    pub(crate) fn learn(&mut self, new: u8, size: [u32; 2], crc: (u32, u32)) {
        let crc = [crc.0, crc.1];
        self.passes += 1;
        for i in 0..2 {
            if new >> i & 1 != 0 {
                if self.size[i] != size[i] {
                    self.known &= !(Self::SHA256 << i);
                }
                self.size[i] = size[i];
                self.crc32[i] = crc[i];
                self.known |= 1 << i;
            }
        }
    }
}

/// The most passes over the source slot that one selection makes for
/// CRC-32s of prefixes it does not know yet. Every entry of a file can
/// name another source size; this bounds what a file of 65,535 such
/// entries costs to this many passes of the slot (and one SHA-256 and one
/// MD5 pass). An entry that would need one more pass is skipped as not
/// meant for the image, so a file with entries for more than this many
/// source sizes before the one a device runs does not find it.
pub const MAX_SOURCE_PASSES: u8 = 16;

/// What [`crate::Applier::feed`] reports.
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
    /// An entry header for the applier is read: its selection is due
    /// ([`crate::Applier::take_due`]), a stop of its own, so that the
    /// digest passes are never on the stack under the input's frames.
    Select,
    Body,
    /// The body is written and its CRC checked: the read-back of the
    /// target is due ([`crate::Applier::take_due`]), a stop of its
    /// own, so that the hash is never on the stack under the decoder.
    Verify,
    Skip,
    Done,
    Failed,
}

/// Work left over from the last operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Job {
    None,
    Copy(u32),
    Lit(u32),
}

/// The applier's working memory: everything but the two flashes (about
/// 2.6 KiB with the default `W` and `R`; its `size_of` is the applier's
/// RAM). It stays where the caller put it — a `static` (its
/// [`ApplierState::new`] is `const`) or a long-lived stack frame — and is
/// never moved: [`crate::Applier::new`] resets it in place, so no copy of it
/// lands on the stack. One state serves one applier at a time, and can be
/// used again for the next update.
pub struct ApplierState<const W: usize = 64, const R: usize = 64> {
    phase: Phase,
    entries_left: u16,
    outcome: Kept,
    result: TargetId,
    /// What `select` learnt of the source slot.
    digests: SlotDigests,
    consumed: u32,
    /// The range decoder and the input ring of the body (its `len`, the
    /// bytes of a header read so far before a body).
    input: RingDecoder<RING>,
    need: u16,
    entry: EntryHeader,
    body_left: u32,
    body_crc: Crc32,
    started: bool,
    /// The codec model; outside a body, the header buffer.
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
    /// Decoding stopped at a checkpoint (or before the body, see `hold`).
    paused: bool,
    /// Stop once before the first target write of the entry to apply.
    hold: bool,
    /// The component to apply: entries for others are skipped.
    component: u8,
    /// An entry for `component` has been read.
    seen: bool,
    /// The security counter of the entry being applied, then of the one
    /// the outcome refers to.
    counter: u32,
    /// The entries to apply: A/B ones (0), or in-place ones of this unit
    /// and role (`InPlaceEntry::to_word`), then the chosen entry's.
    in_place: u32,
    /// What the current entry's source identity says of the vouched
    /// image, if both are there.
    named: Named,
    #[cfg(feature = "sign")]
    gate: Gate,
}

/// What an entry's source identity ([`crate::format::tag::SOURCE_ID`])
/// says of the image the caller vouched for
/// ([`crate::Applier::vouch_image`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Named {
    /// No vouched image, or no identity in the entry: the slot is hashed.
    Unknown,
    /// The entry names the vouched image as its source.
    Image,
    /// The entry names another image.
    Other,
}

impl<const W: usize, const R: usize> crate::snapshot::Fields for ApplierState<W, R> {
    fn field(&mut self, i: usize) -> Option<(&'static str, crate::snapshot::Field<'_>)> {
        ApplierState::field(self, i)
    }
}

impl<const W: usize, const R: usize> Default for ApplierState<W, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const R: usize> ApplierState<W, R> {
    /// The target and security counter of the entry the last run's
    /// outcome refers to, once it has one (what
    /// [`crate::Applier::result_target`] and
    /// [`crate::Applier::result_counter`] say), read where they are kept.
    pub(crate) fn outcome_target(&self) -> Option<(&TargetId, u32)> {
        self.outcome.get().map(|_| (&self.result, self.counter))
    }

    /// The input buffer, for a caller's own use once a run has ended (its
    /// outcome is kept apart from it): the next [`crate::Applier::new`]
    /// starts it afresh.
    pub(crate) fn header_buf(&mut self) -> &mut [u8; BUF] {
        self.model.spare()
    }

    /// A state ready for [`crate::Applier::new`].
    pub const fn new() -> Self {
        ApplierState {
            phase: Phase::Container,
            entries_left: 0,
            outcome: Kept::None,
            result: TargetId::EMPTY,
            digests: SlotDigests::EMPTY,
            consumed: 0,
            input: RingDecoder::EMPTY,
            need: 0,
            entry: EntryHeader::EMPTY,
            body_left: 0,
            body_crc: Crc32::from_register(0),
            started: false,
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
            hold: false,
            component: 0,
            seen: false,
            counter: 0,
            in_place: 0,
            named: Named::Unknown,
            #[cfg(feature = "sign")]
            gate: Gate::new(),
        }
    }

    /// Back to the state [`ApplierState::new`] gives, field by field: the
    /// model and the buffers are not copied (the input buffer and the
    /// model are set up again before they are read).
    /// (`*self = Self::new()` would be one line, but a store of the whole
    /// state costs 360 bytes of `memset` and `memcpy` on a Cortex-M4,
    /// measured with `cargo xtask size`.)
    fn reset(&mut self) {
        self.phase = Phase::Container;
        self.entries_left = 0;
        self.outcome = Kept::None;
        // `result` is read only with an outcome, and `digests` only
        // where `known` says: they need not be cleared.
        self.digests.known = 0;
        self.digests.passes = 0;
        self.consumed = 0;
        self.input.head = 0;
        self.input.len = 0;
        self.need = CONTAINER_HEADER_LEN as u16;
        self.entry = EntryHeader::EMPTY;
        self.body_left = 0;
        self.body_crc = Crc32::new();
        self.started = false;
        self.input.state = DecoderState::EMPTY;
        self.cursor = 0;
        self.out = 0;
        self.prev_byte = 0;
        self.job = Job::None;
        self.writer.restart(0);
        self.cache.invalidate();
        self.ckpt_every = 0;
        self.ckpt_next = 0;
        self.paused = false;
        self.hold = false;
        self.component = 0;
        self.seen = false;
        self.counter = 0;
        self.in_place = 0;
        #[cfg(feature = "sign")]
        self.gate.reset();
    }

    /// Fields of what a checkpoint saves, in order (`crate::snapshot`): everything
    /// the applier needs to go on decoding the entry in progress from an
    /// erase unit boundary of its target. The one list of it: saving,
    /// loading, [`SAVED_LEN`] and `docs/FORMAT.md`'s table come from here.
    /// The rest of the state is set up again on loading
    /// (`Applier::resumed`): the write buffer is empty and the read cache
    /// cold at a checkpoint.
    pub(crate) const FIELDS: usize = crate::snapshot::layout!(Self::new()).0;

    /// Field `i` of [`ApplierState::FIELDS`] (see above).
    pub(crate) const fn field(
        &mut self,
        i: usize,
    ) -> Option<(&'static str, crate::snapshot::Field<'_>)> {
        use crate::snapshot::Field::{Bytes, Flag, Job as J, U16, U32, U8};
        crate::snapshot::fields!(i;
            "entries of the patch left, the current one included" => U16(&mut self.entries_left),
            "patch bytes consumed: where the sender resumes" => U32(&mut self.consumed),
            .. EntryHeader: self.entry,
            "the current entry's security counter" => U32(&mut self.counter),
            "body bytes not yet received" => U32(&mut self.body_left),
            "running CRC-32 register of the body (before the final XOR)" => U32(self.body_crc.register_mut()),
            "`1`: the range decoder has started" => Flag(&mut self.started),
            "input ring: head" => U16(&mut self.input.head),
            "input ring: length" => U16(&mut self.input.len),
            "input ring: its 128 bytes" => Bytes(&mut self.input.ring),
            "copy cursor" => U32(&mut self.cursor),
            "target bytes written (a multiple of the erase size)" => U32(&mut self.out),
            "previous target byte" => U8(&mut self.prev_byte),
            "pending job: `0` none, `1` copy, `2` literal run; then the bytes left of it (≥ 1)" => J(&mut self.job),
            .. DecoderState: self.input.state,
            .. Model: self.model,
        )
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
    fn check(&mut self, raw: &[u8], ours: bool) -> Result<(), Error> {
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
    fn check_body(&mut self) -> Result<(), Error> {
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

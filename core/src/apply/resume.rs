//! Checkpoints of the applier: its whole state at a target erase unit
//! boundary, saved to bytes and loaded back after a reset.
//!
//! What is saved is [`ApplierState::field`]'s list, [`crate::apply::SAVED_LEN`]
//! bytes (its table is in `docs/FORMAT.md`, section "State area").
//!
//! A checkpoint is taken only when the write buffer is empty and the
//! target is written up to an erase unit boundary, so the target bytes
//! written equal the bytes programmed and nothing else needs saving.

use super::run::Applier;
use super::{NorFlash, ReadNorFlash};
use crate::apply::io::align_up;
use crate::apply::{ApplierState, Job, Kept, Phase, SlotDigests, RING};
use crate::codec::{Params, CODEC_RC3};

impl<S, T, const W: usize, const R: usize, H: crate::hashes::Hashes> Applier<'_, S, T, W, R, H>
where
    S: ReadNorFlash,
    T: NorFlash,
{
    /// Stops for a checkpoint each time `every` more target bytes are
    /// programmed (a multiple of the target's erase size; 0: never).
    pub(crate) fn set_checkpoints(&mut self, every: u32) {
        self.st.ckpt_every = every;
        self.st.ckpt_next = every;
    }

    /// Stops once, as at a checkpoint, after the entry to apply has been
    /// chosen and before anything of it is written to the target.
    pub(crate) fn hold_before_body(&mut self) {
        self.st.hold = true;
    }

    /// The target identity of the entry being applied.
    pub(crate) fn entry_target(&self) -> crate::format::TargetId {
        self.st.entry.target
    }

    /// Patch bytes consumed so far: after a checkpoint, where the sender
    /// resumes.
    pub(crate) fn consumed(&self) -> u32 {
        self.st.consumed
    }

    /// The state to save, field by field (`ApplierState::field`). Only
    /// meaningful while [`Applier::paused`].
    pub(crate) fn saved(&mut self) -> &mut ApplierState<W, R> {
        self.st
    }

    /// The state to load saved fields into; once they are in,
    /// [`Applier::resumed`]. Until then the applier refuses to go on.
    pub(crate) fn loading(&mut self) -> &mut ApplierState<W, R> {
        self.st.phase = Phase::Failed;
        self.st
    }

    /// Back to the start of a patch (after a state that did not load),
    /// keeping what the caller set before it loaded: the checkpoint
    /// interval, the component, the in-place mode, what it vouched for
    /// (the state's load does not touch the vouched digests nor the
    /// target slot's claim in `result`) and a hold before the body.
    pub(crate) fn restart(&mut self) {
        let (every, component, mode) = (self.st.ckpt_every, self.st.component, self.st.in_place);
        let vouched = self.st.digests.known & SlotDigests::VOUCHED;
        let hold = self.st.hold;
        self.st.reset();
        self.set_checkpoints(every);
        self.st.component = component;
        self.st.in_place = mode;
        self.st.digests.known = vouched;
        self.st.hold = hold;
    }

    /// Applies in-place entries of `want`'s unit and role only (their
    /// order is the entry's); without this call, A/B entries only. Once
    /// an entry is chosen, [`Applier::in_place`] is that entry's.
    #[allow(dead_code)] // the async copy has no in-place manager yet
    pub(crate) fn set_in_place(&mut self, want: crate::format::InPlaceEntry) {
        self.st.in_place = want.to_word();
    }

    /// The in-place entry being applied (or wanted, before one is chosen).
    #[allow(dead_code)]
    pub(crate) fn in_place(&self) -> Option<crate::format::InPlaceEntry> {
        crate::format::InPlaceEntry::from_word(self.st.in_place)
    }

    /// Forgets what the read cache holds (what it read may have moved).
    #[allow(dead_code)]
    pub(crate) fn invalidate_cache(&mut self) {
        self.st.cache.invalidate();
    }

    /// After the fields of a saved state were loaded (over the same
    /// flashes): checks that they are a state the applier can continue
    /// from, and sets up the rest. `false` if they are not (the applier
    /// must then not be used).
    pub(crate) fn resumed(&mut self) -> bool {
        let e = self.st.entry;
        let size = e.target.size;
        let reach = e.source.size as u64 + self.st.out as u64;
        let pending = match self.st.job {
            Job::None => 0,
            Job::Copy(n) | Job::Lit(n) => n,
        };
        let ok = self.st.input.state.valid()
            && self.st.model.valid()
            && self.st.started
            && self.st.entries_left >= 1
            && e.codec == CODEC_RC3
            && Params::from_byte(e.params) == Some(self.st.model.params())
            && align_up(size as u64, T::ERASE_SIZE) <= self.target.capacity() as u64
            && self.st.out < size
            && self.st.out.is_multiple_of(T::ERASE_SIZE as u32)
            && (self.st.cursor as u64) <= reach
            && pending <= size - self.st.out
            && (self.st.input.head as usize) < RING
            && self.st.input.len as usize <= RING
            && self.st.body_left <= e.body_len;
        if !ok {
            return false;
        }
        self.st.writer.restart(self.st.out);
        self.st.cache.invalidate();
        self.st.outcome = Kept::None;
        self.st.seen = true;
        self.st.ckpt_next = self.st.out.saturating_add(self.st.ckpt_every);
        self.st.paused = false;
        self.st.phase = Phase::Body;
        true
    }
}

//! Checkpoints of the applier: its whole state at a target erase unit
//! boundary, saved to bytes and loaded back after a reset.
//!
//! What is saved (all integers little-endian), [`SAVED_LEN`] bytes:
//!
//! | bytes | field |
//! |---:|---|
//! | 2 | entries left, the current one included |
//! | 4 | patch bytes consumed: where the sender resumes |
//! | 76 | the current entry's fixed header fields, in header order |
//! | 4 | the current entry's security counter |
//! | 4 | body bytes not yet received |
//! | 4 | running body CRC-32 register |
//! | 1 | 1 (the range decoder has started) |
//! | 2 + 2 + 256 | input ring: head, length, bytes |
//! | 4 + 4 + 1 | cursor, target bytes written, previous byte |
//! | 1 + 4 | pending job: 0 none, 1 copy, 2 literal run; its length |
//! | [`crate::codec::SAVED_LEN`] | codec state: [`crate::codec::save_state`] |
//!
//! A checkpoint is taken only when the write buffer is empty and the
//! target is written up to an erase unit boundary, so the target bytes
//! written equal the bytes programmed and nothing else needs saving.

use super::run::Applier;
use super::{NorFlash, ReadNorFlash};
use crate::apply::io::align_up;
use crate::apply::{Job, Kept, Phase, BUF};
use crate::codec::{self, Params, CODEC_RC3};
use crate::crc32::Crc32;
use crate::format::{EntryHeader, FIXED_HEADER_LEN};

fn u16_of(input: &mut dyn FnMut(&mut [u8]) -> bool, ok: &mut bool) -> u16 {
    let mut b = [0u8; 2];
    *ok &= input(&mut b);
    u16::from_le_bytes(b)
}

fn u32_of(input: &mut dyn FnMut(&mut [u8]) -> bool, ok: &mut bool) -> u32 {
    let mut b = [0u8; 4];
    *ok &= input(&mut b);
    u32::from_le_bytes(b)
}

impl<S, T, const W: usize, const R: usize> Applier<'_, S, T, W, R>
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

    /// The target identity of the entry being applied.
    pub(crate) fn entry_target(&self) -> crate::format::TargetId {
        self.st.entry.target
    }

    /// Patch bytes consumed so far: after a checkpoint, where the sender
    /// resumes.
    pub(crate) fn consumed(&self) -> u32 {
        self.st.consumed
    }

    /// Writes the state ([`SAVED_LEN`] bytes) to `out`. Only meaningful
    /// while [`Applier::paused`].
    pub(crate) fn save_state(&self, out: &mut dyn FnMut(&[u8])) {
        out(&self.st.entries_left.to_le_bytes());
        out(&self.st.consumed.to_le_bytes());
        out(&self.st.entry.fixed());
        out(&self.st.counter.to_le_bytes());
        out(&self.st.body_left.to_le_bytes());
        out(&self.st.body_crc.register().to_le_bytes());
        out(&[self.st.started as u8]);
        out(&self.st.head.to_le_bytes());
        out(&self.st.len.to_le_bytes());
        out(&self.st.buf);
        out(&self.st.cursor.to_le_bytes());
        out(&self.st.out.to_le_bytes());
        out(&[self.st.prev_byte]);
        let (tag, n) = match self.st.job {
            Job::None => (0u8, 0u32),
            Job::Copy(n) => (1, n),
            Job::Lit(n) => (2, n),
        };
        out(&[tag]);
        out(&n.to_le_bytes());
        codec::save_state(&self.st.rc, &self.st.model, out);
    }

    /// Loads what [`Applier::save_state`] wrote into a fresh applier over
    /// the same flashes; it then continues where the saved one paused.
    /// `false` if the bytes are not a state it can continue from (the
    /// applier must then not be used).
    pub(crate) fn load_state(&mut self, input: &mut dyn FnMut(&mut [u8]) -> bool) -> bool {
        let mut ok = true;
        self.st.phase = Phase::Failed;
        self.st.entries_left = u16_of(input, &mut ok);
        self.st.consumed = u32_of(input, &mut ok);
        let mut e = [0u8; FIXED_HEADER_LEN];
        ok &= input(&mut e);
        self.st.entry = EntryHeader::from_fixed(&e);
        self.st.counter = u32_of(input, &mut ok);
        self.st.body_left = u32_of(input, &mut ok);
        self.st.body_crc = Crc32::from_register(u32_of(input, &mut ok));
        let mut b = [0u8; 1];
        ok &= input(&mut b);
        self.st.started = b[0] == 1;
        self.st.head = u16_of(input, &mut ok);
        self.st.len = u16_of(input, &mut ok);
        ok &= input(&mut self.st.buf);
        self.st.cursor = u32_of(input, &mut ok);
        self.st.out = u32_of(input, &mut ok);
        ok &= input(&mut b);
        self.st.prev_byte = b[0];
        ok &= input(&mut b);
        let n = u32_of(input, &mut ok);
        self.st.job = match b[0] {
            0 => Job::None,
            1 if n > 0 => Job::Copy(n),
            2 if n > 0 => Job::Lit(n),
            _ => return false,
        };
        ok &= codec::load_state(&mut self.st.rc, &mut self.st.model, input);
        let e = self.st.entry;
        let size = e.target.size;
        let reach = e.source.size as u64 + self.st.out as u64;
        let pending = match self.st.job {
            Job::None => 0,
            Job::Copy(n) | Job::Lit(n) => n,
        };
        ok = ok
            && self.st.started
            && self.st.entries_left >= 1
            && e.codec == CODEC_RC3
            && Params::from_byte(e.params) == Some(self.st.model.params())
            && align_up(size as u64, T::ERASE_SIZE) <= self.target.capacity() as u64
            && self.st.out < size
            && self.st.out.is_multiple_of(T::ERASE_SIZE as u32)
            && (self.st.cursor as u64) <= reach
            && pending <= size - self.st.out
            && (self.st.head as usize) < BUF
            && self.st.len as usize <= BUF
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

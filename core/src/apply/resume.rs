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

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

use super::io::{align_up, Writer};
use super::{Applier, Job, Phase, BUF};
use crate::codec::{self, Params, CODEC_RC2};
use crate::crc32::Crc32;
use crate::format::{EntryHeader, FIXED_HEADER_LEN};

/// Bytes of the applier's saved state.
pub(crate) const SAVED_LEN: usize =
    2 + 4 + FIXED_HEADER_LEN + 4 + 4 + 1 + 4 + BUF + 9 + 5 + codec::SAVED_LEN;

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

impl<S, T, const W: usize, const R: usize> Applier<S, T, W, R>
where
    T: NorFlash,
    S: ReadNorFlash<Error = T::Error>,
{
    /// Stops for a checkpoint each time `every` more target bytes are
    /// programmed (a multiple of the target's erase size; 0: never).
    pub(crate) fn set_checkpoints(&mut self, every: u32) {
        self.ckpt_every = every;
        self.ckpt_next = every;
    }

    /// The target identity of the entry being applied.
    pub(crate) fn entry_target(&self) -> crate::format::TargetId {
        self.entry.target
    }

    /// Patch bytes consumed so far: after a checkpoint, where the sender
    /// resumes.
    pub(crate) fn consumed(&self) -> u32 {
        self.consumed
    }

    /// Writes the state ([`SAVED_LEN`] bytes) to `out`. Only meaningful
    /// while [`Applier::paused`].
    pub(crate) fn save_state(&self, out: &mut dyn FnMut(&[u8])) {
        out(&self.entries_left.to_le_bytes());
        out(&self.consumed.to_le_bytes());
        out(&self.entry.fixed());
        out(&self.body_left.to_le_bytes());
        out(&self.body_crc.register().to_le_bytes());
        out(&[self.started as u8]);
        out(&self.head.to_le_bytes());
        out(&self.len.to_le_bytes());
        out(&self.buf);
        out(&self.cursor.to_le_bytes());
        out(&self.out.to_le_bytes());
        out(&[self.prev_byte]);
        let (tag, n) = match self.job {
            Job::None => (0u8, 0u32),
            Job::Copy(n) => (1, n),
            Job::Lit(n) => (2, n),
        };
        out(&[tag]);
        out(&n.to_le_bytes());
        codec::save_state(&self.rc, &self.model, out);
    }

    /// Loads what [`Applier::save_state`] wrote into a fresh applier over
    /// the same flashes; it then continues where the saved one paused.
    /// `false` if the bytes are not a state it can continue from (the
    /// applier must then not be used).
    pub(crate) fn load_state(&mut self, input: &mut dyn FnMut(&mut [u8]) -> bool) -> bool {
        let mut ok = true;
        self.phase = Phase::Failed;
        self.entries_left = u16_of(input, &mut ok);
        self.consumed = u32_of(input, &mut ok);
        let mut e = [0u8; FIXED_HEADER_LEN];
        ok &= input(&mut e);
        self.entry = EntryHeader::from_fixed(&e);
        self.body_left = u32_of(input, &mut ok);
        self.body_crc = Crc32::from_register(u32_of(input, &mut ok));
        let mut b = [0u8; 1];
        ok &= input(&mut b);
        self.started = b[0] == 1;
        self.head = u16_of(input, &mut ok);
        self.len = u16_of(input, &mut ok);
        ok &= input(&mut self.buf);
        self.cursor = u32_of(input, &mut ok);
        self.out = u32_of(input, &mut ok);
        ok &= input(&mut b);
        self.prev_byte = b[0];
        ok &= input(&mut b);
        let n = u32_of(input, &mut ok);
        self.job = match b[0] {
            0 => Job::None,
            1 if n > 0 => Job::Copy(n),
            2 if n > 0 => Job::Lit(n),
            _ => return false,
        };
        ok &= codec::load_state(&mut self.rc, &mut self.model, input);
        let e = self.entry;
        let size = e.target.size;
        let reach = e.source.size as u64 + self.out as u64;
        let pending = match self.job {
            Job::None => 0,
            Job::Copy(n) | Job::Lit(n) => n,
        };
        ok = ok
            && self.started
            && self.entries_left >= 1
            && e.codec == CODEC_RC2
            && Params::from_byte(e.params) == Some(self.model.params())
            && align_up(size as u64, T::ERASE_SIZE) <= self.target.capacity() as u64
            && self.out < size
            && self.out.is_multiple_of(T::ERASE_SIZE as u32)
            && (self.cursor as u64) <= reach
            && pending <= size - self.out
            && (self.head as usize) < BUF
            && self.len as usize <= BUF
            && self.body_left <= e.body_len;
        if !ok {
            return false;
        }
        self.writer = Writer::at(self.out);
        self.cache.invalidate();
        self.outcome = None;
        self.ckpt_next = self.out.saturating_add(self.ckpt_every);
        self.paused = false;
        self.phase = Phase::Body;
        true
    }
}

//! The probability models of codec 1 and the grammar of its operations.
//!
//! Every function here takes a [`BitIo`], so the same code encodes (on the
//! host) and decodes (on the device).

use super::rc::{BitIo, Prob, PROB_INIT};

/// Codes `nbits` bits of `value`, most significant first, with a binary
/// tree of adaptive probabilities (`probs[1..1 << nbits]` are used).
#[inline]
fn tree<I: BitIo, const N: usize>(
    io: &mut I,
    probs: &mut [Prob; N],
    nbits: u32,
    value: u32,
) -> u32 {
    let mut m = 1usize;
    for i in (0..nbits).rev() {
        let b = io.bit(&mut probs[m % N], (value >> i) & 1);
        m = (m << 1) | b as usize;
    }
    (m as u32).wrapping_sub(1 << nbits)
}

/// A model for integers from 1 to 2³²−1: the bit length (5-bit tree), the
/// two bits below the leading one (adaptive, per bit length), and the rest
/// as direct bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Number {
    len: [Prob; 32],
    mant: [Prob; 128],
}

impl Number {
    fn tables(&self, f: &mut dyn FnMut(&[Prob])) {
        f(&self.len);
        f(&self.mant);
    }

    fn tables_mut(&mut self, f: &mut dyn FnMut(&mut [Prob])) {
        f(&mut self.len);
        f(&mut self.mant);
    }

    const fn new() -> Self {
        Number {
            len: [PROB_INIT; 32],
            mant: [PROB_INIT; 128],
        }
    }

    /// Codes `v` (≥ 1; the encoder must not pass 0).
    pub fn code<I: BitIo>(&mut self, io: &mut I, v: u32) -> u32 {
        let n = 32 - v.leading_zeros(); // 1..=32 for v >= 1
        let n = tree(io, &mut self.len, 5, n.wrapping_sub(1)) + 1;
        let mut out = 1u32;
        let mut m = 1usize;
        for i in (0..n - 1).rev() {
            let b = (v >> i) & 1;
            let b = if m < 4 {
                let idx = ((n as usize - 1) * 4 + m) % 128;
                let b = io.bit(&mut self.mant[idx], b);
                m = (m << 1) | b as usize;
                b
            } else {
                io.direct(b)
            };
            out = (out << 1) | b;
        }
        out
    }
}

/// What comes next in the target. The copy cursor `c` points into the
/// virtual source (the source image followed by the target written so far).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Copy `len` bytes from the cursor, which advances with them.
    Copy {
        /// Bytes to copy (at least 1).
        len: u32,
    },
    /// Move the cursor by `delta` (never 0), then copy `len` bytes.
    Seek {
        /// Signed cursor movement.
        delta: i64,
        /// Bytes to copy (at least 1).
        len: u32,
    },
    /// One byte: the source byte at the cursor plus `d` (wrapping, never 0);
    /// the cursor advances by one.
    Diff {
        /// The difference, new byte minus source byte.
        d: u8,
    },
    /// `len` literal bytes follow; the cursor stays where it is.
    Lit {
        /// Literal bytes that follow (at least 1).
        len: u32,
    },
}

/// Contexts for the operation kind: what the previous operation was.
const AFTER_START: usize = 0;
const AFTER_COPY: usize = 1;
const AFTER_DIFF: usize = 2;
const AFTER_LIT: usize = 3;

/// All adaptive state of codec 1 (under 3 KiB; `size_of` is pinned by a test).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    kind: [[Prob; 3]; 4],
    seek_sign: Prob,
    prev: u8,
    params: Params,
    lit: [[Prob; 256]; 2],
    diff: [Prob; 256],
    copy_len: Number,
    seek_len: Number,
    seek_mag: Number,
    lit_len: Number,
}

/// Codec 1's parameters: how literals pick one of the two literal tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Params {
    /// Bits of the previous byte (its top bits) that select the table: 0 or 1.
    pub lc: u8,
    /// Bits of the target position that select the table: 0 or 1.
    pub lp: u8,
}

impl Params {
    /// The parameter byte of an entry header: `lc` in bits 0–1, `lp` in 2–3.
    pub const fn to_byte(self) -> u8 {
        self.lc | (self.lp << 2)
    }

    /// Parses the parameter byte; `None` for values this decoder cannot use
    /// (`lc + lp` must be at most 1 and the other bits clear).
    pub const fn from_byte(b: u8) -> Option<Self> {
        let p = Params {
            lc: b & 3,
            lp: (b >> 2) & 3,
        };
        if b >> 4 == 0 && p.lc + p.lp <= 1 {
            Some(p)
        } else {
            None
        }
    }

    /// Every parameter set the decoder accepts.
    pub const ALL: [Params; 3] = [
        Params { lc: 0, lp: 0 },
        Params { lc: 1, lp: 0 },
        Params { lc: 0, lp: 1 },
    ];
}

impl Model {
    /// Bytes of [`Model::save`]'s output: the context and parameter bytes,
    /// then every probability as a little-endian `u16`.
    pub const SAVED_LEN: usize = 2 + 2 * (12 + 1 + 2 * 256 + 256 + 4 * (32 + 128));

    /// Every probability table, in the order [`Model::save`] writes them.
    /// `save`, `load` and `SAVED_LEN` are the only places that know the
    /// model's shape for checkpoints: change them together.
    fn tables(&self, f: &mut dyn FnMut(&[Prob])) {
        for k in &self.kind {
            f(k);
        }
        f(core::slice::from_ref(&self.seek_sign));
        for l in &self.lit {
            f(l);
        }
        f(&self.diff);
        for n in [
            &self.copy_len,
            &self.seek_len,
            &self.seek_mag,
            &self.lit_len,
        ] {
            n.tables(f);
        }
    }

    fn tables_mut(&mut self, f: &mut dyn FnMut(&mut [Prob])) {
        for k in &mut self.kind {
            f(k);
        }
        f(core::slice::from_mut(&mut self.seek_sign));
        for l in &mut self.lit {
            f(l);
        }
        f(&mut self.diff);
        for n in [
            &mut self.copy_len,
            &mut self.seek_len,
            &mut self.seek_mag,
            &mut self.lit_len,
        ] {
            n.tables_mut(f);
        }
    }

    /// Writes the whole adaptive state ([`Model::SAVED_LEN`] bytes): the
    /// previous-operation context, the parameter byte, every probability.
    pub fn save(&self, out: &mut dyn FnMut(&[u8])) {
        out(&[self.prev, self.params.to_byte()]);
        self.tables(&mut |t| {
            for p in t {
                out(&p.to_le_bytes());
            }
        });
    }

    /// Reads what [`Model::save`] wrote, in place; `false` if `input` fails
    /// or a value is out of range (a probability outside `1..2048`, an
    /// unknown context or parameter byte).
    pub fn load(&mut self, input: &mut dyn FnMut(&mut [u8]) -> bool) -> bool {
        let mut b = [0u8; 2];
        if !input(&mut b) {
            return false;
        }
        let Some(params) = Params::from_byte(b[1]) else {
            return false;
        };
        if b[0] as usize > AFTER_LIT {
            return false;
        }
        self.prev = b[0];
        self.params = params;
        let mut ok = true;
        self.tables_mut(&mut |t| {
            for p in t {
                let mut w = [0u8; 2];
                ok &= input(&mut w);
                *p = u16::from_le_bytes(w);
                ok &= *p > 0 && (*p as u32) < super::rc::PROB_ONE;
            }
        });
        ok
    }

    /// A model in its initial state.
    pub const fn new(params: Params) -> Self {
        Model {
            kind: [[PROB_INIT; 3]; 4],
            seek_sign: PROB_INIT,
            prev: AFTER_START as u8,
            params,
            lit: [[PROB_INIT; 256]; 2],
            diff: [PROB_INIT; 256],
            copy_len: Number::new(),
            seek_len: Number::new(),
            seek_mag: Number::new(),
            lit_len: Number::new(),
        }
    }

    /// Codes one operation (not the literal bytes of a `Lit`).
    pub fn op<I: BitIo>(&mut self, io: &mut I, op: Op) -> Op {
        let (fam, sub) = match op {
            Op::Copy { .. } => (0, 0),
            Op::Seek { .. } => (0, 1),
            Op::Diff { .. } => (1, 0),
            Op::Lit { .. } => (1, 1),
        };
        let k = &mut self.kind[self.prev as usize % 4];
        let fam = io.bit(&mut k[0], fam);
        let sub = io.bit(&mut k[1 + fam as usize], sub);
        let out = match (fam, sub) {
            (0, 0) => {
                let len = if let Op::Copy { len } = op { len } else { 0 };
                Op::Copy {
                    len: self.copy_len.code(io, len),
                }
            }
            (0, _) => {
                let (delta, len) = if let Op::Seek { delta, len } = op {
                    (delta, len)
                } else {
                    (0, 0)
                };
                let neg = io.bit(&mut self.seek_sign, (delta < 0) as u32);
                let mag = self.seek_mag.code(io, delta.unsigned_abs() as u32) as i64;
                let len = self.seek_len.code(io, len);
                Op::Seek {
                    delta: if neg == 1 { -mag } else { mag },
                    len,
                }
            }
            (_, 0) => {
                let d = if let Op::Diff { d } = op { d } else { 0 };
                Op::Diff {
                    d: tree(io, &mut self.diff, 8, d as u32) as u8,
                }
            }
            _ => {
                let len = if let Op::Lit { len } = op { len } else { 0 };
                Op::Lit {
                    len: self.lit_len.code(io, len),
                }
            }
        };
        self.prev = match out {
            Op::Copy { .. } | Op::Seek { .. } => AFTER_COPY,
            Op::Diff { .. } => AFTER_DIFF,
            Op::Lit { .. } => AFTER_LIT,
        } as u8;
        out
    }

    /// Codes one literal byte; `prev` is the target byte before it (0 at the
    /// start) and `pos` its position in the target.
    pub fn literal<I: BitIo>(&mut self, io: &mut I, prev: u8, pos: u32, byte: u8) -> u8 {
        let p = self.params;
        let ctx = if p.lc == 1 {
            prev >> 7
        } else {
            (pos & p.lp as u32) as u8
        };
        tree(io, &mut self.lit[ctx as usize % 2], 8, byte as u32) as u8
    }
}

/// The most input bytes one call of [`Model::op`] or [`Model::literal`] can
/// consume: at most one byte per binary decision (the range never shrinks by
/// more than 2⁻⁶ between normalisations). A `Seek` is the longest: 2 kind
/// bits, a sign, two numbers of at most 5 + 2 + 29 decisions each.
pub const MAX_OP_INPUT: usize = 2 + 1 + 2 * 36;

//! The probability models of codec 3 and the grammar of its operations.
//!
//! Every function here takes a [`BitIo`], so the same code encodes (on the
//! host) and decodes (on the device).

use super::rc::{BitIo, Prob, PROB_INIT};

/// Codes the number `v` (≥ 1; the encoder must not pass 0) with a
/// [`Number`]'s length tree `len` and mantissa probabilities `mant`:
/// written once for every coder ([`BitIo::number`]).
#[inline(always)]
pub(crate) fn number_walk<I: BitIo + ?Sized>(
    io: &mut I,
    len: &mut [Prob; LENGTH_TREE],
    mant: &mut [Prob; MANT],
    v: u32,
) -> u32 {
    let n = 32 - v.leading_zeros(); // 1..=32 for v >= 1
    let value = n.wrapping_sub(1);
    // The bit length less one, a 5-level tree. `m < 32` in the loop: the
    // index is in bounds, which the compiler sees (no check, no counter).
    let mut m = 1usize;
    let mut i = 5;
    while m < LENGTH_TREE {
        i -= 1;
        let b = io.bit(&mut len[m], (value >> i) & 1);
        m = (m << 1) | b as usize;
    }
    let n = (m - LENGTH_TREE) as u32 + 1;
    let mut out = 1u32;
    // The bits below the leading one: the first two modelled (a 2-level
    // tree per bit length up to `MANT_LENS`), the others direct.
    let mut i = n - 1;
    if n as usize <= MANT_LENS && i > 0 {
        // Bit length 2 has one modelled bit, at 0; length `n` ≥ 3 its
        // three nodes at `3·(n − 3) + m`.
        let base = 3 * (n as usize - 2);
        let mut m = 1usize;
        while m < 4 && i > 0 {
            i -= 1;
            // Below `MANT` (n ≤ 12, m < 4); `min`, not `% MANT` (a
            // division), keeps the index in bounds.
            let b = io.bit(
                &mut mant[(base + m).saturating_sub(3).min(MANT - 1)],
                (v >> i) & 1,
            );
            m = (m << 1) | b as usize;
            out = (out << 1) | b;
        }
    }
    while i > 0 {
        i -= 1;
        out = (out << 1) | io.direct((v >> i) & 1);
    }
    out
}

/// Probabilities in a [`Number`]'s bit-length tree (node 0 unused).
pub const LENGTH_TREE: usize = 32;

/// Bit lengths whose two bits below the leading one are modelled; longer
/// numbers code those bits as direct bits too.
const MANT_LENS: usize = 12;
/// Mantissa probabilities of a [`Number`]: bit length 2 has one modelled
/// bit (node 1 of a 2-level tree), at 0; lengths 3 to `MANT_LENS` three
/// each (nodes 1–3), at `3 × (length − 3) + node`.
pub const MANT: usize = 3 * (MANT_LENS - 2) + 1;

/// Nodes of a [`ByteTree`] kept per context: the top six levels of the
/// eight (nodes 1–63; index 0 is unused).
const TOP: usize = 64;
/// Nodes of a [`ByteTree`] shared by both contexts: the two lowest levels
/// (nodes 64–255).
const LOW: usize = 256 - TOP;

/// A model for bytes: a binary tree of adaptive probabilities, one bit per
/// level from the most significant, whose top six levels depend on one of
/// two contexts and whose two lowest levels are shared. Measured on the
/// corpus (`docs/CODEC.md`), sharing the low levels costs 0.1 % of patch
/// size and saves 768 bytes of RAM for the literal and `Diff` models
/// together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByteTree {
    /// Context 0's top levels, context 1's, then the shared low levels:
    /// node `m` of context `t` is at `64·t + m` if `m < 64`, else at
    /// `m + 64`.
    p: [Prob; 2 * TOP + LOW],
}

impl ByteTree {
    /// Probabilities in a `ByteTree`.
    const PROBS: usize = 2 * TOP + LOW;

    const fn new() -> Self {
        ByteTree {
            p: [PROB_INIT; 2 * TOP + LOW],
        }
    }

    /// All probabilities zero: for [`Model::UNSET`].
    const UNSET: Self = ByteTree {
        p: [0; 2 * TOP + LOW],
    };

    /// Codes `value` with the top levels of context `ctx` (0 or 1).
    #[inline]
    fn code<I: BitIo>(&mut self, io: &mut I, ctx: usize, value: u8) -> u8 {
        io.byte_tree(&mut self.p, ctx, value)
    }
}

/// Probabilities in a [`ByteTree`].
pub const BYTE_TREE: usize = ByteTree::PROBS;

/// The walk down a [`ByteTree`]'s probabilities `p` with the top levels of
/// context `ctx` (0 or 1), coding `value` with `io`: written once for
/// every coder ([`BitIo::byte_tree`]).
#[inline(always)]
pub(crate) fn walk<I: BitIo + ?Sized>(
    io: &mut I,
    p: &mut [Prob; BYTE_TREE],
    ctx: usize,
    value: u8,
) -> u8 {
    let top = TOP * (ctx % 2);
    let mut m = 1usize;
    let mut i = 8;
    // The top levels from `top`, then the shared ones from `TOP`: one
    // loop per part, so that no level chooses its table, around one bit
    // function. The bounds keep the indexes below 320, which the
    // compiler sees (no bounds check, no division).
    let (mut base, mut end) = (top, TOP);
    loop {
        while m < end {
            i -= 1;
            let b = io.bit(&mut p[base + m], (value as u32 >> i) & 1);
            m = (m << 1) | b as usize;
        }
        if m >= 256 {
            break;
        }
        (base, end) = (TOP, 256);
    }
    m as u8
}

/// A model for integers from 1 to 2³²−1: the bit length (a 5-bit tree, one
/// of `C` trees chosen by the caller's context), the two bits below the
/// leading one (adaptive, per bit length up to `MANT_LENS` (12)), and the rest
/// as direct bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Number<const C: usize> {
    len: [[Prob; LENGTH_TREE]; C],
    mant: [Prob; MANT],
}

impl<const C: usize> Number<C> {
    const fn new() -> Self {
        Number {
            len: [[PROB_INIT; 32]; C],
            mant: [PROB_INIT; MANT],
        }
    }

    /// All probabilities zero: for [`Model::UNSET`].
    const UNSET: Self = Number {
        len: [[0; 32]; C],
        mant: [0; MANT],
    };

    /// Codes `v` (≥ 1; the encoder must not pass 0) with length tree `ctx`.
    #[inline]
    pub fn code<I: BitIo>(&mut self, io: &mut I, ctx: usize, v: u32) -> u32 {
        io.number(&mut self.len[ctx % C], &mut self.mant, v)
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
    /// One byte: the source byte at the cursor plus `d`, plus the carry
    /// out of a `Diff` right before it (see [`Model::diff_byte`]); the cursor
    /// advances by one.
    Diff {
        /// The addend.
        d: u8,
    },
    /// `len` literal bytes follow; the cursor stays where it is.
    Lit {
        /// Literal bytes that follow (at least 1).
        len: u32,
    },
}

/// Kinds of operation as the contexts see them.
const AFTER_START: u8 = 0;
const AFTER_COPY: u8 = 1;
const AFTER_DIFF: u8 = 2;
const AFTER_LIT: u8 = 3;

/// All adaptive state of codec 3: probabilities (`u16`) and a few small
/// integers, nothing else, so that it can be saved and restored as it is
/// (`size_of` is pinned by a test).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// Operation kind, by the kinds of the two previous operations (with
    /// `wp`, the previous kind and the target position modulo 4); with
    /// `kc`, a `Diff` that carried counts as the start's kind.
    kind: [[Prob; 3]; 16],
    seek_sign: Prob,
    /// With `sk`: whether a `Seek` returns home, then whether it goes
    /// back from the output position.
    seek_how: [Prob; 2],
    /// The home alignment: the cursor's alignment (`cursor − target
    /// position`, mod 2³²) in the last run in the source image (brought up
    /// to date before each `Lit` and `Seek`,
    /// [`Model::leave_run`]). A `Seek` with `sk` returns there or moves
    /// from there: where the run that a literal or a repeat of new
    /// interrupted would go on.
    home: u32,
    /// Kinds of the last two operations (`AFTER_*`), the latest first.
    prev: [u8; 2],
    params: Params,
    lit: ByteTree,
    /// `Diff` values, by whether the previous operation was a `Diff` too.
    diff: ByteTree,
    /// Whether a `Diff` repeats one of the two last values of its context:
    /// how many `Diff`s came right before it (0, 1, 2, 3 or more); with
    /// `wp`, the target position's parity and whether a `Diff` came right
    /// before it.
    rep: [[Prob; 2]; 4],
    /// The two last `Diff` values per context, the latest first: the
    /// `Diff` run's four (as `rep`); with `wp`, eight: the target position
    /// modulo 4 and whether a `Diff` came right before it.
    last_d: [[u8; 2]; 8],
    /// `Diff`s in a row just before this point, at most 3.
    diff_run: u8,
    /// The carry out of the last byte if the last operation was a `Diff`
    /// (0 or 1), else 0.
    carry: u8,
    /// Copy lengths, by target position modulo 4.
    copy_len: Number<4>,
    /// With `wp`: the two low bits of an exact run's length less one (a
    /// 2-level tree), by target position modulo 4.
    run_low: [[Prob; 3]; 4],
    seek_len: Number<1>,
    seek_mag: Number<1>,
    lit_len: Number<1>,
}

/// Bytes of [`Model::spare`].
pub(crate) const SPARE: usize = 256;
const _: () = assert!(2 * ByteTree::PROBS >= SPARE);

/// Codec 3's parameters: how literals pick one of the two literal tables,
/// whether the models of operation kinds, `Diff` repeats and run lengths
/// see the position in a 4-byte word, and whether the kind after a `Diff`
/// sees its carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Params {
    /// Bits of the previous byte (its top bits) that select the table: 0 or 1.
    pub lc: u8,
    /// Bits of the target position that select the table: 0 or 1.
    pub lp: u8,
    /// 1: word contexts. An operation's kind is chosen by the previous kind
    /// and the target position modulo 4, a `Diff`'s repeats by the
    /// position's parity and whether a `Diff` came right before it,
    /// instead of by the two previous kinds and the `Diff` run; an exact
    /// run's length codes its two low bits first, by the position modulo 4.
    /// It pays on code of aligned instructions (AArch64, and often Thumb-2
    /// and Xtensa), where what changes in moved code is an offset in a
    /// fixed place of the word.
    pub wp: u8,
    /// 1: carry kinds. The kind of an operation after a `Diff` whose byte
    /// carried (a changed offset whose next byte takes the carry, and so
    /// most likely differs too) is chosen by the contexts of the start,
    /// which are otherwise used once, instead of those of a `Diff`.
    pub kc: u8,
    /// 1: seek kinds. A `Seek` is coded from home, the alignment of the
    /// last run in the source image: it may go home (after a literal or
    /// a repeat of new, the copy it interrupted goes on) for one
    /// decision, go back from the output position (a repeat of bytes
    /// just written) for two and the distance, or move by a signed
    /// distance from home.
    pub sk: u8,
}

impl Params {
    /// The parameter byte of an entry header: `lc` in bits 0–1, `lp` in
    /// 2–3, `wp` in bit 4, `kc` in bit 5, `sk` in bit 6.
    pub const fn to_byte(self) -> u8 {
        self.lc | (self.lp << 2) | (self.wp << 4) | (self.kc << 5) | (self.sk << 6)
    }

    /// Parses the parameter byte; `None` for values this decoder cannot use
    /// (`lc + lp` must be at most 1 and bit 7 clear).
    pub const fn from_byte(b: u8) -> Option<Self> {
        let p = Params {
            lc: b & 3,
            lp: (b >> 2) & 3,
            wp: (b >> 4) & 1,
            kc: (b >> 5) & 1,
            sk: (b >> 6) & 1,
        };
        if b >> 7 == 0 && p.lc + p.lp <= 1 {
            Some(p)
        } else {
            None
        }
    }

    /// The literal parameter sets the decoder accepts, with carry kinds,
    /// seek kinds and `wp = 0` (what `genpat` makes; each may also be used
    /// with `wp = 1`, [`Params::words`], and the decoder takes `kc = 0`
    /// and `sk = 0` too, the patches of `genpat` before carry kinds and
    /// before seek kinds).
    pub const ALL: [Params; 3] = [
        Params {
            lc: 0,
            lp: 0,
            wp: 0,
            kc: 1,
            sk: 1,
        },
        Params {
            lc: 1,
            lp: 0,
            wp: 0,
            kc: 1,
            sk: 1,
        },
        Params {
            lc: 0,
            lp: 1,
            wp: 0,
            kc: 1,
            sk: 1,
        },
    ];

    /// The same literal parameters with `wp` set to `wp` (0 or 1).
    pub const fn words(self, wp: u8) -> Self {
        Params { wp, ..self }
    }
}

crate::snapshot::impl_fields!(Model);

impl Model {
    /// The model's adaptive state, in saved order (`crate::snapshot`): the
    /// two previous kinds, the parameter byte, the four `Diff` histories,
    /// the `Diff` run, the carry, then every probability table. The one
    /// list of the model's shape: saving, loading, [`Model::SAVED_LEN`]
    /// and [`Model::reset`] all go through it.
    pub(crate) const fn field(
        &mut self,
        i: usize,
    ) -> Option<(&'static str, crate::snapshot::Field<'_>)> {
        use crate::snapshot::Field::{Bytes, Params as P, Probs, U32, U8};
        crate::snapshot::fields!(i;
            "model: the two previous operation kinds (0–3 each)" => Bytes(&mut self.prev),
            "model: the codec parameter byte" => P(&mut self.params),
            "model: the last two `Diff` values of each of the eight contexts (the `Diff` run's four without `wp`)" => Bytes(self.last_d.as_flattened_mut()),
            "model: the `Diff` run (0–3)" => U8(&mut self.diff_run),
            "model: the carry (0–1)" => U8(&mut self.carry),
            "model: the home alignment (u32)" => U32(&mut self.home),
            "model: probabilities `kind[16][3]`" => Probs(self.kind.as_flattened_mut()),
            "model: probability `seek_sign`" => Probs(core::slice::from_mut(&mut self.seek_sign)),
            "model: probabilities `seek_how[2]`" => Probs(&mut self.seek_how),
            "model: probabilities `lit` (`top[2][64]`, `low[192]`)" => Probs(&mut self.lit.p),
            "model: probabilities `diff` (`top[2][64]`, `low[192]`)" => Probs(&mut self.diff.p),
            "model: probabilities `rep[4][2]`" => Probs(self.rep.as_flattened_mut()),
            "model: probabilities `copy_len.len[4][32]`" => Probs(self.copy_len.len.as_flattened_mut()),
            "model: probabilities `copy_len.mant[31]`" => Probs(&mut self.copy_len.mant),
            "model: probabilities `run_low[4][3]`" => Probs(self.run_low.as_flattened_mut()),
            "model: probabilities `seek_len.len[32]`" => Probs(self.seek_len.len.as_flattened_mut()),
            "model: probabilities `seek_len.mant[31]`" => Probs(&mut self.seek_len.mant),
            "model: probabilities `seek_mag.len[32]`" => Probs(self.seek_mag.len.as_flattened_mut()),
            "model: probabilities `seek_mag.mant[31]`" => Probs(&mut self.seek_mag.mant),
            "model: probabilities `lit_len.len[32]`" => Probs(self.lit_len.len.as_flattened_mut()),
            "model: probabilities `lit_len.mant[31]`" => Probs(&mut self.lit_len.mant),
        )
    }

    /// Fields of [`Model::field`]'s list.
    pub(crate) const FIELDS: usize = crate::snapshot::layout!(Model::UNSET).0;
    /// Bytes of the model's saved state.
    pub const SAVED_LEN: usize = crate::snapshot::layout!(Model::UNSET).1;

    /// Calls `f` on every probability table.
    fn tables_mut(&mut self, f: &mut dyn FnMut(&mut [Prob])) {
        let mut i = 0;
        while let Some((_, field)) = self.field(i) {
            if let crate::snapshot::Field::Probs(t) = field {
                f(t);
            }
            i += 1;
        }
    }

    /// Whether the model (just read back from saved state) is one the
    /// decoder can be in: known previous kinds, a `Diff` run of at most 3,
    /// a carry of 0 or 1 and 1 only right after a `Diff`, every
    /// probability in `1..2048`.
    pub(crate) fn valid(&mut self) -> bool {
        let mut ok = self.prev[0] <= AFTER_LIT
            && self.prev[1] <= AFTER_LIT
            && self.diff_run <= 3
            && (self.carry == 0 || (self.carry == 1 && self.prev[0] == AFTER_DIFF));
        self.tables_mut(&mut |t| {
            ok &= t.iter().all(|&p| p > 0 && (p as u32) < super::rc::PROB_ONE);
        });
        ok
    }

    /// The parameters the model was made with.
    pub const fn params(&self) -> Params {
        self.params
    }

    /// A model whose tables are zero, to be [`Model::reset`] (or loaded)
    /// before any use: what an `ApplierState` starts with, so that
    /// building one is mostly zeroing memory (the applier resets the model
    /// once it has chosen an entry).
    pub(crate) const UNSET: Model = Model {
        kind: [[0; 3]; 16],
        seek_sign: 0,
        seek_how: [0; 2],
        home: 0,
        prev: [AFTER_START; 2],
        params: Params {
            lc: 0,
            lp: 0,
            wp: 0,
            kc: 0,
            sk: 0,
        },
        lit: ByteTree::UNSET,
        diff: ByteTree::UNSET,
        rep: [[0; 2]; 4],
        last_d: [[0; 2]; 8],
        diff_run: 0,
        carry: 0,
        copy_len: Number::UNSET,
        run_low: [[0; 3]; 4],
        seek_len: Number::UNSET,
        seek_mag: Number::UNSET,
        lit_len: Number::UNSET,
    };

    /// The model's memory as [`SPARE`] bytes, for a caller's own use while
    /// the model is not (the applier's header buffer): what is written
    /// there changes the model, which [`Model::reset`] or loading saved
    /// state sets up again before it is used.
    pub(crate) fn spare(&mut self) -> &mut [u8; SPARE] {
        let Some(p) = self.lit.p.first_chunk_mut::<{ SPARE / 2 }>() else {
            unreachable!("a byte tree holds more than SPARE bytes")
        };
        bytemuck::cast_mut(p)
    }

    /// A model in its initial state.
    pub const fn new(params: Params) -> Self {
        Model {
            kind: [[PROB_INIT; 3]; 16],
            seek_sign: PROB_INIT,
            seek_how: [PROB_INIT; 2],
            home: 0,
            prev: [AFTER_START; 2],
            params,
            lit: ByteTree::new(),
            diff: ByteTree::new(),
            rep: [[PROB_INIT; 2]; 4],
            last_d: [[0; 2]; 8],
            diff_run: 0,
            carry: 0,
            copy_len: Number::new(),
            run_low: [[PROB_INIT; 3]; 4],
            seek_len: Number::new(),
            seek_mag: Number::new(),
            lit_len: Number::new(),
        }
    }

    /// Puts the model back into the state [`Model::new`] gives it, in
    /// place: no model-sized temporary on the stack.
    pub fn reset(&mut self, params: Params) {
        self.tables_mut(&mut |t| t.fill(PROB_INIT));
        self.prev = [AFTER_START; 2];
        self.params = params;
        self.last_d = [[0; 2]; 8];
        self.diff_run = 0;
        self.carry = 0;
        self.home = 0;
    }

    /// Codes one operation (not the literal bytes of a `Lit`) that starts
    /// at target position `pos` with the cursor at `cur`, in a virtual
    /// source whose target part starts at `base` (the source image's
    /// size). The cursor is the applier's: the model keeps no copy of it.
    pub fn op<I: BitIo>(&mut self, io: &mut I, pos: u32, cur: u32, base: u32, op: Op) -> Op {
        let align = cur.wrapping_sub(pos);
        let (fam, sub) = match op {
            Op::Copy { .. } => (0, 0),
            Op::Seek { .. } => (0, 1),
            Op::Diff { .. } => (1, 0),
            Op::Lit { .. } => (1, 1),
        };
        let [p0, p1] = self.prev;
        // With `kc`, a `Diff` that carried (the carry is only ever 1 right
        // after a `Diff`) counts as the start: `AFTER_DIFF − 2`.
        let first = p0.wrapping_sub(2 * (self.carry & self.params.kc));
        // The second context: `p1`, or with `wp` the position in the word.
        let m = self.params.wp as u32 * 3;
        let second = (p1 as u32 & !m) | (pos & m);
        let k = &mut self.kind[(first as usize * 4 + second as usize) % 16];
        let fam = io.bit(&mut k[0], fam);
        let sub = io.bit(&mut k[1 + fam as usize], sub);
        let out = match (fam, sub) {
            (0, _) => {
                // A `Copy`, or a `Seek`: its distance, then the run as a
                // `Copy`'s with the seek's length model.
                let (delta, len) = match op {
                    Op::Seek { delta, len } => (delta, len),
                    Op::Copy { len } => (0, len),
                    _ => (0, 0),
                };
                let seek = sub == 1;
                let delta = if seek {
                    self.seek(io, pos, align, base, delta)
                } else {
                    0
                };
                let len = self.run_len(io, pos, seek, len);
                if seek {
                    Op::Seek { delta, len }
                } else {
                    Op::Copy { len }
                }
            }
            (_, 0) => {
                let d = if let Op::Diff { d } = op { d } else { 0 };
                Op::Diff {
                    d: self.diff(io, d, pos),
                }
            }
            _ => {
                let len = if let Op::Lit { len } = op { len } else { 0 };
                Op::Lit {
                    len: self.lit_len.code(io, 0, len),
                }
            }
        };
        let kind = match out {
            Op::Copy { .. } | Op::Seek { .. } => AFTER_COPY,
            Op::Diff { .. } => AFTER_DIFF,
            Op::Lit { .. } => {
                self.leave_run(pos, align, base);
                AFTER_LIT
            }
        };
        self.prev = [kind, p0];
        if kind == AFTER_DIFF {
            self.diff_run = (self.diff_run + 1).min(3);
        } else {
            self.carry = 0;
            self.diff_run = 0;
        }
        out
    }

    /// Codes where a `Seek` at target position `pos`, with the cursor's
    /// alignment `align` (`cursor − pos`), moves the cursor by `delta` (the
    /// encoder's; the decoder passes anything) and returns the move.
    /// Without `sk`: the sign, then the distance. With `sk`, from home
    /// (`pos` + the home alignment): whether it goes home; if not, whether
    /// it goes to `d` bytes back from the output position (the virtual
    /// source's `base + pos − d`), coded as a distance; if not, the sign
    /// and the distance of the move from home. A move the
    /// decoder gets here is checked against the images by the applier.
    #[inline(never)]
    fn seek<I: BitIo>(&mut self, io: &mut I, pos: u32, align: u32, base: u32, delta: i64) -> i64 {
        self.leave_run(pos, align, base);
        let cur = pos.wrapping_add(align) as i64;
        let to = cur + delta;
        let home = pos.wrapping_add(self.home) as i64;
        let out = base as i64 + pos as i64;
        // Where the move is coded from, and whether it is a repeat (a
        // distance back from `out`) or a signed distance; none: home.
        let (from, back) = if self.params.sk == 0 {
            (cur, Some(false))
        } else {
            let [h0, h1] = &mut self.seek_how;
            if io.bit(h0, (to != home) as u32) == 0 {
                (home, None)
            } else {
                let near = out - to;
                let far = near < 1 || near > (to - home).abs();
                if io.bit(h1, far as u32) == 0 {
                    (out, Some(true))
                } else {
                    (home, Some(false))
                }
            }
        };
        let moved = match back {
            None => 0,
            Some(back) => {
                let d = to - from;
                let neg = if back {
                    1
                } else {
                    io.bit(&mut self.seek_sign, (d < 0) as u32)
                };
                let mag = self.seek_mag.code(io, 0, d.unsigned_abs() as u32) as i64;
                if neg == 1 {
                    -mag
                } else {
                    mag
                }
            }
        };
        from + moved - cur
    }

    /// Before a `Lit` or a `Seek` at target position `pos` with the
    /// cursor's alignment `align`: if the operation before it moved the
    /// cursor (or none came before) and the cursor is in the source image,
    /// home is `align`. So home is the alignment of the last run in the
    /// source, kept up to date where it is used rather than after every
    /// `Copy` and `Diff`.
    #[inline(always)]
    fn leave_run(&mut self, pos: u32, align: u32, base: u32) {
        if self.prev[0] != AFTER_LIT && pos.wrapping_add(align) < base {
            self.home = align;
        }
    }

    /// Codes the length `len` (≥ 1) of an exact run that starts at target
    /// position `pos`: a `Seek`'s with `seek_len`, a `Copy`'s with
    /// `copy_len`'s length tree `pos mod 4`. With `wp`, the two low bits
    /// of `len − 1` come first, by `pos` modulo 4 (where in its word the
    /// run ends), then the rest of it plus one; a decoded length is then
    /// never 0.
    #[inline(always)]
    fn run_len<I: BitIo>(&mut self, io: &mut I, pos: u32, seek: bool, len: u32) -> u32 {
        let words = self.params.wp == 1;
        let (mut low, mut v) = (0, len);
        if words {
            let l = len.wrapping_sub(1);
            let t = &mut self.run_low[pos as usize & 3];
            let b1 = io.bit(&mut t[0], (l >> 1) & 1);
            let b0 = io.bit(&mut t[1 + b1 as usize], l & 1);
            (low, v) = ((b1 << 1) | b0, (l >> 2) + 1);
        }
        // One number walk for both kinds of run and both forms.
        let (tree, mant) = if seek {
            (&mut self.seek_len.len[0], &mut self.seek_len.mant)
        } else {
            (
                &mut self.copy_len.len[pos as usize & 3],
                &mut self.copy_len.mant,
            )
        };
        let n = io.number(tree, mant, v);
        if words {
            ((n - 1).saturating_mul(4) | low).saturating_add(1)
        } else {
            n
        }
    }

    /// The byte a `Diff` with addend `d` makes of source byte `old`: bytes
    /// changed in a row are one little-endian number plus another, so the
    /// carry out of each byte goes into the next one (a pointer moved by
    /// 0x5A8 is then always `Diff(0xA8)`, `Diff(0x05)`, whatever its old
    /// value). Call it once per decoded `Diff`.
    pub fn diff_byte(&mut self, old: u8, d: u8) -> u8 {
        let sum = old as u32 + d as u32 + self.carry as u32;
        self.carry = (sum >> 8) as u8;
        sum as u8
    }

    /// The addend of a `Diff` that turns `old` into `new` at this point of
    /// the stream (the encoder's inverse of [`Model::diff_byte`]).
    pub fn diff_addend(&self, old: u8, new: u8) -> u8 {
        new.wrapping_sub(old).wrapping_sub(self.carry)
    }

    /// Codes the value of a `Diff` at target position `pos`: one of the two
    /// last values of its context (the `Diff`s right before it; with `wp`,
    /// the position in the word and whether a `Diff` came right before it,
    /// whose repeat decisions see only the position's parity), or a tree
    /// (one for the first `Diff` of a row, one for the others).
    fn diff<I: BitIo>(&mut self, io: &mut I, d: u8, pos: u32) -> u8 {
        let c = (self.diff_run > 0) as usize;
        let (r, l) = if self.params.wp == 1 {
            (2 * (pos as usize & 1) + c, 2 * (pos as usize & 3) + c)
        } else {
            let r = self.diff_run as usize % 4;
            (r, r)
        };
        let [r0, r1] = self.last_d[l];
        let rep = &mut self.rep[r];
        let d = if io.bit(&mut rep[0], (d != r0) as u32) == 0 {
            r0
        } else if io.bit(&mut rep[1], (d != r1) as u32) == 0 {
            r1
        } else {
            self.diff.code(io, c, d)
        };
        if d != r0 {
            self.last_d[l] = [d, r0];
        }
        d
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
        self.lit.code(io, ctx as usize, byte)
    }
}

/// The most input bytes one call of [`Model::op`] or [`Model::literal`] can
/// consume: at most one byte per binary decision (the range never shrinks by
/// more than 2⁻⁶ between normalisations). A `Seek` is the longest: 2 kind
/// bits, 2 seek-kind decisions (with `sk`), a sign, two numbers of at most
/// 5 + 2 + 29 decisions each.
pub const MAX_OP_INPUT: usize = 2 + 2 + 1 + 2 * 36;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::rc::ByteSource;
    use super::*;

    /// A body in memory, read front to back.
    struct Bytes<'a>(&'a [u8]);

    /// Runs `f` with a range decoder over `body`, then checks that the
    /// decoder did not read past its end.
    fn decoding(body: &[u8], f: impl FnOnce(&mut super::super::rc::Decoder<'_, Bytes<'_>>)) {
        use super::super::rc::{Decoder, DecoderState};
        let mut src = Bytes(body);
        let mut state = DecoderState::start(&mut src).unwrap();
        let mut dec = Decoder {
            state: &mut state,
            src: &mut src,
            starved: false,
        };
        f(&mut dec);
        assert!(!dec.starved);
    }

    impl ByteSource for Bytes<'_> {
        fn next(&mut self) -> Option<u8> {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            Some(b)
        }
    }

    /// The parameter byte: the three literal sets, each with and without
    /// word contexts, carry kinds and seek kinds, are the only values
    /// accepted, and each goes back to the byte it came from.
    #[test]
    fn parameter_bytes() {
        let mut accepted = [0u8; 24];
        let mut n = 0;
        for b in 0..=255u8 {
            if Params::from_byte(b).is_some() {
                assert!(n < 24, "{b:#x} accepted too");
                accepted[n] = b;
                n += 1;
            }
        }
        let lits = [0x00, 0x01, 0x04];
        let mut expected = [0u8; 24];
        for (i, e) in expected.iter_mut().enumerate() {
            *e = lits[i % 3] | (i as u8 / 3) << 4;
        }
        assert_eq!(accepted, expected);
        for b in accepted {
            assert_eq!(Params::from_byte(b).unwrap().to_byte(), b);
        }
        for p in Params::ALL {
            assert_eq!((p.wp, p.kc, p.sk), (0, 1, 1));
            assert_eq!(p.words(1).to_byte(), p.to_byte() | 0x10);
        }
    }

    /// Copies each followed by one to three `Diff`s, the first of which
    /// carries every third time, coded with the parameter byte `params`
    /// (the `Diff`s applied to source bytes as the decoder does, so that
    /// the carry is what a real stream has): the operations and the body.
    fn carried(params: u8) -> (std::vec::Vec<(u32, Op, u8)>, std::vec::Vec<u8>) {
        use super::super::rc::Encoder;
        let params = Params::from_byte(params).unwrap();
        let mut ops = std::vec::Vec::new();
        let mut pos = 0u32;
        for i in 0..300u32 {
            let len = i % 13 + 1;
            ops.push((pos, Op::Copy { len }, 0));
            pos += len;
            for k in 0..(i % 3 + 1) {
                let old = if k == 0 && i % 3 == 0 { 0xF0 } else { 0x10 };
                let d = (i * 7 + k) as u8 | 0x20;
                ops.push((pos, Op::Diff { d }, old));
                pos += 1;
            }
        }
        let mut body = std::vec::Vec::new();
        let mut sink = |b: u8| body.push(b);
        let mut enc = Encoder::new(&mut sink);
        let mut m = Model::new(params);
        for &(pos, op, old) in &ops {
            // Copies and `Diff`s only: the cursor is the position.
            m.op(&mut enc, pos, pos, 0, op);
            if let Op::Diff { d } = op {
                m.diff_byte(old, d);
            }
        }
        enc.finish();
        (ops, body)
    }

    /// Carry kinds: streams with and without them decode to what was
    /// coded, with and without word contexts; without them a stream is
    /// byte for byte what `genpat` made before carry kinds existed (its
    /// length and CRC-32 as the earlier codec wrote them), so those patches
    /// still apply; with them it differs.
    #[test]
    fn carry_kinds_decode_and_leave_earlier_streams_as_they_were() {
        // (parameter byte, body length and CRC-32 of the earlier codec).
        for (without, earlier) in [(0x01, (821, 0x9bf5_e2ba)), (0x11, (857, 0xcbf3_be0f))] {
            let (_, plain) = carried(without);
            let crc = crate::crc32::crc32(&plain);
            assert_eq!((plain.len(), crc), earlier, "{without:#x}");
            let (_, with) = carried(without | 0x20);
            assert_ne!(with, plain, "{without:#x}: carry kinds change nothing");
            for params in [without, without | 0x20] {
                let (ops, body) = carried(params);
                decoding(&body, |dec| {
                    let mut m = Model::new(Params::from_byte(params).unwrap());
                    let mut kinds = [AFTER_START; 2];
                    for &(pos, op, old) in &ops {
                        let got = m.op(dec, pos, pos, 0, Op::Copy { len: 0 });
                        assert_eq!(got, op, "{params:#x} at {pos}");
                        let kind = if let Op::Diff { d } = got {
                            m.diff_byte(old, d);
                            AFTER_DIFF
                        } else {
                            AFTER_COPY
                        };
                        // Regression: the carry chooses a context, and the
                        // kinds kept are still the operations' own.
                        kinds = [kind, kinds[0]];
                        assert_eq!(m.prev, kinds, "{params:#x} at {pos}");
                    }
                });
            }
        }
    }

    /// Codes `ops` (each with its target position; the cursor starts at 0
    /// and moves as the applier moves it) with `params` and a source of
    /// `base` bytes, decodes the body and checks that it gives the same
    /// operations; returns the body's length.
    fn round_trip(params: Params, base: u32, ops: &[(u32, Op)]) -> usize {
        use super::super::rc::Encoder;
        let mut cur = 0u32;
        let ops: std::vec::Vec<(u32, u32, Op)> = ops
            .iter()
            .map(|&(pos, op)| {
                let at = cur;
                cur = match op {
                    Op::Copy { len } => cur.wrapping_add(len),
                    Op::Seek { delta, len } => ((cur as i64 + delta) as u32).wrapping_add(len),
                    Op::Diff { .. } => cur.wrapping_add(1),
                    Op::Lit { .. } => cur,
                };
                (pos, at, op)
            })
            .collect();
        let mut body = std::vec::Vec::new();
        let mut sink = |b: u8| body.push(b);
        let mut enc = Encoder::new(&mut sink);
        let mut m = Model::new(params);
        for &(pos, cur, op) in &ops {
            m.op(&mut enc, pos, cur, base, op);
        }
        enc.finish();
        decoding(&body, |dec| {
            let mut m = Model::new(params);
            for &(pos, cur, op) in &ops {
                let got = m.op(dec, pos, cur, base, Op::Copy { len: 0 });
                assert_eq!(got, op, "{params:?} at {pos}");
            }
        });
        body.len()
    }

    /// Operations coded with and without word contexts decode to
    /// themselves, run lengths from 1 to 2³² − 1 included.
    #[test]
    fn operations_round_trip_with_both_word_settings() {
        let lens = [
            1,
            2,
            3,
            4,
            5,
            7,
            8,
            255,
            4097,
            1 << 20,
            u32::MAX - 1,
            u32::MAX,
        ];
        let mut ops = std::vec::Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            ops.push(Op::Copy { len });
            ops.push(Op::Diff { d: i as u8 });
            ops.push(Op::Seek {
                delta: -(i as i64) - 1,
                len,
            });
            ops.push(Op::Diff { d: 3 });
            ops.push(Op::Diff { d: 200 });
            ops.push(Op::Lit { len });
        }
        let ops: std::vec::Vec<_> = (0..).map(|i| i * 3).zip(ops).collect();
        for (wp, sk) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let params = Params {
                sk,
                ..Params::ALL[1].words(wp)
            };
            round_trip(params, 1 << 31, &ops);
        }
    }

    /// Seek kinds: a piece repeated from new and the return to the copy
    /// it interrupted, a literal replacing bytes and the copy going on
    /// after it, and moves from there, decode to the cursor moves that
    /// were coded, with and without `sk`; with it, returns and repeats
    /// cost less than signed distances from the cursor.
    #[test]
    fn seek_kinds_decode_and_cost_less() {
        const BASE: u32 = 50_000;
        // (target position, op) as the applier sees them, its cursor
        // followed (`round_trip` follows it again for the model).
        let mut ops = std::vec::Vec::new();
        let (mut pos, mut cur) = (0u32, 0i64);
        let seek = |ops: &mut std::vec::Vec<_>, pos: &mut u32, cur: &mut i64, to: i64| {
            let len = 5;
            let op = match to - *cur {
                0 => Op::Copy { len },
                delta => Op::Seek { delta, len },
            };
            ops.push((*pos, op));
            (*pos, *cur) = (*pos + len, to + len as i64);
        };
        for i in 0..200u32 {
            // A copy of old at an alignment that drifts now and then.
            let home = *[0i64, 12_000, -300].get(i as usize / 70).unwrap_or(&0);
            let to = pos as i64 + home;
            seek(&mut ops, &mut pos, &mut cur, to);
            ops.push((pos, Op::Copy { len: 20 }));
            (pos, cur) = (pos + 20, cur + 20);
            // A literal in place of three bytes; the copy goes on.
            ops.push((pos, Op::Lit { len: 3 }));
            pos += 3;
            let to = pos as i64 + home;
            seek(&mut ops, &mut pos, &mut cur, to);
            // A piece of new repeated, then back home.
            if pos > 40 {
                let to = i64::from(BASE + pos) - i64::from(7 + i % 30);
                seek(&mut ops, &mut pos, &mut cur, to);
            }
            ops.push((pos, Op::Diff { d: 1 }));
            (pos, cur) = (pos + 1, cur + 1);
        }
        let sizes = [0, 1].map(|sk| {
            let params = Params {
                sk,
                ..Params::ALL[0]
            };
            round_trip(params, BASE, &ops)
        });
        assert!(2 * sizes[1] < sizes[0], "{sizes:?}");
    }

    /// Regression: codec 3 added tables and context bytes that the saved
    /// state must carry; every one of them must survive a save and a load.
    #[test]
    fn save_load_round_trip_covers_the_whole_model() {
        let mut m = Model::new(Params {
            lc: 1,
            lp: 0,
            wp: 1,
            kc: 1,
            sk: 1,
        });
        let mut k = 7u16;
        m.tables_mut(&mut |t| {
            for p in t {
                k = k.wrapping_mul(31).wrapping_add(17) % 2000 + 1;
                *p = k;
            }
        });
        m.prev = [AFTER_DIFF, AFTER_LIT];
        m.last_d = [
            [1, 2],
            [3, 4],
            [5, 6],
            [7, 8],
            [9, 10],
            [11, 12],
            [13, 14],
            [15, 16],
        ];
        m.diff_run = 2;
        m.carry = 1;
        m.home = 0x9ABC_DEF0;
        let mut bytes = [0u8; Model::SAVED_LEN + 1];
        let n = crate::snapshot::save(&mut m, &mut bytes);
        assert_eq!(n, Model::SAVED_LEN);
        let mut back = Model::new(Params::default());
        assert!(crate::snapshot::load(&mut back, &bytes[..n]) && back.valid());
        assert_eq!(back, m);
        // A probability of 0 is no state the decoder can be in.
        let at = Model::SAVED_LEN - 2;
        bytes[at..at + 2].copy_from_slice(&0u16.to_le_bytes());
        let mut bad = Model::new(Params::default());
        assert!(crate::snapshot::load(&mut bad, &bytes[..n]));
        assert!(!bad.valid());
    }
}

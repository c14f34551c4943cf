//! Turns a plan into codec 3's operations and codes them.
//!
//! A `Copy` step becomes exact runs (`Copy`, or `Seek` where the cursor
//! must move) separated by single-byte differences (`Diff`); a `Literal`
//! step becomes a `Lit` run and its bytes. Copy steps that start with
//! differing bytes where the cursor must move begin with those bytes as
//! literals, since a seek always copies at least one byte.

use flashpatch::codec::rc::adapt;
use flashpatch::codec::{BitIo, Encoder, Model, Op, Params};

use crate::plan::Step;

/// Codes `steps` (which must cover `new` exactly) into a codec 3 body.
pub fn encode_body(old: &[u8], new: &[u8], steps: &[Step], params: Params) -> Vec<u8> {
    encode_body_lits(old, new, steps, params).0
}

/// [`encode_body`] that also returns the target positions coded as
/// literal bytes, for [`literal_cost`].
pub fn encode_body_lits(
    old: &[u8],
    new: &[u8],
    steps: &[Step],
    params: Params,
) -> (Vec<u8>, Vec<u32>) {
    let mut lits = Vec::new();
    let mut body = Vec::with_capacity(new.len() / 8 + 16);
    let mut sink = |b: u8| body.push(b);
    let mut e = Emitter::new(Encoder::new(&mut sink), params, old, new, &mut lits);
    emit(&mut e, old, steps);
    e.io.finish();
    (body, lits)
}

/// Where the bits of a coded body go, in 1/256 bit, and how many of each
/// operation there are (`genpat`'s plan, as [`encode_body`] codes it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breakdown {
    /// `Copy` operations (exact runs at the cursor) and their bytes.
    pub copies: u64,
    pub copy_bytes: u64,
    /// `Seek` operations (cursor moves, each with an exact run) and their bytes.
    pub seeks: u64,
    pub seek_bytes: u64,
    /// `Diff` operations (one differing byte each).
    pub diffs: u64,
    /// `Lit` operations and their bytes.
    pub lit_runs: u64,
    pub lit_bytes: u64,
    /// Cost of choosing each operation's kind (two decisions per operation).
    pub kind_cost: u64,
    /// Cost of `Copy` lengths.
    pub copy_cost: u64,
    /// Cost of `Seek`s: sign, distance and run length.
    pub seek_cost: u64,
    /// Cost of `Diff` values.
    pub diff_cost: u64,
    /// Cost of `Lit` lengths and literal bytes.
    pub lit_cost: u64,
}

impl Breakdown {
    /// The whole body's cost in bytes.
    pub fn total_bytes(&self) -> f64 {
        (self.kind_cost + self.copy_cost + self.seek_cost + self.diff_cost + self.lit_cost) as f64
            / 2048.0
    }
}

/// Codes `steps` as [`encode_body`] does, adding up what each kind of
/// operation costs instead of writing a body (the range coder's output is
/// within a few bytes of the sum).
pub fn breakdown(old: &[u8], new: &[u8], steps: &[Step], params: Params) -> Breakdown {
    let mut lits = Vec::new();
    let mut e = Emitter::new(Tally::default(), params, old, new, &mut lits);
    emit(&mut e, old, steps);
    e.io.b
}

/// Codes `steps` through `e`.
fn emit<I: Sink>(e: &mut Emitter<'_, I>, old: &[u8], steps: &[Step]) {
    let new = e.new;
    let vsrc = |i: usize| {
        if i < old.len() {
            old[i]
        } else {
            new[i - old.len()]
        }
    };
    for step in steps {
        match *step {
            Step::Literal { len } => e.literals(len),
            Step::Copy { from, len } => {
                let mut i = 0;
                if from != e.cursor + e.run {
                    // A seek copies at least one byte: leading differing
                    // bytes go out as literals.
                    while i < len && vsrc(from + i) != new[e.out + e.run] {
                        e.literals(1);
                        i += 1;
                    }
                    if i == len || from + i == e.cursor + e.run {
                        // All literal, or the literals brought the cursor
                        // to where the copy goes on.
                        e.copy_from(&vsrc, from + i, len - i);
                        continue;
                    }
                    e.flush_run();
                    let delta = (from + i) as i64 - e.cursor as i64;
                    let run = (i..len)
                        .take_while(|&k| vsrc(from + k) == new[e.out + k - i])
                        .count();
                    e.op(Op::Seek {
                        delta,
                        len: run as u32,
                    });
                    e.cursor = from + i + run;
                    e.out += run;
                    i += run;
                }
                e.copy_from(&vsrc, from + i, len - i);
            }
        }
    }
    e.flush_run();
    debug_assert_eq!(e.out, new.len(), "plan does not cover the new image");
}

/// The cost, in 1/256 bit, of the literal bytes at `lits` (ascending
/// target positions) with `params`. Only literals depend on the parameters,
/// and their models see nothing else, so this ranks parameter sets without
/// coding a body. Integer arithmetic only: the choice, and so the patch,
/// is the same on every machine.
pub fn literal_cost(new: &[u8], lits: &[u32], params: Params) -> u64 {
    let mut cost = CostIo(0);
    let mut model = Model::new(params);
    for &pos in lits {
        let prev = pos.checked_sub(1).map_or(0, |p| new[p as usize]);
        model.literal(&mut cost, prev, pos, new[pos as usize]);
    }
    cost.0
}

/// `log2(x)` for `1 ≤ x < 2¹⁶`, in 1/256 (exact to the last bit of the
/// fraction, rounded down), by repeated squaring.
const fn log2_q8(x: u32) -> u32 {
    let x = if x == 0 { 1 } else { x };
    let int = 31 - x.leading_zeros();
    // x / 2^int in [1, 2), 16 fraction bits.
    let mut y = ((x as u64) << 16) >> int;
    let mut frac = 0;
    let mut bit = 8;
    while bit > 0 {
        bit -= 1;
        y = (y * y) >> 16;
        if y >= 2 << 16 {
            y >>= 1;
            frac |= 1 << bit;
        }
    }
    (int << 8) | frac
}

/// What a decision of probability `q / 2048` costs, in 1/256 bit, for
/// every `q` a model can hold (`0..=2048`, 0 costed as 1): [`log2_q8`]
/// computed once, at compile time, instead of eight squarings per
/// decision (they were three quarters of [`literal_cost`]'s time).
static COST_Q8: [u16; 2049] = {
    let mut t = [0u16; 2049];
    let mut q = 0;
    while q <= 2048 {
        t[q] = ((11 << 8) - log2_q8(q as u32)) as u16;
        q += 1;
    }
    t
};

/// What coding `bit` at probability `p` costs (1/256 bit); `p` then
/// adapts, as the coder's would.
fn cost_of(p: &mut u16, bit: u32) -> u64 {
    let p0 = u32::from(*p);
    let q = if bit == 0 { p0 } else { 2048 - p0 };
    adapt(p, bit);
    u64::from(COST_Q8[q as usize])
}

/// A [`BitIo`] that only adds up what each decision costs (1/256 bit).
struct CostIo(u64);

impl BitIo for CostIo {
    fn bit(&mut self, p: &mut u16, bit: u32) -> u32 {
        self.0 += cost_of(p, bit);
        bit
    }

    fn direct(&mut self, bit: u32) -> u32 {
        self.0 += 256;
        bit
    }
}

/// A [`BitIo`] told what the next decisions code: the encoder ignores
/// it, [`Tally`] adds their costs up by kind.
trait Sink: BitIo {
    fn op(&mut self, _op: &Op) {}
    fn literal(&mut self) {}
}

impl Sink for Encoder<'_> {}

/// Costs by kind of operation (see [`Breakdown`]).
#[derive(Default)]
struct Tally {
    b: Breakdown,
    /// Decisions since the operation began (the first two choose its kind).
    n: u32,
    /// Which cost the decisions after the kind go to: 0 copy, 1 seek,
    /// 2 diff, 3 literal.
    to: u8,
}

impl Tally {
    fn add(&mut self, c: u64) {
        let b = &mut self.b;
        self.n += 1;
        *match self.to {
            0..=3 if self.n <= 2 => &mut b.kind_cost,
            0 => &mut b.copy_cost,
            1 => &mut b.seek_cost,
            2 => &mut b.diff_cost,
            _ => &mut b.lit_cost,
        } += c;
    }
}

impl BitIo for Tally {
    fn bit(&mut self, p: &mut u16, bit: u32) -> u32 {
        self.add(cost_of(p, bit));
        bit
    }

    fn direct(&mut self, bit: u32) -> u32 {
        self.add(256);
        bit
    }
}

impl Sink for Tally {
    fn op(&mut self, op: &Op) {
        let b = &mut self.b;
        self.n = 0;
        self.to = match *op {
            Op::Copy { len } => {
                (b.copies, b.copy_bytes) = (b.copies + 1, b.copy_bytes + u64::from(len));
                0
            }
            Op::Seek { len, .. } => {
                (b.seeks, b.seek_bytes) = (b.seeks + 1, b.seek_bytes + u64::from(len));
                1
            }
            Op::Diff { .. } => {
                b.diffs += 1;
                2
            }
            Op::Lit { len } => {
                (b.lit_runs, b.lit_bytes) = (b.lit_runs + 1, b.lit_bytes + u64::from(len));
                3
            }
        };
    }

    fn literal(&mut self) {
        // Literal bytes: no kind decisions among them.
        (self.n, self.to) = (2, 4);
    }
}

/// Codes operations, holding back an exact run until something else comes
/// so that adjacent runs merge.
struct Emitter<'a, I> {
    io: I,
    model: Model,
    new: &'a [u8],
    /// Where new starts in the virtual source: old's length.
    base: usize,
    /// Cursor in the virtual source after what has been coded.
    cursor: usize,
    /// Target bytes coded.
    out: usize,
    /// Exact-run bytes held back (at `cursor`, producing `out..`).
    run: usize,
    /// Target positions coded as literal bytes.
    lits: &'a mut Vec<u32>,
}

impl<'a, I> Emitter<'a, I> {
    /// An emitter at the start of `new`, coding through `io`.
    fn new(io: I, params: Params, old: &[u8], new: &'a [u8], lits: &'a mut Vec<u32>) -> Self {
        Emitter {
            io,
            model: Model::new(params),
            new,
            base: old.len(),
            cursor: 0,
            out: 0,
            run: 0,
            lits,
        }
    }
}

impl<I: Sink> Emitter<'_, I> {
    fn op(&mut self, op: Op) {
        self.io.op(&op);
        self.model.op(
            &mut self.io,
            self.out as u32,
            self.cursor as u32,
            self.base as u32,
            op,
        );
    }

    fn flush_run(&mut self) {
        if self.run > 0 {
            self.op(Op::Copy {
                len: self.run as u32,
            });
            self.cursor += self.run;
            self.out += self.run;
            self.run = 0;
        }
    }

    /// Codes `len` bytes against the source at the cursor (which is `from`).
    fn copy_from(&mut self, vsrc: &impl Fn(usize) -> u8, from: usize, len: usize) {
        debug_assert!(len == 0 || from == self.cursor + self.run);
        for k in 0..len {
            let s = vsrc(from + k);
            let n = self.new[self.out + self.run];
            if s == n {
                self.run += 1;
            } else {
                self.flush_run();
                let d = self.model.diff_addend(s, n);
                self.op(Op::Diff { d });
                self.model.diff_byte(s, d);
                self.cursor += 1;
                self.out += 1;
            }
        }
    }

    fn literals(&mut self, len: usize) {
        self.flush_run();
        self.op(Op::Lit { len: len as u32 });
        for _ in 0..len {
            let prev = if self.out == 0 {
                0
            } else {
                self.new[self.out - 1]
            };
            self.io.literal();
            self.model
                .literal(&mut self.io, prev, self.out as u32, self.new[self.out]);
            self.lits.push(self.out as u32);
            self.out += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_q8_is_exact_where_it_can_be_checked() {
        for k in 0..16 {
            assert_eq!(log2_q8(1 << k), k << 8);
        }
        // log2(3) = 1.58496..., log2(1000) = 9.96578...
        assert_eq!(log2_q8(3), 256 + 149);
        assert_eq!(log2_q8(1000), 9 * 256 + 247);
        for x in 1..2048 {
            assert!(log2_q8(x) <= log2_q8(x + 1));
        }
    }

    #[test]
    fn cost_table_is_the_function() {
        for q in 0..=2048u32 {
            assert_eq!(u32::from(COST_Q8[q as usize]), (11 << 8) - log2_q8(q));
        }
        assert_eq!((COST_Q8[1024], COST_Q8[2048]), (256, 0));
    }
}

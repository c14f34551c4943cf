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
    let mut e = Emitter {
        io: Encoder::new(&mut sink),
        model: Model::new(params),
        new,
        cursor: 0,
        out: 0,
        run: 0,
        lits: &mut lits,
    };
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
    e.io.finish();
    (body, lits)
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

/// A [`BitIo`] that only adds up what each decision costs (1/256 bit).
struct CostIo(u64);

impl BitIo for CostIo {
    fn bit(&mut self, p: &mut u16, bit: u32) -> u32 {
        let p0 = u32::from(*p);
        let q = if bit == 0 { p0 } else { 2048 - p0 };
        self.0 += u64::from(COST_Q8[q as usize]);
        adapt(p, bit);
        bit
    }

    fn direct(&mut self, bit: u32) -> u32 {
        self.0 += 256;
        bit
    }
}

/// Codes operations, holding back an exact run until something else comes
/// so that adjacent runs merge.
struct Emitter<'a, 'o> {
    io: Encoder<'o>,
    model: Model,
    new: &'a [u8],
    /// Cursor in the virtual source after what has been coded.
    cursor: usize,
    /// Target bytes coded.
    out: usize,
    /// Exact-run bytes held back (at `cursor`, producing `out..`).
    run: usize,
    /// Target positions coded as literal bytes.
    lits: &'a mut Vec<u32>,
}

impl Emitter<'_, '_> {
    fn op(&mut self, op: Op) {
        self.model.op(&mut self.io, self.out as u32, op);
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

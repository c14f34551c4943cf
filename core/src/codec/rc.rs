//! Binary adaptive range coder (the LZMA scheme: 32-bit range, 11-bit
//! probabilities, adaptation shift 5, carry propagation through a cached
//! byte).
//!
//! The decoder normalises *after* each decision, in lock-step with the
//! encoder, so it consumes exactly the bytes the encoder produced: a body of
//! `n` coded bytes is `5 + normalisations` bytes long, and the applier can
//! demand that the body is used up exactly when the target is complete.

use super::model::{BYTE_TREE, LENGTH_TREE, MANT};

/// An adaptive probability that the next bit is 0, in units of 1/2048.
pub type Prob = u16;

pub(crate) const PROB_BITS: u32 = 11;
pub(crate) const PROB_ONE: u32 = 1 << PROB_BITS;
/// The initial probability: an even guess.
pub const PROB_INIT: Prob = (PROB_ONE / 2) as Prob;
const MOVE_BITS: u32 = 4;
const TOP: u32 = 1 << 24;

/// Bytes the decoder reads before the first decision.
pub const INIT_BYTES: usize = 5;

/// One binary decision at a time, in either direction: the encoder codes
/// `bit` and returns it, the decoder ignores `bit` and returns what it
/// decoded. Models are written once against this trait, so the encoder and
/// the decoder cannot drift apart.
pub trait BitIo {
    /// Codes one bit with the adaptive probability `p`, and adapts `p`.
    fn bit(&mut self, p: &mut Prob, bit: u32) -> u32;
    /// Codes one bit at a fixed probability of one half.
    fn direct(&mut self, bit: u32) -> u32;

    /// Codes a byte with a byte tree's probabilities `p` (`ByteTree`), the
    /// top levels of context `ctx`: bit by bit. A coder may do the same
    /// faster (the applier's decoder does).
    #[inline]
    fn byte_tree(&mut self, p: &mut [Prob; BYTE_TREE], ctx: usize, value: u8) -> u8 {
        super::model::walk(self, p, ctx, value)
    }

    /// Codes the number `value` (≥ 1) with a `Number`'s length tree `len`
    /// and mantissa probabilities `mant`: bit by bit, or faster as
    /// [`BitIo::byte_tree`].
    #[inline]
    fn number(
        &mut self,
        len: &mut [Prob; LENGTH_TREE],
        mant: &mut [Prob; MANT],
        value: u32,
    ) -> u32 {
        super::model::number_walk(self, len, mant, value)
    }
}

/// Moves `p` towards `bit` as every coded decision does.
#[inline(always)]
pub fn adapt(p: &mut Prob, bit: u32) {
    if bit == 0 {
        *p += ((PROB_ONE - *p as u32) >> MOVE_BITS) as Prob;
    } else {
        *p -= *p >> MOVE_BITS;
    }
}

/// Range encoder writing into any byte sink.
pub struct Encoder<'a> {
    low: u64,
    range: u32,
    cache: u8,
    cache_size: u64,
    out: &'a mut dyn FnMut(u8),
}

impl<'a> Encoder<'a> {
    /// A fresh encoder that hands every byte it produces to `out`.
    pub fn new(out: &'a mut dyn FnMut(u8)) -> Self {
        Encoder {
            low: 0,
            range: u32::MAX,
            cache: 0,
            cache_size: 1,
            out,
        }
    }

    fn shift_low(&mut self) {
        if self.low < 0xFF00_0000 || self.low >= 1 << 32 {
            let carry = (self.low >> 32) as u8;
            let mut byte = self.cache;
            loop {
                (self.out)(byte.wrapping_add(carry));
                byte = 0xFF;
                self.cache_size -= 1;
                if self.cache_size == 0 {
                    break;
                }
            }
            self.cache = (self.low >> 24) as u8;
        }
        self.cache_size += 1;
        self.low = (self.low & 0x00FF_FFFF) << 8;
    }

    fn normalize(&mut self) {
        while self.range < TOP {
            self.range <<= 8;
            self.shift_low();
        }
    }

    /// Writes out what is still held in the coder. The stream is complete
    /// after this.
    pub fn finish(mut self) {
        for _ in 0..5 {
            self.shift_low();
        }
    }
}

impl BitIo for Encoder<'_> {
    #[inline]
    fn bit(&mut self, p: &mut Prob, bit: u32) -> u32 {
        let bound = (self.range >> PROB_BITS) * *p as u32;
        if bit == 0 {
            self.range = bound;
        } else {
            self.low += bound as u64;
            self.range -= bound;
        }
        adapt(p, bit);
        self.normalize();
        bit
    }

    #[inline]
    fn direct(&mut self, bit: u32) -> u32 {
        self.range >>= 1;
        if bit != 0 {
            self.low += self.range as u64;
        }
        self.normalize();
        bit
    }
}

/// The range decoder's state: eight bytes. Input comes from a
/// [`ByteSource`] lent for each call, so the state can sit between calls
/// while the caller waits for more patch bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecoderState {
    range: u32,
    code: u32,
}

impl DecoderState {
    /// Not started (the [`Default`], usable in `const` context).
    pub const EMPTY: DecoderState = DecoderState { range: 0, code: 0 };
}

/// Where the decoder takes its bytes from. `next` returns `None` when no
/// byte is there; the decoder then reads zeros and the caller must treat the
/// result as corrupt.
pub trait ByteSource {
    /// The next input byte, if any.
    fn next(&mut self) -> Option<u8>;
}

crate::snapshot::impl_fields!(DecoderState);

impl DecoderState {
    /// The state, in saved order (`crate::snapshot`).
    pub(crate) const fn field(
        &mut self,
        i: usize,
    ) -> Option<(&'static str, crate::snapshot::Field<'_>)> {
        use crate::snapshot::Field::U32;
        crate::snapshot::fields!(i;
            "range decoder: range" => U32(&mut self.range),
            "range decoder: code" => U32(&mut self.code),
        )
    }

    /// Fields of [`DecoderState::field`]'s list.
    pub(crate) const FIELDS: usize = crate::snapshot::layout!(DecoderState::EMPTY).0;
    /// Bytes of the saved state.
    pub const SAVED_LEN: usize = crate::snapshot::layout!(DecoderState::EMPTY).1;

    /// Whether the state (just read back) is one the decoder reaches:
    /// `range` at least 2²⁴ after normalisation, `code` below `range`.
    pub(crate) const fn valid(&self) -> bool {
        self.range >= TOP && self.code < self.range
    }

    /// Starts decoding from the first [`INIT_BYTES`] of a stream. Returns
    /// `None` when the stream cannot have come from the encoder.
    pub fn start(src: &mut impl ByteSource) -> Option<Self> {
        let first = src.next()?;
        let mut code = 0u32;
        for _ in 0..4 {
            code = (code << 8) | src.next()? as u32;
        }
        // The encoder's first byte is always 0, and code < range holds.
        (first == 0 && code != u32::MAX).then_some(DecoderState {
            range: u32::MAX,
            code,
        })
    }
}

/// A decoder at work: state plus the input lent to it. `starved` records
/// that the input ran dry, which makes everything decoded since suspect.
pub struct Decoder<'s, S: ByteSource> {
    pub(crate) state: &'s mut DecoderState,
    pub(crate) src: &'s mut S,
    pub(crate) starved: bool,
}

/// The applier's range decoder: its state and its input, a ring of `N`
/// bytes (a power of two), in one struct that every decision works on in
/// place: one pointer for the bit function, and nothing loaded before an
/// operation nor stored after it.
///
/// It does not check for input byte by byte: a read past the buffered
/// bytes takes a stale one and makes `len` wrap below zero, which
/// [`RingDecoder::starved`] tells after a run of decisions (everything
/// decoded since is then made up). A run reads at most a few hundred
/// bytes, so a wrapped `len` stays far above `N`.
pub(crate) struct RingDecoder<const N: usize> {
    /// Range and code.
    pub(crate) state: DecoderState,
    /// Where the next input byte is (below `N`).
    pub(crate) head: u16,
    /// Input bytes buffered: in the ring during a body (above `N` once
    /// starved); before it, in the applier's header buffer.
    pub(crate) len: u16,
    pub(crate) ring: [u8; N],
}

/// Takes the byte at `head` of `ring`, without checking that it is there.
#[inline(always)]
fn take<const N: usize>(ring: &[u8; N], head: &mut u16, len: &mut u16) -> u8 {
    let b = ring[*head as usize % N];
    *head = ((*head as usize + 1) % N) as u16;
    *len = len.wrapping_sub(1);
    b
}

impl<const N: usize> RingDecoder<N> {
    /// Not started, no input.
    pub(crate) const EMPTY: Self = {
        assert!(N.is_power_of_two() && N <= 1 << 14);
        RingDecoder {
            state: DecoderState::EMPTY,
            head: 0,
            len: 0,
            ring: [0; N],
        }
    };

    /// Whether the decoder has read more input than it was given.
    #[inline(always)]
    pub(crate) fn starved(&self) -> bool {
        self.len as usize > N
    }
}

impl<const N: usize> ByteSource for RingDecoder<N> {
    /// Always a byte: see [`RingDecoder::starved`].
    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        Some(take(&self.ring, &mut self.head, &mut self.len))
    }
}

/// [`RingDecoder`]'s registers for a run of decisions in one function:
/// what is not kept in the state between them.
struct Local<'r, const N: usize> {
    range: u32,
    code: u32,
    head: u16,
    len: u16,
    ring: &'r [u8; N],
}

/// [`decide`], always inlined: the walks that run on [`Local`] keep the
/// decoder in registers.
impl<const N: usize> BitIo for Local<'_, N> {
    #[inline(always)]
    fn bit(&mut self, p: &mut Prob, _bit: u32) -> u32 {
        let input = &mut (self.ring, &mut self.head, &mut self.len);
        decide(&mut self.range, &mut self.code, p, input)
    }

    #[inline(always)]
    fn direct(&mut self, _bit: u32) -> u32 {
        let input = &mut (self.ring, &mut self.head, &mut self.len);
        decide_direct(&mut self.range, &mut self.code, input)
    }
}

/// The applier decodes everything through this.
impl<const N: usize> BitIo for RingDecoder<N> {
    #[inline]
    fn bit(&mut self, p: &mut Prob, _bit: u32) -> u32 {
        let input = &mut (&self.ring, &mut self.head, &mut self.len);
        decide(&mut self.state.range, &mut self.state.code, p, input)
    }

    #[inline]
    fn direct(&mut self, _bit: u32) -> u32 {
        let input = &mut (&self.ring, &mut self.head, &mut self.len);
        decide_direct(&mut self.state.range, &mut self.state.code, input)
    }

    /// The walk with the bit function inlined into it and the decoder in
    /// registers: one copy, for literals and `Diff` values.
    #[inline(never)]
    fn byte_tree(&mut self, p: &mut [Prob; BYTE_TREE], ctx: usize, _value: u8) -> u8 {
        self.in_registers(|l| super::model::walk(l, p, ctx, 0))
    }

    /// As [`BitIo::byte_tree`]: one copy, for every number.
    #[inline(never)]
    fn number(&mut self, len: &mut [Prob; LENGTH_TREE], mant: &mut [Prob; MANT], v: u32) -> u32 {
        self.in_registers(|l| super::model::number_walk(l, len, mant, v))
    }
}

impl<const N: usize> RingDecoder<N> {
    /// Runs `f` with the decoder's state in [`Local`] registers, and puts
    /// it back.
    #[inline(always)]
    fn in_registers<X>(&mut self, f: impl FnOnce(&mut Local<'_, N>) -> X) -> X {
        let RingDecoder {
            state,
            head,
            len,
            ring,
        } = self;
        let mut l = Local {
            range: state.range,
            code: state.code,
            head: *head,
            len: *len,
            ring,
        };
        let x = f(&mut l);
        (state.range, state.code, *head, *len) = (l.range, l.code, l.head, l.len);
        x
    }
}

impl<S: ByteSource> BitIo for Decoder<'_, S> {
    #[inline]
    fn bit(&mut self, p: &mut Prob, _bit: u32) -> u32 {
        let st = &mut *self.state;
        let mut input = (&mut *self.src, &mut self.starved);
        decide(&mut st.range, &mut st.code, p, &mut input)
    }

    #[inline]
    fn direct(&mut self, _bit: u32) -> u32 {
        let st = &mut *self.state;
        let mut input = (&mut *self.src, &mut self.starved);
        decide_direct(&mut st.range, &mut st.code, &mut input)
    }
}

/// Where a decision's normalisation takes the next input byte.
trait Input {
    fn byte(&mut self) -> u8;
}

/// A byte source and its starvation flag: 0 (and the flag set) when the
/// source has no byte.
impl<S: ByteSource> Input for (&mut S, &mut bool) {
    #[inline(always)]
    fn byte(&mut self) -> u8 {
        self.0.next().unwrap_or_else(|| {
            *self.1 = true;
            0
        })
    }
}

/// A ring, its head and its length: see [`take`].
impl<const N: usize> Input for (&[u8; N], &mut u16, &mut u16) {
    #[inline(always)]
    fn byte(&mut self) -> u8 {
        take(self.0, self.1, self.2)
    }
}

/// One decision with the adaptive probability `p`: decodes it from `range`
/// and `code`, adapts `p` and normalises from `input`. The arithmetic of
/// every decoder here, always inlined.
#[inline(always)]
fn decide(range: &mut u32, code: &mut u32, p: &mut Prob, input: &mut impl Input) -> u32 {
    let bound = (*range >> PROB_BITS) * *p as u32;
    let bit = if *code < bound {
        *range = bound;
        0
    } else {
        *code = code.wrapping_sub(bound);
        *range = range.wrapping_sub(bound);
        1
    };
    adapt(p, bit);
    normalize(range, code, input);
    bit
}

/// One direct decision (probability one half), as [`decide`].
#[inline(always)]
fn decide_direct(range: &mut u32, code: &mut u32, input: &mut impl Input) -> u32 {
    *range >>= 1;
    let bit = if *code >= *range {
        *code = code.wrapping_sub(*range);
        1
    } else {
        0
    };
    normalize(range, code, input);
    bit
}

/// Keeps `range` at least 2^24, in lock-step with the encoder.
#[inline(always)]
fn normalize(range: &mut u32, code: &mut u32, input: &mut impl Input) {
    if *range < TOP {
        *range <<= 8;
        *code = (*code << 8) | input.byte() as u32;
    }
}

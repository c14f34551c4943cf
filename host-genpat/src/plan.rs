//! Matching: decides which parts of the new image are coded against the
//! old image (or the already-produced part of the new one) and which are
//! stored as literals.
//!
//! The matcher follows bsdiff's approach: a suffix array of `old` (built with
//! libsais) gives the longest exact match at a scan position in `new`; exact
//! matches that beat the current alignment become *anchors*. Each anchor is
//! then extended forwards and backwards approximately (a byte-wise
//! difference is cheap where most bytes still match, which is what moved code
//! with changed addresses looks like), and the extensions of neighbouring
//! anchors are resolved against each other with a bit-cost model.
//!
//! Unlike bsdiff, the scan never goes quadratic on repetitive input: the
//! search only runs where the current alignment fails, every comparison in
//! the search is capped, and long accepted matches are skipped over whole.

use libsais::SuffixArrayConstruction;

/// One step of a patch plan, in target order. Steps cover `new` exactly, front to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The next `len` bytes of new are coded against the virtual source starting at `from`:
    /// the decoder takes source bytes from[from..from+len] and a byte-wise difference
    /// (new - source, wrapping) is stored wherever they differ. Virtual source positions
    /// `[0, old.len())` are `old`; positions from `old.len()` on would be the
    /// already-produced part of new, which [`plan`] does not use yet.
    Copy {
        /// Start of the source range in the virtual source.
        from: usize,
        /// Number of bytes of new produced.
        len: usize,
    },
    /// The next `len` bytes of new are stored as literal bytes.
    Literal {
        /// Number of literal bytes.
        len: usize,
    },
}

/// Tuning knobs for [`plan`].
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Minimum length of an exact match that may start a Copy (GenPat's
    /// "block size" option maps here).
    pub min_match: usize,
    /// An exact match at a new alignment is only taken if it is longer than
    /// the number of bytes the current alignment matches over the same span
    /// by more than this margin (bsdiff uses 8).
    pub switch_margin: usize,
    /// Cap on the bytes compared per suffix-array probe. Longer matches are
    /// still found (they are extended linearly once accepted); the cap only
    /// bounds the work spent on matches that end up rejected.
    pub max_compare: usize,
    /// How many equally long exact matches (per side in the suffix array)
    /// are considered; the one whose alignment agrees with new on most of
    /// the bytes after the match wins, and of those the one nearest the
    /// current alignment.
    pub candidates: usize,
    /// Lazy matching: before a match is taken, the longest matches that
    /// start this many bytes after it (at most) are looked up as well, and
    /// if one of them reaches at least [`LAZY_REACH`] bytes further, the
    /// byte is left to the current alignment and the search goes on from
    /// the next one. 0 takes every match that beats the alignment; a match
    /// as long as `max_compare` is always taken.
    pub lookahead: usize,
}

/// How much further than the match at hand one that starts later must
/// reach to be preferred ([`PlanOptions::lookahead`]).
pub const LAZY_REACH: usize = 2;

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            min_match: 4,
            switch_margin: 3,
            max_compare: 256,
            candidates: 16,
            lookahead: 2,
        }
    }
}

/// Of equally long exact matches, the matcher takes the one whose
/// alignment agrees with new on most of this many bytes after the match
/// (the nearest of those): where the copy goes on with differences, not
/// only where its exact part ends.
const AGREE_SPAN: usize = 32;

/// Bit costs of the encoder, roughly (see [`estimate_bits`]).
const SEEK_BASE: f64 = 6.0;
const SEEK_PER_LOG2: f64 = 1.5;
const COPY_HEADER: i32 = 6;
const EQ_RUN: i32 = 3;
const DIFF_BYTE: i32 = 10;
const REP_DIFF: i32 = 4;
const LIT_HEADER: i32 = 6;
const LIT_BYTE: i32 = 7;

fn seek_bits(delta: usize) -> f64 {
    SEEK_BASE + SEEK_PER_LOG2 * (delta.max(1) as f64).log2()
}

/// Rough size in bits of `steps` as the encoder would code it: a Copy costs
/// a seek (6 + 1.5·log2|delta| bits) unless it starts where the previous Copy
/// ended, 6 bits for its length, 3 bits per maximal run of equal bytes and
/// 10 bits per differing byte (4 where the difference repeats one of the two
/// before it); a Literal run costs 6 bits plus 7 per byte.
pub fn estimate_bits(old: &[u8], new: &[u8], steps: &[Step]) -> f64 {
    let mut bits = 0.0;
    let (mut at, mut src_end) = (0usize, 0usize);
    for step in steps {
        match *step {
            Step::Copy { from, len } => {
                if from != src_end {
                    bits += seek_bits(from.abs_diff(src_end));
                }
                let src = (from..from + len).map(|p| source_byte(old, new, p));
                bits += f64::from(COPY_HEADER)
                    + copy_content_bits(src.zip(new[at..at + len].iter().copied()));
                src_end = from + len;
            }
            Step::Literal { len } => {
                bits += f64::from(LIT_HEADER) + f64::from(LIT_BYTE) * len as f64;
            }
        }
        at += step_len(*step);
    }
    bits
}

/// Bits for the contents of a Copy: equal runs and differing bytes (cheaper
/// where the difference repeats one of the two before it).
fn copy_content_bits(pairs: impl Iterator<Item = (u8, u8)>) -> f64 {
    let (mut bits, mut prev_eq, mut recent) = (0, false, [0u8; 2]);
    for (a, b) in pairs {
        let eq = a == b;
        if !eq {
            let d = b.wrapping_sub(a);
            bits += if recent.contains(&d) {
                REP_DIFF
            } else {
                DIFF_BYTE
            };
            if recent[0] != d {
                recent = [d, recent[0]];
            }
        } else if !prev_eq {
            bits += EQ_RUN;
        }
        prev_eq = eq;
    }
    f64::from(bits)
}

/// Byte `pos` of the virtual source (old followed by new).
fn source_byte(old: &[u8], new: &[u8], pos: usize) -> u8 {
    if pos < old.len() {
        old[pos]
    } else {
        new[pos - old.len()]
    }
}

/// Length of the common prefix of `a` and `b`.
fn lcp(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap())
            ^ u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// An exact match: new[new..new+len] == old[old..old+len].
#[derive(Clone, Copy, Debug)]
struct Anchor {
    new: usize,
    old: usize,
    len: usize,
}

/// The suffix array's runs by first byte and by first two bytes: counted
/// from the text in one pass (the suffix array need not be read).
struct Buckets {
    /// `byte[c]..byte[c + 1]`: the suffixes starting with byte `c`.
    byte: Vec<u32>,
    /// `pair[k]..pair[k] + count[k]`, `k = a·256 + b`: the suffixes
    /// starting with `a, b`.
    pair: Vec<u32>,
    count: Vec<u32>,
}

impl Buckets {
    fn new(text: &[u8]) -> Self {
        let mut count = vec![0u32; 1 << 16];
        for w in text.windows(2) {
            count[usize::from(w[0]) << 8 | usize::from(w[1])] += 1;
        }
        // The one-byte suffix (the last byte) sorts first among those
        // starting with its byte.
        let last = text.last().map(|&c| usize::from(c));
        let (mut byte, mut pair) = (Vec::with_capacity(257), Vec::with_capacity(1 << 16));
        let mut at = 0u32;
        for c in 0..256 {
            byte.push(at);
            if last == Some(c) {
                at += 1;
            }
            for &n in &count[c << 8..(c + 1) << 8] {
                pair.push(at);
                at += n;
            }
        }
        byte.push(at);
        Buckets { byte, pair, count }
    }

    fn byte(&self, c: u8) -> std::ops::Range<usize> {
        self.byte[usize::from(c)] as usize..self.byte[usize::from(c) + 1] as usize
    }

    fn pair(&self, a: u8, b: u8) -> std::ops::Range<usize> {
        let k = usize::from(a) << 8 | usize::from(b);
        let start = self.pair[k] as usize;
        start..start + self.count[k] as usize
    }
}

struct Matcher<'a> {
    old: &'a [u8],
    new: &'a [u8],
    sa: Vec<i32>,
    /// Where the suffixes starting with each byte pair are in `sa`.
    buckets: Buckets,
    /// Bytes compared plus probes made; a machine-independent work measure.
    work: u64,
}

impl<'a> Matcher<'a> {
    fn new(old: &'a [u8], new: &'a [u8]) -> Self {
        let sa = if old.is_empty() {
            Vec::new()
        } else {
            assert!(old.len() < i32::MAX as usize, "old image too large");
            SuffixArrayConstruction::for_text(old)
                .in_owned_buffer32()
                .single_threaded()
                .run()
                .expect("suffix array construction failed")
                .into_vec()
        };
        Matcher {
            old,
            new,
            sa,
            buckets: Buckets::new(old),
            work: 0,
        }
    }

    fn lcp(&mut self, a: &[u8], b: &[u8]) -> usize {
        let l = lcp(a, b);
        self.work += l as u64 + 1;
        l
    }

    /// Longest prefix of `pat` occurring in old: (suffix array index, length).
    ///
    /// A binary search over the suffix array. Its first steps are where it
    /// spends its time (two cache misses each: the suffix array entry and
    /// the suffix it points to), and while the middle lies outside the run
    /// of suffixes that start with `pat`'s first two bytes, the bucket
    /// table already says how the comparison ends and what the common
    /// prefix is (0 or 1 byte): those steps read no suffix. The path, and
    /// so the result, is that of the plain search.
    fn search(&mut self, pat: &[u8]) -> (usize, usize) {
        let (old, sa) = (self.old, &self.sa);
        let (pair, first) = match pat {
            [a, b, ..] => (self.buckets.pair(*a, *b), self.buckets.byte(*a)),
            _ => (0..0, 0..0),
        };
        let (mut lo, mut hi) = (0usize, sa.len());
        // lcp of pat with sa[lo - 1] and with sa[hi].
        let (mut llo, mut lhi) = (0usize, 0usize);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let k = llo.min(lhi);
            let (l, below) = if pat.len() >= 2 && !pair.contains(&mid) {
                // Shares at most pat's first byte, sorts on the side of
                // the pair's run that it lies on.
                (usize::from(first.contains(&mid)), mid < pair.start)
            } else {
                let suf = &old[sa[mid] as usize..];
                let l = k + lcp(&pat[k..], &suf[k..]);
                if l == pat.len() {
                    self.work += (l - k) as u64 + 1;
                    return (mid, l);
                }
                (l, l == suf.len() || suf[l] < pat[l])
            };
            self.work += (l - k) as u64 + 1;
            if below {
                lo = mid + 1;
                llo = l;
            } else {
                hi = mid;
                lhi = l;
            }
        }
        if lo > 0 && (lo == sa.len() || llo >= lhi) {
            (lo - 1, llo)
        } else {
            (lo, lhi)
        }
    }

    /// Among the suffixes near SA index `idx` sharing its first `len` bytes
    /// (a match of `new[at..]` if `at` is given), the one whose alignment
    /// agrees with new on most of the [`AGREE_SPAN`] bytes after the match,
    /// and of those (or without `at`, of all) the position closest to
    /// `want`.
    ///
    /// The suffixes that start with `old[sa[idx]..][..len]` are one run of
    /// the suffix array around `idx`; its ends are found by comparing each
    /// neighbour's first `len` bytes (at most `limit` on each side) rather
    /// than from an LCP array, which would cost 4 bytes per byte of old
    /// (and its construction another 4, and the time to build both).
    fn choose(
        &mut self,
        idx: usize,
        len: usize,
        want: usize,
        limit: usize,
        at: Option<usize>,
    ) -> usize {
        let (old, new, sa) = (self.old, self.new, &self.sa);
        let start = sa[idx] as usize;
        let prefix = &old[start..start + len];
        // Bytes after the match that agree at `p`'s alignment, and the
        // bytes compared.
        let agree = |p: usize| match at {
            Some(at) => {
                let (o, n) = (&old[(p + len).min(old.len())..], &new[at + len..]);
                let span = AGREE_SPAN.min(o.len()).min(n.len());
                let same = o[..span].iter().zip(&n[..span]).filter(|(a, b)| a == b);
                (same.count(), span as u64)
            }
            None => (0, 0),
        };
        let (a, mut compared) = agree(start);
        let mut best = (a, start);
        let mut consider = |p: usize| {
            let suffix = &old[p..];
            let l = lcp(prefix, suffix);
            compared += l as u64 + 1;
            if l < len {
                return false;
            }
            let (a, span) = agree(p);
            compared += span;
            if a > best.0 || a == best.0 && p.abs_diff(want) < best.1.abs_diff(want) {
                best = (a, p);
            }
            true
        };
        let mut i = idx;
        while i > 0 && idx - i < limit && consider(sa[i - 1] as usize) {
            i -= 1;
        }
        let mut i = idx + 1;
        while i < sa.len() && i - idx <= limit && consider(sa[i] as usize) {
            i += 1;
        }
        self.work += compared;
        best.1
    }

    /// Exact matches that beat the current alignment, in new order.
    fn find_anchors(&mut self, opts: &PlanOptions, progress: &mut dyn FnMut(usize)) -> Vec<Anchor> {
        let (old, new) = (self.old, self.new);
        let min_match = opts.min_match.max(1);
        let cap = opts.max_compare.max(min_match);
        let mut anchors = Vec::new();
        let mut scan = 0usize;
        let mut off = 0isize; // current alignment: old position = new position + off
        let mut next_report = 1usize << 16;
        // (position, search result) of the lookahead's searches.
        let mut looked: Vec<(usize, (usize, usize))> = Vec::with_capacity(opts.lookahead);
        while scan < new.len() {
            if scan >= next_report {
                progress(scan);
                next_report = scan + (1 << 16);
            }
            let cur = scan.checked_add_signed(off).filter(|&p| p < old.len());
            if cur.is_some_and(|p| old[p] == new[scan]) {
                scan += 1;
                continue;
            }
            // The lookahead's searches of the step before, if they were
            // at this position.
            let (idx, len) = match looked.iter().find(|l| l.0 == scan) {
                Some(&(_, found)) => found,
                None => self.search(&new[scan..new.len().min(scan + cap)]),
            };
            if len >= min_match {
                let want = scan.saturating_add_signed(off);
                let pos = self.choose(idx, len, want, opts.candidates, Some(scan));
                // How well the current alignment does over the same span.
                let mut old_score = 0;
                for k in 0..len {
                    if let Some(p) = (scan + k).checked_add_signed(off) {
                        if p < old.len() && old[p] == new[scan + k] {
                            old_score += 1;
                        }
                    }
                }
                self.work += len as u64;
                let take = len > old_score + opts.switch_margin;
                // A match as long as the compare cap may be longer still:
                // taken as it is (in long runs of equal bytes every later
                // start would reach further, one byte at a time).
                if take && opts.lookahead > 0 && len < cap {
                    looked.clear();
                    let reach = scan + len + LAZY_REACH;
                    for at in scan + 1..(scan + 1 + opts.lookahead).min(new.len()) {
                        let found = self.search(&new[at..new.len().min(at + cap)]);
                        looked.push((at, found));
                        if at + found.1 >= reach {
                            break;
                        }
                    }
                    if looked.iter().any(|&(at, (_, l))| at + l >= reach) {
                        scan += 1;
                        continue;
                    }
                }
                if take {
                    let full = len + self.lcp(&new[scan + len..], &old[pos + len..]);
                    anchors.push(Anchor {
                        new: scan,
                        old: pos,
                        len: full,
                    });
                    off = pos as isize - scan as isize;
                    scan += full;
                    continue;
                }
            }
            scan += 1;
        }
        anchors
    }
}

/// Score (bits saved relative to literals) of extending an aligned copy one
/// byte at a time; `scores[k]` is the score of extending by `k` bytes.
fn extension_scores(scores: &mut Vec<i32>, pairs: impl Iterator<Item = (u8, u8)>) -> u64 {
    scores.clear();
    scores.push(0);
    let (mut score, mut prev_eq) = (0i32, true);
    // The codec codes a difference that repeats one of the last two cheaply.
    let mut recent = [0u8; 2];
    for (a, b) in pairs {
        let eq = a == b;
        score += if !eq {
            let d = b.wrapping_sub(a);
            let cost = if recent.contains(&d) {
                REP_DIFF
            } else {
                DIFF_BYTE
            };
            if recent[0] != d {
                recent = [d, recent[0]];
            }
            LIT_BYTE - cost
        } else if prev_eq {
            LIT_BYTE
        } else {
            LIT_BYTE - EQ_RUN
        };
        prev_eq = eq;
        scores.push(score);
    }
    scores.len() as u64
}

/// Appends a step, merging it with the previous one where possible.
fn push_step(steps: &mut Vec<Step>, step: Step) {
    match (steps.last_mut(), step) {
        (_, Step::Copy { len: 0, .. } | Step::Literal { len: 0 }) => {}
        (Some(Step::Literal { len }), Step::Literal { len: more }) => *len += more,
        (
            Some(Step::Copy { from, len }),
            Step::Copy {
                from: f2,
                len: more,
            },
        ) if *from + *len == f2 => *len += more,
        _ => steps.push(step),
    }
}

/// Plans how to code `new` against `old`. `progress` is called now and then
/// with the number of bytes of new done, finally with `new.len()`.
pub fn plan(
    old: &[u8],
    new: &[u8],
    opts: &PlanOptions,
    progress: &mut dyn FnMut(usize),
) -> Vec<Step> {
    plan_counted(old, new, opts, progress).0
}

/// The suffix array of an old image, built once for several plans against
/// the same pair (generation plans with two switch margins).
pub struct Index<'a>(Matcher<'a>);

impl<'a> Index<'a> {
    /// Indexes `old` for planning `new`.
    pub fn new(old: &'a [u8], new: &'a [u8]) -> Self {
        Index(Matcher::new(old, new))
    }

    /// The same as [`plan`] on this index's pair.
    pub fn plan(&mut self, opts: &PlanOptions, progress: &mut dyn FnMut(usize)) -> Vec<Step> {
        self.0.work = 0;
        plan_with(&mut self.0, opts, progress).0
    }
}

/// [`plan`] that also returns the work done (bytes compared and probes).
fn plan_counted(
    old: &[u8],
    new: &[u8],
    opts: &PlanOptions,
    progress: &mut dyn FnMut(usize),
) -> (Vec<Step>, u64) {
    plan_with(&mut Matcher::new(old, new), opts, progress)
}

fn plan_with(
    m: &mut Matcher<'_>,
    opts: &PlanOptions,
    progress: &mut dyn FnMut(usize),
) -> (Vec<Step>, u64) {
    let (old, new) = (m.old, m.new);
    let mut anchors = m.find_anchors(opts, progress);
    // Sentinel with no extent at the end of new.
    anchors.push(Anchor {
        new: new.len(),
        old: 0,
        len: 0,
    });
    let mut steps = Vec::new();
    let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
    // The previous cover: its start (in new) and the anchor it grew from.
    // A virtual empty cover at offset 0 starts things off.
    let (mut cover_start, mut prev) = (
        0usize,
        Anchor {
            new: 0,
            old: 0,
            len: 0,
        },
    );
    for (i, &next) in anchors.iter().enumerate() {
        let is_sentinel = i + 1 == anchors.len();
        let (gap_start, gap_end) = (prev.new + prev.len, next.new);
        let gap = gap_end - gap_start;
        let prev_old_end = prev.old + prev.len;
        let max_f = gap.min(old.len() - prev_old_end);
        let max_b = if is_sentinel { 0 } else { gap.min(next.old) };
        m.work += extension_scores(
            &mut fwd,
            new[gap_start..gap_start + max_f]
                .iter()
                .copied()
                .zip(old[prev_old_end..].iter().copied()),
        );
        m.work += extension_scores(
            &mut bwd,
            new[gap_end - max_b..gap_end]
                .iter()
                .rev()
                .copied()
                .zip(old[..next.old].iter().rev().copied()),
        );
        let same = !is_sentinel
            && prev.old as isize - prev.new as isize == next.old as isize - next.new as isize;
        // Best split with nothing left over between the two covers.
        let mut best: Option<(f64, usize, usize)> = None;
        for f in gap.saturating_sub(max_b)..=max_f.min(gap) {
            let s = f64::from(fwd[f] + bwd[gap - f]);
            if best.is_none_or(|b| s > b.0) {
                best = Some((s, f, gap - f));
            }
        }
        // Best extensions each on its own, with literals between.
        let fa = argmax(&fwd);
        let ba = argmax(&bwd);
        if fa + ba < gap {
            let r = gap - fa - ba;
            let mut pen = f64::from(LIT_HEADER);
            if same {
                pen += f64::from(COPY_HEADER) + seek_bits(r);
            }
            let s = f64::from(fwd[fa] + bwd[ba]) - pen;
            if best.is_none_or(|b| s > b.0) {
                best = Some((s, fa, ba));
            }
        }
        let (_, f, b) = best.unwrap_or((0.0, 0, 0));
        let end = prev.new + prev.len + f;
        push_step(
            &mut steps,
            Step::Copy {
                from: prev.old - (prev.new - cover_start),
                len: end - cover_start,
            },
        );
        push_step(&mut steps, Step::Literal { len: gap - f - b });
        cover_start = next.new - b;
        prev = next;
    }
    let steps = prune(old, new, steps);
    progress(new.len());
    (steps, m.work)
}

/// Turns Copies that cost more than literals (counting the seeks around
/// them) into literals.
fn prune(old: &[u8], new: &[u8], steps: Vec<Step>) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len());
    let (mut at, mut src_end) = (0usize, 0usize);
    let seek = |from: usize, end: usize| {
        if from == end {
            0.0
        } else {
            seek_bits(from.abs_diff(end))
        }
    };
    for (i, &step) in steps.iter().enumerate() {
        let Step::Copy { from, len } = step else {
            push_step(&mut out, step);
            at += step_len(step);
            continue;
        };
        let next_from = steps[i + 1..].iter().find_map(|s| match *s {
            Step::Copy { from, .. } => Some(from),
            Step::Literal { .. } => None,
        });
        let next_seek = |end| next_from.map_or(0.0, |f| seek(f, end));
        let keep = seek(from, src_end)
            + f64::from(COPY_HEADER)
            + copy_content_bits(
                old[from..from + len]
                    .iter()
                    .copied()
                    .zip(new[at..at + len].iter().copied()),
            )
            + next_seek(from + len);
        let lit_neighbours = [i.checked_sub(1), Some(i + 1)]
            .iter()
            .filter(|j| matches!(j.and_then(|j| steps.get(j)), Some(Step::Literal { .. })))
            .count();
        let drop = f64::from(LIT_BYTE) * len as f64
            + f64::from(LIT_HEADER) * (1.0 - lit_neighbours as f64)
            + next_seek(src_end);
        if drop < keep {
            push_step(&mut out, Step::Literal { len });
        } else {
            push_step(&mut out, step);
            src_end = from + len;
        }
        at += len;
    }
    out
}

/// Shortest match that [`repeat_literals`] puts in place of literals.
const REPEAT_MIN: usize = 4;

/// Replaces parts of `steps`' literal runs by copies: of bytes the new
/// image already holds before them (virtual source positions from
/// `old.len()` on, found through a hash of each position's first
/// 4 bytes (`REPEAT_MIN`), the 64 most recent positions with that hash
/// within the last 2^20 compared), or of old bytes (the suffix array's longest match, the
/// candidate nearest the source cursor), whichever is longer, wherever
/// one of at least 4 bytes starts. The planner's cost
/// model would reject most of them (a seek there and one back estimated
/// at 6 + 1.5·log2 bits each), but with codec 3's seek kinds (a repeat
/// of new coded back from the output position, the seek back a return
/// home) the coded patch is smaller with all of them on the pairs
/// measured (`docs/CODEC.md`, "Seek kinds"): [`crate::generate`] codes
/// every plan with them.
pub fn repeat_literals(index: &mut Index<'_>, steps: &[Step]) -> Vec<Step> {
    repeat_literals_all(index, &[steps]).remove(0)
}

/// [`repeat_literals`] for several plans of the same pair in one pass
/// over new: each position of new is hashed once for all of them, not
/// once per plan (on an image with few literals the hashing is most of
/// the work). Each plan comes out as [`repeat_literals`] makes it.
pub fn repeat_literals_all(index: &mut Index<'_>, plans: &[impl AsRef<[Step]>]) -> Vec<Vec<Step>> {
    const BITS: u32 = 20;
    const WINDOW_BITS: u32 = 20;
    const TRIES: usize = 64;
    let m = &mut index.0;
    let (old, new) = (m.old, m.new);
    // A table about four times as long as new, at most 2^20 entries: a
    // small image's table is not megabytes to zero and fault in.
    let bits = (new.len().max(1).ilog2() + 2).clamp(8, BITS);
    let hash = |t: usize| {
        let mut b = [0u8; 8];
        b[..REPEAT_MIN].copy_from_slice(&new[t..t + REPEAT_MIN]);
        (u64::from_le_bytes(b).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    };
    // The chain keeps the last `window` positions: its memory is bounded
    // whatever the image's size (a repeat further back is not found).
    let window = new.len().next_power_of_two().min(1 << WINDOW_BITS);
    let mut head = vec![u32::MAX; 1 << bits];
    let mut chain = vec![u32::MAX; window];
    // Positions of new hashed so far: all those before the position
    // searched (the plans are searched in the order of their positions).
    let mut hashed = 0usize;
    let mut cursors: Vec<RepeatCursor<'_>> = plans
        .iter()
        .map(|s| RepeatCursor::new(s.as_ref()))
        .collect();
    // The last search, (position, end of its run, end of the last copy of
    // old) and its result: plans that share a literal run ask for the
    // same search one after the other.
    let mut last = ((usize::MAX, 0, 0), (0usize, 0usize));
    for c in &mut cursors {
        c.settle();
    }
    // The plan whose next search is first in new, until every one is done.
    while let Some(c) = cursors
        .iter_mut()
        .filter(|c| c.t < c.end)
        .min_by_key(|c| c.t)
    {
        let (t, end) = (c.t, c.end);
        while hashed < t.min((new.len() + 1).saturating_sub(REPEAT_MIN)) {
            let h = hash(hashed);
            chain[hashed & (window - 1)] = head[h];
            head[h] = hashed as u32;
            hashed += 1;
        }
        // (source position, length) of the longest match.
        let mut best = (0usize, 0usize);
        if last.0 == (t, end, c.src_end) {
            best = last.1;
        } else if t + REPEAT_MIN <= end {
            let mut q = head[hash(t)];
            for _ in 0..TRIES {
                // Empty, or older than the window (overwritten).
                if q == u32::MAX || t - q as usize > window {
                    break;
                }
                let l = lcp(&new[q as usize..end], &new[t..end]);
                if l > best.1 {
                    best = (old.len() + q as usize, l);
                }
                q = chain[q as usize & (window - 1)];
            }
            let (idx, l) = m.search(&new[t..end.min(t + 256)]);
            if l >= REPEAT_MIN && l > best.1 {
                let p = m.choose(idx, l, c.src_end, 16, Some(t));
                best = (p, lcp(&new[t..end], &old[p..]));
            }
        }
        last = ((t, end, c.src_end), best);
        let (from, l) = best;
        if l >= REPEAT_MIN {
            push_step(&mut c.out, Step::Copy { from, len: l });
            c.t += l;
        } else {
            push_step(&mut c.out, Step::Literal { len: 1 });
            c.t += 1;
        }
        if c.t >= c.end {
            c.settle();
        }
    }
    cursors.into_iter().map(|c| c.out).collect()
}

/// Where [`repeat_literals_all`] is in one plan: its next step, the
/// position of its next search (`t`) in the literal run that ends at
/// `end` (`t == end` once the plan is done), where its last copy of old
/// ended, and what it has put out.
struct RepeatCursor<'s> {
    steps: &'s [Step],
    next: usize,
    t: usize,
    end: usize,
    src_end: usize,
    out: Vec<Step>,
}

impl<'s> RepeatCursor<'s> {
    fn new(steps: &'s [Step]) -> Self {
        RepeatCursor {
            steps,
            next: 0,
            t: 0,
            end: 0,
            src_end: 0,
            out: Vec::with_capacity(steps.len()),
        }
    }

    /// Past the literal run at hand (which ends at `end`): puts out the
    /// plan's copies up to its next literal run and stands at that run's
    /// start, or at the end.
    fn settle(&mut self) {
        let mut at = self.end;
        while let Some(&step) = self.steps.get(self.next) {
            self.next += 1;
            match step {
                Step::Literal { len } if len > 0 => {
                    (self.t, self.end) = (at, at + len);
                    return;
                }
                Step::Copy { from, len } => self.src_end = from + len,
                Step::Literal { .. } => {}
            }
            push_step(&mut self.out, step);
            at += step_len(step);
        }
        (self.t, self.end) = (at, at);
    }
}

fn step_len(step: Step) -> usize {
    match step {
        Step::Copy { len, .. } | Step::Literal { len } => len,
    }
}

/// Index of the first maximum.
fn argmax(v: &[i32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus");

    use flashpatch::mock::Rng;

    /// Checks the structural invariants of a plan and returns it.
    fn checked(old: &[u8], new: &[u8], opts: &PlanOptions) -> (Vec<Step>, u64) {
        let mut last = 0;
        let (steps, work) = plan_counted(old, new, opts, &mut |done| {
            assert!(done >= last && done <= new.len());
            last = done;
        });
        assert_eq!(last, new.len(), "progress must finish at new.len()");
        let (mut at, mut src_end) = (0, usize::MAX);
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Step::Copy { from, len } => {
                    assert!(len > 0 && from + len <= old.len(), "bad copy {step:?}");
                    assert_ne!(from, src_end, "unmerged copies at step {i}");
                    src_end = from + len;
                    at += len;
                }
                Step::Literal { len } => {
                    assert!(len > 0, "empty literal");
                    assert!(
                        !matches!(steps.get(i + 1), Some(Step::Literal { .. })),
                        "unmerged literals"
                    );
                    at += len;
                    src_end = usize::MAX;
                }
            }
        }
        assert_eq!(at, new.len(), "steps must cover new exactly");
        (steps, work)
    }

    /// Asserts that `work` (bytes compared plus probes) is O(n log n) with a
    /// small constant; bsdiff's scan does Θ(n²) on these inputs.
    fn assert_near_linear(work: u64, n: usize) {
        let n = n.max(2) as u64;
        let bound = 2 * n * u64::from(64 - n.leading_zeros());
        assert!(work < bound, "work {work} exceeds {bound} for n = {n}");
    }

    /// Lazy matching: where the current alignment fails, a short match
    /// that happens to start there is not taken when the match starting
    /// one byte later goes on much further; that byte is left to the
    /// current alignment, and the long match is taken one byte later.
    #[test]
    fn lazy_matching_skips_a_short_match_before_a_longer_one() {
        let mut old = Rng(21).bytes(1000);
        // A stray copy of one changed byte and the 6 bytes after it (a
        // match of 7 where the change is), far from where they belong.
        let z = old[100].wrapping_add(1);
        old[600] = z;
        let tail: Vec<u8> = old[200..206].to_vec();
        old[601..607].copy_from_slice(&tail);
        let mut new = old[..100].to_vec();
        new.push(z);
        new.extend_from_slice(&old[200..400]);
        let lazy = PlanOptions::default();
        let eager = PlanOptions {
            lookahead: 0,
            ..PlanOptions::default()
        };
        let (steps, _) = checked(&old, &new, &lazy);
        let (eager_steps, _) = checked(&old, &new, &eager);
        let from_stray = |s: &[Step]| s.iter().any(|s| matches!(s, Step::Copy { from: 600, .. }));
        assert!(from_stray(&eager_steps), "{eager_steps:?}");
        assert!(!from_stray(&steps), "{steps:?}");
        // Two copies: the changed byte goes with one of them (as a
        // difference), the rest of new is one copy up to old[400].
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(matches!(steps[1], Step::Copy { from, len } if from + len == 400));
        assert!(estimate_bits(&old, &new, &steps) < estimate_bits(&old, &new, &eager_steps));
    }

    /// The default switch margin (3) copies moved code whose exact pieces
    /// are 4 bytes long between changed bytes, as in code rebuilt against
    /// a changed library; a margin of 4 leaves it to literals.
    #[test]
    fn margin_3_copies_four_byte_pieces() {
        let old = Rng(22).bytes(1000);
        let mut new = old[..100].to_vec();
        new.extend(Rng(23).bytes(12));
        // old[500..560] with every fifth byte changed.
        new.extend(
            old[500..560]
                .iter()
                .enumerate()
                .map(|(i, &b)| if i % 5 == 4 { b ^ 0x40 } else { b }),
        );
        new.extend(Rng(24).bytes(12));
        new.extend_from_slice(&old[172..400]);
        let margin_4 = PlanOptions {
            switch_margin: 4,
            min_match: 5,
            ..PlanOptions::default()
        };
        let (steps, _) = checked(&old, &new, &PlanOptions::default());
        let (wider, _) = checked(&old, &new, &margin_4);
        let from_piece = |s: &[Step]| s.iter().any(|s| matches!(s, Step::Copy { from: 500, .. }));
        assert!(from_piece(&steps), "{steps:?}");
        assert!(!from_piece(&wider), "{wider:?}");
        assert!(estimate_bits(&old, &new, &steps) < estimate_bits(&old, &new, &wider));
    }

    /// The search with the bucket table takes the plain binary search's
    /// path: same index, same length, same work.
    #[test]
    fn search_agrees_with_the_plain_binary_search() {
        fn plain(old: &[u8], sa: &[i32], pat: &[u8]) -> (usize, usize, u64) {
            let (mut lo, mut hi, mut llo, mut lhi, mut work) = (0, sa.len(), 0, 0, 0);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let suf = &old[sa[mid] as usize..];
                let k = llo.min(lhi);
                let l = k + lcp(&pat[k..], &suf[k..]);
                work += (l - k) as u64 + 1;
                if l == pat.len() {
                    return (mid, l, work);
                }
                if l == suf.len() || suf[l] < pat[l] {
                    (lo, llo) = (mid + 1, l);
                } else {
                    (hi, lhi) = (mid, l);
                }
            }
            if lo > 0 && (lo == sa.len() || llo >= lhi) {
                (lo - 1, llo, work)
            } else {
                (lo, lhi, work)
            }
        }
        let mut rng = Rng(12);
        for round in 0..40 {
            // Few distinct bytes make long shared prefixes and full buckets.
            let alphabet = 2 + round * 7 % 255;
            let n = 1 + rng.below(4000);
            let old: Vec<u8> = (0..n).map(|_| rng.below(alphabet) as u8).collect();
            let mut m = Matcher::new(&old, &[]);
            let sa = m.sa.clone();
            for _ in 0..200 {
                let pat: Vec<u8> = if rng.below(2) == 0 {
                    let a = rng.below(n);
                    let end = (a + rng.below(40)).min(n);
                    let mut p = old[a..end].to_vec();
                    let extra = rng.below(4);
                    p.extend(rng.bytes(extra));
                    p
                } else {
                    (0..rng.below(6))
                        .map(|_| rng.below(alphabet + 1) as u8)
                        .collect()
                };
                if pat.is_empty() {
                    continue;
                }
                m.work = 0;
                let (idx, len) = m.search(&pat);
                assert_eq!((idx, len, m.work), plain(&old, &sa, &pat), "{pat:?}");
            }
        }
    }

    /// `choose` finds the run of equal prefixes by comparing suffixes; it
    /// picks what a scan of an LCP array (the textbook way) picks: the
    /// nearest position, or with a match position in new the one whose
    /// alignment agrees on most of the bytes after the match, then the
    /// nearest.
    #[test]
    fn choice_agrees_with_an_lcp_array() {
        let mut rng = Rng(11);
        let table = rng.bytes(40);
        let mut old: Vec<u8> = table.iter().copied().cycle().take(3000).collect();
        old.extend(rng.bytes(2000));
        old.extend(std::iter::repeat_n(0xFF, 1000));
        // New: pieces of old with changed bytes, so that candidates differ
        // in how far their alignment goes on.
        let mut new = Vec::new();
        while new.len() < 4000 {
            let a = rng.below(old.len() - 100);
            let mut piece = old[a..a + 20 + rng.below(80)].to_vec();
            for _ in 0..rng.below(4) {
                let k = rng.below(piece.len());
                piece[k] ^= 1 + rng.below(255) as u8;
            }
            new.extend(piece);
        }
        let mut m = Matcher::new(&old, &new);
        let sa = m.sa.clone();
        let lcp_array: Vec<usize> = (0..sa.len())
            .map(|i| {
                if i == 0 {
                    0
                } else {
                    lcp(&old[sa[i - 1] as usize..], &old[sa[i] as usize..])
                }
            })
            .collect();
        let mut agreeing = 0;
        for round in 0..6000 {
            let idx = rng.below(sa.len());
            let len = 1 + rng.below(old.len() - sa[idx] as usize).min(rng.below(64));
            let want = rng.below(old.len());
            let limit = rng.below(20);
            // Every other round, at a place in new whose first `len` bytes
            // are the suffix's.
            let at = (round % 2 == 1)
                .then(|| {
                    let prefix = &old[sa[idx] as usize..][..len];
                    (0..new.len().saturating_sub(len)).find(|&t| new[t..].starts_with(prefix))
                })
                .flatten();
            let agree = |p: usize| {
                at.map_or(0, |at| {
                    (0..AGREE_SPAN)
                        .filter(|&k| {
                            let (o, n) = (p + len + k, at + len + k);
                            o < old.len() && n < new.len() && old[o] == new[n]
                        })
                        .count()
                })
            };
            let mut best = (agree(sa[idx] as usize), sa[idx] as usize);
            let mut consider = |p: i32| {
                let (a, p) = (agree(p as usize), p as usize);
                if a > best.0 || a == best.0 && p.abs_diff(want) < best.1.abs_diff(want) {
                    best = (a, p);
                }
            };
            let mut i = idx;
            while i > 0 && idx - i < limit && lcp_array[i] >= len {
                i -= 1;
                consider(sa[i]);
            }
            let mut i = idx + 1;
            while i < sa.len() && i - idx <= limit && lcp_array[i] >= len {
                consider(sa[i]);
                i += 1;
            }
            let nearest = {
                let mut n = sa[idx] as usize;
                let mut i = idx;
                while i > 0 && idx - i < limit && lcp_array[i] >= len {
                    i -= 1;
                    if (sa[i] as usize).abs_diff(want) < n.abs_diff(want) {
                        n = sa[i] as usize;
                    }
                }
                let mut i = idx + 1;
                while i < sa.len() && i - idx <= limit && lcp_array[i] >= len {
                    if (sa[i] as usize).abs_diff(want) < n.abs_diff(want) {
                        n = sa[i] as usize;
                    }
                    i += 1;
                }
                n
            };
            agreeing += usize::from(at.is_some() && best.1 != nearest);
            assert_eq!(
                m.choose(idx, len, want, limit, at),
                best.1,
                "{idx} {len} {want} {limit} {at:?}"
            );
        }
        // The agreement decided, not the distance, in some rounds.
        assert!(agreeing > 50, "{agreeing}");
    }

    #[test]
    fn edge_cases() {
        let o = PlanOptions::default();
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(checked(&[], &data, &o).0, vec![Step::Literal { len: 1000 }]);
        assert!(checked(&data, &[], &o).0.is_empty());
        assert!(checked(&[], &[], &o).0.is_empty());
        assert_eq!(
            checked(&data, &data, &o).0,
            vec![Step::Copy { from: 0, len: 1000 }]
        );
        assert_eq!(
            checked(b"abc", b"abc", &o).0,
            vec![Step::Copy { from: 0, len: 3 }]
        );
        checked(b"a", b"b", &o);
        checked(b"xyz", b"a", &o);
        checked(b"a", b"abcabcabc", &o);
        let tiny = PlanOptions {
            min_match: 0,
            max_compare: 0,
            ..PlanOptions::default()
        };
        checked(&data, &data[3..], &tiny);
        // A moved block is found.
        let data = Rng(5).bytes(1000);
        let mut new = data[500..].to_vec();
        new.extend_from_slice(&data[..500]);
        let steps = checked(&data, &new, &o).0;
        assert_eq!(
            steps,
            vec![
                Step::Copy {
                    from: 500,
                    len: 500
                },
                Step::Copy { from: 0, len: 500 }
            ]
        );
    }

    #[test]
    fn approximate_extension_and_estimate() {
        let o = PlanOptions::default();
        let old = Rng(7).bytes(4000);
        // Moved code with changed addresses: shifted, every 16th byte differs.
        let mut new = vec![0xAA; 3];
        new.extend(
            old.iter()
                .enumerate()
                .map(|(i, &b)| if i % 16 == 5 { b ^ 1 } else { b }),
        );
        let steps = checked(&old, &new, &o).0;
        assert_eq!(
            steps,
            vec![Step::Literal { len: 3 }, Step::Copy { from: 0, len: 4000 }]
        );
        let bits = estimate_bits(&old, &new, &steps);
        // The differences are +1 and -1: the first of each costs 10 bits,
        // the other 248 repeat a recent one (4 bits).
        let diffs = 2.0 * 10.0 + 248.0 * 4.0;
        assert_eq!(bits, 6.0 + 7.0 * 3.0 + 6.0 + diffs + 250.0 * 3.0 + 3.0);
        let lit = [Step::Literal { len: new.len() }];
        assert_eq!(estimate_bits(&old, &new, &lit), 6.0 + 7.0 * 4003.0);
    }

    #[test]
    fn random_pairs() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let n = rng.below(3000);
            let old = rng.bytes(n);
            // New is built from pieces of old (some mutated) and fresh bytes.
            let mut new = Vec::new();
            while new.len() < 3000 && rng.below(12) != 0 {
                if old.is_empty() || rng.below(3) == 0 {
                    let n = rng.below(50);
                    new.extend(rng.bytes(n));
                } else {
                    let a = rng.below(old.len());
                    let b = (a + rng.below(400)).min(old.len());
                    let start = new.len();
                    new.extend_from_slice(&old[a..b]);
                    for _ in 0..rng.below(4) {
                        if new.len() > start {
                            let k = start + rng.below(new.len() - start);
                            new[k] = new[k].wrapping_add(1);
                        }
                    }
                }
            }
            let o = PlanOptions {
                min_match: 1 + round % 12,
                ..PlanOptions::default()
            };
            let (steps, _) = checked(&old, &new, &o);
            assert_eq!(
                steps,
                plan(&old, &new, &o, &mut |_| {}),
                "not deterministic"
            );
            let literal_only = estimate_bits(&old, &new, &[Step::Literal { len: new.len() }]);
            if !new.is_empty() {
                assert!(estimate_bits(&old, &new, &steps) <= literal_only + 64.0);
            }
        }
    }

    #[test]
    fn degenerate_ff_images_stay_near_linear() {
        let o = PlanOptions::default();
        let old = vec![0xFFu8; 4 << 20];
        let mut new = old.clone();
        for k in [7usize, 100_000, 2 << 20, (4 << 20) - 1] {
            new[k] = 0;
        }
        let (steps, work) = checked(&old, &new, &o);
        assert_eq!(steps.len(), 1);
        assert_near_linear(work, new.len());
        // old == new, and a 0xFF region extended in the middle.
        let (_, work) = checked(&old, &old, &o);
        assert_near_linear(work, old.len());
        let mut old2: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
        old2[300_000..900_000].fill(0xFF);
        let mut new2 = old2.clone();
        new2.splice(600_000..600_000, std::iter::repeat_n(0xFF, 70_000));
        let (steps, work) = checked(&old2, &new2, &o);
        assert!(steps.len() <= 4, "{steps:?}");
        assert_near_linear(work, new2.len());
    }

    #[test]
    fn degenerate_repeated_table_stays_near_linear() {
        let o = PlanOptions::default();
        let mut rng = Rng(1);
        let table = rng.bytes(256);
        let old: Vec<u8> = table.iter().copied().cycle().take(1 << 20).collect();
        let mut cases = Vec::new();
        // Sparse changes, a shift by a few bytes, a zero-filled section and a
        // table with a different period.
        let mut new = old.clone();
        for _ in 0..2000 {
            let k = rng.below(new.len());
            new[k] ^= 0x55;
        }
        cases.push(new);
        let mut new = vec![1, 2, 3];
        new.extend_from_slice(&old);
        cases.push(new);
        let mut new = old.clone();
        new[1000..300_000].fill(0);
        cases.push(new);
        cases.push(
            table
                .iter()
                .chain(&[9])
                .copied()
                .cycle()
                .take(1 << 20)
                .collect(),
        );
        cases.push(old.clone());
        for new in &cases {
            let (_, work) = checked(&old, new, &o);
            assert_near_linear(work, new.len());
        }
    }

    /// `repeat_literals` copies only bytes already produced (or old
    /// ones), and its plan rebuilds new byte for byte; several plans in
    /// one pass (`repeat_literals_all`) come out as each does alone.
    #[test]
    fn repeats_copy_only_what_is_there() {
        let mut rng = Rng(21);
        for round in 0..60 {
            let n = rng.below(2000);
            let old = rng.bytes(n);
            let n = 1 + rng.below(40);
            let block = rng.bytes(n);
            let mut new = Vec::new();
            while new.len() < 3000 {
                match rng.below(4) {
                    0 => new.extend_from_slice(&block),
                    1 if !old.is_empty() => {
                        let a = rng.below(old.len());
                        let b = (a + rng.below(30)).min(old.len());
                        new.extend_from_slice(&old[a..b]);
                    }
                    _ => {
                        let n = rng.below(20);
                        new.extend(rng.bytes(n));
                    }
                }
            }
            let o = PlanOptions {
                min_match: 5 + round % 4,
                ..PlanOptions::default()
            };
            let mut index = Index::new(&old, &new);
            let steps = index.plan(&o, &mut |_| {});
            let repeats = repeat_literals(&mut index, &steps);
            let other = index.plan(
                &PlanOptions {
                    switch_margin: 5,
                    ..o.clone()
                },
                &mut |_| {},
            );
            let other_repeats = repeat_literals(&mut index, &other);
            assert_eq!(
                repeat_literals_all(&mut index, &[&other, &steps, &other]),
                [other_repeats.clone(), repeats.clone(), other_repeats]
            );
            let mut out: Vec<u8> = Vec::new();
            for step in &repeats {
                match *step {
                    Step::Copy { from, len } => {
                        for k in 0..len {
                            let (p, b) = (from + k, new[out.len()]);
                            if p >= old.len() {
                                // A repeat: exact, and of bytes already produced.
                                assert!(p - old.len() < out.len(), "reads ahead: {step:?}");
                                assert_eq!(out[p - old.len()], b, "{step:?}");
                            }
                            out.push(b);
                        }
                    }
                    Step::Literal { len } => {
                        let at = out.len();
                        out.extend_from_slice(&new[at..at + len]);
                    }
                }
            }
            assert_eq!(out, new);
            let lits = |s: &[Step]| {
                s.iter()
                    .map(|s| match s {
                        Step::Literal { len } => *len,
                        Step::Copy { .. } => 0,
                    })
                    .sum::<usize>()
            };
            assert!(lits(&repeats) <= lits(&steps));
            let body =
                crate::encode::encode_body(&old, &new, &repeats, flashpatch::codec::Params::ALL[0]);
            assert!(!new.is_empty() && !body.is_empty());
        }
    }

    /// Prints the estimated size per corpus pair (run with --nocapture).
    #[test]
    fn corpus_costs() {
        let Ok(dirs) = std::fs::read_dir(CORPUS) else {
            println!("corpus not found at {CORPUS}; skipping");
            return;
        };
        let mut dirs: Vec<_> = dirs.flatten().map(|d| d.path()).collect();
        dirs.sort();
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            let (Ok(old), Ok(new)) = (
                std::fs::read(dir.join("old")),
                std::fs::read(dir.join("new")),
            ) else {
                continue;
            };
            let (steps, work) = checked(&old, &new, &PlanOptions::default());
            let kb = estimate_bits(&old, &new, &steps) / 8192.0;
            println!(
                "{:?}: {kb:.2} KB, {} steps, work {work}",
                dir.file_name().unwrap(),
                steps.len()
            );
            assert!(kb * 8192.0 < new.len() as f64 * 7.0);
        }
    }
}

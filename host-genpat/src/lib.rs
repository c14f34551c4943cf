//! Host-side tools for flashpatch: the patch generator behind `genpat`,
//! patch files with several entries, and host-side apply with the device's
//! own code.

#![forbid(unsafe_code)]

pub mod apply;
pub mod container;
pub mod encode;
pub mod fetch;
pub mod firmware;
pub mod in_place;
pub mod keys;
pub mod manifest;
pub mod plan;
pub mod send;

use flashpatch::codec::{Params, CODEC_RC3};
use flashpatch::format::{EntryHeader, VERSION};

pub use container::Metadata;

/// Options of patch generation.
#[derive(Clone, Debug, Default)]
pub struct GenOptions {
    /// Matcher options. Generation plans with these and again with each
    /// switch margin of [`EXTRA_SWITCH_MARGINS`], and keeps the smaller
    /// body.
    pub plan: plan::PlanOptions,
    /// Metadata recorded in the entry.
    pub meta: Metadata,
}

/// The switch margins that generation tries besides the one asked for.
pub const EXTRA_SWITCH_MARGINS: [usize; 1] = [5];

/// Something that wants to hear how far a long job has come. Every method
/// has a default that does nothing.
pub trait Progress {
    /// Pass `n` of `of` (from 1) over the inputs begins: generation plans
    /// once per matcher setting (see [`GenOptions::plan`]), each pass a
    /// "matching" phase; the last pass then codes every plan ("coding").
    fn pass(&mut self, _n: usize, _of: usize) {}
    /// A phase starts; `total` is its length in its own units.
    fn start(&mut self, _phase: &'static str, _total: u64) {}
    /// `done` units of the current phase are finished.
    fn update(&mut self, _done: u64) {}
    /// The current phase is finished.
    fn finish(&mut self) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Why a patch cannot be generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    /// An image is 4 GiB or larger: the format's sizes are 32-bit.
    #[error("images of 4 GiB or more do not fit the patch format ({0} bytes)")]
    TooLarge(usize),
}

/// Codes `steps` with the parameter set whose literals cost least (the
/// first set, and another one if its literals are cheaper), with each of
/// the word-context settings `words` (`wp`, 0 or 1): the set and the
/// smallest body.
fn code(old: &[u8], new: &[u8], steps: &[plan::Step], words: &[u8]) -> (Params, Vec<u8>) {
    // Literals depend only on the literal parameters, and see nothing
    // else: rank those sets by what the literals cost, then code the
    // winner with each setting of `wp` (which changes the other
    // operations' models) and keep the smallest body.
    let start = Params::ALL[0].words(words[0]);
    let (first, lits) = encode::encode_body_lits(old, new, steps, start);
    let cost = |p| encode::literal_cost(new, &lits, p);
    let mut winner = (Params::ALL[0], cost(Params::ALL[0]));
    for p in &Params::ALL[1..] {
        let c = cost(*p);
        if c < winner.1 {
            winner = (*p, c);
        }
    }
    // Ties keep the earlier candidate: the result is deterministic.
    let mut best = (start, first);
    for p in words.iter().map(|&wp| winner.0.words(wp)) {
        if p != best.0 {
            let body = encode::encode_body(old, new, steps, p);
            if body.len() < best.1.len() {
                best = (p, body);
            }
        }
    }
    best
}

/// Builds one patch entry (length field, header, body) that turns `old`
/// into `new`.
pub fn generate(
    old: &[u8],
    new: &[u8],
    opts: &GenOptions,
    progress: &mut dyn Progress,
) -> Result<(EntryHeader, Vec<u8>), GenError> {
    for len in [old.len(), new.len()] {
        if u32::try_from(len).is_err() {
            return Err(GenError::TooLarge(len));
        }
    }
    // The settings to plan with: the ones asked for first, then each
    // other switch margin, each once.
    let mut plans = vec![opts.plan.clone()];
    for switch_margin in EXTRA_SWITCH_MARGINS {
        if plans.iter().all(|q| q.switch_margin != switch_margin) {
            plans.push(plan::PlanOptions {
                switch_margin,
                ..opts.plan.clone()
            });
        }
    }
    let mut index = plan::Index::new(old, new);
    // The smallest body so far and its parameters.
    let mut best: Option<(Params, Vec<u8>)> = None;
    // The first plan is coded with and without word contexts; the others
    // only with the setting that coded it smaller (coding is most of the
    // time of generation after matching).
    let mut words: &[u8] = &[0, 1];
    let mut keep = |steps: &[plan::Step]| {
        let (p, body) = code(old, new, steps, words);
        words = if p.wp == 1 { &[1] } else { &[0] };
        // Ties keep the earlier candidate: the result is deterministic.
        if best.as_ref().is_none_or(|(_, b)| body.len() < b.len()) {
            best = Some((p, body));
        }
    };
    let mut planned = Vec::with_capacity(plans.len());
    for (i, plan_opts) in plans.iter().enumerate() {
        progress.pass(i + 1, plans.len());
        progress.start("matching", new.len() as u64);
        planned.push(index.plan(plan_opts, &mut |done| progress.update(done as u64)));
        progress.finish();
    }
    // Each plan is coded with its literal runs searched for repeats (all
    // plans in one pass over new): which plan wins can depend on them, and
    // without them no plan measured coded more than a few bytes smaller
    // (`docs/CODEC.md`, "Switch margin 3").
    progress.start("coding", planned.len() as u64);
    let repeats = plan::repeat_literals_all(&mut index, &planned);
    for (k, steps) in repeats.iter().enumerate() {
        keep(steps);
        progress.update(k as u64 + 1);
    }
    progress.finish();
    let (params, body) = best.expect("at least one parameter set");
    let header = EntryHeader {
        version: VERSION,
        flags: 0,
        codec: CODEC_RC3,
        params: params.to_byte(),
        source: container::source_id(old),
        target: container::target_id(new),
        body_len: body.len() as u32,
        body_crc32: flashpatch::crc32::crc32(&body),
    };
    let meta = container::Metadata {
        source_sha: container::source_sha(old),
        ..opts.meta.clone()
    };
    let entry = container::build_entry(&header, &meta, &body);
    Ok((header, entry))
}

/// Builds a patch file with one entry that turns `old` into `new`.
pub fn diff(old: &[u8], new: &[u8], opts: &GenOptions) -> Result<Vec<u8>, GenError> {
    let (_, entry) = generate(old, new, opts, &mut NoProgress)?;
    Ok(container::assemble([entry.as_slice()]).expect("one entry fits"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashpatch::mock::Rng;

    #[test]
    fn generation_is_deterministic() {
        let old = Rng(3).bytes(20_000);
        let mut new = old[..7_000].to_vec();
        new.extend(Rng(4).bytes(300));
        new.extend(old[7_000..].iter().enumerate().map(|(i, &b)| {
            // Moved code whose 4-byte words carry shifted addresses.
            if i % 24 == 1 {
                b.wrapping_add(3)
            } else {
                b
            }
        }));
        let opts = GenOptions::default();
        assert_eq!(
            diff(&old, &new, &opts).unwrap(),
            diff(&old, &new, &opts).unwrap()
        );
    }

    /// Word contexts (`wp`): on code of aligned 32-bit words whose calls
    /// all moved (AArch64 `BL`s, the offset in the low bytes, irregularly
    /// spaced), the encoder picks them, and the device's decoder, with the
    /// same contexts, rebuilds the target; on bytes without that structure
    /// it does not pick them.
    #[test]
    fn word_contexts_are_chosen_for_aligned_words_and_decode() {
        let mut rng = Rng(11);
        let mut old = Vec::new();
        while old.len() < 64 * 1024 {
            let r = rng.bytes(4);
            let word = if r[0].is_multiple_of(3) {
                // BL, imm26 somewhere within 1 MiB.
                0x9400_0000 | (u32::from_le_bytes([r[1], r[2], r[3] & 3, 0]))
            } else {
                u32::from_le_bytes([r[1], r[2], r[3], 0x91 ^ (r[0] & 0x68)])
            };
            old.extend(word.to_le_bytes());
        }
        // Every call's target moved 0x1234 words.
        let new: Vec<u8> = old
            .chunks(4)
            .flat_map(|w| {
                let mut v = u32::from_le_bytes(w.try_into().unwrap());
                if v >> 26 == 0x25 {
                    v = (v & 0xFC00_0000) | (v.wrapping_add(0x1234) & 0x03FF_FFFF);
                }
                v.to_le_bytes()
            })
            .collect();
        let (header, _) = generate(&old, &new, &GenOptions::default(), &mut NoProgress).unwrap();
        let params = Params::from_byte(header.params).unwrap();
        assert_eq!(params.wp, 1, "word contexts not chosen: {params:?}");
        let patch = diff(&old, &new, &GenOptions::default()).unwrap();
        assert_eq!(apply::apply(&patch, &old).unwrap().1, new);

        // Changes of three bytes at any alignment, each byte by its own
        // amount: the `Diff` run says which, the word position does not.
        let old = Rng(12).bytes(20_000);
        let mut new = old.clone();
        let gaps = Rng(13).bytes(2_000);
        let mut i = 0;
        for g in gaps {
            i += 4 + usize::from(g % 29);
            if i + 3 > new.len() {
                break;
            }
            for (k, d) in [0x11, 0x22, 0x33].into_iter().enumerate() {
                new[i + k] = new[i + k].wrapping_add(d);
            }
        }
        let (header, _) = generate(&old, &new, &GenOptions::default(), &mut NoProgress).unwrap();
        assert_eq!(Params::from_byte(header.params).unwrap().wp, 0);
    }

    /// Generation says which of its passes it is on: every pass is
    /// numbered, each before its phases.
    #[test]
    fn passes_are_numbered() {
        #[derive(Default)]
        struct Log(Vec<String>);
        impl Progress for Log {
            fn pass(&mut self, n: usize, of: usize) {
                self.0.push(format!("pass {n}/{of}"));
            }
            fn start(&mut self, phase: &'static str, _total: u64) {
                self.0.push(phase.into());
            }
        }
        let old = Rng(5).bytes(5_000);
        let mut new = old.clone();
        new[100..200].copy_from_slice(&Rng(6).bytes(100));
        let mut log = Log::default();
        generate(&old, &new, &GenOptions::default(), &mut log).unwrap();
        let want = ["pass 1/2", "matching", "pass 2/2", "matching", "coding"];
        assert_eq!(log.0, want);
    }
}

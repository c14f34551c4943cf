//! Plans that can be applied in place: the new image is written over the
//! old one, one erase unit at a time, with the old contents of the unit
//! being written and of the one written just before it kept in a scratch
//! area of two erase units.
//!
//! The units are written in one of two orders ([`Order`]): front to back,
//! or back to front. The body codes the new image's units in that order
//! (the *output*), so that the decoder writes output byte `o` to
//! [`Units::address`]`(o)`; its virtual source is the old image followed
//! by the output produced so far, as in every codec 3 body.
//!
//! While a device writes the unit at address unit `v`, old units already
//! overwritten are gone, except the one written just before `v` and `v`
//! itself (in the scratch area). So an output byte may be coded against
//! virtual source position `p` only if `p ≥ old.len()` (output already
//! written) or old unit `p / E` is still there ([`Units::readable`]):
//!
//! - front to back: `p / E ≥ v − 1`: data may move back by any amount and
//!   forward by up to one unit;
//! - back to front: `p / E ≤ v + 1`: data may move forward by any amount
//!   and back by up to one unit.
//!
//! An image that grew in front (code inserted early, everything after it
//! moved up) is written back to front; one that shrank, front to back.
//! [`legalize`] rewrites the bytes that break the rule anyway: where an
//! earlier step already put the same old bytes into the output, they are
//! copied from there; elsewhere they become literals. [`plan`] tries both
//! orders and keeps the smaller body.

use flashpatch::codec::{Params, CODEC_RC3};
use flashpatch::format::{EntryHeader, InPlaceEntry, VERSION};

use crate::container::{self, Metadata};
use crate::plan::{PlanOptions, Step};
use crate::GenError;

/// The order in which the erase units of the image are rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Unit 0 first.
    FrontToBack,
    /// The last unit first.
    BackToFront,
}

/// The units of a new image of `len` bytes rewritten in erase units of
/// `unit` bytes, in `order`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Units {
    /// Bytes of an erase unit.
    pub unit: usize,
    /// Bytes of the new image.
    pub len: usize,
    /// The order they are written in.
    pub order: Order,
}

impl Units {
    /// Address units the new image spans.
    pub fn count(&self) -> usize {
        self.len.div_ceil(self.unit)
    }

    /// Bytes of the last address unit (1 … `unit`; `unit` for an empty
    /// image).
    fn tail(&self) -> usize {
        self.len - self.count().saturating_sub(1) * self.unit
    }

    /// Where output byte `o` goes in the image.
    pub fn address(&self, o: usize) -> usize {
        match self.order {
            Order::FrontToBack => o,
            Order::BackToFront => {
                let (n, tail) = (self.count(), self.tail());
                if o < tail {
                    (n - 1) * self.unit + o
                } else {
                    let q = o - tail;
                    (n - 2 - q / self.unit) * self.unit + q % self.unit
                }
            }
        }
    }

    /// Whether output byte `o` may be coded against virtual source
    /// position `p` (old image of `old_len` bytes, then the output).
    pub fn readable(&self, p: usize, o: usize, old_len: usize) -> bool {
        if p >= old_len {
            return true;
        }
        let (u, v) = (p / self.unit, self.address(o) / self.unit);
        match self.order {
            Order::FrontToBack => u + 1 >= v,
            Order::BackToFront => u <= v + 1,
        }
    }

    /// The new image in output order.
    pub fn output(&self, new: &[u8]) -> Vec<u8> {
        assert_eq!(new.len(), self.len, "not the image these units are of");
        match self.order {
            Order::FrontToBack => new.to_vec(),
            Order::BackToFront => {
                let mut out = Vec::with_capacity(new.len());
                for u in (0..self.count()).rev() {
                    out.extend_from_slice(
                        &new[u * self.unit..((u + 1) * self.unit).min(new.len())],
                    );
                }
                out
            }
        }
    }
}

/// Shortest piece worth a copy of its own from the output: shorter ones
/// go out as literals (a seek there and back costs about as much).
const MIN_REDIRECT: usize = 8;

/// Rewrites `steps` (a plan of `out`, the new image in output order, against
/// `old`) so that every byte obeys [`Units::readable`].
pub fn legalize(old: &[u8], out: &[u8], steps: &[Step], units: &Units) -> Vec<Step> {
    // Where each old byte went in the output, by a copy: old position →
    // output position + 1 (0: nowhere yet).
    let mut moved = vec![0u32; old.len()];
    let mut legal: Vec<Step> = Vec::with_capacity(steps.len());
    let mut push = |s: Step| match (legal.last_mut(), s) {
        (Some(Step::Literal { len: a }), Step::Literal { len: b }) => *a += b,
        (Some(Step::Copy { from, len }), Step::Copy { from: f, len: l }) if *from + *len == f => {
            *len += l
        }
        (_, s) if step_len(s) > 0 => legal.push(s),
        _ => {}
    };
    let ok = |p: usize, o: usize| units.readable(p, o, old.len());
    let mut at = 0usize;
    for &step in steps {
        let Step::Copy { from, len } = step else {
            push(step);
            at += step_len(step);
            continue;
        };
        let mut i = 0;
        while i < len {
            let good = ok(from + i, at + i);
            let n = (i..len)
                .take_while(|&j| ok(from + j, at + j) == good)
                .count();
            if good {
                push(Step::Copy {
                    from: from + i,
                    len: n,
                });
                for j in i..i + n {
                    if from + j < old.len() && moved[from + j] == 0 {
                        moved[from + j] = (at + j + 1) as u32;
                    }
                }
                i += n;
                continue;
            }
            // From where the output has these old bytes, as long as they
            // continue there.
            let mut j = i;
            while j < i + n {
                let q = moved[from + j];
                let run = match q {
                    0 => 0,
                    _ => (j..i + n)
                        .take_while(|&m| moved[from + m] == q + (m - j) as u32)
                        .count(),
                };
                if run >= MIN_REDIRECT {
                    push(Step::Copy {
                        from: old.len() + q as usize - 1,
                        len: run,
                    });
                    j += run;
                } else {
                    push(Step::Literal { len: 1 });
                    j += 1;
                }
            }
            i += n;
        }
        at += len;
    }
    debug_assert_eq!(at, out.len(), "the plan does not cover the image");
    legal
}

fn step_len(step: Step) -> usize {
    match step {
        Step::Copy { len, .. } | Step::Literal { len } => len,
    }
}

/// Whether every byte of `steps` obeys [`Units::readable`] and reads only
/// output already produced.
pub fn is_legal(old_len: usize, steps: &[Step], units: &Units) -> bool {
    let mut at = 0;
    for &s in steps {
        if let Step::Copy { from, len } = s {
            if from >= old_len + at {
                return false;
            }
            if !(0..len).all(|i| units.readable(from + i, at + i, old_len)) {
                return false;
            }
        }
        at += step_len(s);
    }
    true
}

/// An in-place body: the order its units are written in and the codec 3
/// body of the output against the old image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InPlace {
    /// How the output maps to the image.
    pub units: Units,
    /// Codec parameters of `body`.
    pub params: Params,
    /// The body.
    pub body: Vec<u8>,
}

/// Plans and codes `new` against `old` for an in-place update in erase
/// units of `unit` bytes, in both orders; returns the smaller body (front
/// to back on a tie).
pub fn plan(old: &[u8], new: &[u8], unit: usize, opts: &PlanOptions) -> InPlace {
    assert!(unit > 0, "erase unit of 0 bytes");
    let mut best: Option<InPlace> = None;
    for order in [Order::FrontToBack, Order::BackToFront] {
        let units = Units {
            unit,
            len: new.len(),
            order,
        };
        let out = units.output(new);
        let steps = crate::plan::plan(old, &out, opts, &mut |_| {});
        let steps = legalize(old, &out, &steps, &units);
        assert!(
            is_legal(old.len(), &steps, &units),
            "an in-place plan reads overwritten bytes"
        );
        for params in Params::ALL.into_iter().flat_map(|p| [p, p.words(1)]) {
            let body = crate::encode::encode_body(old, &out, &steps, params);
            if best.as_ref().is_none_or(|b| body.len() < b.body.len()) {
                best = Some(InPlace {
                    units,
                    params,
                    body,
                });
            }
        }
    }
    best.expect("two orders tried")
}

/// `image` padded with 0xFF to a whole number of `unit`-byte erase units
/// (at least one): the target an in-place entry writes.
pub fn padded(image: &[u8], unit: usize) -> Vec<u8> {
    let mut v = image.to_vec();
    v.resize(image.len().div_ceil(unit).max(1) * unit, 0xFF);
    v
}

/// One in-place entry (length field, header, body) that rewrites `old`,
/// as the slot holds it, into `new` [`padded`] to whole units of `unit`
/// bytes; `rollback` marks the reverse entry of an update. `meta`'s
/// in-place record is set here.
pub fn entry(
    old: &[u8],
    new: &[u8],
    unit: u32,
    rollback: bool,
    meta: &Metadata,
    opts: &PlanOptions,
) -> Result<(EntryHeader, Vec<u8>), GenError> {
    let target = padded(new, unit as usize);
    for len in [old.len(), target.len()] {
        if u32::try_from(len).is_err() {
            return Err(GenError::TooLarge(len));
        }
    }
    let ip = plan(old, &target, unit as usize, opts);
    let header = EntryHeader {
        version: VERSION,
        flags: 0,
        codec: CODEC_RC3,
        params: ip.params.to_byte(),
        source: container::source_id(old),
        target: container::target_id(&target),
        body_len: ip.body.len() as u32,
        body_crc32: flashpatch::crc32::crc32(&ip.body),
    };
    let meta = Metadata {
        in_place: Some(InPlaceEntry {
            unit,
            back_to_front: ip.units.order == Order::BackToFront,
            rollback,
        }),
        // The device vouches for its running image when it updates, not
        // when it rolls a trial back (`docs/HASHES.md`).
        source_sha: if rollback {
            None
        } else {
            container::source_sha(old)
        },
        ..meta.clone()
    };
    Ok((header, container::build_entry(&header, &meta, &ip.body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashpatch::mock::Rng;

    /// The output a plan produces, decoded as the codec would (copies of
    /// the virtual source, where a byte differs the wanted one, as a
    /// `Diff` gives it; literals from `out`).
    fn produce(old: &[u8], out: &[u8], steps: &[Step]) -> Vec<u8> {
        let mut got: Vec<u8> = Vec::new();
        for &s in steps {
            match s {
                Step::Literal { len } => {
                    let at = got.len();
                    got.extend_from_slice(&out[at..at + len]);
                }
                Step::Copy { from, len } => {
                    for i in 0..len {
                        let p = from + i;
                        assert!(p < old.len() + got.len(), "reads output not yet made");
                        let at = got.len();
                        got.push(out[at]);
                    }
                }
            }
        }
        got
    }

    #[test]
    fn addresses_cover_the_image_once() {
        for (len, unit) in [(0, 4), (1, 4), (4, 4), (5, 4), (4095, 1024), (4097, 1024)] {
            for order in [Order::FrontToBack, Order::BackToFront] {
                let u = Units { unit, len, order };
                let mut seen = vec![false; len];
                for o in 0..len {
                    let a = u.address(o);
                    assert!(!seen[a], "{u:?}: {a} twice");
                    seen[a] = true;
                }
                let new: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let out = u.output(&new);
                assert!((0..len).all(|o| out[o] == new[u.address(o)]), "{u:?}");
            }
        }
    }

    #[test]
    fn legal_plans_cover_the_image_and_obey_the_rule() {
        let mut rng = Rng(7);
        for round in 0..60 {
            let unit = [256, 512, 1024, 4096][round % 4];
            let n = 2000 + rng.below(20_000);
            let old = rng.bytes(n);
            // Moves both ways: a block inserted in front, blocks swapped,
            // some bytes changed, or a block cut out.
            let mut new = old.clone();
            if round % 2 == 0 {
                let ins = rng.below(3 * unit);
                new.splice(0..0, (0..ins).map(|i| i as u8));
            } else {
                let cut = rng.below(3 * unit).min(new.len() / 2);
                new.drain(..cut);
            }
            let third = new.len() / 3;
            let tail = new.split_off(2 * third);
            new.splice(third..third, tail);
            for _ in 0..20 {
                let i = rng.below(new.len());
                new[i] ^= 0x5A;
            }
            for order in [Order::FrontToBack, Order::BackToFront] {
                let units = Units {
                    unit,
                    len: new.len(),
                    order,
                };
                let out = units.output(&new);
                let steps = crate::plan::plan(&old, &out, &Default::default(), &mut |_| {});
                let legal = legalize(&old, &out, &steps, &units);
                assert!(is_legal(old.len(), &legal, &units), "round {round}");
                assert_eq!(produce(&old, &out, &legal), out, "round {round}");
            }
        }
    }

    #[test]
    fn the_rule_at_unit_boundaries() {
        let u = |order| Units {
            unit: 1024,
            len: 4096,
            order,
        };
        let f = u(Order::FrontToBack);
        // Units 0 and 1 may read everything; unit 2 no longer reads unit 0.
        assert!(f.readable(0, 2047, 4096));
        assert!(!f.readable(1023, 2048, 4096));
        assert!(f.readable(1024, 2048, 4096));
        // The output written so far is always there.
        assert!(f.readable(4096, 3000, 4096));
        let b = u(Order::BackToFront);
        // Output 0 is address unit 3: it reads everything.
        assert!(b.readable(0, 0, 4096));
        // Output 2048 is address unit 1: unit 3 is gone, unit 2 is not.
        assert!(!b.readable(3072, 2048, 4096));
        assert!(b.readable(3071, 2048, 4096));
    }

    /// What in place costs on the corpus: each pair's in-place body
    /// against its A/B body, with 4 KiB erase units
    /// (`cargo test --release -p host-genpat in_place_cost -- --nocapture`).
    #[test]
    fn in_place_cost_on_the_corpus() {
        let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus");
        let Ok(dir) = std::fs::read_dir(corpus) else {
            eprintln!("no corpus at {corpus}");
            return;
        };
        let mut pairs: Vec<_> = dir.flatten().filter(|e| e.path().is_dir()).collect();
        pairs.sort_by_key(|e| e.file_name());
        let (mut logs, mut logs_rev) = (0.0, 0.0);
        for e in &pairs {
            let old = std::fs::read(e.path().join("old")).unwrap();
            let new = std::fs::read(e.path().join("new")).unwrap();
            // The entries genpat writes: `genpat OLD NEW` and `genpat
            // --in-place --erase-unit 4096 OLD NEW` (its update entry and
            // its reverse), without the host-side mtime record.
            let opts = PlanOptions::default();
            let meta = Metadata::default();
            let gen = crate::GenOptions {
                plan: opts.clone(),
                meta: meta.clone(),
            };
            let ab = crate::generate(&old, &new, &gen, &mut crate::NoProgress)
                .unwrap()
                .1
                .len();
            let (_, fwd_entry) = entry(&old, &new, 4096, false, &meta, &opts).unwrap();
            let target = padded(&new, 4096);
            let (_, rev_entry) = entry(&target, &old, 4096, true, &meta, &opts).unwrap();
            let fwd = plan(&old, &target, 4096, &opts);
            let rev = plan(&target, &old, 4096, &opts);
            let (r, rr) = (
                fwd_entry.len() as f64 / ab as f64,
                rev_entry.len() as f64 / ab as f64,
            );
            logs += r.ln();
            logs_rev += rr.ln();
            println!(
                "in place {}: A/B entry {ab} B, in place {} B ({r:.3}, {:?}), reverse {} B ({rr:.3}, {:?})",
                e.file_name().to_string_lossy(),
                fwd_entry.len(),
                fwd.units.order,
                rev_entry.len(),
                rev.units.order,
            );
            assert!(r < 2.0, "in place more than doubles the patch");
        }
        let n = pairs.len() as f64;
        let (geo, geo_rev) = ((logs / n).exp(), (logs_rev / n).exp());
        println!(
            "in place against A/B, geomean over {} pairs: {geo:.3} (reverse patches: {geo_rev:.3})",
            pairs.len(),
        );
        assert!(geo <= 1.10, "in place costs {geo:.3}× A/B");
    }
}

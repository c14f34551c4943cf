//! Helpers shared by the cross-crate tests: the firmware corpus, small
//! generated image pairs, and an apply harness that watches every byte of
//! the flash outside the target slot.

pub mod device;
pub mod fuzz;
pub mod life;
pub mod pinned;

use core::cell::RefCell;
use std::path::PathBuf;

use flashpatch::mock::MockFlash;
use flashpatch::{Applier, ApplierState, ApplyError, Outcome, Partition, Status};

/// `../shared/corpus`, where the real firmware pairs are.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus"))
}

/// The corpus pairs as (name, old, new), sorted by name. Empty, with a
/// message saying so, when the corpus is not there.
pub fn corpus() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let dir = corpus_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        println!(
            "NOTE: no corpus at {} — corpus tests ran on nothing",
            dir.display()
        );
        return Vec::new();
    };
    let mut pairs: Vec<_> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            let old = std::fs::read(p.join("old")).ok()?;
            let new = std::fs::read(p.join("new")).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), old, new))
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

pub use flashpatch::mock::Rng;

/// A firmware-like pair: `new` is `old` with blocks moved, bytes changed as
/// addresses do when code moves, a few insertions and deletions, and some
/// erased padding.
pub fn firmware_pair(seed: u64, size: usize) -> (Vec<u8>, Vec<u8>) {
    let mut r = Rng(seed | 1);
    let mut old = Vec::with_capacity(size);
    while old.len() < size {
        match r.below(4) {
            0 => {
                let n = r.below(64);
                old.extend(std::iter::repeat_n(0xFF, n));
            }
            1 => old.extend(b"firmware string table entry "),
            _ => {
                let n = r.below(96) + 1;
                old.extend(r.bytes(n));
            }
        }
    }
    old.truncate(size);
    let mut new = Vec::with_capacity(size + size / 8);
    let mut at = 0;
    while at < old.len() {
        let n = (r.below(512) + 1).min(old.len() - at);
        match r.below(8) {
            0 => {
                let n = r.below(40);
                new.extend(r.bytes(n));
            }
            1 => {}
            _ => {
                let start = new.len();
                new.extend_from_slice(&old[at..at + n]);
                let shift = r.below(8) as u8;
                let step = r.below(24) + 4;
                for k in (start..new.len()).step_by(step) {
                    new[k] = new[k].wrapping_add(shift);
                }
            }
        }
        at += n;
    }
    (old, new)
}

/// Panics if `after` differs from `before` outside `inside` (the region
/// called `what` in the message).
pub fn assert_only_changed(
    before: &[u8],
    after: &[u8],
    inside: core::ops::Range<usize>,
    what: &str,
) {
    assert!(
        after[..inside.start] == before[..inside.start],
        "flash before {what} changed"
    );
    assert!(
        after[inside.end..] == before[inside.end..],
        "flash after {what} changed"
    );
}

/// Bytes of unwritten flash kept on each side of the slots.
pub const GUARD: usize = 4096;

/// Feeds `patch` to `applier` in pieces of `chunk` bytes, stopping at the
/// first error, and finishes it: the outcome or the first error.
pub fn feed_in_pieces<S, T, const W: usize, const R: usize>(
    applier: &mut Applier<'_, S, T, W, R>,
    patch: &[u8],
    chunk: usize,
) -> Result<Outcome, ApplyError>
where
    S: embedded_storage::nor_flash::ReadNorFlash,
    T: embedded_storage::nor_flash::NorFlash,
{
    for piece in patch.chunks(chunk.max(1)) {
        match applier.feed(piece) {
            Ok(Status::Done(_) | Status::NeedMore) => {}
            Err(e) => return Err(e),
        }
    }
    applier.finish()
}

/// What [`apply_guarded`] found.
pub struct Guarded {
    /// The applier's result.
    pub result: Result<Outcome, ApplyError>,
    /// The target slot's first `new_len` bytes after the run.
    pub target: Vec<u8>,
    /// The flash operations of the run (with the source preloaded, not
    /// written).
    pub stats: flashpatch::mock::Stats,
}

/// Applies `patch` over a flash laid out as guard, source slot, guard,
/// target slot, guard, feeding pieces of `chunk` bytes. Panics if anything
/// outside the target slot changed.
pub fn apply_guarded(
    patch: &[u8],
    old: &[u8],
    slot: usize,
    chunk: usize,
    new_len: usize,
) -> Guarded {
    apply_guarded_with(patch, old, slot, chunk, new_len, None)
}

/// As [`apply_guarded`], with an applier that requires entries signed by
/// `trust`'s key with at least its security counter.
pub fn apply_guarded_with(
    patch: &[u8],
    old: &[u8],
    slot: usize,
    chunk: usize,
    new_len: usize,
    trust: Option<([u8; 32], u32)>,
) -> Guarded {
    const E: usize = 4096;
    let slot = slot.div_ceil(E).max(1) * E;
    let (src_at, tgt_at) = (GUARD, 2 * GUARD + slot);
    let mut flash = MockFlash::<1, 4, E>::new(3 * GUARD + 2 * slot);
    flash.preload(src_at, old);
    let before = flash.as_bytes().to_vec();
    let flash = RefCell::new(flash);
    let mut mem = ApplierState::new();
    let mut applier: Applier<_, _> = Applier::new(
        Partition::new(&flash, src_at as u32, slot as u32).unwrap(),
        Partition::new(&flash, tgt_at as u32, slot as u32).unwrap(),
        &mut mem,
    );
    if let Some((key, min)) = trust {
        applier.require_signature(key, min);
    }
    let result = feed_in_pieces(&mut applier, patch, chunk);
    let flash = flash.into_inner();
    let after = flash.as_bytes();
    assert_only_changed(&before, after, tgt_at..tgt_at + slot, "the target slot");
    let end = (tgt_at + new_len).min(tgt_at + slot);
    Guarded {
        result,
        target: after[tgt_at..end].to_vec(),
        stats: flash.stats,
    }
}

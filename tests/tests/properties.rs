//! Property tests: for random pairs, random chunkings and several flash
//! geometries, the target comes out exact.

use core::cell::RefCell;

use flashpatch::mock::MockFlash;
use flashpatch::{Applier, ApplierState, Found, Outcome, Partition, Status};
use flashpatch_tests::firmware_pair;
use proptest::prelude::*;

/// Applies over a flash of the given geometry, with the given chunk sizes
/// used in turn.
fn apply_geometry<const R: usize, const W: usize, const E: usize>(
    patch: &[u8],
    old: &[u8],
    new_len: usize,
    chunks: &[usize],
) -> Vec<u8> {
    let slot = old.len().max(new_len).div_ceil(E).max(1) * E;
    let mut flash = MockFlash::<R, W, E>::new(2 * slot);
    flash.preload(0, old);
    let flash = RefCell::new(flash);
    let mut mem = ApplierState::new();
    let mut a: Applier<_, _, 64, 64> = Applier::new(
        Partition::new(&flash, 0, slot as u32).unwrap(),
        Partition::new(&flash, slot as u32, slot as u32).unwrap(),
        &mut mem,
    );
    let (mut at, mut i) = (0, 0);
    let mut done = None;
    while at < patch.len() {
        let n = chunks[i % chunks.len()].min(patch.len() - at);
        if let Status::Done(o) = a.feed(&patch[at..at + n]).unwrap() {
            done = Some(o);
        }
        at += n;
        i += 1;
    }
    let flash = flash.into_inner();
    // "Already installed" is right exactly when the source slot already
    // starts with the new image; the outcome says that is where it is.
    let at = match done {
        Some(Outcome::Applied) => slot,
        Some(Outcome::AlreadyInstalled(Found::Source)) => 0,
        Some(Outcome::AlreadyInstalled(Found::Target)) => slot,
        None => panic!("the patch did not finish"),
    };
    flash.as_bytes()[at..at + new_len].to_vec()
}

fn edit(old: &[u8], edits: &[(usize, usize, Vec<u8>)]) -> Vec<u8> {
    let mut new = old.to_vec();
    for (at, del, ins) in edits {
        let at = at % (new.len() + 1);
        let del = (*del).min(new.len() - at);
        new.splice(at..at + del, ins.iter().copied());
    }
    new
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_edits_round_trip(
        old in proptest::collection::vec(any::<u8>(), 0..3000),
        edits in proptest::collection::vec((any::<usize>(), 0usize..64, proptest::collection::vec(any::<u8>(), 0..48)), 0..12),
        chunks in proptest::collection::vec(1usize..300, 1..6),
    ) {
        let new = edit(&old, &edits);
        let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
        prop_assert_eq!(apply_geometry::<1, 4, 4096>(&patch, &old, new.len(), &chunks), new.clone());
        prop_assert_eq!(apply_geometry::<4, 16, 256>(&patch, &old, new.len(), &chunks), new.clone());
        prop_assert_eq!(apply_geometry::<1, 1, 1024>(&patch, &old, new.len(), &chunks), new);
    }

    #[test]
    fn unrelated_pairs_round_trip(
        old in proptest::collection::vec(any::<u8>(), 0..2000),
        new in proptest::collection::vec(any::<u8>(), 0..2000),
        chunk in 1usize..100,
    ) {
        let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
        prop_assert_eq!(apply_geometry::<1, 8, 512>(&patch, &old, new.len(), &[chunk]), new);
    }

    #[test]
    fn firmware_like_pairs_round_trip(seed in any::<u64>(), size in 1usize..20_000, chunk in 1usize..5000) {
        let (old, new) = firmware_pair(seed, size);
        let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
        prop_assert_eq!(apply_geometry::<1, 4, 4096>(&patch, &old, new.len(), &[chunk, 1, 3]), new);
    }
}

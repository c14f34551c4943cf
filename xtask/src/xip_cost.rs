//! `cargo xtask xip-cost`: what executing in place costs in patch size.
//! Each release is built once per slot (linked at slot A's or slot B's
//! address), so an update from slot A writes the build for slot B: a
//! cross-slot patch (`OLD@A -> NEW@B`), where an image that runs from one
//! address everywhere would need a same-slot one (`OLD@A -> NEW@A`). For
//! three pairs of the demo's firmware, built for both slots in
//! `target/xip-cost/`, it prints both, each direction, what the moved
//! addresses are, and how large the cross-slot patch would be if the
//! source's addresses were rebased to the target slot first (a host-side
//! estimate of a codec transform flashpatch does not have). Every patch
//! is checked with `genpat apply` (the device's applier on the host): it
//! must turn its source into its target.

use std::path::{Path, PathBuf};
use std::process::Command;

use flashpatch::slots::Slot;

use crate::demo::{genpat, make_patch, work_dir};
use crate::qemu::{self, Version};

/// Bytes between the two slots' addresses.
const OFFSET: u32 = (qemu::slot_address(Slot::B) - qemu::slot_address(Slot::A)) as u32;

/// One pair of releases: a name, how to build each, what changed.
struct Pair {
    name: &'static str,
    old: Build,
    new: Build,
    what: &'static str,
}

/// A build of the demo application.
#[derive(Clone, Copy)]
struct Build {
    v: Version,
    /// Built with the feature `signed` (Ed25519 check) and a key.
    signed: bool,
}

const fn app(name: &'static str, blob: bool, signed: bool) -> Build {
    Build {
        v: Version {
            name,
            bad: false,
            blob,
            fault: None,
        },
        signed,
    }
}

const PAIRS: [Pair; 3] = [
    Pair {
        name: "demo v1 -> v2",
        old: app("v1", false, false),
        new: app("v2", false, false),
        what: "the demo's update: one more console line",
    },
    Pair {
        name: "v1 -> v1 with signatures",
        old: app("v1", false, false),
        new: app("v1", false, true),
        what: "a feature release: Ed25519 signature checks added (+19 KB of code)",
    },
    Pair {
        name: "v1 -> v2 with 16 KiB data",
        old: app("v1", true, false),
        new: app("v2", true, false),
        what: "16 KiB of version-specific data changed",
    },
];

/// Sizes of one pair's patches, in bytes (files of one entry each).
struct Sizes {
    image: usize,
    same: [usize; 2],
    cross: [usize; 2],
    rebased: usize,
    moved_words: usize,
    differing_bytes: usize,
}

pub fn main() -> Result<(), String> {
    qemu::ensure_tools()?;
    let dir = work_dir("xip-cost")?;
    // A public key to build the signed application with: only patch sizes
    // are measured, nothing is signed, so no one needs its secret key.
    let key = dir.join("measure.pub");
    let line = format!("flashpatch-ed25519-public {}\n", "5a".repeat(32));
    std::fs::write(&key, line).map_err(|e| format!("{}: {e}", key.display()))?;
    let mut rows = Vec::new();
    for p in &PAIRS {
        let old = build(p.old, &key, &dir)?;
        let new = build(p.new, &key, &dir)?;
        let s = measure(&dir, &old, &new)?;
        println!(
            "xip cost: {}: image {} B; same-slot A->A {} B, B->B {} B; cross-slot A->B {} B, B->A {} B ({:.3}x same-slot); rebased source A->B {} B ({:.3}x); old@A vs old@B: {} bytes differ, {} words differ by the slot offset 0x{OFFSET:x} ({})",
            p.name,
            s.image,
            s.same[0],
            s.same[1],
            s.cross[0],
            s.cross[1],
            s.cross[0] as f64 / s.same[0] as f64,
            s.rebased,
            s.rebased as f64 / s.same[0] as f64,
            s.differing_bytes,
            s.moved_words,
            p.what,
        );
        rows.push(s);
    }
    let geo = |f: &dyn Fn(&Sizes) -> f64| {
        (rows.iter().map(|s| f(s).ln()).sum::<f64>() / rows.len() as f64).exp()
    };
    println!(
        "xip cost: geomean over {} pairs: cross-slot (A->B) {:.3}x same-slot (A->A); rebased source {:.3}x",
        rows.len(),
        geo(&|s| s.cross[0] as f64 / s.same[0] as f64),
        geo(&|s| s.rebased as f64 / s.same[0] as f64)
    );
    Ok(())
}

/// `b` built for both slots: `[slot A's image file, slot B's]`.
fn build(b: Build, key: &Path, dir: &Path) -> Result<[PathBuf; 2], String> {
    let mut out = [PathBuf::new(), PathBuf::new()];
    for (o, slot) in out.iter_mut().zip([Slot::A, Slot::B]) {
        let (elf, _) = qemu::build_for(b.v, slot, b.signed.then_some(key), dir)?;
        *o = elf.with_extension("bin");
    }
    Ok(out)
}

fn name(p: &Path) -> Result<&str, String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file name", p.display()))
}

fn measure(dir: &Path, old: &[PathBuf; 2], new: &[PathBuf; 2]) -> Result<Sizes, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let patch = |o: &Path, n: &Path, file: &str| -> Result<usize, String> {
        let bytes = make_patch(dir, name(o)?, name(n)?, file)?;
        applies(&dir.join(file), o, &read(n)?)?;
        Ok(bytes.len())
    };
    let same = [
        patch(&old[0], &new[0], "same-a.fpat")?,
        patch(&old[1], &new[1], "same-b.fpat")?,
    ];
    let cross = [
        patch(&old[0], &new[1], "cross-ab.fpat")?,
        patch(&old[1], &new[0], "cross-ba.fpat")?,
    ];
    // The estimate: slot A's source with every word that holds an address
    // inside slot A moved by the slot offset, as a decoder could rebase
    // what it reads of the source before matching.
    let (a, b) = (read(&old[0])?, read(&old[1])?);
    let rebased = rebase(&a);
    let rebased_path = dir.join("rebased-source.bin");
    std::fs::write(&rebased_path, &rebased).map_err(|e| e.to_string())?;
    let rebased_size = patch(&rebased_path, &new[1], "rebased-ab.fpat")?;
    Ok(Sizes {
        image: read(&new[1])?.len(),
        same,
        cross,
        rebased: rebased_size,
        moved_words: a
            .chunks_exact(4)
            .zip(b.chunks_exact(4))
            .filter(|(x, y)| word(x).wrapping_add(OFFSET) == word(y) && x != y)
            .count(),
        differing_bytes: a.iter().zip(&b).filter(|(x, y)| x != y).count()
            + a.len().abs_diff(b.len()),
    })
}

fn word(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// `image` (built for slot A) with each aligned word that is an address
/// in slot A moved to the same place in slot B.
fn rebase(image: &[u8]) -> Vec<u8> {
    let a = qemu::FLASH_BASE as u32;
    let mut out = image.to_vec();
    for w in out.chunks_exact_mut(4) {
        let v = word(w);
        if (a..a + OFFSET).contains(&v) {
            w.copy_from_slice(&(v + OFFSET).to_le_bytes());
        }
    }
    out
}

/// `genpat apply PATCH OLD OUT` must print OK and OUT be `expected`.
fn applies(patch: &Path, old: &Path, expected: &[u8]) -> Result<(), String> {
    let out = patch.with_extension("out");
    let o = Command::new(genpat()?)
        .arg("apply")
        .args([patch, old, &out])
        .output()
        .map_err(|e| format!("cannot run genpat: {e}"))?;
    let said = String::from_utf8_lossy(&o.stdout);
    let made = std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    if !o.status.success() || said.trim() != "OK" || made != expected {
        return Err(format!(
            "genpat apply {} {}: {said:?}, output {} the target",
            patch.display(),
            old.display(),
            if made == expected { "is" } else { "is not" }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebase_moves_slot_a_addresses_only() {
        let a = qemu::FLASH_BASE as u32;
        let words = [a, a + 0x1234, a + OFFSET, 0x2000_0000, 7, a - 4];
        let image: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let got: Vec<u32> = rebase(&image).chunks_exact(4).map(word).collect();
        assert_eq!(
            got,
            [
                a + OFFSET,
                a + 0x1234 + OFFSET,
                a + OFFSET,
                0x2000_0000,
                7,
                a - 4
            ]
        );
    }
}

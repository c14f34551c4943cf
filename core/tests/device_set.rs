//! The code the devices run, tested with the device's feature set.
//!
//! `cargo test --workspace` builds core once, with the union of every
//! member's features: host-genpat's `fast-crc` and `vouch` and the tests'
//! `sign` are then always on, and the table CRC, the MD5 check of a source
//! nobody vouched for and the install without `sign` are never compiled.
//! `cargo xtask test` therefore also runs
//!
//! ```text
//! cargo test --release -p flashpatch --features mock,proto -- --include-ignored
//! ```
//!
//! which builds core with firmware-demo's features (`proto`) and the mock
//! flash only: nothing in core's own dependency graph pulls host-genpat in.
//! [`built_with_the_device_feature_set`] fails there if a host feature
//! leaks in; under the workspace build it is ignored, since the superset is
//! what that build is for.
//!
//! The patches in `tests/data/` are made by genpat from two pairs of
//! `../shared/corpus` (core cannot depend on host-genpat without taking
//! its features along). Made once and kept, they also show that patches an
//! earlier genpat wrote still apply. To make them again:
//!
//! ```text
//! for p in due-simba-shell k64f-mbed-blinky; do
//!   rm -f core/tests/data/$p.fpat
//!   cargo run --release -p host-genpat --bin genpat -- \
//!     ../shared/corpus/$p/old ../shared/corpus/$p/new core/tests/data/$p.fpat
//! done
//! ```

use core::cell::RefCell;
use std::path::PathBuf;

use flashpatch::crc32::{crc32, Crc32};
use flashpatch::mock::MockFlash;
use flashpatch::proto::device::install;
use flashpatch::proto::{self, Action, HostMsg, Staging, MAX_CHUNK};
use flashpatch::slots::{Config, Layout, Slot, Slots};
use flashpatch::{Applier, ApplierState, Outcome, Partition, Status, Verdict};

type Flash = MockFlash<1, 4, 4096>;

/// The pairs whose patches are in `tests/data/`, with those patches.
const PATCHES: [(&str, &[u8]); 2] = [
    (
        "due-simba-shell",
        include_bytes!("data/due-simba-shell.fpat"),
    ),
    (
        "k64f-mbed-blinky",
        include_bytes!("data/k64f-mbed-blinky.fpat"),
    ),
];

/// The old and new image of corpus pair `name`, or None (with a note) when
/// the corpus is not there.
fn pair(name: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus")).join(name);
    match (
        std::fs::read(dir.join("old")),
        std::fs::read(dir.join("new")),
    ) {
        (Ok(old), Ok(new)) => Some((old, new)),
        _ => {
            println!("NOTE: no corpus pair at {} — skipped", dir.display());
            None
        }
    }
}

/// The bit-at-a-time definition of CRC-32.
fn crc32_by_bits(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
#[cfg_attr(
    any(feature = "fast-crc", feature = "vouch", feature = "sign"),
    ignore = "built with host features: run `cargo test -p flashpatch --features mock,proto`"
)]
fn built_with_the_device_feature_set() {
    let host = [
        ("fast-crc", cfg!(feature = "fast-crc")),
        ("vouch", cfg!(feature = "vouch")),
        ("sign", cfg!(feature = "sign")),
    ];
    let on: Vec<&str> = host.iter().filter(|f| f.1).map(|f| f.0).collect();
    assert!(
        on.is_empty(),
        "host features {on:?} are on: the device's table CRC, unvouched source \
         check and install without sign are not what these tests built"
    );
}

#[test]
fn the_crc_matches_its_definition_on_firmware() {
    // Bytes that every table entry is reached with, then the corpus pair.
    let mut images = vec![(0..=255u8).cycle().take(3001).collect::<Vec<u8>>()];
    if let Some((old, new)) = pair("k64f-mbed-blinky") {
        images.extend([old, new]);
    }
    for image in &images {
        assert_eq!(crc32(image), crc32_by_bits(image));
        // In pieces of every alignment, as the applier and staging feed it.
        let mut c = Crc32::new();
        for (i, piece) in image.chunks(1021).enumerate() {
            let cut = (i % 7).min(piece.len());
            c.update(&piece[..cut]);
            c.update(&piece[cut..]);
        }
        assert_eq!(c.value(), crc32_by_bits(image));
    }
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

/// Applies `patch` over a mock flash holding `old`, fed in `chunk`-byte
/// pieces; the outcome and the target slot's first `len` bytes.
fn apply(patch: &[u8], old: &[u8], len: usize, chunk: usize) -> (Outcome, Vec<u8>) {
    let slot = old.len().max(len).next_multiple_of(4096) as u32;
    let mut f = Flash::new(2 * slot as usize);
    f.preload(0, old);
    let flash = RefCell::new(f);
    let source = Partition::new(&flash, 0, slot).unwrap();
    let target = Partition::new(&flash, slot, slot).unwrap();
    let mut state = ApplierState::new();
    let mut applier: Applier<_, _> = Applier::new(source, target, &mut state);
    let mut status = Status::NeedMore;
    for piece in patch.chunks(chunk) {
        assert_eq!(status, Status::NeedMore, "done before the patch ended");
        status = applier.feed(piece).unwrap();
    }
    let outcome = applier.finish().unwrap();
    assert_eq!(status, Status::Done(outcome));
    let image = flash.borrow().as_bytes()[slot as usize..][..len].to_vec();
    (outcome, image)
}

#[test]
fn corpus_patches_apply_with_the_device_features() {
    for (name, patch) in PATCHES {
        let Some((old, new)) = pair(name) else {
            continue;
        };
        for chunk in [1, 7, 4096, patch.len()] {
            let (outcome, image) = apply(patch, &old, new.len(), chunk);
            assert_eq!(outcome, Outcome::Applied, "{name}, chunk {chunk}");
            assert!(image == new, "{name}: wrong image with chunk {chunk}");
        }
        // Applied over the new image: nothing to do.
        let (outcome, _) = apply(patch, &new, new.len(), 4096);
        assert_eq!(
            outcome,
            Outcome::AlreadyInstalled(flashpatch::Found::Source),
            "{name}"
        );
    }
}

#[test]
fn a_patch_for_another_image_is_refused_before_anything_is_written() {
    let (name, patch) = PATCHES[0];
    let Some((mut old, _)) = pair(name) else {
        return;
    };
    // One byte of the source differs: its CRC-32 (and MD5) do not match.
    old[1000] ^= 0x40;
    let slot = old.len().next_multiple_of(4096) as u32;
    let mut f = Flash::new(2 * slot as usize);
    f.preload(0, &old);
    let flash = RefCell::new(f);
    let mut state = ApplierState::new();
    let mut applier: Applier<_, _> = Applier::new(
        Partition::new(&flash, 0, slot).unwrap(),
        Partition::new(&flash, slot, slot).unwrap(),
        &mut state,
    );
    assert_eq!(
        applier.feed(patch),
        Err(flashpatch::ApplyError::NoSuitablePatch)
    );
    let f = flash.borrow();
    assert_eq!((f.stats.writes, f.stats.erases), (0, 0));
}

const SLOT: u32 = 64 * 1024;
const LAYOUT: Layout = Layout::new(4096, 0, SLOT, SLOT, 2 * SLOT, 2 * 4096);
const STAGE_AT: u32 = 2 * SLOT + 2 * 4096;
const STAGE: u32 = 16 * 1024;

fn slots(flash: &RefCell<Flash>) -> Slots<Partition<'_, Flash>, Partition<'_, Flash>> {
    let [a, b, s] = LAYOUT.partitions(flash).unwrap();
    Slots::new(a, b, s, Config::default()).unwrap()
}

/// Stages `patch` over the protocol's messages and installs it, as the
/// demo firmware does; the verdict, the restart flag and the messages'
/// kinds sent.
fn stage_and_install(flash: &RefCell<Flash>, patch: &[u8]) -> (Verdict, bool) {
    let mut stage = Staging::open(Partition::new(flash, STAGE_AT, STAGE).unwrap()).unwrap();
    let begin = HostMsg::Begin {
        size: patch.len() as u32,
        crc32: crc32(patch),
    };
    let mut act = proto::handle(&mut stage, &begin);
    loop {
        match act {
            Action::Ack { complete: true, .. } => break,
            Action::Ack { offset, .. } => {
                let end = (offset as usize + MAX_CHUNK).min(patch.len());
                let data = &patch[offset as usize..end];
                act = proto::handle(&mut stage, &HostMsg::Chunk { offset, data });
            }
            other => panic!("staging: {other:?}"),
        }
    }
    let mut mem = ApplierState::new();
    let mut s = slots(flash);
    let mut results = 0;
    let r = install(&mut s, &mut mem, &mut stage, &mut [0u8; 64], &mut |m| {
        results += matches!(m, proto::DeviceMsg::Result { .. }) as u32;
    });
    assert_eq!(results, 1, "one Result message");
    (r.verdict, r.restart)
}

#[test]
fn install_without_sign_activates_the_new_image_on_trial() {
    let (name, patch) = PATCHES[1];
    let Some((old, new)) = pair(name) else {
        return;
    };
    let mut f = Flash::new((STAGE_AT + STAGE) as usize);
    f.preload(0, &old);
    let flash = RefCell::new(f);
    slots(&flash).provision(Slot::A, old.len() as u32).unwrap();

    assert_eq!(stage_and_install(&flash, patch), (Verdict::Ok, true));
    let boot = slots(&flash).select().unwrap();
    assert_eq!((boot.slot, boot.trial), (Slot::B, true));
    let at = SLOT as usize;
    assert!(flash.borrow().as_bytes()[at..at + new.len()] == new[..]);
    slots(&flash).confirm().unwrap();

    // The same patch again: the new image already runs.
    assert_eq!(
        stage_and_install(&flash, patch),
        (Verdict::AlreadyInstalled, false)
    );
    // A damaged patch is refused; the running image stays.
    let mut bad = patch.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let (verdict, restart) = stage_and_install(&flash, &bad);
    assert_ne!(verdict, Verdict::Ok);
    assert!(!restart);
    assert_eq!(slots(&flash).select().unwrap().slot, Slot::B);
}

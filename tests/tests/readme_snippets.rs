//! The README's Rust snippets compile and do what they say: each is the
//! body of a function below, verbatim (`every_readme_snippet_is_here`
//! checks it line by line, indentation aside), run over a mock flash with
//! what the README leaves to the reader (`source`, `target`, `link`,
//! `report`, `RELEASE_KEY`, `flash`, `feed`, `mem`) given here.
//!
//! Not doc tests of core: the first snippet needs the feature `sign`
//! and a signed patch, which only this crate (with host-genpat) has.

use core::cell::RefCell;

use flashpatch::mock::MockFlash;
use flashpatch::slots::{Config, Installed, Layout, Slot, Slots, Update};
use flashpatch::{ApplierState, Partition, SlotError};
use host_genpat::keys::SecretKey;
use host_genpat::{container, GenOptions, Metadata};

type Flash = MockFlash<1, 4, 4096>;
type Err = SlotError;

/// The patch of core's doc tests, and the two images it is between.
const HELLO: &[u8] = include_bytes!("../../core/examples/data/hello.fpat");

fn hello(version: u8) -> Vec<u8> {
    format!("Hello from version {version} of the firmware!\n")
        .repeat(16)
        .into_bytes()
}

/// A byte link that delivers a patch in 64-byte pieces.
struct Link<'a>(&'a [u8]);

impl Link<'_> {
    fn chunks(&self) -> core::slice::Chunks<'_, u8> {
        self.0.chunks(64)
    }
}

/// The README's applier snippet, between two partitions of `flash`, with
/// `patch` arriving over the link; what it reported, if anything.
#[rustfmt::skip]
#[allow(non_snake_case, unused_variables)]
fn applier_snippet(flash: &RefCell<Flash>, patch: &[u8], RELEASE_KEY: [u8; 32]) -> Option<String> {
    let source = Partition::new(flash, 0, 4096).unwrap();
    let target = Partition::new(flash, 4096, 4096).unwrap();
    let link = Link(patch);
    let min_counter = 3;
    let mut reported = None;
    let mut report = |text: &str| reported = Some(text.to_string());
    // The snippet, as the README has it:
    use flashpatch::{Applier, ApplierState, Status};

    // The applier's working memory (about 2.9 KiB): keep it in a `static` or a
    // long-lived frame; `Applier::new` resets it in place, it is never copied.
    static mut APPLIER: ApplierState = ApplierState::new();
    let mem = unsafe { &mut *core::ptr::addr_of_mut!(APPLIER) }; // once, at start-up
    // `source` and `target` are your two slots as `ReadNorFlash` / `NorFlash`
    // (for one chip, `flashpatch::Partition` windows a shared `RefCell<Flash>`).
    let mut applier: Applier<_, _> = Applier::new(source, target, mem);
    // With the `sign` feature: accept only patches signed by this key, with a
    // security counter of at least `min_counter` (the key's 32 bytes from KEY.pub;
    // with slots, `min_counter` is `slots.state().floor`).
    applier.require_signature(RELEASE_KEY, min_counter);
    // For a patch file with several components: apply component 1's entries
    // (without this call: component 0's) and skip the others.
    applier.set_component(1);
    for chunk in link.chunks() {
        match applier.feed(chunk) {
            Ok(Status::NeedMore) => {}
            Ok(Status::Done(outcome)) => break, // Applied or AlreadyInstalled
            Err(e) => { report(e.verdict().message()); break } // nothing in `source` was touched
        }
    }
    // End of the snippet.
    reported
}

/// Patch bytes from `offset` on, fed to `up` as a sender would send them.
fn feed(
    up: &mut Update<'_, Partition<'_, Flash>, Partition<'_, Flash>>,
    offset: u32,
) -> Result<(), Err> {
    for chunk in HELLO[offset as usize..].chunks(100) {
        up.feed(chunk)?;
    }
    Ok(())
}

/// The README's slot manager snippet on `flash`, whose slot A holds the
/// old image; what the update installed, and the flash.
#[rustfmt::skip]
#[allow(unused_variables)]
fn slots_snippet(flash: RefCell<Flash>, mem: &mut ApplierState) -> Result<(Installed, Flash), Err> {
    let installed = {
    // The snippet, as the README has it:
    use flashpatch::slots::{Config, Layout, Slots};

    const LAYOUT: Layout = Layout::new(4096, 0x1_0000, 0x4_0000, 0x5_0000, 0x9_0000, 0x2000);
    let [a, b, state] = LAYOUT.partitions(&flash).unwrap();
    let mut slots = Slots::new(a, b, state, Config::default())?;
    // Boot stage: boot.slot holds a verified image; boot.trial says it is on trial.
    let boot = slots.select()?;
    // Application: confirm a trial image once it works...
    slots.confirm()?;
    // ...and update: resume after a reset, or start over.
    // `mem` is the applier's `ApplierState`, as above.
    let installed = match slots.resume(mem)? {
        // Ask the sender for patch[offset..] and feed it to `r.update`.
        Some(mut r) => { feed(&mut r.update, r.offset)?; r.update.finish()? }
        None => { let mut up = slots.begin_update(mem)?; feed(&mut up, 0)?; up.finish()? }
    };
    slots.activate(&installed)?; // one record write; reboot into a trial
    // End of the snippet.
    installed
    };
    Ok((installed, flash.into_inner()))
}

/// HELLO's images as a one-entry patch for component 1 with security
/// counter `counter`, signed by `key` if given.
fn component_1_patch(key: Option<&SecretKey>, counter: u32) -> Vec<u8> {
    let opts = GenOptions {
        meta: Metadata {
            security_counter: Some(counter),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let (_, entry) =
        host_genpat::generate(&hello(1), &hello(2), &opts, &mut host_genpat::NoProgress).unwrap();
    let entry = match key {
        Some(k) => container::sign_entry(&entry, k).unwrap(),
        None => entry,
    };
    container::assemble([entry.as_slice()]).unwrap()
}

#[test]
fn the_applier_snippet_applies_a_signed_patch_and_reports_the_rest() {
    let key = SecretKey::from_seed([7; 32]);
    let other = SecretKey::from_seed([8; 32]);
    let cases: [(Vec<u8>, Option<&str>); 4] = [
        (component_1_patch(Some(&key), 3), None),
        (
            component_1_patch(None, 3),
            Some("Patch data is invalid or corrupt"),
        ),
        (
            component_1_patch(Some(&other), 3),
            Some("Patch data is invalid or corrupt"),
        ),
        (
            component_1_patch(Some(&key), 2),
            Some("An error occurred while patching"),
        ),
    ];
    // One at a time: the snippet's `static` is the one applier state.
    for (i, (patch, expected)) in cases.iter().enumerate() {
        let mut chip = Flash::new(2 * 4096);
        chip.preload(0, &hello(1));
        let flash = RefCell::new(chip);
        let reported = applier_snippet(&flash, patch, key.public());
        assert_eq!(reported.as_deref(), *expected, "case {i}");
        let f = flash.borrow();
        let target = &f.as_bytes()[4096..4096 + hello(2).len()];
        assert_eq!(target == hello(2), expected.is_none(), "case {i}");
        assert!(f.as_bytes()[..hello(1).len()] == hello(1));
    }
}

/// The slot manager over the README's layout.
fn open(flash: &RefCell<Flash>) -> Slots<Partition<'_, Flash>, Partition<'_, Flash>> {
    const LAYOUT: Layout = Layout::new(4096, 0x1_0000, 0x4_0000, 0x5_0000, 0x9_0000, 0x2000);
    let [a, b, s] = LAYOUT.partitions(flash).unwrap();
    Slots::new(a, b, s, Config::default()).unwrap()
}

#[test]
fn the_slots_snippet_installs_into_slot_b_on_trial() {
    let mut chip = Flash::new(0x9_2000);
    chip.preload(0x1_0000, &hello(1));
    let flash = RefCell::new(chip);
    open(&flash)
        .provision(Slot::A, hello(1).len() as u32)
        .unwrap();

    let mut mem = ApplierState::new();
    let (installed, chip) = slots_snippet(flash, &mut mem).unwrap();
    let flash = RefCell::new(chip);
    assert_eq!(installed.slot, Slot::B);
    let boot = open(&flash).select().unwrap();
    assert_eq!((boot.slot, boot.trial), (Slot::B, true));
    let f = flash.borrow();
    assert!(f.as_bytes()[0x5_0000..][..hello(2).len()] == hello(2));
}

/// The lines of `text`, each without its indentation, blank ones left out.
fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_readme_snippet_is_here() {
    let readme = include_str!("../../README.md");
    let here = lines(include_str!("readme_snippets.rs"));
    let mut blocks = 0;
    for block in readme.split("```rust\n").skip(1) {
        let code = block.split("```").next().unwrap();
        let code = lines(code);
        assert!(
            here.windows(code.len()).any(|w| w == code),
            "a README snippet is not in tests/tests/readme_snippets.rs:\n{}",
            code.join("\n")
        );
        blocks += 1;
    }
    assert_eq!(blocks, 2, "README.md's Rust snippets");
}

//! The hash seam (`flashpatch::hashes`): an applier built with other
//! hashes runs every whole-image digest through them, as a chip's hash
//! engine would take them over. Two stand-in engines: one that counts the
//! bytes it is given and then hashes in software, one that returns a wrong
//! SHA-256.

use std::cell::Cell;

use flashpatch::hashes::digest::{
    self, FixedOutput, FixedOutputReset, Output, OutputSizeUser, Reset, Update,
};
use flashpatch::hashes::{Hashes, Software};
use flashpatch::mock::MockFlash;
use flashpatch::{Applier, ApplierState, ApplyError, Outcome, Status};

thread_local! {
    /// Bytes given to the counting MD5 and SHA-256, and how many of each
    /// were finalized.
    static SEEN: Cell<[usize; 4]> = const { Cell::new([0; 4]) };
}

fn note(i: usize, n: usize) {
    SEEN.with(|s| {
        let mut v = s.get();
        v[i] += n;
        s.set(v);
    });
}

/// A hash `D` that counts what it hashes in `SEEN[I]` and its
/// finalizations in `SEEN[I + 1]`.
#[derive(Default)]
struct Counting<D, const I: usize>(D);

impl<D: Update, const I: usize> Update for Counting<D, I> {
    fn update(&mut self, data: &[u8]) {
        note(I, data.len());
        self.0.update(data);
    }
}

impl<D: OutputSizeUser, const I: usize> OutputSizeUser for Counting<D, I> {
    type OutputSize = D::OutputSize;
}

impl<D: FixedOutput, const I: usize> FixedOutput for Counting<D, I> {
    fn finalize_into(self, out: &mut Output<Self>) {
        note(I + 1, 1);
        self.0.finalize_into(out);
    }
}

impl<D: Reset, const I: usize> Reset for Counting<D, I> {
    fn reset(&mut self) {
        self.0.reset();
    }
}

impl<D: FixedOutputReset, const I: usize> FixedOutputReset for Counting<D, I> {
    fn finalize_into_reset(&mut self, out: &mut Output<Self>) {
        note(I + 1, 1);
        self.0.finalize_into_reset(out);
    }
}

enum CountingEngine {}
impl Hashes for CountingEngine {
    type Md5 = Counting<<Software as Hashes>::Md5, 0>;
    type Sha256 = Counting<<Software as Hashes>::Sha256, 2>;
}

/// A SHA-256 "engine" that gets every image wrong.
#[derive(Default)]
struct Broken;
impl Update for Broken {
    fn update(&mut self, _: &[u8]) {}
}
impl OutputSizeUser for Broken {
    type OutputSize = digest::consts::U32;
}
impl FixedOutput for Broken {
    fn finalize_into(self, out: &mut Output<Self>) {
        out.fill(0x5A);
    }
}
impl Reset for Broken {
    fn reset(&mut self) {}
}
impl FixedOutputReset for Broken {
    fn finalize_into_reset(&mut self, out: &mut Output<Self>) {
        out.fill(0x5A);
    }
}

enum BrokenEngine {}
impl Hashes for BrokenEngine {
    type Md5 = <Software as Hashes>::Md5;
    type Sha256 = Broken;
}

type Flash = MockFlash<1, 4, 4096>;

const PATCH: &[u8] = include_bytes!("../examples/data/hello.fpat");

fn flashes() -> (Flash, Flash, usize) {
    let old = b"Hello from version 1 of the firmware!\n".repeat(16);
    let mut source = Flash::new(4096);
    source.preload(0, &old);
    (source, Flash::new(4096), old.len())
}

fn apply<H: Hashes>(source: &mut Flash, target: &mut Flash) -> Result<Outcome, ApplyError> {
    let mut state = ApplierState::new();
    let mut applier: Applier<_, _, 64, 64, H> = Applier::with_hashes(source, target, &mut state);
    for chunk in PATCH.chunks(7) {
        if let Status::Done(o) = applier.feed(chunk)? {
            return Ok(o);
        }
    }
    applier.finish()
}

#[test]
fn every_image_digest_goes_through_the_engine() {
    let (mut source, mut target, old_len) = flashes();
    let new = b"Hello from version 2 of the firmware!\n".repeat(16);
    SEEN.with(|s| s.set([0; 4]));
    assert_eq!(
        apply::<CountingEngine>(&mut source, &mut target),
        Ok(Outcome::Applied)
    );
    assert_eq!(&target.as_bytes()[..new.len()], &new[..]);
    let [md5_bytes, md5s, sha_bytes, shas] = SEEN.with(|s| s.get());
    // The source's MD5 once; the SHA-256 of the target read back at the
    // end, and before that of the target as found (a CRC-32 that matched
    // the new image's would have been checked by it first; an erased
    // target's does not match, so no SHA-256 there).
    assert_eq!((md5_bytes, md5s), (old_len, 1));
    assert_eq!((sha_bytes, shas), (new.len(), 1));
}

#[test]
fn a_wrong_engine_fails_the_read_back() {
    let (mut source, mut target, _) = flashes();
    assert_eq!(
        apply::<BrokenEngine>(&mut source, &mut target),
        Err(ApplyError::TargetMismatch)
    );
    // The same flashes with the software hashes: applied.
    let (mut source, mut target, _) = flashes();
    assert_eq!(
        apply::<Software>(&mut source, &mut target),
        Ok(Outcome::Applied)
    );
}

#[test]
fn the_slot_manager_verifies_images_with_its_hashes() {
    use core::cell::RefCell;
    use flashpatch::slots::{Config, Layout, Slot, Slots};
    use flashpatch::{Partition, SlotError};

    const LAYOUT: Layout = Layout::new(4096, 0, 8192, 8192, 16384, 8192);
    let image = b"an image to boot\n".repeat(100);
    let mut f = MockFlash::<1, 4, 4096>::new(16384 + 8192);
    f.preload(0, &image);
    let flash = RefCell::new(f);
    let parts = || LAYOUT.partitions(&flash).unwrap();
    let [a, b, s] = parts();
    let mut slots = Slots::new(a, b, s, Config::default()).unwrap();
    slots.provision(Slot::A, image.len() as u32).unwrap();
    let img = slots.state().unwrap().images[0];

    SEEN.with(|s| s.set([0; 4]));
    let [a, b, s] = parts();
    let mut counting: Slots<Partition<'_, _>, Partition<'_, _>, 1, CountingEngine> =
        Slots::with_hashes([[a, b]], s, Config::default()).unwrap();
    assert_eq!(counting.select().map(|b| b.slot), Ok(Slot::A));
    assert!(counting.holds(Slot::A, &img).unwrap());
    let [_, _, sha_bytes, shas] = SEEN.with(|s| s.get());
    assert_eq!((sha_bytes, shas), (2 * image.len(), 2));

    let [a, b, s] = parts();
    let mut broken: Slots<Partition<'_, _>, Partition<'_, _>, 1, BrokenEngine> =
        Slots::with_hashes([[a, b]], s, Config::default()).unwrap();
    assert!(!broken.holds(Slot::A, &img).unwrap());
    assert_eq!(broken.select(), Err(SlotError::NoBootableImage));
}

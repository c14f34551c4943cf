//! In-place updates (`flashpatch::slots::InPlace`, `host_genpat::in_place`):
//! the new image is written over the old one in the one image slot, with a
//! scratch area of two erase units, and a failed trial is rolled back with
//! the reverse entry the same file carries.
//!
//! The sweep cuts power at every flash operation of a device's whole life
//! through an update (staging, the rewrite, its commit, the first boot, the
//! confirmation; and, separately, a trial that is never confirmed and is
//! rolled back), before the operation, torn in the middle of a write and
//! half way through an erase; then at up to three seeded points in one run.
//! After every restart the boot stage runs first, and then the slot must
//! hold exactly the old or exactly the new image; the device then lives on
//! to the end, which must be the new image confirmed (or the old one,
//! rolled back).
//!
//! `cargo test --release -p flashpatch-tests --test in_place -- --nocapture`
//! prints one line per pair; `FLASHPATCH_SWEEP=full` cuts the large corpus
//! pair at every operation too (the default, at every 7th).

use std::cell::RefCell;

use embedded_storage::nor_flash::NorFlash;

use flashpatch::mock::{Cut, MockFlash, Rng};
use flashpatch::slots::{Config, InPlace, PatchId, Rewrite};
use flashpatch::{ApplierState, Partition};
use host_genpat::container;
use host_genpat::in_place;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus");

/// The mock chips the sweep runs on, whatever their geometry.
trait Chip: NorFlash + Clone {
    fn blank(size: usize) -> Self;
    fn load(&mut self, at: usize, data: &[u8]);
    fn cut(&mut self, n: u64, kind: Cut, seed: u64);
    fn dead(&self) -> bool;
    fn restart(&mut self);
    fn bytes(&self) -> &[u8];
    fn op_count(&self) -> u64;
    /// Starts recording where each erase is.
    fn log_erases(&mut self);
    /// Where each erase was, and the bytes written so far.
    fn wear(&self) -> (Vec<u32>, u64);
}

impl<const R: usize, const W: usize, const E: usize, const X: u8> Chip for MockFlash<R, W, E, X> {
    fn blank(size: usize) -> Self {
        MockFlash::new(size)
    }
    fn load(&mut self, at: usize, data: &[u8]) {
        self.preload(at, data)
    }
    fn cut(&mut self, n: u64, kind: Cut, seed: u64) {
        self.cut_at(n, kind, seed)
    }
    fn dead(&self) -> bool {
        self.is_dead()
    }
    fn restart(&mut self) {
        self.reboot()
    }
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
    fn op_count(&self) -> u64 {
        self.ops
    }
    fn log_erases(&mut self) {
        self.erase_log = Some(Vec::new());
    }
    fn wear(&self) -> (Vec<u32>, u64) {
        (
            self.erase_log.clone().unwrap_or_default(),
            self.stats.bytes_written,
        )
    }
}

/// Where things are on the chip.
#[derive(Clone, Copy)]
struct Layout {
    unit: u32,
    slot: u32,
    scratch: u32,
    state: u32,
    patch: u32,
    end: u32,
}

impl Layout {
    fn new(unit: u32, image: usize, patch: usize) -> Layout {
        let up = |n: usize| (n as u32).div_ceil(unit) * unit;
        let slot = up(image);
        let scratch = slot;
        let state = scratch + 2 * unit;
        let patch_at = state + 2 * up(8192);
        Layout {
            unit,
            slot,
            scratch,
            state,
            patch: patch_at,
            end: patch_at + up(patch),
        }
    }
}

/// An update: the file, the images, and the scenario's end.
struct Case<'a> {
    name: &'a str,
    unit: u32,
    old: &'a [u8],
    new: Vec<u8>,
    file: Vec<u8>,
}

impl Case<'_> {
    fn id(&self) -> PatchId {
        PatchId {
            size: self.file.len() as u32,
            crc32: flashpatch::crc32::crc32(&self.file),
        }
    }
}

/// The update file for `old` → `new`: the in-place entry and its reverse.
fn update_file(old: &[u8], new: &[u8], unit: u32) -> (Vec<u8>, Vec<u8>) {
    let opts = Default::default();
    let meta = Default::default();
    let (_, fwd) = in_place::entry(old, new, unit, false, &meta, &opts).unwrap();
    let target = in_place::padded(new, unit as usize);
    let (_, rev) = in_place::entry(&target, old, unit, true, &meta, &opts).unwrap();
    (container::assemble([&fwd[..], &rev[..]]).unwrap(), target)
}

const CONFIG: Config = Config {
    max_boot_attempts: 2,
    checkpoint_units: 1,
};

/// Runs `f` on the device as it is on `chip` (opened afresh: a restart).
fn with_device<C: Chip, R>(
    chip: &RefCell<C>,
    l: Layout,
    f: impl FnOnce(
        &mut InPlace<'_, Partition<'_, C>, Partition<'_, C>, Partition<'_, C>>,
        &mut Partition<'_, C>,
    ) -> R,
) -> Option<R> {
    let slot = RefCell::new(Partition::new(chip, 0, l.slot).unwrap());
    let scratch = RefCell::new(Partition::new(chip, l.scratch, 2 * l.unit).unwrap());
    let state = Partition::new(chip, l.state, l.patch - l.state).unwrap();
    let mut patch = Partition::new(chip, l.patch, l.end - l.patch).unwrap();
    let mut dev = InPlace::new(&slot, &scratch, state, l.unit, CONFIG).ok()?;
    Some(f(&mut dev, &mut patch))
}

/// What the device's life ended with.
#[derive(Debug, PartialEq, Eq)]
enum End {
    NewConfirmed,
    OldRolledBack,
}

/// One life of the device from what `chip` holds: boot, stage and update
/// (if the old image runs), confirm (if `confirm`) or leave the trial to
/// run out, until the end. Before each restart after a cut the next of
/// `cuts` is armed. Returns the end and the restarts.
fn live<C: Chip>(
    chip: &RefCell<C>,
    l: Layout,
    case: &Case,
    confirm: bool,
    cuts: &mut Vec<(u64, Cut, u64)>,
) -> End {
    let id = case.id();
    let mut mem = ApplierState::new();
    let arm = |cuts: &mut Vec<(u64, Cut, u64)>| {
        if let Some((n, kind, seed)) = cuts.pop() {
            chip.borrow_mut().cut(n, kind, seed);
        }
    };
    arm(cuts);
    let mut updated = false;
    for _ in 0..200 {
        let dead = |chip: &RefCell<C>| chip.borrow().dead();
        let boot = with_device(chip, l, |d, p| {
            d.boot(p, id, &mut mem).map(|b| (b, d.state().unwrap()))
        });
        if dead(chip) {
            chip.borrow_mut().restart();
            arm(cuts);
            continue;
        }
        let (boot, rec) = boot
            .expect("the device opens")
            .expect("the boot stage boots");
        // Exactly the old image or exactly the new one, never a mix.
        let bytes = chip.borrow().bytes()[..l.slot as usize].to_vec();
        let is_old = bytes[..case.old.len()] == *case.old;
        let is_new = bytes[..case.new.len()] == *case.new;
        assert!(
            is_old || is_new,
            "{}: the slot holds neither image",
            case.name
        );
        let holds_old = rec.images[0].size as usize == case.old.len() && is_old;
        if holds_old && rec.rolled_back {
            assert!(!boot.trial);
            return End::OldRolledBack;
        }
        if holds_old {
            assert!(!updated || !confirm, "{}: the update was lost", case.name);
            // The application stages the patch and updates.
            let staged = stage(chip, l, &case.file);
            if dead(chip) || !staged {
                chip.borrow_mut().restart();
                arm(cuts);
                continue;
            }
            let r = with_device(chip, l, |d, p| d.update(p, id, &mut mem));
            if dead(chip) {
                chip.borrow_mut().restart();
                arm(cuts);
                continue;
            }
            let r = r
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: update: {e}", case.name));
            assert_eq!(r, Rewrite::Applied { trial: true });
            updated = true;
            continue;
        }
        assert!(is_new && rec.images[0].size as usize == case.new.len());
        if !boot.trial {
            return End::NewConfirmed;
        }
        if confirm {
            with_device(chip, l, |d, _| d.confirm());
            if dead(chip) {
                chip.borrow_mut().restart();
                arm(cuts);
            }
        }
        // A bad image: it just restarts, and its boots run out.
    }
    panic!("{}: the device's life does not end", case.name);
}

/// Writes the update file into the patch area; `false` if a flash
/// operation failed.
fn stage<C: Chip>(chip: &RefCell<C>, l: Layout, file: &[u8]) -> bool {
    let mut c = chip.borrow_mut();
    if c.erase(l.patch, l.end).is_err() {
        return false;
    }
    let mut padded = file.to_vec();
    padded.resize(file.len().div_ceil(C::WRITE_SIZE) * C::WRITE_SIZE, 0xFF);
    for (i, w) in padded.chunks(256).enumerate() {
        if c.write(l.patch + i as u32 * 256, w).is_err() {
            return false;
        }
    }
    true
}

/// A chip with `old` in the slot, provisioned.
fn fresh<C: Chip>(l: Layout, old: &[u8]) -> C {
    let mut chip = C::blank(l.end as usize);
    chip.load(0, old);
    let cell = RefCell::new(chip);
    with_device(&cell, l, |d, _| d.provision(old.len() as u32))
        .unwrap()
        .unwrap();
    cell.into_inner()
}

/// Runs the sweep of one case: every operation of both lives cut in each
/// way (every `stride`-th), then `multi` seeded runs of up to three cuts.
/// Returns (runs, failures) after printing the line.
fn sweep<C: Chip>(case: &Case, stride: u64, multi: usize) -> (usize, usize) {
    let l = Layout::new(
        case.unit,
        case.old.len().max(case.new.len()),
        case.file.len(),
    );
    let base: C = fresh(l, case.old);
    let mut runs = 0;
    let mut failures = 0;
    let mut ops = [0u64; 2];
    let mut wear = String::new();
    for (k, confirm) in [true, false].into_iter().enumerate() {
        let want = if confirm {
            End::NewConfirmed
        } else {
            End::OldRolledBack
        };
        let chip = RefCell::new(base.clone());
        let before = chip.borrow().op_count();
        let written = chip.borrow().wear().1;
        chip.borrow_mut().log_erases();
        assert_eq!(live(&chip, l, case, confirm, &mut Vec::new()), want);
        ops[k] = chip.borrow().op_count() - before;
        if confirm {
            let (erases, bytes) = chip.borrow().wear();
            let e = C::ERASE_SIZE as u32;
            let count =
                |from: u32, to: u32| erases.iter().filter(|&&a| a >= from && a < to).count();
            wear = format!(
                "wear of the update: slot {} erases of {}-byte units for {} units of image, \
                 scratch {}, state {}, staging {}; {} bytes written ({:.2}× the image)",
                count(0, l.slot),
                e,
                case.new.len().div_ceil(e as usize),
                count(l.scratch, l.state),
                count(l.state, l.patch),
                count(l.patch, l.end),
                bytes - written,
                (bytes - written) as f64 / case.new.len() as f64,
            );
        }
        for at in (0..ops[k]).step_by(stride as usize) {
            for kind in Cut::ALL {
                let chip = RefCell::new(base.clone());
                let mut cuts = vec![(at, kind, at)];
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    live(&chip, l, case, confirm, &mut cuts)
                }));
                runs += 1;
                if r.as_ref().ok() != Some(&want) {
                    failures += 1;
                    eprintln!(
                        "{}: cut {kind:?} at {at} (confirm {confirm}): {:?}",
                        case.name,
                        r.ok()
                    );
                }
            }
        }
    }
    let mut rng = Rng(case.old.len() as u64 ^ 0x1F1A);
    for i in 0..multi {
        let confirm = i % 2 == 0;
        let want = if confirm {
            End::NewConfirmed
        } else {
            End::OldRolledBack
        };
        let total = ops[i % 2];
        let n = 1 + rng.below(3);
        let mut cuts: Vec<(u64, Cut, u64)> = (0..n)
            .map(|_| {
                let at = rng.below(total as usize / n + 1) as u64;
                (at, Cut::ALL[rng.below(3)], rng.next_u64())
            })
            .collect();
        let chip = RefCell::new(base.clone());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            live(&chip, l, case, confirm, &mut cuts)
        }));
        runs += 1;
        if r.as_ref().ok() != Some(&want) {
            failures += 1;
            eprintln!("{}: multi-cut run {i}: {:?}", case.name, r.ok());
        }
    }
    println!(
        "in-place power-cut sweep {} ({} → {} bytes, {}-byte units, patch {} bytes): \
         {} + {} flash operations (update confirmed; trial rolled back), {} cut 3 ways, \
         {multi} runs of up to 3 cuts; {wear}; {runs} runs, {failures} failures",
        case.name,
        case.old.len(),
        case.new.len(),
        case.unit,
        case.file.len(),
        ops[0],
        ops[1],
        match stride {
            1 => "every one".to_string(),
            s => format!("one in {s}"),
        },
    );
    (runs, failures)
}

fn quiet<R>(f: impl FnOnce() -> R) -> R {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = f();
    std::panic::set_hook(hook);
    r
}

/// A generated pair: code inserted in front (written back to front) or
/// cut out (front to back), changed words throughout.
fn generated(seed: u64, grow: bool) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(seed);
    let old = rng.bytes(9_000);
    let mut new = old.clone();
    if grow {
        let ins = rng.bytes(2_500);
        new.splice(300..300, ins);
    } else {
        new.drain(200..2_700);
    }
    for _ in 0..40 {
        let i = rng.below(new.len() - 4);
        new[i] = new[i].wrapping_add(8);
    }
    (old, new)
}

#[test]
fn in_place_power_cut_sweep() {
    let full = std::env::var("FLASHPATCH_SWEEP").as_deref() == Ok("full");
    let mut total = (0, 0);
    let mut add = |r: (usize, usize)| {
        total.0 += r.0;
        total.1 += r.1;
    };
    for (seed, grow) in [(1, true), (2, false)] {
        let (old, new) = generated(seed, grow);
        let (file, target) = update_file(&old, &new, 1024);
        let case = Case {
            name: if grow {
                "generated, grown in front"
            } else {
                "generated, cut in front"
            },
            unit: 1024,
            old: &old,
            new: target,
            file,
        };
        add(quiet(|| sweep::<MockFlash<1, 4, 1024>>(&case, 1, 2000)));
    }
    for (pair, stride) in [
        ("k64f-mbed-blinky", 1),
        ("due-simba-shell", if full { 1 } else { 7 }),
    ] {
        let dir = std::path::Path::new(CORPUS).join(pair);
        let (Ok(old), Ok(new)) = (
            std::fs::read(dir.join("old")),
            std::fs::read(dir.join("new")),
        ) else {
            eprintln!("no corpus pair {pair}");
            continue;
        };
        let (file, target) = update_file(&old, &new, 4096);
        let case = Case {
            name: pair,
            unit: 4096,
            old: &old,
            new: target,
            file,
        };
        add(quiet(|| {
            sweep::<MockFlash<1, 4, 4096>>(&case, stride, 3000)
        }));
    }
    println!(
        "in-place power-cut sweep, all pairs: {} runs, {} failures",
        total.0, total.1
    );
    assert_eq!(total.1, 0, "runs that did not end well");
}

/// The generated pair on chips of other geometries (read, write and erase
/// sizes; erased to 0xFF or 0x00), the unit being the erase unit (at
/// least 256 bytes): every 3rd operation cut each way, 300 multi-cut runs.
#[test]
fn in_place_geometries() {
    fn one<const R: usize, const W: usize, const E: usize, const X: u8>() -> (usize, usize) {
        let (old, new) = generated(4, true);
        let unit = E.max(256) as u32;
        let (file, target) = update_file(&old, &new, unit);
        let name = format!("generated, read {R}, write {W}, erase {E}, erased {X:#04x}");
        let case = Case {
            name: &name,
            unit,
            old: &old,
            new: target,
            file,
        };
        quiet(|| sweep::<MockFlash<R, W, E, X>>(&case, 3, 300))
    }
    let results = [
        one::<1, 1, 256, 0xFF>(),
        one::<1, 2, 512, 0x00>(),
        one::<4, 4, 1024, 0xFF>(),
        one::<4, 8, 2048, 0x00>(),
        one::<32, 16, 4096, 0xFF>(),
        one::<32, 32, 8192, 0x00>(),
        one::<64, 64, 16384, 0xFF>(),
    ];
    let failures: usize = results.iter().map(|r| r.1).sum();
    assert_eq!(failures, 0, "runs that did not end well");
}

/// An update starts from the running image, which the boot record names:
/// the update entry that names it as its source (as genpat writes it) is
/// selected without hashing the slot, one without the name by hashing it,
/// as before; both end in the new image. Counted in bytes read: one CRC-32
/// and one MD5 pass over the old image are the difference. (The sweeps
/// above run with the name in the file.)
#[test]
fn the_boot_record_vouches_for_the_image_an_update_starts_from() {
    let (old, new) = generated(5, true);
    let (named, target) = update_file(&old, &new, 1024);
    let entries: Vec<Vec<u8>> = container::parse(&named)
        .unwrap()
        .into_iter()
        .map(|e| {
            // The update names its source; the reverse entry does not.
            assert_eq!(
                e.meta.source_sha.is_some(),
                e.meta.in_place.is_some_and(|p| !p.rollback)
            );
            let meta = host_genpat::Metadata {
                source_sha: None,
                ..e.meta.clone()
            };
            container::build_entry(&e.header, &meta, e.body())
        })
        .collect();
    let unnamed = container::assemble(entries.iter().map(Vec::as_slice)).unwrap();
    let read = |file: &[u8]| {
        let l = Layout::new(1024, 16 * 1024, file.len());
        let chip = RefCell::new(fresh::<MockFlash<1, 4, 1024>>(l, &old));
        assert!(stage(&chip, l, file));
        let id = PatchId {
            size: file.len() as u32,
            crc32: flashpatch::crc32::crc32(file),
        };
        let before = chip.borrow().stats.bytes_read;
        let mut mem = ApplierState::new();
        let r = with_device(&chip, l, |d, p| d.update(p, id, &mut mem)).unwrap();
        assert_eq!(r, Ok(Rewrite::Applied { trial: true }));
        assert_eq!(&chip.borrow().bytes()[..target.len()], &target[..]);
        let read = chip.borrow().stats.bytes_read - before;
        read
    };
    let (with, without) = (read(&named), read(&unnamed));
    println!("bytes read by an in-place update: {with} with the source named, {without} without (old {}, new {}, file {})", old.len(), target.len(), named.len());
    // Less the named file's 18 more bytes, read where the staged patch is
    // checked and where it is fed (in pieces of up to 64 bytes).
    assert!(
        without - with >= 2 * old.len() as u64 - 64,
        "{without} - {with} < 2 × {} - 64",
        old.len()
    );
}

/// A rewrite reads the source through the views; an entry that is not an
/// in-place one is not applied in place, and an in-place one not by the
/// A/B applier.
#[test]
fn modes_do_not_mix() {
    let (old, new) = generated(3, true);
    let (file, target) = update_file(&old, &new, 1024);
    // The A/B applier finds nothing for it.
    let mut src = MockFlash::<1, 4, 1024>::new(16 * 1024);
    src.preload(0, &old);
    let mut dst = MockFlash::<1, 4, 1024>::new(16 * 1024);
    let mut st = ApplierState::new();
    let mut a: flashpatch::Applier<_, _> = flashpatch::Applier::new(&mut src, &mut dst, &mut st);
    let r = a.feed(&file).and_then(|_| a.finish());
    assert_eq!(r, Err(flashpatch::ApplyError::NoSuitablePatch));
    // The in-place device finds nothing in an A/B patch.
    let ab = host_genpat::diff(&old, &target, &Default::default()).unwrap();
    let case = Case {
        name: "A/B",
        unit: 1024,
        old: &old,
        new: target,
        file: ab,
    };
    let l = Layout::new(1024, 16 * 1024, case.file.len());
    let chip = RefCell::new(fresh::<MockFlash<1, 4, 1024>>(l, &old));
    assert!(stage(&chip, l, &case.file));
    let mut mem = ApplierState::new();
    let r = with_device(&chip, l, |d, p| d.update(p, case.id(), &mut mem)).unwrap();
    assert_eq!(
        r,
        Err(flashpatch::SlotError::Apply(
            flashpatch::ApplyError::NoSuitablePatch
        ))
    );
    assert_eq!(
        &chip.borrow().bytes()[..old.len()],
        &old[..],
        "nothing written"
    );
}

/// With a key, the device rewrites its slot only for entries signed with
/// it, and rolls back only with a signed reverse entry; an unsigned file
/// or one signed with another key leaves the old image as it was.
#[test]
fn signed_in_place_updates() {
    use host_genpat::keys::SecretKey;
    let (old, new) = generated(5, true);
    let (file, target) = update_file(&old, &new, 1024);
    let key = SecretKey::from_seed([7; 32]);
    let sign = |file: &[u8], key: &SecretKey| {
        let entries = container::parse(file).unwrap();
        let signed: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| container::sign_entry(&e.bytes, key).unwrap())
            .collect();
        container::assemble(signed.iter().map(Vec::as_slice)).unwrap()
    };
    let l = Layout::new(1024, target.len(), file.len() + 1024);
    let public = key.public();
    // A device with `old`, `file` staged and updated with the key.
    let update = |file: &[u8]| {
        let chip = RefCell::new(fresh::<MockFlash<1, 4, 1024>>(l, &old));
        assert!(stage(&chip, l, file));
        let id = PatchId {
            size: file.len() as u32,
            crc32: flashpatch::crc32::crc32(file),
        };
        let mut mem = ApplierState::new();
        let r = with_device(&chip, l, |d, p| {
            d.require_signature(public);
            d.update(p, id, &mut mem)
        })
        .unwrap();
        (chip, id, r)
    };
    for (what, bytes) in [
        ("unsigned", file.clone()),
        (
            "signed with another key",
            sign(&file, &SecretKey::from_seed([8; 32])),
        ),
    ] {
        let (chip, _, r) = update(&bytes);
        assert!(
            matches!(r, Err(flashpatch::SlotError::Apply(_))),
            "{what}: {r:?}"
        );
        assert_eq!(&chip.borrow().as_bytes()[..old.len()], &old[..], "{what}");
    }
    // Signed: applied, and a trial that is never confirmed is rolled back.
    let (chip, id, r) = update(&sign(&file, &key));
    assert_eq!(r, Ok(Rewrite::Applied { trial: true }));
    assert_eq!(&chip.borrow().as_bytes()[..target.len()], &target[..]);
    let mut mem = ApplierState::new();
    for _ in 0..3 {
        let b = with_device(&chip, l, |d, p| {
            d.require_signature(public);
            d.boot(p, id, &mut mem)
        });
        assert!(matches!(b, Some(Ok(_))), "{b:?}");
    }
    let rec = with_device(&chip, l, |d, _| d.state().unwrap()).unwrap();
    assert!(rec.rolled_back);
    assert_eq!(&chip.borrow().as_bytes()[..old.len()], &old[..]);
}

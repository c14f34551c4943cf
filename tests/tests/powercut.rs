//! The power-cut sweep. For real corpus pairs and generated ones: count
//! the flash operations of a whole update (apply with checkpoints, verify,
//! activate, first boot, confirm; and separately a trial that is never
//! confirmed and rolls back), then cut power at every one of them — before
//! it, and in the middle of it (a torn write or a torn erase, as the
//! operation is) — reboot, and live on: every boot selection must pick a
//! slot holding exactly the old or exactly the new image, and the update
//! must come to its end (new image active and confirmed; in the rollback
//! run, the old image active). Then seeded random runs with up to three
//! cuts each.
//!
//! The geometry matrix runs the same sweep over flash geometries real
//! chips have: write sizes 1 to 64 bytes, read sizes 1 to 64, erase units
//! of 256 bytes to 128 KiB, erased to 0xFF or to 0x00, with a small
//! generated pair each.
//!
//! Fast by default (k64f-mbed-blinky, due-simba-shell, generated pairs,
//! 10,000 random runs, thirteen geometries that between them take every value
//! of every dimension). `FLASHPATCH_SWEEP=full` (CI) adds
//! esp32-hello-world, ten times the random runs, and the whole geometry
//! matrix with larger pairs and rolled-back trials. The counts are written
//! to stderr past the test harness's capture, so they show in every test
//! run.

use std::io::Write;

use flashpatch::mock::{Cut, Rng};
use flashpatch_tests::device::{cut_points, DevSlots, Device};
use flashpatch_tests::life::{self, Lived, Scenario};
use flashpatch_tests::{corpus, firmware_pair};

/// Boots a trial gets: more than the cuts a random run makes, so that cuts
/// alone never roll an update back.
const ATTEMPTS: u8 = 4;

fn full() -> bool {
    std::env::var("FLASHPATCH_SWEEP").is_ok_and(|v| v == "full")
}

/// Writes past libtest's output capture.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[derive(Default)]
struct Counts {
    ops: usize,
    writes: usize,
    erases: usize,
    runs: usize,
    /// Runs whose update went on from a checkpoint.
    resumed: usize,
    /// Patch bytes sent beyond one copy of the patch, over all runs.
    resent: u64,
    failures: Vec<String>,
}

fn device<const E: usize, const R: usize, const W: usize, const X: u8>(
    old: &[u8],
    new: &[u8],
    state_units: usize,
) -> Device<E, R, W, X> {
    let slot = old.len().max(new.len()) + E;
    let mut dev = Device::<E, R, W, X>::provisioned(old, slot, state_units);
    dev.config.max_boot_attempts = ATTEMPTS;
    dev
}

/// Which slot manager a sweep runs: the blocking one, or the async one
/// over drivers that wait at every flash operation (the same code,
/// compiled twice).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Blocking,
    Async,
}

/// Lives through `sc` on `dev` with the slot manager `path` says.
fn live<const E: usize, const R: usize, const W: usize, const X: u8>(
    path: Path,
    dev: &Device<E, R, W, X>,
    sc: &Scenario<'_>,
    after_cut: impl FnMut(&mut flashpatch_tests::device::DevFlash<E, R, W, X>),
) -> Result<Lived, String> {
    match path {
        Path::Blocking => life::live(dev, sc, after_cut),
        Path::Async => pollster::block_on(life::asynch::live(dev, sc, after_cut)),
    }
}

/// Every operation of the update × the cuts that apply to it.
fn sweep<const E: usize, const R: usize, const W: usize, const X: u8>(
    sc: &Scenario<'_>,
    state_units: usize,
) -> Counts {
    sweep_on::<E, R, W, X>(Path::Blocking, sc, state_units)
}

/// [`sweep`] with the slot manager `path` says.
fn sweep_on<const E: usize, const R: usize, const W: usize, const X: u8>(
    path: Path,
    sc: &Scenario<'_>,
    state_units: usize,
) -> Counts {
    let base = device::<E, R, W, X>(sc.old, sc.new, state_units);
    let dev = base.snapshot();
    dev.flash.borrow_mut().op_trace = Some(Vec::new());
    let clean = live(path, &dev, sc, |_| {});
    let trace = dev.flash.borrow_mut().op_trace.take().unwrap_or_default();
    let mut c = Counts {
        ops: trace.len(),
        writes: trace.iter().filter(|&&w| w).count(),
        erases: trace.iter().filter(|&&w| !w).count(),
        ..Counts::default()
    };
    if let Err(e) = clean {
        c.failures.push(format!("no cut: {e}"));
        return c;
    }
    for (i, kind) in cut_points(&trace) {
        let dev = base.cut_copy(i, kind);
        c.runs += 1;
        match live(path, &dev, sc, |_| {}) {
            Ok(l) if l.cuts == 1 => {
                c.resumed += (l.resumes > 0) as usize;
                c.resent += l.sent.saturating_sub(sc.patch.len() as u64);
            }
            Ok(l) => c.failures.push(format!("op {i} {kind:?}: {} cuts", l.cuts)),
            Err(e) => c.failures.push(format!("op {i} {kind:?}: {e}")),
        }
    }
    c
}

fn sweep_one<const E: usize>(
    name: &str,
    old: &[u8],
    new: &[u8],
    rollback: bool,
    state_units: usize,
) -> usize {
    sweep_one_on::<E>(Path::Blocking, name, old, new, rollback, state_units)
}

fn sweep_one_on<const E: usize>(
    path: Path,
    name: &str,
    old: &[u8],
    new: &[u8],
    rollback: bool,
    state_units: usize,
) -> usize {
    let patch = host_genpat::diff(old, new, &Default::default()).unwrap();
    let sc = Scenario {
        old,
        new,
        patch: &patch,
        rollback,
    };
    let c = sweep_on::<E, 1, 4, 0xFF>(path, &sc, state_units);
    let on = match path {
        Path::Blocking => "",
        Path::Async => ", async slot manager",
    };
    report(&format!(
        "power-cut sweep {name} ({}{on}): {} ops ({} writes, {} erases) x cuts = {} runs \
         ({} before + {} mid-write + {} mid-erase), {} failures; {} runs resumed from a \
         checkpoint, {:.1} patch bytes re-sent per run",
        if rollback {
            "trial rolled back"
        } else {
            "update confirmed"
        },
        c.ops,
        c.writes,
        c.erases,
        c.runs,
        c.ops,
        c.writes,
        c.erases,
        c.failures.len(),
        c.resumed,
        c.resent as f64 / c.runs.max(1) as f64
    ));
    for f in c.failures.iter().take(5) {
        report(&format!("  FAILED {f}"));
    }
    c.failures.len()
}

fn sweep_both<const E: usize>(name: &str, old: &[u8], new: &[u8], state_units: usize) -> usize {
    sweep_one::<E>(name, old, new, false, state_units)
        + sweep_one::<E>(name, old, new, true, state_units)
}

fn real_pair(name: &str, rollback: bool) {
    real_pair_on(Path::Blocking, name, rollback);
}

fn real_pair_on(path: Path, name: &str, rollback: bool) {
    let pairs = corpus();
    let Some((_, old, new)) = pairs.iter().find(|(n, _, _)| n == name) else {
        report(&format!("power-cut sweep {name}: no corpus, skipped"));
        return;
    };
    assert_eq!(sweep_one_on::<4096>(path, name, old, new, rollback, 2), 0);
}

/// The same sweeps over the async slot manager, every flash operation
/// suspended once: a real pair both ways, and generated pairs over 4 KiB
/// and 1 KiB erase units.
#[test]
fn sweep_k64f_mbed_blinky_on_the_async_path() {
    real_pair_on(Path::Async, "k64f-mbed-blinky", false);
}

#[test]
fn sweep_k64f_mbed_blinky_rollback_on_the_async_path() {
    real_pair_on(Path::Async, "k64f-mbed-blinky", true);
}

#[test]
fn sweep_due_simba_shell_on_the_async_path_in_full_mode() {
    if full() {
        real_pair_on(Path::Async, "due-simba-shell", false);
    }
}

/// The async slot manager is the blocking one's code: on the same update
/// and cuts it does the same flash operations and ends the same way.
#[test]
fn the_async_path_does_the_same_flash_work_under_every_cut() {
    let (old, new) = firmware_pair(12, 6000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let sc = Scenario {
        old: &old,
        new: &new,
        patch: &patch,
        rollback: false,
    };
    let [b, a] = [Path::Blocking, Path::Async].map(|p| sweep_on::<4096, 1, 4, 0xFF>(p, &sc, 2));
    let key = |c: &Counts| {
        (
            c.ops,
            c.writes,
            c.runs,
            c.resumed,
            c.resent,
            c.failures.len(),
        )
    };
    assert!(b.runs > 100);
    assert_eq!(key(&a), key(&b));
}

#[test]
fn sweep_generated_pairs_on_the_async_path() {
    let mut failures = 0;
    for (seed, size) in [(11u64, 700usize), (13, 13_000)] {
        let (old, new) = firmware_pair(seed, size);
        for rollback in [false, true] {
            let name = format!("generated-{size}");
            failures += sweep_one_on::<4096>(Path::Async, &name, &old, &new, rollback, 2);
        }
    }
    let (old, new) = firmware_pair(14, 9000);
    let name = "generated-9000-1k-units";
    failures += sweep_one_on::<1024>(Path::Async, name, &old, &new, false, 8);
    assert_eq!(failures, 0);
}

#[test]
fn sweep_k64f_mbed_blinky() {
    real_pair("k64f-mbed-blinky", false);
}

#[test]
fn sweep_k64f_mbed_blinky_rollback() {
    real_pair("k64f-mbed-blinky", true);
}

#[test]
fn sweep_due_simba_shell() {
    real_pair("due-simba-shell", false);
}

#[test]
fn sweep_due_simba_shell_rollback() {
    real_pair("due-simba-shell", true);
}

#[test]
fn sweep_esp32_hello_world_in_full_mode() {
    if full() {
        real_pair("esp32-hello-world", false);
    } else {
        report("power-cut sweep esp32-hello-world: with FLASHPATCH_SWEEP=full only");
    }
}

#[test]
fn sweep_esp32_hello_world_rollback_in_full_mode() {
    if full() {
        real_pair("esp32-hello-world", true);
    }
}

#[test]
fn sweep_generated_pairs() {
    let mut failures = 0;
    for (seed, size) in [(11u64, 700usize), (12, 6000), (13, 13_000)] {
        let (old, new) = firmware_pair(seed, size);
        failures += sweep_both::<4096>(&format!("generated-{size}"), &old, &new, 2);
    }
    // 1 KiB erase units: banks of four units, torn multi-unit erases.
    let (old, new) = firmware_pair(14, 9000);
    failures += sweep_both::<1024>("generated-9000-1k-units", &old, &new, 8);
    assert_eq!(failures, 0);
}

#[test]
fn random_multi_cut_runs() {
    let runs = if full() { 100_000 } else { 10_000 };
    let pairs: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = [(21u64, 3000usize), (22, 9000), (23, 20_000)]
        .iter()
        .map(|&(seed, size)| {
            let (old, new) = firmware_pair(seed, size);
            let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
            (old, new, patch)
        })
        .collect();
    let bases: Vec<Device<4096>> = pairs
        .iter()
        .map(|(old, new, _)| device::<4096, 1, 4, 0xFF>(old, new, 2))
        .collect();
    // Operations of a clean run of each, to draw cut points from.
    let ops: Vec<u64> = pairs
        .iter()
        .zip(&bases)
        .map(|((old, new, patch), base)| {
            let dev = base.snapshot();
            let sc = Scenario {
                old,
                new,
                patch,
                rollback: true,
            };
            let before = dev.flash.borrow().ops;
            live(Path::Blocking, &dev, &sc, |_| {}).unwrap();
            let after = dev.flash.borrow().ops;
            after - before
        })
        .collect();
    let mut rng = Rng(0x5EED_CAFE);
    let (mut failures, mut cuts, mut by_cuts) = (Vec::new(), 0u64, [0u64; 4]);
    // Runs until `runs` of them had at least one cut (a cut drawn past the
    // last operation of its kind never happens).
    let mut run = 0;
    while by_cuts[1..].iter().sum::<u64>() + (failures.len() as u64) < runs as u64 {
        run += 1;
        let k = run % pairs.len();
        let (old, new, patch) = &pairs[k];
        let sc = Scenario {
            old,
            new,
            patch,
            rollback: rng.below(4) == 0,
        };
        let dev = bases[k].snapshot();
        let mut left = 1 + rng.below(3);
        let arm = |f: &mut flashpatch::mock::MockFlash<1, 4, 4096>, rng: &mut Rng| {
            let kind = Cut::ALL[rng.below(3)];
            let at = rng.below(ops[k] as usize) as u64;
            let seed = rng.next_u64();
            f.cut_at(at, kind, seed);
        };
        arm(&mut dev.flash.borrow_mut(), &mut rng);
        left -= 1;
        let result = live(Path::Blocking, &dev, &sc, |f| {
            if left > 0 {
                left -= 1;
                arm(f, &mut rng);
            }
        });
        match result {
            Ok(l) => {
                cuts += l.cuts as u64;
                by_cuts[(l.cuts as usize).min(3)] += 1;
            }
            Err(e) => failures.push(format!("run {run}: {e}")),
        }
    }
    report(&format!(
        "power-cut random runs: {run} seeded runs drawing up to 3 cuts each: {} with 1 cut, {} with 2, {} with 3 ({} with none: drawn past the end), {cuts} cuts in all, {} failures",
        by_cuts[1],
        by_cuts[2],
        by_cuts[3],
        by_cuts[0],
        failures.len()
    ));
    for f in failures.iter().take(5) {
        report(&format!("  FAILED {f}"));
    }
    assert!(failures.is_empty());
}

/// A flash geometry of the matrix.
#[derive(Clone, Copy)]
struct Geometry {
    write: usize,
    read: usize,
    erase: usize,
    erased: u8,
    /// In the fast default (otherwise with `FLASHPATCH_SWEEP=full` only).
    fast: bool,
    /// The sweep over one scenario on a device of this geometry.
    sweep: fn(&Scenario<'_>) -> Counts,
}

/// Sweeps `sc` on a device of this geometry, with a state area of two
/// banks of the smallest whole number of erase units that holds a bank.
fn sweep_geometry<const E: usize, const R: usize, const W: usize, const X: u8>(
    sc: &Scenario<'_>,
) -> Counts {
    let bank = DevSlots::<'static, E, R, W, X>::MIN_BANK as usize;
    sweep::<E, R, W, X>(sc, 2 * bank.div_ceil(E))
}

macro_rules! geometries {
    ($(($fast:expr, $w:expr, $r:expr, $e:expr, $x:expr)),* $(,)?) => {
        [$(Geometry {
            write: $w,
            read: $r,
            erase: $e,
            erased: $x,
            fast: $fast,
            sweep: sweep_geometry::<{ $e }, { $r }, { $w }, { $x }>,
        }),*]
    };
}

const KI: usize = 1024;

/// The matrix: (in the fast default, write, read, erase, erased). The fast
/// thirteen take every value of every dimension; the rest pair each write size
/// with each read size and both erased values, and more erase sizes.
const GEOMETRIES: [Geometry; 44] = geometries![
    (true, 1, 1, 256, 0xFF),
    (true, 2, 1, 512, 0x00),
    (true, 4, 4, KI, 0xFF),
    (true, 8, 4, 2 * KI, 0x00),
    (true, 16, 32, 4 * KI, 0xFF),
    (true, 32, 32, 8 * KI, 0x00),
    (true, 64, 64, 16 * KI, 0xFF),
    (true, 8, 1, 32 * KI, 0xFF),
    (true, 64, 64, 64 * KI, 0x00),
    (true, 32, 1, 128 * KI, 0xFF),
    (true, 2, 2, 4 * KI, 0xFF),
    (true, 16, 8, 2 * KI, 0x00),
    (true, 16, 16, 8 * KI, 0xFF),
    (false, 1, 1, 512, 0xFF),
    (false, 1, 4, 4 * KI, 0x00),
    (false, 1, 32, 32 * KI, 0xFF),
    (false, 1, 64, 256, 0x00),
    (false, 2, 1, 2 * KI, 0x00),
    (false, 2, 4, 16 * KI, 0xFF),
    (false, 2, 32, 128 * KI, 0x00),
    (false, 2, 64, KI, 0xFF),
    (false, 4, 1, 8 * KI, 0x00),
    (false, 4, 4, 64 * KI, 0xFF),
    (false, 4, 32, 512, 0x00),
    (false, 4, 64, 4 * KI, 0xFF),
    (false, 8, 1, 32 * KI, 0x00),
    (false, 8, 4, 256, 0xFF),
    (false, 8, 32, 2 * KI, 0x00),
    (false, 8, 64, 16 * KI, 0xFF),
    (false, 16, 1, 128 * KI, 0x00),
    (false, 16, 4, KI, 0xFF),
    (false, 16, 32, 8 * KI, 0x00),
    (false, 16, 64, 64 * KI, 0xFF),
    (false, 32, 1, 512, 0x00),
    (false, 32, 4, 4 * KI, 0xFF),
    (false, 32, 32, 32 * KI, 0x00),
    (false, 32, 64, 256, 0xFF),
    (false, 64, 1, 2 * KI, 0x00),
    (false, 64, 4, 16 * KI, 0xFF),
    (false, 64, 32, 128 * KI, 0x00),
    (false, 64, 64, KI, 0xFF),
    (false, 8, 2, KI, 0x00),
    (false, 32, 8, 64 * KI, 0xFF),
    (false, 64, 16, 512, 0x00),
];

/// The distinct values of one dimension, in order of first appearance
/// after sorting (erased values: 0xff first).
fn values(geos: &[Geometry], f: impl Fn(&Geometry) -> usize, hex: bool) -> String {
    let mut v: Vec<usize> = geos.iter().map(f).collect();
    v.sort_unstable();
    v.dedup();
    if hex {
        v.reverse();
        v.iter()
            .map(|x| format!("{x:#04x}"))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[test]
fn geometry_matrix() {
    let geos: Vec<Geometry> = GEOMETRIES
        .iter()
        .copied()
        .filter(|g| g.fast || full())
        .collect();
    let size = if full() { 8000 } else { 2500 };
    let (old, new) = firmware_pair(31, size);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let (mut runs, mut failures) = (0, 0);
    for g in &geos {
        for rollback in [false, true] {
            let sc = Scenario {
                old: &old,
                new: &new,
                patch: &patch,
                rollback,
            };
            let c = (g.sweep)(&sc);
            runs += c.runs;
            failures += c.failures.len();
            for f in c.failures.iter().take(3) {
                report(&format!(
                    "  FAILED write {} read {} erase {} erased {:#04x}{}: {f}",
                    g.write,
                    g.read,
                    g.erase,
                    g.erased,
                    if rollback { " (rollback)" } else { "" }
                ));
            }
        }
    }
    report(&format!(
        "power-cut geometry matrix: {} geometries (write sizes {}, read sizes {}, erase sizes {}, \
         erased values {}), {runs} runs, {failures} failures",
        geos.len(),
        values(&geos, |g| g.write, false),
        values(&geos, |g| g.read, false),
        values(&geos, |g| g.erase, false),
        values(&geos, |g| g.erased as usize, true),
    ));
    assert!(runs > 0);
    assert_eq!(failures, 0);
}

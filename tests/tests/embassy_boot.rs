//! flashpatch as embassy-boot's delta layer (`flashpatch-embassy-boot`),
//! judged by embassy-boot itself: its real `BootLoader` (crates.io
//! `embassy-boot` 0.7) swaps in what flashpatch wrote into the DFU
//! partition, over NOR mocks for ACTIVE, DFU and STATE. After the swap
//! ACTIVE holds exactly the new image, and after `mark_booted` it stays.
//! Power is cut at every flash operation of the whole sequence.

use embassy_boot::{BlockingFirmwareState, BootLoader, BootLoaderConfig, FirmwareState, State};
use flashpatch::mock::{Cut, MockFlash, Yielding};
use flashpatch::{ApplierState, Found, Outcome, Status};
use flashpatch_embassy_boot::{asynch, blocking, Error};
use flashpatch_tests::{corpus, firmware_pair};

const PAGE: usize = 4096;
type Flash = MockFlash<1, 4, PAGE>;
/// Patch bytes the link hands over at a time.
const CHUNK: usize = 700;

/// embassy-boot's three partitions, each its own chip here; they survive
/// resets, nothing else does.
#[derive(Clone)]
struct Board {
    active: Flash,
    dfu: Flash,
    state: Flash,
}

impl Board {
    /// ACTIVE of `pages` pages holding `image`, DFU one page larger (as
    /// embassy-boot's swap needs), STATE one page.
    fn new(image: &[u8], pages: usize) -> Board {
        Board {
            active: Flash::with_image(image.to_vec(), pages * PAGE),
            dfu: Flash::new((pages + 1) * PAGE),
            state: Flash::new(PAGE),
        }
    }

    /// The same, on flash without ECC: a word may be programmed again
    /// (to clear more bits) before an erase, as on nRF52.
    fn without_ecc(image: &[u8], pages: usize) -> Board {
        let mut b = Board::new(image, pages);
        for c in b.chips() {
            c.multiwrite = true;
        }
        b
    }

    fn chips(&mut self) -> [&mut Flash; 3] {
        [&mut self.active, &mut self.dfu, &mut self.state]
    }

    fn dead(&mut self) -> bool {
        self.chips().iter().any(|c| c.is_dead())
    }

    fn reboot(&mut self) {
        for c in self.chips() {
            c.reboot();
        }
    }

    /// Flash-changing operations on each chip so far.
    fn ops(&mut self) -> [u64; 3] {
        self.chips().map(|c| c.ops)
    }

    /// embassy-boot's bootloader: swaps or reverts as its state says.
    fn prepare_boot(&mut self) -> Result<State, embassy_boot::BootError> {
        let mut bl = BootLoader::new(BootLoaderConfig {
            active: &mut self.active,
            dfu: &mut self.dfu,
            state: &mut self.state,
        });
        let mut buf = [0u8; 256];
        bl.prepare_boot(&mut buf)
    }

    /// The application's view of embassy-boot's state.
    fn state(&mut self) -> Result<State, String> {
        let mut aligned = [0u8; 4];
        BlockingFirmwareState::new(&mut self.state, &mut aligned)
            .get_state()
            .map_err(|e| format!("get_state: {e:?}"))
    }

    fn mark_booted(&mut self) -> Result<(), embassy_boot::FirmwareUpdaterError> {
        let mut aligned = [0u8; 4];
        BlockingFirmwareState::new(&mut self.state, &mut aligned).mark_booted()
    }

    /// The application's update: apply the patch into DFU, mark it.
    fn update(&mut self, patch: &[u8]) -> Result<Outcome, Error> {
        let mut aligned = [0u8; 4];
        let mut state = BlockingFirmwareState::new(&mut self.state, &mut aligned);
        let mut mem = ApplierState::new();
        let mut up =
            blocking::DfuUpdate::begin(&mut self.active, &mut self.dfu, &mut state, &mut mem)?;
        for piece in patch.chunks(CHUNK) {
            if let Status::Done(_) = up.feed(piece)? {
                break;
            }
        }
        up.finish(&mut state)
    }

    fn active_holds(&self, image: &[u8]) -> bool {
        self.active.as_bytes().starts_with(image)
    }
}

/// One boot: embassy-boot's `prepare_boot`, then the application, which
/// confirms a swapped-in image and otherwise applies the update.
/// `Ok(true)` once the new image runs confirmed.
fn session(b: &mut Board, old: &[u8], new: &[u8], patch: &[u8]) -> Result<bool, String> {
    b.prepare_boot()
        .map_err(|e| format!("prepare_boot: {e:?}"))?;
    let holds_new = b.active_holds(new);
    if !holds_new && !b.active_holds(old) {
        return Err("ACTIVE holds neither image after prepare_boot".into());
    }
    let state = b.state()?;
    match (holds_new, state) {
        (true, State::Swap) => b
            .mark_booted()
            .map(|()| false)
            .map_err(|e| format!("{e:?}")),
        (true, _) => Ok(true),
        (false, State::Swap) => Err("the old image is on trial".into()),
        (false, _) => b.update(patch).map(|_| false).map_err(|e| e.to_string()),
    }
}

/// Lives until the new image runs confirmed, rebooting after each cut;
/// then boots twice more: it stays.
fn live(b: &mut Board, old: &[u8], new: &[u8], patch: &[u8]) -> Result<u32, String> {
    for boots in 1..=24 {
        match session(b, old, new, patch) {
            Ok(true) => {
                for _ in 0..2 {
                    b.prepare_boot().map_err(|e| format!("{e:?}"))?;
                    if !b.active_holds(new) || b.state() == Ok(State::Swap) {
                        return Err("the confirmed image did not stay".into());
                    }
                }
                return Ok(boots);
            }
            Ok(false) => {}
            Err(_) if b.dead() => b.reboot(),
            Err(e) => return Err(e),
        }
    }
    Err("no end after 24 boots".into())
}

/// A run of the sweep that did not end well.
struct Failure {
    chip: usize,
    kind: Cut,
    at: u64,
    what: String,
}

const CHIPS: [&str; 3] = ["ACTIVE", "DFU", "STATE"];

/// Cuts power at every flash operation of `live` on each chip of
/// `factory`, with each of the three kinds of cut; returns the runs and
/// the failures.
fn sweep(label: &str, factory: &Board, old: &[u8], new: &[u8]) -> (u64, Vec<Failure>) {
    let patch = host_genpat::diff(old, new, &Default::default()).unwrap();
    let mut clean = factory.clone();
    let boots = live(&mut clean, old, new, &patch).unwrap();
    assert_eq!(boots, 3, "update, swap and mark_booted, confirmed");
    let total = clean.ops();
    let mut runs = 0;
    let mut failures = Vec::new();
    for (chip, &ops) in total.iter().enumerate() {
        for at in 0..ops {
            for kind in Cut::ALL {
                let mut b = factory.clone();
                b.chips()[chip].cut_at(at, kind, at * 7 + 1);
                runs += 1;
                if let Err(what) = live(&mut b, old, new, &patch) {
                    failures.push(Failure {
                        chip,
                        kind,
                        at,
                        what,
                    });
                }
            }
        }
    }
    println!(
        "embassy-boot power-cut sweep, {label}: {} flash operations (ACTIVE {}, DFU {}, STATE {}), \
         {runs} runs, {} failures",
        total.iter().sum::<u64>(),
        total[0],
        total[1],
        total[2],
        failures.len()
    );
    for f in &failures {
        println!(
            "  {} cut {:?} at its operation {}: {}",
            CHIPS[f.chip], f.kind, f.at, f.what
        );
    }
    (runs, failures)
}

/// The pairs the sweep runs on: a generated one and a corpus one.
fn pairs() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let (old, new) = firmware_pair(45, 20_000);
    let mut pairs = vec![("generated 20 KB pair".to_string(), old, new)];
    pairs.extend(
        corpus()
            .into_iter()
            .filter(|(n, ..)| n == "k64f-mbed-blinky"),
    );
    pairs
}

#[test]
fn embassy_boot_swaps_in_the_patched_image() {
    let (old, new) = firmware_pair(41, 30_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let mut b = Board::new(&old, 8);
    assert_eq!(b.prepare_boot(), Ok(State::Boot));
    assert_eq!(b.update(&patch), Ok(Outcome::Applied));
    assert!(
        b.active_holds(&old),
        "ACTIVE is only embassy-boot's to write"
    );
    assert_eq!(
        b.state(),
        Ok(State::Swap),
        "marked with embassy-boot's state"
    );
    // embassy-boot swaps it in, on trial; the image confirms itself.
    assert_eq!(b.prepare_boot(), Ok(State::Swap));
    assert!(b.active_holds(&new));
    // Not confirmed yet: another update is refused (DFU holds the image to
    // revert to), and nothing is written.
    let before = b.ops();
    assert_eq!(b.update(&patch), Err(Error::AwaitingMarkBooted));
    assert_eq!(b.ops(), before);
    b.mark_booted().unwrap();
    for _ in 0..3 {
        assert_eq!(b.prepare_boot(), Ok(State::Boot));
        assert!(b.active_holds(&new), "the confirmed image stays");
    }
    // The same patch again: ACTIVE holds its image, nothing is marked.
    assert_eq!(
        b.update(&patch),
        Ok(Outcome::AlreadyInstalled(Found::Source))
    );
    assert_eq!(b.state(), Ok(State::Boot));
}

#[test]
fn embassy_boot_reverts_an_image_that_is_not_confirmed() {
    let (old, new) = firmware_pair(42, 20_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let mut b = Board::new(&old, 6);
    b.update(&patch).unwrap();
    b.prepare_boot().unwrap();
    assert!(b.active_holds(&new));
    // The new image never calls mark_booted: embassy-boot reverts it.
    b.prepare_boot().unwrap();
    assert!(b.active_holds(&old));
    assert_eq!(b.state(), Ok(State::Revert));
    // The reverted image is in DFU now: trying the update again finds it
    // there, writes nothing into DFU and marks it again.
    let before = b.ops();
    assert_eq!(
        b.update(&patch),
        Ok(Outcome::AlreadyInstalled(Found::Target))
    );
    assert_eq!(b.ops()[1], before[1]);
    assert_eq!(b.state(), Ok(State::Swap));
}

#[test]
fn embassy_boot_refuses_an_image_larger_than_active() {
    let (old, _) = firmware_pair(43, 10_000);
    let big: Vec<u8> = (0..5 * PAGE as u32).map(|i| ((i * 7) >> 3) as u8).collect();
    let patch = host_genpat::diff(&old, &big, &Default::default()).unwrap();
    // DFU has room for 5 pages, ACTIVE (what embassy-boot swaps) for 4.
    let mut b = Board::new(&old, 4);
    let err = b.update(&patch).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Apply(flashpatch::ApplyError::TargetTooSmall { .. })
        ),
        "{err:?}"
    );
    assert_eq!(b.ops()[1], 0, "nothing was written into DFU");
    assert_eq!(b.state(), Ok(State::Boot), "nothing was marked");
}

#[test]
fn embassy_boot_async_update() {
    let (old, new) = firmware_pair(44, 25_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let mut b = Board::new(&old, 8);
    pollster::block_on(async {
        let mut active = Yielding::new(&mut b.active);
        let mut dfu = Yielding::new(&mut b.dfu);
        let mut aligned = [0u8; 4];
        let mut state = FirmwareState::new(Yielding::new(&mut b.state), &mut aligned);
        let mut mem = ApplierState::new();
        let mut up = asynch::DfuUpdate::begin(&mut active, &mut dfu, &mut state, &mut mem)
            .await
            .unwrap();
        for piece in patch.chunks(CHUNK) {
            up.feed(piece).await.unwrap();
        }
        assert_eq!(up.finish(&mut state).await, Ok(Outcome::Applied));
    });
    assert_eq!(b.prepare_boot(), Ok(State::Swap));
    assert!(b.active_holds(&new));
}

/// On flash without ECC (a word may be programmed again), every cut of
/// the whole sequence ends with the new image confirmed in ACTIVE, and
/// ACTIVE holds exactly the old or the new image after every boot.
#[test]
fn embassy_boot_power_cuts() {
    let mut runs = 0;
    for (name, old, new) in pairs() {
        let pages = old.len().max(new.len()).div_ceil(PAGE);
        let (r, failures) = sweep(
            &format!("{name}, flash without ECC"),
            &Board::without_ecc(&old, pages),
            &old,
            &new,
        );
        runs += r;
        assert!(failures.is_empty(), "{} failures", failures.len());
    }
    assert!(runs > 1000, "{runs} runs");
}

/// On flash with ECC (a word is programmed once between erases, as on
/// STM32L4/G4/H7), the same sweep: flashpatch's writes and its mark never
/// fail a cut; the only failures are cuts in embassy-boot's own
/// `mark_booted` after it has invalidated the swap progress, and then
/// every later `prepare_boot` fails (docs/EMBASSY-BOOT.md). If this test
/// fails because there are none, embassy-boot has fixed it: update the
/// docs.
#[test]
fn embassy_boot_power_cuts_on_ecc_flash() {
    for (name, old, new) in pairs() {
        let pages = old.len().max(new.len()).div_ceil(PAGE);
        let factory = Board::new(&old, pages);
        let (_, failures) = sweep(&format!("{name}, flash with ECC"), &factory, &old, &new);
        // Where mark_booted starts on the STATE chip in an uncut life.
        let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
        let mut b = factory.clone();
        session(&mut b, &old, &new, &patch).unwrap();
        b.prepare_boot().unwrap();
        let mark_booted = b.ops()[2] - factory.clone().ops()[2];
        assert!(!failures.is_empty(), "embassy-boot no longer fails here");
        for f in &failures {
            assert_eq!(f.chip, 2, "{}: {}", CHIPS[f.chip], f.what);
            assert!(
                f.at >= mark_booted,
                "cut at STATE operation {} before mark_booted",
                f.at
            );
            assert!(f.what.starts_with("prepare_boot"), "{}", f.what);
        }
    }
}

/// The reproduction of the case above, step by step: after the swap, the
/// application's `mark_booted` loses power right after its first write
/// (the progress-validity word); from then on `prepare_boot` fails at
/// every boot, because its revert path programs that word a second time.
#[test]
fn embassy_boot_ecc_flash_mark_booted_cut() {
    let (old, new) = firmware_pair(46, 12_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    for ecc in [true, false] {
        let mut b = match ecc {
            true => Board::new(&old, 4),
            false => Board::without_ecc(&old, 4),
        };
        b.update(&patch).unwrap();
        assert_eq!(b.prepare_boot(), Ok(State::Swap));
        // mark_booted: 1 write (invalidate progress), 1 erase, 1 write.
        b.state.cut_at(1, Cut::Before, 1);
        assert!(b.mark_booted().is_err());
        b.reboot();
        let boot = b.prepare_boot();
        match ecc {
            true => assert_eq!(
                boot,
                Err(embassy_boot::BootError::Flash(
                    embedded_storage::nor_flash::NorFlashErrorKind::Other
                ))
            ),
            false => {
                assert!(boot.is_ok());
                assert!(b.active_holds(&new), "the new image stays, not reverted");
            }
        }
    }
}

//! Slot A and slot B on two flashes of different types and error types
//! (`flashpatch::slots::Either`): slot A and the state area in internal
//! flash (8-byte writes, 2 KiB pages), slot B in an external SPI NOR
//! (byte writes, 4 KiB sectors) whose driver has its own error type.
//! Updates run both ways (A → B, then B → A), on the blocking and the
//! async slot manager, and under power cuts on either chip.

use core::cell::RefCell;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use flashpatch::mock::{Cut, MockError, MockFlash, Yielding};
use flashpatch::slots::{Config, Either, Slot, Slots};
use flashpatch::{ApplierState, FlashError, FlashRole, Partition, SlotError, Status};
use flashpatch_tests::firmware_pair;

/// Slot size: a whole number of both chips' erase units.
const SLOT: u32 = 32 * 1024;
/// The state area (two banks of 4 KiB) in internal flash, after slot A.
const STATE: u32 = 8 * 1024;
/// Patch bytes handed over at a time.
const CHUNK: usize = 512;

type Internal = MockFlash<4, 8, 2048>;

/// An external SPI NOR: any length within a page, 4 KiB sector erase.
/// Its driver reports its own errors, and can be told to fail programs.
#[derive(Clone)]
struct SpiNor {
    chip: MockFlash<1, 1, 4096>,
    fail_programs: bool,
}

#[derive(Debug, PartialEq)]
enum SpiError {
    /// The chip did not finish a page program (status register).
    ProgramFailed,
    /// What the array itself refused.
    Array(MockError),
}

impl NorFlashError for SpiError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SpiError::ProgramFailed => NorFlashErrorKind::Other,
            SpiError::Array(e) => e.kind(),
        }
    }
}

impl ErrorType for SpiNor {
    type Error = SpiError;
}

impl ReadNorFlash for SpiNor {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SpiError> {
        self.chip.read(offset, bytes).map_err(SpiError::Array)
    }

    fn capacity(&self) -> usize {
        self.chip.capacity()
    }
}

impl NorFlash for SpiNor {
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = 4096;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SpiError> {
        self.chip.erase(from, to).map_err(SpiError::Array)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SpiError> {
        if self.fail_programs {
            return Err(SpiError::ProgramFailed);
        }
        self.chip.write(offset, bytes).map_err(SpiError::Array)
    }
}

/// The board: both chips survive resets, nothing else does.
#[derive(Clone)]
struct Board {
    internal: RefCell<Internal>,
    external: RefCell<SpiNor>,
}

type Slot2<'a> = Either<Partition<'a, Internal>, Partition<'a, SpiNor>>;
/// A slot as an async driver that waits once at every operation.
type AsyncSlot2<'a> = Either<Yielding<Partition<'a, Internal>>, Yielding<Partition<'a, SpiNor>>>;
type BoardSlots<'a> = Slots<Slot2<'a>, Partition<'a, Internal>>;

impl Board {
    /// Slot A holds `image`, provisioned as the running, confirmed image.
    fn provisioned(image: &[u8]) -> Board {
        let mut internal = Internal::new((SLOT + STATE) as usize);
        internal.preload(0, image);
        let board = Board {
            internal: RefCell::new(internal),
            external: RefCell::new(SpiNor {
                chip: MockFlash::new(SLOT as usize),
                fail_programs: false,
            }),
        };
        board
            .slots()
            .unwrap()
            .provision(Slot::A, image.len() as u32)
            .unwrap();
        board
    }

    fn parts(&self) -> (Slot2<'_>, Slot2<'_>, Partition<'_, Internal>) {
        let a = Partition::new(&self.internal, 0, SLOT).unwrap();
        let b = Partition::new(&self.external, 0, SLOT).unwrap();
        let state = Partition::new(&self.internal, SLOT, STATE).unwrap();
        (Either::A(a), Either::B(b), state)
    }

    fn slots(&self) -> Result<BoardSlots<'_>, SlotError> {
        let (a, b, state) = self.parts();
        Slots::new(a, b, state, Config::default())
    }

    fn slot_holds(&self, slot: Slot, image: &[u8]) -> bool {
        match slot {
            Slot::A => self.internal.borrow().as_bytes().starts_with(image),
            Slot::B => self.external.borrow().chip.as_bytes().starts_with(image),
        }
    }

    fn dead(&self) -> bool {
        self.internal.borrow().is_dead() || self.external.borrow().chip.is_dead()
    }

    fn reboot(&self) {
        self.internal.borrow_mut().reboot();
        self.external.borrow_mut().chip.reboot();
    }

    /// Flash-changing operations on both chips so far.
    fn ops(&self) -> [u64; 2] {
        [self.internal.borrow().ops, self.external.borrow().chip.ops]
    }
}

/// The application: resume the update or begin it, feed, finish, activate.
fn update(board: &Board, patch: &[u8]) -> Result<(), SlotError> {
    let mut slots = board.slots()?;
    let mut mem = ApplierState::new();
    let (mut up, from) = match slots.resume(&mut mem)? {
        Some(r) => (r.update, r.offset as usize),
        None => (slots.begin_update(&mut mem)?, 0),
    };
    for piece in patch[from..].chunks(CHUNK) {
        if let Status::Done(_) = up.feed(piece)? {
            break;
        }
    }
    let installed = up.finish()?;
    slots.activate(&installed)
}

/// An update to live through: `patch` makes `new` of `old`, into `to`.
#[derive(Clone, Copy)]
struct Step<'a> {
    old: &'a [u8],
    new: &'a [u8],
    patch: &'a [u8],
    to: Slot,
}

/// One step of the device's life: boot stage, then the application.
/// `Ok(true)` once `new` runs confirmed from `to`.
fn session(board: &Board, step: Step<'_>) -> Result<bool, String> {
    let Step {
        old,
        new,
        patch,
        to,
    } = step;
    let boot = board
        .slots()
        .and_then(|mut s| s.select())
        .map_err(|e| format!("boot: {e}"))?;
    let holds_new = board.slot_holds(boot.slot, new);
    if !holds_new && !board.slot_holds(boot.slot, old) {
        return Err(format!("booted slot {:?} holds neither image", boot.slot));
    }
    match (holds_new, boot.trial) {
        (true, true) => board
            .slots()
            .and_then(|mut s| s.confirm())
            .map(|()| false)
            .map_err(|e| format!("confirm: {e}")),
        (true, false) if boot.slot == to => Ok(true),
        (true, false) => Err("the new image runs from the wrong slot".into()),
        (false, true) => Err("the old image is on trial".into()),
        (false, false) => update(board, patch)
            .map(|()| false)
            .map_err(|e| format!("update: {e}")),
    }
}

/// Lives until `new` runs confirmed from `to`, rebooting after each cut;
/// the number of boots it took.
fn live(board: &Board, step: Step<'_>) -> Result<u32, String> {
    for boots in 1..=16 {
        match session(board, step) {
            Ok(true) => return Ok(boots),
            Ok(false) => {}
            Err(_) if board.dead() => board.reboot(),
            Err(e) => return Err(e),
        }
    }
    Err("no end after 16 boots".into())
}

/// Three releases and the patches between them.
fn releases() -> ([Vec<u8>; 3], [Vec<u8>; 2]) {
    let (v1, v2) = firmware_pair(31, 20_000);
    let (_, v3) = firmware_pair(32, 21_000);
    let p12 = host_genpat::diff(&v1, &v2, &Default::default()).unwrap();
    let p23 = host_genpat::diff(&v2, &v3, &Default::default()).unwrap();
    ([v1, v2, v3], [p12, p23])
}

#[test]
fn two_flash_slots_update_both_ways() {
    let ([v1, v2, v3], [p12, p23]) = releases();
    let board = Board::provisioned(&v1);
    // A (internal) → B (external), then B → A.
    let step = |old, new, patch, to| Step {
        old,
        new,
        patch,
        to,
    };
    assert_eq!(live(&board, step(&v1, &v2, &p12, Slot::B)), Ok(3));
    assert!(
        board.slot_holds(Slot::A, &v1),
        "the running slot was written"
    );
    assert_eq!(live(&board, step(&v2, &v3, &p23, Slot::A)), Ok(3));
    assert!(board.slot_holds(Slot::A, &v3) && board.slot_holds(Slot::B, &v2));
    let [internal, external] = board.ops();
    assert!(internal > 0 && external > 0);
}

#[test]
fn two_flash_slots_name_the_failing_flash() {
    let ([v1, _, v3], _) = releases();
    let full = host_genpat::diff(&[], &v3, &Default::default()).unwrap();
    let board = Board::provisioned(&v1);
    board.external.borrow_mut().fail_programs = true;
    // The target (slot B, external) fails: its error, with its kind and
    // role; the running image is untouched and still boots.
    let err = update(&board, &full).unwrap_err();
    assert_eq!(
        err,
        SlotError::Flash(FlashError {
            role: FlashRole::Target,
            kind: NorFlashErrorKind::Other
        })
    );
    assert!(err.to_string().contains("target"), "{err}");
    assert!(board.slot_holds(Slot::A, &v1));
    let boot = board.slots().unwrap().select().unwrap();
    assert_eq!((boot.slot, boot.trial), (Slot::A, false));
}

#[test]
fn two_flash_slots_async() {
    let ([v1, v2, v3], [p12, p23]) = releases();
    let board = Board::provisioned(&v1);
    let open = || async {
        let (a, b, state) = board.parts();
        fn either(e: Slot2<'_>) -> AsyncSlot2<'_> {
            match e {
                Either::A(p) => Either::A(Yielding::new(p)),
                Either::B(p) => Either::B(Yielding::new(p)),
            }
        }
        let state = Yielding::new(state);
        flashpatch::slots::asynch::Slots::new(either(a), either(b), state, Config::default())
            .await
            .unwrap()
    };
    pollster::block_on(async {
        for (patch, to, new) in [(&p12, Slot::B, &v2), (&p23, Slot::A, &v3)] {
            let mut slots = open().await;
            let mut mem = ApplierState::new();
            let mut up = slots.begin_update(&mut mem).await.unwrap();
            for piece in patch.chunks(CHUNK) {
                up.feed(piece).await.unwrap();
            }
            let installed = up.finish().await.unwrap();
            assert_eq!(installed.slot, to);
            slots.activate(&installed).await.unwrap();
            let boot = open().await.select().await.unwrap();
            assert_eq!((boot.slot, boot.trial), (to, true));
            open().await.confirm().await.unwrap();
            assert!(board.slot_holds(to, new));
        }
    });
}

/// A cut at every flash operation of both updates (A → B, then B → A), on
/// the chip that holds slot A and the state area and, separately, on the
/// one that holds slot B, each of the three kinds of cut. The
/// device always boots a whole image and ends with the new one.
#[test]
fn two_flash_slots_power_cuts() {
    let ([v1, v2, v3], [p12, p23]) = releases();
    let step = |old, new, patch, to| Step {
        old,
        new,
        patch,
        to,
    };
    let steps = [step(&v1, &v2, &p12, Slot::B), step(&v2, &v3, &p23, Slot::A)];
    let factory = Board::provisioned(&v1);
    let (mut runs, mut failures) = (0u64, 0u64);
    let mut start = factory.clone();
    for step in steps {
        // How many operations each chip does in this update, uncut.
        let clean = start.clone();
        let before = clean.ops();
        live(&clean, step).unwrap();
        let after = clean.ops();
        for chip in 0..2 {
            for (i, kind) in (0..after[chip] - before[chip]).flat_map(|i| Cut::ALL.map(|k| (i, k)))
            {
                let board = start.clone();
                let seed = i * 7 + 1;
                match chip {
                    0 => board.internal.borrow_mut().cut_at(i, kind, seed),
                    _ => board.external.borrow_mut().chip.cut_at(i, kind, seed),
                }
                runs += 1;
                if let Err(e) = live(&board, step) {
                    failures += 1;
                    eprintln!("chip {chip}, cut {kind:?} at operation {i}: {e}");
                }
            }
        }
        start = clean;
    }
    println!(
        "two-flash power-cut sweep: slot A and the state area on one chip, slot B on another, \
         both directions, {runs} runs, {failures} failures"
    );
    assert_eq!(failures, 0);
    assert!(runs > 1500, "{runs} runs");
}

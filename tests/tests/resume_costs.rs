//! What each way of feeding an update costs, on the k64f-mbed-blinky pair
//! (4 KiB erase units, 4-byte write units): streamed from the link with a
//! checkpoint at every target erase unit, staged first without
//! checkpoints, staged first with them. For one whole update (transfer,
//! apply, activate): erase units erased and bytes programmed in each
//! partition (target slot, state area, staging area) and patch bytes sent;
//! then what one power cut half way through the apply costs the recovery.
//! `docs/RESUME.md` quotes the figures (`flashpatch_tests::pinned`).
//!
//! Each partition is wrapped in a [`Counted`] flash that logs its erases
//! and writes; the partitions stay windows of one `MockFlash`, so that a
//! power cut stops all of them at once.
//!
//! Then two guards of `Slots::resume_or_begin`: a checkpoint is continued
//! only by the patch it was written for.

use core::cell::{Cell, RefCell};

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use flashpatch::mock::{Cut, MockFlash, Rng};
use flashpatch::proto::device::install;
use flashpatch::proto::{self, Action, HostMsg, Staging, MAX_CHUNK};
use flashpatch::slots::{Config, PatchId, Slot, Slots};
use flashpatch::{ApplierState, Partition, Status, Verdict};
use flashpatch_tests::pinned::{
    ResumeCost, RESUME_STAGE, RESUME_STAGE_BARE, RESUME_STREAM, STATE_WEAR,
};
use sha2::{Digest, Sha256};

const E: usize = 4096;
type Chip = MockFlash<1, 4, E>;

/// The partition an operation changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    SlotA,
    Target,
    State,
    Staging,
}

/// One flash-changing operation: its partition, erase units, bytes.
#[derive(Clone, Copy, Debug)]
struct Op {
    role: Role,
    erased: u64,
    written: u64,
}

/// A partition that logs its erases and writes in `log`.
struct Counted<'a> {
    inner: Partition<'a, Chip>,
    role: Role,
    log: &'a RefCell<Vec<Op>>,
}

impl ErrorType for Counted<'_> {
    type Error = <Partition<'static, Chip> as ErrorType>::Error;
}

impl ReadNorFlash for Counted<'_> {
    const READ_SIZE: usize = <Chip as ReadNorFlash>::READ_SIZE;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.inner.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl NorFlash for Counted<'_> {
    const WRITE_SIZE: usize = <Chip as NorFlash>::WRITE_SIZE;
    const ERASE_SIZE: usize = <Chip as NorFlash>::ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.inner.erase(from, to)?;
        let erased = ((to - from) as usize / E) as u64;
        let (role, written) = (self.role, 0);
        self.log.borrow_mut().push(Op {
            role,
            erased,
            written,
        });
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.inner.write(offset, bytes)?;
        let (role, erased, written) = (self.role, 0, bytes.len() as u64);
        self.log.borrow_mut().push(Op {
            role,
            erased,
            written,
        });
        Ok(())
    }
}

/// Erase units and bytes programmed per partition over some operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Work {
    target: (u64, u64),
    state: (u64, u64),
    staging: (u64, u64),
}

fn work(ops: &[Op]) -> Work {
    let mut w = Work::default();
    for op in ops {
        let at = match op.role {
            Role::Target => &mut w.target,
            Role::State => &mut w.state,
            Role::Staging => &mut w.staging,
            Role::SlotA => panic!("the running slot was written"),
        };
        at.0 += op.erased;
        at.1 += op.written;
    }
    w
}

/// A device: slot A (running `old`), slot B, a state area of two banks and
/// a staging area for `patch_len` bytes, all on one chip.
struct Dev {
    chip: RefCell<Chip>,
    log: RefCell<Vec<Op>>,
    /// Patch bytes the host has sent so far.
    sent: Cell<u64>,
    slot: u32,
    /// Bytes of the state area (two banks).
    state: u32,
    stage: u32,
    config: Config,
}

type DevSlots<'a> = Slots<Counted<'a>, Counted<'a>>;

impl Dev {
    fn new(old: &[u8], new_len: usize, patch_len: usize, config: Config) -> Dev {
        Dev::with_state(old, new_len, patch_len, config, 2)
    }

    /// The same with a state area of `units` erase units.
    fn with_state(old: &[u8], new_len: usize, patch_len: usize, config: Config, units: u32) -> Dev {
        let state = units * E as u32;
        let slot = (old.len().max(new_len).div_ceil(E) * E) as u32;
        // Staging: the patch in whole erase units, and one header unit.
        let stage = ((patch_len.div_ceil(E) + 1) * E) as u32;
        let mut chip = Chip::new((2 * slot + state + stage) as usize);
        chip.preload(0, old);
        let dev = Dev {
            chip: RefCell::new(chip),
            log: RefCell::new(Vec::new()),
            sent: Cell::new(0),
            slot,
            state,
            stage,
            config,
        };
        dev.slots()
            .unwrap()
            .provision(Slot::A, old.len() as u32)
            .unwrap();
        dev.log.borrow_mut().clear();
        dev
    }

    fn part(&self, role: Role, at: u32, size: u32) -> Option<Counted<'_>> {
        let inner = Partition::new(&self.chip, at, size)?;
        let log = &self.log;
        Some(Counted { inner, role, log })
    }

    /// The slot manager, built afresh (as after a reset).
    fn slots(&self) -> Option<DevSlots<'_>> {
        let s = self.slot;
        let a = self.part(Role::SlotA, 0, s)?;
        let b = self.part(Role::Target, s, s)?;
        let state = self.part(Role::State, 2 * s, self.state)?;
        Slots::new(a, b, state, self.config).ok()
    }

    fn staging(&self) -> Option<Staging<Counted<'_>>> {
        let at = 2 * self.slot + self.state;
        Staging::open(self.part(Role::Staging, at, self.stage)?).ok()
    }

    /// Operations logged so far.
    fn ops(&self) -> usize {
        self.log.borrow().len()
    }

    fn dead(&self) -> bool {
        self.chip.borrow().is_dead()
    }

    /// The boot stage after the update: slot B must hold `new`, verified.
    fn boots(&self, new: &[u8]) {
        let boot = self.slots().unwrap().select().unwrap();
        assert_eq!((boot.slot, boot.trial), (Slot::B, true));
        let (s, n) = (self.slot as usize, new.len());
        assert!(self.chip.borrow().as_bytes()[s..s + n] == *new);
        let rec = self.slots().unwrap().state().unwrap();
        assert_eq!(rec.images[1].sha256, <[u8; 32]>::from(Sha256::digest(new)));
    }
}

fn patch_id(patch: &[u8]) -> PatchId {
    PatchId {
        size: patch.len() as u32,
        crc32: flashpatch::crc32::crc32(patch),
    }
}

type DevUpdate<'s, 'a> = flashpatch::slots::Update<'s, Counted<'a>, Counted<'a>>;

/// Feeds `patch` in link-sized chunks until the update is done, counting
/// the bytes sent in `sent`; `None` if the power failed.
fn feed(up: &mut DevUpdate<'_, '_>, patch: &[u8], sent: &Cell<u64>) -> Option<()> {
    for piece in patch.chunks(MAX_CHUNK) {
        sent.set(sent.get() + piece.len() as u64);
        if let Status::Done(_) = up.feed(piece).ok()? {
            break;
        }
    }
    Some(())
}

/// Streams `patch` from the link into an update that records `id`, and
/// activates it; `None` if the power failed.
fn stream(dev: &Dev, patch: &[u8], id: PatchId) -> Option<()> {
    let mut slots = dev.slots()?;
    let mut mem = ApplierState::new();
    let inst = {
        let mut up = slots.begin_update(&mut mem).ok()?;
        up.set_patch(id);
        feed(&mut up, patch, &dev.sent)?;
        up.finish().ok()?
    };
    slots.activate(&inst).ok()
}

/// After a reset: resumes the streamed update from its checkpoint (the
/// sender re-sends from the offset) or begins again.
fn stream_again(dev: &Dev, patch: &[u8], id: PatchId) -> Option<()> {
    let mut slots = dev.slots()?;
    let mut mem = ApplierState::new();
    let resumed = slots.resume(&mut mem).ok()?;
    let inst = match resumed {
        Some(r) => {
            assert_eq!(r.patch, id, "the checkpoint is of another patch");
            let (mut up, from) = (r.update, r.offset as usize);
            feed(&mut up, &patch[from..], &dev.sent)?;
            up.finish().ok()?
        }
        None => {
            let mut mem = ApplierState::new();
            let mut up = slots.begin_update(&mut mem).ok()?;
            up.set_patch(id);
            feed(&mut up, patch, &dev.sent)?;
            up.finish().ok()?
        }
    };
    slots.activate(&inst).ok()
}

/// One connection over the protocol: the host sends `patch` from where the
/// device says (counted in `dev.sent`), the device stages it and installs
/// it. The verdict, or `None` if the power failed.
fn session(dev: &Dev, patch: &[u8]) -> Option<Verdict> {
    let mut slots = dev.slots()?;
    let mut stage = dev.staging()?;
    let id = patch_id(patch);
    let begin = HostMsg::Begin {
        size: id.size,
        crc32: id.crc32,
    };
    let mut act = proto::handle(&mut stage, &begin);
    loop {
        match act {
            Action::Ack { complete: true, .. } => {
                let mut mem = ApplierState::new();
                let r = install(
                    &mut slots,
                    &mut mem,
                    &mut stage,
                    &mut [0u8; 64],
                    &mut |_| {},
                );
                return (!dev.dead()).then_some(r.verdict);
            }
            Action::Ack { offset, .. } => {
                let end = (offset as usize + MAX_CHUNK).min(patch.len());
                let data = &patch[offset as usize..end];
                dev.sent.set(dev.sent.get() + data.len() as u64);
                act = proto::handle(&mut stage, &HostMsg::Chunk { offset, data });
            }
            _ => return None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    Stream,
    StageBare,
    Stage,
}

/// Runs one update the way `choice` says on a fresh device; `None` if the
/// power failed.
fn update(dev: &Dev, choice: Choice, patch: &[u8]) -> Option<()> {
    match choice {
        Choice::Stream => stream(dev, patch, patch_id(patch)),
        Choice::StageBare | Choice::Stage => {
            assert_eq!(session(dev, patch)?, Verdict::Ok);
            Some(())
        }
    }
}

/// What the device does after a reset: resume the stream or begin it
/// again; run the install of the complete staged patch again.
fn recover(dev: &Dev, choice: Choice, patch: &[u8]) {
    match choice {
        Choice::Stream => stream_again(dev, patch, patch_id(patch)).expect("no cut armed"),
        Choice::StageBare | Choice::Stage => {
            assert_eq!(session(dev, patch), Some(Verdict::Ok));
        }
    }
}

/// The flash operation half way through the apply of a whole run logged
/// in `ops`: between the first and the last write or erase of the target.
fn half_apply(ops: &[Op]) -> usize {
    let first = ops.iter().position(|o| o.role == Role::Target).unwrap();
    let last = ops.iter().rposition(|o| o.role == Role::Target).unwrap();
    first + (last - first) / 2
}

/// Measures `choice` on the pair.
fn measure(choice: Choice, old: &[u8], new: &[u8], patch: &[u8]) -> ResumeCost {
    let config = Config {
        checkpoint_units: if choice == Choice::StageBare { 0 } else { 1 },
        ..Config::default()
    };
    let fresh = || Dev::new(old, new.len(), patch.len(), config);
    // One whole update.
    let dev = fresh();
    let chip_before = dev.chip.borrow().ops;
    update(&dev, choice, patch).expect("no cut armed");
    let ops = dev.log.borrow().clone();
    assert_eq!(ops.len() as u64, dev.chip.borrow().ops - chip_before);
    let (whole, sent) = (work(&ops), dev.sent.get());
    dev.boots(new);

    // The same, cut half way through the apply, and the recovery: what
    // both runs did beyond one whole update is what the cut cost.
    let dev = fresh();
    let cut = half_apply(&ops);
    dev.chip.borrow_mut().cut_at(cut as u64, Cut::Before, 1);
    assert!(update(&dev, choice, patch).is_none() && dev.dead());
    dev.chip.borrow_mut().reboot();
    recover(&dev, choice, patch);
    let both = work(&dev.log.borrow());
    dev.boots(new);
    let more = |(e, b): (u64, u64), (we, wb): (u64, u64)| (e - we, b - wb);
    ResumeCost {
        target: whole.target,
        state: whole.state,
        staging: whole.staging,
        sent,
        cut_target: more(both.target, whole.target),
        cut_resent: dev.sent.get() - sent,
    }
}

#[test]
fn what_streaming_and_staging_cost_with_and_without_checkpoints() {
    let pairs = flashpatch_tests::corpus();
    let Some((_, old, new)) = pairs.iter().find(|(n, _, _)| n == "k64f-mbed-blinky") else {
        println!("NOTE: no k64f-mbed-blinky pair in the corpus: resume costs not measured");
        return;
    };
    let patch = host_genpat::diff(old, new, &Default::default()).unwrap();
    let mut got = Vec::new();
    for (choice, name) in [
        (Choice::Stream, "stream, checkpoints every unit"),
        (Choice::StageBare, "stage, no checkpoints"),
        (Choice::Stage, "stage, checkpoints every unit"),
    ] {
        let c = measure(choice, old, new, &patch);
        let f = |(e, b): (u64, u64)| format!("{e} erase{} {b} B", if e == 1 { "" } else { "s" });
        println!(
            "resume costs: {name}: image {} B, patch {} B; update: target {}, state {}, \
             staging {}, sent {} B, flash time {} ms at nRF52840 timings; a cut half way \
             through the apply costs: target {} again ({} ms), {} B re-sent",
            new.len(),
            patch.len(),
            f(c.target),
            f(c.state),
            f(c.staging),
            c.sent,
            c.update_ms(),
            f(c.cut_target),
            c.cut_ms(),
            c.cut_resent,
        );
        got.push(c);
    }
    let (stream, bare, stage) = (got[0], got[1], got[2]);
    // A checkpoint saves the recovery all but at most two erase units.
    assert!(stage.cut_target.1 <= 2 * E as u64, "{stage:?}");
    assert!(
        stage.cut_target.1 * 4 < bare.cut_target.1,
        "{stage:?} {bare:?}"
    );
    assert!(stream.cut_target.1 <= 2 * E as u64, "{stream:?}");
    assert_eq!(
        [stream, bare, stage],
        [RESUME_STREAM, RESUME_STAGE_BARE, RESUME_STAGE]
    );
}

/// An image and a patch that makes it.
type Made = (Vec<u8>, Vec<u8>);

/// A source of 24 KB and two images made from it, each with its patch.
fn two_patches() -> (Vec<u8>, [Made; 2]) {
    let (v1, v2) = flashpatch_tests::firmware_pair(31, 24_000);
    let mut v3 = v2.clone();
    v3[1000..5000].copy_from_slice(&Rng(7).bytes(4000));
    let p = |new: &[u8]| host_genpat::diff(&v1, new, &Default::default()).unwrap();
    let (p2, p3) = (p(&v2), p(&v3));
    (v1, [(v2, p2), (v3, p3)])
}

/// Where `resume_or_begin` of `patch` would start on `dev`; `dev` is left
/// as it was (beginning another patch makes a checkpoint stale on flash).
fn start_of(dev: &Dev, patch: PatchId) -> u32 {
    let (chip, ops) = (dev.chip.borrow().clone(), dev.ops());
    let from = {
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        slots.resume_or_begin(0, patch, &mut mem).unwrap().1
    };
    *dev.chip.borrow_mut() = chip;
    dev.log.borrow_mut().truncate(ops);
    from
}

/// Regression guard: a checkpoint written while installing P1 (cut during
/// its apply) is not continued when the staging area then holds P2, a
/// patch for another image: the install begins P2 from 0 and the device
/// boots exactly P2's image.
#[test]
fn an_install_of_another_patch_does_not_continue_a_checkpoint() {
    let (v1, [(_, p1), (v3, p2)]) = two_patches();
    let len = |i: usize| [p1.len(), p2.len()][i];
    let dev = || Dev::new(&v1, v3.len(), len(0).max(len(1)), Config::default());
    let whole = dev();
    session(&whole, &p1).unwrap();
    let cut = half_apply(&whole.log.borrow());

    let dev = dev();
    dev.chip.borrow_mut().cut_at(cut as u64, Cut::Before, 3);
    assert_eq!(session(&dev, &p1), None);
    dev.chip.borrow_mut().reboot();
    assert!(start_of(&dev, patch_id(&p1)) > 0, "no checkpoint of P1");
    assert_eq!(start_of(&dev, patch_id(&p2)), 0);

    // The host sends P2 instead: staged, installed from the start.
    let from = dev.ops();
    assert_eq!(session(&dev, &p2), Some(Verdict::Ok));
    let w = work(&dev.log.borrow()[from..]);
    assert!(
        w.target.1 >= v3.len() as u64,
        "P2 was not applied whole: {w:?}"
    );
    dev.boots(&v3);
}

/// Regression: P1 is cut during its apply (a checkpoint of P1 stays), then
/// P2's install is cut after it has rewritten target unit 0 but before its
/// first checkpoint. P1's checkpoint was still the newest, so installing
/// P1 again went on from it over P2's bytes and failed with "corrupt", on
/// every try. Beginning P2 now makes P1's checkpoint stale first: P1 is
/// installed again from the start, and the device boots it.
#[test]
fn a_checkpoint_is_stale_once_another_update_has_begun() {
    let (v1, [(v2, p1), (_, p2)]) = two_patches();
    let mk = || Dev::new(&v1, v2.len(), p1.len().max(p2.len()), Config::default());
    let whole = mk();
    session(&whole, &p1).unwrap();
    let dev = mk();
    let cut = half_apply(&whole.log.borrow());
    dev.chip.borrow_mut().cut_at(cut as u64, Cut::Before, 3);
    assert_eq!(session(&dev, &p1), None);
    dev.chip.borrow_mut().reboot();
    assert!(start_of(&dev, patch_id(&p1)) > 0, "no checkpoint of P1");

    // Where P2's install first writes the target, and the next
    // state-area operation after that (its first checkpoint), on a copy.
    let copy = mk();
    *copy.chip.borrow_mut() = dev.chip.borrow().clone();
    let from = copy.ops();
    session(&copy, &p2).unwrap();
    let log = copy.log.borrow()[from..].to_vec();
    let t = log.iter().position(|o| o.role == Role::Target).unwrap();
    let st = t + log[t..].iter().position(|o| o.role == Role::State).unwrap();
    dev.chip.borrow_mut().cut_at(st as u64, Cut::Before, 9);
    assert_eq!(session(&dev, &p2), None);
    dev.chip.borrow_mut().reboot();

    assert_eq!(
        start_of(&dev, patch_id(&p1)),
        0,
        "P1's checkpoint was taken"
    );
    assert_eq!(session(&dev, &p1), Some(Verdict::Ok));
    dev.boots(&v2);
}

/// Regression guard: the checkpoint of a streamed update that never said
/// its patch (`PatchId::UNKNOWN`) is there for `Slots::resume`, and never
/// taken by `resume_or_begin`, whatever patch it is asked for.
#[test]
fn a_checkpoint_of_an_unknown_patch_is_not_taken_by_resume_or_begin() {
    let (v1, [(v2, p1), _]) = two_patches();
    let dev = || Dev::new(&v1, v2.len(), p1.len(), Config::default());
    let whole = dev();
    stream(&whole, &p1, PatchId::UNKNOWN).unwrap();
    let cut = half_apply(&whole.log.borrow());

    let dev = dev();
    dev.chip.borrow_mut().cut_at(cut as u64, Cut::Before, 5);
    assert!(stream(&dev, &p1, PatchId::UNKNOWN).is_none());
    dev.chip.borrow_mut().reboot();
    {
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let r = slots.resume(&mut mem).unwrap().expect("a checkpoint");
        assert_eq!(r.patch, PatchId::UNKNOWN);
        assert!(r.offset > 0);
    }
    assert_eq!(start_of(&dev, patch_id(&p1)), 0);
    assert_eq!(start_of(&dev, PatchId::UNKNOWN), 0);

    // Staged and installed, it is applied from the start.
    let from = dev.ops();
    assert_eq!(session(&dev, &p1), Some(Verdict::Ok));
    assert!(work(&dev.log.borrow()[from..]).target.1 >= v2.len() as u64);
    dev.boots(&v2);
}

/// The state area's wear: its two banks take turns, a bank erased for a
/// record that does not fit in it. On the pair, with a checkpoint at every
/// unit: state-area erase units erased per update, and the most erases
/// any one of them took, for a state area of 2 and of 8 erase units.
#[test]
fn a_larger_state_area_spreads_the_checkpoints_wear() {
    let pairs = flashpatch_tests::corpus();
    let Some((_, old, new)) = pairs.iter().find(|(n, _, _)| n == "k64f-mbed-blinky") else {
        println!("NOTE: no k64f-mbed-blinky pair in the corpus: state area wear not measured");
        return;
    };
    let patch = host_genpat::diff(old, new, &Default::default()).unwrap();
    let mut got = Vec::new();
    for units in [2, 8] {
        let dev = Dev::with_state(old, new.len(), patch.len(), Config::default(), units);
        dev.chip.borrow_mut().erase_log = Some(Vec::new());
        stream(&dev, &patch, patch_id(&patch)).unwrap();
        let log = dev.chip.borrow_mut().erase_log.take().unwrap();
        let at = 2 * dev.slot;
        let state: Vec<u32> = log
            .into_iter()
            .filter(|&a| a >= at && a < at + dev.state)
            .collect();
        let most = (0..units)
            .map(|k| state.iter().filter(|&&a| a == at + k * E as u32).count())
            .max()
            .unwrap();
        println!(
            "state area wear: {units} erase units: {} erases per update, at most {most} on one unit",
            state.len()
        );
        got.push((state.len(), most));
    }
    assert_eq!(got, STATE_WEAR);
}

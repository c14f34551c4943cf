//! Power cuts during a whole update over the protocol, on a MockFlash: at
//! every flash write and erase of the transfer, the install (apply,
//! verify, activate) and the first boot and confirmation, cut three ways
//! (before, torn write, torn erase). After each cut the device must boot
//! v1 or v2, announce a resume offset the host can continue from, and
//! finish the update in v2. The same on flash with 8- and 32-byte write
//! units and on flash erased to 0x00, and with checkpoints (an install
//! cut during the apply goes on from its checkpoint) and without.

use core::cell::{Cell, RefCell};

use flashpatch::mock::{Cut, MockFlash, Rng};
use flashpatch::proto::device::install;
use flashpatch::proto::{self, Action, HostMsg, Staging, MAX_CHUNK};
use flashpatch::slots::{Config, Layout, Slot, Slots};
use flashpatch::{ApplierState, Partition, Verdict};
use flashpatch_tests::firmware_pair;
use sha2::{Digest, Sha256};

type Flash<const R: usize, const W: usize, const E: usize, const X: u8> = MockFlash<R, W, E, X>;
const SLOT: u32 = 32 * 1024;
/// The state area: two banks of at least 4 KiB.
const STATE: u32 = 2 * 4096;
const STAGE_AT: u32 = 2 * SLOT + STATE;
const STAGE: u32 = 16 * 1024;
thread_local! {
    /// `Config::checkpoint_units` of this thread's sweep.
    static UNITS: Cell<u32> = const { Cell::new(0) };
}

fn config() -> Config {
    Config {
        max_boot_attempts: 2,
        checkpoint_units: UNITS.get(),
    }
}

type DevSlots<'a, const R: usize, const W: usize, const E: usize, const X: u8> =
    Slots<Partition<'a, Flash<R, W, E, X>>, Partition<'a, Flash<R, W, E, X>>>;

fn slots<const R: usize, const W: usize, const E: usize, const X: u8>(
    flash: &RefCell<Flash<R, W, E, X>>,
) -> Option<DevSlots<'_, R, W, E, X>> {
    let layout = Layout::new(E as u32, 0, SLOT, SLOT, 2 * SLOT, STATE);
    let [a, b, s] = layout.partitions(flash)?;
    Slots::new(a, b, s, config()).ok()
}

/// Boot stage and application start: select, then confirm a trial (both
/// versions are good). The SHA-256 of the image that runs, or `None` if
/// the power failed.
fn boot<const R: usize, const W: usize, const E: usize, const X: u8>(
    flash: &RefCell<Flash<R, W, E, X>>,
) -> Option<[u8; 32]> {
    let mut s = slots(flash)?;
    let b = s.select().ok()?;
    if b.trial {
        s.confirm().ok()?;
    }
    let rec = s.state()?;
    Some(rec.images[if b.slot == Slot::A { 0 } else { 1 }].sha256)
}

/// One connection: the host sends `patch` from where the device says, in
/// chunks of `step` bytes; the device stores and installs it. The result,
/// or `None` if the power failed.
fn session<const R: usize, const W: usize, const E: usize, const X: u8>(
    flash: &RefCell<Flash<R, W, E, X>>,
    patch: &[u8],
    step: usize,
) -> Option<(Verdict, bool)> {
    let mut s = slots(flash)?;
    let mut stage = Staging::open_erased(Partition::new(flash, STAGE_AT, STAGE)?, X).ok()?;
    let crc32 = flashpatch::crc32::crc32(patch);
    let begin = HostMsg::Begin {
        size: patch.len() as u32,
        crc32,
    };
    let mut act = proto::handle(&mut stage, &begin);
    loop {
        match act {
            Action::Ack { complete: true, .. } => {
                let mut mem = ApplierState::new();
                let r = install(&mut s, &mut mem, &mut stage, &mut [0u8; 64], &mut |_| {});
                return (!flash.borrow().is_dead()).then_some((r.verdict, r.restart));
            }
            Action::Ack { offset, .. } => {
                let end = (offset as usize + step).min(patch.len());
                let data = &patch[offset as usize..end];
                act = proto::handle(&mut stage, &HostMsg::Chunk { offset, data });
            }
            Action::Fail(..) | Action::Announce | Action::Describe(_) => return None,
        }
    }
}

#[test]
fn power_cut_at_every_flash_operation_of_an_update() {
    sweep::<1, 4, 4096, 0xFF>(MAX_CHUNK);
}

/// The same with a checkpoint at every target erase unit (the default
/// `Config`): an install cut during the apply continues from its newest
/// checkpoint.
#[test]
fn power_cut_at_every_flash_operation_of_an_update_with_checkpoints() {
    UNITS.set(1);
    sweep::<1, 4, 4096, 0xFF>(MAX_CHUNK);
}

/// 8-byte write units in 2 KiB pages erased to 0x00, chunks of 100 bytes
/// (a part of a write unit waits for the next chunk); 32-byte write and
/// read units erased to 0x00; 32-byte write units erased to 0xFF.
#[test]
fn power_cut_at_every_flash_operation_on_other_geometries() {
    sweep::<4, 8, 2048, 0x00>(100);
    sweep::<32, 32, 4096, 0x00>(100);
    sweep::<1, 32, 4096, 0xFF>(MAX_CHUNK);
}

/// The same with checkpoints, on 8-byte write units erased to 0x00.
#[test]
fn power_cut_at_every_flash_operation_with_checkpoints_on_other_geometries() {
    UNITS.set(1);
    sweep::<4, 8, 2048, 0x00>(100);
}

/// Cuts power at every flash operation of an update over the protocol on
/// flash of this geometry, the host sending chunks of `step` bytes.
fn sweep<const R: usize, const W: usize, const E: usize, const X: u8>(step: usize) {
    let (v1, mut v2) = firmware_pair(21, 20_000);
    v2[2000..8000].copy_from_slice(&Rng(5).bytes(6000));
    let patch = host_genpat::diff(&v1, &v2, &Default::default()).unwrap();
    assert!(patch.len() > 4096 && patch.len() < (STAGE - 4096) as usize);
    let (h1, h2): ([u8; 32], [u8; 32]) = (Sha256::digest(&v1).into(), Sha256::digest(&v2).into());
    let fresh = || {
        let mut f = Flash::<R, W, E, X>::new((STAGE_AT + STAGE) as usize);
        f.preload(0, &v1);
        let flash = RefCell::new(f);
        slots(&flash)
            .unwrap()
            .provision(Slot::A, v1.len() as u32)
            .unwrap();
        flash
    };
    let (mut runs, mut resumed_mid, mut ended_v1, mut from_checkpoint) = (0, 0, 0, 0);
    for (k, kind) in Cut::ALL.into_iter().enumerate() {
        for n in 0.. {
            let flash = fresh();
            flash.borrow_mut().cut_at(n, kind, n * 3 + k as u64);
            // The update and the first boot, with the power failing somewhere.
            let first = session(&flash, &patch, step);
            if let Some((v, restart)) = first {
                assert_eq!(v, Verdict::Ok, "cut {n} {kind:?}");
                assert!(restart);
                boot(&flash);
            }
            if !flash.borrow().is_dead() {
                flash.borrow_mut().disarm();
                assert_eq!(boot(&flash), Some(h2));
                break; // The cut came after everything: the sweep is done.
            }
            runs += 1;
            flash.borrow_mut().reboot();
            let running = boot(&flash).unwrap_or_else(|| panic!("brick after cut {n} {kind:?}"));
            assert!(
                running == h1 || running == h2,
                "cut {n} {kind:?}: unknown image"
            );
            ended_v1 += usize::from(running == h1);
            let held = Staging::open_erased(Partition::new(&flash, STAGE_AT, STAGE).unwrap(), X)
                .unwrap()
                .resume()
                .map_or(0, |r| r.offset);
            if held > 0 && (held as usize) < patch.len() {
                resumed_mid += 1;
            }
            // Whether the install will go on from a checkpoint of this patch.
            if let Some(mut s) = slots(&flash) {
                let mut mem = ApplierState::new();
                let id = flashpatch::slots::PatchId {
                    size: patch.len() as u32,
                    crc32: flashpatch::crc32::crc32(&patch),
                };
                if let Ok((_, from)) = s.resume_or_begin(0, id, &mut mem) {
                    from_checkpoint += usize::from(from > 0);
                }
            }
            let (v, restart) = session(&flash, &patch, step).expect("no cut armed");
            match v {
                Verdict::Ok => assert!(restart),
                Verdict::AlreadyInstalled => assert_eq!(running, h2),
                v => panic!("cut {n} {kind:?}: the update ended with {v:?}"),
            }
            assert_eq!(boot(&flash), Some(h2), "cut {n} {kind:?}");
            assert_eq!(boot(&flash), Some(h2), "cut {n} {kind:?}: confirmed");
        }
    }
    let units = UNITS.get();
    println!(
        "power cuts (write {W}, read {R}, erase {E}, erased {X:#04x}, checkpoints every {units} \
         units): {runs} runs, 0 bricks; {ended_v1} booted v1 after the cut, {resumed_mid} \
         resumed a transfer midway, {from_checkpoint} installs went on from a checkpoint"
    );
    assert!(runs > 300 && resumed_mid > 10 && ended_v1 > 0);
    assert_eq!(from_checkpoint > 0, units > 0);
}

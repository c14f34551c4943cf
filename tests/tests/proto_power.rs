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
use flashpatch::proto::{Staging, MAX_CHUNK};
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

// The device's boot and session are written once and compiled for both
// device sides: blocking, and async over drivers that wait at every flash
// operation (`Yielding`), as the crate's own code is.
#[allow(clippy::duplicate_mod)]
#[path = "proto_power"]
mod blocking {
    use super::{config, layout, Flash};
    use core::cell::RefCell;
    pub(crate) use flashpatch::proto::device::install;
    pub(crate) use flashpatch::proto::handle;
    use flashpatch::proto::Staging;
    use flashpatch::slots::Slots;
    use flashpatch::Partition;
    pub(crate) use flashpatch_macros::blocking as io;

    type Part<'a, const R: usize, const W: usize, const E: usize, const X: u8> =
        Partition<'a, Flash<R, W, E, X>>;

    pub(crate) fn open_slots<const R: usize, const W: usize, const E: usize, const X: u8>(
        flash: &RefCell<Flash<R, W, E, X>>,
    ) -> Option<Slots<Part<'_, R, W, E, X>, Part<'_, R, W, E, X>>> {
        let [a, b, s] = layout::<E>().partitions(flash)?;
        Slots::new(a, b, s, config()).ok()
    }

    pub(crate) fn open_staging<const R: usize, const W: usize, const E: usize, const X: u8>(
        flash: &RefCell<Flash<R, W, E, X>>,
        at: u32,
        size: u32,
    ) -> Option<Staging<Part<'_, R, W, E, X>>> {
        Staging::open_erased(Partition::new(flash, at, size)?, X).ok()
    }

    mod run;
    pub(crate) use run::{boot, session};
}

#[allow(clippy::duplicate_mod)]
#[path = "proto_power"]
mod asynch {
    use super::{config, layout, Flash};
    use core::cell::RefCell;
    use flashpatch::mock::Yielding;
    use flashpatch::proto::asynch::Staging;
    pub(crate) use flashpatch::proto::asynch::{handle, install};
    use flashpatch::slots::asynch::Slots;
    use flashpatch::Partition;
    pub(crate) use flashpatch_macros::asynchronous as io;

    type Part<'a, const R: usize, const W: usize, const E: usize, const X: u8> =
        Yielding<Partition<'a, Flash<R, W, E, X>>>;

    pub(crate) async fn open_slots<const R: usize, const W: usize, const E: usize, const X: u8>(
        flash: &RefCell<Flash<R, W, E, X>>,
    ) -> Option<Slots<Part<'_, R, W, E, X>, Part<'_, R, W, E, X>>> {
        let [a, b, s] = layout::<E>().partitions(flash)?;
        let y = Yielding::new;
        Slots::new(y(a), y(b), y(s), config()).await.ok()
    }

    pub(crate) async fn open_staging<
        const R: usize,
        const W: usize,
        const E: usize,
        const X: u8,
    >(
        flash: &RefCell<Flash<R, W, E, X>>,
        at: u32,
        size: u32,
    ) -> Option<Staging<Part<'_, R, W, E, X>>> {
        let part = Yielding::new(Partition::new(flash, at, size)?);
        Staging::open_erased(part, X).await.ok()
    }

    mod run;
    pub(crate) use run::{boot, session};
}

fn layout<const E: usize>() -> Layout {
    Layout::new(E as u32, 0, SLOT, SLOT, 2 * SLOT, STATE)
}

/// Which device side a sweep runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Blocking,
    Async,
}

thread_local! {
    /// The device side of this thread's sweep.
    static PATH: Cell<Path> = const { Cell::new(Path::Blocking) };
}

fn boot<const R: usize, const W: usize, const E: usize, const X: u8>(
    flash: &RefCell<Flash<R, W, E, X>>,
) -> Option<[u8; 32]> {
    match PATH.get() {
        Path::Blocking => blocking::boot(flash),
        Path::Async => pollster::block_on(asynch::boot(flash)),
    }
}

fn session<const R: usize, const W: usize, const E: usize, const X: u8>(
    flash: &RefCell<Flash<R, W, E, X>>,
    patch: &[u8],
    step: usize,
) -> Option<(Verdict, bool)> {
    match PATH.get() {
        Path::Blocking => blocking::session(flash, patch, step),
        Path::Async => pollster::block_on(asynch::session(flash, patch, step)),
    }
}

fn slots<const R: usize, const W: usize, const E: usize, const X: u8>(
    flash: &RefCell<Flash<R, W, E, X>>,
) -> Option<Slots<Partition<'_, Flash<R, W, E, X>>, Partition<'_, Flash<R, W, E, X>>>> {
    blocking::open_slots(flash)
}

/// A device's flash with `image` in slot A, provisioned there.
fn provisioned<const R: usize, const W: usize, const E: usize, const X: u8>(
    image: &[u8],
) -> RefCell<Flash<R, W, E, X>> {
    let mut f = Flash::<R, W, E, X>::new((STAGE_AT + STAGE) as usize);
    f.preload(0, image);
    let flash = RefCell::new(f);
    slots(&flash)
        .unwrap()
        .provision(Slot::A, image.len() as u32)
        .unwrap();
    flash
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

/// The async device side (slot manager, staging and install over drivers
/// that wait at every flash operation), with checkpoints and without.
#[test]
fn power_cut_at_every_flash_operation_on_the_async_path() {
    PATH.set(Path::Async);
    sweep::<1, 4, 4096, 0xFF>(MAX_CHUNK);
    UNITS.set(1);
    sweep::<4, 8, 2048, 0x00>(100);
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
    let fresh = || provisioned::<R, W, E, X>(&v1);
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
    let on = match PATH.get() {
        Path::Blocking => "",
        Path::Async => ", async device side",
    };
    println!(
        "power cuts (write {W}, read {R}, erase {E}, erased {X:#04x}, checkpoints every {units} \
         units{on}): {runs} runs, 0 bricks; {ended_v1} booted v1 after the cut, {resumed_mid} \
         resumed a transfer midway, {from_checkpoint} installs went on from a checkpoint"
    );
    assert!(runs > 300 && resumed_mid > 10 && ended_v1 > 0);
    assert_eq!(from_checkpoint > 0, units > 0);
}

/// A continued update that fails is not continued again: its checkpoint is
/// made stale (a boot record of the same state at the next generation), so
/// that the next try of the same patch begins at 0 rather than failing at
/// the same place for ever. The patch's body is damaged near its end (the
/// whole file's CRC made right, as a sender would compute it): the apply
/// fails at the end of the body, after its checkpoints.
#[test]
fn a_continued_update_that_fails_begins_again_next_time() {
    UNITS.set(1);
    let (v1, mut v2) = firmware_pair(22, 20_000);
    v2[2000..8000].copy_from_slice(&Rng(6).bytes(6000));
    let mut patch = host_genpat::diff(&v1, &v2, &Default::default()).unwrap();
    let at = patch.len() - 40;
    patch[at] ^= 0x5A;
    let id = flashpatch::slots::PatchId {
        size: patch.len() as u32,
        crc32: flashpatch::crc32::crc32(&patch),
    };
    let h1: [u8; 32] = Sha256::digest(&v1).into();
    let from = |flash: &RefCell<Flash<1, 4, 4096, 0xFF>>| {
        let mut mem = ApplierState::new();
        slots(flash)
            .unwrap()
            .resume_or_begin(0, id, &mut mem)
            .unwrap()
            .1
    };
    // The first cut after which the install would go on from a checkpoint.
    let mut continued = 0;
    for n in 0.. {
        let flash = provisioned::<1, 4, 4096, 0xFF>(&v1);
        flash.borrow_mut().cut_at(n, Cut::Before, n);
        assert!(
            session(&flash, &patch, MAX_CHUNK).is_none(),
            "no cut at {n}"
        );
        flash.borrow_mut().reboot();
        assert_eq!(boot(&flash), Some(h1));
        let resumed = from(&flash);
        if resumed == 0 {
            continue;
        }
        // Continued from its checkpoint, the update fails at the body's end.
        let (v, restart) = session(&flash, &patch, MAX_CHUNK).unwrap();
        assert!(v != Verdict::Ok && !restart, "cut {n}: {v:?}");
        assert_eq!(boot(&flash), Some(h1));
        assert_eq!(from(&flash), 0, "cut {n}: resumed at {resumed}, then again");
        continued += 1;
        if continued == 3 {
            break;
        }
    }
    UNITS.set(0);
}

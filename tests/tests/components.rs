//! Components: one patch file with entries for an application and a data
//! partition, each applied to its own slot pair; entries of other
//! components skipped while streaming; signed component records; and the
//! all-or-nothing activation of a two-component update under power cuts
//! at every flash operation.

use core::cell::RefCell;

use flashpatch::crc32::crc32;
use flashpatch::format::CONTAINER_HEADER_LEN;
use flashpatch::mock::MockFlash;
use flashpatch::slots::{Config, GroupBoot, Installed, Slot, Slots};
use flashpatch::{ApplierState, ApplyError, Outcome, Partition, SlotError as Error, Status};
use flashpatch_tests::device::cut_points;
use flashpatch_tests::firmware_pair;
use host_genpat::apply::{apply_with, target_room, Policy, TargetSlot};
use host_genpat::container;
use host_genpat::keys::SecretKey;
use host_genpat::{GenOptions, Metadata};

const E: usize = 4096;
type Flash = MockFlash<1, 4, E>;
type DevError = Error;

/// The entry turning `old` into `new` for `component`, signed by `key`.
fn entry(old: &[u8], new: &[u8], component: u8, counter: u32, key: Option<&SecretKey>) -> Vec<u8> {
    let opts = GenOptions {
        meta: Metadata {
            component,
            security_counter: Some(counter),
            ..Default::default()
        },
        ..Default::default()
    };
    let (_, e) = host_genpat::generate(old, new, &opts, &mut host_genpat::NoProgress).unwrap();
    match key {
        Some(k) => container::sign_entry(&e, k).unwrap(),
        None => e,
    }
}

/// An application pair (component 0) and a data partition pair
/// (component 1).
struct Images {
    app: (Vec<u8>, Vec<u8>),
    data: (Vec<u8>, Vec<u8>),
}

fn images() -> Images {
    Images {
        app: firmware_pair(61, 10_000),
        data: firmware_pair(62, 6_000),
    }
}

/// One file: the data entry first, so that the application's update
/// streams past it.
fn two_component_patch(im: &Images, key: Option<&SecretKey>) -> Vec<u8> {
    let d = entry(&im.data.0, &im.data.1, 1, 3, key);
    let a = entry(&im.app.0, &im.app.1, 0, 7, key);
    container::assemble([d.as_slice(), a.as_slice()]).unwrap()
}

fn host_apply(
    patch: &[u8],
    old: &[u8],
    component: u8,
    policy: Policy,
) -> Result<Vec<u8>, DevError> {
    let policy = Policy {
        component,
        ..policy
    };
    let target = TargetSlot::new(target_room(patch, old.len()));
    match apply_with(patch, old, 1, &policy, &mut |_, _| {}, target) {
        Ok((Outcome::Applied, image)) => Ok(image),
        Ok((o, _)) => panic!("unexpected outcome {o:?}"),
        Err(e) => Err(match e {
            e
            @ (ApplyError::Header(_) | ApplyError::NoSuitablePatch | ApplyError::BadSignature) => {
                Error::Apply(e)
            }
            other => panic!("unexpected error {other:?}"),
        }),
    }
}

#[test]
fn a_two_component_file_is_applied_component_by_component() {
    let im = images();
    let patch = two_component_patch(&im, None);
    let entries = container::parse(&patch).unwrap();
    assert_eq!(
        entries.iter().map(|e| e.meta.component).collect::<Vec<_>>(),
        [1, 0]
    );
    let p = Policy::default();
    assert_eq!(host_apply(&patch, &im.app.0, 0, p), Ok(im.app.1.clone()));
    assert_eq!(host_apply(&patch, &im.data.0, 1, p), Ok(im.data.1.clone()));
    // Each component's entry is only for its own slots: the data image is
    // no source for component 0, the application image none for 1, and
    // there is no component 2.
    assert_eq!(
        host_apply(&patch, &im.data.0, 0, p),
        Err(Error::Apply(ApplyError::NoSuitablePatch))
    );
    assert_eq!(
        host_apply(&patch, &im.app.0, 1, p),
        Err(Error::Apply(ApplyError::NoSuitablePatch))
    );
    assert_eq!(
        host_apply(&patch, &im.app.0, 2, p),
        Err(Error::Apply(ApplyError::NoSuitablePatch))
    );
}

#[test]
fn signed_component_entries_whose_component_byte_changes_are_refused() {
    let k = SecretKey::from_seed([9; 32]);
    let im = images();
    let patch = two_component_patch(&im, Some(&k));
    let p = Policy {
        key: Some(k.public()),
        ..Policy::default()
    };
    assert_eq!(host_apply(&patch, &im.data.0, 1, p), Ok(im.data.1.clone()));
    assert_eq!(host_apply(&patch, &im.app.0, 0, p), Ok(im.app.1.clone()));

    // The data entry comes first; its component record (0x80, 1, 0x01)
    // follows the fixed fields.
    let at = CONTAINER_HEADER_LEN;
    let h = u16::from_le_bytes([patch[at], patch[at + 1]]) as usize;
    let header = at + 2..at + 2 + h;
    let rec = patch[header.clone()]
        .windows(3)
        .position(|w| w == [0x80, 1, 1])
        .expect("component record")
        + header.start;
    for to in [0u8, 2, 0xFF] {
        let mut bad = patch.clone();
        bad[rec + 2] = to;
        // As sent: the header CRC no longer holds.
        assert!(matches!(
            host_apply(&bad, &im.data.0, 1, p),
            Err(Error::Apply(ApplyError::Header(_)))
        ));
        // With the header CRC made right again, the signature fails, for
        // the component the entry was for and the one it now claims.
        let crc = crc32(&bad[at..header.end - 4]);
        bad[header.end - 4..header.end].copy_from_slice(&crc.to_le_bytes());
        for c in [1, to] {
            let old = if c == 1 { &im.data.0 } else { &im.app.0 };
            assert_eq!(
                host_apply(&bad, old, c, p),
                Err(Error::Apply(ApplyError::BadSignature)),
                "{to} {c}"
            );
        }
    }
}

/// A device with two components: the application's slot pair, the data
/// partition's, and one state area.
struct Device {
    flash: RefCell<Flash>,
    config: Config,
}

const SLOT: u32 = 12 * 1024;

impl Device {
    fn new(im: &Images) -> Self {
        let mut f = Flash::new(4 * SLOT as usize + 2 * E);
        f.preload(0, &im.app.0);
        f.preload(2 * SLOT as usize, &im.data.0);
        let dev = Device {
            flash: RefCell::new(f),
            config: Config {
                max_boot_attempts: 4,
                ..Config::default()
            },
        };
        dev.slots()
            .unwrap()
            .provision_group([
                (Slot::A, im.app.0.len() as u32),
                (Slot::A, im.data.0.len() as u32),
            ])
            .unwrap();
        dev
    }

    fn slots(&self) -> Result<Slots<Partition<'_, Flash>, Partition<'_, Flash>, 2>, DevError> {
        let p = |i: u32| Partition::new(&self.flash, i * SLOT, SLOT).unwrap();
        let state = Partition::new(&self.flash, 4 * SLOT, 2 * E as u32).unwrap();
        Slots::new_group([[p(0), p(1)], [p(2), p(3)]], state, self.config)
    }

    fn bytes(&self, component: usize, slot: Slot, len: usize) -> Vec<u8> {
        let at = (2 * component + if slot == Slot::A { 0 } else { 1 }) * SLOT as usize;
        self.flash.borrow().as_bytes()[at..at + len].to_vec()
    }

    fn snapshot(&self) -> Self {
        let mut f = self.flash.borrow().clone();
        f.disarm();
        f.op_trace = None;
        Device {
            flash: RefCell::new(f),
            config: self.config,
        }
    }
}

/// The application's update of both components from one file, fed in
/// `chunk`-byte pieces: it continues from a checkpoint if there is one,
/// then activates both in one record write. Returns the component it
/// continued from a checkpoint, if any.
fn update(dev: &Device, patch: &[u8], chunk: usize) -> Result<Option<u8>, DevError> {
    fn feed<const N: usize>(
        up: &mut flashpatch::slots::Update<'_, Partition<'_, Flash>, Partition<'_, Flash>, N>,
        bytes: &[u8],
        chunk: usize,
    ) -> Result<(), DevError> {
        for piece in bytes.chunks(chunk) {
            if let Status::Done(_) = up.feed(piece)? {
                break;
            }
        }
        Ok(())
    }
    let mut slots = dev.slots()?;
    let mut mem = ApplierState::new();
    let mut done: Vec<Installed> = Vec::new();
    let mut resumed = None;
    if let Some(r) = slots.resume(&mut mem)? {
        resumed = Some(r.component);
        let mut up = r.update;
        feed(&mut up, &patch[r.offset as usize..], chunk)?;
        done.push(up.finish()?);
    }
    for c in 0..2u8 {
        if done.iter().any(|i| i.component == c) {
            continue;
        }
        let mut up = slots.begin_component_update(c, &mut mem)?;
        feed(&mut up, patch, chunk)?;
        done.push(up.finish()?);
    }
    slots.activate_group(&done)?;
    Ok(resumed)
}

#[test]
fn other_components_are_skipped_while_streaming_byte_by_byte() {
    let im = images();
    let patch = two_component_patch(&im, None);
    let dev = Device::new(&im);
    let data_before = dev.bytes(1, Slot::B, SLOT as usize);
    {
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let mut up = slots.begin_component_update(0, &mut mem).unwrap();
        for b in patch.chunks(1) {
            up.feed(b).unwrap();
        }
        let i = up.finish().unwrap();
        assert_eq!(
            (i.component, i.slot, i.outcome),
            (0, Slot::B, Outcome::Applied)
        );
        assert_eq!(i.image.counter, 7);
    }
    assert_eq!(dev.bytes(0, Slot::B, im.app.1.len()), im.app.1);
    // The data entry's body (larger than the applier's whole input
    // buffer) streamed past; the data slots were not touched.
    assert!(container::parse(&patch).unwrap()[0].body().len() > 256);
    assert_eq!(dev.bytes(1, Slot::B, SLOT as usize), data_before);
    assert_eq!(dev.bytes(1, Slot::A, im.data.0.len()), im.data.0);
}

#[test]
fn a_group_activation_switches_both_and_confirm_raises_both_floors() {
    let im = images();
    let patch = two_component_patch(&im, None);
    let dev = Device::new(&im);
    update(&dev, &patch, 97).unwrap();
    let b = dev.slots().unwrap().select_group().unwrap();
    assert_eq!(
        b,
        GroupBoot {
            slots: [Slot::B, Slot::B],
            trial: true,
            rolled_back: false
        }
    );
    dev.slots().unwrap().confirm().unwrap();
    let st = dev.slots().unwrap().boot_state().unwrap();
    assert_eq!(st.components.map(|c| c.floor), [7, 3]);
    assert_eq!(st.record(1).unwrap().images[1].counter, 3);
    // A trial that is never confirmed rolls both back, in one record.
    let dev = Device::new(&im);
    update(&dev, &patch, 97).unwrap();
    let b = loop {
        let b = dev.slots().unwrap().select_group().unwrap();
        if !b.trial {
            break b;
        }
    };
    assert_eq!((b.slots, b.rolled_back), ([Slot::A, Slot::A], true));
    // Activating one component alone leaves the other where it is.
    let dev = Device::new(&im);
    {
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let mut up = slots.begin_component_update(1, &mut mem).unwrap();
        up.feed(&patch).unwrap();
        let i = up.finish().unwrap();
        assert_eq!(slots.activate(&i), Ok(()));
        // Again: it runs already, nothing to do.
        assert_eq!(slots.activate_group(&[i]), Ok(()));
        // A component given twice, or past the last, is refused.
        assert_eq!(slots.activate_group(&[i, i]), Err(Error::SlotState));
        let far = Installed { component: 2, ..i };
        assert_eq!(slots.activate_group(&[far]), Err(Error::SlotState));
    }
    let b = dev.slots().unwrap().select_group().unwrap();
    assert_eq!((b.slots, b.trial), ([Slot::A, Slot::B], true));
}

/// What the boot stage finds: each component's slot and whether it holds
/// the old or the new image (`None`: neither).
fn observe(dev: &Device, im: &Images, b: &GroupBoot<2>) -> [Option<bool>; 2] {
    let pairs = [&im.app, &im.data];
    let mut out = [None; 2];
    for (k, (old, new)) in pairs.into_iter().enumerate() {
        if dev.bytes(k, b.slots[k], new.len()) == *new {
            out[k] = Some(true);
        } else if dev.bytes(k, b.slots[k], old.len()) == *old {
            out[k] = Some(false);
        }
    }
    out
}

/// Power cut at every write and erase of a two-component update (apply
/// both with checkpoints, activate, first boot, confirm), before it and in
/// the middle of it: after the cut the boot stage always finds both
/// components old or both new, and the device then completes the update.
#[test]
fn group_activation_is_all_or_nothing_under_power_cuts() {
    let im = images();
    let patch = two_component_patch(&im, None);
    let base = Device::new(&im);
    let life = |dev: &Device| -> Result<(), DevError> {
        update(dev, &patch, 97)?;
        dev.slots()?.select_group()?;
        dev.slots()?.confirm()
    };
    let clean = base.snapshot();
    clean.flash.borrow_mut().op_trace = Some(Vec::new());
    life(&clean).unwrap();
    let trace = clean.flash.borrow_mut().op_trace.take().unwrap();
    let (mut runs, mut old_seen, mut new_seen) = (0, 0, 0);
    let mut resumed = [0; 2];
    for (i, kind) in cut_points(&trace) {
        let dev = base.snapshot();
        dev.flash
            .borrow_mut()
            .cut_at(i as u64, kind, i as u64 * 7 + 1);
        assert!(life(&dev).is_err(), "op {i} {kind:?}: no cut happened");
        dev.flash.borrow_mut().reboot();
        let b = dev.slots().unwrap().select_group().unwrap();
        match observe(&dev, &im, &b) {
            [Some(false), Some(false)] => old_seen += 1,
            [Some(true), Some(true)] => new_seen += 1,
            other => panic!("op {i} {kind:?}: a mix after the cut: {other:?} {b:?}"),
        }
        // Live on: the update comes to its end.
        for _ in 0..4 {
            let b = dev.slots().unwrap().select_group().unwrap();
            match (observe(&dev, &im, &b), b.trial) {
                ([Some(true), Some(true)], true) => dev.slots().unwrap().confirm().unwrap(),
                ([Some(true), Some(true)], false) => break,
                ([Some(false), Some(false)], false) => {
                    if let Some(c) = update(&dev, &patch, 97).unwrap() {
                        resumed[c as usize] += 1;
                    }
                }
                other => panic!("op {i} {kind:?}: {other:?}"),
            }
        }
        let b = dev.slots().unwrap().select_group().unwrap();
        assert_eq!(observe(&dev, &im, &b), [Some(true); 2], "op {i} {kind:?}");
        assert!(!b.trial, "op {i} {kind:?}");
        // The counters came through checkpoints too: both floors rose.
        let st = dev.slots().unwrap().boot_state().unwrap();
        assert_eq!(st.components.map(|c| c.floor), [7, 3], "op {i} {kind:?}");
        runs += 1;
    }
    println!(
        "two-component update: {} flash operations, {runs} cut runs; after the cut \
         {old_seen} booted both old, {new_seen} both new, none a mix; the update went on \
         from a checkpoint of component 0 {} times, of component 1 {} times",
        trace.len(),
        resumed[0],
        resumed[1]
    );
    assert_eq!(
        (trace.len(), runs, old_seen, new_seen),
        flashpatch_tests::pinned::TWO_COMPONENT_SWEEP
    );
    assert!(old_seen > 0 && new_seen > 0);
    assert!(resumed[0] > 0 && resumed[1] > 0);
}

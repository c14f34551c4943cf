//! Several components updated in one run of the protocol: the host sends
//! one patch with entries for some of a device's components, the device
//! (`proto::device::install` over `Slots<_, _, N>` on a MockFlash) applies
//! each into its own inactive slot and activates them in one record
//! write; also under a power cut at every flash operation.

use core::cell::RefCell;

use flashpatch::mock::{Cut, MockFlash, Rng};
use flashpatch::proto::device::install;
use flashpatch::proto::{self, Action, DeviceMsg, HostMsg, Stage, Staging, MAX_CHUNK};
use flashpatch::slots::{Config, GroupBoot, Slot, Slots};
use flashpatch::{ApplierState, Partition, Verdict};
use flashpatch_tests::firmware_pair;
use host_genpat::{container, GenOptions, Metadata};
use sha2::{Digest, Sha256};

const E: usize = 4096;
type Flash = MockFlash<1, 4, E>;
const SLOT: u32 = 16 * 1024;
const STATE: u32 = 2 * E as u32;
const STAGE: u32 = 32 * 1024;
const CONFIG: Config = Config {
    max_boot_attempts: 2,
    checkpoint_units: 1,
};

/// A device with `N` components, each with its slot pair, one state area
/// and a staging partition: component `k` runs `old[k]` from slot A.
struct Device<const N: usize> {
    flash: RefCell<Flash>,
}

impl<const N: usize> Device<N> {
    const STATE_AT: u32 = 2 * N as u32 * SLOT;
    const STAGE_AT: u32 = Self::STATE_AT + STATE;

    fn new(old: &[Vec<u8>; N]) -> Self {
        let mut f = Flash::new((Self::STAGE_AT + STAGE) as usize);
        for (k, image) in old.iter().enumerate() {
            f.preload(2 * k * SLOT as usize, image);
        }
        let dev = Device {
            flash: RefCell::new(f),
        };
        let sizes = core::array::from_fn(|k| (Slot::A, old[k].len() as u32));
        dev.slots().unwrap().provision_group(sizes).unwrap();
        dev
    }

    fn slots(&self) -> Option<Slots<Partition<'_, Flash>, Partition<'_, Flash>, N>> {
        let p = |i: usize| Partition::new(&self.flash, i as u32 * SLOT, SLOT);
        let mut pairs = [const { None }; N];
        for (k, pair) in pairs.iter_mut().enumerate() {
            *pair = Some([p(2 * k)?, p(2 * k + 1)?]);
        }
        let state = Partition::new(&self.flash, Self::STATE_AT, STATE)?;
        Slots::new_group(pairs.map(Option::unwrap), state, CONFIG).ok()
    }

    fn bytes(&self, k: usize, slot: Slot, len: usize) -> Vec<u8> {
        let at = (2 * k + usize::from(slot == Slot::B)) * SLOT as usize;
        self.flash.borrow().as_bytes()[at..at + len].to_vec()
    }

    /// The boot stage, then the application's confirmation of a trial;
    /// `None` if the power failed.
    fn boot(&self) -> Option<GroupBoot<N>> {
        let mut s = self.slots()?;
        let b = s.select_group().ok()?;
        if b.trial {
            s.confirm().ok()?;
        }
        Some(b)
    }

    /// What each component's slot to boot holds: `Some(true)` the new
    /// image, `Some(false)` the old one.
    fn holds(&self, b: &GroupBoot<N>, old: &[Vec<u8>; N], new: &[Vec<u8>; N]) -> [Option<bool>; N] {
        core::array::from_fn(|k| {
            if self.bytes(k, b.slots[k], new[k].len()) == new[k] {
                Some(true)
            } else if self.bytes(k, b.slots[k], old[k].len()) == old[k] {
                Some(false)
            } else {
                None
            }
        })
    }

    /// One connection: the host sends `patch` from where the device holds
    /// it, the device stores and installs it. The verdict, whether the
    /// device restarts and the `Applying` progress it reported; `None` if
    /// the power failed.
    fn session(&self, patch: &[u8]) -> Option<Session> {
        let mut s = self.slots()?;
        let part = Partition::new(&self.flash, Self::STAGE_AT, STAGE)?;
        let mut stage = Staging::open(part).ok()?;
        let begin = HostMsg::Begin {
            size: patch.len() as u32,
            crc32: flashpatch::crc32::crc32(patch),
        };
        let mut act = proto::handle(&mut stage, &begin);
        loop {
            match act {
                Action::Ack { complete: true, .. } => {
                    let mut mem = ApplierState::new();
                    let mut applying = Vec::new();
                    let mut report = |m: &DeviceMsg<'_>| {
                        if let DeviceMsg::Progress {
                            stage: Stage::Applying,
                            done,
                            total,
                        } = *m
                        {
                            applying.push((done, total));
                        }
                    };
                    let r = install(&mut s, &mut mem, &mut stage, &mut [0u8; 64], &mut report);
                    let dead = self.flash.borrow().is_dead();
                    return (!dead).then_some((r.verdict, r.restart, applying));
                }
                Action::Ack { offset, .. } => {
                    let end = (offset as usize + MAX_CHUNK).min(patch.len());
                    let data = &patch[offset as usize..end];
                    act = proto::handle(&mut stage, &HostMsg::Chunk { offset, data });
                }
                Action::Fail(..) | Action::Announce | Action::Describe(_) => return None,
            }
        }
    }
}

/// A session's verdict, whether the device restarts, and the `Applying`
/// progress it reported (done, total).
type Session = (Verdict, bool, Vec<(u32, u32)>);

/// The entry turning `old` into `new` for `component`.
fn entry(old: &[u8], new: &[u8], component: u8, counter: u32) -> Vec<u8> {
    let opts = GenOptions {
        meta: Metadata {
            component,
            security_counter: Some(counter),
            ..Default::default()
        },
        ..Default::default()
    };
    host_genpat::generate(old, new, &opts, &mut host_genpat::NoProgress)
        .unwrap()
        .1
}

/// Old and new images of `N` components, of different sizes.
fn images<const N: usize>(seed: u64) -> ([Vec<u8>; N], [Vec<u8>; N]) {
    let pairs: [_; N] = core::array::from_fn(|k| firmware_pair(seed + k as u64, 9_000 - 1_500 * k));
    (pairs.clone().map(|p| p.0), pairs.map(|p| p.1))
}

/// One patch file with an entry for each component of `which`, the last
/// component's entry first.
fn patch_for<const N: usize>(old: &[Vec<u8>; N], new: &[Vec<u8>; N], which: &[usize]) -> Vec<u8> {
    let entries: Vec<Vec<u8>> = which
        .iter()
        .rev()
        .map(|&k| entry(&old[k], &new[k], k as u8, 10 + k as u32))
        .collect();
    container::assemble(entries.iter().map(Vec::as_slice)).unwrap()
}

#[test]
fn two_components_are_updated_and_activated_in_one_run() {
    let (old, new) = images::<2>(70);
    let patch = patch_for(&old, &new, &[0, 1]);
    let dev = Device::new(&old);
    let (v, restart, applying) = dev.session(&patch).unwrap();
    assert_eq!((v, restart), (Verdict::Ok, true));
    // The patch is fed once per component; progress counts both passes.
    let total = 2 * patch.len() as u32;
    assert_eq!(applying.first(), Some(&(0, total)));
    assert_eq!(applying.last(), Some(&(total, total)));
    assert!(applying.windows(2).all(|w| w[0].0 < w[1].0));
    let b = dev.boot().unwrap();
    assert_eq!((b.slots, b.trial), ([Slot::B, Slot::B], true));
    assert_eq!(dev.holds(&b, &old, &new), [Some(true); 2]);
    // Confirmed: each component's floor is its entry's counter.
    let st = dev.slots().unwrap().boot_state().unwrap();
    assert_eq!(st.components.map(|c| c.floor), [10, 11]);
    // The same patch again: both run their targets already.
    let (v, restart, _) = dev.session(&patch).unwrap();
    assert_eq!((v, restart), (Verdict::AlreadyInstalled, false));
    assert_eq!(dev.boot().unwrap().slots, [Slot::B, Slot::B]);
}

/// `HostMsg::Component` is answered with what each component runs: the
/// boot state's active image, none past the last component.
#[test]
fn the_device_says_what_each_component_runs() {
    let (old, new) = images::<2>(75);
    let dev = Device::new(&old);
    let ask = |k: u8| {
        let mut stage =
            Staging::open(Partition::new(&dev.flash, Device::<2>::STAGE_AT, STAGE).unwrap())
                .unwrap();
        let act = proto::handle(&mut stage, &HostMsg::Component { component: k });
        assert_eq!(act, Action::Describe(k));
        match proto::device::component(&dev.slots().unwrap(), k) {
            DeviceMsg::Component(c) => c,
            other => panic!("{other:?}"),
        }
    };
    let sha = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
    for (k, image) in old.iter().enumerate() {
        let c = ask(k as u8);
        assert_eq!((c.component, c.components), (k as u8, 2));
        assert_eq!(
            (c.image_size, c.image_sha256),
            (image.len() as u32, sha(image))
        );
    }
    assert_eq!((ask(2).image_size, ask(2).components), (0, 2));
    // After an update, the new images.
    dev.session(&patch_for(&old, &new, &[1])).unwrap();
    dev.boot().unwrap();
    assert_eq!(ask(1).image_sha256, sha(&new[1]));
    assert_eq!(ask(0).image_sha256, sha(&old[0]));
}

#[test]
fn three_components_only_those_in_the_patch_change() {
    let (old, new) = images::<3>(80);
    let dev = Device::new(&old);
    let (v, restart, _) = dev.session(&patch_for(&old, &new, &[0, 2])).unwrap();
    assert_eq!((v, restart), (Verdict::Ok, true));
    let b = dev.boot().unwrap();
    assert_eq!((b.slots, b.trial), ([Slot::B, Slot::A, Slot::B], true));
    assert_eq!(
        dev.holds(&b, &old, &new),
        [Some(true), Some(false), Some(true)]
    );
    assert_eq!(dev.bytes(1, Slot::B, 64), [0xFF; 64], "component 1 written");
    // Then a patch for component 1 alone, from the image it runs.
    let (v, restart, _) = dev.session(&patch_for(&old, &new, &[1])).unwrap();
    assert_eq!((v, restart), (Verdict::Ok, true));
    let b = dev.boot().unwrap();
    assert_eq!(b.slots, [Slot::B; 3]);
    assert_eq!(dev.holds(&b, &old, &new), [Some(true); 3]);
    // A patch for all three now: everything runs already.
    let (v, _, _) = dev.session(&patch_for(&old, &new, &[0, 1, 2])).unwrap();
    assert_eq!(v, Verdict::AlreadyInstalled);
}

#[test]
fn one_component_without_a_suitable_entry_fails_the_whole_update() {
    let (old, new) = images::<2>(90);
    let (other, _) = images::<2>(95);
    // Component 0's entry is right, component 1's is for another image.
    let good = entry(&old[0], &new[0], 0, 1);
    let wrong = entry(&other[1], &new[1], 1, 1);
    let patch = container::assemble([good.as_slice(), wrong.as_slice()]).unwrap();
    let dev = Device::new(&old);
    let (v, restart, _) = dev.session(&patch).unwrap();
    assert_eq!((v, restart), (Verdict::NoSuitablePatch, false));
    let b = dev.boot().unwrap();
    assert_eq!((b.slots, b.trial), ([Slot::A, Slot::A], false));
    // A patch for a component the device does not have finds nothing.
    let far = container::assemble([entry(&old[0], &new[0], 5, 1).as_slice()]).unwrap();
    let (v, _, _) = dev.session(&far).unwrap();
    assert_eq!(v, Verdict::NoSuitablePatch);
    assert_eq!(dev.boot().unwrap().slots, [Slot::A, Slot::A]);
}

#[test]
fn a_component_left_written_by_an_earlier_run_is_activated_with_the_others() {
    let (old, new) = images::<2>(100);
    let patch = patch_for(&old, &new, &[0, 1]);
    let dev = Device::new(&old);
    // An earlier run wrote component 0's image, then stopped.
    {
        let mut s = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let mut up = s.begin_component_update(0, &mut mem).unwrap();
        up.feed(&patch).unwrap();
        assert_eq!(up.finish().unwrap().outcome, flashpatch::Outcome::Applied);
    }
    let (v, restart, _) = dev.session(&patch).unwrap();
    assert_eq!((v, restart), (Verdict::Ok, true));
    let b = dev.boot().unwrap();
    assert_eq!(dev.holds(&b, &old, &new), [Some(true); 2]);
    assert_eq!(b.slots, [Slot::B, Slot::B]);
}

/// Power cut at every flash operation of a two-component update over the
/// protocol (transfer, both applies, the activation, the first boot and
/// its confirmation), three ways: after each cut the device boots both
/// components old or both new, and sending the patch again ends in both
/// new.
#[test]
fn a_two_component_update_survives_a_power_cut_anywhere() {
    let (old, mut new) = images::<2>(110);
    for (k, image) in new.iter_mut().enumerate() {
        image[1000..3500].copy_from_slice(&Rng(k as u64 + 1).bytes(2500));
    }
    let patch = patch_for(&old, &new, &[0, 1]);
    assert!(patch.len() > E, "the transfer spans staging units");
    let (mut runs, mut old_seen, mut new_seen) = (0, 0, 0);
    for (k, kind) in Cut::ALL.into_iter().enumerate() {
        for n in 0.. {
            let dev = Device::new(&old);
            dev.flash.borrow_mut().cut_at(n, kind, n * 5 + k as u64);
            if let Some((v, restart, _)) = dev.session(&patch) {
                assert_eq!((v, restart), (Verdict::Ok, true), "cut {n} {kind:?}");
                dev.boot();
            }
            if !dev.flash.borrow().is_dead() {
                // The cut would come after everything: the sweep is done.
                dev.flash.borrow_mut().disarm();
                let b = dev.boot().unwrap();
                assert_eq!(dev.holds(&b, &old, &new), [Some(true); 2]);
                break;
            }
            runs += 1;
            dev.flash.borrow_mut().reboot();
            let b = dev
                .boot()
                .unwrap_or_else(|| panic!("brick after cut {n} {kind:?}"));
            match dev.holds(&b, &old, &new) {
                [Some(false), Some(false)] => old_seen += 1,
                [Some(true), Some(true)] => new_seen += 1,
                mix => panic!("cut {n} {kind:?}: a mix after the cut: {mix:?} {b:?}"),
            }
            let (v, _, _) = dev.session(&patch).expect("no cut armed");
            assert!(
                matches!(v, Verdict::Ok | Verdict::AlreadyInstalled),
                "cut {n} {kind:?}: the update ended with {v:?}"
            );
            dev.boot().unwrap();
            let b = dev.boot().unwrap();
            assert!(!b.trial, "cut {n} {kind:?}");
            assert_eq!(
                dev.holds(&b, &old, &new),
                [Some(true); 2],
                "cut {n} {kind:?}"
            );
        }
    }
    println!(
        "two-component protocol update: {runs} cut runs; after the cut {old_seen} booted \
         both old, {new_seen} both new, none a mix"
    );
    assert!(runs > 300 && old_seen > 0 && new_seen > 0);
}

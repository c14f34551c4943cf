//! A/B slots: provisioning, update, activation, trial boot, confirmation,
//! rollback, and the checks that refuse what must not happen.

use flashpatch::slots::{Boot, Installed, Layout, Slot};
use flashpatch::ApplierState;
use flashpatch::{ApplyError, Found, Outcome, SlotError as Error, Status};
use flashpatch_tests::device::{DevError, Device};
use flashpatch_tests::firmware_pair;

const E: usize = 4096;

/// The application's side of an update: patch in, image installed.
fn install(dev: &Device<E>, patch: &[u8], chunk: usize) -> Result<Installed, DevError> {
    let mut slots = dev.slots()?;
    let mut mem = ApplierState::new();
    let mut up = slots.begin_update(&mut mem)?;
    for piece in patch.chunks(chunk) {
        if let Status::Done(_) = up.feed(piece)? {
            break;
        }
    }
    up.finish()
}

fn activate(dev: &Device<E>, installed: &Installed) {
    dev.slots().unwrap().activate(installed).unwrap();
}

fn boots(slot: Slot, trial: bool, rolled_back: bool) -> Boot {
    Boot {
        slot,
        trial,
        rolled_back,
    }
}

#[test]
fn a_confirmed_boot_writes_nothing() {
    let (old, _) = firmware_pair(1, 20_000);
    let dev = Device::<E>::provisioned(&old, 32 * 1024, 2);
    let before = dev.stats();
    for _ in 0..5 {
        assert_eq!(dev.boot().unwrap(), boots(Slot::A, false, false));
    }
    let after = dev.stats();
    assert_eq!((after.writes, after.erases), (before.writes, before.erases));
}

#[test]
fn update_activate_trial_confirm() {
    let (old, new) = firmware_pair(2, 30_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let dev = Device::<E>::provisioned(&old, 40 * 1024, 2);
    let inst = install(&dev, &patch, 97).unwrap();
    assert_eq!(inst.slot, Slot::B);
    assert_eq!(inst.outcome, Outcome::Applied);
    assert_eq!(dev.slot_bytes(Slot::B, new.len()), new);
    assert_eq!(
        dev.slot_bytes(Slot::A, old.len()),
        old,
        "the running slot was written"
    );
    // Not active yet.
    assert_eq!(dev.boot().unwrap(), boots(Slot::A, false, false));
    activate(&dev, &inst);
    assert_eq!(dev.boot().unwrap(), boots(Slot::B, true, false));
    let st = dev.slots().unwrap().state().unwrap();
    assert!(st.trial && st.attempts == 1 && st.active == Slot::B);
    dev.slots().unwrap().confirm().unwrap();
    for _ in 0..4 {
        assert_eq!(dev.boot().unwrap(), boots(Slot::B, false, false));
    }
    // And back again: B -> A with the reverse patch.
    let back = host_genpat::diff(&new, &old, &Default::default()).unwrap();
    let inst = install(&dev, &back, 4096).unwrap();
    assert_eq!(inst.slot, Slot::A);
    activate(&dev, &inst);
    assert_eq!(dev.boot().unwrap(), boots(Slot::A, true, false));
    dev.slots().unwrap().confirm().unwrap();
    assert_eq!(dev.boot().unwrap(), boots(Slot::A, false, false));
    assert_eq!(dev.slot_bytes(Slot::A, old.len()), old);
}

#[test]
fn an_unconfirmed_trial_rolls_back_after_n_boots() {
    let (old, new) = firmware_pair(3, 10_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let mut dev = Device::<E>::provisioned(&old, 16 * 1024, 2);
    dev.config.max_boot_attempts = 2;
    let inst = install(&dev, &patch, 1000).unwrap();
    activate(&dev, &inst);
    assert_eq!(dev.boot().unwrap(), boots(Slot::B, true, false));
    assert_eq!(dev.boot().unwrap(), boots(Slot::B, true, false));
    assert_eq!(dev.boot().unwrap(), boots(Slot::A, false, true));
    // The application learns it, and the state stays rolled back.
    let st = dev.slots().unwrap().state().unwrap();
    assert!(st.rolled_back && !st.trial && st.active == Slot::A);
    assert_eq!(dev.boot().unwrap(), boots(Slot::A, false, true));
    // A later update clears the flag once activated.
    let inst = install(&dev, &patch, 1000).unwrap();
    activate(&dev, &inst);
    assert!(!dev.slots().unwrap().state().unwrap().rolled_back);
}

#[test]
fn a_damaged_trial_image_is_never_booted() {
    let (old, new) = firmware_pair(4, 12_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let dev = Device::<E>::provisioned(&old, 16 * 1024, 2);
    let inst = install(&dev, &patch, 333).unwrap();
    activate(&dev, &inst);
    // Damage slot B behind the slot manager's back: one bit.
    {
        let mut f = dev.flash.borrow_mut();
        let at = dev.layout.slot_b as usize + 5000;
        let mut bytes = f.as_bytes()[..].to_vec();
        bytes[at] ^= 0x10;
        let mut fresh = flashpatch::mock::MockFlash::<1, 4, E>::new(bytes.len());
        fresh.preload(0, &bytes);
        *f = fresh;
    }
    assert_eq!(dev.boot().unwrap(), boots(Slot::A, false, true));
}

#[test]
fn what_is_not_allowed_is_refused() {
    let (old, new) = firmware_pair(5, 8_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let dev = Device::<E>::provisioned(&old, 16 * 1024, 2);
    // Provisioning twice.
    assert_eq!(
        dev.slots().unwrap().provision(Slot::B, 100),
        Err(Error::SlotState)
    );
    // A patch for another source: nothing to activate, nothing written to A.
    let (other, _) = firmware_pair(6, 8_000);
    let wrong = host_genpat::diff(&other, &new, &Default::default()).unwrap();
    assert_eq!(
        install(&dev, &wrong, 512).unwrap_err(),
        Error::Apply(ApplyError::NoSuitablePatch)
    );
    // Activating an image the slot does not hold.
    let mut inst = install(&dev, &patch, 512).unwrap();
    inst.image.sha256[0] ^= 1;
    assert_eq!(
        dev.slots().unwrap().activate(&inst),
        Err(Error::ImageMismatch)
    );
    inst.image.sha256[0] ^= 1;
    activate(&dev, &inst);
    // An update while on trial.
    dev.boot().unwrap();
    let mut mem = ApplierState::new();
    assert!(matches!(
        dev.slots().unwrap().begin_update(&mut mem).err(),
        Some(Error::SlotState)
    ));
    // A patch whose target is running: installed in the active slot,
    // activation writes nothing.
    dev.slots().unwrap().confirm().unwrap();
    let again = install(&dev, &patch, 512).unwrap();
    assert_eq!(
        (again.slot, again.outcome),
        (Slot::B, Outcome::AlreadyInstalled(Found::Source))
    );
    let w = dev.stats().writes;
    activate(&dev, &again);
    assert_eq!(dev.stats().writes, w);
}

/// Activation trusts the image its own manager's update read back (it
/// does not hash the slot again) and nothing else: a forged `Installed`,
/// one kept from before the slot was written again or erased, and one
/// handed to a manager built afresh are hashed, and refused if the slot
/// does not hold their image.
#[test]
fn activation_hashes_only_what_its_update_did_not_read_back() {
    let (old, new) = firmware_pair(7, 30_000);
    let mut other = new.clone();
    other[1000] ^= 0x5a;
    let diff = |to: &[u8]| host_genpat::diff(&old, to, &Default::default()).unwrap();
    let (patch, patch2) = (diff(&new), diff(&other));
    let dev = Device::<E>::provisioned(&old, 40 * 1024, 2);
    let update = |slots: &mut flashpatch_tests::device::DevSlots<'_, E>, p: &[u8]| {
        let mut mem = ApplierState::new();
        let mut up = slots.begin_update(&mut mem).unwrap();
        up.feed(p).unwrap();
        up.finish().unwrap()
    };
    let hashes = new.len() as u64;
    let mut slots = dev.slots().unwrap();
    // Another update of the slot since: the older `Installed` is stale.
    let stale = update(&mut slots, &patch);
    let inst = update(&mut slots, &patch2);
    let before = dev.stats().bytes_read;
    assert_eq!(slots.activate(&stale), Err(Error::ImageMismatch));
    assert!(dev.stats().bytes_read - before >= hashes, "not hashed");
    // A forged one.
    let mut forged = inst;
    forged.image.sha256[0] ^= 1;
    assert_eq!(slots.activate(&forged), Err(Error::ImageMismatch));
    // The slot erased since.
    let erased = dev.snapshot();
    {
        let mut s = erased.slots().unwrap();
        let inst = update(&mut s, &patch2);
        s.erase_inactive(0).unwrap();
        assert_eq!(s.activate(&inst), Err(Error::ImageMismatch));
    }
    // Handed to a manager built afresh: hashed, and it holds the image.
    let fresh = dev.snapshot();
    let before = fresh.stats().bytes_read;
    fresh.slots().unwrap().activate(&inst).unwrap();
    assert!(fresh.stats().bytes_read - before >= hashes, "not hashed");
    assert_eq!(fresh.boot().unwrap(), boots(Slot::B, true, false));
    // The normal path: the update's own read-back is trusted.
    let before = dev.stats().bytes_read;
    slots.activate(&inst).unwrap();
    let read = dev.stats().bytes_read - before;
    assert!(read < hashes / 8, "{read} bytes read to activate");
    assert_eq!(dev.boot().unwrap(), boots(Slot::B, true, false));
    assert_eq!(dev.slot_bytes(Slot::B, other.len()), other);
}

#[test]
fn an_empty_device_has_nothing_to_boot() {
    let dev = Device::<E>::provisioned(&[1, 2, 3], 8192, 2);
    // Wipe the state area.
    {
        let mut f = dev.flash.borrow_mut();
        use embedded_storage::nor_flash::NorFlash;
        let s = dev.layout.state;
        f.erase(s, s + dev.layout.state_size).unwrap();
    }
    assert_eq!(dev.boot(), Err(Error::NoBootRecord));
}

#[test]
fn the_state_area_must_hold_two_banks() {
    let flash = core::cell::RefCell::new(flashpatch::mock::MockFlash::<1, 4, 1024>::new(16 * 1024));
    let l = Layout::new(1024, 0, 4096, 4096, 8192, 4096); // banks of 2 KiB: too small
    let [a, b, s] = l.partitions(&flash).unwrap();
    assert!(matches!(
        flashpatch::slots::Slots::new(a, b, s, Default::default()).err(),
        Some(Error::StateArea)
    ));
    let l = Layout::new(1024, 0, 4096, 4096, 8192, 8192); // banks of 4 KiB
    let [a, b, s] = l.partitions(&flash).unwrap();
    assert!(flashpatch::slots::Slots::new(a, b, s, Default::default()).is_ok());
}

/// An update on flash of another geometry (erase `E`, read `R`, write `W`,
/// erased to `X`): cut off by a power loss at its end, resumed from its
/// checkpoint, activated, booted on trial, confirmed. Every record in the
/// state area is aligned to the record alignment the geometry asks for.
fn update_on_geometry<const E: usize, const R: usize, const W: usize, const X: u8>() {
    use flashpatch::mock::MockFlash;
    use flashpatch::slots::{checkpoint_len, record_align, CHECKPOINT_LEN};
    use flashpatch_tests::device::DevSlots;
    let geo = format!("erase {E}, read {R}, write {W}, erased {X:#04x}");
    let (old, new) = firmware_pair(41, 12_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let bank = DevSlots::<'static, E, R, W, X>::MIN_BANK as usize;
    let dev = Device::<E, R, W, X>::provisioned(&old, 16 * 1024, 2 * bank.div_ceil(E));
    assert_eq!(dev.boot().unwrap(), boots(Slot::A, false, false), "{geo}");
    // An update, to count its flash operations.
    let install = |dev: &Device<E, R, W, X>| -> Result<Installed, DevError> {
        let mut slots = dev.slots()?;
        let mut mem = ApplierState::new();
        let mut up = slots.begin_update(&mut mem)?;
        for piece in patch.chunks(97) {
            up.feed(piece)?;
        }
        up.finish()
    };
    let probe = dev.snapshot();
    let before = probe.flash.borrow().ops;
    install(&probe).unwrap();
    let ops = probe.flash.borrow().ops - before;
    // Power fails just before the last one (after the last checkpoint).
    let cut = dev.cut_copy(ops as usize - 1, flashpatch::mock::Cut::Before);
    assert!(install(&cut).is_err(), "{geo}");
    cut.flash.borrow_mut().reboot();
    let checkpoints = E < new.len();
    let mut slots = cut.slots().unwrap();
    let mut mem = ApplierState::new();
    let inst = match slots.resume(&mut mem).unwrap() {
        Some(r) => {
            assert!(
                checkpoints && r.offset > 0,
                "{geo}: resumed from {}",
                r.offset
            );
            let mut up = r.update;
            for piece in patch[r.offset as usize..].chunks(97) {
                up.feed(piece).unwrap();
            }
            up.finish().unwrap()
        }
        None => {
            assert!(!checkpoints, "{geo}: no checkpoint to resume from");
            slots = cut.slots().unwrap();
            install(&cut).unwrap()
        }
    };
    // The records the update left: each a multiple of the alignment long,
    // checkpoints of the length for that alignment (2,432 bytes with
    // 32- and 64-byte alignment: the body fills both to the same length).
    type Part<'a, const E: usize, const R: usize, const W: usize, const X: u8> =
        flashpatch::Partition<'a, MockFlash<R, W, E, X>>;
    let align = record_align::<Part<'static, E, R, W, X>>();
    assert_eq!(align, 32.max(R).max(W), "{geo}");
    assert_eq!(checkpoint_len(align), CHECKPOINT_LEN, "{geo}");
    assert_eq!(checkpoint_len(align) % align, 0, "{geo}");
    {
        let f = cut.flash.borrow();
        let state = &f.as_bytes()[cut.layout.state as usize..];
        let bank_size = cut.layout.state_size as usize / 2 / E * E;
        let (mut records, mut saw_checkpoint) = (0, false);
        for bank in state[..2 * bank_size].chunks(bank_size) {
            let mut at = 0;
            while at + 8 <= bank.len() && bank[at..at + 4] == *b"FPSR" {
                let len = u16::from_le_bytes([bank[at + 6], bank[at + 7]]) as usize;
                assert!(
                    len > 0 && len.is_multiple_of(align),
                    "{geo}: record of {len}"
                );
                if bank[at + 4] == 2 {
                    assert_eq!(len, checkpoint_len(align), "{geo}");
                    saw_checkpoint = true;
                }
                records += 1;
                at += len;
            }
            // What follows the records is erased.
            assert!(bank[at..].iter().all(|&b| b == X), "{geo}");
        }
        assert!(
            records > usize::from(checkpoints) && saw_checkpoint == checkpoints,
            "{geo}"
        );
    }
    slots.activate(&inst).unwrap();
    assert_eq!(cut.boot().unwrap(), boots(Slot::B, true, false), "{geo}");
    cut.slots().unwrap().confirm().unwrap();
    assert_eq!(cut.boot().unwrap(), boots(Slot::B, false, false), "{geo}");
    assert_eq!(cut.slot_bytes(Slot::B, new.len()), new, "{geo}");
}

#[test]
fn updates_on_every_kind_of_flash_geometry() {
    // Read size 32: the slot manager once refused every start (NotAligned).
    update_on_geometry::<4096, 32, 4, 0xFF>();
    // STM32L4/G4: 8-byte writes in 2 KiB pages; here erased to 0x00.
    update_on_geometry::<2048, 1, 8, 0x00>();
    // STM32H7: 32-byte flash words in 128 KiB sectors.
    update_on_geometry::<{ 128 * 1024 }, 1, 32, 0xFF>();
    // 64-byte write and read units: records aligned to 64 bytes.
    update_on_geometry::<256, 64, 64, 0x00>();
    update_on_geometry::<4096, 4, 64, 0xFF>();
    update_on_geometry::<1024, 64, 1, 0xFF>();
}

/// "Already installed" says where: in the running slot (activation then
/// writes nothing), or in the inactive slot an earlier run of the same
/// update left unactivated (activation then switches to it).
#[test]
fn already_installed_says_which_slot_holds_the_image() {
    let (old, new) = firmware_pair(7, 9_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let dev = Device::<E>::provisioned(&old, 16 * 1024, 2);
    let first = install(&dev, &patch, 700).unwrap();
    assert_eq!((first.slot, first.outcome), (Slot::B, Outcome::Applied));
    // The same update again before activation: the image is in B already.
    let w = dev.stats().writes;
    let again = install(&dev, &patch, 700).unwrap();
    assert_eq!(
        (again.slot, again.outcome),
        (Slot::B, Outcome::AlreadyInstalled(Found::Target))
    );
    assert_eq!(again.image, first.image);
    assert_eq!(
        dev.stats().writes,
        w,
        "found in the target: nothing written"
    );
    activate(&dev, &again);
    assert_eq!(dev.boot().unwrap(), boots(Slot::B, true, false));
    dev.slots().unwrap().confirm().unwrap();
    // Once it runs, the same patch finds it in the running slot.
    let running = install(&dev, &patch, 700).unwrap();
    assert_eq!(
        (running.slot, running.outcome),
        (Slot::B, Outcome::AlreadyInstalled(Found::Source))
    );
    let w = dev.stats().writes;
    activate(&dev, &running);
    assert_eq!(dev.stats().writes, w, "the running image: nothing written");
    assert_eq!(dev.boot().unwrap(), boots(Slot::B, false, false));
}

/// The boot record names an image in the inactive slot only while the
/// slot holds it: an update names the image it read back there when it
/// finishes, and forgets the image named there before it first writes the
/// slot. An update whose target the record names in the inactive slot
/// (the same update sent again, or a patch back to the image kept for
/// rollback) finds it there without reading or writing the slot.
#[test]
fn the_boot_record_names_the_inactive_image_only_while_the_slot_holds_it() {
    let (old, new) = firmware_pair(12, 9_000);
    let mut third = new.clone();
    third[4_000..4_100].fill(0x3C);
    let diff = |a: &[u8], b: &[u8]| host_genpat::diff(a, b, &Default::default()).unwrap();
    let dev = Device::<E>::provisioned(&old, 16 * 1024, 2);
    // What one update of the slot reads and writes, from `begin_update` to
    // `finish` (the state area's scan is not in it).
    let update = |patch: &[u8], upto: usize| {
        let mut slots = dev.slots().unwrap();
        let before = dev.stats();
        let mut mem = ApplierState::new();
        let mut up = slots.begin_update(&mut mem).unwrap();
        for piece in patch[..upto].chunks(512) {
            up.feed(piece).unwrap();
        }
        let inst = (upto == patch.len()).then(|| up.finish().unwrap());
        let after = dev.stats();
        (
            inst,
            after.bytes_read - before.bytes_read,
            after.writes - before.writes,
        )
    };
    let named =
        |slot: Slot| dev.slots().unwrap().state().unwrap().images[(slot == Slot::B) as usize];
    let patch = diff(&old, &new);
    let (first, read, _) = update(&patch, patch.len());
    let first = first.unwrap();
    assert_eq!((first.slot, first.outcome), (Slot::B, Outcome::Applied));
    assert_eq!(named(Slot::B), first.image, "named once read back");
    // Sent again: found by the record's word.
    let (again, read_again, writes) = update(&patch, patch.len());
    let again = again.unwrap();
    assert_eq!(again.outcome, Outcome::AlreadyInstalled(Found::Target));
    assert_eq!(writes, 0);
    println!("bytes read by an update: {read} applying it, {read_again} finding it installed");
    assert!(read_again < 1024, "{read_again} bytes read");
    activate(&dev, &again);
    dev.slots().unwrap().confirm().unwrap();
    // Running B; A holds `old`, named for a rollback. A patch back to it.
    assert_eq!(named(Slot::A).size, old.len() as u32);
    let (back, read_back, writes) = update(&diff(&new, &old), diff(&new, &old).len());
    let back = back.unwrap();
    assert_eq!(
        (back.slot, back.outcome),
        (Slot::A, Outcome::AlreadyInstalled(Found::Target))
    );
    assert_eq!(writes, 0);
    assert!(read_back < 1024, "{read_back} bytes read");
    // An update to another image, cut short: the record forgot `old` in
    // A before the first write into A, and the slot no longer holds it.
    let third_patch = diff(&new, &third);
    let (none, _, writes) = update(&third_patch, third_patch.len() - 1);
    assert!(none.is_none() && writes > 0);
    assert_eq!(named(Slot::A), flashpatch::slots::Image::NONE);
    assert!(dev.slot_bytes(Slot::A, old.len()) != old);
    // Now the patch back to `old` is applied, not found.
    let (back, _, _) = update(&diff(&new, &old), diff(&new, &old).len());
    assert_eq!(back.unwrap().outcome, Outcome::Applied);
    assert_eq!(dev.slot_bytes(Slot::A, old.len()), old);
}

/// A boot record that cannot be written (power fails at the update's
/// first state-area operation, where it forgets the image named in the
/// slot it is about to write) leaves the slot manager's boot state as it
/// was: the image is still named, the generation the same. (The record is
/// made in place, where the manager keeps the boot state, and put back.)
#[test]
fn a_record_that_cannot_be_written_leaves_the_boot_state_as_it_was() {
    let (old, new) = firmware_pair(13, 9_000);
    let diff = |a: &[u8], b: &[u8]| host_genpat::diff(a, b, &Default::default()).unwrap();
    let dev = Device::<E>::provisioned(&old, 16 * 1024, 2);
    let first = install(&dev, &diff(&old, &new), 700).unwrap();
    activate(&dev, &first);
    dev.slots().unwrap().confirm().unwrap();
    let mut third = new.clone();
    third[100..200].fill(7);
    let patch = diff(&new, &third);
    let mut slots = dev.slots().unwrap();
    let before = slots.state().unwrap();
    assert_eq!(
        before.images[0].size,
        old.len() as u32,
        "A names the old image"
    );
    let mut mem = ApplierState::new();
    {
        let mut up = slots.begin_update(&mut mem).unwrap();
        dev.flash
            .borrow_mut()
            .cut_at(0, flashpatch::mock::Cut::Before, 1);
        assert!(up.feed(&patch).is_err());
    }
    assert_eq!(slots.state().unwrap(), before);
}

/// A target that is the start of the running image, but shorter, is in
/// the running slot without being the image the boot state records
/// there: an update, which knows the running image from the boot record,
/// does not take it for installed, and applies the entry, with or without
/// the source's identity in it.
#[test]
fn a_target_that_is_a_prefix_of_the_running_image_is_no_installed_image() {
    let (old, _) = firmware_pair(8, 9_000);
    let new = old[..5_000].to_vec();
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    for p in [without_source_id(&patch), patch] {
        let dev = Device::<E>::provisioned(&old, 16 * 1024, 2);
        let inst = install(&dev, &p, 512).unwrap();
        assert_eq!((inst.slot, inst.outcome), (Slot::B, Outcome::Applied));
        activate(&dev, &inst);
        assert_eq!(dev.slot_bytes(Slot::B, new.len()), new);
    }
}

/// A file with entries for other sources, of another size and of the
/// running image's size, before the running image's, and a full image
/// after it: the update picks the running image's entry, whatever the
/// vouched image decides unread and the rest by hashing. A file whose
/// only match is the full image (source size 0) installs that.
#[test]
fn a_vouched_update_picks_its_entry_among_others() {
    let (old, new) = firmware_pair(10, 20_000);
    let mut same_size = old.clone();
    same_size[5] ^= 0x40;
    let shorter = old[..15_000].to_vec();
    let entry = |from: &[u8]| {
        host_genpat::generate(
            from,
            &new,
            &Default::default(),
            &mut host_genpat::NoProgress,
        )
        .unwrap()
        .1
    };
    let (a, b, ours, full) = (entry(&shorter), entry(&same_size), entry(&old), entry(&[]));
    let file = host_genpat::container::assemble([&a[..], &b[..], &ours[..], &full[..]]).unwrap();
    let dev = Device::<E>::provisioned(&old, 32 * 1024, 2);
    let inst = install(&dev, &file, 999).unwrap();
    assert_eq!((inst.slot, inst.outcome), (Slot::B, Outcome::Applied));
    activate(&dev, &inst);
    assert_eq!(dev.slot_bytes(Slot::B, new.len()), new);
    let others = host_genpat::container::assemble([&a[..], &b[..], &full[..]]).unwrap();
    let dev = Device::<E>::provisioned(&old, 32 * 1024, 2);
    let inst = install(&dev, &others, 999).unwrap();
    assert_eq!(inst.outcome, Outcome::Applied);
    activate(&dev, &inst);
    assert_eq!(dev.slot_bytes(Slot::B, new.len()), new);
}

/// `patch` with its entries' source identity records taken out, as a
/// generator that does not write them makes it.
fn without_source_id(patch: &[u8]) -> Vec<u8> {
    let entries: Vec<Vec<u8>> = host_genpat::container::parse(patch)
        .unwrap()
        .into_iter()
        .map(|e| {
            assert!(e.meta.source_sha.is_some(), "genpat writes the record");
            let meta = host_genpat::Metadata {
                source_sha: None,
                ..e.meta.clone()
            };
            host_genpat::container::build_entry(&e.header, &meta, e.body())
        })
        .collect();
    host_genpat::container::assemble(entries.iter().map(Vec::as_slice)).unwrap()
}

/// The boot record vouches for the running image: an update selects an
/// entry that names it as its source without reading the source slot for
/// it, and skips one that names another image of the same size without
/// reading it either. An entry without the name is selected by hashing
/// the slot, as before. Counted in bytes read from the flash: the
/// selection's passes (a CRC-32 and an MD5 of the source) are all of the
/// difference.
#[test]
fn the_boot_record_vouches_for_the_source_of_an_entry_that_names_it() {
    let (old, new) = firmware_pair(9, 30_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let read = |p: &[u8]| {
        let dev = Device::<E>::provisioned(&old, 40 * 1024, 2);
        let before = dev.stats().bytes_read;
        let inst = install(&dev, p, 1000);
        let n = dev.stats().bytes_read - before;
        if let Ok(i) = &inst {
            activate(&dev, i);
            assert_eq!(dev.slot_bytes(Slot::B, new.len()), new);
        }
        (inst.map(|i| i.outcome), n)
    };
    let (named, named_reads) = read(&patch);
    let (hashed, hashed_reads) = read(&without_source_id(&patch));
    assert_eq!(named, Ok(Outcome::Applied));
    assert_eq!(hashed, Ok(Outcome::Applied));
    println!(
        "bytes read by an update: {named_reads} with the source named, {hashed_reads} without"
    );
    // Without the name: one CRC-32 pass over the longer of source and
    // target, and an MD5 pass over the source, more.
    let passes = (old.len().max(new.len()) + old.len()) as u64;
    assert!(
        hashed_reads - named_reads >= passes,
        "{hashed_reads} - {named_reads} < {passes}"
    );
    // An entry for another image of the same size: skipped unread.
    let mut other = old.clone();
    other[100] ^= 1;
    let elsewhere = host_genpat::diff(&other, &new, &Default::default()).unwrap();
    let (skipped, skipped_reads) = read(&elsewhere);
    assert_eq!(skipped, Err(Error::Apply(ApplyError::NoSuitablePatch)));
    assert!(
        skipped_reads < old.len() as u64 / 8,
        "{skipped_reads} bytes read to skip it"
    );
}

/// A flash that fails is named in the error: the state area when the boot
/// record cannot be read, the target slot when the update cannot write,
/// each with the driver's `NorFlashErrorKind`.
#[test]
fn a_failing_flash_is_named_by_its_role() {
    use embedded_storage::nor_flash::NorFlashErrorKind;
    use flashpatch::mock::Cut;
    use flashpatch::{FlashError, FlashRole};
    let (old, new) = firmware_pair(12, 9_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let dev = Device::<E>::provisioned(&old, 16 * 1024, 2);
    let failed = |role| {
        Error::Flash(FlashError {
            role,
            kind: NorFlashErrorKind::Other,
        })
    };
    // The first flash-changing operation of the update is the target
    // slot's first erase: power is cut there.
    dev.flash.borrow_mut().cut_at(0, Cut::Before, 1);
    assert_eq!(install(&dev, &patch, 512), Err(failed(FlashRole::Target)));
    // With the power gone, reading the state area at the next start fails.
    assert!(matches!(dev.slots(), Err(e) if e == failed(FlashRole::State)));
    assert_eq!(
        failed(FlashRole::State).to_string(),
        "the state area flash failed: driver error"
    );
}

#[test]
fn erasing_the_inactive_slot_forgets_its_image_and_survives_power_cuts() {
    use flashpatch::slots::Image;
    use flashpatch_tests::device::cut_points;
    let (old, new) = firmware_pair(9, 12_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let dev = Device::<E>::provisioned(&old, 16 * 1024, 2);
    let inst = install(&dev, &patch, 512).unwrap();
    activate(&dev, &inst);
    assert_eq!(dev.boot().unwrap(), boots(Slot::B, true, false));
    // On trial, slot A is what a rollback returns to: not erased.
    assert_eq!(
        dev.slots().unwrap().erase_inactive(0),
        Err(Error::SlotState)
    );
    assert_eq!(dev.slot_bytes(Slot::A, old.len()), old);
    dev.slots().unwrap().confirm().unwrap();
    let erased = vec![0xFF; 16 * 1024];
    // Every cut of the erase: after the reset B runs, confirmed, and slot
    // A is either still its recorded image or no longer recorded.
    let clean = dev.snapshot();
    clean.flash.borrow_mut().op_trace = Some(Vec::new());
    clean.slots().unwrap().erase_inactive(0).unwrap();
    let trace = clean.flash.borrow_mut().op_trace.take().unwrap();
    assert_eq!(clean.slot_bytes(Slot::A, erased.len()), erased);
    assert_eq!(
        clean.slots().unwrap().state().unwrap().images[0],
        Image::NONE
    );
    assert_eq!(clean.boot().unwrap(), boots(Slot::B, false, false));
    let mut runs = 0;
    for (i, kind) in cut_points(&trace) {
        let cut = dev.cut_copy(i, kind);
        assert!(cut.slots().and_then(|mut s| s.erase_inactive(0)).is_err());
        cut.flash.borrow_mut().reboot();
        assert_eq!(
            cut.boot().unwrap(),
            boots(Slot::B, false, false),
            "cut {i} {kind:?}"
        );
        let rec = cut.slots().unwrap().state().unwrap();
        if rec.images[0] != Image::NONE {
            assert_eq!(cut.slot_bytes(Slot::A, old.len()), old, "cut {i} {kind:?}");
        }
        assert_eq!(cut.slot_bytes(Slot::B, new.len()), new, "cut {i} {kind:?}");
        // Erased again, to the end.
        cut.slots().unwrap().erase_inactive(0).unwrap();
        assert_eq!(cut.slot_bytes(Slot::A, erased.len()), erased);
        runs += 1;
    }
    println!(
        "erase of the inactive slot: {} flash operations, {runs} cuts, 0 failures",
        trace.len()
    );
    assert!(
        trace.contains(&true) && trace.contains(&false),
        "the record's writes and the slot's erase are both cut"
    );
}

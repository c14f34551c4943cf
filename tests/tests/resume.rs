//! Resume: an update cut off by a reset continues from its newest
//! checkpoint, rewriting at most one erase unit of the target, and the
//! sender re-sends only the patch bytes from the offset the device reports.

use flashpatch::mock::Cut;
use flashpatch::slots::Slot;
use flashpatch::ApplierState;
use flashpatch::{Outcome, Status};
use flashpatch_tests::corpus;
use flashpatch_tests::device::{DevUpdate, Device};

const E: usize = 4096;

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
const CHUNK: usize = 1024;

/// Feeds `patch[from..]` in chunks; the consumed offset when it stopped,
/// and whether it completed.
fn feed_from(up: &mut DevUpdate<'_, '_, E>, patch: &[u8], from: usize) -> bool {
    for piece in patch[from..].chunks(CHUNK) {
        match up.feed(piece) {
            Ok(Status::Done(_)) => return true,
            Ok(Status::NeedMore) => {}
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn a_cut_in_the_middle_of_a_large_pair_resumes_from_the_checkpoint() {
    let pairs = corpus();
    let Some((name, old, new)) = pairs
        .iter()
        .find(|(n, _, _)| n == "esp8266-micropython-v1.9.4-v1.10")
    else {
        return;
    };
    let patch = host_genpat::diff(old, new, &Default::default()).unwrap();
    let slot = old.len().max(new.len()) + 2 * E;
    let dev = Device::<E>::provisioned(old, slot, 2);
    let target_at = dev.layout.slot_b;
    let in_target = |a: &u32| (target_at..target_at + dev.layout.slot_size).contains(a);

    // A first run that is cut half way through the target.
    dev.flash.borrow_mut().erase_log = Some(Vec::new());
    let consumed_at_cut;
    {
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let mut up = slots.begin_update(&mut mem).unwrap();
        let half = new.len() as u32 / 2;
        let mut fed = 0;
        while up.progress().written < half {
            up.feed(&patch[fed..fed + CHUNK]).unwrap();
            fed += CHUNK;
        }
        dev.flash.borrow_mut().cut_at(3, Cut::MidWrite, 99);
        assert!(!feed_from(&mut up, &patch, fed));
        consumed_at_cut = up.progress().consumed;
    }
    let before: Vec<u32> = dev
        .flash
        .borrow_mut()
        .erase_log
        .replace(Vec::new())
        .unwrap();
    let done_before: Vec<u32> = before.iter().copied().filter(in_target).collect();
    dev.flash.borrow_mut().reboot();

    // The boot stage still boots the old image.
    assert_eq!(dev.boot().unwrap().slot, Slot::A);

    // Resume: feed only from the reported offset.
    let offset = {
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let r = slots.resume(&mut mem).unwrap().expect("a checkpoint");
        assert_eq!(r.target.sha256.as_slice(), sha256(new).as_slice());
        assert_eq!(r.target.size as usize, new.len());
        let (mut up, offset) = (r.update, r.offset as usize);
        assert!(offset > 0 && offset <= consumed_at_cut as usize);
        assert!(
            feed_from(&mut up, &patch, offset),
            "the resumed update did not complete"
        );
        let inst = up.finish().unwrap();
        assert_eq!(inst.outcome, Outcome::Applied);
        slots.activate(&inst).unwrap();
        offset
    };
    let after: Vec<u32> = dev.flash.borrow_mut().erase_log.take().unwrap();
    let rewritten = after
        .iter()
        .filter(|a| in_target(a) && done_before.contains(a))
        .count();
    println!(
        "{name}: patch {} bytes, cut after {consumed_at_cut} consumed, resumed from {offset} \
         (re-sent {} bytes); target units erased before the cut {}, erased again {rewritten}",
        patch.len(),
        consumed_at_cut as usize - offset,
        done_before.len()
    );
    assert!(rewritten <= 1, "{rewritten} target erase units rewritten");
    // The sender repeats only what the device had taken in since the last
    // checkpoint: a small part of one erase unit's share of the patch.
    assert!(
        consumed_at_cut as usize - offset <= 4096,
        "{} bytes re-sent",
        consumed_at_cut as usize - offset
    );
    assert!(
        done_before.len() > 10,
        "the cut came too early to mean anything"
    );
    assert_eq!(dev.slot_bytes(Slot::B, new.len()), *new);
    assert_eq!(dev.boot().unwrap().slot, Slot::B);
}

#[test]
fn nothing_to_resume_and_stale_checkpoints() {
    let (old, new) = flashpatch_tests::firmware_pair(8, 40_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let dev = Device::<E>::provisioned(&old, 48 * 1024, 2);
    let mut mem = ApplierState::new();
    assert!(dev.slots().unwrap().resume(&mut mem).unwrap().is_none());
    {
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let mut up = slots.begin_update(&mut mem).unwrap();
        assert!(feed_from(&mut up, &patch, 0));
        let inst = up.finish().unwrap();
        slots.activate(&inst).unwrap();
    }
    // The checkpoints belong to the state before activation.
    let mut mem = ApplierState::new();
    assert!(dev.slots().unwrap().resume(&mut mem).unwrap().is_none());
}

/// Regression: a checkpoint write that lost power looped for ever padding
/// the record (the record writer stopped advancing after an error).
#[test]
fn a_cut_while_writing_a_checkpoint_ends_the_update_with_an_error() {
    let (old, new) = flashpatch_tests::firmware_pair(9, 20_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let base = Device::<E>::provisioned(&old, 24 * 1024, 2);
    // Unit 0 of the target: one erase and 64 writes; then the first
    // checkpoint: a bank erase, the boot record copy, 13 writes.
    for at in 60..85u64 {
        let dev = base.snapshot();
        dev.flash.borrow_mut().cut_at(at, Cut::MidWrite, at);
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let mut up = slots.begin_update(&mut mem).unwrap();
        assert!(!feed_from(&mut up, &patch, 0), "cut at {at}");
        assert!(dev.flash.borrow().is_dead(), "cut at {at}");
    }
}

/// Regression: when the checkpoint's input ring held the whole rest of the
/// patch, the resumed update (offset = patch length, nothing left to feed)
/// never decoded it and finished as truncated.
#[test]
fn a_resume_with_nothing_left_to_feed_completes() {
    // The changes are all at the front: the last units are one long copy,
    // so the last checkpoints come after the last patch byte.
    let (old, front) = flashpatch_tests::firmware_pair(10, 30_000);
    let mut new = front[..3000].to_vec();
    new.extend_from_slice(&old[3000..]);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let base = Device::<E>::provisioned(&old, 32 * 1024, 2);
    let dev = base.snapshot();
    let before = dev.flash.borrow().ops;
    // The cuts fall in the feed (`finish` then names the image in the
    // boot record: a cut there is no cut of the feed).
    let ops = {
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let mut up = slots.begin_update(&mut mem).unwrap();
        assert!(feed_from(&mut up, &patch, 0));
        let ops = dev.flash.borrow().ops - before;
        up.finish().unwrap();
        ops
    };
    let mut at_end = 0;
    for at in 0..ops {
        let dev = base.snapshot();
        dev.flash.borrow_mut().cut_at(at, Cut::Before, 1);
        {
            let mut slots = dev.slots().unwrap();
            let mut mem = ApplierState::new();
            let mut up = slots.begin_update(&mut mem).unwrap();
            assert!(!feed_from(&mut up, &patch, 0));
        }
        dev.flash.borrow_mut().reboot();
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let Some(r) = slots.resume(&mut mem).unwrap() else {
            continue;
        };
        let (mut up, offset) = (r.update, r.offset as usize);
        if offset == patch.len() {
            at_end += 1;
        }
        feed_from(&mut up, &patch, offset);
        let inst = up.finish().unwrap();
        assert_eq!(inst.outcome, Outcome::Applied, "cut at {at}");
        assert_eq!(dev.slot_bytes(Slot::B, new.len()), new);
    }
    assert!(
        at_end > 0,
        "no cut left the whole rest of the patch in the ring"
    );
}

/// Regression: a checkpoint of the same patch that does not load (here a
/// probability of 0, out of range, under a good CRC) starts the update
/// over from the patch's start, and it used to start over without what
/// the slot manager had vouched for (the applier's restart forgot it): the
/// running image and the inactive slot were hashed again to select the
/// entry. It now reads what an update begun afresh reads.
#[test]
fn an_update_that_cannot_continue_its_checkpoint_keeps_what_the_boot_record_vouches_for() {
    use flashpatch::slots::PatchId;
    let (old, new) = flashpatch_tests::firmware_pair(14, 30_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let id = PatchId {
        size: patch.len() as u32,
        crc32: flashpatch::crc32::crc32(&patch),
    };
    let base = Device::<E>::provisioned(&old, 32 * 1024, 2);
    // The bytes an update reads from `resume_or_begin` to `finish`.
    let update = |dev: &Device<E>| {
        let mut slots = dev.slots().unwrap();
        let before = dev.stats().bytes_read;
        let mut mem = ApplierState::new();
        let (mut up, from) = slots.resume_or_begin(0, id, &mut mem).unwrap();
        assert_eq!(from, 0, "begun at the start");
        assert!(feed_from(&mut up, &patch, 0));
        assert_eq!(up.finish().unwrap().outcome, Outcome::Applied);
        assert_eq!(dev.slot_bytes(Slot::B, new.len()), new);
        dev.stats().bytes_read - before
    };
    let fresh = update(&base.snapshot());
    // The same update, left half way after a few checkpoints.
    let dev = base.snapshot();
    {
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let (mut up, _) = slots.resume_or_begin(0, id, &mut mem).unwrap();
        up.feed(&patch[..patch.len() / 2]).unwrap();
    }
    // Its newest checkpoint (docs/FORMAT.md, section 5): the first
    // probability of the model (at +303) set to 0, the CRC made good.
    let (state, size) = (dev.layout.state as usize, dev.layout.state_size as usize);
    let area = dev.flash.borrow().as_bytes()[state..state + size].to_vec();
    let mut newest: Option<(u32, usize, usize)> = None;
    for bank in [0, size / 2] {
        let mut at = bank;
        while at + 16 <= bank + size / 2 && area[at..at + 4] == *b"FPSR" {
            let len = u16::from_le_bytes([area[at + 6], area[at + 7]]) as usize;
            let seq = u32::from_le_bytes(area[at + 8..at + 12].try_into().unwrap());
            if area[at + 4] == 2 && newest.is_none_or(|(s, _, _)| s < seq) {
                newest = Some((seq, at, len));
            }
            at += len;
        }
    }
    let (_, at, len) = newest.expect("a checkpoint was written");
    let mut rec = area[at..at + len].to_vec();
    rec[303..305].copy_from_slice(&0u16.to_le_bytes());
    let crc = flashpatch::crc32::crc32(&rec[..len - 4]);
    rec[len - 4..].copy_from_slice(&crc.to_le_bytes());
    dev.flash.borrow_mut().preload(state + at, &rec);
    let again = update(&dev);
    println!("bytes read by an update: {fresh} begun afresh, {again} begun again after a checkpoint that did not load");
    // The checkpoint read is all the difference (the selection's passes
    // over both slots would be three times the image).
    assert!(again < fresh + len as u64 * 2, "{again} vs {fresh}");
}

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

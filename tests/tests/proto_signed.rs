//! A device that holds a public key, through the protocol's install
//! (`proto::device::install_signed`): the key's patch is applied and
//! activated; an unsigned patch, another key's, a tampered one and an
//! older security counter are refused, the running image stays active and
//! the staged patch is cleared. A device without a key applies a signed
//! patch like any other.

use core::cell::RefCell;

use flashpatch::mock::MockFlash;
use flashpatch::proto::device::{install, install_signed, Installed};
use flashpatch::proto::{self, Action, HostMsg, Staging, MAX_CHUNK};
use flashpatch::slots::{Config, Layout, Slot, Slots};
use flashpatch::{ApplierState, Partition, Verdict};
use flashpatch_tests::firmware_pair;
use host_genpat::container;
use host_genpat::keys::SecretKey;
use host_genpat::{GenOptions, Metadata};
use sha2::{Digest, Sha256};

type Flash = MockFlash<1, 4, 4096>;
const SLOT: u32 = 16 * 1024;
const LAYOUT: Layout = Layout::new(4096, 0, SLOT, SLOT, 2 * SLOT, 2 * 4096);
const STAGE_AT: u32 = 2 * SLOT + 2 * 4096;
const STAGE: u32 = 8 * 1024;
const CONFIG: Config = Config {
    max_boot_attempts: 2,
    checkpoint_units: 0,
};
const COUNTER: u32 = 3;

/// The device's key: `None` for a device built without one.
type Key = Option<([u8; 32], u32)>;

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

fn slots(flash: &RefCell<Flash>) -> Slots<Partition<'_, Flash>, Partition<'_, Flash>> {
    let [a, b, s] = LAYOUT.partitions(flash).unwrap();
    Slots::new(a, b, s, CONFIG).unwrap()
}

/// v1 provisioned in slot A.
fn device(v1: &[u8]) -> RefCell<Flash> {
    let mut f = Flash::new((STAGE_AT + STAGE) as usize);
    f.preload(0, v1);
    let flash = RefCell::new(f);
    slots(&flash).provision(Slot::A, v1.len() as u32).unwrap();
    flash
}

/// Stores `patch` as the protocol does and installs it: the result, the
/// slot the boot record then makes active, and whether staging still
/// holds a patch.
fn deliver(flash: &RefCell<Flash>, patch: &[u8], key: Key) -> (Installed, Slot, bool) {
    let mut slots = slots(flash);
    let mut stage = Staging::open(Partition::new(flash, STAGE_AT, STAGE).unwrap()).unwrap();
    let mut act = proto::handle(
        &mut stage,
        &HostMsg::Begin {
            size: patch.len() as u32,
            crc32: flashpatch::crc32::crc32(patch),
        },
    );
    while let Action::Ack {
        offset,
        complete: false,
    } = act
    {
        let end = (offset as usize + MAX_CHUNK).min(patch.len());
        let data = &patch[offset as usize..end];
        act = proto::handle(&mut stage, &HostMsg::Chunk { offset, data });
    }
    assert!(matches!(act, Action::Ack { complete: true, .. }));
    let mut mem = ApplierState::new();
    let mut buf = [0u8; 64];
    let r = match key {
        Some((k, min)) => install_signed(
            &mut slots,
            &mut mem,
            &mut stage,
            &mut buf,
            k,
            min,
            &mut |_| {},
        ),
        None => install(&mut slots, &mut mem, &mut stage, &mut buf, &mut |_| {}),
    };
    (r, slots.active(), stage.resume().is_some())
}

/// A one-entry patch v1 -> v2 with security counter 3, signed by `by`.
fn patch(v1: &[u8], v2: &[u8], by: Option<&SecretKey>) -> Vec<u8> {
    let opts = GenOptions {
        meta: Metadata {
            security_counter: Some(COUNTER),
            ..Default::default()
        },
        ..Default::default()
    };
    let (_, entry) = host_genpat::generate(v1, v2, &opts, &mut host_genpat::NoProgress).unwrap();
    let entry = match by {
        Some(k) => container::sign_entry(&entry, k).unwrap(),
        None => entry,
    };
    container::assemble([entry.as_slice()]).unwrap()
}

#[test]
fn a_device_with_a_key_installs_only_that_keys_patches() {
    let (v1, v2) = firmware_pair(33, 9000);
    let k = key(1);
    let device_key = Some((k.public(), 0));
    let signed = patch(&v1, &v2, Some(&k));
    // The body changed and every CRC made right again: only the signature
    // (it covers the body's CRC-32 and SHA-256) can tell.
    let mut tampered = signed.clone();
    let entry = &container::parse(&signed).unwrap()[0];
    let body_at = signed.len() - entry.body().len();
    tampered[body_at + 10] ^= 0x40;
    let body_crc = flashpatch::crc32::crc32(&tampered[body_at..]);
    let hdr = flashpatch::format::CONTAINER_HEADER_LEN;
    tampered[hdr + 2 + 72..hdr + 2 + 76].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = flashpatch::crc32::crc32(&tampered[hdr..body_at - 4]);
    tampered[body_at - 4..body_at].copy_from_slice(&header_crc.to_le_bytes());
    assert!(container::parse(&tampered).unwrap()[0].body_ok());

    let refused = [
        ("unsigned", patch(&v1, &v2, None), Verdict::Corrupt),
        (
            "another key",
            patch(&v1, &v2, Some(&key(2))),
            Verdict::Corrupt,
        ),
        ("tampered", tampered, Verdict::Corrupt),
    ];
    let flash = device(&v1);
    for (what, p, verdict) in &refused {
        let (r, active, staged) = deliver(&flash, p, device_key);
        assert_eq!((r.verdict, r.restart), (*verdict, false), "{what}");
        assert_eq!(active, Slot::A, "{what}: v1 stays active");
        assert!(!staged, "{what}: the refused patch is cleared");
    }
    // A counter below the device's minimum is refused too, as an error.
    let (r, active, _) = deliver(&flash, &signed, Some((k.public(), COUNTER + 1)));
    assert_eq!((r.verdict, active), (Verdict::Error, Slot::A));
    let rec = slots(&flash).state().unwrap();
    assert_eq!(rec.images[0].sha256, <[u8; 32]>::from(Sha256::digest(&v1)));
    assert!(slots(&flash).holds(Slot::A, &rec.images[0]).unwrap());

    // The key's own patch: applied, activated on trial in slot B.
    let (r, active, staged) = deliver(&flash, &signed, device_key);
    assert_eq!((r.verdict, r.restart, active), (Verdict::Ok, true, Slot::B));
    assert!(!staged);
    let rec = slots(&flash).state().unwrap();
    assert!(rec.trial);
    assert_eq!(rec.images[1].sha256, <[u8; 32]>::from(Sha256::digest(&v2)));
}

#[test]
fn a_device_without_a_key_applies_signed_and_unsigned_patches() {
    let (v1, v2) = firmware_pair(34, 9000);
    for by in [Some(key(1)), None] {
        let flash = device(&v1);
        let (r, active, _) = deliver(&flash, &patch(&v1, &v2, by.as_ref()), None);
        assert_eq!((r.verdict, active), (Verdict::Ok, Slot::B));
    }
}

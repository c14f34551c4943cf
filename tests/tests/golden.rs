//! Golden bytes: the exact patch of a tiny pair, and the exact flash
//! operations of applying it. A change to the format, the coder or the
//! matcher that changes these must be deliberate (and, for the format, bump
//! its version).

use flashpatch::ApplierState;
use flashpatch::{ApplyError as Error, Outcome};
use flashpatch_tests::apply_guarded;

const OLD: &[u8] = b"The quick brown fox jumps over the lazy dog. The quick brown fox jumps again.";
const NEW: &[u8] = b"The quick brown cat jumps over the lazy dog! The quick brown fox jumps again.";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn tiny_patch_bytes_are_pinned() {
    let patch = host_genpat::diff(OLD, NEW, &Default::default()).unwrap();
    let got = hex(&patch);
    println!("golden patch ({} bytes): {got}", patch.len());
    assert_eq!(got, GOLDEN);
    let g = apply_guarded(&patch, OLD, 4096, 5, NEW.len());
    assert_eq!(g.result, Ok(Outcome::Applied));
    assert_eq!(g.target, NEW);
    // Wear: one erase unit, one full 64-byte buffer and the padded rest.
    assert_eq!(
        (g.stats.erases, g.stats.writes, g.stats.bytes_written),
        (1, 2, 80)
    );
    // The patches of earlier builds, without seek kinds and without the
    // source identity, still apply.
    for earlier in [BEFORE_SEEK_KINDS, WITHOUT_SOURCE_ID] {
        let g = apply_guarded(&unhex(earlier), OLD, 4096, 5, NEW.len());
        assert_eq!(g.result, Ok(Outcome::Applied));
        assert_eq!(g.target, NEW);
    }
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// [`GOLDEN`] as builds before the source identity record made it.
const WITHOUT_SOURCE_ID: &str = concat!(
    "4650415401000100",
    "5000", // H = 80
    "01000300",
    "4d000000",
    "782090f2",
    "f9cb655c0b611fb48c74f8dc23996566",
    "4d000000",
    "da136512",
    "7ac8d0d0a9204fbc6501493fb39d1647d7a546f5cd968e501744b97375e2c7a3",
    "0f000000",
    "893d09b3",
    "36d2c539",
    "000817f77e37f421d7de21080c0000",
);

const GOLDEN: &str = concat!(
    "4650415401000100", // container: FPAT, v1, flags 0, 1 entry
    "6200",             // H = 98
    "01000360",         // version 1, flags 0, codec 3, params: carry and seek kinds
    "4d000000",
    "782090f2",
    "f9cb655c0b611fb48c74f8dc23996566", // source size, CRC-32, MD5
    "4d000000",
    "da136512",
    "7ac8d0d0a9204fbc6501493fb39d1647d7a546f5cd968e501744b97375e2c7a3", // target
    "0f000000",
    "893d09b3", // body length, body CRC-32
    "0610",
    "f4a21764cdc872d56c49e846b7d4748e", // source identity: 16 bytes of its SHA-256
    "7a14d12e",                         // header CRC-32
    "000817f77e37f421d7de21080c0000",   // body
);

/// [`GOLDEN`] as builds before seek kinds made it (parameter byte
/// 0x20).
const BEFORE_SEEK_KINDS: &str = concat!(
    "4650415401000100", // container: FPAT, v1, flags 0, 1 entry
    "6200",             // H = 98
    "01000320",         // version 1, flags 0, codec 3, params: carry kinds
    "4d000000",
    "782090f2",
    "f9cb655c0b611fb48c74f8dc23996566", // source size, CRC-32, MD5
    "4d000000",
    "da136512",
    "7ac8d0d0a9204fbc6501493fb39d1647d7a546f5cd968e501744b97375e2c7a3", // target
    "0f000000",
    "893d09b3", // body length, body CRC-32
    "0610",
    "f4a21764cdc872d56c49e846b7d4748e", // source identity: 16 bytes of its SHA-256
    "151b748d",                         // header CRC-32
    "000817f77e37f421d7de21080c0000",   // body
);

/// The same pair as patched by codec 2 (earlier builds): a decoder of this
/// version refuses it with a typed error before writing anything.
const CODEC2: &str = concat!(
    "4650415401000100", // container: FPAT, v1, flags 0, 1 entry
    "5000",             // H = 80
    "01000200",         // version 1, flags 0, codec 2, params 0
    "4d000000",
    "782090f2",
    "f9cb655c0b611fb48c74f8dc23996566", // source size, CRC-32, MD5
    "4d000000",
    "da136512",
    "7ac8d0d0a9204fbc6501493fb39d1647d7a546f5cd968e501744b97375e2c7a3", // target
    "0f000000",
    "0ba81572",                       // body length, body CRC-32
    "bd981668",                       // header CRC-32
    "000817f77e37f421d7ddca1d450000", // body
);

/// The same pair as patched by codec 1 (flashpatch 0.1), refused the same
/// way.
const CODEC1: &str = concat!(
    "4650415401000100",
    "5000",
    "01000100", // codec 1
    "4d000000",
    "782090f2",
    "f9cb655c0b611fb48c74f8dc23996566",
    "4d000000",
    "da136512",
    "7ac8d0d0a9204fbc6501493fb39d1647d7a546f5cd968e501744b97375e2c7a3",
    "0e000000",
    "055a8931",
    "3eb8a332",
    "000817e9e1d2bd798a6787419c00",
);

#[test]
fn retired_codecs_are_refused_with_a_typed_error() {
    for (codec, hexed) in [(1u8, CODEC1), (2, CODEC2)] {
        let patch = unhex(hexed);
        let g = apply_guarded(&patch, OLD, 4096, 5, NEW.len());
        assert_eq!(g.result, Err(Error::Codec { codec, params: 0 }));
        assert_eq!((g.stats.erases, g.stats.writes), (0, 0));
        assert_eq!(
            g.result.unwrap_err().to_string(),
            format!("codec {codec} with parameters 0x00 is not supported")
        );
    }
}

/// Wear of a small update through the slot manager, phase by phase: a
/// 10,000-byte image over 4 KiB erase units, 64-byte write buffer.
/// Update + activation: the target's 3 units (3 erases, 157 writes), two
/// checkpoints (each a bank erase, a 128-byte boot record copy and 38
/// writes of the 2,432-byte record) and the activation record; records are
/// written 64 bytes at a time. Every later session that writes starts a
/// fresh bank: one erase and one record.
#[test]
fn slot_update_wear_is_pinned() {
    use flashpatch::slots::Slot;
    use flashpatch_tests::device::Device;
    use flashpatch_tests::life::CHUNK;
    use flashpatch_tests::pinned;

    use flashpatch::slots::{boot_record_len, BOOT_RECORD_LEN, CHECKPOINT_LEN};
    println!(
        "boot record {BOOT_RECORD_LEN} bytes ({} with two components), checkpoint record \
         {CHECKPOINT_LEN} bytes (codec state {} bytes of it)",
        boot_record_len(2),
        flashpatch::codec::SAVED_LEN
    );
    assert_eq!(
        (BOOT_RECORD_LEN, boot_record_len(2), CHECKPOINT_LEN),
        (128, 224, flashpatch_tests::pinned::CHECKPOINT_LEN)
    );
    let (old, new) = flashpatch_tests::firmware_pair(77, 20_000);
    let (old, new) = (&old[..10_000], &new[..10_000]);
    let patch = host_genpat::diff(old, new, &Default::default()).unwrap();
    let dev = Device::<4096>::provisioned(old, 12 * 1024, 2);
    let mut last = dev.stats();
    let mut phase = |name: &str| {
        let s = dev.stats();
        let d = (
            s.erases - last.erases,
            s.writes - last.writes,
            s.bytes_written - last.bytes_written,
        );
        println!(
            "{name}: {} erases, {} writes, {} bytes written",
            d.0, d.1, d.2
        );
        last = s;
        d
    };
    {
        let mut slots = dev.slots().unwrap();
        let mut mem = ApplierState::new();
        let mut up = slots.begin_update(&mut mem).unwrap();
        for piece in patch.chunks(CHUNK) {
            up.feed(piece).unwrap();
        }
        let inst = up.finish().unwrap();
        slots.activate(&inst).unwrap();
    }
    assert_eq!(phase("update + activate"), pinned::UPDATE_WEAR);
    assert_eq!(dev.boot().unwrap().slot, Slot::B);
    assert_eq!(phase("first boot (trial)"), pinned::TRIAL_BOOT_WEAR);
    dev.slots().unwrap().confirm().unwrap();
    assert_eq!(phase("confirm"), pinned::CONFIRM_WEAR);
    assert!(!dev.boot().unwrap().trial);
    assert_eq!(phase("second boot"), (0, 0, 0));
    assert_eq!(dev.slot_bytes(Slot::B, new.len()), new);
}

//! What choosing an entry costs: the source slot is hashed once per
//! selection, whatever the number of entries (a file of 65,535 entries
//! that all match the source's size and CRC-32 but not its MD5 reads the
//! slot as often as a file of one), and entries of ever new sizes cost at
//! most `MAX_SOURCE_PASSES` passes; counted in bytes read from a mock
//! flash.

use flashpatch::crc32::crc32;
use flashpatch::format::{
    container_header, EntryHeader, SourceId, TargetId, MAX_HEADER_LEN, VERSION,
};
use flashpatch::mock::MockFlash;
use flashpatch::{Applier, ApplierState, ApplyError, Found, Outcome, MAX_SOURCE_PASSES};

type Flash = MockFlash<1, 4, 4096>;

/// A 47 KB image that is not all alike.
fn old_image() -> Vec<u8> {
    (0..47_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// An entry without records or body for `source` and `target` (codec 3,
/// parameters 0), as the format writes it.
fn entry(source: SourceId, target: TargetId) -> Vec<u8> {
    let hdr = EntryHeader {
        version: VERSION,
        flags: 0,
        codec: 3,
        params: 0,
        source,
        target,
        body_len: 0,
        body_crc32: crc32(&[]),
    };
    let mut out = [0u8; 2 + MAX_HEADER_LEN];
    let n = hdr.write(&[], &mut out).unwrap();
    out[..n].to_vec()
}

/// Feeds `file` to an applier over `old` in 4 KiB pieces; the result and
/// the bytes read from the source slot.
fn select(old: &[u8], file: &[u8]) -> (Result<(), ApplyError>, u64) {
    let mut source = Flash::new(64 * 1024);
    source.preload(0, old);
    source.stats = Default::default();
    let mut target = Flash::new(64 * 1024);
    let mut state = ApplierState::new();
    let result = {
        let mut applier: Applier<_, _> = Applier::new(&mut source, &mut target, &mut state);
        let fed = file
            .chunks(4096)
            .try_for_each(|c| applier.feed(c).map(drop));
        fed.and_then(|()| applier.finish().map(drop))
    };
    (result, source.stats.bytes_read)
}

fn file(entries: impl Iterator<Item = Vec<u8>>, count: u16) -> Vec<u8> {
    let mut f = container_header(count).to_vec();
    entries.for_each(|e| f.extend_from_slice(&e));
    f
}

#[test]
fn many_entries_for_the_same_size_hash_the_source_once() {
    let old = old_image();
    let n = old.len() as u32;
    // Each entry's source has OLD's size and CRC-32 but another MD5, and
    // its target OLD's size and CRC-32 but another SHA-256: every entry
    // passes both CRC pre-checks and fails on the digest.
    let count = u16::MAX;
    let crc = crc32(&old);
    let entries = (0..count).map(|i| {
        let mut md5 = [0xA5; 16];
        md5[..2].copy_from_slice(&i.to_le_bytes());
        let mut sha256 = [0x5A; 32];
        sha256[..2].copy_from_slice(&i.to_le_bytes());
        entry(
            SourceId {
                size: n,
                crc32: crc,
                md5,
            },
            TargetId {
                size: n,
                crc32: crc,
                sha256,
            },
        )
    });
    let f = file(entries, count);
    let (result, read) = select(&old, &f);
    println!(
        "{count} entries ({} bytes) matching a {n}-byte source's size and CRC-32: \
         {read} bytes read from the source slot ({:.2} times the image)",
        f.len(),
        read as f64 / n as f64
    );
    assert_eq!(result, Err(ApplyError::NoSuitablePatch));
    // One CRC-32 pass, one SHA-256 pass and one MD5 pass.
    assert!(read <= 3 * n as u64, "{read} bytes read");
}

/// Entries that each name another source size whose CRC-32 and the
/// target's are right but whose digests are not: each new size costs a
/// CRC-32 pass and then an MD5 and a SHA-256 pass, and after
/// `MAX_SOURCE_PASSES` of them the rest are skipped unread.
#[test]
fn entries_of_ever_new_sizes_cost_a_bounded_number_of_passes() {
    let old = old_image();
    let n = old.len() as u32;
    let count = 5000u16;
    let entries = (0..count).map(|i| {
        let size = n - u32::from(i);
        let crc = crc32(&old[..size as usize]);
        entry(
            SourceId {
                size,
                crc32: crc,
                md5: [0xA5; 16],
            },
            TargetId {
                size,
                crc32: crc,
                sha256: [0x5A; 32],
            },
        )
    });
    let (result, read) = select(&old, &file(entries, count));
    let bound = 3 * u64::from(MAX_SOURCE_PASSES) * u64::from(n);
    println!(
        "{count} entries of {count} source sizes with their CRC-32s: {read} bytes read \
         ({:.2} times the image; bound {MAX_SOURCE_PASSES} passes of CRC-32, MD5, SHA-256)",
        read as f64 / f64::from(n)
    );
    assert_eq!(result, Err(ApplyError::NoSuitablePatch));
    assert!(read <= bound, "{read} bytes read, more than {bound}");
}

/// The bound has a price, stated in `MAX_SOURCE_PASSES`: the entry for
/// the device's image is found after `MAX_SOURCE_PASSES - 1` entries of
/// other sizes, and not after `MAX_SOURCE_PASSES`.
#[test]
fn the_entry_for_the_image_is_found_within_the_pass_budget() {
    use md5::Digest as _;
    let old = old_image();
    let n = old.len() as u32;
    let new: Vec<u8> = old.iter().map(|b| b ^ 0x3C).collect();
    let ours = entry(
        SourceId {
            size: n,
            crc32: crc32(&old),
            md5: md5::Md5::digest(&old).into(),
        },
        TargetId {
            size: n,
            crc32: crc32(&new),
            sha256: sha2::Sha256::digest(&new).into(),
        },
    );
    let others = |k: u32| {
        (0..k).map(move |i| {
            entry(
                SourceId {
                    size: 100 + i,
                    crc32: 0,
                    md5: [0; 16],
                },
                TargetId::EMPTY,
            )
        })
    };
    for (k, found) in [
        (u32::from(MAX_SOURCE_PASSES) - 1, true),
        (u32::from(MAX_SOURCE_PASSES), false),
    ] {
        let f = file(others(k).chain([ours.clone()]), k as u16 + 1);
        // The target slot holds NEW already: selecting the entry is all
        // that happens.
        let mut source = Flash::new(64 * 1024);
        source.preload(0, &old);
        let mut target = Flash::new(64 * 1024);
        target.preload(0, &new);
        let mut state = ApplierState::new();
        let mut applier: Applier<_, _> = Applier::new(&mut source, &mut target, &mut state);
        let result = applier.feed(&f).and_then(|_| applier.finish());
        if found {
            assert_eq!(
                result,
                Ok(Outcome::AlreadyInstalled(Found::Target)),
                "after {k} other sizes"
            );
        } else {
            assert_eq!(result, Err(ApplyError::NoSuitablePatch), "after {k}");
        }
    }
}

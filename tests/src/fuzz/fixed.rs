//! Harness (d): raw bytes as a patch, as in harness (a), with the
//! container's checksums made right again after mutation, so that mutated
//! bytes get past the header CRC into entry selection and the body
//! decoder.
//!
//! What a decoder checks before it decodes a body, and what this harness
//! does about each (`docs/FORMAT.md`, sections 1 to 3):
//!
//! | check | fixed up |
//! |---|---|
//! | container magic, version, flags, entry count | no: plain comparisons, which libFuzzer's comparison tracing solves |
//! | `H`, entry version, flags, records | no, likewise |
//! | header CRC-32 (`H`−4) | always, over the bytes as they are |
//! | body CRC-32 (+72) | always, over the body bytes present |
//! | source CRC-32 and MD5 (+8, +12) against the source slot | for the entries the input's mask picks |
//! | target CRC-32 and SHA-256 (+32, +36), checked after decoding | on request, in a second run (below) |

use flashpatch::format::{EntryHeader, CONTAINER_HEADER_LEN, FIXED_HEADER_LEN, MAX_HEADER_LEN};
use flashpatch::{ApplyError, Verdict};
use host_genpat::container::{source_id, target_id};

use super::{check, fixture, verdict, Cursor, SLOT};
use crate::apply_guarded;

/// Walks the entries of `file` as a decoder frames them (header length,
/// header, `body length` bytes of body) and makes each entry's body CRC-32
/// and header CRC-32 right for the bytes there, after `edit` has changed
/// the entry's fixed fields (called with the entry's index). Stops at the
/// first entry whose header length is out of range or whose header is cut
/// short. Returns the number of entry headers fixed up.
pub fn fix_checksums(file: &mut [u8], mut edit: impl FnMut(usize, &mut EntryHeader)) -> usize {
    let mut at = CONTAINER_HEADER_LEN;
    let mut entries = 0;
    while let Some(&[lo, hi]) = file.get(at..at + 2) {
        let h = u16::from_le_bytes([lo, hi]) as usize;
        let body_at = at + 2 + h;
        if !(flashpatch::format::MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&h)
            || body_at > file.len()
        {
            break;
        }
        let fixed = at + 2..at + 2 + FIXED_HEADER_LEN;
        let mut hdr = EntryHeader::from_fixed(file[fixed.clone()].try_into().expect("76 bytes"));
        edit(entries, &mut hdr);
        let body_end = body_at.saturating_add(hdr.body_len as usize);
        let end = body_end.min(file.len());
        hdr.body_crc32 = flashpatch::crc32::crc32(&file[body_at..end]);
        file[fixed].copy_from_slice(&hdr.fixed());
        let crc = flashpatch::crc32::crc32(&file[at..body_at - 4]);
        file[body_at - 4..body_at].copy_from_slice(&crc.to_le_bytes());
        entries += 1;
        if end < body_end {
            break;
        }
        at = end;
    }
    entries
}

/// The source slot as the applier sees it: `old`, then erased flash.
fn source_slot(old: &[u8]) -> Vec<u8> {
    let mut slot = old.to_vec();
    slot.resize(SLOT.max(old.len()), 0xFF);
    slot
}

/// Gives `h` the identity of the source slot's first `h.source.size`
/// bytes, when they are in the slot.
fn run_on(h: &mut EntryHeader, slot: &[u8]) {
    if let Some(image) = slot.get(..h.source.size as usize) {
        h.source = source_id(image);
    }
}

/// Harness (d). Byte 0 picks the running image and the chunk size as in
/// harness (a); in byte 1, bit `i` (0 to 6) gives entry `i` the running
/// image's source identity (for its source size), so that it is selected,
/// and bit 7 asks for a second run when the first decoded a body into an
/// image no entry promised (`TargetMismatch`): every entry then promises
/// what the target slot holds, and the second run must accept that image
/// and, if it writes, write exactly the bytes the first run wrote (the
/// decoder is deterministic). The rest is the
/// patch file, checksums fixed up by [`fix_checksums`].
pub fn apply_fixed(data: &[u8]) -> Verdict {
    let f = fixture();
    let mut c = Cursor(data);
    let (pick, mask) = (c.u8(), c.u8());
    let old = &f.images[pick as usize % f.images.len()];
    let chunk = 1 + (pick as usize / 8) % 97;
    let slot = source_slot(old);
    let picked = |i: usize| i < 7 && mask >> i & 1 != 0;
    let mut file = c.0.to_vec();
    fix_checksums(&mut file, |i, h| {
        if picked(i) {
            run_on(h, &slot)
        }
    });
    let g = apply_guarded(&file, old, SLOT, chunk, SLOT);
    check(&file, old, &g);
    if mask & 0x80 == 0 || g.result != Err(ApplyError::TargetMismatch) {
        return verdict(&g);
    }
    fix_checksums(&mut file, |i, h| {
        if picked(i) {
            run_on(h, &slot)
        }
        if let Some(image) = g.target.get(..h.target.size as usize) {
            h.target = target_id(image);
        }
    });
    let again = apply_guarded(&file, old, SLOT, chunk, SLOT);
    check(&file, old, &again);
    // Before the entry that was decoded only promises changed: an earlier
    // entry, or this one, may now find its image installed (nothing
    // written), or this entry is decoded again. Either way the entries
    // after it are read this time, and they may still be refused.
    match again.result {
        Err(ApplyError::TargetMismatch) => panic!("the image it wrote is refused when promised"),
        _ if again.stats.writes > 0 => assert!(
            again.target == g.target,
            "the same body, now promising its image, wrote other bytes ({:?})",
            again.result
        ),
        _ => {}
    }
    verdict(&again)
}

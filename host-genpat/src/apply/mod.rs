//! Applying a patch on the host, with the device's own code: the `core`
//! applier between two in-memory flash slots ([`slots`]), the source
//! holding the old image and the target erased.

pub mod slots;

use embedded_storage::nor_flash::ReadNorFlash as _;
use flashpatch::format::{EntryHeader, SourceId, TargetId, CONTAINER_HEADER_LEN};
use flashpatch::{Applier, ApplierState, Found, Outcome, Status};

pub use slots::{slot_len, SlotError, SourceSlot, TargetSlot};

/// The applier exactly as `genpat apply` instantiates it (its RAM is this
/// plus [`HostApplierState`]).
pub type HostApplier<'a, 'old> = Applier<'a, &'a mut SourceSlot<'old>, &'a mut TargetSlot, 64, 64>;
/// The working memory of [`HostApplier`].
pub type HostApplierState = ApplierState<64, 64>;
/// Errors of host-side apply: the applier's.
pub use flashpatch::ApplyError;

/// The headers of `patch`'s entries, in order, up to the first that is
/// not sound (a header CRC that does not match, a length past the end).
fn headers(patch: &[u8]) -> impl Iterator<Item = EntryHeader> + '_ {
    let count = patch
        .get(6..8)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let mut at = CONTAINER_HEADER_LEN;
    (0..count).map_while(move |_| {
        let h = patch
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)?;
        let Ok((e, _)) = EntryHeader::parse(patch.get(at + 2..at + 2 + h)?) else {
            return None;
        };
        at += 2 + h + e.body_len as usize;
        Some(e)
    })
}

/// The target slot size to give a patch: the largest target among the
/// entries that could apply to an image of `old_len` bytes (header CRC
/// sound, source no longer than that). A damaged or hostile file therefore cannot make the host
/// reserve memory its headers do not vouch for; it still gets the core's
/// own verdict.
pub fn target_room(patch: &[u8], old_len: usize) -> usize {
    headers(patch)
        .filter(|e| e.source.size as usize <= old_len)
        .map(|e| e.target.size as usize)
        .max()
        .unwrap_or(0)
}

/// The source of `patch` that `source` most likely holds: the one source
/// identity among the entries that fit the slot, or when there are
/// several, the one whose CRC-32 is the slot's (as the applier reads it:
/// the image, then `0xFF`). None when no entry, or entries for different
/// sources, pass that pre-check.
pub fn likely_source(patch: &[u8], source: &SourceSlot) -> Option<SourceId> {
    let mut fit: Vec<SourceId> = headers(patch)
        .map(|e| e.source)
        .filter(|id| id.size as usize <= source.capacity())
        .collect();
    fit.sort_by_key(|id| (id.size, id.crc32, id.md5));
    fit.dedup();
    if fit.len() > 1 {
        // The applier checks size and CRC-32 itself; with one candidate
        // they need not be checked here too.
        fit.retain(|id| source.prefix_crc32(id.size as usize) == id.crc32);
    }
    match fit[..] {
        [id] => Some(id),
        _ => None,
    }
}

/// Feeds `patch` in pieces of `chunk` bytes (0: all at once) to the applier
/// over a source slot holding `old`. Returns the outcome and the target
/// image (for "already installed": the image already in place).
pub fn apply_chunked(
    patch: &[u8],
    old: &[u8],
    chunk: usize,
) -> Result<(Outcome, Vec<u8>), ApplyError> {
    let target = TargetSlot::new(target_room(patch, old.len()));
    apply_with(
        patch,
        old,
        chunk,
        &Policy::default(),
        &mut |_, _| {},
        target,
    )
}

/// What a device requires of a patch beyond its integrity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy {
    /// Entries must be signed by this Ed25519 public key.
    pub key: Option<[u8; flashpatch::sign::PUBLIC_KEY_LEN]>,
    /// ... with at least this security counter.
    pub min_counter: u32,
    /// The component to apply (entries for others are skipped).
    pub component: u8,
}

/// As [`apply_chunked`], under `policy`, into `target` (a slot of at least
/// [`target_room`] bytes); `progress(consumed, total)` is called after each
/// piece. The source slot reads `old` in place, and the target slot's
/// memory becomes the returned image.
pub fn apply_with(
    patch: &[u8],
    old: &[u8],
    chunk: usize,
    policy: &Policy,
    progress: &mut dyn FnMut(usize, usize),
    mut target: TargetSlot,
) -> Result<(Outcome, Vec<u8>), ApplyError> {
    let mut source = SourceSlot::new(old);
    // The applier checks the source's MD5 before it writes anything, and
    // that hash is as long as the rest of its work. So the entry the
    // source most likely is for is vouched for, the applier runs, and the
    // source is hashed on another thread meanwhile; the result stands
    // only if that MD5 is the one vouched for. If not, the applier runs
    // again over a fresh target slot, hashing the source itself.
    let guess = likely_source(patch, &source);
    let (first, confirmed) = std::thread::scope(|s| {
        let slot = SourceSlot::new(old);
        let hashing = guess.map(|g| s.spawn(move || slot.prefix_md5(g.size as usize)));
        let vouched = guess.map(|g| (g.size, g.md5));
        let first = run(
            &mut source,
            &mut target,
            patch,
            chunk,
            policy,
            vouched,
            progress,
        );
        let confirmed = match (hashing, guess) {
            (Some(h), Some(g)) => h.join().ok() == Some(g.md5),
            _ => true,
        };
        (first, confirmed)
    });
    let (outcome, id) = if confirmed {
        first?
    } else {
        // The same memory, erased: a hostile target size is not reserved twice.
        target.erase_all();
        run(
            &mut source,
            &mut target,
            patch,
            chunk,
            policy,
            None,
            progress,
        )?
    };
    let size = id.size as usize;
    if outcome == Outcome::AlreadyInstalled(Found::Source) {
        // Found at the start of the source slot, which holds it whole.
        return Ok((outcome, source.prefix(size)));
    }
    Ok((outcome, target.into_image(size)))
}

/// Feeds `patch` to a [`HostApplier`] between `source` and `target`: the
/// outcome and the image it refers to.
fn run(
    source: &mut SourceSlot,
    target: &mut TargetSlot,
    patch: &[u8],
    chunk: usize,
    policy: &Policy,
    vouched: Option<(u32, [u8; 16])>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Outcome, TargetId), ApplyError> {
    let mut state = HostApplierState::new();
    let mut applier: HostApplier = Applier::new(source, target, &mut state);
    applier.set_component(policy.component);
    if let Some((size, md5)) = vouched {
        applier.vouch_source(size, md5);
    }
    if let Some(key) = policy.key {
        applier.require_signature(key, policy.min_counter);
    }
    let step = if chunk == 0 {
        patch.len().max(1)
    } else {
        chunk
    };
    let mut status = Status::NeedMore;
    for (i, piece) in patch.chunks(step).enumerate() {
        status = applier.feed(piece)?;
        progress(((i + 1) * step).min(patch.len()), patch.len());
    }
    let outcome = match status {
        Status::Done(o) => o,
        Status::NeedMore => applier.finish()?,
    };
    Ok((outcome, applier.result_target().unwrap_or(TargetId::EMPTY)))
}

/// Applies `patch` to `old` in one piece.
pub fn apply(patch: &[u8], old: &[u8]) -> Result<(Outcome, Vec<u8>), ApplyError> {
    apply_chunked(patch, old, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(old: &[u8], new: &[u8]) -> Vec<u8> {
        crate::diff(old, new, &Default::default()).unwrap()
    }

    /// Regression: a target of erased bytes only is "already installed" in
    /// the erased target slot, and the image was then taken from the source
    /// slot, so OUT got the start of OLD instead.
    #[test]
    fn erased_target_found_in_the_target_slot_is_the_image() {
        let old: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let new = vec![0xFF; 3000];
        let (outcome, image) = apply(&patch(&old, &new), &old).unwrap();
        assert_eq!(outcome, Outcome::AlreadyInstalled(Found::Target));
        assert!(image == new);
    }

    /// A target that is the source slot's start, erased bytes after the
    /// image included, is found in the source slot.
    #[test]
    fn target_found_in_the_source_slot_is_the_image() {
        let old: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        for new in [old[..1000].to_vec(), [&old[..], &[0xFF; 100]].concat()] {
            let (outcome, image) = apply(&patch(&old, &new), &old).unwrap();
            assert_eq!(outcome, Outcome::AlreadyInstalled(Found::Source));
            assert!(image == new, "{} bytes", new.len());
        }
    }

    /// `patch` with every entry's source MD5 replaced by `md5` (headers
    /// rebuilt, so they are sound).
    fn with_source_md5(patch: &[u8], md5: [u8; 16]) -> Vec<u8> {
        let rebuilt: Vec<Vec<u8>> = crate::container::parse(patch)
            .unwrap()
            .iter()
            .map(|e| {
                let mut h = e.header;
                h.source.md5 = md5;
                crate::container::build_entry(&h, &e.meta, e.body())
            })
            .collect();
        crate::container::assemble(rebuilt.iter().map(|e| &e[..])).unwrap()
    }

    fn image(seed: u32, len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(seed) >> 7) as u8)
            .collect()
    }

    /// An entry that names OLD's size and CRC-32 but another MD5 is
    /// vouched for, applied, and found out by the hash on the other
    /// thread: the apply is run again without vouching, and refuses the
    /// patch as it always did.
    #[test]
    fn a_wrong_guess_is_refused_as_before() {
        let (old, new) = (image(31, 9000), image(37, 9100));
        let lying = with_source_md5(&patch(&old, &new), [0x5A; 16]);
        let guess = likely_source(&lying, &SourceSlot::new(&old)).unwrap();
        assert_eq!(guess.md5, [0x5A; 16]);
        let e = apply(&lying, &old).unwrap_err();
        assert!(e.verdict() == flashpatch::Verdict::NoSuitablePatch, "{e}");
    }

    /// Entries for two sources of one size: the CRC-32 tells which one
    /// the slot holds; a third image of that size is neither.
    #[test]
    fn the_likely_source_is_told_by_crc_among_equal_sizes() {
        let (v1, v2, v3, new) = (
            image(31, 9000),
            image(33, 9000),
            image(35, 9000),
            image(37, 9100),
        );
        let file = crate::container::assemble(
            [patch(&v1, &new), patch(&v2, &new)]
                .iter()
                .map(|p| &p[CONTAINER_HEADER_LEN..]),
        )
        .unwrap();
        for v in [&v1, &v2] {
            let id = crate::container::source_id(v);
            assert_eq!(likely_source(&file, &SourceSlot::new(v)), Some(id));
            assert!(apply(&file, v).unwrap() == (Outcome::Applied, new.clone()));
        }
        assert_eq!(likely_source(&file, &SourceSlot::new(&v3)), None);
        assert!(apply(&file, &v3).unwrap_err().verdict() == flashpatch::Verdict::NoSuitablePatch);
        // One source in the file: it is the guess, CRC or not.
        let one = patch(&v1, &new);
        let id = crate::container::source_id(&v1);
        assert_eq!(likely_source(&one, &SourceSlot::new(&v3)), Some(id));
        assert!(apply(&one, &v3).unwrap_err().verdict() == flashpatch::Verdict::NoSuitablePatch);
    }

    /// Regression: an 88-byte file claiming a 4 GiB target made the host
    /// reserve 1 GiB before the core refused it.
    #[test]
    fn bogus_target_size_reserves_nothing() {
        let mut file = flashpatch::format::container_header(1).to_vec();
        file.extend_from_slice(&80u16.to_le_bytes());
        let mut header = [0u8; 80];
        header[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        file.extend_from_slice(&header);
        assert_eq!(target_room(&file, 3), 0);
        assert!(apply(&file, b"old").unwrap_err().verdict() == flashpatch::Verdict::Corrupt);
    }
}

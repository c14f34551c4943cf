//! Applying a patch on the host, with the device's own code: the `core`
//! applier between two in-memory flash slots ([`slots`]), the source
//! holding the old image and the target erased.

pub mod slots;

use embedded_storage::nor_flash::ReadNorFlash as _;
use flashpatch::format::{EntryHeader, TargetId, CONTAINER_HEADER_LEN};
use flashpatch::mock::MockError;
use flashpatch::{Applier, ApplierState, Error, Outcome, Status};
use sha2::Digest as _;

pub use slots::{slot_len, SourceSlot, TargetSlot};

/// The applier exactly as `genpat apply` instantiates it (its RAM is this
/// plus [`HostApplierState`]).
pub type HostApplier<'a, 'old> = Applier<'a, &'a mut SourceSlot<'old>, &'a mut TargetSlot, 64, 64>;
/// The working memory of [`HostApplier`].
pub type HostApplierState = ApplierState<64, 64>;
/// Errors of host-side apply.
pub type ApplyError = Error<MockError>;

/// The target slot size to give a patch: the largest target among the
/// entries that could apply to an image of `old_len` bytes (header CRC
/// sound, source no longer than that). A damaged or hostile file therefore cannot make the host
/// reserve memory its headers do not vouch for; it still gets the core's
/// own verdict.
pub fn target_room(patch: &[u8], old_len: usize) -> usize {
    let mut at = CONTAINER_HEADER_LEN;
    let mut room = 0usize;
    let count = patch
        .get(6..8)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    for _ in 0..count {
        let Some(h) = patch
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        else {
            break;
        };
        let Some(Ok((e, _))) = patch.get(at + 2..at + 2 + h).map(EntryHeader::parse) else {
            break;
        };
        if e.source.size as usize <= old_len {
            room = room.max(e.target.size as usize);
        }
        at += 2 + h + e.body_len as usize;
    }
    room
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
    let (outcome, id) = run(&mut source, &mut target, patch, chunk, policy, progress)?;
    let size = id.size as usize;
    if outcome == Outcome::AlreadyInstalled && size <= source.capacity() {
        // The applier looks for the target in the source slot first, then
        // in the target slot, which is erased here: an image of erased
        // bytes only is found there.
        let head = source.prefix(size);
        if <[u8; 32]>::from(sha2::Sha256::digest(&head)) == id.sha256 {
            return Ok((outcome, head));
        }
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
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Outcome, TargetId), ApplyError> {
    let mut state = HostApplierState::new();
    let mut applier: HostApplier = Applier::new(source, target, &mut state);
    applier.set_component(policy.component);
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
        assert_eq!(outcome, Outcome::AlreadyInstalled);
        assert!(image == new);
    }

    /// A target that is the source slot's start, erased bytes after the
    /// image included, is found in the source slot.
    #[test]
    fn target_found_in_the_source_slot_is_the_image() {
        let old: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        for new in [old[..1000].to_vec(), [&old[..], &[0xFF; 100]].concat()] {
            let (outcome, image) = apply(&patch(&old, &new), &old).unwrap();
            assert_eq!(outcome, Outcome::AlreadyInstalled);
            assert!(image == new, "{} bytes", new.len());
        }
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

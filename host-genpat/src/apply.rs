//! Applying a patch on the host, with the device's own code: the `core`
//! applier over an in-memory NOR flash holding a source and a target slot.

use core::cell::RefCell;

use flashpatch::format::{EntryHeader, CONTAINER_HEADER_LEN};
use flashpatch::mock::{MockError, MockFlash};
use flashpatch::{Applier, ApplierState, Error, Outcome, Partition, PartitionError, Status};

/// The flash geometry of host-side apply: byte reads, 4-byte writes, 4 KiB
/// erase units (a common internal-flash layout).
pub type HostFlash = MockFlash<1, 4, 4096>;
/// The applier exactly as `genpat apply` instantiates it (its RAM is this
/// plus [`HostApplierState`]).
pub type HostApplier<'a> = Applier<'a, Partition<'a, HostFlash>, Partition<'a, HostFlash>, 64, 64>;
/// The working memory of [`HostApplier`].
pub type HostApplierState = ApplierState<64, 64>;
/// Errors of host-side apply.
pub type ApplyError = Error<PartitionError<MockError>>;

const ERASE: usize = 4096;

/// The target slot size to give a patch: the largest target among the
/// entries that could apply to `old` (header CRC sound, source no longer
/// than `old`). A damaged or hostile file therefore cannot make the host
/// reserve memory its headers do not vouch for; it still gets the core's
/// own verdict.
fn target_room(patch: &[u8], old: &[u8]) -> usize {
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
        if e.source.size as usize <= old.len() {
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
    apply_owned(
        patch,
        old.to_vec(),
        chunk,
        &Policy::default(),
        &mut |_, _| {},
    )
    .map_err(|(e, _)| e)
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

/// As [`apply_chunked`], under `policy`, but takes `old` by value: its buffer becomes the
/// source slot and then the returned image, so a large image is neither
/// copied nor mapped twice. `progress(consumed, total)` is called after each
/// piece. On failure, `old` is handed back with the error (the applier
/// never writes the source slot).
#[allow(clippy::type_complexity)]
pub fn apply_owned(
    patch: &[u8],
    old: Vec<u8>,
    chunk: usize,
    policy: &Policy,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Outcome, Vec<u8>), (ApplyError, Vec<u8>)> {
    let old_len = old.len();
    let src_len = old_len.div_ceil(ERASE).max(1) * ERASE;
    let tgt_len = target_room(patch, &old).div_ceil(ERASE).max(1) * ERASE;
    let flash = RefCell::new(HostFlash::with_image(old, src_len + tgt_len));
    let mut state = HostApplierState::new();
    let mut run = || {
        let part = |o: usize, l: usize| {
            Partition::new(&flash, o as u32, l as u32).expect("slots are erase-aligned")
        };
        let mut applier: HostApplier =
            Applier::new(part(0, src_len), part(src_len, tgt_len), &mut state);
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
        Ok((
            outcome,
            applier.result_target().map_or(0, |t| t.size as usize),
        ))
    };
    let result = run();
    let mut bytes = flash.into_inner().into_bytes();
    match result {
        Ok((outcome, size)) => {
            if outcome == Outcome::Applied {
                bytes.drain(..src_len);
            }
            bytes.truncate(size);
            Ok((outcome, bytes))
        }
        Err(e) => {
            bytes.truncate(old_len);
            Err((e, bytes))
        }
    }
}

/// Applies `patch` to `old` in one piece.
pub fn apply(patch: &[u8], old: &[u8]) -> Result<(Outcome, Vec<u8>), ApplyError> {
    apply_chunked(patch, old, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: an 88-byte file claiming a 4 GiB target made the host
    /// reserve 1 GiB before the core refused it.
    #[test]
    fn bogus_target_size_reserves_nothing() {
        let mut file = flashpatch::format::container_header(1).to_vec();
        file.extend_from_slice(&80u16.to_le_bytes());
        let mut header = [0u8; 80];
        header[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        file.extend_from_slice(&header);
        assert_eq!(target_room(&file, b"old"), 0);
        assert!(apply(&file, b"old").unwrap_err().verdict() == flashpatch::Verdict::Corrupt);
    }
}

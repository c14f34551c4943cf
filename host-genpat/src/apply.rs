//! Applying a patch on the host, with the device's own code: the `core`
//! applier over an in-memory NOR flash holding a source and a target slot.

use core::cell::RefCell;

use flashpatch::mock::{MockError, MockFlash};
use flashpatch::{Applier, Error, Outcome, Partition, PartitionError, Status};

/// The flash geometry of host-side apply: byte reads, 4-byte writes, 4 KiB
/// erase units (a common internal-flash layout).
pub type HostFlash = MockFlash<1, 4, 4096>;
/// The applier exactly as `genpat apply` instantiates it.
pub type HostApplier<'a> = Applier<Partition<'a, HostFlash>, Partition<'a, HostFlash>, 64, 64>;
/// Errors of host-side apply.
pub type ApplyError = Error<PartitionError<MockError>>;

const ERASE: usize = 4096;

/// The target slot size to give a patch: the largest target of its entries,
/// read leniently (a damaged file still gets the core's own verdict).
fn target_room(patch: &[u8]) -> usize {
    let mut at = format_header_len();
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
        let field = |o: usize| {
            patch
                .get(at + 2 + o..at + 6 + o)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (Some(size), Some(body)) = (field(28), field(68)) else {
            break;
        };
        room = room.max(size as usize);
        at += 2 + h + body as usize;
    }
    room.min(1 << 30)
}

fn format_header_len() -> usize {
    flashpatch::format::CONTAINER_HEADER_LEN
}

/// Feeds `patch` in pieces of `chunk` bytes (0: all at once) to the applier
/// over a source slot holding `old`. Returns the outcome and the target
/// image (for "already installed": the image already in place).
pub fn apply_chunked(
    patch: &[u8],
    old: &[u8],
    chunk: usize,
) -> Result<(Outcome, Vec<u8>), ApplyError> {
    apply_with_progress(patch, old, chunk, &mut |_, _| {})
}

/// As [`apply_chunked`], calling `progress(consumed, total)` after each piece.
pub fn apply_with_progress(
    patch: &[u8],
    old: &[u8],
    chunk: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Outcome, Vec<u8>), ApplyError> {
    let src_len = old.len().div_ceil(ERASE).max(1) * ERASE;
    let tgt_len = target_room(patch).div_ceil(ERASE).max(1) * ERASE;
    let mut flash = HostFlash::new(src_len + tgt_len);
    flash.preload(0, old);
    let flash = RefCell::new(flash);
    let part = |o: usize, l: usize| {
        Partition::new(&flash, o as u32, l as u32).expect("slots are erase-aligned")
    };
    let mut applier: HostApplier = Applier::new(part(0, src_len), part(src_len, tgt_len));
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
    let size = applier.result_target().map_or(0, |t| t.size as usize);
    let flash = flash.into_inner();
    let image = match outcome {
        Outcome::Applied => &flash.as_bytes()[src_len..src_len + size],
        Outcome::AlreadyInstalled => &flash.as_bytes()[..size],
    };
    Ok((outcome, image.to_vec()))
}

/// Applies `patch` to `old` in one piece.
pub fn apply(patch: &[u8], old: &[u8]) -> Result<(Outcome, Vec<u8>), ApplyError> {
    apply_chunked(patch, old, 0)
}

//! The fuzzing harnesses, shared by the `cargo fuzz` targets in `fuzz/` and
//! by `tests/tests/fuzz_replay.rs`, which replays seeded inputs and every
//! input that once failed. Each harness panics when a property breaks:
//!
//! - nothing outside the target slot changes ([`apply_guarded`] checks
//!   every byte);
//! - "applied" means the target slot holds exactly the image that an entry
//!   for the running source promises (size and SHA-256);
//! - "already installed" means nothing was erased or written, and an entry
//!   promises the image that is already there.
//!
//! Harness (d), [`apply_fixed`], is harness (a) with the container's
//! checksums made right after mutation (`fuzz/fixed.rs`).

mod fixed;

use std::sync::OnceLock;

use flashpatch::format::{tag, EntryHeader};
use flashpatch::{Found, Outcome, Verdict};
use host_genpat::container::{self, Entry, Metadata};
use sha2::{Digest, Sha256};

use crate::{apply_guarded, apply_guarded_with, firmware_pair, Guarded};
pub use fixed::{apply_fixed, fix_checksums};

/// Reads fuzz input as a stream of small numbers; zeros once it runs out.
pub struct Cursor<'a>(pub &'a [u8]);

impl Cursor<'_> {
    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.u32() as usize % n
    }

    /// Whether the input is used up.
    pub fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// The images and the valid three-entry patch file the harnesses start from.
pub struct Fixture {
    /// Images a device may run: two sources of `new`, the source of the
    /// third entry, `new` itself and an unrelated image.
    pub images: Vec<Vec<u8>>,
    /// The target of the first two entries.
    pub new: Vec<u8>,
    /// A multi-patch file: `images[0]` → `new`, `images[1]` → `new`,
    /// `images[2]` → another image.
    pub file: Vec<u8>,
    /// The same entries, each signed by [`Fixture::key`] with security
    /// counter 1.
    pub signed: Vec<u8>,
    /// The public key of `signed`.
    pub key: [u8; 32],
    /// The images the entries produce.
    pub targets: Vec<Vec<u8>>,
}

/// Slot size of every harness run: room for every fixture image.
pub const SLOT: usize = 8192;

/// The shared fixture (built once per process).
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Distinct odd seeds: `firmware_pair` makes even seeds odd.
        let (old1, new) = firmware_pair(11, 3000);
        let (old2, _) = firmware_pair(13, 2600);
        let (old3, new3) = firmware_pair(15, 1800);
        let (unrelated, _) = firmware_pair(17, 2000);
        let opts = Default::default();
        let entries: Vec<Vec<u8>> = [(&old1, &new), (&old2, &new), (&old3, &new3)]
            .iter()
            .map(|(o, n)| {
                let file = host_genpat::diff(o, n, &opts).expect("fixture patch");
                container::parse(&file).expect("fixture parses")[0]
                    .bytes
                    .clone()
            })
            .collect();
        let file = container::assemble(entries.iter().map(Vec::as_slice)).expect("fixture file");
        let secret = host_genpat::keys::SecretKey::from_seed([9; 32]);
        let signed: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| container::sign_entry(e, &secret).expect("fixture entries sign"))
            .collect();
        let signed = container::assemble(signed.iter().map(Vec::as_slice)).expect("fixture file");
        Fixture {
            images: vec![old1, old2, old3, new.clone(), unrelated],
            targets: vec![new.clone(), new3],
            new,
            file,
            signed,
            key: secret.public(),
        }
    })
}

/// `entry` (from `build_entry`) with the trust records appended as
/// `sign_entry` lays them out, their values given. Written by hand, as the
/// header's fixed fields may hold values a parser refuses.
fn with_trust(entry: &[u8], sha: &[u8; 32], sig: &[u8; 64]) -> Vec<u8> {
    let body_at = 2 + u16::from_le_bytes([entry[0], entry[1]]) as usize;
    let mut header = entry[2..body_at - 4].to_vec();
    header.extend_from_slice(&[tag::BODY_SHA256, 32]);
    header.extend_from_slice(sha);
    header.extend_from_slice(&[tag::SIGNATURE, 64]);
    header.extend_from_slice(sig);
    let h = header.len() + 4;
    let mut out = (h as u16).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    let crc = flashpatch::crc32::crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&entry[body_at..]);
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Checks the properties of one run of `file` over a source slot holding
/// `old`; `g` is what [`apply_guarded`] returned.
fn check(file: &[u8], old: &[u8], g: &Guarded) {
    let Ok(outcome) = g.result else { return };
    let entries = container::parse(file)
        .unwrap_or_else(|e| panic!("the applier accepted a file the parser refuses: {e}"));
    // The source slot: `old`, then erased flash.
    let mut slot = old.to_vec();
    slot.resize(SLOT.max(old.len()), 0xFF);
    let runs_source = |h: &EntryHeader| {
        let size = h.source.size as usize;
        size <= slot.len() && h.source.md5 == <[u8; 16]>::from(md5::Md5::digest(&slot[..size]))
    };
    match outcome {
        Outcome::Applied => {
            assert!(g.stats.writes > 0, "applied without writing");
            let ok = entries.iter().any(|e: &Entry| {
                let size = e.header.target.size as usize;
                runs_source(&e.header)
                    && size <= g.target.len()
                    && sha256(&g.target[..size]) == e.header.target.sha256
            });
            assert!(ok, "applied, but the target is no entry's promised image");
        }
        Outcome::AlreadyInstalled(found) => {
            assert_eq!(
                (g.stats.erases, g.stats.writes),
                (0, 0),
                "'already installed' changed the flash"
            );
            // The image is in the slot the outcome names.
            let there: &[u8] = match found {
                Found::Source => &slot,
                Found::Target => &g.target,
            };
            let holds = |h: &EntryHeader| {
                let size = h.target.size as usize;
                size <= there.len() && h.target.sha256 == sha256(&there[..size])
            };
            assert!(
                entries.iter().any(|e| holds(&e.header)),
                "'already installed' in the {found:?} slot, but no entry's image is there"
            );
        }
    }
}

/// Harness (a): arbitrary bytes as a patch. The first byte picks the
/// running image and the feeding chunk size.
pub fn apply_bytes(data: &[u8]) -> Verdict {
    let f = fixture();
    let (&pick, patch) = data.split_first().unwrap_or((&0, &[]));
    let old = &f.images[pick as usize % f.images.len()];
    let chunk = 1 + (pick as usize / 8) % 97;
    let g = apply_guarded(patch, old, SLOT, chunk, SLOT);
    check(patch, old, &g);
    verdict(&g)
}

/// The VPatch verdict of a run.
fn verdict(g: &Guarded) -> Verdict {
    match &g.result {
        Ok(Outcome::Applied) => Verdict::Ok,
        Ok(Outcome::AlreadyInstalled(_)) => Verdict::AlreadyInstalled,
        Err(e) => e.verdict(),
    }
}

/// Harness (b): structured mutations of the fixture's valid multi-patch
/// file. The input picks the running image, the chunk size, then a list of
/// edits to entry headers, bodies and the entry list; by default the body
/// length and CRC are made consistent again so that the edits reach the
/// decoder; a last optional step flips raw bytes of the file.
pub fn apply_structured(data: &[u8]) -> Verdict {
    let f = fixture();
    let mut c = Cursor(data);
    let old = &f.images[c.below(f.images.len())];
    let chunk = 1 + c.below(300);
    let flags = c.u8();
    // Bit 2: the signed file, applied by a device that requires the key.
    let signed = flags & 4 != 0;
    let base = if signed { &f.signed } else { &f.file };
    type Trust = Option<([u8; 32], [u8; 64])>;
    let mut entries: Vec<(EntryHeader, Metadata, Vec<u8>, Trust)> = container::parse(base)
        .expect("fixture parses")
        .into_iter()
        .map(|e| {
            let trust = e.body_sha256.zip(e.signature);
            (e.header, e.meta.clone(), e.body().to_vec(), trust)
        })
        .collect();
    let edits = c.below(8);
    for _ in 0..edits {
        if entries.is_empty() {
            break;
        }
        let i = c.below(entries.len());
        let (h, meta, body, trust) = &mut entries[i];
        match c.below(15) {
            0 => h.version = c.u8(),
            1 => h.flags = c.u8(),
            2 => h.codec = c.u8(),
            3 => h.params = c.u8(),
            4 => h.source.size = c.u32(),
            5 => h.source.md5[c.below(16)] ^= 1 << c.below(8),
            6 => h.target.size = c.u32() % (2 * SLOT as u32),
            7 => h.target.sha256[c.below(32)] ^= 1 << c.below(8),
            8 if !body.is_empty() => {
                let at = c.below(body.len());
                body[at] ^= c.u8() | 1;
            }
            9 => {
                let at = c.below(body.len() + 1);
                body.insert(at, c.u8());
            }
            10 if !body.is_empty() => {
                let at = c.below(body.len());
                let n = 1 + c.below(8);
                body.drain(at..(at + n).min(body.len()));
            }
            11 => meta.version = Some(format!("v{}", c.u32())),
            12 => meta.security_counter = Some(c.u32() % 4),
            13 if trust.is_some() => {
                if let Some((sha, sig)) = trust {
                    if c.u8() & 1 == 0 {
                        sha[c.below(32)] ^= 1 << c.below(8);
                    } else {
                        sig[c.below(64)] ^= 1 << c.below(8);
                    }
                }
            }
            _ => {
                // The entry list itself: drop, duplicate or move an entry.
                let e = entries.remove(i);
                match c.below(3) {
                    0 => {}
                    1 => {
                        entries.insert(0, e.clone());
                        entries.push(e);
                    }
                    _ => {
                        let at = c.below(entries.len() + 1);
                        entries.insert(at, e);
                    }
                }
            }
        }
    }
    let built: Vec<Vec<u8>> = entries
        .iter_mut()
        .map(|(h, meta, body, trust)| {
            if flags & 1 == 0 {
                h.body_len = body.len() as u32;
                h.body_crc32 = flashpatch::crc32::crc32(body);
            }
            let entry = container::build_entry(h, meta, body);
            match trust {
                Some((sha, sig)) => with_trust(&entry, sha, sig),
                None => entry,
            }
        })
        .collect();
    let mut file =
        container::assemble(built.iter().map(Vec::as_slice)).expect("at most a few entries");
    if flags & 2 != 0 && !file.is_empty() {
        while !c.done() {
            let at = c.below(file.len());
            file[at] ^= c.u8();
        }
    }
    let g = apply_guarded_with(&file, old, SLOT, chunk, SLOT, signed.then_some((f.key, 0)));
    check(&file, old, &g);
    if signed && g.result == Ok(Outcome::Applied) {
        // Only images the key holder signed come out of a signed file.
        assert!(
            f.targets.iter().any(|t| g.target.starts_with(t)),
            "a device requiring signatures applied an image nobody signed"
        );
    }
    if g.result == Ok(Outcome::Applied) && flags & 2 == 0 && old != &f.images[2] {
        // An untouched path to `new` must give exactly `new`.
        assert_eq!(
            &g.target[..f.new.len()],
            &f.new[..],
            "applied image differs"
        );
    }
    verdict(&g)
}

/// Harness (c): bytes from the link into a device's protocol session. The
/// first byte picks raw bytes (even) or a stream of well-formed frames
/// whose messages the rest of the input chooses (odd: `Begin` for the
/// fixture's patch or another size, `Chunk`s of it at chosen offsets with
/// bytes perhaps changed, `Hello`), so that the staging logic is reached.
/// Properties: no panic; the staging partition's neighbours never change;
/// every payload the frame decoder returns has a sound CRC (it decodes or
/// is refused as a message); once a transfer is complete, the staged patch
/// goes through the applier with the guarded-flash checks of harness (a).
/// Returns the frames accepted and whether a transfer completed.
pub fn proto_session(data: &[u8]) -> (usize, bool) {
    use core::cell::RefCell;
    use flashpatch::mock::MockFlash;
    use flashpatch::proto::{self, frame, Action, FrameDecoder, HostMsg, Staging};
    use flashpatch::Partition;

    const UNIT: usize = 4096;
    const STAGE: usize = 4 * UNIT;
    let f = fixture();
    let patch = &f.file;
    let mut c = Cursor(data);
    let mode = c.u8();
    // The link: raw input, or frames built from the input's choices.
    let mut link = Vec::new();
    if mode & 1 == 0 {
        link.extend_from_slice(c.0);
    } else {
        let mut out = [0u8; proto::MAX_FRAME];
        // Where the transfer continues: chunks mostly go there.
        let mut next = 0usize;
        while !c.done() {
            let mut chunk = [0u8; proto::MAX_CHUNK];
            let msg = match c.below(4) {
                0 => HostMsg::Hello,
                1 => HostMsg::Begin {
                    size: if c.u8() & 7 != 0 {
                        next = 0;
                        patch.len() as u32
                    } else {
                        c.u32() % (2 * STAGE as u32)
                    },
                    crc32: flashpatch::crc32::crc32(patch),
                },
                _ => {
                    let offset = if c.u8() & 3 != 0 && next < patch.len() {
                        next
                    } else {
                        c.below(patch.len() / 4 + 1) * 4
                    };
                    let n = (4 * (1 + c.below(proto::MAX_CHUNK / 4))).min(patch.len() - offset);
                    if offset == next {
                        next += n;
                    }
                    let offset = offset as u32;
                    chunk[..n].copy_from_slice(&patch[offset as usize..offset as usize + n]);
                    if c.u8() & 7 == 0 && n > 0 {
                        chunk[c.below(n)] ^= 1 << c.below(8);
                    }
                    HostMsg::Chunk {
                        offset,
                        data: &chunk[..n],
                    }
                }
            };
            let n = frame::encode(&msg, &mut out).expect("a message fits a frame");
            link.extend_from_slice(&out[..n]);
            if c.u8() & 15 == 0 {
                // Line noise between frames.
                link.push(c.u8());
            }
        }
    }

    let flash = RefCell::new(MockFlash::<1, 4, UNIT>::new(STAGE + 2 * UNIT));
    let before = flash.borrow().as_bytes().to_vec();
    let mut staging = Staging::open(Partition::new(&flash, UNIT as u32, STAGE as u32).unwrap())
        .expect("the mock flash works");
    let mut frames = FrameDecoder::new();
    let mut accepted = 0;
    let mut rest = &link[..];
    let mut complete = false;
    while !rest.is_empty() {
        let (used, got) = frames.feed(rest);
        rest = &rest[used..];
        let Some(Ok(payload)) = got else { continue };
        let Ok(msg) = frame::decode::<HostMsg>(payload) else {
            continue;
        };
        accepted += 1;
        if let Action::Ack { complete: true, .. } = proto::handle(&mut staging, &msg) {
            complete = true;
        }
    }
    crate::assert_only_changed(
        &before,
        flash.borrow().as_bytes(),
        UNIT..UNIT + STAGE,
        "the staging area",
    );
    if complete {
        // What was staged goes through the applier like any patch file.
        let mut staged = Vec::new();
        let mut buf = [0u8; 64];
        let _ = proto::feed_staged::<_, flashpatch::ApplyError>(
            &mut staging,
            &mut buf,
            |piece| {
                staged.extend_from_slice(piece);
                Ok(flashpatch::Status::NeedMore)
            },
            |_| {},
        );
        let old = &f.images[0];
        let g = apply_guarded(&staged, old, SLOT, 61, SLOT);
        check(&staged, old, &g);
    }
    (accepted, complete)
}

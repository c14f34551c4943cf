//! The boot record: the boot state of every component, in one record.
//!
//! ```text
//!  +16 1 component 0: active slot (0 A, 1 B)
//!  +17 1 state (1 trial, 2 confirmed)     +18 1 boot attempts
//!  +19 1 flags: bit 0 rolled back, bit 1 component 0 is not part of the trial
//!  +20 4 component 0, slot A image size   +24 32 its SHA-256   (size 0: none)
//!  +56 4 component 0, slot B image size   +60 32 its SHA-256
//!  --- a 96-byte record (written before security counters) ends here, CRC at +92
//!  +92 4 component 0, slot A image security counter   +96 4 slot B's
//!  +100 4 component 0, floor (lowest security counter it boots)
//!  +104 1 components N (≥ 1)   +105 19 zero
//!  +124 96 bytes for each of components 1 … N-1:
//!        +0 1 active slot   +1 1 flags (bit 0: part of the trial)   +2 2 zero
//!        +4 4 slot A size   +8 32 SHA-256   +40 4 security counter
//!        +44 4 slot B size  +48 32 SHA-256  +80 4 security counter
//!        +84 4 floor        +88 8 zero
//!  L-4 4 CRC-32           (L = 128 + 96 (N-1))
//! ```

use super::Slot;

/// The first four bytes of every record: `"FPSR"`.
pub(crate) const RECORD_MAGIC: [u8; 4] = *b"FPSR";
/// The record format version.
pub(crate) const RECORD_VERSION: u8 = 1;
/// Bytes of the common record header.
pub(crate) const HEADER_LEN: usize = 16;
/// Record kind: a boot record.
pub(crate) const KIND_BOOT: u8 = 1;
/// Record kind: an update checkpoint.
pub(crate) const KIND_CHECKPOINT: u8 = 2;

/// Where the newest checkpoint of the current boot state lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CheckpointAt {
    pub(crate) seq: u32,
    /// Offset of the record in the state area.
    pub(crate) at: u32,
    /// Record length.
    pub(crate) len: u32,
}

/// Bytes of the boot record of one component (a [`super::Slots`]).
pub const BOOT_RECORD_LEN: usize = boot_record_len(1);
/// Bytes of a boot record from before security counters: component 0 only,
/// read as counters 0 and floor 0.
pub(crate) const V1_LEN: usize = 96;
/// Bytes of the record's fields shared with component 0 (+16 … +124).
pub(crate) const BASE: usize = 108;
/// Bytes of each further component.
pub(crate) const BLOCK: usize = 96;

/// Bytes of the boot record of `n` components.
pub const fn boot_record_len(n: usize) -> usize {
    128 + BLOCK * (n - 1)
}

/// An image in a slot: its size, SHA-256 and security counter. Size 0
/// means no image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Image {
    /// Bytes of the image.
    pub size: u32,
    /// SHA-256 of the image.
    pub sha256: [u8; 32],
    /// Security counter of the image (of the patch entry that made it; 0
    /// when unknown). Not part of [`super::Slots::holds`]'s check.
    pub counter: u32,
}

impl Image {
    /// No image.
    pub const NONE: Image = Image {
        size: 0,
        sha256: [0; 32],
        counter: 0,
    };

    /// Whether `other` is the same bytes (size and SHA-256).
    pub fn same_bytes(&self, other: &Image) -> bool {
        self.size == other.size && self.sha256 == other.sha256
    }
}

/// One component's slot pair in the boot state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Component {
    /// The slot that runs (or is read, for a data component).
    pub active: Slot,
    /// The image each slot is known to hold (`[A, B]`); [`Image::NONE`]
    /// where nothing is known.
    pub images: [Image; 2],
    /// The lowest security counter the boot stage accepts for this
    /// component: raised to the running image's counter on each
    /// confirmation, never lowered.
    pub floor: u32,
    /// Whether the activation on trial switched this component (a rollback
    /// switches it back).
    pub on_trial: bool,
}

impl Component {
    /// A component nothing is known of (slot A, no images, floor 0).
    pub const EMPTY: Component = Component {
        active: Slot::A,
        images: [Image::NONE; 2],
        floor: 0,
        on_trial: false,
    };

    /// The image of the active slot.
    pub fn image(&self) -> Image {
        self.images[self.active.index()]
    }
}

/// The boot state of `N` components, as the newest valid boot record holds
/// it. Every change of it is one record write, for all components at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BootState<const N: usize = 1> {
    /// Whether an activation is on trial (not yet confirmed).
    pub trial: bool,
    /// Boots of the trial so far.
    pub attempts: u8,
    /// Whether this state was reached by a rollback. Stays set until the
    /// next activation.
    pub rolled_back: bool,
    /// Boot-state changes so far.
    pub gen: u32,
    /// Each component's slots.
    pub components: [Component; N],
}

/// The boot state as one component sees it (the whole boot state of a
/// single-component [`super::Slots`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BootRecord {
    /// The slot to boot.
    pub active: Slot,
    /// Whether the active image is on trial (not yet confirmed).
    pub trial: bool,
    /// Boots of the trial image so far.
    pub attempts: u8,
    /// Whether this state was reached by rolling a trial image back. Stays
    /// set until the next activation.
    pub rolled_back: bool,
    /// The image each slot is known to hold (`[A, B]`); [`Image::NONE`]
    /// where nothing is known.
    pub images: [Image; 2],
    /// The lowest security counter the boot stage boots: pass it to
    /// `Applier::require_signature` as the minimum.
    pub floor: u32,
    /// Boot-state changes so far.
    pub gen: u32,
}

impl<const N: usize> BootState<N> {
    /// Component `k`'s view of the boot state (`None` past the last).
    pub fn record(&self, k: usize) -> Option<BootRecord> {
        let c = self.components.get(k)?;
        Some(BootRecord {
            active: c.active,
            trial: self.trial && c.on_trial,
            attempts: self.attempts,
            rolled_back: self.rolled_back,
            images: c.images,
            floor: c.floor,
            gen: self.gen,
        })
    }
}

const STATE_TRIAL: u8 = 1;
const STATE_CONFIRMED: u8 = 2;
const FLAG_ROLLED_BACK: u8 = 1;
const FLAG_C0_NOT_ON_TRIAL: u8 = 2;
const FLAG_ON_TRIAL: u8 = 1;

fn slot_byte(s: Slot) -> u8 {
    match s {
        Slot::A => 0,
        Slot::B => 1,
    }
}

fn slot_of(b: u8) -> Option<Slot> {
    match b {
        0 => Some(Slot::A),
        1 => Some(Slot::B),
        _ => None,
    }
}

fn u32_at(r: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]])
}

impl<const N: usize> BootState<N> {
    /// Piece `i` of the record's body (from +16 to the CRC), written into
    /// `out`; its length, or `None` past the last. The body is the head
    /// (component 0 and what all share: [`BASE`] bytes in four pieces),
    /// then a [`BLOCK`] of four pieces for each further component. In
    /// pieces, so that no record-sized buffer is on the stack under the
    /// decoder when a checkpoint starts a fresh bank with a copy of this
    /// record.
    pub(crate) fn encode_piece(&self, i: usize, out: &mut [u8; PIECE]) -> Option<usize> {
        const { assert!(N >= 1 && N <= 255, "1 to 255 components") };
        let (k, j) = (i / 4, i % 4);
        let c = self.components.get(k)?;
        let image = |out: &mut [u8; PIECE], img: &Image, counter: bool| {
            out[..4].copy_from_slice(&img.size.to_le_bytes());
            out[4..36].copy_from_slice(&img.sha256);
            if counter {
                out[36..40].copy_from_slice(&img.counter.to_le_bytes());
                40
            } else {
                36
            }
        };
        out.fill(0);
        let n = match (k, j) {
            (0, 0) => {
                let mut flags = if self.rolled_back {
                    FLAG_ROLLED_BACK
                } else {
                    0
                };
                if self.trial && !c.on_trial {
                    flags |= FLAG_C0_NOT_ON_TRIAL;
                }
                let state = if self.trial {
                    STATE_TRIAL
                } else {
                    STATE_CONFIRMED
                };
                out[..4].copy_from_slice(&[slot_byte(c.active), state, self.attempts, flags]);
                4
            }
            (0, 1 | 2) => image(out, &c.images[j - 1], false),
            (0, _) => {
                out[..4].copy_from_slice(&c.images[0].counter.to_le_bytes());
                out[4..8].copy_from_slice(&c.images[1].counter.to_le_bytes());
                out[8..12].copy_from_slice(&c.floor.to_le_bytes());
                out[12] = N as u8;
                BASE - 76
            }
            (_, 0) => {
                let flags = if self.trial && c.on_trial {
                    FLAG_ON_TRIAL
                } else {
                    0
                };
                out[..2].copy_from_slice(&[slot_byte(c.active), flags]);
                4
            }
            (_, 1 | 2) => image(out, &c.images[j - 1], true),
            (_, _) => {
                out[..4].copy_from_slice(&c.floor.to_le_bytes());
                BLOCK - 84
            }
        };
        Some(n)
    }

    /// Bytes of the head of a record of `len` bytes (shorter in a record
    /// from before security counters).
    pub(crate) const fn head_len(len: usize) -> usize {
        if len < boot_record_len(1) {
            V1_LEN - 20
        } else {
            BASE
        }
    }

    /// The state a record's head says (its first [`BootState::head_len`]
    /// bytes in `b`, zeros after them; header and CRC checked), with the
    /// number of components the record has: those past the first are
    /// [`Component::EMPTY`] until [`BootState::parse_block`]. `None` for
    /// values no writer produces.
    pub(crate) fn parse_head(len: usize, gen: u32, b: &[u8; BASE]) -> Option<(Self, usize)> {
        let v1 = len < boot_record_len(1);
        if len < V1_LEN {
            return None;
        }
        let trial = match b[1] {
            STATE_TRIAL => true,
            STATE_CONFIRMED => false,
            _ => return None,
        };
        if b[3] & !(FLAG_ROLLED_BACK | FLAG_C0_NOT_ON_TRIAL) != 0 {
            return None;
        }
        let count = if v1 { 1 } else { b[88] as usize };
        if count == 0 || (!v1 && len < boot_record_len(count)) {
            return None;
        }
        let mut c0 = Component {
            active: slot_of(b[0])?,
            on_trial: trial && b[3] & FLAG_C0_NOT_ON_TRIAL == 0,
            floor: u32_at(b, 84),
            ..Component::EMPTY
        };
        for (i, img) in c0.images.iter_mut().enumerate() {
            let at = 4 + 36 * i;
            img.size = u32_at(b, at);
            img.sha256.copy_from_slice(&b[at + 4..at + 36]);
            img.counter = u32_at(b, 76 + 4 * i);
        }
        let mut s = BootState {
            trial,
            attempts: b[2],
            rolled_back: b[3] & FLAG_ROLLED_BACK != 0,
            gen,
            components: [Component::EMPTY; N],
        };
        s.components[0] = c0;
        Some((s, count))
    }

    /// Takes component `k`'s block (1 … N-1); `None` for values no writer
    /// produces.
    pub(crate) fn parse_block(&mut self, k: usize, b: &[u8; BLOCK]) -> Option<()> {
        let trial = self.trial;
        let c = &mut self.components[k];
        c.active = slot_of(b[0])?;
        c.on_trial = trial && b[1] & FLAG_ON_TRIAL != 0;
        for (i, img) in c.images.iter_mut().enumerate() {
            let at = 4 + 40 * i;
            img.size = u32_at(b, at);
            img.sha256.copy_from_slice(&b[at + 4..at + 36]);
            img.counter = u32_at(b, at + 36);
        }
        c.floor = u32_at(b, 84);
        Some(())
    }
}

/// Bytes of the largest piece of a boot record ([`BootState::encode_piece`]).
pub(crate) const PIECE: usize = 40;

/// A boot record's body as the record writer takes it, piece by piece.
pub(crate) struct Encoded<'a, const N: usize> {
    pub(crate) state: &'a BootState<N>,
    pub(crate) buf: [u8; PIECE],
}

impl<const N: usize> crate::snapshot::Fields for Encoded<'_, N> {
    fn field(&mut self, i: usize) -> Option<(&'static str, crate::snapshot::Field<'_>)> {
        let n = self.state.encode_piece(i, &mut self.buf)?;
        Some((
            "boot record",
            crate::snapshot::Field::Bytes(&mut self.buf[..n]),
        ))
    }
}

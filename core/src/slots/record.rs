//! The boot record: its fields and its 96 bytes on flash.

use super::store::HEADER_LEN;
use super::Slot;
use crate::crc32::crc32;

/// Bytes of a boot record on flash.
pub const BOOT_RECORD_LEN: usize = 96;

/// An image in a slot: its size and SHA-256. Size 0 means no image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Image {
    /// Bytes of the image.
    pub size: u32,
    /// SHA-256 of the image.
    pub sha256: [u8; 32],
}

impl Image {
    /// No image.
    pub const NONE: Image = Image {
        size: 0,
        sha256: [0; 32],
    };
}

/// The boot state, as the newest valid boot record holds it.
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
    /// Boot-state changes so far.
    pub gen: u32,
}

const STATE_TRIAL: u8 = 1;
const STATE_CONFIRMED: u8 = 2;
const FLAG_ROLLED_BACK: u8 = 1;

impl BootRecord {
    /// The record on flash, with the common header `h` in front.
    pub(crate) fn encode(&self, h: [u8; HEADER_LEN]) -> [u8; BOOT_RECORD_LEN] {
        let mut r = [0u8; BOOT_RECORD_LEN];
        r[..HEADER_LEN].copy_from_slice(&h);
        r[16] = match self.active {
            Slot::A => 0,
            Slot::B => 1,
        };
        r[17] = if self.trial {
            STATE_TRIAL
        } else {
            STATE_CONFIRMED
        };
        r[18] = self.attempts;
        r[19] = if self.rolled_back {
            FLAG_ROLLED_BACK
        } else {
            0
        };
        for (i, img) in self.images.iter().enumerate() {
            let at = 20 + 36 * i;
            r[at..at + 4].copy_from_slice(&img.size.to_le_bytes());
            r[at + 4..at + 36].copy_from_slice(&img.sha256);
        }
        let crc = crc32(&r[..BOOT_RECORD_LEN - 4]);
        r[BOOT_RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        r
    }

    /// The fields of a record whose header and CRC were checked; `None`
    /// for values no writer produces.
    pub(crate) fn parse(r: &[u8; BOOT_RECORD_LEN]) -> Option<BootRecord> {
        let u = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
        let active = match r[16] {
            0 => Slot::A,
            1 => Slot::B,
            _ => return None,
        };
        let trial = match r[17] {
            STATE_TRIAL => true,
            STATE_CONFIRMED => false,
            _ => return None,
        };
        if r[19] & !FLAG_ROLLED_BACK != 0 {
            return None;
        }
        let mut images = [Image::NONE; 2];
        for (i, img) in images.iter_mut().enumerate() {
            let at = 20 + 36 * i;
            img.size = u(at);
            img.sha256.copy_from_slice(&r[at + 4..at + 36]);
        }
        Some(BootRecord {
            active,
            trial,
            attempts: r[18],
            rolled_back: r[19] & FLAG_ROLLED_BACK != 0,
            images,
            gen: u(12),
        })
    }
}

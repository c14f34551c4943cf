//! Patch format v1: the container and entry headers.
//!
//! ```text
//! container                      entry (repeated `entry count` times)
//! +0  4  magic "FPAT"            +0  2  header length H (u16 LE), bytes that follow up to the CRC's end
//! +4  1  format version (1)      +2  H  entry header (below)
//! +5  1  flags (0)               +2+H   body: `body length` bytes of codec data
//! +6  2  entry count (u16 LE)
//!
//! entry header (offsets from its start; all integers little-endian)
//! +0   1  format version (1)        +28  4  target size
//! +1   1  flags (0)                 +32  4  target CRC-32
//! +2   1  codec (1)                 +36 32  target SHA-256
//! +3   1  codec parameters          +68  4  body length
//! +4   4  source size               +72  4  body CRC-32
//! +8   4  source CRC-32             +76  …  records: tag u8, length u8, value
//! +12 16  source MD5                H-4  4  CRC-32 of the length field and bytes +0..H-4
//! ```
//!
//! `docs/FORMAT.md` is the normative specification.

use crate::crc32::{crc32, Crc32};

/// The container's first four bytes.
pub const MAGIC: [u8; 4] = *b"FPAT";
/// The format version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Bytes of the container header.
pub const CONTAINER_HEADER_LEN: usize = 8;
/// Bytes of an entry header's fixed fields.
pub const FIXED_HEADER_LEN: usize = 76;
/// The largest entry header (the `H` field) a decoder must accept.
pub const MAX_HEADER_LEN: usize = 256;
/// The smallest valid `H`: the fixed fields and the CRC.
pub const MIN_HEADER_LEN: usize = FIXED_HEADER_LEN + 4;

/// Record tags. Bit 7 marks a record a decoder must understand to apply
/// the entry; other unknown records are skipped.
pub mod tag {
    /// UTF-8 version string of the target (host-side information).
    pub const VERSION: u8 = 0x01;
    /// Modification time of the new file: i64 LE, seconds since the Unix epoch.
    pub const MTIME: u8 = 0x02;
    /// Security counter of the target: u32 LE. A device with anti-rollback
    /// refuses a counter below its minimum; absent means 0.
    pub const SECURITY_COUNTER: u8 = 0x03;
    /// SHA-256 of the entry's body, so that a signature covers the body.
    pub const BODY_SHA256: u8 = 0x04;
    /// Ed25519 signature of the entry header (see `crate::sign`); 64
    /// bytes, and the last record when present.
    pub const SIGNATURE: u8 = 0x05;
    /// The first 16 bytes of the source image's SHA-256: a decoder that
    /// knows the running image's SHA-256 (from its boot record) selects
    /// the entry by comparing them, without hashing the source.
    pub const SOURCE_ID: u8 = 0x06;
    /// The component the entry is for: u8 (absent means component 0).
    /// Critical: a decoder that does not know components must not apply
    /// an entry meant for another one.
    pub const COMPONENT: u8 = 0x80;
    /// The entry is applied in place, over its source image
    /// ([`super::InPlaceEntry`]): u32 LE erase unit, u8 order, u8 role.
    /// Critical: an A/B decoder must not apply it, and an in-place
    /// decoder applies nothing else.
    pub const IN_PLACE: u8 = 0x81;
    /// Set on tags whose records must be understood.
    pub const CRITICAL: u8 = 0x80;
}

/// What an entry's records tell a decoder to act on, besides trust.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EntryMeta {
    /// The component the entry is for ([`tag::COMPONENT`]; 0 when absent).
    pub component: u8,
    /// The target's security counter ([`tag::SECURITY_COUNTER`]; 0 when
    /// absent).
    pub counter: u32,
    /// How the entry is applied in place ([`tag::IN_PLACE`]) as
    /// [`InPlaceEntry::to_word`]; 0 for an A/B entry. [`EntryMeta::in_place`]
    /// reads it.
    pub in_place_word: u32,
    /// The source image's identity ([`tag::SOURCE_ID`]), if the entry
    /// carries one.
    pub source_id: Option<[u8; SOURCE_ID_LEN]>,
}

/// Bytes of a [`tag::SOURCE_ID`] record's value.
pub const SOURCE_ID_LEN: usize = 16;

impl EntryMeta {
    /// How the entry is applied in place; `None` for an A/B entry.
    pub fn in_place(&self) -> Option<InPlaceEntry> {
        InPlaceEntry::from_word(self.in_place_word)
    }
}

/// How an in-place entry rewrites its source ([`tag::IN_PLACE`]; see
/// `docs/IN-PLACE.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InPlaceEntry {
    /// Bytes of the erase unit the image is rewritten in: the body's
    /// reads obey the scratch rule for this unit, and the target is a
    /// whole number of them.
    pub unit: u32,
    /// Whether the units are written back to front (else front to back).
    pub back_to_front: bool,
    /// Whether the entry rolls an update back (the reverse patch), else it
    /// is the update itself.
    pub rollback: bool,
}

impl InPlaceEntry {
    /// Bytes of the record's value.
    pub const LEN: usize = 6;

    /// The record's value.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let u = self.unit.to_le_bytes();
        [
            u[0],
            u[1],
            u[2],
            u[3],
            self.back_to_front as u8,
            self.rollback as u8,
        ]
    }

    /// The entry in one word, never 0: the unit (a multiple of 64) with
    /// the order in bit 0 and the role in bit 1.
    pub fn to_word(self) -> u32 {
        self.unit | self.back_to_front as u32 | (self.rollback as u32) << 1
    }

    /// The entry of [`InPlaceEntry::to_word`]; `None` for 0.
    pub fn from_word(w: u32) -> Option<Self> {
        (w & !63 != 0).then_some(InPlaceEntry {
            unit: w & !63,
            back_to_front: w & 1 != 0,
            rollback: w & 2 != 0,
        })
    }

    /// Reads a record's value; `None` if it is not one (wrong length, a
    /// flag byte other than 0 or 1, a unit that is 0 or not a multiple of
    /// 64).
    pub fn from_bytes(v: &[u8]) -> Option<Self> {
        Self::word_of(v).and_then(Self::from_word)
    }

    /// A record's value as [`InPlaceEntry::to_word`] (what the applier
    /// keeps); `None` if it is not one.
    fn word_of(v: &[u8]) -> Option<u32> {
        let &[a, b, c, d, order, role] = v else {
            return None;
        };
        let unit = u32::from_le_bytes([a, b, c, d]);
        ((order | role) <= 1 && unit != 0 && unit & 63 == 0)
            .then_some(unit | (order as u32) | ((role as u32) << 1))
    }
}

/// The identity of the image an entry applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SourceId {
    /// Bytes of the source image.
    pub size: u32,
    /// CRC-32 of the source image (the cheap pre-check).
    pub crc32: u32,
    /// MD5 of the source image.
    pub md5: [u8; 16],
}

impl SourceId {
    /// All zeros (the [`Default`], usable in `const` context).
    pub const EMPTY: SourceId = SourceId {
        size: 0,
        crc32: 0,
        md5: [0; 16],
    };
}

/// The identity of the image an entry produces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TargetId {
    /// Bytes of the target image.
    pub size: u32,
    /// CRC-32 of the target image (the cheap pre-check).
    pub crc32: u32,
    /// SHA-256 of the target image (what is verified after writing).
    pub sha256: [u8; 32],
}

impl TargetId {
    /// All zeros (the [`Default`], usable in `const` context).
    pub const EMPTY: TargetId = TargetId {
        size: 0,
        crc32: 0,
        sha256: [0; 32],
    };
}

/// The fixed fields of an entry header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EntryHeader {
    /// Format version of the entry (1).
    pub version: u8,
    /// Entry flags (0 in version 1).
    pub flags: u8,
    /// Codec identifier ([`crate::codec::CODEC_RC3`]).
    pub codec: u8,
    /// Codec parameter byte.
    pub params: u8,
    /// What the entry applies to.
    pub source: SourceId,
    /// What the entry produces.
    pub target: TargetId,
    /// Bytes of the body.
    pub body_len: u32,
    /// CRC-32 of the body.
    pub body_crc32: u32,
}

impl EntryHeader {
    /// All zeros (the [`Default`], usable in `const` context).
    pub const EMPTY: EntryHeader = EntryHeader {
        version: 0,
        flags: 0,
        codec: 0,
        params: 0,
        source: SourceId::EMPTY,
        target: TargetId::EMPTY,
        body_len: 0,
        body_crc32: 0,
    };
}

/// Why an entry header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HeaderError {
    /// `H` outside `MIN_HEADER_LEN..=MAX_HEADER_LEN`.
    Length,
    /// The header CRC does not match.
    Crc,
    /// A record runs past the end of the header.
    Records,
    /// An entry format version this decoder does not know.
    Version(u8),
    /// Entry flags this decoder does not know.
    Flags(u8),
    /// A critical record this decoder does not know.
    CriticalRecord(u8),
}

impl Records<'_> {
    /// The component and security counter the records give. A component
    /// record that is not one byte, or comes twice, a counter record
    /// that is not four bytes, and a source identity that is not 16 bytes
    /// or comes twice, make the header malformed; another critical
    /// record makes it one this decoder cannot use.
    pub fn meta(self) -> Result<EntryMeta, HeaderError> {
        let mut m = EntryMeta::default();
        let mut seen = false;
        for r in self {
            match r? {
                (tag::COMPONENT, &[c]) if !seen => {
                    m.component = c;
                    seen = true;
                }
                (tag::COMPONENT, _) => return Err(HeaderError::Records),
                (tag::IN_PLACE, v) if m.in_place_word == 0 => {
                    m.in_place_word = InPlaceEntry::word_of(v).ok_or(HeaderError::Records)?;
                }
                (tag::IN_PLACE, _) => return Err(HeaderError::Records),
                (tag::SECURITY_COUNTER, v) => {
                    let b: [u8; 4] = v.try_into().map_err(|_| HeaderError::Records)?;
                    m.counter = u32::from_le_bytes(b);
                }
                (tag::SOURCE_ID, v) if m.source_id.is_none() => {
                    m.source_id = Some(v.try_into().map_err(|_| HeaderError::Records)?);
                }
                (tag::SOURCE_ID, _) => return Err(HeaderError::Records),
                (t, _) if t & tag::CRITICAL != 0 => return Err(HeaderError::CriticalRecord(t)),
                _ => {}
            }
        }
        Ok(m)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

fn array_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut w = [0u8; N];
    if let Some(s) = b.get(at..at + N) {
        w.copy_from_slice(s);
    }
    w
}

/// Checks the container header.
pub fn parse_container(b: &[u8; CONTAINER_HEADER_LEN]) -> Result<u16, ContainerError> {
    if b[..4] != MAGIC {
        return Err(ContainerError::Magic);
    }
    if b[4] != VERSION {
        return Err(ContainerError::Version(b[4]));
    }
    if b[5] != 0 {
        return Err(ContainerError::Flags(b[5]));
    }
    match u16::from_le_bytes([b[6], b[7]]) {
        0 => Err(ContainerError::Empty),
        n => Ok(n),
    }
}

/// Why a container header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ContainerError {
    /// Not a flashpatch file.
    Magic,
    /// A format version this decoder does not know.
    Version(u8),
    /// Container flags this decoder does not know.
    Flags(u8),
    /// No entries.
    Empty,
}

/// Writes a container header for `entries` entries.
pub fn container_header(entries: u16) -> [u8; CONTAINER_HEADER_LEN] {
    let n = entries.to_le_bytes();
    [
        MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], VERSION, 0, n[0], n[1],
    ]
}

/// The records of an entry header: `(tag, value)` pairs.
#[derive(Clone, Debug)]
pub struct Records<'a>(&'a [u8]);

impl<'a> Records<'a> {
    /// The records in `bytes` (an entry header's bytes from +76 to its CRC).
    pub const fn new(bytes: &'a [u8]) -> Self {
        Records(bytes)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(u8, &'a [u8]), HeaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&t, rest) = self.0.split_first()?;
        let Some((&len, rest)) = rest.split_first() else {
            self.0 = &[];
            return Some(Err(HeaderError::Records));
        };
        if rest.len() < len as usize {
            self.0 = &[];
            return Some(Err(HeaderError::Records));
        }
        let (v, rest) = rest.split_at(len as usize);
        self.0 = rest;
        Some(Ok((t, v)))
    }
}

impl EntryHeader {
    /// Parses an entry header from its `H` bytes (`raw`, which end with the
    /// CRC). Checks the CRC, the version, the flags and the records. Returns
    /// the fixed fields and the records.
    pub fn parse(raw: &[u8]) -> Result<(EntryHeader, Records<'_>), HeaderError> {
        let h = raw.len();
        if !(MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&h) {
            return Err(HeaderError::Length);
        }
        let mut c = Crc32::new();
        c.update(&(h as u16).to_le_bytes());
        c.update(&raw[..h - 4]);
        if c.value() != u32_at(raw, h - 4) {
            return Err(HeaderError::Crc);
        }
        let hdr = EntryHeader::from_fixed(&array_at(raw, 0));
        if hdr.version != VERSION {
            return Err(HeaderError::Version(hdr.version));
        }
        if hdr.flags != 0 {
            return Err(HeaderError::Flags(hdr.flags));
        }
        let records = Records(&raw[FIXED_HEADER_LEN..h - 4]);
        records.clone().meta()?;
        Ok((hdr, records))
    }

    /// The fixed fields as they lie in the header (bytes +0 … +75).
    pub fn fixed(&self) -> [u8; FIXED_HEADER_LEN] {
        let mut b = [0u8; FIXED_HEADER_LEN];
        b[..4].copy_from_slice(&[self.version, self.flags, self.codec, self.params]);
        b[4..8].copy_from_slice(&self.source.size.to_le_bytes());
        b[8..12].copy_from_slice(&self.source.crc32.to_le_bytes());
        b[12..28].copy_from_slice(&self.source.md5);
        b[28..32].copy_from_slice(&self.target.size.to_le_bytes());
        b[32..36].copy_from_slice(&self.target.crc32.to_le_bytes());
        b[36..68].copy_from_slice(&self.target.sha256);
        b[68..72].copy_from_slice(&self.body_len.to_le_bytes());
        b[72..76].copy_from_slice(&self.body_crc32.to_le_bytes());
        b
    }

    /// The fixed fields read from header bytes +0 … +75, unchecked (what
    /// [`EntryHeader::fixed`] wrote).
    pub fn from_fixed(b: &[u8; FIXED_HEADER_LEN]) -> Self {
        EntryHeader {
            version: b[0],
            flags: b[1],
            codec: b[2],
            params: b[3],
            source: SourceId {
                size: u32_at(b, 4),
                crc32: u32_at(b, 8),
                md5: array_at(b, 12),
            },
            target: TargetId {
                size: u32_at(b, 28),
                crc32: u32_at(b, 32),
                sha256: array_at(b, 36),
            },
            body_len: u32_at(b, 68),
            body_crc32: u32_at(b, 72),
        }
    }

    /// The fixed fields, in header order, for saved state
    /// (`crate::snapshot`): their encoding is [`EntryHeader::fixed`]'s.
    pub(crate) const fn field(
        &mut self,
        i: usize,
    ) -> Option<(&'static str, crate::snapshot::Field<'_>)> {
        use crate::snapshot::Field::{Bytes, U32, U8};
        crate::snapshot::fields!(i;
            "the current entry's version" => U8(&mut self.version),
            "the current entry's flags" => U8(&mut self.flags),
            "the current entry's codec" => U8(&mut self.codec),
            "the current entry's codec parameters" => U8(&mut self.params),
            "the current entry's source size" => U32(&mut self.source.size),
            "the current entry's source CRC-32" => U32(&mut self.source.crc32),
            "the current entry's source MD5" => Bytes(&mut self.source.md5),
            "the current entry's target size" => U32(&mut self.target.size),
            "the current entry's target CRC-32" => U32(&mut self.target.crc32),
            "the current entry's target SHA-256" => Bytes(&mut self.target.sha256),
            "the current entry's body length" => U32(&mut self.body_len),
            "the current entry's body CRC-32" => U32(&mut self.body_crc32),
        )
    }

    /// Fields and bytes of [`EntryHeader::field`]'s list.
    pub(crate) const FIELDS: usize = crate::snapshot::layout!(EntryHeader::EMPTY).0;

    /// Writes the length field and the header with `records` into `out`
    /// and returns the bytes used, or `None` if the records do not fit
    /// (`H` at most [`MAX_HEADER_LEN`]) or a value is over 255 bytes.
    pub fn write(
        &self,
        records: &[(u8, &[u8])],
        out: &mut [u8; 2 + MAX_HEADER_LEN],
    ) -> Option<usize> {
        let mut h = MIN_HEADER_LEN;
        for (_, v) in records {
            if v.len() > 255 {
                return None;
            }
            h += 2 + v.len();
        }
        if h > MAX_HEADER_LEN {
            return None;
        }
        out[..2].copy_from_slice(&(h as u16).to_le_bytes());
        let b = &mut out[2..];
        b[..FIXED_HEADER_LEN].copy_from_slice(&self.fixed());
        let mut at = FIXED_HEADER_LEN;
        for (t, v) in records {
            b[at] = *t;
            b[at + 1] = v.len() as u8;
            b[at + 2..at + 2 + v.len()].copy_from_slice(v);
            at += 2 + v.len();
        }
        let crc = crc32(&out[..at + 2]);
        out[at + 2..at + 6].copy_from_slice(&crc.to_le_bytes());
        Some(2 + h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_crc() {
        let hdr = EntryHeader {
            version: VERSION,
            codec: 1,
            source: SourceId {
                size: 10,
                crc32: 1,
                md5: [7; 16],
            },
            target: TargetId {
                size: 20,
                crc32: 2,
                sha256: [9; 32],
            },
            body_len: 5,
            body_crc32: 3,
            ..Default::default()
        };
        let mut buf = [0u8; 2 + MAX_HEADER_LEN];
        let n = hdr.write(&[(tag::VERSION, b"1.2.3")], &mut buf).unwrap();
        assert_eq!(n, 2 + MIN_HEADER_LEN + 7);
        let (back, mut recs) = EntryHeader::parse(&buf[2..n]).unwrap();
        assert_eq!(back, hdr);
        assert_eq!(recs.next(), Some(Ok((tag::VERSION, &b"1.2.3"[..]))));
        assert_eq!(recs.next(), None);
        buf[2 + 40] ^= 1;
        assert_eq!(
            EntryHeader::parse(&buf[2..n]).unwrap_err(),
            HeaderError::Crc
        );
    }

    #[test]
    fn unknown_critical_record_is_refused_and_others_skipped() {
        let hdr = EntryHeader {
            version: VERSION,
            ..Default::default()
        };
        let mut buf = [0u8; 2 + MAX_HEADER_LEN];
        let n = hdr.write(&[(0x33, b"x")], &mut buf).unwrap();
        assert!(EntryHeader::parse(&buf[2..n]).is_ok());
        let n = hdr.write(&[(0x83, b"x")], &mut buf).unwrap();
        assert_eq!(
            EntryHeader::parse(&buf[2..n]).unwrap_err(),
            HeaderError::CriticalRecord(0x83)
        );
    }

    #[test]
    fn component_record_is_known_and_checked() {
        let hdr = EntryHeader {
            version: VERSION,
            ..Default::default()
        };
        let mut buf = [0u8; 2 + MAX_HEADER_LEN];
        let meta = |buf: &[u8], n| EntryHeader::parse(&buf[2..n]).and_then(|(_, r)| r.meta());
        let n = hdr.write(&[], &mut buf).unwrap();
        assert_eq!(meta(&buf, n), Ok(EntryMeta::default()));
        let n = hdr
            .write(
                &[
                    (tag::COMPONENT, &[7]),
                    (tag::SECURITY_COUNTER, &[9, 0, 0, 0]),
                    (tag::SOURCE_ID, &[5; SOURCE_ID_LEN]),
                ],
                &mut buf,
            )
            .unwrap();
        assert_eq!(
            meta(&buf, n),
            Ok(EntryMeta {
                component: 7,
                counter: 9,
                in_place_word: 0,
                source_id: Some([5; SOURCE_ID_LEN]),
            })
        );
        let ip = InPlaceEntry {
            unit: 4096,
            back_to_front: true,
            rollback: false,
        };
        let n = hdr
            .write(&[(tag::IN_PLACE, &ip.to_bytes())], &mut buf)
            .unwrap();
        assert_eq!(
            meta(&buf, n),
            Ok(EntryMeta {
                in_place_word: ip.to_word(),
                ..EntryMeta::default()
            })
        );
        for bad in [
            &[(tag::COMPONENT, &[1, 0][..])][..],
            &[(tag::COMPONENT, &[][..])],
            &[(tag::COMPONENT, &[1][..]), (tag::COMPONENT, &[1][..])],
            &[(tag::SECURITY_COUNTER, &[1, 0][..])],
            &[(tag::SOURCE_ID, &[1; 15][..])],
            &[(tag::SOURCE_ID, &[1; 32][..])],
            &[
                (tag::SOURCE_ID, &[1; 16][..]),
                (tag::SOURCE_ID, &[1; 16][..]),
            ],
            // Unit 0, a unit not a multiple of 64, order 2, role 2, short.
            &[(tag::IN_PLACE, &[0, 0, 0, 0, 0, 0][..])],
            &[(tag::IN_PLACE, &[32, 0, 0, 0, 0, 0][..])],
            &[(tag::IN_PLACE, &[0, 16, 0, 0, 2, 0][..])],
            &[(tag::IN_PLACE, &[0, 16, 0, 0, 0, 2][..])],
            &[(tag::IN_PLACE, &[0, 16, 0, 0, 0][..])],
            &[
                (tag::IN_PLACE, &[0, 16, 0, 0, 0, 0][..]),
                (tag::IN_PLACE, &[0, 16, 0, 0, 0, 0][..]),
            ],
        ] {
            let n = hdr.write(bad, &mut buf).unwrap();
            assert_eq!(meta(&buf, n), Err(HeaderError::Records), "{bad:?}");
        }
    }
}

//! Patch files: building entries, reading them back, and GenPat's
//! multi-patch files (several entries in one file).

use flashpatch::crc32::crc32;
use flashpatch::format::{
    self, container_header, tag, ContainerError, EntryHeader, HeaderError, SourceId, TargetId,
    CONTAINER_HEADER_LEN, MAX_HEADER_LEN, SOURCE_ID_LEN,
};
use flashpatch::sign;
use md5::{Digest as _, Md5};
use sha2::Sha256;

/// Identity of an image as the format records it.
pub fn source_id(data: &[u8]) -> SourceId {
    SourceId {
        size: data.len() as u32,
        crc32: crc32(data),
        md5: Md5::digest(data).into(),
    }
}

/// Identity of a target image.
pub fn target_id(data: &[u8]) -> TargetId {
    TargetId {
        size: data.len() as u32,
        crc32: crc32(data),
        sha256: Sha256::digest(data).into(),
    }
}

/// Optional metadata of an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Version string of the new image.
    pub version: Option<String>,
    /// Modification time of the new file, seconds since the Unix epoch.
    pub mtime: Option<i64>,
    /// Security counter of the new image (anti-rollback).
    pub security_counter: Option<u32>,
    /// The component the entry is for (0, the default, writes no record).
    pub component: u8,
    /// How the entry is applied in place (`None`: an A/B entry).
    pub in_place: Option<flashpatch::format::InPlaceEntry>,
    /// The source's identity for devices that know their running image
    /// ([`tag::SOURCE_ID`]: the first bytes of its SHA-256).
    pub source_sha: Option<[u8; SOURCE_ID_LEN]>,
}

/// The identity record's value for a source image ([`tag::SOURCE_ID`]);
/// `None` for an empty one (a full image matches every source).
pub fn source_sha(data: &[u8]) -> Option<[u8; SOURCE_ID_LEN]> {
    let sha: [u8; 32] = Sha256::digest(data).into();
    (!data.is_empty()).then(|| *sha.first_chunk().expect("32 bytes"))
}

/// One entry of a patch file, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The fixed header fields.
    pub header: EntryHeader,
    /// Its metadata records.
    pub meta: Metadata,
    /// Records this tool does not know (tag, value).
    pub unknown: Vec<(u8, Vec<u8>)>,
    /// The body's SHA-256, as recorded for a signature.
    pub body_sha256: Option<[u8; 32]>,
    /// The header's Ed25519 signature.
    pub signature: Option<[u8; sign::SIGNATURE_LEN]>,
    /// Where the entry starts in the file.
    pub offset: usize,
    /// The entry's bytes: length field, header and body.
    pub bytes: Vec<u8>,
}

impl Entry {
    /// Whether this entry is for `source` (size and MD5) of `component`:
    /// a file holds at most one such entry.
    pub fn same_slot(&self, source: &SourceId, component: u8) -> bool {
        self.header.source.size == source.size
            && self.header.source.md5 == source.md5
            && self.meta.component == component
    }
}

impl Entry {
    /// The entry's body.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.bytes.len() - self.header.body_len as usize..]
    }

    /// Whether the body matches its CRC-32.
    pub fn body_ok(&self) -> bool {
        crc32(self.body()) == self.header.body_crc32
    }

    /// The header's `H` bytes.
    pub fn raw_header(&self) -> &[u8] {
        &self.bytes[2..self.bytes.len() - self.header.body_len as usize]
    }

    /// Whether the entry is signed by `key`: its header signature checks
    /// out and its body matches the signed SHA-256.
    pub fn signed_by(&self, key: &[u8; sign::PUBLIC_KEY_LEN]) -> bool {
        let Ok(t) = sign::Trust::of(self.raw_header()) else {
            return false;
        };
        match (t.signature, t.body_sha256) {
            (Some(sig), Some(body)) => {
                sign::verify(key, &t.signed_digest(self.raw_header()), &sig)
                    && <[u8; 32]>::from(Sha256::digest(self.body())) == body
            }
            _ => false,
        }
    }
}

/// Why a file is not a valid patch file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The file is shorter than a container header.
    #[error("{0} bytes are too few for a patch file (its header alone is 8)")]
    TooShort(usize),
    /// The container header is bad.
    #[error("{0}")]
    Container(ContainerError),
    /// An entry header is bad.
    #[error("entry {}: {error}", index + 1)]
    Header {
        /// Which entry (from 0; messages count from 1).
        index: usize,
        /// What is wrong.
        error: HeaderError,
    },
    /// The file ends inside an entry (from 0; messages count from 1).
    #[error("the file ends inside entry {}", .0 + 1)]
    Truncated(usize),
    /// Bytes follow the last entry.
    #[error("{0} bytes follow the last entry")]
    Trailing(usize),
    /// The file would hold more entries than the format allows.
    #[error("a patch file holds at most 65535 entries")]
    TooManyEntries,
}

/// Builds one entry: length field, header and body.
pub fn build_entry(header: &EntryHeader, meta: &Metadata, body: &[u8]) -> Vec<u8> {
    let mtime = meta.mtime.map(i64::to_le_bytes);
    let mut records: Vec<(u8, &[u8])> = Vec::new();
    if let Some(v) = &meta.version {
        let mut end = v.len().min(64);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        records.push((tag::VERSION, &v.as_bytes()[..end]));
    }
    if let Some(m) = &mtime {
        records.push((tag::MTIME, m));
    }
    let counter = meta.security_counter.map(u32::to_le_bytes);
    if let Some(c) = &counter {
        records.push((tag::SECURITY_COUNTER, c));
    }
    let component = [meta.component];
    if meta.component != 0 {
        records.push((tag::COMPONENT, &component));
    }
    let in_place = meta.in_place.map(|e| e.to_bytes());
    if let Some(v) = &in_place {
        records.push((tag::IN_PLACE, v));
    }
    if let Some(v) = &meta.source_sha {
        records.push((tag::SOURCE_ID, v));
    }
    let mut buf = [0u8; 2 + MAX_HEADER_LEN];
    let n = header
        .write(&records, &mut buf)
        .expect("metadata is bounded to fit the header");
    let mut out = Vec::with_capacity(n + body.len());
    out.extend_from_slice(&buf[..n]);
    out.extend_from_slice(body);
    out
}

/// Reads a whole patch file: every entry, with its header checked (not
/// its body: see [`Entry::body_ok`]).
pub fn parse(file: &[u8]) -> Result<Vec<Entry>, ParseError> {
    let head: &[u8; CONTAINER_HEADER_LEN] = file
        .get(..CONTAINER_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(ParseError::TooShort(file.len()))?;
    let count = format::parse_container(head).map_err(ParseError::Container)?;
    let mut at = CONTAINER_HEADER_LEN;
    let mut entries = Vec::with_capacity(count as usize);
    for index in 0..count as usize {
        let offset = at;
        let h = file
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or(ParseError::Truncated(index))?;
        if !(format::MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&h) {
            return Err(ParseError::Header {
                index,
                error: HeaderError::Length,
            });
        }
        let raw = file
            .get(at + 2..at + 2 + h)
            .ok_or(ParseError::Truncated(index))?;
        let (header, records) =
            EntryHeader::parse(raw).map_err(|error| ParseError::Header { index, error })?;
        let mut meta = Metadata::default();
        let mut unknown = Vec::new();
        let (mut body_sha256, mut signature) = (None, None);
        for r in records {
            let (t, v) = r.map_err(|error| ParseError::Header { index, error })?;
            match t {
                tag::VERSION => meta.version = Some(String::from_utf8_lossy(v).into_owned()),
                tag::MTIME if v.len() == 8 => {
                    meta.mtime = Some(i64::from_le_bytes(v.try_into().unwrap_or([0; 8])))
                }
                tag::SECURITY_COUNTER if v.len() == 4 => {
                    meta.security_counter = Some(u32::from_le_bytes(v.try_into().unwrap_or([0; 4])))
                }
                tag::COMPONENT if v.len() == 1 => meta.component = v[0],
                tag::IN_PLACE => meta.in_place = flashpatch::format::InPlaceEntry::from_bytes(v),
                tag::SOURCE_ID if v.len() == SOURCE_ID_LEN => meta.source_sha = v.try_into().ok(),
                tag::BODY_SHA256 if v.len() == 32 => body_sha256 = v.try_into().ok(),
                tag::SIGNATURE if v.len() == sign::SIGNATURE_LEN => signature = v.try_into().ok(),
                _ => unknown.push((t, v.to_vec())),
            }
        }
        let end = at + 2 + h + header.body_len as usize;
        let bytes = file
            .get(offset..end)
            .ok_or(ParseError::Truncated(index))?
            .to_vec();
        entries.push(Entry {
            header,
            meta,
            unknown,
            body_sha256,
            signature,
            offset,
            bytes,
        });
        at = end;
    }
    if at != file.len() {
        return Err(ParseError::Trailing(file.len() - at));
    }
    Ok(entries)
}

/// Why an entry cannot be signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The bytes are not one well-formed entry.
    #[error("not a well-formed entry")]
    Malformed,
    /// The header has no room left for the digest and signature records.
    #[error("the entry header has no room for a signature (shorten --version)")]
    HeaderFull,
}

/// Signs one entry (length field, header, body, as [`build_entry`] makes
/// it): its header gets the body's SHA-256 and, last, an Ed25519 signature
/// by `key` (`crate::keys`). A signature already there is replaced.
pub fn sign_entry(entry: &[u8], key: &crate::keys::SecretKey) -> Result<Vec<u8>, SignError> {
    let h = entry
        .get(..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .ok_or(SignError::Malformed)?;
    let raw = entry.get(2..2 + h).ok_or(SignError::Malformed)?;
    let (header, recs) = EntryHeader::parse(raw).map_err(|_| SignError::Malformed)?;
    let body = &entry[2 + h..];
    if body.len() != header.body_len as usize {
        return Err(SignError::Malformed);
    }
    let mut records: Vec<(u8, Vec<u8>)> = Vec::new();
    for r in recs {
        let (t, v) = r.map_err(|_| SignError::Malformed)?;
        if t != tag::BODY_SHA256 && t != tag::SIGNATURE {
            records.push((t, v.to_vec()));
        }
    }
    records.push((tag::BODY_SHA256, Sha256::digest(body).to_vec()));
    records.push((tag::SIGNATURE, vec![0; sign::SIGNATURE_LEN]));
    let write = |records: &[(u8, Vec<u8>)]| {
        let refs: Vec<(u8, &[u8])> = records.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let mut buf = [0u8; 2 + MAX_HEADER_LEN];
        let n = header.write(&refs, &mut buf).ok_or(SignError::HeaderFull)?;
        Ok::<_, SignError>(buf[..n].to_vec())
    };
    let unsigned = write(&records)?;
    let h = unsigned.len() - 2;
    let before_signature = &unsigned[2..2 + h - 4 - sign::SIGNATURE_RECORD_LEN];
    let digest = sign::signed_digest(h as u16, before_signature);
    if let Some(last) = records.last_mut() {
        last.1 = key.sign(&digest).to_vec();
    }
    let mut out = write(&records)?;
    out.extend_from_slice(body);
    Ok(out)
}

/// Writes a patch file holding `entries` (each from [`build_entry`]),
/// full images (entries without a source) after the others and otherwise
/// in the order given: a device applies the first entry that fits its
/// image, and a full image fits every image, so a delta for the device's
/// image must come first to be chosen.
pub fn assemble<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, ParseError> {
    let mut entries: Vec<&[u8]> = entries.into_iter().collect();
    entries.sort_by_key(|e| is_full_image(e));
    let count = u16::try_from(entries.len()).map_err(|_| ParseError::TooManyEntries)?;
    let mut out = container_header(count).to_vec();
    for e in entries {
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Whether `entry` (its header length, header and body) is a full image:
/// source size 0.
fn is_full_image(entry: &[u8]) -> bool {
    let h = entry
        .get(..2)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
    entry
        .get(2..2 + h)
        .and_then(|raw| EntryHeader::parse(raw).ok())
        .is_some_and(|(header, _)| header.source.size == 0)
}

/// What adding an entry to an existing file did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// The file is new.
    Created,
    /// The entry was appended to the file's entries.
    Appended,
    /// An entry for the same source was replaced.
    Replaced,
}

/// Adds `entry` (whose header is `header`) to the patch file `existing`
/// (or starts a new file). An entry for the same source (size and MD5)
/// and the same component is replaced when `replace` is set; otherwise the
/// result is `Ok(None)` and nothing changes.
pub fn add_entry(
    existing: Option<&[u8]>,
    header: &EntryHeader,
    entry: &[u8],
    replace: bool,
) -> Result<Option<(Vec<u8>, Added)>, ParseError> {
    let Some(file) = existing else {
        return Ok(Some((assemble([entry])?, Added::Created)));
    };
    let old = parse(file)?;
    let component = assemble([entry])
        .and_then(|f| parse(&f))?
        .first()
        .map_or(0, |e| e.meta.component);
    let mode = assemble([entry])
        .and_then(|f| parse(&f))?
        .first()
        .and_then(|e| e.meta.in_place.map(|m| m.rollback));
    let same = |e: &Entry| {
        e.same_slot(&header.source, component) && e.meta.in_place.map(|m| m.rollback) == mode
    };
    match old.iter().position(same) {
        Some(_) if !replace => Ok(None),
        Some(i) => {
            let mut parts: Vec<&[u8]> = old.iter().map(|e| e.bytes.as_slice()).collect();
            parts[i] = entry;
            Ok(Some((assemble(parts)?, Added::Replaced)))
        }
        None => {
            let parts = old.iter().map(|e| e.bytes.as_slice()).chain([entry]);
            Ok(Some((assemble(parts)?, Added::Appended)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_count_entries_from_one() {
        assert_eq!(parse(b"FPAT").unwrap_err(), ParseError::TooShort(4));
        let file = assemble([&[0x50u8, 0][..]]).unwrap();
        assert_eq!(
            parse(&file).unwrap_err().to_string(),
            "the file ends inside entry 1"
        );
    }
}

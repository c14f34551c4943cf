//! `genpat info PATCH [--json]`: the entries of a patch file.

use std::fmt::Write as _;

use host_genpat::container::Entry;
use serde::Serialize;

use super::{hex, parse_patch, read_input, say, Failure, EXIT_CORRUPT};
use crate::InfoArgs;

/// The `--json` document. Its shape is documented in `genpat info --help`;
/// fields may be added, none removed, while `format_version` is 1.
#[derive(Serialize)]
struct Document {
    format_version: u8,
    file_size: usize,
    entries: Vec<EntryInfo>,
}

#[derive(Serialize)]
struct EntryInfo {
    index: usize,
    offset: usize,
    size: usize,
    format_version: u8,
    flags: u8,
    codec: u8,
    params: u8,
    source: ImageInfo,
    target: ImageInfo,
    body: BodyInfo,
    version: Option<String>,
    mtime: Option<i64>,
    mtime_utc: Option<String>,
    component: u8,
    security_counter: Option<u32>,
    /// An in-place entry: how the device rewrites its one slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    in_place: Option<InPlaceInfo>,
    /// The source identity record: the first 16 bytes of the source's
    /// SHA-256, in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    source_sha256_prefix: Option<String>,
    body_sha256: Option<String>,
    signature: Option<String>,
    unknown_records: Vec<RecordInfo>,
}

#[derive(Serialize)]
struct InPlaceInfo {
    erase_unit: u32,
    order: &'static str,
    role: &'static str,
}

#[derive(Serialize)]
struct ImageInfo {
    size: u32,
    crc32: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    md5: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

#[derive(Serialize)]
struct BodyInfo {
    offset: usize,
    len: u32,
    crc32: String,
    crc32_ok: bool,
}

#[derive(Serialize)]
struct RecordInfo {
    tag: u8,
    value: String,
}

impl EntryInfo {
    fn new(index: usize, e: &Entry) -> Self {
        let h = &e.header;
        EntryInfo {
            index: index + 1,
            offset: e.offset,
            size: e.bytes.len(),
            format_version: h.version,
            flags: h.flags,
            codec: h.codec,
            params: h.params,
            source: ImageInfo {
                size: h.source.size,
                crc32: format!("{:08x}", h.source.crc32),
                md5: Some(hex(&h.source.md5)),
                sha256: None,
            },
            target: ImageInfo {
                size: h.target.size,
                crc32: format!("{:08x}", h.target.crc32),
                md5: None,
                sha256: Some(hex(&h.target.sha256)),
            },
            body: BodyInfo {
                offset: e.offset + e.bytes.len() - e.body().len(),
                len: h.body_len,
                crc32: format!("{:08x}", h.body_crc32),
                crc32_ok: e.body_ok(),
            },
            version: e.meta.version.clone(),
            mtime: e.meta.mtime,
            mtime_utc: e.meta.mtime.map(utc),
            component: e.meta.component,
            security_counter: e.meta.security_counter,
            in_place: e.meta.in_place.map(|ip| InPlaceInfo {
                erase_unit: ip.unit,
                order: if ip.back_to_front {
                    "back to front"
                } else {
                    "front to back"
                },
                role: if ip.rollback { "rollback" } else { "update" },
            }),
            source_sha256_prefix: e.meta.source_sha.map(|d| hex(&d)),
            body_sha256: e.body_sha256.map(|d| hex(&d)),
            signature: e.signature.map(|d| hex(&d)),
            unknown_records: e
                .unknown
                .iter()
                .map(|(tag, v)| RecordInfo {
                    tag: *tag,
                    value: hex(v),
                })
                .collect(),
        }
    }
}

/// Prints the entries; exit code 4 if the file is not a valid patch file
/// or a body does not match its CRC-32.
pub fn run(args: &InfoArgs) -> Result<(), Failure> {
    let file = read_input("PATCH", &args.patch)?;
    let entries = parse_patch(&file).map_err(|why| {
        Failure::new(
            EXIT_CORRUPT,
            format!(
                "'{}' is not a valid patch file: {why}",
                args.patch.display()
            ),
        )
    })?;
    let doc = Document {
        format_version: file[4],
        file_size: file.len(),
        entries: entries
            .iter()
            .enumerate()
            .map(|(i, e)| EntryInfo::new(i, e))
            .collect(),
    };
    if args.json {
        say(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        say(&text(&args.patch.display().to_string(), &doc));
    }
    match doc.entries.iter().find(|e| !e.body.crc32_ok) {
        Some(e) => Err(Failure::new(
            EXIT_CORRUPT,
            format!(
                "'{}': entry {}: patch body CRC mismatch",
                args.patch.display(),
                e.index
            ),
        )),
        None => Ok(()),
    }
}

/// The human-readable listing.
fn text(name: &str, doc: &Document) -> String {
    let n = doc.entries.len();
    let mut s = format!(
        "{name}: flashpatch format {}, {n} {}, {} bytes",
        doc.format_version,
        if n == 1 { "entry" } else { "entries" },
        doc.file_size
    );
    for e in &doc.entries {
        let _ = write!(
            s,
            "\n\nentry {} at offset {}, {} bytes\n\
             \x20 format version  {}, flags {:#04x}\n\
             \x20 component       {}\n\
             \x20 codec           {}, params {:#04x}\n\
             \x20 source          {} bytes, CRC-32 {}, MD5 {}\n\
             \x20 target          {} bytes, CRC-32 {}, SHA-256 {}\n\
             \x20 body            {} bytes at offset {}, CRC-32 {} ({})",
            e.index,
            e.offset,
            e.size,
            e.format_version,
            e.flags,
            e.component,
            e.codec,
            e.params,
            e.source.size,
            e.source.crc32,
            e.source.md5.as_deref().unwrap_or_default(),
            e.target.size,
            e.target.crc32,
            e.target.sha256.as_deref().unwrap_or_default(),
            e.body.len,
            e.body.offset,
            e.body.crc32,
            if e.body.crc32_ok { "ok" } else { "MISMATCH" },
        );
        if let Some(v) = &e.version {
            let _ = write!(s, "\n  version         {v}");
        }
        if let (Some(t), Some(u)) = (e.mtime, &e.mtime_utc) {
            let _ = write!(s, "\n  mtime           {u} ({t})");
        }
        if let Some(c) = e.security_counter {
            let _ = write!(s, "\n  security counter {c}");
        }
        if let Some(ip) = &e.in_place {
            let _ = write!(
                s,
                "\n  in place        {} of {}-byte erase units, {}",
                ip.role, ip.erase_unit, ip.order
            );
        }
        if let Some(d) = &e.source_sha256_prefix {
            let _ = write!(s, "\n  source identity SHA-256 {d}… (its first 16 bytes)");
        }
        if let Some(d) = &e.body_sha256 {
            let _ = write!(s, "\n  body SHA-256    {d}");
        }
        if let Some(sig) = &e.signature {
            let _ = write!(s, "\n  signature       Ed25519 {sig}");
        }
        for r in &e.unknown_records {
            let _ = write!(
                s,
                "\n  unknown record  tag {:#04x}, {} bytes: {}",
                r.tag,
                r.value.len() / 2,
                r.value
            );
        }
    }
    s
}

/// Seconds since the Unix epoch as an RFC 3339 UTC time.
fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian;
/// Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_714_564_800), "2024-05-01T12:00:00Z");
        assert_eq!(utc(4_102_444_799), "2099-12-31T23:59:59Z");
        // Extremes do not overflow.
        let _ = utc(i64::MAX);
        let _ = utc(i64::MIN);
    }
}

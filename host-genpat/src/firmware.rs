//! The files a firmware build makes, as the image a device's slot holds:
//! ELF (its loadable segments at their load addresses), Intel HEX (its
//! data records at their addresses) and raw binaries, told apart by
//! content. An ELF or HEX file is never taken as raw bytes.
//!
//! The image is laid out as `objcopy -O binary` lays it out: from the
//! lowest address any segment loads to (or `base`, when given) to the end
//! of the highest, each segment at its load address (an ELF's physical
//! address `p_paddr`, which is where `.data`'s initial values are stored in
//! flash, not its address in RAM), only the bytes the file holds (a
//! segment's `p_filesz`: `.bss` takes no room), gaps between segments
//! filled with `gap_fill` (0x00 by default, as objcopy; 0xFF keeps them
//! erased on NOR flash). `pad_to` pads the image at its end to a size.

use std::fmt;

use object::read::elf::{ElfFile, FileHeader, ProgramHeader};

/// What a firmware file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Raw bytes: the image itself.
    Raw,
    /// An ELF file.
    Elf,
    /// An Intel HEX file.
    IntelHex,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Raw => "raw binary",
            Kind::Elf => "ELF",
            Kind::IntelHex => "Intel HEX",
        })
    }
}

/// How to lay an ELF's or HEX's contents out as an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Layout {
    /// The address the image starts at (a slot's address); `None`: the
    /// lowest address any contents load to. Contents below it are an error.
    pub base: Option<u64>,
    /// Pad the image at its end to this many bytes (an image larger than
    /// this is an error).
    pub pad_to: Option<u64>,
    /// What gaps between segments (and padding) hold.
    pub gap_fill: u8,
    /// Take every input as raw bytes, even one that parses as ELF or HEX
    /// (a shared library compared byte for byte, as bsdiff sees it).
    pub raw: bool,
}

/// The largest gap between two pieces of an image: more is taken for
/// contents that are not part of the image (option bytes, a RAM
/// segment with a wrong load address) rather than padded out.
pub const MAX_GAP: u64 = 16 << 20;

/// An image made from a firmware file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// What the file was.
    pub kind: Kind,
    /// The address the image's first byte loads to (0 for a raw file).
    pub base: u64,
    /// The image.
    pub bytes: Vec<u8>,
}

/// Why a file cannot be made an image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FirmwareError {
    /// The ELF file does not parse.
    #[error("not a valid ELF file: {0}")]
    Elf(String),
    /// A line of the HEX file does not parse.
    #[error("not a valid Intel HEX file: line {line}: {why}")]
    Hex {
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The file has no contents to load.
    #[error("the {0} file has no contents to load (no loadable segment with bytes)")]
    Empty(Kind),
    /// Two pieces load to the same bytes.
    #[error("contents at {a:#x} and {b:#x} overlap")]
    Overlap {
        /// One piece's address.
        a: u64,
        /// The other's.
        b: u64,
    },
    /// Contents below `base`.
    #[error("contents at {at:#x} are below --base {base:#x}")]
    BelowBase {
        /// Where they load.
        at: u64,
        /// The base asked for.
        base: u64,
    },
    /// Two pieces too far apart to pad.
    #[error(
        "contents at {end:#x} and {next:#x} are {gap} bytes apart, more than the {MAX_GAP} \
         genpat fills in; leave what is not part of the image out of the file"
    )]
    Gap {
        /// Where the one ends.
        end: u64,
        /// Where the next starts.
        next: u64,
        /// The bytes between.
        gap: u64,
    },
    /// The image is larger than `pad_to`.
    #[error("the image is {size} bytes, larger than --pad-to {pad_to}")]
    PadTo {
        /// The image's size.
        size: u64,
        /// What was asked for.
        pad_to: u64,
    },
}

/// What `data` is, by its content: ELF by its magic, Intel HEX when it is
/// text whose first line is a record (`:` and hex digits); anything else
/// is raw.
pub fn kind_of(data: &[u8]) -> Kind {
    if data.starts_with(b"\x7fELF") {
        return Kind::Elf;
    }
    let text = data.trim_ascii_start();
    let first = text
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or(&[])
        .trim_ascii_end();
    if first.len() >= 11
        && first[0] == b':'
        && first[1..].iter().all(u8::is_ascii_hexdigit)
        && data.is_ascii()
    {
        return Kind::IntelHex;
    }
    Kind::Raw
}

/// `data` as an image, laid out as `layout` says (a raw file is taken as
/// it is, then padded).
pub fn image_of(data: Vec<u8>, layout: &Layout) -> Result<Image, FirmwareError> {
    let kind = if layout.raw {
        Kind::Raw
    } else {
        kind_of(&data)
    };
    let (base, bytes) = match kind {
        Kind::Raw => (0, data),
        Kind::Elf => lay_out(kind, elf_pieces(&data)?, layout)?,
        Kind::IntelHex => lay_out(kind, hex_pieces(&data)?, layout)?,
    };
    let mut image = Image { kind, base, bytes };
    if let Some(pad_to) = layout.pad_to {
        let size = image.bytes.len() as u64;
        if size > pad_to {
            return Err(FirmwareError::PadTo { size, pad_to });
        }
        image.bytes.resize(pad_to as usize, layout.gap_fill);
    }
    Ok(image)
}

/// An ELF's loadable segments with bytes: (load address, bytes).
fn elf_pieces(data: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, FirmwareError> {
    let bad = |e: object::Error| FirmwareError::Elf(e.to_string());
    match object::FileKind::parse(data).map_err(bad)? {
        object::FileKind::Elf32 => segments::<object::elf::FileHeader32<object::Endianness>>(data),
        object::FileKind::Elf64 => segments::<object::elf::FileHeader64<object::Endianness>>(data),
        k => Err(FirmwareError::Elf(format!(
            "{k:?} is not an ELF kind genpat reads"
        ))),
    }
}

fn segments<H: FileHeader<Endian = object::Endianness>>(
    data: &[u8],
) -> Result<Vec<(u64, Vec<u8>)>, FirmwareError> {
    let bad = |e: object::Error| FirmwareError::Elf(e.to_string());
    let f = ElfFile::<H>::parse(data).map_err(bad)?;
    let e = f.endian();
    let mut pieces = Vec::new();
    for ph in f.elf_program_headers() {
        if ph.p_type(e) != object::elf::PT_LOAD || ph.p_filesz(e).into() == 0 {
            continue;
        }
        let bytes = ph.data(e, data).map_err(|()| {
            FirmwareError::Elf(format!(
                "the segment loading to {:#x} reaches past the end of the file",
                ph.p_paddr(e).into()
            ))
        })?;
        pieces.push((ph.p_paddr(e).into(), bytes.to_vec()));
    }
    Ok(pieces)
}

/// An Intel HEX file's data records, each at its address (extended
/// segment and linear addresses applied).
fn hex_pieces(data: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, FirmwareError> {
    // kind_of only calls it HEX if it is ASCII.
    let text = std::str::from_utf8(data).map_err(|e| FirmwareError::Hex {
        line: 0,
        why: e.to_string(),
    })?;
    let mut upper = 0u64;
    let mut pieces: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut ended = false;
    let lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    for (i, line) in lines {
        let hex_error = |why: String| FirmwareError::Hex { line: i + 1, why };
        if ended {
            return Err(hex_error("a record after the end-of-file record".into()));
        }
        let record = line
            .trim()
            .parse::<ihex::Record>()
            .map_err(|e| hex_error(e.to_string()))?;
        match record {
            ihex::Record::Data { offset, value } => {
                let at = upper + offset as u64;
                // Records that continue the previous one join it.
                match pieces.last_mut() {
                    Some((a, v)) if *a + v.len() as u64 == at => v.extend_from_slice(&value),
                    _ => pieces.push((at, value)),
                }
            }
            ihex::Record::ExtendedSegmentAddress(s) => upper = (s as u64) << 4,
            ihex::Record::ExtendedLinearAddress(h) => upper = (h as u64) << 16,
            ihex::Record::EndOfFile => ended = true,
            ihex::Record::StartSegmentAddress { .. } | ihex::Record::StartLinearAddress(_) => {}
        }
    }
    if !ended {
        return Err(FirmwareError::Hex {
            line: text.lines().count(),
            why: "no end-of-file record (the file is cut short)".into(),
        });
    }
    Ok(pieces)
}

/// The pieces as one image.
fn lay_out(
    kind: Kind,
    mut pieces: Vec<(u64, Vec<u8>)>,
    layout: &Layout,
) -> Result<(u64, Vec<u8>), FirmwareError> {
    pieces.retain(|(_, b)| !b.is_empty());
    pieces.sort_by_key(|(a, _)| *a);
    let Some(&(lowest, _)) = pieces.first() else {
        return Err(FirmwareError::Empty(kind));
    };
    let base = layout.base.unwrap_or(lowest);
    if lowest < base {
        return Err(FirmwareError::BelowBase { at: lowest, base });
    }
    let mut image = Vec::new();
    let mut end = base;
    for (i, (at, bytes)) in pieces.iter().enumerate() {
        if *at < end {
            let prev = if i == 0 { base } else { pieces[i - 1].0 };
            return Err(FirmwareError::Overlap { a: prev, b: *at });
        }
        let gap = at - end;
        if gap > MAX_GAP {
            return Err(FirmwareError::Gap {
                end,
                next: *at,
                gap,
            });
        }
        image.resize(image.len() + gap as usize, layout.gap_fill);
        image.extend_from_slice(bytes);
        end = at + bytes.len() as u64;
    }
    Ok((base, image))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(records: &[ihex::Record]) -> Vec<u8> {
        ihex::create_object_file_representation(records)
            .unwrap()
            .into_bytes()
    }

    #[test]
    fn kinds_by_content() {
        assert_eq!(kind_of(b"\x7fELF\x01\x01"), Kind::Elf);
        assert_eq!(kind_of(b":00000001FF\n"), Kind::IntelHex);
        assert_eq!(kind_of(b"\r\n:00000001FF\r\n"), Kind::IntelHex);
        assert_eq!(kind_of(b"\x00\x01\x02:00000001FF"), Kind::Raw);
        assert_eq!(kind_of(b":not hex at all"), Kind::Raw);
        assert_eq!(kind_of(&[0xFF; 64]), Kind::Raw);
    }

    #[test]
    fn hex_records_with_a_gap_and_extended_addresses() {
        use ihex::Record::*;
        let file = hex(&[
            ExtendedLinearAddress(0x0800),
            Data {
                offset: 0x0000,
                value: vec![1, 2, 3, 4],
            },
            Data {
                offset: 0x0004,
                value: vec![5, 6],
            },
            Data {
                offset: 0x0010,
                value: vec![9],
            },
            EndOfFile,
        ]);
        let img = image_of(file.clone(), &Layout::default()).unwrap();
        assert_eq!((img.kind, img.base), (Kind::IntelHex, 0x0800_0000));
        assert_eq!(
            img.bytes,
            [1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]
        );
        let layout = Layout {
            base: Some(0x07FF_FFFC),
            pad_to: Some(24),
            gap_fill: 0xFF,
            raw: false,
        };
        let img = image_of(file.clone(), &layout).unwrap();
        assert_eq!(img.bytes.len(), 24);
        assert_eq!(&img.bytes[..6], &[0xFF, 0xFF, 0xFF, 0xFF, 1, 2]);
        assert_eq!(img.bytes[20], 9);
        assert!(img.bytes[21..].iter().all(|&b| b == 0xFF));
        let above = Layout {
            base: Some(0x0800_0001),
            ..Layout::default()
        };
        assert_eq!(
            image_of(file.clone(), &above),
            Err(FirmwareError::BelowBase {
                at: 0x0800_0000,
                base: 0x0800_0001
            })
        );
        let small = Layout {
            pad_to: Some(8),
            ..Layout::default()
        };
        assert_eq!(
            image_of(file, &small),
            Err(FirmwareError::PadTo {
                size: 17,
                pad_to: 8
            })
        );
    }

    #[test]
    fn bad_hex_is_refused_with_its_line() {
        let mut file = hex(&[
            ihex::Record::Data {
                offset: 0,
                value: vec![1; 8],
            },
            ihex::Record::EndOfFile,
        ]);
        // A wrong checksum on line 1.
        file[19] = if file[19] == b'0' { b'1' } else { b'0' };
        assert!(matches!(
            image_of(file, &Layout::default()),
            Err(FirmwareError::Hex { line: 1, .. })
        ));
        // Cut short: no end-of-file record.
        let file = hex(&[
            ihex::Record::Data {
                offset: 0,
                value: vec![1; 8],
            },
            ihex::Record::EndOfFile,
        ]);
        let cut = file[..file.len() - 12].to_vec();
        assert!(matches!(
            image_of(cut, &Layout::default()),
            Err(FirmwareError::Hex { .. })
        ));
    }

    #[test]
    fn far_apart_or_overlapping_contents_are_refused() {
        use ihex::Record::*;
        let far = hex(&[
            ExtendedLinearAddress(0x0800),
            Data {
                offset: 0,
                value: vec![1],
            },
            ExtendedLinearAddress(0x1FFF),
            Data {
                offset: 0xF800,
                value: vec![2],
            },
            EndOfFile,
        ]);
        assert!(matches!(
            image_of(far, &Layout::default()),
            Err(FirmwareError::Gap { .. })
        ));
        let overlap = hex(&[
            Data {
                offset: 0,
                value: vec![1, 2, 3, 4],
            },
            Data {
                offset: 2,
                value: vec![5],
            },
            EndOfFile,
        ]);
        assert_eq!(
            image_of(overlap, &Layout::default()),
            Err(FirmwareError::Overlap { a: 0, b: 2 })
        );
    }

    #[test]
    fn raw_files_are_taken_as_they_are() {
        let raw = vec![0x12u8; 100];
        let img = image_of(raw.clone(), &Layout::default()).unwrap();
        assert_eq!((img.kind, img.base, img.bytes), (Kind::Raw, 0, raw));
    }
}

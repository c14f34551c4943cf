//! The inputs a firmware build makes: `genpat` takes ELF and Intel HEX
//! files as the images they load (as raw bytes only with `--raw`), through the real
//! binary. The ELF files are written here with the `object` crate, the HEX
//! files with the `ihex` crate: a flash segment, a gap, and `.data`'s
//! initial values stored after the code (a load address in flash, a run
//! address in RAM), as a linker lays them out.

mod common;

use std::path::Path;

use common::{genpat, image_48k};
use flashpatch::mock::Rng;
use object::write::elf::{FileHeader, ProgramHeader, Writer};

const FLASH: u64 = 0x0800_4000;
const RAM: u64 = 0x2000_0000;

/// A firmware version: code, then (after a gap of `gap` bytes) `.data`'s
/// initial values.
struct Firmware {
    code: Vec<u8>,
    data: Vec<u8>,
    gap: u64,
}

impl Firmware {
    fn data_at(&self) -> u64 {
        FLASH + self.code.len() as u64 + self.gap
    }

    /// The image `objcopy -O binary` makes of it, gaps filled with `fill`.
    fn bin(&self, fill: u8) -> Vec<u8> {
        let mut b = self.code.clone();
        b.resize(b.len() + self.gap as usize, fill);
        b.extend_from_slice(&self.data);
        b
    }

    /// As a 32-bit little-endian ARM executable: two PT_LOAD segments
    /// (`.data`'s loads in flash, runs in RAM) and a `.bss` one with no
    /// bytes in the file.
    fn elf(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(object::Endianness::Little, false, &mut out);
        w.reserve_file_header();
        w.reserve_program_headers(3);
        let code_off = w.reserve(self.code.len(), 4);
        let data_off = w.reserve(self.data.len(), 4);
        w.write_file_header(&FileHeader {
            os_abi: 0,
            abi_version: 0,
            e_type: object::elf::ET_EXEC,
            e_machine: object::elf::EM_ARM,
            e_entry: FLASH + 1,
            e_flags: 0x0500_0000,
        })
        .unwrap();
        w.write_align_program_headers();
        let load = |off: usize, vaddr: u64, paddr: u64, len: usize, mem: usize| ProgramHeader {
            p_type: object::elf::PT_LOAD,
            p_flags: object::elf::PF_R,
            p_offset: off as u64,
            p_vaddr: vaddr,
            p_paddr: paddr,
            p_filesz: len as u64,
            p_memsz: mem as u64,
            p_align: 4,
        };
        w.write_program_header(&load(
            code_off,
            FLASH,
            FLASH,
            self.code.len(),
            self.code.len(),
        ));
        let n = self.data.len();
        w.write_program_header(&load(data_off, RAM, self.data_at(), n, n));
        // .bss: in RAM, nothing in the file.
        w.write_program_header(&load(0, RAM + 0x1000, RAM + 0x1000, 0, 512));
        w.write_align(4);
        w.write(&self.code);
        w.write_align(4);
        w.write(&self.data);
        out
    }

    /// As Intel HEX: 16-byte data records, extended linear addresses.
    fn hex(&self) -> Vec<u8> {
        let mut records = Vec::new();
        let mut upper = None;
        for (at, bytes) in [(FLASH, &self.code), (self.data_at(), &self.data)] {
            for (i, chunk) in bytes.chunks(16).enumerate() {
                let a = at + 16 * i as u64;
                if upper != Some(a >> 16) {
                    upper = Some(a >> 16);
                    records.push(ihex::Record::ExtendedLinearAddress((a >> 16) as u16));
                }
                records.push(ihex::Record::Data {
                    offset: a as u16,
                    value: chunk.to_vec(),
                });
            }
        }
        records.push(ihex::Record::EndOfFile);
        ihex::create_object_file_representation(&records)
            .unwrap()
            .into_bytes()
    }
}

fn versions() -> (Firmware, Firmware) {
    let mut rng = Rng(7);
    let code1 = image_48k(&mut rng);
    let mut code2 = code1.clone();
    code2[1000..1100].fill(0x42);
    code2.splice(20_000..20_000, [7u8; 300]);
    let v1 = Firmware {
        code: code1,
        data: (0..200).map(|i| i as u8).collect(),
        gap: 4,
    };
    let v2 = Firmware {
        code: code2,
        data: (0..260).map(|i| (i * 3) as u8).collect(),
        gap: 12,
    };
    (v1, v2)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `genpat v1.elf v2.elf P` (and the same pair as HEX) makes a patch that
/// `genpat apply P v1.bin OUT` turns into exactly v2.bin, the image
/// objcopy would make.
#[test]
fn elf_and_hex_inputs_patch_the_images_they_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (v1, v2) = versions();
    for (name, f) in [("v1", &v1), ("v2", &v2)] {
        write(d, &format!("{name}.elf"), &f.elf());
        write(d, &format!("{name}.hex"), &f.hex());
        write(d, &format!("{name}.bin"), &f.bin(0x00));
    }
    for (kind, ext) in [("ELF", "elf"), ("Intel HEX", "hex")] {
        let patch = format!("p-{ext}.fpat");
        ok(&genpat(
            d,
            &[&format!("v1.{ext}"), &format!("v2.{ext}"), &patch],
        ));
        ok(&genpat(d, &["apply", &patch, "v1.bin", "out.bin"]));
        let out = std::fs::read(d.join("out.bin")).unwrap();
        assert!(
            out == v2.bin(0x00),
            "{kind}: the patch does not make v2.bin"
        );
        // OLD may be the ELF or HEX file too: it is read as its image.
        ok(&genpat(
            d,
            &["apply", &patch, &format!("v1.{ext}"), "out2.bin"],
        ));
        assert!(
            std::fs::read(d.join("out2.bin")).unwrap() == v2.bin(0x00),
            "{kind}"
        );
    }
    // Both kinds make the same patch: the same images.
    assert_eq!(
        std::fs::read(d.join("p-elf.fpat")).unwrap(),
        std::fs::read(d.join("p-hex.fpat")).unwrap()
    );
}

/// `--base` (the slot's address), `--gap-fill` and `--pad-to` lay the image
/// out; contents below the base and a malformed file are errors (exit 2,
/// the file named, nothing written).
#[test]
fn base_gap_fill_and_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (v1, v2) = versions();
    write(d, "v1.elf", &v1.elf());
    write(d, "v2.hex", &v2.hex());
    // The slot starts 256 bytes before the code; gaps stay erased; the
    // image is padded to 64 KiB.
    let base = format!("{:#x}", FLASH - 256);
    let args = ["--base", &base, "--gap-fill", "0xff", "--pad-to", "65536"];
    let mut diff = vec!["diff", "v1.elf", "v2.hex", "p.fpat"];
    diff.extend(args);
    ok(&genpat(d, &diff));
    let slot = |f: &Firmware| {
        let mut b = vec![0xFF; 256];
        b.extend(f.bin(0xFF));
        b.resize(65536, 0xFF);
        b
    };
    write(d, "v1-slot.bin", &slot(&v1));
    ok(&genpat(d, &["apply", "p.fpat", "v1-slot.bin", "out.bin"]));
    assert!(std::fs::read(d.join("out.bin")).unwrap() == slot(&v2));

    let fails = |args: &[&str], says: &str| {
        let out = genpat(d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!d.join("bad.fpat").exists());
    };
    let above = format!("{:#x}", FLASH + 4);
    fails(
        &["v1.elf", "v2.hex", "bad.fpat", "--base", &above],
        "below --base",
    );
    fails(
        &["v1.elf", "v2.hex", "bad.fpat", "--pad-to", "1024"],
        "larger than --pad-to 1024",
    );
    let mut hex = v2.hex();
    let at = hex.len() / 2;
    hex[at] = if hex[at] == b'A' { b'B' } else { b'A' };
    write(d, "broken.hex", &hex);
    fails(
        &["v1.elf", "broken.hex", "bad.fpat"],
        "NEW 'broken.hex' (Intel HEX): not a valid Intel HEX file: line",
    );
    let elf = v1.elf();
    write(d, "cut.elf", &elf[..elf.len() - 100]);
    fails(&["cut.elf", "v2.hex", "bad.fpat"], "OLD 'cut.elf' (ELF)");
    // A bad value for --gap-fill is an argument error.
    assert_eq!(
        genpat(d, &["v1.elf", "v2.hex", "bad.fpat", "--gap-fill", "256"])
            .status
            .code(),
        Some(1)
    );
}

/// `--raw` takes an ELF or HEX file as the bytes it is (as other diff tools
/// see a shared library): `genpat --raw` of two ELF files makes a patch
/// that `genpat apply --raw` turns into exactly the second file, where
/// without `--raw` it makes the image the file loads. `--raw` with a
/// layout option is a usage error.
#[test]
fn raw_takes_elf_files_as_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (v1, v2) = versions();
    write(d, "v1.elf", &v1.elf());
    write(d, "v2.elf", &v2.elf());
    ok(&genpat(d, &["--raw", "v1.elf", "v2.elf", "raw.fpat"]));
    ok(&genpat(
        d,
        &["apply", "--raw", "raw.fpat", "v1.elf", "out.elf"],
    ));
    assert!(std::fs::read(d.join("out.elf")).unwrap() == v2.elf());
    ok(&genpat(d, &["v1.elf", "v2.elf", "image.fpat"]));
    ok(&genpat(d, &["apply", "image.fpat", "v1.elf", "out.bin"]));
    assert!(std::fs::read(d.join("out.bin")).unwrap() == v2.bin(0x00));
    // The raw patch is not for the image: applied to it, nothing fits.
    let o = genpat(d, &["apply", "raw.fpat", "v1.elf", "none.bin"]);
    assert!(!o.status.success());
    assert!(!d.join("none.bin").exists());
    let o = genpat(
        d,
        &[
            "--raw",
            "--base",
            "0x08000000",
            "v1.elf",
            "v2.elf",
            "x.fpat",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
}

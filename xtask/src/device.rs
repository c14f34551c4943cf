//! The device-side figures of `cargo xtask bench`: the applier's RAM
//! (`size_of`), the code size of the apply path on `thumbv7em-none-eabihf`,
//! and the applier's x86-64 instructions under callgrind, shown next to
//! the Cortex-M4 count (`icount.rs`).

use std::path::Path;
use std::process::Command;

/// The target whose code size is reported.
pub const TARGET: &str = "thumbv7em-none-eabihf";
/// The probe program that links the applier and nothing else.
const PROBE: &str = "xtask/apply-size/Cargo.toml";
const PROBE_DIR: &str = "target/apply-size";
/// The compact (looped) SHA-256 of the `sha2` crate; its default unrolls
/// the rounds into about 7 KiB of Thumb code.
const COMPACT_SHA: &str = "--cfg sha2_backend_soft=\"compact\"";

/// The firmware whose Cortex-M4 instructions are counted (`icount.rs`).
const FIRMWARE: &str = "firmware-demo/Cargo.toml";
/// The `[profile.release]` settings that shape the code.
const PROFILE_KEYS: [&str; 4] = ["opt-level", "lto", "codegen-units", "panic"];

/// The code-shaping settings of `[profile.release]` in the Cargo manifest
/// `text`, in the order of [`PROFILE_KEYS`] (absent ones left out).
fn release_profile(text: &str) -> Vec<(&'static str, String)> {
    let mut section = false;
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line == "[profile.release]";
        } else if let (true, Some((k, v))) = (section, line.split_once('=')) {
            if let Some(key) = PROFILE_KEYS.iter().find(|&&key| key == k.trim()) {
                found.push((*key, v.trim().trim_matches('"').to_string()));
            }
        }
    }
    found.sort_by_key(|(k, _)| PROFILE_KEYS.iter().position(|p| p == k));
    found
}

/// The release profile that both device figures come from: the size
/// probe's and `firmware-demo`'s, which must agree (one build
/// configuration for the code size and the instruction counts), as
/// "opt-level z, lto true, codegen-units 1, panic abort".
pub fn shared_profile() -> Result<String, String> {
    let read = |m: &str| {
        let path = crate::qemu::root().join(m);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let (probe, firmware) = (read(PROBE)?, read(FIRMWARE)?);
    let (p, f) = (release_profile(&probe), release_profile(&firmware));
    if p != f || p.is_empty() {
        return Err(format!(
            "{PROBE} and {FIRMWARE} build with different release profiles ({p:?} and {f:?}): the code size and the instruction counts must come from one configuration"
        ));
    }
    Ok(p.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", "))
}

/// `size_of` of the applier and of the codec model, from the RAM test.
pub fn ram() -> Result<(u64, u64), String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["test", "--release", "--quiet", "-p", "flashpatch-tests"])
        .args(["--test", "ram", "--", "--nocapture"])
        .output()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The test harness's progress dots may share the line: look inside.
    let line = text
        .lines()
        .find_map(|l| l.find("applier RAM").map(|at| &l[at..]))
        .ok_or("the RAM test printed no figure")?;
    // "applier RAM (…): 3824 bytes (applier 40 + its state 3784); codec model 3008 bytes"
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    match numbers[..] {
        [a, _, _, m] => Ok((a, m)),
        _ => Err(format!("cannot read the RAM test's line: {line}")),
    }
}

/// Code size of the apply path: `.text` of the probe, in total and by
/// where the code comes from.
pub struct CodeSize {
    /// `.text` bytes.
    pub text: u64,
    /// `.rodata` bytes (CRC table, SHA-256 constants).
    pub rodata: u64,
    /// Function bytes by origin: flashpatch (with the probe's entry point,
    /// which the applier is inlined into), the digests (the `md-5` and
    /// `sha2` crates and flashpatch's `digest_of` pass that feeds them),
    /// compiler builtins (`memcpy`, `memset`), everything else.
    pub parts: [(&'static str, u64); 4],
}

/// Builds the probe for [`TARGET`] (with the signature check too if
/// `sign`) and measures it.
pub fn code_size(sign: bool) -> Result<CodeSize, String> {
    let dir = if sign {
        format!("{PROBE_DIR}-sign")
    } else {
        PROBE_DIR.to_string()
    };
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(crate::qemu::root().join(PROBE))
        .args(["--target", TARGET, "--target-dir", &dir])
        .args(if sign {
            &["--features", "sign"][..]
        } else {
            &[]
        })
        .env("RUSTFLAGS", COMPACT_SHA)
        .status()
        .map_err(|e| format!("cannot build the size probe: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the size probe failed (is the target installed? `rustup target add {TARGET}`)"
        ));
    }
    let elf = Path::new(&dir)
        .join(TARGET)
        .join("release/flashpatch-apply-size");
    let bytes = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    measure(&bytes)
}

fn measure(elf: &[u8]) -> Result<CodeSize, String> {
    let e = Elf32::parse(elf)?;
    let text = e.section(".text").map_or(0, |s| s.size);
    let rodata = e.section(".rodata").map_or(0, |s| s.size);
    let mut parts = [
        ("flashpatch", 0),
        ("digests", 0),
        ("compiler builtins", 0),
        ("other", 0),
    ];
    for (name, size) in e.functions()? {
        let i = if ["digest", "md5", "sha2"].iter().any(|k| name.contains(k)) {
            1
        } else if name.contains("flashpatch") || name == "_start" {
            0
        } else if name.contains("compiler_builtins") || name.starts_with("__aeabi") {
            2
        } else {
            3
        };
        parts[i].1 += size;
    }
    Ok(CodeSize {
        text,
        rodata,
        parts,
    })
}

/// Just enough of a little-endian ELF32 file: sections and function symbols.
struct Elf32<'a> {
    data: &'a [u8],
    sections: Vec<Section>,
}

struct Section {
    name: String,
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

impl<'a> Elf32<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, String> {
        if data.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 1, 1][..]) {
            return Err("the size probe is not a little-endian ELF32 file".into());
        }
        let u16_at = |o: usize| -> Result<u64, String> {
            data.get(o..o + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as u64)
                .ok_or_else(|| "truncated ELF file".to_string())
        };
        let u32_at = |o: usize| -> Result<u64, String> {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
                .ok_or_else(|| "truncated ELF file".to_string())
        };
        let (shoff, shentsize, shnum, shstrndx) =
            (u32_at(32)?, u16_at(46)?, u16_at(48)?, u16_at(50)?);
        let mut raw = Vec::new();
        for i in 0..shnum {
            let h = (shoff + i * shentsize) as usize;
            raw.push((
                u32_at(h)?,
                u32_at(h + 4)? as u32,
                u32_at(h + 16)?,
                u32_at(h + 20)?,
                u32_at(h + 24)? as u32,
            ));
        }
        let strtab = raw.get(shstrndx as usize).ok_or("no section name table")?.2 as usize;
        let sections = raw
            .into_iter()
            .map(|(name, kind, offset, size, link)| Section {
                name: c_str(data, strtab + name as usize),
                kind,
                offset,
                size,
                link,
            })
            .collect();
        Ok(Elf32 { data, sections })
    }

    fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// (name, size) of every function symbol.
    fn functions(&self) -> Result<Vec<(String, u64)>, String> {
        const SHT_SYMTAB: u32 = 2;
        const STT_FUNC: u8 = 2;
        let symtab = self
            .sections
            .iter()
            .find(|s| s.kind == SHT_SYMTAB)
            .ok_or("the size probe has no symbol table")?;
        let strtab = self
            .sections
            .get(symtab.link as usize)
            .ok_or("bad symbol string table")?;
        let mut out = Vec::new();
        for i in 0..symtab.size / 16 {
            let at = (symtab.offset + 16 * i) as usize;
            let ent = self.data.get(at..at + 16).ok_or("truncated symbol table")?;
            let word = |k: usize| u32::from_le_bytes([ent[k], ent[k + 1], ent[k + 2], ent[k + 3]]);
            if ent[12] & 0xf == STT_FUNC {
                let name = c_str(self.data, strtab.offset as usize + word(0) as usize);
                out.push((name, word(8) as u64));
            }
        }
        Ok(out)
    }
}

fn c_str(data: &[u8], at: usize) -> String {
    let rest = data.get(at..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

/// x86-64 instructions executed by the applier (`Applier::feed`,
/// everything it calls included) while `genpat apply` applies `patch` to
/// `old`, counted by callgrind.
pub fn instructions(genpat: &str, patch: &Path, old: &Path, out: &Path) -> Result<u64, String> {
    let file = out.with_extension("callgrind");
    let st = Command::new("valgrind")
        .args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(genpat)
        .arg("apply")
        .args([patch, old, out])
        .output()
        .map_err(|e| format!("cannot run valgrind: {e}"))?;
    if !st.status.success() {
        return Err(format!(
            "valgrind genpat apply failed: {}",
            String::from_utf8_lossy(&st.stderr)
        ));
    }
    let report = Command::new("callgrind_annotate")
        .arg("--inclusive=yes")
        .arg("--threshold=100")
        .arg(&file)
        .output()
        .map_err(|e| format!("cannot run callgrind_annotate: {e}"))?;
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&report.stdout);
    // Lines look like "6,045,616 (89.20%)  /path/file.rs:crate::path::fn
    // [/path/binary]", one per source file that code of the function comes
    // from (inlining); the largest is the function's inclusive count.
    // The applier's `feed` (or `run`, its body, where the optimiser keeps
    // that as the function instead), whatever its module path and type
    // parameters: `flashpatch::…::Applier<…>::feed`.
    let total = text
        .lines()
        .filter_map(|l| {
            let (count, rest) = l.trim().split_once(' ')?;
            let func = rest.split_once(")  ")?.1.split_once(':')?.1;
            let func = func.split(" [").next()?.trim_end();
            let ours = func.starts_with("flashpatch::")
                && func.contains("::Applier<")
                && (func.ends_with(">::feed") || func.ends_with(">::run"));
            ours.then(|| count.replace(',', "").parse::<u64>().ok())?
        })
        .max()
        .unwrap_or(0);
    if total == 0 {
        return Err("callgrind_annotate shows neither Applier::feed nor Applier::run".into());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF32 file: a `.text` section, two function symbols and
    /// one data symbol.
    fn tiny_elf() -> Vec<u8> {
        let shstr = b"\0.text\0.shstrtab\0.symtab\0.strtab\0";
        let strtab = b"\0_ZN10flashpatch5apply3run\0__aeabi_memcpy\0TABLE\0";
        let sym = |name: u32, size: u32, info: u8| {
            let mut s = Vec::new();
            s.extend(name.to_le_bytes());
            s.extend(0u32.to_le_bytes());
            s.extend(size.to_le_bytes());
            s.extend([info, 0, 1, 0]);
            s
        };
        let mut symtab = vec![0u8; 16];
        symtab.extend(sym(1, 60, 2));
        symtab.extend(sym(27, 40, 0x12));
        symtab.extend(sym(42, 1024, 1));
        let mut f = vec![0u8; 52];
        let text_at = f.len();
        f.extend([0u8; 100]);
        let shstr_at = f.len();
        f.extend(shstr);
        let symtab_at = f.len();
        f.extend(&symtab);
        let strtab_at = f.len();
        f.extend(strtab);
        let shoff = f.len();
        // (name, type, offset, size, link)
        let sections = [
            (0u32, 0u32, 0usize, 0usize, 0u32),
            (1, 1, text_at, 100, 0),
            (7, 3, shstr_at, shstr.len(), 0),
            (17, 2, symtab_at, symtab.len(), 4),
            (25, 3, strtab_at, strtab.len(), 0),
        ];
        for (name, kind, offset, size, link) in sections {
            let mut h = [0u8; 40];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[16..20].copy_from_slice(&(offset as u32).to_le_bytes());
            h[20..24].copy_from_slice(&(size as u32).to_le_bytes());
            h[24..28].copy_from_slice(&link.to_le_bytes());
            f.extend(h);
        }
        f[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 1, 1]);
        f[32..36].copy_from_slice(&(shoff as u32).to_le_bytes());
        f[46..48].copy_from_slice(&40u16.to_le_bytes());
        f[48..50].copy_from_slice(&5u16.to_le_bytes());
        f[50..52].copy_from_slice(&2u16.to_le_bytes());
        f
    }

    #[test]
    fn reads_text_size_and_function_origins() {
        let c = measure(&tiny_elf()).unwrap();
        assert_eq!((c.text, c.rodata), (100, 0));
        assert_eq!(
            c.parts,
            [
                ("flashpatch", 60),
                ("digests", 0),
                ("compiler builtins", 40),
                ("other", 0)
            ]
        );
    }

    #[test]
    fn reads_the_release_profile() {
        let toml = "[package]\nopt-level = 3\n\n[profile.release]\nlto = true\nopt-level = \"z\"\ndebug = true\n\n[profile.dev]\nopt-level = 1\n";
        assert_eq!(
            release_profile(toml),
            [("opt-level", "z".to_string()), ("lto", "true".to_string())]
        );
    }

    #[test]
    fn the_size_probe_and_the_firmware_build_with_one_profile() {
        let p = shared_profile().unwrap();
        assert!(p.starts_with("opt-level "), "{p}");
    }

    #[test]
    fn refuses_what_is_not_elf32() {
        assert!(measure(b"\x7fELF\x02\x01rest").is_err());
        let mut short = tiny_elf();
        short.truncate(60);
        assert!(measure(&short).is_err());
    }
}

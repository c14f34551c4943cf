//! Instructions per output byte on the Cortex-M4: `firmware-demo`'s
//! `applybench` applies one patch on QEMU's mps2-an386 under
//! `-icount shift=0` (the virtual clock advances 1 ns per instruction;
//! the firmware reads it through SysTick, 40 instructions a tick) and
//! prints the instructions of each phase of the apply
//! (`firmware-demo/src/bin/applybench.rs`). The host checks the clock,
//! the result and the target bytes.
//!
//! `cargo xtask icount [CORPUS_DIR]` runs it alone for every pair of the
//! corpus; `cargo xtask bench` runs it as part of the device-side figures.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::demo::number_after;
use crate::{device, qemu};

const TARGET: &str = "thumbv7em-none-eabihf";
/// The firmware's clock check: `2 × 1,000,000` loop instructions take
/// 50,000 SysTick ticks when one tick is 40 instructions.
const CLOCK_LOOP: u64 = 2_000_000;
const TICK: u64 = 40;
/// The firmware's erase unit: `dst.bin` gets one more as scratch.
const ERASE: usize = 4096;
/// QEMU's exit code when the apply failed (`semihost::exit::FAILED`).
const EXIT_FAILED: i32 = 5;

/// Instructions of one apply, by phase (see `applybench.rs`).
#[derive(Clone, Copy, Debug)]
pub struct M4Count {
    /// Bytes of the new image.
    pub output: u64,
    /// Everything `Applier::feed` executed.
    pub total: u64,
    /// CRC-32 of the source (the header parse included).
    pub source_crc: u64,
    /// MD5 of the source.
    pub source_md5: u64,
    /// CRC-32 of the target slot (is the new image there already?).
    pub target_crc: u64,
    /// Decoding and writing the new image, flash driver included.
    pub decode_write: u64,
    /// The SHA-256 read-back of the target.
    pub sha256: u64,
    /// The guest side of the emulated flash's driver (`FileFlash`), all
    /// phases: its calls times its measured cost per call.
    pub driver: u64,
    /// The same within `decode_write`: the driver's calls of that phase
    /// times their cost. `decode_write` less this is the issue's "decode +
    /// write": everything but the whole-image digests and the emulated
    /// driver.
    pub decode_driver: u64,
    /// Everything `Applier::feed` executed in the same apply with both
    /// slots vouched for as the slot manager does from its boot record:
    /// the source image (`Applier::vouch_image`) and a target slot that
    /// holds no image (`Applier::vouch_target_slot`). No pass over the
    /// source, none over the target before it is written.
    pub vouched: u64,
}

impl M4Count {
    /// `v` per output byte.
    pub fn per_byte(&self, v: u64) -> f64 {
        v as f64 / self.output.max(1) as f64
    }
}

/// Whether `qemu-system-arm` runs and the Rust target is installed; if
/// not, says what is missing.
pub fn available() -> bool {
    let qemu = Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let target = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|dir| Path::new(dir.trim()).is_dir());
    if !qemu {
        eprintln!("xtask: no Cortex-M4 instruction counts: qemu-system-arm is missing (`apt-get install --no-install-recommends qemu-system-arm`)");
    } else if !target {
        eprintln!("xtask: no Cortex-M4 instruction counts: `rustup target add {TARGET}` first");
    }
    qemu && target
}

/// Builds `applybench` into `out` and returns its ELF.
pub fn build(out: &Path) -> Result<PathBuf, String> {
    qemu::build_bin("applybench", out)
}

/// Applies `patch` (from `old` to `new`) with the firmware `elf` on QEMU
/// in the fresh directory `dir`, checks the result, and returns the
/// instruction counts.
pub fn count(
    elf: &Path,
    old: &Path,
    new: &Path,
    patch: &Path,
    dir: &Path,
) -> Result<M4Count, String> {
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(io)?;
    let new_bytes = std::fs::read(new).map_err(|e| format!("{}: {e}", new.display()))?;
    std::fs::write(
        dir.join("src.bin"),
        std::fs::read(old).map_err(|e| format!("{}: {e}", old.display()))?,
    )
    .map_err(io)?;
    std::fs::copy(patch, dir.join("patch.bin")).map_err(io)?;
    let dst_len = new_bytes.len().next_multiple_of(ERASE) + ERASE;
    let bare = run(elf, dir, &new_bytes, dst_len, new)?;
    // Again, with the slots vouched for.
    let old_bytes = std::fs::read(old).map_err(|e| format!("{}: {e}", old.display()))?;
    let mut image = (old_bytes.len() as u32).to_le_bytes().to_vec();
    image.extend(host_genpat::container::target_id(&old_bytes).sha256);
    std::fs::write(dir.join("image.bin"), image).map_err(io)?;
    let vouched = run(elf, dir, &new_bytes, dst_len, new)?;
    let (a, p, f) = (&bare.applied, bare.phases(), &bare.flash);
    let cost = |calls: &str| -> Result<u64, String> {
        Ok(num(calls, "reads")? * num(f, "read_cost")?
            + num(calls, "writes")? * num(f, "write_cost")?
            + num(calls, "erases")? * num(f, "erase_cost")?)
    };
    let driver = cost(f)?;
    let decode_driver = cost(bare.decode_flash()?)?;
    let p = p?;
    Ok(M4Count {
        output: num(a, "output")?,
        total: num(a, "total")?,
        source_crc: num(p, "source_crc")?,
        source_md5: num(p, "source_md5")?,
        target_crc: num(p, "target_crc")?,
        decode_write: num(p, "decode_write")?,
        sha256: num(p, "sha256")?,
        driver,
        decode_driver,
        vouched: num(&vouched.applied, "total")?,
    })
}

/// The lines one run of `applybench` printed.
struct Lines {
    applied: String,
    phases: Option<String>,
    /// The driver calls of the `decode_write` phase (with `phases`).
    decode_flash: Option<String>,
    flash: String,
    log: String,
}

impl Lines {
    fn phases(&self) -> Result<&str, String> {
        self.phases
            .as_deref()
            .ok_or_else(|| format!("applybench printed no `phases` line:\n{}", self.log))
    }

    fn decode_flash(&self) -> Result<&str, String> {
        self.decode_flash.as_deref().ok_or_else(|| {
            format!(
                "applybench printed no `decode_write flash` line:\n{}",
                self.log
            )
        })
    }
}

fn num(l: &str, key: &str) -> Result<u64, String> {
    number_after(l, &format!(" {key}=")).ok_or_else(|| format!("applybench printed no {key}: {l}"))
}

/// One run of `applybench` in `dir` (which holds its files), with a fresh
/// target of `dst_len` bytes; checks the clock and that the target holds
/// `new_bytes` (the image at `new`).
fn run(
    elf: &Path,
    dir: &Path,
    new_bytes: &[u8],
    dst_len: usize,
    new: &Path,
) -> Result<Lines, String> {
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::write(dir.join("dst.bin"), vec![0xFF; dst_len]).map_err(io)?;
    let mut child = qemu::command(dir, elf)
        .args(["-icount", "shift=0", "-serial", "null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-arm: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let code = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("applybench ran for 300 s; killed".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if code != 0 {
        let why = if code == EXIT_FAILED {
            "the apply failed"
        } else {
            "QEMU stopped"
        };
        return Err(format!("applybench: {why} (exit code {code}):\n{log}"));
    }
    let find = |tag: &str| {
        log.lines()
            .find(|l| l.starts_with(&format!("applybench: {tag}")))
            .map(str::to_string)
    };
    let line =
        |tag: &str| find(tag).ok_or_else(|| format!("applybench printed no `{tag}` line:\n{log}"));
    let clock = line("clock:")?;
    let ticks = number_after(&clock, " in ").ok_or("no ticks on the clock line")?;
    if number_after(&clock, "clock:") != Some(CLOCK_LOOP) || ticks * TICK != CLOCK_LOOP {
        return Err(format!(
            "the clock is not 40 instructions a tick (is -icount shift=0 in effect?): {clock}"
        ));
    }
    let applied = line("applied")?;
    let dst = std::fs::read(dir.join("dst.bin")).map_err(io)?;
    let output = num(&applied, "output")?;
    if output != new_bytes.len() as u64 || dst.get(..new_bytes.len()) != Some(new_bytes) {
        return Err(format!(
            "{}: the target QEMU wrote differs from the new image",
            new.display()
        ));
    }
    Ok(Lines {
        flash: line("flash")?,
        phases: find("phases"),
        decode_flash: find("decode_write flash"),
        applied,
        log,
    })
}

/// The table of Cortex-M4 counts, one row per pair, with an x86-64
/// callgrind count per output byte where there is one, and the means.
pub fn print_table(rows: &[(&str, M4Count, Option<f64>)]) {
    if rows.is_empty() {
        return;
    }
    let callgrind = rows.iter().any(|r| r.2.is_some());
    println!("| pair | new | instructions | per output byte | slots vouched for | decode+write | of which flash driver | decode+write without it | source CRC-32 | source MD5 | target CRC-32 | SHA-256 read-back |{}", if callgrind { " x86-64 (callgrind) |" } else { "" });
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{}",
        if callgrind { "---:|" } else { "" }
    );
    for (pair, c, x86) in rows {
        let b = |v| format!("{:.1}", c.per_byte(v));
        println!(
            "| {pair} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |{}",
            c.output,
            c.total,
            b(c.total),
            b(c.vouched),
            b(c.decode_write),
            b(c.decode_driver),
            b(c.decode_write - c.decode_driver),
            b(c.source_crc),
            b(c.source_md5),
            b(c.target_crc),
            b(c.sha256),
            if callgrind {
                x86.map_or(" – |".into(), |v| format!(" {v:.1} |"))
            } else {
                String::new()
            }
        );
    }
    let mean = |f: &dyn Fn(&M4Count) -> u64| {
        rows.iter().map(|r| r.1.per_byte(f(&r.1))).sum::<f64>() / rows.len() as f64
    };
    println!(
        "\nmean over the corpus (Cortex-M4, QEMU -icount): {:.1} instructions per output byte; decode+write {:.1}, {:.1} without the emulated flash's driver; all without the driver {:.1}; with the slots vouched for (as the slot manager does) {:.1}",
        mean(&|c| c.total),
        mean(&|c| c.decode_write),
        mean(&|c| c.decode_write - c.decode_driver),
        mean(&|c| c.total - c.driver),
        mean(&|c| c.vouched)
    );
}

/// `cargo xtask icount [CORPUS_DIR]`: the Cortex-M4 counts alone.
pub fn main(corpus: &Path) -> Result<(), String> {
    if !available() {
        return Err("cannot count Cortex-M4 instructions here".into());
    }
    let genpat = crate::demo::genpat()?;
    let work = qemu::root().join("target").join("icount");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let elf = build(&work)?;
    let mut rows = Vec::new();
    for (pair, d) in crate::bench::pairs(corpus)? {
        eprintln!("xtask: icount {pair}");
        let patch = work.join(format!("{pair}.fp"));
        let _ = std::fs::remove_file(&patch);
        let (old, new) = (d.join("old"), d.join("new"));
        crate::run(
            genpat.to_str().ok_or("non-UTF-8 path")?,
            &[
                old.to_str().ok_or("non-UTF-8 path")?,
                new.to_str().ok_or("non-UTF-8 path")?,
                patch.to_str().ok_or("non-UTF-8 path")?,
            ],
            &[],
        )?;
        let c = count(&elf, &old, &new, &patch, &work.join(&pair))?;
        rows.push((pair, c));
    }
    let rows: Vec<_> = rows.iter().map(|(p, c)| (p.as_str(), *c, None)).collect();
    println!("Cortex-M4 build: {TARGET}, {}\n", device::shared_profile()?);
    print_table(&rows);
    Ok(())
}

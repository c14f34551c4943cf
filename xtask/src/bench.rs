//! `cargo xtask bench [CORPUS_DIR] [--runs N]`: per pair of the corpus,
//! genpat's patch size, generation time and host apply time, side by side with bsdiff, xdelta3 -9 and `zstd -19
//! --patch-from` where they are installed, and the geomean size ratios;
//! then the device-side figures (see `device.rs`): the applier's RAM, the
//! `.text` of the apply path on `thumbv7em-none-eabihf`, and instructions
//! per output byte on the Cortex-M4, by phase (QEMU `-icount`, see
//! `icount.rs`; when `qemu-system-arm` and the target are installed),
//! with the x86-64 count under callgrind beside it (when valgrind is),
//! and what the signature check takes on the device (`signed.rs`).
//! Everything comes from one run: times are medians of `--runs` runs
//! (default 5), apply times of [`APPLY_RUNS_PER_RUN`] × `--runs` runs in
//! turns with bspatch, and comparisons are ratios within the run.
//!
//! Peers come from Debian: `apt-get install bsdiff xdelta3 zstd valgrind
//! qemu-system-arm`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{device, icount, signed};

/// Apply runs per `--runs`: an apply takes milliseconds.
const APPLY_RUNS_PER_RUN: usize = 10;

struct Row {
    pair: String,
    new_len: u64,
    ours: u64,
    gen: Duration,
    apply: Duration,
    bsdiff: Option<(u64, Duration, Duration)>,
    xdelta3: Option<(u64, Duration)>,
    zstd: Option<(u64, Duration)>,
    /// x86-64 instructions of the applier, if measured.
    instr: Option<u64>,
    /// Cortex-M4 instructions of the apply, if measured.
    m4: Option<icount::M4Count>,
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` `runs` times and returns the median wall time; fails if any
/// run fails.
fn timed(runs: usize, program: &str, args: &[&Path]) -> Result<Duration, String> {
    Ok(timed_turns(runs, &[(program, args)])?[0])
}

/// Runs the commands `cmds` in turn, `runs` rounds, and returns each one's
/// median wall time: a change in the machine's load falls on all of them
/// alike. Fails if any run fails.
fn timed_turns(runs: usize, cmds: &[(&str, &[&Path])]) -> Result<Vec<Duration>, String> {
    let mut times = vec![Vec::with_capacity(runs); cmds.len()];
    for _ in 0..runs {
        for (&(program, args), times) in cmds.iter().zip(&mut times) {
            let t = Instant::now();
            let out = Command::new(program)
                .args(args)
                .output()
                .map_err(|e| format!("cannot run {program}: {e}"))?;
            times.push(t.elapsed());
            // genpat apply exits 0 for both OK results; anything else is a failure.
            if !out.status.success() {
                return Err(format!(
                    "{program} {args:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[runs / 2]
        })
        .collect())
}

fn size(p: &Path) -> Result<u64, String> {
    std::fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", p.display()))
}

fn same(a: &Path, b: &Path) -> Result<bool, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok(read(a)? == read(b)?)
}

/// The pairs of the corpus (folders holding `old` and `new`), by name.
pub fn pairs(corpus: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus)
        .map_err(|e| format!("corpus {}: {e}", corpus.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("old").is_file() && p.join("new").is_file())
        .collect();
    dirs.sort();
    Ok(dirs
        .into_iter()
        .map(|d| {
            let name = d.file_name().unwrap_or_default().to_string_lossy();
            (name.into_owned(), d)
        })
        .collect())
}

pub fn bench(corpus: &Path, runs: usize) -> Result<(), String> {
    let corpus = corpus.to_path_buf();
    crate::cargo(&["build", "--release", "--package", "host-genpat"])?;
    let genpat =
        std::fs::canonicalize("target/release/genpat").map_err(|e| format!("genpat: {e}"))?;
    let genpat = genpat.to_str().ok_or("non-UTF-8 path")?;
    let (bsdiff, xdelta3, zstd) = (
        have("bsdiff") && have("bspatch"),
        have("xdelta3"),
        have("zstd"),
    );
    let valgrind = have("valgrind") && have("callgrind_annotate");
    if !(bsdiff && xdelta3 && zstd && valgrind) {
        eprintln!("xtask: some tools are missing; install them with `apt-get install bsdiff xdelta3 zstd valgrind`");
    }
    let work = std::env::temp_dir().join(format!("flashpatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let m4 = if icount::available() {
        Some(icount::build(&work)?)
    } else {
        None
    };
    let mut rows = Vec::new();
    for (pair, d) in pairs(&corpus)? {
        eprintln!("xtask: bench {pair}");
        let (old, new) = (d.join("old"), d.join("new"));
        let patch = work.join(format!("{pair}.fp"));
        let out = work.join(format!("{pair}.out"));
        let _ = std::fs::remove_file(&patch);
        let gen = {
            let mut times = Vec::new();
            for _ in 0..runs {
                let _ = std::fs::remove_file(&patch);
                times.push(timed(1, genpat, &[&old, &new, &patch])?);
            }
            times.sort();
            times[runs / 2]
        };
        let apply_args: &[&Path] = &[Path::new("apply"), &patch, &old, &out];
        let bs_patch = work.join(format!("{pair}.bsdiff"));
        let bs_out = work.join(format!("{pair}.bspatch.out"));
        let bs_gen = if bsdiff {
            Some(timed(runs, "bsdiff", &[&old, &new, &bs_patch])?)
        } else {
            None
        };
        // genpat apply and bspatch take milliseconds, of the order of the
        // machine's own noise: more runs, and in turns.
        let bs_args: &[&Path] = &[&old, &bs_out, &bs_patch];
        let mut applies = vec![(genpat, apply_args)];
        if bsdiff {
            applies.push(("bspatch", bs_args));
        }
        let apply_times = timed_turns(APPLY_RUNS_PER_RUN * runs, &applies)?;
        let apply = apply_times[0];
        if !same(&out, &new)? {
            return Err(format!("{pair}: genpat apply gave a wrong image"));
        }
        let bs = match bs_gen {
            Some(g) => Some((size(&bs_patch)?, g, apply_times[1])),
            None => None,
        };
        let xd = if xdelta3 {
            let p = work.join(format!("{pair}.vcdiff"));
            let t = timed(
                runs,
                "xdelta3",
                &[
                    Path::new("-e"),
                    Path::new("-9"),
                    Path::new("-f"),
                    Path::new("-s"),
                    &old,
                    &new,
                    &p,
                ],
            )?;
            Some((size(&p)?, t))
        } else {
            None
        };
        let zs = if zstd {
            let p = work.join(format!("{pair}.zst"));
            let from = PathBuf::from(format!("--patch-from={}", old.display()));
            let t = timed(
                runs,
                "zstd",
                &[
                    Path::new("-q"),
                    Path::new("-f"),
                    Path::new("-19"),
                    Path::new("--long=27"),
                    &from,
                    &new,
                    Path::new("-o"),
                    &p,
                ],
            )?;
            Some((size(&p)?, t))
        } else {
            None
        };
        let instr = if valgrind {
            Some(device::instructions(genpat, &patch, &old, &out)?)
        } else {
            None
        };
        let m4 = match &m4 {
            Some(elf) => Some(icount::count(
                elf,
                &old,
                &new,
                &patch,
                &work.join(format!("{pair}.m4")),
            )?),
            None => None,
        };
        rows.push(Row {
            pair,
            new_len: size(&new)?,
            ours: size(&patch)?,
            gen,
            apply,
            bsdiff: bs,
            xdelta3: xd,
            zstd: zs,
            instr,
            m4,
        });
    }
    let _ = std::fs::remove_dir_all(&work);
    print_table(&rows, runs);
    print_device(&rows)
}

/// The code size lines of the device-side figures (also `cargo xtask
/// size`); returns the release profile they were built with.
pub fn print_code() -> Result<String, String> {
    let profile = device::shared_profile()?;
    let c = device::code_size(false)?;
    let parts: Vec<String> = c
        .parts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    println!(
        "- Code: the apply path on `{}` ({profile}; the same build as the instruction counts) is {} bytes of `.text` ({}) and {} bytes of `.rodata`.",
        device::TARGET,
        c.text,
        parts.join(", "),
        c.rodata
    );
    let s = device::code_size(true)?;
    println!(
        "- Code with the signature check (feature `sign`: Ed25519 with `opt_size`, body SHA-256): {} bytes of `.text` (+{}) and {} bytes of `.rodata` (+{}).",
        s.text,
        s.text.saturating_sub(c.text),
        s.rodata,
        s.rodata.saturating_sub(c.rodata)
    );
    Ok(profile)
}

fn print_device(rows: &[Row]) -> Result<(), String> {
    let (applier, model) = device::ram()?;
    println!("\n**Device side**\n");
    println!("- RAM: the applier as `genpat apply` instantiates it (64-byte write buffer, 64-byte read cache) is {applier} bytes (`size_of`), of which the codec model {model}.");
    let profile = print_code()?;
    if icount::available() {
        let f = signed::standalone(|l| eprintln!("xtask: {l}"))?;
        println!("- Signature check on the device (`cargo xtask signed`: `firmware-demo` built with a public key on QEMU mps2-an386, a signed v1 -> v2 install; the stack available is RAM above the statics, from the ELF symbols): {}.", f.summary());
    } else {
        println!("- Signature check on the device: not measured (needs qemu-system-arm and the {} target).", device::TARGET);
    }
    let m4: Vec<_> = rows
        .iter()
        .filter_map(|r| {
            let x86 = r.instr.map(|all| all as f64 / r.new_len.max(1) as f64);
            Some((r.pair.as_str(), r.m4?, x86))
        })
        .collect();
    if m4.is_empty() {
        println!("- Instructions per output byte on the Cortex-M4: not measured (needs qemu-system-arm and the {} target).", device::TARGET);
        return Ok(());
    }
    println!("- Instructions per output byte on the Cortex-M4 (`firmware-demo`'s `applybench` on QEMU mps2-an386 with `-icount shift=0`, {profile}; everything `Applier::feed` executes, the guest side of the emulated flash's driver included; then that driver's share and each phase, per output byte{}):\n", if m4.iter().any(|r| r.2.is_some()) { "; last, the x86-64 count of `genpat apply` under callgrind" } else { "" });
    icount::print_table(&m4);
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn print_table(rows: &[Row], runs: usize) {
    let opt = |v: Option<(u64, Duration)>| v.map_or("–".to_string(), |v| v.0.to_string());
    let opt_ms = |v: Option<(u64, Duration)>| v.map_or("–".to_string(), |v| ms(v.1));
    println!(
        "**Patch size** (bytes) and **time** (ms, medians of {runs} runs; apply: of {} runs in turns with bspatch)\n",
        APPLY_RUNS_PER_RUN * runs
    );
    println!("| pair | new | flashpatch | bsdiff | xdelta3 -9 | zstd -19 | flashpatch / bsdiff | genpat ms | bsdiff ms | xdelta3 ms | zstd ms | genpat apply ms | bspatch ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // ln(size / bsdiff size) for flashpatch, xdelta3, zstd.
    let mut logs: [Vec<f64>; 3] = Default::default();
    for r in rows {
        let (bs, bg, ba, ratio) = match r.bsdiff {
            Some((s, g, a)) => {
                let s = s as f64;
                let q = r.ours as f64 / s;
                logs[0].push(q.ln());
                if let Some((x, _)) = r.xdelta3 {
                    logs[1].push((x as f64 / s).ln());
                }
                if let Some((z, _)) = r.zstd {
                    logs[2].push((z as f64 / s).ln());
                }
                (s.to_string(), ms(g), ms(a), format!("{q:.3}"))
            }
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        println!(
            "| {} | {} | {} | {bs} | {} | {} | {ratio} | {} | {bg} | {} | {} | {} | {ba} |",
            r.pair,
            r.new_len,
            r.ours,
            opt(r.xdelta3),
            opt(r.zstd),
            ms(r.gen),
            opt_ms(r.xdelta3),
            opt_ms(r.zstd),
            ms(r.apply),
        );
    }
    let geo = |v: &[f64]| (v.iter().sum::<f64>() / v.len() as f64).exp();
    if !logs[0].is_empty() {
        let mut line = format!(
            "\ngeomean patch size vs bsdiff over {} pairs: flashpatch {:.3}",
            logs[0].len(),
            geo(&logs[0]),
        );
        for (name, v) in [("xdelta3", &logs[1]), ("zstd", &logs[2])] {
            if v.len() == logs[0].len() {
                line += &format!(", {name} {:.3}", geo(v));
            }
        }
        println!("{line}");
        let worst = rows
            .iter()
            .filter_map(|r| Some((r.ours as f64 / r.bsdiff?.0 as f64, &r.pair)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((q, pair)) = worst {
            println!("largest ratio to bsdiff: {q:.3} ({pair})");
        }
    }
    if let Some(big) = rows.iter().max_by_key(|r| r.new_len) {
        if let Some((_, g, a)) = big.bsdiff {
            println!(
                "largest pair {}: generation {:.2}x bsdiff's time, apply {:.2}x bspatch's time",
                big.pair,
                big.gen.as_secs_f64() / g.as_secs_f64(),
                big.apply.as_secs_f64() / a.as_secs_f64()
            );
        }
    }
    let slowest = rows
        .iter()
        .filter_map(|r| Some((r.gen.as_secs_f64() / r.bsdiff?.1.as_secs_f64(), &r.pair)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((q, pair)) = slowest {
        println!("largest generation time ratio to bsdiff: {q:.2}x ({pair})");
    }
}

//! `cargo xtask bench [CORPUS_DIR] [--runs N]`: patch sizes and wall times of
//! genpat side by side with bsdiff (and the sizes of xdelta3 and
//! `zstd --patch-from` where they are installed), per pair of the corpus,
//! all from one run. Times are medians of `--runs` runs (default 5);
//! comparisons are ratios within this run.
//!
//! Peers come from Debian: `apt-get install bsdiff xdelta3 zstd`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Row {
    pair: String,
    new_len: u64,
    ours: u64,
    gen: Duration,
    apply: Duration,
    bsdiff: Option<(u64, Duration, Duration)>,
    xdelta3: Option<u64>,
    zstd: Option<u64>,
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` `runs` times and returns the median wall time; fails if any
/// run fails.
fn timed(runs: usize, program: &str, args: &[&Path]) -> Result<Duration, String> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
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
    times.sort();
    Ok(times[runs / 2])
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

pub fn bench(args: &[String]) -> Result<(), String> {
    let mut corpus = PathBuf::from("../shared/corpus");
    let mut runs = 5usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--runs takes a positive number")?
            }
            _ => corpus = PathBuf::from(a),
        }
    }
    crate::cargo(&["build", "--release", "--package", "host-genpat"])?;
    let genpat =
        std::fs::canonicalize("target/release/genpat").map_err(|e| format!("genpat: {e}"))?;
    let genpat = genpat.to_str().ok_or("non-UTF-8 path")?;
    let (bsdiff, xdelta3, zstd) = (
        have("bsdiff") && have("bspatch"),
        have("xdelta3"),
        have("zstd"),
    );
    if !(bsdiff && xdelta3 && zstd) {
        eprintln!("xtask: some peers are missing; install them with `apt-get install bsdiff xdelta3 zstd`");
    }
    let work = std::env::temp_dir().join(format!("flashpatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .map_err(|e| format!("corpus {}: {e}", corpus.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("old").is_file() && p.join("new").is_file())
        .collect();
    dirs.sort();
    let mut rows = Vec::new();
    for d in &dirs {
        let pair = d
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
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
        let apply = timed(runs, genpat, &[Path::new("apply"), &patch, &old, &out])?;
        if !same(&out, &new)? {
            return Err(format!("{pair}: genpat apply gave a wrong image"));
        }
        let bs = if bsdiff {
            let p = work.join(format!("{pair}.bsdiff"));
            let g = timed(runs, "bsdiff", &[&old, &new, &p])?;
            let a = timed(runs, "bspatch", &[&old, &out, &p])?;
            Some((size(&p)?, g, a))
        } else {
            None
        };
        let xd = if xdelta3 {
            let p = work.join(format!("{pair}.vcdiff"));
            timed(
                1,
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
            Some(size(&p)?)
        } else {
            None
        };
        let zs = if zstd {
            let p = work.join(format!("{pair}.zst"));
            let from = format!("--patch-from={}", old.display());
            let st = Command::new("zstd")
                .args(["-q", "-f", "-19", "--long=27", &from])
                .arg(&new)
                .arg("-o")
                .arg(&p)
                .output()
                .map_err(|e| e.to_string())?;
            st.status.success().then(|| size(&p)).transpose()?
        } else {
            None
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
        });
    }
    let _ = std::fs::remove_dir_all(&work);
    print_table(&rows, runs);
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn print_table(rows: &[Row], runs: usize) {
    let opt = |v: Option<u64>| v.map_or("–".to_string(), |v| v.to_string());
    println!("| pair | new | flashpatch | bsdiff | xdelta3 -9 | zstd -19 | ratio to bsdiff | genpat ms | bsdiff ms | genpat apply ms | bspatch ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut logs = Vec::new();
    for r in rows {
        let (bs, bg, ba, ratio) = match r.bsdiff {
            Some((s, g, a)) => {
                let q = r.ours as f64 / s as f64;
                logs.push(q.ln());
                (s.to_string(), ms(g), ms(a), format!("{q:.3}"))
            }
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        println!(
            "| {} | {} | {} | {bs} | {} | {} | {ratio} | {} | {bg} | {} | {ba} |",
            r.pair,
            r.new_len,
            r.ours,
            opt(r.xdelta3),
            opt(r.zstd),
            ms(r.gen),
            ms(r.apply),
        );
    }
    if !logs.is_empty() {
        let g = (logs.iter().sum::<f64>() / logs.len() as f64).exp();
        println!(
            "\ngeomean patch size vs bsdiff: {g:.3} over {} pairs",
            logs.len()
        );
    }
    if let Some(big) = rows.iter().max_by_key(|r| r.new_len) {
        if let Some((_, g, a)) = big.bsdiff {
            println!(
                "largest pair {}: generation {:.2}x bsdiff's time, apply {:.2}x bspatch's time (medians of {runs} runs)",
                big.pair,
                big.gen.as_secs_f64() / g.as_secs_f64(),
                big.apply.as_secs_f64() / a.as_secs_f64()
            );
        }
    }
}

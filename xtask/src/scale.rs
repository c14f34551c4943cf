//! `cargo xtask bench --scale [--sizes 1,4,16,48]`: genpat's generation
//! time and peak memory on large images, next to bsdiff's.
//!
//! For each size S (MiB) a pair is built from the corpus: `old` is every
//! pair's `old` one after the other, repeated until it is S MiB long, and
//! `new` is the pairs' `new` in the same order and as many times, so that
//! `new` differs from `old` as the corpus pairs do. Repetition `k` has `k`
//! added (wrapping) to each of its bytes, so that the tiles are not copies
//! of each other (a matcher could otherwise take any tile for any other).
//!
//! Each generator runs under `/usr/bin/time`, which reports the child's CPU
//! time (user + system) and its peak resident set size; the figure is
//! peak RSS per byte of `old`. One run per size and tool: at 48 MiB each
//! takes tens of seconds, and CPU time varies less with the machine's load
//! than wall time does.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bench::{have, pairs};

/// Sizes (MiB) measured when `--sizes` is not given.
pub const SIZES: [u64; 4] = [1, 4, 16, 48];

/// A pair of images of about `mib` MiB each, tiled from the corpus.
pub fn tile(corpus: &Path, mib: u64) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |p: PathBuf| std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
    let mut olds = Vec::new();
    let mut news = Vec::new();
    for (_, dir) in pairs(corpus)? {
        olds.extend(read(dir.join("old"))?);
        news.extend(read(dir.join("new"))?);
    }
    if olds.is_empty() {
        return Err(format!("no pairs in {}", corpus.display()));
    }
    let want = (mib << 20) as usize;
    let (mut old, mut new) = (Vec::with_capacity(want), Vec::with_capacity(want));
    let mut k = 0u8;
    while old.len() < want {
        old.extend(olds.iter().map(|b| b.wrapping_add(k)));
        new.extend(news.iter().map(|b| b.wrapping_add(k)));
        k = k.wrapping_add(1);
    }
    // Cut both at the same fraction of a round.
    let cut = new.len() as u64 * want as u64 / old.len() as u64;
    old.truncate(want);
    new.truncate(cut as usize);
    Ok((old, new))
}

/// CPU seconds (user + system) and peak RSS (bytes) of one run.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu: f64,
    pub rss: u64,
}

/// Runs `program args` under `/usr/bin/time` and returns its usage.
fn measure(program: &str, args: &[&Path], report: &Path) -> Result<Usage, String> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%U %S %M", "-o"])
        .arg(report)
        .arg(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run /usr/bin/time {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = std::fs::read_to_string(report).map_err(|e| e.to_string())?;
    parse_time(&text).ok_or_else(|| format!("cannot read /usr/bin/time's report {text:?}"))
}

/// Parses the last line of `/usr/bin/time -f "%U %S %M"`.
fn parse_time(text: &str) -> Option<Usage> {
    let mut f = text.lines().last()?.split_whitespace();
    let user: f64 = f.next()?.parse().ok()?;
    let sys: f64 = f.next()?.parse().ok()?;
    let kib: u64 = f.next()?.parse().ok()?;
    Some(Usage {
        cpu: user + sys,
        rss: kib * 1024,
    })
}

pub fn scale(corpus: &Path, sizes: &[u64]) -> Result<(), String> {
    crate::cargo(&["build", "--release", "--package", "host-genpat"])?;
    let genpat =
        std::fs::canonicalize("target/release/genpat").map_err(|e| format!("genpat: {e}"))?;
    let genpat = genpat.to_str().ok_or("non-UTF-8 path")?;
    if !have("/usr/bin/time") {
        return Err("--scale needs /usr/bin/time (apt-get install time)".into());
    }
    let bsdiff = have("bsdiff");
    if !bsdiff {
        eprintln!("xtask: bsdiff is missing; install it with `apt-get install bsdiff`");
    }
    let work = std::env::temp_dir().join(format!("flashpatch-scale-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let result = run(corpus, sizes, genpat, bsdiff, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run(
    corpus: &Path,
    sizes: &[u64],
    genpat: &str,
    bsdiff: bool,
    work: &Path,
) -> Result<(), String> {
    let (old, new, report) = (work.join("old"), work.join("new"), work.join("time"));
    let (patch, bs_patch) = (work.join("patch.fp"), work.join("patch.bsdiff"));
    let mut rows = Vec::new();
    for &mib in sizes {
        let (o, n) = tile(corpus, mib)?;
        std::fs::write(&old, &o).map_err(|e| e.to_string())?;
        std::fs::write(&new, &n).map_err(|e| e.to_string())?;
        eprintln!("xtask: scale {mib} MiB: genpat");
        let _ = std::fs::remove_file(&patch);
        let fp = measure(genpat, &[&old, &new, &patch], &report)?;
        let fp_size = std::fs::metadata(&patch).map_err(|e| e.to_string())?.len();
        let bs = if bsdiff {
            eprintln!("xtask: scale {mib} MiB: bsdiff");
            let u = measure("bsdiff", &[&old, &new, &bs_patch], &report)?;
            let size = std::fs::metadata(&bs_patch)
                .map_err(|e| e.to_string())?
                .len();
            Some((u, size))
        } else {
            None
        };
        rows.push((mib, o.len(), fp, fp_size, bs));
    }
    println!("One run per size and tool (`--runs` does not apply); CPU = user + system.\n");
    println!("| size | genpat CPU s | bsdiff CPU s | genpat / bsdiff CPU | genpat peak RSS B/old B | bsdiff peak RSS B/old B | genpat patch | bsdiff patch |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for (mib, n, fp, fp_size, bs) in rows {
        let per = |u: Usage| format!("{:.2}", u.rss as f64 / n as f64);
        println!(
            "| {mib} MiB | {:.2} | {} | {} | {} | {} | {fp_size} | {} |",
            fp.cpu,
            opt(bs.map(|(u, _)| format!("{:.2}", u.cpu))),
            opt(bs.map(|(u, _)| format!("{:.2}", fp.cpu / u.cpu.max(0.005)))),
            per(fp),
            opt(bs.map(|(u, _)| per(u))),
            opt(bs.map(|(_, s)| s.to_string())),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_report_is_parsed() {
        let u = parse_time("Command exited with non-zero status 1\n1.50 0.25 2048\n").unwrap();
        assert_eq!((u.cpu, u.rss), (1.75, 2 << 20));
        assert!(parse_time("").is_none());
        assert!(parse_time("1.0 x 3").is_none());
    }

    #[test]
    fn tiles_reach_the_size_and_differ() {
        let dir = std::env::temp_dir().join(format!("flashpatch-tile-{}", std::process::id()));
        let pair = dir.join("p");
        std::fs::create_dir_all(&pair).unwrap();
        std::fs::write(pair.join("old"), [1u8; 1000]).unwrap();
        std::fs::write(pair.join("new"), [1u8; 500]).unwrap();
        let (old, new) = tile(&dir, 1).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(old.len(), 1 << 20);
        assert_eq!(new.len(), 1 << 19);
        // Tile k holds k + 1 (tile 0 the corpus bytes themselves).
        assert_eq!((old[0], old[999], old[1000], old[2000]), (1, 1, 2, 3));
        assert_eq!((new[0], new[499], new[500]), (1, 1, 2));
    }
}

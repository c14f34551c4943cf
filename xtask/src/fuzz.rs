//! `cargo xtask fuzz [--time SECS] [--write-figures] [TARGET ...]`: runs
//! the `cargo fuzz` targets of `fuzz/` (all of them by default) for a
//! fixed time each, installing cargo-fuzz first if it is missing, and
//! prints one line per target with the executions done and the edges
//! covered (libFuzzer's `cov:` figure: the instrumented edges that at least
//! one input reached). libFuzzer's `-s none` build works on stable Rust.
//!
//! Each target keeps its corpus in `fuzz/corpus/TARGET` from run to run;
//! `apply_bytes`' and `apply_fixed`'s are seeded first with the same
//! patches, which genpat makes of the first 4 KiB of each firmware pair in
//! `../shared/corpus` (where it is) and of a generated pair. `--write-figures` runs every target from a fresh corpus
//! instead (`fuzz/target/fresh-corpus/`, seeds only), so that the figures
//! say what N seconds reach from nothing, and writes them into README.md's
//! figures table, one `| fuzzing `TARGET` …` row per target.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The targets of `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 4] = [
    "apply_bytes",
    "apply_fixed",
    "apply_structured",
    "proto_session",
];

/// Bytes of each firmware image of a pair that `apply_fixed`'s seeds are
/// made from: well inside the harness's 8 KiB slots.
const SEED_IMAGE: usize = 4096;

fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Installs cargo-fuzz unless `cargo fuzz` already runs.
fn ensure_cargo_fuzz() -> Result<(), String> {
    let mut probe = Command::new(cargo_program());
    probe.args(["fuzz", "--version"]);
    crate::ensure_installed(probe, "cargo-fuzz")
}

/// What one target's run did, from libFuzzer's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// Inputs executed.
    pub execs: u64,
    /// Edges covered: the `cov:` figure of libFuzzer's last status line.
    pub edges: u64,
}

impl Run {
    /// Takes what a line of libFuzzer's output says: status lines
    /// (`#123 DONE cov: 79 ft: 120 corp: …`) and the last words
    /// (`Done 123456 runs in 20 second(s)`).
    fn read(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("Done ") {
            if let Some(n) = rest.split(' ').next().and_then(|n| n.parse().ok()) {
                self.execs = n;
            }
        }
        if line.starts_with('#') {
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                if w == "cov:" {
                    if let Some(n) = words.next().and_then(|n| n.parse().ok()) {
                        self.edges = n;
                    }
                }
            }
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Firmware-like images for a seed when there is no corpus: strings,
/// erased padding and code-like bytes; the new image has a block
/// inserted and every 29th byte changed, as moved addresses are.
fn generated_pair() -> (Vec<u8>, Vec<u8>) {
    let mut r = flashpatch::mock::Rng(21);
    let mut old = Vec::new();
    while old.len() < 3000 {
        match r.below(3) {
            0 => old.extend(b"firmware string table entry "),
            1 => old.extend(std::iter::repeat_n(0xFF, r.below(48))),
            _ => {
                let n = 1 + r.below(80);
                old.extend(r.bytes(n))
            }
        }
    }
    let mut new = old[..1000].to_vec();
    new.extend(r.bytes(100));
    new.extend(&old[1000..]);
    for b in new.iter_mut().step_by(29) {
        *b = b.wrapping_add(5);
    }
    (old, new)
}

/// Writes the seeds of `target` into `corpus`, for the targets that take
/// a patch file: the harness's leading bytes, then a patch file, one per
/// pair and one with two entries. `apply_bytes` and `apply_fixed` get the
/// same files: `[0xFF]` (image 0, 32-byte chunks), and for `apply_fixed`
/// `0xFF` again (every entry given the running image's source identity, a
/// second run on a target mismatch). Returns how many.
fn seed(target: &str, corpus: &Path) -> Result<usize, String> {
    let lead: &[u8] = match target {
        "apply_bytes" => &[0xFF],
        "apply_fixed" => &[0xFF, 0xFF],
        _ => return Ok(0),
    };
    let mut pairs = vec![("generated".to_string(), generated_pair())];
    let shared = root().join("../shared/corpus");
    if let Ok(rd) = std::fs::read_dir(&shared) {
        let mut dirs: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
        dirs.sort();
        for d in dirs {
            let (Ok(old), Ok(new)) = (std::fs::read(d.join("old")), std::fs::read(d.join("new")))
            else {
                continue;
            };
            let cut = |v: Vec<u8>| v[..v.len().min(SEED_IMAGE)].to_vec();
            let name = d
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            pairs.push((name, (cut(old), cut(new))));
        }
    }
    let mut entries = Vec::new();
    let mut n = 0;
    let mut write = |name: &str, file: &[u8]| {
        let path = corpus.join(format!("seed-{name}"));
        let mut data = lead.to_vec();
        data.extend_from_slice(file);
        n += 1;
        std::fs::write(&path, data).map_err(|e| format!("{}: {e}", path.display()))
    };
    for (name, (old, new)) in &pairs {
        let file = host_genpat::diff(old, new, &Default::default())
            .map_err(|e| format!("seed {name}: {e}"))?;
        write(name, &file)?;
        let parsed = host_genpat::container::parse(&file).map_err(|e| e.to_string())?;
        entries.push(parsed[0].bytes.clone());
    }
    if entries.len() > 1 {
        let two = host_genpat::container::assemble(entries[..2].iter().map(Vec::as_slice))
            .map_err(|e| e.to_string())?;
        write("two-entries", &two)?;
    }
    Ok(n)
}

/// Runs each of `targets` for `secs` seconds, each from its kept corpus or
/// (`fresh`) from a new one; returns what each run did.
pub fn run_targets(secs: u64, targets: &[String], fresh: bool) -> Result<Vec<Run>, String> {
    ensure_cargo_fuzz()?;
    let fuzz_dir = root().join("fuzz");
    let mut runs = Vec::new();
    for target in targets {
        let corpus = if fresh {
            let c = fuzz_dir.join("target/fresh-corpus").join(target);
            // Absent the first time: nothing to remove then.
            let _ = std::fs::remove_dir_all(&c);
            c
        } else {
            fuzz_dir.join("corpus").join(target)
        };
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let n = seed(target, &corpus)?;
        if n > 0 {
            eprintln!("xtask: {n} genpat seeds in {}", corpus.display());
        }
        let time = format!("-max_total_time={secs}");
        let corpus_arg = corpus.to_str().ok_or("non-UTF-8 path")?;
        let args = [
            "fuzz",
            "run",
            "--release",
            "-s",
            "none",
            target.as_str(),
            corpus_arg,
            "--",
            time.as_str(),
            "-print_final_stats=1",
        ];
        eprintln!("xtask: $ cargo {} (in fuzz/)", args.join(" "));
        let mut child = Command::new(cargo_program())
            .args(args)
            .current_dir(&fuzz_dir)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        let mut run = Run::default();
        let mut artifact = None;
        let stderr = child.stderr.take().ok_or("no stderr from cargo fuzz")?;
        for line in BufReader::new(stderr).lines() {
            let line = line.map_err(|e| e.to_string())?;
            // Progress lines are many; keep the log short.
            if !line.starts_with('#') || line.contains("DONE") || line.contains("INITED") {
                eprintln!("{line}");
            }
            // "artifact_prefix='…'; Test unit written to /…/fuzz/artifacts/…"
            // (cargo fuzz gives an absolute prefix; a relative one is
            // relative to fuzz/).
            if let Some((_, path)) = line.split_once("Test unit written to ") {
                artifact = Some(fuzz_dir.join(path.trim()).display().to_string());
            }
            run.read(&line);
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        if let Some(path) = artifact {
            return Err(format!(
                "fuzz target {target} found a failing input ({status}), written to {path}; \
                 copy it to tests/fuzz-regressions/{target}/ so that `cargo test` replays it, then fix the bug"
            ));
        }
        if !status.success() {
            return Err(format!("`cargo fuzz run {target}` failed ({status})"));
        }
        if run.execs == 0 {
            return Err(format!(
                "fuzz target {target}: no run count in libFuzzer's output"
            ));
        }
        println!(
            "fuzz {target}: {} executions, {} edges covered (libFuzzer cov:) in {secs} s, 0 crashes",
            run.execs, run.edges
        );
        runs.push(run);
    }
    Ok(runs)
}

/// Runs each of `targets` for `secs` seconds from its kept corpus (what
/// `cargo xtask test` calls); returns what each run did.
pub fn fuzz(secs: u64, targets: &[String]) -> Result<Vec<Run>, String> {
    run_targets(secs, targets, false)
}

/// `n` with a comma between thousands, as the README writes numbers.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Today's date (UTC), `YYYY-MM-DD`.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}-{m:02}-{d:02}")
}

/// The README row of one target's figures.
fn row(target: &str, run: Run, secs: u64, date: &str) -> String {
    format!(
        "| fuzzing `{target}`, 0 crashes | {} edges covered (libFuzzer `cov:`), {} executions in {secs} s from a fresh corpus ({date}) | `cargo xtask fuzz --write-figures` |",
        thousands(run.edges),
        thousands(run.execs)
    )
}

/// `readme` with each of `rows` (target, row) in place of that target's
/// fuzzing row, or after the last fuzzing row if it has none yet.
fn with_rows(readme: &str, rows: &[(String, String)]) -> Result<String, String> {
    let mut lines: Vec<String> = readme.lines().map(String::from).collect();
    for (target, new) in rows {
        let key = format!("| fuzzing `{target}`");
        if let Some(l) = lines.iter_mut().find(|l| l.starts_with(&key)) {
            *l = new.clone();
        } else {
            let last = lines
                .iter()
                .rposition(|l| l.starts_with("| fuzzing"))
                .ok_or("README.md has no `| fuzzing` row in its figures table")?;
            lines.insert(last + 1, new.clone());
        }
    }
    let mut out = lines.join("\n");
    if readme.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Writes the figures of `runs` (one per target) into README.md.
fn write_figures(targets: &[String], runs: &[Run], secs: u64) -> Result<(), String> {
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let date = today();
    let rows: Vec<(String, String)> = targets
        .iter()
        .zip(runs)
        .map(|(t, &r)| (t.clone(), row(t, r, secs, &date)))
        .collect();
    let out = with_rows(&readme, &rows)?;
    std::fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("xtask: wrote {} fuzzing rows into README.md", rows.len());
    Ok(())
}

/// `cargo xtask fuzz` with its arguments.
pub fn main(secs: u64, figures: bool, mut targets: Vec<String>) -> Result<(), String> {
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    let runs = run_targets(secs, &targets, figures)?;
    if figures {
        write_figures(&targets, &runs, secs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_executions_and_edges_from_libfuzzer_output() {
        let mut run = Run::default();
        for line in [
            "INFO: Seed: 1234",
            "#2\tINITED cov: 12 ft: 13 corp: 1/1b exec/s: 0 rss: 30Mb",
            "#1024\tpulse  cov: 70 ft: 90 corp: 4/20b lim: 4 exec/s: 512 rss: 31Mb",
            "#123456\tDONE   cov: 79 ft: 120 corp: 5/40b lim: 4096 exec/s: 6172 rss: 40Mb",
            "stat::number_of_executed_units: 123456",
            "Done 123456 runs in 20 second(s)",
        ] {
            run.read(line);
        }
        assert_eq!(
            run,
            Run {
                execs: 123_456,
                edges: 79
            }
        );
    }

    #[test]
    fn rows_are_replaced_or_added_after_the_last_fuzzing_row() {
        let readme = "| figure | value |\n|---|---|\n| fuzzing `apply_bytes`, 0 crashes | old |\n| fuzzing `proto_session`, 0 crashes | old |\n\nafter\n";
        let rows = [
            (
                "apply_bytes".to_string(),
                "| fuzzing `apply_bytes`, new |".to_string(),
            ),
            (
                "apply_fixed".to_string(),
                "| fuzzing `apply_fixed`, new |".to_string(),
            ),
        ];
        assert_eq!(
            with_rows(readme, &rows).unwrap(),
            "| figure | value |\n|---|---|\n| fuzzing `apply_bytes`, new |\n| fuzzing `proto_session`, 0 crashes | old |\n| fuzzing `apply_fixed`, new |\n\nafter\n"
        );
        assert!(with_rows("no table\n", &rows).is_err());
    }

    #[test]
    fn a_row_says_edges_and_executions() {
        let run = Run {
            execs: 2_489_225,
            edges: 79,
        };
        assert_eq!(
            row("apply_bytes", run, 60, "2026-12-03"),
            "| fuzzing `apply_bytes`, 0 crashes | 79 edges covered (libFuzzer `cov:`), 2,489,225 executions in 60 s from a fresh corpus (2026-12-03) | `cargo xtask fuzz --write-figures` |"
        );
        assert_eq!(today().len(), 10);
        assert!(today().as_str() > "2026-01-01");
    }

    #[test]
    fn the_readme_has_a_fuzzing_row_per_target() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
        for t in TARGETS {
            let key = format!("| fuzzing `{t}`, 0 crashes | ");
            assert!(readme.contains(&key), "README.md has no row `{key}…`");
        }
    }

    #[test]
    fn seeds_are_patch_files_after_the_harness_bytes() {
        let dir = std::env::temp_dir().join(format!("xtask-seeds-{}", std::process::id()));
        for (target, lead) in [("apply_bytes", 1), ("apply_fixed", 2)] {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let n = seed(target, &dir).unwrap();
            assert_eq!(n, std::fs::read_dir(&dir).unwrap().count());
            assert!(n >= 1, "the generated pair at least");
            for e in std::fs::read_dir(&dir).unwrap() {
                let data = std::fs::read(e.unwrap().path()).unwrap();
                assert!(data[..lead].iter().all(|&b| b == 0xFF));
                let entries = host_genpat::container::parse(&data[lead..]).unwrap();
                assert!(entries
                    .iter()
                    .all(|e| e.header.target.size as usize <= SEED_IMAGE + 100));
            }
        }
        assert_eq!(seed("proto_session", &dir).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

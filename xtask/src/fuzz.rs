//! `cargo xtask fuzz [--time SECS] [TARGET ...]`: runs the `cargo fuzz`
//! targets of `fuzz/` (all of them by default) for a fixed time each,
//! installing cargo-fuzz first if it is missing, and prints one line per
//! target with the executions done. libFuzzer's `-s none` build works on
//! stable Rust.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The targets of `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 3] = ["apply_bytes", "apply_structured", "proto_session"];

fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Installs cargo-fuzz unless `cargo fuzz` already runs.
fn ensure_cargo_fuzz() -> Result<(), String> {
    let present = Command::new(cargo_program())
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: cargo-fuzz is missing; installing it (a few minutes, once)");
    crate::cargo(&["install", "cargo-fuzz", "--locked"])
}

/// Runs each of `targets` for `secs` seconds; returns their execution
/// counts.
pub fn fuzz(secs: u64, targets: &[String]) -> Result<Vec<(String, u64)>, String> {
    ensure_cargo_fuzz()?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fuzz_dir = root.join("fuzz");
    let mut counts = Vec::new();
    for target in targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let time = format!("-max_total_time={secs}");
        let args = [
            "fuzz",
            "run",
            "--release",
            "-s",
            "none",
            target.as_str(),
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
        let mut runs = None;
        let mut artifact = None;
        let stderr = child.stderr.take().ok_or("no stderr from cargo fuzz")?;
        for line in BufReader::new(stderr).lines() {
            let line = line.map_err(|e| e.to_string())?;
            // Progress lines are many; keep the log short.
            if !line.starts_with('#') || line.contains("DONE") || line.contains("INITED") {
                eprintln!("{line}");
            }
            // libFuzzer's last words: "Done 123456 runs in 20 second(s)".
            // "artifact_prefix='…'; Test unit written to ./artifacts/…".
            if let Some((_, path)) = line.split_once("Test unit written to ") {
                artifact = Some(path.trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("Done ") {
                runs = rest.split(' ').next().and_then(|n| n.parse::<u64>().ok());
            }
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        if let Some(path) = artifact {
            return Err(format!(
                "fuzz target {target} found a failing input ({status}), written to fuzz/{path}; \
                 copy it to tests/fuzz-regressions/{target}/ so that `cargo test` replays it, then fix the bug"
            ));
        }
        if !status.success() {
            return Err(format!("`cargo fuzz run {target}` failed ({status})"));
        }
        let runs = runs
            .ok_or_else(|| format!("fuzz target {target}: no run count in libFuzzer's output"))?;
        println!("fuzz {target}: {runs} executions in {secs} s, 0 crashes");
        counts.push((target.clone(), runs));
    }
    Ok(counts)
}

/// `cargo xtask fuzz` with its arguments.
pub fn main(args: &[String]) -> Result<(), String> {
    let mut secs = 60;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                secs = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--time wants a number of seconds")?
            }
            t if TARGETS.contains(&t) => targets.push(t.to_string()),
            other => {
                return Err(format!(
                    "unknown fuzz argument or target '{other}' (targets: {})",
                    TARGETS.join(", ")
                ))
            }
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    fuzz(secs, &targets).map(drop)
}

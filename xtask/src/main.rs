//! `cargo xtask <task>`: the project's commands, runnable on a fresh
//! machine that has only the Rust toolchain (rustup).
//!
//! - `cargo xtask test`: installs the no_std targets, runs the whole
//!   workspace test suite, and builds `core` for the two Cortex-M targets.
//! - `cargo xtask bench [CORPUS_DIR] [--runs N]`: patch sizes and times of
//!   genpat next to bsdiff, xdelta3 and zstd on the firmware corpus.
//! - `cargo xtask check`: formatting, clippy and rustdoc, all with warnings
//!   as errors.

mod bench;

use std::process::{exit, Command};

/// The microcontroller targets `core` must build for.
const NO_STD_TARGETS: [&str; 2] = ["thumbv7em-none-eabihf", "thumbv6m-none-eabi"];

fn main() {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "test" => test(),
        "check" => check(),
        "bench" => bench::bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        _ => {
            eprintln!("usage: cargo xtask <test|check|bench>\n  test   install targets, run every test, build core for Cortex-M\n  check  cargo fmt --check, clippy and rustdoc with -D warnings\n  bench [CORPUS_DIR] [--runs N]  patch sizes and times next to bsdiff, xdelta3, zstd");
            exit(1);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: {e}");
        exit(1);
    }
}

/// Runs a command, echoing it, and fails if it fails.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

pub(crate) fn cargo(args: &[&str]) -> Result<(), String> {
    run(
        &std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        args,
        &[],
    )
}

fn install_targets() -> Result<(), String> {
    let mut args = vec!["target", "add"];
    args.extend(NO_STD_TARGETS);
    run("rustup", &args, &[])
}

fn test() -> Result<(), String> {
    install_targets()?;
    cargo(&["test", "--workspace", "--release"])?;
    for t in NO_STD_TARGETS {
        for features in ["", "defmt"] {
            let mut args = vec![
                "build",
                "--package",
                "flashpatch",
                "--release",
                "--target",
                t,
            ];
            if !features.is_empty() {
                args.extend(["--features", features]);
            }
            cargo(&args)?;
        }
    }
    eprintln!(
        "xtask: all tests passed; core builds for {}",
        NO_STD_TARGETS.join(" and ")
    );
    Ok(())
}

fn check() -> Result<(), String> {
    run("rustup", &["component", "add", "rustfmt", "clippy"], &[])?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    run(
        &std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )
}

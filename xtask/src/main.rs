//! `cargo xtask <task>`: the project's commands, runnable on a fresh
//! machine that has only the Rust toolchain (rustup).
//!
//! - `cargo xtask test`: installs the no_std targets, runs the whole
//!   workspace test suite, core's tests again with the devices' feature
//!   set, core's examples (each must print `OK`), builds `core` for the
//!   two Cortex-M targets, and runs the end-to-end tests of
//!   `firmware-demo` on QEMU (`e2e.rs`).
//! - `cargo xtask demo [--in-place] [--board mps2-an386|microbit]`: the
//!   firmware demo on QEMU (`demo.rs`; with one image slot, updated in
//!   place, `in_place.rs`; on the micro:bit, `microbit/`).
//! - `cargo xtask serve`: the demo's v1 on QEMU with its UART on a
//!   pseudo-terminal, until interrupted (`serve.rs`).
//! - `cargo xtask bench [CORPUS_DIR] [--runs N]`: patch sizes and times of
//!   genpat next to bsdiff, xdelta3 and zstd on the firmware corpus, and the
//!   device-side figures (RAM, code size, Cortex-M4 instructions per
//!   output byte). With `--scale [--sizes 1,4,16,48]`: instead, generation
//!   CPU time and peak RSS next to bsdiff's on pairs tiled from the corpus
//!   to those sizes in MiB (`scale.rs`). With `--boards`: instead, the
//!   demo's install on mps2-an386 and on the micro:bit, and one table of
//!   applier RAM, update-path code, instructions per output byte and
//!   flash wear for both (`boards.rs`).
//! - `cargo xtask icount [CORPUS_DIR]`: only the Cortex-M4 instructions
//!   per output byte (`icount.rs`), the README's figure.
//! - `cargo xtask size`: only the code size of the apply path
//!   (`device.rs`), built like `icount`'s firmware.
//! - `cargo xtask defmt`: only the QEMU test that decodes flashpatch's
//!   defmt logs with defmt-print (`defmt_log.rs`; `qemu-test` runs it).
//! - `cargo xtask fuzz [--time SECS] [TARGET ...]`: the `cargo fuzz`
//!   targets of `fuzz/`, each for a fixed time (installs cargo-fuzz).
//! - `cargo xtask xip-cost`: cross-slot vs same-slot patch sizes of the
//!   demo's firmware built for both slots (`xip_cost.rs`).
//! - `cargo xtask heldout [--stats]`: patch sizes next to bsdiff's on
//!   real version pairs from PyPI, npm and crates.io (`heldout.rs`; needs
//!   the network, not part of `test`).
//! - `cargo xtask examples`: only core's examples.
//! - `cargo xtask check`: formatting, clippy and rustdoc, all with warnings
//!   as errors.

mod bench;
mod boards;
mod defmt_log;
mod demo;
mod device;
mod e2e;
mod fuzz;
mod heldout;
mod icount;
mod in_place;
mod microbit;
#[path = "../../support/pypi.rs"]
mod pypi;
mod qemu;
mod scale;
mod serve;
mod signed;
mod stack;
mod xip_cost;

use std::path::PathBuf;
use std::process::{exit, Command};

use clap::{CommandFactory, Parser, Subcommand};

/// The microcontroller targets `core` must build for.
const NO_STD_TARGETS: [&str; 2] = ["thumbv7em-none-eabihf", "thumbv6m-none-eabi"];

/// core's features on a device (firmware-demo's `proto`), with the mock
/// flash for the tests. `cargo test --workspace` builds core with every
/// member's features at once (host-genpat's `fast-crc` and `vouch`, the
/// tests' `sign`), so the code only devices run is tested in a run of its
/// own; `core/tests/device_set.rs` fails there if a host feature leaks in.
const DEVICE_FEATURES: &str = "mock,proto";

/// core's examples (`core/examples/`): each must print `OK` last.
const EXAMPLES: [&str; 3] = ["blocking", "async", "two_flashes"];

/// Seconds per fuzz target in `cargo xtask test`.
const FUZZ_SECS: u64 = 20;

/// flashpatch's project commands: `cargo xtask <COMMAND>`.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// A board the demo runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Board {
    #[value(name = "mps2-an386")]
    Mps2An386,
    Microbit,
}

#[derive(Subcommand)]
enum Task {
    /// Install targets, run every test (core's also with the devices'
    /// features), run core's examples, build core and the front-ends for
    /// Cortex-M, fuzz briefly, run the QEMU end-to-end tests.
    Test,
    /// v1 -> v2 over the UART of an emulated Cortex-M4, with a summary.
    Demo {
        /// A device with one image slot: v1 rewritten in place into v2,
        /// and a bad v3 rolled back by the update file's reverse entry.
        #[arg(long)]
        in_place: bool,
        /// The board: QEMU's mps2-an386 (Cortex-M4) or microbit (nRF51822,
        /// Cortex-M0, flash through the NVMC).
        #[arg(long, value_enum, default_value_t = Board::Mps2An386)]
        board: Board,
    },
    /// The demo's v1 on QEMU with its UART on a pseudo-terminal, for
    /// `genpat send --port` and other tools, until interrupted.
    Serve,
    /// Only the QEMU end-to-end tests.
    QemuTest,
    /// Only the micro:bit QEMU tests (part of qemu-test).
    MicrobitTest,
    /// Only the signed update on QEMU, with what the signature check costs
    /// on the device.
    Signed,
    /// Only the defmt test on QEMU: v1 built with flashpatch's defmt logs,
    /// decoded by defmt-print.
    Defmt,
    /// cargo fmt --check, clippy and rustdoc with -D warnings.
    Check,
    /// Patch sizes and times next to bsdiff, xdelta3 and zstd; device
    /// figures.
    Bench {
        /// The corpus of version pairs.
        #[arg(default_value = "../shared/corpus")]
        corpus: PathBuf,
        /// Timed runs per pair and tool.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        runs: u64,
        /// Instead: generation CPU time and peak RSS on pairs tiled from
        /// the corpus to large sizes, next to bsdiff's (`scale.rs`).
        #[arg(long)]
        scale: bool,
        /// Instead: the demo's install on both boards (mps2-an386 and
        /// microbit, a few minutes each) and one table of their applier
        /// RAM, update-path code, instructions per output byte and flash
        /// wear (`boards.rs`).
        #[arg(long, conflicts_with = "scale")]
        boards: bool,
        /// The sizes of `--scale`, in MiB.
        #[arg(long, value_delimiter = ',', default_values_t = scale::SIZES, requires = "scale", value_parser = clap::value_parser!(u64).range(1..4096))]
        sizes: Vec<u64>,
    },
    /// Cortex-M4 instructions per output byte of the apply (QEMU -icount).
    Icount {
        /// The corpus of version pairs.
        #[arg(default_value = "../shared/corpus")]
        corpus: PathBuf,
    },
    /// Code size of the apply path on thumbv7em-none-eabihf.
    Size,
    /// Run the cargo fuzz targets (all of them if none is named).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Write one README row per target (from a fresh corpus).
        #[arg(long)]
        write_figures: bool,
        /// Targets to run.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(fuzz::TARGETS))]
        targets: Vec<String>,
    },
    /// Patch sizes next to bsdiff's on real version pairs not in the
    /// corpus, fetched from PyPI and npm or built from crates.io into
    /// target/heldout (network needed; about 2 minutes once downloaded
    /// and built).
    Heldout {
        /// Also print where each pair's coded bits go.
        #[arg(long)]
        stats: bool,
    },
    /// Run core's examples; each must print OK.
    Examples,
    /// Patch size of executing in place: cross-slot (v1@A -> v2@B) vs
    /// same-slot (v1@A -> v2@A) on pairs of the demo's firmware built for
    /// both slots.
    XipCost,
}

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
            // clap names a similar command at most; list them all.
            let _ = e.print();
            eprintln!("\n{}", Cli::command().render_help());
            exit(2);
        }
        e.exit()
    });
    let result = match cli.task {
        Task::Test => test(),
        Task::Check => check(),
        Task::Bench {
            corpus,
            scale: true,
            sizes,
            ..
        } => scale::scale(&corpus, &sizes),
        Task::Bench { boards: true, .. } => boards::bench(),
        Task::Bench { corpus, runs, .. } => bench::bench(&corpus, runs as usize),
        Task::Demo {
            in_place: false,
            board: Board::Mps2An386,
        } => demo::demo(),
        Task::Demo {
            in_place: true,
            board: Board::Mps2An386,
        } => in_place::demo(),
        Task::Demo {
            in_place: false,
            board: Board::Microbit,
        } => microbit::demo(),
        Task::Demo {
            in_place: true,
            board: Board::Microbit,
        } => Err("--in-place runs on mps2-an386 only".into()),
        Task::Serve => serve::serve(),
        Task::Icount { corpus } => icount::main(&corpus),
        Task::Size => bench::print_code().map(drop),
        Task::QemuTest => e2e::run_all().and_then(|(p, f)| {
            println!("qemu tests: {p} passed, {f} failed");
            if f == 0 {
                Ok(())
            } else {
                Err("QEMU tests failed".into())
            }
        }),
        Task::MicrobitTest => microbit::tests::run_all().and_then(|(p, f)| {
            println!("qemu microbit tests: {p} passed, {f} failed");
            match f {
                0 => Ok(()),
                _ => Err("micro:bit QEMU tests failed".into()),
            }
        }),
        Task::Signed => signed::standalone(|l| println!("{l}")).map(|f| {
            println!("signature check on the device: {}", f.summary());
        }),
        Task::Defmt => defmt_log::standalone().map(|lines| {
            for l in lines {
                println!("defmt-print decodes v1's log: {l}");
            }
        }),
        Task::Fuzz {
            time,
            write_figures,
            targets,
        } => fuzz::main(time, write_figures, targets),
        Task::Heldout { stats } => heldout::main(stats),
        Task::Examples => EXAMPLES.iter().try_for_each(|name| run_example(name)),
        Task::XipCost => xip_cost::main(),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e}");
        exit(1);
    }
}

/// Runs a command, echoing it, and fails if it fails.
pub(crate) fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
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

/// Runs `cargo test …`, passing its output through, and adds up the
/// `test result:` lines of every test binary.
fn cargo_test(args: &[&str]) -> Result<(u64, u64), String> {
    use std::io::{BufRead, BufReader};
    let program = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let mut child = Command::new(&program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let stdout = child.stdout.take().ok_or("no stdout from cargo test")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(word)?
                            .trim()
                            .rsplit(' ')
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            passed += count("passed");
            failed += count("failed");
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        println!("tests: {passed} passed, {failed} failed");
        return Err(format!("`{program} {}` failed ({status})", args.join(" ")));
    }
    Ok((passed, failed))
}

/// Runs `probe` (a tool's `--version`, quietly); if it does not succeed,
/// installs the crate `krate` with `cargo install --locked` (a few minutes,
/// once).
pub fn ensure_installed(mut probe: Command, krate: &str) -> Result<(), String> {
    let present = probe
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: {krate} is missing; installing it (a few minutes, once)");
    cargo(&["install", krate, "--locked"])
}

/// Runs core's example `name` as a user would (`cargo run --release -p
/// flashpatch --example NAME`) and fails unless it ends by printing `OK`.
fn run_example(name: &str) -> Result<(), String> {
    let program = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args = ["run", "--release", "-p", "flashpatch", "--example", name];
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let out = Command::new(&program)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    if out.status.success() && stdout.lines().last() == Some("OK") {
        Ok(())
    } else {
        Err(format!("example {name} did not print OK ({})", out.status))
    }
}

fn install_targets() -> Result<(), String> {
    let mut args = vec!["target", "add"];
    args.extend(NO_STD_TARGETS);
    run("rustup", &args, &[])
}

fn test() -> Result<(), String> {
    install_targets()?;
    // python3 serves the manifest test's files over loopback HTTP.
    qemu::ensure_packages(&[("python3", "python3")])?;
    let (passed, failed) = cargo_test(&["test", "--workspace", "--release"])?;
    // core again, with the devices' features; device_set.rs's check of
    // the feature set, ignored in the workspace run, runs here.
    let (dp, df) = cargo_test(&[
        "test",
        "--release",
        "--package",
        "flashpatch",
        "--features",
        DEVICE_FEATURES,
        "--",
        "--include-ignored",
    ])?;
    println!("device feature set ({DEVICE_FEATURES}): {dp} passed, {df} failed");
    for name in EXAMPLES {
        run_example(name)?;
    }
    println!("examples: {} passed, 0 failed", EXAMPLES.len());
    let (passed, failed) = (passed + dp + EXAMPLES.len() as u64, failed + df);
    for t in NO_STD_TARGETS {
        for features in ["", "defmt", "sign"] {
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
        // The front-ends are device code too.
        cargo(&[
            "build",
            "--package",
            "flashpatch-embassy-boot",
            "--package",
            "flashpatch-mcuboot",
            "--package",
            "flashpatch-smp",
            "--release",
            "--target",
            t,
        ])?;
    }
    eprintln!(
        "xtask: core and the front-ends build for {}",
        NO_STD_TARGETS.join(" and ")
    );
    // A short run of every fuzz target; `cargo xtask fuzz` runs longer.
    fuzz::fuzz(FUZZ_SECS, &fuzz::TARGETS.map(String::from))?;
    let (qp, qf) = e2e::run_all()?;
    println!("qemu tests: {qp} passed, {qf} failed");
    let (passed, failed) = (passed + qp, failed + qf);
    println!("tests: {passed} passed, {failed} failed");
    if failed > 0 {
        return Err("QEMU end-to-end tests failed".into());
    }
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
    // firmware-demo is a workspace of its own, for the Cortex-M4 only.
    run("rustup", &["target", "add", "thumbv7em-none-eabihf"], &[])?;
    let fw = "firmware-demo/Cargo.toml";
    cargo(&["fmt", "--manifest-path", fw, "--", "--check"])?;
    cargo(&[
        "clippy",
        "--manifest-path",
        fw,
        "--target",
        "thumbv7em-none-eabihf",
        "--release",
        "--",
        "-D",
        "warnings",
    ])?;
    // The signed build too, with a made-up public key (no one holds its
    // secret key: it is only linted with).
    let key = qemu::root().join("target").join("check-demo.pub");
    let line = format!("flashpatch-ed25519-public {}\n", "5a".repeat(32));
    std::fs::write(&key, line).map_err(|e| format!("{}: {e}", key.display()))?;
    run(
        &std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        &[
            "clippy",
            "--manifest-path",
            fw,
            "--target",
            "thumbv7em-none-eabihf",
            "--release",
            "--features",
            "signed",
            "--",
            "-D",
            "warnings",
        ],
        &[("DEMO_PUBKEY", key.to_str().ok_or("non-UTF-8 path")?)],
    )?;
    // firmware-microbit: a workspace of its own too, for the Cortex-M0.
    run("rustup", &["target", "add", "thumbv6m-none-eabi"], &[])?;
    let mb = "firmware-microbit/Cargo.toml";
    cargo(&["fmt", "--manifest-path", mb, "--", "--check"])?;
    cargo(&[
        "clippy",
        "--manifest-path",
        mb,
        "--target",
        "thumbv6m-none-eabi",
        "--release",
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Task, ErrorKind> {
        Cli::try_parse_from(["cargo xtask"].iter().chain(args))
            .map(|c| c.task)
            .map_err(|e| e.kind())
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn unknown_commands_flags_and_values_are_errors() {
        assert_eq!(
            parse(&["demo", "--board", "nosuch"]).err(),
            Some(ErrorKind::InvalidValue)
        );
        assert_eq!(
            parse(&["demo", "--boards", "microbit"]).err(),
            Some(ErrorKind::UnknownArgument)
        );
        assert_eq!(parse(&["bogus"]).err(), Some(ErrorKind::InvalidSubcommand));
        assert_eq!(
            parse(&["fuzz", "nosuch"]).err(),
            Some(ErrorKind::InvalidValue)
        );
        assert_eq!(
            parse(&["bench", "--runs", "0"]).err(),
            Some(ErrorKind::ValueValidation)
        );
        assert!(matches!(
            parse(&["demo"]),
            Ok(Task::Demo {
                in_place: false,
                board: Board::Mps2An386
            })
        ));
        assert!(matches!(
            parse(&["demo", "--in-place"]),
            Ok(Task::Demo {
                in_place: true,
                board: Board::Mps2An386
            })
        ));
        assert!(matches!(
            parse(&["demo", "--board", "mps2-an386"]),
            Ok(Task::Demo {
                in_place: false,
                board: Board::Mps2An386
            })
        ));
        assert!(matches!(
            parse(&["demo", "--board", "microbit"]),
            Ok(Task::Demo {
                in_place: false,
                board: Board::Microbit
            })
        ));
        assert!(matches!(
            parse(&["fuzz", "--time", "5", "apply_fixed"]),
            Ok(Task::Fuzz { time: 5, write_figures: false, ref targets }) if targets == &["apply_fixed"]
        ));
        assert!(matches!(
            parse(&["bench", "corpus", "--runs", "2"]),
            Ok(Task::Bench { runs: 2, scale: false, ref corpus, .. }) if corpus == std::path::Path::new("corpus")
        ));
        assert!(matches!(
            parse(&["bench", "--scale", "--sizes", "1,4"]),
            Ok(Task::Bench { scale: true, ref sizes, .. }) if sizes == &[1, 4]
        ));
        assert!(matches!(
            parse(&["bench", "--scale"]),
            Ok(Task::Bench { scale: true, ref sizes, .. }) if sizes == &scale::SIZES
        ));
        assert!(matches!(
            parse(&["bench", "--boards"]),
            Ok(Task::Bench {
                boards: true,
                scale: false,
                ..
            })
        ));
        assert_eq!(
            parse(&["bench", "--boards", "--scale"]).err(),
            Some(ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            parse(&["bench", "--sizes", "1"]).err(),
            Some(ErrorKind::MissingRequiredArgument)
        );
    }
}

//! The micro:bit's QEMU tests, run by `cargo xtask test` (`e2e.rs`):
//! refusals, an update, a rollback, and power cuts at chosen flash
//! operations (`cuts.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use host_genpat::send::{self, Quiet, SendOptions, SendReport};

use super::{build, provisioned_flash, Board, Build};
use crate::demo::{make_patch, work_dir};
use crate::qemu::RunOptions;

pub(super) const QUIET: RunOptions = RunOptions {
    icount: false,
    echo: false,
};
pub(super) const SECS: fn(u64) -> Duration = Duration::from_secs;

pub(super) fn opts() -> SendOptions {
    SendOptions {
        timeout: SECS(10),
        restart: SECS(30),
    }
}

/// The builds and patches the tests use, in `target/qemu-microbit/`.
pub(super) struct Images {
    pub dir: PathBuf,
    pub v1: Vec<u8>,
    pub elfs: Vec<PathBuf>,
    pub v1_v2: Vec<u8>,
    pub v2_v3: Vec<u8>,
    pub foreign: Vec<u8>,
    pub corrupt: Vec<u8>,
    /// v1 -> v2 linked for slot A, the slot v1 runs from: a patch made
    /// for the wrong slot.
    pub wrong_slot: Vec<u8>,
}

fn images(dir: &Path) -> Result<Images, String> {
    let b = |name, bad, slot| Build { name, bad, slot };
    let (e1, v1) = build(b("v1", false, 0), dir)?;
    let (e2, _) = build(b("v2", false, 1), dir)?;
    let (e3, _) = build(b("v3", true, 0), dir)?;
    build(b("v2", false, 0), dir)?;
    let v1_v2 = make_patch(dir, "v1@A.bin", "v2@B.bin", "v1-v2.fpat")?;
    let mut corrupt = v1_v2.clone();
    let at = corrupt.len() - 40;
    corrupt[at] ^= 0x08;
    Ok(Images {
        dir: dir.to_path_buf(),
        v1,
        elfs: vec![dir.join("boot.elf"), e1, e2, e3],
        v1_v2,
        v2_v3: make_patch(dir, "v2@B.bin", "v3@A.bin", "v2-v3.fpat")?,
        // A patch for a source the device does not run.
        foreign: make_patch(dir, "v3@A.bin", "v2@B.bin", "v3-v2.fpat")?,
        corrupt,
        wrong_slot: make_patch(dir, "v1@A.bin", "v2@A.bin", "v1-v2-wrong-slot.fpat")?,
    })
}

/// A patch whose image is linked for the slot v1 runs from: it applies
/// and verifies (the image is what it says), but the boot stage does not
/// start an image outside the slot it is linked for, and the trial runs
/// out: v1 comes back.
fn wrong_slot(imgs: &Images) -> Result<(), String> {
    let mut b = start(&imgs.dir, &provisioned_flash(&imgs.v1)?)?;
    let r = send_ok(&mut b, &imgs.wrong_slot)?;
    let back = r.after.as_ref().map(|a| a.version.as_str());
    expect(
        r.text == "OK" && back == Some("v1"),
        &format!("wrong-slot patch: {} / {back:?}", r.text),
        &b.q.log,
    )?;
    expect(
        b.q.wait_for("restored by a rollback", SECS(30)).is_some(),
        "v1 says it was restored by a rollback",
        &b.q.log,
    )?;
    let refused =
        b.q.log
            .iter()
            .filter(|l| l.contains("is not linked for 0x1d000"))
            .count();
    expect(refused >= 1, "the boot stage refused the image", &b.q.log)?;
    println!(
        "qemu microbit: a v1 -> v2 patch linked for the running slot: not started ({refused}x), rolled back to v1 ... ok"
    );
    b.q.kill();
    Ok(())
}

/// Starts the board with `flash` and waits until the application
/// listens. A device that does not come up fails the test.
pub(super) fn start(dir: &Path, flash: &[u8]) -> Result<Board, String> {
    let mut b = Board::start(dir, flash, &QUIET, true)?;
    if b.q.wait_for("waiting for an update", SECS(30)).is_none() {
        let code = b.q.wait_exit(SECS(1));
        return Err(format!(
            "the device did not come up (QEMU exit {code:?}): {:?}",
            b.q.log
        ));
    }
    Ok(b)
}

pub(super) fn send_ok(b: &mut Board, patch: &[u8]) -> Result<SendReport, String> {
    send::send(&mut b.uart, patch, &opts(), &mut Quiet).map_err(|e| format!("send: {e}"))
}

pub(super) fn expect(cond: bool, what: &str, log: &[String]) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!("{what}; device console: {log:#?}"))
    }
}

/// One QEMU process: refusals keep v1; v1 -> v2 confirmed; v2 -> bad v3
/// rolls back to v2 by itself (three resets inside the process, which
/// keep the flash).
fn results_and_rollback(imgs: &Images) -> Result<(), String> {
    let mut b = start(&imgs.dir, &provisioned_flash(&imgs.v1)?)?;
    let r = send_ok(&mut b, &imgs.corrupt)?;
    expect(
        r.text == "Patch data is invalid or corrupt",
        &format!("corrupt patch: {}", r.text),
        &b.q.log,
    )?;
    let r = send_ok(&mut b, &imgs.foreign)?;
    expect(
        r.text == "No suitable patches were found",
        &format!("foreign patch: {}", r.text),
        &b.q.log,
    )?;
    let d = send::hello(&mut b.uart, &opts()).map_err(|e| e.to_string())?;
    expect(
        d.version == "v1" && !d.trial,
        "still v1 after refusals",
        &b.q.log,
    )?;
    println!("qemu microbit: corrupt patch and foreign patch refused, v1 keeps running ... ok");

    let r = send_ok(&mut b, &imgs.v1_v2)?;
    let after = r.after.clone().map(|a| a.version);
    expect(
        r.text == "OK" && after.as_deref() == Some("v2"),
        &format!("v1 -> v2: {} / {after:?}", r.text),
        &b.q.log,
    )?;
    expect(
        b.q.wait_for("v2 confirmed", SECS(20)).is_some(),
        "v2 confirmed itself",
        &b.q.log,
    )?;
    expect(
        b.q.log
            .iter()
            .any(|l| l.contains("executing in place at 0x1d000")),
        "v2 runs in place in slot B",
        &b.q.log,
    )?;
    println!(
        "qemu microbit: v1 -> v2 over the UART, v2 runs in place in slot B and confirms ... ok"
    );

    let r = send_ok(&mut b, &imgs.v2_v3)?;
    expect(r.text == "OK", &format!("v2 -> v3: {}", r.text), &b.q.log)?;
    let back = r.after.as_ref().map(|a| a.version.as_str());
    expect(
        back == Some("v2"),
        &format!("after bad v3 the device runs {back:?}"),
        &b.q.log,
    )?;
    expect(
        b.q.wait_for("restored by a rollback", SECS(30)).is_some(),
        "v2 says it was restored by a rollback",
        &b.q.log,
    )?;
    let fails =
        b.q.log
            .iter()
            .filter(|l| l.contains("self-test FAILED"))
            .count();
    expect(fails >= 1, "v3 ran and failed its self-test", &b.q.log)?;
    let d = send::hello(&mut b.uart, &opts()).map_err(|e| e.to_string())?;
    expect(
        d.version == "v2" && !d.trial,
        "v2 confirmed after the rollback",
        &b.q.log,
    )?;
    println!(
        "qemu microbit: v2 -> bad v3 (slot A): v3 fails its self-test {fails}x, rolled back to v2 ... ok"
    );
    b.q.kill();
    Ok(())
}

/// The deepest chain of frames from the application's update (apply,
/// read-back, activation, and the paths the demo does not take: an update
/// whose boot record forgets the image in the slot it writes, a selection
/// or an activation that hashes a slot), read from v2's ELF
/// (`crate::stack`), plus the applier's state: within the 4,096-byte goal
/// whatever path an update takes.
fn static_stack(imgs: &Images) -> Result<(), String> {
    let elf = &imgs.elfs[2];
    let state = crate::stack::symbol_size(elf, "APPLIER")?;
    crate::stack::check(
        "qemu microbit",
        "the update",
        elf,
        "3app6update",
        (state, "the applier state"),
        4096,
    )?;
    println!("qemu microbit: static stack bound ... ok");
    Ok(())
}

/// Runs every micro:bit QEMU test; returns (passed, failed).
pub fn run_all() -> Result<(u64, u64), String> {
    crate::run("rustup", &["target", "add", super::TARGET], &[])?;
    crate::qemu::ensure_packages(&[("qemu-system-arm", "qemu-system-arm")])?;
    let dir = work_dir("qemu-microbit")?;
    let imgs = images(&dir)?;
    let (mut passed, mut failed) = (0, 0);
    match results_and_rollback(&imgs) {
        Ok(()) => passed += 1,
        Err(e) => {
            println!("qemu microbit: results and rollback ... FAILED: {e}");
            failed += 1;
        }
    }
    match wrong_slot(&imgs) {
        Ok(()) => passed += 1,
        Err(e) => {
            println!("qemu microbit: wrong slot ... FAILED: {e}");
            failed += 1;
        }
    }
    match static_stack(&imgs) {
        Ok(()) => passed += 1,
        Err(e) => {
            println!("qemu microbit: static stack bound ... FAILED: {e}");
            failed += 1;
        }
    }
    match super::cuts::run_all_cuts(&imgs) {
        Ok(()) => passed += 1,
        Err(e) => {
            println!("qemu microbit: power cuts ... FAILED: {e}");
            failed += 1;
        }
    }
    Ok((passed, failed))
}

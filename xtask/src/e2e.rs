//! End-to-end tests on QEMU, run by `cargo xtask test`: the firmware, the
//! protocol and genpat's sender, with the device's flash in a file, so
//! that killing QEMU is a power cut; last, signed updates (`signed.rs`).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use host_genpat::send::{self, Quiet, SendError, SendEvents, SendOptions, SendReport};

use flashpatch::slots::Slot;

use crate::demo::{make_patch, make_patch_with, make_xip_patch, work_dir};
use crate::qemu::{self, Qemu, RunOptions, Version};

const QUIET: RunOptions = RunOptions {
    icount: false,
    echo: false,
};
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn opts() -> SendOptions {
    SendOptions {
        timeout: SECS(10),
        restart: SECS(30),
    }
}

struct Bench {
    dir: PathBuf,
    boot: PathBuf,
}

impl Bench {
    fn flash(&self, image: &[u8]) -> Result<(), String> {
        std::fs::write(self.dir.join("flash.bin"), qemu::provisioned_flash(image)?)
            .map_err(|e| e.to_string())
    }

    /// Starts QEMU on the flash file as it is, and waits until the
    /// application listens. A device that cannot boot fails the test.
    fn start(&self) -> Result<(Qemu, UnixStream), String> {
        let (mut q, s) = Qemu::start_xip(&self.dir, &self.boot, &QUIET)?;
        if q.wait_for("waiting for an update", SECS(30)).is_none() {
            let code = q.wait_exit(SECS(1));
            return Err(format!(
                "the device did not come up (QEMU exit {code:?}; brick = exit {}): {:?}",
                qemu::EXIT_NO_IMAGE,
                q.log
            ));
        }
        Ok((q, s))
    }
}

/// The UART on a pseudo-terminal (`cargo xtask serve`): the genpat
/// binary opens it as a serial port and updates v1 to v2; returns the
/// terminal's path.
fn over_a_pty(b: &Bench, imgs: &Images) -> Result<String, String> {
    b.flash(&imgs.v1)?;
    let (mut q, pts) = Qemu::start_pty(&b.dir, &b.boot, &QUIET)?;
    q.wait_for("waiting for an update", SECS(30))
        .ok_or("v1 did not start")?;
    let genpat = crate::demo::genpat()?;
    let patch = b.dir.join("v1-v2.fpat");
    let out = std::process::Command::new(&genpat)
        .arg("send")
        .arg(&patch)
        .args(["--port", &pts])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", genpat.display()))?;
    let said = String::from_utf8_lossy(&out.stdout);
    expect(
        out.status.success() && said == "OK\n",
        &format!(
            "genpat send --port {pts}: {} {said:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        &q,
    )?;
    let confirmed = q.wait_for("v2 confirmed", SECS(30));
    expect(confirmed.is_some(), "v2 did not confirm itself", &q)?;
    q.kill();
    Ok(pts)
}

/// `smpmgr` from PyPI, in a virtual environment under `target/` made the
/// first time (the same one `frontends/smp`'s tests use).
/// Uploads the first bytes of a file over SMP with smpclient and stops:
/// `upload_part.py PORT FILE N` leaves its upload loop once the device
/// has N bytes or more, and prints how many it has.
const UPLOAD_PART: &str = r#"import asyncio, sys
from smpclient import SMPClient
from smpclient.transport.serial import SMPSerialTransport

async def main(port, path, stop):
    data = open(path, "rb").read()
    async with SMPClient(SMPSerialTransport(), port, timeout_s=10) as client:
        async for off in client.upload(data):
            if off >= stop:
                print(off)
                return

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"#;

fn smpmgr() -> Result<PathBuf, String> {
    crate::pypi::tool(&qemu::root(), "smpmgr==0.19.1", "smpmgr")
}

/// SMP on the UART, through a pseudo-terminal: `smpmgr image state-read`,
/// `smpmgr upgrade --format any` with a damaged patch (refused, v1 runs
/// on) and with the v1 -> v2 patch (the device restarts into v2 and
/// confirms it), and the state read again. Returns what each step showed.
fn smp_over_a_pty(b: &Bench, imgs: &Images) -> Result<Vec<String>, String> {
    let tool = smpmgr()?;
    b.flash(&imgs.v1)?;
    let (mut q, pts) = Qemu::start_pty(&b.dir, &b.boot, &QUIET)?;
    q.wait_for("waiting for an update", SECS(30))
        .ok_or("v1 did not start")?;
    let smp = |args: &[&str]| {
        std::process::Command::new(&tool)
            .args(["--port", &pts, "--timeout", "10"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run smpmgr: {e}"))
    };
    let said = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let mut lines = Vec::new();
    let o = smp(&["image", "state-read"])?;
    expect(
        o.status.success() && said(&o).contains("version='v1'"),
        &format!("smpmgr image state-read on v1: {}", said(&o)),
        &q,
    )?;
    lines.push(format!(
        "smpmgr --port {pts} image state-read shows v1 running"
    ));
    let corrupt = b.dir.join("corrupt.fpat");
    std::fs::write(&corrupt, &imgs.corrupt).map_err(|e| e.to_string())?;
    let o = smp(&[
        "upgrade",
        "--format",
        "any",
        corrupt.to_str().ok_or("path")?,
    ])?;
    let refused = q.wait_for("the upload does not apply", SECS(10));
    expect(
        !o.status.success() && refused.is_some(),
        &format!("a damaged patch over SMP: {} {}", o.status, said(&o)),
        &q,
    )?;
    lines.push("smpmgr upgrade --format any with a damaged patch fails, v1 runs on".into());
    // A client that stops in the middle of the upload (smpclient, the
    // library under smpmgr, leaving its upload loop), then smpmgr sending
    // the same upload again: the device goes on where it is.
    let good = b.dir.join("v1-v2.fpat");
    let script = b.dir.join("upload_part.py");
    std::fs::write(&script, UPLOAD_PART).map_err(|e| e.to_string())?;
    let python = tool.with_file_name("python");
    let part = std::process::Command::new(&python)
        .arg(&script)
        .args([&pts, good.to_str().ok_or("path")?, "400"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let stopped: u64 = String::from_utf8_lossy(&part.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("the partial upload: {}", said(&part)))?;
    let o = smp(&["upgrade", "--format", "any", good.to_str().ok_or("path")?])?;
    let resumed = q
        .wait_for("the same upload begun again", SECS(10))
        .and_then(|l| crate::demo::number_after(&l, "goes on from byte"));
    expect(
        resumed.is_some_and(|r| r == stopped),
        &format!("the upload begun again did not go on from byte {stopped}: {resumed:?}"),
        &q,
    )?;
    lines.push(format!(
        "a client that stops its upload at byte {stopped}, then smpmgr upgrade: the device goes on from byte {stopped}"
    ));
    expect(
        o.status.success(),
        &format!("smpmgr upgrade: {}", said(&o)),
        &q,
    )?;
    let confirmed = q.wait_for("v2 confirmed", SECS(30));
    expect(
        confirmed.is_some(),
        "v2 did not confirm itself after the SMP upgrade",
        &q,
    )?;
    q.wait_for("waiting for an update", SECS(10));
    // The request that completed the upload was answered after the whole
    // apply and activation: its stack high-water is the upload's.
    let upload_stack = q
        .log
        .iter()
        .skip_while(|l| !l.contains("smp: upload complete"))
        .find(|l| l.contains("app: smp measured:"))
        .and_then(|l| crate::demo::number_after(l, "stack_high_water="))
        .ok_or("no SMP measurement after the upload")?;
    lines.push(format!(
        "smpmgr upgrade --format any v1-v2.fpat ({} bytes) succeeds; the device restarts into v2 and confirms it (stack high-water of the SMP upload, apply and activation: {upload_stack} B)",
        imgs.v1_v2.len()
    ));
    let o = smp(&["image", "state-read"])?;
    expect(
        o.status.success()
            && said(&o).contains("version='v2'")
            && said(&o).contains("version='v1'"),
        &format!("smpmgr image state-read on v2: {}", said(&o)),
        &q,
    )?;
    lines.push(
        "smpmgr image state-read shows v2 running and v1 in the other slot (versions from each image's tag)"
            .into(),
    );
    // v2 runs from slot B: slot A (v1) may be erased, slot B not.
    let o = smp(&["image", "erase", "1"])?;
    let refused = q.wait_for("erase of slot 1 refused", SECS(10));
    expect(
        o.status.success() && said(&o).contains("EBADSTATE") && refused.is_some(),
        &format!("smpmgr image erase 1 (the running slot): {}", said(&o)),
        &q,
    )?;
    let o = smp(&["image", "erase", "0"])?;
    let done = q.wait_for("erase of slot 0 done", SECS(10));
    let state = smp(&["image", "state-read"])?;
    expect(
        o.status.success()
            && done.is_some()
            && said(&state).contains("version='v2'")
            && !said(&state).contains("slot=0"),
        &format!(
            "smpmgr image erase 0: {}; then state-read: {}",
            said(&o),
            said(&state)
        ),
        &q,
    )?;
    lines.push(
        "smpmgr image erase 1 (v2, running) is refused; image erase 0 empties v1's slot, state-read shows v2 alone".into(),
    );
    q.kill();
    Ok(lines)
}

fn send_ok(s: &mut UnixStream, patch: &[u8]) -> Result<SendReport, String> {
    send::send(s, patch, &opts(), &mut Quiet).map_err(|e| format!("send: {e}"))
}

fn expect(cond: bool, what: &str, q: &Qemu) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!("{what}; device console: {:#?}", q.log))
    }
}

/// One QEMU session: refusals keep v1; v1 -> v2 confirmed; the same patch
/// again; v2 -> bad v3 rolls back to v2 by itself.
fn results_and_rollback(b: &Bench, imgs: &Images) -> Result<(), String> {
    b.flash(&imgs.v1)?;
    let (mut q, mut s) = b.start()?;
    let r = send_ok(&mut s, &imgs.corrupt)?;
    expect(
        r.text == "Patch data is invalid or corrupt",
        &format!("corrupt patch: {}", r.text),
        &q,
    )?;
    let r = send_ok(&mut s, &imgs.v3_v2)?;
    expect(
        r.text == "No suitable patches were found",
        &format!("foreign patch: {}", r.text),
        &q,
    )?;
    let d = send::hello(&mut s, &opts()).map_err(|e| e.to_string())?;
    expect(d.version == "v1" && !d.trial, "still v1 after refusals", &q)?;
    println!("qemu e2e: corrupt patch and foreign patch refused, v1 keeps running ... ok");

    let r = send_ok(&mut s, &imgs.v1_v2)?;
    let after = r.after.clone().map(|a| a.version);
    expect(
        r.text == "OK" && after.as_deref() == Some("v2"),
        &format!("v1 -> v2: {} / {after:?}", r.text),
        &q,
    )?;
    expect(
        q.wait_for("v2 confirmed", SECS(20)).is_some(),
        "v2 confirmed itself",
        &q,
    )?;
    println!("qemu e2e: v1 -> v2 over the UART, v2 boots and confirms ... ok");

    let r = send_ok(&mut s, &imgs.v1_v2)?;
    expect(
        r.text == "OK, new version already installed",
        &format!("same patch twice: {}", r.text),
        &q,
    )?;
    println!("qemu e2e: the same patch twice: already installed ... ok");

    let r = send_ok(&mut s, &imgs.v2_v3)?;
    expect(r.text == "OK", &format!("v2 -> v3: {}", r.text), &q)?;
    let back = r.after.as_ref().map(|a| a.version.as_str());
    expect(
        back == Some("v2"),
        &format!("after bad v3 the device runs {back:?}"),
        &q,
    )?;
    let restored = q.wait_for("restored by a rollback", SECS(30)).is_some();
    expect(restored, "v2 says it was restored by a rollback", &q)?;
    let fails = q
        .log
        .iter()
        .filter(|l| l.contains("self-test FAILED"))
        .count();
    expect(fails >= 1, "v3 ran and failed its self-test", &q)?;
    expect(
        q.log.iter().any(|l| l.contains("rolled back")),
        "boot stage rolled back",
        &q,
    )?;
    let d = send::hello(&mut s, &opts()).map_err(|e| e.to_string())?;
    expect(
        d.version == "v2" && !d.trial,
        "v2 confirmed after the rollback",
        &q,
    )?;
    println!("qemu e2e: v2 -> bad v3: v3 fails its self-test {fails}x, rolled back to v2 ... ok");
    q.kill();
    Ok(())
}

/// Where to cut the power.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// When the device has stored this many patch bytes.
    Acked(u32),
    /// At the `n`-th console line containing the text (from 1).
    Line(&'static str, usize),
}

struct KillAt<'q> {
    at: u32,
    q: &'q mut Qemu,
    done: bool,
}

impl SendEvents for KillAt<'_> {
    fn acked(&mut self, acked: u32, _size: u32) {
        if acked >= self.at && !self.done {
            self.q.kill();
            self.done = true;
        }
    }
}

/// The version a device runs after an update it answered with `r`, when
/// it ran `before` (the same if the image was installed already); the
/// device's answer text if the update did not succeed. Both boards' cut
/// tests.
pub fn runs_after(r: &host_genpat::send::SendReport, before: &str) -> Result<String, String> {
    match r.text.as_str() {
        "OK" => Ok(r
            .after
            .as_ref()
            .map(|a| a.version.clone())
            .unwrap_or_default()),
        "OK, new version already installed" => Ok(before.to_string()),
        t => Err(t.to_string()),
    }
}

/// Cuts the power at `cut` during v1 -> v2, restarts, checks that v1 or v2
/// boots, and completes the update from where the device says.
fn power_cut(b: &Bench, imgs: &Images, cut: Cut) -> Result<String, String> {
    b.flash(&imgs.b1)?;
    let patch = &imgs.b1_b2;
    let (mut q, mut s) = b.start()?;
    match cut {
        Cut::Acked(at) => {
            let mut k = KillAt {
                at,
                q: &mut q,
                done: false,
            };
            let r = send::send(&mut s, patch, &opts(), &mut k);
            if !k.done || !matches!(r, Err(SendError::Closed(_)) | Err(SendError::Io(_))) {
                return Err(format!(
                    "cut at {at} bytes did not happen: {:?}",
                    r.map(|r| r.text)
                ));
            }
        }
        Cut::Line(pat, n) => {
            let patch = patch.clone();
            let mut s2 = s.try_clone().map_err(|e| e.to_string())?;
            let sender = thread::spawn(move || send::send(&mut s2, &patch, &opts(), &mut Quiet));
            for i in 0..n {
                if q.wait_for(pat, SECS(30)).is_none() {
                    return Err(format!("line {pat:?} #{} never came: {:#?}", i + 1, q.log));
                }
            }
            q.kill();
            let _ = s.shutdown(std::net::Shutdown::Both);
            let _ = sender.join();
        }
    }
    let cut_log = q.log.clone();
    drop(q);
    // Power is back.
    let (mut q, mut s) = b
        .start()
        .map_err(|e| format!("after the cut ({cut:?}): {e}; before: {cut_log:#?}"))?;
    let d = send::hello(&mut s, &opts()).map_err(|e| e.to_string())?;
    expect(d.version == "v1" || d.version == "v2", "boots v1 or v2", &q)?;
    let held = d
        .resume
        .filter(|r| r.size as usize == patch.len())
        .map_or(0, |r| r.offset);
    let r = send_ok(&mut s, patch)?;
    expect(
        r.resumed_from == held,
        &format!("resumed at {} as announced ({held})", r.resumed_from),
        &q,
    )?;
    if let Cut::Acked(at) = cut {
        expect(
            held >= at / 4096 * 4096 && held > 0 || at < 4096,
            &format!("kept {held} of {at} bytes"),
            &q,
        )?;
    }
    let now = runs_after(&r, &d.version)
        .map_err(|t| format!("after the cut ({cut:?}) the update ended with {t:?}"))?;
    expect(now == "v2", &format!("ends in v2, not {now}"), &q)?;
    q.wait_for("waiting for an update", SECS(10));
    let d2 = send::hello(&mut s, &opts()).map_err(|e| e.to_string())?;
    expect(
        d2.version == "v2" && !d2.trial,
        "v2 confirmed at the end",
        &q,
    )?;
    q.kill();
    Ok(format!(
        "booted {} after the cut, resumed at byte {held}, then {}",
        d.version, r.text
    ))
}

/// A panic and a HardFault end QEMU with their own exit codes and say so
/// on the console, and so does a plain store to the flash (the MPU keeps
/// it read-only but for the flash driver's stores); a device that runs on
/// is stopped by the host.
fn faults(b: &Bench, imgs: &Images) -> Result<(), String> {
    for (fault, what, code, says) in [
        ("panic", "a panic", qemu::EXIT_PANIC, "PANIC"),
        (
            "hardfault",
            "a hardfault",
            qemu::EXIT_HARD_FAULT,
            "HARDFAULT at pc",
        ),
        (
            "flashstore",
            "a plain store to the flash (not through its driver) faults and",
            qemu::EXIT_HARD_FAULT,
            "HARDFAULT at pc",
        ),
    ] {
        let v = Version {
            name: "v1",
            bad: false,
            blob: false,
            fault: Some(fault),
        };
        let (_, image) = qemu::build_for(v, Slot::A, None, &b.dir)?;
        b.flash(&image)?;
        let (mut q, _s) = Qemu::start_xip(&b.dir, &b.boot, &QUIET)?;
        let got = q.wait_exit(SECS(30));
        if got != Some(code) || !q.log.iter().any(|l| l.contains(says)) {
            return Err(format!(
                "{fault}: QEMU exit {got:?}, not {code}: {:#?}",
                q.log
            ));
        }
        println!("qemu e2e: {what} ends QEMU with exit code {code} ... ok");
    }
    // The host-side watchdog: a device that never answers is stopped.
    b.flash(&imgs.v1)?;
    let (mut q, _s) = b.start()?;
    let got = q.wait_exit(Duration::from_millis(300));
    if got.is_some() || q.exited().is_none() {
        return Err(format!("watchdog: QEMU exit {got:?} or still running"));
    }
    println!("qemu e2e: the host-side watchdog stops a device that runs on ... ok");
    Ok(())
}

struct Images {
    /// v1 built for slot A, where the tests provision it.
    v1: Vec<u8>,
    v1_v2: Vec<u8>,
    v2_v3: Vec<u8>,
    v3_v2: Vec<u8>,
    corrupt: Vec<u8>,
    /// A same-slot entry, v1@A -> v2@A: its image cannot run in slot B.
    same_slot: Vec<u8>,
    b1: Vec<u8>,
    b1_b2: Vec<u8>,
}

/// Every release built for both slots, and the update files between them,
/// each with both directions (`make_xip_patch`).
fn images(dir: &Path) -> Result<Images, String> {
    let v = |name, bad, blob| Version {
        name,
        bad,
        blob,
        fault: None,
    };
    let v1 = qemu::build(v("v1", false, false), dir)?.a.1;
    qemu::build(v("v2", false, false), dir)?;
    qemu::build(v("v3", true, false), dir)?;
    let b1 = qemu::build(v("v1", false, true), dir)?.a.1;
    qemu::build(v("v2", false, true), dir)?;
    let v1_v2 = make_xip_patch(dir, "v1", "v2", "v1-v2.fpat", &[])?.file;
    // genpat takes the ELF files the build makes as the images they load,
    // each from its own slot's address.
    let from_elf = make_patch_with(
        dir,
        "v1@A.elf",
        "v2@B.elf",
        "v1-v2-elf.fpat",
        &qemu::ELF_LAYOUT,
    )?;
    let from_bin = std::fs::read(dir.join("v1@A-v2@B.fpat")).map_err(|e| e.to_string())?;
    if from_elf != from_bin {
        return Err("genpat v1@A.elf v2@B.elf makes another patch than v1@A.bin v2@B.bin".into());
    }
    println!("qemu e2e: genpat v1@A.elf v2@B.elf makes the v1@A.bin -> v2@B.bin patch ... ok");
    let mut corrupt = v1_v2.clone();
    let at = corrupt.len() - 40;
    corrupt[at] ^= 0x08;
    Ok(Images {
        v1,
        v1_v2,
        v2_v3: make_xip_patch(dir, "v2", "v3", "v2-v3.fpat", &[])?.file,
        v3_v2: make_xip_patch(dir, "v3", "v2", "v3-v2.fpat", &[])?.file,
        corrupt,
        same_slot: make_patch(dir, "v1@A.bin", "v2@A.bin", "v1@A-v2@A.fpat")?,
        b1,
        b1_b2: make_xip_patch(dir, "v1-blob", "v2-blob", "b1-b2.fpat", &[])?.file,
    })
}

/// A same-slot entry (v1@A -> v2@A) sent to v1 in slot A: the device
/// applies it into slot B and activates it, but that image is linked for
/// slot A; the boot stage does not start it, and restarts until the slot
/// manager rolls the trial back to v1.
fn wrong_slot(b: &Bench, imgs: &Images) -> Result<usize, String> {
    b.flash(&imgs.v1)?;
    let (mut q, mut s) = b.start()?;
    let r = send_ok(&mut s, &imgs.same_slot)?;
    let after = r.after.as_ref().map(|a| (a.version.clone(), a.trial));
    expect(
        r.text == "OK" && after == Some(("v1".into(), false)),
        &format!("v1@A -> v2@A: {} / {after:?}", r.text),
        &q,
    )?;
    expect(
        q.wait_for("restored by a rollback", SECS(30)).is_some(),
        "v1 says it was restored by a rollback",
        &q,
    )?;
    let refusals = q
        .log
        .iter()
        .filter(|l| l.contains("is not linked for 0x21020000"))
        .count();
    expect(
        refusals >= 1 && !q.log.iter().any(|l| l.contains("running from slot B")),
        &format!("the boot stage refused slot B's image ({refusals}x) and never started it"),
        &q,
    )?;
    q.kill();
    Ok(refusals)
}

/// Runs every QEMU test; returns (passed, failed).
pub fn run_all() -> Result<(u64, u64), String> {
    qemu::ensure_tools()?;
    let dir = work_dir("qemu-e2e")?;
    let imgs = images(&dir)?;
    let boot = qemu::boot_elf(&dir)?;
    let b = Bench { dir, boot };
    let (mut passed, mut failed) = (0, 0);
    match results_and_rollback(&b, &imgs) {
        Ok(()) => passed += 1,
        Err(e) => {
            println!("qemu e2e: results and rollback ... FAILED: {e}");
            failed += 1;
        }
    }
    match wrong_slot(&b, &imgs) {
        Ok(n) => {
            passed += 1;
            println!("qemu e2e: a same-slot entry (v1@A -> v2@A) installs an image linked for slot A into slot B: the boot stage refuses it {n}x, the trial rolls back to v1 ... ok");
        }
        Err(e) => {
            println!("qemu e2e: a same-slot entry ... FAILED: {e}");
            failed += 1;
        }
    }
    match faults(&b, &imgs) {
        Ok(()) => passed += 1,
        Err(e) => {
            println!("qemu e2e: faults ... FAILED: {e}");
            failed += 1;
        }
    }
    match smp_over_a_pty(&b, &imgs) {
        Ok(lines) => {
            passed += 1;
            for l in lines {
                println!("qemu e2e: smp: {l} ... ok");
            }
        }
        Err(e) => {
            println!("qemu e2e: smp ... FAILED: {e}");
            failed += 1;
        }
    }
    match over_a_pty(&b, &imgs) {
        Ok(pts) => {
            passed += 1;
            println!("qemu e2e: genpat send --port {pts} (a pseudo-terminal, as cargo xtask serve offers) updates v1 to v2 ... ok");
        }
        Err(e) => {
            println!("qemu e2e: genpat send over a pseudo-terminal ... FAILED: {e}");
            failed += 1;
        }
    }
    // The in-place RAM bars (static applier state + device + stack
    // high-water of the apply; statics + stack high-water of the boot
    // stage that finishes a cut rewrite or rolls back, both measured on
    // the device) are part of what passes.
    let in_place = crate::in_place::run("qemu-in-place", false).and_then(|f| {
        let ram = f.app.0 + f.app.1 + f.app.2;
        if ram > 4096 {
            return Err(format!(
                "the in-place apply took {ram} B of RAM, over 4,096"
            ));
        }
        match f.boot_ram() {
            boot if boot > 4096 => Err(format!(
                "the in-place boot stage took {boot} B of RAM, over 4,096"
            )),
            _ => Ok(f),
        }
    });
    // The boot stage on every path, taken or not: its statics and the
    // deepest chain of frames from its `main` (`crate::stack`).
    let in_place = in_place.and_then(|f| {
        let elf = crate::demo::work_dir("qemu-in-place")?.join("inplace-boot.elf");
        crate::stack::check(
            "qemu e2e",
            "the in-place boot stage",
            &elf,
            "inplace_boot18__cortex_m_rt_main",
            (f.boot.0, "its statics"),
            4096,
        )
        .map(|()| f)
    });
    match in_place {
        Ok(f) => {
            passed += 1;
            println!(
                "qemu e2e: in place: v1 -> v2 confirmed, bad v3 rolled back after {} failed boots (applier RAM {} B, boot stage RAM {} B) ... ok",
                f.v3_fails,
                f.app.0 + f.app.1 + f.app.2,
                f.boot_ram()
            );
        }
        Err(e) => {
            println!("qemu e2e: in place ... FAILED: {e}");
            failed += 1;
        }
    }
    println!(
        "qemu e2e: power cuts during v1 -> v2, a {}-byte patch",
        imgs.b1_b2.len()
    );
    let size = imgs.b1_b2.len() as u32;
    let cuts = [
        ("transfer", Cut::Acked(1024)),
        ("transfer", Cut::Acked(size / 3)),
        ("transfer", Cut::Acked(size * 2 / 3)),
        ("transfer", Cut::Acked(size - 256)),
        ("apply", Cut::Line("progress applying", 1)),
        ("apply", Cut::Line("progress applying", 3)),
        (
            "verify",
            Cut::Line("progress applying", (size / 4096) as usize + 1),
        ),
        ("activation", Cut::Line("progress activating", 1)),
        ("activation", Cut::Line("progress restarting", 1)),
        ("first boot", Cut::Line("boot: slot B", 1)),
        ("first boot", Cut::Line("running from slot B (trial)", 1)),
        ("first boot", Cut::Line("self-test (", 1)),
    ];
    let mut cut_ok = 0;
    for (i, (phase, cut)) in cuts.iter().enumerate() {
        match power_cut(&b, &imgs, *cut) {
            Ok(what) => {
                cut_ok += 1;
                println!(
                    "qemu e2e: power cut {:2} ({phase}, {cut:?}): {what} ... ok",
                    i + 1
                );
            }
            Err(e) => println!(
                "qemu e2e: power cut {:2} ({phase}, {cut:?}) ... FAILED: {e}",
                i + 1
            ),
        }
    }
    println!("qemu e2e: power cuts: {cut_ok} of {} recovered", cuts.len());
    if cut_ok == cuts.len() {
        passed += 1;
    } else {
        failed += 1;
    }
    // The second board: QEMU's micro:bit (`microbit/tests.rs`).
    match crate::microbit::tests::run_all() {
        Ok((mp, mf)) => {
            passed += mp;
            failed += mf;
        }
        Err(e) => {
            println!("qemu microbit ... FAILED: {e}");
            failed += 1;
        }
    }
    match crate::defmt_log::run(&b.dir, &b.boot) {
        Ok(lines) => {
            passed += 1;
            for l in lines {
                println!("qemu e2e: defmt-print decodes v1's log: {l} ... ok");
            }
        }
        Err(e) => {
            println!("qemu e2e: defmt logs ... FAILED: {e}");
            failed += 1;
        }
    }
    match crate::signed::run(&b.dir, &b.boot, |l| println!("{l}")) {
        Ok(f) => {
            passed += 1;
            println!(
                "qemu e2e: signature check on the device: {} ... ok",
                f.summary()
            );
        }
        Err(e) => {
            println!("qemu e2e: signed updates ... FAILED: {e}");
            failed += 1;
        }
    }
    Ok((passed, failed))
}

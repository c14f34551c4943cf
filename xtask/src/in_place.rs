//! `cargo xtask demo --in-place`: the in-place demo on QEMU. v1 runs from
//! the one image slot (`firmware-demo`'s `inplace` and `inplace-boot`);
//! an update file of `genpat diff --in-place` (the update and its reverse
//! entry) goes over the UART, v1 rewrites its own slot into v2, which
//! boots on trial and confirms itself; then a bad v3 fails its self-test
//! and the boot stage rolls it back to v2 with the file's reverse entry.
//! One summary line of what it took. `cargo xtask test` runs it too.

use std::path::Path;
use std::time::Duration;

use host_genpat::send::{self, Quiet, SendOptions, SendReport};

use crate::demo::{make_patch, make_patch_with, number_after, work_dir};
use crate::qemu::{self, Qemu, RunOptions, Version};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// What the in-place demo measured.
pub struct Figures {
    /// Bytes of v2's image.
    pub image: usize,
    /// Bytes of the v1 -> v2 update file (update and reverse entry).
    pub file: usize,
    /// Bytes of the A/B patch of the same pair (`genpat v1 v2`).
    pub ab_patch: usize,
    /// The application's update: applier state, the `InPlace` device, and
    /// the stack high-water of the rewrite.
    pub app: (u64, u64, u64),
    /// Cortex-M4 instructions per output byte of the rewrite.
    pub ipb: u64,
    /// The boot stage that rolled v3 back: its statics and its whole
    /// stack high-water.
    pub boot: (u64, u64),
    /// Bytes of the boot stage's code and read-only data, and of them the
    /// update path.
    pub boot_code: (u64, u64),
    /// How often v3 failed its self-test before the rollback.
    pub v3_fails: usize,
    /// The power cuts during v1 -> v2.
    pub cuts: Cuts,
}

impl Figures {
    /// The boot stage's stack high-water: the deeper of the rollback's and
    /// of finishing a cut rewrite.
    pub fn boot_stack(&self) -> u64 {
        self.boot.1.max(self.cuts.boot_stack)
    }

    /// The boot stage's RAM: its statics and [`Figures::boot_stack`].
    pub fn boot_ram(&self) -> u64 {
        self.boot.0 + self.boot_stack()
    }
}

/// What the power cuts during v1 -> v2 showed.
pub struct Cuts {
    /// Cuts made (each recovered, or the run failed).
    pub runs: usize,
    /// Of them, those after the commit point: the boot stage finished the
    /// rewrite.
    pub finished: usize,
    /// The boot stage's stack high-water while it finished a cut rewrite
    /// (the deepest of those runs).
    pub boot_stack: u64,
}

/// Power cuts made during v1 -> v2, spread evenly over its flash steps.
pub const CUTS: u32 = 12;

/// Kib of `bytes`.
fn kib(bytes: usize) -> usize {
    bytes / 1024
}

fn expect(cond: bool, what: &str, q: &Qemu) -> Result<(), String> {
    match cond {
        true => Ok(()),
        false => Err(format!("{what}; device console: {:#?}", q.log)),
    }
}

/// The sender's waits: a rollback takes the boot stage two failed trial
/// boots and a rewrite.
const OPTS: SendOptions = SendOptions {
    timeout: Duration::from_secs(10),
    restart: Duration::from_secs(60),
};

fn send_file(s: &mut std::os::unix::net::UnixStream, file: &[u8]) -> Result<SendReport, String> {
    send::send(s, file, &OPTS, &mut Quiet).map_err(|e| format!("send: {e}"))
}

/// The demo's images and update files.
struct Built {
    v1: Vec<u8>,
    v2: Vec<u8>,
    v1_v2: Vec<u8>,
    v2_v3: Vec<u8>,
}

/// Builds the in-place firmware into `dir`: v1, v2, bad v3, the boot
/// stage, and the update files `ip-v1-v2.fpat` and `ip-v2-v3.fpat`.
fn build(dir: &Path) -> Result<Built, String> {
    let v = |name, bad| Version {
        name,
        bad,
        blob: false,
        fault: None,
    };
    let (_, v1) = qemu::build_in_place(v("v1", false), dir)?;
    let (_, v2) = qemu::build_in_place(v("v2", false), dir)?;
    qemu::build_in_place(v("v3", true), dir)?;
    let unit = qemu::IN_PLACE_UNIT.to_string();
    let opts = ["--in-place", "--erase-unit", &unit];
    let v1_v2 = make_patch_with(dir, "ip-v1.bin", "ip-v2.bin", "ip-v1-v2.fpat", &opts)?;
    let v2_v3 = make_patch_with(dir, "ip-v2.bin", "ip-v3.bin", "ip-v2-v3.fpat", &opts)?;
    Ok(Built {
        v1,
        v2,
        v1_v2,
        v2_v3,
    })
}

/// Runs the in-place demo in `target/NAME/`; `echo` prints the device's
/// console as it comes.
pub fn run(name: &str, echo: bool) -> Result<Figures, String> {
    let dir = work_dir(name)?;
    let Built {
        v1,
        v2,
        v1_v2,
        v2_v3,
    } = build(&dir)?;
    let boot = qemu::in_place_boot_elf(&dir)?;
    let ab = make_patch(&dir, "ip-v1.bin", "ip-v2.bin", "ip-v1-v2-ab.fpat")?;
    if echo {
        println!(
            "demo: v1 is {} bytes, v2 {} bytes; the in-place update file {} bytes (update and reverse entry; the A/B patch {} bytes)",
            v1.len(),
            v2.len(),
            v1_v2.len(),
            ab.len()
        );
        println!(
            "demo: flash: one {} KiB slot, 8 KiB scratch, 8 KiB state, 72 KiB staging: {} KiB (A/B: {} KiB)",
            kib(qemu::SLOT_SIZE as usize),
            kib(qemu::IN_PLACE_FLASH_SIZE),
            kib(qemu::FLASH_SIZE)
        );
        println!("demo: booting v1 on QEMU mps2-an386 (-icount shift=0); its console:");
    }
    std::fs::write(
        dir.join("flash.bin"),
        qemu::provisioned_in_place_flash(&v1)?,
    )
    .map_err(|e| e.to_string())?;
    let opts = RunOptions { icount: true, echo };
    let (mut q, mut uart) = Qemu::start(&dir, &boot, &opts)?;
    let up = q.wait_for("waiting for an update", SECS(30));
    expect(up.is_some(), "v1 did not start", &q)?;

    let r = send_file(&mut uart, &v1_v2)?;
    let after = r.after.as_ref().map(|a| a.version.as_str());
    expect(
        r.text == "OK" && after == Some("v2"),
        &format!("v1 -> v2 in place: {} / {after:?}", r.text),
        &q,
    )?;
    let ok = q.wait_for("v2 confirmed", SECS(30)).is_some();
    expect(ok, "v2 did not confirm itself", &q)?;
    if echo {
        println!("host: v1 rewrote its slot into v2, which booted on trial and confirmed itself");
    }
    let measured = q
        .log
        .iter()
        .find(|l| l.contains("app: measured:"))
        .cloned()
        .ok_or("no measurement line of the update")?;

    q.wait_for("waiting for an update", SECS(10));
    let r = send_file(&mut uart, &v2_v3)?;
    let after = r.after.as_ref().map(|a| (a.version.as_str(), a.trial));
    expect(
        r.text == "OK" && after == Some(("v2", false)),
        &format!("v2 -> bad v3: {} / {after:?}", r.text),
        &q,
    )?;
    let restored = q.wait_for("restored by a rollback", SECS(30)).is_some();
    expect(restored, "v2 did not say it was restored by a rollback", &q)?;
    let v3_fails = q
        .log
        .iter()
        .filter(|l| l.contains("self-test FAILED"))
        .count();
    expect(v3_fails >= 1, "v3 did not run and fail its self-test", &q)?;
    let rolled = q
        .log
        .iter()
        .find(|l| l.contains("boot: measured:") && l.contains("(rolled back)"))
        .cloned();
    expect(rolled.is_some(), "the boot stage did not roll back", &q)?;
    let d = send::hello(&mut uart, &OPTS).map_err(|e| e.to_string())?;
    expect(
        d.version == "v2" && !d.trial,
        "v2 is not confirmed after the rollback",
        &q,
    )?;
    q.kill();
    let flash = std::fs::read(dir.join("flash.bin")).map_err(|e| e.to_string())?;
    if flash[..v2.len()] != v2[..] {
        return Err("after the rollback the slot does not hold v2".into());
    }
    if echo {
        println!(
            "host: bad v3 failed its self-test {v3_fails}x; the boot stage rolled it back in place to v2 with the reverse entry"
        );
    }

    let n = |line: &str, key| number_after(line, key).ok_or(format!("no {key} in {line:?}"));
    let steps = n(&measured, "flash_steps=")?;
    if echo {
        println!(
            "demo: {CUTS} power cuts during v1 -> v2 ({steps} flash steps of 64 bytes), each followed by a restart:"
        );
    }
    let cuts = power_cuts(&dir, &boot, &v1, &v2, &v1_v2, steps as u32, echo)?;
    let rolled = rolled.unwrap_or_default();
    let code = qemu::code_sizes(&boot)?;
    Ok(Figures {
        image: v2.len(),
        file: v1_v2.len(),
        ab_patch: ab.len(),
        app: (
            n(&measured, "applier_state=")?,
            n(&measured, "device=")?,
            n(&measured, "stack_high_water=")?,
        ),
        ipb: n(&measured, "ticks=")? * 40 / v2.len().max(1) as u64,
        boot: (qemu::statics_size(&boot)?, n(&rolled, "stack_high_water=")?),
        boot_code: (qemu::flash_size(&boot)?, code.update),
        v3_fails,
        cuts,
    })
}

/// Cuts the power [`CUTS`] times during v1 -> v2: once early in the
/// transfer, then at flash steps spread evenly over the `steps` the
/// update takes (staging the file, the rewrite, the boot record): the device ends QEMU just before that step
/// (`firmware-demo`'s `flash::arm_cut`). After each cut QEMU starts again
/// on the same flash: before the commit point v1 boots and takes the
/// file again (the transfer resumes); after it the boot stage finishes
/// the rewrite and v2 boots. Each run must end with v2 confirmed and the
/// slot exactly v2.
#[allow(clippy::too_many_arguments)]
fn power_cuts(
    dir: &Path,
    boot: &Path,
    v1: &[u8],
    v2: &[u8],
    file: &[u8],
    steps: u32,
    echo: bool,
) -> Result<Cuts, String> {
    let mut cuts = Cuts {
        runs: 0,
        finished: 0,
        boot_stack: 0,
    };
    let opts = RunOptions {
        icount: false,
        echo: false,
    };
    let cut_file = dir.join("cut");
    for k in 1..=CUTS {
        // The first in the transfer (step 8 of staging the file), the
        // others spread over the rest: most of an update's flash steps
        // are the rewrite's.
        let at = match k {
            1 => 8,
            _ => (steps as u64 * (k - 1) as u64 / CUTS as u64).max(9),
        };
        let fail = |what: String, q: &Qemu| {
            format!(
                "cut before flash step {at}: {what}; device console: {:#?}",
                q.log
            )
        };
        std::fs::write(dir.join("flash.bin"), qemu::provisioned_in_place_flash(v1)?)
            .map_err(|e| e.to_string())?;
        std::fs::write(&cut_file, format!("inplace {at}\n")).map_err(|e| e.to_string())?;
        let (mut q, uart) = Qemu::start(dir, boot, &opts)?;
        if q.wait_for("waiting for an update", SECS(30)).is_none() {
            return Err(fail("v1 did not start".into(), &q));
        }
        let mut s = uart.try_clone().map_err(|e| e.to_string())?;
        let f = file.to_vec();
        let sender = std::thread::spawn(move || send_file(&mut s, &f));
        let code = q.wait_exit(SECS(60));
        let _ = uart.shutdown(std::net::Shutdown::Both);
        let _ = sender.join();
        std::fs::remove_file(&cut_file).map_err(|e| e.to_string())?;
        if code != Some(qemu::EXIT_POWER_CUT) {
            return Err(fail(format!("QEMU ended with {code:?}, not the cut"), &q));
        }
        drop(q);
        // Power is back.
        let (mut q, mut uart) = Qemu::start(dir, boot, &opts)?;
        if q.wait_for("waiting for an update", SECS(60)).is_none() {
            return Err(fail("nothing booted after the cut".into(), &q));
        }
        let finished = q
            .log
            .iter()
            .find(|l| l.contains("boot: measured:") && l.contains("(finished a cut rewrite)"))
            .cloned();
        let d = send::hello(&mut uart, &OPTS).map_err(|e| fail(e.to_string(), &q))?;
        let what = match (d.version.as_str(), &finished) {
            ("v1", None) => {
                let r = send_file(&mut uart, file).map_err(|e| fail(e, &q))?;
                let after = r.after.as_ref().map(|a| a.version.as_str());
                if r.text != "OK" || after != Some("v2") {
                    return Err(fail(format!("v1 -> v2 again: {} / {after:?}", r.text), &q));
                }
                if q.wait_for("v2 confirmed", SECS(30)).is_none() {
                    return Err(fail("v2 did not confirm itself".into(), &q));
                }
                format!(
                    "v1 booted (before the commit point), took the file again from byte {}",
                    r.resumed_from
                )
            }
            ("v2", Some(line)) => {
                let stack = number_after(line, "stack_high_water=")
                    .ok_or_else(|| fail(format!("no stack figure in {line:?}"), &q))?;
                cuts.finished += 1;
                cuts.boot_stack = cuts.boot_stack.max(stack);
                format!(
                    "the boot stage finished the rewrite (stack high-water {stack} B), v2 booted"
                )
            }
            (v, _) => {
                return Err(fail(
                    format!(
                        "booted {v}, finished by the boot stage: {}",
                        finished.is_some()
                    ),
                    &q,
                ))
            }
        };
        let d = send::hello(&mut uart, &OPTS).map_err(|e| fail(e.to_string(), &q))?;
        if d.version != "v2" || d.trial {
            return Err(fail(
                format!(
                    "ended in {} (trial {}), not v2 confirmed",
                    d.version, d.trial
                ),
                &q,
            ));
        }
        q.kill();
        let flash = std::fs::read(dir.join("flash.bin")).map_err(|e| e.to_string())?;
        if flash[..v2.len()] != v2[..] {
            return Err(fail("the slot does not hold v2".into(), &q));
        }
        cuts.runs += 1;
        if echo {
            println!("demo: power cut {k:2} before flash step {at}: {what}; v2 confirmed, the slot is v2 byte for byte");
        }
    }
    Ok(cuts)
}

/// `cargo xtask demo --in-place`.
pub fn demo() -> Result<(), String> {
    qemu::ensure_tools()?;
    let f = run("demo-in-place", true)?;
    let (state, device, stack) = f.app;
    println!(
        "demo summary (in place): image {} B vs update file {} B ({:.1} %, update and reverse entry; A/B patch {} B); \
flash {} KiB (one slot, 2 scratch units, state, staging) vs {} KiB for A/B; \
applier RAM {} B ({} B applier state, a static, + {} B device + {} B stack high-water of the rewrite); {} instructions per output byte; \
boot stage RAM {} B ({} B statics + {} B stack high-water, the deeper of rolling back, {} B, and finishing a cut rewrite, {} B); \
boot stage code {} B ({} B update path); bad v3 rolled back by the reverse entry after {} failed boots; \
{} power cuts during v1 -> v2 ({} after the commit point, finished by the boot stage), each ended in v2",
        f.image,
        f.file,
        f.file as f64 * 100.0 / f.image as f64,
        f.ab_patch,
        kib(qemu::IN_PLACE_FLASH_SIZE),
        kib(qemu::FLASH_SIZE),
        state + device + stack,
        state,
        device,
        stack,
        f.ipb,
        f.boot_ram(),
        f.boot.0,
        f.boot_stack(),
        f.boot.1,
        f.cuts.boot_stack,
        f.boot_code.0,
        f.boot_code.1,
        f.v3_fails,
        f.cuts.runs,
        f.cuts.finished
    );
    Ok(())
}

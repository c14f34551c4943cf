//! `cargo xtask demo`: v1 boots on an emulated Cortex-M4, receives a patch
//! to v2 over its UART, applies it into the other slot, restarts into v2
//! and confirms it; then one summary line of what it took.

use std::path::PathBuf;
use std::time::Duration;

use host_genpat::send::{self, DeviceInfo, SendEvents, SendOptions};

use flashpatch::slots::Slot;

use crate::boards::{Figures, Wear};
use crate::qemu::{self, Qemu, RunOptions, Version};

/// The work directory of the demo and the QEMU tests.
pub fn work_dir(name: &str) -> Result<PathBuf, String> {
    let d = qemu::root().join("target").join(name);
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    Ok(d)
}

/// Builds genpat and returns its path.
pub fn genpat() -> Result<PathBuf, String> {
    crate::cargo(&["build", "--release", "--quiet", "-p", "host-genpat"])?;
    Ok(qemu::root().join("target").join("release").join("genpat"))
}

/// Runs `genpat OLD NEW PATCH` in `dir` (replacing PATCH).
pub fn make_patch(
    dir: &std::path::Path,
    old: &str,
    new: &str,
    patch: &str,
) -> Result<Vec<u8>, String> {
    make_patch_with(dir, old, new, patch, &[])
}

/// Runs `genpat OLD NEW PATCH OPTIONS…` in `dir` (replacing PATCH).
pub fn make_patch_with(
    dir: &std::path::Path,
    old: &str,
    new: &str,
    patch: &str,
    options: &[&str],
) -> Result<Vec<u8>, String> {
    let _ = std::fs::remove_file(dir.join(patch));
    let mut args = vec![
        dir.join(old).to_str().ok_or("path")?.to_string(),
        dir.join(new).to_str().ok_or("path")?.to_string(),
        dir.join(patch).to_str().ok_or("path")?.to_string(),
    ];
    args.extend(options.iter().map(|o| o.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::run(genpat()?.to_str().ok_or("path")?, &args, &[])?;
    std::fs::read(dir.join(patch)).map_err(|e| e.to_string())
}

struct Show;
impl SendEvents for Show {
    fn device(&mut self, d: &DeviceInfo) {
        println!(
            "host: device runs {} ({} bytes, {}); sending the patch",
            d.version,
            d.image_size,
            if d.trial { "trial" } else { "confirmed" }
        );
    }
}

/// Sends `patch` over `uart` as the demos do, printing what the device
/// says before and after; the device's report. Both boards' demos.
pub fn send_shown(
    uart: &mut std::os::unix::net::UnixStream,
    patch: &[u8],
) -> Result<send::SendReport, String> {
    let report = send::send(
        uart,
        patch,
        &SendOptions {
            timeout: Duration::from_secs(10),
            restart: Duration::from_secs(30),
        },
        &mut Show,
    )
    .map_err(|e| format!("send: {e}"))?;
    println!("host: the device answered: {}", report.text);
    let after = report
        .after
        .as_ref()
        .ok_or("the device did not come back")?;
    println!(
        "host: the device restarted and runs {} ({})",
        after.version,
        if after.trial { "trial" } else { "confirmed" }
    );
    Ok(report)
}

/// Finds `key` followed by a number in `line`.
pub fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Makes the A/B update file `patch` from release `old` to release
/// `new` (each built for both slots, `OLD@A.bin` ... in `dir`): the entry
/// `OLD@A -> NEW@B`, then `OLD@B -> NEW@A` appended to the same file, so
/// that a device running either build of `old` finds the entry for its
/// slot and writes the build of `new` for the other. Also writes each
/// direction alone (`OLD@A-NEW@B.fpat`, `OLD@B-NEW@A.fpat`); returns the
/// file and the two entries' sizes as files of their own.
pub fn make_xip_patch(
    dir: &std::path::Path,
    old: &str,
    new: &str,
    patch: &str,
    options: &[&str],
) -> Result<XipPatch, String> {
    let _ = std::fs::remove_file(dir.join(patch));
    let mut alone = [0; 2];
    for (i, (from, to)) in [("A", "B"), ("B", "A")].into_iter().enumerate() {
        let (o, n) = (format!("{old}@{from}.bin"), format!("{new}@{to}.bin"));
        alone[i] = make_patch_with(
            dir,
            &o,
            &n,
            &format!("{old}@{from}-{new}@{to}.fpat"),
            options,
        )?
        .len();
        let mut args = vec![
            dir.join(&o).to_str().ok_or("path")?.to_string(),
            dir.join(&n).to_str().ok_or("path")?.to_string(),
            dir.join(patch).to_str().ok_or("path")?.to_string(),
        ];
        args.extend(options.iter().map(|o| o.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::run(genpat()?.to_str().ok_or("path")?, &args, &[])?;
    }
    Ok(XipPatch {
        file: std::fs::read(dir.join(patch)).map_err(|e| e.to_string())?,
        a_to_b: alone[0],
        b_to_a: alone[1],
    })
}

/// An A/B update file and what each direction costs alone.
pub struct XipPatch {
    /// The file with both entries.
    pub file: Vec<u8>,
    /// Bytes of `OLD@A -> NEW@B` as a file of its own.
    pub a_to_b: usize,
    /// Bytes of `OLD@B -> NEW@A` as a file of its own.
    pub b_to_a: usize,
}

/// The demo's firmware in `target/demo/`: v1 (built for slot A, where it
/// is provisioned), v2 (built for slot B, where the update writes it, with
/// its ELF file), the boot stage and the v1 -> v2 file `v1-v2.fpat` (both
/// directions).
pub struct Built {
    pub dir: PathBuf,
    pub v1: Vec<u8>,
    pub v2: Vec<u8>,
    pub v2_elf: PathBuf,
    pub boot: PathBuf,
    pub patch: XipPatch,
}

/// Builds v1 and v2 for both slots, the boot stage and their update file
/// into `target/demo/`.
pub fn build() -> Result<Built, String> {
    let dir = work_dir("demo")?;
    let v = |name| Version {
        name,
        bad: false,
        blob: false,
        fault: None,
    };
    let v1 = qemu::build(v("v1"), &dir)?;
    let v2 = qemu::build(v("v2"), &dir)?;
    let boot = qemu::boot_elf(&dir)?;
    let patch = make_xip_patch(&dir, "v1", "v2", "v1-v2.fpat", &[])?;
    Ok(Built {
        dir,
        v1: v1.a.1,
        v2: v2.b.1,
        v2_elf: v2.b.0,
        boot,
        patch,
    })
}

/// Asks the device for its image states over SMP, as `smpmgr image
/// state-read` does (a read of group 1, command 0, over Zephyr's serial
/// framing), and returns the length of the answer.
fn smp_state_read(uart: &mut std::os::unix::net::UnixStream) -> Result<usize, String> {
    use flashpatch_smp::header::{Header, Op};
    use flashpatch_smp::serial;
    use std::io::{Read as _, Write as _};
    let h = Header {
        op: Op::Read,
        version: 1,
        flags: 0,
        len: 1,
        group: 1,
        seq: 1,
        id: 0,
    };
    let mut msg = h.to_bytes().to_vec();
    msg.push(0xA0); // {}
    let mut lines = Vec::new();
    serial::encode(&msg, serial::LINE, &mut |l| lines.extend_from_slice(l));
    uart.write_all(&lines).map_err(|e| e.to_string())?;
    uart.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut dec = serial::Decoder::<1024>::new();
    let mut buf = [0u8; 256];
    loop {
        let n = uart
            .read(&mut buf)
            .map_err(|e| format!("no SMP answer: {e}"))?;
        if n == 0 {
            return Err("the UART closed before the SMP answer".into());
        }
        for &b in &buf[..n] {
            if dec.feed(b) != serial::Event::Frame {
                continue;
            }
            match Header::parse(dec.frame()) {
                Some(a) if a.op == Op::ReadRsp && a.group == 1 && a.seq == 1 => {
                    return Ok(dec.frame().len())
                }
                _ => {}
            }
        }
    }
}

pub fn demo() -> Result<(), String> {
    run(true).map(drop)
}

/// The demo; with `echo`, the device's console is shown as it runs. What
/// it measured of the install.
pub fn run(echo: bool) -> Result<Figures, String> {
    qemu::ensure_tools()?;
    let b = build()?;
    let (dir, v1, v2, v2_elf, boot) = (b.dir, b.v1, b.v2, b.v2_elf, b.boot);
    let (patch, a_to_b, b_to_a) = (b.patch.file, b.patch.a_to_b, b.patch.b_to_a);
    println!(
        "demo: v1@A is {} bytes, v2@B {} bytes; v1-v2.fpat {} bytes: v1@A -> v2@B ({a_to_b} bytes alone) and v1@B -> v2@A ({b_to_a} bytes alone)",
        v1.len(),
        v2.len(),
        patch.len()
    );
    std::fs::write(dir.join("flash.bin"), qemu::provisioned_flash(&v1)?)
        .map_err(|e| e.to_string())?;
    println!("demo: booting v1 on QEMU mps2-an386 (-icount shift=0); its console:");
    let opts = RunOptions { icount: true, echo };
    let (mut q, mut uart) = Qemu::start_xip(&dir, &boot, &opts)?;
    q.wait_for("waiting for an update", Duration::from_secs(30))
        .ok_or("v1 did not start")?;
    let xip = |q: &Qemu, at: u64| {
        q.log
            .iter()
            .any(|l| l.contains(&format!("executing in place at {at:#010x}")))
    };
    if !xip(&q, qemu::slot_address(Slot::A)) {
        return Err("the boot stage did not start v1 in place in slot A".into());
    }
    let report = send_shown(&mut uart, &patch)?;
    q.wait_for("v2 confirmed", Duration::from_secs(30))
        .ok_or("v2 did not confirm itself")?;
    if !xip(&q, qemu::slot_address(Slot::B)) {
        return Err("the boot stage did not start v2 in place in slot B".into());
    }
    q.wait_for("waiting for an update", Duration::from_secs(10));
    // v2 serves SMP on the same UART: an image state read, as `smpmgr
    // image state-read` asks it, measures the SMP server.
    let states = smp_state_read(&mut uart)?;
    println!("host: SMP image state read answered ({states} bytes)");
    let smp = q
        .wait_for("app: smp measured:", Duration::from_secs(10))
        .ok_or("no SMP measurement line on the console")?;
    q.kill();
    let smp_ram = number_after(&smp, "server_ram=").ok_or("no server_ram")?;
    let smp_stack = number_after(&smp, "stack_high_water=").ok_or("no SMP stack_high_water")?;
    let measured = q
        .log
        .iter()
        .find(|l| l.contains("app: measured:"))
        .ok_or("no measurement line on the console")?
        .clone();
    let state = number_after(&measured, "applier_state=").ok_or("no applier_state")?;
    let stack = number_after(&measured, "stack_high_water=").ok_or("no stack_high_water")?;
    let ticks = number_after(&measured, "ticks=").ok_or("no ticks")?;
    let code = qemu::code_sizes(&v2_elf)?;
    let ipb = ticks * 40 / v2.len().max(1) as u64;
    let (install, stored) = Wear::of_log(&q.log)?;
    let figures = Figures {
        board: "mps2-an386",
        core: "Cortex-M4",
        state,
        stack,
        code: code.update,
        ipb,
        image: v2.len() as u64,
        unit: qemu::ERASE as u64,
        install,
        stored,
    };
    println!(
        "demo summary: image {} B vs patch {} B ({:.1} %; v1@A -> v2@B, one of the file's two entries); sent {} B ({} B framed) in {:.2} s; apply+activate {:.2} s; \
applier RAM {} B ({} B applier state, a static, + {} B stack high-water of the install); update-path code {} B; {} instructions per output byte (install: CRC, apply, verify, activate); \
{}; SMP server RAM {} B ({} B buffers, a static, + {} B stack high-water of an image state read); SMP code {} B",
        v2.len(),
        a_to_b,
        a_to_b as f64 * 100.0 / v2.len() as f64,
        report.bytes_sent,
        report.wire_bytes,
        report.transfer.as_secs_f64(),
        report.apply.as_secs_f64(),
        state + stack,
        state,
        stack,
        code.update,
        ipb,
        figures.wear_summary(),
        smp_ram + smp_stack,
        smp_ram,
        smp_stack,
        code.smp
    );
    let v2 = report.after.as_ref().is_some_and(|a| a.version == "v2");
    if report.text != "OK" || !v2 {
        return Err("the update did not end in v2".into());
    }
    Ok(figures)
}

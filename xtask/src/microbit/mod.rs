//! The micro:bit board (`firmware-microbit`, QEMU `-machine microbit`:
//! nRF51822, Cortex-M0): builds, the flash image, QEMU runs, and
//! `cargo xtask demo --board microbit` (tests in `tests.rs`).
//!
//! QEMU's nRF51 flash lives only as long as its process, and a system
//! reset reloads what `-kernel` loaded (the boot stage, which no update
//! writes) but nothing else. So every run starts halted (`-S`), the
//! harness writes the flash through QEMU's gdb stub and lets the core
//! run; a power cut stops the core through the stub, reads the whole
//! flash back, and kills QEMU (`gdb.rs`).

mod cuts;
pub mod gdb;
pub mod tests;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flashpatch::slots::{Config, Layout};

use crate::boards::{Figures, Wear};
use crate::demo::{make_patch, number_after, send_shown, work_dir};
use crate::qemu::{self, Qemu, RunOptions};
use gdb::Gdb;

/// The firmware's flash map (`firmware-microbit/src/lib.rs`).
pub const FLASH_SIZE: usize = 0x40000;
/// The boot stage's region: the harness loads it with `-kernel`.
pub const BOOT_END: u32 = 0x6000;
const PAGE: u32 = 1024;
/// Slot A and B start here; each image is linked for one of them.
pub const SLOTS: [u32; 2] = [0x6000, 0x1D000];
const SLOT_SIZE: u32 = 0x17000;
const LAYOUT: Layout = Layout::new(PAGE, SLOTS[0], SLOT_SIZE, SLOTS[1], 0x34000, 0x2000);
const CONFIG: Config = Config {
    max_boot_attempts: 2,
    checkpoint_units: 0,
};
/// RAM of the nRF51822 on the micro:bit.
pub const RAM: u64 = 16 * 1024;
const TARGET: &str = "thumbv6m-none-eabi";

fn fw_dir() -> PathBuf {
    qemu::root().join("firmware-microbit")
}

fn elf(bin: &str) -> PathBuf {
    qemu::release_elf(&fw_dir(), TARGET, bin)
}

/// A build of the application: version text, whether its self-test
/// fails, and the slot (0 A, 1 B) it is linked to run in.
#[derive(Clone, Copy, Debug)]
pub struct Build {
    pub name: &'static str,
    pub bad: bool,
    pub slot: usize,
}

/// Builds `b` (with the boot stage) and returns its ELF, copied to
/// `out/NAME@SLOT.elf`, and its image (what its slot holds), written to
/// `out/NAME@SLOT.bin`.
pub fn build(b: Build, out: &Path) -> Result<(PathBuf, Vec<u8>), String> {
    let slot = ["A", "B"][b.slot];
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "xtask: $ (cd firmware-microbit && DEMO_VERSION={} MB_SLOT={slot}{} cargo build --release)",
        b.name,
        if b.bad { " DEMO_BAD=1" } else { "" }
    );
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet"])
        .current_dir(fw_dir())
        .env_remove("DEMO_BAD")
        .env_remove("DEMO_BLOB")
        .env_remove("DEMO_FAULT")
        .env("DEMO_VERSION", b.name)
        .env("MB_SLOT", slot);
    if b.bad {
        cmd.env("DEMO_BAD", "1");
    }
    let st = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !st.success() {
        return Err("building firmware-microbit failed".into());
    }
    let tag = format!("{}@{slot}", b.name);
    let elf_out = out.join(format!("{tag}.elf"));
    std::fs::copy(elf("app"), &elf_out).map_err(|e| e.to_string())?;
    std::fs::copy(elf("boot"), out.join("boot.elf")).map_err(|e| e.to_string())?;
    let layout = host_genpat::firmware::Layout {
        base: Some(SLOTS[b.slot] as u64),
        pad_to: None,
        gap_fill: 0xFF,
        raw: false,
    };
    let data = std::fs::read(&elf_out).map_err(|e| e.to_string())?;
    let image = host_genpat::firmware::image_of(data, &layout)
        .map_err(|e| e.to_string())?
        .bytes;
    if image.len() > SLOT_SIZE as usize {
        return Err(format!("{tag} is {} bytes, more than a slot", image.len()));
    }
    std::fs::write(out.join(format!("{tag}.bin")), &image).map_err(|e| e.to_string())?;
    Ok((elf_out, image))
}

/// The flash with `image` (linked for slot A) in slot A, provisioned as
/// the running, confirmed image, and the rest erased (the boot stage's
/// region too: QEMU loads it from `boot.elf`).
pub fn provisioned_flash(image: &[u8]) -> Result<Vec<u8>, String> {
    qemu::provisioned::<{ PAGE as usize }>(FLASH_SIZE, &LAYOUT, CONFIG, image)
}

/// A micro:bit on QEMU: console lines, the UART, the gdb stub.
pub struct Board {
    pub q: Qemu,
    pub uart: UnixStream,
    pub gdb: Gdb,
}

impl Board {
    /// Starts QEMU `microbit` in `dir` with the boot stage `boot.elf` and
    /// `flash` (all of it but the boot stage's region is written through
    /// the gdb stub before the core runs). With `run`, the core starts.
    pub fn start(dir: &Path, flash: &[u8], opts: &RunOptions, run: bool) -> Result<Board, String> {
        let sock = dir.join("gdb.sock");
        let _ = std::fs::remove_file(&sock);
        let mut cmd = Command::new("qemu-system-arm");
        cmd.args(["-M", "microbit", "-display", "none", "-monitor", "none"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-kernel")
            .arg(dir.join("boot.elf"))
            .arg("-gdb")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .arg("-S")
            .current_dir(dir);
        let (q, uart) = Qemu::start_command(cmd, dir, opts)?;
        let mut gdb = Gdb::connect(&sock, Duration::from_secs(10))?;
        gdb.write_mem(BOOT_END, &flash[BOOT_END as usize..])?;
        let mut b = Board { q, uart, gdb };
        if run {
            b.gdb.cont()?;
        }
        Ok(b)
    }

    /// Cuts the power of the stopped core: reads the flash and ends QEMU.
    /// The flash as it was at that instruction, and the console.
    pub fn cut_stopped(mut self) -> Result<(Vec<u8>, Vec<String>), String> {
        let flash = self.gdb.read_mem(0, FLASH_SIZE)?;
        self.q.kill();
        Ok((flash, std::mem::take(&mut self.q.log)))
    }
}

/// `cargo xtask demo --board microbit`: v1 (in slot A) -> v2 (linked for
/// slot B) over the UART, with a summary line.
pub fn demo() -> Result<(), String> {
    run(true).map(drop)
}

/// The demo; with `echo`, the device's console is shown as it runs. What
/// it measured of the install.
pub fn run(echo: bool) -> Result<Figures, String> {
    qemu::ensure_tools()?;
    crate::run("rustup", &["target", "add", TARGET], &[])?;
    let dir = work_dir("demo-microbit")?;
    let (_, v1) = build(
        Build {
            name: "v1",
            bad: false,
            slot: 0,
        },
        &dir,
    )?;
    let (v2_elf, v2) = build(
        Build {
            name: "v2",
            bad: false,
            slot: 1,
        },
        &dir,
    )?;
    let patch = make_patch(&dir, "v1@A.bin", "v2@B.bin", "v1-v2.fpat")?;
    println!(
        "demo: v1 (slot A) is {} bytes, v2 (slot B) {} bytes, the patch {} bytes",
        v1.len(),
        v2.len(),
        patch.len()
    );
    println!("demo: booting v1 on QEMU microbit (nRF51822, -icount shift=0); its console:");
    let opts = RunOptions { icount: true, echo };
    let mut b = Board::start(&dir, &provisioned_flash(&v1)?, &opts, true)?;
    b.q.wait_for("waiting for an update", Duration::from_secs(30))
        .ok_or("v1 did not start")?;
    let report = send_shown(&mut b.uart, &patch)?;
    b.q.wait_for("v2 confirmed", Duration::from_secs(30))
        .ok_or("v2 did not confirm itself")?;
    b.q.wait_for("waiting for an update", Duration::from_secs(10));
    b.q.kill();
    let log = &b.q.log;
    if !log
        .iter()
        .any(|l| l.contains("executing in place at 0x1d000"))
    {
        return Err("the boot stage did not start v2 in place in slot B".into());
    }
    let measured = log
        .iter()
        .find(|l| l.contains("app: measured:"))
        .ok_or("no measurement line on the console")?;
    let num = |k: &str| number_after(measured, k).ok_or(format!("no {k}"));
    let (state, stack) = (num("applier_state=")?, num("stack_high_water=")?);
    let whole = num("app_stack_high_water=")?;
    let (ticks, calib) = (
        num("ticks=")?,
        num("calibration_ticks_per_2m_instructions=")?,
    );
    let statics = qemu::statics_size(&v2_elf)?;
    let boot_stack = log
        .iter()
        .filter_map(|l| number_after(l, "boot: measured: stack_high_water="))
        .max()
        .ok_or("no boot stage measurement on the console")?;
    let boot_ram = qemu::statics_size(&dir.join("boot.elf"))? + boot_stack;
    let code = qemu::code_sizes(&v2_elf)?;
    // Instructions of the install: ticks times instructions per tick, as
    // the device measured them on a loop of 2,000,000 instructions.
    let ipb = ticks * 2_000_000 / calib.max(1) / v2.len().max(1) as u64;
    let app_ram = statics + whole;
    let (install, stored) = Wear::of_log(log)?;
    let figures = Figures {
        board: "microbit",
        core: "Cortex-M0",
        state,
        stack,
        code: code.update,
        ipb,
        image: v2.len() as u64,
        unit: PAGE as u64,
        install,
        stored,
    };
    println!(
        "demo summary (microbit): image {} B vs patch {} B ({:.1} %); sent {} B ({} B framed) in {:.2} s; apply+activate {:.2} s; \
applier RAM {} B ({} B applier state, a static, + {} B stack high-water of the install); \
application RAM {} B of {} B ({} B statics + {} B stack high-water of the whole run); boot stage RAM {} B; \
update-path code {} B; {} instructions per output byte (install: CRC, apply, verify, activate); {}",
        v2.len(),
        patch.len(),
        patch.len() as f64 * 100.0 / v2.len() as f64,
        report.bytes_sent,
        report.wire_bytes,
        report.transfer.as_secs_f64(),
        report.apply.as_secs_f64(),
        state + stack,
        state,
        stack,
        app_ram,
        RAM,
        statics,
        whole,
        boot_ram,
        code.update,
        ipb,
        figures.wear_summary(),
    );
    let v2 = report.after.as_ref().is_some_and(|a| a.version == "v2");
    if report.text != "OK" || !v2 {
        return Err("the update did not end in v2".into());
    }
    if app_ram > RAM {
        return Err(format!(
            "the application took {app_ram} B of RAM, over {RAM}"
        ));
    }
    Ok(figures)
}

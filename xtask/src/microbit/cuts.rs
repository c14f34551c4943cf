//! Power cuts on the micro:bit at chosen flash operations. A reference
//! run of v1 -> v2 stops the core at every page erase and word write
//! (breakpoints at the NVMC driver's `nvmc_erase_page` and
//! `nvmc_write_word`, in the boot stage and both images) and records the
//! flash address each touches. Then, for points chosen across the
//! staging writes, the slot writes and every kind of state-area write,
//! the same update runs again and is cut right before that operation:
//! the core is stopped, the flash read back and QEMU killed. A new QEMU
//! starts from that flash; the device must boot v1 or v2, and sending
//! the patch again must end in v2, confirmed.
//!
//! Modelled: losing RAM, registers and peripheral state at any flash
//! operation, with the flash as it was. Not modelled: a cut inside one
//! operation (QEMU's NVMC programs a word and erases a page at once, so
//! no torn word or half-erased page happens here; the mock flash's
//! sweeps in `tests/` cover those).

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use host_genpat::send::{self, Quiet};

use super::tests::{expect, opts, send_ok, start, Images, QUIET, SECS};
use super::Board;

/// Where the flash regions are (`firmware-microbit/src/lib.rs`).
const STATE: (u32, u32) = (0x34000, 0x36000);
const STAGING: (u32, u32) = (0x36000, 0x40000);

/// One flash operation: the address it touches, and whether it is a page
/// erase (else a word write).
#[derive(Clone, Copy, Debug)]
struct Op {
    addr: u32,
    erase: bool,
}

/// The breakpoints: (address, is the erase function) in every ELF (the
/// programs that run: images of one slot must not mix, their functions
/// lie at each other's addresses).
fn breakpoints(elfs: &[PathBuf]) -> Result<Vec<(u32, bool)>, String> {
    use object::{Object as _, ObjectSymbol as _};
    let mut out = Vec::new();
    for elf in elfs {
        let data = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
        let f = object::File::parse(&*data).map_err(|e| e.to_string())?;
        for (name, erase) in [("nvmc_erase_page", true), ("nvmc_write_word", false)] {
            let s = f
                .symbols()
                .find(|s| s.name() == Ok(name))
                .ok_or_else(|| format!("{}: no symbol {name}", elf.display()))?;
            // Thumb functions' symbols have bit 0 set.
            out.push((s.address() as u32 & !1, erase));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What one run under breakpoints ended with.
struct Run {
    ops: Vec<Op>,
    /// The flash at the cut (`None`: the update ran to its end).
    cut: Option<Vec<u8>>,
    log: Vec<String>,
}

/// v1 -> v2 from `flash`, stopping at every flash operation; cut before
/// operation `cut_at` (counted from 0) if given.
fn run(imgs: &Images, flash: &[u8], cut_at: Option<usize>) -> Result<Run, String> {
    // The boot stage, v1 (slot A) and v2 (slot B).
    let bps = breakpoints(&imgs.elfs[..3])?;
    let mut b = Board::start(&imgs.dir, flash, &QUIET, false)?;
    for &(at, _) in &bps {
        b.gdb.breakpoint(at, true)?;
    }
    b.gdb.cont()?;
    let mut uart = b.uart.try_clone().map_err(|e| e.to_string())?;
    let patch = imgs.v1_v2.clone();
    let sender = thread::spawn(move || send::send(&mut uart, &patch, &opts(), &mut Quiet));
    let mut ops = Vec::new();
    let deadline = Instant::now() + SECS(300);
    loop {
        if Instant::now() > deadline {
            return Err(format!("no end after {} flash operations", ops.len()));
        }
        let Some(_) = b.gdb.wait_stop(Duration::from_millis(300))? else {
            if sender.is_finished() {
                break;
            }
            continue;
        };
        let pc = b.gdb.register(15)?;
        let erase = bps
            .iter()
            .find(|&&(at, _)| at == pc)
            .ok_or_else(|| format!("stopped at {pc:#x}, not at a breakpoint"))?
            .1;
        ops.push(Op {
            addr: b.gdb.register(1)?,
            erase,
        });
        if cut_at == Some(ops.len() - 1) {
            let _ = b.uart.shutdown(std::net::Shutdown::Both);
            let (flash, log) = b.cut_stopped()?;
            let _ = sender.join();
            return Ok(Run {
                ops,
                cut: Some(flash),
                log,
            });
        }
        b.gdb.step_over_and_cont(pc)?;
    }
    let r = sender
        .join()
        .map_err(|_| "the sender panicked".to_string())?
        .map_err(|e| format!("send: {e}"))?;
    b.q.kill();
    expect(
        r.text == "OK" && r.after.as_ref().map(|a| a.version.as_str()) == Some("v2"),
        &format!("reference run: {}", r.text),
        &b.q.log,
    )?;
    Ok(Run {
        ops,
        cut: None,
        log: std::mem::take(&mut b.q.log),
    })
}

/// The region an address lies in.
fn region(addr: u32) -> &'static str {
    if (STAGING.0..STAGING.1).contains(&addr) {
        "staging"
    } else if (STATE.0..STATE.1).contains(&addr) {
        "state area"
    } else {
        "slot"
    }
}

/// `n` indices spread over `of` (first and last included).
fn spread(of: &[usize], n: usize) -> Vec<usize> {
    match of.len() {
        0 => vec![],
        len if len <= n => of.to_vec(),
        len => (0..n).map(|i| of[i * (len - 1) / (n - 1)]).collect(),
    }
}

/// The reference run, the chosen cuts, and the recovery from each.
pub fn run_all_cuts(imgs: &Images) -> Result<(), String> {
    let flash = super::provisioned_flash(&imgs.v1)?;
    let t0 = Instant::now();
    let reference = run(imgs, &flash, None)?;
    let ops = &reference.ops;
    let count = |r: &str, erase: bool| {
        ops.iter()
            .filter(|o| region(o.addr) == r && o.erase == erase)
            .count()
    };
    println!(
        "qemu microbit: v1 -> v2 takes {} flash operations ({:.1} s under breakpoints): \
staging {} erases + {} writes, slot {} + {}, state area {} + {}",
        ops.len(),
        t0.elapsed().as_secs_f64(),
        count("staging", true),
        count("staging", false),
        count("slot", true),
        count("slot", false),
        count("state area", true),
        count("state area", false),
    );
    // The update ends with v2's confirmation, the last state-area write;
    // what follows (the staging header forgotten when the host next
    // speaks) depends on the host's timing, so no cut goes there.
    let end = ops
        .iter()
        .rposition(|o| region(o.addr) == "state area")
        .ok_or("no state-area write in the update")?;
    let of = |r: &str| -> Vec<usize> { (0..=end).filter(|&i| region(ops[i].addr) == r).collect() };
    let mut points = spread(&of("staging"), 3);
    points.extend(spread(&of("slot"), 3));
    points.extend(spread(&of("state area"), 6));
    points.sort();
    points.dedup();
    let mut recovered = 0;
    for (n, &k) in points.iter().enumerate() {
        let op = ops[k];
        let what = format!(
            "cut {:2} before operation {k} ({} at {:#07x}, {})",
            n + 1,
            if op.erase { "page erase" } else { "word write" },
            op.addr,
            region(op.addr)
        );
        match cut_and_recover(imgs, &flash, k) {
            Ok(how) => {
                recovered += 1;
                println!("qemu microbit: {what}: {how} ... ok");
            }
            Err(e) => println!("qemu microbit: {what} ... FAILED: {e}"),
        }
    }
    println!(
        "qemu microbit: power cuts: {recovered} of {} recovered",
        points.len()
    );
    if recovered == points.len() && points.len() >= 12 {
        Ok(())
    } else {
        Err(format!(
            "{recovered} of {} cut points recovered (at least 12 needed)",
            points.len()
        ))
    }
}

/// Cuts before operation `k`, starts a new QEMU from the flash as it was,
/// and completes the update.
fn cut_and_recover(imgs: &Images, flash: &[u8], k: usize) -> Result<String, String> {
    let cut = run(imgs, flash, Some(k))?;
    let at = cut.cut.ok_or("the cut did not happen")?;
    let before = cut.log;
    let mut b =
        start(&imgs.dir, &at).map_err(|e| format!("after the cut: {e}; before: {before:#?}"))?;
    let d = send::hello(&mut b.uart, &opts()).map_err(|e| e.to_string())?;
    expect(
        d.version == "v1" || d.version == "v2",
        "boots v1 or v2",
        &b.q.log,
    )?;
    let r = send_ok(&mut b, &imgs.v1_v2)?;
    let now = crate::e2e::runs_after(&r, &d.version)
        .map_err(|t| format!("after the cut the update ended with {t:?}"))?;
    expect(now == "v2", &format!("ends in v2, not {now}"), &b.q.log)?;
    b.q.wait_for("waiting for an update", SECS(10));
    let d2 = send::hello(&mut b.uart, &opts()).map_err(|e| e.to_string())?;
    expect(
        d2.version == "v2" && !d2.trial,
        "v2 confirmed at the end",
        &b.q.log,
    )?;
    b.q.kill();
    Ok(format!(
        "booted {} ({}), then {}",
        d.version,
        if d.trial { "trial" } else { "confirmed" },
        r.text
    ))
}

//! `cargo xtask serve`: the demo's v1 on QEMU with its UART on a
//! pseudo-terminal, for real tools to talk to (`genpat send --port`,
//! `genpat update --port`), until interrupted.

use std::time::Duration;

use crate::demo::{self, Built};
use crate::qemu::{self, Qemu, RunOptions};

pub fn serve() -> Result<(), String> {
    qemu::ensure_tools()?;
    let genpat = demo::genpat()?;
    let Built {
        dir,
        v1,
        patch,
        boot,
        ..
    } = demo::build()?;
    std::fs::write(dir.join("flash.bin"), qemu::provisioned_flash(&v1)?)
        .map_err(|e| e.to_string())?;
    let opts = RunOptions {
        icount: false,
        echo: true,
    };
    let (mut q, pts) = Qemu::start_pty(&dir, &boot, &opts)?;
    println!("serving: UART on {pts}");
    println!(
        "  the demo's v1 runs on QEMU mps2-an386; update it to v2 ({} bytes of patch, both slots' entries) with\n  \
         {} send {} --port {pts}\n  \
         (the flash is {}; Ctrl-C stops QEMU). The device's console:",
        patch.file.len(),
        genpat.display(),
        dir.join("v1-v2.fpat").display(),
        dir.join("flash.bin").display(),
    );
    loop {
        if let Some(line) = q.next_line(Duration::from_millis(200)) {
            if let Some(said) = line.strip_prefix("qemu: ") {
                eprintln!("qemu: {said}");
            }
        }
        if let Some(code) = q.exited() {
            return match code {
                0 => Ok(()),
                c => Err(format!("QEMU ended with exit code {c}")),
            };
        }
    }
}

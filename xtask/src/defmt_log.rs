//! flashpatch's defmt logs, decoded: v1 built with the feature `defmt`
//! (`firmware-demo/src/defmt_log.rs` appends the frames to `defmt.bin`
//! through semihosting) refuses a corrupt patch and installs v1 -> v2 on
//! QEMU; `defmt-print -e v1-defmt@A.elf` (installed the first time, a few
//! minutes) must then print the refusal and each step of the install.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use host_genpat::send::{self, Quiet, SendOptions};

use crate::demo::make_patch;
use crate::qemu::{self, Qemu, RunOptions, Version};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// What the decoded log must hold, in this order (level, message): the
/// corrupt patch's refusal, then the install's steps.
const EXPECTED: [(&str, &str); 8] = [
    ("INFO", "flashpatch: applying an entry: "),
    ("WARN", "flashpatch: patch refused: "),
    (
        "WARN",
        "flashpatch: install refused: Patch data is invalid or corrupt",
    ),
    ("INFO", "flashpatch: update of component 0 begins"),
    ("INFO", "flashpatch: applying an entry: "),
    (
        "INFO",
        "flashpatch: target written and read back: SHA-256 matches",
    ),
    (
        "INFO",
        "flashpatch: new image activated: it boots next, on trial",
    ),
    (
        "INFO",
        "flashpatch: install done: restart into the new image",
    ),
];

/// Installs defmt-print with cargo if it does not run.
fn ensure_defmt_print() -> Result<(), String> {
    let mut probe = Command::new("defmt-print");
    probe.arg("--version");
    crate::ensure_installed(probe, "defmt-print")
}

/// Runs the test in `dir`, which holds `v2@B.bin` (the plain v2 image for
/// slot B; v1 runs from slot A), with
/// the boot stage `boot`; returns the decoded log's lines that matched.
pub fn run(dir: &Path, boot: &Path) -> Result<Vec<String>, String> {
    ensure_defmt_print()?;
    let v1 = Version {
        name: "v1",
        bad: false,
        blob: false,
        fault: None,
    };
    let (elf, image) = qemu::build_defmt(v1, dir)?;
    let patch = make_patch(dir, "v1-defmt@A.bin", "v2@B.bin", "v1-defmt@A-v2@B.fpat")?;
    let mut corrupt = patch.clone();
    let at = corrupt.len() - 40;
    corrupt[at] ^= 0x08;
    let log = dir.join("defmt.bin");
    let _ = std::fs::remove_file(&log);
    std::fs::write(dir.join("flash.bin"), qemu::provisioned_flash(&image)?)
        .map_err(|e| e.to_string())?;
    let quiet = RunOptions {
        icount: false,
        echo: false,
    };
    let opts = SendOptions {
        timeout: SECS(10),
        restart: SECS(30),
    };
    let (mut q, mut s) = Qemu::start_xip(dir, boot, &quiet)?;
    let console = |q: &Qemu| format!("device console: {:#?}", q.log);
    if q.wait_for("waiting for an update", SECS(30)).is_none() {
        return Err(format!("v1 (defmt) did not come up; {}", console(&q)));
    }
    let r = send::send(&mut s, &corrupt, &opts, &mut Quiet).map_err(|e| format!("send: {e}"))?;
    if r.text == "OK" {
        return Err(format!("the corrupt patch was installed; {}", console(&q)));
    }
    let r = send::send(&mut s, &patch, &opts, &mut Quiet).map_err(|e| format!("send: {e}"))?;
    if r.text != "OK" || q.wait_for("v2 confirmed", SECS(20)).is_none() {
        return Err(format!("v1 (defmt) -> v2: {}; {}", r.text, console(&q)));
    }
    q.kill();
    let frames = std::fs::File::open(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let out = Command::new("defmt-print")
        .arg("-e")
        .arg(&elf)
        .arg("stdin")
        .stdin(frames)
        .output()
        .map_err(|e| format!("cannot run defmt-print: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut from = 0;
    for (level, want) in EXPECTED {
        let at = lines[from..]
            .iter()
            .position(|l| l.trim_start().starts_with(level) && l.contains(want));
        match at {
            Some(i) => {
                found.push(lines[from + i].trim().to_string());
                from += i + 1;
            }
            None => {
                return Err(format!(
                "defmt-print's output lacks {level} \"{want}\" (in order); it printed:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            ))
            }
        }
    }
    Ok(found)
}

/// The test on its own, in `target/defmt` (`cargo xtask defmt`): builds
/// the plain v2 and the boot stage first.
pub fn standalone() -> Result<Vec<String>, String> {
    qemu::ensure_tools()?;
    let dir = crate::demo::work_dir("defmt")?;
    let v2 = Version {
        name: "v2",
        bad: false,
        blob: false,
        fault: None,
    };
    qemu::build(v2, &dir)?;
    let boot = qemu::boot_elf(&dir)?;
    run(&dir, &boot)
}

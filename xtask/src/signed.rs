//! Signed updates on QEMU, run by `cargo xtask test` and measured by
//! `cargo xtask bench`: the application built with a public key
//! (`firmware-demo --features signed`, `DEMO_PUBKEY`) installs a patch
//! signed with that key, and refuses an unsigned patch, another key's and
//! tampered ones while v1 keeps running; once v2 (security counter 2) has
//! confirmed itself, it refuses a patch back to v1 signed with counter 1,
//! below the boot record's floor. What the signature check costs on
//! the device: the signed install's stack high-water next to the stack the
//! application and the boot stage have, and the image with and without it.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flashpatch::crc32::crc32;
use flashpatch::format::CONTAINER_HEADER_LEN;
use host_genpat::send::{self, Quiet, SendOptions};

use crate::demo::{genpat, make_patch_with, number_after};
use crate::qemu::{self, Qemu, RunOptions, Version};

const CORRUPT: &str = "Patch data is invalid or corrupt";
const ERROR: &str = "An error occurred while patching";
/// The security counter of the signed v2: v1's is 0.
const V2_COUNTER: &str = "2";
const SECS: fn(u64) -> Duration = Duration::from_secs;

/// What the signed update took on the device, in bytes.
#[derive(Debug)]
pub struct Figures {
    /// Stack high-water of the install that applied the signed patch.
    pub install_stack: u64,
    /// The highest stack high-water of the refused installs.
    pub refusal_stack: u64,
    /// Stack the application has: RAM above its statics.
    pub app_stack: u64,
    /// Stack the boot stage has.
    pub boot_stack: u64,
    /// The applier's state (a static of the application).
    pub applier_state: u64,
    /// The v1 image built with the key.
    pub image_signed: u64,
    /// The v1 image built without.
    pub image_unsigned: u64,
}

impl Figures {
    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "stack {} B of {} B available (app); the boot stage has {} B; refusals up to {} B; \
             applier state {} B (a static); v1 image {} B with the check, {} B without (+{} B)",
            self.install_stack,
            self.app_stack,
            self.boot_stack,
            self.refusal_stack,
            self.applier_state,
            self.image_signed,
            self.image_unsigned,
            self.image_signed.saturating_sub(self.image_unsigned),
        )
    }
}

fn opts() -> SendOptions {
    SendOptions {
        timeout: SECS(10),
        restart: SECS(30),
    }
}

/// The key pair `dir/NAME` (secret) and `dir/NAME.pub`, made with
/// `genpat keygen` unless both are there from an earlier run (a new key
/// would rebuild the firmware).
fn key_pair(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), String> {
    let (secret, public) = (dir.join(name), dir.join(format!("{name}.pub")));
    if !(secret.exists() && public.exists()) {
        let _ = std::fs::remove_file(&secret);
        let _ = std::fs::remove_file(&public);
        let path = secret.to_str().ok_or("path")?;
        crate::run(genpat()?.to_str().ok_or("path")?, &["keygen", path], &[])?;
    }
    Ok((secret, public))
}

/// What a tampered patch has changed.
#[derive(Clone, Copy, Debug)]
enum Tamper {
    /// A bit of the target's SHA-256 in the entry header.
    Header,
    /// A bit in the middle of the body.
    Body,
}

/// The one-entry `patch` with one bit changed as `t` says, and its body
/// and header CRC-32s made right again, as an attacker who knows the
/// format would: only the signature can tell.
fn tamper(patch: &[u8], t: Tamper) -> Result<Vec<u8>, String> {
    let mut p = patch.to_vec();
    let at = CONTAINER_HEADER_LEN;
    let h = u16::from_le_bytes([p[at], p[at + 1]]) as usize;
    let (hdr, body) = (at + 2, at + 2 + h);
    if body >= p.len() {
        return Err("the signed patch has no body".into());
    }
    match t {
        Tamper::Header => p[hdr + 36] ^= 0x01,
        Tamper::Body => {
            let mid = body + (p.len() - body) / 2;
            p[mid] ^= 0x10;
        }
    }
    let body_crc = crc32(&p[body..]);
    p[hdr + 72..hdr + 76].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32(&p[at..body - 4]);
    p[body - 4..body].copy_from_slice(&header_crc.to_le_bytes());
    Ok(p)
}

fn expect(cond: bool, what: &str, q: &Qemu) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!("{what}; device console: {:#?}", q.log))
    }
}

/// (result text, stack high-water) of every install on the console.
fn installs(log: &[String]) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut result = None;
    for l in log {
        if let Some(at) = l.find("app: result: ") {
            result = Some(l[at + "app: result: ".len()..].to_string());
        } else if l.contains("app: measured:") {
            if let (Some(r), Some(s)) = (result.take(), number_after(l, "stack_high_water=")) {
                out.push((r, s));
            }
        }
    }
    out
}

/// Builds v1 and v2 with a key in `dir` (which holds `v1@A.bin`, the
/// unsigned v1 image, next to `boot`, the boot stage's ELF), runs the
/// signed update on QEMU and returns what it took; `say` prints each step
/// that passed.
pub fn run(dir: &Path, boot: &Path, say: fn(&str)) -> Result<Figures, String> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| e.to_string())?;
    let (release, release_pub) = key_pair(&keys, "release")?;
    let (other, _) = key_pair(&keys, "other")?;
    let v = |name| Version {
        name,
        bad: false,
        blob: false,
        fault: None,
    };
    // Images for both slots; each signed patch is one entry, v1@A -> v2@B
    // (the one the device running v1 in slot A picks; a file with both
    // directions is the unsigned demo's), so that `tamper` finds its body.
    let (v1_elf, v1) = qemu::build_signed(v("v1"), &release_pub, dir)?.a;
    qemu::build_signed(v("v2"), &release_pub, dir)?;
    let path = |p: &Path| p.to_str().map(String::from).ok_or("path");
    let patch = |name, key: Option<&Path>| -> Result<Vec<u8>, String> {
        let key = key.map(path).transpose()?;
        let mut options: Vec<&str> = key.iter().flat_map(|k| ["--sign", k.as_str()]).collect();
        options.extend(["--security-counter", V2_COUNTER]);
        make_patch_with(dir, "v1-signed@A.bin", "v2-signed@B.bin", name, &options)
    };
    let signed = patch("v1-v2-signed.fpat", Some(&release))?;
    let release_key = path(&release)?;
    let rollback = make_patch_with(
        dir,
        "v2-signed@B.bin",
        "v1-signed@A.bin",
        "v2-v1-counter-1.fpat",
        &["--sign", &release_key, "--security-counter", "1"],
    )?;
    let refused = [
        ("an unsigned patch", patch("v1-v2-unsigned.fpat", None)?),
        ("another key's", patch("v1-v2-other.fpat", Some(&other))?),
        ("a tampered header", tamper(&signed, Tamper::Header)?),
        ("a tampered body", tamper(&signed, Tamper::Body)?),
    ];
    let key_hex = std::fs::read_to_string(&release_pub).map_err(|e| e.to_string())?;
    let key_hex = key_hex.split_whitespace().last().unwrap_or_default();

    std::fs::write(dir.join("flash.bin"), qemu::provisioned_flash(&v1)?)
        .map_err(|e| e.to_string())?;
    let quiet = RunOptions {
        icount: false,
        echo: false,
    };
    let (mut q, mut s) = Qemu::start_xip(dir, boot, &quiet)?;
    expect(
        q.wait_for("waiting for an update", SECS(30)).is_some(),
        "signed v1 came up",
        &q,
    )?;
    expect(
        q.log
            .iter()
            .any(|l| l.contains(&format!("signed by Ed25519 key {key_hex}"))),
        "signed v1 names its key",
        &q,
    )?;
    for (what, p) in &refused {
        refused_by(&mut s, &q, p, CORRUPT, "v1", what)?;
    }
    say(&format!(
        "qemu e2e: signed v1 refuses {}: {CORRUPT}, v1 keeps running ... ok",
        refused.iter().map(|r| r.0).collect::<Vec<_>>().join(", ")
    ));
    let r = send::send(&mut s, &signed, &opts(), &mut Quiet).map_err(|e| format!("send: {e}"))?;
    let after = r.after.as_ref().map(|a| a.version.as_str());
    expect(
        r.text == "OK" && after == Some("v2"),
        &format!("signed v1 -> v2: {} / {after:?}", r.text),
        &q,
    )?;
    expect(
        q.wait_for("v2 confirmed", SECS(20)).is_some(),
        "v2 confirmed itself",
        &q,
    )?;
    say("qemu e2e: signed v1 -> v2 with the right key: OK, v2 boots and confirms ... ok");
    refused_by(&mut s, &q, &rollback, ERROR, "v2", "v2 -> v1, counter 1")?;
    expect(
        q.wait_for(
            &format!("security counter of at least {V2_COUNTER}"),
            SECS(10),
        )
        .is_some(),
        "v2 requires the floor its confirmation raised",
        &q,
    )?;
    expect(
        q.wait_for("app: measured:", SECS(10)).is_some(),
        "the refused install's figures",
        &q,
    )?;
    q.kill();
    say(&format!(
        "qemu e2e: signed v2 (counter {V2_COUNTER}, confirmed) refuses v2 -> v1 with counter 1: {ERROR}, v2 keeps running ... ok"
    ));

    let all = installs(&q.log);
    let install_stack = match &all[..] {
        [.., (ok, s), (no, _)] if ok == "OK" && no == ERROR && all.len() == refused.len() + 2 => *s,
        _ => return Err(format!("the console's install figures: {all:?}")),
    };
    let measured = q.log.iter().find(|l| l.contains("app: measured:"));
    let image_unsigned = std::fs::metadata(dir.join("v1@A.bin"))
        .map_err(|e| format!("the unsigned v1 image: {e}"))?
        .len();
    let f = Figures {
        install_stack,
        refusal_stack: all
            .iter()
            .filter(|r| r.0 != "OK")
            .map(|r| r.1)
            .max()
            .unwrap_or(0),
        app_stack: qemu::stack_size(&v1_elf)?,
        boot_stack: qemu::stack_size(boot)?,
        applier_state: measured
            .and_then(|l| number_after(l, "applier_state="))
            .ok_or("no applier_state on the console")?,
        image_signed: v1.len() as u64,
        image_unsigned,
    };
    let most = f.install_stack.max(f.refusal_stack);
    if most >= f.app_stack.min(f.boot_stack) {
        return Err(format!(
            "the signature check does not fit the stack: {}",
            f.summary()
        ));
    }
    Ok(f)
}

/// Sends `patch`, which the device running `version` must answer with
/// `text` and then still run `version`, confirmed, with nothing staged.
fn refused_by(
    s: &mut UnixStream,
    q: &Qemu,
    patch: &[u8],
    text: &str,
    version: &str,
    what: &str,
) -> Result<(), String> {
    let r = send::send(s, patch, &opts(), &mut Quiet).map_err(|e| format!("send: {e}"))?;
    expect(r.text == text, &format!("{what}: {}", r.text), q)?;
    let d = send::hello(s, &opts()).map_err(|e| e.to_string())?;
    expect(
        d.version == version && !d.trial && d.resume.is_none(),
        &format!("{what}: {version} keeps running, nothing staged"),
        q,
    )
}

/// The signed update on its own, in `target/signed` (`cargo xtask
/// signed`, and `cargo xtask bench`): builds the unsigned v1 and the boot
/// stage first.
pub fn standalone(say: fn(&str)) -> Result<Figures, String> {
    qemu::ensure_tools()?;
    let dir = crate::demo::work_dir("signed")?;
    let v1 = Version {
        name: "v1",
        bad: false,
        blob: false,
        fault: None,
    };
    qemu::build_for(v1, flashpatch::slots::Slot::A, None, &dir)?;
    let boot = qemu::boot_elf(&dir)?;
    run(&dir, &boot, say)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_pairs_results_with_their_stack() {
        let log: Vec<String> = [
            "app: result: Patch data is invalid or corrupt",
            "app: measured: applier_state=3800 stack_high_water=300 ticks=9",
            "app: measured: applier_state=3800 stack_high_water=999 ticks=9",
            "app: result: OK",
            "app: progress restarting 1/1",
            "app: measured: applier_state=3800 stack_high_water=2900 ticks=9",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            installs(&log),
            [(CORRUPT.to_string(), 300), ("OK".to_string(), 2900)]
        );
    }

    #[test]
    fn tampering_keeps_the_crcs_right() {
        // A container of one entry: H = 80, a 16-byte body.
        let mut p = b"FPAT\x01\x00\x01\x00".to_vec();
        p.extend(80u16.to_le_bytes());
        p.extend([0u8; 80]);
        p.extend([7u8; 16]);
        for t in [Tamper::Header, Tamper::Body] {
            let x = tamper(&p, t).unwrap();
            let (hdr, body) = (10, 90);
            assert_eq!(x.len(), p.len());
            assert_eq!(x[hdr + 72..hdr + 76], crc32(&x[body..]).to_le_bytes());
            assert_eq!(x[body - 4..body], crc32(&x[8..body - 4]).to_le_bytes());
            let changed = |r: std::ops::Range<usize>| x[r.clone()] != p[r];
            match t {
                Tamper::Header => assert!(changed(hdr + 36..hdr + 68) && !changed(body..106)),
                Tamper::Body => assert!(changed(body..106) && !changed(hdr + 36..hdr + 68)),
            }
        }
        assert!(tamper(&p[..90], Tamper::Body).is_err());
    }
}

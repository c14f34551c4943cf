//! `smpmgr` from PyPI (installed into a virtual environment under
//! `target/` the first time) talks to the SMP server over a
//! pseudo-terminal, as it would to a device's UART: `os echo`, `image
//! state-read` and `os reset` answer as a Zephyr device's would.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;

use flashpatch_smp::serial::{self, Decoder, Event};
use flashpatch_smp::{Action, Device, ImageSlot, Server, BUF_SIZE};

/// The client the test trusts, pinned.
const SMPMGR: &str = "smpmgr==0.19.1";

fn smpmgr() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/py/smpmgr");
        let tool = venv.join("bin/smpmgr");
        if !tool.exists() {
            let run = |cmd: &mut Command| {
                let out = cmd.output().expect("python3 runs");
                assert!(
                    out.status.success(),
                    "{cmd:?} failed (the tests need python3 and PyPI):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
            run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", SMPMGR]));
        }
        tool
    })
}

/// A device running v1 from slot 0, with v2 on trial in slot 1.
struct Bench;

impl Device for Bench {
    fn slots(&mut self) -> [Option<ImageSlot<'_>>; 2] {
        [
            Some(ImageSlot {
                slot: 0,
                version: "1.0.0",
                hash: [0x11; 32],
                bootable: true,
                pending: false,
                confirmed: true,
                active: true,
                permanent: false,
            }),
            Some(ImageSlot {
                slot: 1,
                version: "2.0.0",
                hash: [0x22; 32],
                bootable: true,
                pending: true,
                confirmed: false,
                active: false,
                permanent: false,
            }),
        ]
    }
}

/// A pseudo-terminal in raw mode: the master side and the slave's path.
fn pty() -> (File, String) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors; the name, termios and size
    // arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: `slave` is an open terminal; the termios is filled by
    // tcgetattr before it is changed.
    let name = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave, &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(slave, libc::TCSANOW, &t), 0);
        std::ffi::CStr::from_ptr(libc::ttyname(slave))
            .to_string_lossy()
            .into_owned()
    };
    // The slave stays open (and leaks) so that the master does not read
    // EIO between clients.
    std::mem::forget(unsafe { OwnedFd::from_raw_fd(slave) });
    // SAFETY: `master` is an open descriptor that nothing else owns.
    (unsafe { File::from_raw_fd(master) }, name)
}

/// Serves SMP on `master` for ever; counts the resets asked for.
fn serve(mut master: File, resets: Arc<AtomicUsize>) {
    thread::spawn(move || {
        let mut dec = Decoder::<{ BUF_SIZE + 4 }>::new();
        let mut server = Server::new();
        let mut buf = [0u8; 256];
        let mut out = [0u8; BUF_SIZE];
        while let Ok(n) = master.read(&mut buf) {
            for &b in &buf[..n] {
                if dec.feed(b) != Event::Frame {
                    continue;
                }
                let (len, action) = server.answer(dec.frame(), &mut out, &mut Bench);
                let mut lines = Vec::new();
                serial::encode(&out[..len], serial::LINE, &mut |l| {
                    lines.extend_from_slice(l)
                });
                master.write_all(&lines).unwrap();
                if action == Action::Reset {
                    resets.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
}

fn smp(port: &str, args: &[&str]) -> Output {
    let out = Command::new(smpmgr())
        .args(["--port", port, "--timeout", "5"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "smpmgr {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn smpmgr_echoes_reads_image_states_and_resets() {
    let (master, port) = pty();
    let resets = Arc::new(AtomicUsize::new(0));
    serve(master, resets.clone());

    let out = smp(&port, &["os", "echo", "hello flashpatch"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hello flashpatch"), "{text}");

    let out = smp(&port, &["image", "state-read"]);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("smpmgr image state-read:\n{text}");
    for want in ["1.0.0", "2.0.0", &"11".repeat(32), &"22".repeat(32)] {
        assert!(text.contains(want), "{want} in {text}");
    }

    smp(&port, &["os", "reset"]);
    assert_eq!(resets.load(Ordering::Relaxed), 1);
}

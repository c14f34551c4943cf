//! `genpat send` against a simulated device (the real slot manager,
//! staging and applier over a MockFlash) on a Unix socket and on loopback
//! TCP: results, exit codes, resume after a power cut, link failures.

mod common;
mod sim;

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::thread;

use common::genpat;
use flashpatch::mock::Rng;
use sim::{serve_unix, Sim};
use tempfile::TempDir;

/// Two versions of a 48 KiB image: the second has 10 KiB of new bytes,
/// so that its patch spans several staging units.
fn images(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(seed);
    let v1 = common::image_48k(&mut rng);
    let mut v2 = v1.clone();
    v2[5000..15_240].copy_from_slice(&rng.bytes(10_240));
    v2[40_000] ^= 0xA5;
    (v1, v2)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Serves `sessions` connections of `sim` on a Unix socket in `dir`, and
/// runs `genpat send PATCH --unix SOCKET` once per session with `args`.
fn over_unix(sim: Arc<Mutex<Sim>>, dir: &Path, patch: &str, sessions: usize) -> Vec<Output> {
    let sock = dir.join("device.sock");
    let server = serve_unix(&sim, &sock, sessions);
    let sock = sock.to_str().unwrap().to_owned();
    let outs = (0..sessions)
        .map(|_| {
            genpat(
                dir,
                &["send", patch, "--unix", &sock, "--restart-timeout", "5"],
            )
        })
        .collect();
    server.join().unwrap();
    outs
}

fn setup() -> (TempDir, Vec<u8>, Vec<u8>) {
    let dir = TempDir::new().unwrap();
    let (v1, v2) = images(11);
    std::fs::write(dir.path().join("v1.bin"), &v1).unwrap();
    std::fs::write(dir.path().join("v2.bin"), &v2).unwrap();
    let out = genpat(dir.path(), &["v1.bin", "v2.bin", "up.fpat"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    (dir, v1, v2)
}

fn device(v1: &[u8], v2: &[u8]) -> Sim {
    let mut sim = Sim::new(v1, "v1");
    sim.knows(v2, "v2");
    sim
}

#[test]
fn update_then_same_patch_again_over_unix_socket() {
    let (dir, v1, v2) = setup();
    let sim = Arc::new(Mutex::new(device(&v1, &v2)));
    let outs = over_unix(sim.clone(), dir.path(), "up.fpat", 2);
    assert_eq!(text(&outs[0].stdout), "OK\n", "{}", text(&outs[0].stderr));
    assert_eq!(outs[0].status.code(), Some(0));
    let err = text(&outs[0].stderr);
    assert!(err.contains("device: version v1"), "{err}");
    assert!(err.contains("device restarted: version v2"), "{err}");
    assert!(sim.lock().unwrap().running() == (v2.clone(), "v2".into()));
    assert_eq!(
        text(&outs[1].stdout),
        "OK, new version already installed\n",
        "{}",
        text(&outs[1].stderr)
    );
    assert_eq!(outs[1].status.code(), Some(0));
    assert!(sim.lock().unwrap().running().0 == v2);
}

/// `bad.fpat` in `dir`: `up.fpat` with one bit of its body flipped.
fn write_corrupt(dir: &Path) {
    let mut patch = std::fs::read(dir.join("up.fpat")).unwrap();
    let at = patch.len() - 100;
    patch[at] ^= 0x10;
    std::fs::write(dir.join("bad.fpat"), &patch).unwrap();
}

#[test]
fn corrupt_patch_is_refused_and_device_keeps_its_image() {
    let (dir, v1, v2) = setup();
    write_corrupt(dir.path());
    let sim = Arc::new(Mutex::new(device(&v1, &v2)));
    let outs = over_unix(sim.clone(), dir.path(), "bad.fpat", 1);
    assert_eq!(text(&outs[0].stdout), "Patch data is invalid or corrupt\n");
    assert_eq!(outs[0].status.code(), Some(4));
    assert!(sim.lock().unwrap().running() == (v1, "v1".into()));
}

#[test]
fn patch_for_another_image_finds_no_suitable_entry() {
    let (dir, v1, v2) = setup();
    let (other, _) = images(99);
    std::fs::write(dir.path().join("other.bin"), &other).unwrap();
    let out = genpat(dir.path(), &["other.bin", "v2.bin", "other.fpat"]);
    assert!(out.status.success());
    let sim = Arc::new(Mutex::new(device(&v1, &v2)));
    let outs = over_unix(sim.clone(), dir.path(), "other.fpat", 1);
    assert_eq!(text(&outs[0].stdout), "No suitable patches were found\n");
    assert_eq!(outs[0].status.code(), Some(5));
    assert!(text(&outs[0].stderr).contains("has no entry for"));
    assert!(sim.lock().unwrap().running().0 == v1);
}

#[test]
fn transfer_resumes_after_a_power_cut() {
    let (dir, v1, v2) = setup();
    let patch_len = std::fs::metadata(dir.path().join("up.fpat")).unwrap().len();
    let chunks = patch_len.div_ceil(256) as usize;
    assert!(chunks > 40, "patch of {patch_len} bytes");
    let mut sim = device(&v1, &v2);
    sim.cut_after_chunks = Some(chunks * 2 / 3);
    let sim = Arc::new(Mutex::new(sim));
    let outs = over_unix(sim.clone(), dir.path(), "up.fpat", 2);
    // The first run loses the device and says what to do.
    assert_eq!(outs[0].status.code(), Some(2));
    let err = text(&outs[0].stderr);
    assert!(
        err.contains("closed") && err.contains("run the same command again"),
        "{err}"
    );
    // The second continues from what the device stored, not from zero.
    assert_eq!(text(&outs[1].stdout), "OK\n", "{}", text(&outs[1].stderr));
    let err = text(&outs[1].stderr);
    let held: u64 = err
        .split("the device holds ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume in: {err}"));
    assert!(held >= 4096 && held.is_multiple_of(4096), "{held}");
    let sent: u64 = err
        .split("sent ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(sent, patch_len - held);
    assert!(sim.lock().unwrap().running() == (v2, "v2".into()));
}

#[test]
fn line_noise_costs_retries_not_the_update() {
    let (dir, v1, v2) = setup();
    let mut sim = device(&v1, &v2);
    sim.noise_every = Some(2999);
    let sim = Arc::new(Mutex::new(sim));
    let sock = dir.path().join("noisy.sock");
    let server = serve_unix(&sim, &sock, 1);
    let out = genpat(
        dir.path(),
        &[
            "send",
            "up.fpat",
            "--unix",
            sock.to_str().unwrap(),
            "--timeout",
            "0.3",
        ],
    );
    server.join().unwrap();
    assert_eq!(text(&out.stdout), "OK\n", "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let sent: u64 = err
        .split("sent ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let patch_len = std::fs::metadata(dir.path().join("up.fpat")).unwrap().len();
    // Damaged chunks were sent again: more than the patch, less than twice.
    assert!(
        sent > patch_len && sent < 2 * patch_len,
        "{sent} of {patch_len}"
    );
    assert!(sim.lock().unwrap().running() == (v2, "v2".into()));
}

/// A result lost on the way makes the host ask again: a refusal is
/// refused again, and an update that happened is found installed.
#[test]
fn lost_result_is_asked_for_again() {
    let (dir, v1, v2) = setup();
    write_corrupt(dir.path());
    for (file, stdout, code, runs) in [
        ("bad.fpat", "Patch data is invalid or corrupt\n", 4, "v1"),
        ("up.fpat", "OK, new version already installed\n", 0, "v2"),
    ] {
        let mut sim = device(&v1, &v2);
        sim.lose_first_result = true;
        let sim = Arc::new(Mutex::new(sim));
        let sock = dir.path().join(format!("{file}.sock"));
        let server = serve_unix(&sim, &sock, 1);
        let out = genpat(
            dir.path(),
            &[
                "send",
                file,
                "--unix",
                sock.to_str().unwrap(),
                "--timeout",
                "0.3",
            ],
        );
        server.join().unwrap();
        assert_eq!(text(&out.stdout), stdout, "{}", text(&out.stderr));
        assert_eq!(out.status.code(), Some(code));
        assert_eq!(sim.lock().unwrap().running().1, runs);
    }
}

#[test]
fn update_over_loopback_tcp() {
    let (dir, v1, v2) = setup();
    let sim = Arc::new(Mutex::new(device(&v1, &v2)));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let s = sim.clone();
    let server = thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        s.lock().unwrap().serve(conn);
    });
    let out = genpat(dir.path(), &["send", "up.fpat", "--tcp", &addr]);
    server.join().unwrap();
    assert_eq!(text(&out.stdout), "OK\n", "{}", text(&out.stderr));
    assert!(sim.lock().unwrap().running() == (v2, "v2".into()));
}

#[test]
fn link_failures_exit_2() {
    let (dir, _, _) = setup();
    // Nobody listens.
    let out = genpat(dir.path(), &["send", "up.fpat", "--unix", "nobody.sock"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot open nobody.sock"));
    // A peer that never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let out = genpat(
        dir.path(),
        &["send", "up.fpat", "--tcp", &addr, "--timeout", "0.2"],
    );
    drop(listener);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("did not answer"),
        "{}",
        text(&out.stderr)
    );
    // No link named; a missing patch file.
    assert_eq!(
        genpat(dir.path(), &["send", "up.fpat"]).status.code(),
        Some(1)
    );
    let out = genpat(dir.path(), &["send", "none.fpat", "--tcp", &addr]);
    assert_eq!(out.status.code(), Some(2));
}

/// One file with entries for the application and the data component: one
/// `genpat send`, both updated and activated together; the same file
/// again is "already installed".
#[test]
fn a_two_component_file_updates_both_in_one_send() {
    let (dir, v1, v2) = setup();
    let mut rng = Rng(12);
    let d1 = rng.bytes(20_000);
    let mut d2 = d1.clone();
    d2[3000..6000].copy_from_slice(&rng.bytes(3000));
    std::fs::write(dir.path().join("d1.bin"), &d1).unwrap();
    std::fs::write(dir.path().join("d2.bin"), &d2).unwrap();
    let out = genpat(
        dir.path(),
        &["d1.bin", "d2.bin", "up.fpat", "--component", "1"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut sim = Sim::with_data(&v1, "v1", &d1);
    sim.knows(&v2, "v2");
    let sim = Arc::new(Mutex::new(sim));
    let outs = over_unix(sim.clone(), dir.path(), "up.fpat", 2);
    assert_eq!(text(&outs[0].stdout), "OK\n", "{}", text(&outs[0].stderr));
    {
        let s = sim.lock().unwrap();
        assert!(s.running() == (v2.clone(), "v2".into()));
        assert!(s.data() == d2, "the data component was not updated");
    }
    assert_eq!(
        text(&outs[1].stdout),
        "OK, new version already installed\n",
        "{}",
        text(&outs[1].stderr)
    );
}

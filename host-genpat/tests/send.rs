//! `genpat send` against a simulated device (the real slot manager,
//! staging and applier over a MockFlash) on a Unix socket and on loopback
//! TCP: results, exit codes, resume after a power cut, link failures, and
//! devices that answer but make no progress.

mod common;
mod sim;

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::genpat;
use flashpatch::mock::Rng;
use host_genpat::send::{self, Quiet, SendError, SendOptions};
use sim::{serve_unix, Lie, Sim};
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

/// `genpat ARGS… --tcp ADDRESS` against `sim` serving one session on a
/// loopback port.
fn over_tcp(sim: &Arc<Mutex<Sim>>, dir: &Path, args: &[&str]) -> Output {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let s = sim.clone();
    let server = thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        s.lock().unwrap().serve(conn);
    });
    let mut all = args.to_vec();
    all.extend(["--tcp", &addr]);
    let out = genpat(dir, &all);
    server.join().unwrap();
    out
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
    let out = over_tcp(&sim, dir.path(), &["send", "up.fpat"]);
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

/// Runs `genpat send up.fpat --timeout 0.2` against `sim` once; returns
/// its output and how long it took.
fn send_fast(dir: &Path, name: &str, sim: Sim) -> (Output, Duration) {
    let sim = Arc::new(Mutex::new(sim));
    let sock = dir.join(format!("{name}.sock"));
    let server = serve_unix(&sim, &sock, 1);
    let t = Instant::now();
    let out = genpat(
        dir,
        &[
            "send",
            "up.fpat",
            "--unix",
            sock.to_str().unwrap(),
            "--timeout",
            "0.2",
        ],
    );
    let took = t.elapsed();
    server.join().unwrap();
    (out, took)
}

/// A device that answers but makes no progress: `genpat send --timeout
/// 0.2` gives up with exit code 2 within the 30 s, and says when
/// and what the device last did; returns stderr and the patch's size.
fn gives_up(lie: Option<Lie>, brownouts: usize, when: &str, last: &str) -> (String, u64) {
    let (dir, v1, v2) = setup();
    let mut sim = device(&v1, &v2);
    sim.lie = lie;
    sim.brownouts = brownouts;
    let (out, took) = send_fast(dir.path(), "liar", sim);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(text(&out.stdout), "", "{err}");
    let said = format!("the device does not answer {when}: 3 tries without progress");
    assert!(err.contains(&said), "{err}");
    assert!(err.contains(&format!("; it last {last}")), "{err}");
    assert!(took < Duration::from_secs(30), "{took:?}: {err}");
    let did = err
        .split("; it last ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .unwrap_or_default();
    println!(
        "a device that {did}: genpat send --timeout 0.2 gave up after {:.1} s",
        took.as_secs_f64()
    );
    let size = std::fs::metadata(dir.path().join("up.fpat")).unwrap().len();
    (err, size)
}

#[test]
fn a_device_that_drops_every_chunk_is_given_up() {
    let (err, size) = gives_up(
        Some(Lie::DropChunks),
        0,
        "during the transfer",
        "acknowledged offset 0 with a window of 512 bytes",
    );
    assert!(
        err.contains(&format!(", 0 of {size} bytes acknowledged")),
        "{err}"
    );
}

#[test]
fn a_device_that_acknowledges_a_stale_offset_is_given_up() {
    gives_up(
        Some(Lie::StaleAck),
        0,
        "during the transfer",
        "acknowledged offset 0 with a window of 512 bytes",
    );
}

#[test]
fn a_device_that_acknowledges_bytes_not_sent_is_given_up() {
    let (err, _) = gives_up(
        Some(Lie::AheadAck),
        0,
        "during the transfer",
        "acknowledged offset ",
    );
    assert!(err.contains(" bytes sent"), "{err}");
}

#[test]
fn a_device_that_acknowledges_an_absurd_offset_is_given_up() {
    gives_up(
        Some(Lie::AbsurdAck),
        0,
        "to Begin",
        "acknowledged offset 4294967280, past the end of the",
    );
}

#[test]
fn a_device_that_grants_no_window_is_given_up() {
    gives_up(
        Some(Lie::NoWindow),
        0,
        "during the transfer",
        "acknowledged offset 0 with a window of 0 bytes",
    );
}

#[test]
fn a_device_that_never_sends_a_result_is_given_up() {
    let (err, size) = gives_up(
        Some(Lie::NoResult),
        0,
        "after the transfer (no result)",
        "acknowledged offset ",
    );
    assert!(err.contains(&format!(", {size} of {size} bytes")), "{err}");
    assert!(
        err.contains(&format!("offset {size} with a window of 512 bytes")),
        "{err}"
    );
}

#[test]
fn a_result_code_not_in_the_protocol_is_no_result() {
    gives_up(
        Some(Lie::UnknownCode),
        0,
        "after the transfer (no result)",
        "sent result code 9 (\"OK\"), which is not in the protocol",
    );
}

#[test]
fn a_result_text_that_is_not_utf8_is_no_result() {
    gives_up(
        Some(Lie::BadText),
        0,
        "after the transfer (no result)",
        "sent result code 0 with a text that is not UTF-8",
    );
}

#[test]
fn a_brown_out_loop_during_apply_is_given_up() {
    let (err, _) = gives_up(
        None,
        usize::MAX,
        "after the transfer (no result)",
        "restarted (announced version v1)",
    );
    assert!(err.contains(" restarts; "), "{err}");
}

/// The library says the same: a stuck device is `SendError::Stuck`.
#[test]
fn send_returns_stuck_for_a_device_that_drops_chunks() {
    let (dir, v1, v2) = setup();
    let patch = std::fs::read(dir.path().join("up.fpat")).unwrap();
    let mut sim = device(&v1, &v2);
    sim.lie = Some(Lie::DropChunks);
    let (mut host, dev) = std::os::unix::net::UnixStream::pair().unwrap();
    host.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let server = thread::spawn(move || sim.serve(dev));
    let opts = SendOptions {
        timeout: Duration::from_millis(100),
        restart: Duration::ZERO,
    };
    let r = send::send(&mut host, &patch, &opts, &mut Quiet);
    drop(host);
    server.join().unwrap();
    match r {
        Err(SendError::Stuck {
            when,
            tries,
            acked,
            size,
            restarts,
            ..
        }) => {
            assert_eq!(when, "during the transfer");
            assert_eq!((tries, acked, restarts), (send::TRIES, 0, 0));
            assert_eq!(size as usize, patch.len());
        }
        other => panic!("{other:?}"),
    }
}

/// Honest devices still succeed: one slower over each of its first chunks
/// than three timeouts together, and one that loses power twice during
/// the apply and installs on the third try.
#[test]
fn slow_or_restarting_but_progressing_devices_succeed() {
    let (dir, v1, v2) = setup();
    let mut sim = device(&v1, &v2);
    sim.slow_chunks = Some((Duration::from_millis(150), 8));
    let (out, took) = send_fast(dir.path(), "slow", sim);
    assert_eq!(text(&out.stdout), "OK\n", "{}", text(&out.stderr));
    assert!(took > Duration::from_millis(8 * 150), "{took:?}");

    let mut sim = device(&v1, &v2);
    sim.brownouts = 2;
    let (out, _) = send_fast(dir.path(), "brown-outs", sim);
    assert_eq!(text(&out.stdout), "OK\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}

/// `genpat send --json`: one document in place of the answer, with what
/// the device ran before and after; the exit code is the same.
#[test]
fn send_json_documents_the_answer() {
    let (dir, v1, v2) = setup();
    let sim = Arc::new(Mutex::new(device(&v1, &v2)));
    let run = |sim: &Arc<Mutex<Sim>>, patch: &str| {
        let out = over_tcp(sim, dir.path(), &["send", patch, "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
        (out.status.code(), doc)
    };
    let (code, doc) = run(&sim, "up.fpat");
    assert_eq!(code, Some(0));
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["result"], "OK");
    assert_eq!(doc["verdict"], "ok");
    assert_eq!(doc["device"]["version"], "v1");
    assert_eq!(doc["device"]["image_size"], v1.len());
    assert_eq!(doc["after"]["version"], "v2");
    assert_eq!(doc["device"]["security_counter"], 0);
    assert_eq!(doc["device"]["floor"], 0);
    let size = std::fs::metadata(dir.path().join("up.fpat")).unwrap().len();
    assert_eq!(doc["transfer"]["bytes_sent"], size);
    // A corrupt patch: exit code 4 as without --json, and its verdict.
    write_corrupt(dir.path());
    let sim = Arc::new(Mutex::new(device(&v1, &v2)));
    let (code, doc) = run(&sim, "bad.fpat");
    assert_eq!(code, Some(4));
    assert_eq!(doc["verdict"], "corrupt");
    assert_eq!(doc["result"], "Patch data is invalid or corrupt");
    assert!(doc["after"].is_null());
}

/// A device of protocol version 1 announces no security counters: genpat
/// still understands it and updates it, and `--json` says the counters
/// are unknown.
#[test]
fn a_protocol_version_1_device_is_still_updated() {
    let (dir, v1, v2) = setup();
    let mut d = device(&v1, &v2);
    d.proto1 = true;
    let sim = Arc::new(Mutex::new(d));
    let out = over_tcp(&sim, dir.path(), &["send", "up.fpat", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["result"], "OK");
    assert_eq!(doc["device"]["version"], "v1");
    assert!(doc["device"]["security_counter"].is_null(), "{doc}");
    assert!(doc["device"]["floor"].is_null(), "{doc}");
    assert!(sim.lock().unwrap().running() == (v2, "v2".into()));
}

//! `genpat manifest` and `genpat update` over loopback HTTP: a directory
//! served by `python3 -m http.server` holds a signed manifest, patches
//! v1→v3 and v2→v3 and the full v3 image; simulated devices (the send
//! tests' device, on Unix sockets) run v1, v2 and an image the manifest
//! does not know. Each gets the file meant for it and ends up running v3
//! byte for byte. A changed or unsigned manifest is refused under `--key`,
//! and a download that is not the file the manifest names is refused before
//! anything is sent. Without python3 the tests say so and pass.

mod common;
mod sim;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::genpat;
use flashpatch::mock::Rng;
use sim::{serve_unix, Sim};
use tempfile::TempDir;

/// A 48 KiB image, and the next two versions of it (each with a few KiB of
/// new bytes, so that patches are far smaller than the full image).
fn versions(seed: u64) -> [Vec<u8>; 3] {
    let mut rng = Rng(seed);
    let v1 = common::image_48k(&mut rng);
    let mut v2 = v1.clone();
    v2[5000..8000].copy_from_slice(&rng.bytes(3000));
    let mut v3 = v2.clone();
    v3[20_000..22_000].copy_from_slice(&rng.bytes(2000));
    v3[40_000] ^= 0xA5;
    [v1, v2, v3]
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `python3 -m http.server` on a free loopback port; killed on drop.
struct Http {
    child: Child,
    port: u16,
}

impl Http {
    /// Serves `dir`, or says why it cannot and returns `None`.
    fn serve(dir: &Path) -> Option<Http> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let spawned = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut http = match spawned {
            Ok(child) => Http { child, port },
            Err(e) => {
                eprintln!("SKIPPED: cannot run python3 -m http.server ({e}); the update tests need python3");
                return None;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || http.child.try_wait().ok().flatten().is_some() {
                eprintln!("SKIPPED: python3 -m http.server did not start on port {port}");
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(http)
    }

    fn url(&self, file: &str) -> String {
        format!("http://127.0.0.1:{}/{file}", self.port)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A release of v3 in `dir/www`: v1-v3.fpatch, v2-v3.fpatch, the full
/// image v3.fpatch and update.json signed with `dir/release.key`.
struct Release {
    dir: TempDir,
    images: [Vec<u8>; 3],
}

impl Release {
    fn new() -> Release {
        let dir = TempDir::new().unwrap();
        let images = versions(21);
        std::fs::create_dir(dir.path().join("www")).unwrap();
        for (i, img) in images.iter().enumerate() {
            std::fs::write(dir.path().join(format!("v{}.bin", i + 1)), img).unwrap();
        }
        let steps: [&[&str]; 4] = [
            &["v1.bin", "v3.bin", "www/v1-v3.fpatch"],
            &["v2.bin", "v3.bin", "www/v2-v3.fpatch"],
            &["keygen", "release.key"],
            &[
                "manifest",
                "--version",
                "3.0.0",
                "--image",
                "v3.bin",
                "--full",
                "www/v3.fpatch",
                "--patch",
                "v1.bin",
                "www/v1-v3.fpatch",
                "--patch",
                "v2.bin",
                "www/v2-v3.fpatch",
                "--notes",
                "Fixes the watchdog.",
                "--sign",
                "release.key",
                "-o",
                "www/update.json",
            ],
        ];
        for args in steps {
            let out = genpat(dir.path(), args);
            assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        }
        Release { dir, images }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn size(&self, file: &str) -> u64 {
        std::fs::metadata(self.path(file)).unwrap().len()
    }

    /// A device running `image`, which knows v3 by name.
    fn device(&self, image: &[u8], name: &str) -> Arc<Mutex<Sim>> {
        let mut sim = Sim::new(image, name);
        sim.knows(&self.images[2], "3.0.0");
        Arc::new(Mutex::new(sim))
    }

    /// `genpat update --manifest MANIFEST --unix SOCKET` with `extra`
    /// arguments and the release's own state directory; `device`, if
    /// given, serves one session on SOCKET (without one, nothing listens
    /// there and genpat cannot reach a device).
    fn update(&self, device: Option<&Arc<Mutex<Sim>>>, manifest: &str, extra: &[&str]) -> Output {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SOCKETS: AtomicU64 = AtomicU64::new(0);
        let n = SOCKETS.fetch_add(1, Ordering::Relaxed);
        let sock = self.path(&format!("device-{n}.sock"));
        let server = device.map(|d| serve_unix(d, &sock, 1));
        let state = self.path("state");
        let mut args = vec![
            "update",
            "--state-dir",
            state.to_str().unwrap(),
            "--manifest",
            manifest,
            "--unix",
            sock.to_str().unwrap(),
            "--restart-timeout",
            "5",
        ];
        args.extend_from_slice(extra);
        let out = genpat(self.dir.path(), &args);
        if let Some(s) = server {
            s.join().unwrap();
        }
        out
    }
}

/// The number after "sent " in genpat's report.
fn bytes_sent(stderr: &str) -> u64 {
    stderr
        .split("sent ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("nothing sent: {stderr}"))
}

#[test]
fn each_device_gets_its_patch_or_the_full_image_and_runs_v3() {
    let rel = Release::new();
    let Some(http) = Http::serve(&rel.path("www")) else {
        return;
    };
    let url = http.url("update.json");
    let [v1, v2, v3] = rel.images.clone();
    let unknown = versions(77)[0].clone();
    let cases = [
        (
            &v1,
            "1.0.0",
            "v1-v3.fpatch",
            "a patch for the device's image",
        ),
        (
            &v2,
            "2.0.0",
            "v2-v3.fpatch",
            "a patch for the device's image",
        ),
        (&unknown, "0.9.0", "v3.fpatch", "sending the full image"),
    ];
    for (image, name, file, why) in cases {
        let dev = rel.device(image, name);
        let out = rel.update(Some(&dev), &url, &["--key", "release.key.pub"]);
        let err = text(&out.stderr);
        assert_eq!(text(&out.stdout), "OK\n", "{name}: {err}");
        assert_eq!(out.status.code(), Some(0), "{name}: {err}");
        assert!(err.contains("signature good"), "{name}: {err}");
        assert!(err.contains(&format!("device: version {name}")), "{err}");
        assert!(err.contains(why), "{name}: {err}");
        assert!(err.contains(&http.url(file)), "{name}: {err}");
        assert_eq!(bytes_sent(&err), rel.size(&format!("www/{file}")), "{err}");
        assert!(err.contains("device restarted: version 3.0.0"), "{err}");
        assert!(dev.lock().unwrap().running() == (v3.clone(), "3.0.0".into()));
    }
    assert!(rel.size("www/v1-v3.fpatch") * 4 < rel.size("www/v3.fpatch"));

    // A device on v3 gets nothing; a local manifest names local files.
    let dev = rel.device(&v3, "3.0.0");
    let out = rel.update(Some(&dev), "www/update.json", &["--key", "release.key.pub"]);
    assert_eq!(
        text(&out.stdout),
        "OK, new version already installed\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stderr).contains("sent "));
}

/// `--json`: one document on standard output in place of the result text,
/// with the device before and after and what was sent; the same for a
/// device that already runs the release.
#[test]
fn update_json_documents_the_answer() {
    let rel = Release::new();
    let Some(http) = Http::serve(&rel.path("www")) else {
        return;
    };
    let url = http.url("update.json");
    let [v1, _, v3] = rel.images.clone();
    let json = ["--key", "release.key.pub", "--json"];
    let doc = |out: &Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
    };
    let dev = rel.device(&v1, "1.0.0");
    let out = rel.update(Some(&dev), &url, &json);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let d = doc(&out);
    assert_eq!(d["format_version"], 1);
    assert_eq!(d["result"], "OK");
    assert_eq!(d["verdict"], "ok");
    assert_eq!(d["device"]["version"], "1.0.0");
    assert_eq!(d["device"]["image_size"], v1.len());
    assert_eq!(d["after"]["version"], "3.0.0");
    assert_eq!(d["transfer"]["bytes_sent"], rel.size("www/v1-v3.fpatch"));
    assert!(dev.lock().unwrap().running() == (v3.clone(), "3.0.0".into()));

    let dev = rel.device(&v3, "3.0.0");
    let out = rel.update(Some(&dev), &url, &json);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let d = doc(&out);
    assert_eq!(d["result"], "OK, new version already installed");
    assert_eq!(d["verdict"], "already_installed");
    assert_eq!(d["device"]["version"], "3.0.0");
    assert!(d["transfer"].is_null());
}

#[test]
fn changed_unsigned_or_foreign_manifests_are_refused_under_key() {
    let rel = Release::new();
    let Some(http) = Http::serve(&rel.path("www")) else {
        return;
    };
    let url = http.url("update.json");
    let good = std::fs::read_to_string(rel.path("www/update.json")).unwrap();
    let out = genpat(rel.dir.path(), &["keygen", "other.key"]);
    assert!(out.status.success());
    let v1 = rel.images[0].clone();

    // A changed field: the v1 device is sent the v2 patch's URL.
    let changed = good.replacen("\"url\": \"v1-v3.fpatch\"", "\"url\": \"v2-v3.fpatch\"", 1);
    assert_ne!(changed, good);
    std::fs::write(rel.path("www/update.json"), &changed).unwrap();
    let refused = |out: &Output, why: &str| {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{err}");
        assert!(
            err.contains("refusing the manifest") && err.contains(why),
            "{err}"
        );
    };
    let dev = rel.device(&v1, "1.0.0");
    refused(
        &rel.update(None, &url, &["--key", "release.key.pub"]),
        "signature does not match",
    );
    // Signed, but by another key.
    std::fs::write(rel.path("www/update.json"), &good).unwrap();
    refused(
        &rel.update(None, &url, &["--key", "other.key.pub"]),
        "signature does not match",
    );
    // Not signed at all.
    std::fs::remove_file(rel.path("www/update.json.sig")).unwrap();
    refused(
        &rel.update(None, &url, &["--key", "release.key.pub"]),
        "not signed",
    );
    assert!(dev.lock().unwrap().running() == (v1, "1.0.0".into()));

    // Without --key genpat says that it does not check, and updates.
    let out = rel.update(Some(&dev), &url, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("signature is not checked"), "{err}");
    assert!(dev.lock().unwrap().running().0 == rel.images[2]);
}

#[test]
fn a_download_unlike_the_manifest_is_refused_before_sending() {
    let rel = Release::new();
    let Some(http) = Http::serve(&rel.path("www")) else {
        return;
    };
    let url = http.url("update.json");
    let patch = rel.path("www/v1-v3.fpatch");
    let good = std::fs::read(&patch).unwrap();
    let mut flipped = good.clone();
    let at = good.len() - 10;
    flipped[at] ^= 0x01;
    let other = std::fs::read(rel.path("www/v2-v3.fpatch")).unwrap();
    let v1 = rel.images[0].clone();
    for (bytes, why) in [(&flipped, "SHA-256"), (&other, "bytes")] {
        std::fs::write(&patch, bytes).unwrap();
        let dev = rel.device(&v1, "1.0.0");
        let flash = dev.lock().unwrap().flash.borrow().as_bytes().to_vec();
        let out = rel.update(Some(&dev), &url, &["--key", "release.key.pub"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{err}");
        assert!(err.contains("not sending it") && err.contains(why), "{err}");
        assert!(!err.contains("sent "), "{err}");
        let d = dev.lock().unwrap();
        assert!(d.running() == (v1.clone(), "1.0.0".into()));
        assert!(
            d.flash.borrow().as_bytes() == &flash[..],
            "the device's flash changed"
        );
    }
}

/// A manifest with two components, the application (v1, v2 -> v3) and a
/// data partition (component 1: d1 -> d2, and the full d2): `genpat update
/// --component app --component data` asks the device what each component
/// runs, sends one file with both components' entries, and the device
/// activates both; a device whose data image the manifest does not know
/// gets the full data image. No HTTP: the manifest is a local path.
#[test]
fn several_components_are_updated_in_one_run() {
    use host_genpat::manifest::Manifest;
    let rel = Release::new();
    let mut rng = Rng(23);
    let d1 = rng.bytes(20_000);
    let mut d2 = d1.clone();
    d2[1000..4000].copy_from_slice(&rng.bytes(3000));
    std::fs::write(rel.path("d1.bin"), &d1).unwrap();
    std::fs::write(rel.path("d2.bin"), &d2).unwrap();
    std::fs::write(rel.path("empty.bin"), b"").unwrap();
    let steps: [&[&str]; 3] = [
        &["d1.bin", "d2.bin", "www/d1-d2.fpatch", "--component", "1"],
        &["empty.bin", "d2.bin", "www/d2.fpatch", "--component", "1"],
        &[
            "manifest",
            "--component",
            "data",
            "--version",
            "3.0.0",
            "--image",
            "d2.bin",
            "--full",
            "www/d2.fpatch",
            "--patch",
            "d1.bin",
            "www/d1-d2.fpatch",
            "-o",
            "www/data.json",
        ],
    ];
    for args in steps {
        let out = genpat(rel.dir.path(), args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let read = |f: &str| Manifest::from_bytes(&std::fs::read(rel.path(f)).unwrap()).unwrap();
    let mut both = read("www/update.json");
    both.components.extend(read("www/data.json").components);
    std::fs::write(rel.path("www/both.json"), both.to_bytes()).unwrap();
    let manifest = rel.path("www/both.json");
    let manifest = manifest.to_str().unwrap();
    let two = ["--component", "app", "--component", "data"];

    for (data, sent) in [
        (&d1, "www/d1-d2.fpatch"),
        (&rng.bytes(9_000), "www/d2.fpatch"),
    ] {
        let mut sim = Sim::with_data(&rel.images[0], "v1", data);
        sim.knows(&rel.images[2], "3.0.0");
        let dev = Arc::new(Mutex::new(sim));
        let out = rel.update(Some(&dev), manifest, &two);
        let err = text(&out.stderr);
        assert_eq!(text(&out.stdout), "OK\n", "{err}");
        assert!(err.contains(sent), "{err}");
        assert!(err.contains("one file of 2 entries"), "{err}");
        {
            let d = dev.lock().unwrap();
            assert!(d.running().0 == rel.images[2], "the application is not v3");
            assert!(d.data() == d2, "the data component is not d2");
        }
        // Both run the release now: nothing is sent.
        let out = rel.update(Some(&dev), manifest, &two);
        assert_eq!(
            text(&out.stdout),
            "OK, new version already installed\n",
            "{}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains("sending"));
    }
    // A name twice, or one the manifest does not have.
    let out = rel.update(
        None,
        manifest,
        &["--component", "app", "--component", "app"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = rel.update(
        None,
        manifest,
        &["--component", "app", "--component", "radio"],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
}

/// Releases 2 (sequence 2, security counter 2), 3 (sequence 3, counter 3)
/// and a later manifest (sequence 4) that installs image 2 again, for one
/// device remembered by name: an older manifest is refused (exit code 4),
/// an older image is refused (exit code 5) unless --allow-downgrade, the
/// same or a newer manifest is accepted, and another device has its own
/// history. No HTTP: the manifests are local paths.
#[test]
fn older_manifests_and_older_images_are_refused() {
    use host_genpat::manifest::history::History;
    let rel = Release::new();
    let [v1, v2, v3] = rel.images.clone();
    let release = |v: &str, seq: &str, image: &str, full: &str, patch: &[&str], out: &str| {
        let mut args = vec![
            "manifest",
            "--version",
            v,
            "--sequence",
            seq,
            "--image",
            image,
            "--full",
            full,
            "-o",
            out,
        ];
        args.extend_from_slice(patch);
        let o = genpat(rel.dir.path(), &args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    };
    for args in [
        &[
            "v1.bin",
            "v2.bin",
            "www/c1-2.fpatch",
            "--security-counter",
            "2",
        ][..],
        &[
            "v2.bin",
            "v3.bin",
            "www/c2-3.fpatch",
            "--security-counter",
            "3",
        ],
        &[
            "empty.bin",
            "v2.bin",
            "www/c2.fpatch",
            "--security-counter",
            "2",
        ],
        &[
            "empty.bin",
            "v3.bin",
            "www/c3.fpatch",
            "--security-counter",
            "3",
        ],
    ] {
        std::fs::write(rel.path("empty.bin"), b"").unwrap();
        let o = genpat(rel.dir.path(), args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    }
    let patch = |old: &'static str, p: &'static str| ["--patch", old, p];
    release(
        "2.0.0",
        "2",
        "v2.bin",
        "www/c2.fpatch",
        &patch("v1.bin", "www/c1-2.fpatch"),
        "www/r2.json",
    );
    release(
        "3.0.0",
        "3",
        "v3.bin",
        "www/c3.fpatch",
        &patch("v2.bin", "www/c2-3.fpatch"),
        "www/r3.json",
    );
    release("2.0.0", "4", "v2.bin", "www/c2.fpatch", &[], "www/r4.json");
    let m = |f: &str| rel.path(&format!("www/{f}")).to_str().unwrap().to_owned();

    let mut sim = Sim::new(&v1, "1.0.0");
    sim.knows(&v2, "2.0.0");
    sim.knows(&v3, "3.0.0");
    let dev = Arc::new(Mutex::new(sim));
    let bench = ["--device", "bench-1"];
    let runs = |image: &[u8]| dev.lock().unwrap().running().0 == image;
    let check = |out: &Output, code: i32, says: &[&str], sent: bool| {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        for s in says {
            assert!(err.contains(s), "{s:?} in {err}");
        }
        assert_eq!(err.contains("sent "), sent, "{err}");
    };

    // Release 3 from v1 (no patch from v1: the full image).
    check(
        &rel.update(Some(&dev), &m("r3.json"), &bench),
        0,
        &["device: version 1.0.0"],
        true,
    );
    assert!(runs(&v3));
    // Release 2, validly made but older: refused before anything is sent.
    let out = rel.update(Some(&dev), &m("r2.json"), &bench);
    check(
        &out,
        4,
        &[
            "refusing the manifest",
            "sequence number 2 is below 3",
            "bench-1",
        ],
        false,
    );
    assert!(runs(&v3));
    // The same manifest again: accepted, nothing to do.
    let out = rel.update(Some(&dev), &m("r3.json"), &bench);
    check(&out, 0, &[], false);
    assert_eq!(text(&out.stdout), "OK, new version already installed\n");
    // A newer manifest that installs an older image: refused, then sent
    // with --allow-downgrade.
    let out = rel.update(Some(&dev), &m("r4.json"), &bench);
    check(
        &out,
        5,
        &[
            "not sending an older image",
            "runs version 3.0.0",
            "security counter is 2, the device's image's 3",
            "--allow-downgrade",
        ],
        false,
    );
    assert!(runs(&v3));
    // With --allow-downgrade genpat sends it, and the device refuses it
    // itself: its image's counter is its floor.
    let allow = ["--device", "bench-1", "--allow-downgrade"];
    let out = rel.update(Some(&dev), &m("r4.json"), &allow);
    check(&out, 2, &["warning: installing an older image"], true);
    assert_eq!(text(&out.stdout), "An error occurred while patching\n");
    assert!(runs(&v3));
    // Release 3 is older than the manifest accepted last, and a manifest
    // without a sequence number is older than any with one.
    check(
        &rel.update(Some(&dev), &m("r3.json"), &allow),
        4,
        &["sequence number 3 is below 4"],
        false,
    );
    let r3 = std::fs::read_to_string(rel.path("www/r3.json")).unwrap();
    let unnumbered = r3.replace("  \"sequence\": 3,\n", "");
    assert_ne!(unnumbered, r3);
    std::fs::write(rel.path("www/old.json"), unnumbered).unwrap();
    let out = rel.update(Some(&dev), &m("old.json"), &bench);
    check(
        &out,
        4,
        &["has no sequence number", "sequence number 0 is below 4"],
        false,
    );

    // A genpat that has no history of the device (another name) refuses
    // all the same: the device announces its image's counter.
    let out = rel.update(Some(&dev), &m("r4.json"), &["--device", "bench-new"]);
    check(
        &out,
        5,
        &[
            "not sending an older image",
            "security counter is 2, the device's image's 3 (as the device announces it)",
            "security counter 3 (accepts 3 and up)",
        ],
        false,
    );
    assert!(runs(&v3));

    // What genpat remembers of bench-1.
    let path = History::path(&rel.path("state"), "bench-1");
    let h = History::load(&path, "bench-1").unwrap();
    assert_eq!(h.sequence, 4);
    let known = |img: &[u8]| h.images[&host_genpat::manifest::Image::of(img).sha256].clone();
    assert_eq!(
        (known(&v3).sequence, known(&v3).security_counter),
        (3, Some(3))
    );
    assert_eq!(
        (known(&v2).sequence, known(&v2).version.as_str()),
        (4, "2.0.0")
    );
    assert_eq!(known(&v2).security_counter, Some(2));

    // Another device has its own history: release 2 is new to it.
    let other = rel.device(&v1, "1.0.0");
    let out = rel.update(Some(&other), &m("r2.json"), &["--device", "bench-2"]);
    check(&out, 0, &["c1-2.fpatch"], true);
    assert!(other.lock().unwrap().running().0 == v2);
}

/// Releases without security counters: which image is older comes from
/// the sequence number of the manifest that first installed each. A later
/// manifest that installs image 2 again is refused for a device on image
/// 3 (exit code 5), and sent with --allow-downgrade.
#[test]
fn without_counters_the_first_release_orders_images() {
    let rel = Release::new();
    let [v1, v2, v3] = rel.images.clone();
    std::fs::write(rel.path("empty.bin"), b"").unwrap();
    let steps: [&[&str]; 4] = [
        &["empty.bin", "v2.bin", "www/n2.fpatch"],
        &[
            "manifest",
            "--version",
            "2.0.0",
            "--sequence",
            "2",
            "--image",
            "v2.bin",
            "--full",
            "www/n2.fpatch",
            "-o",
            "www/n2.json",
        ],
        &[
            "manifest",
            "--version",
            "3.0.0",
            "--sequence",
            "3",
            "--image",
            "v3.bin",
            "--full",
            "www/v3.fpatch",
            "--patch",
            "v2.bin",
            "www/v2-v3.fpatch",
            "-o",
            "www/n3.json",
        ],
        &[
            "manifest",
            "--version",
            "2.0.0",
            "--sequence",
            "4",
            "--image",
            "v2.bin",
            "--full",
            "www/n2.fpatch",
            "-o",
            "www/n4.json",
        ],
    ];
    for args in steps {
        let o = genpat(rel.dir.path(), args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    }
    let m = |f: &str| rel.path(&format!("www/{f}")).to_str().unwrap().to_owned();
    let mut sim = Sim::new(&v1, "1.0.0");
    sim.knows(&v2, "2.0.0");
    sim.knows(&v3, "3.0.0");
    let dev = Arc::new(Mutex::new(sim));
    let runs = |image: &[u8]| dev.lock().unwrap().running().0 == image;
    let bench = ["--device", "bench-3"];
    for (file, image) in [("n2.json", &v2), ("n3.json", &v3)] {
        let out = rel.update(Some(&dev), &m(file), &bench);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(runs(image));
    }
    let out = rel.update(Some(&dev), &m("n4.json"), &bench);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("first released in manifest sequence 2, the device's in 3"),
        "{err}"
    );
    assert!(!err.contains("sent ") && runs(&v3), "{err}");
    let out = rel.update(
        Some(&dev),
        &m("n4.json"),
        &["--device", "bench-3", "--allow-downgrade"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(text(&out.stdout), "OK\n", "{err}");
    assert!(
        err.contains("installing an older image") && runs(&v2),
        "{err}"
    );
}

/// Without --state-dir and --device, the history is under
/// $GENPAT_STATE_DIR, else $XDG_STATE_HOME/genpat, and named by the link.
#[test]
fn the_history_is_kept_under_the_state_directory_by_link() {
    use host_genpat::manifest::history::History;
    let rel = Release::new();
    let dev = rel.device(&rel.images[0], "1.0.0");
    let state = rel.path("env-state");
    let xdg = rel.path("xdg");
    for (n, genpat_state, dir) in [
        (1, Some(&state), state.clone()),
        (2, None, xdg.join("genpat")),
    ] {
        let sock = rel.path(&format!("bench-{n}.sock"));
        let server = serve_unix(&dev, &sock, 1);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_genpat"));
        cmd.args(["update", "--manifest", "www/update.json", "--unix"])
            .arg(&sock)
            .args(["--restart-timeout", "5"])
            .env_remove("GENPAT_STATE_DIR")
            .env("XDG_STATE_HOME", &xdg)
            .current_dir(rel.dir.path());
        if let Some(s) = genpat_state {
            cmd.env("GENPAT_STATE_DIR", s);
        }
        let out = cmd.output().unwrap();
        server.join().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let name = format!("unix:{}", std::fs::canonicalize(&sock).unwrap().display());
        let h = History::load(&History::path(&dir, &name), "").unwrap();
        assert_eq!(h.device, name);
        assert!(h.sequence > 0 && h.images.len() == 1, "{h:?}");
        if n == 1 {
            assert!(!xdg.exists());
        }
    }
}

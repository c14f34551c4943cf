//! How `genpat` writes its outputs: parallel writers of one PATCH, devices,
//! FIFOs and symbolic links as outputs, outputs that are inputs, and the
//! temporaries a killed genpat leaves.

mod common;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::{genpat, image_48k};
use flashpatch::mock::Rng;

fn exit(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn entries(dir: &Path, patch: &str) -> usize {
    let o = genpat(dir, &["info", "--json", patch]);
    assert_eq!(exit(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["entries"].as_array().unwrap().len()
}

/// Writes `n` different OLD images and one NEW into `dir`.
fn images(dir: &Path, n: usize) {
    let mut rng = Rng(7);
    let new = image_48k(&mut rng);
    fs::write(dir.join("new.bin"), &new).unwrap();
    for i in 0..n {
        let mut old = new.clone();
        for k in 0..8 {
            old[(i * 977 + k * 4099) % new.len()] ^= 0x5a ^ i as u8;
        }
        fs::write(dir.join(format!("old{i}.bin")), &old).unwrap();
    }
}

#[test]
fn concurrent_appends_lose_no_entry() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    images(d, 40);
    let bin = env!("CARGO_BIN_EXE_genpat");
    for round in 0..20 {
        let patch = format!("p{round}.pat");
        let spawn = |old: String| {
            Command::new(bin)
                .args([old.as_str(), "new.bin", patch.as_str()])
                .current_dir(d)
                .output()
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| spawn(format!("old{}.bin", 2 * round)));
            let b = s.spawn(|| spawn(format!("old{}.bin", 2 * round + 1)));
            (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
        });
        assert_eq!(exit(&a), 0, "{}", String::from_utf8_lossy(&a.stderr));
        assert_eq!(exit(&b), 0, "{}", String::from_utf8_lossy(&b.stderr));
        assert_eq!(entries(d, &patch), 2, "round {round} lost an entry");
    }
    println!("concurrent appends: 20 rounds of two genpats on one PATCH, 0 entries lost");
}

/// A patch p.pat from old0.bin to new.bin in `d`.
fn patch(d: &Path) {
    images(d, 1);
    assert_eq!(exit(&genpat(d, &["old0.bin", "new.bin", "p.pat"])), 0);
}

#[cfg(unix)]
#[test]
fn character_device_as_out_stays_a_device() {
    use std::os::unix::fs::FileTypeExt as _;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    patch(d);
    // A null device of our own, when we may make one; /dev/null otherwise.
    let made = Command::new("mknod")
        .args(["null", "c", "1", "3"])
        .current_dir(d)
        .status()
        .is_ok_and(|s| s.success());
    let out = if made {
        d.join("null")
    } else {
        "/dev/null".into()
    };
    let o = genpat(d, &["apply", "p.pat", "old0.bin", out.to_str().unwrap()]);
    assert_eq!(exit(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(fs::metadata(&out).unwrap().file_type().is_char_device());
    assert!(fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

#[cfg(unix)]
#[test]
fn fifo_as_out_is_written_through() {
    use std::io::Read as _;
    use std::os::unix::fs::FileTypeExt as _;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    patch(d);
    let made = Command::new("mkfifo")
        .arg("fifo")
        .current_dir(d)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = d.join("fifo");
        std::thread::spawn(move || {
            let mut v = Vec::new();
            fs::File::open(fifo).unwrap().read_to_end(&mut v).unwrap();
            v
        })
    };
    let o = genpat(d, &["apply", "p.pat", "old0.bin", "fifo"]);
    assert_eq!(exit(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // First: were it replaced, the reader would wait forever.
    assert!(fs::metadata(d.join("fifo")).unwrap().file_type().is_fifo());
    assert_eq!(reader.join().unwrap(), fs::read(d.join("new.bin")).unwrap());
}

#[cfg(unix)]
#[test]
fn symlinked_patch_and_out_keep_the_link() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    images(d, 2);
    fs::create_dir(d.join("store")).unwrap();
    std::os::unix::fs::symlink("store/real.pat", d.join("p.pat")).unwrap();
    assert_eq!(exit(&genpat(d, &["old0.bin", "new.bin", "p.pat"])), 0);
    assert_eq!(exit(&genpat(d, &["old1.bin", "new.bin", "p.pat"])), 0);
    assert!(fs::symlink_metadata(d.join("p.pat"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(entries(d, "store/real.pat"), 2);

    fs::write(d.join("store/out.bin"), b"old").unwrap();
    std::os::unix::fs::symlink("store/out.bin", d.join("out.bin")).unwrap();
    let o = genpat(d, &["apply", "p.pat", "old1.bin", "out.bin"]);
    assert_eq!(exit(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(fs::symlink_metadata(d.join("out.bin"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read(d.join("store/out.bin")).unwrap(),
        fs::read(d.join("new.bin")).unwrap()
    );
}

#[test]
fn output_that_is_an_input_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    patch(d);
    let before = fs::read(d.join("p.pat")).unwrap();
    for (args, what) in [
        (&["apply", "p.pat", "old0.bin", "p.pat"][..], "PATCH"),
        (&["apply", "p.pat", "old0.bin", "old0.bin"][..], "OLD"),
        (&["new.bin", "new.bin", "new.bin"][..], "OLD"),
    ] {
        let o = genpat(d, args);
        assert_eq!(exit(&o), 2, "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("is the same file as {what}")),
            "{err}"
        );
    }
    assert_eq!(fs::read(d.join("p.pat")).unwrap(), before);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("old0.bin", d.join("link.bin")).unwrap();
        let o = genpat(d, &["apply", "p.pat", "old0.bin", "link.bin"]);
        assert_eq!(exit(&o), 2);
    }
}

#[test]
fn dash_as_out_is_stdout() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    patch(d);
    let o = genpat(d, &["apply", "p.pat", "old0.bin", "-"]);
    assert_eq!(exit(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, fs::read(d.join("new.bin")).unwrap());
    assert!(String::from_utf8_lossy(&o.stderr).contains("OK\n"));
    assert!(!d.join("-").exists());
}

#[cfg(target_os = "linux")]
#[test]
fn temporaries_of_a_killed_genpat_are_removed() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    patch(d);
    // A process that has ended: its pid is free (until reused).
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = d.join(format!(".genpat-{dead}-abcdef.tmp"));
    let live = d.join(format!(".genpat-{}-abcdef.tmp", std::process::id()));
    let other = d.join(".other.tmp");
    for p in [&stale, &live, &other] {
        fs::write(p, b"left").unwrap();
    }
    let o = genpat(d, &["apply", "p.pat", "old0.bin", "out.bin"]);
    assert_eq!(exit(&o), 0);
    assert!(!stale.exists());
    assert!(live.exists());
    assert!(other.exists());
}

#[test]
fn unsound_timeouts_are_argument_errors() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for flag in ["--timeout", "--restart-timeout"] {
        for v in ["nan", "inf", "-inf", "-1", "1e300", "x"] {
            let arg = format!("{flag}={v}");
            let o = genpat(d, &["send", "p.pat", "--tcp", "127.0.0.1:9", &arg]);
            assert_eq!(exit(&o), 1, "{arg}: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

#[cfg(unix)]
#[test]
fn endless_inputs_are_refused_at_the_limit() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    patch(d);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_genpat"))
            .args(args)
            .env("GENPAT_INPUT_LIMIT", "1000000")
            .current_dir(d)
            .output()
            .unwrap()
    };
    for args in [
        &["apply", "p.pat", "/dev/zero", "out.bin"][..],
        &["apply", "/dev/zero", "old0.bin", "out.bin"][..],
        &["/dev/zero", "new.bin", "q.pat"][..],
        &["old0.bin", "/dev/zero", "q.pat"][..],
        &["old0.bin", "new.bin", "/dev/zero"][..],
    ] {
        let o = run(args);
        assert_eq!(exit(&o), 2, "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("is larger than 1000000 bytes"), "{err}");
    }
    assert!(!d.join("out.bin").exists() && !d.join("q.pat").exists());
}

#[cfg(target_os = "linux")]
#[test]
fn keygen_that_cannot_write_leaves_no_key() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // No file may grow (as on a full disk); SIGXFSZ ignored, so writes fail.
    let o = Command::new("sh")
        .args(["-c", "trap '' XFSZ; ulimit -f 0; exec \"$0\" keygen k"])
        .arg(env!("CARGO_BIN_EXE_genpat"))
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(exit(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!d.join("k").exists() && !d.join("k.pub").exists());
    let names: Vec<_> = fs::read_dir(d).unwrap().flatten().collect();
    assert!(names.is_empty(), "{names:?}");
    assert_eq!(exit(&genpat(d, &["keygen", "k"])), 0);
    assert!(d.join("k").exists() && d.join("k.pub").exists());
}

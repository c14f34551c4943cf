//! End-to-end tests of the `genpat` binary: the real executable, run in
//! temporary directories on small generated firmware-like images.

mod common;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::genpat;
use tempfile::TempDir;

const OK: &str = "OK\n";
const ALREADY: &str = "OK, new version already installed\n";
const CORRUPT: &str = "Patch data is invalid or corrupt\n";
const NO_SUITABLE: &str = "No suitable patches were found\n";
const ERROR: &str = "An error occurred while patching\n";

use flashpatch::mock::Rng;

/// A firmware-like image: a vector table, "code" blocks with 32-bit
/// addresses, a constant table and erased padding.
fn firmware(seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut img = Vec::new();
    for i in 0..64u32 {
        img.extend_from_slice(&(0x0800_0000 + i * 0x40 + 1).to_le_bytes());
    }
    for _ in 0..24 {
        img.extend(rng.bytes(96));
        img.extend_from_slice(&(0x0800_1000 + rng.below(0x4000) as u32).to_le_bytes());
    }
    img.extend((0..512u32).map(|i| (i * 7 % 251) as u8));
    img.resize(img.len() + 700, 0xff);
    img
}

/// The next version of `old`: shifted addresses, a few changed bytes, an
/// inserted run and a changed tail.
fn next_version(old: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut new = old.to_vec();
    for w in new.chunks_exact_mut(4).step_by(37) {
        let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]).wrapping_add(0x20);
        w.copy_from_slice(&v.to_le_bytes());
    }
    for _ in 0..10 {
        let at = rng.below(new.len());
        new[at] ^= 0x5a;
    }
    let at = new.len() / 2;
    new.splice(at..at, rng.bytes(300));
    let tail = new.len() - 200;
    new.truncate(tail);
    new.extend(rng.bytes(120));
    new
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

/// A temp dir holding v1, v2 (next of v1), v3 (next of v2) and an unrelated image.
fn setup() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let v1 = firmware(1);
    let v2 = next_version(&v1, 2);
    let v3 = next_version(&v2, 3);
    fs::write(dir.path().join("v1.bin"), &v1).unwrap();
    fs::write(dir.path().join("v2.bin"), &v2).unwrap();
    fs::write(dir.path().join("v3.bin"), &v3).unwrap();
    fs::write(dir.path().join("other.bin"), firmware(99)).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    fs::read(dir.join(name)).unwrap()
}

fn info_json(dir: &Path, patch: &str) -> serde_json::Value {
    let o = genpat(dir, &["info", "--json", patch]);
    assert_exit(&o, 0);
    serde_json::from_slice(&o.stdout).expect("info --json prints JSON")
}

/// Runs `genpat` with `args` (an apply), and asserts exit 0, `OK` on stdout
/// and that `out` now holds the same bytes as `want`.
fn assert_applied(d: &Path, args: &[&str], out: &str, want: &str) {
    let o = genpat(d, args);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), OK);
    assert_eq!(read(d, out), read(d, want));
}

#[test]
fn create_apply_and_apply_again() {
    let (_t, d) = setup();
    let o = genpat(&d, &["v1.bin", "v2.bin", "p.pat"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).starts_with("genpat: created p.pat: entry 1 of 1, "));
    let patch = read(&d, "p.pat");
    assert!(patch.starts_with(b"FPAT"));
    assert!(
        patch.len() < read(&d, "v2.bin").len() / 4,
        "{} bytes",
        patch.len()
    );

    assert_applied(
        &d,
        &["apply", "p.pat", "v1.bin", "out.bin"],
        "out.bin",
        "v2.bin",
    );

    // Applied again to its own result: the target is already there.
    let o = genpat(&d, &["apply", "p.pat", "out.bin", "again.bin"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), ALREADY);
    assert_eq!(read(&d, "again.bin"), read(&d, "v2.bin"));

    // Fed one byte at a time, the result is the same.
    assert_applied(
        &d,
        &["apply", "--chunk", "1", "p.pat", "v1.bin", "one.bin"],
        "one.bin",
        "v2.bin",
    );
}

#[test]
fn unrelated_old_has_no_suitable_patch() {
    let (_t, d) = setup();
    assert_exit(&genpat(&d, &["v1.bin", "v2.bin", "p.pat"]), 0);
    let o = genpat(&d, &["apply", "p.pat", "other.bin", "out.bin"]);
    assert_exit(&o, 5);
    assert_eq!(stdout(&o), NO_SUITABLE);
    assert!(stderr(&o).starts_with("genpat: "));
    assert!(!d.join("out.bin").exists());
}

#[test]
fn corrupt_patches_are_refused() {
    let (_t, d) = setup();
    assert_exit(&genpat(&d, &["v1.bin", "v2.bin", "p.pat"]), 0);
    let good = read(&d, "p.pat");

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x10; // in the body
    let mut header = good.clone();
    header[8 + 2 + 40] ^= 0x01; // in the first entry's header
    let truncated = good[..good.len() - 10].to_vec();
    let random = Rng(7).bytes(1000);
    let mut fake = b"FPAT\x01\x00\x01\x00".to_vec();
    fake.extend(Rng(8).bytes(500));

    for (name, bytes) in [
        ("flipped", flipped),
        ("header", header),
        ("truncated", truncated),
        ("random", random),
        ("fake", fake),
    ] {
        fs::write(d.join(name), &bytes).unwrap();
        let o = genpat(&d, &["apply", name, "v1.bin", "out.bin"]);
        assert_exit(&o, 4);
        assert_eq!(stdout(&o), CORRUPT, "{name}");
        assert!(stderr(&o).starts_with("genpat: "), "{name}");
        assert!(!d.join("out.bin").exists(), "{name}");

        let o = genpat(&d, &["info", name]);
        assert_exit(&o, 4);
        assert!(stderr(&o).contains(name), "{name}: {}", stderr(&o));
    }
}

#[test]
fn multi_patch_file_replace_and_exists() {
    let (_t, d) = setup();
    let o = genpat(&d, &["v1.bin", "v3.bin", "m.pat"]);
    assert_exit(&o, 0);
    let o = genpat(&d, &["v2.bin", "v3.bin", "m.pat"]);
    assert_exit(&o, 0);
    assert!(stderr(&o).starts_with("genpat: added to m.pat: entry 2 of 2, "));

    for old in ["v1.bin", "v2.bin"] {
        let o = genpat(&d, &["apply", "m.pat", old, "out.bin"]);
        assert_exit(&o, 0);
        assert_eq!(stdout(&o), OK, "{old}");
        assert_eq!(read(&d, "out.bin"), read(&d, "v3.bin"), "{old}");
    }

    let info = info_json(&d, "m.pat");
    assert_eq!(info["format_version"], 1);
    let entries = info["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["source"]["size"], read(&d, "v1.bin").len());
    assert_eq!(entries[1]["source"]["size"], read(&d, "v2.bin").len());
    assert_eq!(entries[0]["target"]["size"], read(&d, "v3.bin").len());
    assert_eq!(entries[1]["index"], 2);

    // The same source again: refused, and the file is byte-identical.
    let before = read(&d, "m.pat");
    let o = genpat(&d, &["v1.bin", "v3.bin", "m.pat"]);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("--replace"), "{}", stderr(&o));
    assert_eq!(read(&d, "m.pat"), before);

    // With --replace: replaced in place, still two entries, both apply.
    let o = genpat(
        &d,
        &[
            "--replace",
            "--version",
            "3.0.1",
            "v1.bin",
            "v3.bin",
            "m.pat",
        ],
    );
    assert_exit(&o, 0);
    assert!(stderr(&o).starts_with("genpat: replaced in m.pat: entry 1 of 2, "));
    let info = info_json(&d, "m.pat");
    let entries = info["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["version"], "3.0.1");
    assert_eq!(entries[1]["version"], serde_json::Value::Null);
    for old in ["v1.bin", "v2.bin"] {
        let o = genpat(&d, &["apply", "m.pat", old, "out.bin"]);
        assert_eq!(stdout(&o), OK, "{old}");
    }
}

/// `--in-place`: an update entry and its reverse, recorded as in-place
/// ones (NEW padded to whole erase units), which the A/B applier does not
/// take; they sit beside an A/B entry for the same OLD.
#[test]
fn in_place_entries() {
    let (_t, d) = setup();
    let o = genpat(
        &d,
        &[
            "diff",
            "--in-place",
            "--erase-unit",
            "1024",
            "v1.bin",
            "v2.bin",
            "ip.pat",
        ],
    );
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains("entry 1 of 2, in place, 1024-byte units, "),
        "{err}"
    );
    assert!(
        err.contains("entry 2 of 2, in place, reverse (rollback), 1024-byte units, "),
        "{err}"
    );
    let info = info_json(&d, "ip.pat");
    let e = info["entries"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    let (v1, v2) = (read(&d, "v1.bin").len(), read(&d, "v2.bin").len());
    assert_eq!(e[0]["in_place"]["role"], "update");
    assert_eq!(e[0]["in_place"]["erase_unit"], 1024);
    assert_eq!(e[0]["source"]["size"], v1);
    assert_eq!(e[0]["target"]["size"], v2.div_ceil(1024) * 1024);
    assert_eq!(e[1]["in_place"]["role"], "rollback");
    assert_eq!(e[1]["source"]["size"], v2.div_ceil(1024) * 1024);
    let text = stdout(&genpat(&d, &["info", "ip.pat"]));
    assert!(
        text.contains("in place        update of 1024-byte erase units, "),
        "{text}"
    );

    // The A/B applier finds nothing for it.
    let o = genpat(&d, &["apply", "ip.pat", "v1.bin", "out.bin"]);
    assert_exit(&o, 5);
    assert_eq!(stdout(&o), NO_SUITABLE);

    // Again: refused, unchanged; with --replace, replaced.
    let before = read(&d, "ip.pat");
    let args = [
        "diff",
        "--in-place",
        "--erase-unit",
        "1024",
        "v1.bin",
        "v2.bin",
        "ip.pat",
    ];
    assert_exit(&genpat(&d, &args), 3);
    assert_eq!(read(&d, "ip.pat"), before);
    let o = genpat(&d, &[&args[..], &["--replace"]].concat());
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("replaced in ip.pat"), "{}", stderr(&o));

    // An A/B entry for the same OLD is a third entry, and applies.
    assert_exit(&genpat(&d, &["v1.bin", "v2.bin", "ip.pat"]), 0);
    assert_eq!(
        info_json(&d, "ip.pat")["entries"].as_array().unwrap().len(),
        3
    );
    assert_applied(
        &d,
        &["apply", "ip.pat", "v1.bin", "ab.bin"],
        "ab.bin",
        "v2.bin",
    );

    // --no-reverse: the update entry alone.
    let o = genpat(
        &d,
        &[
            "diff",
            "--in-place",
            "--no-reverse",
            "v1.bin",
            "v2.bin",
            "one.pat",
        ],
    );
    assert_exit(&o, 0);
    let e = info_json(&d, "one.pat");
    assert_eq!(e["entries"].as_array().unwrap().len(), 1);
    assert_eq!(e["entries"][0]["in_place"]["erase_unit"], 4096);

    // Arguments that do not go with it.
    for bad in [
        &[
            "diff",
            "--in-place",
            "--erase-unit",
            "100",
            "v1.bin",
            "v2.bin",
            "x.pat",
        ][..],
        &[
            "diff",
            "--in-place",
            "--erase-unit",
            "0",
            "v1.bin",
            "v2.bin",
            "x.pat",
        ],
        &[
            "diff",
            "--in-place",
            "--component",
            "2",
            "v1.bin",
            "v2.bin",
            "x.pat",
        ],
        &["diff", "--no-reverse", "v1.bin", "v2.bin", "x.pat"],
        &["diff", "--erase-unit", "4096", "v1.bin", "v2.bin", "x.pat"],
    ] {
        let o = genpat(&d, bad);
        assert_exit(&o, 1);
        assert!(!d.join("x.pat").exists(), "{bad:?}");
    }
}

#[test]
fn info_lists_headers() {
    let (_t, d) = setup();
    assert_exit(
        &genpat(
            &d,
            &["--version", "1.2.3", "--mtime", "v1.bin", "v2.bin", "p.pat"],
        ),
        0,
    );
    let o = genpat(&d, &["info", "p.pat"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    let v1 = read(&d, "v1.bin");
    for want in [
        "p.pat: flashpatch format 1, 1 entry, ".to_owned(),
        "entry 1 at offset 8, ".to_owned(),
        format!("source          {} bytes, CRC-32 ", v1.len()),
        "version         1.2.3".to_owned(),
        "mtime           ".to_owned(),
        "(ok)".to_owned(),
        "source identity SHA-256 ".to_owned(),
    ] {
        assert!(text.contains(&want), "{want:?} not in\n{text}");
    }
    let info = info_json(&d, "p.pat");
    let e = &info["entries"][0];
    assert_eq!(info["file_size"], read(&d, "p.pat").len());
    assert_eq!(e["offset"], 8);
    assert_eq!(e["size"], read(&d, "p.pat").len() - 8);
    assert_eq!(e["source"]["md5"].as_str().unwrap().len(), 32);
    assert_eq!(e["target"]["sha256"].as_str().unwrap().len(), 64);
    // The source identity: the first 16 bytes of the source's SHA-256.
    let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&v1).into();
    let hex: String = sha[..16].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(e["source_sha256_prefix"], hex);
    assert_eq!(e["body"]["crc32_ok"], true);
    assert!(e["mtime"].as_i64().is_some());
    assert!(e["mtime_utc"].as_str().unwrap().ends_with('Z'));
}

/// Regression: the same images made two patches whose bytes differed
/// when NEW's modification time did (the entry recorded it). A patch now
/// depends only on the images and the options; `--mtime` records the time,
/// in a 10-byte record.
#[test]
fn patches_do_not_depend_on_when_new_was_written() {
    let (_t, d) = setup();
    let touch = |secs: u64| {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        fs::File::options()
            .write(true)
            .open(d.join("v2.bin"))
            .and_then(|f| f.set_modified(when))
            .unwrap();
    };
    let make = |name: &str, extra: &[&str]| {
        let args: Vec<&str> = extra
            .iter()
            .copied()
            .chain(["v1.bin", "v2.bin", name])
            .collect();
        assert_exit(&genpat(&d, &args), 0);
        read(&d, name)
    };
    touch(1_600_000_000);
    let a = make("a.pat", &[]);
    let timed = make("t.pat", &["--mtime"]);
    touch(1_700_000_000);
    assert_eq!(make("b.pat", &[]), a);
    assert_eq!(timed.len(), a.len() + 10);
    assert_ne!(make("u.pat", &["--mtime"]), timed);
    assert_eq!(
        info_json(&d, "a.pat")["entries"][0]["mtime"],
        serde_json::Value::Null
    );
    assert_eq!(info_json(&d, "t.pat")["entries"][0]["mtime"], 1_600_000_000);
}

#[test]
fn usage_errors_exit_1() {
    let (_t, d) = setup();
    for args in [
        &[][..],
        &["v1.bin"],
        &["v1.bin", "v2.bin"],
        &["apply", "p.pat", "v1.bin"],
        &["info"],
        &["--bogus", "v1.bin", "v2.bin", "p.pat"],
        &["--block-size", "x", "v1.bin", "v2.bin", "p.pat"],
        &["--block-size", "0", "v1.bin", "v2.bin", "p.pat"],
        &["--block-size", "3", "v1.bin", "v2.bin", "p.pat"],
        &["--block-size", "1048577", "v1.bin", "v2.bin", "p.pat"],
        &["v1.bin", "v2.bin", "p.pat", "extra"],
    ] {
        let o = genpat(&d, args);
        assert_exit(&o, 1);
        assert_eq!(stdout(&o), "", "{args:?}");
        assert!(!d.join("p.pat").exists(), "{args:?}");
    }
}

#[test]
fn help_and_version_exit_0_and_document_exit_codes() {
    let (_t, d) = setup();
    for args in [
        &["--help"][..],
        &["-h"],
        &["diff", "--help"],
        &["apply", "--help"],
        &["manifest", "--help"],
        &["update", "--help"],
    ] {
        let o = genpat(&d, args);
        assert_exit(&o, 0);
        let help = stdout(&o);
        assert!(help.contains("Exit codes:"), "{args:?}");
        for code in 0..=5 {
            assert!(
                help.contains(&format!("\n  {code}  ")),
                "{code} in {args:?}"
            );
        }
    }
    let o = genpat(&d, &["diff", "--help"]);
    assert!(stdout(&o).contains("--block-size"));
    assert!(stdout(&o).contains("[default: 4]"));
    let o = genpat(&d, &["info", "--help"]);
    assert!(stdout(&o).contains("\"entries\""));
    let o = genpat(&d, &["--version"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).starts_with("genpat "));
}

#[test]
fn unreadable_inputs_exit_2() {
    let (_t, d) = setup();
    let o = genpat(&d, &["missing.bin", "v2.bin", "p.pat"]);
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o),
        "genpat: cannot read OLD 'missing.bin': No such file or directory\n"
    );
    assert!(!d.join("p.pat").exists());

    let o = genpat(&d, &["v1.bin", "missing.bin", "p.pat"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("cannot read NEW 'missing.bin'"));

    assert_exit(&genpat(&d, &["v1.bin", "v2.bin", "p.pat"]), 0);
    let o = genpat(&d, &["apply", "p.pat", "missing.bin", "out.bin"]);
    assert_exit(&o, 2);
    assert_eq!(stdout(&o), ERROR);
    assert!(stderr(&o).contains("cannot read OLD 'missing.bin'"));
    let o = genpat(&d, &["apply", "missing.pat", "v1.bin", "out.bin"]);
    assert_exit(&o, 2);
    assert_eq!(stdout(&o), ERROR);
    assert!(!d.join("out.bin").exists());
    assert_exit(&genpat(&d, &["info", "missing.pat"]), 2);

    // A directory where OUT should go: the image cannot be written.
    fs::create_dir(d.join("dir")).unwrap();
    let o = genpat(&d, &["apply", "p.pat", "v1.bin", "dir"]);
    assert_exit(&o, 2);
    assert_eq!(stdout(&o), ERROR);
    assert!(stderr(&o).contains("could not write OUT 'dir'"));
    // A directory that does not exist: the message names the user's path,
    // not the temporary file genpat would have written first.
    for args in [
        &["apply", "p.pat", "v1.bin", "nodir/out.bin"][..],
        &["v1.bin", "v3.bin", "nodir/p.pat"],
    ] {
        let o = genpat(&d, args);
        assert_exit(&o, 2);
        let err = stderr(&o);
        assert!(
            err.contains("could not write") && err.contains("'nodir/"),
            "{err}"
        );
        assert!(!err.contains(".genpat-") && !err.contains(".tmp"), "{err}");
    }
}

#[test]
fn existing_non_patch_file_is_left_alone() {
    let (_t, d) = setup();
    for (name, bytes) in [
        ("notes.txt", b"not a patch at all\n".to_vec()),
        ("short.pat", b"FPA".to_vec()),
        ("empty.pat", Vec::new()),
    ] {
        fs::write(d.join(name), &bytes).unwrap();
        let o = genpat(&d, &["v1.bin", "v2.bin", name]);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains("is not a valid patch file"), "{name}");
        assert_eq!(read(&d, name), bytes, "{name}");
    }
    // A patch file whose body is damaged is not added to either.
    assert_exit(&genpat(&d, &["v1.bin", "v2.bin", "p.pat"]), 0);
    let mut bad = read(&d, "p.pat");
    let last = bad.len() - 1;
    bad[last] ^= 1;
    fs::write(d.join("p.pat"), &bad).unwrap();
    let o = genpat(&d, &["v2.bin", "v3.bin", "p.pat"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("CRC"), "{}", stderr(&o));
    assert_eq!(read(&d, "p.pat"), bad);
    // No temporary files are left behind.
    assert!(temporaries(&d).is_empty(), "{:?}", temporaries(&d));
}

/// The names of the temporary files in `d`.
fn temporaries(d: &Path) -> Vec<String> {
    fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// Regression: a target of erased bytes only is already in the erased
/// target slot; OUT got the start of OLD instead of it.
#[test]
fn erased_target_is_written_as_it_is() {
    let (_t, d) = setup();
    fs::write(d.join("erased.bin"), vec![0xFF; 3000]).unwrap();
    assert_exit(&genpat(&d, &["v1.bin", "erased.bin", "e.pat"]), 0);
    let o = genpat(&d, &["apply", "e.pat", "v1.bin", "out.bin"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), ALREADY);
    assert_eq!(read(&d, "out.bin"), read(&d, "erased.bin"));
}

/// Block sizes that would change nothing are refused with the range.
#[test]
fn block_sizes_below_4_are_refused_with_the_range() {
    let (_t, d) = setup();
    for n in ["1", "3"] {
        let o = genpat(&d, &["--block-size", n, "v1.bin", "v2.bin", "p.pat"]);
        assert_exit(&o, 1);
        assert!(stderr(&o).contains("4..=1048576"), "{}", stderr(&o));
        assert!(!d.join("p.pat").exists());
    }
}

#[test]
fn block_size_is_accepted() {
    let (_t, d) = setup();
    for n in ["4", "5", "16", "64"] {
        let patch = format!("b{n}.pat");
        let o = genpat(&d, &["--block-size", n, "v1.bin", "v2.bin", &patch]);
        assert_exit(&o, 0);
        assert_applied(
            &d,
            &["apply", &patch, "v1.bin", "out.bin"],
            "out.bin",
            "v2.bin",
        );
    }
}

#[test]
fn diff_subcommand_form() {
    let (_t, d) = setup();
    // A file named like a command needs the explicit form.
    fs::copy(d.join("v1.bin"), d.join("info")).unwrap();
    let o = genpat(
        &d,
        &["diff", "info", "v2.bin", "p.pat", "--block-size", "8"],
    );
    assert_exit(&o, 0);
    assert!(stderr(&o).starts_with("genpat: created p.pat: "));
    assert_applied(
        &d,
        &["apply", "p.pat", "v1.bin", "out.bin"],
        "out.bin",
        "v2.bin",
    );
    // Same source through the other form: exit 3.
    assert_exit(&genpat(&d, &["v1.bin", "v2.bin", "p.pat"]), 3);
}

#[test]
fn out_is_replaced_only_on_success() {
    let (_t, d) = setup();
    assert_exit(&genpat(&d, &["v1.bin", "v2.bin", "p.pat"]), 0);
    fs::write(d.join("out.bin"), b"previous").unwrap();
    let o = genpat(&d, &["apply", "p.pat", "other.bin", "out.bin"]);
    assert_exit(&o, 5);
    assert_eq!(read(&d, "out.bin"), b"previous");
    // No temporary file is left behind.
    assert!(temporaries(&d).is_empty(), "{:?}", temporaries(&d));
    let o = genpat(&d, &["apply", "p.pat", "v1.bin", "out.bin"]);
    assert_exit(&o, 0);
    assert_eq!(read(&d, "out.bin"), read(&d, "v2.bin"));
    // The durable form (fsync of file and directory) writes the same.
    assert_exit(&genpat(&d, &["--sync", "v1.bin", "v2.bin", "s.pat"]), 0);
    assert_eq!(read(&d, "s.pat"), read(&d, "p.pat"));
    assert_applied(
        &d,
        &["apply", "--sync", "s.pat", "v1.bin", "synced.bin"],
        "synced.bin",
        "v2.bin",
    );
}

#[test]
fn keygen_sign_and_apply_with_a_key() {
    let (_t, d) = setup();
    let o = genpat(&d, &["keygen", "k"]);
    assert_exit(&o, 0);
    assert!(fs::read_to_string(d.join("k.pub"))
        .unwrap()
        .starts_with("flashpatch-ed25519-public "));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(d.join("k")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "secret key readable by others: {mode:o}");
    }
    // Keys are never replaced.
    let before = read(&d, "k");
    assert_exit(&genpat(&d, &["keygen", "k"]), 2);
    assert_eq!(read(&d, "k"), before);
    assert_exit(&genpat(&d, &["keygen", "k2"]), 0);

    let o = genpat(
        &d,
        &[
            "v1.bin",
            "v2.bin",
            "s.pat",
            "--sign",
            "k",
            "--security-counter",
            "3",
        ],
    );
    assert_exit(&o, 0);
    let info = info_json(&d, "s.pat");
    assert_eq!(info["entries"][0]["security_counter"], 3);
    assert_eq!(info["entries"][0]["signature"].as_str().unwrap().len(), 128);
    assert_applied(
        &d,
        &["apply", "--key", "k.pub", "s.pat", "v1.bin", "out.bin"],
        "out.bin",
        "v2.bin",
    );
    // Another key, a newer minimum counter, an unsigned patch: refused.
    let o = genpat(
        &d,
        &["apply", "--key", "k2.pub", "s.pat", "v1.bin", "x.bin"],
    );
    assert_exit(&o, 4);
    assert_eq!(stdout(&o), "Patch data is invalid or corrupt\n");
    assert!(
        stderr(&o).contains("signature is not valid"),
        "{}",
        stderr(&o)
    );
    let o = genpat(
        &d,
        &[
            "apply",
            "--key",
            "k.pub",
            "--min-counter",
            "4",
            "s.pat",
            "v1.bin",
            "x.bin",
        ],
    );
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("security counter 3 is below the minimum 4"),
        "{}",
        stderr(&o)
    );
    assert_exit(&genpat(&d, &["v1.bin", "v2.bin", "u.pat"]), 0);
    let o = genpat(&d, &["apply", "--key", "k.pub", "u.pat", "v1.bin", "x.bin"]);
    assert_exit(&o, 4);
    assert!(stderr(&o).contains("not signed"), "{}", stderr(&o));
    assert!(!d.join("x.bin").exists());
    // Signed afterwards with `genpat sign`, it is accepted.
    assert_exit(&genpat(&d, &["sign", "u.pat", "--key", "k"]), 0);
    assert_applied(
        &d,
        &["apply", "--key", "k.pub", "u.pat", "v1.bin", "out2.bin"],
        "out2.bin",
        "v2.bin",
    );
    // A public key is not a secret key.
    assert_exit(&genpat(&d, &["sign", "u.pat", "--key", "k.pub"]), 2);
}

#[test]
fn components_in_one_file() {
    let (_t, d) = setup();
    // The same OLD for two components: an application (component 0,
    // v1 -> v3) and a data partition (component 1, v1 -> v2).
    assert_exit(&genpat(&d, &["v1.bin", "v3.bin", "c.pat"]), 0);
    let o = genpat(&d, &["v1.bin", "v2.bin", "c.pat", "--component", "1"]);
    assert_exit(&o, 0);
    assert!(
        stderr(&o).starts_with("genpat: added to c.pat: entry 2 of 2, component 1, "),
        "{}",
        stderr(&o)
    );
    // Same OLD and same component: refused, the file unchanged.
    let before = read(&d, "c.pat");
    let o = genpat(&d, &["v1.bin", "v2.bin", "c.pat", "--component", "1"]);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("this OLD image and component"),
        "{}",
        stderr(&o)
    );
    assert_eq!(read(&d, "c.pat"), before);

    let info = info_json(&d, "c.pat");
    let entries = info["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["component"], 0);
    assert_eq!(entries[1]["component"], 1);
    let o = genpat(&d, &["info", "c.pat"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("  component       1\n"),
        "{}",
        stdout(&o)
    );

    assert_applied(
        &d,
        &["apply", "c.pat", "v1.bin", "out.bin"],
        "out.bin",
        "v3.bin",
    );
    assert_applied(
        &d,
        &[
            "apply",
            "--component",
            "1",
            "--chunk",
            "1",
            "c.pat",
            "v1.bin",
            "out.bin",
        ],
        "out.bin",
        "v2.bin",
    );
    let o = genpat(
        &d,
        &["apply", "--component", "2", "c.pat", "v1.bin", "out.bin"],
    );
    assert_exit(&o, 5);
    assert_eq!(stdout(&o), NO_SUITABLE);
    assert!(stderr(&o).contains("(component 2)"), "{}", stderr(&o));
}

/// OLD of 64 KiB or more is mapped rather than read; OLD through a pipe is
/// read; both give the same image, and so does a small OLD (read).
#[test]
fn large_old_is_mapped_and_a_pipe_is_read() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let (_t, d) = setup();
    let mut v1 = Vec::new();
    for seed in 0..40 {
        v1.extend(firmware(seed));
    }
    assert!(v1.len() >= 128 * 1024, "{} bytes", v1.len());
    let v2 = next_version(&v1, 7);
    fs::write(d.join("big1.bin"), &v1).unwrap();
    fs::write(d.join("big2.bin"), &v2).unwrap();
    assert_exit(&genpat(&d, &["big1.bin", "big2.bin", "big.pat"]), 0);
    assert_applied(
        &d,
        &["apply", "big.pat", "big1.bin", "out.bin"],
        "out.bin",
        "big2.bin",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_genpat"))
        .args(["apply", "big.pat", "/dev/stdin", "piped.bin"])
        .current_dir(&d)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&v1));
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), OK);
    assert_eq!(read(&d, "piped.bin"), v2);
    // A directory as OLD is neither mapped nor read.
    let o = genpat(&d, &["apply", "big.pat", ".", "dir.bin"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("cannot read OLD '.'"), "{}", stderr(&o));
}

/// `genpat apply --json`: one document in place of VPatch's result, for a
/// success, an image already installed and a refusal; exit codes as
/// without it.
#[test]
fn apply_json_documents_the_result() {
    let (_t, d) = setup();
    assert_exit(&genpat(&d, &["v1.bin", "v2.bin", "p.pat"]), 0);
    let doc = |o: &Output| -> serde_json::Value {
        serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
    };
    let o = genpat(&d, &["apply", "--json", "p.pat", "v1.bin", "out.bin"]);
    assert_exit(&o, 0);
    let j = doc(&o);
    assert_eq!(
        (j["result"].as_str(), j["verdict"].as_str()),
        (Some("OK"), Some("ok"))
    );
    assert_eq!(j["out"], "out.bin");
    assert_eq!(j["size"], read(&d, "v2.bin").len());
    assert!(j["found"].is_null() && j["error"].is_null());
    let o = genpat(&d, &["apply", "--json", "p.pat", "out.bin", "again.bin"]);
    assert_exit(&o, 0);
    let j = doc(&o);
    assert_eq!(
        (j["verdict"].as_str(), j["found"].as_str()),
        (Some("already_installed"), Some("source"))
    );
    // An OLD the patch has no entry for: exit 5, and the reason.
    fs::write(d.join("other.bin"), vec![0x5Au8; 4000]).unwrap();
    let o = genpat(&d, &["apply", "--json", "p.pat", "other.bin", "x.bin"]);
    assert_exit(&o, 5);
    let j = doc(&o);
    assert_eq!(j["verdict"], "no_suitable_patch");
    assert!(j["out"].is_null() && j["size"].is_null());
    assert!(
        j["error"].as_str().is_some_and(|e| e.contains("p.pat")),
        "{j}"
    );
    assert!(!d.join("x.bin").exists());
}

/// A full image added before a delta does not hide it: genpat keeps full
/// images after the deltas, so a device whose image has a delta gets the
/// delta (it takes the first entry that fits, and a full image fits every
/// image), and any other image still gets the full one.
#[test]
fn a_delta_is_preferred_to_a_full_image_added_before_it() {
    let (_t, d) = setup();
    fs::write(d.join("none.bin"), []).unwrap();
    assert_exit(&genpat(&d, &["none.bin", "v2.bin", "p.pat"]), 0);
    let o = genpat(&d, &["v1.bin", "v2.bin", "p.pat"]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("entry 1 of 2"), "{}", stderr(&o));
    let info = info_json(&d, "p.pat");
    let entries = info["entries"].as_array().unwrap();
    assert_eq!(entries[0]["source"]["size"], read(&d, "v1.bin").len());
    assert_eq!(entries[1]["source"]["size"], 0);
    // The applier reads the delta's source and finds it first.
    let o = genpat(&d, &["apply", "p.pat", "v1.bin", "a.bin"]);
    assert_exit(&o, 0);
    assert_eq!(read(&d, "a.bin"), read(&d, "v2.bin"));
    let o = genpat(&d, &["apply", "p.pat", "other.bin", "b.bin"]);
    assert_exit(&o, 0);
    assert_eq!(read(&d, "b.bin"), read(&d, "v2.bin"));
}

/// A patch whose (valid) header claims a 4 GiB - 1 target: genpat checks
/// what it can have before it reserves anything and ends with a VPatch
/// result, not an abort. Run with 2 GiB of address space, where a 4 GiB
/// reservation cannot succeed.
#[test]
fn a_header_claiming_a_4_gib_target_gives_a_result_not_an_abort() {
    use flashpatch::crc32::crc32;
    use flashpatch::format::{container_header, EntryHeader, MAX_HEADER_LEN};
    let (_t, d) = setup();
    assert_exit(&genpat(&d, &["v1.bin", "v2.bin", "p.pat"]), 0);
    let entries = host_genpat::container::parse(&read(&d, "p.pat")).unwrap();
    let e = &entries[0];
    let h = u16::from_le_bytes([e.bytes[0], e.bytes[1]]) as usize;
    let body = &e.bytes[2 + h..];
    let mut header: EntryHeader = e.header;
    header.target.size = u32::MAX;
    header.body_len = body.len() as u32;
    header.body_crc32 = crc32(body);
    let mut out = [0u8; 2 + MAX_HEADER_LEN];
    let n = header.write(&[], &mut out).unwrap();
    let mut file = container_header(1).to_vec();
    file.extend_from_slice(&out[..n]);
    file.extend_from_slice(body);
    fs::write(d.join("huge.pat"), &file).unwrap();
    let o = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -v 2097152 && exec \"$0\" apply huge.pat v1.bin out.bin",
            env!("CARGO_BIN_EXE_genpat"),
        ])
        .current_dir(&d)
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert_eq!(stdout(&o), ERROR);
    assert!(
        stderr(&o).contains("4294967295 bytes, more memory than can be had"),
        "{}",
        stderr(&o)
    );
    assert!(!d.join("out.bin").exists());
}

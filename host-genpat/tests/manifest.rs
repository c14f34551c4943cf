//! `genpat manifest` on its own (no network, no device): what it writes,
//! the full image it builds, and the mistakes it refuses.

mod common;
use std::fs;
use std::path::Path;
use std::process::Output;

use common::genpat;
use flashpatch::mock::Rng;
use host_genpat::manifest::{self, Image, Manifest};
use tempfile::TempDir;

#[track_caller]
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// v1, v2 (v1 with new bytes) and v3 (v2 with new bytes), 16 KiB each, and
/// the patches v1→v3 and v2→v3.
fn setup() -> TempDir {
    let dir = TempDir::new().unwrap();
    let mut rng = Rng(5);
    let v1 = rng.bytes(16 * 1024);
    let mut v2 = v1.clone();
    v2[1000..1500].copy_from_slice(&rng.bytes(500));
    let mut v3 = v2.clone();
    v3[9000..9300].copy_from_slice(&rng.bytes(300));
    for (name, img) in [("v1.bin", &v1), ("v2.bin", &v2), ("v3.bin", &v3)] {
        fs::write(dir.path().join(name), img).unwrap();
    }
    for args in [
        &["v1.bin", "v3.bin", "v1-v3.fpatch"][..],
        &["v2.bin", "v3.bin", "v2-v3.fpatch"],
        &["v1.bin", "v2.bin", "v1-v2.fpatch"],
        &["keygen", "k"],
    ] {
        assert_exit(&genpat(dir.path(), args), 0);
    }
    dir
}

const BASE: [&str; 7] = [
    "manifest",
    "--version",
    "3",
    "--image",
    "v3.bin",
    "--full",
    "v3.fpatch",
];

fn manifest_with(d: &Path, extra: &[&str]) -> Output {
    let args: Vec<&str> = BASE.iter().chain(extra).copied().collect();
    genpat(d, &args)
}

#[test]
fn writes_a_signed_manifest_and_builds_the_full_image() {
    let t = setup();
    let d = t.path();
    let o = manifest_with(
        d,
        &[
            "--patch",
            "v1.bin",
            "v1-v3.fpatch",
            "--patch",
            "v2.bin",
            "v2-v3.fpatch",
            "--notes",
            "Fixes.",
            "--sign",
            "k",
        ],
    );
    assert_exit(&o, 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("built the full image"));
    let bytes = fs::read(d.join("update.json")).unwrap();
    let m = Manifest::from_bytes(&bytes).unwrap();
    assert_eq!((m.version.as_str(), m.notes.as_str()), ("3", "Fixes."));
    let c = m.component(None).unwrap();
    assert_eq!(c.name, "app");
    let v3 = fs::read(d.join("v3.bin")).unwrap();
    assert_eq!(c.target, Image::of(&v3));
    assert_eq!(c.url, "v3.fpatch");
    assert_eq!(c.size, fs::metadata(d.join("v3.fpatch")).unwrap().len());
    for (old, patch) in [("v1.bin", "v1-v3.fpatch"), ("v2.bin", "v2-v3.fpatch")] {
        let source = Image::of(&fs::read(d.join(old)).unwrap());
        let p = &c.patch_urls[&source.sha256];
        assert_eq!(
            (p.url.as_str(), p.source, p.target),
            (patch, source, c.target)
        );
        let file = fs::read(d.join(patch)).unwrap();
        assert_eq!(p.sha256, manifest::Sha256Hex::of(&file));
    }
    let sig = fs::read_to_string(d.join("update.json.sig")).unwrap();
    let key =
        host_genpat::keys::public_from_text(&fs::read_to_string(d.join("k.pub")).unwrap()).unwrap();
    assert_eq!(manifest::verify(&bytes, &sig, &key), Ok(()));

    // The full image applies to any image, and is signed with the key.
    let o = genpat(
        d,
        &[
            "apply",
            "--key",
            "k.pub",
            "v3.fpatch",
            "v1-v2.fpatch",
            "out.bin",
        ],
    );
    assert_exit(&o, 0);
    assert_eq!(fs::read(d.join("out.bin")).unwrap(), v3);

    // Again, unsigned and with a base URL: FULL is reused, the old
    // signature removed.
    let o = manifest_with(d, &["--base-url", "http://cdn.test/rel/3"]);
    assert_exit(&o, 0);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("built the full image") && err.contains("removed"),
        "{err}"
    );
    assert!(!d.join("update.json.sig").exists());
    let m = Manifest::from_bytes(&fs::read(d.join("update.json")).unwrap()).unwrap();
    assert_eq!(m.components[0].url, "http://cdn.test/rel/3/v3.fpatch");
}

#[test]
fn mismatched_or_damaged_patches_are_refused() {
    let t = setup();
    let d = t.path();
    assert_exit(&manifest_with(d, &[]), 0);
    // A patch that makes another image than --image.
    let o = manifest_with(d, &["--patch", "v1.bin", "v1-v2.fpatch"]);
    assert_exit(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("makes another image"));
    // A patch that has no entry for its OLD.
    let o = manifest_with(d, &["--patch", "v2.bin", "v1-v3.fpatch"]);
    assert_exit(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no entry for OLD"));
    // A damaged patch.
    let mut p = fs::read(d.join("v1-v3.fpatch")).unwrap();
    let at = p.len() - 5;
    p[at] ^= 0x20;
    fs::write(d.join("bad.fpatch"), &p).unwrap();
    assert_exit(&manifest_with(d, &["--patch", "v1.bin", "bad.fpatch"]), 4);
    // A FULL that is a delta, not a full image.
    let o = genpat(
        d,
        &[
            "manifest",
            "--version",
            "3",
            "--image",
            "v3.bin",
            "--full",
            "v1-v3.fpatch",
        ],
    );
    assert_exit(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no full-image entry"));
    // The same OLD twice; --patch with one value.
    let twice = ["--patch", "v1.bin", "v1-v3.fpatch"].repeat(2);
    assert_exit(&manifest_with(d, &twice), 1);
    assert_exit(&manifest_with(d, &["--patch", "v1.bin"]), 1);
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const UNSIGNED: &str = "warning: the manifest is unsigned";
const NO_COUNTER: &str = "warning: the release has no security counter";

/// An unsigned release, or one without a security counter, is written
/// with a warning for each; FULL and every patch must carry the release's
/// counter.
#[test]
fn warns_of_unsigned_or_counterless_releases_and_checks_counters() {
    let t = setup();
    let d = t.path();
    let o = manifest_with(d, &["--sequence", "7"]);
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(err.contains(UNSIGNED) && err.contains(NO_COUNTER), "{err}");
    let m = Manifest::from_bytes(&fs::read(d.join("update.json")).unwrap()).unwrap();
    assert_eq!(m.sequence_number, Some(7));
    assert_eq!(m.components[0].security_counter, None);
    let o = manifest_with(d, &["--sign", "k"]);
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(!err.contains(UNSIGNED) && err.contains(NO_COUNTER), "{err}");

    // v3.fpatch has no counter: not the full image of a release with one.
    let o = manifest_with(d, &["--security-counter", "4"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("entry 1 has security counter none; the release's is 4"),
        "{}",
        stderr(&o)
    );
    let counted = |extra: &[&str]| {
        let base = ["manifest", "--version", "3", "--image", "v3.bin"];
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        genpat(d, &args)
    };
    // Built with the counter; a patch without one is refused.
    let o = counted(&[
        "--full",
        "c3.fpatch",
        "--security-counter",
        "4",
        "--patch",
        "v1.bin",
        "v1-v3.fpatch",
    ]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("'v1-v3.fpatch': entry 1 has security counter none"));
    let o = genpat(
        d,
        &["v1.bin", "v3.bin", "c1-3.fpatch", "--security-counter", "4"],
    );
    assert_exit(&o, 0);
    // The counter of an existing FULL is the release's: no option needed.
    let o = counted(&[
        "--full",
        "c3.fpatch",
        "--sign",
        "k",
        "--patch",
        "v1.bin",
        "c1-3.fpatch",
    ]);
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(!err.contains("warning"), "{err}");
    let m = Manifest::from_bytes(&fs::read(d.join("update.json")).unwrap()).unwrap();
    assert_eq!(m.components[0].security_counter, Some(4));
    // Another counter than FULL's.
    let o = counted(&["--full", "c3.fpatch", "--security-counter", "5"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("entry 1 has security counter 4; the release's is 5"));
}

/// Without --sequence the sequence number is SOURCE_DATE_EPOCH, else the
/// time now.
#[test]
fn the_default_sequence_number_is_the_build_time() {
    let t = setup();
    let d = t.path();
    let run = |epoch: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_genpat"));
        cmd.args(BASE)
            .current_dir(d)
            .env_remove("SOURCE_DATE_EPOCH");
        if let Some(e) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", e);
        }
        let o = cmd.output().unwrap();
        (o.status.code(), stderr(&o))
    };
    let sequence = || {
        Manifest::from_bytes(&fs::read(d.join("update.json")).unwrap())
            .unwrap()
            .sequence_number
    };
    assert_eq!(run(Some("1700000000")).0, Some(0));
    assert_eq!(sequence(), Some(1_700_000_000));
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(run(None).0, Some(0));
    let s = sequence().unwrap();
    assert!((before..before + 600).contains(&s), "{s} vs {before}");
    let (code, err) = run(Some("yesterday"));
    assert_eq!(code, Some(1));
    assert!(err.contains("SOURCE_DATE_EPOCH 'yesterday'"), "{err}");
}

/// `genpat manifest --json` and `genpat keygen --json` print one document
/// that says what they wrote; on failure, none.
#[test]
fn manifest_and_keygen_print_json() {
    let t = setup();
    let d = t.path();
    let o = genpat(d, &["keygen", "--json", "rel.key"]);
    assert_exit(&o, 0);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let public = fs::read_to_string(d.join("rel.key.pub")).unwrap();
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["secret_key"], "rel.key");
    assert_eq!(doc["public_key"], "rel.key.pub");
    let hex = doc["public_key_hex"].as_str().unwrap();
    assert_eq!(hex.len(), 64);
    assert!(public.contains(hex), "{public}");
    // Existing keys: exit code 2 as without --json, and no document.
    let o = genpat(d, &["keygen", "--json", "rel.key"]);
    assert_exit(&o, 2);
    assert!(o.stdout.is_empty());

    let o = manifest_with(
        d,
        &[
            "--json",
            "--sequence",
            "12",
            "--patch",
            "v1.bin",
            "v1-v3.fpatch",
            "--sign",
            "rel.key",
        ],
    );
    assert_exit(&o, 0);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = Manifest::from_bytes(&fs::read(d.join("update.json")).unwrap()).unwrap();
    let c = &m.components[0];
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["manifest"], "update.json");
    assert_eq!(doc["signature"], "update.json.sig");
    assert_eq!(
        (doc["version"].as_str(), doc["sequence"].as_u64()),
        (Some("3"), Some(12))
    );
    assert_eq!(doc["component"], "app");
    assert_eq!(doc["target"]["sha256"], c.target.sha256.to_string());
    assert_eq!(doc["target"]["size"], c.target.size);
    assert!(doc["security_counter"].is_null());
    let full = &doc["full"];
    assert_eq!(
        (full["path"].as_str(), full["url"].as_str()),
        (Some("v3.fpatch"), Some("v3.fpatch"))
    );
    assert_eq!(full["size"], c.size);
    assert_eq!(full["sha256"], c.sha256.to_string());
    assert_eq!(full["built"], true);
    let patches = doc["patches"].as_array().unwrap();
    assert_eq!(patches.len(), 1);
    let v1 = Image::of(&fs::read(d.join("v1.bin")).unwrap());
    let p = &c.patch_urls[&v1.sha256];
    assert_eq!(patches[0]["path"], "v1-v3.fpatch");
    assert_eq!(patches[0]["sha256"], p.sha256.to_string());
    assert_eq!(patches[0]["size"], p.size);
    assert_eq!(patches[0]["source"]["sha256"], v1.sha256.to_string());
    let warnings = doc["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0]
        .as_str()
        .unwrap()
        .contains("no security counter"));

    // Unsigned, FULL reused: no signature, built false, two warnings.
    let o = manifest_with(d, &["--json"]);
    assert_exit(&o, 0);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(doc["signature"].is_null());
    assert_eq!(doc["full"]["built"], false);
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 2);
    // A failure prints no document.
    let o = manifest_with(d, &["--json", "--patch", "v1.bin", "v1-v2.fpatch"]);
    assert_exit(&o, 2);
    assert!(o.stdout.is_empty());

    // The shapes are in --help.
    for (command, field) in [
        ("manifest", "\"warnings\""),
        ("keygen", "\"public_key_hex\""),
    ] {
        let o = genpat(d, &[command, "--help"]);
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(
            help.contains("JSON output (--json)") && help.contains(field),
            "{help}"
        );
    }
}

//! Gives each binary its `memory.x` (none may lie in the crate root, where
//! the linker would find it for all): the A/B application `app` executes
//! in place, so it is linked for the slot `DEMO_SLOT` names (`A`, the
//! default, or `B`: `link/slot-a/memory.x` or `link/slot-b/memory.x`,
//! which both include `link/xip/version-tag.x`); the in-place
//! application `inplace` runs where its boot stage loads it
//! (`link/app/memory.x`); `boot`, `applybench` and `inplace-boot` run
//! from 0x0 (`link/boot/memory.x`). Makes the version of the application
//! (`DEMO_VERSION`, `DEMO_BAD`, `DEMO_BLOB`, `DEMO_FAULT`) and its slot a
//! build input.
//!
//! With the feature `signed`, reads the public key file `DEMO_PUBKEY`
//! names (a `genpat keygen` KEY.pub; relative to this crate's directory)
//! and hands the key to the application as `DEMO_PUBLIC_KEY` (64 hex
//! digits).

use std::path::PathBuf;

const PUBLIC_PREFIX: &str = "flashpatch-ed25519-public ";

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let slot = match std::env::var("DEMO_SLOT").as_deref() {
        Ok("A") | Err(_) => "slot-a",
        Ok("B") => "slot-b",
        Ok(other) => panic!("DEMO_SLOT={other}: the slot to link `app` for is A or B"),
    };
    let xip = root.join("link").join("xip");
    println!("cargo:rustc-link-arg-bin=app=-L{}", xip.display());
    println!(
        "cargo:rerun-if-changed={}",
        xip.join("version-tag.x").display()
    );
    for (bin, link) in [
        ("app", slot),
        ("boot", "boot"),
        ("applybench", "boot"),
        ("inplace", "app"),
        ("inplace-boot", "boot"),
    ] {
        let dir = root.join("link").join(link);
        println!("cargo:rustc-link-arg-bin={bin}=-L{}", dir.display());
        println!("cargo:rerun-if-changed={}", dir.join("memory.x").display());
    }
    for var in [
        "DEMO_VERSION",
        "DEMO_BAD",
        "DEMO_BLOB",
        "DEMO_FAULT",
        "DEMO_PUBKEY",
        "DEMO_SLOT",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let signed = std::env::var_os("CARGO_FEATURE_SIGNED").is_some();
    match (signed, std::env::var_os("DEMO_PUBKEY")) {
        (true, Some(path)) => {
            let path = root.join(path);
            println!("cargo:rerun-if-changed={}", path.display());
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("DEMO_PUBKEY: cannot read {}: {e}", path.display()));
            let hex = public_key_hex(&text).unwrap_or_else(|| {
                panic!(
                    "DEMO_PUBKEY: {} is not a public key file of `genpat keygen` \
                     (one line '{PUBLIC_PREFIX}<64 hex digits>')",
                    path.display()
                )
            });
            println!("cargo:rustc-env=DEMO_PUBLIC_KEY={hex}");
        }
        (true, None) => panic!(
            "the feature `signed` needs DEMO_PUBKEY: the public key file KEY.pub \
             that `genpat keygen KEY` wrote"
        ),
        (false, Some(_)) => {
            println!("cargo:warning=DEMO_PUBKEY is used only with `--features signed`")
        }
        (false, None) => {}
    }
}

/// The 64 hex digits of a public key file's one line.
fn public_key_hex(text: &str) -> Option<String> {
    let digits = text.trim().strip_prefix(PUBLIC_PREFIX)?.trim();
    (digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| digits.to_ascii_lowercase())
}

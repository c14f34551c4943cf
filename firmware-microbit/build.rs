//! Gives each binary its `memory.x`: the boot stage `link/boot/memory.x`
//! (at 0x0, where the core takes its reset vector); the application one
//! written here for the slot it is linked for (`MB_SLOT`: `A`, the
//! default, or `B`; each image runs only where it lies). Makes the
//! version of the application (`DEMO_VERSION`, `DEMO_BAD`, read by
//! firmware-demo) and `MB_SLOT` build inputs.

use std::path::PathBuf;

/// The slots' addresses and size (`src/lib.rs`).
const SLOTS: [(&str, u32); 2] = [("A", 0x6000), ("B", 0x1D000)];
const SLOT_SIZE: u32 = 0x17000;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let boot = root.join("link").join("boot");
    println!("cargo:rustc-link-arg-bin=boot=-L{}", boot.display());
    println!("cargo:rerun-if-changed={}", boot.join("memory.x").display());
    println!("cargo:rerun-if-env-changed=MB_SLOT");
    let slot = std::env::var("MB_SLOT").unwrap_or_else(|_| "A".into());
    let Some(&(_, origin)) = SLOTS.iter().find(|(name, _)| *name == slot) else {
        panic!("MB_SLOT is {slot:?}: A or B");
    };
    let app = out.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("memory.x"),
        format!(
            "/* The application, linked to run in place in slot {slot}. */\n\
             MEMORY\n{{\n  FLASH : ORIGIN = {origin:#x}, LENGTH = {SLOT_SIZE:#x}\n  \
             RAM   : ORIGIN = 0x20000000, LENGTH = 16K\n}}\n"
        ),
    )
    .unwrap();
    println!("cargo:rustc-link-arg-bin=app=-L{}", app.display());
    for var in ["DEMO_VERSION", "DEMO_BAD"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}

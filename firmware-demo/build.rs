//! Gives each binary its `memory.x` (`link/app/memory.x`,
//! `link/boot/memory.x`, which `applybench` shares: it too runs from 0x0;
//! none may lie in the crate root, where the linker would find it for all), and makes the version of the application
//! (`DEMO_VERSION`, `DEMO_BAD`, `DEMO_BLOB`, `DEMO_FAULT`) a build input.

fn main() {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    for (bin, link) in [("app", "app"), ("boot", "boot"), ("applybench", "boot")] {
        let dir = root.join("link").join(link);
        println!("cargo:rustc-link-arg-bin={bin}=-L{}", dir.display());
        println!("cargo:rerun-if-changed={}", dir.join("memory.x").display());
    }
    println!("cargo:rerun-if-env-changed=DEMO_VERSION");
    println!("cargo:rerun-if-env-changed=DEMO_BAD");
    println!("cargo:rerun-if-env-changed=DEMO_BLOB");
    println!("cargo:rerun-if-env-changed=DEMO_FAULT");
}

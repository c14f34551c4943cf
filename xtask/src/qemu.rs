//! Running `firmware-demo` on QEMU's mps2-an386: tools, builds, the flash
//! file, and a QEMU process whose UART the host reaches through a Unix
//! socket it listens on (QEMU connects as the client).

use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use flashpatch::mock::MockFlash;
use flashpatch::slots::{Config, Layout, Slot, Slots};

/// The firmware's flash layout (`firmware-demo/src/lib.rs`): the boot
/// stage refuses a flash file that does not match it.
pub const FLASH_SIZE: usize = 0x54000;
const LAYOUT: Layout = Layout::new(ERASE, 0, 0x20000, 0x20000, 0x40000, 0x2000);
/// The A/B flash's erase unit.
pub const ERASE: u32 = 4096;
/// Where the A/B flash is mapped (the firmware's `FLASH_BASE`): QEMU's
/// machine RAM on mps2-an386, which `flash.bin` backs.
pub const FLASH_BASE: u64 = 0x2100_0000;
/// Bytes of `flash.bin`: QEMU maps the whole file as the board's 16 MiB
/// machine RAM; the flash is its first [`FLASH_SIZE`] bytes.
pub const FLASH_FILE_SIZE: usize = 16 << 20;
/// Where the in-place demo's images run (the firmware's `APP_BASE`).
const APP_BASE: u64 = 0x0010_0000;
/// Bytes of an image slot.
pub const SLOT_SIZE: u64 = 0x20000;
/// The firmware's Config::max_boot_attempts.
const CONFIG: Config = Config {
    max_boot_attempts: 2,
    checkpoint_units: 0,
};

/// QEMU's exit codes from the firmware (`firmware_demo::semihost::exit`).
pub const EXIT_NO_IMAGE: i32 = 3;
/// QEMU's exit code when the firmware cut its own power where the host
/// asked (`firmware-demo`'s `flash::arm_cut`).
pub const EXIT_POWER_CUT: i32 = 6;
/// A panic.
pub const EXIT_PANIC: i32 = 101;
/// A HardFault.
pub const EXIT_HARD_FAULT: i32 = 102;

const TARGET: &str = "thumbv7em-none-eabihf";

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Adds the Rust target and makes sure `qemu-system-arm` is there:
/// installs it with apt-get when root, else says how in one line.
pub fn ensure_tools() -> Result<(), String> {
    crate::run("rustup", &["target", "add", TARGET], &[])?;
    ensure_packages(&[("qemu-system-arm", "qemu-system-arm")])
}

/// Makes sure each `(command, Debian package)` runs (`command --version`):
/// installs the missing packages with apt-get when root, else says how in
/// one line.
pub fn ensure_packages(tools: &[(&str, &str)]) -> Result<(), String> {
    let have = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(cmd, _)| !have(cmd))
        .map(|&(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let list = missing.join(" ");
    if !root {
        return Err(format!(
            "{list} missing: run `sudo apt-get install -y --no-install-recommends {list}`, then this command again"
        ));
    }
    crate::run("apt-get", &["update", "-qq"], &[])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    crate::run("apt-get", &args, &[("DEBIAN_FRONTEND", "noninteractive")])?;
    match tools.iter().find(|(cmd, _)| !have(cmd)) {
        None => Ok(()),
        Some((cmd, _)) => Err(format!("{cmd} still does not run after apt-get install")),
    }
}

/// A build of the application.
#[derive(Clone, Copy, Debug)]
pub struct Version {
    /// Its version text.
    pub name: &'static str,
    /// Whether its self-test fails.
    pub bad: bool,
    /// Whether it carries 16 KiB of version-specific data.
    pub blob: bool,
    /// A fault to commit at start (`DEMO_FAULT`: "panic" or "hardfault").
    pub fault: Option<&'static str>,
}

fn fw_dir() -> PathBuf {
    root().join("firmware-demo")
}

fn elf(bin: &str) -> PathBuf {
    release_elf(&fw_dir(), TARGET, bin)
}

/// The release ELF of `bin`, built for `target` in the firmware crate at
/// `dir` (its own target directory).
pub fn release_elf(dir: &Path, target: &str, bin: &str) -> PathBuf {
    dir.join("target").join(target).join("release").join(bin)
}

/// Builds the binaries `bins` of the firmware with `env` (and the
/// feature `signed` if `env` names a key in `DEMO_PUBKEY`; the feature
/// `defmt` and defmt's linker script if it sets `DEFMT_LOG`).
fn cargo_fw(env: &[(&str, &str)], bins: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut flags: Vec<String> = bins.iter().map(|b| format!("--bin={b}")).collect();
    if env.iter().any(|(k, _)| *k == "DEMO_PUBKEY") {
        flags.push("--features=signed".into());
    }
    if env.iter().any(|(k, _)| *k == "DEFMT_LOG") {
        flags.push("--features=defmt".into());
        flags.push("--config".into());
        flags.push(format!(
            "target.{TARGET}.rustflags=[\"-C\", \"link-arg=-Tdefmt.x\"]"
        ));
    }
    eprintln!(
        "xtask: $ (cd firmware-demo && {env:?} cargo build --release {})",
        flags.join(" ")
    );
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet"])
        .args(["--config", &remap_config()?])
        .args(&flags)
        .current_dir(fw_dir())
        .env_remove("DEMO_VERSION")
        .env_remove("DEMO_BAD")
        .env_remove("DEMO_BLOB")
        .env_remove("DEMO_FAULT")
        .env_remove("DEMO_PUBKEY")
        .env_remove("DEFMT_LOG")
        .envs(env.iter().copied());
    let st = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    st.success()
        .then_some(())
        .ok_or_else(|| "building firmware-demo failed".into())
}

/// A `--config` value that appends `--remap-path-prefix` flags to the
/// firmware's rustflags (those of `firmware-demo/.cargo/config.toml`, which
/// cargo merges with it): the checkout and `$CARGO_HOME` become fixed names
/// in the panic locations the firmware embeds, so that its images, and their
/// sizes, do not depend on where the checkout or the cargo home is.
fn remap_config() -> Result<String, String> {
    let root = root()
        .canonicalize()
        .map_err(|e| format!("checkout directory: {e}"))?;
    let home = match std::env::var_os("CARGO_HOME") {
        Some(h) => PathBuf::from(h),
        None => {
            PathBuf::from(std::env::var_os("HOME").ok_or("neither CARGO_HOME nor HOME is set")?)
                .join(".cargo")
        }
    };
    let home = home.canonicalize().unwrap_or(home);
    let mut flags = Vec::new();
    for (from, to) in [(&home, "/cargo"), (&root, "/flashpatch")] {
        let from = from.to_str().ok_or("a path that is not UTF-8")?;
        // A TOML basic string: `{:?}` escapes quotes and backslashes alike.
        flags.push(format!("{:?}", format!("--remap-path-prefix={from}={to}")));
    }
    Ok(format!("target.{TARGET}.rustflags=[{}]", flags.join(", ")))
}

/// One release of the application, built once per slot: each build's
/// ELF and image.
pub struct Release {
    /// Linked for slot A.
    pub a: (PathBuf, Vec<u8>),
    /// Linked for slot B.
    pub b: (PathBuf, Vec<u8>),
}

/// A slot's letter, as file names carry it (`v1@A.bin`).
pub fn slot_name(slot: Slot) -> &'static str {
    match slot {
        Slot::A => "A",
        Slot::B => "B",
    }
}

/// Where `slot`'s images lie and execute (the firmware's `slot_address`).
pub const fn slot_address(slot: Slot) -> u64 {
    FLASH_BASE
        + match slot {
            Slot::A => LAYOUT.slot_a,
            Slot::B => LAYOUT.slot_b,
        } as u64
}

/// Builds `v` once per slot (`DEMO_SLOT`), each ELF copied to
/// `out/NAME@S.elf` and its image (what the slot holds) written to
/// `out/NAME@S.bin`. The boot stage is built with it.
pub fn build(v: Version, out: &Path) -> Result<Release, String> {
    Ok(Release {
        a: build_for(v, Slot::A, None, out)?,
        b: build_for(v, Slot::B, None, out)?,
    })
}

/// Builds `v` with the feature `signed` and the public key file `key`
/// (`DEMO_PUBKEY`), as [`build`] does, into `out/NAME-signed@S.elf` and
/// `.bin`. The boot stage is left as it was.
pub fn build_signed(v: Version, key: &Path, out: &Path) -> Result<Release, String> {
    Ok(Release {
        a: build_for(v, Slot::A, Some(key), out)?,
        b: build_for(v, Slot::B, Some(key), out)?,
    })
}

/// Builds `v` for `slot` (signed with `key`'s if given) into
/// `out/TAG@S.elf` and `.bin`, and returns both.
pub fn build_for(
    v: Version,
    slot: Slot,
    key: Option<&Path>,
    out: &Path,
) -> Result<(PathBuf, Vec<u8>), String> {
    let key = key.map(|k| k.to_str().ok_or("key path")).transpose()?;
    let mut env = version_env(v);
    env.push(("DEMO_SLOT", slot_name(slot)));
    match key {
        Some(k) => {
            env.push(("DEMO_PUBKEY", k));
            cargo_fw(&env, &["app"])?;
        }
        None => cargo_fw(&env, &["app", "boot"])?,
    }
    let tag = format!(
        "{}{}@{}",
        version_tag(v),
        if key.is_some() { "-signed" } else { "" },
        slot_name(slot)
    );
    copy_image("app", out, &tag, slot_address(slot))
}

/// Builds `v` for slot A with flashpatch's defmt logs on (feature
/// `defmt`, `DEFMT_LOG=info`), as [`build_for`] does, into
/// `out/NAME-defmt@A.elf` and `.bin`. The boot stage is left as it was.
pub fn build_defmt(v: Version, out: &Path) -> Result<(PathBuf, Vec<u8>), String> {
    let mut env = version_env(v);
    env.push(("DEFMT_LOG", "info"));
    env.push(("DEMO_SLOT", slot_name(Slot::A)));
    cargo_fw(&env, &["app"])?;
    let tag = format!("{}-defmt@{}", version_tag(v), slot_name(Slot::A));
    copy_image("app", out, &tag, slot_address(Slot::A))
}

/// Builds `v` of the in-place application (`inplace`, with its boot
/// stage `inplace-boot`) and returns its ELF, copied to
/// `out/ip-NAME.elf`, and its image, written to `out/ip-NAME.bin`.
pub fn build_in_place(v: Version, out: &Path) -> Result<(PathBuf, Vec<u8>), String> {
    cargo_fw(&version_env(v), &["inplace", "inplace-boot"])?;
    copy_image("inplace", out, &format!("ip-{}", version_tag(v)), APP_BASE)
}

/// The build inputs that make `v`.
fn version_env(v: Version) -> Vec<(&'static str, &'static str)> {
    let mut env = vec![("DEMO_VERSION", v.name)];
    if v.bad {
        env.push(("DEMO_BAD", "1"));
    }
    if v.blob {
        env.push(("DEMO_BLOB", "1"));
    }
    if let Some(f) = v.fault {
        env.push(("DEMO_FAULT", f));
    }
    env
}

/// The file name of `v`'s build: `v2`, `v1-blob`, `v1-panic`.
fn version_tag(v: Version) -> String {
    format!(
        "{}{}{}",
        v.name,
        if v.blob { "-blob" } else { "" },
        v.fault.map_or(String::new(), |f| format!("-{f}"))
    )
}

/// Copies the ELF of `bin` to `out/TAG.elf` and writes its image from
/// `base` to `out/TAG.bin`; returns both.
fn copy_image(bin: &str, out: &Path, tag: &str, base: u64) -> Result<(PathBuf, Vec<u8>), String> {
    let elf_out = out.join(format!("{tag}.elf"));
    std::fs::copy(elf(bin), &elf_out).map_err(|e| e.to_string())?;
    let image = image_of(&std::fs::read(&elf_out).map_err(|e| e.to_string())?, base)?;
    std::fs::write(out.join(format!("{tag}.bin")), &image).map_err(|e| e.to_string())?;
    Ok((elf_out, image))
}

/// Builds the firmware binary `bin` as it is by default and returns its
/// ELF, copied to `out/BIN.elf`.
pub fn build_bin(bin: &str, out: &Path) -> Result<PathBuf, String> {
    cargo_fw(&[], &[bin])?;
    let p = out.join(format!("{bin}.elf"));
    std::fs::copy(elf(bin), &p).map_err(|e| e.to_string())?;
    Ok(p)
}

/// The boot stage's ELF (built with the last application build).
pub fn boot_elf(out: &Path) -> Result<PathBuf, String> {
    let p = out.join("boot.elf");
    std::fs::copy(elf("boot"), &p).map_err(|e| e.to_string())?;
    Ok(p)
}

/// The in-place boot stage's ELF (built with the last in-place
/// application build), copied to `out/inplace-boot.elf`.
pub fn in_place_boot_elf(out: &Path) -> Result<PathBuf, String> {
    let p = out.join("inplace-boot.elf");
    std::fs::copy(elf("inplace-boot"), &p).map_err(|e| e.to_string())?;
    Ok(p)
}

/// The bytes an ELF puts in [base, base + slot): the image, as
/// `genpat --base BASE --gap-fill 0xff` reads the ELF (the same reader,
/// `host_genpat::firmware`).
fn image_of(elf: &[u8], base: u64) -> Result<Vec<u8>, String> {
    let layout = host_genpat::firmware::Layout {
        base: Some(base),
        pad_to: None,
        gap_fill: 0xFF,
        raw: false,
    };
    let image =
        host_genpat::firmware::image_of(elf.to_vec(), &layout).map_err(|e| e.to_string())?;
    if image.bytes.len() as u64 > SLOT_SIZE {
        return Err(format!(
            "the image is {} bytes, more than a slot",
            image.bytes.len()
        ));
    }
    Ok(image.bytes)
}

/// genpat's options that make the image of an A/B demo ELF (as
/// [`image_of`] from its slot's address: each ELF's image starts at the
/// lowest address it loads to, its vector table at its slot's address).
pub const ELF_LAYOUT: [&str; 2] = ["--gap-fill", "0xff"];

/// Bytes of code a firmware ELF spends on updates, in two parts: the
/// update path (flashpatch and the crates it applies and checks with),
/// and the SMP server (`flashpatch-smp`, the crates it encodes and
/// frames with, and the application's SMP handling), by the demangled
/// names of its functions.
pub struct CodeSizes {
    pub update: u64,
    pub smp: u64,
}

pub fn code_sizes(elf: &Path) -> Result<CodeSizes, String> {
    use object::{Object as _, ObjectSymbol as _, SymbolKind};
    let data = std::fs::read(elf).map_err(|e| e.to_string())?;
    let f = object::File::parse(&*data).map_err(|e| e.to_string())?;
    let mut sizes = CodeSizes { update: 0, smp: 0 };
    for s in f.symbols().filter(|s| s.kind() == SymbolKind::Text) {
        let name = format!("{:#}", rustc_demangle::demangle(s.name().unwrap_or("")));
        let smp = [
            "flashpatch_smp::",
            "minicbor::",
            "base64::",
            "crc::",
            "app::smp_",
            "app::send_smp",
            "app::receive",
            "app::state_write",
            "app::erase",
            "app::SmpView",
        ];
        let update = [
            "flashpatch::",
            "sha2::",
            "md5::",
            "postcard::",
            "ed25519_compact::",
        ];
        if smp.iter().any(|k| name.contains(k)) {
            sizes.smp += s.size();
        } else if update.iter().any(|k| name.contains(k)) {
            sizes.update += s.size();
        }
    }
    Ok(sizes)
}

/// The addresses of the symbols `names` in a firmware ELF.
fn symbols<const N: usize>(elf: &Path, names: [&str; N]) -> Result<[u64; N], String> {
    use object::{Object as _, ObjectSymbol as _};
    let data = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let f = object::File::parse(&*data).map_err(|e| e.to_string())?;
    let mut out = [0; N];
    for (o, name) in out.iter_mut().zip(names) {
        *o = f
            .symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| s.address())
            .ok_or_else(|| format!("{}: no symbol {name}", elf.display()))?;
    }
    Ok(out)
}

/// Bytes of stack a firmware ELF has: from the top of its RAM
/// (`_stack_start`) down to the end of its statics (`_stack_end`, where
/// cortex-m-rt places the heap start, and this firmware has no heap).
pub fn stack_size(elf: &Path) -> Result<u64, String> {
    let [top, end] = symbols(elf, ["_stack_start", "_stack_end"])?;
    top.checked_sub(end)
        .ok_or_else(|| format!("{}: _stack_start below _stack_end", elf.display()))
}

/// Bytes of RAM a firmware ELF's statics take: from the start of its
/// `.data` (`__sdata`, the start of RAM) to their end (`_stack_end`).
pub fn statics_size(elf: &Path) -> Result<u64, String> {
    let [start, end] = symbols(elf, ["__sdata", "_stack_end"])?;
    end.checked_sub(start)
        .ok_or_else(|| format!("{}: _stack_end below __sdata", elf.display()))
}

/// Bytes of code and read-only data a firmware ELF puts in flash: its
/// allocated sections that are not written at run time.
pub fn flash_size(elf: &Path) -> Result<u64, String> {
    use object::{Object as _, ObjectSection as _, SectionFlags};
    let data = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let f = object::File::parse(&*data).map_err(|e| e.to_string())?;
    const ALLOC: u64 = 0x2;
    const WRITE: u64 = 0x1;
    Ok(f.sections()
        .filter(|s| match s.flags() {
            SectionFlags::Elf { sh_flags } => sh_flags & ALLOC != 0 && sh_flags & WRITE == 0,
            _ => false,
        })
        .map(|s| s.size())
        .sum())
}

/// A flash file with `image` (a build for slot A) in slot A, provisioned
/// as the running, confirmed image, and the rest erased: [`FLASH_SIZE`]
/// bytes of flash, then erased bytes to [`FLASH_FILE_SIZE`], the size of
/// the memory QEMU maps the file as.
pub fn provisioned_flash(image: &[u8]) -> Result<Vec<u8>, String> {
    let mut file = provisioned::<{ ERASE as usize }>(FLASH_SIZE, &LAYOUT, CONFIG, image)?;
    file.resize(FLASH_FILE_SIZE, 0xFF);
    Ok(file)
}

/// `size` bytes of a flash with `E`-byte erase units, erased, with
/// `image` in slot A of `layout`, provisioned by the slot manager as the
/// running, confirmed image (both boards' A/B demos).
pub fn provisioned<const E: usize>(
    size: usize,
    layout: &Layout,
    config: Config,
    image: &[u8],
) -> Result<Vec<u8>, String> {
    let mut f = MockFlash::<1, 4, E>::new(size);
    f.preload(layout.slot_a as usize, image);
    let flash = std::cell::RefCell::new(f);
    {
        let [a, b, s] = layout.partitions(&flash).ok_or("layout does not fit")?;
        let mut slots = Slots::new(a, b, s, config).map_err(|e| e.to_string())?;
        slots
            .provision(Slot::A, image.len() as u32)
            .map_err(|e| e.to_string())?;
    }
    Ok(flash.into_inner().as_bytes().to_vec())
}

/// The in-place demo's flash (`firmware_demo::in_place`): one slot, the
/// scratch area, the state area, staging.
pub const IN_PLACE_FLASH_SIZE: usize = 0x36000;
const IN_PLACE_SLOT: u32 = 0x20000;
const IN_PLACE_SCRATCH: (u32, u32) = (0x20000, 0x2000);
const IN_PLACE_STATE: (u32, u32) = (0x22000, 0x2000);
/// The erase unit its entries are made for.
pub const IN_PLACE_UNIT: u32 = 4096;

/// An in-place flash file with `image` in its slot, provisioned as the
/// confirmed image, and the rest erased.
pub fn provisioned_in_place_flash(image: &[u8]) -> Result<Vec<u8>, String> {
    use flashpatch::slots::InPlace;
    use flashpatch::Partition;
    let mut f = MockFlash::<1, 4, 4096>::new(IN_PLACE_FLASH_SIZE);
    f.preload(0, image);
    let flash = std::cell::RefCell::new(f);
    {
        let part = |at, len| Partition::new(&flash, at, len).ok_or("layout does not fit");
        let slot = std::cell::RefCell::new(part(0, IN_PLACE_SLOT)?);
        let scratch = std::cell::RefCell::new(part(IN_PLACE_SCRATCH.0, IN_PLACE_SCRATCH.1)?);
        let state = part(IN_PLACE_STATE.0, IN_PLACE_STATE.1)?;
        let mut dev = InPlace::new(&slot, &scratch, state, IN_PLACE_UNIT, CONFIG)
            .map_err(|e| e.to_string())?;
        dev.provision(image.len() as u32)
            .map_err(|e| e.to_string())?;
    }
    Ok(flash.into_inner().as_bytes().to_vec())
}

/// `qemu-system-arm` on mps2-an386 with semihosting, no display and no
/// monitor, started in `dir` (where the firmware's host files are) with
/// `kernel`.
pub fn command(dir: &Path, kernel: &Path) -> Command {
    let mut cmd = Command::new("qemu-system-arm");
    cmd.args(["-M", "mps2-an386", "-display", "none", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-kernel")
        .arg(kernel)
        .current_dir(dir);
    cmd
}

/// The arguments that make `flash.bin` (in QEMU's working directory) the
/// board's machine RAM, mapped at [`FLASH_BASE`] and shared with the
/// file: every store of the firmware to it is a store to the file, so the
/// A/B demo executes its images in place from the flash, which outlives
/// QEMU.
pub fn mapped_flash_args() -> [String; 4] {
    [
        "-object".into(),
        format!("memory-backend-file,id=flash,size={FLASH_FILE_SIZE},mem-path=flash.bin,share=on"),
        "-machine".into(),
        "memory-backend=flash".into(),
    ]
}

/// One QEMU run: its console lines arrive on a channel.
pub struct Qemu {
    child: Child,
    lines: Receiver<String>,
    /// Every console line so far.
    pub log: Vec<String>,
}

/// Options of a QEMU run.
pub struct RunOptions {
    /// Count instructions exactly (`-icount shift=0`).
    pub icount: bool,
    /// Print console lines as they come.
    pub echo: bool,
}

impl Qemu {
    /// Starts QEMU in `dir` (which holds `flash.bin`, read and written
    /// through semihosting: the in-place demo) with the boot stage `boot`,
    /// and accepts its UART connection on a socket in `dir`.
    pub fn start(dir: &Path, boot: &Path, opts: &RunOptions) -> Result<(Qemu, UnixStream), String> {
        Qemu::start_command(command(dir, boot), dir, opts)
    }

    /// Starts the A/B demo as [`Qemu::start`] does, with `flash.bin`
    /// mapped as its flash ([`mapped_flash_args`]).
    pub fn start_xip(
        dir: &Path,
        boot: &Path,
        opts: &RunOptions,
    ) -> Result<(Qemu, UnixStream), String> {
        let mut cmd = command(dir, boot);
        cmd.args(mapped_flash_args());
        Qemu::start_command(cmd, dir, opts)
    }

    /// Starts `cmd` (a QEMU command line without `-serial`, another board's
    /// too) in `dir`, and accepts its UART connection on a socket in `dir`.
    pub fn start_command(
        cmd: Command,
        dir: &Path,
        opts: &RunOptions,
    ) -> Result<(Qemu, UnixStream), String> {
        let sock = dir.join("uart.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
        let mut q = Qemu::spawn_command(cmd, &format!("unix:{}", sock.display()), opts)?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline || q.exited().is_some() {
                        q.kill();
                        return Err("QEMU did not connect its UART".into());
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        Ok((q, stream))
    }

    /// Starts the A/B demo in `dir` with the boot stage `boot`, its flash
    /// mapped ([`mapped_flash_args`]) and its UART on a pseudo-terminal;
    /// returns the terminal's path (`/dev/pts/N`), which real tools open as
    /// a serial port. The console is echoed if `opts.echo`.
    pub fn start_pty(dir: &Path, boot: &Path, opts: &RunOptions) -> Result<(Qemu, String), String> {
        let mut q = Qemu::spawn(dir, boot, "pty", opts, true)?;
        // "char device redirected to /dev/pts/3 (label serial0)"
        let line = q
            .wait_for("char device redirected to", Duration::from_secs(10))
            .ok_or("QEMU did not say where its UART is")?;
        let pts = line
            .split_whitespace()
            .find(|w| w.starts_with("/dev/"))
            .ok_or_else(|| format!("no terminal in {line:?}"))?
            .to_string();
        Ok((q, pts))
    }

    /// Starts QEMU in `dir` with `boot` and its UART on `serial` (QEMU's
    /// `-serial` argument), `flash.bin` mapped if `mapped`, and reads its
    /// console lines.
    fn spawn(
        dir: &Path,
        boot: &Path,
        serial: &str,
        opts: &RunOptions,
        mapped: bool,
    ) -> Result<Qemu, String> {
        let mut cmd = command(dir, boot);
        if mapped {
            cmd.args(mapped_flash_args());
        }
        Qemu::spawn_command(cmd, serial, opts)
    }

    fn spawn_command(mut cmd: Command, serial: &str, opts: &RunOptions) -> Result<Qemu, String> {
        cmd.args(["-serial", serial])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if opts.icount {
            cmd.args(["-icount", "shift=0"]);
        }
        let echo = opts.echo;
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-arm: {e}"))?;
        let (tx, lines) = channel();
        let out = child.stdout.take().ok_or("no stdout")?;
        let tx2 = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if echo {
                    println!("  | {line}");
                }
                let _ = tx.send(line);
            }
        });
        let err = child.stderr.take().ok_or("no stderr")?;
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("qemu: {line}"));
            }
        });
        Ok(Qemu {
            child,
            lines,
            log: Vec::new(),
        })
    }

    fn take(&mut self, line: String) -> String {
        self.log.push(line.clone());
        line
    }

    /// Waits up to `timeout` for a console line containing `pat`; returns it.
    pub fn wait_for(&mut self, pat: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let l = self.take(l);
                    if l.contains(pat) {
                        return Some(l);
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None
                }
            }
        }
    }

    /// The next console line (QEMU's own prefixed `qemu: `), if one comes
    /// within `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let l = self.lines.recv_timeout(timeout).ok()?;
        Some(self.take(l))
    }

    /// Takes the console lines that have arrived.
    pub fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.take(l);
        }
    }

    /// QEMU's exit code if it has ended.
    pub fn exited(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| s.code().unwrap_or(-1))
    }

    /// Waits up to `timeout` for QEMU to end by itself (the host-side
    /// watchdog: killed after that); its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.exited() {
                self.drain();
                return Some(c);
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        None
    }

    /// Kills QEMU at once: a power cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(20));
        self.drain();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

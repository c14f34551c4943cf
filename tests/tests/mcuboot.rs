//! flashpatch as MCUboot's delta layer (`flashpatch-mcuboot`), judged by
//! MCUboot's own `imgtool` (from PyPI, installed into a virtual
//! environment under `target/` on first use): it signs the images the
//! patch goes between, `imgtool verify` accepts the secondary slot
//! flashpatch wrote, and the trailer bytes flashpatch writes are the ones
//! `imgtool sign --pad` writes, for write alignments 1, 4, 8 and 32.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use flashpatch::mock::{Cut, MockFlash};
use flashpatch::{ApplierState, Found, Outcome, Status};
use flashpatch_mcuboot::blocking::{read_state, set_confirmed, SecondaryUpdate};
use flashpatch_mcuboot::{Error, Magic, Swap, Trailer};
use flashpatch_tests::firmware_pair;

/// imgtool's release on PyPI that these tests were written against.
const IMGTOOL: &str = "imgtool==2.5.0";
const SLOT: u32 = 64 * 1024;
const ERASE: usize = 4096;
const CHUNK: usize = 512;

#[path = "../../support/pypi.rs"]
mod pypi;

/// The `imgtool` executable in a virtual environment under `target/`,
/// made the first time.
fn imgtool() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        pypi::tool(&root, IMGTOOL, "imgtool").unwrap_or_else(|e| panic!("{e}"))
    })
}

/// Runs imgtool; its stdout, or a panic with what it said.
fn run_imgtool(args: &[&str]) -> String {
    let out = Command::new(imgtool()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "imgtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory of its own for each test.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/mcuboot-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `payload` as an MCUboot image: `imgtool sign` with a 512-byte header,
/// hash TLV, `--align`, and `extra` flags (`--pad --confirm`, say).
fn sign(
    dir: &Path,
    name: &str,
    payload: &[u8],
    version: &str,
    align: usize,
    extra: &[&str],
) -> Vec<u8> {
    let bin = dir.join(format!("{name}.bin"));
    let img = dir.join(format!("{name}.img"));
    std::fs::write(&bin, payload).unwrap();
    let (align, slot) = (align.to_string(), SLOT.to_string());
    let mut args = vec![
        "sign",
        "--header-size",
        "0x200",
        "--pad-header",
        "--version",
        version,
        "--align",
        &align,
        "--slot-size",
        &slot,
    ];
    args.extend_from_slice(extra);
    args.extend([bin.to_str().unwrap(), img.to_str().unwrap()]);
    run_imgtool(&args);
    std::fs::read(img).unwrap()
}

/// Applies `patch` from `primary` into `secondary` and asks for `swap`.
fn update<const W: usize>(
    primary: &mut MockFlash<1, W, ERASE>,
    secondary: &mut MockFlash<1, W, ERASE>,
    patch: &[u8],
    swap: Swap,
) -> Result<Outcome, Error> {
    let trailer = Trailer::for_flash::<MockFlash<1, W, ERASE>>(SLOT);
    let mut mem = ApplierState::new();
    let mut up = SecondaryUpdate::begin(primary, secondary, trailer, &mut mem)?;
    for piece in patch.chunks(CHUNK) {
        if let Status::Done(_) = up.feed(piece)? {
            break;
        }
    }
    up.finish(swap)
}

#[test]
fn mcuboot_imgtool_verify_accepts_the_secondary_slot() {
    let dir = scratch("verify");
    let (p1, p2) = firmware_pair(51, 30_000);
    let v1 = sign(&dir, "v1", &p1, "1.0.0", 4, &[]);
    let v2 = sign(&dir, "v2", &p2, "2.0.0", 4, &[]);
    let patch = host_genpat::diff(&v1, &v2, &Default::default()).unwrap();
    let mut primary = MockFlash::<1, 4, ERASE>::with_image(v1.clone(), SLOT as usize);
    let mut secondary = MockFlash::<1, 4, ERASE>::new(SLOT as usize);
    assert_eq!(
        update(&mut primary, &mut secondary, &patch, Swap::Test),
        Ok(Outcome::Applied)
    );
    let trailer = Trailer::for_flash::<MockFlash<1, 4, ERASE>>(SLOT);
    let st = read_state(&mut secondary, &trailer).unwrap();
    assert_eq!(
        (st.magic, st.swap, st.image_ok),
        (Magic::Good, Some(Swap::Test), false)
    );
    // The whole secondary slot, as a flash dump: imgtool verifies it.
    let dump = dir.join("secondary.bin");
    std::fs::write(&dump, secondary.as_bytes()).unwrap();
    let said = run_imgtool(&["verify", dump.to_str().unwrap()]);
    assert!(said.contains("Image was correctly validated"), "{said}");
    assert!(said.contains("Image version: 2.0.0"), "{said}");
    // imgtool's verdict means something: one payload byte changed fails.
    let mut bad = secondary.as_bytes().to_vec();
    bad[0x200 + 1000] ^= 0x10;
    std::fs::write(&dump, &bad).unwrap();
    let out = Command::new(imgtool())
        .args(["verify", dump.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            || !String::from_utf8_lossy(&out.stdout).contains("correctly validated")
    );
    // The running slot was only read.
    assert!(primary.as_bytes().starts_with(&v1));
}

/// What flashpatch writes into the secondary slot's trailer, against what
/// imgtool writes there (`--pad --confirm` for a permanent swap,
/// `--pad --test` for a test swap), for write size `W`.
fn trailer_matches_imgtool<const W: usize>() {
    let dir = scratch(&format!("trailer-{W}"));
    let (p1, p2) = firmware_pair(52 + W as u64, 12_000);
    let v1 = sign(&dir, "v1", &p1, "1.0.0", W, &[]);
    let v2 = sign(&dir, "v2", &p2, "2.0.0", W, &[]);
    let patch = host_genpat::diff(&v1, &v2, &Default::default()).unwrap();
    let t = Trailer::for_flash::<MockFlash<1, W, ERASE>>(SLOT);
    // MCUboot's documented offsets from the slot's end, for BOOT_MAX_ALIGN
    // 8 (write sizes up to 8) and 32.
    let a = t.max_align;
    assert_eq!(a, if W > 8 { W as u32 } else { 8 });
    let end = |off: u32| SLOT - off;
    assert_eq!(end(t.magic_off()), 16);
    assert_eq!(end(t.image_ok_off()), if a == 8 { 24 } else { 64 });
    assert_eq!(end(t.copy_done_off()), if a == 8 { 32 } else { 96 });
    assert_eq!(end(t.swap_info_off()), if a == 8 { 40 } else { 128 });
    for (swap, flag, info) in [
        (Swap::Permanent, "--confirm", 0x03),
        (Swap::Test, "--test", 0x02),
    ] {
        let mut primary = MockFlash::<1, W, ERASE>::with_image(v1.clone(), SLOT as usize);
        let mut secondary = MockFlash::<1, W, ERASE>::new(SLOT as usize);
        update(&mut primary, &mut secondary, &patch, swap).unwrap();
        let ours = secondary.as_bytes();
        let theirs = sign(&dir, "v2-padded", &p2, "2.0.0", W, &["--pad", flag]);
        assert_eq!(theirs.len(), SLOT as usize);
        // The image, and the trailer byte for byte, except the swap info,
        // which imgtool leaves to MCUboot and boot_set_pending writes.
        let si = t.swap_info_off() as usize;
        assert_eq!(&ours[..si], &theirs[..si], "W {W} {swap:?}");
        assert_eq!(&ours[si + 1..], &theirs[si + 1..], "W {W} {swap:?}");
        assert_eq!((ours[si], theirs[si]), (info, 0xFF), "W {W} {swap:?}");
        let st = read_state(&mut secondary, &t).unwrap();
        assert_eq!(
            (st.magic, st.swap, st.image_ok, st.copy_done),
            (Magic::Good, Some(swap), swap == Swap::Permanent, false)
        );
    }
}

#[test]
fn mcuboot_trailer_bytes_match_imgtool_align_1() {
    trailer_matches_imgtool::<1>();
}

#[test]
fn mcuboot_trailer_bytes_match_imgtool_align_4() {
    trailer_matches_imgtool::<4>();
}

#[test]
fn mcuboot_trailer_bytes_match_imgtool_align_8() {
    trailer_matches_imgtool::<8>();
}

#[test]
fn mcuboot_trailer_bytes_match_imgtool_align_32() {
    trailer_matches_imgtool::<32>();
}

/// After MCUboot's test swap the primary slot's trailer has the magic and
/// copy_done but not image_ok: another update is refused until the image
/// confirms itself, and the confirmation writes what `imgtool --confirm`
/// writes.
#[test]
fn mcuboot_confirm_and_refuse_while_on_test() {
    let dir = scratch("confirm");
    let (p1, p2) = firmware_pair(60, 10_000);
    let v2 = sign(&dir, "v2", &p2, "2.0.0", 4, &[]);
    let on_test = sign(&dir, "v1-test", &p1, "1.0.0", 4, &["--pad", "--test"]);
    let confirmed = sign(
        &dir,
        "v1-confirmed",
        &p1,
        "1.0.0",
        4,
        &["--pad", "--confirm"],
    );
    let t = Trailer::for_flash::<MockFlash<1, 4, ERASE>>(SLOT);
    let mut primary = MockFlash::<1, 4, ERASE>::with_image(on_test.clone(), SLOT as usize);
    // What MCUboot writes when the swap is done: copy_done.
    primary.multiwrite = true;
    use embedded_storage::nor_flash::NorFlash;
    primary
        .write(t.copy_done_off(), &[1, 0xFF, 0xFF, 0xFF])
        .unwrap();
    let mut secondary = MockFlash::<1, 4, ERASE>::new(SLOT as usize);
    let patch = host_genpat::diff(&on_test, &v2, &Default::default()).unwrap();
    let before = secondary.ops;
    assert_eq!(
        update(&mut primary, &mut secondary, &patch, Swap::Test),
        Err(Error::AwaitingConfirm)
    );
    assert_eq!(secondary.ops, before, "nothing written while on test");
    set_confirmed(&mut primary, &t).unwrap();
    let st = read_state(&mut primary, &t).unwrap();
    assert!(st.image_ok && st.copy_done);
    let io = t.image_ok_off() as usize;
    let unit = t.max_align as usize;
    assert_eq!(primary.as_bytes()[io..io + unit], confirmed[io..io + unit]);
    // Confirming again writes nothing; now the update goes ahead.
    let ops = primary.ops;
    set_confirmed(&mut primary, &t).unwrap();
    assert_eq!(primary.ops, ops);
    let patch = host_genpat::diff(
        &primary.as_bytes()[..on_test.len()],
        &v2,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(
        update(&mut primary, &mut secondary, &patch, Swap::Test),
        Ok(Outcome::Applied)
    );
}

/// A cut at every flash operation of an update (the trailer's erase, the
/// apply, the trailer's writes), each kind: MCUboot's magic is in the
/// secondary slot's trailer only beside the whole new image, and the
/// update, tried again, ends with it.
#[test]
fn mcuboot_power_cuts_never_leave_a_pending_partial_image() {
    let dir = scratch("cuts");
    let (p1, p2) = firmware_pair(61, 20_000);
    let v1 = sign(&dir, "v1", &p1, "1.0.0", 4, &[]);
    let v2 = sign(&dir, "v2", &p2, "2.0.0", 4, &[]);
    let patch = host_genpat::diff(&v1, &v2, &Default::default()).unwrap();
    let t = Trailer::for_flash::<MockFlash<1, 4, ERASE>>(SLOT);
    let primary0 = MockFlash::<1, 4, ERASE>::with_image(v1.clone(), SLOT as usize);
    // Start from a secondary that holds an earlier, pending image.
    let mut secondary0 = MockFlash::<1, 4, ERASE>::new(SLOT as usize);
    let mut p = primary0.clone();
    update(
        &mut p,
        &mut secondary0,
        &host_genpat::diff(&v1, &v1[..v1.len() - 100], &Default::default()).unwrap(),
        Swap::Test,
    )
    .ok();
    let ops = {
        let (mut p, mut s) = (primary0.clone(), secondary0.clone());
        let before = s.ops;
        update(&mut p, &mut s, &patch, Swap::Test).unwrap();
        s.ops - before
    };
    let mut runs = 0;
    for i in 0..ops {
        for kind in Cut::ALL {
            let (mut p, mut s) = (primary0.clone(), secondary0.clone());
            s.cut_at(i, kind, i * 3 + 1);
            // (A kind of cut that waits for a write may find none left.)
            let _ = update(&mut p, &mut s, &patch, Swap::Test);
            s.reboot();
            let st = read_state(&mut s, &t).unwrap();
            if st.magic == Magic::Good {
                assert!(
                    s.as_bytes().starts_with(&v2),
                    "cut {kind:?} at {i}: magic beside a partial image"
                );
            }
            assert_eq!(
                update(&mut p, &mut s, &patch, Swap::Test).map(|_| ()),
                Ok(()),
                "cut {kind:?} at {i}"
            );
            assert!(s.as_bytes().starts_with(&v2));
            assert_eq!(read_state(&mut s, &t).unwrap().magic, Magic::Good);
            runs += 1;
        }
    }
    println!("mcuboot power-cut sweep: {ops} flash operations, {runs} runs, 0 failures");
    // And an update whose image the primary slot runs asks for nothing.
    let (mut p, mut s) = (
        primary0.clone(),
        MockFlash::<1, 4, ERASE>::new(SLOT as usize),
    );
    let same = host_genpat::diff(&v1, &v1, &Default::default()).unwrap();
    assert_eq!(
        update(&mut p, &mut s, &same, Swap::Test),
        Ok(Outcome::AlreadyInstalled(Found::Source))
    );
    assert_eq!(read_state(&mut s, &t).unwrap().magic, Magic::Unset);
}

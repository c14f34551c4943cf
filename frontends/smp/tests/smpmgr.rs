//! `smpmgr` from PyPI (installed into a virtual environment under
//! `target/` the first time) talks to the SMP server over a
//! pseudo-terminal, as it would to a device's UART: `os echo`, `image
//! state-read` and `os reset` answer as a Zephyr device's would, and
//! `smpmgr upgrade --format any PATCH` updates a device with flashpatch's
//! slot manager from v1 to v2 (a corrupt patch is refused and v1 runs on;
//! a patch file with the full image works too), `image erase` empties the slot that does not run, and an upload whose
//! link is lost goes on where the device is, in the same boot and after a
//! reset. Over UDP (`smpmgr --ip`) the server reads the datagrams as one
//! byte stream.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;

use flashpatch_smp::serial::{self, Decoder, Event};
use flashpatch_smp::{Action, Answer, Device, ImageSlot, Request, Server, BUF_SIZE};

/// The client the test trusts, pinned.
const SMPMGR: &str = "smpmgr==0.19.1";

#[path = "../../../support/pypi.rs"]
mod pypi;

fn smpmgr() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        pypi::tool(&root, SMPMGR, "smpmgr").unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A device running v1 from slot 0, with v2 on trial in slot 1.
struct Bench;

impl Device for Bench {
    fn slots(&mut self) -> [Option<ImageSlot<'_>>; 2] {
        [
            Some(ImageSlot {
                slot: 0,
                version: "1.0.0",
                hash: [0x11; 32],
                bootable: true,
                pending: false,
                confirmed: true,
                active: true,
                permanent: false,
            }),
            Some(ImageSlot {
                slot: 1,
                version: "2.0.0",
                hash: [0x22; 32],
                bootable: true,
                pending: true,
                confirmed: false,
                active: false,
                permanent: false,
            }),
        ]
    }
}

/// A pseudo-terminal in raw mode: the master side and the slave's path.
fn pty() -> (File, String) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors; the name, termios and size
    // arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: `slave` is an open terminal; the termios is filled by
    // tcgetattr before it is changed.
    let name = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave, &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(slave, libc::TCSANOW, &t), 0);
        std::ffi::CStr::from_ptr(libc::ttyname(slave))
            .to_string_lossy()
            .into_owned()
    };
    // The slave stays open (and leaks) so that the master does not read
    // EIO between clients.
    std::mem::forget(unsafe { OwnedFd::from_raw_fd(slave) });
    // SAFETY: `master` is an open descriptor that nothing else owns.
    (unsafe { File::from_raw_fd(master) }, name)
}

/// Serves SMP on `master` for ever; counts the resets asked for.
fn serve(mut master: File, resets: Arc<AtomicUsize>) {
    thread::spawn(move || {
        let mut dec = Decoder::<{ BUF_SIZE + 4 }>::new();
        let mut server = Server::new();
        let mut buf = [0u8; 256];
        let mut out = [0u8; BUF_SIZE];
        while let Ok(n) = master.read(&mut buf) {
            for &b in &buf[..n] {
                if dec.feed(b) != Event::Frame {
                    continue;
                }
                let Answer::Sent { len, action } = server.answer(dec.frame(), &mut out, &mut Bench)
                else {
                    panic!("the bench device takes no uploads");
                };
                let mut lines = Vec::new();
                serial::encode(&out[..len], serial::LINE, &mut |l| {
                    lines.extend_from_slice(l)
                });
                master.write_all(&lines).unwrap();
                if action == Action::Reset {
                    resets.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
}

fn smp(port: &str, args: &[&str]) -> Output {
    let out = Command::new(smpmgr())
        .args(["--port", port, "--timeout", "5"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "smpmgr {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn smpmgr_echoes_reads_image_states_and_resets() {
    let (master, port) = pty();
    let resets = Arc::new(AtomicUsize::new(0));
    serve(master, resets.clone());

    let out = smp(&port, &["os", "echo", "hello flashpatch"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hello flashpatch"), "{text}");

    let out = smp(&port, &["image", "state-read"]);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("smpmgr image state-read:\n{text}");
    for want in ["1.0.0", "2.0.0", &"11".repeat(32), &"22".repeat(32)] {
        assert!(text.contains(want), "{want} in {text}");
    }

    smp(&port, &["os", "reset"]);
    assert_eq!(resets.load(Ordering::Relaxed), 1);
}

/// `smpmgr --ip` sends SMP messages as UDP datagrams; the server reads
/// them as one byte stream (`flashpatch_smp::stream`, which knows nothing
/// of datagrams) and answers each message it completes.
#[test]
fn smpmgr_over_udp_is_read_as_a_byte_stream() {
    use flashpatch_smp::stream;
    // smpclient's UDP transport talks to port 1337.
    let socket = std::net::UdpSocket::bind("127.0.0.1:1337").expect("UDP port 1337 is free");
    let resets = Arc::new(AtomicUsize::new(0));
    let count = resets.clone();
    thread::spawn(move || {
        let mut dec = stream::Decoder::<BUF_SIZE>::new();
        let mut server = Server::new();
        let mut buf = [0u8; 2048];
        let mut out = [0u8; BUF_SIZE];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            for &b in &buf[..n] {
                if dec.feed(b) != stream::Event::Frame {
                    continue;
                }
                let Answer::Sent { len, action } = server.answer(dec.frame(), &mut out, &mut Bench)
                else {
                    panic!("the bench device takes no uploads");
                };
                socket.send_to(&out[..len], peer).unwrap();
                if action == Action::Reset {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    let udp = |args: &[&str]| {
        let out = Command::new(smpmgr())
            .args(["--ip", "127.0.0.1", "--timeout", "5"])
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "smpmgr --ip {args:?}: {text}");
        text
    };
    let text = udp(&["os", "echo", "over a byte stream"]);
    assert!(text.contains("over a byte stream"), "{text}");
    let text = udp(&["image", "state-read"]);
    for want in ["1.0.0", "2.0.0", &"22".repeat(32)] {
        assert!(text.contains(want), "{want} in {text}");
    }
    udp(&["os", "reset"]);
    assert_eq!(resets.load(Ordering::Relaxed), 1);
}

mod device {
    //! A device with two slots and flashpatch's slot manager over the mock
    //! flash, served over SMP: uploads are fed into an update of the
    //! inactive slot as they arrive and activated when complete.

    use super::*;
    use flashpatch::mock::MockFlash;
    use flashpatch::slots::{Config, Layout, Slot, Slots};
    use flashpatch::{ApplierState, Partition};
    use flashpatch_smp::upload::{Fed, Receiver};
    use sha2::{Digest, Sha256};
    use std::cell::RefCell;

    pub type Flash = MockFlash<1, 4, 4096>;
    type Part = Partition<'static, Flash>;
    const SLOT: u32 = 128 * 1024;
    const LAYOUT: Layout = Layout::new(4096, 0, SLOT, SLOT, 2 * SLOT, 2 * 4096);

    fn slots(flash: &'static RefCell<Flash>) -> Slots<Part, Part, 1> {
        let [a, b, s] = LAYOUT.partitions(flash).unwrap();
        Slots::new(a, b, s, Config::default()).unwrap()
    }

    /// The device: its flash, the slot it runs from and its images'
    /// names; the upload in progress, and how it is served.
    pub struct Dev {
        pub flash: &'static RefCell<Flash>,
        pub running: Slot,
        names: Vec<([u8; 32], String)>,
        uploading: Option<Receiver<'static, Part, Part>>,
        /// Upload requests answered before the link is lost (`None`: it
        /// is not).
        pub link_lost_after: Option<usize>,
        /// Bytes of upload data taken at the device's offset.
        pub fed: usize,
    }

    impl Dev {
        /// A device running `v1` from slot A that knows `v2`'s name.
        pub fn new(v1: &[u8], v2: &[u8]) -> Dev {
            let mut f = Flash::new((2 * SLOT + 2 * 4096) as usize);
            f.preload(0, v1);
            let flash: &'static RefCell<Flash> = Box::leak(Box::new(RefCell::new(f)));
            slots(flash).provision(Slot::A, v1.len() as u32).unwrap();
            Dev {
                flash,
                running: Slot::A,
                names: vec![
                    (Sha256::digest(v1).into(), "1.0.0".into()),
                    (Sha256::digest(v2).into(), "2.0.0".into()),
                ],
                uploading: None,
                link_lost_after: None,
                fed: 0,
            }
        }

        /// A restart: the boot stage selects the slot to run.
        pub fn restart(&mut self) {
            self.uploading = None;
            self.running = slots(self.flash).select().unwrap().slot;
        }

        /// The image the device runs.
        pub fn image(&self) -> Vec<u8> {
            let rec = slots(self.flash).state().unwrap();
            let (at, i) = match self.running {
                Slot::A => (LAYOUT.slot_a, 0),
                Slot::B => (LAYOUT.slot_b, 1),
            };
            let n = rec.images[i].size as usize;
            self.flash.borrow().as_bytes()[at as usize..at as usize + n].to_vec()
        }
    }

    /// What an image state read shows, from the boot record.
    struct View<'d>(&'d Dev, [String; 2]);

    impl Device for View<'_> {
        fn slots(&mut self) -> [Option<ImageSlot<'_>>; 2] {
            let rec = slots(self.0.flash).state().unwrap();
            let name = |sha: &[u8; 32]| {
                self.0
                    .names
                    .iter()
                    .find(|(s, _)| s == sha)
                    .map_or("unknown".to_string(), |(_, n)| n.clone())
            };
            for i in 0..2 {
                self.1[i] = name(&rec.images[i].sha256);
            }
            flashpatch_smp::image_slots(&rec, self.0.running, [&self.1[0], &self.1[1]])
        }
    }

    /// Serves SMP on `master` while `client` runs in a thread of its own;
    /// returns what it printed.
    pub fn serve_while(
        dev: &mut Dev,
        master: &mut File,
        client: impl FnOnce() -> Output + Send + 'static,
    ) -> Output {
        use std::os::fd::AsRawFd as _;
        let client = thread::spawn(client);
        let mut dec = Decoder::<{ BUF_SIZE + 4 }>::new();
        let mut server = Server::new();
        let mut buf = [0u8; 256];
        let mut out = [0u8; BUF_SIZE];
        while !client.is_finished() {
            let mut fd = libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut fd, 1, 50) } <= 0 {
                continue;
            }
            let Ok(n) = master.read(&mut buf) else {
                continue;
            };
            for &b in &buf[..n] {
                if dec.feed(b) != Event::Frame {
                    continue;
                }
                let mut view = View(dev, Default::default());
                let (len, action) = match server.answer(dec.frame(), &mut out, &mut view) {
                    Answer::Sent { len, action } => (len, action),
                    Answer::Ask {
                        request: Request::Upload(u),
                        pending,
                    } => {
                        if dev.link_lost_after == Some(0) {
                            continue;
                        }
                        dev.link_lost_after = dev.link_lost_after.map(|n| n - 1);
                        let r = upload(dev, u);
                        (server.uploaded(pending, r, &mut out), Action::None)
                    }
                    Answer::Ask {
                        request: Request::StateWrite { hash, confirm },
                        pending,
                    } => {
                        let r = state_write(dev, hash, confirm);
                        let mut view = View(dev, Default::default());
                        (
                            server.state_written(pending, r, &mut out, &mut view),
                            Action::None,
                        )
                    }
                    Answer::Ask {
                        request: Request::Erase { slot },
                        pending,
                    } => {
                        let r = erase(dev, slot);
                        (server.erased(pending, r, &mut out), Action::None)
                    }
                };
                let mut lines = Vec::new();
                serial::encode(&out[..len], serial::LINE, &mut |l| {
                    lines.extend_from_slice(l)
                });
                master.write_all(&lines).unwrap();
                if action == Action::Reset {
                    dev.restart();
                }
            }
        }
        client.join().unwrap()
    }

    /// An erase: only the slot that does not run, and not while on trial.
    fn erase(dev: &Dev, slot: u32) -> Result<(), u32> {
        let inactive = match dev.running {
            Slot::A => 1,
            Slot::B => 0,
        };
        if slot != inactive {
            return Err(flashpatch_smp::EBADSTATE);
        }
        slots(dev.flash)
            .erase_inactive(0)
            .map_err(|_| flashpatch_smp::EBADSTATE)
    }

    /// A state write: `--confirm` confirms the running image (a hash, if
    /// given, must be its own); a hash alone must be the image that boots
    /// next (an upload activates its image on trial already).
    fn state_write(dev: &Dev, hash: Option<&[u8]>, confirm: bool) -> Result<(), u32> {
        let mut s = slots(dev.flash);
        let rec = s.state().ok_or(flashpatch_smp::EBADSTATE)?;
        let sha = |slot| rec.images[if slot == Slot::A { 0 } else { 1 }].sha256;
        let is = |slot| hash.is_none_or(|h| h == sha(slot));
        match confirm {
            true if is(dev.running) && rec.active == dev.running => {
                s.confirm().map_err(|_| flashpatch_smp::EBADSTATE)
            }
            false if hash.is_some() && is(rec.active) => Ok(()),
            _ => Err(flashpatch_smp::EBADSTATE),
        }
    }

    /// Feeds one upload request; the offset the device has the upload up
    /// to, or an error code (the upload is dropped).
    fn upload(dev: &mut Dev, u: flashpatch_smp::Upload<'_>) -> Result<u32, u32> {
        let again = u.off == 0 && dev.uploading.as_ref().is_some_and(|r| r.same(&u));
        if u.off == 0 && !again {
            dev.uploading = None;
            // Leaked per upload, as a device keeps them in statics.
            let slots: &'static mut _ = Box::leak(Box::new(slots(dev.flash)));
            let state: &'static mut _ = Box::leak(Box::new(ApplierState::new()));
            let mut r = Receiver::begin(slots, state, &u)?;
            let fed = r.feed(&u)?;
            dev.uploading = Some(r);
            // Its data is taken unless it continues from a checkpoint.
            if fed == Fed::More(u.data.len() as u32) || fed == Fed::Complete {
                dev.fed += u.data.len();
            }
            return done(dev, fed);
        }
        let Some(r) = dev.uploading.as_mut() else {
            return Err(flashpatch_smp::EBADSTATE);
        };
        if again {
            return Ok(r.offset());
        }
        if u.off == r.offset() {
            dev.fed += u.data.len();
        }
        let fed = r.feed(&u);
        match fed {
            Ok(f) => done(dev, f),
            Err(e) => {
                dev.uploading = None;
                Err(e)
            }
        }
    }

    /// What a fed request is answered with; a complete upload is finished
    /// and activated.
    fn done(dev: &mut Dev, fed: Fed) -> Result<u32, u32> {
        match fed {
            Fed::More(next) => Ok(next),
            Fed::Complete => {
                let r = dev.uploading.take().ok_or(flashpatch_smp::EBADSTATE)?;
                let len = r.len();
                let installed = r.finish()?;
                slots(dev.flash)
                    .activate(&installed)
                    .map_err(|_| flashpatch_smp::EBADSTATE)?;
                Ok(len)
            }
        }
    }
}

#[test]
fn smpmgr_upgrade_installs_a_flashpatch_patch() {
    use flashpatch::mock::Rng;
    let mut rng = Rng(5);
    let v1 = rng.bytes(48 * 1024);
    let mut v2 = v1.clone();
    v2[10_000..13_000].copy_from_slice(&rng.bytes(3000));
    let patch = host_genpat::diff(&v1, &v2, &Default::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("flashpatch-smp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("v1-v2.fpat");
    std::fs::write(&good, &patch).unwrap();
    let mut bad = patch.clone();
    let at = bad.len() - 100;
    bad[at] ^= 0x40;
    let bad_path = dir.join("bad.fpat");
    std::fs::write(&bad_path, &bad).unwrap();

    let (mut master, port) = pty();
    let mut dev = device::Dev::new(&v1, &v2);
    let tool = smpmgr().to_path_buf();
    let run = move |args: Vec<String>| {
        move || {
            Command::new(&tool)
                .args(["--port", &port, "--timeout", "5"])
                .args(args)
                .output()
                .unwrap()
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let show = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // A corrupt patch: the upload is refused, v1 runs on.
    let bad = bad_path.to_str().unwrap();
    let out = device::serve_while(
        &mut dev,
        &mut master,
        run.clone()(args(&["upgrade", "--format", "any", bad])),
    );
    assert!(
        !out.status.success(),
        "a corrupt patch was accepted: {}",
        show(&out)
    );
    assert!(dev.image() == v1);

    let good = good.to_str().unwrap();
    let out = device::serve_while(
        &mut dev,
        &mut master,
        run.clone()(args(&["upgrade", "--format", "any", good])),
    );
    assert!(out.status.success(), "{}", show(&out));
    println!("smpmgr upgrade --format any:\n{}", show(&out));
    assert!(dev.image() == v2, "the device does not run v2");
    let state_read = |dev: &mut device::Dev, master: &mut File, when: &str| {
        let out = device::serve_while(dev, master, run.clone()(args(&["image", "state-read"])));
        let text = show(&out);
        assert!(out.status.success(), "{text}");
        println!("smpmgr image state-read {when}:\n{text}");
        text
    };
    let text = state_read(&mut dev, &mut master, "after the upgrade");
    assert!(text.contains("2.0.0"), "{text}");
    // The running image on trial; confirmed by the client.
    let confirm = args(&["image", "state-write", "--confirm"]);
    let out = device::serve_while(&mut dev, &mut master, run.clone()(confirm));
    let text = show(&out);
    assert!(out.status.success(), "{text}");
    let text = state_read(&mut dev, &mut master, "after state-write --confirm");
    assert!(text.contains("confirmed=True"), "{text}");
    // The running slot is not erased; the other one is, and is gone
    // from the image states.
    let out = device::serve_while(
        &mut dev,
        &mut master,
        run.clone()(args(&["image", "erase", "1"])),
    );
    // smpmgr exits 0 and prints the error answer.
    let text = show(&out);
    assert!(
        text.contains("ErrorV1") && text.contains("rc=<MGMT_ERR.EBADSTATE: 6>"),
        "the running slot was erased: {text}"
    );
    let out = device::serve_while(
        &mut dev,
        &mut master,
        run.clone()(args(&["image", "erase", "0"])),
    );
    assert!(
        out.status.success() && !show(&out).contains("Error"),
        "{}",
        show(&out)
    );
    let text = state_read(&mut dev, &mut master, "after image erase 0");
    assert!(text.contains("2.0.0") && !text.contains("1.0.0"), "{text}");
    // After another restart it still runs v2.
    dev.restart();
    assert!(dev.image() == v2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// After a successful `smpmgr upgrade` (`out`), the device restarts into
/// `image`.
fn restarts_into(dev: &mut device::Dev, out: &Output, image: &[u8]) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dev.restart();
    assert!(
        dev.image() == image,
        "the device does not run the new image"
    );
}

/// A v1 and a v2 whose patch is spread over the whole image: ten changed
/// stretches of 500 bytes.
fn spread_pair(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = flashpatch::mock::Rng(seed);
    let v1 = rng.bytes(64 * 1024);
    let mut v2 = v1.clone();
    for k in 0..10 {
        let at = 3000 + k * 6000;
        v2[at..at + 500].copy_from_slice(&rng.bytes(500));
    }
    (v1, v2)
}

#[test]
fn smpmgr_upload_resumes_from_the_offset_the_device_reports() {
    let (v1, v2) = spread_pair(11);
    let patch = host_genpat::diff(&v1, &v2, &Default::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("flashpatch-smp-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v1-v2.fpat");
    std::fs::write(&path, &patch).unwrap();
    let path = path.to_str().unwrap().to_string();
    let (mut master, port) = pty();
    let tool = smpmgr().to_path_buf();
    let upgrade = move |timeout: &str| {
        let (tool, port, path, timeout) = (
            tool.clone(),
            port.clone(),
            path.clone(),
            timeout.to_string(),
        );
        move || {
            Command::new(&tool)
                .args(["--port", &port, "--timeout", &timeout])
                .args(["upgrade", "--format", "any", &path])
                .output()
                .unwrap()
        }
    };
    // The link is lost in the middle of the upload, then the client
    // starts over: within one boot, and after a reset (the device goes on
    // from its newest checkpoint).
    for reset in [false, true] {
        let mut dev = device::Dev::new(&v1, &v2);
        dev.link_lost_after = Some(8);
        let out = device::serve_while(&mut dev, &mut master, upgrade("1"));
        assert!(!out.status.success(), "the upload could not have ended");
        let first = dev.fed;
        assert!(first > 0 && first < patch.len());
        if reset {
            dev.restart();
        }
        dev.link_lost_after = None;
        dev.fed = 0;
        let out = device::serve_while(&mut dev, &mut master, upgrade("5"));
        restarts_into(&mut dev, &out, &v2);
        println!(
            "smp upload resumed {}: {} of {} bytes sent before the link was lost, {} after",
            if reset {
                "after a reset"
            } else {
                "in the same boot"
            },
            first,
            patch.len(),
            dev.fed
        );
        // Only what the device did not have is sent again: all of it in
        // the same boot, and after a reset what follows its checkpoint.
        assert!(dev.fed < patch.len(), "the upload started over");
        if !reset {
            assert_eq!(first + dev.fed, patch.len());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A patch file whose entry is the full image (no source, as `genpat
/// manifest` makes it) installs the same way.
#[test]
fn smpmgr_upgrade_installs_a_full_image_too() {
    let (v1, v2) = spread_pair(12);
    let full = host_genpat::diff(&[], &v2, &Default::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("flashpatch-smp-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v2-full.fpat");
    std::fs::write(&path, &full).unwrap();
    let (mut master, port) = pty();
    let mut dev = device::Dev::new(&v1, &v2);
    let (tool, path) = (smpmgr().to_path_buf(), path.to_str().unwrap().to_string());
    let out = device::serve_while(&mut dev, &mut master, move || {
        Command::new(&tool)
            .args(["--port", &port, "--timeout", "5"])
            .args(["upgrade", "--format", "any", &path])
            .output()
            .unwrap()
    });
    restarts_into(&mut dev, &out, &v2);
    println!(
        "smpmgr upgrade --format any with a full image ({} bytes for a {}-byte image): v2 runs",
        full.len(),
        v2.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

//! A simulated device for `genpat send` tests: the real `flashpatch` slot
//! manager, staging and applier over a `MockFlash`, speaking the update
//! protocol on one connection at a time. Only the flash survives a
//! "power cut" (the connection dropped in the middle) or a restart. It has
//! two components: the application (component 0, the one `Hello`
//! describes) and a data partition (component 1, empty unless
//! [`Sim::with_data`]). It can lie ([`Lie`]): answer but make no
//! progress, as a broken device or one in a brown-out loop does.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use flashpatch::mock::{Cut, MockFlash};
use flashpatch::proto::device::install;
use flashpatch::proto::frame::{self, FrameDecoder, MAX_FRAME};
use flashpatch::proto::{
    self, Action, Announce, DeviceMsg, HostMsg, Resume, Staging, PROTO_VERSION,
};
use flashpatch::slots::{Config, Layout, Slot, Slots};
use flashpatch::{ApplierState, Partition};
use sha2::{Digest, Sha256};

pub type Flash = MockFlash<1, 4, 4096>;
const SLOT: u32 = 128 * 1024;
const LAYOUT: Layout = Layout::new(4096, 0, SLOT, SLOT, 2 * SLOT, 2 * 4096);
const STAGE_AT: u32 = 2 * SLOT + 2 * 4096;
const STAGE: u32 = 96 * 1024;
/// The data component's slots, after the staging partition.
const DATA_AT: u32 = STAGE_AT + STAGE;
const DATA_SLOT: u32 = 32 * 1024;

type Part<'a> = Partition<'a, Flash>;

/// The slot manager over both components.
fn slots(flash: &RefCell<Flash>) -> Slots<Part<'_>, Part<'_>, 2> {
    let [a, b, s] = LAYOUT.partitions(flash).unwrap();
    let d = |i: u32| Partition::new(flash, DATA_AT + i * DATA_SLOT, DATA_SLOT).unwrap();
    Slots::new_group([[a, b], [d(0), d(1)]], s, Config::default()).unwrap()
}

/// How a device answers without making progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// The send tests tell every lie; the other test binaries none.
#[allow(dead_code)]
pub enum Lie {
    /// Drops every chunk.
    DropChunks,
    /// Answers every chunk with `Ack` at offset 0.
    StaleAck,
    /// Answers every chunk with an `Ack` 4 KiB past its end.
    AheadAck,
    /// Answers `Begin` and every chunk with `Ack` at 0xFFFFFFF0.
    AbsurdAck,
    /// Grants a window of 0 bytes, and drops the chunks it did not ask for.
    NoWindow,
    /// Stores the whole patch, then sends nothing.
    NoResult,
    /// Stores the whole patch, then sends a result with code 9.
    UnknownCode,
    /// Stores the whole patch, then sends a result whose text is not UTF-8.
    BadText,
}

/// The device: its flash and the names of the images it may run.
pub struct Sim {
    pub flash: RefCell<Flash>,
    versions: Vec<([u8; 32], String)>,
    /// Drop the connection (a power cut) after this many chunks.
    pub cut_after_chunks: Option<usize>,
    /// Line noise: flip a bit in every this-many-th byte received, and
    /// send a burst of garbage (between zero bytes) before every fourth
    /// message.
    pub noise_every: Option<usize>,
    /// Lose the first result message (as line noise would).
    pub lose_first_result: bool,
    /// Answer, but make no progress.
    pub lie: Option<Lie>,
    /// Lose power at the first flash write of this many applies (usize::MAX:
    /// of every one, a brown-out loop), and restart.
    pub brownouts: usize,
    /// Take this long over each of the first this-many chunks.
    pub slow_chunks: Option<(Duration, usize)>,
    /// Announce itself as a device of protocol version 1 does: no
    /// security counters.
    pub proto1: bool,
}

impl Sim {
    /// A device running `image` (named `version`), confirmed, with an
    /// empty data component.
    pub fn new(image: &[u8], version: &str) -> Sim {
        Sim::with_data(image, version, &[])
    }

    /// A device running `image` (named `version`) and `data` as its data
    /// component (none if empty), confirmed.
    pub fn with_data(image: &[u8], version: &str, data: &[u8]) -> Sim {
        let mut f = Flash::new((DATA_AT + 2 * DATA_SLOT) as usize);
        f.preload(0, image);
        f.preload(DATA_AT as usize, data);
        let sim = Sim {
            flash: RefCell::new(f),
            versions: vec![(Sha256::digest(image).into(), version.into())],
            cut_after_chunks: None,
            noise_every: None,
            lose_first_result: false,
            lie: None,
            brownouts: 0,
            slow_chunks: None,
            proto1: false,
        };
        slots(&sim.flash)
            .provision_group([(Slot::A, image.len() as u32), (Slot::A, data.len() as u32)])
            .unwrap();
        sim
    }

    /// Names another image the device may come to run.
    pub fn knows(&mut self, image: &[u8], version: &str) {
        self.versions
            .push((Sha256::digest(image).into(), version.into()));
    }

    /// The data component's image in its active slot (empty if none).
    pub fn data(&self) -> Vec<u8> {
        let rec = slots(&self.flash).boot_state().unwrap().components[1];
        let at = DATA_AT + if rec.active == Slot::A { 0 } else { DATA_SLOT };
        let size = rec.image().size as usize;
        self.flash.borrow().as_bytes()[at as usize..at as usize + size].to_vec()
    }

    /// The image in the active slot and its version name.
    pub fn running(&self) -> (Vec<u8>, String) {
        let slots = slots(&self.flash);
        let rec = slots.state().unwrap();
        let img = rec.images[match rec.active {
            Slot::A => 0,
            Slot::B => 1,
        }];
        let at = match rec.active {
            Slot::A => LAYOUT.slot_a,
            Slot::B => LAYOUT.slot_b,
        } as usize;
        let bytes = self.flash.borrow().as_bytes()[at..at + img.size as usize].to_vec();
        (bytes, self.name(&img.sha256))
    }

    fn name(&self, sha: &[u8; 32]) -> String {
        self.versions
            .iter()
            .find(|(s, _)| s == sha)
            .map_or_else(|| "unknown".into(), |(_, n)| n.clone())
    }

    /// Boots (the boot stage's select, then the application confirms) and
    /// serves one connection until it closes or the power is cut.
    pub fn serve(&self, mut link: impl Read + Write) {
        let mut chunks = 0usize;
        let mut received = 0usize;
        let mut sent = 0usize;
        let mut brownouts = self.brownouts;
        let window = if self.lie == Some(Lie::NoWindow) {
            0
        } else {
            512
        };
        let lost = std::cell::Cell::new(!self.lose_first_result);
        'boot: loop {
            let mut slots = slots(&self.flash);
            let boot = slots.select().unwrap();
            slots.confirm().unwrap();
            let rec = slots.state().unwrap();
            let img = rec.images[match boot.slot {
                Slot::A => 0,
                Slot::B => 1,
            }];
            let version = self.name(&img.sha256);
            let stage_part = Partition::new(&self.flash, STAGE_AT, STAGE).unwrap();
            let mut staging = Staging::open(stage_part).unwrap();
            let mut out = Vec::new();
            let announce = |resume| {
                DeviceMsg::Hello(Announce {
                    proto: PROTO_VERSION,
                    version: &version,
                    image_size: img.size,
                    image_sha256: img.sha256,
                    trial: false,
                    resume,
                    security_counter: img.counter,
                    floor: rec.floor,
                })
            };
            let proto1 = self.proto1;
            let hello = |out: &mut Vec<u8>, resume: Option<Resume>| {
                if proto1 {
                    // Variant 0, then version 1's fields.
                    let v1 = (1u8, version.as_str(), img.size, img.sha256, false, resume);
                    put_raw(out, &(0u8, v1));
                } else {
                    put(out, &announce(resume));
                }
            };
            hello(&mut out, staging.resume());
            let mut dec = FrameDecoder::new();
            let mut buf = [0u8; 1024];
            loop {
                if self.noise_every.is_some() && !out.is_empty() {
                    sent += 1;
                    if sent.is_multiple_of(4) {
                        let mut noisy = vec![0, 0x42, 0x17, 0xFF, 0x99, 0];
                        noisy.extend_from_slice(&out);
                        out = noisy;
                    }
                }
                if link.write_all(&out).is_err() {
                    return;
                }
                out.clear();
                let n = match link.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                if let Some(k) = self.noise_every {
                    for b in &mut buf[..n] {
                        received += 1;
                        if received.is_multiple_of(k) {
                            *b ^= 0x40;
                        }
                    }
                }
                let mut input = &buf[..n];
                while !input.is_empty() {
                    let (used, f) = dec.feed(input);
                    input = &input[used..];
                    let Some(Ok(payload)) = f else { continue };
                    let Ok(msg) = frame::decode::<HostMsg>(payload) else {
                        continue;
                    };
                    if let HostMsg::Chunk { offset, data } = msg {
                        chunks += 1;
                        if self.cut_after_chunks == Some(chunks) {
                            return; // Power cut: only the flash remains.
                        }
                        if let Some((d, n)) = self.slow_chunks {
                            if chunks <= n {
                                thread::sleep(d);
                            }
                        }
                        let past = offset + data.len() as u32;
                        let lie = match self.lie {
                            Some(Lie::DropChunks | Lie::NoWindow) => Some(None),
                            Some(Lie::StaleAck) => Some(Some(0)),
                            Some(Lie::AheadAck) => Some(Some(past + 4096)),
                            Some(Lie::AbsurdAck) => Some(Some(0xFFFF_FFF0)),
                            _ => None,
                        };
                        if let Some(ack) = lie {
                            if let Some(offset) = ack {
                                put(&mut out, &DeviceMsg::Ack { offset, window });
                            }
                            continue;
                        }
                    }
                    if let (Some(Lie::AbsurdAck), HostMsg::Begin { .. }) = (self.lie, msg) {
                        let offset = 0xFFFF_FFF0;
                        put(&mut out, &DeviceMsg::Ack { offset, window });
                        continue;
                    }
                    match proto::handle(&mut staging, &msg) {
                        Action::Announce => hello(&mut out, staging.resume()),
                        Action::Describe(k) => put(&mut out, &proto::device::component(&slots, k)),
                        Action::Ack { offset, complete } => {
                            put(&mut out, &DeviceMsg::Ack { offset, window });
                            match (complete, self.lie) {
                                (false, _) | (true, None) => {}
                                (true, Some(Lie::UnknownCode)) => {
                                    let text = "OK";
                                    put(&mut out, &DeviceMsg::Result { code: 9, text });
                                    continue;
                                }
                                (true, Some(Lie::BadText)) => {
                                    put_raw(&mut out, &(3u8, 0u8, &b"O\xffK"[..]));
                                    continue;
                                }
                                (true, Some(_)) => continue,
                            }
                            if complete {
                                if brownouts > 0 {
                                    // Power is lost at the apply's first write.
                                    brownouts = brownouts.saturating_sub(1);
                                    self.flash.borrow_mut().cut_at(0, Cut::Before, 1);
                                }
                                let mut rd = [0u8; 256];
                                let mut mem = ApplierState::new();
                                let r = install(
                                    &mut slots,
                                    &mut mem,
                                    &mut staging,
                                    &mut rd,
                                    &mut |m| {
                                        if self.flash.borrow().is_dead() {
                                            return; // No power, no words.
                                        }
                                        if matches!(m, DeviceMsg::Result { .. }) && !lost.get() {
                                            lost.set(true);
                                            return;
                                        }
                                        put(&mut out, m)
                                    },
                                );
                                if self.flash.borrow().is_dead() {
                                    self.flash.borrow_mut().reboot();
                                    let _ = link.write_all(&out);
                                    continue 'boot;
                                }
                                if r.restart {
                                    let _ = link.write_all(&out);
                                    continue 'boot;
                                }
                            }
                        }
                        Action::Fail(v, text) => put(
                            &mut out,
                            &DeviceMsg::Result {
                                code: proto::msg::verdict_code(v),
                                text,
                            },
                        ),
                    }
                }
            }
        }
    }
}

fn put(out: &mut Vec<u8>, m: &DeviceMsg<'_>) {
    put_raw(out, m);
}

/// Frames any payload, a message of the protocol or not.
fn put_raw(out: &mut Vec<u8>, m: &impl serde::Serialize) {
    let mut f = [0u8; MAX_FRAME];
    let n = frame::encode(m, &mut f).unwrap();
    out.extend_from_slice(&f[..n]);
}

/// Serves `sessions` connections of `sim` on the Unix socket `sock`.
pub fn serve_unix(sim: &Arc<Mutex<Sim>>, sock: &Path, sessions: usize) -> thread::JoinHandle<()> {
    let listener = UnixListener::bind(sock).unwrap();
    let s = sim.clone();
    thread::spawn(move || {
        for _ in 0..sessions {
            let (conn, _) = listener.accept().unwrap();
            s.lock().unwrap().serve(conn);
        }
    })
}

//! The application: built as v1, v2 and a bad v3 from this one source
//! (`DEMO_VERSION`, `DEMO_BAD`). It confirms itself after its self-test
//! (the bad build fails it and restarts, so the boot stage rolls it back),
//! then serves the update protocol on UART0: stores the patch, applies it
//! with flashpatch into the inactive slot, activates it and restarts. On
//! the same UART it serves SMP (mcumgr, `flashpatch-smp`): an image upload
//! is a flashpatch patch, applied into the inactive slot as it arrives and
//! activated when complete; `smpmgr upgrade --format any PATCH` then resets
//! it into the new image.
//!
//! Built with the feature `signed` (and `DEMO_PUBKEY`, see `build.rs`), it
//! installs only patches signed by that key
//! (`flashpatch::proto::device::install_signed`).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use firmware_demo::uart::Uart;
use firmware_demo::{
    log, self_test, semihost, send, stack, XipPart as Part, CONFIG, LAYOUT, STAGE, VERSION,
};
#[cfg(not(feature = "signed"))]
use flashpatch::proto::device::install;
#[cfg(feature = "signed")]
use flashpatch::proto::device::install_signed;
use flashpatch::proto::frame::{self, FrameDecoder};
use flashpatch::proto::{self, Action, Announce, DeviceMsg, HostMsg, Stage, Staging};
use flashpatch::slots::{Slot, Slots};
use flashpatch::{ApplierState, Partition};
use flashpatch_smp::serial::{self as smp_serial, Decoder as SmpDecoder, Event as SmpEvent};
use flashpatch_smp::upload::{Fed, Receiver};
use flashpatch_smp::{Answer, Device, ImageSlot, Request, Server, BUF_SIZE, EBADSTATE};

firmware_demo::handlers!();

/// The applier's working memory: a static, so that neither it nor a copy
/// of it is ever on the stack. Only `main` takes it, once.
static mut APPLIER: ApplierState = ApplierState::new();

/// The Ed25519 public key updates must be signed with (feature `signed`):
/// the key file `DEMO_PUBKEY` names, as `build.rs` hands it over.
#[cfg(feature = "signed")]
const PUBLIC_KEY: [u8; 32] = hex32(env!("DEMO_PUBLIC_KEY"));

/// 64 hex digits as 32 bytes, at compile time.
#[cfg(feature = "signed")]
const fn hex32(text: &str) -> [u8; 32] {
    const fn digit(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("DEMO_PUBLIC_KEY: not a hex digit"),
        }
    }
    let t = text.as_bytes();
    assert!(t.len() == 64, "DEMO_PUBLIC_KEY: not 64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = digit(t[2 * i]) << 4 | digit(t[2 * i + 1]);
        i += 1;
    }
    out
}

/// This build's version tag, where `link/xip/version-tag.x` places it: the
/// other image's is read from its slot for SMP's image state read.
#[used]
#[link_section = ".fpversion"]
static VERSION_TAG: [u8; firmware_demo::VERSION_TAG_LEN] = firmware_demo::version_tag();

/// The index of `slot` in the boot record's images.
fn slot_index(slot: Slot) -> usize {
    match slot {
        Slot::A => 0,
        Slot::B => 1,
    }
}

/// An SMP message out as serial lines.
fn send_smp(uart: &mut Uart, msg: &[u8]) {
    smp_serial::encode(msg, smp_serial::LINE, &mut |line| uart.write(line));
}

/// What an SMP image state read shows: the boot record, the slot the
/// application runs from, and the other slot's version tag.
struct SmpView {
    rec: Option<flashpatch::slots::BootRecord>,
    running: Slot,
    other: [u8; firmware_demo::VERSION_TAG_LEN],
}

impl SmpView {
    /// The view as the flash is now.
    fn new(flash: &firmware_demo::XipFlash, slots: &SmpSlots<'_>, running: Slot) -> SmpView {
        use embedded_storage::nor_flash::ReadNorFlash as _;
        let at = match running {
            Slot::A => LAYOUT.slot_b,
            Slot::B => LAYOUT.slot_a,
        };
        let mut other = [0u8; firmware_demo::VERSION_TAG_LEN];
        if flash
            .borrow_mut()
            .read(at + firmware_demo::VERSION_AT, &mut other)
            .is_err()
        {
            other = [0; firmware_demo::VERSION_TAG_LEN];
        }
        SmpView {
            rec: slots.state(),
            running,
            other,
        }
    }
}

impl Device for SmpView {
    fn slots(&mut self) -> [Option<ImageSlot<'_>>; 2] {
        let Some(rec) = self.rec else {
            return [None, None];
        };
        let mut version = [""; 2];
        version[slot_index(self.running)] = VERSION;
        version[1 - slot_index(self.running)] =
            firmware_demo::version_of(&self.other).unwrap_or("");
        flashpatch_smp::image_slots(&rec, self.running, version)
    }
}

/// The SMP server's buffers: a static, so that its RAM is one figure
/// (`size_of`), apart from the stack it uses while it answers.
struct SmpRam {
    dec: SmpDecoder<{ BUF_SIZE + 4 }>,
    out: [u8; BUF_SIZE],
}

static mut SMP: SmpRam = SmpRam {
    dec: SmpDecoder::new(),
    out: [0; BUF_SIZE],
};

/// How an SMP upload ended.
enum UploadEnd {
    /// Answered (refused, or abandoned).
    Answered,
    /// Complete: the image to activate, and the last request to answer.
    Complete(flashpatch::slots::Installed, flashpatch_smp::Pending, u32),
    /// The decoder holds the first request of another upload.
    Again,
}

type SmpSlots<'a> = Slots<Part<'a>, Part<'a>>;

/// Answers the SMP request the decoder holds. An upload (offset 0, as
/// clients begin) is applied into the inactive slot as its requests
/// arrive, and activated when complete; other SMP requests are answered
/// meanwhile, and the update protocol's bytes are ignored until it ends.
#[inline(never)]
fn smp_request(
    uart: &mut Uart,
    slots: &mut SmpSlots<'_>,
    applier: &mut ApplierState,
    smp: &mut SmpRam,
    flash: &firmware_demo::XipFlash,
    running: Slot,
) {
    let server = &mut Server::new();
    loop {
        let mut view = SmpView::new(flash, slots, running);
        let again = match server.answer(smp.dec.frame(), &mut smp.out, &mut view) {
            Answer::Sent { len, action } => {
                send_smp(uart, &smp.out[..len]);
                if action == flashpatch_smp::Action::Reset {
                    log!("app: smp: reset");
                    firmware_demo::reset();
                }
                return;
            }
            Answer::Ask {
                request: Request::Upload(u),
                ..
            } if u.off == 0 => smp_upload(uart, server, slots, applier, smp, flash, running),
            Answer::Ask {
                request: Request::Upload(_),
                pending,
            } => {
                // No upload in progress: it starts at 0.
                let n = server.uploaded(pending, Ok(0), &mut smp.out);
                return send_smp(uart, &smp.out[..n]);
            }
            Answer::Ask {
                request: Request::StateWrite { hash, confirm },
                pending,
            } => {
                let r = state_write(slots, running, hash, confirm);
                let mut view = SmpView::new(flash, slots, running);
                let n = server.state_written(pending, r, &mut smp.out, &mut view);
                return send_smp(uart, &smp.out[..n]);
            }
            Answer::Ask {
                request: Request::Erase { slot },
                pending,
            } => {
                let r = erase(slots, running, slot);
                log!(
                    "app: smp: erase of slot {slot} {}",
                    if r.is_ok() { "done" } else { "refused" }
                );
                let n = server.erased(pending, r, &mut smp.out);
                return send_smp(uart, &smp.out[..n]);
            }
        };
        if !again {
            return;
        }
    }
}

/// The upload whose first request (offset 0) the decoder holds: begun
/// (or continued from a checkpoint), fed and answered request by request
/// until it is complete and activated, refused, or begun again with
/// another image (`true`: the decoder holds that one's first request).
/// Not inlined: an image state read does not carry its frame.
#[inline(never)]
fn smp_upload(
    uart: &mut Uart,
    server: &mut Server,
    slots: &mut SmpSlots<'_>,
    applier: &mut ApplierState,
    smp: &mut SmpRam,
    flash: &firmware_demo::XipFlash,
    running: Slot,
) -> bool {
    let mut view = SmpView::new(flash, slots, running);
    #[cfg(feature = "signed")]
    let floor = view.rec.map_or(0, |r| r.floor);
    let Answer::Ask {
        request: Request::Upload(u),
        pending,
    } = server.answer(smp.dec.frame(), &mut smp.out, &mut view)
    else {
        return false;
    };
    let mut rx = match Receiver::begin(slots, applier, &u) {
        Ok(rx) => rx,
        Err(code) => {
            let n = server.uploaded(pending, Err(code), &mut smp.out);
            send_smp(uart, &smp.out[..n]);
            return false;
        }
    };
    // A signed build takes signed patches only, over SMP too, with the
    // boot record's floor as the lowest counter.
    #[cfg(feature = "signed")]
    rx.update().require_signature(PUBLIC_KEY, floor);
    log!(
        "app: smp: upload of {} bytes, applied into the inactive slot as it comes{}",
        rx.len(),
        if rx.offset() > 0 { " (continued)" } else { "" }
    );
    let fed = rx.feed(&u);
    match receive(uart, server, rx, (pending, fed), smp, view) {
        UploadEnd::Again => true,
        UploadEnd::Answered => false,
        UploadEnd::Complete(installed, p, len) => {
            let activated = slots.activate(&installed).map_err(|_| EBADSTATE);
            log!(
                "app: smp: upload complete; {}",
                if activated.is_ok() {
                    "the new image boots next, on trial"
                } else {
                    "refused"
                }
            );
            let n = server.uploaded(p, activated.map(|()| len), &mut smp.out);
            send_smp(uart, &smp.out[..n]);
            false
        }
    }
}

/// The rest of an upload `rx`, whose first request (`first`: its
/// header, and what feeding it did) is still to be answered: answers and
/// feeds each request until the upload is complete, refused, or begun
/// again with another image.
fn receive(
    uart: &mut Uart,
    server: &mut Server,
    mut rx: Receiver<'_, Part<'_>, Part<'_>>,
    first: (flashpatch_smp::Pending, Result<Fed, u32>),
    smp: &mut SmpRam,
    mut view: SmpView,
) -> UploadEnd {
    // The request being answered.
    let (mut pending, mut fed) = (Some(first.0), first.1);
    loop {
        match fed {
            Err(code) => {
                log!("app: smp: the upload does not apply; refused");
                if let Some(p) = pending {
                    let n = server.uploaded(p, Err(code), &mut smp.out);
                    send_smp(uart, &smp.out[..n]);
                }
                return UploadEnd::Answered;
            }
            Ok(Fed::Complete) => {
                let len = rx.len();
                return match (rx.finish(), pending) {
                    (Ok(installed), Some(p)) => UploadEnd::Complete(installed, p, len),
                    (Err(code), Some(p)) => {
                        log!("app: smp: the upload makes no verified image; refused");
                        let n = server.uploaded(p, Err(code), &mut smp.out);
                        send_smp(uart, &smp.out[..n]);
                        UploadEnd::Answered
                    }
                    _ => UploadEnd::Answered,
                };
            }
            Ok(Fed::More(next)) => {
                if let Some(p) = pending.take() {
                    let n = server.uploaded(p, Ok(next), &mut smp.out);
                    send_smp(uart, &smp.out[..n]);
                }
            }
        }
        // The next upload request.
        loop {
            let Some(byte) = uart.read() else { continue };
            if smp.dec.feed(byte) != SmpEvent::Frame {
                continue;
            }
            match server.answer(smp.dec.frame(), &mut smp.out, &mut view) {
                Answer::Sent { len, .. } => send_smp(uart, &smp.out[..len]),
                Answer::Ask {
                    request: Request::Upload(u),
                    pending: p,
                } => {
                    if u.off == 0 && !rx.same(&u) {
                        log!("app: smp: another upload begins; this one is given up");
                        return UploadEnd::Again;
                    }
                    fed = if u.off == 0 {
                        // The same upload begun again: it goes on here.
                        log!(
                            "app: smp: the same upload begun again; it goes on from byte {}",
                            rx.offset()
                        );
                        Ok(Fed::More(rx.offset()))
                    } else {
                        rx.feed(&u)
                    };
                    pending = Some(p);
                    break;
                }
                Answer::Ask { pending: p, .. } => {
                    let n = server.state_written(p, Err(EBADSTATE), &mut smp.out, &mut view);
                    send_smp(uart, &smp.out[..n]);
                }
            }
        }
    }
}

/// An SMP erase: only the slot that does not run, and not on trial. Not
/// inlined, as [`state_write`].
#[inline(never)]
fn erase(slots: &mut SmpSlots<'_>, running: Slot, slot: u32) -> Result<(), u32> {
    if slot as usize != 1 - slot_index(running) {
        return Err(EBADSTATE);
    }
    slots.erase_inactive(0).map_err(|_| EBADSTATE)
}

/// An SMP state write: `confirm` confirms the running image (a hash, if
/// given, must be its own); a hash alone must be the image that boots
/// next (an upload activates its image on trial already). Not inlined:
/// an image state read does not carry its frame.
#[inline(never)]
fn state_write(
    slots: &mut SmpSlots<'_>,
    running: Slot,
    hash: Option<&[u8]>,
    confirm: bool,
) -> Result<(), u32> {
    let rec = slots.state().ok_or(EBADSTATE)?;
    let ok = match confirm {
        true => hash.is_none_or(|h| h == rec.images[slot_index(running)].sha256),
        false => hash.is_some_and(|h| h == rec.images[slot_index(rec.active)].sha256),
    };
    if !ok {
        Err(EBADSTATE)
    } else if confirm && rec.trial && rec.active == running {
        slots.confirm().map_err(|_| EBADSTATE)
    } else {
        Ok(())
    }
}

#[entry]
fn main() -> ! {
    let mut cp =
        cortex_m::Peripherals::take().unwrap_or_else(|| semihost::exit(semihost::exit::PANIC));
    firmware_demo::cycles_start(&mut cp.SYST);
    // Test builds only (`DEMO_FAULT`): show that faults stop QEMU with
    // their own exit codes.
    match option_env!("DEMO_FAULT") {
        Some("panic") => panic!("DEMO_FAULT=panic"),
        Some("flashstore") => {
            // A plain store to the flash (the inactive slot's first word),
            // which the MPU guard turns into a fault.
            let at = firmware_demo::slot_address(flashpatch::slots::Slot::B);
            // SAFETY: none; storing past the flash driver is the point.
            unsafe { (at as *mut u32).write_volatile(0) };
            log!("app: a plain store to the flash at {at:#010x} went through");
        }
        Some("hardfault") => {
            // SAFETY: none; reading unmapped memory is the point (a bus
            // fault, escalated to HardFault).
            let v = unsafe { (0xF000_0000 as *const u32).read_volatile() };
            log!("app: read {v} from unmapped memory?");
        }
        _ => {}
    }
    let mut uart = Uart::new();
    // SAFETY: the only reference to APPLIER, taken once, before anything
    // else could use it.
    let applier = unsafe { &mut *core::ptr::addr_of_mut!(APPLIER) };
    let flash = firmware_demo::xip_flash();
    let Some([a, b, state]) = LAYOUT.partitions(&flash) else {
        semihost::exit(semihost::exit::FLASH)
    };
    let mut slots =
        Slots::new(a, b, state, CONFIG).unwrap_or_else(|_| semihost::exit(semihost::exit::FLASH));
    let Some(rec) = slots.state() else {
        semihost::exit(semihost::exit::NO_IMAGE)
    };
    let running = rec.active;
    log!(
        "app: flashpatch demo {VERSION} running from slot {:?} ({})",
        rec.active,
        if rec.trial { "trial" } else { "confirmed" }
    );
    #[cfg(feature = "signed")]
    log!(
        "app: updates must be signed by Ed25519 key {}",
        env!("DEMO_PUBLIC_KEY")
    );
    if rec.rolled_back {
        log!("app: this image was restored by a rollback");
    }
    if VERSION != "v1" {
        log!("app: new in {VERSION}: this line");
    }
    if !self_test() {
        log!("app: self-test FAILED: not confirming; restarting");
        firmware_demo::reset();
    }
    if rec.trial {
        match slots.confirm() {
            Ok(()) => log!("app: self-test passed: {VERSION} confirmed"),
            Err(e) => log!("app: confirm failed: {e}"),
        }
    }
    let Some(rec) = slots.state() else {
        semihost::exit(semihost::exit::NO_IMAGE)
    };
    let image = rec.images[match rec.active {
        Slot::A => 0,
        Slot::B => 1,
    }];
    let Some(stage) = Partition::new(&flash, STAGE.0, STAGE.1) else {
        semihost::exit(semihost::exit::FLASH)
    };
    let mut staging =
        Staging::open(stage).unwrap_or_else(|_| semihost::exit(semihost::exit::FLASH));
    let announce = |resume| {
        DeviceMsg::Hello(Announce {
            proto: proto::PROTO_VERSION,
            version: VERSION,
            image_size: image.size,
            image_sha256: image.sha256,
            trial: rec.trial,
            resume,
            security_counter: image.counter,
            floor: rec.floor,
        })
    };
    if let Some(r) = staging.resume() {
        log!("app: holds {} of {} bytes of a patch", r.offset, r.size);
    }
    send(&mut uart, &announce(staging.resume()));
    log!("app: waiting for an update on UART0");
    let mut dec = FrameDecoder::new();
    // The flash wear when the last patch began: storing it wears the
    // staging partition.
    let mut begun = flash.borrow().wear();
    // SMP (mcumgr) on the same UART: its lines are base64 text, which the
    // update protocol's decoder drops, and its decoder ignores the update
    // protocol's frames.
    // SAFETY: the only reference to SMP, taken once.
    let smp = unsafe { &mut *core::ptr::addr_of_mut!(SMP) };
    loop {
        let Some(byte) = uart.read() else { continue };
        if smp.dec.feed(byte) == SmpEvent::Frame {
            let painted = stack::paint();
            smp_request(&mut uart, &mut slots, applier, smp, &flash, running);
            log!(
                "app: smp measured: server_ram={} stack_high_water={}",
                core::mem::size_of::<SmpRam>(),
                stack::used_below(painted)
            );
            continue;
        }
        let (_, Some(Ok(payload))) = dec.feed(&[byte]) else {
            continue;
        };
        let Ok(msg) = frame::decode::<HostMsg>(payload) else {
            continue;
        };
        if let HostMsg::Begin { size, crc32 } = msg {
            log!("app: begin: patch of {size} bytes, CRC-32 {crc32:08x}");
            begun = flash.borrow().wear();
        }
        match proto::handle(&mut staging, &msg) {
            Action::Announce => send(&mut uart, &announce(staging.resume())),
            Action::Describe(k) => send(&mut uart, &proto::device::component(&slots, k)),
            Action::Fail(v, text) => {
                log!("app: refused: {text}");
                send(
                    &mut uart,
                    &DeviceMsg::Result {
                        code: proto::msg::verdict_code(v),
                        text,
                    },
                );
            }
            Action::Ack { offset, complete } => {
                send(
                    &mut uart,
                    &DeviceMsg::Ack {
                        offset,
                        window: 512,
                    },
                );
                if complete {
                    let stored = flash.borrow().wear().since(begun);
                    let before = flash.borrow().wear();
                    // The stack pointer here: update() and all it calls
                    // use the stack below it.
                    let painted = stack::paint();
                    let restart = update(&mut uart, &mut slots, applier, &mut staging, painted);
                    let install = flash.borrow().wear().since(before);
                    log!(
                        "app: measured flash wear: install: {install}; storing the patch: {stored}"
                    );
                    if restart {
                        log!("app: restarting into the new image");
                        firmware_demo::reset();
                    }
                }
            }
        }
    }
}

/// Applies the stored patch, measuring what it takes (the stack below
/// `painted` was painted by the caller); whether to restart into the new
/// image (the caller does, after its own measurement).
#[inline(never)]
fn update(
    uart: &mut Uart,
    slots: &mut Slots<Part<'_>, Part<'_>>,
    applier: &mut ApplierState,
    staging: &mut Staging<Part<'_>>,
    painted: u32,
) -> bool {
    log!("app: patch stored; applying into the inactive slot");
    let t0 = firmware_demo::ticks();
    let mut buf = [0u8; 64];
    let mut report = |m: &DeviceMsg<'_>| {
        if let DeviceMsg::Progress { stage, done, total } = m {
            log!(
                "app: progress {} {done}/{total}",
                match stage {
                    Stage::Applying => "applying",
                    Stage::Activating => "activating",
                    Stage::Restarting => "restarting",
                }
            );
        }
        send(uart, m)
    };
    #[cfg(not(feature = "signed"))]
    let r = install(slots, applier, staging, &mut buf, &mut report);
    // The boot record's floor: a patch whose security counter is below
    // it would not boot, so it is refused before anything is written.
    #[cfg(feature = "signed")]
    let r = {
        let floor = slots.state().map_or(0, |r| r.floor);
        log!("app: requiring a security counter of at least {floor}");
        install_signed(
            slots,
            applier,
            staging,
            &mut buf,
            PUBLIC_KEY,
            floor,
            &mut report,
        )
    };
    let ticks = firmware_demo::ticks() - t0;
    let stack = stack::used_below(painted);
    log!("app: result: {}", r.verdict.message());
    log!(
        "app: measured: applier_state={} stack_high_water={} ticks={}",
        core::mem::size_of::<ApplierState>(),
        stack,
        ticks
    );
    r.restart
}

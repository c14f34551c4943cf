//! The in-place demo's application: built as v1, v2 and a bad v3 from one
//! source, as `app` is, for a device with one image slot
//! (`firmware_demo::in_place`). It confirms itself after its self-test
//! (the bad build fails it and restarts, and the boot stage rolls it back
//! with the update file's reverse entry), then serves the update protocol
//! on UART0: stages the update file, rewrites its own slot in place with
//! `flashpatch::slots::InPlace` (it runs from its copy in RAM at
//! `APP_BASE`), and restarts into the new image.
#![no_std]
#![no_main]

use core::cell::RefCell;

use cortex_m_rt::entry;
use firmware_demo::in_place as ip;
use firmware_demo::uart::Uart;
use firmware_demo::{log, self_test, semihost, send, stack, Part, CONFIG, VERSION};
use flashpatch::proto::frame::{self, FrameDecoder};
use flashpatch::proto::{self, Action, Announce, ComponentImage, DeviceMsg, HostMsg, Staging};
use flashpatch::slots::{InPlace, PatchId, Rewrite};
use flashpatch::{ApplierState, Partition, Verdict};

firmware_demo::handlers!();

/// The applier's working memory: a static, so that neither it nor a copy
/// of it is ever on the stack. Only `main` takes it, once.
static mut APPLIER: ApplierState = ApplierState::new();

/// This build's version tag, where `link/app/memory.x` places it.
#[used]
#[link_section = ".fpversion"]
static VERSION_TAG: [u8; firmware_demo::VERSION_TAG_LEN] = firmware_demo::version_tag();

/// The device: the image slot, the scratch area and the state area.
type Device<'a> = InPlace<'a, Part<'a>, Part<'a>, Part<'a>>;

/// A partition of `flash` at `(offset, size)`, or QEMU stopped.
fn part(flash: &firmware_demo::Flash, (at, len): (u32, u32)) -> Part<'_> {
    Partition::new(flash, at, len).unwrap_or_else(|| semihost::exit(semihost::exit::FLASH))
}

#[entry]
fn main() -> ! {
    let mut cp =
        cortex_m::Peripherals::take().unwrap_or_else(|| semihost::exit(semihost::exit::PANIC));
    firmware_demo::cycles_start(&mut cp.SYST);
    let mut uart = Uart::new();
    // SAFETY: the only reference to APPLIER, taken once, before anything
    // else could use it.
    let applier = unsafe { &mut *core::ptr::addr_of_mut!(APPLIER) };
    let flash = firmware_demo::open_flash_of(ip::FLASH_SIZE);
    firmware_demo::flash::arm_cut("inplace");
    let slot = RefCell::new(part(&flash, ip::SLOT));
    let scratch = RefCell::new(part(&flash, ip::SCRATCH));
    let state = part(&flash, ip::STATE);
    let mut dev = InPlace::new(&slot, &scratch, state, ip::UNIT, CONFIG)
        .unwrap_or_else(|_| semihost::exit(semihost::exit::FLASH));
    let Some(rec) = dev.state() else {
        semihost::exit(semihost::exit::NO_IMAGE)
    };
    log!(
        "app: flashpatch demo {VERSION} running, in place ({})",
        if rec.trial { "trial" } else { "confirmed" }
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
        match dev.confirm() {
            Ok(()) => log!("app: self-test passed: {VERSION} confirmed"),
            Err(e) => log!("app: confirm failed: {e}"),
        }
    }
    let Some(rec) = dev.state() else {
        semihost::exit(semihost::exit::NO_IMAGE)
    };
    let image = rec.images[0];
    let mut staging = Staging::open(part(&flash, ip::STAGE))
        .unwrap_or_else(|_| semihost::exit(semihost::exit::FLASH));
    let mut staged = part(&flash, ip::STAGED);
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
    send(&mut uart, &announce(staging.resume()));
    log!("app: waiting for an update on UART0");
    let mut dec = FrameDecoder::new();
    loop {
        let Some(byte) = uart.read() else { continue };
        let (_, Some(Ok(payload))) = dec.feed(&[byte]) else {
            continue;
        };
        let Ok(msg) = frame::decode::<HostMsg>(payload) else {
            continue;
        };
        if let HostMsg::Begin { size, crc32 } = msg {
            log!("app: begin: update file of {size} bytes, CRC-32 {crc32:08x}");
        }
        match proto::handle(&mut staging, &msg) {
            Action::Announce => send(&mut uart, &announce(staging.resume())),
            Action::Describe(k) => {
                // One component: the image in the slot.
                let none = flashpatch::slots::Image::NONE;
                let i = if k == 0 { image } else { none };
                send(
                    &mut uart,
                    &DeviceMsg::Component(ComponentImage {
                        component: k,
                        components: 1,
                        image_size: i.size,
                        image_sha256: i.sha256,
                        security_counter: i.counter,
                        floor: rec.floor,
                    }),
                );
            }
            Action::Fail(v, text) => {
                log!("app: refused: {text}");
                let code = proto::msg::verdict_code(v);
                send(&mut uart, &DeviceMsg::Result { code, text });
            }
            Action::Ack { offset, complete } => {
                let window = 512;
                send(&mut uart, &DeviceMsg::Ack { offset, window });
                let Some(r) = staging.resume().filter(|_| complete) else {
                    continue;
                };
                let id = PatchId {
                    size: r.size,
                    crc32: r.crc32,
                };
                // The stack pointer here: update() and all it calls use
                // the stack below it.
                let painted = stack::paint();
                let verdict = update(&mut dev, &mut staged, id, applier, painted);
                let code = proto::msg::verdict_code(verdict);
                let text = verdict.message();
                send(&mut uart, &DeviceMsg::Result { code, text });
                if verdict == Verdict::Ok {
                    log!("app: restarting into the new image");
                    firmware_demo::reset();
                }
                // Refused or nothing to do: the file is not tried again.
                let _ = staging.clear();
            }
        }
    }
}

/// Rewrites the slot from the staged file `id`, measuring what it takes
/// (the stack below `painted` was painted by the caller).
#[inline(never)]
fn update(
    dev: &mut Device<'_>,
    staged: &mut Part<'_>,
    id: PatchId,
    applier: &mut ApplierState,
    painted: u32,
) -> Verdict {
    log!("app: update file stored; rewriting the slot in place");
    let t0 = firmware_demo::ticks();
    let r = dev.update(staged, id, applier);
    let ticks = firmware_demo::ticks() - t0;
    let stack = stack::used_below(painted);
    let verdict = match r {
        Ok(Rewrite::Applied { trial }) => {
            log!(
                "app: rewritten in place; the new image boots next{}",
                if trial {
                    ", on trial (the file can roll it back)"
                } else {
                    ", final (the file has no reverse entry)"
                }
            );
            Verdict::Ok
        }
        Ok(Rewrite::AlreadyInstalled) => Verdict::AlreadyInstalled,
        Err(e) => {
            log!("app: refused: {e}");
            e.verdict()
        }
    };
    log!(
        "app: measured: applier_state={} device={} stack_high_water={} ticks={} flash_steps={}",
        core::mem::size_of::<ApplierState>(),
        core::mem::size_of::<Device<'_>>(),
        stack,
        ticks,
        firmware_demo::flash::steps()
    );
    verdict
}

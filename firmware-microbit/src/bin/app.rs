//! The application: built as v1, v2 and a bad v3 from this one source
//! (`DEMO_VERSION`, `DEMO_BAD`, as firmware-demo's application), each
//! linked to run in place in one slot (`MB_SLOT`). It confirms itself
//! after its self-test (the bad build fails it and restarts, so the boot
//! stage rolls it back), then serves the update protocol on the UART:
//! stores the patch in the staging partition, applies it with flashpatch
//! into the other slot, activates it and restarts.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use firmware_microbit::uart::Uart;
use firmware_microbit::{
    log, self_test, semihost, send, stack, timer, Part, CONFIG, LAYOUT, STAGE, VERSION,
};
use flashpatch::proto::device::{install, Installed};
use flashpatch::proto::frame::{self, FrameDecoder};
use flashpatch::proto::{self, Action, Announce, DeviceMsg, HostMsg, Staging};
use flashpatch::slots::{Slot, Slots};
use flashpatch::{ApplierState, Partition};

/// The applier's working memory: a static, so that neither it nor a copy
/// of it is ever on the stack. Only `main` takes it, once.
static mut APPLIER: ApplierState = ApplierState::new();

#[entry]
fn main() -> ! {
    // Everything below main's frame is painted: what the application
    // uses of its stack from here to the end of an install is measured
    // (`app_stack_high_water`, counted from the top of RAM).
    let top = stack::paint();
    timer::start();
    let mut uart = Uart::new();
    // SAFETY: the only reference to APPLIER, taken once, before anything
    // else could use it.
    let applier = unsafe { &mut *core::ptr::addr_of_mut!(APPLIER) };
    let flash = firmware_microbit::open_flash();
    let Some([a, b, state]) = LAYOUT.partitions(&flash) else {
        semihost::exit(semihost::exit::FLASH)
    };
    let mut slots =
        Slots::new(a, b, state, CONFIG).unwrap_or_else(|_| semihost::exit(semihost::exit::FLASH));
    let Some(rec) = slots.state() else {
        semihost::exit(semihost::exit::NO_IMAGE)
    };
    log!(
        "app: flashpatch micro:bit demo {VERSION} running in place from slot {:?} (code at {:#07x}) ({})",
        rec.active,
        update as *const () as usize,
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
        firmware_microbit::reset();
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
    log!("app: waiting for an update on the UART");
    let mut dec = FrameDecoder::new();
    // The flash wear when the last patch began: storing it wears the
    // staging partition.
    let mut begun = flash.borrow().wear();
    loop {
        let Some(byte) = uart.read() else { continue };
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
                    log!("app: patch stored; applying into the inactive slot");
                    // What the application used of its stack so far, read
                    // before the stack below this frame is painted again.
                    let so_far = stack::used_in_all(top);
                    let stored = flash.borrow().wear().since(begun);
                    let before = flash.borrow().wear();
                    // The stack pointer here: update() and all it calls
                    // use the stack below it.
                    let painted = stack::paint();
                    let (r, ticks) = update(&mut uart, &mut slots, applier, &mut staging);
                    let used = stack::used_below(painted);
                    let whole = so_far.max(stack::used_in_all(painted));
                    let install = flash.borrow().wear().since(before);
                    log!("app: result: {}", r.verdict.message());
                    log!(
                        "app: measured: applier_state={} stack_high_water={used} app_stack_high_water={whole} ticks={ticks} calibration_ticks_per_2m_instructions={}",
                        core::mem::size_of::<ApplierState>(),
                        timer::calibrate()
                    );
                    log!(
                        "app: measured flash wear: install: {install}; storing the patch: {stored}"
                    );
                    if r.restart {
                        log!("app: restarting into the new image");
                        firmware_microbit::reset();
                    }
                }
            }
        }
    }
}

/// Applies the stored patch; returns the result and the TIMER0 ticks
/// it took. It holds nothing but what the install needs: the caller
/// measures and reports, so that its console lines do not count in the
/// install's stack.
#[inline(never)]
fn update(
    uart: &mut Uart,
    slots: &mut Slots<Part<'_>, Part<'_>>,
    applier: &mut ApplierState,
    staging: &mut Staging<Part<'_>>,
) -> (Installed, u32) {
    let t0 = timer::now();
    let mut buf = [0u8; 16];
    let r = install(slots, applier, staging, &mut buf, &mut |m| send(uart, m));
    (r, timer::now().wrapping_sub(t0))
}

//! The update protocol on the host: frames round trip, damaged frames are
//! refused, the decoder finds the next frame after garbage, and a staged
//! transfer resumes after a power cut and applies.

use core::cell::RefCell;

use flashpatch::mock::{MockFlash, Rng};
use flashpatch::proto::frame::{self, FrameDecoder, FrameError, MAX_FRAME};
use flashpatch::proto::{
    self, Action, Announce, ComponentImage, DeviceMsg, HostMsg, Resume, Stage, Staging, MAX_CHUNK,
};
use flashpatch::{Applier, ApplierState, Outcome, Partition};
use flashpatch_tests::firmware_pair;

fn enc<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = frame::encode(msg, &mut out).unwrap();
    out[..n].to_vec()
}

/// Every frame's payload (or error) in `stream`, fed in pieces of `step`.
fn frames(stream: &[u8], step: usize) -> Vec<Result<Vec<u8>, FrameError>> {
    let mut d = FrameDecoder::new();
    let mut got = Vec::new();
    for mut piece in stream.chunks(step.max(1)) {
        while !piece.is_empty() {
            let (n, f) = d.feed(piece);
            if let Some(f) = f {
                got.push(f.map(|p| p.to_vec()));
            }
            piece = &piece[n..];
        }
    }
    got
}

fn samples(data: &[u8]) -> (Vec<HostMsg<'_>>, Vec<DeviceMsg<'_>>) {
    let host = vec![
        HostMsg::Hello,
        HostMsg::Begin {
            size: 70_000,
            crc32: 0xDEAD_BEEF,
        },
        HostMsg::Chunk { offset: 0, data },
        HostMsg::Chunk {
            offset: u32::MAX,
            data: &[],
        },
        HostMsg::Component { component: 1 },
    ];
    let device = vec![
        DeviceMsg::Hello(Announce {
            proto: proto::PROTO_VERSION,
            version: "v2",
            image_size: 31_337,
            image_sha256: [0xA5; 32],
            trial: true,
            resume: Some(Resume {
                size: 9000,
                crc32: 1,
                offset: 4096,
            }),
            security_counter: 7,
            floor: 5,
        }),
        DeviceMsg::Ack {
            offset: 256,
            window: 512,
        },
        DeviceMsg::Progress {
            stage: Stage::Applying,
            done: 1,
            total: 2,
        },
        DeviceMsg::Result {
            code: 3,
            text: "Patch data is invalid or corrupt",
        },
        DeviceMsg::Component(ComponentImage {
            component: 1,
            components: 2,
            image_size: 6000,
            image_sha256: [0x5A; 32],
            security_counter: 3,
            floor: 2,
        }),
    ];
    (host, device)
}

#[test]
fn messages_round_trip_in_any_chunking() {
    let data: Vec<u8> = (0..MAX_CHUNK).map(|i| (i % 7) as u8).collect();
    let (host, device) = samples(&data);
    let mut stream = vec![0u8];
    for m in &host {
        stream.extend(enc(m));
    }
    for m in &device {
        stream.extend(enc(m));
    }
    for step in [1, 3, 64, stream.len()] {
        let got = frames(&stream, step);
        assert_eq!(got.len(), host.len() + device.len());
        for (g, m) in got.iter().zip(&host) {
            assert_eq!(&frame::decode::<HostMsg>(g.as_ref().unwrap()).unwrap(), m);
        }
        for (g, m) in got[host.len()..].iter().zip(&device) {
            assert_eq!(&frame::decode::<DeviceMsg>(g.as_ref().unwrap()).unwrap(), m);
        }
    }
}

#[test]
fn largest_chunk_fits_a_frame_and_has_no_zero_inside() {
    let data = [0u8; MAX_CHUNK];
    let f = enc(&HostMsg::Chunk {
        offset: u32::MAX,
        data: &data,
    });
    assert!(f.len() <= MAX_FRAME);
    assert_eq!(f.iter().filter(|&&b| b == 0).count(), 1);
    assert_eq!(*f.last().unwrap(), 0);
    let too_big = [1u8; frame::MAX_PAYLOAD + 1];
    let mut out = [0u8; MAX_FRAME];
    assert_eq!(
        frame::encode(
            &HostMsg::Chunk {
                offset: 0,
                data: &too_big
            },
            &mut out
        ),
        Err(FrameError::TooBig)
    );
}

/// The encoder works in its output buffer alone: for chunks of every
/// length with long zero and non-zero runs (COBS's 254-byte blocks), and in
/// buffers from too small to `MAX_FRAME`, the frame is the same and decodes
/// back, or the buffer is too small (`TooBig`, never a bad frame).
#[test]
fn in_place_encoding_in_any_buffer_size() {
    let mut rng = Rng(7);
    for len in (0..=MAX_CHUNK).step_by(7).chain([253, 254, 255, MAX_CHUNK]) {
        let data: Vec<u8> = (0..len)
            .map(|i| match (i / 40) % 3 {
                0 => 0,
                1 => 1 + (rng.next_u64() % 255) as u8,
                _ => (rng.next_u64() % 2) as u8,
            })
            .collect();
        let msg = HostMsg::Chunk {
            offset: 5,
            data: &data,
        };
        let want = enc(&msg);
        // The encoder reserves COBS's worst case for the buffer it has, so
        // it may want one byte more than the frame takes.
        for size in want.len() - 1..=MAX_FRAME {
            let mut out = vec![0xEE; size];
            match frame::encode(&msg, &mut out) {
                Ok(n) => assert_eq!(&out[..n], &want[..], "chunk {len}, buffer {size}"),
                Err(e) => {
                    assert_eq!(e, FrameError::TooBig);
                    assert!(size <= want.len(), "chunk {len}, buffer {size}");
                }
            }
        }
        let got = frames(&want, 1);
        let back: HostMsg<'_> = frame::decode(got[0].as_ref().unwrap()).unwrap();
        assert_eq!(back, msg);
    }
}

/// Whatever a device says fits its small send buffer: the largest `Hello`
/// (longest version string, every number at its widest, a resume) and a
/// `Result` with any text the device code sends, or any other of up to 64
/// bytes.
#[test]
fn device_messages_fit_the_device_frame() {
    use flashpatch::proto::frame::MAX_DEVICE_FRAME;
    use flashpatch::Verdict;
    let version = "v".repeat(proto::msg::MAX_VERSION);
    let hello = DeviceMsg::Hello(Announce {
        proto: u8::MAX,
        version: &version,
        image_size: u32::MAX,
        image_sha256: [0xFF; 32],
        trial: true,
        resume: Some(Resume {
            size: u32::MAX,
            crc32: u32::MAX,
            offset: u32::MAX,
        }),
        security_counter: u32::MAX,
        floor: u32::MAX,
    });
    let mut out = [0u8; MAX_DEVICE_FRAME];
    let n = frame::encode(&hello, &mut out).unwrap();
    println!("largest Hello: {n} of {MAX_DEVICE_FRAME} bytes");
    let texts = [
        Verdict::Ok,
        Verdict::AlreadyInstalled,
        Verdict::Error,
        Verdict::Corrupt,
        Verdict::NoSuitablePatch,
    ]
    .map(|v| v.message());
    let long = "x".repeat(64);
    let sent = [
        "the staging flash failed",
        "the patch is larger than the staging area",
        "patch data before Begin",
        "a chunk has a bad length",
        &long,
    ];
    for text in texts.iter().copied().chain(sent) {
        let r = DeviceMsg::Result {
            code: u8::MAX,
            text,
        };
        assert!(frame::encode(&r, &mut out).is_ok(), "{text}");
    }
    let progress = DeviceMsg::Progress {
        stage: Stage::Restarting,
        done: u32::MAX,
        total: u32::MAX,
    };
    assert!(frame::encode(&progress, &mut out).is_ok());
    let component = DeviceMsg::Component(ComponentImage {
        component: u8::MAX,
        components: u8::MAX,
        image_size: u32::MAX,
        image_sha256: [0xFF; 32],
        security_counter: u32::MAX,
        floor: u32::MAX,
    });
    assert!(frame::encode(&component, &mut out).is_ok());
}

/// Pins the wire bytes of one message: a change here breaks every device
/// in the field.
#[test]
fn golden_begin_frame() {
    let f = enc(&HostMsg::Begin {
        size: 1000,
        crc32: 0x1234_5678,
    });
    let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "0d01e807f8acd19101d46e2d6800");
}

/// The component question and its answer came after protocol version 1's
/// first messages: at new variant indices (host 3, device 4), so that the
/// earlier ones keep their bytes (`golden_begin_frame`).
#[test]
fn golden_component_payloads() {
    let payload = |frame: Vec<u8>| {
        let mut dec = FrameDecoder::new();
        match dec.feed(&frame) {
            (_, Some(Ok(p))) => p.to_vec(),
            other => panic!("{other:?}"),
        }
    };
    let q = payload(enc(&HostMsg::Component { component: 2 }));
    assert_eq!(q, [3, 2]);
    let a = payload(enc(&DeviceMsg::Component(ComponentImage {
        component: 1,
        components: 2,
        image_size: 300,
        image_sha256: [7; 32],
        security_counter: 200,
        floor: 1,
    })));
    assert_eq!(a[..5], [4, 1, 2, 0xAC, 0x02]);
    assert_eq!(a[5..37], [7; 32]);
    // Version 2's counters, at the end: version 1's bytes come first.
    assert_eq!(a[37..], [0xC8, 0x01, 0x01]);
}

#[test]
fn every_single_bit_flip_is_refused() {
    let data: Vec<u8> = (0..40u8).collect();
    let good = enc(&HostMsg::Chunk {
        offset: 4096,
        data: &data,
    });
    let body = good.len() - 1;
    let mut refused = 0;
    for bit in 0..body * 8 {
        let mut f = good.clone();
        f[bit / 8] ^= 1 << (bit % 8);
        let got = frames(&f, 5);
        assert!(!got.is_empty(), "bit {bit}: no frame at all");
        assert!(
            got.iter().all(|r| r.is_err()),
            "bit {bit} accepted: {got:?}"
        );
        refused += 1;
    }
    assert_eq!(refused, body * 8);
    for cut in 1..body {
        let mut f = good[..cut].to_vec();
        f.push(0);
        assert!(frames(&f, 7).iter().all(|r| r.is_err()), "cut at {cut}");
    }
}

#[test]
fn decoder_resynchronises_after_garbage() {
    let mut rng = Rng(42);
    let msg = HostMsg::Begin { size: 5, crc32: 6 };
    for round in 0..200 {
        let n = rng.below(2 * MAX_FRAME);
        let garbage = rng.bytes(n);
        let mut stream = garbage.clone();
        stream.push(0);
        stream.extend(enc(&msg));
        let got = frames(&stream, 1 + round % 17);
        let last = got.last().unwrap().as_ref().expect("the good frame");
        assert_eq!(frame::decode::<HostMsg>(last).unwrap(), msg);
        // Garbage yields errors, never a message.
        if let Some(p) = got[..got.len() - 1].iter().flatten().next() {
            panic!("garbage taken as a frame: {p:?} in round {round}");
        }
    }
    // A run longer than any frame is refused as such, then decoding goes on.
    let mut stream = vec![0x55; 3 * MAX_FRAME];
    stream.push(0);
    stream.extend(enc(&msg));
    let got = frames(&stream, 100);
    assert_eq!(got[0], Err(FrameError::TooLong));
    assert_eq!(
        frame::decode::<HostMsg>(got[1].as_ref().unwrap()).unwrap(),
        msg
    );
}

#[test]
fn malformed_payload_is_not_a_message() {
    // A frame with a sound CRC whose payload is no message.
    for payload in [&[9u8][..], &[2, 0x80], &[]] {
        assert_eq!(frame::decode::<HostMsg>(payload), Err(FrameError::Message));
    }
}

type Flash = MockFlash<1, 4, 4096>;
const SLOT: u32 = 64 * 1024;
const STAGE: u32 = 32 * 1024;

/// Transfers `patch` in chunks of `step` bytes, cutting power (dropping
/// everything in RAM) after chunk `cut`, then resumes from what the device
/// announces. The flash has read, write and erase units of `R`, `W` and
/// `E` bytes and is erased to `X`.
fn transfer_with_cut<const R: usize, const W: usize, const E: usize, const X: u8>(
    flash: &RefCell<MockFlash<R, W, E, X>>,
    patch: &[u8],
    cut: usize,
    step: usize,
) -> u32 {
    let part = || Partition::new(flash, 2 * SLOT, STAGE).unwrap();
    let crc = flashpatch::crc32::crc32(patch);
    let mut stage = Staging::open_erased(part(), X).unwrap();
    assert_eq!(
        proto::handle(
            &mut stage,
            &HostMsg::Begin {
                size: patch.len() as u32,
                crc32: crc
            }
        ),
        Action::Ack {
            offset: 0,
            complete: false
        }
    );
    for (i, c) in patch.chunks(step).enumerate().take(cut) {
        let offset = (i * step) as u32;
        assert!(matches!(
            proto::handle(&mut stage, &HostMsg::Chunk { offset, data: c }),
            Action::Ack { offset: o, .. } if o == offset + c.len() as u32
        ));
    }
    let _ = stage.into_inner();
    // Power is back.
    let mut stage = Staging::open_erased(part(), X).unwrap();
    let r = stage.resume().expect("the transfer survives");
    assert_eq!((r.size, r.crc32), (patch.len() as u32, crc));
    let stored = (cut * step).min(patch.len()) as u32;
    assert!(r.offset <= stored && stored - r.offset < E as u32);
    assert!(r.offset == stored || r.offset.is_multiple_of(E as u32));
    // A stale chunk is answered with where to continue.
    if r.offset > 0 {
        assert_eq!(
            proto::handle(
                &mut stage,
                &HostMsg::Chunk {
                    offset: 0,
                    data: &patch[..4]
                }
            ),
            Action::Ack {
                offset: r.offset,
                complete: r.offset == patch.len() as u32
            }
        );
    }
    let begin = HostMsg::Begin {
        size: patch.len() as u32,
        crc32: crc,
    };
    let Action::Ack { mut offset, .. } = proto::handle(&mut stage, &begin) else {
        panic!("no ack")
    };
    assert_eq!(offset, r.offset);
    while (offset as usize) < patch.len() {
        let end = (offset as usize + step).min(patch.len());
        let data = &patch[offset as usize..end];
        match proto::handle(&mut stage, &HostMsg::Chunk { offset, data }) {
            Action::Ack { offset: o, .. } => offset = o,
            a => panic!("{a:?}"),
        }
    }
    assert!(stage.complete());
    assert!(stage.check(&mut [0u8; 64]).unwrap());
    r.offset
}

#[test]
fn staged_transfer_resumes_after_power_cuts_and_applies() {
    staged_transfer::<1, 4, 4096, 0xFF>(MAX_CHUNK);
}

/// Flash erased to 0x00; flash that programs 8 bytes at a time, in 2 KiB
/// pages (STM32L4, G4),
/// erased to 0xFF and to 0x00; 32-byte flash words (STM32H7) in 8 KiB
/// sectors, erased to 0x00; and 64-byte write and read units. Chunks of
/// 100 bytes leave a part of a write unit waiting for the next one.
#[test]
fn staged_transfer_on_wide_write_units_and_zero_erased_flash() {
    staged_transfer::<1, 4, 4096, 0x00>(MAX_CHUNK);
    staged_transfer::<1, 8, 2048, 0xFF>(100);
    staged_transfer::<4, 8, 2048, 0x00>(100);
    staged_transfer::<32, 32, 4096, 0x00>(100);
    staged_transfer::<64, 64, 4096, 0xFF>(100);
    staged_transfer::<1, 32, 2048, 0x00>(MAX_CHUNK);
}

/// Transfers a patch of several erase units in chunks of `step` bytes with
/// a power cut after the first chunks, around the first and second unit
/// boundaries, and after the last but one and the last chunk; resumes it,
/// applies it and checks the image it made.
fn staged_transfer<const R: usize, const W: usize, const E: usize, const X: u8>(step: usize) {
    let (old, mut new) = firmware_pair(7, 40_000);
    // Fresh bytes that no match covers make the patch span several units.
    new[1000..13_000].copy_from_slice(&Rng(3).bytes(12_000));
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    assert!(patch.len() > 2 * E, "patch of {} bytes", patch.len());
    let chunks = patch.len().div_ceil(step);
    let unit = E / step;
    let mut resumed_mid = 0;
    for cut in [
        0,
        1,
        unit - 1,
        unit,
        unit + 1,
        2 * unit + 1,
        chunks - 1,
        chunks,
    ] {
        let mut f = MockFlash::<R, W, E, X>::new((2 * SLOT + STAGE) as usize);
        f.preload(0, &old);
        let flash = RefCell::new(f);
        let from = transfer_with_cut(&flash, &patch, cut, step);
        if from > 0 && (from as usize) < patch.len() {
            resumed_mid += 1;
        }
        let part = Partition::new(&flash, 2 * SLOT, STAGE).unwrap();
        let mut stage = Staging::open_erased(part, X).unwrap();
        let src = Partition::new(&flash, 0, SLOT).unwrap();
        let dst = Partition::new(&flash, SLOT, SLOT).unwrap();
        let mut mem = ApplierState::new();
        let mut applier: Applier<_, _> = Applier::new(src, dst, &mut mem);
        let mut calls = 0;
        proto::feed_staged(
            &mut stage,
            &mut [0u8; 256],
            |c| applier.feed(c),
            |_| calls += 1,
        )
        .unwrap();
        let outcome = applier.finish().unwrap();
        assert_eq!(outcome, Outcome::Applied);
        assert_eq!(calls, patch.len().div_ceil(256));
        let _ = (applier.into_parts(), stage.into_inner());
        let f = flash.into_inner();
        assert_eq!(
            &f.as_bytes()[SLOT as usize..SLOT as usize + new.len()],
            &new[..],
            "write {W}, read {R}, erase {E}, erased {X:#04x}, cut after chunk {cut}"
        );
    }
    assert!(resumed_mid >= 3, "{resumed_mid} resumed midway");
}

#[test]
fn staging_refuses_what_does_not_fit_and_bad_chunks() {
    let flash = RefCell::new(Flash::new((2 * SLOT + STAGE) as usize));
    let mut stage = Staging::open(Partition::new(&flash, 2 * SLOT, STAGE).unwrap()).unwrap();
    assert_eq!(stage.resume(), None);
    assert_eq!(stage.max_size(), STAGE - 4096);
    assert!(matches!(
        proto::handle(
            &mut stage,
            &HostMsg::Chunk {
                offset: 0,
                data: &[1; 4]
            }
        ),
        Action::Fail(flashpatch::Verdict::Error, _)
    ));
    assert!(matches!(
        proto::handle(
            &mut stage,
            &HostMsg::Begin {
                size: STAGE,
                crc32: 0
            }
        ),
        Action::Fail(flashpatch::Verdict::Error, _)
    ));
    proto::handle(&mut stage, &HostMsg::Begin { size: 10, crc32: 0 });
    // Not a multiple of 4 and not the end; past the end.
    for data in [&[1u8; 3][..], &[1u8; 12][..]] {
        assert!(matches!(
            proto::handle(&mut stage, &HostMsg::Chunk { offset: 0, data }),
            Action::Fail(flashpatch::Verdict::Error, _)
        ));
    }
    assert_eq!(
        proto::handle(
            &mut stage,
            &HostMsg::Chunk {
                offset: 0,
                data: &[7; 10]
            }
        ),
        Action::Ack {
            offset: 10,
            complete: true
        }
    );
    // Wrong CRC: stored, but the check says so.
    assert!(!stage.check(&mut [0u8; 8]).unwrap());
    // Another patch starts over.
    assert_eq!(
        proto::handle(&mut stage, &HostMsg::Begin { size: 8, crc32: 1 }),
        Action::Ack {
            offset: 0,
            complete: false
        }
    );
    stage.clear().unwrap();
    assert_eq!(stage.resume(), None);
}

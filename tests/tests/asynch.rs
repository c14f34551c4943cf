//! The applier over async flash drivers runs the same logic as over
//! blocking ones: for corpus and generated pairs, cut into chunks of
//! several sizes, the async applier over drivers that are suspended at
//! every operation ([`Yielding`]) gives the same outcome, the same target
//! bytes and the same flash operations, one for one, as the blocking
//! applier. Source and target are flashes of different types, with
//! different error types, and a failing driver is reported with the flash
//! it belongs to.

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use flashpatch::mock::{MockFlash, Stats, Yielding};
use flashpatch::{
    asynch, Applier, ApplierState, ApplyError, FlashError, FlashRole, Outcome, Status,
};
use flashpatch_tests::{corpus, feed_in_pieces, firmware_pair};

type Source = MockFlash<1, 4, 4096>;
/// A target of another geometry (and so another type) than the source.
type Target = MockFlash<4, 8, 8192>;

struct Run {
    result: Result<Outcome, ApplyError>,
    target: Vec<u8>,
    stats: (Stats, Stats),
    suspensions: u64,
}

fn flashes(old: &[u8], new: &[u8]) -> (Source, Target) {
    let room = old.len().max(new.len()) + 8192;
    (Source::with_image(old.to_vec(), room), Target::new(room))
}

fn finish(
    result: Option<Result<Outcome, ApplyError>>,
    end: Result<Outcome, ApplyError>,
) -> Result<Outcome, ApplyError> {
    match result {
        Some(Err(e)) => Err(e),
        _ => end,
    }
}

fn blocking(patch: &[u8], old: &[u8], new: &[u8], chunk: usize) -> Run {
    let (mut source, mut target) = flashes(old, new);
    let mut state: ApplierState = ApplierState::new();
    let mut applier = Applier::new(&mut source, &mut target, &mut state);
    let result = feed_in_pieces(&mut applier, patch, chunk);
    Run {
        result,
        target: target.as_bytes()[..new.len()].to_vec(),
        stats: (source.stats, target.stats),
        suspensions: 0,
    }
}

fn asynchronous(patch: &[u8], old: &[u8], new: &[u8], chunk: usize) -> Run {
    let (source, target) = flashes(old, new);
    let (mut source, mut target) = (Yielding::new(source), Yielding::new(target));
    let mut state: ApplierState = ApplierState::new();
    let result = pollster::block_on(async {
        let mut applier = asynch::Applier::new(&mut source, &mut target, &mut state);
        let mut result = None;
        for piece in patch.chunks(chunk) {
            match applier.feed(piece).await {
                Ok(Status::Done(o)) => result = Some(Ok(o)),
                Ok(Status::NeedMore) => {}
                Err(e) => {
                    result = Some(Err(e));
                    break;
                }
            }
        }
        finish(result, applier.finish())
    });
    Run {
        result,
        target: target.flash.as_bytes()[..new.len()].to_vec(),
        stats: (source.flash.stats, target.flash.stats),
        suspensions: source.suspensions + target.suspensions,
    }
}

fn same_on_both_paths(name: &str, old: &[u8], new: &[u8]) -> u64 {
    let patch = host_genpat::diff(old, new, &Default::default()).unwrap();
    let mut suspensions = 0;
    for chunk in [1, 61, 4096, patch.len()] {
        if chunk == 1 && patch.len() > 40_000 {
            continue; // byte by byte only for the small patches
        }
        let b = blocking(&patch, old, new, chunk);
        let a = asynchronous(&patch, old, new, chunk);
        assert_eq!(
            b.result,
            Ok(Outcome::Applied),
            "{name}, {chunk}-byte chunks"
        );
        assert_eq!(a.result, b.result, "{name}, {chunk}-byte chunks");
        assert!(
            a.target == new && b.target == new,
            "{name}, {chunk}-byte chunks"
        );
        assert_eq!(a.stats, b.stats, "{name}: the same flash operations");
        assert_eq!(
            a.suspensions,
            b.stats.0.reads + b.stats.1.reads + b.stats.1.writes + b.stats.1.erases,
            "{name}: suspended once per flash operation"
        );
        suspensions += a.suspensions;
    }
    suspensions
}

#[test]
fn the_async_applier_does_what_the_blocking_one_does() {
    let mut pairs = 0;
    let mut suspensions = 0;
    for seed in 1..=6 {
        let (old, new) = firmware_pair(seed, 20_000 + 7_000 * seed as usize);
        suspensions += same_on_both_paths(&format!("generated {seed}"), &old, &new);
        pairs += 1;
    }
    for (name, old, new) in corpus() {
        if old.len().max(new.len()) > 400_000 {
            continue;
        }
        suspensions += same_on_both_paths(&name, &old, &new);
        pairs += 1;
    }
    println!("async applier: {pairs} pairs, {suspensions} suspended flash operations, the same results and operations as blocking");
    assert!(pairs >= 6 && suspensions > 0);
}

#[test]
fn bad_patches_fail_alike_on_both_paths() {
    let (old, new) = firmware_pair(9, 30_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let mut cases: Vec<Vec<u8>> = vec![patch[..patch.len() / 2].to_vec(), patch[..8].to_vec()];
    let mut flipped = patch.clone();
    let at = patch.len() - 100;
    flipped[at] ^= 0x10;
    cases.push(flipped);
    let mut longer = patch.clone();
    longer.push(0);
    cases.push(longer);
    let (other, _) = firmware_pair(10, 30_000);
    for case in &cases {
        let b = blocking(case, &old, &new, 997);
        let a = asynchronous(case, &old, &new, 997);
        assert!(b.result.is_err());
        assert_eq!(a.result, b.result);
        assert_eq!(a.stats, b.stats);
    }
    // A patch for another source: skipped alike.
    let b = blocking(&patch, &other, &new, 997);
    let a = asynchronous(&patch, &other, &new, 997);
    assert_eq!(b.result, Err(ApplyError::NoSuitablePatch));
    assert_eq!(a.result, b.result);
}

/// A driver with an error type of its own that fails every operation
/// after `ok` of them.
struct Failing<F> {
    flash: F,
    ok: usize,
}

#[derive(Debug)]
struct Broken;

impl NorFlashError for Broken {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

impl<F> ErrorType for Failing<F> {
    type Error = Broken;
}

impl<F: ReadNorFlash> Failing<F> {
    fn step(&mut self) -> Result<(), Broken> {
        match self.ok.checked_sub(1) {
            Some(n) => {
                self.ok = n;
                Ok(())
            }
            None => Err(Broken),
        }
    }
}

impl<F: ReadNorFlash> ReadNorFlash for Failing<F> {
    const READ_SIZE: usize = F::READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Broken> {
        self.step()?;
        self.flash.read(offset, bytes).map_err(|_| Broken)
    }

    fn capacity(&self) -> usize {
        self.flash.capacity()
    }
}

impl<F: NorFlash> NorFlash for Failing<F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Broken> {
        self.step()?;
        self.flash.erase(from, to).map_err(|_| Broken)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Broken> {
        self.step()?;
        self.flash.write(offset, bytes).map_err(|_| Broken)
    }
}

fn apply_all<S: ReadNorFlash, T: NorFlash>(
    patch: &[u8],
    source: S,
    target: T,
) -> Result<Outcome, ApplyError> {
    let mut state: ApplierState = ApplierState::new();
    let mut applier = Applier::new(source, target, &mut state);
    applier.feed(patch)?;
    applier.finish()
}

#[test]
fn a_failing_flash_is_named_with_its_kind() {
    let (old, new) = firmware_pair(11, 12_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let (source, target) = flashes(&old, &new);
    // Source and target of different types and error types (MockError and
    // Broken): the source fails at its third read.
    let failing = Failing {
        flash: source.clone(),
        ok: 2,
    };
    assert_eq!(
        apply_all(&patch, failing, target.clone()),
        Err(ApplyError::Flash(FlashError {
            role: FlashRole::Source,
            kind: NorFlashErrorKind::Other,
        }))
    );
    let failing = Failing {
        flash: target.clone(),
        ok: 5,
    };
    let e = apply_all(&patch, source.clone(), failing).unwrap_err();
    assert_eq!(
        e,
        ApplyError::Flash(FlashError {
            role: FlashRole::Target,
            kind: NorFlashErrorKind::Other,
        })
    );
    assert_eq!(e.to_string(), "the target flash failed: driver error");
    // With enough operations allowed, the same pair of types applies it.
    let failing = Failing {
        flash: target,
        ok: usize::MAX,
    };
    assert_eq!(apply_all(&patch, source, failing), Ok(Outcome::Applied));
}

/// The staging area and the device's message handling over an async
/// driver: the same answers, the same bytes and operations on flash as
/// over a blocking one, for a whole transfer, a transfer cut off by a
/// power loss and resumed, and the staged patch then applied.
#[test]
fn staging_does_over_async_flash_what_it_does_over_blocking() {
    use flashpatch::crc32::crc32;
    use flashpatch::mock::Cut;
    use flashpatch::proto::{self, Action, HostMsg, Staging};
    type Stage = MockFlash<1, 8, 4096, 0x00>;
    let (old, new) = firmware_pair(13, 30_000);
    let patch = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    let messages = |from: usize| {
        let mut m = vec![HostMsg::Begin {
            size: patch.len() as u32,
            crc32: crc32(&patch),
        }];
        let mut at = from;
        for data in patch[from..].chunks(proto::MAX_CHUNK) {
            m.push(HostMsg::Chunk {
                offset: at as u32,
                data,
            });
            at += data.len();
        }
        m
    };
    let size = patch.len().next_multiple_of(4096) + 2 * 4096;
    // Cut power at the `cut`-th flash-changing operation (none: `None`),
    // then reopen and send the rest: the answers, and the staged flash.
    let blocking = |cut: Option<u64>| {
        let mut flash = Stage::new(size);
        if let Some(n) = cut {
            flash.cut_at(n, Cut::MidWrite, 5);
        }
        let mut st = Staging::open_erased(&mut flash, 0x00).unwrap();
        let mut answers: Vec<Action> = Vec::new();
        for m in messages(0) {
            // Until the power is cut.
            match proto::handle(&mut st, &m) {
                Action::Fail(..) => break,
                a => answers.push(a),
            }
        }
        let _ = st.into_inner();
        flash.reboot();
        let mut st = Staging::open_erased(&mut flash, 0x00).unwrap();
        let from = st.resume().map_or(0, |r| r.offset as usize);
        for m in messages(from) {
            answers.push(proto::handle(&mut st, &m));
        }
        assert!(st.complete(), "cut at {cut:?}");
        let (mut source, mut target) = flashes(&old, &new);
        let mut state: ApplierState = ApplierState::new();
        let mut applier = Applier::new(&mut source, &mut target, &mut state);
        let mut buf = [0u8; 256];
        proto::feed_staged(&mut st, &mut buf, |c| applier.feed(c), |_| {}).unwrap();
        assert_eq!(applier.finish(), Ok(Outcome::Applied));
        let _ = st.into_inner();
        (answers, flash)
    };
    let asynchronous = |cut: Option<u64>| {
        let mut flash = Yielding::new(Stage::new(size));
        if let Some(n) = cut {
            flash.flash.cut_at(n, Cut::MidWrite, 5);
        }
        pollster::block_on(async {
            let mut st = proto::asynch::Staging::open_erased(&mut flash, 0x00)
                .await
                .unwrap();
            let mut answers: Vec<Action> = Vec::new();
            for m in messages(0) {
                match proto::asynch::handle(&mut st, &m).await {
                    Action::Fail(..) => break,
                    a => answers.push(a),
                }
            }
            let _ = st.into_inner();
            flash.flash.reboot();
            let mut st = proto::asynch::Staging::open_erased(&mut flash, 0x00)
                .await
                .unwrap();
            let from = st.resume().map_or(0, |r| r.offset as usize);
            for m in messages(from) {
                answers.push(proto::asynch::handle(&mut st, &m).await);
            }
            assert!(st.complete());
            // The staged patch, fed to the async applier.
            let (source, target) = flashes(&old, &new);
            let (mut source, mut target) = (Yielding::new(source), Yielding::new(target));
            let mut state: ApplierState = ApplierState::new();
            let mut applier = asynch::Applier::new(&mut source, &mut target, &mut state);
            let mut buf = [0u8; 256];
            proto::asynch::feed_staged(&mut st, &mut buf, async |c| applier.feed(c).await, |_| {})
                .await
                .unwrap();
            assert_eq!(applier.finish(), Ok(Outcome::Applied));
            assert!(target.flash.as_bytes()[..new.len()] == new[..]);
            let _ = st.into_inner();
            (answers, flash.flash)
        })
    };
    let writes = blocking(None).1.ops;
    let mut runs = 0;
    // No cut, and a cut (a torn write, or the erase before it) at every
    // flash-changing operation of the transfer.
    for cut in std::iter::once(None).chain((0..writes).map(Some)) {
        let (ba, bf) = blocking(cut);
        let (aa, af) = asynchronous(cut);
        assert_eq!(aa, ba, "cut at {cut:?}: the same answers");
        assert!(
            af.as_bytes() == bf.as_bytes(),
            "cut at {cut:?}: the same bytes staged"
        );
        assert_eq!(af.stats, bf.stats, "cut at {cut:?}: the same operations");
        assert!(
            ba.iter().all(|a| !matches!(a, Action::Fail(..))),
            "cut at {cut:?}"
        );
        runs += 1;
    }
    println!("async staging: {runs} transfers ({writes} flash-changing operations each when not cut) alike on both paths");
}

//! Runs the fuzzing harnesses of `flashpatch_tests::fuzz` in the normal
//! test run: every input kept in `tests/fuzz-regressions/<harness>/`
//! (inputs that once broke a property), then seeded random inputs. The
//! long runs are `cargo xtask fuzz`.

use std::collections::BTreeMap;
use std::path::Path;

use flashpatch::Verdict;
use flashpatch_tests::fuzz::{
    apply_bytes, apply_fixed, apply_structured, fix_checksums, fixture, proto_session,
};
use flashpatch_tests::Rng;

/// How often each verdict came out.
#[derive(Default, Debug)]
struct Tally(BTreeMap<&'static str, usize>);

impl Tally {
    fn add(&mut self, v: Verdict) {
        *self.0.entry(v.message()).or_default() += 1;
    }

    /// Asserts that every verdict a patch can earn came out at least once,
    /// so that the inputs reach every stage of the applier.
    fn assert_covers_all(&self) {
        for v in [
            Verdict::Ok,
            Verdict::AlreadyInstalled,
            Verdict::Corrupt,
            Verdict::NoSuitablePatch,
        ] {
            assert!(
                self.0.contains_key(v.message()),
                "never '{}': {self:?}",
                v.message()
            );
        }
    }
}

fn regressions(harness: &str, run: fn(&[u8]) -> Verdict) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-regressions")
        .join(harness);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.filter_map(Result::ok) {
        let data = std::fs::read(e.path()).unwrap();
        println!("replaying {}", e.path().display());
        run(&data);
        n += 1;
    }
    n
}

#[test]
fn apply_bytes_replay() {
    let kept = regressions("apply_bytes", apply_bytes);
    let f = fixture();
    let mut r = Rng(5);
    let mut tally = Tally::default();
    // The valid file, for every running image and chunk size.
    for pick in 0..=255u8 {
        let mut data = vec![pick];
        data.extend_from_slice(&f.file);
        tally.add(apply_bytes(&data));
    }
    // Random files, and the valid file with a few bytes changed.
    for i in 0..1500 {
        let data = if i % 2 == 0 {
            let n = r.below(4000);
            r.bytes(n)
        } else {
            let mut d = vec![r.below(256) as u8];
            d.extend_from_slice(&f.file);
            for _ in 0..1 + r.below(4) {
                let at = 1 + r.below(d.len() - 1);
                d[at] ^= 1 + r.below(255) as u8;
            }
            d
        };
        tally.add(apply_bytes(&data));
    }
    let runs: usize = tally.0.values().sum();
    println!("apply_bytes: {runs} seeded inputs, {kept} kept regressions, 0 failures: {tally:?}");
    tally.assert_covers_all();
}

/// Where the fixture file's checksums are: each entry's body CRC-32
/// (+72 in its header) and header CRC-32 (its last four bytes).
fn checksum_fields(file: &[u8]) -> Vec<usize> {
    let mut at = 8;
    let mut fields = Vec::new();
    while at < file.len() {
        let h = u16::from_le_bytes([file[at], file[at + 1]]) as usize;
        let body_len = u32::from_le_bytes(file[at + 70..at + 74].try_into().unwrap()) as usize;
        fields.extend([at + 2 + 72, at + 2 + h - 4]);
        at += 2 + h + body_len;
    }
    fields
}

#[test]
fn fix_checksums_restores_every_checksum() {
    let f = fixture();
    let mut file = f.file.clone();
    assert_eq!(fix_checksums(&mut file, |_, _| {}), 3);
    assert_eq!(file, f.file, "a sound file is left as it is");
    let fields = checksum_fields(&f.file);
    assert_eq!(fields.len(), 6);
    for &at in &fields {
        file[at..at + 4].copy_from_slice(&[0xA5; 4]);
    }
    let mut data = vec![0];
    data.extend_from_slice(&file);
    assert_eq!(apply_bytes(&data), Verdict::Corrupt);
    // Image 0, no identities changed: the checksums alone get it through.
    data.insert(1, 0);
    assert_eq!(apply_fixed(&data), Verdict::Ok);
    assert_eq!(fix_checksums(&mut file, |_, _| {}), 3);
    assert_eq!(file, f.file, "every checksum is made right again");
}

#[test]
fn apply_fixed_replay() {
    let kept = regressions("apply_fixed", apply_fixed);
    let f = fixture();
    let mut r = Rng(8);
    let mut tally = Tally::default();
    // The valid file, for every running image and chunk size, with the
    // source identities as they are and with all of them the running
    // image's.
    for pick in 0..=255u8 {
        for mask in [0, 0xFF] {
            let mut data = vec![pick, mask];
            data.extend_from_slice(&f.file);
            tally.add(apply_fixed(&data));
        }
    }
    // The valid file with a few bytes of its entries changed, through the
    // raw harness and through this one; and random files. The running
    // image is the first entry's source (every chunk size): with the
    // source identities made the running image's, that entry is the one
    // decoded, and against its own source. Against another image a body
    // is refused as corrupt whatever was changed (with carry kinds the
    // source bytes steer the decoding), which the loop above covers.
    let (mut raw_ok, mut fixed_ok, mut changed) = (0, 0, 0);
    for i in 0..1500 {
        if i % 4 == 3 {
            let n = r.below(600);
            tally.add(apply_fixed(&r.bytes(n)));
            continue;
        }
        let mut file = f.file.clone();
        for _ in 0..1 + r.below(4) {
            let at = 8 + r.below(file.len() - 8);
            file[at] ^= 1 + r.below(255) as u8;
        }
        let n = f.images.len();
        let pick = (n * r.below(256 / n)) as u8;
        let raw = apply_bytes(&[&[pick][..], &file].concat());
        let fixed = apply_fixed(&[&[pick, 0xFF][..], &file].concat());
        raw_ok += (raw == Verdict::Ok) as usize;
        fixed_ok += (fixed == Verdict::Ok) as usize;
        changed += 1;
        tally.add(fixed);
    }
    let runs: usize = tally.0.values().sum();
    println!(
        "apply_fixed: {runs} seeded inputs, {kept} kept regressions, 0 failures: {tally:?}; \
         of {changed} files with bytes changed, {fixed_ok} OK here, {raw_ok} through apply_bytes"
    );
    tally.assert_covers_all();
    assert_eq!(
        raw_ok, 0,
        "a changed byte got past the CRC-32s of apply_bytes"
    );
    assert!(
        fixed_ok * 3 >= changed,
        "only {fixed_ok} of {changed} changed files got through the fixed-up checksums"
    );
}

#[test]
fn apply_structured_replay() {
    let kept = regressions("apply_structured", apply_structured);
    // Image 0, chunk 1, the signed file applied with its key, no edits;
    // then the same with one signature or body-digest bit flipped.
    let signed = [0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0];
    assert_eq!(apply_structured(&signed), Verdict::Ok);
    for bit in 0..8u8 {
        // One edit, of entry 0: op 13 (a trust bit), which one by `bit`.
        let mut data = signed[..9].to_vec();
        data.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 13, 0, 0, 0]);
        data.extend_from_slice(&[bit, bit, 0, 0, 0, bit, 0, 0, 0]);
        assert_eq!(apply_structured(&data), Verdict::Corrupt, "trust bit {bit}");
    }
    let mut r = Rng(6);
    let mut tally = Tally::default();
    for _ in 0..1500 {
        let n = r.below(64);
        tally.add(apply_structured(&r.bytes(n)));
    }
    let runs: usize = tally.0.values().sum();
    println!(
        "apply_structured: {runs} seeded inputs, {kept} kept regressions, 0 failures: {tally:?}"
    );
    tally.assert_covers_all();
}

#[test]
fn proto_session_replay() {
    let kept = regressions("proto_session", |d| {
        proto_session(d);
        Verdict::Ok
    });
    let mut r = Rng(7);
    let (mut runs, mut frames, mut complete) = (0, 0, 0);
    for i in 0..600 {
        let n = r.below(if i % 2 == 0 { 300 } else { 3000 });
        let mut data = r.bytes(n);
        if let Some(b) = data.first_mut() {
            *b = i as u8; // alternate raw bytes and built frames
        }
        let (f, done) = proto_session(&data);
        frames += f;
        complete += done as usize;
        runs += 1;
    }
    assert!(
        frames > runs,
        "built frames must get through: {frames} in {runs} runs"
    );
    assert!(complete > 0, "no seeded run completed a transfer");
    println!(
        "proto_session: {runs} seeded inputs ({frames} frames accepted, {complete} transfers completed and applied), {kept} kept regressions, 0 failures"
    );
}

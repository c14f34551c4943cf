//! Arbitrary bytes as a patch file, its checksums made right after
//! mutation: see `flashpatch_tests::fuzz::apply_fixed`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    flashpatch_tests::fuzz::apply_fixed(data);
});

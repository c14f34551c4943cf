//! Arbitrary bytes as a patch file: see `flashpatch_tests::fuzz::apply_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    flashpatch_tests::fuzz::apply_bytes(data);
});

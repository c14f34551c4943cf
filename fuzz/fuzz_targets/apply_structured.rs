//! Structured mutations of a valid multi-patch file: see
//! `flashpatch_tests::fuzz::apply_structured`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    flashpatch_tests::fuzz::apply_structured(data);
});

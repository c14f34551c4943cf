//! Bytes from the link into a device's protocol session: see
//! `flashpatch_tests::fuzz::proto_session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    flashpatch_tests::fuzz::proto_session(data);
});

//! What one build of an application is (`DEMO_VERSION`, `DEMO_BAD`,
//! `DEMO_BLOB`, which `build.rs` makes build inputs): its version text and
//! tag, its self-test, and the data that differs per version. Both
//! applications (`app`, A/B; `inplace`) are built from these.

use crate::{log, VERSION_MAGIC, VERSION_TAG_LEN};

/// The version text of this build.
pub const VERSION: &str = match option_env!("DEMO_VERSION") {
    Some(v) => v,
    None => "v1",
};

/// This build's version tag (`VERSION_MAGIC`, a length byte and the
/// text): an application puts it where `link/app/memory.x` places the
/// section `.fpversion`.
pub const fn version_tag() -> [u8; VERSION_TAG_LEN] {
    let mut t = [0u8; VERSION_TAG_LEN];
    let v = VERSION.as_bytes();
    assert!(
        v.len() <= t.len() - 5,
        "DEMO_VERSION is too long for the tag"
    );
    let mut i = 0;
    while i < 4 {
        t[i] = VERSION_MAGIC[i];
        i += 1;
    }
    t[4] = v.len() as u8;
    let mut j = 0;
    while j < v.len() {
        t[5 + j] = v[j];
        j += 1;
    }
    t
}

/// Whether this build's self-test fails.
const BAD: bool = option_env!("DEMO_BAD").is_some();

/// Data that differs per version (`DEMO_BLOB` set: 16 KiB), standing in
/// for a larger change, so that a transfer lasts long enough to be cut.
const BLOB_LEN: usize = if option_env!("DEMO_BLOB").is_some() {
    16384
} else {
    0
};
static BLOB: [u8; BLOB_LEN] = blob();

// With no blob the loop below does nothing, which clippy sees.
#[allow(clippy::absurd_extreme_comparisons)]
const fn blob() -> [u8; BLOB_LEN] {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let v = VERSION.as_bytes();
    let mut i = 0;
    while i < v.len() {
        seed = (seed ^ v[i] as u64).wrapping_mul(0x100_0000_01B3);
        i += 1;
    }
    let mut out = [0u8; BLOB_LEN];
    let mut j = 0;
    while j < BLOB_LEN {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out[j] = (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        j += 1;
    }
    out
}

/// The application's self-test: the bad build (`DEMO_BAD`) fails it.
pub fn self_test() -> bool {
    let sum = BLOB
        .iter()
        .fold(0u32, |a, &b| a.wrapping_mul(31).wrapping_add(b as u32));
    log!("app: self-test (data checksum {sum:08x})");
    !core::hint::black_box(BAD)
}

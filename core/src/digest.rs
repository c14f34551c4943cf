//! The compression functions of the whole-image digests: MD5 (RFC 1321)
//! for the source check and SHA-256 (FIPS 180-4) for the target
//! read-back. `apply::io` pads the last block itself, so a compression
//! function over whole 64-byte blocks is all it needs.
//!
//! On devices (`target_os = "none"`) both are the compact ones of this
//! module, written for code size first (the apply path's budget is 8 KiB
//! of Thumb code): MD5 as one loop over its 64 steps, SHA-256 as its
//! message schedule, then one loop of four unrolled rounds. Together they
//! are about 1 KiB of Thumb code, where the `md-5` crate unrolls MD5 into
//! 1.8 KiB, and SHA-256 takes about 52 instructions per byte on a
//! Cortex-M4 against 62 for the `sha2` crate's compact backend; MD5 about
//! 20 against `md-5`'s 12 (`docs/CODEC.md` has the variants measured). On
//! hosts the work goes to `md-5` and `sha2` (SHA-NI and the like); the
//! compact functions are tested there against those crates.

#[cfg(target_os = "none")]
pub(crate) use compact::{md5 as md5_compress, sha256 as sha256_compress};
#[cfg(not(target_os = "none"))]
pub(crate) use md5::block_api::compress as md5_compress;
#[cfg(not(target_os = "none"))]
pub(crate) use sha2::block_api::compress256 as sha256_compress;

/// MD5's initial chaining value (RFC 1321 §3.3).
pub(crate) const MD5_INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// SHA-256's initial hash value (FIPS 180-4 §5.3.3): the first 32 bits of
/// the fractional parts of the square roots of the first eight primes.
pub(crate) const SHA256_INIT: [u32; 8] = {
    let p = primes::<8>();
    let mut h = [0u32; 8];
    let mut i = 0;
    while i < 8 {
        // frac(√p) · 2³² = ⌊√(p · 2⁶⁴)⌋ mod 2³²
        h[i] = ((p[i] as u128) << 64).isqrt() as u32;
        i += 1;
    }
    h
};

/// The first `N` primes.
const fn primes<const N: usize>() -> [u32; N] {
    let mut p = [0u32; N];
    let (mut n, mut found) = (2u32, 0);
    while found < N {
        let mut d = 2;
        while d * d <= n && n % d != 0 {
            d += 1;
        }
        if d * d > n {
            p[found] = n;
            found += 1;
        }
        n += 1;
    }
    p
}

#[cfg(any(test, target_os = "none"))]
mod compact {
    /// SHA-256's round constants (FIPS 180-4 §4.2.2): the first 32 bits of
    /// the fractional parts of the cube roots of the first 64 primes.
    static K: [u32; 64] = {
        let p = super::primes::<64>();
        let mut k = [0u32; 64];
        let mut i = 0;
        while i < 64 {
            // frac(∛p) · 2³² = ⌊∛(p · 2⁹⁶)⌋ mod 2³², found bit by bit
            // (the root is below 2³⁵).
            let n = (p[i] as u128) << 96;
            let mut r = 0u128;
            let mut bit = 1u128 << 35;
            while bit > 0 {
                let t = r | bit;
                if t * t * t <= n {
                    r = t;
                }
                bit >>= 1;
            }
            k[i] = r as u32;
            i += 1;
        }
        k
    };

    /// Runs SHA-256's compression function over `blocks`: the whole
    /// message schedule first, each word with its round constant added
    /// once nothing needs it any more, then [`sixty_four_rounds`].
    pub(crate) fn sha256(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
        for block in blocks {
            let mut w = [0u32; 64];
            for (w, b) in w.iter_mut().zip(block.as_chunks::<4>().0) {
                *w = u32::from_be_bytes(*b);
            }
            for (t, k) in K.iter().enumerate() {
                if let Some(win) = w.get_mut(t..t + 17) {
                    // W[t+16] = σ1(W[t+14]) + W[t+9] + σ0(W[t+1]) + W[t]
                    let (x, y) = (win[1], win[14]);
                    let s0 = x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3);
                    let s1 = y.rotate_right(17) ^ y.rotate_right(19) ^ (y >> 10);
                    win[16] = win[0]
                        .wrapping_add(s0)
                        .wrapping_add(win[9])
                        .wrapping_add(s1);
                }
                w[t] = w[t].wrapping_add(*k);
            }
            sixty_four_rounds(state, &w);
        }
    }

    /// The 64 rounds of SHA-256 from the chaining value `v`, given each
    /// round's message word plus round constant, and the result added to
    /// `v`: a loop of four rounds unrolled with the working variables'
    /// names rotated, after which the two halves trade places.
    #[inline(never)]
    fn sixty_four_rounds(v: &mut [u32; 8], kw: &[u32; 64]) {
        macro_rules! round {
            ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {
                $h = $h
                    .wrapping_add($e.rotate_right(6) ^ $e.rotate_right(11) ^ $e.rotate_right(25))
                    .wrapping_add($g ^ ($e & ($f ^ $g)))
                    .wrapping_add($kw);
                $d = $d.wrapping_add($h);
                $h = $h
                    .wrapping_add($a.rotate_right(2) ^ $a.rotate_right(13) ^ $a.rotate_right(22))
                    .wrapping_add(($a & $b) | ($c & ($a | $b)));
            };
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *v;
        for kw in kw.as_chunks::<4>().0 {
            round!(a, b, c, d, e, f, g, h, kw[0]);
            round!(h, a, b, c, d, e, f, g, kw[1]);
            round!(g, h, a, b, c, d, e, f, kw[2]);
            round!(f, g, h, a, b, c, d, e, kw[3]);
            (a, b, c, d, e, f, g, h) = (e, f, g, h, a, b, c, d);
        }
        for (v, x) in v.iter_mut().zip([a, b, c, d, e, f, g, h].iter()) {
            *v = v.wrapping_add(*x);
        }
    }

    /// MD5's sine table (RFC 1321 §3.4): `T[i] = ⌊2³² · |sin(i + 1)|⌋`.
    #[rustfmt::skip]
    static T: [u32; 64] = [
        0xd76a_a478, 0xe8c7_b756, 0x2420_70db, 0xc1bd_ceee,
        0xf57c_0faf, 0x4787_c62a, 0xa830_4613, 0xfd46_9501,
        0x6980_98d8, 0x8b44_f7af, 0xffff_5bb1, 0x895c_d7be,
        0x6b90_1122, 0xfd98_7193, 0xa679_438e, 0x49b4_0821,
        0xf61e_2562, 0xc040_b340, 0x265e_5a51, 0xe9b6_c7aa,
        0xd62f_105d, 0x0244_1453, 0xd8a1_e681, 0xe7d3_fbc8,
        0x21e1_cde6, 0xc337_07d6, 0xf4d5_0d87, 0x455a_14ed,
        0xa9e3_e905, 0xfcef_a3f8, 0x676f_02d9, 0x8d2a_4c8a,
        0xfffa_3942, 0x8771_f681, 0x6d9d_6122, 0xfde5_380c,
        0xa4be_ea44, 0x4bde_cfa9, 0xf6bb_4b60, 0xbebf_bc70,
        0x289b_7ec6, 0xeaa1_27fa, 0xd4ef_3085, 0x0488_1d05,
        0xd9d4_d039, 0xe6db_99e5, 0x1fa2_7cf8, 0xc4ac_5665,
        0xf429_2244, 0x432a_ff97, 0xab94_23a7, 0xfc93_a039,
        0x655b_59c3, 0x8f0c_cc92, 0xffef_f47d, 0x8584_5dd1,
        0x6fa8_7e4f, 0xfe2c_e6e0, 0xa301_4314, 0x4e08_11a1,
        0xf753_7e82, 0xbd3a_f235, 0x2ad7_d2bb, 0xeb86_d391,
    ];

    /// Runs MD5's compression function over `blocks`: one loop over the
    /// 64 steps, four at a time with the state's names rotated, where
    /// each step picks its round's function, message word and rotation.
    pub(crate) fn md5(state: &mut [u32; 4], blocks: &[[u8; 64]]) {
        // Round r's step i reads message word (MUL[r]·i + ADD[r]) mod 16
        // and rotates left by ROT[r][i mod 4] (RFC 1321 §3.4).
        const MUL: [usize; 4] = [1, 5, 3, 7];
        const ADD: [usize; 4] = [0, 1, 5, 0];
        const ROT: [[u32; 4]; 4] = [
            [7, 12, 17, 22],
            [5, 9, 14, 20],
            [4, 11, 16, 23],
            [6, 10, 15, 21],
        ];
        for block in blocks {
            let m = block.as_chunks::<4>().0;
            let [mut a, mut b, mut c, mut d] = *state;
            for i in (0..64).step_by(4) {
                let r = (i / 16) & 3;
                macro_rules! step {
                    ($a:ident, $b:ident, $c:ident, $d:ident, $k:literal) => {
                        let f = match r {
                            0 => $d ^ ($b & ($c ^ $d)),
                            1 => $c ^ ($d & ($b ^ $c)),
                            2 => $b ^ $c ^ $d,
                            _ => $c ^ ($b | !$d),
                        };
                        let w = m[(MUL[r] * (i + $k) + ADD[r]) & 15];
                        $a = $b.wrapping_add(
                            $a.wrapping_add(f)
                                .wrapping_add(u32::from_le_bytes(w))
                                .wrapping_add(T[(i + $k) & 63])
                                .rotate_left(ROT[r][$k]),
                        );
                    };
                }
                step!(a, b, c, d, 0);
                step!(d, a, b, c, 1);
                step!(c, d, a, b, 2);
                step!(b, c, d, a, 3);
            }
            for (x, v) in state.iter_mut().zip([a, b, c, d]) {
                *x = x.wrapping_add(v);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use sha2::Digest;

        /// Pads `msg` as MD5 and SHA-256 do (0x80, zeros, the length in
        /// bits in 8 bytes) into `out`; returns the blocks.
        fn pad<'a>(msg: &[u8], big_endian: bool, out: &'a mut [u8; 1152]) -> &'a [[u8; 64]] {
            let n = msg.len();
            let total = (n + 9).div_ceil(64) * 64;
            out[..n].copy_from_slice(msg);
            out[n] = 0x80;
            out[n + 1..total - 8].fill(0);
            let bits = n as u64 * 8;
            out[total - 8..total].copy_from_slice(&if big_endian {
                bits.to_be_bytes()
            } else {
                bits.to_le_bytes()
            });
            out[..total].as_chunks().0
        }

        fn sha256(msg: &[u8]) -> [u8; 32] {
            let mut state = super::super::SHA256_INIT;
            super::sha256(&mut state, pad(msg, true, &mut [0; 1152]));
            let mut out = [0u8; 32];
            for (o, w) in out.chunks_exact_mut(4).zip(state) {
                o.copy_from_slice(&w.to_be_bytes());
            }
            out
        }

        fn md5(msg: &[u8]) -> [u8; 16] {
            let mut state = super::super::MD5_INIT;
            super::md5(&mut state, pad(msg, false, &mut [0; 1152]));
            let mut out = [0u8; 16];
            for (o, w) in out.chunks_exact_mut(4).zip(state) {
                o.copy_from_slice(&w.to_le_bytes());
            }
            out
        }

        fn hex(s: &str) -> impl Iterator<Item = u8> + '_ {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        }

        #[test]
        fn sha256_fips_180_examples() {
            let cases: [(&[u8], &str); 3] = [
                (
                    b"abc",
                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                ),
                (
                    b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
                ),
                (
                    b"",
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                ),
            ];
            for (msg, want) in cases {
                assert!(sha256(msg).into_iter().eq(hex(want)), "{msg:?}");
            }
        }

        #[test]
        fn md5_rfc_1321_test_suite() {
            let cases: [(&[u8], &str); 7] = [
                (b"", "d41d8cd98f00b204e9800998ecf8427e"),
                (b"a", "0cc175b9c0f1b6a831c399e269772661"),
                (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
                (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
                (
                    b"abcdefghijklmnopqrstuvwxyz",
                    "c3fcd3d76192e4007dfb496cca67e13b",
                ),
                (
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                    "d174ab98d277d9f5a5611c2c9f419d9f",
                ),
                (
                    b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                    "57edf4a22be3c955ac49da2e2107b67a",
                ),
            ];
            for (msg, want) in cases {
                assert!(md5(msg).into_iter().eq(hex(want)), "{msg:?}");
            }
        }

        #[test]
        fn match_the_digest_crates_for_every_length_to_1_kib() {
            let data: [u8; 1100] = core::array::from_fn(|i| (i * 131 + i / 7) as u8 ^ 0x5A);
            for n in 0..=data.len() {
                let msg = &data[..n];
                let want: [u8; 32] = sha2::Sha256::digest(msg).into();
                assert_eq!(sha256(msg), want, "SHA-256 of {n} bytes");
                let want: [u8; 16] = ::md5::Md5::digest(msg).into();
                assert_eq!(md5(msg), want, "MD5 of {n} bytes");
            }
        }

        #[test]
        fn constants_are_the_standards() {
            // Spot checks against the printed tables: FIPS 180-4 §4.2.2
            // and §5.3.3.
            assert_eq!(
                (super::K[0], super::K[1], super::K[63]),
                (0x428a_2f98, 0x7137_4491, 0xc671_78f2)
            );
            assert_eq!(
                (super::super::SHA256_INIT[0], super::super::SHA256_INIT[7]),
                (0x6a09_e667, 0x5be0_cd19)
            );
        }
    }
}

//! Codec 3: operations (copy, seek-and-copy, byte difference, literal run)
//! coded with a binary adaptive range coder and small context models.
//!
//! See `docs/FORMAT.md` for the normative description.

pub mod model;
pub mod rc;

pub use model::{Model, Op, Params, MAX_OP_INPUT};
pub use rc::{BitIo, ByteSource, Decoder, DecoderState, Encoder};

/// The codec identifier of codec 3 in an entry header.
pub const CODEC_RC3: u8 = 3;

/// Bytes of the saved decoder state: the range decoder's, then the
/// model's (their `field` lists, `crate::snapshot`).
pub const SAVED_LEN: usize = rc::DecoderState::SAVED_LEN + Model::SAVED_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    /// A model that has adapted: every table touched by coding some ops.
    fn adapted() -> (Model, DecoderState) {
        let mut m = Model::new(Params {
            lc: 1,
            lp: 0,
            wp: 0,
            kc: 1,
            sk: 1,
        });
        let mut sink = |_b: u8| {};
        let mut enc = Encoder::new(&mut sink);
        for i in 0..200u32 {
            let op = match i % 4 {
                0 => Op::Copy { len: i + 1 },
                1 => Op::Seek {
                    delta: -(i as i64) - 1,
                    len: 3 * i + 1,
                },
                2 => Op::Diff { d: i as u8 | 1 },
                _ => Op::Lit { len: i % 7 + 1 },
            };
            // A cursor in the 100-byte source at first, past it later.
            m.op(&mut enc, i, i / 2, 100, op);
            m.literal(&mut enc, i as u8, i, (i * 7) as u8);
        }
        let bytes = [0u8, 0x12, 0x34, 0x56, 0x78];
        let mut it = bytes.iter().copied();
        struct It<'a>(&'a mut dyn Iterator<Item = u8>);
        impl ByteSource for It<'_> {
            fn next(&mut self) -> Option<u8> {
                self.0.next()
            }
        }
        let rc = DecoderState::start(&mut It(&mut it)).unwrap();
        (m, rc)
    }

    fn saved(rc: &DecoderState, m: &Model) -> ([u8; SAVED_LEN], usize) {
        let (mut rc, mut m) = (*rc, m.clone());
        let mut out = [0u8; SAVED_LEN];
        let n = crate::snapshot::save(&mut rc, &mut out);
        let n = n + crate::snapshot::save(&mut m, &mut out[n..]);
        (out, n)
    }

    fn load(bytes: &[u8]) -> Option<(DecoderState, Model)> {
        let mut rc = DecoderState::default();
        let mut m = Model::new(Params::default());
        let n = DecoderState::SAVED_LEN;
        let ok = bytes.len() >= n
            && crate::snapshot::load(&mut rc, &bytes[..n])
            && crate::snapshot::load(&mut m, &bytes[n..])
            && rc.valid()
            && m.valid();
        ok.then_some((rc, m))
    }

    #[test]
    fn state_round_trips_exactly() {
        let (m, rc) = adapted();
        assert_ne!(m, Model::new(m.params()), "the model did not adapt");
        let (bytes, n) = saved(&rc, &m);
        assert_eq!(n, SAVED_LEN);
        let (rc2, m2) = load(&bytes).unwrap();
        assert_eq!((rc2, &m2), (rc, &m));
    }

    #[test]
    fn reset_is_new() {
        let (mut m, _) = adapted();
        let params = Params {
            lc: 0,
            lp: 1,
            wp: 0,
            kc: 1,
            sk: 0,
        };
        assert_ne!(m, Model::new(params));
        m.reset(params);
        assert_eq!(m, Model::new(params));
    }

    /// `model::AFTER_DIFF`, the kind a saved state records after a `Diff`.
    const AFTER_DIFF_KIND: u8 = 2;

    #[test]
    fn impossible_states_are_refused() {
        let (m, rc) = adapted();
        let (bytes, _) = saved(&rc, &m);
        assert!(load(&bytes[..SAVED_LEN - 1]).is_none(), "short input");
        let mut bad = bytes;
        bad[SAVED_LEN - 2..].copy_from_slice(&0u16.to_le_bytes()); // p = 0
        assert!(load(&bad).is_none());
        let mut bad = bytes;
        bad[SAVED_LEN - 2..].copy_from_slice(&2048u16.to_le_bytes()); // p = 1
        assert!(load(&bad).is_none());
        let mut bad = bytes;
        bad[8] = 4; // previous-op context
        assert!(load(&bad).is_none());
        let mut bad = bytes;
        bad[10] = 0x05; // lc = 1 and lp = 1
        assert!(load(&bad).is_none());
        // A carry of 1 is only ever left by a `Diff`: the previous kind
        // (byte 8) must be one, whatever the carry kinds do with it.
        let mut ok = bytes;
        (ok[8], ok[28]) = (AFTER_DIFF_KIND, 1);
        assert!(load(&ok).is_some());
        let mut bad = ok;
        bad[8] = AFTER_DIFF_KIND - 1;
        assert!(load(&bad).is_none());
        let mut bad = bytes;
        bad[..4].copy_from_slice(&0x00FF_FFFFu32.to_le_bytes()); // range < 2^24
        assert!(load(&bad).is_none());
    }
}

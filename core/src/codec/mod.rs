//! Codec 1: operations (copy, seek-and-copy, byte difference, literal run)
//! coded with a binary adaptive range coder and small context models.
//!
//! See `docs/FORMAT.md` for the normative description.

pub mod model;
pub mod rc;

pub use model::{Model, Op, Params, MAX_OP_INPUT};
pub use rc::{BitIo, ByteSource, Decoder, DecoderState, Encoder};

/// The codec identifier of codec 1 in an entry header.
pub const CODEC_RC1: u8 = 1;

/// Bytes of the saved decoder state (range decoder and model), as
/// [`save_state`] writes it.
pub const SAVED_LEN: usize = rc::DecoderState::SAVED_LEN + Model::SAVED_LEN;

/// Writes the whole decoder state (range decoder, then every model
/// probability) to `out`, [`SAVED_LEN`] bytes in pieces. The one place that
/// knows what the codec's state is: a codec change updates this pair.
pub fn save_state(rc: &DecoderState, model: &Model, out: &mut dyn FnMut(&[u8])) {
    rc.save(out);
    model.save(out);
}

/// Reads back what [`save_state`] wrote, in place, from `input` (which
/// fills the slice it is given and returns `false` if it cannot). `false`
/// if the bytes are not a state the decoder can be in; `rc` and `model`
/// are then unusable.
pub fn load_state(
    rc: &mut DecoderState,
    model: &mut Model,
    input: &mut dyn FnMut(&mut [u8]) -> bool,
) -> bool {
    rc.load(input) && model.load(input)
}

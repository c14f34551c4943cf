//! Codec 2: operations (copy, seek-and-copy, byte difference, literal run)
//! coded with a binary adaptive range coder and small context models.
//!
//! See `docs/FORMAT.md` for the normative description.

pub mod model;
pub mod rc;

pub use model::{Model, Op, Params, MAX_OP_INPUT};
pub use rc::{BitIo, ByteSource, Decoder, DecoderState, Encoder};

/// The codec identifier of codec 2 in an entry header.
pub const CODEC_RC2: u8 = 2;

//! Frames: a payload and its CRC-32, COBS-encoded, ended by one zero byte.
//!
//! ```text
//!  on the wire:  COBS( payload | CRC-32(payload), little-endian ) 0x00
//! ```
//!
//! COBS removes every zero byte from the encoded part, so a zero always
//! ends a frame and a receiver that joins in the middle of a stream, or
//! sees garbage, finds the next frame at the next zero.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use crate::crc32::crc32;

/// The largest payload (postcard bytes of one message).
pub const MAX_PAYLOAD: usize = 320;
/// The largest encoded frame, delimiter included.
pub const MAX_FRAME: usize = cobs_max(MAX_PAYLOAD + 4) + 1;

/// The COBS-encoded size of `n` bytes, at most.
pub const fn cobs_max(n: usize) -> usize {
    n + n / 254 + 1
}

/// Why a frame was refused or could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError {
    /// More bytes arrived before a delimiter than a frame can have.
    TooLong,
    /// The COBS encoding is broken.
    Cobs,
    /// The frame is shorter than its CRC.
    Short,
    /// The CRC-32 does not match.
    Crc,
    /// The payload is not a message of this protocol.
    Message,
    /// The message does not fit in a frame.
    TooBig,
}

/// The largest frame a device sends: every [`DeviceMsg`] fits (a
/// `Hello` with the longest version string is the largest), so a device's
/// send buffer is this, not [`MAX_FRAME`].
///
/// [`DeviceMsg`]: super::msg::DeviceMsg
pub const MAX_DEVICE_FRAME: usize = 128;

/// Encodes `msg` as one frame into `out`; returns the frame's length
/// (delimiter included). `out` is the only buffer: the payload is
/// serialized into its tail and COBS-encoded in place. [`MAX_FRAME`] bytes
/// hold any message; fewer hold smaller ones, with room for COBS's worst
/// case (up to a byte more than the frame; [`FrameError::TooBig`] if `msg`
/// does not fit).
pub fn encode<T: Serialize>(msg: &T, out: &mut [u8]) -> Result<usize, FrameError> {
    // COBS adds one byte, and one more per 254 bytes: at most `skip` for
    // anything that fits in `out`. With the raw bytes that far in, the
    // encoder's output never overtakes its input.
    let skip = 1 + out.len() / 254;
    let room = out
        .len()
        .checked_sub(skip + 4 + 1)
        .ok_or(FrameError::TooBig)?
        .min(MAX_PAYLOAD);
    let n = postcard::to_slice(msg, &mut out[skip..skip + room])
        .map_err(|_| FrameError::TooBig)?
        .len();
    let crc = crc32(&out[skip..skip + n]).to_le_bytes();
    out[skip + n..skip + n + 4].copy_from_slice(&crc);
    let len = cobs_encode_in_place(out, skip, n + 4);
    out[len] = 0;
    Ok(len + 1)
}

/// COBS-encodes the `n` bytes at `buf[from..]` into `buf[..]`, where
/// `from` is at least the encoding's overhead (`cobs_max(n) - n`); returns
/// the encoded length. Byte `k` of the input is read before anything is
/// written at or after its place: the output is at most
/// `1 + k + k / 254` bytes long then.
fn cobs_encode_in_place(buf: &mut [u8], from: usize, n: usize) -> usize {
    let mut code_at = 0;
    let mut o = 1;
    let mut code = 1u8;
    for i in from..from + n {
        let b = buf[i];
        if b == 0 {
            buf[code_at] = code;
            code_at = o;
            o += 1;
            code = 1;
        } else {
            buf[o] = b;
            o += 1;
            code += 1;
            if code == 0xFF {
                buf[code_at] = code;
                code_at = o;
                o += 1;
                code = 1;
            }
        }
    }
    buf[code_at] = code;
    o
}

/// Decodes COBS in place; returns the decoded length.
fn cobs_decode(buf: &mut [u8]) -> Result<usize, FrameError> {
    let (mut i, mut o) = (0, 0);
    while i < buf.len() {
        let code = buf[i] as usize;
        if code == 0 || i + code > buf.len() {
            return Err(FrameError::Cobs);
        }
        buf.copy_within(i + 1..i + code, o);
        o += code - 1;
        i += code;
        if code != 0xFF && i < buf.len() {
            buf[o] = 0;
            o += 1;
        }
    }
    Ok(o)
}

/// Gathers frames from a byte stream, push-style: hand it whatever bytes
/// arrived, get back each frame's payload as its delimiter arrives.
pub struct FrameDecoder {
    /// The frame's bytes so far; once a frame is handed out, its decoded
    /// bytes, until the next call.
    buf: Vec<u8, MAX_FRAME>,
    /// The frame so far did not fit: it is refused at its delimiter.
    overflow: bool,
    /// `buf` holds the frame handed out by the last call.
    handed_out: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder waiting for the start of a frame.
    pub const fn new() -> Self {
        FrameDecoder {
            buf: Vec::new(),
            overflow: false,
            handed_out: false,
        }
    }

    /// Takes bytes from `input` up to and including the first frame
    /// delimiter. Returns how many bytes were taken and, if a delimiter
    /// was among them, the frame: its checked payload, or why it was
    /// refused. Empty frames (two zeros in a row) are skipped. Call again
    /// with the rest of `input`.
    pub fn feed<'s>(&'s mut self, input: &[u8]) -> (usize, Option<Result<&'s [u8], FrameError>>) {
        if core::mem::take(&mut self.handed_out) {
            self.buf.clear();
        }
        for (i, &b) in input.iter().enumerate() {
            if b != 0 {
                self.overflow |= self.buf.push(b).is_err();
                continue;
            }
            let overflow = core::mem::take(&mut self.overflow);
            if self.buf.is_empty() && !overflow {
                continue;
            }
            self.handed_out = true;
            return (i + 1, Some(self.finish(overflow)));
        }
        (input.len(), None)
    }

    fn finish(&mut self, overflow: bool) -> Result<&[u8], FrameError> {
        if overflow {
            return Err(FrameError::TooLong);
        }
        let n = cobs_decode(&mut self.buf)?;
        if n < 4 {
            return Err(FrameError::Short);
        }
        let (payload, crc) = self.buf[..n].split_at(n - 4);
        if crc32(payload).to_le_bytes() != crc {
            return Err(FrameError::Crc);
        }
        Ok(payload)
    }
}

/// Reads a message from a frame's payload.
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FrameError> {
    postcard::from_bytes(payload).map_err(|_| FrameError::Message)
}

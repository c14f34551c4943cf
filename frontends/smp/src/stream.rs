//! SMP over a byte stream (a TCP connection, a BLE or USB pipe that may
//! split and join writes): messages follow one another unframed, each
//! its 8-byte header and the body length the header gives, as SMP's UDP
//! and Bluetooth transports send them. The stream is taken to be
//! reliable, as those are: a message whose body is longer than the
//! buffer is skipped (its length is known), and the next one is read.
//! An answer is sent as it is: header and body.

use crate::header::{self, Header};

/// What a byte fed to the [`Decoder`] completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing yet.
    None,
    /// A whole message: [`Decoder::frame`] holds it.
    Frame,
    /// A message longer than the buffer, or a header that is not SMP's
    /// (an unknown operation): its bytes were skipped.
    Bad,
}

/// Reassembles SMP messages from a byte stream in `N` bytes of buffer
/// (the longest message it takes, header included).
pub struct Decoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Bytes still to skip of a message that does not fit.
    skip: usize,
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Decoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        const { assert!(N >= header::LEN, "the buffer must hold a header") };
        Decoder {
            buf: [0; N],
            len: 0,
            skip: 0,
        }
    }

    /// The last complete message (after [`Event::Frame`]).
    pub fn frame(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The whole length of the message whose header is in the buffer.
    fn declared(&self) -> usize {
        let b = &self.buf;
        header::LEN + u16::from_be_bytes([b[2], b[3]]) as usize
    }

    /// [`Event::Bad`] once the last byte of a skipped message is in.
    fn skipped(&self) -> Event {
        if self.skip == 0 {
            Event::Bad
        } else {
            Event::None
        }
    }

    /// Feeds one byte of the stream.
    pub fn feed(&mut self, b: u8) -> Event {
        if self.skip > 0 {
            self.skip -= 1;
            return self.skipped();
        }
        // A frame handed out last time: this byte starts the next.
        if self.len >= header::LEN && self.len == self.declared() {
            self.len = 0;
        }
        self.buf[self.len] = b;
        self.len += 1;
        if self.len < header::LEN {
            return Event::None;
        }
        let whole = self.declared();
        if self.len == header::LEN
            && (Header::parse(&self.buf[..header::LEN]).is_none() || whole > N)
        {
            self.len = 0;
            self.skip = whole - header::LEN;
            return self.skipped();
        }
        if self.len == whole {
            Event::Frame
        } else {
            Event::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Op;

    fn message(len: u16, fill: u8) -> [u8; 64] {
        let h = Header {
            op: Op::Write,
            version: 1,
            flags: 0,
            len,
            group: 0,
            seq: fill,
            id: 0,
        };
        let mut m = [fill; 64];
        m[..8].copy_from_slice(&h.to_bytes());
        m
    }

    #[test]
    fn messages_back_to_back_come_out_whole_and_oversized_ones_are_skipped() {
        let mut d = Decoder::<24>::new();
        let mut stream = [0u8; 256];
        let mut n = 0;
        // 8 + 10 bytes, 8 + 40 (too long: skipped), 8 + 0, 8 + 16.
        for (len, fill) in [(10u16, 1u8), (40, 2), (0, 3), (16, 4)] {
            let m = message(len, fill);
            let whole = 8 + len as usize;
            stream[n..n + whole].copy_from_slice(&m[..whole]);
            n += whole;
        }
        let mut got = [(0usize, 0u8); 4];
        let mut k = 0;
        for &b in &stream[..n] {
            match d.feed(b) {
                Event::None => {}
                Event::Frame => {
                    got[k] = (d.frame().len(), d.frame()[6]);
                    k += 1;
                }
                Event::Bad => {
                    got[k] = (0, 0xBA);
                    k += 1;
                }
            }
        }
        assert_eq!(got, [(18, 1), (0, 0xBA), (8, 3), (24, 4)]);
    }
}

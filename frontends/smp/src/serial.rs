//! Zephyr's SMP serial framing ("SMP over console"): a frame is its
//! length (2 bytes, big-endian, counting the CRC), the SMP message and a
//! CRC-16/XMODEM of the message (big-endian), in base64, cut into lines
//! of at most 127 bytes. The first line starts with `06 09`, the others
//! with `04 14`; each ends with `\n`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use crc::{Crc, CRC_16_XMODEM};

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// The CRC-16/XMODEM of `bytes`, as the framing uses it.
pub fn crc16(bytes: &[u8]) -> u16 {
    CRC16.checksum(bytes)
}

/// The longest line this module writes (mcumgr's default, delimiters and
/// newline included).
pub const LINE: usize = 127;

/// What a byte fed to the [`Decoder`] completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing yet.
    None,
    /// A whole frame whose CRC is right: [`Decoder::frame`] holds it.
    Frame,
    /// A frame that is damaged (bad base64, bad CRC, longer than the
    /// buffer): it is dropped.
    Bad,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Outside SMP lines.
    Idle,
    /// After `06` (a first line may start).
    Start,
    /// After `04` (a continuation line may start).
    Continue,
    /// In a line of the frame.
    Line,
    /// Between lines of an unfinished frame.
    Between,
    /// In a damaged frame's line: skipped to its end.
    Skip,
}

/// Reassembles SMP frames from the bytes of a serial line, one byte at a
/// time, in `N` bytes of buffer (the longest frame it takes, with its
/// length and CRC). Bytes outside SMP lines are ignored.
pub struct Decoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    quad: [u8; 4],
    have: usize,
    state: State,
}

impl<const N: usize> Default for Decoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Decoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Decoder {
            buf: [0; N],
            len: 0,
            quad: [0; 4],
            have: 0,
            state: State::Idle,
        }
    }

    /// The last complete frame's SMP message (after [`Event::Frame`]).
    pub fn frame(&self) -> &[u8] {
        let n = self.declared().unwrap_or(2).saturating_sub(2);
        &self.buf[2..2 + n.min(self.len.saturating_sub(2))]
    }

    /// The frame's length field: message and CRC.
    fn declared(&self) -> Option<usize> {
        (self.len >= 2).then(|| u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize)
    }

    /// Feeds one byte of the line.
    pub fn feed(&mut self, b: u8) -> Event {
        match (self.state, b) {
            (State::Idle | State::Between, 0x06) => {
                self.state = State::Start;
            }
            (State::Start, 0x09) => {
                self.len = 0;
                self.have = 0;
                self.state = State::Line;
            }
            (State::Between, 0x04) => self.state = State::Continue,
            (State::Continue, 0x14) => self.state = State::Line,
            (State::Line, b'\n') => return self.end_of_line(),
            (State::Line, b'\r') => {}
            (State::Line, c) => return self.char(c),
            (State::Skip, b'\n') => self.state = State::Idle,
            (State::Skip, _) => {}
            // A broken delimiter: not an SMP line after all.
            (State::Start | State::Continue, _) => self.state = State::Idle,
            (State::Idle | State::Between, _) => {}
        }
        Event::None
    }

    fn char(&mut self, c: u8) -> Event {
        self.quad[self.have] = c;
        self.have += 1;
        if self.have < 4 {
            return Event::None;
        }
        self.have = 0;
        let mut out = [0u8; 3];
        let n = match STANDARD.decode_slice(self.quad, &mut out) {
            Ok(n) => n,
            Err(_) => return self.bad(),
        };
        if self.len + n > N {
            return self.bad();
        }
        self.buf[self.len..self.len + n].copy_from_slice(&out[..n]);
        self.len += n;
        Event::None
    }

    fn end_of_line(&mut self) -> Event {
        if self.have != 0 {
            self.state = State::Idle;
            return Event::Bad;
        }
        match self.declared() {
            Some(d) if self.len >= 2 + d => {
                self.state = State::Idle;
                let (msg, crc) = (2..self.len - 2, &self.buf[self.len - 2..self.len]);
                if d < 2 || self.len != 2 + d {
                    return Event::Bad;
                }
                let crc = u16::from_be_bytes([crc[0], crc[1]]);
                if crc16(&self.buf[msg]) == crc {
                    Event::Frame
                } else {
                    Event::Bad
                }
            }
            _ => {
                self.state = State::Between;
                Event::None
            }
        }
    }

    fn bad(&mut self) -> Event {
        self.state = State::Skip;
        Event::Bad
    }
}

/// Writes `msg` as SMP serial lines of at most `line` bytes (at most
/// [`LINE`]), each passed to `out`.
pub fn encode(msg: &[u8], line: usize, out: &mut dyn FnMut(&[u8])) {
    let line = line.clamp(8, LINE);
    // Whole base64 quads per line, after the delimiter and before `\n`.
    let chars = (line - 4) / 4 * 4;
    let raw_per_line = chars / 4 * 3;
    let len = (msg.len() as u16 + 2).to_be_bytes();
    let crc = crc16(msg).to_be_bytes();
    let total = 2 + msg.len() + 2;
    let byte = |i: usize| {
        if i < 2 {
            len[i]
        } else if i < 2 + msg.len() {
            msg[i - 2]
        } else {
            crc[i - 2 - msg.len()]
        }
    };
    let mut at = 0;
    let mut first = true;
    while at < total {
        let n = raw_per_line.min(total - at);
        let mut raw = [0u8; LINE];
        for (k, r) in raw[..n].iter_mut().enumerate() {
            *r = byte(at + k);
        }
        let mut text = [0u8; LINE + 1];
        text[..2].copy_from_slice(if first { &[0x06, 0x09] } else { &[0x04, 0x14] });
        let m = STANDARD
            .encode_slice(&raw[..n], &mut text[2..])
            .unwrap_or(0);
        text[2 + m] = b'\n';
        out(&text[..3 + m]);
        at += n;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// smp's own example: `encode(b"Hello, world!")` is one line, and
    /// with 8-byte lines six.
    #[test]
    fn lines_are_the_ones_smp_writes() {
        let mut lines: [[u8; 32]; 8] = [[0; 32]; 8];
        let mut lens = [0usize; 8];
        let mut k = 0;
        encode(b"Hello, world!", 127, &mut |l| {
            lines[k][..l.len()].copy_from_slice(l);
            lens[k] = l.len();
            k += 1;
        });
        assert_eq!(k, 1);
        assert_eq!(&lines[0][..lens[0]], b"\x06\x09AA9IZWxsbywgd29ybGQhet4=\n");
        k = 0;
        encode(b"Hello, world!", 8, &mut |l| {
            lines[k][..l.len()].copy_from_slice(l);
            lens[k] = l.len();
            k += 1;
        });
        let want: [&[u8]; 6] = [
            b"\x06\x09AA9I\n",
            b"\x04\x14ZWxs\n",
            b"\x04\x14bywg\n",
            b"\x04\x14d29y\n",
            b"\x04\x14bGQh\n",
            b"\x04\x14et4=\n",
        ];
        assert_eq!(k, 6);
        for (i, w) in want.iter().enumerate() {
            assert_eq!(&lines[i][..lens[i]], *w, "line {i}");
        }
    }

    #[test]
    fn frames_are_reassembled_between_other_bytes_and_damage_is_dropped() {
        let mut d = Decoder::<64>::new();
        let mut stream = [0u8; 256];
        let mut n = 0;
        let mut put = |b: &[u8]| {
            stream[n..n + b.len()].copy_from_slice(b);
            n += b.len();
        };
        put(b"console text\n");
        encode(b"Hello, world!", 8, &mut put);
        put(b"\x00cobs\x00");
        let mut frames = 0;
        for &b in &stream[..n] {
            if d.feed(b) == Event::Frame {
                assert_eq!(d.frame(), b"Hello, world!");
                frames += 1;
            }
        }
        assert_eq!(frames, 1);
        // One character changed: the CRC (or the base64) refuses it.
        let mut bad = [0u8; 64];
        let mut m = 0;
        encode(b"Hello, world!", 127, &mut |l| {
            bad[m..m + l.len()].copy_from_slice(l);
            m += l.len();
        });
        bad[5] = b'B';
        assert!(bad[..m].iter().all(|&b| d.feed(b) != Event::Frame));
        // And a good frame after it is read again.
        let mut again = 0;
        encode(b"ok", 127, &mut |l| {
            for &b in l {
                if d.feed(b) == Event::Frame {
                    again += 1;
                }
            }
        });
        assert_eq!(again, 1);
    }
}

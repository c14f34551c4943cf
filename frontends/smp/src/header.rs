//! The SMP header: 8 bytes before each message's CBOR body.

/// The operation of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A read request (0).
    Read,
    /// The answer to a read (1).
    ReadRsp,
    /// A write request (2).
    Write,
    /// The answer to a write (3).
    WriteRsp,
}

impl Op {
    fn from_bits(b: u8) -> Option<Op> {
        Some(match b {
            0 => Op::Read,
            1 => Op::ReadRsp,
            2 => Op::Write,
            3 => Op::WriteRsp,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Op::Read => 0,
            Op::ReadRsp => 1,
            Op::Write => 2,
            Op::WriteRsp => 3,
        }
    }
}

/// An SMP header: `res:3 ver:2 op:3`, flags, body length, group,
/// sequence number and command id, big-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The operation.
    pub op: Op,
    /// The protocol version (0: SMP version 1, 1: version 2).
    pub version: u8,
    /// Flags (none are defined).
    pub flags: u8,
    /// Bytes of CBOR body after the header.
    pub len: u16,
    /// The management group.
    pub group: u16,
    /// The sequence number, which the answer repeats.
    pub seq: u8,
    /// The command within the group.
    pub id: u8,
}

/// Bytes of a header.
pub const LEN: usize = 8;

impl Header {
    /// Reads a header from the first 8 bytes of `b`.
    pub fn parse(b: &[u8]) -> Option<Header> {
        let b: &[u8; LEN] = b.get(..LEN)?.try_into().ok()?;
        Some(Header {
            op: Op::from_bits(b[0] & 0b111)?,
            version: (b[0] >> 3) & 0b11,
            flags: b[1],
            len: u16::from_be_bytes([b[2], b[3]]),
            group: u16::from_be_bytes([b[4], b[5]]),
            seq: b[6],
            id: b[7],
        })
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; LEN] {
        let [l0, l1] = self.len.to_be_bytes();
        let [g0, g1] = self.group.to_be_bytes();
        [
            (self.version & 0b11) << 3 | self.op.bits(),
            self.flags,
            l0,
            l1,
            g0,
            g1,
            self.seq,
            self.id,
        ]
    }

    /// The header of the answer to this request, with a body of `len`
    /// bytes (`None` for a message that is not a request).
    pub fn answer(&self, len: u16) -> Option<Header> {
        let op = match self.op {
            Op::Read => Op::ReadRsp,
            Op::Write => Op::WriteRsp,
            _ => return None,
        };
        Some(Header { op, len, ..*self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_with_the_version_bits() {
        let h = Header {
            op: Op::Write,
            version: 1,
            flags: 0,
            len: 116,
            group: 1,
            seq: 154,
            id: 1,
        };
        // smp's documented example: `0a 00 00 74 00 01 9a 01`.
        assert_eq!(h.to_bytes(), [0x0a, 0, 0, 0x74, 0, 1, 0x9a, 1]);
        assert_eq!(Header::parse(&h.to_bytes()), Some(h));
        let a = h.answer(3).unwrap();
        assert_eq!((a.op, a.len, a.seq, a.version), (Op::WriteRsp, 3, 154, 1));
        assert_eq!(a.answer(0), None);
    }
}

//! Answers SMP requests.

use minicbor::encode::write::{Cursor, EndOfSlice};
use minicbor::{Decoder, Encoder};

use crate::header::{self, Header};

/// The largest SMP message (header and CBOR body) the server takes or
/// writes, as it reports it in the MCU Manager parameters.
pub const BUF_SIZE: usize = 512;

/// Management groups and commands (mcumgr's numbers).
const GROUP_OS: u16 = 0;
const GROUP_IMAGE: u16 = 1;
const OS_ECHO: u8 = 0;
const OS_RESET: u8 = 5;
const OS_PARAMS: u8 = 6;
const IMAGE_STATE: u8 = 0;

/// mcumgr's `MGMT_ERR_*` codes the server answers with.
const EINVAL: u32 = 3;
const ENOTSUP: u32 = 8;
const EMSGSIZE: u32 = 9;

/// What one slot holds, as an image state read reports it (MCUboot's
/// flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSlot<'a> {
    /// 0: the slot the device runs from, 1: the other.
    pub slot: u8,
    /// The image's version text.
    pub version: &'a str,
    /// SHA-256 of the image.
    pub hash: [u8; 32],
    /// The image can be booted.
    pub bootable: bool,
    /// It boots next, on trial.
    pub pending: bool,
    /// It is confirmed.
    pub confirmed: bool,
    /// It is running.
    pub active: bool,
    /// It boots next for good.
    pub permanent: bool,
}

/// What the server asks of the device.
pub trait Device {
    /// The images of its two slots (`None`: empty).
    fn slots(&mut self) -> [Option<ImageSlot<'_>>; 2];
}

/// What the caller does once the answer is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Restart the device (an OS reset was asked for).
    Reset,
}

/// The SMP server. It keeps no state between requests (yet).
#[derive(Default)]
pub struct Server;

type Enc<'b> = Encoder<Cursor<&'b mut [u8]>>;
type EncResult = Result<(), minicbor::encode::Error<EndOfSlice>>;

impl Server {
    /// A server.
    pub const fn new() -> Self {
        Server
    }

    /// Answers the SMP message `req` into `out`: the answer's length (0
    /// when `req` is not a request) and what to do after sending it.
    pub fn answer(&mut self, req: &[u8], out: &mut [u8], dev: &mut dyn Device) -> (usize, Action) {
        let Some(h) = Header::parse(req) else {
            return (0, Action::None);
        };
        let body = req
            .get(header::LEN..header::LEN + h.len as usize)
            .unwrap_or(&[]);
        if out.len() < header::LEN || h.answer(0).is_none() {
            return (0, Action::None);
        }
        let (head, tail) = out.split_at_mut(header::LEN);
        let mut e = Encoder::new(Cursor::new(tail));
        let (written, action) = match self.body(&h, body, &mut e, dev) {
            Ok(a) => (e.writer().position(), a),
            Err(rc) => {
                let mut e = Encoder::new(Cursor::new(&mut *e.into_writer().into_inner()));
                let ok = e.map(1).and_then(|e| e.str("rc")).and_then(|e| e.u32(rc));
                (
                    if ok.is_ok() { e.writer().position() } else { 0 },
                    Action::None,
                )
            }
        };
        let Some(a) = h.answer(written as u16) else {
            return (0, Action::None);
        };
        head.copy_from_slice(&a.to_bytes());
        (header::LEN + written, action)
    }

    /// Writes the body of the answer to `h` with `body`; an `MGMT_ERR`
    /// code when it is refused.
    fn body(
        &mut self,
        h: &Header,
        body: &[u8],
        e: &mut Enc<'_>,
        dev: &mut dyn Device,
    ) -> Result<Action, u32> {
        let full = |_| EMSGSIZE;
        match (h.group, h.id, h.op) {
            (GROUP_OS, OS_ECHO, header::Op::Write) => {
                let d = echo_text(body).ok_or(EINVAL)?;
                e.map(1)
                    .and_then(|e| e.str("r"))
                    .and_then(|e| e.str(d))
                    .map_err(full)?;
                Ok(Action::None)
            }
            (GROUP_OS, OS_RESET, header::Op::Write) => {
                e.map(0).map_err(full)?;
                Ok(Action::Reset)
            }
            (GROUP_OS, OS_PARAMS, header::Op::Read) => {
                e.map(2)
                    .and_then(|e| e.str("buf_size"))
                    .and_then(|e| e.u32(BUF_SIZE as u32))
                    .and_then(|e| e.str("buf_count"))
                    .and_then(|e| e.u32(1))
                    .map_err(full)?;
                Ok(Action::None)
            }
            (GROUP_IMAGE, IMAGE_STATE, header::Op::Read) => {
                states(e, &dev.slots()).map_err(full)?;
                Ok(Action::None)
            }
            _ => Err(ENOTSUP),
        }
    }
}

/// The `d` text of an echo request.
fn echo_text(body: &[u8]) -> Option<&str> {
    let mut d = Decoder::new(body);
    let n = d.map().ok()??;
    let mut text = None;
    for _ in 0..n {
        if d.str().ok()? == "d" {
            text = Some(d.str().ok()?);
        } else {
            d.skip().ok()?;
        }
    }
    text
}

/// `{"images": [...], "splitStatus": 0}`.
fn states(e: &mut Enc<'_>, slots: &[Option<ImageSlot<'_>>; 2]) -> EncResult {
    let n = slots.iter().flatten().count();
    e.map(2)?.str("images")?.array(n as u64)?;
    for s in slots.iter().flatten() {
        e.map(9)?
            .str("image")?
            .u8(0)?
            .str("slot")?
            .u8(s.slot)?
            .str("version")?
            .str(s.version)?
            .str("hash")?
            .bytes(&s.hash)?
            .str("bootable")?
            .bool(s.bootable)?
            .str("pending")?
            .bool(s.pending)?
            .str("confirmed")?
            .bool(s.confirmed)?
            .str("active")?
            .bool(s.active)?
            .str("permanent")?
            .bool(s.permanent)?;
    }
    e.str("splitStatus")?.u8(0)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Op;

    struct Empty;
    impl Device for Empty {
        fn slots(&mut self) -> [Option<ImageSlot<'_>>; 2] {
            [None, None]
        }
    }

    fn request(op: Op, group: u16, id: u8, body: &[u8]) -> ([u8; 64], usize) {
        let h = Header {
            op,
            version: 1,
            flags: 0,
            len: body.len() as u16,
            group,
            seq: 7,
            id,
        };
        let mut m = [0u8; 64];
        m[..8].copy_from_slice(&h.to_bytes());
        m[8..8 + body.len()].copy_from_slice(body);
        (m, 8 + body.len())
    }

    #[test]
    fn echo_answers_its_text_and_the_unknown_is_not_supported() {
        let mut out = [0u8; 64];
        // {"d": "hi"}
        let (m, n) = request(
            Op::Write,
            GROUP_OS,
            OS_ECHO,
            &[0xA1, 0x61, b'd', 0x62, b'h', b'i'],
        );
        let (len, action) = Server::new().answer(&m[..n], &mut out, &mut Empty);
        let h = Header::parse(&out).unwrap();
        assert_eq!(
            (h.op, h.seq, h.group, h.id, action),
            (Op::WriteRsp, 7, 0, 0, Action::None)
        );
        // {"r": "hi"}
        assert_eq!(&out[8..len], &[0xA1, 0x61, b'r', 0x62, b'h', b'i']);
        // Image upload is not served yet: {"rc": 8}.
        let (m, n) = request(Op::Write, GROUP_IMAGE, 1, &[0xA0]);
        let (len, _) = Server::new().answer(&m[..n], &mut out, &mut Empty);
        assert_eq!(&out[8..len], &[0xA1, 0x62, b'r', b'c', 0x08]);
        // An answer is not answered.
        let (m, n) = request(Op::WriteRsp, GROUP_OS, OS_ECHO, &[0xA0]);
        assert_eq!(Server::new().answer(&m[..n], &mut out, &mut Empty).0, 0);
        // An echo without its text: EINVAL.
        let (m, n) = request(Op::Write, GROUP_OS, OS_ECHO, &[0xA0]);
        let (len, _) = Server::new().answer(&m[..n], &mut out, &mut Empty);
        assert_eq!(&out[8..len], &[0xA1, 0x62, b'r', b'c', 0x03]);
    }
}

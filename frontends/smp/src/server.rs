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
const IMAGE_UPLOAD: u8 = 1;
const IMAGE_ERASE: u8 = 5;

/// mcumgr's `MGMT_ERR_*` codes the server answers with.
pub(crate) const EINVAL: u32 = 3;
const ENOTSUP: u32 = 8;
const EMSGSIZE: u32 = 9;

/// What one slot holds, as an image state read reports it (MCUboot's
/// flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSlot<'a> {
    /// The slot's number as clients see it (and name it to erase):
    /// [`image_slots`] numbers slot A 0 and slot B 1.
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

/// The image states of a device with flashpatch's slot manager, from its
/// boot record: the slot it runs from is `active`, the one the record
/// boots next is `pending` while on trial (and not running) and
/// `confirmed` once confirmed; `version` names each slot's image.
pub fn image_slots<'a>(
    rec: &flashpatch::slots::BootRecord,
    running: flashpatch::slots::Slot,
    version: [&'a str; 2],
) -> [Option<ImageSlot<'a>>; 2] {
    use flashpatch::slots::Slot;
    let mut out = [None, None];
    for (i, slot) in [Slot::A, Slot::B].into_iter().enumerate() {
        let img = rec.images[i];
        if img.size == 0 {
            continue;
        }
        let next = slot == rec.active;
        out[i] = Some(ImageSlot {
            slot: i as u8,
            version: version[i],
            hash: img.sha256,
            bootable: true,
            pending: next && rec.trial && slot != running,
            confirmed: next && !rec.trial,
            active: slot == running,
            permanent: false,
        });
    }
    out
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

/// A request the server leaves to its caller, which owns the flash and
/// the update in progress: it answers with [`Server::uploaded`] or
/// [`Server::state_written`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Image upload: `data` at `off` of the upload.
    Upload(Upload<'a>),
    /// State write: confirm the running image (`confirm`), or mark the
    /// image whose SHA-256 is `hash` to boot next on trial.
    StateWrite {
        /// The image to mark (absent: the running one).
        hash: Option<&'a [u8]>,
        /// Confirm it for good.
        confirm: bool,
    },
    /// Image erase: erase `slot` (as state read numbers it; absent: 1,
    /// as mcumgr clients mean it), unless it is running or boots next.
    Erase {
        /// The slot to erase.
        slot: u32,
    },
}

/// One image upload request (mcumgr's `image upload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upload<'a> {
    /// The image (component) number.
    pub image: u32,
    /// Where `data` starts in the upload.
    pub off: u32,
    /// The whole upload's length (sent with `off` 0).
    pub len: Option<u32>,
    /// SHA-256 of the whole upload (sent with `off` 0, optional).
    pub sha: Option<&'a [u8]>,
    /// The bytes.
    pub data: &'a [u8],
}

/// What [`Server::answer`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// The answer is in the output buffer: its length, and what to do
    /// once it is sent.
    Sent {
        /// Bytes of the answer (0: the message was not a request).
        len: usize,
        /// What to do after sending it.
        action: Action,
    },
    /// The caller carries out `request`, then has the server answer it.
    Ask {
        /// What to do.
        request: Request<'a>,
        /// The request's header, for the answer.
        pending: Pending,
    },
}

/// A request the caller carries out ([`Answer::Ask`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Pending(Header);

/// mcumgr's `MGMT_ERR_EBADSTATE`: what a refused upload answers.
pub const EBADSTATE: u32 = 6;

impl Answer<'_> {
    /// The length of an answer that was written (0 for [`Answer::Ask`]).
    pub fn len(&self) -> usize {
        match self {
            Answer::Sent { len, .. } => *len,
            Answer::Ask { .. } => 0,
        }
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The SMP server. It keeps no state between requests.
#[derive(Default)]
pub struct Server;

type Enc<'b> = Encoder<Cursor<&'b mut [u8]>>;
type EncResult = Result<(), minicbor::encode::Error<EndOfSlice>>;

impl Server {
    /// A server.
    pub const fn new() -> Self {
        Server
    }

    /// Answers the SMP message `req` into `out`, or leaves an upload or
    /// a state write to the caller.
    pub fn answer<'a>(
        &mut self,
        req: &'a [u8],
        out: &mut [u8],
        dev: &mut dyn Device,
    ) -> Answer<'a> {
        let none = Answer::Sent {
            len: 0,
            action: Action::None,
        };
        let Some(h) = Header::parse(req) else {
            return none;
        };
        if h.answer(0).is_none() {
            return none;
        }
        let body = req
            .get(header::LEN..header::LEN + h.len as usize)
            .unwrap_or(&[]);
        match (h.group, h.id, h.op) {
            (GROUP_IMAGE, IMAGE_UPLOAD, header::Op::Write) => match upload(body) {
                Some(u) => {
                    return Answer::Ask {
                        request: Request::Upload(u),
                        pending: Pending(h),
                    }
                }
                None => return self.write(&h, out, |_| Err(EINVAL)),
            },
            (GROUP_IMAGE, IMAGE_STATE, header::Op::Write) => match state_write(body) {
                Some((hash, confirm)) => {
                    return Answer::Ask {
                        request: Request::StateWrite { hash, confirm },
                        pending: Pending(h),
                    }
                }
                None => return self.write(&h, out, |_| Err(EINVAL)),
            },
            (GROUP_IMAGE, IMAGE_ERASE, header::Op::Write) => match erase(body) {
                Some(slot) => {
                    return Answer::Ask {
                        request: Request::Erase { slot },
                        pending: Pending(h),
                    }
                }
                None => return self.write(&h, out, |_| Err(EINVAL)),
            },
            _ => {}
        }
        self.write(&h, out, |e| Self::body(&h, body, e, dev))
    }

    /// Answers an upload the caller carried out: `Ok` with the offset it
    /// has the upload up to, or an `MGMT_ERR` code.
    pub fn uploaded(&mut self, p: Pending, r: Result<u32, u32>, out: &mut [u8]) -> usize {
        self.write(&p.0, out, |e| {
            let off = r?;
            e.map(2)
                .and_then(|e| e.str("rc"))
                .and_then(|e| e.u32(0))
                .and_then(|e| e.str("off"))
                .and_then(|e| e.u32(off))
                .map_err(|_| EMSGSIZE)?;
            Ok(Action::None)
        })
        .len()
    }

    /// Answers an erase the caller carried out: `{}`, or an `MGMT_ERR`
    /// code.
    pub fn erased(&mut self, p: Pending, r: Result<(), u32>, out: &mut [u8]) -> usize {
        self.write(&p.0, out, |e| {
            r?;
            e.map(0).map_err(|_| EMSGSIZE)?;
            Ok(Action::None)
        })
        .len()
    }

    /// Answers a state write the caller carried out: the image states as
    /// they are now (as Zephyr answers), or an `MGMT_ERR` code.
    pub fn state_written(
        &mut self,
        p: Pending,
        r: Result<(), u32>,
        out: &mut [u8],
        dev: &mut dyn Device,
    ) -> usize {
        self.write(&p.0, out, |e| {
            r?;
            states(e, &dev.slots()).map_err(|_| EMSGSIZE)?;
            Ok(Action::None)
        })
        .len()
    }

    /// Writes the answer to `h` into `out`, its body by `body` (or
    /// `{"rc": code}` when that refuses).
    fn write(
        &mut self,
        h: &Header,
        out: &mut [u8],
        body: impl FnOnce(&mut Enc<'_>) -> Result<Action, u32>,
    ) -> Answer<'static> {
        let none = Answer::Sent {
            len: 0,
            action: Action::None,
        };
        if out.len() < header::LEN {
            return none;
        }
        let (head, tail) = out.split_at_mut(header::LEN);
        let mut e = Encoder::new(Cursor::new(tail));
        let (written, action) = match body(&mut e) {
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
            return none;
        };
        head.copy_from_slice(&a.to_bytes());
        Answer::Sent {
            len: header::LEN + written,
            action,
        }
    }

    /// Writes the body of the answer to `h` with `body`; an `MGMT_ERR`
    /// code when it is refused.
    fn body(h: &Header, body: &[u8], e: &mut Enc<'_>, dev: &mut dyn Device) -> Result<Action, u32> {
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

/// The fields of an upload request.
fn upload(body: &[u8]) -> Option<Upload<'_>> {
    let mut d = Decoder::new(body);
    let n = d.map().ok()??;
    let mut u = Upload {
        image: 0,
        off: u32::MAX,
        len: None,
        sha: None,
        data: &[],
    };
    for _ in 0..n {
        match d.str().ok()? {
            "image" => u.image = d.u32().ok()?,
            "off" => u.off = d.u32().ok()?,
            "len" => u.len = Some(d.u32().ok()?),
            "sha" => u.sha = Some(d.bytes().ok()?),
            "data" => u.data = d.bytes().ok()?,
            _ => d.skip().ok()?,
        }
    }
    (u.off != u32::MAX).then_some(u)
}

/// The `hash` and `confirm` of a state write.
fn state_write(body: &[u8]) -> Option<(Option<&[u8]>, bool)> {
    let mut d = Decoder::new(body);
    let n = d.map().ok()??;
    let (mut hash, mut confirm) = (None, false);
    for _ in 0..n {
        match d.str().ok()? {
            "hash" => hash = Some(d.bytes().ok()?),
            "confirm" => confirm = d.bool().ok()?,
            _ => d.skip().ok()?,
        }
    }
    Some((hash, confirm))
}

/// The `slot` of an erase request (1 when absent).
fn erase(body: &[u8]) -> Option<u32> {
    let mut d = Decoder::new(body);
    let n = d.map().ok()??;
    let mut slot = 1;
    for _ in 0..n {
        match d.str().ok()? {
            "slot" => slot = d.u32().ok()?,
            _ => d.skip().ok()?,
        }
    }
    Some(slot)
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
        let Answer::Sent { len, action } = Server::new().answer(&m[..n], &mut out, &mut Empty)
        else {
            panic!("echo is answered at once")
        };
        let h = Header::parse(&out).unwrap();
        assert_eq!(
            (h.op, h.seq, h.group, h.id, action),
            (Op::WriteRsp, 7, 0, 0, Action::None)
        );
        // {"r": "hi"}
        assert_eq!(&out[8..len], &[0xA1, 0x61, b'r', 0x62, b'h', b'i']);
        let sent = |a: Answer<'_>| match a {
            Answer::Sent { len, .. } => len,
            Answer::Ask { .. } => panic!("answered at once"),
        };
        // The image group's core list is not served: {"rc": 8}.
        let (m, n) = request(Op::Read, GROUP_IMAGE, 3, &[0xA0]);
        let len = sent(Server::new().answer(&m[..n], &mut out, &mut Empty));
        assert_eq!(&out[8..len], &[0xA1, 0x62, b'r', b'c', 0x08]);
        // An answer is not answered.
        let (m, n) = request(Op::WriteRsp, GROUP_OS, OS_ECHO, &[0xA0]);
        assert_eq!(sent(Server::new().answer(&m[..n], &mut out, &mut Empty)), 0);
        // An echo without its text, an upload without its offset: EINVAL.
        for (group, id) in [(GROUP_OS, OS_ECHO), (GROUP_IMAGE, IMAGE_UPLOAD)] {
            let (m, n) = request(Op::Write, group, id, &[0xA0]);
            let len = sent(Server::new().answer(&m[..n], &mut out, &mut Empty));
            assert_eq!(&out[8..len], &[0xA1, 0x62, b'r', b'c', 0x03]);
        }
        // An upload is the caller's: {"off": 0, "data": h'0102'}.
        let body = [
            0xA2, 0x63, b'o', b'f', b'f', 0x00, 0x64, b'd', b'a', b't', b'a', 0x42, 1, 2,
        ];
        let (m, n) = request(Op::Write, GROUP_IMAGE, IMAGE_UPLOAD, &body);
        let mut s = Server::new();
        let Answer::Ask {
            request: Request::Upload(u),
            pending,
        } = s.answer(&m[..n], &mut out, &mut Empty)
        else {
            panic!("an upload is left to the caller")
        };
        assert_eq!((u.off, u.data, u.len), (0, &[1u8, 2][..], None));
        let len = s.uploaded(pending, Ok(2), &mut out);
        // {"rc": 0, "off": 2}
        assert_eq!(
            &out[8..len],
            &[0xA2, 0x62, b'r', b'c', 0, 0x63, b'o', b'f', b'f', 2]
        );
        // An erase is the caller's too: {} means slot 1, {"slot": 0} slot 0.
        for (body, want) in [
            (&[0xA0][..], 1),
            (&[0xA1, 0x64, b's', b'l', b'o', b't', 0][..], 0),
        ] {
            let (m, n) = request(Op::Write, GROUP_IMAGE, IMAGE_ERASE, body);
            let Answer::Ask {
                request: Request::Erase { slot },
                pending,
            } = s.answer(&m[..n], &mut out, &mut Empty)
            else {
                panic!("an erase is left to the caller")
            };
            assert_eq!(slot, want);
            let len = s.erased(pending, Err(EBADSTATE), &mut out);
            assert_eq!(&out[8..len], &[0xA1, 0x62, b'r', b'c', 0x06]);
        }
    }
}

//! Frames on a link, read as owned events: the device's messages, and
//! the ones it sent that are not the protocol's (so that a host giving up
//! can say what the device last did).

use std::fmt;
use std::io;
use std::time::Instant;

use flashpatch::proto::frame::{self, FrameDecoder, MAX_FRAME};
use flashpatch::proto::{Announce, ComponentImage, DeviceMsg, HostMsg, Resume, Stage};
use serde::Deserialize;

use super::{Counters, DeviceInfo, Link, SendError};

/// The index of `DeviceMsg::Result` on the wire (`docs/PROTOCOL.md`).
const RESULT_INDEX: u8 = 3;

/// An owned device message.
pub(super) enum Event {
    Hello(DeviceInfo),
    Ack {
        offset: u32,
        window: u32,
    },
    Progress {
        stage: Stage,
        done: u32,
        total: u32,
    },
    Result {
        code: u8,
        text: String,
    },
    Component(ComponentImage),
    /// A frame with a good CRC-32 that is no message of the protocol.
    Garbled(Garbled),
}

/// A frame intact on the wire whose payload is not a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Garbled {
    /// A `Result` whose text is not UTF-8.
    ResultText { code: u8 },
    /// Anything else.
    Unreadable,
}

impl fmt::Display for Garbled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Garbled::ResultText { code } => {
                write!(f, "sent result code {code} with a text that is not UTF-8")
            }
            Garbled::Unreadable => f.write_str("sent a message that is not of the protocol"),
        }
    }
}

/// Frames on a link.
pub(super) struct Wire<'l> {
    pub(super) link: &'l mut dyn Link,
    dec: FrameDecoder,
    rx: Vec<u8>,
    pub(super) wire_bytes: u64,
}

impl<'l> Wire<'l> {
    pub(super) fn new(link: &'l mut dyn Link) -> Self {
        Wire {
            link,
            dec: FrameDecoder::new(),
            rx: Vec::new(),
            wire_bytes: 0,
        }
    }

    pub(super) fn send(&mut self, msg: &HostMsg<'_>) -> Result<(), SendError> {
        let mut out = [0u8; MAX_FRAME];
        let n = frame::encode(msg, &mut out).map_err(|_| SendError::TooLarge(0))?;
        self.link
            .write_all(&out[..n])
            .and_then(|()| self.link.flush())
            .map_err(lost)?;
        self.wire_bytes += n as u64;
        Ok(())
    }

    /// The next message, or `None` if nothing came by `deadline`. Frames
    /// damaged on the way (bad COBS or CRC-32) are dropped.
    pub(super) fn recv(&mut self, deadline: Instant) -> Result<Option<Event>, SendError> {
        loop {
            while !self.rx.is_empty() {
                let (n, f) = self.dec.feed(&self.rx);
                let ev = match f {
                    Some(Ok(p)) => Some(event(p)),
                    _ => None,
                };
                self.rx.drain(..n);
                if ev.is_some() {
                    return Ok(ev);
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            let mut buf = [0u8; 512];
            match self.link.read(&mut buf) {
                Ok(0) => return Err(SendError::Closed("by the device")),
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(lost(e)),
            }
        }
    }
}

/// The event of an intact frame's payload.
fn event(payload: &[u8]) -> Event {
    if let Ok(m) = frame::decode::<DeviceMsg>(payload) {
        return owned(m);
    }
    if let Some(ev) = version_1(payload) {
        return ev;
    }
    // A string and a byte string are encoded alike: a `Result` whose
    // text is not UTF-8 still reads as these three fields.
    Event::Garbled(match frame::decode::<(u8, u8, &[u8])>(payload) {
        Ok((RESULT_INDEX, code, _)) => Garbled::ResultText { code },
        _ => Garbled::Unreadable,
    })
}

/// Protocol version 1's `Hello` and `Component`: as version 2's without
/// the security counters at their ends.
#[derive(Deserialize)]
struct AnnounceV1<'a> {
    proto: u8,
    version: &'a str,
    image_size: u32,
    image_sha256: [u8; 32],
    trial: bool,
    resume: Option<Resume>,
}

#[derive(Deserialize)]
struct ComponentV1 {
    component: u8,
    components: u8,
    image_size: u32,
    image_sha256: [u8; 32],
}

/// The variant indices of `DeviceMsg::Hello` and `DeviceMsg::Component`.
const HELLO_INDEX: u8 = 0;
const COMPONENT_INDEX: u8 = 4;

/// The event of a version 1 device's `Hello` or `Component`, if `payload`
/// is one.
fn version_1(payload: &[u8]) -> Option<Event> {
    match payload.first() {
        Some(&HELLO_INDEX) => {
            let (_, a) = frame::decode::<(u8, AnnounceV1)>(payload).ok()?;
            // As version 2's; `owned` leaves version 1's counters unknown.
            (a.proto == 1).then(|| {
                owned(DeviceMsg::Hello(Announce {
                    proto: a.proto,
                    version: a.version,
                    image_size: a.image_size,
                    image_sha256: a.image_sha256,
                    trial: a.trial,
                    resume: a.resume,
                    security_counter: 0,
                    floor: 0,
                }))
            })
        }
        Some(&COMPONENT_INDEX) => {
            let (_, c) = frame::decode::<(u8, ComponentV1)>(payload).ok()?;
            Some(Event::Component(ComponentImage {
                component: c.component,
                components: c.components,
                image_size: c.image_size,
                image_sha256: c.image_sha256,
                security_counter: 0,
                floor: 0,
            }))
        }
        _ => None,
    }
}

/// A link error, with the peer going away told apart.
pub(super) fn lost(e: io::Error) -> SendError {
    match e.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => SendError::Closed("by the device"),
        _ => SendError::Io(e),
    }
}

fn owned(m: DeviceMsg<'_>) -> Event {
    match m {
        DeviceMsg::Hello(a) => Event::Hello(DeviceInfo {
            proto: a.proto,
            version: a.version.to_owned(),
            image_size: a.image_size,
            image_sha256: a.image_sha256,
            trial: a.trial,
            resume: a.resume,
            counters: (a.proto >= 2).then_some(Counters {
                security_counter: a.security_counter,
                floor: a.floor,
            }),
        }),
        DeviceMsg::Ack { offset, window } => Event::Ack { offset, window },
        DeviceMsg::Progress { stage, done, total } => Event::Progress { stage, done, total },
        DeviceMsg::Result { code, text } => Event::Result {
            code,
            text: text.to_owned(),
        },
        DeviceMsg::Component(c) => Event::Component(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a device that went away while genpat was writing gave
    /// "link error: Broken pipe" instead of saying the link was closed.
    #[test]
    fn peer_gone_while_writing_is_a_closed_link() {
        for kind in [
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::UnexpectedEof,
        ] {
            assert!(matches!(lost(kind.into()), SendError::Closed(_)));
        }
        assert!(matches!(
            lost(io::ErrorKind::PermissionDenied.into()),
            SendError::Io(_)
        ));
    }

    /// Payloads as postcard writes them: the variant index, then the
    /// fields (a text as its length and bytes).
    #[test]
    fn a_result_whose_text_is_not_utf8_is_told_apart() {
        let ok = [RESULT_INDEX, 0, 2, b'O', b'K'];
        assert!(matches!(event(&ok), Event::Result { code: 0, ref text } if text == "OK"));
        let bad = [RESULT_INDEX, 7, 3, b'O', 0xFF, b'K'];
        assert!(matches!(
            event(&bad),
            Event::Garbled(Garbled::ResultText { code: 7 })
        ));
        let truncated_ack = [1u8, 0x80];
        assert!(matches!(
            event(&truncated_ack),
            Event::Garbled(Garbled::Unreadable)
        ));
    }
}

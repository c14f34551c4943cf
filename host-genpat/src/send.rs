//! Sending a patch to a device over a byte link, the host side of
//! `docs/PROTOCOL.md`: announce, begin or resume, stream with flow control,
//! wait for the device's result and its restart.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use flashpatch::proto::frame::{self, FrameDecoder, MAX_FRAME};
use flashpatch::proto::msg::verdict_of;
use flashpatch::proto::{
    ComponentImage, DeviceMsg, HostMsg, Resume, Stage, MAX_CHUNK, PROTO_VERSION,
};
use flashpatch::Verdict;

/// A byte link: reads must return within a short time when nothing
/// arrives (`TimedOut` / `WouldBlock`, as with a read timeout set).
pub trait Link: Read + Write {}
impl<L: Read + Write + ?Sized> Link for L {}

/// What a device said about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Protocol version.
    pub proto: u8,
    /// Firmware version text.
    pub version: String,
    /// Size of the running image.
    pub image_size: u32,
    /// SHA-256 of the running image.
    pub image_sha256: [u8; 32],
    /// Whether the running image is on trial.
    pub trial: bool,
    /// The interrupted transfer it holds.
    pub resume: Option<Resume>,
}

/// How patiently to talk.
#[derive(Clone, Copy, Debug)]
pub struct SendOptions {
    /// How long the device may stay silent before the host asks again, and
    /// after three tries gives up.
    pub timeout: Duration,
    /// How long to wait for the device to announce itself after it says it
    /// restarts (zero: do not wait).
    pub restart: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            timeout: Duration::from_secs(5),
            restart: Duration::from_secs(20),
        }
    }
}

/// Hears how far a send has come; every method has a no-op default.
pub trait SendEvents {
    /// The device announced itself.
    fn device(&mut self, _info: &DeviceInfo) {}
    /// The transfer starts at `offset` (non-zero: resumed).
    fn start(&mut self, _offset: u32, _size: u32) {}
    /// The device has stored `acked` of `size` bytes.
    fn acked(&mut self, _acked: u32, _size: u32) {}
    /// The device works on a step after the transfer.
    fn stage(&mut self, _stage: Stage, _done: u32, _total: u32) {}
}

/// Ignores every event.
pub struct Quiet;
impl SendEvents for Quiet {}

/// What a send did.
#[derive(Clone, Debug)]
pub struct SendReport {
    /// The device before the update.
    pub before: DeviceInfo,
    /// The device's verdict.
    pub verdict: Verdict,
    /// The device's text for it.
    pub text: String,
    /// Where the transfer started (non-zero: resumed).
    pub resumed_from: u32,
    /// Patch bytes sent in chunks (counting any sent twice).
    pub bytes_sent: u64,
    /// Bytes written to the link, framing included.
    pub wire_bytes: u64,
    /// From `Begin` to the last byte acknowledged.
    pub transfer: Duration,
    /// From the last byte acknowledged to the result.
    pub apply: Duration,
    /// The device after its restart, if it restarted and announced itself.
    pub after: Option<DeviceInfo>,
}

/// Why a send failed without a result from the device.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The link failed.
    #[error("link error: {0}")]
    Io(#[from] io::Error),
    /// The link was closed.
    #[error("the link was closed {0}")]
    Closed(&'static str),
    /// The device did not answer in time.
    #[error("the device did not answer {0}")]
    Timeout(&'static str),
    /// The device speaks another protocol version.
    #[error("the device speaks protocol version {0}; this genpat speaks {PROTO_VERSION}")]
    Version(u8),
    /// The patch is too large for the protocol.
    #[error("a patch of {0} bytes is too large to send")]
    TooLarge(usize),
}

/// An owned device message.
enum Event {
    Hello(DeviceInfo),
    Ack { offset: u32, window: u32 },
    Progress { stage: Stage, done: u32, total: u32 },
    Result { code: u8, text: String },
    Component(ComponentImage),
}

/// Frames on a link.
struct Wire<'l> {
    link: &'l mut dyn Link,
    dec: FrameDecoder,
    rx: Vec<u8>,
    wire_bytes: u64,
}

impl Wire<'_> {
    fn send(&mut self, msg: &HostMsg<'_>) -> Result<(), SendError> {
        let mut out = [0u8; MAX_FRAME];
        let n = frame::encode(msg, &mut out).map_err(|_| SendError::TooLarge(0))?;
        self.link
            .write_all(&out[..n])
            .and_then(|()| self.link.flush())
            .map_err(lost)?;
        self.wire_bytes += n as u64;
        Ok(())
    }

    /// The next message, or `None` if nothing came by `deadline`.
    fn recv(&mut self, deadline: Instant) -> Result<Option<Event>, SendError> {
        loop {
            while !self.rx.is_empty() {
                let (n, f) = self.dec.feed(&self.rx);
                let ev = match f {
                    Some(Ok(p)) => frame::decode::<DeviceMsg>(p).ok().map(owned),
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

/// A link error, with the peer going away told apart.
fn lost(e: io::Error) -> SendError {
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

/// Asks the device what each of its components runs: the answers for
/// components 0, 1, ... (as many as the device has). A device that does
/// not know the question (one that predates it) never answers it:
/// [`SendError::Timeout`].
pub fn components(
    link: &mut dyn Link,
    opts: &SendOptions,
) -> Result<Vec<ComponentImage>, SendError> {
    let mut w = Wire {
        link,
        dec: FrameDecoder::new(),
        rx: Vec::new(),
        wire_bytes: 0,
    };
    w.link.write_all(&[0])?;
    let mut all: Vec<ComponentImage> = Vec::new();
    let mut k = 0u8;
    loop {
        let c = ask_component(&mut w, opts, k)?;
        let n = c.components;
        if c.component < n {
            all.push(c);
        }
        match k.checked_add(1) {
            Some(next) if next < n => k = next,
            _ => return Ok(all),
        }
    }
}

fn ask_component(w: &mut Wire<'_>, opts: &SendOptions, k: u8) -> Result<ComponentImage, SendError> {
    for _ in 0..3 {
        w.send(&HostMsg::Component { component: k })?;
        let deadline = Instant::now() + opts.timeout;
        while let Some(ev) = w.recv(deadline)? {
            if let Event::Component(c) = ev {
                if c.component == k {
                    return Ok(c);
                }
            }
        }
    }
    Err(SendError::Timeout(
        "to Component (a device older than the question?)",
    ))
}

/// Asks the device to announce itself and returns what it says.
pub fn hello(link: &mut dyn Link, opts: &SendOptions) -> Result<DeviceInfo, SendError> {
    let mut w = Wire {
        link,
        dec: FrameDecoder::new(),
        rx: Vec::new(),
        wire_bytes: 0,
    };
    ask_hello(&mut w, opts)
}

fn ask_hello(w: &mut Wire<'_>, opts: &SendOptions) -> Result<DeviceInfo, SendError> {
    w.link.write_all(&[0])?;
    for _ in 0..3 {
        w.send(&HostMsg::Hello)?;
        let deadline = Instant::now() + opts.timeout;
        while let Some(ev) = w.recv(deadline)? {
            if let Event::Hello(info) = ev {
                if info.proto != PROTO_VERSION {
                    return Err(SendError::Version(info.proto));
                }
                return Ok(info);
            }
        }
    }
    Err(SendError::Timeout("to Hello"))
}

/// Sends `patch` to the device on `link` and waits for its verdict (and,
/// after "OK", for it to restart and announce itself).
pub fn send(
    link: &mut dyn Link,
    patch: &[u8],
    opts: &SendOptions,
    events: &mut dyn SendEvents,
) -> Result<SendReport, SendError> {
    let size = u32::try_from(patch.len()).map_err(|_| SendError::TooLarge(patch.len()))?;
    let crc32 = flashpatch::crc32::crc32(patch);
    let mut w = Wire {
        link,
        dec: FrameDecoder::new(),
        rx: Vec::new(),
        wire_bytes: 0,
    };
    let before = ask_hello(&mut w, opts)?;
    events.device(&before);
    let started = Instant::now();
    let (mut acked, mut next, mut window) = (0u32, 0u32, 0u32);
    let mut begun = false;
    let mut ask_begin = true;
    let mut resumed_from = 0;
    let mut bytes_sent = 0u64;
    let mut silent = 0;
    let mut transfer_end: Option<Instant> = None;
    let mut result: Option<(u8, String)> = None;
    while result.is_none() {
        if ask_begin {
            w.send(&HostMsg::Begin { size, crc32 })?;
            ask_begin = false;
        }
        // Send what the window allows.
        while begun && next < size {
            let end = (next as usize + MAX_CHUNK).min(patch.len());
            if (end as u32 - acked) > window.max(MAX_CHUNK as u32) {
                break;
            }
            w.send(&HostMsg::Chunk {
                offset: next,
                data: &patch[next as usize..end],
            })?;
            bytes_sent += (end - next as usize) as u64;
            next = end as u32;
        }
        let Some(ev) = w.recv(Instant::now() + opts.timeout)? else {
            silent += 1;
            if silent >= 3 {
                return Err(SendError::Timeout(match (acked, transfer_end) {
                    (_, Some(_)) => "after the transfer (no result)",
                    (0, None) => "to Begin",
                    (_, None) => "during the transfer",
                }));
            }
            // Something was lost: ask where to continue. After the whole
            // patch is stored this makes the device run (or report) the
            // update again, so a lost result is not a lost update.
            begun = false;
            ask_begin = true;
            continue;
        };
        silent = 0;
        match ev {
            Event::Ack {
                offset,
                window: win,
            } => {
                if !begun {
                    begun = true;
                    resumed_from = if bytes_sent == 0 {
                        offset
                    } else {
                        resumed_from
                    };
                    if bytes_sent == 0 {
                        events.start(offset, size);
                    }
                    next = offset;
                    acked = offset;
                }
                // An Ack that does not advance (the answer to a chunk the
                // device did not expect) changes nothing: a lost chunk is
                // resent after the timeout, from the Ack to a new Begin.
                acked = acked.max(offset);
                next = next.max(acked);
                window = win;
                events.acked(acked, size);
                if acked >= size && transfer_end.is_none() {
                    transfer_end = Some(Instant::now());
                }
            }
            Event::Progress { stage, done, total } => events.stage(stage, done, total),
            Event::Result { code, text } => result = Some((code, text)),
            Event::Hello(_) if begun => {
                // The device restarted under us (power cut): begin again.
                begun = false;
                ask_begin = true;
                transfer_end = None;
            }
            // An announcement sent before our Begin was read, or a late
            // answer to an earlier question.
            Event::Hello(_) | Event::Component(_) => {}
        }
    }
    let (code, text) = result.unwrap_or_default();
    let done = Instant::now();
    let transfer_end = transfer_end.unwrap_or(done);
    let verdict = verdict_of(code);
    let mut after = None;
    if verdict == Verdict::Ok && !opts.restart.is_zero() {
        let deadline = Instant::now() + opts.restart;
        while let Some(ev) = w.recv(deadline)? {
            if let Event::Hello(info) = ev {
                after = Some(info);
                break;
            }
        }
    }
    Ok(SendReport {
        before,
        verdict,
        text,
        resumed_from,
        bytes_sent,
        wire_bytes: w.wire_bytes,
        transfer: transfer_end - started,
        apply: done - transfer_end,
        after,
    })
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
}

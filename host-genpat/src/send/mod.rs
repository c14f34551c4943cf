//! Sending a patch to a device over a byte link, the host side of
//! `docs/PROTOCOL.md`: announce, begin or resume, stream with flow control,
//! wait for the device's result and its restart.

mod wire;

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use flashpatch::proto::msg::{verdict_code, verdict_of};
use flashpatch::proto::{ComponentImage, HostMsg, Resume, Stage, MAX_CHUNK, PROTO_VERSION};
use flashpatch::Verdict;

use wire::{Event, Wire};

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
    /// Security counter of the running image, and the lowest counter the
    /// device accepts; `None` from a device of protocol version 1, which
    /// does not say.
    pub counters: Option<Counters>,
}

/// A device's security counters (protocol version 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Of the running image (of the patch that made it).
    pub security_counter: u32,
    /// The lowest counter the device accepts of a patch.
    pub floor: u32,
}

/// The oldest protocol version genpat speaks: version 1 devices announce
/// no security counters.
pub const OLDEST_PROTO: u8 = 1;

/// How patiently to talk.
#[derive(Clone, Copy, Debug)]
pub struct SendOptions {
    /// How long the device may go without progress before the host asks
    /// again; after [`TRIES`] tries in a row that get it no further, the
    /// host gives up ([`SendError::Stuck`]). Before the transfer, how long
    /// it may stay silent (three times).
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
    /// The device answers but makes no progress: [`TRIES`] tries in a row
    /// (each a `Begin` after [`SendOptions::timeout`] without progress, or
    /// after the device restarted) got it no further than before.
    #[error(
        "the device does not answer {when}: {tries} tries without progress, {acked} of {size} bytes acknowledged{restarts}; it last {last}",
        restarts = match restarts {
            0 => String::new(),
            n => format!(", {n} restart{}", if *n == 1 { "" } else { "s" }),
        }
    )]
    Stuck {
        /// "to Begin", "during the transfer" or "after the transfer (no result)".
        when: &'static str,
        /// Tries without progress.
        tries: u32,
        /// The most patch bytes the device acknowledged.
        acked: u32,
        /// The patch's size.
        size: u32,
        /// How often the device restarted during the send.
        restarts: u32,
        /// What the device last did, as in "it last ...".
        last: String,
    },
    /// The device speaks another protocol version.
    #[error("the device speaks protocol version {0}; this genpat speaks {OLDEST_PROTO} to {PROTO_VERSION}")]
    Version(u8),
    /// The patch is too large for the protocol.
    #[error("a patch of {0} bytes is too large to send")]
    TooLarge(usize),
}

/// Asks the device what each of its components runs: the answers for
/// components 0, 1, ... (as many as the device has). A device that does
/// not know the question (one that predates it) never answers it:
/// [`SendError::Timeout`].
pub fn components(
    link: &mut dyn Link,
    opts: &SendOptions,
) -> Result<Vec<ComponentImage>, SendError> {
    let mut w = Wire::new(link);
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
    let mut w = Wire::new(link);
    ask_hello(&mut w, opts)
}

fn ask_hello(w: &mut Wire<'_>, opts: &SendOptions) -> Result<DeviceInfo, SendError> {
    w.link.write_all(&[0])?;
    for _ in 0..3 {
        w.send(&HostMsg::Hello)?;
        let deadline = Instant::now() + opts.timeout;
        while let Some(ev) = w.recv(deadline)? {
            if let Event::Hello(info) = ev {
                if !(OLDEST_PROTO..=PROTO_VERSION).contains(&info.proto) {
                    return Err(SendError::Version(info.proto));
                }
                return Ok(info);
            }
        }
    }
    Err(SendError::Timeout("to Hello"))
}

/// How many tries in a row that get the device no further [`send`] makes
/// before it gives up ([`SendError::Stuck`]).
pub const TRIES: u32 = 3;

/// How far a device got: patch bytes acknowledged in answer to chunks,
/// then the step after the transfer and how much of it is done. Ordered:
/// further is greater.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Reach {
    acked: u32,
    /// 0 before any step; 1 + the step's index.
    stage: u8,
    done: u32,
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Applying => "applying",
        Stage::Activating => "activating",
        Stage::Restarting => "restarting",
    }
}

/// Sends `patch` to the device on `link` and waits for its verdict (and,
/// after "OK", for it to restart and announce itself).
///
/// Progress, not messages, keeps the send going: the device makes
/// progress when it acknowledges patch bytes past the furthest it
/// acknowledged in this try, or reports its work after the transfer
/// further along. After [`SendOptions::timeout`] without progress, and at
/// once when the device restarts, the host sends `Begin` again (a new
/// try); when [`TRIES`] tries in a row end no further than the furthest
/// try before them, it gives up with [`SendError::Stuck`]. Acknowledged
/// offsets past the bytes sent, results with a code the protocol does not
/// have and messages that do not decode are not progress (nor a result).
pub fn send(
    link: &mut dyn Link,
    patch: &[u8],
    opts: &SendOptions,
    events: &mut dyn SendEvents,
) -> Result<SendReport, SendError> {
    let size = u32::try_from(patch.len()).map_err(|_| SendError::TooLarge(patch.len()))?;
    let crc32 = flashpatch::crc32::crc32(patch);
    let mut w = Wire::new(link);
    let before = ask_hello(&mut w, opts)?;
    events.device(&before);
    let started = Instant::now();
    let (mut acked, mut next, mut window) = (0u32, 0u32, 0u32);
    let mut begun = false;
    let mut ask_begin = true;
    let mut resumed_from = 0;
    let mut bytes_sent = 0u64;
    let mut transfer_end: Option<Instant> = None;
    let mut result: Option<(u8, String)> = None;
    // Progress: this try's reach, the furthest of the tries before, how
    // many tries in a row ended no further, and when this one ends.
    let (mut reach, mut best) = (Reach::default(), Reach::default());
    let (mut stale, mut restarts) = (0u32, 0u32);
    // The most bytes the device said it holds, if it ever answered Begin.
    let mut most: Option<u32> = None;
    let mut deadline = Instant::now();
    let mut last = format!("announced itself (version {})", before.version);
    while result.is_none() {
        if ask_begin {
            w.send(&HostMsg::Begin { size, crc32 })?;
            ask_begin = false;
            deadline = Instant::now() + opts.timeout;
        }
        // Send what the window allows: `window` bytes past the last Ack,
        // at least one chunk unless the device grants none.
        let credit = match window {
            0 => 0,
            w => w.max(MAX_CHUNK as u32),
        };
        while begun && next < size {
            let end = (next as usize + MAX_CHUNK).min(patch.len());
            if end as u32 - acked > credit {
                break;
            }
            w.send(&HostMsg::Chunk {
                offset: next,
                data: &patch[next as usize..end],
            })?;
            bytes_sent += (end - next as usize) as u64;
            next = end as u32;
        }
        let was = reach;
        let mut try_over = false;
        match w.recv(deadline)? {
            // No progress for a timeout: something was lost, or the
            // device is stuck. Ask where to continue. After the whole
            // patch is stored this makes the device run (or report) the
            // update again, so a lost result is not a lost update.
            None => try_over = true,
            Some(Event::Ack {
                offset,
                window: win,
            }) => {
                if offset > size {
                    last = format!(
                        "acknowledged offset {offset}, past the end of the {size}-byte patch"
                    );
                    continue;
                }
                if begun && offset > next {
                    last = format!("acknowledged offset {offset}, past the {next} bytes sent");
                    continue;
                }
                last = format!("acknowledged offset {offset} with a window of {win} bytes");
                if !begun {
                    // The answer to Begin: where to continue.
                    begun = true;
                    if most.is_none() {
                        resumed_from = offset;
                        events.start(offset, size);
                    }
                    next = offset;
                    acked = offset;
                } else {
                    reach.acked = reach.acked.max(offset);
                }
                // An Ack that does not advance (the answer to a chunk the
                // device did not expect) changes nothing: a lost chunk is
                // resent after the timeout, from the Ack to a new Begin.
                acked = acked.max(offset);
                next = next.max(acked);
                window = win;
                most = Some(most.map_or(acked, |m| m.max(acked)));
                events.acked(acked, size);
                if acked >= size && transfer_end.is_none() {
                    transfer_end = Some(Instant::now());
                }
            }
            Some(Event::Progress { stage, done, total }) => {
                last = format!("reported {} {done} of {total}", stage_name(stage));
                events.stage(stage, done, total);
                if begun && acked >= size && done <= total {
                    let r = Reach {
                        acked: size,
                        stage: 1 + stage as u8,
                        done,
                    };
                    reach = reach.max(r);
                }
            }
            // A code is the protocol's if it is its verdict's code
            // (unknown codes read as errors, whose code is 2).
            Some(Event::Result { code, text }) if verdict_code(verdict_of(code)) == code => {
                result = Some((code, text))
            }
            Some(Event::Result { code, text }) => {
                last = format!("sent result code {code} ({text:?}), which is not in the protocol");
            }
            Some(Event::Garbled(g)) => last = g.to_string(),
            Some(Event::Hello(info)) if begun => {
                // The device restarted under us (power cut): begin again.
                last = format!("restarted (announced version {})", info.version);
                restarts += 1;
                try_over = true;
                transfer_end = None;
            }
            // An announcement sent before our Begin was read, or a late
            // answer to an earlier question.
            Some(Event::Hello(_) | Event::Component(_)) => {}
        }
        if reach > was {
            deadline = Instant::now() + opts.timeout;
        }
        if try_over {
            if reach > best {
                best = reach;
                stale = 0;
            } else {
                stale += 1;
            }
            if stale >= TRIES {
                return Err(SendError::Stuck {
                    when: match most {
                        None => "to Begin",
                        Some(m) if m < size => "during the transfer",
                        Some(_) => "after the transfer (no result)",
                    },
                    tries: stale,
                    acked: most.unwrap_or(0),
                    size,
                    restarts,
                    last,
                });
            }
            reach = Reach::default();
            begun = false;
            ask_begin = true;
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

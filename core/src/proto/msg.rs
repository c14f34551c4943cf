//! The messages of the update protocol (postcard-encoded, one per frame).

use serde::{Deserialize, Serialize};

use crate::Verdict;

/// The protocol version a device announces; `docs/PROTOCOL.md` describes
/// version 2 (version 1's `Hello` and `Component` lack the security
/// counters).
pub const PROTO_VERSION: u8 = 2;
/// The most patch bytes one `Chunk` carries.
pub const MAX_CHUNK: usize = 256;
/// The longest version text a device announces, in bytes.
pub const MAX_VERSION: usize = 32;

/// What the host sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostMsg<'a> {
    /// Asks the device to announce itself ([`DeviceMsg::Hello`]).
    Hello,
    /// Starts or resumes the transfer of a patch of `size` bytes whose
    /// CRC-32 is `crc32`. The device answers with an [`DeviceMsg::Ack`]
    /// giving the offset to continue from.
    Begin {
        /// Patch size in bytes.
        size: u32,
        /// CRC-32 of the whole patch.
        crc32: u32,
    },
    /// Patch bytes at `offset`.
    Chunk {
        /// Where `data` starts in the patch.
        offset: u32,
        /// At most [`MAX_CHUNK`] bytes; a multiple of 4 bytes unless it ends the patch.
        data: &'a [u8],
    },
    /// Asks what component `component` runs ([`DeviceMsg::Component`]),
    /// so that a host can pick a patch for each component of the device.
    Component {
        /// The component (0: the one `Hello` describes).
        component: u8,
    },
}

/// What one component of a device runs ([`DeviceMsg::Component`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ComponentImage {
    /// The component asked about.
    pub component: u8,
    /// How many components the device has (`component` must be below).
    pub components: u8,
    /// Size of the image it runs in bytes (0: none, or no such component).
    pub image_size: u32,
    /// SHA-256 of that image (zeros with size 0).
    pub image_sha256: [u8; 32],
    /// Security counter of that image (of the patch that made it).
    pub security_counter: u32,
    /// The lowest security counter the component accepts.
    pub floor: u32,
}

/// An interrupted transfer the device holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Resume {
    /// Size of the patch being received.
    pub size: u32,
    /// Its CRC-32.
    pub crc32: u32,
    /// Bytes of it safely stored: the host continues from here.
    pub offset: u32,
}

/// What a device runs, announced at start and on request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce<'a> {
    /// The protocol version ([`PROTO_VERSION`]).
    pub proto: u8,
    /// The running firmware's version text.
    pub version: &'a str,
    /// Size of the running image in bytes.
    pub image_size: u32,
    /// SHA-256 of the running image.
    pub image_sha256: [u8; 32],
    /// Whether the running image is on trial (not yet confirmed).
    pub trial: bool,
    /// The transfer that was interrupted, if any.
    pub resume: Option<Resume>,
    /// Security counter of the running image (of the patch that made it).
    pub security_counter: u32,
    /// The lowest security counter the device accepts of a patch.
    pub floor: u32,
}

/// What a device is busy with after the whole patch has arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Stage {
    /// Decoding the patch into the inactive slot.
    Applying,
    /// Marking the new image for a trial boot.
    Activating,
    /// Restarting into the new image.
    Restarting,
}

/// What the device sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceMsg<'a> {
    /// What the device runs.
    Hello(Announce<'a>),
    /// All patch bytes before `offset` are stored; the host may send up to
    /// `window` bytes past `offset` before it waits for the next `Ack`.
    Ack {
        /// Bytes stored.
        offset: u32,
        /// Bytes the host may send past `offset`.
        window: u32,
    },
    /// A step after the transfer; `done` of `total` units (bytes).
    Progress {
        /// The step.
        stage: Stage,
        /// Done so far.
        done: u32,
        /// The whole step.
        total: u32,
    },
    /// The end of an update: one of VPatch's results ([`verdict_code`])
    /// and its text.
    Result {
        /// The verdict's code.
        code: u8,
        /// VPatch's text for it, or a reason for an error.
        text: &'a str,
    },
    /// What one component runs: the answer to [`HostMsg::Component`].
    Component(ComponentImage),
}

/// The wire code of a verdict.
pub const fn verdict_code(v: Verdict) -> u8 {
    match v {
        Verdict::Ok => 0,
        Verdict::AlreadyInstalled => 1,
        Verdict::Error => 2,
        Verdict::Corrupt => 3,
        Verdict::NoSuitablePatch => 4,
    }
}

/// The verdict of a wire code (unknown codes are errors).
pub const fn verdict_of(code: u8) -> Verdict {
    match code {
        0 => Verdict::Ok,
        1 => Verdict::AlreadyInstalled,
        3 => Verdict::Corrupt,
        4 => Verdict::NoSuitablePatch,
        _ => Verdict::Error,
    }
}

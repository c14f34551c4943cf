//! The errors of each layer: the applier's, the slot manager's, and the
//! flash error they share, which says which flash failed.

use core::fmt;

use embedded_storage::nor_flash::{NorFlashError, NorFlashErrorKind};

pub use crate::format::{ContainerError, HeaderError};

/// Which flash an operation failed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FlashRole {
    /// The slot the running image is read from.
    Source,
    /// The slot the new image is written into.
    Target,
    /// The state area of the slot manager (boot records, checkpoints).
    State,
    /// The staging area a received patch is stored in.
    Staging,
    /// The scratch area of an in-place update (old erase units kept while
    /// they are rewritten).
    Scratch,
}

/// A flash driver's error, reduced to what any driver can say
/// ([`NorFlashErrorKind`]) and which flash it was, so that the flashes of
/// one update may be of different types with different error types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashError {
    /// The flash that failed.
    pub role: FlashRole,
    /// What its driver said.
    pub kind: NorFlashErrorKind,
}

impl FlashError {
    /// `e`, an error of the flash playing `role`.
    #[inline]
    pub fn new(role: FlashRole, e: impl NorFlashError) -> Self {
        FlashError {
            role,
            kind: e.kind(),
        }
    }

    /// A closure for `map_err` that makes a driver's error this one.
    #[inline]
    pub(crate) fn of<E: NorFlashError>(role: FlashRole) -> impl Fn(E) -> Self {
        move |e| FlashError::new(role, e)
    }
}

/// A driver's result, with its error as its kind (what the adapters that
/// stand for two drivers, or a bounded one, report).
pub(crate) fn kind<T, E: NorFlashError>(r: Result<T, E>) -> Result<T, NorFlashErrorKind> {
    r.map_err(|e| e.kind())
}

#[cfg(feature = "defmt")]
impl defmt::Format for FlashError {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{} flash: {}", self.role, kind_text(self.kind))
    }
}

pub(crate) const fn kind_text(kind: NorFlashErrorKind) -> &'static str {
    match kind {
        NorFlashErrorKind::NotAligned => "access not aligned",
        NorFlashErrorKind::OutOfBounds => "access out of bounds",
        _ => "driver error",
    }
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            FlashRole::Source => "source",
            FlashRole::Target => "target",
            FlashRole::State => "state area",
            FlashRole::Staging => "staging",
            FlashRole::Scratch => "scratch",
        };
        write!(f, "the {role} flash failed: {}", kind_text(self.kind))
    }
}

impl core::error::Error for FlashError {}

/// Everything that can stop the applier. Whatever the error, the source
/// has not been written, so the device can still boot what it ran before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ApplyError {
    /// A flash driver failed.
    Flash(FlashError),
    /// The container header is not one this decoder reads.
    Container(ContainerError),
    /// An entry header is damaged or of a kind this decoder cannot read.
    Header(HeaderError),
    /// An entry for this source uses a codec or parameters this decoder
    /// does not have.
    Codec {
        /// Codec identifier.
        codec: u8,
        /// Codec parameter byte.
        params: u8,
    },
    /// The body does not match its CRC-32.
    BodyCrc,
    /// The body decodes to operations outside the images, or its length
    /// does not match what the operations use.
    BodyInvalid,
    /// The patch ended before its last entry did.
    Truncated,
    /// Bytes follow the last entry.
    TrailingData,
    /// The image written does not match the target's SHA-256.
    TargetMismatch,
    /// The target partition is smaller than the target image.
    TargetTooSmall {
        /// Bytes the target needs, rounded up to whole erase units.
        needed: u32,
        /// Bytes the target partition has.
        capacity: u32,
    },
    /// No entry of the patch is for the image in the source partition.
    NoSuitablePatch,
    /// A signature is required and an entry header has none (or no body
    /// digest).
    Unsigned,
    /// An entry header's signature is not the required key's.
    BadSignature,
    /// The body does not match the SHA-256 its signed header records.
    BodyDigest,
    /// The entry's security counter is below the device's minimum.
    Rollback {
        /// The entry's counter.
        counter: u32,
        /// The lowest counter the device accepts.
        min: u32,
    },
    /// The applier failed before and must be started anew.
    Failed,
}

/// Everything that can stop the slot manager ([`crate::slots::Slots`]) and
/// an update it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SlotError {
    /// A flash driver failed: a slot's or the state area's.
    Flash(FlashError),
    /// The applier of an update stopped.
    Apply(ApplyError),
    /// The state area is too small for two banks of a boot record and a
    /// checkpoint each, or a record does not fit a bank.
    StateArea,
    /// The state area holds no valid boot record: provision the device.
    NoBootRecord,
    /// No slot holds an image that passes verification.
    NoBootableImage,
    /// Not allowed in this boot state: an update or activation while the
    /// running image is on trial, or provisioning a provisioned device.
    SlotState,
    /// An image to activate has a security counter below its component's
    /// floor.
    Rollback {
        /// The image's counter.
        counter: u32,
        /// The component's floor.
        min: u32,
    },
    /// A slot to activate does not hold the image reported for it.
    ImageMismatch,
    /// The staged patch is damaged, or not the one an in-place update was
    /// begun with (its size and CRC-32 differ).
    StagedPatch,
    /// An in-place entry that cannot be applied here: its target is not a
    /// whole number of erase units or does not fit the slot. Found before
    /// anything is written.
    InPlaceEntry,
}

/// How a failure is reported to a person: VPatch's result texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// The patch was applied.
    Ok,
    /// The target image was already there; nothing was written.
    AlreadyInstalled,
    /// Something other than the patch data failed.
    Error,
    /// The patch data is damaged or not a patch.
    Corrupt,
    /// The patch is sound but has nothing for this source.
    NoSuitablePatch,
}

impl Verdict {
    /// The exact text VPatch prints for this result.
    pub const fn message(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::AlreadyInstalled => "OK, new version already installed",
            Verdict::Error => "An error occurred while patching",
            Verdict::Corrupt => "Patch data is invalid or corrupt",
            Verdict::NoSuitablePatch => "No suitable patches were found",
        }
    }
}

impl ApplyError {
    /// Which of VPatch's results this error is.
    pub const fn verdict(&self) -> Verdict {
        match self {
            ApplyError::Container(_)
            | ApplyError::Header(_)
            | ApplyError::Codec { .. }
            | ApplyError::BodyCrc
            | ApplyError::BodyInvalid
            | ApplyError::Truncated
            | ApplyError::TrailingData
            | ApplyError::TargetMismatch
            | ApplyError::Unsigned
            | ApplyError::BadSignature
            | ApplyError::BodyDigest => Verdict::Corrupt,
            ApplyError::NoSuitablePatch => Verdict::NoSuitablePatch,
            ApplyError::Flash(_)
            | ApplyError::Rollback { .. }
            | ApplyError::TargetTooSmall { .. }
            | ApplyError::Failed => Verdict::Error,
        }
    }
}

impl SlotError {
    /// Which of VPatch's results this error is.
    pub const fn verdict(&self) -> Verdict {
        match self {
            SlotError::Apply(e) => e.verdict(),
            SlotError::ImageMismatch | SlotError::StagedPatch | SlotError::InPlaceEntry => {
                Verdict::Corrupt
            }
            SlotError::Flash(_)
            | SlotError::StateArea
            | SlotError::NoBootRecord
            | SlotError::NoBootableImage
            | SlotError::SlotState
            | SlotError::Rollback { .. } => Verdict::Error,
        }
    }
}

impl From<FlashError> for ApplyError {
    fn from(e: FlashError) -> Self {
        ApplyError::Flash(e)
    }
}

impl From<FlashError> for SlotError {
    fn from(e: FlashError) -> Self {
        SlotError::Flash(e)
    }
}

impl From<ApplyError> for SlotError {
    fn from(e: ApplyError) -> Self {
        match e {
            // A slot's flash failing is the slot manager's flash error.
            ApplyError::Flash(f) => SlotError::Flash(f),
            e => SlotError::Apply(e),
        }
    }
}

impl From<HeaderError> for ApplyError {
    fn from(e: HeaderError) -> Self {
        ApplyError::Header(e)
    }
}

impl From<ContainerError> for ApplyError {
    fn from(e: ContainerError) -> Self {
        ApplyError::Container(e)
    }
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContainerError::Magic => f.write_str("not a flashpatch file (bad magic)"),
            ContainerError::Version(v) => write!(
                f,
                "patch format version {v} is not supported (this build reads version 1)"
            ),
            ContainerError::Flags(b) => write!(f, "unknown container flags {b:#04x}"),
            ContainerError::Empty => f.write_str("the patch file has no entries"),
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Length => f.write_str("entry header length out of range"),
            HeaderError::Crc => f.write_str("entry header CRC mismatch"),
            HeaderError::Records => f.write_str("entry header records are malformed"),
            HeaderError::Version(v) => write!(f, "entry format version {v} is not supported"),
            HeaderError::Flags(b) => write!(f, "unknown entry flags {b:#04x}"),
            HeaderError::CriticalRecord(t) => write!(
                f,
                "entry needs a feature this build lacks (record {t:#04x})"
            ),
        }
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Flash(e) => e.fmt(f),
            ApplyError::Container(e) => e.fmt(f),
            ApplyError::Header(e) => e.fmt(f),
            ApplyError::Codec { codec, params } => {
                write!(
                    f,
                    "codec {codec} with parameters {params:#04x} is not supported"
                )
            }
            ApplyError::BodyCrc => f.write_str("patch body CRC mismatch"),
            ApplyError::BodyInvalid => f.write_str("patch body does not decode to a valid image"),
            ApplyError::Truncated => f.write_str("the patch ends early"),
            ApplyError::TrailingData => f.write_str("bytes follow the end of the patch"),
            ApplyError::TargetMismatch => {
                f.write_str("the image written does not match the target's SHA-256")
            }
            ApplyError::TargetTooSmall { needed, capacity } => {
                write!(
                    f,
                    "the target partition holds {capacity} bytes, the image needs {needed}"
                )
            }
            ApplyError::NoSuitablePatch => f.write_str("no entry of the patch is for this source"),
            ApplyError::Unsigned => f.write_str("the patch is not signed, and this device requires signed patches"),
            ApplyError::BadSignature => f.write_str("the patch's signature is not valid for the required key"),
            ApplyError::BodyDigest => f.write_str("the patch body does not match its signed SHA-256"),
            ApplyError::Rollback { counter, min } => write!(
                f,
                "the patch's security counter {counter} is below the minimum {min} (an older version)"
            ),
            ApplyError::Failed => f.write_str("the applier has already failed"),
        }
    }
}

impl core::error::Error for ApplyError {}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::Flash(e) => e.fmt(f),
            SlotError::Apply(e) => e.fmt(f),
            SlotError::StateArea => f.write_str(
                "the state area cannot hold two banks of a boot record and a checkpoint",
            ),
            SlotError::NoBootRecord => {
                f.write_str("the state area holds no boot record (device not provisioned)")
            }
            SlotError::NoBootableImage => f.write_str("no slot holds an image that verifies"),
            SlotError::SlotState => f.write_str("not allowed in the current boot state"),
            SlotError::Rollback { counter, min } => write!(
                f,
                "the image's security counter {counter} is below the component's floor {min}"
            ),
            SlotError::ImageMismatch => {
                f.write_str("the slot does not hold the image reported for it")
            }
            SlotError::StagedPatch => {
                f.write_str("the staged patch is damaged or not the one the update was begun with")
            }
            SlotError::InPlaceEntry => f.write_str(
                "the in-place entry's target is not whole erase units or does not fit the slot",
            ),
        }
    }
}

impl core::error::Error for SlotError {}

//! The one error type of the crate.

use core::fmt;

pub use crate::format::{ContainerError, HeaderError};

/// Everything that can stop a patch from being applied. `E` is the flash
/// driver's error.
///
/// Whatever the error, the source partition has not been written, so the
/// device can still boot what it ran before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<E> {
    /// The flash driver failed.
    Flash(E),
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

impl<E> Error<E> {
    /// Which of VPatch's results this error is.
    pub const fn verdict(&self) -> Verdict {
        match self {
            Error::Container(_)
            | Error::Header(_)
            | Error::Codec { .. }
            | Error::BodyCrc
            | Error::BodyInvalid
            | Error::Truncated
            | Error::TrailingData
            | Error::TargetMismatch
            | Error::Unsigned
            | Error::BadSignature
            | Error::BodyDigest => Verdict::Corrupt,
            Error::NoSuitablePatch => Verdict::NoSuitablePatch,
            Error::Flash(_)
            | Error::Rollback { .. }
            | Error::TargetTooSmall { .. }
            | Error::Failed
            | Error::StateArea
            | Error::NoBootRecord
            | Error::NoBootableImage
            | Error::SlotState => Verdict::Error,
        }
    }

    /// Replaces the flash error with another type.
    pub fn map_flash<F>(self, f: impl FnOnce(E) -> F) -> Error<F> {
        match self {
            Error::Flash(e) => Error::Flash(f(e)),
            Error::Container(e) => Error::Container(e),
            Error::Header(e) => Error::Header(e),
            Error::Codec { codec, params } => Error::Codec { codec, params },
            Error::BodyCrc => Error::BodyCrc,
            Error::BodyInvalid => Error::BodyInvalid,
            Error::Truncated => Error::Truncated,
            Error::TrailingData => Error::TrailingData,
            Error::TargetMismatch => Error::TargetMismatch,
            Error::TargetTooSmall { needed, capacity } => {
                Error::TargetTooSmall { needed, capacity }
            }
            Error::NoSuitablePatch => Error::NoSuitablePatch,
            Error::Unsigned => Error::Unsigned,
            Error::BadSignature => Error::BadSignature,
            Error::BodyDigest => Error::BodyDigest,
            Error::Rollback { counter, min } => Error::Rollback { counter, min },
            Error::Failed => Error::Failed,
            Error::StateArea => Error::StateArea,
            Error::NoBootRecord => Error::NoBootRecord,
            Error::NoBootableImage => Error::NoBootableImage,
            Error::SlotState => Error::SlotState,
        }
    }
}

impl<E> From<HeaderError> for Error<E> {
    fn from(e: HeaderError) -> Self {
        Error::Header(e)
    }
}

impl<E> From<ContainerError> for Error<E> {
    fn from(e: ContainerError) -> Self {
        Error::Container(e)
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

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Flash(e) => write!(f, "flash error: {e:?}"),
            Error::Container(e) => e.fmt(f),
            Error::Header(e) => e.fmt(f),
            Error::Codec { codec, params } => {
                write!(
                    f,
                    "codec {codec} with parameters {params:#04x} is not supported"
                )
            }
            Error::BodyCrc => f.write_str("patch body CRC mismatch"),
            Error::BodyInvalid => f.write_str("patch body does not decode to a valid image"),
            Error::Truncated => f.write_str("the patch ends early"),
            Error::TrailingData => f.write_str("bytes follow the end of the patch"),
            Error::TargetMismatch => {
                f.write_str("the image written does not match the target's SHA-256")
            }
            Error::TargetTooSmall { needed, capacity } => {
                write!(
                    f,
                    "the target partition holds {capacity} bytes, the image needs {needed}"
                )
            }
            Error::NoSuitablePatch => f.write_str("no entry of the patch is for this source"),
            Error::Unsigned => f.write_str("the patch is not signed, and this device requires signed patches"),
            Error::BadSignature => f.write_str("the patch's signature is not valid for the required key"),
            Error::BodyDigest => f.write_str("the patch body does not match its signed SHA-256"),
            Error::Rollback { counter, min } => write!(
                f,
                "the patch's security counter {counter} is below the minimum {min} (an older version)"
            ),
            Error::Failed => f.write_str("the applier has already failed"),
            Error::StateArea => f.write_str(
                "the state area cannot hold two banks of a boot record and a checkpoint",
            ),
            Error::NoBootRecord => {
                f.write_str("the state area holds no boot record (device not provisioned)")
            }
            Error::NoBootableImage => f.write_str("no slot holds an image that verifies"),
            Error::SlotState => f.write_str("not allowed in the current boot state"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {}

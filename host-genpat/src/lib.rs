//! Host-side tools for flashpatch: the patch generator behind `genpat`,
//! patch files with several entries, and host-side apply with the device's
//! own code.

pub mod apply;
pub mod container;
pub mod encode;
pub mod plan;
pub mod send;

use flashpatch::codec::{Params, CODEC_RC1};
use flashpatch::format::{EntryHeader, VERSION};

pub use container::Metadata;

/// Options of patch generation.
#[derive(Clone, Debug, Default)]
pub struct GenOptions {
    /// Matcher options.
    pub plan: plan::PlanOptions,
    /// Metadata recorded in the entry.
    pub meta: Metadata,
}

/// Something that wants to hear how far a long job has come. Every method
/// has a default that does nothing.
pub trait Progress {
    /// A phase starts; `total` is its length in its own units.
    fn start(&mut self, _phase: &'static str, _total: u64) {}
    /// `done` units of the current phase are finished.
    fn update(&mut self, _done: u64) {}
    /// The current phase is finished.
    fn finish(&mut self) {}
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Why a patch cannot be generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    /// An image is 4 GiB or larger: the format's sizes are 32-bit.
    #[error("images of 4 GiB or more do not fit the patch format ({0} bytes)")]
    TooLarge(usize),
}

/// Builds one patch entry (length field, header, body) that turns `old`
/// into `new`.
pub fn generate(
    old: &[u8],
    new: &[u8],
    opts: &GenOptions,
    progress: &mut dyn Progress,
) -> Result<(EntryHeader, Vec<u8>), GenError> {
    for len in [old.len(), new.len()] {
        if u32::try_from(len).is_err() {
            return Err(GenError::TooLarge(len));
        }
    }
    progress.start("matching", new.len() as u64);
    let steps = plan::plan(old, new, &opts.plan, &mut |done| {
        progress.update(done as u64)
    });
    progress.finish();
    progress.start("coding", Params::ALL.len() as u64);
    let mut best: Option<(Params, Vec<u8>)> = None;
    for (i, p) in Params::ALL.into_iter().enumerate() {
        let body = encode::encode_body(old, new, &steps, p);
        if best.as_ref().is_none_or(|(_, b)| body.len() < b.len()) {
            best = Some((p, body));
        }
        progress.update(i as u64 + 1);
    }
    progress.finish();
    let (params, body) = best.expect("at least one parameter set");
    let header = EntryHeader {
        version: VERSION,
        flags: 0,
        codec: CODEC_RC1,
        params: params.to_byte(),
        source: container::source_id(old),
        target: container::target_id(new),
        body_len: body.len() as u32,
        body_crc32: flashpatch::crc32::crc32(&body),
    };
    let entry = container::build_entry(&header, &opts.meta, &body);
    Ok((header, entry))
}

/// Builds a patch file with one entry that turns `old` into `new`.
pub fn diff(old: &[u8], new: &[u8], opts: &GenOptions) -> Result<Vec<u8>, GenError> {
    let (_, entry) = generate(old, new, opts, &mut NoProgress)?;
    Ok(container::assemble([entry.as_slice()]).expect("one entry fits"))
}

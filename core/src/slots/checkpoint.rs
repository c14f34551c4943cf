//! Checkpoint records: what they hold and how long they are, for both
//! copies of the slot manager.

use super::record::HEADER_LEN;
use super::{Image, Slot, RECORD_ALIGN};
use crate::snapshot::{Field, Fields};
use crate::{ApplierState, Outcome};

/// Bytes of a checkpoint record on flash (header, the component, the
/// applier's state, padding, CRC) with records aligned to [`RECORD_ALIGN`]
/// (write and read sizes up to 32 bytes; [`checkpoint_len`] gives it for
/// any alignment). A checkpoint of another length (another codec's or
/// version's) is ignored.
pub const CHECKPOINT_LEN: usize = checkpoint_len(RECORD_ALIGN);

/// Bytes of a checkpoint record with records aligned to `align` bytes
/// ([`super::record_align`] of the state area).
pub const fn checkpoint_len(align: usize) -> usize {
    (HEADER_LEN + 1 + 8 + crate::apply::SAVED_LEN + 4).div_ceil(align) * align
}

/// Which patch an update applies: its size and CRC-32 (the staging area
/// and the protocol's `Begin` know both). A checkpoint records it, so
/// that an update is continued only with the patch it was made from
/// ([`super::Slots::resume_or_begin`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PatchId {
    /// Bytes of the whole patch file.
    pub size: u32,
    /// CRC-32 of the whole patch file.
    pub crc32: u32,
}

impl PatchId {
    /// Not known: an update fed by a caller that did not say
    /// ([`Update::set_patch`](crate::slots::Update::set_patch)). Its checkpoints are continued only by
    /// [`super::Slots::resume`], which leaves the check to the caller.
    pub const UNKNOWN: PatchId = PatchId { size: 0, crc32: 0 };
}

/// A checkpoint's body: the component, the patch, then the applier's
/// state.
pub(crate) struct Checkpoint<'a> {
    pub(crate) component: u8,
    pub(crate) patch: PatchId,
    pub(crate) state: &'a mut ApplierState,
}

impl Fields for Checkpoint<'_> {
    fn field(&mut self, i: usize) -> Option<(&'static str, Field<'_>)> {
        crate::snapshot::fields!(i;
            "the component the update is for" => Field::U8(&mut self.component),
            "size of the patch being applied (0: not known)" => Field::U32(&mut self.patch.size),
            "CRC-32 of the patch being applied" => Field::U32(&mut self.patch.crc32),
            .. ApplierState: self.state,
        )
    }
}

/// The image an update left, ready for [`super::Slots::activate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Installed {
    /// The component the image is for.
    pub component: u8,
    /// Where the image is: the active slot if the patch found its target
    /// running already ([`Found::Source`](crate::Found::Source); activating it then writes
    /// nothing), else the inactive one.
    pub slot: Slot,
    /// The image, with the security counter of the entry that made it.
    pub image: Image,
    /// What the patch did.
    pub outcome: Outcome,
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    /// The table of a checkpoint's body, from its field list.
    fn table() -> String {
        use std::fmt::Write;
        let mut state = ApplierState::new();
        let mut body = Checkpoint {
            component: 0,
            patch: PatchId::UNKNOWN,
            state: &mut state,
        };
        let mut out = String::from("| offset | size | field |\n|---:|---:|---|\n");
        let (mut i, mut at) = (0, HEADER_LEN);
        while let Some((name, f)) = body.field(i) {
            writeln!(out, "| +{at} | {} | {name} |", f.len()).unwrap();
            at += f.len();
            i += 1;
        }
        assert_eq!(at, HEADER_LEN + 1 + 8 + crate::apply::SAVED_LEN);
        out
    }

    /// `docs/FORMAT.md`'s table of a checkpoint is the field list's:
    /// `FLASHPATCH_WRITE_DOCS=1 cargo test -p flashpatch checkpoint_table`
    /// writes it after a change.
    #[test]
    fn checkpoint_table_in_format_md_is_the_field_list() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/FORMAT.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (begin, end) = (
            "<!-- checkpoint fields: begin -->\n",
            "<!-- checkpoint fields: end -->",
        );
        let a = doc.find(begin).expect("begin marker") + begin.len();
        let b = doc.find(end).expect("end marker");
        let want = table();
        if std::env::var_os("FLASHPATCH_WRITE_DOCS").is_some() {
            let new = [&doc[..a], &want, &doc[b..]].concat();
            std::fs::write(path, new).unwrap();
            return;
        }
        assert!(
            doc[a..b] == want,
            "docs/FORMAT.md's checkpoint table differs from the field list; \
             FLASHPATCH_WRITE_DOCS=1 cargo test -p flashpatch checkpoint_table writes it:\n{want}"
        );
    }
}

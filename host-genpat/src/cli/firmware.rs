//! Inputs that are images: raw binaries as they are, ELF and Intel HEX
//! files laid out as images (`host_genpat::firmware`), told apart by
//! content.

use std::path::Path;

use host_genpat::firmware::{image_of, kind_of, Kind, Layout};

use super::{map_input, read_input, Failure, Input, EXIT_ERROR};

/// The image in the input `path` (which the command line calls `role`).
pub fn read_image(role: &str, path: &Path, layout: &Layout) -> Result<Vec<u8>, Failure> {
    let data = read_input(role, path)?;
    to_image(role, path, data, layout)
}

/// As [`read_image`], but a large raw file is mapped rather than read
/// (see [`map_input`]).
pub fn map_image(role: &str, path: &Path, layout: &Layout) -> Result<Input, Failure> {
    let input = map_input(role, path)?;
    if (layout.raw || kind_of(&input) == Kind::Raw) && layout.pad_to.is_none() {
        return Ok(input);
    }
    to_image(role, path, input.to_vec(), layout).map(Input::Read)
}

fn to_image(role: &str, path: &Path, data: Vec<u8>, layout: &Layout) -> Result<Vec<u8>, Failure> {
    let kind = if layout.raw {
        Kind::Raw
    } else {
        kind_of(&data)
    };
    let image = image_of(data, layout).map_err(|e| {
        Failure::new(
            EXIT_ERROR,
            format!("{role} '{}' ({kind}): {e}", path.display()),
        )
    })?;
    if u32::try_from(image.bytes.len()).is_err() {
        return Err(Failure::new(
            EXIT_ERROR,
            format!(
                "{role} '{}' makes an image of {} bytes; patch images are at most 4 GiB - 1",
                path.display(),
                image.bytes.len()
            ),
        ));
    }
    Ok(image.bytes)
}

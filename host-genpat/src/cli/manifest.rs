//! `genpat manifest`: writes a release's `update.json` (and with `--sign`
//! its signature `update.json.sig`) from the new image, its full-image
//! patch and the patches from older images.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use host_genpat::container::{self, Entry};
use host_genpat::manifest::{self, Component, Image, Manifest, Patch, Sha256Hex};
use host_genpat::{GenOptions, Metadata, NoProgress};

use super::{
    parse_patch, read_input, reason, write_atomic, Failure, EXIT_CORRUPT, EXIT_ERROR, EXIT_USAGE,
    MAX_VERSION_LEN,
};
use crate::ManifestArgs;

/// Builds the manifest, and FULL if it is missing, and writes them.
pub fn run(args: &ManifestArgs) -> Result<(), Failure> {
    let new = read_input("NEW", &args.image)?;
    if u32::try_from(new.len()).is_err() {
        return Err(Failure::new(
            EXIT_ERROR,
            format!("NEW '{}' is 4 GiB or larger", args.image.display()),
        ));
    }
    let target = Image::of(&new);
    let key = args
        .sign
        .as_deref()
        .map(super::keys::read_secret)
        .transpose()?;
    let notes = match &args.notes_file {
        Some(p) => String::from_utf8(read_input("notes", p)?).map_err(|_| {
            Failure::new(EXIT_ERROR, format!("'{}' is not UTF-8 text", p.display()))
        })?,
        None => args.notes.clone(),
    };

    let full = full_patch(args, &new, key.as_ref())?;
    let mut component = Component {
        name: args.component.clone(),
        target,
        url: reference(args.base_url.as_deref(), &args.full)?,
        size: full.len() as u64,
        sha256: Sha256Hex::of(&full),
        patch_urls: Default::default(),
    };
    for pair in args.patch.chunks_exact(2) {
        let patch = delta(&pair[0], &pair[1], &new, args)?;
        let key = patch.source.sha256;
        if component.patch_urls.insert(key, patch).is_some() {
            return Err(Failure::new(
                EXIT_USAGE,
                format!("two --patch options name the same OLD image (SHA-256 {key})"),
            ));
        }
    }
    let m = Manifest {
        format: manifest::FORMAT,
        version: args.version_text.clone(),
        notes,
        components: vec![component],
    };
    m.check()
        .map_err(|e| Failure::new(EXIT_ERROR, e.to_string()))?;
    let bytes = m.to_bytes();
    write(&args.out, &bytes, args.sync)?;
    let sig_path = sig_path(&args.out);
    let signed = match &key {
        Some(k) => {
            write(&sig_path, manifest::sign(&bytes, k).as_bytes(), args.sync)?;
            format!(", signed in {}", sig_path.display())
        }
        None => unsigned(&sig_path)?,
    };
    eprintln!(
        "genpat: wrote {}: version {}, component {}, full image {} bytes, {} patch{}{signed}",
        args.out.display(),
        m.version,
        args.component,
        full.len(),
        m.components[0].patch_urls.len(),
        if m.components[0].patch_urls.len() == 1 {
            ""
        } else {
            "es"
        },
    );
    Ok(())
}

/// FULL's bytes: read and checked if it exists, else built from NEW (a
/// patch with no source, signed with the manifest's key if there is one)
/// and written.
fn full_patch(
    args: &ManifestArgs,
    new: &[u8],
    key: Option<&host_genpat::keys::SecretKey>,
) -> Result<Vec<u8>, Failure> {
    let path = &args.full;
    match fs::read(path) {
        Ok(file) => {
            let entries = entries_for(path, &file, new, &args.image)?;
            if !entries.iter().any(|e| e.header.source.size == 0) {
                return Err(Failure::new(
                    EXIT_ERROR,
                    format!(
                        "FULL '{}' has no full-image entry (one with no source)",
                        path.display()
                    ),
                )
                .help("remove it to have genpat build it from NEW, or name another --full"));
            }
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let opts = GenOptions {
                meta: Metadata {
                    version: Some(args.version_text.clone()).filter(|v| v.len() <= MAX_VERSION_LEN),
                    ..Metadata::default()
                },
                ..GenOptions::default()
            };
            let (_, mut entry) = host_genpat::generate(&[], new, &opts, &mut NoProgress)
                .map_err(|e| Failure::new(EXIT_ERROR, e.to_string()))?;
            if let Some(k) = key {
                entry = container::sign_entry(&entry, k)
                    .map_err(|e| Failure::new(EXIT_ERROR, e.to_string()))?;
            }
            let file = container::assemble([entry.as_slice()]).expect("one entry fits");
            super::write_patch(path, &file, args.sync)?;
            eprintln!(
                "genpat: built the full image {} ({} bytes)",
                path.display(),
                file.len()
            );
            Ok(file)
        }
        Err(e) => Err(Failure::new(
            EXIT_ERROR,
            format!("cannot read FULL '{}': {}", path.display(), reason(&e)),
        )),
    }
}

/// The entries of the patch file `path`, checked: intact, and every one
/// makes NEW (so that whichever a device picks, it ends up running NEW).
fn entries_for(
    path: &Path,
    file: &[u8],
    new: &[u8],
    new_path: &Path,
) -> Result<Vec<Entry>, Failure> {
    let bad = |why: String| Failure::new(EXIT_CORRUPT, format!("'{}': {why}", path.display()));
    let entries = parse_patch(file).map_err(bad)?;
    let target = container::target_id(new);
    for (i, e) in entries.iter().enumerate() {
        if !e.body_ok() {
            return Err(bad(format!("entry {}: patch body CRC mismatch", i + 1)));
        }
        if e.header.target != target {
            return Err(Failure::new(
                EXIT_ERROR,
                format!(
                    "'{}': entry {} makes another image than NEW '{}'",
                    path.display(),
                    i + 1,
                    new_path.display()
                ),
            )
            .help("build the patches with the same NEW as --image"));
        }
    }
    Ok(entries)
}

/// One `--patch OLD PATCH`: checked against OLD and NEW.
fn delta(
    old_path: &Path,
    patch_path: &Path,
    new: &[u8],
    args: &ManifestArgs,
) -> Result<Patch, Failure> {
    let old = read_input("OLD", old_path)?;
    let file = read_input("PATCH", patch_path)?;
    let entries = entries_for(patch_path, &file, new, &args.image)?;
    let source = container::source_id(&old);
    if !entries.iter().any(|e| e.header.source == source) {
        return Err(Failure::new(
            EXIT_ERROR,
            format!(
                "PATCH '{}' has no entry for OLD '{}'",
                patch_path.display(),
                old_path.display()
            ),
        )
        .help("each --patch names an old image and a patch built from it: genpat OLD NEW PATCH"));
    }
    Ok(Patch {
        url: reference(args.base_url.as_deref(), patch_path)?,
        size: file.len() as u64,
        sha256: Sha256Hex::of(&file),
        source: Image::of(&old),
        target: Image::of(new),
    })
}

/// The URL a manifest gives for `path`: its file name, under `base` if
/// given, else relative to the manifest (so the files are served beside
/// it).
fn reference(base: Option<&str>, path: &Path) -> Result<String, Failure> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let url_safe = |b: u8| b.is_ascii_alphanumeric() || b"._~+-".contains(&b);
    if name.is_empty() || !name.bytes().all(url_safe) {
        return Err(Failure::new(
            EXIT_USAGE,
            format!(
                "the file name of '{}' cannot be used in a URL as it is",
                path.display()
            ),
        )
        .help("rename it to letters, digits and . _ ~ + -"));
    }
    Ok(match base {
        Some(b) if b.ends_with('/') => format!("{b}{name}"),
        Some(b) => format!("{b}/{name}"),
        None => name.to_owned(),
    })
}

/// Where the signature of the manifest `out` goes.
pub fn sig_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".sig");
    PathBuf::from(p)
}

fn write(path: &Path, data: &[u8], sync: bool) -> Result<(), Failure> {
    write_atomic(path, data, sync).map_err(|e| {
        Failure::new(
            EXIT_ERROR,
            format!("cannot write '{}': {}", path.display(), reason(&e)),
        )
    })
}

/// An unsigned manifest: removes a signature left from an earlier one,
/// which no longer matches.
fn unsigned(sig_path: &Path) -> Result<String, Failure> {
    match fs::remove_file(sig_path) {
        Ok(()) => Ok(format!(
            ", unsigned (removed the old {})",
            sig_path.display()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(", unsigned".into()),
        Err(e) => Err(Failure::new(
            EXIT_ERROR,
            format!(
                "cannot remove the old signature '{}': {}",
                sig_path.display(),
                reason(&e)
            ),
        )),
    }
}

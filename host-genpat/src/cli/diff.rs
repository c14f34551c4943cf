//! `genpat diff OLD NEW PATCH` (and the classic `genpat OLD NEW PATCH`).

use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use flashpatch::format::EntryHeader;
use host_genpat::container::{self, Added, Entry};
use host_genpat::in_place;
use host_genpat::plan::PlanOptions;
use host_genpat::{GenOptions, Metadata};

use super::progress::Bars;
use super::{
    hex, lock_patch, parse_patch, reason, refuse_same_file, write_patch, Failure, EXIT_ERROR,
    EXIT_EXISTS,
};
use crate::DiffArgs;

/// Builds the entry and writes PATCH.
pub fn run(args: &DiffArgs) -> Result<(), Failure> {
    refuse_same_file(
        "PATCH",
        &args.patch,
        &[("OLD", &args.old), ("NEW", &args.new)],
    )?;
    let layout = args.layout.layout();
    let old = super::firmware::read_image("OLD", &args.old, &layout)?;
    let new = super::firmware::read_image("NEW", &args.new, &layout)?;
    let mtime = if args.mtime {
        fs::metadata(&args.new)
            .and_then(|m| m.modified())
            .ok()
            .map(unix_seconds)
    } else {
        None
    };
    let existing = read_existing(&args.patch)?;
    let key = args
        .sign
        .as_deref()
        .map(super::keys::read_secret)
        .transpose()?;

    // Refuse early, before the (possibly long) generation.
    let source = container::source_id(&old);
    let mode = args.in_place.then_some(false);
    if let Some(Existing { file, entries }) = &existing {
        check_body_crcs(&args.patch, entries)?;
        let same = entries.iter().position(|e| {
            e.same_slot(&source, args.component) && e.meta.in_place.map(|m| m.rollback) == mode
        });
        if let (Some(i), false) = (same, args.replace) {
            return Err(exists(&args.patch, i, file.len()));
        }
    }

    let opts = GenOptions {
        plan: PlanOptions {
            min_match: args.block_size,
            ..PlanOptions::default()
        },
        meta: Metadata {
            version: args.version_string.clone(),
            mtime,
            security_counter: args.security_counter,
            component: args.component,
            in_place: None,
            source_sha: None,
        },
    };
    let mut made = Vec::new();
    if args.in_place {
        let unit = args.erase_unit;
        let failed = |e: host_genpat::GenError| Failure::new(EXIT_ERROR, e.to_string());
        eprintln!(
            "genpat: planning the in-place entry ({unit}-byte erase units, both orders){}",
            if args.no_reverse {
                ""
            } else {
                " and its reverse"
            }
        );
        made.push(
            in_place::entry(&old, &new, unit, false, &opts.meta, &opts.plan).map_err(failed)?,
        );
        if !args.no_reverse {
            // It restores OLD: no version or counter of NEW's.
            let meta = Metadata {
                mtime: None,
                version: None,
                security_counter: None,
                ..opts.meta.clone()
            };
            let target = in_place::padded(&new, unit as usize);
            made.push(
                in_place::entry(&target, &old, unit, true, &meta, &opts.plan).map_err(failed)?,
            );
        }
    } else {
        let mut bars = Bars::new(old.len() + new.len());
        let generated = host_genpat::generate(&old, &new, &opts, &mut bars);
        drop(bars);
        made.push(generated.map_err(|e| Failure::new(EXIT_ERROR, e.to_string()))?);
    }
    if let Some(key) = &key {
        for (_, entry) in &mut made {
            *entry = container::sign_entry(entry, key)
                .map_err(|e| Failure::new(EXIT_ERROR, e.to_string()))?;
        }
    }

    // Another genpat may have changed PATCH meanwhile: it is read again
    // under the lock, and the lock is held until the new file is in place,
    // so that parallel runs each add their entry.
    let lock = lock_patch(&args.patch)?;
    let existing = read_existing(&args.patch)?;
    if let Some(Existing { entries, .. }) = &existing {
        check_body_crcs(&args.patch, entries)?;
    }
    let mut file = existing.map(|e| e.file);
    let mut added = Vec::new();
    for (header, entry) in &made {
        let before = file.as_deref();
        let (next, how) = match container::add_entry(before, header, entry, args.replace) {
            Ok(Some(done)) => done,
            Ok(None) => return Err(exists(&args.patch, 0, before.map_or(0, <[u8]>::len))),
            Err(e) => {
                return Err(Failure::new(
                    EXIT_ERROR,
                    format!("cannot add the entry to '{}': {e}", args.patch.display()),
                ))
            }
        };
        added.push(how);
        file = Some(next);
    }
    let file = file.unwrap_or_default();
    write_patch(&args.patch, &file, args.sync)?;
    drop(lock);

    let entries = parse_patch(&file).unwrap_or_default();
    for (k, ((header, entry), added)) in made.iter().zip(&added).enumerate() {
        let role = header_role(&entries, header);
        let index = entries
            .iter()
            .position(|e| {
                e.header.source == header.source
                    && e.meta.component == args.component
                    && e.meta.in_place.map(|m| m.rollback) == role
            })
            .map_or(entries.len(), |i| i + 1);
        let verb = match (k, added) {
            (0, Added::Created) => "created",
            (_, Added::Created | Added::Appended) => "added to",
            (_, Added::Replaced) => "replaced in",
        };
        let image = if k == 0 { new.len() } else { old.len() };
        let share = if image == 0 {
            String::new()
        } else {
            format!(
                " ({:.2} % of {image})",
                entry.len() as f64 * 100.0 / image as f64,
            )
        };
        let what = match (args.component, role) {
            (_, Some(false)) => format!("in place, {}-byte units, ", args.erase_unit),
            (_, Some(true)) => format!(
                "in place, reverse (rollback), {}-byte units, ",
                args.erase_unit
            ),
            (0, None) => String::new(),
            (c, None) => format!("component {c}, "),
        };
        eprintln!(
            "genpat: {verb} {}: entry {index} of {}, {what}{} bytes{share}, source {}… → target {}…",
            args.patch.display(),
            entries.len(),
            entry.len(),
            &hex(&header.source.md5)[..8],
            &hex(&header.target.sha256)[..8],
        );
    }
    Ok(())
}

/// The in-place role (`Some(rollback)`) of the entry of PATCH with
/// `header`, `None` for an A/B entry.
fn header_role(entries: &[Entry], header: &EntryHeader) -> Option<bool> {
    entries
        .iter()
        .find(|e| e.header == *header)
        .and_then(|e| e.meta.in_place.map(|m| m.rollback))
}

/// An existing PATCH: its bytes and its entries.
struct Existing {
    file: Vec<u8>,
    entries: Vec<Entry>,
}

/// Reads PATCH if it exists; it must then be a valid patch file.
fn read_existing(path: &Path) -> Result<Option<Existing>, Failure> {
    let file = match fs::File::open(path) {
        Ok(f) => super::read_bounded("PATCH", path, f, super::input_limit())?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Failure::new(
                EXIT_ERROR,
                format!("cannot read PATCH '{}': {}", path.display(), reason(&e)),
            ))
        }
    };
    match parse_patch(&file) {
        Ok(entries) => Ok(Some(Existing { file, entries })),
        Err(why) => Err(not_a_patch(path, &why)),
    }
}

/// Refuses to add to a file whose existing entries are damaged.
fn check_body_crcs(path: &Path, entries: &[Entry]) -> Result<(), Failure> {
    match entries.iter().position(|e| !e.body_ok()) {
        Some(i) => Err(not_a_patch(
            path,
            &format!("entry {}: patch body CRC mismatch", i + 1),
        )),
        None => Ok(()),
    }
}

fn not_a_patch(path: &Path, why: &str) -> Failure {
    Failure::new(
        EXIT_ERROR,
        format!(
            "PATCH '{}' exists but is not a valid patch file: {why}",
            path.display()
        ),
    )
    .help("genpat adds entries only to valid patch files; it left this one untouched. Choose another PATCH, or remove this file first")
}

fn exists(path: &Path, index: usize, size: usize) -> Failure {
    Failure::new(
        EXIT_EXISTS,
        format!(
            "PATCH '{}' already has an entry for this OLD image and component (entry {}); the file \
             ({size} bytes) is unchanged",
            path.display(),
            index + 1
        ),
    )
    .help("pass --replace to replace that entry")
}

/// Seconds since the Unix epoch (negative before it).
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

//! `genpat manifest`: writes a release's `update.json` (and with `--sign`
//! its signature `update.json.sig`) from the new image, its full-image
//! patch and the patches from older images; and `genpat update`'s check
//! of a manifest against what this host has seen of the device.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use host_genpat::container::{self, Entry};
use host_genpat::manifest::history::{History, Refusal, Running};
use host_genpat::manifest::{self, Component, Image, Manifest, Patch, Sha256Hex};
use host_genpat::{GenOptions, Metadata, NoProgress};

use serde::Serialize;

use super::{
    parse_patch, read_input, reason, say, write_atomic, Failure, EXIT_CORRUPT, EXIT_ERROR,
    EXIT_NO_SUITABLE, EXIT_USAGE, MAX_VERSION_LEN,
};
use crate::ManifestArgs;

/// The `--json` document. Its shape is documented in `genpat manifest
/// --help`; fields may be added, none removed, while `format_version` is 1.
#[derive(Serialize)]
struct Document {
    format_version: u8,
    manifest: String,
    signature: Option<String>,
    version: String,
    sequence: u64,
    component: String,
    target: Image,
    security_counter: Option<u32>,
    full: FileInfo,
    patches: Vec<FileInfo>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct FileInfo {
    path: String,
    url: String,
    size: u64,
    sha256: Sha256Hex,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Image>,
    #[serde(skip_serializing_if = "Option::is_none")]
    built: Option<bool>,
}

/// Builds the manifest, and FULL if it is missing, and writes them.
pub fn run(args: &ManifestArgs) -> Result<(), Failure> {
    let new = super::firmware::read_image("NEW", &args.image, &args.layout.layout())?;
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
    let sequence = match args.sequence {
        Some(n) => n,
        None => default_sequence()?,
    };

    let (full, built, counter) = full_patch(args, &new, key.as_ref())?;
    let mut component = Component {
        name: args.component.clone(),
        target,
        url: reference(args.base_url.as_deref(), &args.full)?,
        size: full.len() as u64,
        sha256: Sha256Hex::of(&full),
        security_counter: counter,
        patch_urls: Default::default(),
    };
    let mut patches = Vec::new();
    for pair in args.patch.chunks_exact(2) {
        let patch = delta(&pair[0], &pair[1], &new, counter, args)?;
        let key = patch.source.sha256;
        patches.push(FileInfo {
            path: pair[1].display().to_string(),
            url: patch.url.clone(),
            size: patch.size,
            sha256: patch.sha256,
            source: Some(patch.source),
            built: None,
        });
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
        sequence_number: Some(sequence),
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
    let c = &m.components[0];
    eprintln!(
        "genpat: wrote {}: version {}, sequence {sequence}, component {}, full image {} bytes, {} patch{}{signed}",
        args.out.display(),
        m.version,
        args.component,
        full.len(),
        c.patch_urls.len(),
        if c.patch_urls.len() == 1 { "" } else { "es" },
    );
    let mut warnings = Vec::new();
    if key.is_none() {
        warnings.push(
            "the manifest is unsigned (no --sign KEY): a device's host cannot tell it from a forged one"
                .to_owned(),
        );
    }
    if counter.is_none() {
        warnings.push(
            "the release has no security counter (--security-counter N): devices cannot refuse an older image signed with the same key, and genpat update orders images only by the manifests it has accepted"
                .to_owned(),
        );
    }
    for w in &warnings {
        eprintln!("genpat: warning: {w}");
    }
    if args.json {
        let doc = Document {
            format_version: 1,
            manifest: args.out.display().to_string(),
            signature: key.as_ref().map(|_| sig_path.display().to_string()),
            version: m.version.clone(),
            sequence,
            component: c.name.clone(),
            target: c.target,
            security_counter: counter,
            full: FileInfo {
                path: args.full.display().to_string(),
                url: c.url.clone(),
                size: c.size,
                sha256: c.sha256,
                source: None,
                built: Some(built),
            },
            patches,
            warnings,
        };
        say(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    Ok(())
}

/// The sequence number when `--sequence` is not given: the build's time,
/// `SOURCE_DATE_EPOCH` if set (reproducible builds), else now, in seconds
/// since the Unix epoch.
fn default_sequence() -> Result<u64, Failure> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse().map_err(|_| {
            Failure::new(
                EXIT_USAGE,
                format!("SOURCE_DATE_EPOCH '{v}' is not a number of seconds"),
            )
            .help("set it to a whole number, or give --sequence N")
        }),
        Err(_) => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())),
    }
}

/// FULL's bytes, whether genpat built them, and the release's security
/// counter: FULL read and checked if it exists (its full-image entry's
/// counter, which must be --security-counter if that is given), else
/// built from NEW (a patch with no source and --security-counter's
/// counter, signed with the manifest's key if there is one) and written.
fn full_patch(
    args: &ManifestArgs,
    new: &[u8],
    key: Option<&host_genpat::keys::SecretKey>,
) -> Result<(Vec<u8>, bool, Option<u32>), Failure> {
    let path = &args.full;
    match fs::read(path) {
        Ok(file) => {
            let entries = entries_for(path, &file, new, &args.image)?;
            let Some(full) = entries.iter().find(|e| e.header.source.size == 0) else {
                return Err(Failure::new(
                    EXIT_ERROR,
                    format!(
                        "FULL '{}' has no full-image entry (one with no source)",
                        path.display()
                    ),
                )
                .help("remove it to have genpat build it from NEW, or name another --full"));
            };
            let counter = full.meta.security_counter;
            if args.security_counter.is_some() {
                same_counter(path, &entries, args.security_counter)?;
            }
            same_counter(path, &entries, counter)?;
            Ok((file, false, counter))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let opts = GenOptions {
                meta: Metadata {
                    version: Some(args.version_text.clone()).filter(|v| v.len() <= MAX_VERSION_LEN),
                    security_counter: args.security_counter,
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
            Ok((file, true, args.security_counter))
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

/// Refuses entries of `path` whose security counter is not `counter`, the
/// release's: whichever file a device gets, the image it then runs has
/// the counter the manifest gives.
fn same_counter(path: &Path, entries: &[Entry], counter: Option<u32>) -> Result<(), Failure> {
    let says = |c: Option<u32>| c.map_or("none".to_owned(), |n| n.to_string());
    match entries
        .iter()
        .position(|e| e.meta.security_counter != counter)
    {
        None => Ok(()),
        Some(i) => Err(Failure::new(
            EXIT_ERROR,
            format!(
                "'{}': entry {} has security counter {}; the release's is {}",
                path.display(),
                i + 1,
                says(entries[i].meta.security_counter),
                says(counter)
            ),
        )
        .help("build FULL and every patch of a release with the same --security-counter")),
    }
}

/// One `--patch OLD PATCH`: checked against OLD and NEW, and to carry the
/// release's security counter `counter`.
fn delta(
    old_path: &Path,
    patch_path: &Path,
    new: &[u8],
    counter: Option<u32>,
    args: &ManifestArgs,
) -> Result<Patch, Failure> {
    let old = super::firmware::read_image("OLD", old_path, &args.layout.layout())?;
    let file = read_input("PATCH", patch_path)?;
    let entries = entries_for(patch_path, &file, new, &args.image)?;
    same_counter(patch_path, &entries, counter)?;
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

/// How `genpat update` remembers devices (docs/MANIFEST.md, section 6).
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Send the manifest's image even if it is older than the image the
    /// device runs (a manifest older than one already accepted for the
    /// device is refused all the same).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// The name genpat remembers the device by (default: its link, as
    /// serial:PORT, tcp:HOST:PORT or unix:PATH).
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// Where genpat keeps what it has seen of each device (default:
    /// $GENPAT_STATE_DIR, else $XDG_STATE_HOME/genpat, else
    /// ~/.local/state/genpat).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// The state directory `genpat update` keeps device histories in.
fn state_dir(args: &HistoryArgs) -> Result<PathBuf, Failure> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    args.state_dir
        .clone()
        .or_else(|| var("GENPAT_STATE_DIR").map(PathBuf::from))
        .or_else(|| var("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("genpat")))
        .or_else(|| var("HOME").map(|d| PathBuf::from(d).join(".local/state/genpat")))
        .ok_or_else(|| {
            Failure::new(
                EXIT_USAGE,
                "no state directory to remember the device in (no HOME)",
            )
            .help("give --state-dir DIR or set GENPAT_STATE_DIR")
        })
}

/// The name a device is remembered by.
fn device_name(args: &HistoryArgs, link: &crate::LinkArgs) -> String {
    if let Some(d) = &args.device {
        return d.clone();
    }
    match (&link.port, &link.tcp, &link.unix) {
        (Some(p), _, _) => format!("serial:{p}"),
        (_, Some(t), _) => format!("tcp:{t}"),
        (_, _, Some(u)) => format!(
            "unix:{}",
            fs::canonicalize(u).unwrap_or(u.clone()).display()
        ),
        _ => "device".into(),
    }
}

/// `genpat update`'s check of the manifest `m` against what this host
/// has seen of the device on `link`, whose components run `running`,
/// before `chosen` are installed: refuses an older manifest (exit code 4)
/// or an older image without --allow-downgrade (exit code 5), and else
/// records the manifest as accepted for the device.
pub fn guard(
    args: &HistoryArgs,
    link: &crate::LinkArgs,
    m: &Manifest,
    chosen: &[&Component],
    running: &[Running],
) -> Result<(), Failure> {
    let device = device_name(args, link);
    let path = History::path(&state_dir(args)?, &device);
    let mut history = History::load(&path, &device).map_err(|e| {
        Failure::new(EXIT_ERROR, e.to_string())
            .help("remove the file to forget what genpat has seen of the device")
    })?;
    if m.sequence_number.is_none() {
        eprintln!("genpat: warning: the manifest has no sequence number: genpat cannot tell an older manifest from it");
    }
    let allowed = history
        .check(m, chosen, running, args.allow_downgrade)
        .map_err(|r| match r {
            Refusal::OlderManifest { .. } => Failure::new(
                EXIT_CORRUPT,
                format!("refusing the manifest: {r}"),
            )
            .help(format!(
                "an older manifest may be an old release replayed; to go back, publish the release again with a higher --sequence, or remove '{}' to forget the device",
                path.display()
            )),
            _ => Failure::new(EXIT_NO_SUITABLE, format!("not sending an older image: {r}"))
                .help("pass --allow-downgrade to install it all the same"),
        })?;
    for r in allowed {
        eprintln!("genpat: warning: installing an older image (--allow-downgrade): {r}");
    }
    history.accept(m, chosen);
    history.store(&path).map_err(|e| {
        Failure::new(
            EXIT_ERROR,
            format!("cannot write '{}': {}", path.display(), reason(&e)),
        )
    })
}

//! `genpat update --manifest PATH_OR_URL [--key PUB] [--component NAME]...
//! LINK`: reads a release's manifest (checking its signature with
//! `--key`), asks the device what it runs, downloads the patch for that
//! image (or the full image), checks it against the manifest and sends it
//! with `genpat send`'s code. With several `--component`s it asks what
//! each of the device's components runs and sends one file with the
//! entries of every component's download.

use host_genpat::container;
use host_genpat::fetch::{FetchError, Location};
use host_genpat::manifest::history::Running;
use host_genpat::manifest::{self, Choice, Component, Image, Manifest, Sha256Hex};

use super::progress::Bars;
use super::send::{deliver, describe, open, options};
use super::{Failure, EXIT_CORRUPT, EXIT_ERROR, EXIT_NO_SUITABLE, EXIT_USAGE};
use crate::UpdateArgs;

/// The largest manifest or signature file genpat reads.
const MAX_MANIFEST: u64 = 1 << 20;

/// Runs the update; the exit code says how it ended.
pub fn run(args: &UpdateArgs) -> Result<(), Failure> {
    let at = Location::parse(&args.manifest);
    let key = args
        .key
        .as_deref()
        .map(super::keys::read_public)
        .transpose()?;
    let bytes = fetch(&at, MAX_MANIFEST)?;
    match &key {
        Some(k) => check_signature(&at, &bytes, k)?,
        None => eprintln!("genpat: warning: the manifest's signature is not checked (no --key)"),
    }
    let m = Manifest::from_bytes(&bytes)
        .map_err(|e| Failure::new(EXIT_CORRUPT, format!("'{at}': {e}")))?;
    if args.component.len() > 1 {
        return several(args, &at, &m);
    }
    let name = args.component.first().map(String::as_str);
    let component = m.component(name).ok_or_else(|| {
        let names: Vec<&str> = m.components.iter().map(|c| c.name.as_str()).collect();
        Failure::new(
            EXIT_NO_SUITABLE,
            match name {
                Some(n) => format!("the manifest has no component '{n}'"),
                None => "the manifest has several components".into(),
            },
        )
        .help(format!("choose one with --component: {}", names.join(", ")))
    })?;
    eprintln!(
        "genpat: manifest: version {}, component {}, {} patch{}{}",
        m.version,
        component.name,
        component.patch_urls.len(),
        if component.patch_urls.len() == 1 {
            ""
        } else {
            "es"
        },
        if key.is_some() {
            ", signature good"
        } else {
            ""
        }
    );
    for line in m.notes.lines() {
        eprintln!("  | {line}");
    }

    let (mut link, name) = open(&args.link)?;
    let opts = options(&args.link);
    let device = host_genpat::send::hello(link.as_mut(), &opts)
        .map_err(|e| Failure::new(EXIT_ERROR, format!("{name}: {e}")))?;
    eprintln!("genpat: device: {}", describe(&device));
    let running = Image {
        size: device.image_size,
        sha256: Sha256Hex(device.image_sha256),
    };
    let announced = Running {
        image: running,
        security_counter: device.counters.map_or(0, |c| c.security_counter),
        name: device.version.clone(),
    };
    super::manifest::guard(&args.history, &args.link, &m, &[component], &[announced])?;
    let (reference, size, sha256) = match component.select(&running) {
        Choice::Current => {
            super::send::say_installed(&device, args.json);
            eprintln!("genpat: the device already runs version {}", m.version);
            return Ok(());
        }
        Choice::Patch(p) => {
            eprintln!(
                "genpat: the manifest has a patch for the device's image: {} ({} bytes)",
                p.url, p.size
            );
            (&p.url, p.size, p.sha256)
        }
        Choice::Full => {
            eprintln!(
                "genpat: no patch of the manifest is for the device's image: sending the full image {} ({} bytes)",
                component.url, component.size
            );
            (&component.url, component.size, component.sha256)
        }
    };
    let from = at.join(reference);
    let patch = fetch(&from, size)?;
    check_download(&from, &patch, size, sha256)?;
    eprintln!("genpat: downloaded {from}: SHA-256 as the manifest says");
    deliver(link.as_mut(), &name, &patch, &opts, false, args.json)
}

/// The update of several components (`--component` given more than once):
/// what each of the device's components runs picks each manifest
/// component's download, and their entries go to the device as one file.
fn several(args: &UpdateArgs, at: &Location, m: &Manifest) -> Result<(), Failure> {
    let mut chosen: Vec<&Component> = Vec::new();
    for n in &args.component {
        let c = m.component(Some(n)).ok_or_else(|| {
            let names: Vec<&str> = m.components.iter().map(|c| c.name.as_str()).collect();
            Failure::new(
                EXIT_NO_SUITABLE,
                format!("the manifest has no component '{n}'"),
            )
            .help(format!("the manifest's components: {}", names.join(", ")))
        })?;
        if chosen.iter().any(|d| d.name == c.name) {
            return Err(Failure::new(
                EXIT_USAGE,
                format!("--component {n} is given twice"),
            ));
        }
        chosen.push(c);
    }
    eprintln!(
        "genpat: manifest: version {}, components {}",
        m.version,
        args.component.join(", ")
    );
    let (mut link, name) = open(&args.link)?;
    let opts = options(&args.link);
    let device = host_genpat::send::hello(link.as_mut(), &opts)
        .map_err(|e| Failure::new(EXIT_ERROR, format!("{name}: {e}")))?;
    eprintln!("genpat: device: {}", describe(&device));
    let parts = host_genpat::send::components(link.as_mut(), &opts)
        .map_err(|e| Failure::new(EXIT_ERROR, format!("{name}: {e}")))?;
    let running: Vec<Image> = parts
        .iter()
        .map(|p| Image {
            size: p.image_size,
            sha256: Sha256Hex(p.image_sha256),
        })
        .collect();
    let announced: Vec<Running> = parts
        .iter()
        .zip(&running)
        .map(|(p, image)| Running {
            image: *image,
            security_counter: p.security_counter,
            name: if p.component == 0 {
                device.version.clone()
            } else {
                format!(
                    "{} bytes, SHA-256 {}…",
                    p.image_size,
                    &image.sha256.to_string()[..16]
                )
            },
        })
        .collect();
    super::manifest::guard(&args.history, &args.link, m, &chosen, &announced)?;
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for c in chosen {
        if running
            .iter()
            .any(|r| matches!(c.select(r), Choice::Current))
        {
            eprintln!(
                "genpat: {}: the device already runs version {}",
                c.name, m.version
            );
            continue;
        }
        // The device component that runs a source this component has a
        // patch for, if any; else the full image, for whichever
        // component its entries name.
        let patch = running
            .iter()
            .enumerate()
            .find_map(|(k, r)| match c.select(r) {
                Choice::Patch(p) => Some((k, p)),
                _ => None,
            });
        let (reference, size, sha256, runs) = match patch {
            Some((k, p)) => {
                eprintln!(
                    "genpat: {}: a patch for the image device component {k} runs: {} ({} bytes)",
                    c.name, p.url, p.size
                );
                (&p.url, p.size, p.sha256, Some(k))
            }
            None => {
                eprintln!(
                    "genpat: {}: no patch is for an image the device runs: the full image {} ({} bytes)",
                    c.name, c.url, c.size
                );
                (&c.url, c.size, c.sha256, None)
            }
        };
        let from = at.join(reference);
        let file = fetch(&from, size)?;
        check_download(&from, &file, size, sha256)?;
        let parsed = container::parse(&file)
            .map_err(|e| Failure::new(EXIT_CORRUPT, format!("'{from}': {e}")))?;
        let mut ks: Vec<u8> = parsed.iter().map(|e| e.meta.component).collect();
        ks.dedup();
        let k = match ks[..] {
            [k] if runs.is_none_or(|r| r == k as usize) && (k as usize) < running.len() => k,
            _ => {
                return Err(Failure::new(
                    EXIT_NO_SUITABLE,
                    format!(
                        "'{from}' has entries for component(s) {ks:?}; the device has {} component(s){}",
                        running.len(),
                        match runs {
                            Some(r) => format!(", and its source runs as component {r}"),
                            None => String::new(),
                        }
                    ),
                )
                .help("each manifest component's files must be for one device component"))
            }
        };
        eprintln!("genpat: downloaded {from} (component {k}): SHA-256 as the manifest says");
        entries.extend(parsed.into_iter().map(|e| e.bytes));
    }
    if entries.is_empty() {
        super::send::say_installed(&device, args.json);
        return Ok(());
    }
    let file = container::assemble(entries.iter().map(Vec::as_slice))
        .map_err(|e| Failure::new(EXIT_ERROR, format!("the combined patch: {e}")))?;
    eprintln!(
        "genpat: sending one file of {} entries ({} bytes)",
        entries.len(),
        file.len()
    );
    deliver(link.as_mut(), &name, &file, &opts, false, args.json)
}

/// Reads `at`, at most `limit` bytes.
fn fetch(at: &Location, limit: u64) -> Result<Vec<u8>, Failure> {
    let mut bars = Bars::new(usize::try_from(limit).unwrap_or(usize::MAX));
    at.fetch(limit, &mut bars).map_err(|e| {
        let code = match e {
            // More than the manifest says: not the file it names.
            FetchError::TooLarge(..) => EXIT_CORRUPT,
            _ => EXIT_ERROR,
        };
        Failure::new(code, e.to_string())
    })
}

/// Refuses a manifest that `key` did not sign (or that is not signed).
fn check_signature(at: &Location, bytes: &[u8], key: &[u8; 32]) -> Result<(), Failure> {
    let sig_at = at.with_suffix(".sig");
    let refuse = |why: String| {
        Failure::new(EXIT_CORRUPT, format!("refusing the manifest '{at}': {why}")).help(
            "the manifest must be signed with the key given (genpat manifest --sign KEY); if it was, it has been changed since or comes from elsewhere",
        )
    };
    let sig = match sig_at.fetch(MAX_MANIFEST, &mut host_genpat::NoProgress) {
        Ok(s) => s,
        Err(FetchError::Status(_, 404)) => {
            return Err(refuse(format!("it is not signed (no '{sig_at}')")))
        }
        Err(FetchError::Read(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refuse(format!("it is not signed (no '{sig_at}')")))
        }
        Err(e) => return Err(Failure::new(EXIT_ERROR, e.to_string())),
    };
    manifest::verify(bytes, &String::from_utf8_lossy(&sig), key).map_err(|e| refuse(e.to_string()))
}

/// Refuses a download that is not the file the manifest names.
fn check_download(at: &Location, data: &[u8], size: u64, sha256: Sha256Hex) -> Result<(), Failure> {
    let got = Sha256Hex::of(data);
    if data.len() as u64 == size && got == sha256 {
        return Ok(());
    }
    Err(Failure::new(
        EXIT_CORRUPT,
        format!(
            "'{at}' is {} bytes with SHA-256 {got}; the manifest says {size} bytes with SHA-256 {sha256}: not sending it",
            data.len()
        ),
    )
    .help("the server holds another file than the manifest names: publish the files and the manifest together"))
}

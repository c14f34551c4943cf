//! `genpat update --manifest PATH_OR_URL [--key PUB] LINK`: reads a
//! release's manifest (checking its signature with `--key`), asks the
//! device what it runs, downloads the patch for that image (or the full
//! image), checks it against the manifest and sends it with `genpat send`'s
//! code.

use host_genpat::fetch::{FetchError, Location};
use host_genpat::manifest::{self, Choice, Image, Manifest, Sha256Hex};

use super::progress::Bars;
use super::send::{deliver, describe, open, options};
use super::{say, Failure, EXIT_CORRUPT, EXIT_ERROR, EXIT_NO_SUITABLE};
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
    let component = m.component(args.component.as_deref()).ok_or_else(|| {
        let names: Vec<&str> = m.components.iter().map(|c| c.name.as_str()).collect();
        Failure::new(
            EXIT_NO_SUITABLE,
            match &args.component {
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
    let (reference, size, sha256) = match component.select(&running) {
        Choice::Current => {
            say("OK, new version already installed");
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
    deliver(link.as_mut(), &name, &patch, &opts, false)
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

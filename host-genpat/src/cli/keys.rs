//! `genpat keygen KEY` and `genpat sign PATCH --key KEY`, and reading key
//! files for the other commands.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use host_genpat::container;
use host_genpat::keys::{self, SecretKey};

use super::{parse_patch, read_input, reason, write_patch, Failure, EXIT_ERROR};
use crate::{KeygenArgs, SignArgs};

/// Reads a secret key file.
pub fn read_secret(path: &Path) -> Result<SecretKey, Failure> {
    let text = read_input("KEY", path)?;
    SecretKey::from_text(&String::from_utf8_lossy(&text))
        .map_err(|e| Failure::new(EXIT_ERROR, format!("'{}': {e}", path.display())))
}

/// Reads a public key file.
pub fn read_public(path: &Path) -> Result<[u8; 32], Failure> {
    let text = read_input("PUB", path)?;
    keys::public_from_text(&String::from_utf8_lossy(&text))
        .map_err(|e| Failure::new(EXIT_ERROR, format!("'{}': {e}", path.display())))
}

fn pub_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// `text` in a temporary file beside `path`, complete and synced, to be
/// renamed to `path`; `secret` files are readable by their owner only.
fn prepare(path: &Path, text: &str, secret: bool) -> Result<tempfile::NamedTempFile, Failure> {
    let cannot = |e: std::io::Error| {
        Failure::new(
            EXIT_ERROR,
            format!("could not write '{}': {}", path.display(), reason(&e)),
        )
    };
    let prefix = super::output::temp_prefix();
    let mut builder = super::output::temp_builder(&prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(fs::Permissions::from_mode(if secret {
            0o600
        } else {
            0o666
        }));
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut tmp = builder
        .tempfile_in(super::output::dir_of(path))
        .map_err(cannot)?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(cannot)?;
    Ok(tmp)
}

/// Renames `tmp` to `path` unless `path` exists.
fn place(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), Failure> {
    tmp.persist_noclobber(path).map(drop).map_err(|e| {
        Failure::new(
            EXIT_ERROR,
            format!("could not write '{}': {}", path.display(), reason(&e.error)),
        )
    })
}

/// The `--json` document of `genpat keygen`. Its shape is documented in
/// `genpat keygen --help`; fields may be added, none removed, while
/// `format_version` is 1.
#[derive(serde::Serialize)]
struct KeygenDocument {
    format_version: u8,
    secret_key: String,
    public_key: String,
    public_key_hex: String,
}

/// `genpat keygen KEY`.
pub fn keygen(args: &KeygenArgs) -> Result<(), Failure> {
    let public = pub_path(&args.key);
    for p in [&args.key, &public] {
        if p.exists() {
            return Err(Failure::new(
                EXIT_ERROR,
                format!(
                    "'{}' exists; genpat keygen does not replace keys",
                    p.display()
                ),
            ));
        }
    }
    let key = SecretKey::generate();
    // Both files are written in full before either gets its name, so a
    // failure (a full disk) leaves neither, and the next try can succeed.
    let secret = prepare(&args.key, &key.to_text(), true)?;
    let public_tmp = prepare(&public, &keys::public_text(&key.public()), false)?;
    place(secret, &args.key)?;
    if let Err(f) = place(public_tmp, &public) {
        let _ = fs::remove_file(&args.key);
        return Err(f);
    }
    eprintln!(
        "genpat: wrote secret key {} and public key {}",
        args.key.display(),
        public.display()
    );
    if args.json {
        let doc = KeygenDocument {
            format_version: 1,
            secret_key: args.key.display().to_string(),
            public_key: public.display().to_string(),
            public_key_hex: super::hex(&key.public()),
        };
        super::say(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    Ok(())
}

/// `genpat sign PATCH --key KEY`.
pub fn sign(args: &SignArgs) -> Result<(), Failure> {
    let key = read_secret(&args.key)?;
    let lock = super::lock_patch(&args.patch)?;
    let file = read_input("PATCH", &args.patch)?;
    let entries = parse_patch(&file).map_err(|e| {
        Failure::new(
            super::EXIT_CORRUPT,
            format!("'{}': {e}", args.patch.display()),
        )
    })?;
    let mut signed = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if !e.body_ok() {
            return Err(Failure::new(
                super::EXIT_CORRUPT,
                format!(
                    "'{}': entry {}: body CRC mismatch; not signing it",
                    args.patch.display(),
                    i + 1
                ),
            ));
        }
        signed.push(container::sign_entry(&e.bytes, &key).map_err(|err| {
            Failure::new(
                EXIT_ERROR,
                format!("'{}': entry {}: {err}", args.patch.display(), i + 1),
            )
        })?);
    }
    let out = container::assemble(signed.iter().map(Vec::as_slice))
        .map_err(|e| Failure::new(EXIT_ERROR, e.to_string()))?;
    write_patch(&args.patch, &out, false)?;
    drop(lock);
    eprintln!(
        "genpat: signed {} entr{} of {}",
        signed.len(),
        if signed.len() == 1 { "y" } else { "ies" },
        args.patch.display()
    );
    Ok(())
}

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

/// Writes `text` to a new file (never replacing one); `secret` files are
/// readable by their owner only.
fn create(path: &Path, text: &str, secret: bool) -> Result<(), Failure> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path).map_err(|e| {
        Failure::new(
            EXIT_ERROR,
            format!("cannot create '{}': {}", path.display(), reason(&e)),
        )
    })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            Failure::new(
                EXIT_ERROR,
                format!("cannot write '{}': {}", path.display(), reason(&e)),
            )
        })
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
    create(&args.key, &key.to_text(), true)?;
    create(&public, &keys::public_text(&key.public()), false)?;
    eprintln!(
        "genpat: wrote secret key {} and public key {}",
        args.key.display(),
        public.display()
    );
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

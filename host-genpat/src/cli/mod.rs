//! The commands of the `genpat` binary, and what they share: exit codes,
//! failures with a help text, reading inputs and writing outputs atomically.
//!
//! Loaded by `src/bin/genpat.rs` with `#[path]`; not part of the library.

pub mod apply;
pub mod diff;
pub mod firmware;
pub mod info;
pub mod keys;
pub mod manifest;
pub mod output;
pub mod progress;
pub mod send;
pub mod update;

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::Path;

use host_genpat::container::{self, Entry};

pub use output::{lock_patch, refuse_same_file, write_atomic, write_patch};

/// Success (for apply: "OK" or "OK, new version already installed").
pub const EXIT_OK: u8 = 0;
/// Arguments missing or invalid.
pub const EXIT_USAGE: u8 = 1;
/// Any other error.
pub const EXIT_ERROR: u8 = 2;
/// PATCH already has an entry for this source (and `--replace` was not given).
pub const EXIT_EXISTS: u8 = 3;
/// The patch data is invalid or corrupt.
pub const EXIT_CORRUPT: u8 = 4;
/// No entry of the patch is for this source.
pub const EXIT_NO_SUITABLE: u8 = 5;

/// The longest version string an entry keeps.
pub const MAX_VERSION_LEN: usize = 64;

/// A job larger than this (bytes of input) gets progress bars, on a terminal.
pub const LONG_JOB: usize = 256 * 1024;

/// Why a command failed: its exit code, a message naming the file and the
/// problem, and perhaps a hint on what to do.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    message: Option<String>,
    help: Option<String>,
}

impl Failure {
    /// A failure with exit code `code` and `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: Some(message.into()),
            help: None,
        }
    }

    /// A failure whose message has already been printed.
    pub fn quiet(code: u8) -> Self {
        Failure {
            code,
            message: None,
            help: None,
        }
    }

    /// Adds a hint on what to do.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// What went wrong, if it says.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Prints the failure on stderr.
    pub fn report(&self) {
        let mut err = io::stderr().lock();
        if let Some(m) = &self.message {
            let _ = writeln!(err, "genpat: {m}");
        }
        if let Some(h) = &self.help {
            let _ = writeln!(err, "  help: {h}");
        }
    }
}

/// An I/O error as a person reads it: without Rust's " (os error N)".
pub fn reason(e: &io::Error) -> String {
    // tempfile wraps its errors with the temporary file's path ("… at path
    // \"dir/.genpat-….tmp\""); the caller names the user's path instead.
    let mut s = e.to_string();
    if let Some(i) = s.find(" at path \"") {
        s.truncate(i);
    }
    match s.find(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_owned(),
        _ => s,
    }
}

/// The largest input genpat reads: images are at most 4 GiB - 1 (the
/// format records sizes in 32 bits), and a patch is no larger in practice.
pub const MAX_INPUT: u64 = u32::MAX as u64;

/// The input limit in force: [`MAX_INPUT`], or a smaller one from the
/// (undocumented, for tests) environment variable `GENPAT_INPUT_LIMIT`.
pub fn input_limit() -> u64 {
    std::env::var("GENPAT_INPUT_LIMIT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(MAX_INPUT, |v| v.min(MAX_INPUT))
}

fn too_large(role: &str, path: &Path, limit: u64) -> Failure {
    Failure::new(
        EXIT_ERROR,
        format!(
            "{role} '{}' is larger than {limit} bytes, the most genpat reads; stopped reading it",
            path.display()
        ),
    )
}

/// Reads all of `file` (the input `path`, `role`), but not more than
/// `limit` bytes: a larger input (such as /dev/zero) is an error.
pub fn read_bounded(
    role: &str,
    path: &Path,
    file: impl io::Read,
    limit: u64,
) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Failure::new(
                EXIT_ERROR,
                format!("cannot read {role} '{}': {}", path.display(), reason(&e)),
            )
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_large(role, path, limit));
    }
    Ok(bytes)
}

/// Reads the input file `path`, which the command line calls `role`.
pub fn read_input(role: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    let file = fs::File::open(path).map_err(|e| {
        Failure::new(
            EXIT_ERROR,
            format!("cannot read {role} '{}': {}", path.display(), reason(&e)),
        )
    })?;
    read_bounded(role, path, file, input_limit())
}

/// An input file's bytes: mapped into memory, or read.
pub enum Input {
    /// A regular file, mapped read-only.
    Mapped(memmap2::Mmap),
    /// Anything else, read.
    Read(Vec<u8>),
}

impl std::ops::Deref for Input {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Input::Mapped(m) => m,
            Input::Read(v) => v,
        }
    }
}

/// Files smaller than this are read: mapping them saves nothing.
const MAP_FROM: u64 = 64 * 1024;

/// As [`read_input`], but a large regular file is mapped rather than read:
/// no copy, and no fresh memory to fault in, which for a 700 KB image was
/// most of the time `genpat apply` spent before it started applying (a
/// one-off measurement on the project's machine: 0.07 ms mapped, 0.6 ms
/// read).
pub fn map_input(role: &str, path: &Path) -> Result<Input, Failure> {
    let cannot = |e: io::Error| {
        Failure::new(
            EXIT_ERROR,
            format!("cannot read {role} '{}': {}", path.display(), reason(&e)),
        )
    };
    let file = fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    let limit = input_limit();
    if !meta.is_file() || meta.len() < MAP_FROM {
        return read_bounded(role, path, file, limit).map(Input::Read);
    }
    if meta.len() > limit {
        return Err(too_large(role, path, limit));
    }
    // SAFETY: the map is read-only, and nothing in this process writes
    // the file. Another process could still change it while the map is
    // in use (truncating it ends this process with SIGBUS; OUT is only
    // ever written by a rename, so it is untouched). The bytes are not
    // trusted either way: the source's MD5 is checked before OUT is
    // written and the target's SHA-256 after it is built, so a file that
    // changes underneath gives an error, never a wrong OUT.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(cannot)?;
    Ok(Input::Mapped(map))
}

/// Prints `text` and a newline on stdout. A closed pipe is not an error
/// worth a panic, so write errors are ignored.
pub fn say(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Reads a whole patch file.
pub fn parse_patch(file: &[u8]) -> Result<Vec<Entry>, String> {
    container::parse(file).map_err(|e| e.to_string())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_stops_at_the_limit() {
        let p = Path::new("zero");
        let endless = io::repeat(0);
        let f = read_bounded("OLD", p, endless, 1000).unwrap_err();
        assert_eq!(f.code, EXIT_ERROR);
        assert!(f.message.unwrap().contains("larger than 1000 bytes"));
        assert_eq!(
            read_bounded("OLD", p, io::repeat(1).take(1000), 1000).unwrap(),
            vec![1; 1000]
        );
    }
}

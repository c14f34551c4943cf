//! Writing outputs: atomically by a rename where the output is a regular
//! file (or new), through to the file where it is not (a character device,
//! a FIFO), through symbolic links to their targets, never over an input,
//! and with PATCH locked while it is read, changed and replaced.
//!
//! Temporary files are named `.genpat-PID-XXXXXX.tmp` in the output's
//! directory. One left by a genpat that was killed is removed by the next
//! genpat that writes in that directory: on Linux when process PID no
//! longer exists, elsewhere when it is older than a day.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::{reason, Failure, EXIT_ERROR};

/// The prefix of genpat's temporary files.
const TMP_PREFIX: &str = ".genpat-";
/// The suffix of genpat's temporary files.
const TMP_SUFFIX: &str = ".tmp";

/// `path` with symbolic links followed to the file they name (which need not
/// exist yet), so that a rename replaces the target and keeps the link.
pub fn resolve(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    // As the kernel does, give up after 40 links.
    for _ in 0..40 {
        match fs::read_link(&p) {
            Ok(target) => {
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Err(_) => break,
        }
    }
    p
}

/// The directory `path` is in (`.` for a bare name).
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `data` to `path`. `-` is standard output. A regular file (or a
/// new one) is written atomically: into a temporary file in the same
/// directory, then renamed over `path` (over a symbolic link's target), so
/// that a reader, or a genpat that is killed, never sees a part of `data`.
/// Anything else that exists (a character device, a FIFO) is written
/// through, and keeps being what it is. With `sync` the file is synced
/// before the rename and the directory after it, so that this also holds
/// across a host power cut (at a cost of milliseconds).
pub fn write_atomic(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    if path.as_os_str() == "-" {
        let mut out = io::stdout().lock();
        out.write_all(data)?;
        return out.flush();
    }
    let path = resolve(path);
    let existing = fs::metadata(&path).ok();
    if let Some(m) = &existing {
        if m.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "it is a directory",
            ));
        }
        if !m.is_file() {
            let mut f = fs::OpenOptions::new().write(true).open(&path)?;
            f.write_all(data)?;
            return f.flush();
        }
    }
    let dir = dir_of(&path);
    remove_stale_temporaries(dir);
    let existing = existing.map(|m| m.permissions());
    let prefix = temp_prefix();
    let mut builder = temp_builder(&prefix);
    #[cfg(unix)]
    let default_mode = {
        use std::os::unix::fs::PermissionsExt as _;
        // As a newly created file: 0666 less the umask.
        fs::Permissions::from_mode(0o666)
    };
    #[cfg(unix)]
    builder.permissions(existing.clone().unwrap_or(default_mode));
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(data)?;
    if let Some(p) = existing {
        tmp.as_file().set_permissions(p)?;
    }
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(&path).map_err(|e| e.error)?;
    #[cfg(unix)]
    if sync {
        if let Ok(d) = fs::File::open(dir) {
            // Makes the rename itself durable; not every file system allows it.
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The start of this process's temporary files' names.
pub fn temp_prefix() -> String {
    format!("{TMP_PREFIX}{}-", std::process::id())
}

/// A builder of temporary files named as genpat's (`prefix` from
/// [`temp_prefix`]), which [`remove_stale_temporaries`] recognises.
pub fn temp_builder(prefix: &str) -> tempfile::Builder<'_, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(TMP_SUFFIX);
    builder
}

/// Whether the temporary file named `name` was left by a genpat that no
/// longer runs.
fn is_stale(name: &str, path: &Path) -> bool {
    let Some(rest) = name
        .strip_prefix(TMP_PREFIX)
        .and_then(|r| r.strip_suffix(TMP_SUFFIX))
    else {
        return false;
    };
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    if cfg!(target_os = "linux") {
        return !Path::new("/proc").join(pid.to_string()).exists();
    }
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > 24 * 3600)
}

/// Removes the temporary files in `dir` that killed genpats left behind.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = e.path();
        if is_stale(name, &path) && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(&path);
        }
    }
}

/// [`write_atomic`] for PATCH, with genpat's message if it fails.
pub fn write_patch(path: &Path, data: &[u8], sync: bool) -> Result<(), Failure> {
    write_atomic(path, data, sync).map_err(|e| {
        Failure::new(
            EXIT_ERROR,
            format!("could not write PATCH '{}': {}", path.display(), reason(&e)),
        )
    })
}

/// Locks PATCH against other genpats that change it, until the returned
/// file is dropped (on Unix). The lock is an advisory lock (flock) on `PATCH.lock` beside
/// PATCH (beside a symbolic link's target), which stays there: PATCH itself
/// is replaced by a rename, so a lock on it would be on the old file.
pub fn lock_patch(path: &Path) -> Result<fs::File, Failure> {
    let mut lock = resolve(path).into_os_string();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    let cannot = |e: io::Error| {
        Failure::new(
            EXIT_ERROR,
            format!(
                "could not write PATCH '{}': cannot lock it with '{}': {}",
                path.display(),
                lock.display(),
                reason(&e)
            ),
        )
    };
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(cannot)?;
    #[cfg(unix)]
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| cannot(e.into()))?;
    Ok(file)
}

/// Refuses to write the output `out` (which the command line calls `role`)
/// when it is the same file as one of `inputs` (same device and inode).
pub fn refuse_same_file(role: &str, out: &Path, inputs: &[(&str, &Path)]) -> Result<(), Failure> {
    if out.as_os_str() == "-" {
        return Ok(());
    }
    let Ok(o) = fs::metadata(out) else {
        return Ok(());
    };
    for (in_role, input) in inputs {
        let Ok(i) = fs::metadata(input) else { continue };
        if same_file(&o, &i) {
            return Err(Failure::new(
                EXIT_ERROR,
                format!(
                    "{role} '{}' is the same file as {in_role} '{}'; genpat does not write over its \
                     input",
                    out.display(),
                    input.display()
                ),
            )
            .help(format!("choose another {role}")));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // Character devices such as /dev/null may be given as both.
    a.is_file() && a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_genpat_temporaries_of_dead_processes_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        assert!(!is_stale("other.tmp", &p));
        assert!(!is_stale(".genpat-abc.tmp", &p));
        let me = format!(".genpat-{}-abc.tmp", std::process::id());
        assert!(!is_stale(&me, &p));
    }
}

//! Where `genpat update` reads a manifest and the files it names: an HTTP
//! URL or a local path, with references resolved against the manifest's own
//! location, as a browser resolves a link (RFC 3986, section 5).
//!
//! Plain `http` is built in (ureq, no TLS); `https` needs the crate feature
//! `https` (ureq with rustls and the Mozilla roots). Every download has a
//! size limit, so a server cannot fill the host's memory.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Progress;

/// How long to wait for a server to accept a connection, and then for the
/// head of its answer.
const NET_TIMEOUT: Duration = Duration::from_secs(30);

/// A file to read: on a server or on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An `http://` or `https://` URL.
    Url(String),
    /// A local path.
    Path(PathBuf),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Url(u) => f.write_str(u),
            Location::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Why a file cannot be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// A local file cannot be read.
    #[error("cannot read '{0}': {1}")]
    Read(String, #[source] io::Error),
    /// The server answered with an error status.
    #[error("'{0}': the server answered HTTP {1}")]
    Status(String, u16),
    /// The download failed.
    #[error("cannot download '{0}': {1}")]
    Net(String, #[source] Box<ureq::Error>),
    /// The connection broke during the download.
    #[error("the download of '{0}' broke off: {1}")]
    Broken(String, #[source] io::Error),
    /// More bytes than allowed.
    #[error("'{0}' is larger than {1} bytes")]
    TooLarge(String, u64),
    /// An `https` URL in a genpat built without TLS.
    #[error("'{0}': this genpat was built without https support (cargo feature `https`)")]
    NoHttps(String),
}

impl Location {
    /// A command-line argument: a URL if it starts with `http://` or
    /// `https://`, else a path.
    pub fn parse(text: &str) -> Self {
        if scheme(text)
            .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
        {
            Location::Url(text.to_owned())
        } else {
            Location::Path(PathBuf::from(text))
        }
    }

    /// The location that `reference` (as written in a manifest found here)
    /// names: an absolute URL as it is; anything else relative to this
    /// location, as a URL reference or, next to a local manifest, as a path.
    pub fn join(&self, reference: &str) -> Location {
        if scheme(reference).is_some() {
            return Location::parse(reference);
        }
        match self {
            Location::Url(base) => Location::Url(join_url(base, reference)),
            Location::Path(p) => {
                let dir = p.parent().unwrap_or(Path::new(""));
                Location::Path(dir.join(reference))
            }
        }
    }

    /// This location with `suffix` added to the file name (before a URL's
    /// query): where `update.json`'s signature `update.json.sig` is.
    pub fn with_suffix(&self, suffix: &str) -> Location {
        match self {
            Location::Url(u) => {
                let end = u.find(['?', '#']).unwrap_or(u.len());
                Location::Url(format!("{}{suffix}{}", &u[..end], &u[end..]))
            }
            Location::Path(p) => {
                let mut s = p.as_os_str().to_owned();
                s.push(suffix);
                Location::Path(PathBuf::from(s))
            }
        }
    }

    /// Reads the whole file, at most `limit` bytes, telling `progress` how
    /// far a download has come.
    pub fn fetch(&self, limit: u64, progress: &mut dyn Progress) -> Result<Vec<u8>, FetchError> {
        match self {
            Location::Path(p) => {
                let shown = p.display().to_string();
                let f = fs::File::open(p).map_err(|e| FetchError::Read(shown.clone(), e))?;
                read_limited(f, &shown, limit, None, progress).map_err(|e| match e {
                    FetchError::Broken(s, e) => FetchError::Read(s, e),
                    other => other,
                })
            }
            Location::Url(u) => download(u, limit, progress),
        }
    }
}

/// The scheme of an absolute URL (`http` in `http://…`), if `text` is one.
/// One letter before the colon is a Windows drive, not a scheme.
fn scheme(text: &str) -> Option<&str> {
    let (s, _) = text.split_once(':')?;
    let mut bytes = s.bytes();
    let first = bytes.next()?;
    (s.len() > 1
        && first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
    .then_some(s)
}

/// Resolves the relative reference `r` against the absolute URL `base`.
fn join_url(base: &str, r: &str) -> String {
    let scheme_end = base.find(':').map_or(0, |i| i + 1);
    let (scheme, rest) = base.split_at(scheme_end);
    if r.starts_with("//") {
        return format!("{scheme}{r}");
    }
    // `rest` is `//authority/path?query#fragment`.
    let after_authority = rest
        .strip_prefix("//")
        .map_or(0, |a| 2 + a.find(['/', '?', '#']).unwrap_or(a.len()));
    let (authority, tail) = rest.split_at(after_authority);
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let path = &tail[..path_end];
    let (r_path, r_rest) = r.split_at(r.find(['?', '#']).unwrap_or(r.len()));
    let merged = if r_path.is_empty() {
        // Only a query or a fragment: the base's path stays.
        path.to_owned()
    } else if r_path.starts_with('/') {
        r_path.to_owned()
    } else {
        let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
        format!("{dir}{r_path}")
    };
    format!(
        "{scheme}{authority}{}{r_rest}",
        remove_dot_segments(&merged)
    )
}

/// A path without `.` and `..` segments (RFC 3986, section 5.2.4).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." | ".." => {
                if *seg == ".." && out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// Downloads `url` with ureq.
fn download(url: &str, limit: u64, progress: &mut dyn Progress) -> Result<Vec<u8>, FetchError> {
    if !cfg!(feature = "https") && scheme(url).is_some_and(|s| s.eq_ignore_ascii_case("https")) {
        return Err(FetchError::NoHttps(url.to_owned()));
    }
    let agent = ureq::Agent::config_builder()
        .timeout_connect(Some(NET_TIMEOUT))
        .timeout_recv_response(Some(NET_TIMEOUT))
        .user_agent(concat!("genpat/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => FetchError::Status(url.to_owned(), code),
        other => FetchError::Net(url.to_owned(), Box::new(other)),
    })?;
    let body = response.into_body();
    let total = body.content_length();
    if total.is_some_and(|n| n > limit) {
        return Err(FetchError::TooLarge(url.to_owned(), limit));
    }
    let reader = body.into_with_config().reader();
    read_limited(reader, url, limit, total, progress)
}

/// Reads `from` to its end, refusing more than `limit` bytes.
fn read_limited(
    from: impl Read,
    name: &str,
    limit: u64,
    total: Option<u64>,
    progress: &mut dyn Progress,
) -> Result<Vec<u8>, FetchError> {
    let mut from = from.take(limit.saturating_add(1));
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    progress.start("download", total.unwrap_or(limit));
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                progress.update(out.len() as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FetchError::Broken(name.to_owned(), e)),
        }
    }
    progress.finish();
    if out.len() as u64 > limit {
        return Err(FetchError::TooLarge(name.to_owned(), limit));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_as_in_a_browser() {
        let base = "http://127.0.0.1:8000/rel/v3/update.json?x=1";
        let cases = [
            ("v1-v3.fpatch", "http://127.0.0.1:8000/rel/v3/v1-v3.fpatch"),
            (
                "../v2/full.fpatch",
                "http://127.0.0.1:8000/rel/v2/full.fpatch",
            ),
            ("./a/../b", "http://127.0.0.1:8000/rel/v3/b"),
            ("/top.fpatch", "http://127.0.0.1:8000/top.fpatch"),
            ("//mirror/p", "http://mirror/p"),
            ("../../../../x", "http://127.0.0.1:8000/x"),
            ("p?y=2", "http://127.0.0.1:8000/rel/v3/p?y=2"),
            ("https://cdn.example/p", "https://cdn.example/p"),
        ];
        let at = Location::parse(base);
        for (r, want) in cases {
            assert_eq!(at.join(r), Location::Url(want.into()), "{r}");
        }
        assert_eq!(
            Location::parse("http://h").join("p"),
            Location::Url("http://h/p".into())
        );
        assert_eq!(
            at.with_suffix(".sig"),
            Location::Url("http://127.0.0.1:8000/rel/v3/update.json.sig?x=1".into())
        );
    }

    #[test]
    fn local_manifests_name_files_beside_them() {
        let at = Location::parse("out/update.json");
        assert_eq!(at, Location::Path("out/update.json".into()));
        assert_eq!(at.join("p.fpatch"), Location::Path("out/p.fpatch".into()));
        assert_eq!(
            at.join("http://h/p.fpatch"),
            Location::Url("http://h/p.fpatch".into())
        );
        assert_eq!(
            Location::parse("update.json").join("p"),
            Location::Path("p".into())
        );
        assert_eq!(
            Location::parse("C:\\x").join("p"),
            Location::Path("p".into())
        );
    }

    #[test]
    fn reads_are_limited() {
        let data = vec![7u8; 1000];
        let mut p = crate::NoProgress;
        assert_eq!(
            read_limited(&data[..], "d", 1000, None, &mut p).unwrap(),
            data
        );
        assert!(matches!(
            read_limited(&data[..], "d", 999, None, &mut p),
            Err(FetchError::TooLarge(_, 999))
        ));
    }
}

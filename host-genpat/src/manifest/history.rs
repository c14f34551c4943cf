//! What a host has seen of one device: the newest manifest it accepted
//! for it, and the images those manifests install. `genpat update` keeps
//! one [`History`] per device (`docs/MANIFEST.md`, section 6) and, from
//! it, refuses a manifest older than one already accepted
//! ([`Refusal::OlderManifest`]) and an image older than the one the device
//! runs ([`Refusal::Downgrade`]).
//!
//! ```text
//! STATE_DIR/devices/<device name, escaped>.json
//! { "format": 1, "device": "tcp:10.0.0.7:4000", "sequence": 3,
//!   "images": { "<sha256>": { "component": "app", "size": 49152,
//!                             "version": "3.0.0", "sequence": 3,
//!                             "security_counter": 3 } } }
//! ```
//!
//! Which of two images is older is decided, in this order, by their
//! security counters (when both releases give one), then by the sequence
//! number of the first accepted manifest that installs each. An image that
//! no accepted manifest installs (put there by another host, or at the
//! factory) cannot be placed: the device's `Hello` names its image but not
//! its counter, so nothing says such an image is newer, and it is updated
//! as any image the manifest has no patch for.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Component, Image, Manifest, Sha256Hex};

/// The value of `format` in a history file.
pub const FORMAT: u32 = 1;

/// What a host has seen of one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// [`FORMAT`].
    pub format: u32,
    /// The device's name (`genpat update --device`, or its link).
    pub device: String,
    /// The highest sequence number of a manifest accepted for the device.
    pub sequence: u64,
    /// The targets of the manifests accepted for it, by SHA-256.
    #[serde(default)]
    pub images: BTreeMap<Sha256Hex, Known>,
}

/// An image that an accepted manifest installs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// The manifest component it is the target of.
    pub component: String,
    /// Its size.
    pub size: u32,
    /// The version text of the first manifest that installs it.
    pub version: String,
    /// The sequence number of that manifest.
    pub sequence: u64,
    /// Its security counter, if the release gives one.
    #[serde(default)]
    pub security_counter: Option<u32>,
}

/// Why a manifest, or what it would install, is refused for a device.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The manifest's sequence number is below one already accepted.
    #[error("its sequence number {got} is below {seen}, that of a manifest already accepted for device '{device}'")]
    OlderManifest {
        /// The device.
        device: String,
        /// The manifest's sequence number (0: it has none).
        got: u64,
        /// The highest accepted.
        seen: u64,
    },
    /// The component's target is older than the image the device runs.
    #[error("component '{component}': the device runs version {running}, newer than this release's {target}: {why}")]
    Downgrade {
        /// The manifest component.
        component: String,
        /// The version text of the release the device's image came with.
        running: String,
        /// The manifest's version text.
        target: String,
        /// What says it is older.
        why: String,
    },
}

/// An image a device runs, as it announces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// The image.
    pub image: Image,
    /// Its security counter as the device says (0: it does not say).
    pub security_counter: u32,
    /// What to call it: the device's version text, or the image.
    pub name: String,
}

/// Why a history file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// It cannot be read.
    #[error("cannot read '{0}': {1}")]
    Read(PathBuf, io::Error),
    /// It is not a history file of this format.
    #[error("'{0}' is not a device history of format {FORMAT}: {1}")]
    Format(PathBuf, String),
}

impl History {
    /// A device nothing has been seen of.
    pub fn new(device: &str) -> Self {
        History {
            format: FORMAT,
            device: device.to_owned(),
            sequence: 0,
            images: BTreeMap::new(),
        }
    }

    /// The history file of `device` under the state directory `dir`.
    pub fn path(dir: &Path, device: &str) -> PathBuf {
        dir.join("devices").join(format!("{}.json", escape(device)))
    }

    /// Reads `path`, or a new history of `device` if there is none.
    pub fn load(path: &Path, device: &str) -> Result<Self, HistoryError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(History::new(device)),
            Err(e) => return Err(HistoryError::Read(path.to_owned(), e)),
        };
        let h: History = serde_json::from_slice(&bytes)
            .map_err(|e| HistoryError::Format(path.to_owned(), e.to_string()))?;
        if h.format != FORMAT {
            return Err(HistoryError::Format(
                path.to_owned(),
                format!("format {}", h.format),
            ));
        }
        Ok(h)
    }

    /// Writes the history to `path` atomically and durably: a complete,
    /// synced temporary file renamed over it, then its directory synced.
    pub fn store(&self, path: &Path) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".history.")
            .tempfile_in(dir)?;
        let mut text = serde_json::to_vec_pretty(self).expect("a history serialises");
        text.push(b'\n');
        tmp.write_all(&text)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Checks `m` for the device, whose components run `running`, before
    /// `chosen` (components of `m`) are installed: refuses a manifest
    /// older than one accepted, and (unless `allow_downgrade`) a target
    /// older than an image the device runs. Returns the downgrades allowed.
    pub fn check(
        &self,
        m: &Manifest,
        chosen: &[&Component],
        running: &[Running],
        allow_downgrade: bool,
    ) -> Result<Vec<Refusal>, Refusal> {
        if m.sequence() < self.sequence {
            return Err(Refusal::OlderManifest {
                device: self.device.clone(),
                got: m.sequence(),
                seen: self.sequence,
            });
        }
        let mut allowed = Vec::new();
        for c in chosen {
            for r in running {
                if let Some(d) = self.downgrade(m, c, r) {
                    if !allow_downgrade {
                        return Err(d);
                    }
                    allowed.push(d);
                }
            }
        }
        Ok(allowed)
    }

    /// The downgrade that installing `c`'s target over `running` would be.
    fn downgrade(&self, m: &Manifest, c: &Component, announced: &Running) -> Option<Refusal> {
        let running = &announced.image;
        if *running == c.target || c.patch_urls.contains_key(&running.sha256) {
            // The target itself, or an image the release patches from.
            return None;
        }
        // The device's own word first: it knows its image's counter even
        // when this history does not know the image.
        if let Some(new) = c.security_counter {
            let was = announced.security_counter;
            if new < was {
                return Some(Refusal::Downgrade {
                    component: c.name.clone(),
                    running: announced.name.clone(),
                    target: m.version.clone(),
                    why: format!(
                        "its security counter is {new}, the device's image's {was} (as the device announces it)"
                    ),
                });
            }
        }
        let known = self
            .images
            .get(&running.sha256)
            .filter(|k| k.size == running.size && k.component == c.name)?;
        let refuse = |why: String| Refusal::Downgrade {
            component: c.name.clone(),
            running: known.version.clone(),
            target: m.version.clone(),
            why,
        };
        if let (Some(was), Some(new)) = (known.security_counter, c.security_counter) {
            if new != was {
                return (new < was).then(|| {
                    refuse(format!(
                        "its security counter is {new}, the device's image's {was}"
                    ))
                });
            }
        }
        // First released in: the target may be an image an earlier
        // manifest installed, published again.
        let first = self
            .images
            .get(&c.target.sha256)
            .map_or(m.sequence(), |k| k.sequence.min(m.sequence()));
        (first < known.sequence).then(|| {
            refuse(format!(
                "its image was first released in manifest sequence {first}, the device's in {}",
                known.sequence
            ))
        })
    }

    /// Records `m` as accepted for the device: its sequence number, and
    /// the targets of `chosen` (the components installed from it).
    pub fn accept(&mut self, m: &Manifest, chosen: &[&Component]) {
        self.sequence = self.sequence.max(m.sequence());
        for c in chosen {
            self.images
                .entry(c.target.sha256)
                .and_modify(|k| k.sequence = k.sequence.min(m.sequence()))
                .or_insert_with(|| Known {
                    component: c.name.clone(),
                    size: c.target.size,
                    version: m.version.clone(),
                    sequence: m.sequence(),
                    security_counter: c.security_counter,
                });
        }
    }
}

/// A device name as a file name: ASCII letters, digits, `-` and `.` (not
/// first) as they are, every other byte as `_` and two hex digits, so
/// that different names give different files.
pub fn escape(device: &str) -> String {
    let mut out = String::new();
    for (i, b) in device.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A release of `image` with `sequence` and `counter`.
    fn release(version: &str, sequence: u64, image: &[u8], counter: Option<u32>) -> Manifest {
        Manifest {
            format: super::super::FORMAT,
            version: version.into(),
            sequence_number: Some(sequence),
            notes: String::new(),
            components: vec![Component {
                name: "app".into(),
                target: Image::of(image),
                url: "full.fpatch".into(),
                size: 1,
                sha256: Sha256Hex::of(b"x"),
                security_counter: counter,
                patch_urls: BTreeMap::new(),
            }],
        }
    }

    fn run(h: &mut History, m: &Manifest, runs: &[u8], allow: bool) -> Result<usize, Refusal> {
        let c = [&m.components[0]];
        let running = Running {
            image: Image::of(runs),
            security_counter: 0,
            name: String::new(),
        };
        let allowed = h.check(m, &c, &[running], allow)?;
        h.accept(m, &c);
        Ok(allowed.len())
    }

    /// A device that announces its image's counter is not sent a lower
    /// one, even by a genpat that has never seen it.
    #[test]
    fn the_counter_a_device_announces_refuses_older_images() {
        let h = History::new("dev");
        let v2 = release("2", 2, b"v2", Some(2));
        let c = [&v2.components[0]];
        let runs = |counter| Running {
            image: Image::of(b"v3"),
            security_counter: counter,
            name: "3.0.0".into(),
        };
        let refused = h.check(&v2, &c, &[runs(3)], false).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "component 'app': the device runs version 3.0.0, newer than this release's 2: \
             its security counter is 2, the device's image's 3 (as the device announces it)"
        );
        assert_eq!(h.check(&v2, &c, &[runs(3)], true).map(|a| a.len()), Ok(1));
        assert_eq!(h.check(&v2, &c, &[runs(2)], false), Ok(vec![]));
        assert_eq!(h.check(&v2, &c, &[runs(0)], false), Ok(vec![]));
    }

    #[test]
    fn older_manifests_are_refused_same_and_newer_accepted() {
        let mut h = History::new("dev");
        let v3 = release("3", 3, b"v3", Some(3));
        let v2 = release("2", 2, b"v2", Some(2));
        assert_eq!(run(&mut h, &v3, b"v1", false), Ok(0));
        assert_eq!(h.sequence, 3);
        assert_eq!(run(&mut h, &v3, b"v3", false), Ok(0));
        let refused = run(&mut h, &v2, b"v3", true).unwrap_err();
        assert_eq!(
            refused,
            Refusal::OlderManifest {
                device: "dev".into(),
                got: 2,
                seen: 3
            }
        );
        assert_eq!(h.sequence, 3, "a refused manifest is not recorded");
        // One without a sequence number counts as 0.
        let mut none = release("2", 0, b"v2", None);
        none.sequence_number = None;
        assert!(run(&mut h, &none, b"v3", true).is_err());
        assert_eq!(run(&mut History::new("other"), &none, b"v1", false), Ok(0));
    }

    #[test]
    fn older_images_are_refused_unless_allowed() {
        let mut h = History::new("dev");
        assert_eq!(
            run(&mut h, &release("3", 3, b"v3", Some(3)), b"v1", false),
            Ok(0)
        );
        // A later manifest that installs an image with a lower counter.
        let back = release("2", 4, b"v2", Some(2));
        match run(&mut h.clone(), &back, b"v3", false) {
            Err(Refusal::Downgrade { why, running, .. }) => {
                assert!(why.contains("security counter is 2"), "{why}");
                assert_eq!(running, "3");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(run(&mut h, &back, b"v3", true), Ok(1));
        // A higher counter is newer whatever the sequence numbers say.
        assert_eq!(
            run(
                &mut h.clone(),
                &release("4", 5, b"v4", Some(4)),
                b"v2",
                false
            ),
            Ok(0)
        );
        // Without counters: the sequence the images were first released in.
        let mut h = History::new("dev");
        assert_eq!(
            run(&mut h, &release("2", 2, b"v2", None), b"v1", false),
            Ok(0)
        );
        assert_eq!(
            run(&mut h, &release("3", 3, b"v3", None), b"v2", false),
            Ok(0)
        );
        let again = release("2", 4, b"v2", None);
        match run(&mut h.clone(), &again, b"v3", false) {
            Err(Refusal::Downgrade { why, .. }) => assert!(why.contains("sequence 2"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            run(&mut h, &release("4", 4, b"v4", None), b"v3", false),
            Ok(0)
        );
    }

    #[test]
    fn unknown_and_patched_from_images_are_not_downgrades() {
        let mut h = History::new("dev");
        assert_eq!(
            run(&mut h, &release("3", 3, b"v3", Some(3)), b"v1", false),
            Ok(0)
        );
        // An image no accepted manifest installs cannot be placed.
        let v2 = release("2", 4, b"v2", Some(2));
        assert_eq!(run(&mut h.clone(), &v2, b"v9", false), Ok(0));
        // A release that patches from the device's image says it is older.
        let mut v5 = release("5", 5, b"v5", None);
        let source = Image::of(b"v3");
        v5.components[0].patch_urls.insert(
            source.sha256,
            super::super::Patch {
                url: "p".into(),
                size: 1,
                sha256: Sha256Hex::of(b"p"),
                source,
                target: Image::of(b"v5"),
            },
        );
        assert_eq!(run(&mut h, &v5, b"v3", false), Ok(0));
    }

    #[test]
    fn histories_round_trip_through_their_files() {
        let dir = tempfile::TempDir::new().unwrap();
        let name = "unix:/tmp/dev 1.sock";
        let path = History::path(dir.path(), name);
        assert_eq!(
            path.file_name().unwrap(),
            "unix_3a_2ftmp_2fdev_201.sock.json"
        );
        assert_ne!(escape("a_b"), escape("a/b"));
        assert_eq!(escape(".."), "_2e.");
        let mut h = History::load(&path, name).unwrap();
        assert_eq!(h, History::new(name));
        let m = release("3", 3, b"v3", Some(3));
        h.accept(&m, &[&m.components[0]]);
        h.store(&path).unwrap();
        h.store(&path).unwrap();
        assert_eq!(History::load(&path, name).unwrap(), h);
        std::fs::write(&path, "{}").unwrap();
        assert!(matches!(
            History::load(&path, name),
            Err(HistoryError::Format(..))
        ));
    }
}

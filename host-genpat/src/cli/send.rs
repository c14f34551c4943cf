//! `genpat send PATCH (--port DEVICE [--baud N] | --tcp HOST:PORT | --unix PATH)`:
//! hands PATCH to a device over the update protocol and prints its answer.

use std::io::{self, IsTerminal as _};
use std::time::Duration;

use flashpatch::proto::Stage;
use flashpatch::Verdict;
use host_genpat::send::{self, DeviceInfo, Link, SendEvents, SendOptions};
use indicatif::{ProgressBar, ProgressStyle};

use super::{hex, read_input, reason, say, Failure, EXIT_CORRUPT, EXIT_ERROR, EXIT_NO_SUITABLE};
use crate::{LinkArgs, SendArgs};

/// How often a read returns when nothing arrives.
const POLL: Duration = Duration::from_millis(50);

/// Sends, prints the device's answer on stdout, and maps it to an exit code.
pub fn run(args: &SendArgs) -> Result<(), Failure> {
    let patch = read_input("PATCH", &args.patch)?;
    let (mut link, name) = open(&args.link)?;
    deliver(
        link.as_mut(),
        &name,
        &patch,
        &options(&args.link),
        true,
        args.json,
    )
}

/// A device in the `--json` documents of `send` and `update`.
#[derive(serde::Serialize)]
struct DeviceDoc {
    version: String,
    image_size: u32,
    image_sha256: String,
    trial: bool,
    /// `null` from a device of protocol version 1.
    security_counter: Option<u32>,
    floor: Option<u32>,
}

impl DeviceDoc {
    fn of(d: &DeviceInfo) -> Self {
        DeviceDoc {
            version: d.version.clone(),
            image_size: d.image_size,
            image_sha256: hex(&d.image_sha256),
            trial: d.trial,
            security_counter: d.counters.map(|c| c.security_counter),
            floor: d.counters.map(|c| c.floor),
        }
    }
}

/// The transfer in those documents.
#[derive(serde::Serialize)]
struct TransferDoc {
    resumed_from: u32,
    bytes_sent: u64,
    wire_bytes: u64,
    transfer_seconds: f64,
    apply_seconds: f64,
}

/// The `--json` document of `send` and `update`; its shape is in their
/// `--help` (`send_json_shape!`).
#[derive(serde::Serialize)]
struct ResultDoc {
    format_version: u8,
    result: String,
    verdict: &'static str,
    device: DeviceDoc,
    transfer: Option<TransferDoc>,
    after: Option<DeviceDoc>,
}

/// A verdict's name in the `--json` documents.
pub fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Ok => "ok",
        Verdict::AlreadyInstalled => "already_installed",
        Verdict::Error => "error",
        Verdict::Corrupt => "corrupt",
        Verdict::NoSuitablePatch => "no_suitable_patch",
    }
}

/// Prints the answer of a device that was sent nothing (`update` finds
/// its image installed): the text, or with `json` the document.
pub fn say_installed(device: &DeviceInfo, json: bool) {
    let text = Verdict::AlreadyInstalled.message();
    if !json {
        say(text);
        return;
    }
    let doc = ResultDoc {
        format_version: 1,
        result: text.to_string(),
        verdict: verdict_name(Verdict::AlreadyInstalled),
        device: DeviceDoc::of(device),
        transfer: None,
        after: None,
    };
    say(&serde_json::to_string_pretty(&doc).unwrap_or_default());
}

/// The send options of the command line.
pub fn options(args: &LinkArgs) -> SendOptions {
    SendOptions {
        timeout: Duration::from_secs_f64(args.timeout),
        restart: Duration::from_secs_f64(args.restart_timeout),
    }
}

/// Sends `patch` to the device on `link` (called `name` in messages),
/// prints the device's answer on stdout and how it went on stderr (with
/// `show_device`, what the device runs before too), and maps the answer to
/// an exit code.
pub fn deliver(
    link: &mut dyn Link,
    name: &str,
    patch: &[u8],
    opts: &SendOptions,
    show_device: bool,
    json: bool,
) -> Result<(), Failure> {
    let mut bar = Bar::new(show_device);
    let report = send::send(link, patch, opts, &mut bar).map_err(|e| {
        Failure::new(EXIT_ERROR, format!("{name}: {e}")).help(
            "run the same command again: the device keeps what it received and the transfer resumes",
        )
    })?;
    drop(bar);
    let r = &report;
    if json {
        let doc = ResultDoc {
            format_version: 1,
            result: r.text.clone(),
            verdict: verdict_name(r.verdict),
            device: DeviceDoc::of(&r.before),
            transfer: Some(TransferDoc {
                resumed_from: r.resumed_from,
                bytes_sent: r.bytes_sent,
                wire_bytes: r.wire_bytes,
                transfer_seconds: r.transfer.as_secs_f64(),
                apply_seconds: r.apply.as_secs_f64(),
            }),
            after: r.after.as_ref().map(DeviceDoc::of),
        };
        say(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        say(&r.text);
    }
    if r.resumed_from > 0 {
        eprintln!(
            "genpat: resumed at byte {} of {}",
            r.resumed_from,
            patch.len()
        );
    }
    eprintln!(
        "genpat: sent {} patch bytes ({} on the wire) in {:.2} s; device answered {:.2} s later",
        r.bytes_sent,
        r.wire_bytes,
        r.transfer.as_secs_f64(),
        r.apply.as_secs_f64()
    );
    if let Some(after) = &r.after {
        eprintln!("genpat: device restarted: {}", describe(after));
    }
    match r.verdict {
        Verdict::Ok | Verdict::AlreadyInstalled => Ok(()),
        Verdict::Corrupt => Err(Failure::quiet(EXIT_CORRUPT)),
        Verdict::NoSuitablePatch => Err(Failure::new(
            EXIT_NO_SUITABLE,
            format!(
                "the device runs an image the patch has no entry for ({} bytes, SHA-256 {})",
                r.before.image_size,
                hex(&r.before.image_sha256)
            ),
        )),
        Verdict::Error => Err(Failure::quiet(EXIT_ERROR)),
    }
}

/// One line about a device.
pub fn describe(d: &DeviceInfo) -> String {
    let counters = d.counters.map_or(String::new(), |c| {
        format!(
            ", security counter {} (accepts {} and up)",
            c.security_counter, c.floor
        )
    });
    format!(
        "version {}, image {} bytes, SHA-256 {}…, {}{counters}",
        d.version,
        d.image_size,
        &hex(&d.image_sha256)[..16],
        if d.trial { "on trial" } else { "confirmed" }
    )
}

/// Opens the link the command line names; returns it and its name.
pub fn open(args: &LinkArgs) -> Result<(Box<dyn Link>, String), Failure> {
    let fail = |what: &str, e: &io::Error| {
        Failure::new(EXIT_ERROR, format!("cannot open {what}: {}", reason(e)))
    };
    if let Some(port) = &args.port {
        let p = serialport::new(port, args.baud)
            .timeout(POLL)
            .open()
            .map_err(|e| fail(&format!("serial port '{port}'"), &io::Error::from(e)))?;
        return Ok((Box::new(p), port.clone()));
    }
    if let Some(addr) = &args.tcp {
        let s = std::net::TcpStream::connect(addr).map_err(|e| fail(addr, &e))?;
        s.set_read_timeout(Some(POLL)).map_err(|e| fail(addr, &e))?;
        let _ = s.set_nodelay(true);
        return Ok((Box::new(s), addr.clone()));
    }
    #[cfg(unix)]
    if let Some(path) = &args.unix {
        let shown = path.display().to_string();
        let s = std::os::unix::net::UnixStream::connect(path).map_err(|e| fail(&shown, &e))?;
        s.set_read_timeout(Some(POLL))
            .map_err(|e| fail(&shown, &e))?;
        return Ok((Box::new(s), shown));
    }
    Err(Failure::new(
        super::EXIT_USAGE,
        "give one of --port, --tcp or --unix",
    ))
}

/// The device's progress: lines on stderr, and a bar while the patch
/// travels when stderr is a terminal.
struct Bar {
    show_device: bool,
    terminal: bool,
    bar: Option<ProgressBar>,
    stage: Option<Stage>,
}

impl Bar {
    fn new(show_device: bool) -> Self {
        Bar {
            show_device,
            terminal: io::stderr().is_terminal(),
            bar: None,
            stage: None,
        }
    }
}

impl SendEvents for Bar {
    fn device(&mut self, info: &DeviceInfo) {
        if self.show_device {
            eprintln!("genpat: device: {}", describe(info));
        }
    }

    fn start(&mut self, offset: u32, size: u32) {
        if offset > 0 {
            eprintln!("genpat: the device holds {offset} bytes of this patch: resuming");
        }
        if self.terminal {
            let style = ProgressStyle::with_template(
                "  sending [{wide_bar}] {bytes}/{total_bytes}  {bytes_per_sec}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = ProgressBar::new(size as u64).with_style(style);
            bar.set_position(offset as u64);
            self.bar = Some(bar);
        }
    }

    fn acked(&mut self, acked: u32, size: u32) {
        if let Some(bar) = &self.bar {
            bar.set_position(acked as u64);
            if acked >= size {
                bar.finish_and_clear();
            }
        }
    }

    fn stage(&mut self, stage: Stage, _done: u32, _total: u32) {
        if self.stage != Some(stage) {
            if let Some(bar) = self.bar.take() {
                bar.finish_and_clear();
            }
            eprintln!(
                "genpat: device: {}",
                match stage {
                    Stage::Applying => "applying the patch",
                    Stage::Activating => "activating the new image",
                    Stage::Restarting => "restarting",
                }
            );
            self.stage = Some(stage);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

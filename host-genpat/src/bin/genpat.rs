//! `genpat`: builds flashpatch patch files, applies them on the host with
//! the device's own code, and shows what is in them.
//!
//! This file holds the command line (clap derive: the doc comments are the
//! help text) and the exit codes; the commands live in `src/cli/`.

// One `unsafe` block, allowed where it is: mapping an input file.
#![deny(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand};
use host_genpat::plan::PlanOptions;

#[path = "../cli/mod.rs"]
mod cli;

use cli::{Failure, EXIT_ERROR, EXIT_OK, EXIT_USAGE};

/// The exit code table, shown at the end of every `--help`.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success (apply: \"OK\" or \"OK, new version already installed\")
  1  arguments missing or invalid
  2  any other error: a file cannot be read or written, PATCH exists but is
     not a valid patch file, a link fails or a device does not answer, ...
     (apply, send: \"An error occurred while patching\")
  3  PATCH already has an entry for this OLD image; nothing was changed
     (pass --replace to replace that entry)
  4  apply, info, send: the patch data is invalid or corrupt
     (\"Patch data is invalid or corrupt\"); manifest: a patch file is
     damaged; update: with --key the manifest is unsigned, changed or
     signed with another key, or a download is not the file the manifest
     names, or the manifest is older than one already accepted for the
     device (nothing is sent)
  5  apply, send: no entry of PATCH is for OLD or for the device's image
     (\"No suitable patches were found\"); update: the manifest has no
     such component, or its image is older than the device's and
     --allow-downgrade is not given"
    };
}

/// An example of `genpat manifest`.
macro_rules! manifest_example {
    () => {
        "Example (v1.bin, v2.bin: images in the field; v3.bin: the release):
  genpat v1.bin v3.bin v1-v3.fpatch
  genpat v2.bin v3.bin v2-v3.fpatch
  genpat manifest --version 3 --image v3.bin --full v3.fpatch \\
      --patch v1.bin v1-v3.fpatch --patch v2.bin v2-v3.fpatch \\
      --notes \"Fixes the watchdog.\" --sign release.key -o update.json
  (serve update.json, update.json.sig and the .fpatch files side by side)
  genpat update --manifest http://HOST/update.json --key release.key.pub --port /dev/ttyUSB0"
    };
}

/// The shape of `genpat info --json`.
macro_rules! info_json_shape {
    () => {
        "JSON output (--json), one document:
  {\"format_version\": 1, \"file_size\": BYTES, \"entries\": [ENTRY, ...]}
where each ENTRY is
  {\"index\": 1, \"offset\": 8, \"size\": BYTES,
   \"format_version\": 1, \"flags\": 0, \"codec\": 1, \"params\": 93,
   \"source\": {\"size\": BYTES, \"crc32\": \"8 hex digits\", \"md5\": \"32 hex digits\"},
   \"target\": {\"size\": BYTES, \"crc32\": \"8 hex digits\", \"sha256\": \"64 hex digits\"},
   \"body\": {\"offset\": N, \"len\": BYTES, \"crc32\": \"8 hex digits\", \"crc32_ok\": true},
   \"version\": \"STRING\" or null, \"mtime\": SECONDS or null,
   \"mtime_utc\": \"YYYY-MM-DDTHH:MM:SSZ\" or null,
   \"component\": N (0 when the entry has no component record),
   \"security_counter\": N or null, \"body_sha256\": \"64 hex digits\" or null,
   \"signature\": \"128 hex digits\" (Ed25519) or null,
   \"unknown_records\": [{\"tag\": 51, \"value\": \"hex\"}, ...]}
\"index\" counts from 1; offsets and sizes are in bytes within the file; hex is
lower case. Fields may be added in later versions; none will be removed or
change meaning while \"format_version\" is 1."
    };
}

/// The shape of `genpat manifest --json`.
macro_rules! manifest_json_shape {
    () => {
        "JSON output (--json), one document on stdout:
  {\"format_version\": 1, \"manifest\": \"OUT\", \"signature\": \"OUT.sig\" or null,
   \"version\": \"TEXT\", \"sequence\": N, \"component\": \"NAME\",
   \"target\": {\"size\": BYTES, \"sha256\": \"64 hex digits\"},
   \"security_counter\": N or null,
   \"full\": {\"path\": \"FULL\", \"url\": \"URL\", \"size\": BYTES,
            \"sha256\": \"64 hex digits\", \"built\": true if genpat built it},
   \"patches\": [{\"path\": \"PATCH\", \"url\": \"URL\", \"size\": BYTES,
                 \"sha256\": \"64 hex digits\", \"source\": {\"size\": BYTES,
                 \"sha256\": \"64 hex digits\"}}, ...],
   \"warnings\": [\"TEXT\", ...]}
Written only when the manifest was written (exit code 0). Fields may be
added in later versions; none will be removed or change meaning while
\"format_version\" is 1."
    };
}

/// The shape of `genpat send --json` and `genpat update --json`.
macro_rules! send_json_shape {
    () => {
        "JSON output (--json), one document on stdout in place of the device's
answer, once the device has answered (a link that fails or a device that
does not answer prints none; the exit codes are the same):
  {\"format_version\": 1, \"result\": \"the device's text (one of VPatch's)\",
   \"verdict\": \"ok\" | \"already_installed\" | \"error\" | \"corrupt\" | \"no_suitable_patch\",
   \"device\": DEVICE (what it ran before), \"after\": DEVICE or null (after its restart),
   \"transfer\": {\"resumed_from\": BYTES, \"bytes_sent\": BYTES, \"wire_bytes\": BYTES,
                \"transfer_seconds\": S, \"apply_seconds\": S} or null (update: nothing sent)}
where DEVICE is
  {\"version\": \"TEXT\", \"image_size\": BYTES, \"image_sha256\": \"64 hex digits\",
   \"trial\": true if not yet confirmed,
   \"security_counter\": N, \"floor\": N (the lowest counter it accepts;
   both null from a device of protocol version 1)}
Fields may be added in later versions; none will be removed or change
meaning while \"format_version\" is 1."
    };
}

/// The shape of `genpat apply --json`.
macro_rules! apply_json_shape {
    () => {
        "JSON output (--json), one document on stdout in place of VPatch's
result (with OUT `-` the image is on stdout and the document on stderr;
the exit codes are the same):
  {\"format_version\": 1, \"result\": \"VPatch's text\",
   \"verdict\": \"ok\" | \"already_installed\" | \"error\" | \"corrupt\" | \"no_suitable_patch\",
   \"out\": \"OUT\" or null (not written), \"size\": BYTES written or null,
   \"found\": \"source\" | \"target\" | null (where an installed image was found),
   \"error\": \"what went wrong\" or null}
Fields may be added in later versions; none will be removed or change
meaning while \"format_version\" is 1."
    };
}

/// The shape of `genpat keygen --json`.
macro_rules! keygen_json_shape {
    () => {
        "JSON output (--json), one document on stdout:
  {\"format_version\": 1, \"secret_key\": \"KEY\", \"public_key\": \"KEY.pub\",
   \"public_key_hex\": \"64 hex digits\"}
Written only when both files were written (exit code 0). Fields may be
added in later versions; none will be removed or change meaning while
\"format_version\" is 1."
    };
}

/// Builds, applies and inspects flashpatch patch files.
///
/// `genpat OLD NEW PATCH` (GenPat's classic form) builds a patch that turns
/// OLD into NEW and adds it to PATCH; it is short for `genpat diff OLD NEW
/// PATCH` (see `genpat diff --help` for its options). Use the explicit form
/// when OLD is named like a command.
#[derive(Debug, Parser)]
#[command(
    name = "genpat",
    version,
    arg_required_else_help = true,
    override_usage = "genpat [OPTIONS] <OLD> <NEW> <PATCH>\n       genpat <COMMAND> [ARGS]",
    after_help = exit_codes!()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a patch that turns OLD into NEW and add it to PATCH (the default
    /// command).
    #[command(after_help = exit_codes!())]
    Diff(DiffArgs),
    /// Apply PATCH to OLD with the device's own code and write the result to
    /// OUT; print VPatch's result on stdout.
    #[command(
        after_help = exit_codes!(),
        after_long_help = concat!(apply_json_shape!(), "\n\n", exit_codes!())
    )]
    Apply(ApplyArgs),
    /// List the entries of PATCH and their headers.
    #[command(
        after_help = exit_codes!(),
        after_long_help = concat!(info_json_shape!(), "\n\n", exit_codes!())
    )]
    Info(InfoArgs),
    /// Make an Ed25519 key pair for signing patches: KEY (secret) and
    /// KEY.pub (public).
    #[command(
        after_help = exit_codes!(),
        after_long_help = concat!(keygen_json_shape!(), "\n\n", exit_codes!())
    )]
    Keygen(KeygenArgs),
    /// Sign every entry of PATCH with KEY (in place), e.g. on the machine
    /// that holds the key, after the patch was built elsewhere.
    #[command(after_help = exit_codes!())]
    Sign(SignArgs),
    /// Send PATCH to a device over a serial port, TCP or a Unix socket, with
    /// the update protocol (docs/PROTOCOL.md); print the device's answer.
    #[command(
        after_help = exit_codes!(),
        after_long_help = concat!(send_json_shape!(), "\n\n", exit_codes!())
    )]
    Send(SendArgs),
    /// Write a release's update manifest (update.json): the full image and
    /// the patches from older images, with their URLs, sizes and SHA-256s;
    /// signed with --sign KEY in update.json.sig (docs/MANIFEST.md).
    ///
    /// Writes OUT (update.json) for one component: the target NEW, the full
    /// image FULL (a patch with no source, which every device can apply) and
    /// one patch per older image, keyed by that image's SHA-256 as devices
    /// announce it. Every patch file is checked: intact, every entry makes NEW,
    /// and one entry is for its OLD. The manifest names each file by its file
    /// name, relative to the manifest (serve them beside it), or under
    /// --base-url. OUT and its signature are replaced atomically.
    #[command(
        after_help = concat!(manifest_example!(), "\n\n", exit_codes!()),
        after_long_help = concat!(manifest_example!(), "\n\n", manifest_json_shape!(), "\n\n", exit_codes!())
    )]
    Manifest(ManifestArgs),
    /// Update a device from a manifest: ask what it runs, download the patch
    /// for that image (or else the full image), check it against the
    /// manifest and send it as `genpat send` does.
    ///
    /// Reads the manifest (with --key, refuses it unless MANIFEST.sig is a good
    /// signature of it by that key), asks the device what it runs, and picks
    /// the patch whose source is that image (size and SHA-256), else the full
    /// image; if the device already runs the target it prints "OK, new version
    /// already installed" and sends nothing. Relative URLs in the manifest are
    /// resolved against the manifest's own URL or directory. The file is
    /// downloaded, checked against the manifest's size and SHA-256 (and refused
    /// before anything is sent if it differs), and sent as `genpat send` sends
    /// a patch, with the same output and exit codes. With --component given
    /// several times it asks what each of the device's components runs,
    /// picks each named component's file the same way, and sends all their
    /// entries as one file, which the device activates together. http:// is
    /// built in; https:// needs genpat built with the cargo feature `https`.
    /// It remembers each device (--device, --state-dir) and refuses a
    /// manifest older than one it accepted for it, and an image older than
    /// the device's unless --allow-downgrade (docs/MANIFEST.md, section 6).
    #[command(
        after_help = exit_codes!(),
        after_long_help = concat!(send_json_shape!(), "\n\n", exit_codes!())
    )]
    Update(UpdateArgs),
}

/// Arguments of `genpat diff` (and of `genpat OLD NEW PATCH`).
///
/// If PATCH does not exist it is created with one entry. If it exists it
/// must be a patch file; the new entry is added to it, so that one file
/// holds patches from several old images (1→3 and 2→3). PATCH is replaced
/// atomically: it is never left half-written; genpats that add to one PATCH
/// at the same time take turns (a lock on PATCH.lock beside it), and each
/// adds its entry.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The image the device runs now.
    pub old: PathBuf,
    /// The image to patch it to.
    pub new: PathBuf,
    /// The patch file to create or to add the entry to.
    pub patch: PathBuf,
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// GenPat's block size: here the shortest exact match with OLD that the
    /// matcher uses to start a copy (smaller finds more matches, larger is
    /// faster), from 4 to 1048576. The default is the matcher's own minimum
    /// match length; a match must be longer than the 3 bytes the current
    /// alignment may already cover, so values below 4 would change nothing.
    #[arg(
        long,
        value_name = "N",
        default_value_t = PlanOptions::default().min_match,
        value_parser = RangedU64ValueParser::<usize>::new()
            .range(PlanOptions::default().switch_margin as u64 + 1..=1 << 20)
    )]
    pub block_size: usize,
    /// If PATCH already has an entry for this OLD image, replace it (without
    /// this, genpat stops with exit code 3 and leaves PATCH unchanged).
    #[arg(long)]
    pub replace: bool,
    /// Version string of NEW to record in the entry (at most 64 bytes).
    #[arg(long = "version", value_name = "STRING", value_parser = version_string)]
    pub version_string: Option<String>,
    /// Also record NEW's modification time in the entry: a record of 10
    /// bytes that `genpat info` shows and no device reads. Without it the
    /// patch depends on nothing but the images and these options, byte
    /// for byte, whenever and wherever it is made.
    #[arg(long)]
    pub mtime: bool,
    /// Sign the entry with this secret key (from `genpat keygen`): its
    /// header then carries the body's SHA-256 and an Ed25519 signature.
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Security counter of NEW, recorded in the entry (and signed with
    /// --sign): a device refuses a patch whose counter is below its minimum.
    #[arg(long, value_name = "N")]
    pub security_counter: Option<u32>,
    /// The component NEW is for (0-255; 0, the default, records nothing):
    /// a device applies each component's entries to that component's
    /// slots and skips the others. Adding entries of several components
    /// to one PATCH makes one file for all of them; "an entry for this OLD"
    /// then means for this OLD and this component.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub component: u8,
    /// Also make the written file durable across a host power cut: fsync
    /// it before the rename and its directory after. Without this the
    /// replacement is still atomic (a reader or a killed genpat never sees a
    /// part of it), as with most tools that do not sync.
    #[arg(long)]
    pub sync: bool,
    /// For a device with one image slot (`flashpatch::slots::InPlace`):
    /// the entry rewrites OLD in place, one erase unit at a time, and
    /// never reads what it has already overwritten. NEW is padded with
    /// 0xff to whole erase units. A reverse entry (NEW → OLD) is added
    /// too, so that a trial that fails is rolled back; see --no-reverse.
    /// An A/B device never applies an in-place entry, nor the reverse.
    #[arg(long, conflicts_with = "component")]
    pub in_place: bool,
    /// With --in-place: the device's erase unit in bytes (the slot's
    /// sector size, or a multiple of it; a multiple of 64).
    #[arg(long, value_name = "BYTES", default_value_t = 4096, requires = "in_place",
          value_parser = erase_unit)]
    pub erase_unit: u32,
    /// With --in-place: no reverse entry (a smaller file, but the update is
    /// final once the device commits it: there is no rollback).
    #[arg(long, requires = "in_place")]
    pub no_reverse: bool,
}

/// An in-place erase unit: a multiple of 64 from 64 to 16 MiB.
fn erase_unit(s: &str) -> Result<u32, String> {
    let n = number(s)?;
    if n == 0 || n % 64 != 0 || n > 1 << 24 {
        return Err(format!("{n} is not a multiple of 64 from 64 to 16777216"));
    }
    Ok(n as u32)
}

/// Arguments of `genpat apply`.
///
/// Runs the device's own applier over an in-memory flash and prints one of
/// VPatch's results on stdout: "OK", "OK, new version already installed",
/// "An error occurred while patching", "Patch data is invalid or corrupt" or
/// "No suitable patches were found". The reason of a failure goes to stderr.
/// OUT is written only on success (atomically when it is a regular file or
/// new, through a symbolic link to its target); for "already installed" it
/// is the target image found in place (OLD, or its start).
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The patch file.
    pub patch: PathBuf,
    /// The image to patch.
    pub old: PathBuf,
    /// Where to write the patched image (`-`: standard output, and the
    /// result goes to stderr). A device or FIFO is written to, not replaced.
    pub out: PathBuf,
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// Feed the patch to the applier N bytes at a time, as a device receiving
    /// it would (0: all at once). The result does not depend on N.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub chunk: usize,
    /// Accept only entries signed by this public key (KEY.pub from `genpat
    /// keygen`), as a device built with it does.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// With --key: refuse entries whose security counter is below N.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "key")]
    pub min_counter: u32,
    /// Apply the entries for component N (0-255) and skip the others, as a
    /// device's slot pair for that component does.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub component: u8,
    /// Print one JSON document in place of VPatch's result (shape below in
    /// --help).
    #[arg(long)]
    pub json: bool,
    /// Also make the written file durable across a host power cut: fsync
    /// it before the rename and its directory after. Without this the
    /// replacement is still atomic (a reader or a killed genpat never sees a
    /// part of it), as with most tools that do not sync.
    #[arg(long)]
    pub sync: bool,
}

/// Arguments of `genpat info`.
///
/// Lists each entry of PATCH: where it is, its codec, the source and target
/// images it is for (size, CRC-32, MD5 / SHA-256), its body, the recorded
/// version string and modification time of NEW, and records this genpat
/// does not know. Entries count from 1.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The patch file.
    pub patch: PathBuf,
    /// Print one JSON document instead of text (shape below in --help).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `genpat keygen`.
///
/// Writes the secret key to KEY (readable by its owner only) and the public
/// key to KEY.pub, each as one line of text. Existing files are not
/// replaced.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key; the public key goes to KEY.pub.
    pub key: PathBuf,
    /// Also print one JSON document on stdout (shape below in --help).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `genpat sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The patch file; replaced atomically with its entries signed.
    pub patch: PathBuf,
    /// The secret key (from `genpat keygen`).
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
}

/// Arguments of `genpat send`.
///
/// Asks the device what it runs, sends PATCH (resuming an interrupted
/// transfer of the same patch from where the device has it), and prints
/// the device's answer on stdout: one of VPatch's results, "OK" when the
/// device applied, verified and activated the update. After "OK" it waits
/// for the device to restart and says what it runs then.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The patch file.
    pub patch: PathBuf,
    #[command(flatten)]
    pub link: LinkArgs,
    /// Print one JSON document on stdout instead of the device's answer
    /// (shape below in --help).
    #[arg(long)]
    pub json: bool,
}

/// How to reach a device (`genpat send`, `genpat update`).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("link").required(true).args(["port", "tcp", "unix"])))]
pub struct LinkArgs {
    /// A serial port (for example /dev/ttyUSB0).
    #[arg(long, value_name = "DEVICE")]
    pub port: Option<String>,
    /// The serial port's baud rate.
    #[arg(long, value_name = "N", default_value_t = 115_200, requires = "port")]
    pub baud: u32,
    /// A device (or relay) listening on TCP.
    #[arg(long, value_name = "HOST:PORT")]
    pub tcp: Option<String>,
    /// A device (or relay) listening on a Unix socket.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Seconds the device may go without progress (patch bytes newly
    /// acknowledged, or its apply further along) before genpat asks again.
    /// After 3 tries in a row that get the device no further, counting a
    /// restart as a try, genpat gives up with exit code 2: "the device does
    /// not answer", and what it last did. Messages that are no progress
    /// (acknowledgements of an old or impossible offset, results with a code
    /// the protocol does not have) do not count.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = seconds)]
    pub timeout: f64,
    /// Seconds to wait for the device to announce itself after it restarts
    /// into the new image (0: do not wait).
    #[arg(long, value_name = "SECS", default_value_t = 20.0, value_parser = seconds)]
    pub restart_timeout: f64,
}

/// Arguments of `genpat manifest` (its help is on `Command::Manifest`).
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The release's version text.
    #[arg(long = "version", value_name = "TEXT")]
    pub version_text: String,
    /// The new image, which every patch makes.
    #[arg(long, value_name = "NEW")]
    pub image: PathBuf,
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// The full image as a patch file with no source. If FULL does not
    /// exist, genpat builds it from NEW (and signs its entry with --sign).
    #[arg(long, value_name = "FULL")]
    pub full: PathBuf,
    /// A patch from the older image OLD to NEW (repeat for every older
    /// image).
    #[arg(long, num_args = 2, value_names = ["OLD", "PATCH"])]
    pub patch: Vec<PathBuf>,
    /// The URL of the directory that will serve FULL and the patches: the
    /// manifest then names them by absolute URLs (the base followed by the
    /// file's name). Without it they are named relative to the manifest.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Release notes.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub notes: String,
    /// Release notes from a UTF-8 text file.
    #[arg(long, value_name = "FILE", conflicts_with = "notes")]
    pub notes_file: Option<PathBuf>,
    /// The component's name.
    #[arg(long, value_name = "NAME", default_value = host_genpat::manifest::DEFAULT_COMPONENT)]
    pub component: String,
    /// The manifest's sequence number: higher than every earlier
    /// manifest's (genpat update refuses a manifest older than one it has
    /// accepted for a device). Default: $SOURCE_DATE_EPOCH if set, else
    /// the time now, in seconds since 1970.
    #[arg(long, value_name = "N")]
    pub sequence: Option<u64>,
    /// The release's security counter: FULL is built with it, and FULL and
    /// every patch must carry it (genpat --security-counter N). Without
    /// it, the counter of FULL's entries, if any.
    #[arg(long, value_name = "N")]
    pub security_counter: Option<u32>,
    /// Also print one JSON document on stdout (shape below in --help).
    #[arg(long)]
    pub json: bool,
    /// Sign the manifest with this secret key (from `genpat keygen`): the
    /// Ed25519 signature of OUT's exact bytes goes to OUT.sig. Without it an
    /// old OUT.sig is removed.
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// The manifest to write.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "OUT",
        default_value = "update.json"
    )]
    pub out: PathBuf,
    /// Also make the written files durable across a host power cut (fsync).
    #[arg(long)]
    pub sync: bool,
}

/// Arguments of `genpat update` (its help is on `Command::Update`).
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The manifest: an http:// or https:// URL, or a local path.
    #[arg(long, value_name = "PATH_OR_URL")]
    pub manifest: String,
    /// Accept only a manifest signed with this public key (KEY.pub from
    /// `genpat keygen`); its signature is read from MANIFEST.sig.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// The component to update (default: the manifest's only one). Given
    /// several times, those components are updated in one run: genpat asks
    /// the device what each of its components runs, picks each one's patch
    /// (or full image), sends them as one file, and the device activates
    /// them together.
    #[arg(long, value_name = "NAME")]
    pub component: Vec<String>,
    #[command(flatten)]
    pub history: cli::manifest::HistoryArgs,
    /// Print one JSON document on stdout instead of the device's answer
    /// (shape below in --help).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub link: LinkArgs,
}

/// How an ELF or Intel HEX input becomes an image. Inputs are told apart
/// by content: an ELF file's loadable segments and a HEX file's data
/// records are laid out at their load addresses, as `objcopy -O binary`
/// does; anything else is a raw image, taken as it is.
#[derive(Args, Debug, Clone, Copy)]
pub struct LayoutArgs {
    /// ELF and HEX inputs: the image starts at ADDRESS (its slot's
    /// address, e.g. 0x08020000), contents below it are an error.
    /// Default: the lowest address the file loads to.
    #[arg(long, value_name = "ADDRESS", value_parser = number)]
    pub base: Option<u64>,
    /// Pad each image at its end to SIZE bytes with the --gap-fill byte (an
    /// image larger than SIZE is an error).
    #[arg(long, value_name = "SIZE", value_parser = number)]
    pub pad_to: Option<u64>,
    /// ELF and HEX inputs: the byte gaps between segments hold (0x00 by
    /// default, as objcopy; 0xff leaves them erased on NOR flash).
    #[arg(long, value_name = "BYTE", default_value = "0x00", value_parser = byte)]
    pub gap_fill: u8,
    /// Take OLD and NEW as raw bytes even when they parse as ELF or HEX
    /// (e.g. to compare shared libraries file for file with other tools).
    #[arg(long, conflicts_with_all = ["base", "gap_fill"])]
    pub raw: bool,
}

impl LayoutArgs {
    /// As the firmware reader takes it.
    pub fn layout(&self) -> host_genpat::firmware::Layout {
        host_genpat::firmware::Layout {
            base: self.base,
            pad_to: self.pad_to,
            gap_fill: self.gap_fill,
            raw: self.raw,
        }
    }
}

/// A number, decimal or with `0x`.
fn number(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16),
        None => t.replace('_', "").parse(),
    };
    parsed.map_err(|_| format!("'{s}' is not a number (decimal, or hexadecimal with 0x)"))
}

/// A byte value, decimal or with `0x`.
fn byte(s: &str) -> Result<u8, String> {
    let n = number(s)?;
    u8::try_from(n).map_err(|_| format!("{n} is not a byte (0 to 255, or 0x00 to 0xff)"))
}

/// Checks `--version STRING`: the format keeps at most 64 bytes of it.
fn version_string(s: &str) -> Result<String, String> {
    if s.len() > cli::MAX_VERSION_LEN {
        return Err(format!(
            "{} bytes is too long (at most {})",
            s.len(),
            cli::MAX_VERSION_LEN
        ));
    }
    Ok(s.to_owned())
}

/// The longest `--timeout` or `--restart-timeout`: a day.
const MAX_SECONDS: f64 = 86_400.0;

/// Checks a number of seconds: finite, not negative, at most a day.
fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !v.is_finite() || !(0.0..=MAX_SECONDS).contains(&v) {
        return Err(format!(
            "{s} is not a number of seconds from 0 to {MAX_SECONDS}"
        ));
    }
    Ok(v)
}

/// Inserts `diff` after the program name unless the arguments already name
/// a command or only ask for help or the version: `genpat OLD NEW PATCH` is
/// `genpat diff OLD NEW PATCH`.
fn with_default_command(mut args: Vec<OsString>) -> Vec<OsString> {
    let explicit = match args.get(1).map(|a| a.to_str()) {
        None => true,
        Some(Some(
            "diff" | "apply" | "info" | "keygen" | "sign" | "send" | "manifest" | "update" | "help"
            | "-h" | "--help" | "-V",
        )) => true,
        // `genpat --version` alone is the tool's version; with more
        // arguments it is the entry's version string.
        Some(Some("--version")) => args.len() == 2,
        Some(_) => false,
    };
    if !explicit {
        args.insert(1, "diff".into());
    }
    args
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(with_default_command(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap's own code for a usage error is 2; ours is 1.
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    std::panic::set_hook(Box::new(|info| {
        eprintln!("genpat: internal error: {info}");
        eprintln!("  help: this is a bug in genpat; please report it with the files used");
    }));
    let result = std::panic::catch_unwind(|| match &cli.command {
        Command::Diff(args) => cli::diff::run(args),
        Command::Apply(args) => cli::apply::run(args),
        Command::Info(args) => cli::info::run(args),
        Command::Keygen(args) => cli::keys::keygen(args),
        Command::Sign(args) => cli::keys::sign(args),
        Command::Send(args) => cli::send::run(args),
        Command::Manifest(args) => cli::manifest::run(args),
        Command::Update(args) => cli::update::run(args),
    })
    .unwrap_or_else(|_| Err(Failure::quiet(EXIT_ERROR)));
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(failure) => {
            failure.report();
            ExitCode::from(failure.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn classic_form_becomes_diff() {
        let args = |v: &[&str]| -> Vec<OsString> { v.iter().map(OsString::from).collect() };
        let with = |v: &[&str]| with_default_command(args(v));
        assert_eq!(
            with(&["genpat", "a", "b", "c"]),
            args(&["genpat", "diff", "a", "b", "c"])
        );
        assert_eq!(
            with(&["genpat", "info", "p"]),
            args(&["genpat", "info", "p"])
        );
        assert_eq!(
            with(&["genpat", "--version"]),
            args(&["genpat", "--version"])
        );
        assert_eq!(
            with(&["genpat", "--version", "1.0", "a", "b", "c"]),
            args(&["genpat", "diff", "--version", "1.0", "a", "b", "c"])
        );
        assert_eq!(with(&["genpat"]), args(&["genpat"]));
    }
}

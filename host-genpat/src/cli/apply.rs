//! `genpat apply PATCH OLD OUT`: the device's own applier over an in-memory
//! flash, with VPatch's result on stdout.

use flashpatch::{Found, Outcome, Verdict};
use host_genpat::apply::{apply_with, target_room, Policy, TargetSlot};

use super::progress::Bars;
use super::{
    hex, read_input, reason, say, write_atomic, Failure, EXIT_CORRUPT, EXIT_ERROR, EXIT_NO_SUITABLE,
};
use crate::ApplyArgs;

/// `genpat apply --json`'s document; its shape is in `genpat apply --help`.
#[derive(serde::Serialize)]
struct ApplyDoc {
    format_version: u8,
    result: &'static str,
    verdict: &'static str,
    out: Option<String>,
    size: Option<usize>,
    found: Option<&'static str>,
    error: Option<String>,
}

/// What was written, for the document.
struct Written {
    verdict: Verdict,
    size: usize,
    found: Option<Found>,
}

/// Applies, prints the verdict on stdout, and writes OUT on success.
pub fn run(args: &ApplyArgs) -> Result<(), Failure> {
    let result = apply(args);
    let verdict = match &result {
        Ok(w) => w.verdict,
        Err((v, _)) => *v,
    };
    let message = verdict.message();
    let text = match args.json {
        false => message.to_string(),
        true => {
            let written = result.as_ref().ok();
            let doc = ApplyDoc {
                format_version: 1,
                result: message,
                verdict: super::send::verdict_name(verdict),
                out: written.map(|_| args.out.display().to_string()),
                size: written.map(|w| w.size),
                found: written.and_then(|w| w.found).map(|f| match f {
                    Found::Source => "source",
                    Found::Target => "target",
                }),
                error: result
                    .as_ref()
                    .err()
                    .and_then(|(_, f)| f.message())
                    .map(String::from),
            };
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        }
    };
    if args.out.as_os_str() == "-" {
        // The image is on stdout.
        eprintln!("{text}");
    } else {
        say(&text);
    }
    result.map(drop).map_err(|(_, f)| f)
}

fn apply(args: &ApplyArgs) -> Result<Written, (Verdict, Failure)> {
    let error = |f: Failure| (Verdict::Error, f);
    super::refuse_same_file(
        "OUT",
        &args.out,
        &[("PATCH", &args.patch), ("OLD", &args.old)],
    )
    .map_err(error)?;
    let patch = read_input("PATCH", &args.patch).map_err(error)?;
    let old = super::firmware::map_image("OLD", &args.old, &args.layout.layout()).map_err(error)?;
    let mut bars = Bars::new(patch.len() + old.len());
    let policy = Policy {
        key: args
            .key
            .as_deref()
            .map(super::keys::read_public)
            .transpose()
            .map_err(error)?,
        min_counter: args.min_counter,
        component: args.component,
    };
    let room = target_room(&patch, old.len());
    let target = TargetSlot::try_new(room).ok_or_else(|| {
        error(Failure::new(
            EXIT_ERROR,
            format!(
                "'{}': an entry's target is {room} bytes, more memory than can be had",
                args.patch.display()
            ),
        ))
    })?;
    let result = apply_with(
        &patch,
        &old,
        args.chunk,
        &policy,
        &mut |done, total| bars.bytes("applying", done, total),
        target,
    );
    drop(bars);
    let (outcome, image) = result.map_err(|e| {
        let verdict = e.verdict();
        let code = match verdict {
            Verdict::Corrupt => EXIT_CORRUPT,
            Verdict::NoSuitablePatch => EXIT_NO_SUITABLE,
            _ => EXIT_ERROR,
        };
        let mut failure = Failure::new(code, format!("'{}': {e}", args.patch.display()));
        if verdict == Verdict::NoSuitablePatch {
            let id = host_genpat::container::source_id(&old);
            failure = failure.help(format!(
                "OLD '{}' is {} bytes with MD5 {} (component {}); `genpat info {}` lists the \
                 images and components the patch is for",
                args.old.display(),
                id.size,
                hex(&id.md5),
                args.component,
                args.patch.display()
            ));
        }
        (verdict, failure)
    })?;
    write_atomic(&args.out, &image, args.sync).map_err(|e| {
        error(Failure::new(
            EXIT_ERROR,
            format!(
                "could not write OUT '{}': {}",
                args.out.display(),
                reason(&e)
            ),
        ))
    })?;
    let size = image.len();
    let (verdict, found) = match outcome {
        Outcome::Applied => {
            eprintln!(
                "genpat: wrote {}: {} bytes",
                args.out.display(),
                image.len()
            );
            (Verdict::Ok, None)
        }
        Outcome::AlreadyInstalled(found) => {
            eprintln!(
                "genpat: the target image is already in place ({}); wrote it to {}",
                match found {
                    Found::Source => "OLD starts with it",
                    Found::Target => "the erased target slot holds it",
                },
                args.out.display()
            );
            (Verdict::AlreadyInstalled, Some(found))
        }
    };
    // The process ends next, and frees these faster than `free` would.
    std::mem::forget((patch, old, image));
    Ok(Written {
        verdict,
        size,
        found,
    })
}

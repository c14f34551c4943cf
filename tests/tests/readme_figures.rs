//! README.md and docs/ quote figures that other tests pin
//! (`flashpatch_tests::pinned`): each quoted sentence is rebuilt here from
//! the pinned values and must appear in the document as it is (line breaks
//! and runs of spaces count as one space). And README.md stays short.

use flashpatch_tests::pinned::*;

/// A document of the repository with its whitespace runs made one space.
fn doc(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `n` with a comma between thousands, as the documents write numbers.
fn n(v: impl Into<u64>) -> String {
    let s = v.into().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn u(v: usize) -> String {
    n(v as u64)
}

#[track_caller]
fn quotes(path: &str, sentence: &str) {
    assert!(
        doc(path).contains(sentence),
        "{path} does not say \"{sentence}\" (the value pinned by the tests)"
    );
}

#[test]
fn readme_has_at_most_300_lines() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let lines = std::fs::read_to_string(p).unwrap().lines().count();
    assert!(lines <= 300, "README.md has {lines} lines");
}

#[test]
fn wear_figures_are_the_pinned_ones() {
    let (e, w, b) = UPDATE_WEAR;
    assert_eq!(
        TRIAL_BOOT_WEAR, CONFIRM_WEAR,
        "the documents quote them as one"
    );
    let (be, bw, bb) = TRIAL_BOOT_WEAR;
    let erase = |k: u64| if k == 1 { "erase" } else { "erases" };
    quotes(
        "README.md",
        &format!(
            "update + activate: {} erases, {} writes ({} bytes); first boot and confirm: {} {}, {} writes ({} bytes) each",
            n(e), n(w), n(b), n(be), erase(be), n(bw), n(bb)
        ),
    );
    quotes(
        "docs/SLOTS.md",
        &format!(
            "update + activate: {} erases, {} writes, {} bytes written; first boot and confirm: {} {} and {} writes, {} bytes written, each",
            n(e), n(w), n(b), n(be), erase(be), n(bw), n(bb)
        ),
    );
}

#[test]
fn checkpoint_size_is_the_pinned_one() {
    assert_eq!(CHECKPOINT_LEN, flashpatch::slots::CHECKPOINT_LEN);
    quotes(
        "README.md",
        &format!("| checkpoint record | {} bytes |", u(CHECKPOINT_LEN)),
    );
    quotes(
        "docs/SLOTS.md",
        &format!("checkpoint record of {} bytes", u(CHECKPOINT_LEN)),
    );
}

#[test]
fn two_component_sweep_is_the_pinned_one() {
    let (ops, runs, old, new) = TWO_COMPONENT_SWEEP;
    let s = format!(
        "{} flash operations, {} cut runs; after the cut {} booted both old, {} both new, none a mix",
        u(ops), u(runs), u(old), u(new)
    );
    quotes("README.md", &s);
    quotes("docs/SLOTS.md", &s);
}

#[test]
fn ram_figures_are_the_pinned_ones() {
    let (slots, update, state) = SLOTS_RAM;
    let s = format!(
        "{} bytes on the 64-bit host build ({} + {} + {})",
        u(slots + update + state),
        u(slots),
        u(update),
        u(state)
    );
    quotes("README.md", &s);
    quotes("docs/SLOTS.md", &s);
    quotes(
        "README.md",
        &format!(
            "Its state is `size_of::<ApplierState>()`: {} bytes on the 64-bit host build",
            u(state)
        ),
    );
    let (applier, model) = APPLIER_RAM;
    quotes(
        "README.md",
        &format!(
            "{} bytes (`size_of`), of which the codec model {}",
            u(applier),
            u(model)
        ),
    );
    // `cargo xtask bench`'s own line, as docs/FIGURES.md quotes it.
    quotes(
        "docs/FIGURES.md",
        &format!("is {applier} bytes (`size_of`), of which the codec model {model}."),
    );
}

/// One row of docs/RESUME.md's table, rebuilt from a pinned figure.
fn resume_row(name: &str, c: &ResumeCost) -> String {
    let flash = |(e, b): (u64, u64)| match (e, b) {
        (0, 0) => "none".to_string(),
        (1, b) => format!("1 erase, {} B", n(b)),
        (e, b) => format!("{} erases, {} B", n(e), n(b)),
    };
    format!(
        "| {name} | {} | {} | {} | {} B | {} ms | {} ({} ms) | {} B |",
        flash(c.target),
        flash(c.state),
        flash(c.staging),
        n(c.sent),
        n(c.update_ms()),
        flash(c.cut_target),
        n(c.cut_ms()),
        n(c.cut_resent)
    )
}

#[test]
fn resume_costs_are_the_pinned_ones() {
    let doc = "docs/RESUME.md";
    for (name, c) in [
        ("stream, checkpoints every unit", RESUME_STREAM),
        ("stage, no checkpoints", RESUME_STAGE_BARE),
        ("stage, checkpoints every unit", RESUME_STAGE),
    ] {
        quotes(doc, &resume_row(name, &c));
    }
    quotes(
        doc,
        "cargo test --release -p flashpatch-tests --test resume_costs -- --nocapture",
    );
    quotes(
        doc,
        &format!("a checkpoint record ({} bytes)", u(CHECKPOINT_LEN)),
    );
    // The sums the prose makes of the table.
    let s = |ms: u64| format!("{}.{} s", (ms + 50) / 1000, (ms + 50) / 100 % 10);
    let checkpoints = RESUME_STAGE.update_ms() - RESUME_STAGE_BARE.update_ms();
    let staging = RESUME_STAGE.update_ms() - RESUME_STREAM.update_ms();
    quotes(
        doc,
        &format!(
            "here {} of flash time on an update of {}",
            s(checkpoints),
            s(RESUME_STAGE_BARE.update_ms())
        ),
    );
    quotes(doc, &format!("here {}, and a reset", s(staging)));
    quotes(
        doc,
        &format!("a 4 KiB page erase takes {ERASE_MS} ms and a 32-bit word write {WORD_US} µs"),
    );
    let [(two, two_most), (eight, eight_most)] = STATE_WEAR;
    quotes(
        doc,
        &format!(
            "the state area takes {two} erases per update, at most {two_most} on one erase unit; \
             with a state area of 8 erase units, {eight} erases, at most {eight_most} on one unit"
        ),
    );
    quotes(
        doc,
        &format!(
            "lasts some {} updates",
            n(10_000 / two_most as u64 / 100 * 100)
        ),
    );
    let (slots, update, state) = SLOTS_RAM;
    quotes(
        doc,
        &format!(
            "{} bytes on the 64-bit host build ({} + {} + {})",
            u(slots + update + state),
            u(slots),
            u(update),
            u(state)
        ),
    );
}

/// Regression: `docs/FORMAT.md` quoted the applier state's and the
/// in-place checkpoint's lengths 8 bytes short after the model grew, and
/// said the two kinds of checkpoint were of one length when they were
/// not. The lengths it gives are the code's.
#[test]
fn checkpoint_lengths_in_format_md_are_the_code_s() {
    use flashpatch::slots::{checkpoint_len, in_place_checkpoint_len};
    // An A/B checkpoint unpadded: the 16-byte record header, the
    // component and the patch's size and CRC-32, the applier's state, the
    // record's CRC-32.
    let state = checkpoint_len(1) - 16 - 1 - 8 - 4;
    quotes(
        "docs/FORMAT.md",
        &format!(
            "Checkpoint body (`L` = {} with codec 3, with `A` = 32 and with `A` = 64)",
            u(checkpoint_len(32))
        ),
    );
    quotes(
        "docs/FORMAT.md",
        &format!("target erase unit boundary, {} bytes,", u(state)),
    );
    quotes(
        "docs/FORMAT.md",
        &format!(
            "Unpadded it is {} bytes (`L` = {} with `A` = 32, {} with `A` = 64)",
            u(in_place_checkpoint_len(1)),
            u(in_place_checkpoint_len(32)),
            u(in_place_checkpoint_len(64))
        ),
    );
    assert_eq!(checkpoint_len(32), checkpoint_len(64));
    assert_ne!(checkpoint_len(32), in_place_checkpoint_len(32));
    assert_ne!(checkpoint_len(64), in_place_checkpoint_len(64));
}

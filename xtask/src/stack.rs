//! A static bound on a firmware's stack: the deepest chain of frames from
//! one function down its calls, read from the ELF's disassembly.
//!
//! Stack painting measures the paths a demo takes; this bounds the ones it
//! does not (an update after the first, an activation that must hash a
//! slot, a selection that hashes the source). Each function's frame is
//! what its prologue reserves (`push`, `vpush`, `sub sp` in its first
//! instructions); its calls are its `bl` and tail-call `b` to the start of
//! another function. The bound is the largest sum of frames along a chain
//! of calls, cycles cut. It follows every call a function makes, taken or
//! not, so it is an upper bound for direct calls; calls through a pointer
//! (`blx`) are not followed, and neither are the panic paths (the firmware
//! aborts) nor the demos' console (`log`, semihosting).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Functions whose frames the bound leaves out (see the module docs).
const LEFT_OUT: [&str; 5] = ["panic", "_fail", "unwind", "3log", "semihost"];

/// The deepest chain of frames from the function whose (mangled) name
/// contains `root`: its total in bytes and each function on it with its
/// frame, outermost first.
pub fn deepest(elf: &Path, root: &str) -> Result<(u64, Vec<(String, u64)>), String> {
    let out = Command::new(objdump()?)
        .args(["-d", "--no-show-raw-insn"])
        .arg(elf)
        .output()
        .map_err(|e| format!("llvm-objdump: {e}"))?;
    if !out.status.success() {
        return Err(format!("llvm-objdump {} failed", elf.display()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let funcs = parse(&text);
    let Some(start) = funcs.keys().find(|f| f.contains(root)).cloned() else {
        return Err(format!("{}: no function named like {root}", elf.display()));
    };
    let mut memo = HashMap::new();
    let (total, chain) = depth(&funcs, &start, &mut Vec::new(), &mut memo);
    Ok((
        total,
        chain
            .into_iter()
            .map(|f| {
                let frame = funcs[&f].0;
                (demangled(&f), frame)
            })
            .collect(),
    ))
}

/// Checks that the deepest chain from `root` in `elf`, with `statics`
/// bytes besides, stays within `goal`: prints "{what}: static stack bound
/// of {whose}: …" with the chain, and an error past the goal.
pub fn check(
    what: &str,
    whose: &str,
    elf: &Path,
    root: &str,
    (statics, named): (u64, &str),
    goal: u64,
) -> Result<(), String> {
    let (bound, chain) = deepest(elf, root)?;
    let path: Vec<String> = chain.iter().map(|(f, s)| format!("{f} {s}")).collect();
    let ram = bound + statics;
    println!(
        "{what}: static stack bound of {whose}: {bound} B, with {named} {statics} B: {ram} B (goal {goal}); its deepest chain: {}",
        path.join(" > ")
    );
    if ram > goal {
        return Err(format!(
            "{whose} may take {ram} B of RAM on some path, over {goal}"
        ));
    }
    Ok(())
}

/// The size of the symbol whose name contains `part` (a static's RAM).
pub fn symbol_size(elf: &Path, part: &str) -> Result<u64, String> {
    use object::{Object as _, ObjectSymbol as _};
    let data = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let f = object::File::parse(&*data).map_err(|e| e.to_string())?;
    f.symbols()
        .find(|s| s.name().is_ok_and(|n| n.contains(part)))
        .map(|s| s.size())
        .ok_or_else(|| format!("{}: no symbol named like {part}", elf.display()))
}

/// Each function's frame and the functions it calls.
fn parse(text: &str) -> HashMap<String, (u64, Vec<String>)> {
    let mut funcs: HashMap<String, (u64, Vec<String>)> = HashMap::new();
    let mut cur: Option<String> = None;
    let mut n = 0;
    for line in text.lines() {
        // `0001f4c0 <name>:` starts a function; `$t`, `$d` are mapping
        // symbols inside one.
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|l| l.split_once(" <"))
            .map(|(_, n)| n)
        {
            if !name.starts_with('$') {
                cur = Some(name.to_string());
                funcs.entry(name.to_string()).or_default();
                n = 0;
            }
            continue;
        }
        let Some(f) = &cur else { continue };
        let Some(insn) = line.split('\t').nth(1) else {
            continue;
        };
        let args = line.split('\t').nth(2).unwrap_or("");
        n += 1;
        let entry = funcs.get_mut(f).expect("entered above");
        if n <= 12 {
            entry.0 += match insn {
                "push" | "push.w" => 4 * regs(args),
                "vpush" => 8 * regs(args),
                "sub" | "sub.w" if args.starts_with("sp, ") => args
                    .rsplit_once('#')
                    .and_then(|(_, v)| immediate(v))
                    .unwrap_or(0),
                _ => 0,
            };
        }
        if matches!(insn, "bl" | "b" | "b.w") {
            // `bl 0x1fa0c <name>`: a call to a function's start (a
            // branch within one reads `<name+0x..>`).
            if let Some((target, _)) = args.split_once('<').and_then(|(_, t)| t.split_once('>')) {
                if !target.contains('+')
                    && target != f
                    && !target.starts_with('$')
                    && !LEFT_OUT.iter().any(|x| target.contains(x))
                    && !entry.1.iter().any(|c| c == target)
                {
                    entry.1.push(target.to_string());
                }
            }
        }
    }
    funcs
}

/// An immediate as `llvm-objdump` prints it: decimal, or hexadecimal
/// with `0x` (newer versions).
fn immediate(v: &str) -> Option<u64> {
    match v.trim().strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.trim().parse().ok(),
    }
}

/// Registers in a `{r4, r5, lr}` list.
fn regs(list: &str) -> u64 {
    list.trim_start_matches('{')
        .split('}')
        .next()
        .map_or(0, |l| {
            l.split(',').filter(|r| !r.trim().is_empty()).count() as u64
        })
}

/// The deepest chain below `f` (its own frame included); a call back into
/// a function on the chain counts nothing.
fn depth(
    funcs: &HashMap<String, (u64, Vec<String>)>,
    f: &str,
    on: &mut Vec<String>,
    memo: &mut HashMap<String, (u64, Vec<String>)>,
) -> (u64, Vec<String>) {
    if let Some(d) = memo.get(f) {
        return d.clone();
    }
    if on.iter().any(|g| g == f) {
        return (0, Vec::new());
    }
    let Some((frame, calls)) = funcs.get(f) else {
        return (0, Vec::new());
    };
    on.push(f.to_string());
    let mut best = (0, Vec::new());
    for c in calls {
        let d = depth(funcs, c, on, memo);
        if d.0 > best.0 {
            best = d;
        }
    }
    on.pop();
    let mut chain = vec![f.to_string()];
    chain.extend(best.1);
    let r = (frame + best.0, chain);
    memo.insert(f.to_string(), r.clone());
    r
}

/// A symbol's readable name, without its hash.
fn demangled(name: &str) -> String {
    let s = rustc_demangle::demangle(name).to_string();
    match s.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 => head.to_string(),
        _ => s,
    }
}

/// `llvm-objdump`: the Rust toolchain's (`rustup component add
/// llvm-tools`, added if missing), or one on the `PATH`.
fn objdump() -> Result<PathBuf, String> {
    if let Some(p) = toolchain_objdump() {
        return Ok(p);
    }
    if crate::run("rustup", &["component", "add", "llvm-tools"], &[]).is_ok() {
        if let Some(p) = toolchain_objdump() {
            return Ok(p);
        }
    }
    if Command::new("llvm-objdump")
        .arg("--version")
        .output()
        .is_ok()
    {
        return Ok(PathBuf::from("llvm-objdump"));
    }
    Err("no llvm-objdump: `rustup component add llvm-tools`".into())
}

/// The toolchain's `llvm-objdump`, if its `llvm-tools` are installed.
fn toolchain_objdump() -> Option<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let host = Command::new("rustc").arg("-vV").output().ok()?;
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))?;
    let p = root.join("lib/rustlib").join(host).join("bin/llvm-objdump");
    p.exists().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames from prologues, calls by `bl` and tail `b`, mapping symbols
    /// inside a function, branches within one and calls left out.
    #[test]
    fn the_deepest_chain_sums_prologue_frames_along_calls() {
        let text = "\
00000100 <top>:
     100:      \tpush\t{r4, r5, r7, lr}
     102:      \tsub\tsp, #24
     104:      \tbl\t0x200 <mid> @ imm = #0
     108:      \tbl\t0x300 <leaf> @ imm = #0
     10c:      \tbl\t0x400 <core::panicking::panic> @ imm = #0
     110:      \tb\t0x104 <top+0x4> @ imm = #0
00000114 <$d>:
     114:\t00 00 00 00\t.word\t0x00000000
00000118 <$t>:
     118:      \tbl\t0x500 <after_mapping> @ imm = #0
00000200 <mid>:
     200:      \tpush.w\t{r4, r5, r6, r7, r8, lr}
     204:      \tvpush\t{d8, d9}
     208:      \tsub.w\tsp, sp, #0x64
     20c:      \tb.w\t0x300 <leaf> @ imm = #0
00000300 <leaf>:
     300:      \tpush\t{r7, lr}
     302:      \tbl\t0x100 <top> @ imm = #0
00000400 <core::panicking::panic>:
     400:      \tsub\tsp, #4000
00000500 <after_mapping>:
     500:      \tsub\tsp, #8
";
        let funcs = parse(text);
        assert_eq!(funcs["top"].0, 16 + 24);
        assert_eq!(funcs["mid"].0, 24 + 16 + 100);
        assert_eq!(funcs["top"].1, ["mid", "leaf", "after_mapping"]);
        let (total, chain) = depth(&funcs, "top", &mut Vec::new(), &mut HashMap::new());
        // top > mid > leaf; leaf's call back into top counts nothing.
        assert_eq!(total, 40 + 140 + 8);
        assert_eq!(chain, ["top", "mid", "leaf"]);
    }
}

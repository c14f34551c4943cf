//! A command-line tool from PyPI, pinned, in a virtual environment of its
//! own under `target/py/`, made with `python3 -m venv` and pip the first
//! time it is asked for. Shared by the tests that judge flashpatch with
//! real clients (imgtool, smpmgr) and by `cargo xtask`, each including
//! this file with `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The executable `tool` of `package` (pinned: `name==version`), in
/// `target/py/<tool>` of the workspace at `root`.
pub fn tool(root: &Path, package: &str, tool: &str) -> Result<PathBuf, String> {
    let venv = root.join("target/py").join(tool);
    let exe = venv.join("bin").join(tool);
    if exe.exists() {
        return Ok(exe);
    }
    let run = |cmd: &mut Command| {
        let out = cmd
            .output()
            .map_err(|e| format!("{cmd:?}: {e} (python3 is needed)"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed (python3 and PyPI are needed):\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", package]))?;
    Ok(exe)
}

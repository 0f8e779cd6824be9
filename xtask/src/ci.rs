//! `cargo xtask ci`: the checks that gate every landing, in the order that fails fastest.

use std::process::Command;

use crate::util::{cargo, cargo_bin, workspace_root};

/// Runs `cargo fmt --check`, `cargo clippy -D warnings` and every test (with cargo-nextest
/// when it is installed, then the doc tests).
#[derive(Debug, clap::Args)]
pub(crate) struct Ci {}

impl Ci {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        cargo(&["fmt", "--all", "--", "--check"])?;
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?;
        if has_nextest() {
            cargo(&["nextest", "run", "--workspace", "--no-fail-fast"])?;
            cargo(&["test", "--workspace", "--doc"])?;
        } else {
            cargo(&["test", "--workspace", "--no-fail-fast"])?;
        }
        println!("xtask ci: all checks passed");
        Ok(())
    }
}

fn has_nextest() -> bool {
    Command::new(cargo_bin())
        .args(["nextest", "--version"])
        .current_dir(workspace_root())
        .output()
        .is_ok_and(|o| o.status.success())
}

//! `cargo xtask ci`: the checks that gate every landing, in the order that fails fastest.

use std::process::Command;

use crate::util::{cargo, cargo_bin, workspace_root};

/// Runs `cargo fmt --check`, `cargo clippy -D warnings`, every test (with cargo-nextest
/// when it is installed, then the doc tests) and a short run of each fuzz target.
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
        // A short run of every fuzz target keeps them compiling and running; the long runs
        // are `cargo xtask fuzz --seconds N` by hand (docs/RELIABILITY.md).
        crate::fuzz::Fuzz::smoke(20).run()?;
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

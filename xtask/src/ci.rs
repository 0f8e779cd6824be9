//! `cargo xtask ci`: the checks that gate every landing, in the order that fails fastest.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// Runs `cargo fmt --check`, `cargo clippy -D warnings` and every test (with cargo-nextest
/// when it is installed, then the doc tests).
#[derive(Debug, clap::Args)]
pub(crate) struct Ci {}

impl Ci {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let root = workspace_root();
        cargo(&root, &["fmt", "--all", "--", "--check"])?;
        cargo(
            &root,
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )?;
        if has_nextest(&root) {
            cargo(&root, &["nextest", "run", "--workspace", "--no-fail-fast"])?;
            cargo(&root, &["test", "--workspace", "--doc"])?;
        } else {
            cargo(&root, &["test", "--workspace", "--no-fail-fast"])?;
        }
        println!("xtask ci: all checks passed");
        Ok(())
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn has_nextest(root: &PathBuf) -> bool {
    Command::new(cargo_bin())
        .args(["nextest", "--version"])
        .current_dir(root)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn cargo(root: &PathBuf, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("xtask ci: cargo {}", args.join(" "));
    let status = Command::new(cargo_bin())
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("could not run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

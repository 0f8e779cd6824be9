//! `cargo xtask ci`: the checks that gate every landing, in the order that fails fastest.

use std::process::Command;

use crate::util::{cargo, cargo_bin, workspace_root};

/// Runs `cargo fmt --check`, `cargo clippy -D warnings`, every test (with cargo-nextest
/// when it is installed, then the doc tests), the Python package's pytest suite, a short run
/// of each fuzz target and two short chaos runs (SIGKILLs, then power cuts) and a short soak.
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
        ensure_chromium()?;
        if has_nextest() {
            cargo(&["nextest", "run", "--workspace", "--no-fail-fast"])?;
            cargo(&["test", "--workspace", "--doc"])?;
        } else {
            cargo(&["test", "--workspace", "--no-fail-fast"])?;
        }
        // The Python package, built with maturin in a virtual environment, and its pytest
        // suite (the examples included) against this build's mq-server.
        crate::python::Python::test().run()?;
        // A short run of every fuzz target keeps them compiling and running; the long runs
        // are `cargo xtask fuzz --seconds N` by hand (docs/RELIABILITY.md).
        crate::fuzz::Fuzz::smoke(20).run()?;
        // Short chaos runs (the long ones: `cargo xtask chaos`, docs/RELIABILITY.md).
        crate::chaos::Chaos::smoke(6, false).run()?;
        crate::chaos::Chaos::smoke(6, true).run()?;
        crate::soak::Soak::smoke().run()?;
        println!("xtask ci: all checks passed");
        Ok(())
    }
}

/// The dashboard's browser test needs headless Chromium: installs Debian's `chromium` when
/// neither it nor `MQ_CHROMIUM` is there.
fn ensure_chromium() -> anyhow::Result<()> {
    let found = |name: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if std::env::var_os("MQ_CHROMIUM").is_some()
        || ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .any(|n| found(n))
    {
        return Ok(());
    }
    eprintln!("xtask ci: installing chromium for the dashboard test");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let sudo = if root { "" } else { "sudo " };
    let script = format!(
        "{sudo}apt-get update -qq && DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -qq chromium >/dev/null"
    );
    let status = Command::new("sh").args(["-c", &script]).status();
    if !status.is_ok_and(|s| s.success()) {
        anyhow::bail!(
            "the dashboard test needs headless Chromium and it could not be installed: install \
             Debian's chromium (or set MQ_CHROMIUM to a Chrome binary) and run again"
        );
    }
    Ok(())
}

fn has_nextest() -> bool {
    Command::new(cargo_bin())
        .args(["nextest", "--version"])
        .current_dir(workspace_root())
        .output()
        .is_ok_and(|o| o.status.success())
}

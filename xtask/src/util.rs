//! Running cargo and other programs from xtask.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The workspace root.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The cargo target directory.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The cargo that runs xtask.
pub(crate) fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Runs cargo in the workspace root; fails unless it succeeds.
pub(crate) fn cargo(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("xtask: cargo {}", args.join(" "));
    run(&cargo_bin(), args)
}

/// Runs a program in the workspace root; fails unless it succeeds.
pub(crate) fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    run_in(program, args, &workspace_root(), &[])
}

/// Runs a program in `dir` with `env` added; fails unless it succeeds.
pub(crate) fn run_in(
    program: &str,
    args: &[&str],
    dir: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .with_context(|| format!("could not run {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Builds the `mq-server` binary and the SDK program `mq-client/examples/<example>`
/// (optimized with `release`); returns their paths, server first.
pub(crate) fn build_server_and_example(
    example: &str,
    release: bool,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut build = vec![
        "build",
        "--quiet",
        "-p",
        "mq-server",
        "--bin",
        "mq-server",
        "-p",
        "mq-client",
        "--example",
        example,
    ];
    if release {
        build.push("--release");
    }
    cargo(&build)?;
    let dir = target_dir().join(if release { "release" } else { "debug" });
    Ok((dir.join("mq-server"), dir.join("examples").join(example)))
}

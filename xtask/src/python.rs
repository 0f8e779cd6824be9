//! `cargo xtask python`: the Python package `mq-python` built in a virtual environment and
//! tested with pytest (`test`, part of `cargo xtask ci`), an abi3 wheel to install without
//! a Rust toolchain (`wheel`), and the Python benchmarks (`bench`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util::{cargo, run_in, target_dir, workspace_root};

/// Longest a pytest run may take before it is stopped (the suite takes well under a minute).
const PYTEST_LIMIT: Duration = Duration::from_secs(600);

/// The Python package: test, wheel or bench.
#[derive(Debug, clap::Args)]
pub(crate) struct Python {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Builds the package into target/python-venv (maturin develop) and runs its pytest
    /// suite (examples included) against the real mq-server of this build
    Test,
    /// Builds an abi3 wheel (CPython 3.9 and later) into target/wheels
    Wheel,
    /// Measures publish and consume rates from Python (release build), embedded and TCP
    Bench {
        /// Messages per measurement
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// Runs of each measurement (median and range are printed)
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
}

impl Python {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.action {
            Action::Test => test(),
            Action::Wheel => wheel(),
            Action::Bench { messages, runs } => bench(messages, runs),
        }
    }

    /// What `cargo xtask ci` runs.
    pub(crate) fn test() -> Self {
        Self {
            action: Action::Test,
        }
    }
}

fn package_dir() -> PathBuf {
    workspace_root().join("mq-python")
}

/// The virtual environment with maturin and pytest, made on first use.
fn venv() -> anyhow::Result<PathBuf> {
    let venv = target_dir().join("python-venv");
    if !venv.join("bin").join("maturin").exists() {
        let python = std::env::var("MQ_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        eprintln!(
            "xtask python: making a virtual environment in {}",
            venv.display()
        );
        run_in(
            &python,
            &["-m", "venv", path(&venv)?],
            &workspace_root(),
            &[],
        )?;
        let pip = venv.join("bin").join("pip");
        run_in(
            path(&pip)?,
            &["install", "--quiet", "maturin>=1.7,<2", "pytest>=7"],
            &workspace_root(),
            &[],
        )?;
    }
    Ok(venv)
}

/// Installs the package into the virtual environment (`release`: optimized).
fn develop(venv: &Path, release: bool) -> anyhow::Result<()> {
    let maturin = venv.join("bin").join("maturin");
    let mut args = vec!["develop", "--quiet"];
    if release {
        args.push("--release");
    }
    run_in(path(&maturin)?, &args, &package_dir(), &venv_env(venv)?)
}

fn venv_env(venv: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    let path_var = std::env::var("PATH").unwrap_or_default();
    Ok(vec![
        ("VIRTUAL_ENV", path(venv)?.to_owned()),
        ("PATH", format!("{}:{path_var}", venv.join("bin").display())),
    ])
}

fn test() -> anyhow::Result<()> {
    let venv = venv()?;
    cargo(&["build", "--quiet", "-p", "mq-server", "--bin", "mq-server"])?;
    develop(&venv, false)?;
    let server = target_dir().join("debug").join("mq-server");
    let mut env = venv_env(&venv)?;
    env.push(("MQ_SERVER", path(&server)?.to_owned()));
    let python = venv.join("bin").join("python");
    let mut pytest = Command::new(&python);
    pytest
        .args(["-m", "pytest", "-q", "tests"])
        .current_dir(package_dir())
        .env_remove("MQ_ADDR")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    eprintln!("xtask python: pytest (mq-python/tests)");
    run_bounded(pytest, PYTEST_LIMIT).context("the Python package's tests failed")
}

fn wheel() -> anyhow::Result<()> {
    let venv = venv()?;
    let out = target_dir().join("wheels");
    let maturin = venv.join("bin").join("maturin");
    run_in(
        path(&maturin)?,
        &[
            "build",
            "--release",
            "--strip",
            "--quiet",
            "--out",
            path(&out)?,
        ],
        &package_dir(),
        &venv_env(&venv)?,
    )?;
    println!(
        "xtask python: wheel written to {} (install it with pip install <file>)",
        out.display()
    );
    Ok(())
}

fn bench(messages: u64, runs: u32) -> anyhow::Result<()> {
    let venv = venv()?;
    cargo(&[
        "build",
        "--quiet",
        "--release",
        "-p",
        "mq-server",
        "--bin",
        "mq-server",
    ])?;
    develop(&venv, true)?;
    let server = target_dir().join("release").join("mq-server");
    let mut env = venv_env(&venv)?;
    env.push(("MQ_SERVER", path(&server)?.to_owned()));
    let python = venv.join("bin").join("python");
    run_in(
        path(&python)?,
        &[
            "bench/bench.py",
            "--messages",
            &messages.to_string(),
            "--runs",
            &runs.to_string(),
        ],
        &package_dir(),
        &env,
    )
}

/// Runs `command`, stopping it (by its pid) if it outlasts `limit`.
fn run_bounded(mut command: Command, limit: Duration) -> anyhow::Result<()> {
    let mut child = command
        .stdin(Stdio::null())
        .spawn()
        .context("could not start pytest")?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("pytest failed ({status})");
            }
            return Ok(());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("pytest did not finish in {} s: stopped", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not valid UTF-8", p.display()))
}

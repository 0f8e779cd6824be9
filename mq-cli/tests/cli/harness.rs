//! Runs the built `mq` binary and a real `mq-server` process.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// The `mq-server` binary of this build, built on first use (`cargo test -p mq-cli` does not
/// build other packages' binaries by itself).
fn server_binary() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let mq = PathBuf::from(env!("CARGO_BIN_EXE_mq"));
        let dir = mq.parent().expect("binary dir").to_path_buf();
        let profile_release = dir.ends_with("release");
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "-p", "mq-server", "--bin", "mq-server"]);
        if profile_release {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building mq-server failed");
        dir.join("mq-server")
    })
}

/// A running server, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: String,
}

impl Server {
    pub(crate) fn start() -> Self {
        Self::start_with(&["--storage", "memory"])
    }

    /// Starts the server with `args` after `--listen 127.0.0.1:0`.
    pub(crate) fn start_with(args: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", args)
    }

    /// Starts the server with `args` after `--listen ADDR`: a restart where a server that
    /// stopped listened.
    pub(crate) fn start_on(addr: &str, args: &[&str]) -> Self {
        let mut child = Command::new(server_binary())
            .args(["--listen", addr])
            .args(args)
            .env("RUST_LOG", "warn")
            .env("MQ_HTTP", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mq-server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("address line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_owned();
        Self { child, addr }
    }

    /// Runs `mq --server ADDR args…`.
    pub(crate) fn mq(&self, args: &[&str]) -> Output {
        mq_with_input(&[&["--server", &self.addr], args].concat(), None)
    }

    /// Runs `mq --server ADDR args…` with `input` on stdin.
    pub(crate) fn mq_stdin(&self, args: &[&str], input: &str) -> Output {
        mq_with_input(&[&["--server", &self.addr], args].concat(), Some(input))
    }
}

impl Server {
    /// Kills the server with SIGKILL, as a crash would.
    pub(crate) fn crash(mut self) {
        self.child.kill().expect("SIGKILL delivered");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `mq args…` without a server.
pub(crate) fn mq(args: &[&str]) -> Output {
    mq_with_input(args, None)
}

fn mq_with_input(args: &[&str], input: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mq"))
        .args(args)
        .env_remove("MQ_SERVER")
        .env("COLUMNS", "100")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mq runs");
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())
            .expect("stdin written");
    }
    child.wait_with_output().expect("mq finishes")
}

/// Stdout of a successful run.
pub(crate) fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "mq failed ({:?}): {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

/// Stderr of a failed run with exit code `code`.
pub(crate) fn failed(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr.clone()).expect("utf-8 output")
}

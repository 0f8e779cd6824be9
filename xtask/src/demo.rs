//! `cargo xtask demo [fanout|topics|workqueue|exclusive|all]`: builds the server and the
//! demo program, then runs the scenarios; each starts its own server on a free port.

use crate::util::{cargo, run, target_dir};

/// Runs the scripted demos against a real mq-server.
#[derive(Debug, clap::Args)]
pub(crate) struct Demo {
    /// Which demo to run
    #[arg(value_parser = ["fanout", "topics", "workqueue", "exclusive", "all"], default_value = "all")]
    scenario: String,
}

impl Demo {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        cargo(&[
            "build",
            "--quiet",
            "-p",
            "mq-server",
            "--bin",
            "mq-server",
            "-p",
            "mq-client",
            "--example",
            "demo",
        ])?;
        let dir = target_dir().join("debug");
        let server = dir.join("mq-server");
        let demo = dir.join("examples").join("demo");
        run(
            demo.to_str().unwrap_or("demo"),
            &[
                "--server-bin",
                server.to_str().unwrap_or("mq-server"),
                &self.scenario,
            ],
        )
    }
}

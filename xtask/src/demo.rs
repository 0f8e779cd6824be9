//! `cargo xtask demo [fanout|topics|workqueue|exclusive|all]`: builds the server and the
//! demo program, then runs the scenarios; each starts its own server on a free port.

use crate::util::{build_server_and_example, run};

/// Runs the scripted demos against a real mq-server.
#[derive(Debug, clap::Args)]
pub(crate) struct Demo {
    /// Which demo to run
    #[arg(value_parser = ["fanout", "topics", "workqueue", "exclusive", "all"], default_value = "all")]
    scenario: String,
}

impl Demo {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let (server, demo) = build_server_and_example("demo", false)?;
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

//! `cargo xtask chaos [--kills N] [--power-loss] [--fsync always|interval] [--release]`:
//! builds the server and the chaos driver (`mq-client/examples/chaos`), then runs it: a
//! loaded server killed with SIGKILL N times, and an audit of every acknowledgement.

use crate::util::{build_server_and_example, run};

/// Crash chaos against a real mq-server (docs/RELIABILITY.md).
#[derive(Debug, clap::Args)]
pub(crate) struct Chaos {
    /// SIGKILLs to deliver
    #[arg(long, default_value_t = 100)]
    kills: u32,
    /// Cut the data files back to what was fsynced after each kill (a power cut)
    #[arg(long)]
    power_loss: bool,
    /// The server's fsync policy
    #[arg(long, value_parser = ["always", "interval"], default_value = "always")]
    fsync: String,
    /// Seed of the kill timing (default: from the clock; printed)
    #[arg(long)]
    seed: Option<u64>,
    /// Optimized builds
    #[arg(long)]
    release: bool,
}

impl Chaos {
    /// A short run for `cargo xtask ci`.
    pub(crate) fn smoke(kills: u32, power_loss: bool) -> Self {
        Self {
            kills,
            power_loss,
            fsync: "always".into(),
            seed: None,
            release: false,
        }
    }

    pub(crate) fn run(self) -> anyhow::Result<()> {
        let (server, driver) = build_server_and_example("chaos", self.release)?;
        let kills = self.kills.to_string();
        let seed = self.seed.map(|s| s.to_string());
        let mut args = vec![
            "--server-bin",
            server.to_str().unwrap_or("mq-server"),
            "--kills",
            &kills,
            "--fsync",
            &self.fsync,
        ];
        if self.power_loss {
            args.push("--power-loss");
        }
        if let Some(seed) = &seed {
            args.extend(["--seed", seed]);
        }
        run(driver.to_str().unwrap_or("chaos"), &args)
    }
}

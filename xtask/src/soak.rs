//! `cargo xtask soak [--minutes N] [--clients N] [--garbage N] [--messages N] [--dev]`:
//! builds the server and the soak driver (`mq-client/examples/soak`) optimized, then runs
//! it: many connections, garbage and slow-loris connections, a clean pair that must move
//! every message once, the server's memory and sockets watched.

use crate::util::{build_server_and_example, run};

/// Load and soak against a real mq-server (docs/RELIABILITY.md).
#[derive(Debug, clap::Args)]
pub(crate) struct Soak {
    /// How long the background load runs at least
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Concurrent client connections publishing and consuming
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Garbage and slow-loris connections over the run
    #[arg(long, default_value_t = 10_000)]
    garbage: usize,
    /// Messages the clean producer/consumer pair moves
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Unoptimized builds (quicker to build, for short runs)
    #[arg(long)]
    dev: bool,
}

impl Soak {
    /// A short run for `cargo xtask ci`.
    pub(crate) fn smoke() -> Self {
        Self {
            minutes: 0.2,
            clients: 200,
            garbage: 300,
            messages: 20_000,
            dev: true,
        }
    }

    pub(crate) fn run(self) -> anyhow::Result<()> {
        let (server, driver) = build_server_and_example("soak", !self.dev)?;
        let (minutes, clients) = (self.minutes.to_string(), self.clients.to_string());
        let (garbage, messages) = (self.garbage.to_string(), self.messages.to_string());
        run(
            driver.to_str().unwrap_or("soak"),
            &[
                "--server-bin",
                server.to_str().unwrap_or("mq-server"),
                "--minutes",
                &minutes,
                "--clients",
                &clients,
                "--garbage",
                &garbage,
                "--messages",
                &messages,
            ],
        )
    }
}

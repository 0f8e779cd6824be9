//! Project automation, run as `cargo xtask <command>`: `ci` runs every check CI runs.

mod ci;

use clap::{Parser, Subcommand};

/// mq's project automation.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "mq project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Formatting, clippy with warnings denied, and the whole test suite.
    Ci(ci::Ci),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ci(ci) => ci.run(),
    }
}

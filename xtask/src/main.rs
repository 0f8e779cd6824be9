//! Project automation, run as `cargo xtask <command>`: `ci` runs every check CI runs, `demo`
//! runs the scripted demos against a real server, `bench` runs the benchmark suite and
//! records it in BENCHMARKS.md, `man` writes the manual pages, `python` builds and tests
//! the Python package.

mod bench;
mod chaos;
mod ci;
mod demo;
mod fuzz;
mod man;
mod python;
mod soak;
mod tidy;
mod util;

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
    /// Formatting, clippy with warnings denied, and the whole test suite
    Ci(ci::Ci),
    /// Scripted demos against a real mq-server (fanout, topics, workqueue, exclusive, all)
    Demo(demo::Demo),
    /// The benchmark suite, recorded in BENCHMARKS.md
    Bench(bench::Bench),
    /// Manual pages of mq and mq-server, written to target/man/
    Man(man::Man),
    /// The cargo-fuzz targets (decoders, codec, recovery, configs), N seconds each
    Fuzz(fuzz::Fuzz),
    /// Crash chaos: SIGKILLs (and power cuts) under load, then an audit
    Chaos(chaos::Chaos),
    /// Load and soak: many connections, garbage, a clean pair, memory and sockets watched
    Soak(soak::Soak),
    /// The Python package: pytest in a virtual environment, an abi3 wheel, benchmarks
    Python(python::Python),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ci(ci) => ci.run(),
        Command::Demo(demo) => demo.run(),
        Command::Bench(bench) => bench.run(),
        Command::Man(man) => man.run(),
        Command::Fuzz(fuzz) => fuzz.run(),
        Command::Chaos(chaos) => chaos.run(),
        Command::Soak(soak) => soak.run(),
        Command::Python(python) => python.run(),
    }
}

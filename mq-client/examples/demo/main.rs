//! The scripted demos behind `cargo xtask demo`: each starts a real `mq-server` on a free
//! port with a temporary data dir, runs its scenario with real clients, narrates what
//! happens, checks its own claims (exiting non-zero if any fails) and stops the server.
//!
//! `demo --server-bin PATH [fanout|topics|workqueue|exclusive|all]`

mod exclusive;
mod fanout;
mod server;
mod topics;
mod workqueue;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// Scripted demos of the mq broker.
#[derive(Debug, Parser)]
struct Args {
    /// The mq-server binary to start.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Which demo.
    #[arg(value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Internal: run as one workqueue worker process against this server.
    #[arg(long, hide = true)]
    worker: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Fanout,
    Topics,
    Workqueue,
    Exclusive,
    All,
}

/// Claims checked during a demo.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    failed: usize,
    passed: usize,
}

impl Claims {
    /// Prints a narration line.
    pub(crate) fn say(&self, line: impl AsRef<str>) {
        println!("  {}", line.as_ref());
    }

    /// Checks a claim and prints it with its verdict.
    pub(crate) fn check(&mut self, ok: bool, claim: impl AsRef<str>) {
        if ok {
            self.passed += 1;
            println!("  ok    {}", claim.as_ref());
        } else {
            self.failed += 1;
            println!("  FAIL  {}", claim.as_ref());
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = args.worker {
        return match runtime.block_on(workqueue::worker(&addr)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: worker: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(server_bin) = args.server_bin else {
        eprintln!("error: --server-bin is required: run the demos with `cargo xtask demo`");
        return ExitCode::from(2);
    };
    let scenarios = match args.scenario {
        Scenario::All => vec![
            Scenario::Fanout,
            Scenario::Topics,
            Scenario::Workqueue,
            Scenario::Exclusive,
        ],
        one => vec![one],
    };
    let mut claims = Claims::default();
    for scenario in scenarios {
        let result = runtime.block_on(async {
            let server = server::Server::start(&server_bin)?;
            println!("\n== {scenario:?} demo (mq-server on {})", server.addr);
            match scenario {
                Scenario::Fanout => fanout::run(&server, &mut claims).await,
                Scenario::Topics => topics::run(&server, &mut claims).await,
                Scenario::Workqueue => workqueue::run(&server, &mut claims).await,
                Scenario::Exclusive => exclusive::run(server, &mut claims).await,
                Scenario::All => unreachable!("expanded above"),
            }
        });
        if let Err(e) = result {
            claims.failed += 1;
            println!("  FAIL  the {scenario:?} demo stopped: {e:#}");
        }
    }
    println!("\n{} passed, {} failed", claims.passed, claims.failed);
    if claims.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

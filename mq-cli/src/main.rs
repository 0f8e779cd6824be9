//! `mq`: publish, consume, administer and benchmark an mq broker from the shell.
//!
//! Exit codes: 0 on success, 1 with one `error: …` line on stderr for a failure, 2 for bad
//! usage.

mod admin;
mod args;
mod bench;
mod consume;
mod format;
mod peek;
mod publish;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use mq_client::{Client, ClientConfig};

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ").replace('\n', " ")
}

async fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let config = ClientConfig {
        name: format!("mq {}", env!("CARGO_PKG_VERSION")),
        token: cli.token.clone(),
        tls: cli.tls(),
        ..ClientConfig::default()
    };
    Ok(Client::connect_with(&cli.server, config).await?)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Bench(args) => bench::run(&cli, args).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "mq", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(())
        }
        command => {
            let client = connect(&cli).await?;
            let result = match command {
                Command::Publish(args) => publish::run(&client, args).await,
                Command::Consume(args) => consume::run(&client, args).await,
                Command::Peek(args) => peek::run(&client, args).await,
                Command::Topics(cmd) => admin::topics(&client, cmd).await,
                Command::Groups(cmd) => admin::groups(&client, cmd).await,
                Command::Stats(args) => admin::stats(&client, args).await,
                Command::Bench(_) | Command::Completions { .. } | Command::Man => {
                    unreachable!("handled above")
                }
            };
            client.close().await;
            result
        }
    }
}

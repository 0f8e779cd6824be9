//! The `mq-server` binary: flags, environment variables and a TOML config file (in that
//! order of precedence), tracing logs on stderr, `listening on <ADDR>` on stdout once
//! ready, and a graceful shutdown on SIGINT or SIGTERM.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mq_core::FsyncPolicy;
use mq_server::{ConfigFile, DEFAULT_LISTEN, ServerConfig, StorageKind};
use mq_transport::{TcpTransport, Transport, max_message_size};

// mimalloc: many small, long-lived allocations (one per retained message) made from
// several threads at once, where the system allocator spends its time growing arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The mq message broker.
#[derive(Debug, Parser)]
#[command(name = "mq-server", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on (IP:PORT; port 0 picks a free one) [default: 127.0.0.1:9800]
    #[arg(long, env = "MQ_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Where topics are stored [default: file]
    #[arg(long, env = "MQ_STORAGE", value_enum)]
    storage: Option<StorageKind>,
    /// Directory of the file storage [default: ./mq-data]
    #[arg(long, env = "MQ_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// When the file storage fsyncs: always, interval or never [default: interval]
    #[arg(long, env = "MQ_FSYNC", value_name = "POLICY")]
    fsync: Option<FsyncPolicy>,
    /// Size at which a topic's segment file is rolled [default: 67108864]
    #[arg(long, env = "MQ_SEGMENT_BYTES", value_name = "BYTES")]
    segment_bytes: Option<u64>,
    /// Bytes of messages each topic keeps in memory; older ones are read back from disk
    /// [default: 67108864]
    #[arg(long, env = "MQ_RESIDENT_BYTES", value_name = "BYTES")]
    resident_bytes: Option<u64>,
    /// Free bytes to keep on the data dir's disk: below them publishes are refused with
    /// `disk_full` until space returns (0: no floor) [default: 1 GiB, or 5% of the disk
    /// when smaller]
    #[arg(long, env = "MQ_MIN_FREE_DISK", value_name = "BYTES")]
    min_free_disk: Option<u64>,
    /// TOML file with any of these settings; flags and environment variables win over it
    #[arg(long, env = "MQ_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Require this token in every connection's handshake
    #[arg(
        long,
        env = "MQ_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    auth_token: Option<String>,
    /// Most connections served at once [default: 10000]
    #[arg(long, env = "MQ_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Largest frame accepted, in bytes [default: 16777216]
    #[arg(long, env = "MQ_MAX_FRAME", value_name = "BYTES")]
    max_frame: Option<usize>,
    /// Time a new connection has to send its handshake [default: 10s]
    #[arg(long, env = "MQ_HANDSHAKE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    handshake_timeout: Option<Duration>,
    /// Close connections without subscriptions that send nothing this long [default: 5m]
    #[arg(long, env = "MQ_IDLE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
}

/// Tools besides serving.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Read every record, checksum and group journal of a data dir and report damage,
    /// changing nothing (exit 1 when something is damaged)
    Check {
        /// The data dir to check [default: ./mq-data]
        #[arg(long, env = "MQ_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

impl Args {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let file = match &self.config {
            Some(path) => ConfigFile::load(path)?,
            None => ConfigFile::default(),
        };
        let d = ServerConfig::default();
        let config = ServerConfig {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            storage: self.storage.or(file.storage).unwrap_or(d.storage),
            data_dir: self.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            fsync: self.fsync.or(file.fsync).unwrap_or(d.fsync),
            segment_bytes: self
                .segment_bytes
                .or(file.segment_bytes)
                .unwrap_or(d.segment_bytes),
            resident_bytes: self
                .resident_bytes
                .or(file.resident_bytes)
                .unwrap_or(d.resident_bytes),
            min_free_disk: self.min_free_disk.or(file.min_free_disk),
            auth_token: self.auth_token.or(file.auth_token),
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            max_frame: self.max_frame.or(file.max_frame).unwrap_or(d.max_frame),
            handshake_timeout: self
                .handshake_timeout
                .or(file.handshake_timeout)
                .unwrap_or(d.handshake_timeout),
            idle_timeout: self
                .idle_timeout
                .or(file.idle_timeout)
                .unwrap_or(d.idle_timeout),
            ..d
        };
        config.validate()?;
        Ok(config)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match args.command {
        Some(Command::Check { data_dir }) => check(data_dir),
        None => serve(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `mq-server check`: prints each problem and a summary; exit 1 when there are problems.
fn check(data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = data_dir.unwrap_or_else(|| ServerConfig::default().data_dir);
    anyhow::ensure!(
        dir.join("topics").is_dir(),
        "{} is not an mq data dir (it has no topics directory)",
        dir.display()
    );
    let report = mq_core::FileStorage::check(&dir)
        .with_context(|| format!("cannot check data dir {}", dir.display()))?;
    let mut stdout = std::io::stdout().lock();
    for problem in &report.problems {
        writeln!(stdout, "{problem}").context("cannot write to stdout")?;
    }
    writeln!(
        stdout,
        "checked {} topics, {} messages in {}: {}",
        report.topics,
        report.messages,
        dir.display(),
        match report.problems.len() {
            0 => "no damage".to_owned(),
            n => format!("{n} problems"),
        }
    )
    .context("cannot write to stdout")?;
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Raises the soft limit on open files to the hard limit: each connection and each open
/// storage file takes a descriptor.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(limit = ?limit.maximum, "raised the open-file limit"),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        }
    }
}

fn serve(args: Args) -> anyhow::Result<()> {
    let config = args.into_config()?;
    raise_open_file_limit();
    let builder = mq_core::Broker::builder().max_message_size(max_message_size(config.max_frame));
    let broker = match config.storage {
        StorageKind::Memory => builder.build().context("cannot start the memory storage")?,
        StorageKind::File => {
            let storage = mq_core::FileStorage::open(&config.data_dir, config.file_options())
                .with_context(|| format!("cannot use data dir {}", config.data_dir.display()))?;
            builder
                .storage(storage)
                .build()
                .with_context(|| format!("cannot recover data dir {}", config.data_dir.display()))?
        }
    };
    for warning in broker.recovery_warnings() {
        tracing::warn!("recovery: {warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let transport = TcpTransport::new(config.max_frame);
        let listener = transport
            .bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr();
        tracing::info!(%addr, storage = ?config.storage, data_dir = %config.data_dir.display(), "mq-server ready");
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {addr}").context("cannot write to stdout")?;
        stdout.flush().context("cannot write to stdout")?;
        drop(stdout);
        mq_server::run(listener, broker, config, shutdown_signal()).await
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

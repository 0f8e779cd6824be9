//! The `mq-server` binary: flags, environment variables and a TOML config file (in that
//! order of precedence), tracing logs on stderr, `listening on <ADDR>` on stdout once
//! ready, and a graceful shutdown on SIGINT or SIGTERM.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use mq_server::{ServerConfig, StorageKind};
use mq_transport::{ReadBudget, TcpTransport, Transport, max_message_size};

/// The mq message broker.
#[derive(Debug, Parser)]
#[command(name = "mq-server", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: ServerConfig,
    /// TOML file with any of these settings; environment variables and flags win over it
    #[arg(long, env = "MQ_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log lines as text or as one JSON object each (filter with MQ_LOG, then RUST_LOG)
    #[arg(long, env = "MQ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Print the effective settings (defaults, file, environment, flags) as TOML and exit
    #[arg(long)]
    print_config: bool,
    /// Check this config file (and the settings around it) and exit: 0 when valid
    #[arg(long, value_name = "FILE", conflicts_with = "print_config")]
    check_config: Option<PathBuf>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
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
    /// Print a new random token for a user, and the lines to put in the config file (which
    /// stores only the token's SHA-256 digest)
    NewToken {
        /// The user's name
        #[arg(long, default_value = "user")]
        user: String,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), for `man -l -` or /usr/share/man/man1/mq-server.1
    Man,
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MQ_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = match args.command {
        None if args.print_config => ServerConfig::load(&matches, args.config.as_deref())
            .and_then(|config| print_config(&config)),
        None if args.check_config.is_some() => {
            let file = args.check_config.as_deref();
            ServerConfig::load(&matches, file).map(|_| {
                println!(
                    "{}: valid",
                    file.map_or_else(String::new, |f| f.display().to_string())
                );
                ExitCode::SUCCESS
            })
        }
        Some(Command::Check { data_dir }) => check(data_dir),
        Some(Command::NewToken { user }) => new_token(&user),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut Args::command(),
                "mq-server",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Man) => clap_mangen::Man::new(Args::command())
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .context("cannot write the manual page"),
        None => ServerConfig::load(&matches, args.config.as_deref())
            .and_then(|config| {
                serve(
                    config,
                    Reload {
                        matches: matches.clone(),
                        file: args.config.clone(),
                    },
                )
            })
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `mq-server --print-config`: the effective settings as TOML (the token, if any, masked).
fn print_config(config: &ServerConfig) -> anyhow::Result<ExitCode> {
    let mut shown = config.clone();
    if shown.auth_token.is_some() {
        shown.auth_token = Some("(set)".into());
    }
    let text = toml::to_string(&shown).context("cannot write the settings as TOML")?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `mq-server new-token`: a token for the user, and its config lines.
fn new_token(user: &str) -> anyhow::Result<ExitCode> {
    let token = mq_server::users::new_token()?;
    let digest: String = mq_server::users::digest(&token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("token: {token}");
    println!();
    println!("# in the config file (the server keeps only the digest):");
    println!("[[users]]");
    println!("name = {user:?}");
    println!("token_sha256 = \"{digest}\"");
    println!(
        "permissions = [{{ topics = \"*\", actions = [\"publish\", \"consume\", \"stats\"] }}]"
    );
    Ok(ExitCode::SUCCESS)
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

/// What a SIGHUP reads again: the settings as the command line gave them, and the config
/// file.
struct Reload {
    matches: clap::ArgMatches,
    file: Option<PathBuf>,
}

impl Reload {
    /// The users the settings name now.
    fn users(&self) -> anyhow::Result<mq_server::users::Users> {
        let mut config = ServerConfig::load(&self.matches, self.file.as_deref())?;
        config.read_token_file()?;
        mq_server::users::Users::new(&config.users, config.auth_token.as_deref())
    }
}

fn serve(mut config: ServerConfig, reload: Reload) -> anyhow::Result<()> {
    config.read_token_file()?;
    let auth = config.auth_mode()?;
    raise_open_file_limit();
    let builder = mq_core::Broker::builder()
        .max_message_size(max_message_size(config.max_frame))
        .max_topics(config.max_topics)
        .max_groups_per_topic(config.max_groups_per_topic)
        .producer_limits(mq_core::ProducerLimits {
            max_producers: config.max_producers,
            expiry: config.producer_expiry,
        })
        .auto_create_topics(config.auto_create_topics);
    let builder = match config.memory_bound() {
        Some(bytes) => builder.max_memory(bytes),
        None => builder,
    };
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
    let tls = match config.tls_files()? {
        Some(files) => Some(
            mq_transport::ServerTls::load(files.clone())
                .with_context(|| format!("cannot set up TLS from {}", files.cert.display()))?,
        ),
        None => None,
    };
    runtime.block_on(async {
        let traffic = mq_transport::Traffic::default();
        let mut transport = TcpTransport::new(config.max_frame)
            .with_read_budget(ReadBudget::new(config.max_read_buffers))
            .with_traffic(traffic.clone());
        if let Some(tls) = &tls {
            transport = transport.with_server_tls(Arc::clone(tls));
        }
        let users = mq_server::users::UsersHandle::new(
            mq_server::users::Users::new(&config.users, config.auth_token.as_deref())
                .context("cannot read the users")?,
        );
        tokio::spawn(reload_on_sighup(tls.clone(), users.clone(), reload));
        let listener = transport
            .bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr();
        let tls_mode = match &tls {
            Some(t) if t.mutual() => "TLS with client certificates",
            Some(_) => "TLS",
            None => "plaintext",
        };
        tracing::info!(%addr, storage = ?config.storage, data_dir = %config.data_dir.display(), transport = tls_mode, auth, max_memory = ?config.memory_bound(), "mq-server ready");
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {addr}").context("cannot write to stdout")?;
        let http = match config.http_addr() {
            None => None,
            Some((addr, explicit)) => match mq_server::HttpListener::bind(&addr, tls.clone()).await {
                Ok(http) => Some(http),
                Err(e) if !explicit => {
                    tracing::warn!(%addr, error = %e, "the default HTTP port is taken: running without HTTP (pass --http ADDR or --http off)");
                    None
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot serve HTTP on {addr}")));
                }
            },
        };
        if let Some(http) = &http {
            let http_addr = http.local_addr().context("cannot read the HTTP address")?;
            writeln!(stdout, "http on {http_addr}").context("cannot write to stdout")?;
        }
        stdout.flush().context("cannot write to stdout")?;
        drop(stdout);
        let extras = mq_server::Extras {
            users,
            traffic,
            http,
        };
        mq_server::run_with(listener, broker, config, extras, shutdown_signal()).await
    })
}

/// On every SIGHUP: reloads the TLS certificate, key and client CA (new connections get
/// them, established ones keep theirs) and the users and their permissions (they apply to
/// the next request of every connection).
async fn reload_on_sighup(
    tls: Option<Arc<mq_transport::ServerTls>>,
    users: mq_server::users::UsersHandle,
    reload: Reload,
) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot watch SIGHUP: nothing will be reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS reload failed; the previous certificate stays")
                    }
                }
            }
            match reload.users() {
                Ok(new) => {
                    users.replace(new);
                    tracing::info!("SIGHUP: users reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "SIGHUP: users reload failed; the previous users stay")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (tls, users, reload);
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

//! The command line of `mq`, as the README's CLI tour shows it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use mq_client::{GroupName, Offset, StartPosition, Timestamp, TopicName};

/// Command-line client of the mq message broker.
#[derive(Debug, Parser)]
#[command(name = "mq", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Address of the mq-server
    #[arg(
        long,
        global = true,
        env = "MQ_SERVER",
        default_value = "127.0.0.1:9800",
        value_name = "ADDR",
        value_parser = server_addr
    )]
    pub(crate) server: String,
    /// Auth token, when the server requires one
    #[arg(
        long,
        global = true,
        env = "MQ_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// Speak TLS, trusting this CA (PEM) for the server's certificate
    #[arg(long, global = true, env = "MQ_TLS_CA", value_name = "FILE")]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for a server that requires one (with --tls-key)
    #[arg(
        long,
        global = true,
        env = "MQ_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(
        long,
        global = true,
        env = "MQ_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// Name the server's certificate must carry [default: the host of --server]
    #[arg(long, global = true, env = "MQ_TLS_SERVER_NAME", value_name = "NAME")]
    pub(crate) tls_server_name: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    #[default]
    Text,
    /// For scripts: JSON.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Publish messages (from arguments, or one per line of standard input)
    Publish(PublishArgs),
    /// Consume messages, acking each after it is written
    Consume(ConsumeArgs),
    /// Read messages without a group and without changing any delivery state
    Peek(PeekArgs),
    /// List, create, delete and describe topics
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// List, create, describe, move and delete consumer groups
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Broker or topic statistics
    Stats(StatsArgs),
    /// Measure throughput and latency
    Bench(BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), for `man -l -` or /usr/share/man/man1/mq.1
    Man,
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// Topic to publish to (created on first use)
    #[arg(value_parser = topic_name)]
    pub(crate) topic: String,
    /// Messages to publish; none reads standard input, one message per line
    pub(crate) messages: Vec<String>,
    /// Priority (0-255, higher is delivered first)
    #[arg(long, default_value_t = 0)]
    pub(crate) priority: u8,
    /// Key of every message
    #[arg(long, value_name = "K")]
    pub(crate) key: Option<String>,
    /// Header NAME=VALUE (repeatable)
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// Topic to consume from (created on first use)
    #[arg(value_parser = topic_name)]
    pub(crate) topic: String,
    /// Durable group to join; without it, an ephemeral group for this command alone
    #[arg(long, value_name = "G", value_parser = group_name)]
    pub(crate) group: Option<String>,
    /// Where a new group starts: earliest, latest, an offset, a time (RFC 3339) or a time
    /// relative to now (-10m) [default: where the group is, or earliest for a new group;
    /// an existing group is moved only by `mq groups seek`]
    #[arg(long, value_name = "POSITION", value_parser = parse_position, allow_hyphen_values = true)]
    pub(crate) from: Option<StartPosition>,
    /// Exit after this many messages
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Exit once no message has arrived for this long (default: wait forever)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// Refuse other consumers in the group while attached
    #[arg(long)]
    pub(crate) exclusive: bool,
    /// Create the topic if it does not exist (without, a missing topic is an error)
    #[arg(long)]
    pub(crate) create: bool,
    /// Output format: payloads, or one JSON object per message
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct PeekArgs {
    /// Topic to read
    #[arg(value_parser = topic_name)]
    pub(crate) topic: String,
    /// Where to start: earliest, latest, an offset, a time (RFC 3339) or a time relative to
    /// now (-10m)
    #[arg(long, default_value = "earliest", value_name = "POSITION", value_parser = parse_position, allow_hyphen_values = true)]
    pub(crate) from: StartPosition,
    /// How many messages at most
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub(crate) count: u32,
    /// Output format: payloads, or one JSON object per message
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TopicsCommand {
    /// List topics
    List {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Create a topic with limits and group defaults
    Create(CreateArgs),
    /// Delete a topic and everything in it
    Delete {
        /// Topic name
        #[arg(value_parser = topic_name)]
        name: String,
    },
    /// Drop every message a topic retains; its groups move past them
    Purge {
        /// Topic name
        #[arg(value_parser = topic_name)]
        name: String,
    },
    /// Change a topic's limits and group defaults in place (only the options given)
    Alter(CreateArgs),
    /// Show a topic's configuration and statistics
    Describe {
        /// Topic name
        #[arg(value_parser = topic_name)]
        name: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Topic name
    #[arg(value_parser = topic_name)]
    pub(crate) name: String,
    /// Delete messages every group acked once older than this [default: 0s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) retain_consumed: Option<Duration>,
    /// Delete messages older than this, consumed or not [default: none]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) max_age: Option<Duration>,
    /// Most messages retained [default: no limit]
    #[arg(long, value_name = "N")]
    pub(crate) max_messages: Option<u64>,
    /// Most bytes retained [default: 1073741824]
    #[arg(long, value_name = "N")]
    pub(crate) max_bytes: Option<u64>,
    /// What a full topic does: reject publishes, or drop the oldest messages [default: reject]
    #[arg(long, value_enum)]
    pub(crate) overflow: Option<OverflowArg>,
    /// Redeliver a delivery not acked within this [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) ack_timeout: Option<Duration>,
    /// Dead-letter a message after this many deliveries [default: 10]
    #[arg(long, value_name = "N")]
    pub(crate) max_deliveries: Option<u32>,
}

/// `--overflow` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OverflowArg {
    /// Refuse publishes with "topic full"
    Reject,
    /// Delete the oldest messages
    DropOldest,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// List a topic's groups
    List {
        /// Topic name
        #[arg(value_parser = topic_name)]
        topic: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Create a durable group without attaching a consumer
    Create {
        /// Topic name
        #[arg(value_parser = topic_name)]
        topic: String,
        /// Group name
        #[arg(value_parser = group_name)]
        group: String,
        /// Where it starts: earliest, latest, an offset, a time (RFC 3339) or a time relative
        /// to now (-10m)
        #[arg(long, default_value = "earliest", value_name = "POSITION", value_parser = parse_position, allow_hyphen_values = true)]
        from: StartPosition,
    },
    /// Move a group: in-flight deliveries go back, consumers stay attached
    Seek {
        /// Topic name
        #[arg(value_parser = topic_name)]
        topic: String,
        /// Group name
        #[arg(value_parser = group_name)]
        group: String,
        /// Where it moves to: earliest, latest, an offset, a time (RFC 3339) or a time
        /// relative to now (-10m)
        #[arg(long, value_name = "POSITION", value_parser = parse_position, allow_hyphen_values = true)]
        to: StartPosition,
    },
    /// Show a group's consumers (connection, window, oldest un-acked) and why it is or is
    /// not getting messages
    Describe {
        /// Topic name
        #[arg(value_parser = topic_name)]
        topic: String,
        /// Group name
        #[arg(value_parser = group_name)]
        group: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Delete a group (no consumer may be attached)
    Delete {
        /// Topic name
        #[arg(value_parser = topic_name)]
        topic: String,
        /// Group name
        #[arg(value_parser = group_name)]
        group: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// A topic; without it, broker-wide statistics
    #[arg(value_parser = topic_name)]
    pub(crate) topic: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

/// Benchmark workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// Producers publish N messages, each acknowledged
    Publish,
    /// C groups each receive all N messages
    Fanout,
    /// C consumers share one group with manual acks; each message once
    Workqueue,
    /// End-to-end latency at a fixed rate R
    Latency,
    /// A raw TCP pipe over loopback with the same frame sizes and no broker: the floor
    Limit,
    /// One raw TCP hop over loopback at rate R, no broker: the floor of `latency`
    Hop,
    /// Producers publish N messages round-robin over `--topics` topics
    Topics,
    /// N idle groups created on one topic (what a group costs the server)
    Groups,
    /// N messages published with no consumer, then read from the earliest by a new group
    Catchup,
    /// One producer sends N messages one at a time, each waiting for its ack
    Acked,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Workload to run
    #[arg(value_enum)]
    pub(crate) workload: Workload,
    /// Messages [default: 1000000; latency: 50000]
    #[arg(short = 'n', long = "messages")]
    pub(crate) n: Option<u64>,
    /// Payload bytes per message
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
    /// Producers (publish, workqueue)
    #[arg(long, default_value_t = 1)]
    pub(crate) producers: usize,
    /// Consumers (fanout: groups; workqueue: consumers in the group)
    #[arg(long, default_value_t = 4)]
    pub(crate) consumers: usize,
    /// Messages per second (latency)
    #[arg(long, default_value_t = 10_000)]
    pub(crate) rate: u64,
    /// Messages per publish batch
    #[arg(long, default_value_t = 500)]
    pub(crate) batch: usize,
    /// Use the SDK the plain way: one `publish` call per message with the default producer
    /// settings, consumers with the default prefetch that `ack` each delivery
    #[arg(long)]
    pub(crate) plain: bool,
    /// Leave the run's topic and its messages on the server (to measure what they cost)
    #[arg(long)]
    pub(crate) keep: bool,
    /// Topics (topics)
    #[arg(long, default_value_t = 1000)]
    pub(crate) topics: usize,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
}

impl Cli {
    /// The TLS setup the flags ask for: TLS when any TLS flag is given.
    pub(crate) fn tls(&self) -> Option<mq_client::ClientTls> {
        let wanted =
            self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_server_name.is_some();
        wanted.then(|| mq_client::ClientTls {
            ca: self.tls_ca.clone(),
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
            server_name: self.tls_server_name.clone(),
        })
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}: use durations like 500ms, 30s, 5m, 1h"))
}

/// A position in a topic: `earliest`, `latest`, an offset, an RFC 3339 time, or a time
/// relative to now (`-10m`, `-1h30m`).
pub(crate) fn parse_position(s: &str) -> Result<StartPosition, String> {
    let wrong = || {
        format!(
            "{s:?} is not a position: use earliest, latest, an offset, a time like \
             2026-11-27T18:00:00Z or a time before now like -10m"
        )
    };
    match s {
        "earliest" => return Ok(StartPosition::Earliest),
        "latest" => return Ok(StartPosition::Latest),
        _ => {}
    }
    if let Ok(offset) = s.parse::<u64>() {
        return Ok(StartPosition::Offset(Offset(offset)));
    }
    let time = match s.strip_prefix('-') {
        Some(ago) => {
            let ago = humantime::parse_duration(ago).map_err(|_| wrong())?;
            SystemTime::now().checked_sub(ago).ok_or_else(wrong)?
        }
        None => humantime::parse_rfc3339_weak(s).map_err(|_| wrong())?,
    };
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| wrong())?
        .as_millis();
    Ok(StartPosition::Time(Timestamp::from_millis(
        u64::try_from(millis).map_err(|_| wrong())?,
    )))
}

/// A valid topic name, checked before connecting.
fn topic_name(s: &str) -> Result<String, String> {
    TopicName::new(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A valid group name, checked before connecting.
fn group_name(s: &str) -> Result<String, String> {
    GroupName::new(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// `HOST:PORT`, checked before connecting.
fn server_addr(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err(format!(
            "{s:?} is not a server address: use HOST:PORT, like 127.0.0.1:9800"
        )),
    }
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("header {s:?} is not NAME=VALUE")),
    }
}

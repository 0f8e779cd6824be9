//! [`ServerConfig`]: every setting of `mq-server`, declared once — its flag, its `MQ_*`
//! variable, its key in the `--config` TOML file, its default and its help — and merged
//! defaults < file < environment < flags by figment.
//!
//! ```toml
//! listen = "127.0.0.1:9800"
//! http = "127.0.0.1:9801"
//! storage = "memory"
//! data_dir = "./mq-data"
//! fsync = "interval"
//! segment_bytes = 67108864
//! resident_bytes = 67108864
//! min_free_disk = 1073741824
//! max_memory = 4294967296
//! auto_create_topics = true
//! auth_token = "secret"
//! allow_anonymous = false
//! tls_cert = "/etc/mq/server.pem"
//! tls_key = "/etc/mq/server.key"
//! max_connections = 10000
//! max_subscriptions = 1000
//! max_prefetch = 10000
//! max_topics = 10000
//! max_groups_per_topic = 10000
//! max_producers = 10000
//! producer_expiry = "24h"
//! max_frame = 16777216
//! max_read_buffers = 536870912
//! handshake_timeout = "10s"
//! heartbeat_interval = "10s"
//! idle_timeout = "5m"
//! stall_timeout = "30s"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use mq_core::FsyncPolicy;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9800";

/// Default address of the HTTP endpoint.
pub const DEFAULT_HTTP: &str = "127.0.0.1:9801";

/// Which storage holds the topics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StorageKind {
    /// Nothing touches disk; everything is gone at exit.
    Memory,
    /// A segmented log per topic under the data dir (the default).
    #[default]
    File,
}

/// The server's settings. Each field is one setting: `--flag`, `MQ_FLAG`, `flag` in the
/// config file.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (IP:PORT; port 0 picks a free one)
    #[arg(long, env = "MQ_LISTEN", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Address of the HTTP endpoint (metrics, health, JSON API, dashboard), or `off`
    /// [default: 127.0.0.1:9801; when that port is taken the server warns and runs without
    /// HTTP]
    #[arg(long, env = "MQ_HTTP", value_name = "ADDR|off")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Where topics are stored
    #[arg(long, env = "MQ_STORAGE", value_enum, default_value_t = StorageKind::File)]
    pub storage: StorageKind,
    /// Directory of the file storage
    #[arg(
        long,
        env = "MQ_DATA_DIR",
        value_name = "DIR",
        default_value = "./mq-data"
    )]
    pub data_dir: PathBuf,
    /// When the file storage fsyncs: always, interval or never
    #[arg(
        long,
        env = "MQ_FSYNC",
        value_name = "POLICY",
        default_value = "interval"
    )]
    pub fsync: FsyncPolicy,
    /// Size at which a topic's segment file is rolled
    #[arg(long, env = "MQ_SEGMENT_BYTES", value_name = "BYTES", default_value_t = mq_core::DEFAULT_SEGMENT_BYTES)]
    pub segment_bytes: u64,
    /// Bytes of messages each topic keeps in memory; older ones are read back from disk
    #[arg(long, env = "MQ_RESIDENT_BYTES", value_name = "BYTES", default_value_t = mq_core::DEFAULT_RESIDENT_BYTES)]
    pub resident_bytes: u64,
    /// Whether a publish to a topic that does not exist creates it (with the default
    /// config); with false it is refused with `topic_not_found`
    #[arg(long, env = "MQ_AUTO_CREATE_TOPICS", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    /// Bytes of messages held in memory across all topics: at the bound, copies the file
    /// storage can read back leave memory first, then messages every group has acked are
    /// removed, then publishes are refused with `memory_full` (0: no bound) [default: half
    /// the machine's memory, or of the process's cgroup limit when lower]
    #[arg(long, env = "MQ_MAX_MEMORY", value_name = "BYTES")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<u64>,
    /// Free bytes to keep on the data dir's disk: below them publishes are refused with
    /// `disk_full` until space returns (0: no floor) [default: 1 GiB, or 5% of the disk
    /// when smaller]
    #[arg(long, env = "MQ_MIN_FREE_DISK", value_name = "BYTES")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_disk: Option<u64>,
    /// For power-loss tests (`cargo xtask chaos --power-loss`): append `LENGTH PATH` to
    /// this file after every fsync of a data file
    #[arg(long, env = "MQ_SYNC_LOG", value_name = "FILE", hide = true)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_log: Option<PathBuf>,
    /// Require this token in every connection's handshake
    #[arg(
        long,
        env = "MQ_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// Read the token from this file (first line), so that it never shows in `ps`
    #[arg(
        long,
        env = "MQ_AUTH_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "auth_token"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_file: Option<PathBuf>,
    /// Serve clients without credentials on a non-loopback address (without it, a server
    /// with no token refuses to listen beyond this machine)
    #[arg(long, env = "MQ_ALLOW_ANONYMOUS")]
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Users and their permissions (config file only: `[[users]]`).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<crate::users::UserConfig>,
    /// Serve TLS with this certificate chain (PEM; with --tls-key). Reloaded on SIGHUP
    #[arg(long, env = "MQ_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, env = "MQ_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Require clients to present a certificate signed by this CA (PEM): mutual TLS
    #[arg(
        long,
        env = "MQ_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
    /// Most connections served at once; more are refused with `server_busy`
    #[arg(
        long,
        env = "MQ_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub max_connections: usize,
    /// Most subscriptions one connection may hold; more are refused with
    /// `too_many_subscriptions`
    #[arg(
        long,
        env = "MQ_MAX_SUBSCRIPTIONS",
        value_name = "N",
        default_value_t = 1_000
    )]
    pub max_subscriptions: usize,
    /// Largest prefetch window a consumer gets; a larger request is granted this (Subscribed
    /// says what was granted)
    #[arg(
        long,
        env = "MQ_MAX_PREFETCH",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub max_prefetch: u32,
    /// Most topics the broker holds; creating more is refused with `too_many_topics`
    #[arg(
        long,
        env = "MQ_MAX_TOPICS",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub max_topics: usize,
    /// Most groups one topic holds; creating more is refused with `too_many_groups`
    #[arg(
        long,
        env = "MQ_MAX_GROUPS_PER_TOPIC",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub max_groups_per_topic: usize,
    /// Idempotent producers each topic remembers (the idlest is forgotten past it): a
    /// batch a forgotten producer sends again is stored again
    #[arg(
        long,
        env = "MQ_MAX_PRODUCERS",
        value_name = "N",
        default_value_t = mq_core::DEFAULT_MAX_PRODUCERS
    )]
    pub max_producers: usize,
    /// How long a topic remembers an idempotent producer that publishes nothing
    #[arg(long, env = "MQ_PRODUCER_EXPIRY", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "24h")]
    #[serde(with = "humantime_serde")]
    pub producer_expiry: Duration,
    /// Memory for partially received frames across all connections: a connection whose
    /// frame needs more than is left is refused with `server_busy` and closed
    #[arg(
        long,
        env = "MQ_MAX_READ_BUFFERS",
        value_name = "BYTES",
        default_value_t = 512 * 1024 * 1024
    )]
    pub max_read_buffers: usize,
    /// Largest frame accepted or sent, in bytes (it bounds the largest message too)
    #[arg(long, env = "MQ_MAX_FRAME", value_name = "BYTES", default_value_t = mq_transport::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
    /// Time a new connection has to send its handshake
    #[arg(long, env = "MQ_HANDSHAKE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// How often clients send Ping (announced in Welcome, protocol version 2 on): a
    /// connection that sends nothing for 3 intervals is closed, subscriptions or not (0:
    /// no heartbeat)
    #[arg(long, env = "MQ_HEARTBEAT_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Close version-1 connections without subscriptions that send nothing this long
    #[arg(long, env = "MQ_IDLE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5m")]
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Close a connection whose socket takes none of the replies and deliveries waiting for
    /// it this long (its unacked deliveries go back to their groups)
    #[arg(long, env = "MQ_STALL_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// How often retention, ack timeouts and delayed nacks are processed
    #[arg(skip = Duration::from_millis(100))]
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// How long shutdown waits for sessions to finish before closing them anyway
    #[arg(skip = Duration::from_secs(5))]
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        // The defaults alone: no environment variable may leak in.
        let matches = <Self as clap::Args>::augment_args(clap::Command::new("defaults"))
            .mut_args(|arg| arg.env(None))
            .no_binary_name(true)
            .try_get_matches_from(std::iter::empty::<String>());
        matches
            .ok()
            .and_then(|m| Self::from_arg_matches(&m).ok())
            .unwrap_or_else(|| unreachable!("every setting has a default"))
    }
}

impl ServerConfig {
    /// The settings from parsed command-line `matches` (flags and `MQ_*` variables) over
    /// the TOML file `file` over the defaults.
    ///
    /// # Errors
    /// When the file cannot be read or holds an unknown key or a bad value, or a value is
    /// out of range ([`ServerConfig::validate`]).
    pub fn load(matches: &ArgMatches, file: Option<&Path>) -> anyhow::Result<Self> {
        let parsed = Self::from_arg_matches(matches)?;
        let mut given = serde_json::to_value(&parsed)?;
        if let Some(map) = given.as_object_mut() {
            map.retain(|key, _| {
                matches.ids().any(|id| id.as_str() == key)
                    && matches!(
                        matches.value_source(key),
                        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                    )
            });
        }
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            anyhow::ensure!(
                file.is_file(),
                "config file {} does not exist",
                file.display()
            );
            figment = figment.merge(Toml::file(file));
        }
        let config: Self = figment
            .merge(Serialized::defaults(given))
            .extract()
            .with_context(|| match file {
                Some(f) => format!("config file {} is invalid", f.display()),
                None => "the settings are invalid".to_owned(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The TLS files these settings name, if TLS is on.
    ///
    /// # Errors
    /// When only one of the certificate and the key is given, or a client CA without them.
    pub fn tls_files(&self) -> anyhow::Result<Option<mq_transport::ServerTlsFiles>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(mq_transport::ServerTlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            })),
            (None, None) if self.tls_client_ca.is_none() => Ok(None),
            _ => anyhow::bail!(
                "TLS needs both tls_cert and tls_key (and tls_client_ca only with them)"
            ),
        }
    }

    /// The bound on messages held in memory: `max_memory` (0 for none), or by default half
    /// of the memory this process may use.
    pub fn memory_bound(&self) -> Option<u64> {
        match self.max_memory {
            Some(0) => None,
            Some(bytes) => Some(bytes),
            None => crate::machine::usable_memory().map(|bytes| bytes / 2),
        }
    }

    /// The HTTP endpoint's address and whether it was asked for explicitly; `None` when it
    /// is `off`.
    pub fn http_addr(&self) -> Option<(String, bool)> {
        match self.http.as_deref() {
            Some("off") => None,
            Some(addr) => Some((addr.to_owned(), true)),
            None => Some((DEFAULT_HTTP.to_owned(), false)),
        }
    }

    /// The file storage options these settings ask for.
    pub fn file_options(&self) -> mq_core::FileOptions {
        mq_core::FileOptions {
            fsync: self.fsync,
            segment_bytes: self.segment_bytes,
            resident_bytes: self.resident_bytes,
            min_free_disk: self.min_free_disk,
            sync_log: self.sync_log.clone(),
            ..mq_core::FileOptions::default()
        }
    }

    /// Reads `auth_token_file` into `auth_token`.
    ///
    /// # Errors
    /// When the file cannot be read or its first line is empty.
    pub fn read_token_file(&mut self) -> anyhow::Result<()> {
        let Some(path) = &self.auth_token_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        let token = text.lines().next().unwrap_or_default().trim();
        anyhow::ensure!(
            !token.is_empty(),
            "the token file {} is empty: put the token on its first line",
            path.display()
        );
        self.auth_token = Some(token.to_owned());
        Ok(())
    }

    /// How clients authenticate, for the start-up log; refuses a server without
    /// credentials on a non-loopback address unless `allow_anonymous`.
    ///
    /// # Errors
    /// When anonymous clients would be served beyond this machine without
    /// `--allow-anonymous`.
    pub fn auth_mode(&self) -> anyhow::Result<&'static str> {
        if !self.users.is_empty() {
            return Ok("users");
        }
        if self.auth_token.is_some() {
            return Ok("token");
        }
        if self.tls_client_ca.is_some() {
            return Ok("client certificates (mutual TLS)");
        }
        let is_loopback = |addr: &str| {
            addr.parse::<SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback())
        };
        let loopback = is_loopback(&self.listen)
            && self.http_addr().is_none_or(|(addr, _)| is_loopback(&addr));
        match (loopback, self.allow_anonymous) {
            (true, _) => Ok("anonymous (loopback only)"),
            (false, true) => Ok("anonymous (allowed by --allow-anonymous)"),
            (false, false) => anyhow::bail!(
                "refusing to serve {} without credentials: set --auth-token, \
                 --auth-token-file, [[users]] or --tls-client-ca, or pass --allow-anonymous to serve anyone who can reach it",
                self.listen
            ),
        }
    }

    /// Checks values that can be wrong independently of the machine.
    ///
    /// # Errors
    /// When the listen address does not parse or a limit is out of range.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen.parse::<SocketAddr>().map_err(|e| {
            anyhow::anyhow!(
                "listen address {:?} is invalid ({e}): use IP:PORT like 127.0.0.1:9800",
                self.listen
            )
        })?;
        anyhow::ensure!(
            self.max_connections > 0,
            "max_connections must be at least 1"
        );
        anyhow::ensure!(
            self.max_subscriptions > 0 && self.max_prefetch > 0,
            "max_subscriptions and max_prefetch must be at least 1"
        );
        anyhow::ensure!(
            (1024..=u32::MAX as usize).contains(&self.max_frame),
            "max_frame must be between 1024 and 4294967295 bytes"
        );
        anyhow::ensure!(
            self.segment_bytes >= 4096,
            "segment_bytes must be at least 4096"
        );
        anyhow::ensure!(
            !self.stall_timeout.is_zero(),
            "stall_timeout must be more than 0 (it is how long a socket may take nothing)"
        );
        Ok(())
    }
}

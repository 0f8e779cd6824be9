//! [`ServerConfig`]: everything `mq-server` can be told, with SPEC §5's defaults, and the
//! TOML file format of `--config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use mq_core::FsyncPolicy;
use mq_transport::DEFAULT_MAX_FRAME;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9800";

/// Which storage holds the topics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StorageKind {
    /// Nothing touches disk; everything is gone at exit.
    Memory,
    /// A segmented log per topic under the data dir (the default).
    #[default]
    File,
}

/// The server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: String,
    /// Storage of topics.
    pub storage: StorageKind,
    /// Directory of the file storage.
    pub data_dir: PathBuf,
    /// Fsync policy of the file storage.
    pub fsync: FsyncPolicy,
    /// Size at which the file storage rolls a topic's segment.
    pub segment_bytes: u64,
    /// Bytes of messages each topic keeps in memory with the file storage.
    pub resident_bytes: u64,
    /// Free bytes the file storage keeps on its disk (publishes are refused below); `None`:
    /// 1 GiB, or 5% of the filesystem when smaller; 0: no floor.
    pub min_free_disk: Option<u64>,
    /// When set, a connection's handshake must carry this token.
    pub auth_token: Option<String>,
    /// Connections served at once; more are refused with `server_busy`.
    pub max_connections: usize,
    /// Largest frame accepted or sent, in bytes.
    pub max_frame: usize,
    /// Time a new connection has to complete its handshake.
    pub handshake_timeout: Duration,
    /// A connection with no subscription that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// How often retention, ack timeouts and delayed nacks are processed.
    pub tick_interval: Duration,
    /// How long shutdown waits for sessions to finish before closing them anyway.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            storage: StorageKind::File,
            data_dir: PathBuf::from("./mq-data"),
            fsync: FsyncPolicy::Interval,
            segment_bytes: mq_core::DEFAULT_SEGMENT_BYTES,
            resident_bytes: mq_core::DEFAULT_RESIDENT_BYTES,
            min_free_disk: None,
            auth_token: None,
            max_connections: 10_000,
            max_frame: DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            tick_interval: Duration::from_millis(100),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The `--config` file: every key optional; flags and environment variables win over it.
///
/// ```toml
/// listen = "127.0.0.1:9800"
/// storage = "memory"
/// data_dir = "./mq-data"
/// fsync = "interval"
/// segment_bytes = 67108864
/// resident_bytes = 67108864
/// min_free_disk = 1073741824
/// auth_token = "secret"
/// max_connections = 10000
/// max_frame = 16777216
/// handshake_timeout = "10s"
/// idle_timeout = "5m"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// See [`ServerConfig::listen`].
    pub listen: Option<String>,
    /// See [`ServerConfig::storage`].
    pub storage: Option<StorageKind>,
    /// See [`ServerConfig::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`ServerConfig::fsync`].
    pub fsync: Option<FsyncPolicy>,
    /// See [`ServerConfig::segment_bytes`].
    pub segment_bytes: Option<u64>,
    /// See [`ServerConfig::resident_bytes`].
    pub resident_bytes: Option<u64>,
    /// See [`ServerConfig::min_free_disk`].
    pub min_free_disk: Option<u64>,
    /// See [`ServerConfig::auth_token`].
    pub auth_token: Option<String>,
    /// See [`ServerConfig::max_connections`].
    pub max_connections: Option<usize>,
    /// See [`ServerConfig::max_frame`].
    pub max_frame: Option<usize>,
    /// See [`ServerConfig::handshake_timeout`], like `"10s"`.
    #[serde(default, with = "humantime_serde_opt")]
    pub handshake_timeout: Option<Duration>,
    /// See [`ServerConfig::idle_timeout`], like `"5m"`.
    #[serde(default, with = "humantime_serde_opt")]
    pub idle_timeout: Option<Duration>,
}

impl ConfigFile {
    /// Reads and parses a TOML config file.
    ///
    /// # Errors
    /// When the file cannot be read or is not valid TOML of this shape.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {} is invalid", path.display()))
    }
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => humantime::parse_duration(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl ServerConfig {
    /// The file storage options these settings ask for.
    pub fn file_options(&self) -> mq_core::FileOptions {
        mq_core::FileOptions {
            fsync: self.fsync,
            segment_bytes: self.segment_bytes,
            resident_bytes: self.resident_bytes,
            min_free_disk: self.min_free_disk,
            ..mq_core::FileOptions::default()
        }
    }

    /// Checks values that can be wrong independently of the machine.
    ///
    /// # Errors
    /// When the listen address does not parse or a limit is zero.
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
            self.max_frame >= 1024,
            "max_frame must be at least 1024 bytes"
        );
        anyhow::ensure!(
            self.segment_bytes >= 4096,
            "segment_bytes must be at least 4096"
        );
        Ok(())
    }
}

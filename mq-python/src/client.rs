//! `mq.Client`: a broker over TCP or in this process, its producers and consumers, and the
//! admin calls (topics, groups, stats) answered as dicts.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use mq_client::{
    Broker, ClientConfig, ClientError, ClientTls, FileOptions, FileStorage, FsyncPolicy, GroupName,
    ProducerConfig, Reconnect, StartPosition, TopicName,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::consumer::{Consumer, SubscribeArgs, position};
use crate::dicts::{Plain, topic_config};
use crate::errors::{bad_value, invalid_name};
use crate::producer::Producer;
use crate::runtime::{complete, handle};

/// A handle on a broker: `Client.connect(addr)` for an `mq-server`, `Client.embedded()` for
/// a broker inside this process. Both have the same methods. Safe to share between threads;
/// `close()` (or leaving a `with` block) releases the connection.
#[pyclass(frozen, module = "mq")]
pub(crate) struct Client {
    /// `None` once closed.
    inner: RwLock<Option<mq_client::Client>>,
    /// The broker of an embedded client (`None` once closed), and its data dir.
    embedded: Option<(Mutex<Option<Broker>>, Option<PathBuf>)>,
}

/// How long `close()` waits for the tasks of an embedded broker's last handles to end and
/// its data dir to be unlocked.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// A topic name, or `mq.InvalidName`.
pub(crate) fn topic_name(py: Python<'_>, name: &str) -> PyResult<TopicName> {
    TopicName::new(name).map_err(|e| invalid_name(py, &e))
}

/// A group name, or `mq.InvalidName`.
pub(crate) fn group_name(py: Python<'_>, name: &str) -> PyResult<GroupName> {
    GroupName::new(name).map_err(|e| invalid_name(py, &e))
}

/// A duration from seconds.
pub(crate) fn seconds(what: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        bad_value(format!(
            "{what} must be a non-negative number of seconds, not {secs}"
        ))
    })
}

impl Client {
    fn new(inner: mq_client::Client, embedded: Option<(Broker, Option<PathBuf>)>) -> Self {
        Self {
            inner: RwLock::new(Some(inner)),
            embedded: embedded.map(|(broker, dir)| (Mutex::new(Some(broker)), dir)),
        }
    }

    /// The SDK's client, or `mq.ConnectionClosed` once `close()` was called.
    fn client(&self, py: Python<'_>) -> PyResult<mq_client::Client> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                crate::errors::to_py(
                    py,
                    &ClientError::ConnectionClosed {
                        reason: Some("this client was closed".to_owned()),
                    },
                )
            })
    }

    /// The SDK's client with a topic and a group name checked: what the group calls need.
    fn on_group(
        &self,
        py: Python<'_>,
        topic: &str,
        group: &str,
    ) -> PyResult<(mq_client::Client, TopicName, GroupName)> {
        Ok((
            self.client(py)?,
            topic_name(py, topic)?,
            group_name(py, group)?,
        ))
    }

    fn connect_config(options: ConnectOptions) -> PyResult<ClientConfig> {
        let ConnectOptions {
            token,
            tls_ca,
            tls_cert,
            tls_key,
            tls_server_name,
            name,
            reconnect,
            request_timeout,
        } = options;
        let mut config = ClientConfig {
            token,
            request_timeout: seconds("request_timeout", request_timeout)?,
            reconnect: Reconnect {
                enabled: reconnect,
                ..Reconnect::default()
            },
            ..ClientConfig::default()
        };
        if let Some(name) = name {
            config.name = name;
        }
        let identity = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(bad_value(
                    "tls_cert and tls_key go together: give both or neither",
                ));
            }
        };
        if tls_ca.is_some() || identity.is_some() || tls_server_name.is_some() {
            config.tls = Some(ClientTls {
                ca: tls_ca,
                identity,
                server_name: tls_server_name,
            });
        }
        Ok(config)
    }
}

/// The settings of `Client.connect` after the address.
struct ConnectOptions {
    token: Option<String>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_server_name: Option<String>,
    name: Option<String>,
    reconnect: bool,
    request_timeout: f64,
}

#[pymethods]
impl Client {
    /// Connects to the `mq-server` at `addr` (like `"127.0.0.1:9800"`). `token` for a server
    /// that requires one; TLS with `tls_ca` (the CA, PEM, the server's certificate must
    /// chain to), `tls_cert` and `tls_key` (this client's certificate, for mutual TLS) and
    /// `tls_server_name` (the name to check instead of the address's host); `reconnect`
    /// rides out a server restart.
    #[staticmethod]
    #[pyo3(
        signature = (addr, token = None, tls_ca = None, *, tls_cert = None, tls_key = None, tls_server_name = None, name = None, reconnect = true, request_timeout = 30.0, _aio = false),
        text_signature = "(addr, token=None, tls_ca=None, *, tls_cert=None, tls_key=None, tls_server_name=None, name=None, reconnect=True, request_timeout=30.0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        py: Python<'_>,
        addr: String,
        token: Option<String>,
        tls_ca: Option<PathBuf>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
        tls_server_name: Option<String>,
        name: Option<String>,
        reconnect: bool,
        request_timeout: f64,
        _aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let config = Self::connect_config(ConnectOptions {
            token,
            tls_ca,
            tls_cert,
            tls_key,
            tls_server_name,
            name,
            reconnect,
            request_timeout,
        })?;
        complete(py, _aio, async move {
            mq_client::Client::connect_with(&addr, config)
                .await
                .map(|inner| Client::new(inner, None))
        })
    }

    /// A broker inside this process: memory storage, or file storage in `data_dir` (made if
    /// missing) with `fsync` (`"interval"`, `"always"` or `"never"`). It runs its background
    /// work itself: retention, ack timeouts and redelivery, the fsync interval.
    #[staticmethod]
    #[pyo3(signature = (data_dir = None, *, fsync = "interval"))]
    fn embedded(py: Python<'_>, data_dir: Option<PathBuf>, fsync: &str) -> PyResult<Self> {
        let policy: FsyncPolicy = fsync
            .parse()
            .map_err(|e| bad_value(format!("fsync: {e}")))?;
        let broker = match &data_dir {
            None => Broker::new(),
            Some(dir) => {
                let opened = py.detach(|| {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                    let storage = FileStorage::open(
                        dir,
                        FileOptions {
                            fsync: policy,
                            ..FileOptions::default()
                        },
                    )
                    .map_err(|e| e.to_string())?;
                    Broker::builder()
                        .storage(storage)
                        .build()
                        .map_err(|e| e.to_string())
                });
                opened.map_err(|message| {
                    crate::errors::storage(
                        py,
                        format!("cannot open the embedded broker: {message}"),
                    )
                })?
            }
        };
        let _entered = handle()?.enter();
        Ok(Self::new(
            mq_client::Client::embedded(broker.clone()),
            Some((broker, data_dir)),
        ))
    }

    /// A producer for `topic`. `batch_size` (messages) and `linger` (seconds to wait for a
    /// batch to fill) tune batching; `max_in_flight` bounds the batches on their way;
    /// `idempotent` makes resends after a reconnect land once.
    #[pyo3(signature = (topic, *, batch_size = None, linger = None, max_in_flight = None, idempotent = None))]
    fn producer(
        &self,
        py: Python<'_>,
        topic: &str,
        batch_size: Option<usize>,
        linger: Option<f64>,
        max_in_flight: Option<usize>,
        idempotent: Option<bool>,
    ) -> PyResult<Producer> {
        let topic = topic_name(py, topic)?;
        let mut config = ProducerConfig::default();
        if let Some(n) = batch_size {
            config.batch_size = n.max(1);
        }
        if let Some(secs) = linger {
            config.linger = seconds("linger", secs)?;
        }
        if let Some(n) = max_in_flight {
            config.max_in_flight = n.max(1);
        }
        if let Some(on) = idempotent {
            config.idempotent = on;
        }
        let _entered = handle()?.enter();
        Ok(Producer::new(self.client(py)?.producer_with(topic, config)))
    }

    /// A consumer of `topic` in `group` (`None`: a group of its own that ends with it).
    /// `ack` is `"manual"` (ack each delivery) or `"auto"`; `prefetch` bounds the deliveries
    /// not yet acked; `start` says where a new group begins (`"earliest"`, `"latest"` or an
    /// offset; an existing group carries on where it is); `exclusive` refuses a second
    /// consumer in the group (it gets `mq.GroupBusy`).
    #[pyo3(signature = (topic, group = None, *, ack = "manual", prefetch = 1000, start = None, exclusive = false, create_topic = true, _aio = false), text_signature = "($self, topic, group=None, *, ack='manual', prefetch=1000, start='earliest', exclusive=False, create_topic=True)")]
    #[allow(clippy::too_many_arguments)]
    fn consumer(
        &self,
        py: Python<'_>,
        topic: &str,
        group: Option<&str>,
        ack: &str,
        prefetch: u32,
        start: Option<&Bound<'_, PyAny>>,
        exclusive: bool,
        create_topic: bool,
        _aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let args = SubscribeArgs::new(
            py,
            topic,
            group,
            ack,
            prefetch,
            start,
            exclusive,
            create_topic,
        )?;
        complete(py, _aio, Consumer::subscribe(self.client(py)?, args))
    }

    /// Creates `topic`. Settings (all optional): `max_messages`, `max_bytes`, `overflow`
    /// (`"reject"` or `"drop-oldest"`), `max_age` and `retain_consumed` (seconds), and the
    /// defaults of its groups: `ack`, `ack_timeout` (seconds), `max_deliveries` (then the
    /// message goes to `<topic>.dlq`), `prefetch`.
    #[pyo3(signature = (topic, *, _aio = false, **config), text_signature = "($self, topic, **config)")]
    fn create_topic(
        &self,
        py: Python<'_>,
        topic: &str,
        _aio: bool,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let (topic, config) = (topic_name(py, topic)?, topic_config(py, config)?);
        let client = self.client(py)?;
        complete(py, _aio, async move {
            client.create_topic(&topic, config).await
        })
    }

    /// The names of the topics.
    #[pyo3(signature = (*, _aio = false), text_signature = "($self)")]
    fn topics(&self, py: Python<'_>, _aio: bool) -> PyResult<Py<PyAny>> {
        let client = self.client(py)?;
        complete(py, _aio, async move {
            Ok(client
                .topics()
                .await?
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect::<Vec<_>>())
        })
    }

    /// A topic's configuration and stats, with its groups, as a dict.
    #[pyo3(signature = (topic, *, _aio = false), text_signature = "($self, topic)")]
    fn describe_topic(&self, py: Python<'_>, topic: &str, _aio: bool) -> PyResult<Py<PyAny>> {
        let (topic, client) = (topic_name(py, topic)?, self.client(py)?);
        complete(py, _aio, async move {
            Plain::of(&client.describe(&topic).await?)
        })
    }

    /// Deletes a topic, its messages and its groups.
    #[pyo3(signature = (topic, *, _aio = false), text_signature = "($self, topic)")]
    fn delete_topic(&self, py: Python<'_>, topic: &str, _aio: bool) -> PyResult<Py<PyAny>> {
        let (topic, client) = (topic_name(py, topic)?, self.client(py)?);
        complete(py, _aio, async move { client.delete_topic(&topic).await })
    }

    /// Deletes every message of a topic, keeping the topic and its groups.
    #[pyo3(signature = (topic, *, _aio = false), text_signature = "($self, topic)")]
    fn purge_topic(&self, py: Python<'_>, topic: &str, _aio: bool) -> PyResult<Py<PyAny>> {
        let (topic, client) = (topic_name(py, topic)?, self.client(py)?);
        complete(py, _aio, async move { client.purge_topic(&topic).await })
    }

    /// The stats of a topic's groups, a dict each.
    #[pyo3(signature = (topic, *, _aio = false), text_signature = "($self, topic)")]
    fn groups(&self, py: Python<'_>, topic: &str, _aio: bool) -> PyResult<Py<PyAny>> {
        let (topic, client) = (topic_name(py, topic)?, self.client(py)?);
        complete(
            py,
            _aio,
            async move { Plain::of(&client.groups(&topic).await?) },
        )
    }

    /// A group in detail (its consumers, what they hold, why it may be stuck), as a dict.
    #[pyo3(signature = (topic, group, *, _aio = false), text_signature = "($self, topic, group)")]
    fn describe_group(
        &self,
        py: Python<'_>,
        topic: &str,
        group: &str,
        _aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let (client, topic, group) = self.on_group(py, topic, group)?;
        complete(py, _aio, async move {
            Plain::of(&client.describe_group(&topic, &group).await?)
        })
    }

    /// Creates a durable group without attaching a consumer, reading from `start`
    /// (`"earliest"`, `"latest"` or an offset).
    #[pyo3(signature = (topic, group, *, start = None, _aio = false), text_signature = "($self, topic, group, *, start='earliest')")]
    fn create_group(
        &self,
        py: Python<'_>,
        topic: &str,
        group: &str,
        start: Option<&Bound<'_, PyAny>>,
        _aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let (client, topic, group) = self.on_group(py, topic, group)?;
        let start = start
            .map(position)
            .transpose()?
            .unwrap_or(StartPosition::Earliest);
        complete(py, _aio, async move {
            client.create_group(&topic, &group, start).await
        })
    }

    /// Moves a group to `to` (`"earliest"`, `"latest"` or an offset): its deliveries in
    /// flight go back, and its consumers go on from there.
    #[pyo3(signature = (topic, group, to, *, _aio = false), text_signature = "($self, topic, group, to)")]
    fn seek_group(
        &self,
        py: Python<'_>,
        topic: &str,
        group: &str,
        to: &Bound<'_, PyAny>,
        _aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let (client, topic, group) = self.on_group(py, topic, group)?;
        let to = position(to)?;
        complete(py, _aio, async move {
            client.seek_group(&topic, &group, to).await
        })
    }

    /// Deletes a group that has no consumer.
    #[pyo3(signature = (topic, group, *, _aio = false), text_signature = "($self, topic, group)")]
    fn delete_group(
        &self,
        py: Python<'_>,
        topic: &str,
        group: &str,
        _aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let (client, topic, group) = self.on_group(py, topic, group)?;
        complete(py, _aio, async move {
            client.delete_group(&topic, &group).await
        })
    }

    /// The broker's stats (or, with `topic`, one topic's), as a dict.
    #[pyo3(signature = (topic = None, *, _aio = false), text_signature = "($self, topic=None)")]
    fn stats(&self, py: Python<'_>, topic: Option<&str>, _aio: bool) -> PyResult<Py<PyAny>> {
        let topic = topic.map(|t| topic_name(py, t)).transpose()?;
        let client = self.client(py)?;
        complete(py, _aio, async move {
            match topic {
                Some(topic) => Plain::of(&client.topic_stats(&topic).await?),
                None => Plain::of(&client.stats().await?),
            }
        })
    }

    /// Closes the connection. An embedded broker writes what it holds to disk and, once
    /// the producers and consumers made from it are gone too, unlocks its data dir (this
    /// waits up to 2 s for their last tasks). Everything made from this client fails from
    /// then on; `flush()` producers first. Closing twice does nothing.
    #[pyo3(signature = (*, _aio = false), text_signature = "($self)")]
    fn close(&self, py: Python<'_>, _aio: bool) -> PyResult<Py<PyAny>> {
        let client = self
            .inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let (broker, dir) = match &self.embedded {
            Some((broker, dir)) => (
                broker.lock().unwrap_or_else(PoisonError::into_inner).take(),
                dir.clone(),
            ),
            None => (None, None),
        };
        complete(py, _aio, async move {
            if let Some(client) = client {
                client.close().await;
            }
            let Some(broker) = broker else {
                return Ok(());
            };
            tokio::task::spawn_blocking(move || {
                let flushed = broker.flush();
                drop(broker);
                if let Some(dir) = dir {
                    wait_unlocked(&dir);
                }
                flushed
            })
            .await
            .map_err(|e| ClientError::Protocol {
                message: format!("closing the embedded broker failed: {e}"),
            })?
            .map_err(ClientError::from)
        })
    }

    /// Whether the connection is closed (never, for an embedded broker).
    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(mq_client::Client::is_closed)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py, false).map(|_| false)
    }

    fn __repr__(&self) -> String {
        let closed = if self.closed() { " closed" } else { "" };
        match self.embedded {
            Some(_) => format!("<mq.Client embedded{closed}>"),
            None => format!("<mq.Client{closed}>"),
        }
    }
}

/// Waits (at most [`RELEASE_WAIT`]) until nothing in this process holds the lock of the data
/// dir `dir`: the tasks of an embedded broker's last handles end just after they are dropped.
fn wait_unlocked(dir: &Path) {
    let deadline = Instant::now() + RELEASE_WAIT;
    let Ok(lock) = std::fs::File::open(dir.join("LOCK")) else {
        return;
    };
    while Instant::now() < deadline {
        if lock.try_lock().is_ok() {
            let _ = lock.unlock();
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

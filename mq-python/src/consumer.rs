//! `mq.Consumer`: a consumer attached to a group, read with `poll`, iteration or `run`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mq_client::{AckMode, ClientError, StartPosition, Subscription, TopicName};
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};
use tokio::sync::{Mutex, Notify};

use crate::client::{group_name, seconds, topic_name};
use crate::delivery::Delivery;
use crate::errors::{bad_value, to_py, wrong_type};
use crate::runtime::{complete, wait_for};

/// What `Client.consumer` asked for.
pub(crate) struct SubscribeArgs {
    sub: Subscription,
}

impl SubscribeArgs {
    /// Checks the arguments of `Client.consumer`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        py: Python<'_>,
        topic: &str,
        group: Option<&str>,
        ack: &str,
        prefetch: u32,
        start: Option<&Bound<'_, PyAny>>,
        exclusive: bool,
        create_topic: bool,
    ) -> PyResult<Self> {
        let mut sub = Subscription::new(topic_name(py, topic)?)
            .ack(match ack {
                "manual" => AckMode::Manual,
                "auto" => AckMode::Auto,
                other => {
                    return Err(bad_value(format!(
                        "ack must be \"manual\" or \"auto\", not {other:?}"
                    )));
                }
            })
            .prefetch(prefetch.max(1))
            .exclusive(exclusive)
            .create_topic(create_topic)
            .start(start_position(start)?);
        if let Some(group) = group {
            sub = sub.group(group_name(py, group)?);
        }
        Ok(Self { sub })
    }
}

/// Where a new group starts: `"earliest"` (also an existing group's default: it carries on
/// where it is), `"latest"`, or an offset.
fn start_position(start: Option<&Bound<'_, PyAny>>) -> PyResult<StartPosition> {
    match start.filter(|s| !s.is_none()).map(position).transpose()? {
        None | Some(StartPosition::Earliest) => Ok(StartPosition::Resume),
        Some(other) => Ok(other),
    }
}

/// A position in a topic: `"earliest"`, `"latest"` or an offset.
pub(crate) fn position(value: &Bound<'_, PyAny>) -> PyResult<StartPosition> {
    if value.is_instance_of::<PyInt>() {
        return Ok(StartPosition::Offset(mq_client::Offset(value.extract()?)));
    }
    match value.extract::<String>().as_deref() {
        Ok("earliest" | "resume") => Ok(StartPosition::Earliest),
        Ok("latest") => Ok(StartPosition::Latest),
        Ok(other) => Err(bad_value(format!(
            "a position is \"earliest\", \"latest\" or an offset, not {other:?}"
        ))),
        Err(_) => Err(wrong_type(
            "a position",
            "\"earliest\", \"latest\" or an int",
            value,
        )),
    }
}

/// A consumer attached to one group of one topic. Safe to share between threads (they
/// take turns); `close()` or leaving a `with` block detaches it, and deliveries it did not
/// ack go back to the group.
#[pyclass(frozen, module = "mq")]
pub(crate) struct Consumer {
    state: Arc<Mutex<Option<mq_client::Consumer>>>,
    /// Set by `close()`: waits in progress end, later calls find the consumer closed.
    closing: Arc<Closing>,
    topic: TopicName,
    group: String,
}

/// The close signal of a consumer.
#[derive(Default)]
struct Closing {
    closed: AtomicBool,
    notify: Notify,
}

impl Consumer {
    /// Attaches a consumer. A start other than `"earliest"` applies to a group made now;
    /// an existing group carries on where it is.
    pub(crate) async fn subscribe(
        client: mq_client::Client,
        args: SubscribeArgs,
    ) -> Result<Self, ClientError> {
        let SubscribeArgs { sub } = args;
        let resume = Subscription {
            start: StartPosition::Resume,
            ..sub.clone()
        };
        let consumer = match client.subscribe(sub).await {
            Err(ClientError::Server { code, .. }) if code.name() == "start_conflict" => {
                client.subscribe(resume).await?
            }
            other => other?,
        };
        Ok(Self {
            topic: consumer.topic().clone(),
            group: consumer.group().as_str().to_owned(),
            state: Arc::new(Mutex::new(Some(consumer))),
            closing: Arc::default(),
        })
    }

    /// The next delivery within `timeout` (`None`: no limit); `Ok(None)` when none came or
    /// the consumer was closed meanwhile.
    fn next(
        &self,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Option<Delivery>, ClientError>> + Send + 'static {
        let (state, closing, topic) = (
            Arc::clone(&self.state),
            Arc::clone(&self.closing),
            self.topic.clone(),
        );
        async move {
            let closed = closing.notify.notified();
            if closing.closed.load(Ordering::Acquire) {
                return Ok(None);
            }
            let receive = async {
                let mut slot = state.lock().await;
                let Some(consumer) = slot.as_mut() else {
                    return Ok(None);
                };
                consumer.recv().await.map(Some)
            };
            let received = tokio::select! {
                biased;
                () = closed => return Ok(None),
                received = async {
                    match timeout {
                        Some(t) => tokio::time::timeout(t, receive).await.unwrap_or(Ok(None)),
                        None => receive.await,
                    }
                } => received,
            };
            Ok(received?.map(|d| Delivery::new(d, topic)))
        }
    }

    /// A delivery already buffered, taken without waiting or releasing the GIL: `None`
    /// when there is none or another thread holds the consumer.
    fn ready(&self, py: Python<'_>) -> PyResult<Option<Delivery>> {
        let Ok(mut slot) = self.state.try_lock() else {
            return Ok(None);
        };
        let Some(consumer) = slot.as_mut() else {
            return Ok(None);
        };
        match consumer.poll() {
            Ok(d) => Ok(d.map(|d| Delivery::new(d, self.topic.clone()))),
            Err(e) => Err(to_py(py, &e)),
        }
    }

    /// The next delivery, waiting at most `timeout` (`None`: until one comes).
    fn next_blocking(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
    ) -> PyResult<Option<Delivery>> {
        if let Some(d) = self.ready(py)? {
            return Ok(Some(d));
        }
        if timeout.is_some_and(|t| t.is_zero()) {
            return Ok(None);
        }
        wait_for(py, self.next(timeout))
    }

    fn is_closed(&self) -> bool {
        self.closing.closed.load(Ordering::Acquire)
    }
}

#[pymethods]
impl Consumer {
    /// The next delivery, or `None` when none arrives within `timeout` seconds (0, the
    /// default: `None` at once when nothing is there; `None`: wait as long as it takes).
    #[pyo3(signature = (timeout = 0.0, *, _aio = false), text_signature = "($self, timeout=0.0)")]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>, _aio: bool) -> PyResult<Py<PyAny>> {
        let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
        if _aio {
            return complete(py, true, self.next(timeout));
        }
        self.next_blocking(py, timeout)?.into_py_any(py)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Waits for the next delivery; the iteration ends when the consumer is closed.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Delivery>> {
        if self.is_closed() {
            return Ok(None);
        }
        self.next_blocking(py, None)
    }

    /// Calls `handler(delivery)` on each delivery: acks it when the handler returns, nacks
    /// it (redelivery, then the dead-letter topic) when it raises an `Exception`. Stops after
    /// `max_messages`, after `idle_timeout` seconds without a delivery, when the consumer is
    /// closed, or on Ctrl-C; returns how many deliveries it handled. Queued acks are flushed
    /// before it returns.
    #[pyo3(signature = (handler, *, max_messages = None, idle_timeout = None))]
    fn run(
        &self,
        py: Python<'_>,
        handler: &Bound<'_, PyAny>,
        max_messages: Option<u64>,
        idle_timeout: Option<f64>,
    ) -> PyResult<u64> {
        let idle = idle_timeout
            .map(|t| seconds("idle_timeout", t))
            .transpose()?;
        let mut handled = 0u64;
        while max_messages.is_none_or(|max| handled < max) && !self.is_closed() {
            let Some(delivery) = self.next_blocking(py, idle)? else {
                break;
            };
            let delivery = Bound::new(py, delivery)?;
            match handler.call1((&delivery,)) {
                Ok(_) => delivery.get().ack(py, false).map(drop)?,
                Err(e) if e.is_instance_of::<PyException>(py) => {
                    warn_handler_failed(py, &delivery, &e);
                    delivery.get().nack(py, None, false).map(drop)?;
                }
                Err(e) => return Err(e),
            }
            handled += 1;
        }
        if !self.is_closed() {
            self.flush_acks(py, false)?;
        }
        Ok(handled)
    }

    /// Waits until every ack queued so far is answered; raises the first that failed.
    #[pyo3(signature = (*, _aio = false), text_signature = "($self)")]
    fn flush_acks(&self, py: Python<'_>, _aio: bool) -> PyResult<Py<PyAny>> {
        let state = Arc::clone(&self.state);
        complete(py, _aio, async move {
            match state.lock().await.as_ref() {
                Some(consumer) => consumer.flush_acks().await,
                None => Ok(()),
            }
        })
    }

    /// Detaches from the group (after sending queued acks); deliveries not acked go back to
    /// it. A wait in another thread ends with `None`. Closing twice does nothing.
    #[pyo3(signature = (*, _aio = false), text_signature = "($self)")]
    fn close(&self, py: Python<'_>, _aio: bool) -> PyResult<Py<PyAny>> {
        self.closing.closed.store(true, Ordering::Release);
        self.closing.notify.notify_waiters();
        let state = Arc::clone(&self.state);
        complete(py, _aio, async move {
            match state.lock().await.take() {
                Some(consumer) => consumer.unsubscribe().await,
                None => Ok(()),
            }
        })
    }

    /// The topic.
    #[getter]
    fn topic(&self) -> &str {
        self.topic.as_str()
    }

    /// The group.
    #[getter]
    fn group(&self) -> &str {
        &self.group
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.is_closed()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py, false).map(|_| false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<mq.Consumer topic={:?} group={:?}{}>",
            self.topic.as_str(),
            self.group,
            if self.is_closed() { " closed" } else { "" }
        )
    }
}

/// Logs (on the `mq` logger, level INFO) that a handler raised and its delivery was nacked.
fn warn_handler_failed(py: Python<'_>, delivery: &Bound<'_, Delivery>, e: &PyErr) {
    let logged = py.import("logging").and_then(|logging| {
        let logger = logging.call_method1("getLogger", ("mq",))?;
        logger.call_method1(
            "warning",
            (
                "handler raised %r on offset %d of %s: nacked",
                e.value(py),
                delivery.get().offset(),
                delivery.get().topic(),
            ),
        )
    });
    if let Err(log_failed) = logged {
        log_failed.print(py);
    }
}

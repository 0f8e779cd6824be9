//! `mq.Producer`: sends to one topic, one message or a batch at a time, waiting for the
//! offsets or queueing and flushing.

use mq_client::Offset;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::message::{batch, new_message};
use crate::runtime::complete;

/// Sends messages to one topic. The SDK batches what is sent from every thread and every
/// coroutine into as few requests as the load allows. Leaving a `with` block flushes.
#[pyclass(frozen, module = "mq")]
pub(crate) struct Producer(mq_client::Producer);

impl Producer {
    /// Wraps the SDK's producer.
    pub(crate) fn new(inner: mq_client::Producer) -> Self {
        Self(inner)
    }
}

fn offsets(offsets: Vec<Offset>) -> Vec<u64> {
    offsets.into_iter().map(|o| o.0).collect()
}

#[pymethods]
impl Producer {
    /// Sends one message and waits until the broker has it; returns its offset.
    /// `priority` is 0–255 (higher is delivered first), `key` and the header values are
    /// `bytes` or `str`.
    #[pyo3(signature = (payload, *, priority = 0, key = None, headers = None, _aio = false), text_signature = "($self, payload, *, priority=0, key=None, headers=None)")]
    fn send(
        &self,
        py: Python<'_>,
        payload: &Bound<'_, PyAny>,
        priority: u8,
        key: Option<&Bound<'_, PyAny>>,
        headers: Option<&Bound<'_, PyDict>>,
        _aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let message = new_message(payload, priority, key, headers)?;
        let producer = self.0.clone();
        complete(py, _aio, async move {
            producer.send(message).await.map(|o| o.0)
        })
    }

    /// Sends a batch (each item a `Message`, `bytes` or `str`) all or nothing and waits
    /// until the broker has it; returns the offsets.
    #[pyo3(signature = (messages, *, _aio = false), text_signature = "($self, messages)")]
    fn send_batch(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        _aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let messages = batch(messages)?;
        let producer = self.0.clone();
        complete(py, _aio, async move {
            producer.send_batch(messages).await.map(offsets)
        })
    }

    /// Queues one message (or, given a list, a batch) without waiting for the broker;
    /// `flush()` waits for everything queued and raises the first failure. Waits only
    /// while the producer's queue is full.
    #[pyo3(signature = (payload, *, priority = 0, key = None, headers = None, _aio = false), text_signature = "($self, payload, *, priority=0, key=None, headers=None)")]
    fn send_async(
        &self,
        py: Python<'_>,
        payload: &Bound<'_, PyAny>,
        priority: u8,
        key: Option<&Bound<'_, PyAny>>,
        headers: Option<&Bound<'_, PyDict>>,
        _aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let producer = self.0.clone();
        if payload.is_instance_of::<pyo3::types::PyList>() {
            let messages = batch(payload)?;
            return complete(
                py,
                _aio,
                async move { producer.publish_batch(messages).await },
            );
        }
        let message = new_message(payload, priority, key, headers)?;
        complete(py, _aio, async move { producer.publish(message).await })
    }

    /// Waits until everything queued so far is stored; raises the first failure since the
    /// last flush.
    #[pyo3(signature = (*, _aio = false), text_signature = "($self)")]
    fn flush(&self, py: Python<'_>, _aio: bool) -> PyResult<Py<PyAny>> {
        let producer = self.0.clone();
        complete(py, _aio, async move { producer.flush().await })
    }

    /// The topic.
    #[getter]
    fn topic(&self) -> &str {
        self.0.topic().as_str()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.flush(py, false).map(|_| false)
    }

    fn __repr__(&self) -> String {
        format!("<mq.Producer topic={:?}>", self.topic())
    }
}

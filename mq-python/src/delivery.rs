//! `mq.Delivery`: one message handed to a consumer, with its ack and nack.

use mq_client::TopicName;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::client::seconds;
use crate::runtime::complete;

/// One message delivered to a consumer: `payload`, `key`, `headers`, `priority`, `offset`,
/// `topic`, `timestamp` (seconds since the epoch, as `time.time()`) and `deliveries` (1 the
/// first time). Settle it with `ack()` or `nack()`; one never settled is delivered again
/// after the group's ack timeout, or when its consumer is closed.
#[pyclass(frozen, module = "mq")]
pub(crate) struct Delivery {
    inner: mq_client::Delivery,
    topic: TopicName,
}

impl Delivery {
    /// Wraps a delivery of `topic`.
    pub(crate) fn new(inner: mq_client::Delivery, topic: TopicName) -> Self {
        Self { inner, topic }
    }
}

#[pymethods]
impl Delivery {
    /// The payload.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.payload())
    }

    /// The key, or `None`.
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.inner.key().map(|k| PyBytes::new(py, k))
    }

    /// The headers: a dict of name to `bytes` (the last value, for a name sent twice).
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for h in self.inner.headers() {
            dict.set_item(&h.name, PyBytes::new(py, &h.value))?;
        }
        Ok(dict)
    }

    /// The priority (0–255).
    #[getter]
    fn priority(&self) -> u8 {
        self.inner.priority()
    }

    /// The offset in its topic.
    #[getter]
    pub(crate) fn offset(&self) -> u64 {
        self.inner.offset().0
    }

    /// The topic.
    #[getter]
    pub(crate) fn topic(&self) -> &str {
        self.topic.as_str()
    }

    /// When the broker stored it: seconds since the epoch.
    #[getter]
    fn timestamp(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let ms = self.inner.timestamp().as_millis() as f64;
        ms / 1000.0
    }

    /// How many times it has been delivered to this group, this time included.
    #[getter]
    fn deliveries(&self) -> u32 {
        self.inner.deliveries()
    }

    /// Acks it: returns at once, the SDK sends acks in batches (`Consumer.flush_acks()`
    /// waits for them). An ack that never reaches the broker means the message comes again,
    /// never that it is lost. No-op for an auto-ack consumer.
    #[pyo3(signature = (*, _aio = false), text_signature = "($self)")]
    pub(crate) fn ack(&self, py: Python<'_>, _aio: bool) -> PyResult<Py<PyAny>> {
        let inner = self.inner.clone();
        complete(py, _aio, async move { inner.ack().await })
    }

    /// Acks it and waits until the broker confirms: the group never delivers it again.
    #[pyo3(signature = (*, _aio = false), text_signature = "($self)")]
    fn ack_confirmed(&self, py: Python<'_>, _aio: bool) -> PyResult<Py<PyAny>> {
        let inner = self.inner.clone();
        complete(py, _aio, async move { inner.ack_confirmed().await })
    }

    /// Gives it back: delivered again at once, or after `delay` seconds. After the topic's
    /// `max_deliveries` it goes to the dead-letter topic `<topic>.dlq` instead.
    #[pyo3(signature = (delay = None, *, _aio = false), text_signature = "($self, delay=None)")]
    pub(crate) fn nack(
        &self,
        py: Python<'_>,
        delay: Option<f64>,
        _aio: bool,
    ) -> PyResult<Py<PyAny>> {
        let delay = delay.map(|d| seconds("delay", d)).transpose()?;
        let inner = self.inner.clone();
        complete(py, _aio, async move { inner.nack(delay).await })
    }

    fn __repr__(&self) -> String {
        format!(
            "<mq.Delivery topic={:?} offset={} priority={} <{} bytes>>",
            self.topic.as_str(),
            self.offset(),
            self.priority(),
            self.inner.payload().len()
        )
    }
}

//! Messages from Python: payloads, keys and headers as `bytes` or `str`, and
//! [`Message`] for a message of a batch with more than a payload.

use mq_client::NewMessage;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

use crate::errors::{bad_value, wrong_type};

/// Bytes from `bytes`, `bytearray` or `str` (UTF-8).
pub(crate) fn bytes_of(what: &str, value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    Err(wrong_type(what, "bytes, bytearray or str", value))
}

/// A message built from the arguments of `send`: payload, priority (0–255), key and
/// headers (a dict of str to bytes or str).
pub(crate) fn new_message(
    payload: &Bound<'_, PyAny>,
    priority: u8,
    key: Option<&Bound<'_, PyAny>>,
    headers: Option<&Bound<'_, PyDict>>,
) -> PyResult<NewMessage> {
    let mut message = NewMessage::new(bytes_of("the payload", payload)?).priority(priority);
    if let Some(key) = key.filter(|k| !k.is_none()) {
        message = message.key(bytes_of("the key", key)?);
    }
    if let Some(headers) = headers {
        for (name, value) in headers.iter() {
            let name = name
                .cast::<PyString>()
                .map_err(|_| wrong_type("a header name", "str", &name))?
                .to_cow()?
                .into_owned();
            if name.is_empty() {
                return Err(bad_value("a header name cannot be empty"));
            }
            message = message.header(name, bytes_of("a header value", &value)?);
        }
    }
    Ok(message)
}

/// One message of a batch: `Message(payload, *, priority=0, key=None, headers=None)`.
/// A batch may mix these with plain `bytes` or `str` payloads.
#[pyclass(frozen, module = "mq")]
pub(crate) struct Message(NewMessage);

#[pymethods]
impl Message {
    #[new]
    #[pyo3(signature = (payload, *, priority = 0, key = None, headers = None))]
    fn new(
        payload: &Bound<'_, PyAny>,
        priority: u8,
        key: Option<&Bound<'_, PyAny>>,
        headers: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        new_message(payload, priority, key, headers).map(Self)
    }

    /// The payload.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.payload)
    }

    /// The priority (0–255, higher first).
    #[getter]
    fn priority(&self) -> u8 {
        self.0.priority
    }

    fn __repr__(&self) -> String {
        format!(
            "Message(<{} bytes>, priority={})",
            self.0.payload.len(),
            self.0.priority
        )
    }
}

/// The messages of a batch: each a `Message`, `bytes`, `bytearray` or `str`.
pub(crate) fn batch(messages: &Bound<'_, PyAny>) -> PyResult<Vec<NewMessage>> {
    let mut out = Vec::with_capacity(messages.len().unwrap_or(0));
    for item in messages.try_iter()? {
        let item = item?;
        match item.cast::<Message>() {
            Ok(m) => out.push(m.get().0.clone()),
            Err(_) => out.push(NewMessage::new(bytes_of("a message of the batch", &item)?)),
        }
    }
    Ok(out)
}

//! The SDK's errors as the exceptions of `mq/errors.py`: every one a subclass of
//! `mq.Error`, carrying the message and, when the server sent one, its error code.

use mq_client::ClientError;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The exception for `e`: its class, the message and the server's code.
pub(crate) fn to_py(py: Python<'_>, e: &ClientError) -> PyErr {
    let (class, code) = classify(e);
    raised(py, class, e.to_string(), code)
}

/// An `mq.InvalidName` (a topic or group name the broker would refuse).
pub(crate) fn invalid_name(py: Python<'_>, e: &mq_client::NameError) -> PyErr {
    to_py(
        py,
        &ClientError::InvalidName {
            message: e.to_string(),
        },
    )
}

/// An `mq.InvalidConfig` with `message`.
pub(crate) fn invalid_config(py: Python<'_>, message: String) -> PyErr {
    raised(py, "InvalidConfig", message, Some("invalid_config"))
}

/// An `mq.StorageError` with `message`.
pub(crate) fn storage(py: Python<'_>, message: String) -> PyErr {
    raised(py, "StorageError", message, Some("storage"))
}

/// An exception of the class `class` of `mq.errors` with `message` and `code`.
fn raised(py: Python<'_>, class: &str, message: String, code: Option<&'static str>) -> PyErr {
    match exception_class(py, class) {
        Ok(class) => PyErr::from_type(class, (message, code)),
        Err(missing) => missing,
    }
}

/// A `TypeError` for an argument of the wrong type.
pub(crate) fn wrong_type(what: &str, expected: &str, got: &Bound<'_, PyAny>) -> PyErr {
    let got = got
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    PyTypeError::new_err(format!("{what} must be {expected}, not {got}"))
}

/// A `ValueError` with `message`.
pub(crate) fn bad_value(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// The name of the exception class for `e` in `mq.errors`, and the server's code.
fn classify(e: &ClientError) -> (&'static str, Option<&'static str>) {
    match e {
        ClientError::Tls { .. } => ("TlsError", None),
        ClientError::ConnectionRefused { .. } => ("ConnectionRefused", None),
        ClientError::ConnectionClosed { .. } => ("ConnectionClosed", None),
        ClientError::ReconnectFailed { .. } => ("ReconnectFailed", None),
        ClientError::Redelivered { .. } => ("Redelivered", None),
        ClientError::GroupBusy { .. } => ("GroupBusy", Some("group_busy")),
        ClientError::TopicFull { .. } => ("TopicFull", Some("topic_full")),
        ClientError::InvalidName { .. } => ("InvalidName", Some("invalid_name")),
        ClientError::Protocol { .. } => ("ProtocolError", None),
        ClientError::TooLarge { .. } => ("TooLarge", None),
        ClientError::Timeout { .. } => ("Timeout", None),
        ClientError::NoRuntime { .. } => ("Error", None),
        ClientError::Server { code, .. } => {
            let name = code.name();
            let class = match name {
                "unauthorized" => "Unauthorized",
                "permission_denied" => "PermissionDenied",
                "topic_not_found" | "group_not_found" | "topic_deleted" => "NotFound",
                "topic_exists" | "group_exists" => "AlreadyExists",
                "invalid_config" | "start_conflict" | "ack_mode_mismatch" => "InvalidConfig",
                "frame_too_large" => "TooLarge",
                "not_in_flight" => "NotInFlight",
                "memory_full"
                | "disk_full"
                | "server_busy"
                | "too_many_subscriptions"
                | "too_many_topics"
                | "too_many_groups" => "ResourceExhausted",
                "timeout" => "Timeout",
                "storage" => "StorageError",
                "group_in_use" => "GroupBusy",
                _ => "ServerError",
            };
            (class, Some(name))
        }
    }
}

/// The class `name` of the `mq.errors` module.
fn exception_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || Ok::<_, PyErr>(py.import("mq.errors")?.unbind()))?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

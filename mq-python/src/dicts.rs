//! The admin API's answers as plain Python values (dicts, lists, numbers, strings), and a
//! topic configuration from keyword arguments.
//!
//! Answers go through their JSON form, the one `mq --json` prints, with one change: a
//! duration (`{"secs": s, "nanos": n}`) becomes a float of seconds, as Python's own APIs
//! count time.

use mq_client::{ClientError, TopicConfig};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyString};
use serde::Serialize;
use serde_json::Value;

use crate::errors::{invalid_config, wrong_type};

/// A value on its way to Python as dicts and lists.
pub(crate) struct Plain(Value);

impl Plain {
    /// `value` in its JSON form.
    pub(crate) fn of(value: &impl Serialize) -> Result<Self, ClientError> {
        serde_json::to_value(value)
            .map(Self)
            .map_err(|e| ClientError::Protocol {
                message: format!("cannot convert the answer for Python: {e}"),
            })
    }
}

impl<'py> IntoPyObject<'py> for Plain {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.0)
    }
}

fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            _ => PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            if let Some(seconds) = duration_seconds(map) {
                return Ok(PyFloat::new(py, seconds).into_any());
            }
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, to_python(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// Seconds of a serialized `Duration`.
fn duration_seconds(map: &serde_json::Map<String, Value>) -> Option<f64> {
    if map.len() != 2 {
        return None;
    }
    let secs = map.get("secs")?.as_u64()?;
    let nanos = map.get("nanos")?.as_u64()?;
    #[allow(clippy::cast_precision_loss)]
    Some(secs as f64 + nanos as f64 / 1e9)
}

/// The keyword arguments of `create_topic` and where each goes in a [`TopicConfig`].
const RETENTION_KEYS: [&str; 5] = [
    "retain_consumed",
    "max_age",
    "max_messages",
    "max_bytes",
    "overflow",
];
const GROUP_KEYS: [&str; 4] = ["ack", "ack_timeout", "max_deliveries", "prefetch"];
const DURATION_KEYS: [&str; 3] = ["retain_consumed", "max_age", "ack_timeout"];

/// A topic configuration from `create_topic`'s keyword arguments: durations as seconds
/// (int or float) or strings like `"30s"`, `overflow` as `"reject"` or `"drop-oldest"`.
pub(crate) fn topic_config(
    py: Python<'_>,
    config: Option<&Bound<'_, PyDict>>,
) -> PyResult<TopicConfig> {
    let mut retention = serde_json::Map::new();
    let mut groups = serde_json::Map::new();
    for (key, value) in config.into_iter().flat_map(|d| d.iter()) {
        let key: String = key.extract()?;
        if value.is_none() {
            continue;
        }
        let json = if DURATION_KEYS.contains(&key.as_str()) {
            duration_json(&key, &value)?
        } else if let Ok(n) = value.extract::<u64>() {
            Value::from(n)
        } else if let Ok(s) = value.extract::<String>() {
            Value::from(s.replace('_', "-"))
        } else {
            return Err(wrong_type(&key, "an int or str", &value));
        };
        if RETENTION_KEYS.contains(&key.as_str()) {
            retention.insert(key, json);
        } else if GROUP_KEYS.contains(&key.as_str()) {
            groups.insert(key, json);
        } else {
            return Err(invalid_config(
                py,
                format!(
                    "create_topic has no setting {key:?}; the settings are {}",
                    [&RETENTION_KEYS[..], &GROUP_KEYS[..]].concat().join(", ")
                ),
            ));
        }
    }
    let json = serde_json::json!({ "retention": retention, "groups": groups });
    serde_json::from_value(json)
        .map_err(|e| invalid_config(py, format!("invalid topic setting: {e}")))
}

/// A duration setting as JSON the core reads: milliseconds, or the string as written.
fn duration_json(key: &str, value: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(s) = value.extract::<String>() {
        return Ok(Value::from(s));
    }
    let seconds: f64 = value
        .extract()
        .map_err(|_| wrong_type(key, "seconds (int or float) or a str like \"30s\"", value))?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(crate::errors::bad_value(format!(
            "{key} must be a non-negative number of seconds, not {seconds}"
        )));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(Value::from((seconds * 1000.0).round() as u64))
}

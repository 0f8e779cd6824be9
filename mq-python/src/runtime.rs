//! The tokio runtime behind the module and the two ways Python waits on it.
//!
//! There is one runtime per process, made on first use. A process started by `fork`
//! inherits the parent's runtime without its threads: the first call in the child sees
//! the process id changed and makes a new one (the inherited one is left alone, since
//! shutting it down would wait for threads that do not exist here).
//!
//! - [`wait`] blocks the calling thread with the GIL released, waking every
//!   [`SIGNAL_CHECK`] to let Python run its signal handlers (so Ctrl-C interrupts it);
//! - [`awaitable`] returns an asyncio future of the running event loop, completed from the
//!   runtime with `call_soon_threadsafe`; cancelling it cancels the work.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use mq_client::ClientError;
use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tokio::runtime::{Handle, Runtime};
use tokio::task::AbortHandle;

use crate::errors::to_py;

/// How often a blocking wait lets Python check for signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// The runtime of this process, with the process id it was made in.
static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The runtime of this process, made on first use (and again after a fork).
pub(crate) fn handle() -> PyResult<Handle> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((made_in, runtime)) = slot.as_ref()
        && *made_in == pid
    {
        return Ok(runtime.handle().clone());
    }
    if let Some(inherited) = slot.take() {
        std::mem::forget(inherited);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mq-runtime")
        .build()
        .map_err(|e| {
            pyo3::exceptions::PyRuntimeError::new_err(format!(
                "cannot start the mq runtime (its threads): {e}"
            ))
        })?;
    let handle = runtime.handle().clone();
    *slot = Some((pid, Arc::new(runtime)));
    Ok(handle)
}

/// Runs `fut` to completion on the runtime and returns its output. Work that is done at
/// once (a queued ack, a delivery already buffered) returns without giving up the GIL;
/// otherwise the GIL is released while waiting, and a pending signal (Ctrl-C) ends the wait
/// with its exception (the work is dropped: every future passed here is cancel-safe).
pub(crate) fn wait<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let handle = handle()?;
    let mut fut = pin!(fut);
    {
        let _entered = handle.enter();
        if let Poll::Ready(done) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return Ok(done);
        }
    }
    loop {
        let done = py.detach(|| {
            handle.block_on(async { tokio::time::timeout(SIGNAL_CHECK, fut.as_mut()).await.ok() })
        });
        match done {
            Some(done) => return Ok(done),
            None => py.check_signals()?,
        }
    }
}

/// Runs `fut` and converts what it returns, raising its error as mq's exception.
pub(crate) fn wait_for<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = Result<T, ClientError>> + Send,
    T: Send,
{
    wait(py, fut)?.map_err(|e| to_py(py, &e))
}

/// Either waits for `fut` (returning what it gives, as a Python object) or, with `aio`,
/// returns an asyncio future of it: the one implementation behind a method of the
/// blocking API and its twin in `mq.aio`.
pub(crate) fn complete<T, F>(py: Python<'_>, aio: bool, fut: F) -> PyResult<Py<PyAny>>
where
    F: Future<Output = Result<T, ClientError>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    if aio {
        return awaitable(py, fut).map(Bound::unbind);
    }
    wait_for(py, fut)?.into_py_any(py)
}

/// An asyncio future of the running event loop that `fut` completes from the runtime.
///
/// # Errors
/// `RuntimeError` when no event loop runs in this thread.
pub(crate) fn awaitable<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T, ClientError>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let resolver = resolver(py)?.clone_ref(py);
    let (target_loop, target) = (event_loop.unbind(), future.clone().unbind());
    let task = handle()?.spawn(async move {
        let outcome = fut.await;
        Python::attach(|py| {
            let (ok, value) = match outcome {
                Ok(value) => match value.into_py_any(py) {
                    Ok(value) => (true, value),
                    Err(e) => (false, e.into_value(py).into_any()),
                },
                Err(e) => (false, to_py(py, &e).into_value(py).into_any()),
            };
            // A loop closed meanwhile has nobody left to tell.
            let _ =
                target_loop.call_method1(py, "call_soon_threadsafe", (resolver, target, ok, value));
        });
    });
    future.call_method1(
        "add_done_callback",
        (CancelOnCancelled(task.abort_handle()),),
    )?;
    Ok(future)
}

/// The function the runtime schedules on the event loop to complete a future.
fn resolver(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    static RESOLVER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    RESOLVER.get_or_try_init(py, || {
        Ok(wrap_pyfunction!(resolve, py)?.into_any().unbind())
    })
}

/// Sets the result (or exception) of `future` unless it was cancelled meanwhile.
#[pyfunction]
fn resolve(future: &Bound<'_, PyAny>, ok: bool, value: &Bound<'_, PyAny>) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    let method = if ok { "set_result" } else { "set_exception" };
    future.call_method1(method, (value,))?;
    Ok(())
}

/// A done-callback that stops the work behind a future that was cancelled.
#[pyclass(frozen)]
struct CancelOnCancelled(AbortHandle);

#[pymethods]
impl CancelOnCancelled {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.0.abort();
        }
        Ok(())
    }
}

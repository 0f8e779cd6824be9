//! `mq-python`: the `mq` Python module, a thin layer over the Rust SDK (`mq-client`).
//!
//! The native part is `mq._mq`; the package around it (`python/mq`) re-exports its classes,
//! defines the exceptions (`mq.errors`) and the asyncio API (`mq.aio`). Each method that
//! talks to the broker is written once: it blocks (releasing the GIL) or, called by
//! `mq.aio` with `_aio=True`, returns an asyncio future (see [`runtime`]).

mod client;
mod consumer;
mod delivery;
mod dicts;
mod errors;
mod message;
mod producer;
mod runtime;

use pyo3::prelude::*;

/// The native part of the `mq` package.
#[pymodule]
fn _mq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::Client>()?;
    m.add_class::<producer::Producer>()?;
    m.add_class::<consumer::Consumer>()?;
    m.add_class::<delivery::Delivery>()?;
    m.add_class::<message::Message>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

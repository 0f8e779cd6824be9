//! `mq-server`: the mq broker on the network.
//!
//! [`run`] serves a [`mq_transport::Listener`] with a [`mq_core::Broker`] until a shutdown
//! future completes; the `mq-server` binary wires it to flags, environment variables, a
//! config file and SIGINT/SIGTERM.
//!
//! ```no_run
//! use mq_server::{ServerConfig, run};
//! use mq_transport::{TcpTransport, Transport};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let listener = TcpTransport::default().bind("127.0.0.1:0").await?;
//! println!("listening on {}", listener.local_addr());
//! run(listener, mq_core::Broker::new(), ServerConfig::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

mod attachments;
mod config;
mod connections;
mod http;
mod logins;
mod machine;
mod pump;
mod server;
mod session;
mod telemetry;
pub mod users;

pub use config::{DEFAULT_HTTP, DEFAULT_LISTEN, ServerConfig, StorageKind};
pub use http::HttpListener;
pub use server::{Extras, run, run_with};

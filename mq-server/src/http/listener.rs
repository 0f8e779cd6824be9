//! [`HttpListener`]: the HTTP endpoint's socket, and [`serve`]: its accept loop, one task
//! per connection (the TLS handshake there, within the handshake deadline), shut down
//! gracefully with the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use mq_transport::tls::ServerTls;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The HTTP endpoint's bound socket.
#[derive(Debug)]
pub struct HttpListener {
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
}

impl HttpListener {
    /// Binds `addr`; with `tls`, every connection must speak TLS (the protocol listener's
    /// certificate, reloaded with it).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind(addr: &str, tls: Option<Arc<ServerTls>>) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            tls,
        })
    }

    /// The address bound (the real port when 0 was asked for).
    ///
    /// # Errors
    /// When the socket cannot say.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Serves `router` on `listener` until `stop` turns true, then lets requests in progress
/// finish (at most `grace`).
pub(crate) async fn serve(
    listener: HttpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
    handshake: Duration,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = listener.tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(tls) => {
                    let accepted =
                        tokio::time::timeout(handshake, tls.acceptor().accept(stream)).await;
                    match accepted {
                        Ok(Ok(stream)) => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            let _ = watcher.watch(conn.into_owned()).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "http TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "http TLS handshake timed out"),
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http requests did not finish in time; closing them");
    }
}

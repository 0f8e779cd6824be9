//! [`run`]: the accept loop, the connection limit, the background cleaner and graceful
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mq_core::Broker;
use mq_transport::{
    Accepted, ErrorCode, Frame, Listener, RequestId, ServerMsg, Traffic, TransportError,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::ServerConfig;
use crate::connections::Connections;
use crate::http::HttpListener;
use crate::logins::Logins;
use crate::session::{Session, Shared};
use crate::telemetry::Telemetry;
use crate::users::{Users, UsersHandle};

/// First pause after a failed accept; doubles up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause after repeated accept failures.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `listener` until `shutdown` completes, then stops accepting, tells every session
/// goodbye, waits for them (at most `config.shutdown_grace`) and returns.
///
/// Tests bind port 0 and choose the shutdown future; the binary passes SIGINT/SIGTERM.
///
/// # Errors
/// Never for a single bad connection: those are logged and closed.
pub async fn run(
    listener: Box<dyn Listener>,
    broker: Broker,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let extras = Extras {
        users: UsersHandle::new(Users::new(&config.users, config.auth_token.as_deref())?),
        traffic: Traffic::default(),
        http: None,
    };
    run_with(listener, broker, config, extras, shutdown).await
}

/// What the binary hands [`run_with`] beyond the listener, the broker and the settings.
#[derive(Debug)]
pub struct Extras {
    /// The users, in a handle the caller keeps to replace them while the server runs (the
    /// binary does on SIGHUP).
    pub users: UsersHandle,
    /// The traffic counters the listener's transport counts into, for `/metrics`.
    pub traffic: Traffic,
    /// The HTTP endpoint, if it is on.
    pub http: Option<HttpListener>,
}

/// [`run`] with the users, traffic counters and HTTP endpoint the caller set up.
///
/// # Errors
/// Never for a single bad connection: those are logged and closed.
pub async fn run_with(
    mut listener: Box<dyn Listener>,
    broker: Broker,
    config: ServerConfig,
    extras: Extras,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let shared = Shared {
        broker: broker.clone(),
        config: Arc::clone(&config),
        connections: Arc::new(Connections::default()),
        logins: Arc::new(Logins::default()),
        users: extras.users,
        telemetry: Telemetry::new(extras.traffic),
        attachments: Arc::default(),
    };
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    let cleaner = tokio::spawn(clean_periodically(
        broker.clone(),
        config.tick_interval,
        stop_rx.clone(),
    ));
    let http = extras.http.map(|listener| {
        let router = crate::http::routes::router(shared.clone(), stop_rx.clone());
        tokio::spawn(crate::http::serve(
            listener,
            router,
            stop_rx.clone(),
            config.handshake_timeout,
            config.shutdown_grace,
        ))
    });
    tokio::pin!(shutdown);
    let mut backoff = MIN_ACCEPT_BACKOFF;
    // A descriptor held in reserve: when the process runs out, it is given up to accept
    // the waiting connection and tell it why it is refused, instead of leaving it hanging.
    let mut spare = std::fs::File::open("/dev/null").ok();
    loop {
        while sessions.try_join_next().is_some() {}
        let conn = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let conn = match conn {
            Ok(conn) => {
                backoff = MIN_ACCEPT_BACKOFF;
                conn
            }
            Err(e) if out_of_descriptors(&e) && spare.is_some() => {
                drop(spare.take());
                let accepted = tokio::time::timeout(MIN_ACCEPT_BACKOFF, listener.accept()).await;
                if let Ok(Ok(conn)) = accepted {
                    shared.connections.refused();
                    tracing::warn!(peer = %conn.peer, "refusing connection: out of file descriptors (raise ulimit -n)");
                    let why = "server has run out of file descriptors: retry later (its operator \
                               should raise its open-file limit)";
                    // Inline, so that its descriptor is closed before the spare is taken
                    // back; briefly, since the accept loop waits.
                    let brief = config.handshake_timeout.min(Duration::from_secs(1));
                    refuse_busy(conn, why.into(), brief).await;
                }
                spare = std::fs::File::open("/dev/null").ok();
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            shared.connections.refused();
            tracing::warn!(peer = %conn.peer, max = config.max_connections, "refusing connection: at the connection limit");
            let why = format!(
                "server has reached its limit of {} connections: retry later",
                config.max_connections
            );
            tokio::spawn(refuse_busy(conn, why, config.handshake_timeout));
            continue;
        };
        let session = Session::new(shared.clone(), stop_rx.clone());
        let deadline = config.handshake_timeout;
        sessions.spawn(async move {
            // The TLS handshake, if any, runs here: a slow client holds up nobody else.
            let peer = conn.peer.clone();
            match tokio::time::timeout(deadline, conn.establish()).await {
                Ok(Ok(conn)) => session.run(conn).await,
                Ok(Err(e)) => tracing::warn!(%peer, error = %e, "connection not established"),
                Err(_) => tracing::warn!(%peer, "connection not established within the handshake deadline"),
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(sessions = sessions.len(), "shutting down: closing sessions");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = sessions.len(),
            "sessions did not finish in time; closing them"
        );
        sessions.shutdown().await;
    }
    let _ = cleaner.await;
    if let Some(http) = http {
        let _ = http.await;
    }
    if let Err(e) = broker.flush() {
        tracing::error!(error = %e, "flushing storage at shutdown failed");
        return Err(e.into());
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Whether an accept failed because the process or the system has no descriptor left.
fn out_of_descriptors(e: &TransportError) -> bool {
    let TransportError::Io { source, .. } = e else {
        return false;
    };
    let code = source.raw_os_error();
    code == Some(rustix::io::Errno::MFILE.raw_os_error())
        || code == Some(rustix::io::Errno::NFILE.raw_os_error())
}

/// Tells a connection it is refused and why (`server_busy`), then closes it.
async fn refuse_busy(accepted: Accepted, why: String, deadline: Duration) {
    let Ok(Ok(mut conn)) = tokio::time::timeout(deadline, accepted.establish()).await else {
        return;
    };
    let frame = Frame::new(
        RequestId(0),
        ServerMsg::Error {
            code: ErrorCode::ServerBusy,
            message: why,
        },
    );
    if conn.writer.feed(frame).is_ok() {
        let _ = conn.writer.close().await;
    }
}

/// Drives retention, ack timeouts and delayed nacks until told to stop.
async fn clean_periodically(broker: Broker, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let report = broker.tick(broker.now());
        for error in &report.errors {
            tracing::warn!(%error, "cleaner pass failed");
        }
        if report.deleted > 0 || report.dead_lettered > 0 {
            tracing::debug!(
                deleted = report.deleted,
                dead_lettered = report.dead_lettered,
                "cleaner pass"
            );
        }
    }
}

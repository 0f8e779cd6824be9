//! Reconnecting: [`Reconnect`] says how hard a client tries, and [`supervise`] renews a lost
//! connection — dial with backoff and jitter, handshake, subscribe again where each group
//! is, resend the numbered publishes still unanswered — or gives up with
//! [`ClientError::ReconnectFailed`].

use std::sync::Arc;
use std::time::Duration;

use mq_core::StartPosition;
use mq_transport::{
    ClientConnection, ClientMsg, ErrorCode, PROTOCOL_VERSION, ServerMsg, TcpTransport, Transport,
    TransportError,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::ClientConfig;
use crate::connection::{Generation, Inner, Lost, PendingReply, SubEntry};
use crate::error::ClientError;

/// How a client reconnects when its connection is lost (a server restart, a network
/// failure): on by default.
///
/// While reconnecting, calls wait (at most `max_wait` in all) for the new connection;
/// producers keep their unacknowledged batches and send them again (the server stores
/// each once), and consumers subscribe again where their group is. Attempts are spaced by
/// a delay that starts at `initial_delay` and doubles up to `max_delay`, each one varied by
/// up to ±50% so that many clients do not all come back at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// Whether to reconnect at all; without it a lost connection ends every handle.
    pub enabled: bool,
    /// Delay before the second attempt (the first is immediate).
    pub initial_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// How long to go on trying before giving up.
    pub max_wait: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            max_wait: Duration::from_secs(60),
        }
    }
}

impl Reconnect {
    /// No reconnecting: a lost connection ends every handle made from the client.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

/// What it takes to dial the server again.
#[derive(Debug, Clone)]
pub(crate) struct Redial {
    pub(crate) addr: String,
    pub(crate) config: ClientConfig,
}

/// Opens a TCP (or TLS) connection to `addr`, not yet handshaken.
pub(crate) async fn dial(
    addr: &str,
    config: &ClientConfig,
) -> Result<ClientConnection, ClientError> {
    let tls_transport;
    let transport: &dyn Transport = match &config.tls {
        Some(tls) => {
            tls_transport =
                TcpTransport::default()
                    .with_client_tls(tls)
                    .map_err(|e| ClientError::Tls {
                        addr: addr.to_owned(),
                        reason: e.to_string(),
                    })?;
            &tls_transport
        }
        None => config.transport.as_ref(),
    };
    transport.connect(addr).await.map_err(|e| match e {
        TransportError::Io { source, .. } => ClientError::ConnectionRefused {
            addr: addr.to_owned(),
            reason: source.to_string(),
        },
        TransportError::Tls(reason) => ClientError::Tls {
            addr: addr.to_owned(),
            reason,
        },
        other => ClientError::ConnectionRefused {
            addr: addr.to_owned(),
            reason: other.to_string(),
        },
    })
}

/// The Hello a client opens each connection with.
pub(crate) fn hello(config: &ClientConfig) -> ClientMsg {
    ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        client: config.name.clone(),
        token: config.token.clone(),
    }
}

/// Renews the connection each time a reader reports it lost, until it is closed for good;
/// meanwhile, every quarter of the request timeout, drops a connection whose replies are
/// overdue ([`Inner::expire_overdue`]).
pub(crate) async fn supervise(inner: Arc<Inner>, mut lost: mpsc::UnboundedReceiver<Lost>) {
    let mut watch = tokio::time::interval((inner.timeout / 4).max(Duration::from_millis(1)));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (generation, reason) = tokio::select! {
            lost = lost.recv() => match lost {
                Some(lost) => lost,
                None => return,
            },
            _ = watch.tick() => {
                if inner.is_closed() {
                    return;
                }
                inner.expire_overdue();
                continue;
            }
        };
        if inner.is_closed() {
            return;
        }
        if !inner.is_current(generation) {
            continue;
        }
        let Some(redial) = inner.redial() else {
            inner.fail_all(ClientError::ConnectionClosed { reason });
            return;
        };
        tracing::warn!(
            addr = %redial.addr,
            reason = reason.as_deref().unwrap_or("closed by the server"),
            "lost the connection to the server; reconnecting"
        );
        inner.detach(reason);
        match redial.run(&inner, &mut lost).await {
            Ok(()) => tracing::info!(addr = %redial.addr, "reconnected to the server"),
            Err(e) => {
                tracing::warn!(addr = %redial.addr, error = %e, "giving up reconnecting");
                inner.fail_all(e);
                return;
            }
        }
    }
}

/// Why an attempt failed.
enum Failed {
    /// Try again after a delay.
    Retry(String),
    /// Trying again cannot help (the server refused the client).
    Fatal(ClientError),
}

impl Redial {
    /// Dials until a connection is renewed or the policy gives up.
    async fn run(
        &self,
        inner: &Arc<Inner>,
        lost: &mut mpsc::UnboundedReceiver<Lost>,
    ) -> Result<(), ClientError> {
        let policy = self.config.reconnect;
        let started = Instant::now();
        let mut delay = policy.initial_delay;
        let mut attempts = 0u32;
        loop {
            if inner.is_closed() {
                return Ok(());
            }
            attempts += 1;
            let reason = match self.attempt(inner, lost).await {
                Ok(()) => return Ok(()),
                Err(Failed::Fatal(e)) => return Err(e),
                Err(Failed::Retry(reason)) => {
                    // Whatever the attempt renewed waits for the next one.
                    inner.detach(Some(reason.clone()));
                    reason
                }
            };
            let waited = started.elapsed();
            if waited >= policy.max_wait {
                return Err(ClientError::ReconnectFailed {
                    addr: self.addr.clone(),
                    attempts,
                    waited,
                    reason,
                });
            }
            tracing::debug!(attempts, %reason, "reconnect attempt failed");
            let pause = jitter(delay).min(policy.max_wait - waited);
            tokio::time::sleep(pause).await;
            delay = (delay * 2).min(policy.max_delay);
        }
    }

    /// One attempt: dial, handshake, renew the subscriptions, resend the numbered
    /// publishes, open the connection to everyone.
    async fn attempt(
        &self,
        inner: &Arc<Inner>,
        lost: &mut mpsc::UnboundedReceiver<Lost>,
    ) -> Result<(), Failed> {
        let conn = match tokio::time::timeout(inner.timeout, dial(&self.addr, &self.config)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e @ ClientError::Tls { .. })) => return Err(Failed::Fatal(e)),
            Ok(Err(e)) => return Err(Failed::Retry(e.to_string())),
            Err(_) => return Err(Failed::Retry("connecting timed out".into())),
        };
        let generation = inner.install(conn);
        let welcome = self
            .internal(inner, lost, generation, hello(&self.config), None)
            .await?;
        match welcome {
            ServerMsg::Welcome {
                version, max_frame, ..
            } => inner.welcomed(version, max_frame),
            other => {
                return Err(Failed::Fatal(ClientError::Protocol {
                    message: format!("expected Welcome, got {other:?}"),
                }));
            }
        }
        let mut subs = inner.take_detached();
        while let Some(entry) = subs.pop() {
            let mut request = entry.request.clone();
            // A named group goes on where it is; an ephemeral one was gone with the
            // connection and starts again with what comes next.
            request.start = if request.group.is_some() {
                StartPosition::Resume
            } else {
                StartPosition::Latest
            };
            let renewed = self
                .internal(
                    inner,
                    lost,
                    generation,
                    ClientMsg::Subscribe(request),
                    Some(entry.clone()),
                )
                .await;
            match renewed {
                Ok(_) => {}
                Err(Failed::Fatal(e)) => {
                    let _ = entry.tx.send(crate::connection::SubEvent::Ended(e));
                }
                Err(retry) => {
                    subs.push(entry);
                    inner.put_back(subs);
                    return Err(retry);
                }
            }
        }
        loop {
            match inner.next_replay(generation) {
                Err(()) => return Err(Failed::Retry("the connection was lost again".into())),
                Ok(None) => return Ok(()),
                Ok(Some((out, frames))) => {
                    for frame in frames {
                        if out.send(frame).await.is_err() {
                            return Err(Failed::Retry("the connection was lost again".into()));
                        }
                    }
                }
            }
        }
    }

    /// A request of the supervisor on connection `generation`: its reply, `Retry` when
    /// the connection is lost meanwhile, `Fatal` when the server refuses it.
    async fn internal(
        &self,
        inner: &Arc<Inner>,
        lost: &mut mpsc::UnboundedReceiver<Lost>,
        generation: Generation,
        msg: ClientMsg,
        sub: Option<SubEntry>,
    ) -> Result<ServerMsg, Failed> {
        let pending: PendingReply = inner
            .start_internal(msg, sub)
            .await
            .map_err(|e| Failed::Retry(e.to_string()))?;
        let reply = inner.finish(pending);
        tokio::pin!(reply);
        loop {
            tokio::select! {
                reply = &mut reply => return match reply {
                    Ok(reply) => Ok(reply),
                    Err(e @ (ClientError::ConnectionClosed { .. } | ClientError::Timeout { .. })) => {
                        Err(Failed::Retry(e.to_string()))
                    }
                    Err(ClientError::Server {
                        code: ErrorCode::ShuttingDown | ErrorCode::ServerBusy | ErrorCode::Timeout,
                        message,
                    }) => Err(Failed::Retry(message)),
                    Err(e) => Err(Failed::Fatal(e)),
                },
                Some((g, reason)) = lost.recv() => {
                    if g == generation {
                        inner.detach(reason.clone());
                        return Err(Failed::Retry(
                            reason.unwrap_or_else(|| "the server closed the connection".into()),
                        ));
                    }
                }
            }
        }
    }
}

/// `delay` varied by up to ±50%.
fn jitter(delay: Duration) -> Duration {
    let mut bytes = [0u8; 2];
    if getrandom::fill(&mut bytes).is_err() {
        return delay;
    }
    let factor = 0.5 + f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX);
    delay.mul_f64(factor)
}

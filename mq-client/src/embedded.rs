//! [`Embedded`]: a broker in this process behind the client API. Requests are answered by
//! calling the broker directly — on tokio's blocking pool when the storage fsyncs before
//! confirming, as the server does — and a background task runs the broker's cleaner pass
//! (ack timeouts, delayed nacks, retention) as the server does.

use std::sync::Arc;
use std::time::Duration;

use mq_core::Broker;
use mq_transport::{ClientMsg, ErrorCode, GroupReport, ServerMsg, WireDelivery};

use crate::error::ClientError;

/// How often the cleaner pass runs, as on the server.
const TICK_EVERY: Duration = Duration::from_millis(100);

/// A broker in this process and its cleaner task.
#[derive(Debug, Clone)]
pub(crate) struct Embedded {
    pub(crate) broker: Broker,
    _cleaner: Arc<Cleaner>,
}

/// Runs the cleaner pass until the last client handle is dropped.
#[derive(Debug)]
struct Cleaner(Option<tokio::task::JoinHandle<()>>);

impl Drop for Cleaner {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Embedded {
    /// Serves `broker`; the cleaner runs when a tokio runtime is at hand.
    pub(crate) fn new(broker: Broker) -> Self {
        let task = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let broker = broker.clone();
            rt.spawn(async move {
                let mut every = tokio::time::interval(TICK_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let report = broker.tick(broker.now());
                    for error in &report.errors {
                        tracing::warn!(%error, "cleaner pass failed");
                    }
                }
            })
        });
        Self {
            broker,
            _cleaner: Arc::new(Cleaner(task)),
        }
    }

    /// Runs a broker call that may wait for an fsync off the async workers.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Broker) -> Result<T, mq_core::Error> + Send + 'static,
    ) -> Result<T, ClientError> {
        if !self.broker.waits_for_disk() {
            return Ok(call(&self.broker)?);
        }
        let broker = self.broker.clone();
        match tokio::task::spawn_blocking(move || call(&broker)).await {
            Ok(result) => Ok(result?),
            Err(e) => Err(ClientError::Protocol {
                message: format!("a broker call failed: {e}"),
            }),
        }
    }

    /// Answers a request the way a server would.
    pub(crate) async fn answer(&self, request: ClientMsg) -> Result<ServerMsg, ClientError> {
        let done = |r: Result<(), ClientError>| r.map(|()| ServerMsg::Done);
        let broker = &self.broker;
        match request {
            ClientMsg::CreateTopic { topic, config, .. } => {
                done(self.call(move |b| b.create_topic(&topic, config)).await)
            }
            ClientMsg::DeleteTopic { topic } => {
                done(self.call(move |b| b.delete_topic(&topic)).await)
            }
            ClientMsg::DeleteGroup { topic, group } => {
                done(self.call(move |b| b.delete_group(&topic, &group)).await)
            }
            ClientMsg::ListTopics => Ok(ServerMsg::Topics {
                topics: broker.topics(),
            }),
            ClientMsg::DescribeTopic { topic } => {
                Ok(ServerMsg::TopicInfo(Box::new(broker.describe(&topic)?)))
            }
            ClientMsg::ListGroups { topic } => Ok(ServerMsg::Groups(broker.groups(&topic)?)),
            ClientMsg::Peek { topic, from, max } => {
                let max = usize::try_from(max).unwrap_or(usize::MAX);
                let found = broker.peek(&topic, from, max)?;
                Ok(ServerMsg::Peeked {
                    messages: found
                        .iter()
                        .map(|m| WireDelivery::from(m.as_ref()))
                        .collect(),
                })
            }
            ClientMsg::CreateGroup {
                topic,
                group,
                start,
            } => done(
                self.call(move |b| b.create_group(&topic, &group, start))
                    .await,
            ),
            ClientMsg::SeekGroup { topic, group, to } => {
                done(self.call(move |b| b.seek_group(&topic, &group, to)).await)
            }
            ClientMsg::PurgeTopic { topic } => {
                done(self.call(move |b| b.purge_topic(&topic).map(|_| ())).await)
            }
            ClientMsg::AlterTopic { topic, config, .. } => {
                done(self.call(move |b| b.alter_topic(&topic, config)).await)
            }
            ClientMsg::DescribeGroup { topic, group } => {
                let info = broker.describe_group(&topic, &group)?;
                let diagnosis = info.diagnose(broker.now(), |_| None);
                Ok(ServerMsg::GroupReport(Box::new(GroupReport {
                    group: info,
                    connections: Vec::new(),
                    diagnosis,
                })))
            }
            ClientMsg::Stats { topic: None } => Ok(ServerMsg::BrokerStats(broker.stats())),
            ClientMsg::Stats { topic: Some(topic) } => {
                Ok(ServerMsg::TopicStats(Box::new(broker.topic_stats(&topic)?)))
            }
            ClientMsg::Ping => Ok(ServerMsg::Pong),
            other => Err(ClientError::from_server(
                ErrorCode::Internal,
                format!("{other:?} is not answered in-process"),
            )),
        }
    }
}

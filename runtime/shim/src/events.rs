//! Task events to containerd: the [`EventSink`] that forwards them over containerd's ttRPC
//! socket (`containerd.services.events.ttrpc.v1.Events/Forward`, the `TTRPC_ADDRESS` the
//! shim was started with). Events are queued and sent in order by one task, which reconnects
//! when containerd restarts.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::EventsClient;
use containerd_shim_protos::ttrpc;
use runtime_core::{EventSink, TaskEvent};
use tokio::sync::{mpsc, watch};

/// Events waiting to be sent before [`EventSink::publish`] waits.
const QUEUE_LEN: usize = 1024;
/// Attempts per event (reconnecting between them) before it is dropped.
const ATTEMPTS: u32 = 5;
/// Deadline of one Forward call.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the publisher.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// containerd's ttRPC socket cannot be reached.
    #[error("cannot connect to containerd's ttRPC socket {address}: {source}")]
    Connect {
        /// The socket.
        address: String,
        /// Why.
        source: ttrpc::Error,
    },
    /// An event could not be encoded.
    #[error("cannot encode event: {0}")]
    Encode(#[from] containerd_shim_protos::protobuf::Error),
    /// The sending task is gone.
    #[error("the event queue is closed")]
    Closed,
}

/// Wraps a protobuf message into an `Any` whose type URL is the message's full name (the
/// form containerd's `typeurl` resolves).
pub fn to_any(message: &dyn MessageDyn) -> Result<Any, PublishError> {
    let mut any = Any::new();
    any.type_url = message.descriptor_dyn().full_name().to_string();
    any.value = message.write_to_bytes_dyn()?;
    Ok(any)
}

/// A protobuf timestamp of `t`.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    ts.nanos = i32::try_from(d.subsec_nanos()).unwrap_or(0);
    ts
}

/// Converts a task event into containerd's protobuf message.
pub fn to_message(ev: &TaskEvent) -> Box<dyn MessageDyn> {
    match ev.clone() {
        TaskEvent::Create {
            container_id,
            bundle,
            pid,
        } => Box::new(TaskCreate {
            container_id,
            bundle,
            pid,
            ..Default::default()
        }),
        TaskEvent::Start { container_id, pid } => Box::new(TaskStart {
            container_id,
            pid,
            ..Default::default()
        }),
        TaskEvent::Exit {
            container_id,
            id,
            pid,
            exit_status,
            exited_at,
        } => Box::new(TaskExit {
            container_id,
            id,
            pid,
            exit_status,
            exited_at: Some(timestamp(exited_at)).into(),
            ..Default::default()
        }),
        TaskEvent::Oom { container_id } => Box::new(TaskOOM {
            container_id,
            ..Default::default()
        }),
        TaskEvent::ExecAdded {
            container_id,
            exec_id,
        } => Box::new(TaskExecAdded {
            container_id,
            exec_id,
            ..Default::default()
        }),
        TaskEvent::ExecStarted {
            container_id,
            exec_id,
            pid,
        } => Box::new(TaskExecStarted {
            container_id,
            exec_id,
            pid,
            ..Default::default()
        }),
        TaskEvent::Paused { container_id } => Box::new(TaskPaused {
            container_id,
            ..Default::default()
        }),
        TaskEvent::Resumed { container_id } => Box::new(TaskResumed {
            container_id,
            ..Default::default()
        }),
        TaskEvent::Delete {
            container_id,
            pid,
            exit_status,
            exited_at,
        } => Box::new(TaskDelete {
            container_id: container_id.clone(),
            id: container_id,
            pid,
            exit_status,
            exited_at: Some(timestamp(exited_at)).into(),
            ..Default::default()
        }),
    }
}

fn ttrpc_address(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("unix://{address}")
    }
}

async fn connect(address: &str) -> Result<EventsClient, PublishError> {
    let client = ttrpc::r#async::Client::connect(&ttrpc_address(address))
        .await
        .map_err(|source| PublishError::Connect {
            address: address.to_string(),
            source,
        })?;
    Ok(EventsClient::new(client))
}

/// Sends queued envelopes in order; on a failure reconnects and retries (backing off), and
/// drops an event only after [`ATTEMPTS`] failures.
async fn forward_loop(
    address: String,
    mut client: EventsClient,
    mut queue: mpsc::Receiver<Envelope>,
    pending: Arc<watch::Sender<usize>>,
) {
    while let Some(envelope) = queue.recv().await {
        forward_one(&address, &mut client, envelope).await;
        pending.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Sends one envelope, reconnecting and retrying up to [`ATTEMPTS`] times.
async fn forward_one(address: &str, client: &mut EventsClient, envelope: Envelope) {
    let topic = envelope.topic.clone();
    let request = ForwardRequest {
        envelope: Some(envelope).into(),
        ..Default::default()
    };
    for attempt in 1..=ATTEMPTS {
        let ctx = ttrpc::context::with_duration(FORWARD_TIMEOUT);
        match client.forward(ctx, &request).await {
            Ok(_) => {
                tracing::debug!(topic, "event forwarded");
                break;
            }
            Err(e) if attempt == ATTEMPTS => {
                tracing::warn!(topic, error = %e, "event dropped after {ATTEMPTS} attempts");
            }
            Err(e) => {
                tracing::info!(topic, attempt, error = %e, "forwarding event failed; reconnecting");
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                match connect(address).await {
                    Ok(c) => *client = c,
                    Err(e) => tracing::info!(error = %e, "reconnect failed"),
                }
            }
        }
    }
}

/// Publishes task events to containerd in one namespace.
#[derive(Clone)]
pub struct ContainerdEvents {
    queue: mpsc::Sender<Envelope>,
    namespace: String,
    /// Events queued or being sent (what [`ContainerdEvents::flush`] waits for).
    pending: Arc<watch::Sender<usize>>,
}

impl ContainerdEvents {
    /// Connects to containerd's ttRPC socket (`unix://` prefix optional) and starts the
    /// sending task (needs a tokio runtime).
    pub async fn connect(ttrpc_socket: &str, namespace: &str) -> Result<Self, PublishError> {
        let client = connect(ttrpc_socket).await?;
        let (queue, receiver) = mpsc::channel(QUEUE_LEN);
        let pending = Arc::new(watch::channel(0usize).0);
        tokio::spawn(forward_loop(
            ttrpc_socket.to_string(),
            client,
            receiver,
            pending.clone(),
        ));
        Ok(ContainerdEvents {
            queue,
            namespace: namespace.to_string(),
            pending,
        })
    }

    /// Waits until every queued event was sent (or dropped after its attempts), at most
    /// `limit`; false when some are still pending. The shim calls it before it exits, so
    /// the last events of a task (exit, delete) are not lost with the process.
    pub async fn flush(&self, limit: Duration) -> bool {
        let mut pending = self.pending.subscribe();
        matches!(
            tokio::time::timeout(limit, pending.wait_for(|n| *n == 0)).await,
            Ok(Ok(_))
        )
    }

    /// Queues one event under `topic`.
    pub async fn send(&self, topic: &str, event: &dyn MessageDyn) -> Result<(), PublishError> {
        let envelope = Envelope {
            timestamp: Some(timestamp(SystemTime::now())).into(),
            namespace: self.namespace.clone(),
            topic: topic.to_string(),
            event: Some(to_any(event)?).into(),
            ..Default::default()
        };
        self.pending.send_modify(|n| *n += 1);
        self.queue.send(envelope).await.map_err(|_| {
            self.pending.send_modify(|n| *n = n.saturating_sub(1));
            PublishError::Closed
        })
    }
}

#[async_trait::async_trait]
impl EventSink for ContainerdEvents {
    async fn publish(&self, event: TaskEvent) {
        let message = to_message(&event);
        if let Err(e) = self.send(event.topic(), message.as_ref()).await {
            tracing::warn!(topic = event.topic(), error = %e, "publishing event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
    use containerd_shim_protos::shim_async::{Events, create_events};
    use containerd_shim_protos::ttrpc::r#async::{Server, TtrpcContext};

    use super::*;

    /// containerd's events service, answering each Forward after `delay`.
    struct SlowEvents {
        delay: Duration,
        topics: Arc<Mutex<Vec<String>>>,
    }

    #[async_trait::async_trait]
    impl Events for SlowEvents {
        async fn forward(&self, _: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
            tokio::time::sleep(self.delay).await;
            let topic = req.envelope.topic.clone();
            self.topics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(topic);
            Ok(Empty::new())
        }
    }

    #[tokio::test]
    async fn flush_waits_until_queued_events_reached_containerd() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix://{}", dir.path().join("events.sock").display());
        let topics = Arc::new(Mutex::new(Vec::new()));
        let service = SlowEvents {
            delay: Duration::from_millis(150),
            topics: topics.clone(),
        };
        let mut server = Server::new()
            .bind(&address)
            .unwrap()
            .register_service(create_events(Arc::new(service)));
        server.start().await.unwrap();
        let events = ContainerdEvents::connect(&address, "default")
            .await
            .unwrap();
        for id in ["a", "b", "c"] {
            let ev = TaskEvent::Delete {
                container_id: id.into(),
                pid: 1,
                exit_status: 0,
                exited_at: SystemTime::now(),
            };
            events.publish(ev).await;
        }
        // Queued, not yet sent: a shim exiting now would lose them.
        assert!(topics.lock().unwrap().len() < 3);
        assert!(events.flush(Duration::from_secs(10)).await);
        assert_eq!(
            topics.lock().unwrap().len(),
            3,
            "flush returned before the sends"
        );
        // Nothing pending: returns at once.
        let t = std::time::Instant::now();
        assert!(events.flush(Duration::from_secs(10)).await);
        assert!(t.elapsed() < Duration::from_millis(100));
        // A bound shorter than the sends: false, without waiting longer than the bound.
        events
            .publish(TaskEvent::Delete {
                container_id: "d".into(),
                pid: 1,
                exit_status: 0,
                exited_at: SystemTime::now(),
            })
            .await;
        assert!(!events.flush(Duration::from_millis(20)).await);
        let _ = server.shutdown().await;
    }
}

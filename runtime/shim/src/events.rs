//! The [`EventSink`] that publishes task events to containerd over its ttRPC socket.

use std::time::SystemTime;

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::publisher::RemotePublisher;
use runtime_core::{EventSink, TaskEvent};

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

/// Publishes to containerd in `namespace`.
pub struct ContainerdEvents {
    publisher: RemotePublisher,
    namespace: String,
}

impl ContainerdEvents {
    /// Wraps containerd-shim's publisher.
    pub fn new(publisher: RemotePublisher, namespace: &str) -> Self {
        ContainerdEvents {
            publisher,
            namespace: namespace.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl EventSink for ContainerdEvents {
    async fn publish(&self, event: TaskEvent) {
        let ctx = containerd_shim::Context::default();
        if let Err(e) = self
            .publisher
            .publish(ctx, event.topic(), &self.namespace, to_message(&event))
            .await
        {
            tracing::warn!(topic = event.topic(), error = %e, "publishing event failed");
        }
    }
}

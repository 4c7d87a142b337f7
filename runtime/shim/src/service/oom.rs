//! OOM events: the watcher long-polling the agent's GetOOMEvent, and the drain Delete runs
//! before it stops the VM.

use std::sync::Arc;

use agent_protocol::AgentClient;
use runtime_core::TaskEvent;

use super::{OOM_DRAIN, TaskService};

impl TaskService {
    /// Relays the guest's OOM kills as `/tasks/oom` events: a long poll of GetOOMEvent for
    /// as long as the pod's VM is up (as Kata's shim does). Ends when the VM is stopped or
    /// gone, or when the agent does not implement the call.
    pub(super) fn spawn_oom_watcher(self: &Arc<Self>, agent: AgentClient) {
        let this = Arc::downgrade(self);
        let agent = agent.with_long_poll_timeout(None);
        tokio::spawn(async move {
            loop {
                let polled = agent.oom_event().await;
                let Some(service) = this.upgrade() else {
                    return;
                };
                match polled {
                    Ok(ev) => service.publish_oom(ev.container_id).await,
                    Err(e) if e.code() == agent_protocol::Code::Unimplemented => {
                        tracing::info!("the agent has no GetOOMEvent: no OOM events");
                        return;
                    }
                    Err(e) => {
                        if service.inner.lock().await.agent.is_none() {
                            return;
                        }
                        tracing::info!(error = %e, "GetOOMEvent failed; polling again");
                        drop(service);
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    /// Publishes `/tasks/oom` for `container_id`, then counts it (for [`Self::drain_ooms`]).
    async fn publish_oom(&self, container_id: String) {
        tracing::info!(container = container_id, "OOM kill in the guest");
        self.events
            .publish(TaskEvent::Oom {
                container_id: container_id.clone(),
            })
            .await;
        self.ooms
            .send_modify(|m| *m.entry(container_id).or_default() += 1);
    }

    /// OOM events published for `id` so far.
    pub(super) fn oom_count(&self, id: &str) -> u64 {
        self.ooms.borrow().get(id).copied().unwrap_or(0)
    }

    /// Before the VM stops under a removed container `id`: gives an OOM kill the agent
    /// queued at RemoveContainer up to [`OOM_DRAIN`] to be published, whichever GetOOMEvent
    /// takes it: the watcher's outstanding long poll (its count for `id` passes `before`)
    /// or a short poll of our own (published here). Returns at once when either delivers.
    pub(super) async fn drain_ooms(&self, agent: &AgentClient, id: &str, before: u64) {
        let deadline = tokio::time::Instant::now() + OOM_DRAIN;
        let mut counts = self.ooms.subscribe();
        let poll = |left| {
            let a = agent.with_long_poll_timeout(Some(left));
            Box::pin(async move { a.oom_event().await })
        };
        let mut polled = poll(OOM_DRAIN);
        loop {
            tokio::select! {
                r = &mut polled => {
                    let Ok(ev) = r else { return };
                    let mine = ev.container_id == id;
                    self.publish_oom(ev.container_id).await;
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if mine || left.is_zero() {
                        return;
                    }
                    polled = poll(left);
                }
                () = async {
                    let _ = counts.wait_for(|m| m.get(id).copied().unwrap_or(0) > before).await;
                } => return,
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

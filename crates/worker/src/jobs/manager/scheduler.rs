//! Where a queued job is scheduled onto a device: whenever a training slot is free, the oldest
//! queued job takes it and its run starts (`jobs/run.rs`); the slot returns when the run ends.

use std::sync::Arc;

use super::JobManager;

impl JobManager {
    /// Starts queued jobs whenever a device is free. Runs until the worker stops.
    pub async fn schedule(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            loop {
                let next = {
                    let mut inner = self.lock();
                    if !inner.accepting || inner.free_devices.is_empty() {
                        None
                    } else {
                        inner.queue.pop_front().and_then(|id| {
                            let job = inner.jobs.get(&id).cloned()?;
                            let device = inner.free_devices.remove(0);
                            inner.running += 1;
                            Some((job, device))
                        })
                    }
                };
                let Some((job, device)) = next else { break };
                let manager = self.clone();
                tokio::spawn(async move {
                    crate::jobs::run::run_job(&manager.context, &job, device).await;
                    let mut inner = manager.lock();
                    inner.free_devices.push(device);
                    inner.running -= 1;
                    let idle = inner.running == 0;
                    drop(inner);
                    if idle {
                        manager.idle.notify_waiters();
                    }
                    manager.wake.notify_one();
                });
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
        }
    }
}

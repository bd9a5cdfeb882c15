//! Where a queued job is scheduled onto a device: whenever a training slot is free, the oldest
//! queued job that may start takes it (a sweep's trials wait while its `max_concurrent` train)
//! and its run starts (`jobs/run.rs`); the slot returns when the run ends.

use std::sync::Arc;

use super::{Inner, JobManager};
use crate::jobs::Job;

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
                        next_runnable(&mut inner).map(|job| {
                            let device = inner.free_devices.remove(0);
                            inner.running += 1;
                            if !job.sweep_id.is_empty() {
                                *inner
                                    .running_by_sweep
                                    .entry(job.sweep_id.clone())
                                    .or_default() += 1;
                            }
                            (job, device)
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
                    if let Some(count) = inner.running_by_sweep.get_mut(&job.sweep_id) {
                        *count -= 1;
                        if *count == 0 {
                            inner.running_by_sweep.remove(&job.sweep_id);
                        }
                    }
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

/// Takes the oldest queued job that may start: one alone, or a trial whose sweep has fewer than
/// its `max_concurrent` trials training. A job gone from the table is dropped from the queue.
pub(super) fn next_runnable(inner: &mut Inner) -> Option<Arc<Job>> {
    let position = inner.queue.iter().position(|id| {
        let Some(job) = inner.jobs.get(id) else {
            return true;
        };
        let limit = inner
            .sweeps
            .get(&job.sweep_id)
            .map_or(0, |sweep| sweep.max_concurrent as usize);
        limit == 0
            || inner
                .running_by_sweep
                .get(&job.sweep_id)
                .copied()
                .unwrap_or(0)
                < limit
    })?;
    let id = inner.queue.remove(position)?;
    match inner.jobs.get(&id) {
        Some(job) => Some(job.clone()),
        None => next_runnable(inner),
    }
}

//! Copies finished artifacts to the object store while training goes on. Transient failures are
//! retried with backoff and reported as events; what could not be stored is returned at the end
//! so the job can fail with the reason instead of claiming success.

use std::sync::Arc;

use easel_store::put_file_with_retry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::context::JobContext;
use super::job::{EVENTS_FILE, Job};
use easel_events::EventKind;

pub(crate) struct ArtifactPublisher {
    names: mpsc::UnboundedSender<String>,
    task: JoinHandle<Vec<String>>,
}

impl ArtifactPublisher {
    pub fn start(context: &Arc<JobContext>, job: &Arc<Job>) -> ArtifactPublisher {
        let (names, mut receiver) = mpsc::unbounded_channel::<String>();
        let context = context.clone();
        let job = job.clone();
        let task = tokio::spawn(async move {
            let mut failures = Vec::new();
            while let Some(name) = receiver.recv().await {
                // A newer announcement of the same file (last.ckpt each epoch) supersedes this one.
                let mut pending = vec![name];
                while let Ok(more) = receiver.try_recv() {
                    if !pending.contains(&more) {
                        pending.push(more);
                    }
                }
                for name in pending {
                    if let Err(error) =
                        store_one(&context, &job, &name, &job.run_dir().join(&name)).await
                    {
                        failures.push(format!("{name}: {error}"));
                    }
                }
            }
            failures
        });
        ArtifactPublisher { names, task }
    }

    /// Where finished artifacts' names go, for a thread that sees them first.
    pub fn sender(&self) -> mpsc::UnboundedSender<String> {
        self.names.clone()
    }

    /// Waits for every announced artifact; returns the failures.
    pub async fn finish(self) -> Vec<String> {
        drop(self.names);
        self.task
            .await
            .unwrap_or_else(|e| vec![format!("artifact publisher stopped: {e}")])
    }
}

/// Stores one file under the job, with retries reported as events.
pub(crate) async fn store_one(
    context: &JobContext,
    job: &Job,
    name: &str,
    path: &std::path::Path,
) -> easel_store::Result<()> {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let result = put_file_with_retry(
        &context.store,
        &job.id,
        name,
        path,
        &context.retry,
        |attempt, error| {
            job.emit(EventKind::ArtifactRetry {
                name: name.to_owned(),
                attempt,
                error: error.to_string(),
            });
        },
    )
    .await;
    match &result {
        Ok(()) => {
            tracing::debug!(job = %job.id, name, bytes, "artifact stored");
            if name != EVENTS_FILE {
                job.emit(EventKind::ArtifactStored {
                    name: name.to_owned(),
                    bytes,
                });
            }
        }
        Err(error) => tracing::warn!(job = %job.id, name, %error, "artifact not stored"),
    }
    result
}

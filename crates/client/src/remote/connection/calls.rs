//! The worker's RPCs as methods of a [`Connection`]: each sends its request and answers with the
//! worker's value, or with the refusal explained ([`explain`]), so the verbs do not handle gRPC
//! statuses. Only a fetch sees them, since whether it resumes depends on their code.

use easel_proto::v1 as pb;
use tokio_stream::{Stream, StreamExt};

use super::{Connection, explain};

impl Connection {
    /// The worker's current view of one job.
    pub async fn job(&mut self, job_id: &str) -> anyhow::Result<pb::Job> {
        let request = pb::GetJobRequest {
            job_id: job_id.to_owned(),
        };
        Ok(self
            .client
            .get_job(request)
            .await
            .map_err(explain)?
            .into_inner())
    }

    /// Every job the worker knows, as it lists them.
    pub async fn jobs(&mut self) -> anyhow::Result<Vec<pb::Job>> {
        let request = pb::ListJobsRequest {};
        let listed = self.client.list_jobs(request).await.map_err(explain)?;
        Ok(listed.into_inner().jobs)
    }

    /// Cancels a job; answers with the job as the cancel left it.
    pub async fn cancel(&mut self, job_id: &str) -> anyhow::Result<pb::Job> {
        let request = pb::CancelRequest {
            job_id: job_id.to_owned(),
        };
        Ok(self
            .client
            .cancel(request)
            .await
            .map_err(explain)?
            .into_inner())
    }

    /// Removes a finished job from the worker (and its artifacts from the object store with
    /// `artifacts`); answers with what was freed.
    pub async fn remove(
        &mut self,
        job_id: &str,
        artifacts: bool,
    ) -> anyhow::Result<pb::RemoveJobResponse> {
        let request = pb::RemoveJobRequest {
            job_id: job_id.to_owned(),
            artifacts,
        };
        Ok(self
            .client
            .remove_job(request)
            .await
            .map_err(explain)?
            .into_inner())
    }

    /// Queues a job (or, for a key already used, answers with the job it queued then).
    pub async fn submit(
        &mut self,
        request: pb::SubmitRequest,
    ) -> anyhow::Result<pb::SubmitResponse> {
        Ok(self
            .client
            .submit(request)
            .await
            .map_err(explain)?
            .into_inner())
    }

    /// A job's events after `from_sequence`, live until the job ends or the worker closes the
    /// stream; an event the stream breaks on comes as an explained error.
    pub async fn watch(
        &mut self,
        job_id: &str,
        from_sequence: u64,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<pb::JobEvent>> + Unpin + use<>> {
        let request = pb::WatchRequest {
            job_id: job_id.to_owned(),
            from_sequence,
        };
        let events = self.client.watch(request).await.map_err(explain)?;
        Ok(events.into_inner().map(|event| event.map_err(explain)))
    }

    /// Which of `digests` the worker lacks (with how much of each it already holds), and the
    /// room it has for new uploads.
    pub async fn missing_blobs(
        &mut self,
        digests: Vec<String>,
    ) -> anyhow::Result<pb::MissingBlobsResponse> {
        let request = pb::MissingBlobsRequest { digests };
        Ok(self
            .client
            .missing_blobs(request)
            .await
            .map_err(explain)?
            .into_inner())
    }

    /// One UploadBlobs call carrying every message `messages` yields; answers with what the
    /// worker completed.
    pub async fn upload_blobs(
        &mut self,
        messages: tokio::sync::mpsc::Receiver<pb::BlobChunks>,
    ) -> anyhow::Result<pb::UploadBlobsResponse> {
        let stream = tokio_stream::wrappers::ReceiverStream::new(messages);
        Ok(self
            .client
            .upload_blobs(stream)
            .await
            .map_err(explain)?
            .into_inner())
    }

    /// The artifacts a job has written so far.
    pub async fn artifacts(&mut self, job_id: &str) -> anyhow::Result<Vec<pb::ArtifactInfo>> {
        let request = pb::ListArtifactsRequest {
            job_id: job_id.to_owned(),
        };
        let listed = self.client.list_artifacts(request).await.map_err(explain)?;
        Ok(listed.into_inner().artifacts)
    }

    /// One artifact's bytes from `offset` on: a header, then data. Statuses come unexplained,
    /// on the call and on the stream alike: whether a download resumes depends on their code.
    pub async fn fetch_artifact(
        &mut self,
        job_id: &str,
        name: &str,
        offset: u64,
    ) -> Result<tonic::Streaming<pb::ArtifactChunk>, tonic::Status> {
        let request = pb::FetchArtifactRequest {
            job_id: job_id.to_owned(),
            name: name.to_owned(),
            offset,
        };
        Ok(self.client.fetch_artifact(request).await?.into_inner())
    }

    /// Queues a sweep (or, for a key already used, answers with the sweep it queued then).
    pub async fn submit_sweep(
        &mut self,
        request: pb::SubmitSweepRequest,
    ) -> anyhow::Result<pb::Sweep> {
        Ok(self
            .client
            .submit_sweep(request)
            .await
            .map_err(explain)?
            .into_inner())
    }

    /// A sweep with its trials, best first.
    pub async fn sweep(&mut self, sweep_id: &str) -> anyhow::Result<pb::Sweep> {
        let request = pb::GetSweepRequest {
            sweep_id: sweep_id.to_owned(),
        };
        Ok(self
            .client
            .get_sweep(request)
            .await
            .map_err(explain)?
            .into_inner())
    }

    /// Every sweep the worker shows this token, oldest first.
    pub async fn sweeps(&mut self) -> anyhow::Result<Vec<pb::Sweep>> {
        let listed = self
            .client
            .list_sweeps(pb::ListSweepsRequest {})
            .await
            .map_err(explain)?;
        Ok(listed.into_inner().sweeps)
    }

    /// Cancels every unfinished trial of a sweep; answers with the sweep as it left it.
    pub async fn cancel_sweep(&mut self, sweep_id: &str) -> anyhow::Result<pb::Sweep> {
        let request = pb::CancelSweepRequest {
            sweep_id: sweep_id.to_owned(),
        };
        Ok(self
            .client
            .cancel_sweep(request)
            .await
            .map_err(explain)?
            .into_inner())
    }

    /// Removes a finished sweep and its trials; answers with what was freed in all.
    pub async fn remove_sweep(
        &mut self,
        sweep_id: &str,
        artifacts: bool,
    ) -> anyhow::Result<pb::RemoveJobResponse> {
        let request = pb::RemoveSweepRequest {
            sweep_id: sweep_id.to_owned(),
            artifacts,
        };
        Ok(self
            .client
            .remove_sweep(request)
            .await
            .map_err(explain)?
            .into_inner())
    }
}

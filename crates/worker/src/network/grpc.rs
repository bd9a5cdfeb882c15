//! The gRPC adapter: requests in, domain calls, messages out. No job logic here.

use std::pin::Pin;
use std::sync::Arc;

use easel_proto::protocol::{
    MAX_CHUNKS_PER_MESSAGE, MAX_DIGESTS_PER_QUERY, PROTOCOL_VERSION, incompatible,
};
use easel_proto::v1 as pb;
use futures::Stream;
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::access::{Caller, Guard};
use crate::error::Error;
use crate::jobs::record::Submitter;
use crate::jobs::submission::{Submission, read_manifest_blob};
use crate::jobs::{JobManager, resume};
use crate::network::convert::{self, UploadProgress};
use crate::network::fetch::{self as artifacts, ArtifactBody};
use crate::storage::blobs::Chunk;

/// Bytes per FetchArtifact message.
const FETCH_CHUNK_BYTES: usize = 1 << 20;

pub struct WorkerService {
    pub manager: Arc<JobManager>,
    /// Tells streams when their token is revoked.
    pub guard: Guard,
    pub hello: pb::HelloResponse,
    /// How long an upload stream may send nothing (`upload.idle_timeout_seconds`).
    pub upload_idle: std::time::Duration,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::worker_server::Worker for WorkerService {
    async fn hello(
        &self,
        request: Request<pb::HelloRequest>,
    ) -> Result<Response<pb::HelloResponse>, Status> {
        let theirs = request.into_inner().protocol_version;
        if theirs != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(incompatible(
                theirs,
                "this worker",
                PROTOCOL_VERSION,
            )));
        }
        Ok(Response::new(self.hello.clone()))
    }

    async fn missing_blobs(
        &self,
        request: Request<pb::MissingBlobsRequest>,
    ) -> Result<Response<pb::MissingBlobsResponse>, Status> {
        let digests = request.into_inner().digests;
        if digests.len() > MAX_DIGESTS_PER_QUERY {
            return Err(Error::InvalidArgument(format!(
                "MissingBlobs asked about {} digests; at most {MAX_DIGESTS_PER_QUERY} per call \
                 (ask in batches)",
                digests.len()
            ))
            .into());
        }
        let manager = self.manager.clone();
        let (missing, available) = tokio::task::spawn_blocking(move || {
            let blobs = manager.blobs();
            Ok::<_, Error>((blobs.missing(&digests)?, blobs.available()?))
        })
        .await
        .map_err(Error::from)??;
        let missing = missing
            .into_iter()
            .map(|(digest, committed_offset)| pb::MissingBlob {
                digest,
                committed_offset,
            })
            .collect();
        Ok(Response::new(pb::MissingBlobsResponse {
            missing,
            available_bytes: available.bytes,
        }))
    }

    async fn upload_blobs(
        &self,
        request: Request<Streaming<pb::BlobChunks>>,
    ) -> Result<Response<pb::UploadBlobsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let revoked = self.guard.revoked(&caller);
        tokio::pin!(revoked);
        let mut messages = request.into_inner();
        let mut progress = UploadProgress::default();
        let idle = self.upload_idle;
        let quiet = || {
            Error::Idle(format!(
                "the upload sent nothing for {} s (upload.idle_timeout_seconds): stream closed; \
                 what it sent is kept and a new upload resumes from there",
                idle.as_secs()
            ))
        };
        loop {
            let next = tokio::select! {
                status = &mut revoked => return Err(status),
                next = tokio::time::timeout(idle, messages.next()) => next.map_err(|_| quiet())?,
            };
            let Some(message) = next else { break };
            let chunks = message?.chunks;
            if chunks.len() > MAX_CHUNKS_PER_MESSAGE {
                return Err(Error::InvalidArgument(format!(
                    "an upload message carried {} chunks; at most {MAX_CHUNKS_PER_MESSAGE}",
                    chunks.len()
                ))
                .into());
            }
            let chunks: Vec<Chunk> = chunks
                .into_iter()
                .map(|chunk| Chunk {
                    digest: chunk.digest,
                    total_size: chunk.total_size,
                    offset: chunk.offset,
                    data: chunk.data,
                    crc32c: chunk.crc32c,
                })
                .collect();
            // One blocking task a message, not a chunk: a message of small files costs one hop.
            let manager = self.manager.clone();
            let outcomes = tokio::task::spawn_blocking(move || {
                let blobs = manager.blobs();
                let mut outcomes = Vec::with_capacity(chunks.len());
                for chunk in chunks {
                    match blobs.write_chunk(&chunk) {
                        Ok(outcome) => outcomes.push((chunk.digest, outcome)),
                        Err(error) => return (outcomes, Some(error)),
                    }
                }
                (outcomes, None)
            })
            .await
            .map_err(Error::from)?;
            let (written, error) = outcomes;
            for (digest, outcome) in written {
                progress.record(digest, outcome);
            }
            if let Some(error) = error {
                return Err(error.into());
            }
        }
        Ok(Response::new(progress.response()))
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let submitter = Submitter {
            owner: caller.name.clone(),
            idempotency_key: request.idempotency_key,
        };
        // A retried submit whose job exists needs no second reading, nor a second download.
        if let Some(job) = self.manager.existing(&submitter) {
            return Ok(Response::new(pb::SubmitResponse {
                job: Some(convert::job(&job)),
                created: false,
            }));
        }
        // The one parse of the spec and the manifest on the worker: everything after uses these.
        let manager = self.manager.clone();
        let digest = request.manifest_digest;
        let spec_toml = request.spec_toml;
        let submission = tokio::task::spawn_blocking(move || {
            Submission::parse(spec_toml, read_manifest_blob(manager.blobs(), &digest)?)
        })
        .await
        .map_err(Error::from)??;
        let resume = match request.resume_from_job.as_str() {
            "" => None,
            from_job => {
                self.may_resume(&caller, from_job)?;
                Some(
                    resume::fetch(
                        self.manager.context(),
                        from_job,
                        &submission.spec,
                        &submission.manifest,
                    )
                    .await?,
                )
            }
        };
        let manager = self.manager.clone();
        let outcome =
            tokio::task::spawn_blocking(move || manager.submit(submission, &submitter, resume))
                .await
                .map_err(Error::from)??;
        Ok(Response::new(pb::SubmitResponse {
            job: Some(convert::job(&outcome.job)),
            created: outcome.created,
        }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = Caller::of(&request)?;
        let job = self
            .manager
            .job_for(&caller, &request.into_inner().job_id)?;
        Ok(Response::new(convert::job(&job.snapshot())))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let jobs = self
            .manager
            .list(&caller)
            .iter()
            .map(convert::job)
            .collect();
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = Caller::of(&request)?;
        let job = self
            .manager
            .job_for(&caller, &request.into_inner().job_id)?;
        let record = self.manager.cancel(&job.id)?;
        Ok(Response::new(convert::job(&record)))
    }

    type WatchStream = BoxStream<pb::JobEvent>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let job = self.manager.job_for(&caller, &request.job_id)?;
        let events = self.manager.watch(&job.id, request.from_sequence)?;
        let stream = ReceiverStream::new(events).map(|event| Ok(pb::JobEvent::from(event)));
        Ok(Response::new(until_revoked(
            stream,
            self.guard.revoked(&caller),
        )))
    }

    async fn list_artifacts(
        &self,
        request: Request<pb::ListArtifactsRequest>,
    ) -> Result<Response<pb::ListArtifactsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let job = self
            .manager
            .job_for(&caller, &request.into_inner().job_id)?;
        let artifacts = artifacts::list(&job, self.manager.store()).await?;
        let artifacts = artifacts
            .into_iter()
            .map(|a| pb::ArtifactInfo {
                name: a.name,
                size: a.size,
                blake3: a.blake3,
            })
            .collect();
        Ok(Response::new(pb::ListArtifactsResponse { artifacts }))
    }

    async fn remove_job(
        &self,
        request: Request<pb::RemoveJobRequest>,
    ) -> Result<Response<pb::RemoveJobResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        self.manager.job_for(&caller, &request.job_id)?;
        let manager = self.manager.clone();
        let id = request.job_id.clone();
        let reclaimed = tokio::task::spawn_blocking(move || manager.remove(&id))
            .await
            .map_err(Error::from)??;
        let artifacts_removed = if request.artifacts {
            self.manager
                .store()
                .delete_job(&request.job_id)
                .await
                .map_err(Error::from)?
        } else {
            0
        };
        Ok(Response::new(pb::RemoveJobResponse {
            freed_bytes: reclaimed.freed_bytes(),
            job_folder_bytes: reclaimed.job_folder_bytes,
            blobs_removed: reclaimed.blobs_removed,
            blob_bytes: reclaimed.blob_bytes,
            artifacts_removed,
        }))
    }

    type FetchArtifactStream = BoxStream<pb::ArtifactChunk>;

    async fn fetch_artifact(
        &self,
        request: Request<pb::FetchArtifactRequest>,
    ) -> Result<Response<Self::FetchArtifactStream>, Status> {
        use pb::artifact_chunk::Part;
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let job = self.manager.job_for(&caller, &request.job_id)?;
        let (entry, body) = artifacts::open(&job, self.manager.store(), &request.name).await?;
        let size = entry.size;
        let offset = request.offset;
        if offset > size {
            return Err(Error::InvalidArgument(format!(
                "{}: offset {offset} is past its end ({size} bytes)",
                request.name
            ))
            .into());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::ArtifactChunk, Status>>(4);
        let header = pb::ArtifactInfo {
            name: entry.name,
            size: entry.size,
            blake3: entry.blake3,
        };
        tokio::spawn(async move {
            if tx
                .send(Ok(pb::ArtifactChunk {
                    part: Some(Part::Header(header)),
                }))
                .await
                .is_err()
            {
                return;
            }
            match body {
                ArtifactBody::Bytes(bytes) => {
                    for piece in bytes[offset as usize..].chunks(FETCH_CHUNK_BYTES) {
                        let chunk = pb::ArtifactChunk {
                            part: Some(Part::Data(piece.to_vec())),
                        };
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                }
                ArtifactBody::File(path) => {
                    // Exactly the announced size: a running job's events.jsonl keeps growing.
                    let mut file = match open_at(&path, offset).await {
                        Ok(file) => file.take(size - offset),
                        Err(e) => {
                            let _ = tx.send(Err(Error::io(&path, e).into())).await;
                            return;
                        }
                    };
                    loop {
                        let mut buffer = vec![0u8; FETCH_CHUNK_BYTES];
                        match file.read(&mut buffer).await {
                            Ok(0) => return,
                            Ok(n) => {
                                buffer.truncate(n);
                                let chunk = pb::ArtifactChunk {
                                    part: Some(Part::Data(buffer)),
                                };
                                if tx.send(Ok(chunk)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(Error::io(&path, e).into())).await;
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(Response::new(until_revoked(
            ReceiverStream::new(rx),
            self.guard.revoked(&caller),
        )))
    }

    async fn submit_sweep(
        &self,
        request: Request<pb::SubmitSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        self.submit_sweep_request(request).await
    }

    async fn get_sweep(
        &self,
        request: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        let caller = Caller::of(&request)?;
        let sweep = self
            .manager
            .sweep_for(&caller, &request.into_inner().sweep_id)?;
        Ok(Response::new(self.sweep_message(&sweep, false)))
    }

    async fn list_sweeps(
        &self,
        request: Request<pb::ListSweepsRequest>,
    ) -> Result<Response<pb::ListSweepsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let sweeps = self
            .manager
            .list_sweeps(&caller)
            .iter()
            .map(|sweep| self.sweep_message(sweep, false))
            .collect();
        Ok(Response::new(pb::ListSweepsResponse { sweeps }))
    }

    async fn cancel_sweep(
        &self,
        request: Request<pb::CancelSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        let caller = Caller::of(&request)?;
        let sweep = self
            .manager
            .sweep_for(&caller, &request.into_inner().sweep_id)?;
        self.manager.cancel_sweep(&sweep)?;
        Ok(Response::new(self.sweep_message(&sweep, false)))
    }

    async fn remove_sweep(
        &self,
        request: Request<pb::RemoveSweepRequest>,
    ) -> Result<Response<pb::RemoveJobResponse>, Status> {
        self.remove_sweep_request(request).await
    }
}

impl WorkerService {
    /// Resuming reads another job's checkpoint: the caller's own job, or, for a job this worker
    /// does not hold (trained on a machine that is gone), an admin's choice, since the artifact
    /// store does not say whose it was.
    fn may_resume(&self, caller: &Caller, from_job: &str) -> Result<(), Status> {
        match self.manager.job(from_job) {
            Ok(job) if caller.may_see(&job.owner) => Ok(()),
            Ok(_) => Err(Error::JobNotFound(from_job.to_owned()).into()),
            Err(_) if caller.admin => Ok(()),
            Err(_) => Err(Error::PermissionDenied(format!(
                "job {from_job} is not on this worker: resuming it reads its checkpoint from the \
                 artifact store, which does not say whose it was; ask the worker's admin to \
                 submit it (an admin token may)"
            ))
            .into()),
        }
    }
}

/// `stream` until it ends, or until the caller's token is revoked: then one unauthenticated
/// error saying so, and the end.
fn until_revoked<T: Send + 'static>(
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
    revoked: impl std::future::Future<Output = Status> + Send + 'static,
) -> BoxStream<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        tokio::pin!(stream);
        tokio::pin!(revoked);
        loop {
            tokio::select! {
                status = &mut revoked => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                item = stream.next() => match item {
                    Some(item) => if tx.send(item).await.is_err() { return },
                    None => return,
                },
                () = tx.closed() => return,
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// A file opened at `offset` (a resumed fetch).
async fn open_at(path: &std::path::Path, offset: u64) -> std::io::Result<tokio::fs::File> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    Ok(file)
}

//! The sweep RPCs' longer bodies, beside the adapter (`grpc.rs`): requests in, manager calls,
//! messages out.

use easel_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert;
use super::grpc::WorkerService;
use crate::access::Caller;
use crate::error::Error;
use crate::jobs::record::Submitter;
use crate::jobs::submission::read_manifest_blob;
use crate::jobs::sweep::SweepRecord;

impl WorkerService {
    pub(super) async fn submit_sweep_request(
        &self,
        request: Request<pb::SubmitSweepRequest>,
    ) -> Result<Response<pb::Sweep>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let submitter = Submitter {
            owner: caller.name.clone(),
            idempotency_key: request.idempotency_key,
        };
        if let Some(sweep) = self.manager.existing_sweep(&submitter) {
            return Ok(Response::new(self.sweep_message(&sweep, false)));
        }
        let manager = self.manager.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let manifest = read_manifest_blob(manager.blobs(), &request.manifest_digest)?;
            manager.submit_sweep(&request.spec_toml, manifest, &submitter)
        })
        .await
        .map_err(Error::from)??;
        Ok(Response::new(
            self.sweep_message(&outcome.sweep, outcome.created),
        ))
    }

    pub(super) async fn remove_sweep_request(
        &self,
        request: Request<pb::RemoveSweepRequest>,
    ) -> Result<Response<pb::RemoveJobResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let sweep = self.manager.sweep_for(&caller, &request.sweep_id)?;
        let manager = self.manager.clone();
        let removing = sweep.clone();
        let removed = tokio::task::spawn_blocking(move || manager.remove_sweep(&removing))
            .await
            .map_err(Error::from)??;
        let mut answer = pb::RemoveJobResponse::default();
        for reclaimed in &removed.trials {
            answer.freed_bytes += reclaimed.freed_bytes();
            answer.job_folder_bytes += reclaimed.job_folder_bytes;
            answer.blobs_removed += reclaimed.blobs_removed;
            answer.blob_bytes += reclaimed.blob_bytes;
        }
        if request.artifacts {
            for id in sweep.job_ids() {
                answer.artifacts_removed += self
                    .manager
                    .store()
                    .delete_job(id)
                    .await
                    .map_err(Error::from)?;
            }
        }
        Ok(Response::new(answer))
    }

    pub(super) fn sweep_message(&self, sweep: &SweepRecord, created: bool) -> pb::Sweep {
        convert::sweep(sweep, &self.manager.standings(sweep), created)
    }
}

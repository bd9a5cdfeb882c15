//! Shipping dataset blobs: ask which the worker lacks (and how much of each it already holds),
//! in batches so no request grows with the dataset; refuse before sending anything when the
//! worker cannot take it; then stream only what is missing, in checksummed chunks, with a
//! progress bar.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use easel_dataset::{LocalSource, Manifest};
use easel_proto::protocol::MAX_DIGESTS_PER_QUERY;
use easel_proto::v1 as pb;
use serde::Serialize;

use super::connection::{Client, explain};
use crate::format::bytes as human_bytes;

/// A blob that travels beside the dataset's images: pretrained weights (a file) or the
/// manifest itself (bytes made here).
#[derive(Debug, Clone)]
pub enum ExtraBlob {
    File(PathBuf),
    Bytes(Arc<Vec<u8>>),
}

impl ExtraBlob {
    fn read(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            ExtraBlob::File(path) => {
                std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))
            }
            ExtraBlob::Bytes(bytes) => Ok(bytes.as_ref().clone()),
        }
    }
}

/// Extra blobs by digest.
pub type ExtraBlobs = HashMap<String, ExtraBlob>;

#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadPlan {
    pub files: usize,
    pub bytes: u64,
    pub present_files: usize,
    pub present_bytes: u64,
    /// (digest, size, committed offset on the worker)
    #[serde(skip)]
    pub missing: Vec<(String, u64, u64)>,
    pub upload_files: usize,
    pub upload_bytes: u64,
    /// Bytes a cut-off earlier upload already committed, not sent again.
    pub resumed_bytes: u64,
    /// What the worker said it can take for new uploads.
    pub available_bytes: u64,
}

impl UploadPlan {
    /// Refuses, before any byte moves, an upload the worker said it cannot take (`also`: bytes
    /// that travel beside the plan, e.g. the manifest).
    pub fn check_fits(&self, worker: &str, also: u64) -> anyhow::Result<()> {
        if self.upload_bytes + also <= self.available_bytes {
            return Ok(());
        }
        bail!(
            "the dataset does not fit on the worker at {worker}: {} file(s) to upload need {}, \
             the worker can take {} (its upload quota or free disk); nothing was uploaded. Free \
             space there with `client rm JOB`, or raise upload.max_stored_bytes in its worker.toml",
            self.upload_files,
            human_bytes(self.upload_bytes + also),
            human_bytes(self.available_bytes)
        )
    }
}

/// `extra`: files shipped beside the dataset (pretrained weights) as (digest, size).
pub async fn plan(
    client: &mut Client,
    manifest: &Manifest,
    extra: &[(String, u64)],
) -> anyhow::Result<UploadPlan> {
    let mut blobs = manifest.unique_blobs();
    blobs.extend(extra.iter().map(|(d, s)| (d.as_str(), *s)));
    let mut missing = Vec::new();
    let mut available_bytes = u64::MAX;
    for batch in blobs.chunks(MAX_DIGESTS_PER_QUERY) {
        let digests = batch.iter().map(|(d, _)| (*d).to_owned()).collect();
        let answer = client
            .missing_blobs(pb::MissingBlobsRequest { digests })
            .await
            .map_err(explain)?
            .into_inner();
        missing.extend(answer.missing);
        available_bytes = available_bytes.min(answer.available_bytes);
    }
    let mut plan = UploadPlan {
        files: blobs.len(),
        bytes: blobs.iter().map(|(_, s)| s).sum(),
        available_bytes,
        ..Default::default()
    };
    let sizes: std::collections::HashMap<&str, u64> = blobs.iter().copied().collect();
    for m in missing {
        let Some(&size) = sizes.get(m.digest.as_str()) else {
            bail!(
                "the worker asked for blob {}, which this dataset does not have",
                m.digest
            );
        };
        plan.upload_files += 1;
        plan.upload_bytes += size - m.committed_offset.min(size);
        plan.resumed_bytes += m.committed_offset.min(size);
        plan.missing
            .push((m.digest, size, m.committed_offset.min(size)));
    }
    plan.present_files = plan.files - plan.upload_files;
    plan.present_bytes = plan.bytes - plan.upload_bytes - plan.resumed_bytes;
    Ok(plan)
}

/// What was actually sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadResult {
    pub files: usize,
    pub bytes_sent: u64,
    pub bytes_written: u64,
    pub seconds: f64,
}

pub async fn upload(
    client: &mut Client,
    source: &LocalSource,
    extra: &ExtraBlobs,
    plan: &UploadPlan,
    chunk_bytes: usize,
    show_progress: bool,
) -> anyhow::Result<UploadResult> {
    if plan.missing.is_empty() {
        return Ok(UploadResult::default());
    }
    let progress = if show_progress {
        let bar = indicatif::ProgressBar::new(plan.upload_bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::BlobChunk>(8);
    let source = source.clone();
    let extra = extra.clone();
    let missing = plan.missing.clone();
    let bar = progress.clone();
    // Reading files is blocking IO: a dedicated thread feeds the stream.
    let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut sent = 0u64;
        for (digest, size, committed) in missing {
            let bytes = match extra.get(&digest) {
                Some(blob) => blob.read()?,
                None => source
                    .read_digest(&digest)
                    .with_context(|| format!("failed to read blob {digest}"))?,
            };
            if bytes.len() as u64 != size {
                bail!(
                    "{}: changed since the scan",
                    source.display_path(&digest).unwrap_or(&digest)
                );
            }
            let mut offset = committed as usize;
            while offset < bytes.len() || (bytes.is_empty() && offset == 0) {
                let end = (offset + chunk_bytes).min(bytes.len());
                let data = bytes[offset..end].to_vec();
                let chunk = pb::BlobChunk {
                    digest: digest.clone(),
                    total_size: size,
                    offset: offset as u64,
                    crc32c: easel_proto::protocol::chunk_checksum(&data),
                    data,
                };
                if tx.blocking_send(chunk).is_err() {
                    return Ok(sent); // the call ended; its status says why
                }
                sent += (end - offset) as u64;
                bar.inc((end - offset) as u64);
                if bytes.is_empty() {
                    break;
                }
                offset = end;
            }
        }
        Ok(sent)
    });
    let started = std::time::Instant::now();
    let response = client
        .upload_blobs(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let sent = producer.await.context("upload reader failed")??;
    progress.finish_and_clear();
    let response = response.map_err(explain)?.into_inner();
    let unfinished = (plan.missing.len() as u64).saturating_sub(response.completed);
    if unfinished > 0 {
        bail!(
            "the worker did not complete {unfinished} blob(s) (first: {})",
            response
                .incomplete
                .first()
                .map_or("not named", |b| b.digest.as_str())
        );
    }
    Ok(UploadResult {
        files: response.completed as usize,
        bytes_sent: sent,
        bytes_written: response.bytes_written,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The dataset manifest as a blob: it names every image, so it travels like one instead of
/// inside a message, and the submit names its digest.
pub struct ManifestBlob {
    pub digest: String,
    pub json: Arc<Vec<u8>>,
}

impl ManifestBlob {
    pub fn new(manifest: &Manifest) -> ManifestBlob {
        let json = manifest.to_json().into_bytes();
        ManifestBlob {
            digest: easel_digest::digest_bytes(&json),
            json: Arc::new(json),
        }
    }

    pub fn size(&self) -> u64 {
        self.json.len() as u64
    }
}

/// Uploads the manifest unless the worker has it (a resubmit); returns the bytes sent.
pub async fn ship_manifest(
    client: &mut Client,
    manifest: &ManifestBlob,
    chunk_bytes: usize,
) -> anyhow::Result<u64> {
    let answer = client
        .missing_blobs(pb::MissingBlobsRequest {
            digests: vec![manifest.digest.clone()],
        })
        .await
        .map_err(explain)?
        .into_inner();
    let Some(missing) = answer.missing.first() else {
        return Ok(0);
    };
    let committed = missing.committed_offset.min(manifest.size());
    let plan = UploadPlan {
        missing: vec![(manifest.digest.clone(), manifest.size(), committed)],
        upload_files: 1,
        upload_bytes: manifest.size() - committed,
        ..UploadPlan::default()
    };
    let extra = ExtraBlobs::from([(
        manifest.digest.clone(),
        ExtraBlob::Bytes(manifest.json.clone()),
    )]);
    let sent = upload(
        client,
        &LocalSource::default(),
        &extra,
        &plan,
        chunk_bytes,
        false,
    )
    .await
    .context("failed to upload the dataset manifest")?;
    Ok(sent.bytes_sent)
}

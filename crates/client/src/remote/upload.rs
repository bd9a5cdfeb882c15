//! Shipping dataset blobs: ask which the worker lacks (and how much of each it already holds),
//! in batches so no request grows with the dataset; refuse before sending anything when the
//! worker cannot take it; then stream only what is missing over several UploadBlobs calls at
//! once, small files many to a message (`blob_messages`), with a progress bar.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use easel_dataset::{LocalSource, Manifest};
use easel_proto::protocol::MAX_DIGESTS_PER_QUERY;
use easel_proto::v1 as pb;
use serde::Serialize;

use super::blob_messages::{BlobReader, MessagePacker, MissingBlob, Packed};
pub use super::blob_messages::{ExtraBlob, ExtraBlobs};
use super::connection::Connection;
use crate::format::bytes as human_bytes;

#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadPlan {
    pub files: usize,
    pub bytes: u64,
    pub present_files: usize,
    pub present_bytes: u64,
    #[serde(skip)]
    pub missing: Vec<MissingBlob>,
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
    connection: &mut Connection,
    manifest: &Manifest,
    extra: &[(String, u64)],
) -> anyhow::Result<UploadPlan> {
    let mut blobs = manifest.unique_blobs();
    blobs.extend(extra.iter().map(|(d, s)| (d.as_str(), *s)));
    let mut missing = Vec::new();
    let mut available_bytes = u64::MAX;
    for batch in blobs.chunks(MAX_DIGESTS_PER_QUERY) {
        let digests = batch.iter().map(|(d, _)| (*d).to_owned()).collect();
        let answer = connection.missing_blobs(digests).await?;
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
        plan.missing.push(MissingBlob {
            digest: m.digest,
            size,
            committed: m.committed_offset.min(size),
        });
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

/// How an upload travels.
#[derive(Debug, Clone, Copy)]
pub struct UploadSettings {
    /// Most blob data per message (the worker's max_chunk_bytes at most).
    pub chunk_bytes: usize,
    /// UploadBlobs calls in flight at once, each taking the next missing blob as it goes.
    pub streams: usize,
    pub show_progress: bool,
}

pub async fn upload(
    connection: &mut Connection,
    source: &LocalSource,
    extra: &ExtraBlobs,
    plan: &UploadPlan,
    settings: UploadSettings,
) -> anyhow::Result<UploadResult> {
    if plan.missing.is_empty() {
        return Ok(UploadResult::default());
    }
    let progress = if settings.show_progress {
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
    let work = Arc::new(StreamWork {
        reader: BlobReader {
            source: source.clone(),
            extra: extra.clone(),
        },
        missing: plan.missing.clone(),
        next: AtomicUsize::new(0),
        chunk_bytes: settings.chunk_bytes,
        progress: progress.clone(),
    });
    let started = std::time::Instant::now();
    let streams = settings.streams.clamp(1, plan.missing.len());
    // The first stream to fail ends the others (their calls are dropped, their readers stop).
    let results = futures::future::try_join_all(
        (0..streams).map(|_| upload_stream(connection.clone(), work.clone())),
    )
    .await;
    progress.finish_and_clear();
    let mut total = UploadResult {
        seconds: started.elapsed().as_secs_f64(),
        ..UploadResult::default()
    };
    let mut incomplete = None;
    for (sent, response) in results? {
        total.files += response.completed as usize;
        total.bytes_sent += sent;
        total.bytes_written += response.bytes_written;
        incomplete = incomplete.or(response.incomplete.into_iter().next());
    }
    let unfinished = plan.missing.len().saturating_sub(total.files);
    if unfinished > 0 {
        bail!(
            "the worker did not complete {unfinished} blob(s) (first: {})",
            incomplete
                .as_ref()
                .map_or("not named", |b| b.digest.as_str())
        );
    }
    Ok(total)
}

/// What the streams of one upload share: the blobs to send and which is next.
struct StreamWork {
    reader: BlobReader,
    missing: Vec<MissingBlob>,
    next: AtomicUsize,
    chunk_bytes: usize,
    progress: indicatif::ProgressBar,
}

/// One UploadBlobs call, fed by a reading thread that takes blobs until none is left; returns
/// the bytes it sent and the worker's answer.
async fn upload_stream(
    mut connection: Connection,
    work: Arc<StreamWork>,
) -> anyhow::Result<(u64, pb::UploadBlobsResponse)> {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::BlobChunks>(4);
    // Reading files is blocking IO: a dedicated thread feeds the stream.
    let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut send = |message| tx.blocking_send(message).is_ok();
        let on_bytes = |bytes| work.progress.inc(bytes);
        let mut packer = MessagePacker::new(&work.reader, work.chunk_bytes);
        let mut sent = 0;
        while let Some(blob) = work.missing.get(work.next.fetch_add(1, Ordering::Relaxed)) {
            match packer.add(blob, &mut send, &on_bytes)? {
                Packed::Sent(bytes) => sent += bytes,
                Packed::Stopped => return Ok(sent),
            }
        }
        packer.flush(&mut send);
        Ok(sent)
    });
    let response = connection.upload_blobs(rx).await;
    // A reader's error (a file changed since the scan) says more than the call it cut short.
    let sent = producer.await.context("upload reader failed")??;
    Ok((sent, response?))
}

/// The dataset manifest as a blob: it names every image, so it travels like one instead of
/// inside a message, and the submit names its digest.
pub struct ManifestBlob {
    pub digest: String,
    /// The manifest as it travels: compact JSON, gzipped.
    pub bytes: Arc<Vec<u8>>,
}

impl ManifestBlob {
    pub fn new(manifest: &Manifest) -> ManifestBlob {
        let bytes = manifest.to_blob();
        ManifestBlob {
            digest: easel_digest::digest_bytes(&bytes),
            bytes: Arc::new(bytes),
        }
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Uploads the manifest unless the worker has it (a resubmit); returns the bytes sent.
pub async fn ship_manifest(
    connection: &mut Connection,
    manifest: &ManifestBlob,
    chunk_bytes: usize,
) -> anyhow::Result<u64> {
    let answer = connection
        .missing_blobs(vec![manifest.digest.clone()])
        .await?;
    let Some(missing) = answer.missing.first() else {
        return Ok(0);
    };
    let committed = missing.committed_offset.min(manifest.size());
    let plan = UploadPlan {
        missing: vec![MissingBlob {
            digest: manifest.digest.clone(),
            size: manifest.size(),
            committed,
        }],
        upload_files: 1,
        upload_bytes: manifest.size() - committed,
        ..UploadPlan::default()
    };
    let extra = ExtraBlobs::from([(
        manifest.digest.clone(),
        ExtraBlob::Bytes(manifest.bytes.clone()),
    )]);
    let settings = UploadSettings {
        chunk_bytes,
        streams: 1,
        show_progress: false,
    };
    let sent = upload(connection, &LocalSource::default(), &extra, &plan, settings)
        .await
        .context("failed to upload the dataset manifest")?;
    Ok(sent.bytes_sent)
}

//! Shipping dataset blobs: ask which the worker lacks (and how much of each it already holds),
//! then stream only what is missing, in checksummed chunks, with a progress bar.

use anyhow::{Context, bail};
use easel_dataset::{LocalSource, Manifest};
use easel_proto::v1 as pb;
use serde::Serialize;

use super::connection::{Client, explain};

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
}

/// `extra`: files shipped beside the dataset (pretrained weights) as (digest, size).
pub async fn plan(
    client: &mut Client,
    manifest: &Manifest,
    extra: &[(String, u64)],
) -> anyhow::Result<UploadPlan> {
    let mut blobs = manifest.unique_blobs();
    blobs.extend(extra.iter().map(|(d, s)| (d.as_str(), *s)));
    let digests = blobs.iter().map(|(d, _)| (*d).to_owned()).collect();
    let missing = client
        .missing_blobs(pb::MissingBlobsRequest { digests })
        .await
        .map_err(explain)?
        .into_inner()
        .missing;
    let mut plan = UploadPlan {
        files: blobs.len(),
        bytes: blobs.iter().map(|(_, s)| s).sum(),
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
    extra_files: &std::collections::HashMap<String, std::path::PathBuf>,
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
    let extra_files = extra_files.clone();
    let missing = plan.missing.clone();
    let bar = progress.clone();
    // Reading files is blocking IO: a dedicated thread feeds the stream.
    let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut sent = 0u64;
        for (digest, size, committed) in missing {
            let bytes = match extra_files.get(&digest) {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("failed to read {}", path.display()))?,
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
    let incomplete: Vec<&pb::BlobResult> = response.blobs.iter().filter(|b| !b.complete).collect();
    if let Some(first) = incomplete.first() {
        bail!(
            "the worker did not complete {} blob(s) (first: {})",
            incomplete.len(),
            first.digest
        );
    }
    Ok(UploadResult {
        files: response.blobs.len(),
        bytes_sent: sent,
        bytes_written: response.blobs.iter().map(|b| b.bytes_written).sum(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

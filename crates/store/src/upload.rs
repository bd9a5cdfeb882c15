//! `put_file`: one atomic PUT for small files, a multipart upload for large ones.

use std::io::Read;
use std::path::{Path as FsPath, PathBuf};

use bytes::{Bytes, BytesMut};
use easel_digest::Digester;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};

use crate::{ArtifactStore, Error, MULTIPART_PART_SIZE, MULTIPART_THRESHOLD, REPORT_NAME, Result};

/// Parts uploaded at once; bounds memory to about this many parts.
const PARTS_IN_FLIGHT: usize = 4;

impl ArtifactStore {
    /// Uploads a local file. Files of [`MULTIPART_THRESHOLD`] bytes or more go up as a multipart
    /// upload that becomes visible only when it completes (and is aborted on failure), so a reader
    /// sees the old object, no object, or the whole new one. Putting `report.json` first writes
    /// `artifacts.json`.
    pub async fn put_file(&self, job: &str, name: &str, file: &FsPath) -> Result<()> {
        let key = self.key(job, name)?;
        if name == REPORT_NAME {
            self.write_index(job).await?;
        }
        let size = tokio::fs::metadata(file)
            .await
            .map_err(Error::io("cannot read artifact file", file))?
            .len();
        let (size, digest) = if size < MULTIPART_THRESHOLD {
            let bytes = tokio::fs::read(file)
                .await
                .map_err(Error::io("cannot read artifact file", file))?;
            let digest = easel_digest::digest_bytes(&bytes);
            let size = bytes.len() as u64;
            self.inner
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|e| self.error(&key, e))?;
            (size, digest)
        } else {
            self.put_multipart_file(&key, file).await?
        };
        self.record_digest(job, name, size, digest);
        tracing::debug!(job, name, size, "artifact stored");
        Ok(())
    }

    async fn put_multipart_file(
        &self,
        key: &object_store::path::Path,
        file: &FsPath,
    ) -> Result<(u64, String)> {
        let upload = self
            .inner
            .put_multipart(key)
            .await
            .map_err(|e| self.error(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART_SIZE);
        match self.feed_parts(&mut writer, key, file).await {
            Ok(summary) => {
                writer.finish().await.map_err(|e| self.error(key, e))?;
                Ok(summary)
            }
            Err(e) => {
                // Abort so the store drops the uploaded parts; the object never appears.
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key = %key, error = %abort, "multipart upload abort failed");
                }
                Err(e)
            }
        }
    }

    /// Reads and hashes the file part by part on the blocking pool and hands each part to the
    /// writer, waiting whenever `PARTS_IN_FLIGHT` parts are still uploading.
    async fn feed_parts(
        &self,
        writer: &mut WriteMultipart,
        key: &object_store::path::Path,
        file: &FsPath,
    ) -> Result<(u64, String)> {
        let path = file.to_path_buf();
        let mut opened =
            std::fs::File::open(&path).map_err(Error::io("cannot open artifact file", &path))?;
        let mut digest = Digester::default();
        loop {
            let path_for_read = path.clone();
            let part;
            (opened, digest, part) =
                tokio::task::spawn_blocking(move || read_part(opened, digest, path_for_read))
                    .await
                    .map_err(|e| self.error(key, object_store::Error::from(e)))??;
            if part.is_empty() {
                return Ok((digest.len(), digest.finish()));
            }
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| self.error(key, e))?;
            writer.put(part);
        }
    }
}

type PartRead = (std::fs::File, Digester, Bytes);

/// Reads up to one part (empty at end of file) and feeds it to the digest.
fn read_part(mut file: std::fs::File, mut digest: Digester, path: PathBuf) -> Result<PartRead> {
    let mut buffer = BytesMut::zeroed(MULTIPART_PART_SIZE);
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("cannot read artifact file", path)(e)),
        }
    }
    buffer.truncate(filled);
    digest.update(&buffer);
    Ok((file, digest, buffer.freeze()))
}

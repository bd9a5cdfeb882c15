//! `artifacts.json`: name, size and blake3 of every artifact, written just before `report.json`
//! so downloads can verify digests, not only sizes.

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{ArtifactStore, Error, INDEX_NAME, REPORT_NAME, Result};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactIndex {
    pub artifacts: Vec<IndexedArtifact>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedArtifact {
    pub name: String,
    pub size: u64,
    /// Lowercase hex blake3 of the whole object.
    pub blake3: String,
}

impl ArtifactIndex {
    pub fn get(&self, name: &str) -> Option<&IndexedArtifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }
}

impl ArtifactStore {
    /// The job's `artifacts.json`, if it was written.
    pub async fn read_index(&self, job: &str) -> Result<Option<ArtifactIndex>> {
        match self.get_bytes(job, INDEX_NAME).await {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| Error::BadIndex {
                        url: self.url().to_owned(),
                        key: self
                            .key(job, INDEX_NAME)
                            .map(|k| k.to_string())
                            .unwrap_or_default(),
                        source,
                    })
            }
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists the job's artifacts and writes `artifacts.json`. Digests come from this process's
    /// uploads; artifacts stored by someone else (an earlier machine of a resumed job) are read
    /// back and hashed.
    pub async fn write_index(&self, job: &str) -> Result<ArtifactIndex> {
        let mut artifacts = Vec::new();
        for info in self.list_artifacts(job).await? {
            if info.name == INDEX_NAME || info.name == REPORT_NAME {
                continue;
            }
            let (size, blake3) = match self.recorded_digest(job, &info.name, info.size) {
                Some(digest) => (info.size, digest),
                None => self.hash_stored(job, &info.name).await?,
            };
            artifacts.push(IndexedArtifact {
                name: info.name,
                size,
                blake3,
            });
        }
        let index = ArtifactIndex { artifacts };
        let json = serde_json::to_vec_pretty(&index).map_err(|source| Error::BadIndex {
            url: self.url().to_owned(),
            key: INDEX_NAME.to_owned(),
            source,
        })?;
        let key = self.key(job, INDEX_NAME)?;
        self.inner
            .put(&key, PutPayload::from_bytes(Bytes::from(json)))
            .await
            .map_err(|e| self.error(&key, e))?;
        tracing::debug!(
            job,
            artifacts = index.artifacts.len(),
            "artifact index written"
        );
        Ok(index)
    }
}

//! Artifact storage for Easel jobs on top of `object_store`.
//!
//! One constructor, [`ArtifactStore::open`], turns a URL (`file://`, `s3://`, `gs://`, `az://`,
//! `memory://`) into a store. Every job keeps its outputs under `<prefix>/jobs/<job>/<name>`.
//!
//! Guarantees:
//! - A reader never sees a half-written artifact: small files are one atomic PUT, large ones a
//!   multipart upload that becomes visible only when completed; the local backend writes a staging
//!   file and renames it into place.
//! - `report.json` ([`REPORT_NAME`]) is written last and marks a job complete. Just before it, the
//!   store writes `artifacts.json` ([`INDEX_NAME`]): name, size and blake3 of every artifact, which
//!   [`ArtifactStore::download_job`] uses to verify what it downloads.
//! - Downloads resume: an unfinished file stays as `<name>.part` and the next call fetches only
//!   the rest with a ranged GET; each file is renamed into place once its size (and digest) match.
//! - Uploads that fail for a transient reason are retried by [`put_file_with_retry`], which
//!   reports each retry so the worker can turn it into a job event.
//!
//! [`ArtifactStore::mirror_to_dir`] copies any prefix (e.g. a dataset already in the bucket) into a
//! local folder with the same resume rules.

mod download;
mod error;
mod index;
mod keys;
mod mirror;
mod open;
mod options;
pub mod private_file;
mod retry;
mod store;
mod upload;

pub use download::{DownloadReport, DownloadedFile};
pub use error::{Error, Result};
pub use index::{ArtifactIndex, IndexedArtifact};
pub use keys::{job_prefix, validate_artifact_name, validate_job_id};
pub use mirror::MirrorReport;
pub use options::StoreOptions;
pub use retry::{RetryPolicy, put_file_with_retry, retry_transient};
pub use store::{ArtifactInfo, ArtifactStore, StoredJob};

/// Written last; its presence marks a job's artifacts as complete.
pub const REPORT_NAME: &str = easel_spec::outputs::REPORT;

/// Written just before [`REPORT_NAME`]: every artifact's name, size and blake3 digest.
pub const INDEX_NAME: &str = easel_spec::outputs::INDEX;

/// Files at or above this size are uploaded with a multipart upload.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;

/// Part size of multipart uploads; S3 needs every part but the last to be at least 5 MiB.
pub const MULTIPART_PART_SIZE: usize = 8 * 1024 * 1024;

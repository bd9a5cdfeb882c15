//! What a client submits, parsed and checked the same way at submit, at resume and at run time.

use std::path::{Path, PathBuf};

use easel_dataset::Manifest;
use easel_spec::ExperimentSpec;

use crate::error::{Error, Result};
use crate::storage::blobs::BlobStore;

/// What a client submitted, parsed once at `Submit`: the spec (its text too, kept in the job's
/// folder as sent) and the dataset manifest. Everything after works on these types.
pub struct Submission {
    pub spec: ExperimentSpec,
    pub spec_toml: String,
    /// Shared by a sweep's trials, which read one dataset.
    pub manifest: std::sync::Arc<Manifest>,
    pub manifest_text: ManifestText,
}

impl Submission {
    /// Parses and checks both (blocking: a manifest can hold hundreds of thousands of entries).
    pub fn parse(spec_toml: String, manifest_text: ManifestText) -> Result<Submission> {
        let spec = parse_spec(&spec_toml)?;
        let manifest = parse_manifest(&manifest_text.json)?;
        Submission::of(
            spec,
            spec_toml,
            std::sync::Arc::new(manifest),
            manifest_text,
        )
    }

    /// A sweep's trial: its spec as the sweep expanded it, with the dataset every trial reads.
    pub fn of(
        spec: ExperimentSpec,
        spec_toml: String,
        manifest: std::sync::Arc<Manifest>,
        manifest_text: ManifestText,
    ) -> Result<Submission> {
        if let Some(url) = spec.data.object_store_url()
            && !manifest.entries.is_empty()
        {
            return Err(Error::InvalidArgument(format!(
                "the spec reads its dataset from {url}; the manifest must be empty (the worker scans the dataset)"
            )));
        }
        Ok(Submission {
            spec,
            spec_toml,
            manifest,
            manifest_text,
        })
    }

    /// Every blob the job will read: its dataset's files and its uploaded weights.
    pub fn blobs(&self) -> Vec<String> {
        let mut digests: Vec<String> = self
            .manifest
            .unique_blobs()
            .iter()
            .map(|(digest, _)| (*digest).to_owned())
            .collect();
        if let Some(digest) = pretrained_blob(&self.spec) {
            digests.push(digest.to_owned());
        }
        digests
    }
}

/// Parses and validates a submitted spec (its data paths name the client's folders and are not
/// checked here: the manifest replaces them).
pub fn parse_spec(text: &str) -> Result<ExperimentSpec> {
    easel_spec::parse_experiment(text, "submitted spec")
        .map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// Parses and checks a submitted dataset manifest.
pub fn parse_manifest(text: &str) -> Result<Manifest> {
    let manifest = Manifest::from_json(text)
        .map_err(|e| Error::InvalidArgument(format!("dataset manifest: {e}")))?;
    manifest
        .validate()
        .map_err(|e| Error::InvalidArgument(format!("dataset manifest: {e}")))?;
    Ok(manifest)
}

/// The blob digest a submitted spec's `model.pretrained = "blob:<digest>"` names.
pub fn pretrained_blob(spec: &ExperimentSpec) -> Option<&str> {
    spec.model.pretrained.as_ref()?.blob()
}

/// Refuses a spec that has the worker read its own files outside `allowed`
/// (`access.local_paths`): a `file://` dataset would be copied into the job, where its owner can
/// fetch it, and a pretrained path would be opened as it stands.
pub fn check_local_paths(spec: &ExperimentSpec, allowed: &[PathBuf]) -> Result<()> {
    if let Some(url) = spec.data.object_store_url()
        && let Some(path) = file_url_path(url)
    {
        // A URL that names no local path is refused here rather than reaching the store.
        let path = path.unwrap_or_else(|| PathBuf::from(url));
        check_allowed("data.path", &path, allowed)?;
    }
    if let Some(path) = spec.model.pretrained.as_ref().and_then(|w| w.file()) {
        check_allowed("model.pretrained", path, allowed)?;
    }
    Ok(())
}

/// Refuses a bucket dataset (`data.path = "s3://…"`, `gs://…`, `az://…`) that lies under none of
/// `allowed` (`access.dataset_prefixes`): the worker reads it with its own credentials, which
/// reach more than any one token should (the artifact store's other jobs, other teams' buckets).
/// `file://` datasets are [`check_local_paths`]' concern.
pub fn check_dataset_prefixes(spec: &ExperimentSpec, allowed: &[String]) -> Result<()> {
    let Some(url) = spec.data.object_store_url() else {
        return Ok(());
    };
    if file_url_path(url).is_some() {
        return Ok(());
    }
    let Some(location) = BucketLocation::parse(url) else {
        return Err(Error::InvalidArgument(format!(
            "data.path = `{url}` is not a bucket URL the worker can read (scheme://bucket/prefix, \
             no empty, `.` or `..` segments)"
        )));
    };
    let inside = allowed
        .iter()
        .filter_map(|prefix| BucketLocation::parse(prefix))
        .any(|prefix| location.is_under(&prefix));
    if inside {
        return Ok(());
    }
    let reads = if allowed.is_empty() {
        "reads no bucket datasets".to_owned()
    } else {
        format!("reads bucket datasets only under {}", allowed.join(", "))
    };
    Err(Error::PermissionDenied(format!(
        "data.path = `{url}` names a bucket dataset, and this worker {reads} \
         (access.dataset_prefixes in its worker.toml, or EASEL_DATASET_PREFIXES); upload the \
         dataset from a local folder instead, or ask the worker's admin to allow its prefix"
    )))
}

/// A bucket URL as the store opens it: the scheme (`s3a` read as `s3`, `azure` as `az`), the
/// bucket with any account and port, and the key's segments percent-decoded the way the store
/// decodes them (so `%2e%2e` or `%2F` cannot step out of an allowed prefix).
#[derive(Debug, PartialEq, Eq)]
struct BucketLocation {
    scheme: String,
    /// User (an Azure container's account form puts the container there), host and port.
    authority: (String, String, Option<u16>),
    segments: Vec<String>,
}

impl BucketLocation {
    fn parse(text: &str) -> Option<BucketLocation> {
        let parsed = url::Url::parse(text).ok()?;
        let scheme = match parsed.scheme() {
            "s3a" => "s3",
            "azure" => "az",
            other => other,
        };
        let host = parsed.host_str().filter(|host| !host.is_empty())?;
        let path = percent_decoded(parsed.path())?;
        let path = path.trim_start_matches('/').trim_end_matches('/');
        let segments: Vec<String> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').map(str::to_owned).collect()
        };
        if segments
            .iter()
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return None;
        }
        Some(BucketLocation {
            scheme: scheme.to_owned(),
            authority: (parsed.username().to_owned(), host.to_owned(), parsed.port()),
            segments,
        })
    }

    /// Whether this location is `prefix` or below it, by whole segments.
    fn is_under(&self, prefix: &BucketLocation) -> bool {
        self.scheme == prefix.scheme
            && self.authority == prefix.authority
            && self.segments.starts_with(&prefix.segments)
    }
}

/// `%XX` escapes decoded (others kept as written); `None` when the bytes are not UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                at += 3;
            }
            None => {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// For a `file:` URL, the path the store will open, decoded as the store decodes it (`%2e%2e`
/// and `%2F` included); `Some(None)` when it names no local path.
fn file_url_path(url: &str) -> Option<Option<PathBuf>> {
    let (scheme, _) = url.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("file") {
        return None;
    }
    Some(
        url::Url::parse(url)
            .ok()
            .and_then(|parsed| parsed.to_file_path().ok()),
    )
}

/// Refuses a spec whose `data.max_image_pixels` passes the worker's `limits.max_image_pixels`.
pub fn check_image_pixels(spec: &ExperimentSpec, most: u64) -> Result<()> {
    let asked = spec.data.max_image_pixels;
    if asked <= most {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "data.max_image_pixels = {asked} is more than this worker decodes ({most} pixels, \
         limits.max_image_pixels in its worker.toml or EASEL_MAX_IMAGE_PIXELS); lower it, or \
         resize the largest images before submitting"
    )))
}

/// `path` is allowed when it is absolute, has no `..`, and lies under an allowed folder once
/// symbolic links are followed (so a link inside an allowed folder cannot lead out of it). A path
/// not there yet is judged by its nearest existing folder, links resolved.
fn check_allowed(key: &str, path: &Path, allowed: &[PathBuf]) -> Result<()> {
    let plain = path.is_absolute()
        && !path
            .components()
            .any(|part| matches!(part, std::path::Component::ParentDir));
    let resolved = resolve_links(path);
    let inside = plain
        && allowed.iter().any(|folder| {
            let folder = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.clone());
            resolved.as_ref().is_some_and(|r| r.starts_with(&folder))
        });
    if inside {
        return Ok(());
    }
    let reads = if allowed.is_empty() {
        "reads no folder of its own".to_string()
    } else {
        let folders: Vec<String> = allowed.iter().map(|f| f.display().to_string()).collect();
        format!("reads only under {}", folders.join(", "))
    };
    Err(Error::PermissionDenied(format!(
        "{key} = `{}` names a path on the worker, and this worker {reads} (access.local_paths in \
         its worker.toml, or EASEL_LOCAL_PATHS); send the files with the submit instead",
        path.display()
    )))
}

/// `path` with its nearest existing ancestor's links resolved and the rest appended; `None` when
/// no ancestor resolves.
fn resolve_links(path: &Path) -> Option<PathBuf> {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(resolved) = std::fs::canonicalize(existing) {
            return Some(
                missing
                    .iter()
                    .rev()
                    .fold(resolved, |acc, part| acc.join(part)),
            );
        }
        missing.push(existing.file_name()?);
        existing = existing.parent()?;
    }
}

/// Most bytes of JSON a manifest blob may inflate to (about 8 million images).
const MAX_MANIFEST_JSON_BYTES: u64 = 1 << 30;

/// A submit's dataset manifest: its JSON (shared, not copied, by a sweep's trials), and the
/// digest of the blob it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestText {
    pub json: std::sync::Arc<str>,
    pub blob_digest: String,
}

impl ManifestText {
    /// A manifest whose blob is its JSON text itself (what earlier clients sent).
    pub fn plain(json: &str) -> ManifestText {
        ManifestText {
            json: json.into(),
            blob_digest: easel_digest::digest_bytes(json.as_bytes()),
        }
    }
}

/// The manifest a submit names by digest, read from the blob store it was uploaded to.
pub fn read_manifest_blob(blobs: &BlobStore, digest: &str) -> Result<ManifestText> {
    if digest.is_empty() {
        return Err(Error::InvalidArgument(
            "the submit names no dataset manifest (manifest_digest is empty)".into(),
        ));
    }
    if !blobs.contains(digest)? {
        return Err(Error::FailedPrecondition(format!(
            "the dataset manifest (blob {digest}) is not on the worker yet; upload it before submitting"
        )));
    }
    let json = easel_dataset::manifest_blob_json(&blobs.read(digest)?, MAX_MANIFEST_JSON_BYTES)
        .map_err(|e| Error::InvalidArgument(format!("dataset manifest (blob {digest}): {e}")))?;
    Ok(ManifestText {
        json: json.into(),
        blob_digest: digest.to_owned(),
    })
}

#[cfg(test)]
mod local_path_tests {
    use super::*;

    fn spec(data: &str, pretrained: Option<&str>) -> ExperimentSpec {
        let model = pretrained
            .map(|p| format!("[model]\npretrained = \"{p}\"\n"))
            .unwrap_or_default();
        parse_spec(&format!("name = \"p\"\n[data]\npath = \"{data}\"\n{model}")).unwrap()
    }

    fn refused(spec: &ExperimentSpec, allowed: &[PathBuf]) -> String {
        match check_local_paths(spec, allowed) {
            Err(Error::PermissionDenied(message)) => message,
            other => panic!("not refused as permission denied: {other:?}"),
        }
    }

    #[test]
    fn worker_paths_outside_the_allowed_folders_are_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("datasets");
        let secret = dir.path().join("worker-data");
        std::fs::create_dir_all(allowed.join("art")).unwrap();
        std::fs::create_dir_all(&secret).unwrap();
        std::os::unix::fs::symlink(&secret, allowed.join("link-out")).unwrap();
        let allowed = [allowed];
        let url = |path: &Path| format!("file://{}", path.display());

        // Uploaded data and blob weights name no worker path.
        check_local_paths(&spec("/home/me/art", Some("blob:abc")), &[]).unwrap();
        check_local_paths(&spec(&url(&allowed[0].join("art")), None), &allowed).unwrap();

        let message = refused(&spec(&url(&secret), None), &[]);
        assert!(message.starts_with("data.path = `"), "{message}");
        assert!(message.contains("reads no folder of its own"), "{message}");
        assert!(message.contains("access.local_paths"), "{message}");
        let escape = allowed[0].join("art/../../worker-data");
        let message = refused(&spec(&url(&escape), None), &allowed);
        assert!(message.contains("reads only under"), "{message}");
        refused(&spec(&url(&allowed[0].join("link-out")), None), &allowed);
        // Percent-encoded dots and slashes are decoded as the store decodes them.
        let encoded = format!("{}/art/%2e%2e/%2E%2E/worker-data", url(&allowed[0]));
        refused(&spec(&encoded, None), &allowed);
        let encoded = format!("{}/art%2F..%2F..%2Fworker-data", url(&allowed[0]));
        refused(&spec(&encoded, None), &allowed);
        // A path not made yet is judged by the folder it would be in.
        refused(
            &spec(&url(&allowed[0].join("link-out/new")), None),
            &allowed,
        );
        check_local_paths(&spec(&url(&allowed[0].join("art/new")), None), &allowed).unwrap();
        let message = refused(
            &spec(
                "/home/me/art",
                Some(&secret.join("token").display().to_string()),
            ),
            &allowed,
        );
        assert!(message.starts_with("model.pretrained = `"), "{message}");
    }

    fn bucket_refused(spec: &ExperimentSpec, allowed: &[String]) -> String {
        match check_dataset_prefixes(spec, allowed) {
            Err(Error::PermissionDenied(message)) => message,
            other => panic!("not refused as permission denied: {other:?}"),
        }
    }

    #[test]
    fn bucket_datasets_outside_the_allowed_prefixes_are_refused_by_key() {
        let allowed = ["s3://team-data/".to_owned(), "gs://photos/sets".to_owned()];
        for fine in [
            "s3://team-data/pets",
            "s3://team-data",
            "S3://team-data/a/b",
            "s3a://team-data/pets",
            "gs://photos/sets/dogs",
            "gs://photos/sets",
        ] {
            check_dataset_prefixes(&spec(fine, None), &allowed)
                .unwrap_or_else(|e| panic!("{fine}: {e}"));
        }
        // Uploaded and worker-folder datasets are not this check's concern.
        check_dataset_prefixes(&spec("/home/me/art", None), &[]).unwrap();
        check_dataset_prefixes(&spec("file:///srv/art", None), &[]).unwrap();

        let message = bucket_refused(&spec("s3://other-team/pets", None), &[]);
        assert!(
            message.starts_with("data.path = `s3://other-team/pets` names a bucket dataset"),
            "{message}"
        );
        assert!(message.contains("reads no bucket datasets"), "{message}");
        assert!(message.contains("access.dataset_prefixes"), "{message}");
        for outside in [
            "s3://other-team/pets",
            "s3://team-data-private/pets",
            "gs://team-data/pets",
            "gs://photos/setsx",
            "gs://photos/other",
            "gs://photos/sets/%2e%2e/private",
            "gs://photos/sets/../private",
            "az://team-data/pets",
        ] {
            let message = bucket_refused(&spec(outside, None), &allowed);
            assert!(
                message.contains("only under s3://team-data/, gs://photos/sets"),
                "{outside}: {message}"
            );
        }
        // An encoded `/..` the store would decode is no bucket URL it reads at all.
        match check_dataset_prefixes(&spec("gs://photos/sets%2F..%2Fprivate", None), &allowed) {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains("is not a bucket URL"), "{message}")
            }
            other => panic!("not refused as invalid: {other:?}"),
        }
    }

    #[test]
    fn a_spec_asking_to_decode_larger_images_than_the_worker_allows_is_refused() {
        let asking = |pixels: u64| {
            parse_spec(&format!(
                "name = \"p\"\n[data]\npath = \"/a\"\nmax_image_pixels = {pixels}\n"
            ))
            .unwrap()
        };
        check_image_pixels(&asking(40_000_000), 40_000_000).unwrap();
        match check_image_pixels(&asking(4_000_000_000), 40_000_000) {
            Err(Error::InvalidArgument(message)) => {
                assert!(
                    message.contains("data.max_image_pixels = 4000000000")
                        && message.contains("limits.max_image_pixels"),
                    "{message}"
                );
            }
            other => panic!("not refused: {other:?}"),
        }
    }
}

//! What a client submits, parsed and checked the same way at submit, at resume and at run time.

use easel_dataset::Manifest;
use easel_spec::ExperimentSpec;

use crate::blobs::BlobStore;
use crate::error::{Error, Result};

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
    spec.model
        .pretrained
        .as_ref()?
        .to_str()?
        .strip_prefix("blob:")
}

/// The manifest a submit names by digest, read from the blob store it was uploaded to.
pub fn read_manifest_blob(blobs: &BlobStore, digest: &str) -> Result<String> {
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
    String::from_utf8(blobs.read(digest)?).map_err(|_| {
        Error::InvalidArgument(format!("dataset manifest (blob {digest}): not UTF-8 JSON"))
    })
}

//! Artifact key layout: `<prefix>/jobs/<job>/<name>`, and the rules for job ids and names.

use crate::{Error, Result};

/// The key prefix of one job's artifacts, relative to the store's prefix: `jobs/<job>/`.
pub fn job_prefix(job: &str) -> String {
    format!("jobs/{job}/")
}

/// Job ids are one path segment of letters, digits, `.`, `_` and `-`.
pub fn validate_job_id(job: &str) -> Result<()> {
    validate_segment(job).map_err(|reason| Error::InvalidName {
        what: "job id",
        value: job.to_owned(),
        reason,
    })
}

/// Artifact names are relative paths (`weights/best.safetensors`) whose segments use letters,
/// digits, `.`, `_` and `-`; such names map to the same key on every backend and to a safe
/// relative file path when downloaded.
pub fn validate_artifact_name(name: &str) -> Result<()> {
    let invalid = |reason: String| Error::InvalidName {
        what: "artifact name",
        value: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    for segment in name.split('/') {
        validate_segment(segment).map_err(invalid)?;
    }
    Ok(())
}

fn validate_segment(segment: &str) -> std::result::Result<(), String> {
    if segment.is_empty() {
        return Err("it has an empty path segment".into());
    }
    if segment == "." || segment == ".." {
        return Err(format!("`{segment}` is not allowed as a path segment"));
    }
    if segment.ends_with(".part") {
        // Downloads keep unfinished files as `<name>.part`; a real artifact of that name would clash.
        return Err("names ending in `.part` are reserved for partial downloads".into());
    }
    match segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "character {c:?} is not allowed (use letters, digits, `.`, `_`, `-`)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_layout_names() {
        for name in [
            "report.json",
            "weights/best.safetensors",
            "checkpoints/epoch-0003.ckpt",
        ] {
            validate_artifact_name(name).unwrap();
        }
        validate_job_id("job-20261128-0001").unwrap();
    }

    #[test]
    fn rejects_escaping_or_odd_names() {
        for name in [
            "", "/abs", "a//b", "../x", "a/./b", "sp ace", "x#1", "w.part", "é",
        ] {
            let err = validate_artifact_name(name).unwrap_err().to_string();
            assert!(err.contains("artifact name"), "{name}: {err}");
        }
        assert!(validate_job_id("a/b").is_err());
        assert!(validate_job_id("..").is_err());
    }

    #[test]
    fn prefix_layout() {
        assert_eq!(job_prefix("j1"), "jobs/j1/");
    }
}
